"""Keithley 2600B System SourceMeter (2602B: channels smua, smub): pymeasure's driver plus
what labctl needs.

:class:`Keithley2600` subclasses :class:`pymeasure.instruments.keithley.Keithley2600`
(TSP over a line link: queries are ``print(...)``, values tab-separated) and replaces its
two channels ``ChA``/``ChB`` with :class:`Keithley2600Channel`, a subclass of pymeasure's
``Channel`` that has what the station uses on a Keithley 2400 channel:
``prepare_current_source``, ``source_current``, ``measure_once`` (returning
:class:`instruments.keithley2400.Readings`), ``ramp_to``, ``present_state``, ``shutdown``
(a :class:`~instruments.transport.SafeStateReport`), ``configuration``,
``check_errors_raise`` and ``capabilities``; and voltage sourcing as on the 2400,
capped per channel (:class:`~instruments.voltage_source.CappedVoltageSource`):
``limit_voltage_source`` (the station's pair limits: |V| <= compliance_v, current limit
``source.limiti`` <= max_current_a, refused beyond before anything is sent),
``prepare_voltage_source``, ``source_voltage``, ``compliance_current``,
``ramp_voltage_to``, ``source_voltage_and_measure``. :meth:`Keithley2600.channel` gives a
channel by letter.

:meth:`Keithley2600.pair_list_sweep` runs a pair's whole list on both channels with ONE
trigger-model script (``loadandrunscript`` ... ``endscript``, one write) and ONE binary
read (``printbuffer`` in ``format.REAL32``, little endian): both channels step in lockstep
(each step's measurement waits on a blender of both SOURCE_COMPLETE events) and digio
trigger line ``trigger_line`` pulses once per step, after both sources have changed, so a
cabled ADC samples every step. Its readings come back as one :class:`Readings` per
channel (the 2600B's buffer status bit 0x40, compliance, is reported as the 2400's status
bit 3, so ``Readings.compliance`` means the same for both instruments).

Every reply is checked (:meth:`Keithley2600.reply_rule`): numbers where numbers are
printed, the tab-separated fields of ``errorqueue.next()``, the ``#0`` header, length and
trailing newline of the binary block. Units: A, V, s.

As a slave of another instrument's trigger output (a B2902A's or 2400's line, a second
2602B's digio line), :meth:`Keithley2600.arm_list_slave` loads the listed channels' lists
with their source stimulus ``digio.trigger[N].EVENT_ID`` (line N a trigger input,
``digio.TRIG_RISING``) and initiates them; each pulse on line N steps them.
:meth:`Keithley2600.fetch_list_slave` polls ``status.operation.sweeping.condition`` until
the sweep ended and reads the buffers as one binary block.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pymeasure.instruments import Instrument
from pymeasure.instruments.keithley.keithley2600 import Channel as _PymeasureChannel
from pymeasure.instruments.keithley.keithley2600 import Keithley2600 as _PymeasureKeithley2600
from pymeasure.instruments.validators import strict_range

from instruments import replies
from instruments.keithley2400 import STATUS_COMPLIANCE, Readings, SourceState
from instruments.ramps import RampedSource, ramp_levels
from instruments.transport import (
    GarbledReply,
    InstrumentError,
    InstrumentReportedError,
    InstrumentTimeout,
    LockedInstrumentMixin,
    SafeStateReport,
    read_setting,
)
from instruments.voltage_source import CappedVoltageSource

log = logging.getLogger(__name__)

MAX_CURRENT_A = 3.03  # 3 A range, 101 % full scale
MAX_VOLTAGE_V = 40.4  # 40 V range, 101 % full scale
MAX_LIMIT_I_A = 3.0  # source.limiti: 10 nA to 3 A (Reference Manual, smuX.source.limitY)
MAX_LIST_POINTS = 60_000  # a dedicated reading buffer with timestamps holds > 60,000
BUFFER_COMPLIANCE = 0x40  # reading-buffer status bit: the source was limited
NAN_READING = 9.91e37
FIELDS_PER_STEP = 8  # i, v, status, t of smua then of smub
CHANNELS = ("a", "b")
_NUMBER_ATTRS = ("source.func", "source.output", "source.leveli", "source.levelv",
                 "source.limitv", "source.limiti", "measure.nplc", "source.rangei",
                 "source.rangev", "measure.rangei", "measure.rangev", "source.autorangei",
                 "source.autorangev", "measure.autorangei", "measure.autorangev", "sense")


def _tab_numbers(count: int) -> replies.Check:
    """A check for ``count`` tab-separated numbers."""

    def check(reply: str) -> str | None:
        parts = reply.strip().split("\t")
        if len(parts) != count:
            return f"expected {count} tab-separated values, got {len(parts)}"
        for p in parts:
            if replies.number(p) is not None:
                return f"{p!r} is not a number"
        return None

    return check


def _error_entry(reply: str) -> str | None:
    parts = reply.strip().split("\t")
    if len(parts) != 4:
        return "expected code, message, severity, node separated by tabs"
    for p in (parts[0], parts[2], parts[3]):
        if replies.number(p) is not None:
            return f"{p!r} is not a number"
    return None


def _check_currents(values: Any) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(values)) or np.any(np.abs(values) > MAX_CURRENT_A):
        raise ValueError(f"source currents must be finite and within +-{MAX_CURRENT_A} A")
    return values


class Keithley2600Channel(RampedSource, CappedVoltageSource, _PymeasureChannel):
    """One SMU channel (``smua`` / ``smub``) with the methods the station uses."""

    # Voltage sourcing, capped per channel (dynamic): limit_voltage_source() narrows both.
    source_voltage = Instrument.control(
        "source.levelv", "source.levelv=%.9g",
        """Control the source voltage in V (float, strictly within +-40.4 V, or within the
        cap :meth:`limit_voltage_source` set).""",
        validator=strict_range,
        values=[-MAX_VOLTAGE_V, MAX_VOLTAGE_V],
        dynamic=True,
    )
    compliance_current = Instrument.control(
        "source.limiti", "source.limiti=%.9g",
        """Control the current limit of a voltage source in A (float, strictly from 0 to
        3 A, or to the cap :meth:`limit_voltage_source` set).""",
        validator=strict_range,
        values=[0.0, MAX_LIMIT_I_A],
        dynamic=True,
    )
    max_voltage_v = voltage_cap_v = MAX_VOLTAGE_V
    max_compliance_a = compliance_cap_a = MAX_LIMIT_I_A

    source_current = Instrument.control(
        "source.leveli", "source.leveli=%.9g",
        """Control the source current in A (float, strictly from -3.03 to 3.03).""",
        validator=strict_range,
        values=[-MAX_CURRENT_A, MAX_CURRENT_A],
    )

    # pymeasure 0.16 declares measure_nplc with map_values=True over [0.001, 25], so every
    # value but those two raises ValueError; a plain strict range here.
    measure_nplc = Instrument.control(
        "measure.nplc", "measure.nplc=%.9g",
        """Control the integration time in power-line cycles (float, 0.001 to 25).""",
        validator=strict_range,
        values=[0.001, 25],
    )

    #: What the protocol layer may rely on (a 2400-like channel; the pair sweep is on the
    #: instrument, :meth:`Keithley2600.pair_list_sweep`).
    capabilities = {
        "list_sweep": False,
        "trigger_link": False,
        "paired_list_sweep": True,
        "voltage_source": True,
        "max_list_points": MAX_LIST_POINTS,
    }
    ramp_step_a = 20e-6
    ramp_delay_s = 1e-3
    ramp_step_v = 0.05

    def __init__(self, instrument: Keithley2600, channel: str):
        super().__init__(instrument, channel)
        self.smu = f"smu{channel}"
        self.name = f"{instrument.name} {self.smu}"
        self.last_shutdown: SafeStateReport | None = None

    @property
    def lock(self):
        return self.instrument.lock

    def check_errors_raise(self) -> None:
        """The instrument's error queue (shared by both channels), raised if not empty."""
        self.instrument.check_errors_raise()

    # -- host-paced --------------------------------------------------------------------
    def prepare_current_source(self, *, compliance_v: float, nplc: float = 1.0) -> None:
        """Current source at 0 A (auto range), voltage limit ``compliance_v`` (V), measuring
        at ``nplc`` power-line cycles with auto ranges, output on; errors raised."""
        if not 0.01 <= compliance_v <= 40.0:
            raise ValueError(f"compliance_v must be 0.01 to 40 V, got {compliance_v!r}")
        if not 0.001 <= nplc <= 25:
            raise ValueError(f"nplc must be 0.001 to 25, got {nplc!r}")
        s = self.smu
        with self.lock:
            self.instrument.write(
                f"{s}.source.func = {s}.OUTPUT_DCAMPS {s}.source.autorangei = 1 "
                f"{s}.source.leveli = 0 {s}.source.limitv = {compliance_v:.9g} "
                f"{s}.measure.nplc = {nplc:.9g} {s}.measure.autorangev = 1 "
                f"{s}.source.output = {s}.OUTPUT_ON")
            self.check_errors_raise()

    def prepare_voltage_source(self, compliance_a: float, nplc: float = 1.0) -> None:
        """Voltage source at 0 V (auto range), current limit ``compliance_a`` (A, within the
        cap of :meth:`limit_voltage_source`), measuring at ``nplc`` power-line cycles with
        auto ranges, output on; errors raised.

        Whatever the channel sourced before is first ramped to zero (:meth:`ramp_to`), and
        the voltage level is zeroed before the function changes, so nothing jumps."""
        if not 0.001 <= nplc <= 25:
            raise ValueError(f"nplc must be 0.001 to 25, got {nplc!r}")
        self.check_compliance_a(compliance_a)
        s = self.smu
        with self.lock:
            self.ramp_to(0.0)
            self.source_voltage = 0.0
            self.compliance_current = compliance_a
            self.instrument.write(
                f"{s}.source.func = {s}.OUTPUT_DCVOLTS {s}.source.autorangev = 1 "
                f"{s}.measure.nplc = {nplc:.9g} {s}.measure.autorangei = 1 "
                f"{s}.source.output = {s}.OUTPUT_ON")
            self.check_errors_raise()

    def _write_voltage_uncapped(self, value_v: float) -> None:
        self.instrument.write(f"{self.smu}.source.levelv = {value_v:.9g}")

    def measure_once(self) -> Readings:
        """One reading: voltage (V), current (A), time (s), compliance in the status."""
        s = self.smu
        with self.lock:
            reply = self.instrument.ask(
                f"local i, v = {s}.measure.iv() print(i, v, "
                f"{s}.source.compliance and 1 or 0, timer.measure.t())")
        i, v, comp, t = (float(x) for x in reply.strip().split("\t"))
        status = np.array([STATUS_COMPLIANCE if comp else 0], dtype=np.int64)
        return Readings(np.array([v]), np.array([i]), np.array([NAN_READING]),
                        np.array([t]), status)

    def source_and_measure(self, current_a: float) -> Readings:
        """Set the source to ``current_a`` (A) and take one reading."""
        _check_currents([current_a])
        with self.lock:
            self.source_current = current_a
            return self.measure_once()

    # -- state and ramps -----------------------------------------------------------------
    def present_state(self) -> SourceState:
        """(output on, ``CURR``/``VOLT``, fixed level A or V) as the instrument prints them."""
        s = self.smu
        reply = self.instrument.ask(f"print({s}.source.output, {s}.source.func, "
                                    f"{s}.source.leveli, {s}.source.levelv)")
        output, func, leveli, levelv = (float(x) for x in reply.strip().split("\t"))
        if func == 0:
            return SourceState(output == 1, "CURR", leveli)
        return SourceState(output == 1, "VOLT", levelv)

    def _check_level_a(self, level_a: float) -> None:
        _check_currents([level_a])

    def _write_level(self, function: str, value: float) -> None:
        attr = "leveli" if function == "CURR" else "levelv"
        self.instrument.write(f"{self.smu}.source.{attr} = {value:.9g}")

    def configuration(self) -> dict[str, Any]:
        """Source function, level (A or V), voltage limit (V), NPLC, output, and for a
        voltage source its current limit (A), read back."""
        s = self.smu

        def func(reply: str) -> str:
            return "CURR" if float(reply) == 0 else "VOLT"

        with self.lock:
            out: dict[str, Any] = {
                "source_function": read_setting(self.instrument, f"print({s}.source.func)",
                                                func),
                "voltage_compliance_v": read_setting(self.instrument,
                                                     f"print({s}.source.limitv)", float),
                "nplc": read_setting(self.instrument, f"print({s}.measure.nplc)", float),
                "output": read_setting(self.instrument, f"print({s}.source.output)",
                                       lambda r: float(r) == 1),
            }
            attr = {"CURR": "leveli", "VOLT": "levelv"}.get(out["source_function"])
            if attr:
                out["source_level"] = read_setting(self.instrument,
                                                   f"print({s}.source.{attr})", float)
            if attr == "levelv":
                out["current_compliance_a"] = read_setting(
                    self.instrument, f"print({s}.source.limiti)", float)
        return out

    # -- shutdown ------------------------------------------------------------------------
    def shutdown(self, ramp_step_a: float | None = None,
                 ramp_delay_s: float | None = None) -> SafeStateReport:
        """Abort the trigger model, ramp the level to 0 in bounded steps, output off, and
        confirm ``source.output`` 0 and ``source.leveli`` 0 read back (resynced first if the
        last exchange failed, retried once); never raises for the instrument's sake."""
        step = self.ramp_step_a if ramp_step_a is None else ramp_step_a
        delay = self.ramp_delay_s if ramp_delay_s is None else ramp_delay_s
        if not step > 0:
            raise ValueError(f"ramp_step_a must be > 0 A, got {step!r}")
        s = self.smu

        def safe(report: SafeStateReport) -> str | None:
            self.instrument.write(f"{s}.abort()")
            state = self.present_state()
            report.state.setdefault("before", {"output": state.output_on,
                                               "function": state.function,
                                               "level": state.level})
            report.last_level = state.level
            attr = "leveli" if state.function == "CURR" else "levelv"
            size = step if state.function == "CURR" else self.ramp_step_v
            for value in ramp_levels(state.level, size):
                self.instrument.write(f"{s}.source.{attr} = {value:.9g}")
                report.last_level = value
                if delay > 0:
                    time.sleep(delay)
            self.instrument.write(f"{s}.source.output = {s}.OUTPUT_OFF")
            reply = self.instrument.ask(f"print({s}.source.output, {s}.source.leveli, "
                                        f"{s}.source.levelv)")
            output, leveli, levelv = (float(x) for x in reply.strip().split("\t"))
            report.state["after"] = {"output": output, "leveli": leveli, "levelv": levelv}
            report.last_level = leveli
            if output == 0 and leveli == 0 and levelv == 0:
                return None
            return (f"not safe after output off: output {output:g}, leveli {leveli:g}, "
                    f"levelv {levelv:g}")

        report = self.instrument.confirm_safe(f"turn {s} off", safe)
        report.instrument = self.name
        self.last_shutdown = report
        if not report.confirmed:
            log.error("%s: shutdown NOT confirmed: %s", self.name,
                      "; ".join(report.problems) or "no reason recorded")
        return report

    def safe_off(self) -> SafeStateReport:
        return self.shutdown()


