"""Keithley 2400 SourceMeter: pymeasure's driver plus what labctl needs.

Added to :class:`pymeasure.instruments.keithley.Keithley2400`:

* list sweeps on the trigger link: :meth:`Keithley2400.configure_list_master` (steps
  itself, pulses output line 1 after each source step) and
  :meth:`Keithley2400.configure_list_slave` (steps on input line 1, armed);
  :meth:`Keithley2400.run_list_sweep` reads them back. A sweep of N points costs
  ceil(N / 100) list commands plus a fixed handful of messages;
* :class:`Readings`: every reading's voltage (V), current (A), time (s) and status word,
  with the compliance flag (status bit 3) per reading; :meth:`Keithley2400.measure_once`
  for host-paced use;
* voltage sourcing: :meth:`Keithley2400.prepare_voltage_source` (0 V, current compliance,
  output on), :attr:`Keithley2400.source_voltage` and
  :meth:`Keithley2400.source_voltage_and_measure` (a voltage-biased reading),
  :meth:`Keithley2400.ramp_voltage_to`; capped by :meth:`Keithley2400.limit_voltage_source`
  (a station's pair limits: |V| <= compliance_v, current compliance <= max_current_a), which
  the validators of ``source_voltage`` and ``compliance_current`` enforce before anything
  is sent;
* :meth:`Keithley2400.present_state` (output, function, level read from the instrument),
  :meth:`Keithley2400.ramp_to` (from the present level in bounded steps; a voltage source
  is ramped to 0 V first);
* :meth:`Keithley2400.shutdown` / :meth:`Keithley2400.safe_off`: resync if the last
  exchange failed, abort, ramp the source to zero in bounded steps, output off, then
  confirm ``:OUTP?`` 0 and 0 A read back; returns a :class:`SafeStateReport`, never
  raises for the instrument's sake, and cannot be cut short by Ctrl-C / SIGTERM
  (:func:`~instruments.transport.interrupts_deferred`);
* every reply checked against its command (:meth:`Keithley2400.reply_rule`): numbers,
  ``0``/``1``, ``CURR``/``VOLT``, and for ``:READ?``, ``:FETC?``, ``:MEAS?`` and
  ``:TRAC:DATA?`` exactly elements x points fields, from the ``:FORM:ELEM``,
  ``:TRIG:COUN``, ``:ARM:COUN`` and ``:TRAC:POIN`` this driver has sent;
* :meth:`Keithley2400.configuration`, :meth:`Keithley2400.check_errors_raise` and
  :attr:`Keithley2400.capabilities`.

Units: A, V, s.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from pymeasure.instruments import Instrument
from pymeasure.instruments.keithley import Keithley2400 as _PymeasureKeithley2400
from pymeasure.instruments.validators import strict_range

from instruments import replies
from instruments.ramps import RampedSource, ramp_levels
from instruments.transport import (
    GarbledReply,
    InstrumentError,
    InstrumentReportedError,
    InstrumentTimeout,
    LockedInstrumentMixin,
    SafeStateReport,
    call_through_interrupts,
    drain_scpi_errors,
    interrupts_deferred,
    read_setting,
)
from instruments.voltage_source import CappedVoltageSource

log = logging.getLogger(__name__)

LIST_CHUNK = 100  # values per :SOUR:LIST:CURR command the 2400 accepts
MAX_LIST_POINTS = 2500  # the 2400's list and trigger-count limit
MAX_CURRENT_A = 1.05  # the 2400's source range
MAX_VOLTAGE_V = 210.0  # the 2400's voltage source range
STATUS_COMPLIANCE = 8  # status word bit 3: the source hit its compliance limit
# Order of the elements in every reading: pymeasure's __init__ sets :FORM:ELEM this way.
ELEMENTS = ("voltage", "current", "resistance", "time", "status")


@dataclass(frozen=True, eq=False)
class Readings:
    """Readings of one :READ? / :FETC?, one entry per reading.

    voltage (V), current (A), resistance (Ohm; 9.91e37 when not measured), time (s, the
    instrument's timestamp), status (the 2400's status word); :attr:`compliance` is the
    status word's compliance bit for each reading.
    """

    voltage: np.ndarray
    current: np.ndarray
    resistance: np.ndarray
    time: np.ndarray
    status: np.ndarray

    @property
    def compliance(self) -> np.ndarray:
        """True where the source was in compliance (status bit 3, value 8)."""
        return (self.status & STATUS_COMPLIANCE) != 0

    def __len__(self) -> int:
        return len(self.voltage)

    @classmethod
    def parse(cls, instrument: str, reply: str) -> Readings:
        """Parse ``v,i,r,t,status,v,i,...``; :class:`GarbledReply` if it is not that."""
        parts = reply.strip().split(",")
        n = len(ELEMENTS)
        if not reply.strip() or len(parts) % n:
            raise GarbledReply(instrument, reply, f"expected a multiple of {n} values")
        try:
            values = np.fromiter((float(p) for p in parts), dtype=float, count=len(parts))
        except ValueError:
            raise GarbledReply(instrument, reply, "not a list of numbers") from None
        table = values.reshape(-1, n)
        status = table[:, 4]
        if not np.all(np.isfinite(status)) or np.any(status != np.round(status)):
            raise GarbledReply(instrument, reply, "status words are not integers")
        return cls(table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy(),
                   table[:, 3].copy(), status.astype(np.int64))


class SourceState(NamedTuple):
    """The source as the instrument reports it: output on, function (``CURR`` or
    ``VOLT``) and the fixed level of that function (A or V)."""

    output_on: bool
    function: str
    level: float


# Commands whose replies have a fixed form (keys: :func:`replies.scpi_header`).
_RULES: dict[str, Callable[[str], str | None]] = {
    "*IDN?": replies.text,
    "*OPC?": replies.exactly("1"),
    "*STB?": replies.integer,
    "*ESR?": replies.integer,
    "*TST?": replies.integer,
    "SYST:ERR?": replies.scpi_error,
    "SYST:ERR:NEXT?": replies.scpi_error,
    "SYST:ERR:COUN?": replies.integer,
    "SOUR:FUNC?": replies.one_of("CURR", "VOLT"),
    "OUTP?": replies.flag,
    "SOUR:CURR?": replies.number_in(-MAX_CURRENT_A, MAX_CURRENT_A),
    "SOUR:VOLT?": replies.number_in(-210.0, 210.0),
    "SOUR:CURR:MODE?": replies.one_of("FIX", "LIST", "SWE"),
    "SOUR:VOLT:MODE?": replies.one_of("FIX", "LIST", "SWE"),
    "SENS:VOLT:PROT?": replies.number_in(0.0, 210.0),
    "SENS:CURR:PROT?": replies.number_in(0.0, MAX_CURRENT_A),
    "SENS:VOLT:NPLC?": replies.number_in(0.01, 10.0),
    "SENS:CURR:NPLC?": replies.number_in(0.01, 10.0),
    "SENS:RES:NPLC?": replies.number_in(0.01, 10.0),
    "TRIG:COUN?": replies.integer_in(range(1, MAX_LIST_POINTS + 1)),
    "ARM:COUN?": replies.integer_in(range(1, MAX_LIST_POINTS + 1)),
    "TRAC:POIN?": replies.integer_in(range(1, MAX_LIST_POINTS + 1)),
    "TRAC:POIN:ACT?": replies.integer_in(range(0, MAX_LIST_POINTS + 1)),
    "TRIG:SOUR?": replies.one_of("IMM", "TLIN"),
    "ARM:SOUR?": replies.one_of("IMM", "TLIN", "TIM", "MAN", "BUS", "NST", "PST", "BST"),
    "TRIG:ILIN?": replies.integer_in(range(1, 5)),
    "TRIG:OLIN?": replies.integer_in(range(1, 5)),
    "ARM:ILIN?": replies.integer_in(range(1, 5)),
    "ARM:OLIN?": replies.integer_in(range(1, 5)),
    "OUTP:SMOD?": replies.one_of("NORM", "HIMP", "ZERO", "GUAR"),
    "ROUT:TERM?": replies.one_of("FRON", "REAR"),
    "SYST:LFR?": replies.one_of("50", "60"),
}
# Headers that list readings: elements x points fields.
_READING_QUERIES = frozenset({"READ?", "FETC?", "MEAS?", "MEAS:CURR?", "MEAS:VOLT?",
                              "MEAS:RES?"})
# Writes that change how many fields a reading query answers (cheap pre-filter).
_TRACKED = re.compile(r"COUN|ELEM|RST|PRES|POIN|MEAS|CONF", re.IGNORECASE)


class Keithley2400(LockedInstrumentMixin, RampedSource, CappedVoltageSource,
                   _PymeasureKeithley2400):
    """Keithley 2400 SourceMeter for labctl (see the module docstring).

    ``adapter``: a transport from :func:`instruments.open_adapter` (or any pymeasure
    adapter); no I/O here beyond pymeasure's own ``:FORMAT:ELEMENTS`` write.
    """

    # One spelling and precision for the source current everywhere (pymeasure's property
    # writes :SOURCE:CURRENT %g, six digits; lists and ramps write :SOUR:CURR %.9g).
    source_current = Instrument.control(
        ":SOUR:CURR?",
        ":SOUR:CURR %.9g",
        """Control the source current in A (float, strictly from -1.05 to 1.05).""",
        validator=strict_range,
        values=[-MAX_CURRENT_A, MAX_CURRENT_A],
    )

    # Voltage sourcing, capped per instance (dynamic): limit_voltage_source() narrows both.
    source_voltage = Instrument.control(
        ":SOUR:VOLT?",
        ":SOUR:VOLT %.9g",
        """Control the source voltage in V (float, strictly within +-210 V, or within the cap
        :meth:`limit_voltage_source` set).""",
        validator=strict_range,
        values=[-MAX_VOLTAGE_V, MAX_VOLTAGE_V],
        dynamic=True,
    )
    compliance_current = Instrument.control(
        ":SENS:CURR:PROT?",
        ":SENS:CURR:PROT %.9g",
        """Control the current compliance of a voltage source in A (float, strictly from 0 to
        1.05 A, or to the cap :meth:`limit_voltage_source` set).""",
        validator=strict_range,
        values=[0.0, MAX_CURRENT_A],
        dynamic=True,
    )

    #: What the protocol layer may rely on to choose list sweeps over host pacing.
    capabilities = {
        "list_sweep": True,
        "trigger_link": True,
        "max_list_points": MAX_LIST_POINTS,
        "list_chunk": LIST_CHUNK,
    }
    #: Defaults of :meth:`safe_off`: largest step (A) and pause between steps (s).
    ramp_step_a = 20e-6
    ramp_delay_s = 1e-3
    #: Largest step (V) when a voltage source has to be ramped down.
    ramp_step_v = 0.05
    #: The voltage-sourcing caps (V, A) in force: :meth:`limit_voltage_source` sets them.
    max_voltage_v = voltage_cap_v = MAX_VOLTAGE_V
    max_compliance_a = compliance_cap_a = MAX_CURRENT_A

    def __init__(self, adapter, name: str = "Keithley 2400 SourceMeter", **kwargs):
        # What a reading query answers, from the commands this driver sent (pymeasure's
        # __init__ already writes :FORM:ELEM): elements per reading, trigger and arm
        # counts, trace points (None: not set by this driver).
        self._elements = len(ELEMENTS)
        self._trig_count = 1
        self._arm_count = 1
        self._trace_points: int | None = None
        self._rule_cache: dict[str, Callable[[str], str | None] | None] = {}
        super().__init__(adapter, name, **kwargs)
        # Which query reads a configured list sweep back: a master starts it itself
        # (:READ?), a slave was armed by :INIT and only fetches (:FETC?).
        self._list_role = "master"
        self._list_points: int | None = None
        #: The report of the last :meth:`shutdown` (also when it re-raised an interrupt).
        self.last_shutdown: SafeStateReport | None = None

    # -- what the instrument may answer --------------------------------------------------
    def write(self, command: str, **kwargs: Any) -> None:
        super().write(command, **kwargs)
        if _TRACKED.search(command):
            self._track(command)

    def _track(self, command: str) -> None:
        self._rule_cache.clear()
        for head, arg in replies.scpi_commands(command):
            if head in ("*RST", "SYST:PRES"):
                self._elements, self._trig_count, self._arm_count = len(ELEMENTS), 1, 1
            elif head == "FORM:ELEM":
                self._elements = len([e for e in arg.split(",") if e.strip()]) or len(ELEMENTS)
            elif head.startswith(("MEAS", "CONF")):
                self._trig_count = self._arm_count = 1  # :CONF (and so :MEAS?) sets both
            elif head in ("TRIG:COUN", "ARM:COUN", "TRAC:POIN"):
                try:
                    value = int(float(arg))
                except ValueError:
                    continue
                if head == "TRIG:COUN":
                    self._trig_count = value
                elif head == "ARM:COUN":
                    self._arm_count = value
                else:
                    self._trace_points = value

    def reply_rule(self, command: str) -> Callable[[str], str | None] | None:
        """The check of ``command``'s reply (see :mod:`instruments.replies`); for a
        ``;``-joined message, that of its one query. Cached per command until a write
        changes what a reading query answers."""
        cache = self._rule_cache
        try:
            return cache[command]
        except KeyError:
            pass
        if len(cache) > 256:
            cache.clear()
        rule = cache[command] = self._make_rule(command)
        return rule

    def _make_rule(self, command: str) -> Callable[[str], str | None] | None:
        if ";" in command:
            queries = [h for h, _ in replies.scpi_commands(command) if h.endswith("?")]
            if len(queries) != 1:
                return None
            head = queries[0]
        else:
            head = replies.scpi_header(command)
        rule = _RULES.get(head)
        if rule is not None:
            return rule
        if head in _READING_QUERIES:
            points = self._trig_count * self._arm_count
            return replies.numbers(self._elements * points,
                                   f"{points} readings of {self._elements} elements")
        if head == "TRAC:DATA?":
            if self._trace_points is None:
                return replies.numbers_multiple(self._elements, self._elements
                                                * MAX_LIST_POINTS, "trace readings")
            return replies.numbers(self._elements * self._trace_points,
                                   f"{self._trace_points} trace points of "
                                   f"{self._elements} elements")
        if head.endswith(":AUTO?"):
            return replies.flag
        if head.endswith(("NPLC?", ":RANG?", ":PROT?", ":DEL?", "SOUR:CURR?", "SOUR:VOLT?")):
            return replies.number
        return None

    # -- host-paced --------------------------------------------------------------------
    def prepare_current_source(self, *, compliance_v: float, nplc: float = 1.0) -> None:
        """Current source at 0 A, fixed mode, voltage sensed with ``compliance_v`` (V) at
        ``nplc`` power-line cycles, one reading per :READ?, output on."""
        if not 0 < compliance_v <= 210:
            raise ValueError(f"compliance_v must be in (0, 210] V, got {compliance_v!r}")
        if not 0.01 <= nplc <= 10:
            raise ValueError(f"nplc must be in [0.01, 10], got {nplc!r}")
        with self.lock:
            self.write(":SOUR:FUNC CURR")
            self.use_fixed_source()
            self.write(":SOUR:CURR 0")
            self.write(':SENS:FUNC "VOLT"')
            self.write(f":SENS:VOLT:PROT {compliance_v:g}")
            self.write(f":SENS:VOLT:NPLC {nplc:g}")
            self.write(":OUTP ON")
            self.check_errors_raise()

    def prepare_voltage_source(self, compliance_a: float, nplc: float = 1.0) -> None:
        """Voltage source at 0 V, fixed mode, voltage and current sensed at ``nplc``
        power-line cycles with a current compliance of ``compliance_a`` (A, within the cap
        of :meth:`limit_voltage_source`), one reading per :READ?, output on.

        Whatever the channel sourced before is first ramped to zero (:meth:`ramp_to`), and
        the voltage level is zeroed before the function changes, so nothing jumps."""
        if not 0.01 <= nplc <= 10:
            raise ValueError(f"nplc must be in [0.01, 10], got {nplc!r}")
        self.check_compliance_a(compliance_a)
        with self.lock:
            self.ramp_to(0.0)
            self.write(":SOUR:VOLT:MODE FIX")
            self.source_voltage = 0.0
            self.compliance_current = compliance_a
            self.write(":SOUR:FUNC VOLT")
            self.use_fixed_source()
            self.write(':SENS:FUNC "VOLT","CURR"')
            self.write(f":SENS:CURR:NPLC {nplc:g}")
            self.write(":OUTP ON")
            self.check_errors_raise()

    def _write_voltage_uncapped(self, value_v: float) -> None:
        self.write(f":SOUR:VOLT {value_v:.9g}")

    def use_fixed_source(self) -> None:
        """Leave list mode: fixed source level, one immediate reading per :READ?, no
        trigger-link pulses."""
        with self.lock:
            self.write(":SOUR:CURR:MODE FIX")
            self.write(":TRIG:SOUR IMM")
            self.write(":TRIG:COUN 1")
            self.write(":TRIG:OUTP NONE")
            self._list_role, self._list_points = "master", None

    def measure_once(self) -> Readings:
        """One host-paced reading (:READ?): a :class:`Readings` of length 1.

        After a list sweep this first leaves list mode (:meth:`use_fixed_source`): there
        :READ? would run the list again and ignore the fixed level just set.
        """
        with self.lock:
            if self._list_points is not None:
                self.use_fixed_source()
            readings = self._readings(":READ?")
        if len(readings) != 1:
            raise InstrumentError(
                f"{self.name}: :READ? gave {len(readings)} readings, expected 1 (a list "
                "sweep is still configured: call use_fixed_source())"
            )
        return readings

    def source_and_measure(self, current_a: float) -> Readings:
        """Set the source to ``current_a`` (A) and take one reading: a write and a query."""
        _check_currents([current_a])
        with self.lock:
            self.source_current = current_a
            return self.measure_once()

    # -- list sweeps -------------------------------------------------------------------
    def configure_list_master(self, currents_a: Sequence[float], *, line: int = 1) -> None:
        """Load ``currents_a`` (A) as a list sweep that paces itself and pulses trigger-link
        output ``line`` after each source step; :meth:`run_list_sweep` starts it."""
        with self.lock:
            self._load_list(currents_a)
            self.write(":TRIG:SOUR IMM")
            self.write(":TRIG:OUTP SOUR")
            self.write(f":TRIG:OLIN {_line(line)}")
            self.check_errors_raise()
            self._list_role = "master"

    def configure_list_slave(self, currents_a: Sequence[float], *, line: int = 1) -> None:
        """Load ``currents_a`` (A) as a list sweep stepped by pulses on trigger-link input
        ``line``, and arm it (:INIT). The closing error-queue query returns only once the
        instrument has processed :INIT, so the master may start right after."""
        with self.lock:
            self._load_list(currents_a)
            self.write(":TRIG:SOUR TLIN")
            self.write(f":TRIG:ILIN {_line(line)}")
            self.write(":INIT")
            self.check_errors_raise()
            self._list_role = "slave"

    def _load_list(self, currents_a: Sequence[float]) -> None:
        values = np.asarray(currents_a, dtype=float).ravel()
        if not 1 <= len(values) <= MAX_LIST_POINTS:
            raise ValueError(f"a list sweep has 1 to {MAX_LIST_POINTS} points, got {len(values)}")
        _check_currents(values)
        self.write(":SOUR:FUNC CURR")
        self.write(":SOUR:CURR:MODE LIST")
        for start in range(0, len(values), LIST_CHUNK):
            chunk = ",".join(f"{v:.9g}" for v in values[start : start + LIST_CHUNK])
            head = ":SOUR:LIST:CURR" if start == 0 else ":SOUR:LIST:CURR:APP"
            self.write(f"{head} {chunk}")
        self.write(f":TRIG:COUN {len(values)}")
        self._list_points = len(values)

    def run_list_sweep(self, *, timeout_s: float | None = None) -> Readings:
        """The readings of the configured list sweep: a master runs it (:READ?), a slave
        returns what it took on the master's pulses (:FETC?). ``timeout_s`` (s) overrides
        the transport's timeout for this one reply (a long sweep at high NPLC)."""
        query = ":READ?" if self._list_role == "master" else ":FETC?"
        with self.timeout_scope(timeout_s):
            readings = self._readings(query)
        if self._list_points is not None and len(readings) != self._list_points:
            raise InstrumentError(
                f"{self.name}: list sweep of {self._list_points} points returned "
                f"{len(readings)} readings"
            )
        return readings

    def _readings(self, query: str) -> Readings:
        with self.lock:
            try:
                reply = self.ask(query)
            except InstrumentTimeout as timeout:
                # A refused :READ? (output off: +803) or :FETC? (-230) answers nothing; the
                # error queue says why, which beats a bare timeout.
                try:
                    self.check_errors_raise()
                except InstrumentReportedError as reported:
                    raise reported from timeout
                raise
        return Readings.parse(self.name, reply)

    # -- errors and shutdown -----------------------------------------------------------
    def check_errors_raise(self) -> None:
        """Empty the error queue (:SYST:ERR?); raise :class:`InstrumentReportedError` with
        the instrument's own texts if it held any."""
        errors = drain_scpi_errors(self, ":SYST:ERR?")
        if errors:
            raise InstrumentReportedError(self.name, errors)

    def check_set_errors(self) -> list:
        """pymeasure's hook after a property set with ``check_set_errors=True``: the
        error queue, raising :class:`InstrumentReportedError` with the instrument's texts.
        (Not enabled on the host-paced ``source_current``: it would double the round
        trips per point; batches end with :meth:`check_errors_raise` instead.)"""
        self.check_errors_raise()
        return []

    # -- the present state ---------------------------------------------------------------
    def present_state(self) -> SourceState:
        """(output on, source function ``CURR``/``VOLT``, fixed level in A or V) as the
        instrument answers ``:OUTP?``, ``:SOUR:FUNC?`` and ``:SOUR:CURR?`` / ``:SOUR:VOLT?``
        (each reply checked)."""
        with self.lock:
            output_on = self.ask(":OUTP?").strip() == "1"
            function = self.ask(":SOUR:FUNC?").strip().upper()
            level = float(self.ask(f":SOUR:{function}?"))
        return SourceState(output_on, function, level)

    def _check_level_a(self, level_a: float) -> None:
        _check_currents([level_a])

    def _write_level(self, function: str, value: float) -> None:
        self.write(f":SOUR:{function} {value:.9g}")

    def _after_voltage_ramp(self) -> None:
        # The idle current level too, so that a later switch to a current source starts
        # at 0 A.
        self.write(":SOUR:CURR 0")

    def configuration(self) -> dict[str, Any]:
        """The settings worth recording with a session, read from the instrument: source
        function, source level (A or V), voltage compliance (V), NPLC, output on, and for
        a voltage source its current compliance (A). A setting that cannot be read is
        ``"unreadable: <why>"``."""
        out: dict[str, Any] = {}
        reads: dict[str, tuple[str, Callable[[str], Any]]] = {
            "source_function": (":SOUR:FUNC?", lambda r: r.strip().upper()),
            "voltage_compliance_v": (":SENS:VOLT:PROT?", float),
            "nplc": (":SENS:VOLT:NPLC?", float),
            "output": (":OUTP?", lambda r: r.strip() == "1"),
        }
        with self.lock:
            for key, (query, cast) in reads.items():
                out[key] = read_setting(self, query, cast)
            function = out["source_function"]
            if function in ("CURR", "VOLT"):
                out["source_level"] = read_setting(self, f":SOUR:{function}?", float)
            if function == "VOLT":
                out["current_compliance_a"] = read_setting(self, ":SENS:CURR:PROT?", float)
        return out

    # -- shutdown ------------------------------------------------------------------------
    def shutdown(self, ramp_step_a: float | None = None, ramp_delay_s: float | None = None
                 ) -> SafeStateReport:
        """Bring the source to a confirmed safe state; returns a :class:`SafeStateReport`.

        If the last exchange failed (a stale or garbled reply, a timeout, an interrupt,
        a lost link) the link is resynced first. Then: abort any sweep, read the source
        function, leave list mode, read the present level (resync and start again once if
        any of that fails), ramp the level to 0 in steps of at most ``ramp_step_a`` (A;
        ``ramp_step_v`` for a voltage source) with ``ramp_delay_s`` (s) between them,
        turn the output off, and confirm: ``:OUTP?`` must answer 0 and ``:SOUR:CURR?`` 0 A
        (retried once after a resync, with the output turned off again). The output is
        turned off even if the ramp failed: a source left on is worse than one switched
        off at a level.

        Never raises for the instrument's sake: what went wrong is in ``problems`` and
        ``confirmed`` says whether the instrument read back safe (also logged as an error
        when not). Ctrl-C and SIGTERM during the shutdown are held until it is done and
        then re-raised (:func:`~instruments.transport.interrupts_deferred`); a
        ``KeyboardInterrupt`` raised inside a step anyway (from a hook) repeats that step
        (each step is idempotent) and is re-raised at the end; :attr:`last_shutdown`
        keeps the report then.
        """
        step = self.ramp_step_a if ramp_step_a is None else ramp_step_a
        delay = self.ramp_delay_s if ramp_delay_s is None else ramp_delay_s
        if not step > 0:
            raise ValueError(f"ramp_step_a must be > 0 A, got {step!r}")
        report = SafeStateReport(self.name)
        self.last_shutdown = report
        try:
            with self.lock, interrupts_deferred() as pending:
                def steady(fn, *args):
                    return call_through_interrupts(pending, fn, *args)

                if self.link_suspect:
                    self._resync_noted(report, f"the last exchange failed ({self.link_suspect})")
                try:
                    steady(self.write, ":ABOR")
                except InstrumentError as exc:
                    report.problems.append(f":ABOR: {exc}")
                function = self._ramp_down(report, steady, step, delay)
                self._output_off(report, steady)
                self._confirm_off(report, steady, function, step, delay)
        finally:
            self._list_role, self._list_points = "master", None
            if not report.confirmed:
                log.error("%s: shutdown NOT confirmed: %s", self.name,
                          "; ".join(report.problems) or "no reason recorded")
        Instrument.shutdown(self)
        return report

    def safe_off(self) -> SafeStateReport:
        """:meth:`shutdown` with the class defaults :attr:`ramp_step_a` and
        :attr:`ramp_delay_s`."""
        return self.shutdown()

    def _ramp_down(self, report: SafeStateReport, steady, step: float, delay: float
                   ) -> str | None:
        """Read the present state and ramp its level to 0; the function, None if unread."""
        function = None
        for attempt in range(2):
            try:
                function = steady(self.ask, ":SOUR:FUNC?").strip().upper()
                # In list mode the fixed level does not drive the output: leave it first.
                steady(self.write, f":SOUR:{function}:MODE FIX")
                level = float(steady(self.ask, f":SOUR:{function}?"))
                report.last_level = level
                report.state["before"] = {"function": function, "level": level}
                size = step if function == "CURR" else self.ramp_step_v
                for value in ramp_levels(level, size):
                    steady(self.write, f":SOUR:{function} {value:.9g}")
                    report.last_level = value
                    if delay > 0:
                        time.sleep(delay)
                if function == "VOLT":
                    # The idle current level too: the confirmation reads it, and a later
                    # switch to a current source must start at 0 A.
                    steady(self.write, ":SOUR:CURR 0")
                return function
            except InstrumentError as exc:
                level = "unknown" if report.last_level is None else f"{report.last_level:.9g}"
                report.problems.append(f"ramp to 0 stopped (level {level}): {exc}")
                if attempt or not self._resync_noted(report, "to ramp down"):
                    return function
        return function

    def _output_off(self, report: SafeStateReport, steady) -> None:
        try:
            steady(self.write, ":OUTP OFF")
        except InstrumentError as exc:
            report.problems.append(f":OUTP OFF: {exc}")
            if self._resync_noted(report, "to turn the output off"):
                try:
                    steady(self.write, ":OUTP OFF")
                except InstrumentError as again:
                    report.problems.append(f":OUTP OFF after a resync: {again}")

    def _confirm_off(self, report: SafeStateReport, steady, function: str | None,
                     step: float, delay: float) -> None:
        levels = [":SOUR:CURR?"] + ([":SOUR:VOLT?"] if function == "VOLT" else [])
        for attempt in range(2):
            try:
                output = steady(self.ask, ":OUTP?").strip()
                read = {q: float(steady(self.ask, q)) for q in levels}
                report.state["after"] = {":OUTP?": output, **read}
                report.last_level = read[levels[-1]]
                if output == "0" and all(v == 0.0 for v in read.values()):
                    report.confirmed = True
                    return
                report.problems.append(f"not safe after :OUTP OFF: :OUTP? {output}, "
                                       + ", ".join(f"{q} {v:g}" for q, v in read.items()))
            except InstrumentError as exc:
                report.problems.append(f"confirming the safe state: {exc}")
            if attempt or not self._resync_noted(report, "to confirm the safe state"):
                return
            # Once more on the realigned link: ramp what is left to 0, output off, read back.
            function = self._ramp_down(report, steady, step, delay) or function
            self._output_off(report, steady)


def _check_currents(values) -> None:
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(values)) or np.any(np.abs(values) > MAX_CURRENT_A):
        raise ValueError(f"source currents must be finite and within +-{MAX_CURRENT_A} A")


def _line(line: int) -> int:
    if line not in range(1, 5):
        raise ValueError(f"trigger-link lines are 1 to 4, got {line!r}")
    return line
