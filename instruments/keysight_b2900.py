"""Keysight B2902A two-channel source/measure unit: a pymeasure driver with channels.

:class:`KeysightB2902A` is a pymeasure ``Instrument`` whose channels ``ch_1`` and ``ch_2``
(:class:`B2900Channel`, ``Instrument.ChannelCreator``) each offer what the station uses on a
Keithley 2400 (:mod:`instruments.keithley2400`): :meth:`B2900Channel.prepare_current_source`,
the ``source_current`` control, :meth:`B2900Channel.measure_once` (a spot ``:MEAS? (@c)``,
a :class:`B2900Readings`), :meth:`B2900Channel.ramp_to`, :meth:`B2900Channel.present_state`,
:meth:`B2900Channel.shutdown` (a :class:`~instruments.transport.SafeStateReport`),
:meth:`B2900Channel.configuration`, :meth:`B2900Channel.check_errors_raise` and
``capabilities``; and voltage sourcing as on the 2400, capped per channel
(:class:`~instruments.voltage_source.CappedVoltageSource`): ``limit_voltage_source`` (the
station's pair limits: |V| <= compliance_v, current compliance <= max_current_a, refused
beyond before anything is sent), :meth:`B2900Channel.prepare_voltage_source`,
``source_voltage``, ``compliance_current``, ``ramp_voltage_to``,
``source_voltage_and_measure``. The instrument adds
:meth:`KeysightB2902A.pair_list_sweep`: both channels biased from their lists in lockstep by
one ``:INIT (@1,2)``, read back by one ``:FETC:ARR? (@1,2)`` as a binary block, channel 1's
transient trigger output pulsing a Digital I/O line per step (for an ADC cabled to it);
and the same lists as a slave of another instrument's trigger output
(:meth:`KeysightB2902A.arm_list_slave`, :meth:`KeysightB2902A.fetch_list_slave`): the
channels' transient and acquire trigger sources ``EXT<line>`` (a Digital I/O pin), armed by
one ``:INIT``, one step per pulse on that line.

Commands follow the B2900 Series SCPI Command Reference (channel suffix ``[c]``, channel
lists ``(@1,2)``, ``:FORM[:DATA] REAL,64`` definite-length blocks, status word Table 1-2:
bit 0 current source, bits 1-2 compliance). Every text reply is checked against what its
command answers (:meth:`KeysightB2902A.reply_rule`); no I/O in ``__init__``. Units: A, V, s.
"""

from __future__ import annotations

import logging
import math
import re
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pymeasure.instruments import Channel, Instrument, SCPIMixin
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from instruments import replies
from instruments.keithley2400 import Readings, SourceState
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

MAX_CURRENT_A = 3.03  # top of the 3 A source range
MAX_VOLTAGE_V = 210.0  # top of the 200 V source range
MAX_LIST_POINTS = 2500  # per channel list (command reference)
NPLC_RANGE = (4e-4, 120.0)  # aperture 8 us to 2 s at 50 or 60 Hz
STATUS_COMPLIANCE = 6  # status bits 1-2: the channel is in compliance
DIO_LINES = range(1, 15)  # Digital I/O pins EXT1 to EXT14
MIN_TRIGGER_INTERVAL_S = 20e-6  # B2901A/B2902A minimum arm/trigger interval (data sheet)
# Elements of every reading this driver asks for, in the instrument's fixed order.
ELEMENTS = "VOLT,CURR,RES,TIME,STAT"
N_ELEMENTS = 5
DATA_FORMATS = {"REAL,32": ("f", 4), "REAL,64": ("d", 8)}
NAN = 9.91e37  # the ASCII "not a number", also put where a block holds NaN

_RULES: dict[str, Callable[[str], str | None]] = {
    "*IDN?": replies.text,
    "*OPC?": replies.exactly("1"),
    "*STB?": replies.integer,
    "*ESR?": replies.integer,
    "SYST:ERR?": replies.scpi_error,
    "SYST:ERR:NEXT?": replies.scpi_error,
    "SYST:ERR:COUN?": replies.integer,
    "SOUR:FUNC:MODE?": replies.one_of("CURR", "VOLT"),
    "OUTP?": replies.flag,
    "OUTP:OFF:MODE?": replies.one_of("ZERO", "HIZ", "NORM"),
    "SOUR:CURR?": replies.number_in(-MAX_CURRENT_A, MAX_CURRENT_A),
    "SOUR:VOLT?": replies.number_in(-MAX_VOLTAGE_V, MAX_VOLTAGE_V),
    "SOUR:CURR:MODE?": replies.one_of("FIX", "LIST", "SWE"),
    "SOUR:VOLT:MODE?": replies.one_of("FIX", "LIST", "SWE"),
    "SOUR:LIST:CURR:POIN?": replies.integer_in(range(1, MAX_LIST_POINTS + 1)),
    "SENS:VOLT:PROT?": replies.number_in(0.0, MAX_VOLTAGE_V),
    "SENS:CURR:PROT?": replies.number_in(0.0, MAX_CURRENT_A),
    "SENS:VOLT:NPLC?": replies.number_in(*NPLC_RANGE),
    "SENS:CURR:NPLC?": replies.number_in(*NPLC_RANGE),
    "FORM?": replies.one_of("ASC", "REAL,32", "REAL,64"),
    "FORM:ELEM:SENS?": replies.text,
}
_CHANNEL_SUFFIX = re.compile(r"\b(SOUR|SENS|OUTP|TRIG|ARM)2\b")
_CHANNELS_ARG = re.compile(r"\(@([12])(?:[,:]([12]))?\)")