class Keithley2600(LockedInstrumentMixin, _PymeasureKeithley2600):
    """Keithley 2602B for labctl (see the module docstring). No I/O in ``__init__``."""

    capabilities = {
        "channels": CHANNELS,
        "paired_list_sweep": True,
        "list_slave": True,  # arm_list_slave / fetch_list_slave on a digio trigger input
        "binary_buffer": True,
        "list_sweep": False,  # no 2400-style trigger-link master/slave lists
        "trigger_link": False,
        "max_list_points": MAX_LIST_POINTS,
    }

    def __init__(self, adapter, name: str = "Keithley 2602B SourceMeter", **kwargs):
        with warnings.catch_warnings():
            # pymeasure's SCPIUnknownMixin warns on every instance; the 2600B speaks TSP
            # (and answers *IDN?), which this driver relies on, not SCPI.
            warnings.filterwarnings("ignore", "It is not known whether this device",
                                    FutureWarning)
            super().__init__(adapter, name, **kwargs)
        self.ChA = Keithley2600Channel(self, "a")
        self.ChB = Keithley2600Channel(self, "b")
        # The armed slave sweep: (channels, points, digio line), or None.
        self._slave: tuple[tuple[str, ...], int, int] | None = None
        #: The report of the last :meth:`shutdown`.
        self.last_shutdown: SafeStateReport | None = None

    def channel(self, letter: str) -> Keithley2600Channel:
        """Channel ``"a"`` or ``"b"``; ValueError for any other."""
        if letter not in CHANNELS:
            raise ValueError(f"{self.name}: no channel {letter!r} (a 2602B has a and b)")
        return self.ChA if letter == "a" else self.ChB

    # -- replies -------------------------------------------------------------------------
    def reply_rule(self, command: str) -> Callable[[str], str | None] | None:
        if command == "*IDN?":
            return replies.text
        if command == "print(errorqueue.next())":
            return _error_entry
        if command in ("print(errorqueue.count)", "print(status.operation.sweeping.condition)"):
            return replies.number
        if command.startswith("local i, v = smu") and "measure.iv()" in command:
            return _tab_numbers(4)
        if command.startswith("print(smu"):
            inner = command[len("print("):-1]
            parts = [p.strip() for p in inner.split(",")]
            if all(p[5:] in _NUMBER_ATTRS for p in parts if p.startswith("smu")):
                return _tab_numbers(len(parts))
        return None

    # -- errors --------------------------------------------------------------------------
    def check_errors_raise(self) -> None:
        """Read the error queue (count, then ``errorqueue.next()`` per entry); raise
        :class:`InstrumentReportedError` with the instrument's own codes and texts."""
        with self.lock:
            count = int(float(self.ask("print(errorqueue.count)")))
            errors = []
            for _ in range(min(count, 100)):
                parts = self.ask("print(errorqueue.next())").strip().split("\t")
                code = int(float(parts[0]))
                if code:
                    errors.append((code, parts[1]))
        if errors:
            raise InstrumentReportedError(self.name, errors)

    def check_set_errors(self) -> list:
        self.check_errors_raise()
        return []

    # -- the pair sweep ------------------------------------------------------------------
    def pair_list_sweep(self, levels_a: Sequence[float], levels_b: Sequence[float], *,
                        nplc: float, trigger_line: int = 1,
                        timeout_s: float | None = None) -> tuple[Readings, Readings]:
        """Source ``levels_a`` on smua and ``levels_b`` on smub (A, the same number of
        points) in lockstep, measuring i and v on both at ``nplc``, pulsing digio line
        ``trigger_line`` (1 to 14) once per step after both sources changed. One script,
        one binary read; the sources return to their fixed level after the sweep. The
        channels must be prepared current sources (:meth:`prepare_current_source`).
        ``timeout_s`` (s) overrides the transport's timeout for the binary reply."""
        a, b = _check_currents(levels_a), _check_currents(levels_b)
        n = len(a)
        if not 1 <= n <= MAX_LIST_POINTS or len(b) != n:
            raise ValueError(f"a pair sweep has 1 to {MAX_LIST_POINTS} points on each "
                             f"channel, the same on both; got {n} and {len(b)}")
        _check_sweep_timing(nplc, trigger_line)
        script = _pair_script(a, b, nplc, trigger_line)
        size = 2 + 4 * FIELDS_PER_STEP * n + 1
        with self.lock:
            self.write(script)
            try:
                with self.timeout_scope(timeout_s):
                    block = self.read_bytes(size)
            except InstrumentTimeout as timeout:
                try:
                    self.check_errors_raise()
                except InstrumentReportedError as reported:
                    raise reported from timeout
                raise
            self.check_errors_raise()
        return self._parse_block(block, n)

    # -- a slave of another instrument's trigger output --------------------------------
    def arm_list_slave(self, levels: dict[str, Sequence[float]], *, nplc: float,
                       trigger_line: int = 1) -> None:
        """Load each listed channel's current list (``{"a" or "b": levels in A}``, lists of
        equal length), its source stimulus the event of digio line ``trigger_line`` (1 to
        14, set up as a rising-edge trigger input), measuring i and v at ``nplc`` after each
        source step, and initiate them (one script). Each pulse on the line then takes one
        step; :meth:`fetch_list_slave` returns the readings. Ends with the error queue, so
        the master may start right after. Channels must be prepared current sources.
        ValueError for a bad channel, lists of unequal or bad length, bad levels, NPLC or
        line (nothing sent)."""
        chans = tuple(c for c in CHANNELS if c in levels)
        if not chans or set(levels) - set(CHANNELS):
            raise ValueError(f"{self.name}: channels are a and b, got {sorted(levels)!r}")
        lists = {c: _check_currents(levels[c]) for c in chans}
        n = len(lists[chans[0]])
        if not 1 <= n <= MAX_LIST_POINTS or any(len(v) != n for v in lists.values()):
            raise ValueError(f"every list needs the same 1 to {MAX_LIST_POINTS} points, got "
                             f"{[len(lists[c]) for c in chans]}")
        _check_sweep_timing(nplc, trigger_line)
        body = [f"digio.trigger[{trigger_line}].stimulus = 0",
                f"digio.trigger[{trigger_line}].mode = digio.TRIG_RISING",
                f"digio.trigger[{trigger_line}].clear()"]
        for c in chans:
            body += [*_list_lines(f"smu{c}", lists[c], nplc),
                     f"smu{c}.trigger.source.stimulus = digio.trigger[{trigger_line}].EVENT_ID",
                     f"smu{c}.trigger.measure.stimulus = 0"]
        body += [f"smu{c}.trigger.initiate()" for c in chans]
        with self.lock:
            self.write("\n".join(["loadandrunscript", *body, "endscript"]))
            self._slave = (chans, n, trigger_line)
            try:
                self.check_errors_raise()
            except InstrumentError:
                self._disarm_slave()
                raise

    def fetch_list_slave(self, *, timeout_s: float | None = None) -> dict[str, Readings]:
        """The readings of the sweep :meth:`arm_list_slave` armed, by channel (``"a"``,
        ``"b"``): polls ``status.operation.sweeping.condition`` until the sweep ended (up to
        ``timeout_s``, default the transport's timeout), then one binary ``printbuffer``.
        A sweep that did not end (too few pulses on its line) is aborted and
        :class:`InstrumentError` names the line."""
        if self._slave is None:
            raise InstrumentError(f"{self.name}: no slave list sweep is armed")
        chans, n, line = self._slave
        if timeout_s is None:
            timeout_s = getattr(self.adapter, "timeout_s", None) or 5.0
        deadline = time.monotonic() + timeout_s
        with self.lock:
            pause = 1e-3
            while int(float(self.ask("print(status.operation.sweeping.condition)"))):
                if time.monotonic() > deadline:
                    self._disarm_slave()
                    raise InstrumentError(
                        f"{self.name}: the list sweep armed on digio line {line} (channels "
                        f"{', '.join(chans)}, {n} points) did not end within {timeout_s:g} "
                        "s: too few trigger pulses arrived; aborted")
                time.sleep(pause)
                pause = min(2 * pause, 0.05)  # a short wait first: usually it has ended
            columns = ", ".join(f"smu{c}.nvbuffer1.readings, smu{c}.nvbuffer2.readings, "
                                f"smu{c}.nvbuffer1.statuses, smu{c}.nvbuffer1.timestamps"
                                for c in chans)
            self.write("format.data = format.REAL32 format.byteorder = format.LITTLEENDIAN "
                       f"printbuffer(1, {n}, {columns}) format.data = format.ASCII")
            self._slave = None
            block = self.read_bytes(2 + 4 * 4 * len(chans) * n + 1)
            self.check_errors_raise()
        return dict(zip(chans, self._parse_columns(block, n, len(chans)), strict=True))

    def _disarm_slave(self) -> None:
        """Abort the armed slave sweep (no reply read)."""
        if self._slave is not None:
            self.write(" ".join(f"smu{c}.abort()" for c in self._slave[0]))
            self._slave = None

    def _parse_columns(self, block: bytes, n: int, k: int) -> list[Readings]:
        """``k`` channels' (i, v, status, t) per step from a ``#0`` REAL32 block."""
        if not block.startswith(b"#0") or not block.endswith(b"\n"):
            self.mark_suspect("binary block without #0 header or newline")
            raise GarbledReply(self.name, block[:40], "expected '#0' + REAL32 values + "
                               "newline", command="printbuffer")
        table = np.frombuffer(block[2:-1], dtype="<f4").astype(float).reshape(n, 4 * k)
        if not np.all(np.isfinite(table)):
            raise GarbledReply(self.name, block[:40], "non-finite values in the buffer",
                               command="printbuffer")
        out = []
        for j in range(k):
            i, v, st, t = (table[:, 4 * j + m] for m in range(4))
            status = np.where((st.astype(np.int64) & BUFFER_COMPLIANCE) != 0,
                              STATUS_COMPLIANCE, 0).astype(np.int64)
            out.append(Readings(v.copy(), i.copy(), np.full(n, NAN_READING), t.copy(), status))
        return out

    def _parse_block(self, block: bytes, n: int) -> tuple[Readings, Readings]:
        if not block.startswith(b"#0") or not block.endswith(b"\n"):
            self.mark_suspect("binary block without #0 header or newline")
            raise GarbledReply(self.name, block[:40], "expected '#0' + REAL32 values + "
                               "newline", command="printbuffer")
        values = np.frombuffer(block[2:-1], dtype="<f4").astype(float)
        table = values.reshape(n, FIELDS_PER_STEP)
        if not np.all(np.isfinite(table)):
            raise GarbledReply(self.name, block[:40], "non-finite values in the buffer",
                               command="printbuffer")
        out = []
        for k in (0, 4):
            i, v, st, t = (table[:, k + j] for j in range(4))
            status = np.where((st.astype(np.int64) & BUFFER_COMPLIANCE) != 0,
                              STATUS_COMPLIANCE, 0).astype(np.int64)
            out.append(Readings(v.copy(), i.copy(), np.full(n, NAN_READING), t.copy(),
                                status))
        return out[0], out[1]

    # -- safe state ----------------------------------------------------------------------
    def shutdown(self, ramp_step_a: float | None = None,
                 ramp_delay_s: float | None = None) -> SafeStateReport:
        """Both channels to a confirmed safe state (:meth:`Keithley2600Channel.shutdown`);
        one report, confirmed only if both are."""
        reports = [ch.shutdown(ramp_step_a, ramp_delay_s) for ch in (self.ChA, self.ChB)]
        report = SafeStateReport(self.name, confirmed=all(r.confirmed for r in reports))
        for r in reports:
            report.problems += [f"{r.instrument}: {p}" for p in r.problems]
            report.notes += [f"{r.instrument}: {p}" for p in r.notes]
            report.state[r.instrument] = r.state
        report.last_level = max((abs(r.last_level) for r in reports
                                 if r.last_level is not None), default=None)
        self.last_shutdown = report
        Instrument.shutdown(self)
        return report

    def safe_off(self) -> SafeStateReport:
        return self.shutdown()

    def configuration(self) -> dict[str, Any]:
        """Both channels' :meth:`Keithley2600Channel.configuration`, keyed smua/smub."""
        return {ch.smu: ch.configuration() for ch in (self.ChA, self.ChB)}


