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
* :meth:`Keithley2400.shutdown` / :meth:`Keithley2400.safe_off`: abort, ramp the source
  to zero in bounded steps, output off;
* :meth:`Keithley2400.check_errors_raise` and :attr:`Keithley2400.capabilities`.

Units: A, V, s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymeasure.instruments import Instrument
from pymeasure.instruments.keithley import Keithley2400 as _PymeasureKeithley2400

from instruments.transport import (
    GarbledReply,
    InstrumentError,
    InstrumentReportedError,
    InstrumentTimeout,
    LockedInstrumentMixin,
    drain_scpi_errors,
)

LIST_CHUNK = 100  # values per :SOUR:LIST:CURR command the 2400 accepts
MAX_LIST_POINTS = 2500  # the 2400's list and trigger-count limit
MAX_CURRENT_A = 1.05  # the 2400's source range
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


def ramp_levels(start: float, step: float) -> list[float]:
    """Levels from ``start`` to exactly 0, each at most ``step`` from the previous one."""
    if not step > 0:
        raise ValueError(f"ramp step must be > 0, got {step!r}")
    n = math.ceil(abs(start) / step - 1e-9)
    # "+ 0.0" turns a negative start's final -0.0 into 0.0.
    return [start * (n - k) / n + 0.0 for k in range(1, n + 1)]


class Keithley2400(LockedInstrumentMixin, _PymeasureKeithley2400):
    """Keithley 2400 SourceMeter for labctl (see the module docstring).

    ``adapter``: a transport from :func:`instruments.open_adapter` (or any pymeasure
    adapter); no I/O here beyond pymeasure's own ``:FORMAT:ELEMENTS`` write.
    """

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

    def __init__(self, adapter, name: str = "Keithley 2400 SourceMeter", **kwargs):
        super().__init__(adapter, name, **kwargs)
        # Which query reads a configured list sweep back: a master starts it itself
        # (:READ?), a slave was armed by :INIT and only fetches (:FETC?).
        self._list_role = "master"
        self._list_points: int | None = None

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
            self.write(f":SOUR:CURR {current_a:.9g}")
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

    def shutdown(self, ramp_step_a: float | None = None, ramp_delay_s: float | None = None
                 ) -> None:
        """Abort any sweep, ramp the source to 0 in steps of at most ``ramp_step_a`` (A)
        with ``ramp_delay_s`` (s) between them, and turn the output off.

        The output goes off even if the ramp fails (a garbled reply, a lost link that
        came back): a source left on is worse than one switched off at a level. Returns
        once the instrument confirms the output is off (:OUTP? is 0).
        """
        step = self.ramp_step_a if ramp_step_a is None else ramp_step_a
        delay = self.ramp_delay_s if ramp_delay_s is None else ramp_delay_s
        if not step > 0:
            raise ValueError(f"ramp_step_a must be > 0 A, got {step!r}")
        with self.lock:
            try:
                self.write(":ABOR")
                function = self.ask(":SOUR:FUNC?").strip().strip('"').upper()
                if function.startswith("VOLT"):
                    self._ramp_to_zero("VOLT", self.ramp_step_v, delay)
                else:
                    self._ramp_to_zero("CURR", step, delay)
            finally:
                self.write(":OUTP OFF")
                self._list_role, self._list_points = "master", None
            state = self.ask(":OUTP?").strip()
        if state not in ("0", "OFF"):
            raise InstrumentError(f"{self.name}: output still on after :OUTP OFF "
                                  f"(:OUTP? answered {state!r})")
        Instrument.shutdown(self)

    def safe_off(self) -> None:
        """:meth:`shutdown` with the class defaults :attr:`ramp_step_a` and
        :attr:`ramp_delay_s`."""
        self.shutdown()

    def _ramp_to_zero(self, function: str, step: float, delay: float) -> None:
        # In list mode the fixed level does not drive the output: leave it first.
        self.write(f":SOUR:{function}:MODE FIX")
        reply = self.ask(f":SOUR:{function}?")
        try:
            level = float(reply)
        except ValueError:
            raise GarbledReply(self.name, reply, "expected the source level") from None
        for value in ramp_levels(level, step):
            self.write(f":SOUR:{function} {value:.9g}")
            if delay > 0:
                time.sleep(delay)


def _check_currents(values) -> None:
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(values)) or np.any(np.abs(values) > MAX_CURRENT_A):
        raise ValueError(f"source currents must be finite and within +-{MAX_CURRENT_A} A")


def _line(line: int) -> int:
    if line not in range(1, 5):
        raise ValueError(f"trigger-link lines are 1 to 4, got {line!r}")
    return line