class B2900Readings(Readings):
    """:class:`~instruments.keithley2400.Readings` with the B2900's status word: the
    compliance flag is status bits 1-2 (Table 1-2), not the 2400's bit 3."""

    @property
    def compliance(self) -> np.ndarray:
        """True where the channel was in compliance (status bits 1-2)."""
        return (self.status & STATUS_COMPLIANCE) != 0

    @classmethod
    def from_array(cls, table: np.ndarray) -> B2900Readings:
        """From rows of (V, I, R, t, status)."""
        return cls(table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy(),
                   table[:, 3].copy(), table[:, 4].astype(np.int64))


def _check_levels(values: np.ndarray, limit: float, unit: str) -> None:
    if not np.all(np.isfinite(values)) or np.any(np.abs(values) > limit):
        raise ValueError(f"source levels must be finite and within +-{limit:g} {unit}")


class B2900Channel(RampedSource, CappedVoltageSource, Channel):
    """One channel of a B2902A ("1" or "2"): the methods the station uses on a 2400."""

    source_function = Channel.control(
        ":SOUR{ch}:FUNC:MODE?", ":SOUR{ch}:FUNC:MODE %s",
        """Control the source function (str, ``CURR`` or ``VOLT``).""",
        validator=strict_discrete_set, values=("CURR", "VOLT"),
    )
    source_current = Channel.control(
        ":SOUR{ch}:CURR?", ":SOUR{ch}:CURR %.9g",
        """Control the fixed source current in A (float, strictly from -3.03 to 3.03).""",
        validator=strict_range, values=[-MAX_CURRENT_A, MAX_CURRENT_A],
    )
    # Voltage sourcing, capped per channel (dynamic): limit_voltage_source() narrows both.
    source_voltage = Channel.control(
        ":SOUR{ch}:VOLT?", ":SOUR{ch}:VOLT %.9g",
        """Control the fixed source voltage in V (float, strictly from -210 to 210, or
        within the cap :meth:`limit_voltage_source` set).""",
        validator=strict_range, values=[-MAX_VOLTAGE_V, MAX_VOLTAGE_V], dynamic=True,
    )
    voltage_compliance = Channel.control(
        ":SENS{ch}:VOLT:PROT?", ":SENS{ch}:VOLT:PROT %.9g",
        """Control the voltage limit of a current source in V (float, 0 to 210).""",
        validator=strict_range, values=[0.0, MAX_VOLTAGE_V], check_set_errors=True,
    )
    compliance_current = Channel.control(
        ":SENS{ch}:CURR:PROT?", ":SENS{ch}:CURR:PROT %.9g",
        """Control the current limit of a voltage source in A (float, 0 to 3.03, or to the
        cap :meth:`limit_voltage_source` set).""",
        validator=strict_range, values=[0.0, MAX_CURRENT_A], check_set_errors=True,
        dynamic=True,
    )
    nplc = Channel.control(
        ":SENS{ch}:VOLT:NPLC?", ":SENS{ch}:VOLT:NPLC %g",
        """Control the integration time in power-line cycles (float, 4e-4 to 120; the
        instrument refuses more than an aperture of 8 us to 2 s).""",
        validator=strict_range, values=list(NPLC_RANGE), check_set_errors=True,
    )
    output_enabled = Channel.control(
        ":OUTP{ch}?", ":OUTP{ch} %d",
        """Control whether the output is on (bool).""",
        validator=strict_discrete_set, map_values=True, values={True: 1, False: 0},
    )
    output_off_mode = Channel.control(
        ":OUTP{ch}:OFF:MODE?", ":OUTP{ch}:OFF:MODE %s",
        """Control the state the output takes when turned off (str: ZERO, HIZ, NORM).""",
        validator=strict_discrete_set, values=("ZERO", "HIZ", "NORM"), check_set_errors=True,
    )

    #: Defaults of :meth:`shutdown`: largest step (A) and pause between steps (s).
    ramp_step_a = 20e-6
    ramp_delay_s = 1e-3
    #: Largest step (V) when a voltage source has to be ramped down.
    ramp_step_v = 0.05
    max_voltage_v = voltage_cap_v = MAX_VOLTAGE_V
    max_compliance_a = compliance_cap_a = MAX_CURRENT_A

    # -- plumbing ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"{self.parent.name} channel {self.id}"

    @property
    def adapter(self) -> Any:
        return self.parent.adapter

    @property
    def lock(self):
        return self.parent.lock

    @property
    def capabilities(self) -> dict[str, Any]:
        return self.parent.capabilities

    def ask(self, command: str, query_delay: float | None = None) -> str:
        # Through the instrument, so that every reply is checked (and locked).
        return self.parent.ask(self.insert_id(command), query_delay)

    def check_errors_raise(self) -> None:
        """Empty the instrument's error queue; raise with its texts if it held any."""
        self.parent.check_errors_raise()

    def check_set_errors(self) -> list:
        self.parent.check_errors_raise()
        return []

    # -- host-paced --------------------------------------------------------------------
    def prepare_current_source(self, *, compliance_v: float, nplc: float = 1.0) -> None:
        """Current source at 0 A, fixed mode, voltage and current sensed with
        ``compliance_v`` (V) at ``nplc`` power-line cycles, output on."""
        if not 0 < compliance_v <= MAX_VOLTAGE_V:
            raise ValueError(f"compliance_v must be in (0, 210] V, got {compliance_v!r}")
        if not NPLC_RANGE[0] <= nplc <= NPLC_RANGE[1]:
            raise ValueError(f"nplc must be in [4e-4, 120], got {nplc!r}")
        with self.lock:
            self.write(":SOUR{ch}:FUNC:MODE CURR")
            self.write(":SOUR{ch}:CURR:MODE FIX")
            self.write(":SOUR{ch}:CURR 0")
            self.write(':SENS{ch}:FUNC "VOLT","CURR"')
            self.write(f":SENS{{ch}}:VOLT:PROT {compliance_v:.9g}")
            self.write(f":SENS{{ch}}:VOLT:NPLC {nplc:g}")
            self.write(":OUTP{ch} ON")
            self.check_errors_raise()

    def prepare_voltage_source(self, compliance_a: float, nplc: float = 1.0) -> None:
        """Voltage source at 0 V, fixed mode, voltage and current sensed at ``nplc``
        power-line cycles with a current compliance of ``compliance_a`` (A, within the cap of
        :meth:`limit_voltage_source`), output on.

        Whatever the channel sourced before is first ramped to zero (:meth:`ramp_to`), and
        the voltage level is zeroed before the function changes, so nothing jumps."""
        if not NPLC_RANGE[0] <= nplc <= NPLC_RANGE[1]:
            raise ValueError(f"nplc must be in [4e-4, 120], got {nplc!r}")
        self.check_compliance_a(compliance_a)
        with self.lock:
            self.ramp_to(0.0)
            self.write(":SOUR{ch}:VOLT:MODE FIX")
            self.source_voltage = 0.0
            self.compliance_current = compliance_a
            self.write(":SOUR{ch}:FUNC:MODE VOLT")
            self.write(':SENS{ch}:FUNC "VOLT","CURR"')
            self.write(f":SENS{{ch}}:CURR:NPLC {nplc:g}")
            self.write(":OUTP{ch} ON")
            self.check_errors_raise()

    def _write_voltage_uncapped(self, value_v: float) -> None:
        self.write(f":SOUR{{ch}}:VOLT {value_v:.9g}")

    def measure_once(self) -> B2900Readings:
        """One spot measurement of this channel (``:MEAS? (@c)``): length 1."""
        readings = self.parent.measure((int(self.id),))[int(self.id)]
        if len(readings) != 1:
            raise InstrumentError(f"{self.name}: :MEAS? gave {len(readings)} readings")
        return readings

    def source_and_measure(self, current_a: float) -> B2900Readings:
        """Set the source to ``current_a`` (A) and take one reading."""
        with self.lock:
            self.source_current = current_a
            return self.measure_once()

    # -- the present state ---------------------------------------------------------------
    def present_state(self) -> SourceState:
        """(output on, source function ``CURR``/``VOLT``, fixed level in A or V) as the
        instrument answers ``:OUTP?``, ``:SOUR:FUNC:MODE?`` and ``:SOUR:CURR?`` /
        ``:SOUR:VOLT?`` of this channel (each reply checked)."""
        with self.lock:
            output_on = self.ask(":OUTP{ch}?").strip() == "1"
            function = self.ask(":SOUR{ch}:FUNC:MODE?").strip().upper()
            level = float(self.ask(f":SOUR{{ch}}:{function}?"))
        return SourceState(output_on, function, level)

    def _check_level_a(self, level_a: float) -> None:
        _check_levels(np.array([level_a]), MAX_CURRENT_A, "A")

    def _write_level(self, function: str, value: float) -> None:
        self.write(f":SOUR{{ch}}:{function} {value:.9g}")

    def configuration(self) -> dict[str, Any]:
        """Settings worth recording, read from the instrument: source function and level
        (A or V), voltage and current limits, NPLC, output on, output-off mode. A setting
        that cannot be read is ``"unreadable: <why>"``."""
        reads: dict[str, tuple[str, Callable[[str], Any]]] = {
            "source_function": (":SOUR{ch}:FUNC:MODE?", lambda r: r.strip().upper()),
            "voltage_compliance_v": (":SENS{ch}:VOLT:PROT?", float),
            "current_compliance_a": (":SENS{ch}:CURR:PROT?", float),
            "nplc": (":SENS{ch}:VOLT:NPLC?", float),
            "output": (":OUTP{ch}?", lambda r: r.strip() == "1"),
            "output_off_mode": (":OUTP{ch}:OFF:MODE?", str.strip),
        }
        out: dict[str, Any] = {}
        with self.lock:
            for key, (query, cast) in reads.items():
                out[key] = read_setting(self, query, cast)
            if out["source_function"] in ("CURR", "VOLT"):
                out["source_level"] = read_setting(
                    self, f":SOUR{{ch}}:{out['source_function']}?", float)
        return out

    # -- shutdown ------------------------------------------------------------------------
    def shutdown(self, ramp_step_a: float | None = None, ramp_delay_s: float | None = None
                 ) -> SafeStateReport:
        """Bring this channel to a confirmed safe state; returns a SafeStateReport.

        Resync first if the last exchange failed; abort its trigger system, read the
        source function, leave list mode, read the fixed level, ramp it to 0 (steps of at
        most ``ramp_step_a`` A, or :attr:`ramp_step_v` V for a voltage source, with
        ``ramp_delay_s`` s between them), output off even if the ramp failed, then confirm
        ``:OUTP?`` 0 and the levels 0 (once more after a resync if not). Never raises for
        the instrument's sake; Ctrl-C and SIGTERM wait until it is done.
        """
        step = self.ramp_step_a if ramp_step_a is None else ramp_step_a
        delay = self.ramp_delay_s if ramp_delay_s is None else ramp_delay_s
        if not step > 0:
            raise ValueError(f"ramp_step_a must be > 0 A, got {step!r}")
        parent = self.parent
        report = SafeStateReport(self.name)
        with self.lock, interrupts_deferred() as pending:
            def steady(fn, *args):
                return call_through_interrupts(pending, fn, *args)

            if parent.link_suspect:
                parent._resync_noted(report, f"the last exchange failed ({parent.link_suspect})")
            for attempt in range(2):
                function = self._ramp_down(report, steady, step, delay)
                self._off(report, steady)
                if self._confirm(report, steady, function):
                    break
                if attempt or not parent._resync_noted(report, "to confirm the safe state"):
                    break
        if not report.confirmed:
            log.error("%s: shutdown NOT confirmed: %s", self.name,
                      "; ".join(report.problems) or "no reason recorded")
        return report

    def _ramp_down(self, report: SafeStateReport, steady, step: float, delay: float
                   ) -> str | None:
        function = None
        try:
            steady(self.write, ":ABOR (@{ch})")
            function = steady(self.ask, ":SOUR{ch}:FUNC:MODE?").strip().upper()
            # In list mode the fixed level does not drive the output: leave it first.
            steady(self.write, f":SOUR{{ch}}:{function}:MODE FIX")
            level = float(steady(self.ask, f":SOUR{{ch}}:{function}?"))
            report.last_level = level
            report.state.setdefault("before", {"function": function, "level": level})
            size = step if function == "CURR" else self.ramp_step_v
            for value in ramp_levels(level, size):
                steady(self.write, f":SOUR{{ch}}:{function} {value:.9g}")
                report.last_level = value
                if delay > 0:
                    time.sleep(delay)
        except InstrumentError as exc:
            shown = "unknown" if report.last_level is None else f"{report.last_level:.9g}"
            report.problems.append(f"ramp to 0 stopped (level {shown}): {exc}")
        return function

    def _off(self, report: SafeStateReport, steady) -> None:
        try:
            steady(self.write, ":OUTP{ch} OFF")
        except InstrumentError as exc:
            report.problems.append(f":OUTP OFF: {exc}")

    def _confirm(self, report: SafeStateReport, steady, function: str | None) -> bool:
        levels = [":SOUR{ch}:CURR?"] + ([":SOUR{ch}:VOLT?"] if function != "CURR" else [])
        try:
            output = steady(self.ask, ":OUTP{ch}?").strip()
            read = {q.replace("{ch}", str(self.id)): float(steady(self.ask, q)) for q in levels}
        except InstrumentError as exc:
            report.problems.append(f"confirming the safe state: {exc}")
            return False
        report.state["after"] = {f":OUTP{self.id}?": output, **read}
        report.last_level = list(read.values())[-1]
        if output == "0" and all(v == 0.0 for v in read.values()):
            report.confirmed = True
            return True
        report.problems.append(f"not safe after :OUTP OFF: :OUTP? {output}, "
                               + ", ".join(f"{q} {v:g}" for q, v in read.items()))
        return False