def _levels(values: np.ndarray) -> str:
    return "{" + ", ".join(f"{v:.9g}" for v in values) + "}"


def _list_lines(s: str, levels: np.ndarray, nplc: float) -> list[str]:
    """Trigger-model lines loading channel ``s``'s current list, measuring i and v."""
    return [
        f"{s}.measure.nplc = {nplc:.9g}",
        f"{s}.nvbuffer1.clear() {s}.nvbuffer2.clear()",
        f"{s}.nvbuffer1.appendmode = 0 {s}.nvbuffer2.appendmode = 0",
        f"{s}.nvbuffer1.collecttimestamps = 1 {s}.nvbuffer2.collecttimestamps = 1",
        f"{s}.trigger.source.listi({_levels(levels)})",
        f"{s}.trigger.source.action = {s}.ENABLE",
        f"{s}.trigger.measure.iv({s}.nvbuffer1, {s}.nvbuffer2)",
        f"{s}.trigger.measure.action = {s}.ENABLE",
        f"{s}.trigger.count = {len(levels)} {s}.trigger.arm.count = 1",
        f"{s}.trigger.endpulse.action = {s}.SOURCE_HOLD",
        f"{s}.trigger.endsweep.action = {s}.SOURCE_IDLE",
    ]


def _check_sweep_timing(nplc: float, trigger_line: int) -> None:
    """ValueError for an NPLC or a digio trigger line the 2600B does not have."""
    if not 0.001 <= nplc <= 25:
        raise ValueError(f"nplc must be 0.001 to 25, got {nplc!r}")
    if trigger_line not in range(1, 15):
        raise ValueError(f"digio trigger lines are 1 to 14, got {trigger_line!r}")


def _pair_script(a: np.ndarray, b: np.ndarray, nplc: float, line: int) -> str:
    """The trigger-model script of :meth:`Keithley2600.pair_list_sweep` (one message)."""
    n = len(a)
    body = []
    for s, levels in (("smua", a), ("smub", b)):
        body += [
            *_list_lines(s, levels, nplc),
            f"{s}.trigger.source.stimulus = 0",
            f"{s}.trigger.measure.stimulus = trigger.blender[1].EVENT_ID",
        ]
    body += [
        "trigger.blender[1].orenable = false",
        "trigger.blender[1].stimulus[1] = smua.trigger.SOURCE_COMPLETE_EVENT_ID",
        "trigger.blender[1].stimulus[2] = smub.trigger.SOURCE_COMPLETE_EVENT_ID",
        f"digio.trigger[{line}].mode = digio.TRIG_RISINGA",
        f"digio.trigger[{line}].pulsewidth = 10e-6",
        f"digio.trigger[{line}].stimulus = trigger.blender[1].EVENT_ID",
        "smub.trigger.initiate() smua.trigger.initiate()",
        "waitcomplete()",
        f"digio.trigger[{line}].stimulus = 0",
        "format.data = format.REAL32 format.byteorder = format.LITTLEENDIAN",
        f"printbuffer(1, {n}, smua.nvbuffer1.readings, smua.nvbuffer2.readings, "
        "smua.nvbuffer1.statuses, smua.nvbuffer1.timestamps, smub.nvbuffer1.readings, "
        "smub.nvbuffer2.readings, smub.nvbuffer1.statuses, smub.nvbuffer1.timestamps)",
        "format.data = format.ASCII",
    ]
    return "\n".join(["loadandrunscript", *body, "endscript"])


__all__ = ["Keithley2600", "Keithley2600Channel"]