class KeysightB2902A(LockedInstrumentMixin, SCPIMixin, Instrument):
    """Keysight B2902A (see the module docstring); ``ch_1`` and ``ch_2`` are its channels.

    ``adapter``: a transport from :func:`instruments.open_adapter` (or any pymeasure
    adapter). No I/O here.
    """

    ch_1 = Instrument.ChannelCreator(B2900Channel, 1)
    ch_2 = Instrument.ChannelCreator(B2900Channel, 2)

    #: What the protocol layer may rely on. Both channels sweep together from one
    #: :meth:`pair_list_sweep`, or as a slave of another instrument's trigger output
    #: (``list_slave``: :meth:`arm_list_slave` / :meth:`fetch_list_slave`); no 2400-style
    #: per-channel trigger-link slave (``trigger_link``).
    capabilities = {
        "list_sweep": True,
        "trigger_link": False,
        "list_slave": True,
        "paired_list_sweep": True,
        "voltage_source": True,
        "trigger_output": True,
        "binary_block": True,
        "channels": ("1", "2"),
        "max_list_points": MAX_LIST_POINTS,
        "list_chunk": MAX_LIST_POINTS,
    }

    def __init__(self, adapter, name: str = "Keysight B2902A", **kwargs):
        super().__init__(adapter, name, **kwargs)
        # What this driver last put on the wire for the data format (None: unknown, e.g.
        # after *RST, so the next reading query sets it).
        self._format: str | None = None
        # The armed slave sweep: (channels, points, data format, line), or None.
        self._slave: tuple[tuple[int, ...], int, str, int] | None = None
        #: The report of the last :meth:`shutdown`.
        self.last_shutdown: SafeStateReport | None = None

    def channel(self, number: int | str) -> B2900Channel:
        """Channel 1 or 2; ValueError for another."""
        if str(number) not in ("1", "2"):
            raise ValueError(f"{self.name} has channels 1 and 2, not {number!r}")
        return self.ch_1 if str(number) == "1" else self.ch_2

    # -- replies -------------------------------------------------------------------------
    def write(self, command: str, **kwargs: Any) -> None:
        super().write(command, **kwargs)
        if re.search(r"\*RST|FORM", command, re.IGNORECASE):
            self._format = None

    def reply_rule(self, command: str) -> Callable[[str], str | None] | None:
        """The check of ``command``'s reply (channel 2's headers as channel 1's); for a
        ``;``-joined message, that of its one query."""
        if ";" in command:
            queries = [h for h, _ in replies.scpi_commands(command) if h.endswith("?")]
            if len(queries) != 1:
                return None
            head = queries[0]
        else:
            head = replies.scpi_header(command)
        head = _CHANNEL_SUFFIX.sub(r"\1", head)
        rule = _RULES.get(head)
        if rule is not None:
            return rule
        if head == "MEAS?":
            n = len(_channels_of(command)) * N_ELEMENTS
            return replies.numbers(n, f"{n // N_ELEMENTS} channel(s) of {N_ELEMENTS} elements")
        return None

    def check_errors_raise(self) -> None:
        """Empty the error queue (:SYST:ERR?); raise :class:`InstrumentReportedError` with
        the instrument's own texts if it held any."""
        errors = drain_scpi_errors(self, ":SYST:ERR?")
        if errors:
            raise InstrumentReportedError(self.name, errors)

    def check_set_errors(self) -> list:
        self.check_errors_raise()
        return []

    # -- readings ------------------------------------------------------------------------
    def _use_format(self, data_format: str) -> None:
        if self._format != data_format:
            self.write(f":FORM:ELEM:SENS {ELEMENTS};:FORM {data_format};:FORM:BORD NORM")
            self._format = data_format

    def measure(self, channels: Sequence[int] = (1, 2)) -> dict[int, B2900Readings]:
        """One spot measurement (``:MEAS? (@...)``) of each channel in ``channels``."""
        chans = sorted(set(int(c) for c in channels))
        if not chans or not set(chans) <= {1, 2}:
            raise ValueError(f"{self.name}: channels are 1 and 2, got {list(channels)!r}")
        with self.lock:
            self._use_format("ASC")
            reply = self.ask(f":MEAS? (@{','.join(map(str, chans))})")
        table = _numbers(self.name, reply).reshape(len(chans), N_ELEMENTS)
        return {c: B2900Readings.from_array(table[i : i + 1]) for i, c in enumerate(chans)}

    def pair_list_sweep(self, levels_1: Sequence[float], levels_2: Sequence[float], *,
                        nplc: float, trigger_line: int | None = 1,
                        data_format: str = "REAL,64", timeout_s: float | None = None
                        ) -> tuple[B2900Readings, B2900Readings]:
        """Both channels sourced from their current lists (A) in lockstep, one reading each
        per step at ``nplc``; returns (channel 1's, channel 2's readings).

        Loads both lists, sets both trigger counts to the points, the transient trigger
        output of channel 1 on Digital I/O line ``trigger_line`` (1 to 14; None: no pulse)
        and channel 2's off (one pulse per step), then one ``:INIT (@1,2)`` (with
        ``*OPC?``, which answers when the sweep is done; ``timeout_s`` s overrides the
        transport timeout for it) and one ``:FETC:ARR? (@1,2)`` as a ``data_format``
        (``REAL,64`` or ``REAL,32``) block. ``timeout_s`` defaults to the transport's
        timeout plus :func:`sweep_time_bound`. Channels must be prepared as current sources
        (:meth:`B2900Channel.prepare_current_source`). ValueError for lists of unequal or
        bad length, non-finite levels or levels beyond 3.03 A, a bad line or format.
        """
        a = np.asarray(levels_1, dtype=float).ravel()
        b = np.asarray(levels_2, dtype=float).ravel()
        if len(a) != len(b) or not 1 <= len(a) <= MAX_LIST_POINTS:
            raise ValueError(f"both lists need the same 1 to {MAX_LIST_POINTS} points, got "
                             f"{len(a)} and {len(b)}")
        _check_levels(np.concatenate([a, b]), MAX_CURRENT_A, "A")
        if not NPLC_RANGE[0] <= nplc <= NPLC_RANGE[1]:
            raise ValueError(f"nplc must be in [4e-4, 120], got {nplc!r}")
        if trigger_line is not None and trigger_line not in DIO_LINES:
            raise ValueError(f"trigger lines are EXT1 to EXT14, got {trigger_line!r}")
        if data_format not in DATA_FORMATS:
            raise ValueError(f"data_format must be one of {sorted(DATA_FORMATS)}, "
                             f"got {data_format!r}")
        n = len(a)
        with self.lock:
            for ch, values in ((1, a), (2, b)):
                listed = ",".join(f"{v:.9g}" for v in values)
                self.write(f":SOUR{ch}:FUNC:MODE CURR;:SOUR{ch}:CURR:MODE LIST;"
                           f":SOUR{ch}:LIST:CURR {listed}")
                self.write(f":TRIG{ch}:ALL:COUN {n};:TRIG{ch}:ALL:SOUR AINT;"
                           f":SENS{ch}:VOLT:NPLC {nplc:g};:TRIG{ch}:ACQ:TOUT OFF")
            if trigger_line is None:
                self.write(":TRIG1:TRAN:TOUT OFF;:TRIG2:TRAN:TOUT OFF")
            else:
                self.write(f":TRIG1:TRAN:TOUT:SIGN EXT{trigger_line};:TRIG1:TRAN:TOUT ON;"
                           ":TRIG2:TRAN:TOUT OFF")
            self._use_format(data_format)
            self.check_errors_raise()
            if timeout_s is None and getattr(self.adapter, "timeout_s", None) is not None:
                timeout_s = self.adapter.timeout_s + sweep_time_bound(n, nplc)
            with self.timeout_scope(timeout_s):
                self.ask(":INIT (@1,2);*OPC?")
            values = self._fetch_block(":FETC:ARR? (@1,2)", data_format)
            self.check_errors_raise()
        per_step = 2 * N_ELEMENTS
        if len(values) != n * per_step:
            raise GarbledReply(self.name, f"{len(values)} values",
                               f"expected {n} steps x 2 channels x {N_ELEMENTS} elements",
                               command=":FETC:ARR? (@1,2)")
        table = values.reshape(n, 2, N_ELEMENTS)
        # NaN is the binary "not a number": fine for the resistance (not measured), not
        # elsewhere (a channel took fewer readings than the sweep has steps).
        others = np.delete(table, 2, axis=2)
        if not np.all(np.isfinite(others)):
            raise GarbledReply(self.name, f"{np.sum(~np.isfinite(others))} NaN/inf values",
                               "a reading the sweep should have taken is missing",
                               command=":FETC:ARR? (@1,2)")
        table[:, :, 2] = np.where(np.isfinite(table[:, :, 2]), table[:, :, 2], NAN)
        return (B2900Readings.from_array(table[:, 0, :]),
                B2900Readings.from_array(table[:, 1, :]))

    def arm_list_slave(self, levels: Mapping[int | str, Sequence[float]], *, nplc: float,
                       trigger_line: int = 1, data_format: str = "REAL,64") -> None:
        """Load each channel's current list (``{channel: levels in A}``, channels 1 and/or 2,
        lists of equal length) and arm it as a slave: transient and acquire trigger sources
        ``EXT<trigger_line>`` (Digital I/O pin 1 to 14), trigger counts the points, own
        trigger outputs off, one ``:INIT`` of the listed channels. Each pulse on the line
        then steps every listed channel and takes its reading at ``nplc``;
        :meth:`fetch_list_slave` returns them. The closing error-queue query returns only
        once the instrument has processed ``:INIT``, so the master may start right after.
        Channels must be prepared as current sources. ValueError for a bad channel, lists of
        unequal or bad length, levels beyond 3.03 A or not finite, a bad line, NPLC or
        format (nothing sent)."""
        chans = sorted(int(c) for c in levels)
        if not chans or not set(chans) <= {1, 2} or len(set(chans)) != len(chans):
            raise ValueError(f"{self.name}: channels are 1 and 2, got {list(levels)!r}")
        lists = {int(c): np.asarray(v, dtype=float).ravel() for c, v in levels.items()}
        n = len(lists[chans[0]])
        if any(len(v) != n for v in lists.values()) or not 1 <= n <= MAX_LIST_POINTS:
            raise ValueError(f"every list needs the same 1 to {MAX_LIST_POINTS} points, got "
                             f"{[len(lists[c]) for c in chans]}")
        _check_levels(np.concatenate(list(lists.values())), MAX_CURRENT_A, "A")
        if not NPLC_RANGE[0] <= nplc <= NPLC_RANGE[1]:
            raise ValueError(f"nplc must be in [4e-4, 120], got {nplc!r}")
        if trigger_line not in DIO_LINES:
            raise ValueError(f"trigger lines are EXT1 to EXT14, got {trigger_line!r}")
        if data_format not in DATA_FORMATS:
            raise ValueError(f"data_format must be one of {sorted(DATA_FORMATS)}, "
                             f"got {data_format!r}")
        with self.lock:
            for ch in chans:
                listed = ",".join(f"{v:.9g}" for v in lists[ch])
                self.write(f":SOUR{ch}:FUNC:MODE CURR;:SOUR{ch}:CURR:MODE LIST;"
                           f":SOUR{ch}:LIST:CURR {listed}")
                self.write(f":TRIG{ch}:ALL:COUN {n};:TRIG{ch}:TRAN:SOUR EXT{trigger_line};"
                           f":TRIG{ch}:ACQ:SOUR EXT{trigger_line};:SENS{ch}:VOLT:NPLC {nplc:g};"
                           f":TRIG{ch}:TRAN:TOUT OFF;:TRIG{ch}:ACQ:TOUT OFF")
            self._use_format(data_format)
            self.check_errors_raise()
            self.write(f":INIT (@{','.join(map(str, chans))})")
            self._slave = (tuple(chans), n, data_format, trigger_line)
            try:
                self.check_errors_raise()
            except InstrumentError:
                self._disarm_slave()
                raise

    def fetch_list_slave(self, *, timeout_s: float | None = None) -> dict[str, B2900Readings]:
        """The readings of the sweep :meth:`arm_list_slave` armed, by channel (``"1"``,
        ``"2"``), as one ``:FETC:ARR?`` binary block; the trigger sources are set back to
        AINT. ``timeout_s`` (s) overrides the transport's timeout for the block. If the
        sweep did not end (too few pulses on its line: the instrument answers nothing and
        queues -230) the sweep is aborted and :class:`InstrumentError` names the line and
        the instrument's errors."""
        if self._slave is None:
            raise InstrumentError(f"{self.name}: no slave list sweep is armed")
        chans, n, data_format, line = self._slave
        query = f":FETC:ARR? (@{','.join(map(str, chans))})"
        with self.lock:
            try:
                with self.timeout_scope(timeout_s):
                    values = self._fetch_block(query, data_format)
            except GarbledReply as exc:
                if not isinstance(exc.__cause__, InstrumentTimeout):
                    self._disarm_slave()
                    raise
                reported = ""
                try:
                    self.check_errors_raise()
                except InstrumentReportedError as err:
                    reported = f" ({err})"
                self._disarm_slave()
                self.ask("*OPC?")  # the abort has been carried out when this is answered
                raise InstrumentError(
                    f"{self.name}: the list sweep armed on EXT{line} (channels "
                    f"{', '.join(map(str, chans))}, {n} points) did not end: too few trigger "
                    f"pulses arrived; aborted{reported}") from exc
            self._disarm_slave()
            self.check_errors_raise()
        per_step = len(chans) * N_ELEMENTS
        if len(values) != n * per_step:
            raise GarbledReply(self.name, f"{len(values)} values",
                               f"expected {n} steps x {len(chans)} channel(s) x {N_ELEMENTS} "
                               "elements", command=query)
        table = values.reshape(n, len(chans), N_ELEMENTS)
        others = np.delete(table, 2, axis=2)
        if not np.all(np.isfinite(others)):
            raise GarbledReply(self.name, f"{np.sum(~np.isfinite(others))} NaN/inf values",
                               "a reading the sweep should have taken is missing",
                               command=query)
        table[:, :, 2] = np.where(np.isfinite(table[:, :, 2]), table[:, :, 2], NAN)
        return {str(c): B2900Readings.from_array(table[:, i, :]) for i, c in enumerate(chans)}

    def _disarm_slave(self) -> None:
        """Abort the armed slave sweep (a no-op once it ended) and set its channels'
        trigger sources back to AINT (no reply read)."""
        if self._slave is None:
            return
        chans = self._slave[0]
        self._slave = None
        self.write(f":ABOR (@{','.join(map(str, chans))});"
                   + ";".join(f":TRIG{c}:ALL:SOUR AINT" for c in chans))

    def _fetch_block(self, query: str, data_format: str) -> np.ndarray:
        """The values of a definite-length block reply ``#<d><length><bytes>\\n``."""
        code, size = DATA_FORMATS[data_format]
        self.write(query)
        try:
            head = self.read_bytes(2)
            if head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
                raise GarbledReply(self.name, head, "expected a #<digits> block header",
                                   command=query)
            digits = self.read_bytes(int(head[1:2]))
            if not digits.isdigit():
                raise GarbledReply(self.name, head + digits, "bad block length",
                                   command=query)
            length = int(digits)
            body = self.read_bytes(length + 1)
        except InstrumentTimeout as exc:
            self.mark_suspect(f"{query!r}: short block")
            raise GarbledReply(self.name, exc.partial, "short block", command=query) from exc
        except GarbledReply:
            self.mark_suspect(f"{query!r}: bad block")
            raise
        if length % size or body[-1:] != b"\n":
            self.mark_suspect(f"{query!r}: bad block")
            raise GarbledReply(self.name, head + digits + body[:40],
                               f"{length} bytes is not whole {size}-byte values, or no "
                               "newline after the block", command=query)
        return np.array(struct.unpack(f">{length // size}{code}", body[:-1]), dtype=float)

    # -- whole instrument --------------------------------------------------------------
    def prepare_current_source(self, *, compliance_v: float, nplc: float = 1.0) -> None:
        """:meth:`B2900Channel.prepare_current_source` on both channels."""
        for ch in (self.ch_1, self.ch_2):
            ch.prepare_current_source(compliance_v=compliance_v, nplc=nplc)

    def ramp_to(self, level_a: float, step_a: float | None = None,
                delay_s: float | None = None) -> float:
        """:meth:`B2900Channel.ramp_to` on channel 1, then on channel 2."""
        for ch in (self.ch_1, self.ch_2):
            ch.ramp_to(level_a, step_a, delay_s)
        return float(level_a)

    def configuration(self) -> dict[str, Any]:
        """Both channels' :meth:`B2900Channel.configuration`, keyed ``"1"`` and ``"2"``."""
        return {"1": self.ch_1.configuration(), "2": self.ch_2.configuration()}

    def shutdown(self, ramp_step_a: float | None = None, ramp_delay_s: float | None = None
                 ) -> SafeStateReport:
        """Both channels' :meth:`B2900Channel.shutdown`; confirmed when both are. The
        channels' problems and notes are prefixed with their names."""
        report = SafeStateReport(self.name)
        self.last_shutdown = report
        parts = [ch.shutdown(ramp_step_a, ramp_delay_s) for ch in (self.ch_1, self.ch_2)]
        report.confirmed = all(p.confirmed for p in parts)
        for p in parts:
            report.problems += [f"{p.instrument}: {x}" for x in p.problems]
            report.notes += [f"{p.instrument}: {x}" for x in p.notes]
            report.state[p.instrument] = p.state
        report.last_level = max((abs(p.last_level) for p in parts if p.last_level is not None),
                                default=None)
        self._format = None
        self._slave = None  # (each channel's shutdown began with :ABOR)
        Instrument.shutdown(self)
        return report


def sweep_time_bound(points: int, nplc: float) -> float:
    """Upper bound (s) of a paired list sweep of ``points`` steps at ``nplc`` on a B2902A at
    50 Hz mains: twice the 20 us minimum trigger interval or the aperture plus 1 ms of
    overhead per step, whichever is longer."""
    return 2.0 * points * max(MIN_TRIGGER_INTERVAL_S, nplc / 50.0 + 1e-3)


def _channels_of(command: str) -> list[str]:
    m = _CHANNELS_ARG.search(command.replace(" ", ""))
    if m is None:
        return ["1"]
    return sorted({m.group(1), m.group(2) or m.group(1)})


def _numbers(instrument: str, reply: str) -> np.ndarray:
    try:
        values = np.array([float(p) for p in reply.strip().split(",")])
    except ValueError:
        raise GarbledReply(instrument, reply, "not a list of numbers") from None
    if not np.all(np.isfinite(values)) or math.isnan(values.sum()):
        raise GarbledReply(instrument, reply, "non-finite values")
    return values
