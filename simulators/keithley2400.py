"""Simulated Keithley 2400 SourceMeter: the SCPI subset pymeasure and labctl use.

The instrument acts on the shared :class:`~simulators.world.StationWorld`: it is the SMU
of one :class:`~simulators.cabling.SmuCable` of the world's cabling (its instrument name and
the matrix row, its bus, that its output is cabled to). With the output on, a current
source (``:SOUR:FUNC CURR``) drives its present level onto its bus with ``world.drive``
(the voltage compliance is ``:SENS:VOLT:PROT``), a voltage source (``:SOUR:FUNC VOLT``)
with ``world.drive_voltage`` (the current compliance is ``:SENS:CURR:PROT``: the world
solves the current the load draws, and clamps it there); turning the output off calls
``world.release`` whatever the output-off state (the NORMal state sources 0 V, i.e. no
device current). A current source's reading is the bus voltage plus
``world.smu_noise(nplc)``, the actual current, V/I and a timestamp (s since ``*RST``)
plus the status word; a voltage source's reading adds ``world.smu_current_noise(nplc)``
to the current it measures, and its R is V/I of the V and I it reports (so V = I R to
the last digit). Units: A, V, Ohm, s.

Reset defaults are those of the Series 2400 User's Manual (2400S-900-01 Rev. K), SCPI
tables 18-3 to 18-11 ("Default parameter" column: *RST and :SYST:PRES): source V at 0 V,
source ranges 21 V / 105 uA with auto range on, source modes FIXed, source delay 0 s with
auto delay on, auto output-off off, sense function "CURR:DC" with concurrent on, current
compliance 105 uA, voltage compliance 21 V, measure ranges 105 uA / 21 V / 210 kOhm with
auto range on, ohms mode AUTO, NPLC 1, filter off (REPeat, count 10), output off, output-off
state NORMal, FORM:DATA ASCii, FORM:ELEM all five elements, trigger and arm counts 1,
sources IMMediate, trigger delay 0, input line 1, output line 2, output events NONE, arm
timer 0.1 s, autozero on, display on, front terminals, CALC3:FORM MEAN. One departure,
where pymeasure's device suite records the real 2400 differing from its manual: the
source delay reads 1 ms after *RST (the manual says 0 s). Not changed by
*RST (as on the instrument): the TRACe subsystem (power-on: 100 points, feed SENS1, control
NEVer, absolute timestamps), the line frequency, the status enable registers and the
error queue.

Decisions where the simulator simplifies or has to choose:

* Both source functions are physical. A voltage source into the devices solves the MTJ
  model's (monotonic) I-V by bisection, into a reference resistor Ohm's law; when the
  current would exceed ``:SENS:CURR:PROT`` the source sits at the voltage that draws the
  compliance current and the reading's compliance bit (3) is set. With nothing connected
  it reads its voltage and 0 A (plus noise). Changing ``:SOUR:FUNC`` with the output on
  sources the new function's programmed level at once (refused with -221 while a
  trigger-link sweep is armed). Status bit 15 (I-source) is set for a current source only.
* ``:INIT``/``:READ?`` with the output off and auto output-off disabled (the default) queue
  +803 "Not permitted with OUTPUT off" (manual table B-1), and ``:READ?`` then answers
  nothing. ``:MEAS?`` turns the output on itself; with ``:SOUR:CLE:AUTO ON`` every
  source-measure cycle turns the output on and off again.
* ``:MEAS[:<func>]?`` does ``:CONF:<func>`` (only that sense function on; trigger/arm
  sources IMMediate, counts 1, trigger delay 0, buffer control NEVer, output on) then
  ``:READ?``; it keeps the compliance, ranges and NPLC the client set.
* Elements of a reading follow ``:FORM:ELEM`` in the 2400's fixed order VOLT, CURR, RES,
  TIME, STAT. The voltage (resistance) element is 9.91e37 unless VOLT (RES) is a sense
  function; the current element is the measured current if CURR is one, else the
  programmed source value (for a voltage source the other way round: the voltage element
  is the programmed level unless VOLT is sensed, the current 9.91e37 unless CURR is).
  Status word bits: 1 filter, 2 front terminals, 3 compliance
  (value 8), 10 auto-ohms, 11/12/13 V/I/Ohm measured, 15 I-source, 17 offset-compensated
  ohms, 22 remote sense.
* Sweeps: ``:INIT`` (or ``:READ?``) runs arm count x trigger count source-measure cycles.
  The level of step j is, for the source function's mode (``:SOUR:CURR:MODE`` or
  ``:SOUR:VOLT:MODE``), the fixed level (FIXed), list value j (LIST, wrapping, from
  ``:SOUR:LIST:CURR`` / ``:SOUR:LIST:VOLT``), or the linear staircase start..stop over
  ``:SOUR:SWE:POIN`` (SWEep). After the sweep the
  source returns to the fixed (bias) level. With ``:TRIG:SOUR IMM`` the instrument is a
  trigger-link master: per step it sets the level, pulses its output line ``:TRIG:OLIN``
  (``world.pulse``: it reaches only what the cabling's trigger cables from that line lead
  to) for output event SOUR and DEL (before measuring) and SENS (after), measures, and spends
  trigger delay + source delay + NPLC/line frequency + READING_OVERHEAD_S (times the
  repeat-filter count) of instrument time; starting the trigger model costs
  INITIATE_OVERHEAD_S, and a source level changed over the bus with the output on
  SOURCE_CHANGE_S (see those constants). With ``:TRIG:SOUR TLIN``, ``:INIT`` arms it on
  its input line ``:TRIG:ILIN`` (pulses arrive there only along trigger cables): each
  pulse sets the next level and takes a reading and spends its source-measure cycle on its
  own timeline (``world.clock``: it overlaps its master's step, so a 2400 master and slave
  take one step's time, and a faster master does not hide the slave's), and after the last
  one the source returns to bias in a late subscriber (order 20), so that acquirers
  (order 10) sample the last step too.
  The arm layer always passes immediately (``:ARM:SOUR`` is stored only).
* ``:FETC?`` while a trigger-link sweep is still armed waits up to 5 s for it to finish;
  then it queues -230 "Data corrupt or stale" and answers nothing (the sweep stays armed).
  ``:FETC?`` with no readings since ``*RST`` queues -230 too. ``:INIT`` while armed queues
  -213 "Init ignored". Other commands run while armed (the real instrument defers them).
* Source delay: the manual delay counts when auto delay is off; auto delay counts as 0 s.
* ``:FORM:DATA`` takes ASCii only (REAL/SREal: -221); lists take at most 100 values per
  command and 2500 in all (-223 "Too much data").

Locking: ``handle`` holds the instrument's own lock (one client command at a time) and
``world.lock`` (physics, readings, buffers, registers). Trigger-link callbacks arrive with
``world.lock`` held and never take the instrument lock, so nothing can deadlock. The
world lock is released while instrument time is slept (time_scale > 0) and while
``:FETC?`` waits for a slave sweep.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from simulators import scpi
from simulators.cabling import SmuCable
from simulators.scpi import CommandTree, ErrorQueue, ScpiError, ScpiParser
from simulators.world import StationWorld

NAN = 9.91e37  # the 2400's "not a number" placeholder
IDN = "KEITHLEY INSTRUMENTS INC.,MODEL 2400,{serial},C30   Mar 17 2006 09:29:29/A02  /K/J"
FETCH_WAIT_S = 5.0
# Instrument time beyond the integration, modelled on the order of magnitude of the 2400's
# published reading rates at 0.01 NPLC (figures recalled from its datasheet, not checked
# here): some 1,500 source-measure readings/s into memory in a sweep, but only about 250
# bus-triggered single readings/s and 80 when each also changes the source level.
READING_OVERHEAD_S = 0.48e-3  # per sweep step: source, settle, A/D overhead, store
INITIATE_OVERHEAD_S = 3.3e-3  # per :INIT/:READ?/:MEAS?: trigger model start, formatting
SOURCE_CHANGE_S = 8.7e-3  # per level change commanded over the bus with the output on
MAX_POINTS = 2500
MAX_LIST_PER_COMMAND = 100
NOT_PERMITTED_OUTPUT_OFF = (803, "Not permitted with OUTPUT off")

I_RANGES = (1.05e-6, 1.05e-5, 1.05e-4, 1.05e-3, 1.05e-2, 1.05e-1, 1.05)
V_RANGES = (0.21, 2.1, 21.0, 210.0)
R_RANGES = (2.1, 21.0, 210.0, 2.1e3, 2.1e4, 2.1e5, 2.1e6, 2.1e7, 2.1e8)
ELEMENTS = ("VOLT", "CURR", "RES", "TIME", "STAT")  # the 2400's reading order
FUNC_NAMES = {"VOLT": "VOLT:DC", "CURR": "CURR:DC", "RES": "RES"}

# Status word bits of a reading.
ST_FILTER, ST_FRONT, ST_COMPLIANCE, ST_AUTO_OHMS = 1 << 1, 1 << 2, 1 << 3, 1 << 10
ST_MEAS = {"VOLT": 1 << 11, "CURR": 1 << 12, "RES": 1 << 13}
ST_I_SOURCE, ST_OCOMP, ST_RSENSE = 1 << 15, 1 << 17, 1 << 22
# Measurement event register bits, and event status register bits per error class.
ME_READING_AVAILABLE, ME_BUFFER_FULL, ME_COMPLIANCE = 1 << 6, 1 << 9, 1 << 14
ESR_OPC, ESR_QYE, ESR_DDE, ESR_EXE, ESR_CME = 1, 4, 8, 16, 32

#: *RST / :SYST:PRES defaults (manual tables 18-3 to 18-11).
RESET_DEFAULTS: dict[str, object] = {
    # SOURce
    "source_func": "VOLT",
    "curr_level": 0.0,
    "curr_range": 1.05e-4,
    "curr_range_auto": True,
    "curr_mode": "FIX",
    "curr_start": 0.0,
    "curr_stop": 0.0,
    "volt_level": 0.0,
    "volt_range": 21.0,
    "volt_range_auto": True,
    "volt_mode": "FIX",
    "volt_start": 0.0,
    "volt_stop": 0.0,
    "sweep_points": 2500,
    "sweep_spacing": "LIN",
    "curr_list": (0.0,),
    "volt_list": (0.0,),
    # The manual says 0 s; a real 2400 reads back 1 ms after *RST (pymeasure's device suite
    # records it), and the simulator follows the instrument. With auto delay on it is unused.
    "source_delay": 0.001,
    "source_delay_auto": True,
    "clear_auto": False,
    "clear_auto_mode": "ALW",
    # SENSe
    "concurrent": True,
    "funcs": ("CURR",),
    "curr_prot": 1.05e-4,
    "volt_prot": 21.0,
    "sense_curr_range": 1.05e-4,
    "sense_curr_range_auto": True,
    "sense_volt_range": 21.0,
    "sense_volt_range_auto": True,
    "sense_res_range": 2.1e5,
    "sense_res_range_auto": True,
    "res_mode": "AUTO",
    "res_ocomp": False,
    "nplc": 1.0,
    "aver": False,
    "aver_tcon": "REP",
    "aver_count": 10,
    # OUTPut, FORMat, ROUTe, DISPlay, SYSTem, CALCulate3
    "smode": "NORM",
    "form_data": "ASC",
    "form_elem": ELEMENTS,
    "form_sreg": "ASC",
    "form_bord": "NORM",
    "terminals": "FRON",
    "display": True,
    "azero": True,
    "beeper": True,
    "rsense": False,
    "calc3_form": "MEAN",
    # TRIGger / ARM
    "trig_count": 1,
    "trig_delay": 0.0,
    "trig_source": "IMM",
    "trig_ilin": 1,
    "trig_olin": 2,
    "trig_outp": ("NONE",),
    "trig_inp": ("NONE",),
    "trig_dir": "ACC",
    "arm_count": 1,
    "arm_source": "IMM",
    "arm_timer": 0.1,
    "arm_ilin": 1,
    "arm_olin": 2,
    "arm_outp": ("NONE",),
    "arm_dir": "ACC",
}
#: Power-on state of the TRACe subsystem, which *RST does not touch.
TRACE_POWER_ON: dict[str, object] = {
    "trace_points": 100,
    "trace_feed": "SENS1",
    "trace_cont": "NEV",
    "trace_tstamp": "ABS",
}

Reading = tuple[float, float, float, float, float]  # V, I, R, t, status as the 2400 orders


def _num(value: float) -> str:
    return f"{value:.6E}"


def _flag(value: object) -> str:
    return "1" if value else "0"


def _pick_range(value: float, ranges: tuple[float, ...]) -> float:
    """The most sensitive range that holds |value|; -222 beyond the top one."""
    for r in ranges:
        if abs(value) <= r * (1 + 1e-9):
            return r
    raise ScpiError(-222)


@dataclass
class _MeasConf:
    """What a reading needs from the configuration, taken once per sweep."""

    funcs: frozenset[str]
    nplc: float  # effective, the repeat filter's conversions included
    step_s: float  # instrument time one source-measure cycle takes
    status: int
    voltage_source: bool = False  # :SOUR:FUNC VOLT: the current is what is measured


@dataclass
class _Sweep:
    """A trigger-link sweep armed on an input line."""

    levels: list[float]
    conf: _MeasConf
    count: int = 0
    handles: list[int] = field(default_factory=list)


class SimKeithley2400:
    """A Keithley 2400 SourceMeter cabled into ``world``, speaking SCPI line by line.

    ``cable`` is its :class:`~simulators.cabling.SmuCable` in ``world.cabling`` (it gives
    the instrument name, used on the trigger link, and the row it drives, ``bus``); a row
    name ("A"/"B") stands for the cable of the SMU the cabling puts on that row. Raises
    ValueError for a cable not in the world's cabling, an undriven row, or a channel other
    than "1" (the 2400 has one).
    """

    def __init__(self, world: StationWorld, cable: SmuCable | str, *, serial: str = "4000001"):
        if isinstance(cable, str):
            found = world.cabling.smu_on_row(cable)
            if found is None:
                raise ValueError(f"no SMU is cabled to row {cable!r}")
            cable = found
        if cable not in world.cabling.smus:
            raise ValueError(f"{cable} is not a cable of the world's cabling")
        if cable.channel != "1":
            raise ValueError(f"{cable.instrument}: a Keithley 2400 has one channel, '1', "
                             f"not {cable.channel!r}")
        self.world = world
        self.cable = cable
        self.name = cable.instrument
        self.bus = cable.row
        self.serial = serial
        self._lock = threading.Lock()
        self._sweep_done = threading.Condition(world.lock)
        self.errors = ErrorQueue(10, on_push=self._on_error)
        self._parser = ScpiParser(self._build_tree(), self.errors)
        # Registers and buffers survive *RST, as on the instrument.
        self.esr = self.ese = self.sre = 0
        self.events = {"MEAS": 0, "QUES": 0, "OPER": 0}
        self.enables = {"MEAS": 0, "QUES": 0, "OPER": 0}
        self.cfg: dict[str, object] = {}
        self.cfg.update(TRACE_POWER_ON)
        self.cfg["lfr"] = int(world.settings.line_frequency)
        self.cfg["lfr_auto"] = True
        self.trace: list[Reading] = []
        self.readings: list[Reading] = []
        self.output = False
        self._sweep: _Sweep | None = None
        with world.lock:
            self._reset()

    # -- protocol ----------------------------------------------------------------------
    def handle(self, line: str) -> str | None:
        """Execute one program message; returns the joined query replies or None."""
        with self._lock, self.world.lock:
            return self._parser.execute(line)

    def _on_error(self, code: int) -> None:
        if -199 <= code <= -100:
            self.esr |= ESR_CME
        elif -299 <= code <= -200:
            self.esr |= ESR_EXE
        elif -499 <= code <= -400:
            self.esr |= ESR_QYE
        else:
            self.esr |= ESR_DDE

    # -- state -------------------------------------------------------------------------
    def _reset(self) -> None:
        self._abort()
        self._output_off()
        self.cfg.update(RESET_DEFAULTS)
        self.readings = []
        self._t0 = self.world.clock.now(self.name)

    @property
    def _source_is_current(self) -> bool:
        return self.cfg["source_func"] == "CURR"

    @property
    def _kind(self) -> str:
        """The cfg prefix of the source function: "curr" or "volt"."""
        return "curr" if self._source_is_current else "volt"

    def _drive(self, level: float) -> None:
        """Source ``level`` (A for a current source, V for a voltage source) on the bus now,
        unless the bus already carries exactly it."""
        state = self.world.buses[self.bus]
        if self._source_is_current:
            compliance = abs(float(self.cfg["volt_prot"]))
            if not (state.on and state.source == "CURR" and state.set_current == level
                    and state.compliance_v == compliance):
                self.world.drive(self.bus, level, compliance)
            return
        compliance = abs(float(self.cfg["curr_prot"]))
        if not (state.on and state.source == "VOLT" and state.set_voltage == level
                and state.compliance_a == compliance):
            self.world.drive_voltage(self.bus, level, compliance)

    def _bias(self) -> None:
        """Return to the fixed level while the output is on and no sweep owns the source."""
        if self.output and self._sweep is None:
            self._drive(float(self.cfg[f"{self._kind}_level"]))

    def _output_on(self) -> None:
        self.output = True
        self._bias()

    def _output_off(self) -> None:
        self._abort()
        self.output = False
        self.world.release(self.bus)

    def _spend(self, seconds: float) -> None:
        clock = self.world.clock
        if clock.time_scale > 0:
            # Sleep without the world lock so the other instruments keep running.
            self.world.lock.release()
            try:
                clock.spend(self.name, seconds)
            finally:
                self.world.lock.acquire()
        else:
            clock.spend(self.name, seconds)

    # -- measurement -------------------------------------------------------------------
    def _meas_conf(self) -> _MeasConf:
        cfg = self.cfg
        funcs = frozenset(cfg["funcs"])
        conversions = int(cfg["aver_count"]) if cfg["aver"] else 1
        nplc = float(cfg["nplc"])
        voltage_source = not self._source_is_current
        status = (0 if voltage_source else ST_I_SOURCE) | sum(ST_MEAS[f] for f in funcs)
        status |= ST_FRONT if cfg["terminals"] == "FRON" else 0
        status |= ST_FILTER if cfg["aver"] else 0
        status |= ST_AUTO_OHMS if ("RES" in funcs and cfg["res_mode"] == "AUTO") else 0
        status |= ST_OCOMP if cfg["res_ocomp"] else 0
        status |= ST_RSENSE if cfg["rsense"] else 0
        repeat = conversions if cfg["aver_tcon"] == "REP" else 1
        delay = 0.0 if cfg["source_delay_auto"] else float(cfg["source_delay"])
        step = float(cfg["trig_delay"]) + delay
        step += repeat * (nplc / float(cfg["lfr"]) + READING_OVERHEAD_S)
        return _MeasConf(funcs, nplc * conversions, step, status, voltage_source)

    def _sample(self, level: float, conf: _MeasConf) -> tuple[float, float, float, int]:
        """V, I, R and status of a reading of the bus now (world lock held)."""
        state = self.world.buses[self.bus]
        v_meas = state.voltage + self.world.smu_noise(conf.nplc)
        i_act = state.current
        funcs = conf.funcs
        if conf.voltage_source:
            volts, amps, ohms = self._voltage_source_reading(level, v_meas, conf)
        else:
            volts = v_meas if "VOLT" in funcs else NAN
            amps = i_act if "CURR" in funcs else level
            ohms = v_meas / i_act if ("RES" in funcs and i_act != 0.0) else NAN
        status = conf.status
        event = ME_READING_AVAILABLE
        if state.in_compliance or self.fault_stuck_compliance:  # fault hook: stuck compliance
            status |= ST_COMPLIANCE
            event |= ME_COMPLIANCE
        self.events["MEAS"] |= event
        return volts, amps, ohms, status

    def _voltage_source_reading(self, level: float, v_meas: float, conf: _MeasConf
                                ) -> tuple[float, float, float]:
        """V, I, R elements of a voltage source's reading (world lock held): the current is
        measured (with its read noise), the voltage is the programmed level unless VOLT is
        sensed, and R is computed from V and I as reported, so V = I R to the last digit."""
        i_meas = self.world.buses[self.bus].current + self.world.smu_current_noise(conf.nplc)
        funcs = conf.funcs
        volts = v_meas if "VOLT" in funcs else level
        amps = i_meas if "CURR" in funcs else NAN
        ohms = NAN
        if "RES" in funcs:
            v_shown, i_shown = float(_num(v_meas)), float(_num(i_meas))
            ohms = v_shown / i_shown if i_shown != 0.0 else NAN
        return volts, amps, ohms

    def _store(self, reading: Reading) -> None:
        self.readings.append(reading)
        if self.cfg["trace_cont"] == "NEXT":
            self.trace.append(reading)
            if len(self.trace) >= int(self.cfg["trace_points"]):
                self.cfg["trace_cont"] = "NEV"
                self.events["MEAS"] |= ME_BUFFER_FULL

    def _levels(self, n: int) -> list[float]:
        """Source levels (A, or V for a voltage source) of the n steps of a sweep."""
        kind = self._kind
        mode = self.cfg[f"{kind}_mode"]
        if mode == "LIST":
            values = self.cfg[f"{kind}_list"]
            return [values[j % len(values)] for j in range(n)]
        if mode == "SWE":
            start, stop = float(self.cfg[f"{kind}_start"]), float(self.cfg[f"{kind}_stop"])
            points = int(self.cfg["sweep_points"])
            return [start + (stop - start) * (j % points) / (points - 1) for j in range(n)]
        return [float(self.cfg[f"{kind}_level"])] * n

    def _initiate(self) -> None:
        """:INIT: run the sweep (trigger source IMM) or arm it on the trigger link (TLIN)."""
        if self._sweep is not None:
            raise ScpiError(-213)
        auto_off = bool(self.cfg["clear_auto"])
        if not self.output and not auto_off:
            raise ScpiError(*NOT_PERMITTED_OUTPUT_OFF)
        n = int(self.cfg["arm_count"]) * int(self.cfg["trig_count"])
        self.readings = []
        self._spend(INITIATE_OVERHEAD_S)
        if self.cfg["trig_source"] == "TLIN":
            self._arm(n)
        else:
            self._run_sweep(n, auto_off)

    def _run_sweep(self, n: int, auto_off: bool) -> None:
        conf = self._meas_conf()
        events = self.cfg["trig_outp"]
        line = int(self.cfg["trig_olin"])
        before = ("SOUR" in events) + ("DEL" in events)
        after = "SENS" in events
        always_off = auto_off and not self.output and self.cfg["clear_auto_mode"] == "ALW"
        pulse = self.world.pulse
        for j, level in enumerate(self._levels(n)):
            self._drive(level)
            for _ in range(before):
                pulse(self.name, line, j)
            volts, amps, ohms, status = self._sample(level, conf)
            if after:
                pulse(self.name, line, j)
            if always_off:
                self.world.release(self.bus)
            self._spend(conf.step_s)
            t = self.world.clock.now(self.name) - self._t0
            self._store((volts, amps, ohms, t, float(status)))
        self._end_sweep()

    def _end_sweep(self) -> None:
        """After a sweep the source returns to bias, or off if only auto-off had it on."""
        if self.output:
            self._bias()
        else:
            self.world.release(self.bus)

    def _arm(self, n: int) -> None:
        sweep = _Sweep(self._levels(n), self._meas_conf())
        line = int(self.cfg["trig_ilin"])
        self._sweep = sweep
        sweep.handles = [
            self.world.subscribe_trigger(self.name, line, self._on_pulse, order=0),
            # After the acquirers (order 10): they must sample the last step too.
            self.world.subscribe_trigger(self.name, line, self._after_pulse, order=20),
        ]

    def _on_pulse(self, step: int) -> None:
        # Trigger link, world lock held: the slave steps on its own count, not the master's.
        sweep = self._sweep
        if sweep is None or sweep.count >= len(sweep.levels):
            return
        level = sweep.levels[sweep.count]
        sweep.count += 1
        self._drive(level)
        volts, amps, ohms, status = self._sample(level, sweep.conf)
        self._store((volts, amps, ohms, self.world.clock.now(self.name) - self._t0, float(status)))
        # Its own source-measure cycle, on its own timeline: it overlaps the master's step
        # (station time is the later of the two), and a master faster than this 2400 does
        # not hide the slave's time. Not slept: this runs in the pulse sender's thread.
        self.world.clock.spend(self.name, sweep.conf.step_s, sleep=False)

    def _after_pulse(self, step: int) -> None:
        sweep = self._sweep
        if sweep is None:
            return
        if sweep.count >= len(sweep.levels):
            self._abort()
            self._end_sweep()
        elif not self.output and self.cfg["clear_auto_mode"] == "ALW":
            self.world.release(self.bus)

    def _abort(self) -> None:
        """Disarm a trigger-link sweep (the readings taken so far stay)."""
        sweep = self._sweep
        if sweep is None:
            return
        for handle in sweep.handles:
            self.world.unsubscribe_trigger(handle)
        self._sweep = None
        self._sweep_done.notify_all()

    def _format(self, readings: list[Reading], *, trace_times: bool = False) -> str:
        index = [i for i, name in enumerate(ELEMENTS) if name in self.cfg["form_elem"]]
        parts = []
        previous = first = readings[0][3] if readings else 0.0
        for r in readings:
            values = list(r)
            if trace_times:
                t = r[3]
                values[3] = t - (previous if self.cfg["trace_tstamp"] == "DELT" else first)
                previous = t
            parts.extend(f"{values[i]:+.6E}" for i in index)
        return ",".join(parts)

    # -- handlers: common commands -----------------------------------------------------
    def _idn(self, args: list[str]) -> str:
        scpi.none(args)
        return IDN.format(serial=self.serial)

    def _rst(self, args: list[str]) -> None:
        scpi.none(args)
        self._reset()

    def _cls(self, args: list[str]) -> None:
        scpi.none(args)
        self.errors.clear()
        self.esr = 0
        for key in self.events:
            self.events[key] = 0

    def _opc(self, args: list[str]) -> None:
        scpi.none(args)
        self.esr |= ESR_OPC  # every operation completes before the next command runs

    def _opc_query(self, args: list[str]) -> str:
        scpi.none(args)
        return "1"

    def _wai(self, args: list[str]) -> None:
        scpi.none(args)

    def _stb(self) -> int:
        stb = 1 if self.events["MEAS"] & self.enables["MEAS"] else 0
        stb |= 4 if len(self.errors) else 0
        stb |= 8 if self.events["QUES"] & self.enables["QUES"] else 0
        stb |= 32 if self.esr & self.ese else 0
        stb |= 128 if self.events["OPER"] & self.enables["OPER"] else 0
        return stb | (64 if stb & self.sre else 0)

    def _stb_query(self, args: list[str]) -> str:
        scpi.none(args)
        return str(self._stb())

    def _esr_query(self, args: list[str]) -> str:
        scpi.none(args)
        value, self.esr = self.esr, 0
        return str(value)

    def _register(self, name: str) -> tuple[Callable, Callable]:
        def set_(args: list[str]) -> None:
            setattr(self, name, scpi.integer(scpi.one(args), 0, 255))

        def query(args: list[str]) -> str:
            scpi.none(args)
            return str(getattr(self, name))

        return set_, query

    def _trg(self, args: list[str]) -> None:
        scpi.none(args)
        raise ScpiError(-211)  # no layer waits for a bus trigger in this simulator

    def _tst(self, args: list[str]) -> str:
        scpi.none(args)
        return "0"

    # -- handlers: SYSTem and STATus ---------------------------------------------------
    def _err_next(self, args: list[str]) -> str:
        scpi.none(args)
        return ErrorQueue.format(self.errors.next())

    def _err_all(self, args: list[str]) -> str:
        scpi.none(args)
        entries = [self.errors.next() for _ in range(len(self.errors))] or [(0, "No error")]
        return ",".join(ErrorQueue.format(e) for e in entries)

    def _err_count(self, args: list[str]) -> str:
        scpi.none(args)
        return str(len(self.errors))

    def _err_code_next(self, args: list[str]) -> str:
        scpi.none(args)
        return str(self.errors.next()[0])

    def _err_code_all(self, args: list[str]) -> str:
        scpi.none(args)
        codes = [self.errors.next()[0] for _ in range(len(self.errors))] or [0]
        return ",".join(str(c) for c in codes)

    def _err_clear(self, args: list[str]) -> None:
        scpi.none(args)
        self.errors.clear()

    def _version(self, args: list[str]) -> str:
        scpi.none(args)
        return "1996.0"

    def _set_lfr(self, args: list[str]) -> None:
        value = scpi.integer(scpi.one(args), 50, 60, default=60)
        if value not in (50, 60):
            raise ScpiError(-222)
        self.cfg["lfr"] = value

    def _set_azero(self, args: list[str]) -> None:
        if scpi.one(args).strip().upper() == "ONCE":
            return  # a one-shot zero; the state stays
        self.cfg["azero"] = scpi.boolean(args[0])

    def _beep(self, args: list[str]) -> None:
        if len(args) < 2:
            raise ScpiError(-109)
        if len(args) > 2:
            raise ScpiError(-108)
        scpi.number(args[0], 65.0, 2e6)
        scpi.number(args[1], 0.0, 7.9)

    def _noop(self, args: list[str]) -> None:
        scpi.none(args)

    def _time(self, args: list[str]) -> str:
        scpi.none(args)
        return _num(self.world.clock.now(self.name) - self._t0)

    def _time_reset(self, args: list[str]) -> None:
        scpi.none(args)
        self._t0 = self.world.clock.now(self.name)

    def _status_preset(self, args: list[str]) -> None:
        scpi.none(args)
        for key in self.enables:
            self.enables[key] = 0

    def _event_register(self, name: str) -> tuple[Callable, Callable, Callable, Callable]:
        def event(args: list[str]) -> str:
            scpi.none(args)
            value, self.events[name] = self.events[name], 0
            return str(value)

        def set_enable(args: list[str]) -> None:
            self.enables[name] = scpi.integer(scpi.one(args), 0, 65535)

        def enable(args: list[str]) -> str:
            scpi.none(args)
            return str(self.enables[name])

        def condition(args: list[str]) -> str:
            scpi.none(args)
            state = self.world.buses[self.bus]
            compliant = name == "MEAS" and self.output and state.in_compliance
            return str(ME_COMPLIANCE if compliant else 0)

        return event, set_enable, enable, condition

    # -- handlers: generic settings ----------------------------------------------------
    def _keyword_query(self, args: list[str], lo, hi, default) -> str | None:
        """MIN/MAX/DEF of a numeric query, or None for the plain query."""
        if not args:
            return None
        text = scpi.one(args).strip().upper()
        if text not in ("MIN", "MINIMUM", "MAX", "MAXIMUM", "DEF", "DEFAULT"):
            raise ScpiError(-224)
        return _num(scpi.number(text, lo, hi, default=default))

    def _number(self, key: str, lo: float, hi: float, after=None) -> tuple[Callable, Callable]:
        default = RESET_DEFAULTS.get(key, TRACE_POWER_ON.get(key))

        def set_(args: list[str]) -> None:
            value = scpi.number(scpi.one(args), lo, hi, default=default)
            if after is None:
                self.cfg[key] = value
            else:
                after(value)

        def query(args: list[str]) -> str:
            return self._keyword_query(args, lo, hi, default) or _num(self.cfg[key])

        return set_, query

    def _integer(self, key: str, lo: int, hi: int, after=None) -> tuple[Callable, Callable]:
        default = RESET_DEFAULTS.get(key, TRACE_POWER_ON.get(key))

        def set_(args: list[str]) -> None:
            value = scpi.integer(scpi.one(args), lo, hi, default=default)
            if after is None:
                self.cfg[key] = value
            else:
                after(value)

        def query(args: list[str]) -> str:
            if args:
                return str(round(float(self._keyword_query(args, lo, hi, default))))
            return str(self.cfg[key])

        return set_, query

    def _bool(self, key: str, after=None) -> tuple[Callable, Callable]:
        def set_(args: list[str]) -> None:
            value = scpi.boolean(scpi.one(args))
            if after is None:
                self.cfg[key] = value
            else:
                after(value)

        def query(args: list[str]) -> str:
            scpi.none(args)
            return _flag(self.cfg[key])

        return set_, query

    def _choice(self, key: str, choices: tuple[str, ...], after=None) -> tuple[Callable, Callable]:
        def set_(args: list[str]) -> None:
            value = scpi.choice(scpi.one(args), choices)
            if after is None:
                self.cfg[key] = value
            else:
                after(value)

        def query(args: list[str]) -> str:
            scpi.none(args)
            return str(self.cfg[key])

        return set_, query

    def _events(self, key: str, choices: tuple[str, ...]) -> tuple[Callable, Callable]:
        """A list of output/input trigger events (``NONE`` alone clears it)."""

        def set_(args: list[str]) -> None:
            if not args:
                raise ScpiError(-109)
            names = [scpi.choice(a, choices) for a in args]
            if "NONE" in names and len(names) > 1:
                raise ScpiError(-221)
            self.cfg[key] = tuple(dict.fromkeys(names))

        def query(args: list[str]) -> str:
            scpi.none(args)
            return ",".join(self.cfg[key])

        return set_, query

    # -- handlers: OUTPut and SOURce ---------------------------------------------------
    def _set_output(self, on: bool) -> None:
        if on:
            self._output_on()
        else:
            self._output_off()

    def _output_query(self, args: list[str]) -> str:
        scpi.none(args)
        return _flag(self.output)

    def _clear(self, args: list[str]) -> None:
        scpi.none(args)
        self._output_off()

    def _set_source_func(self, func: str) -> None:
        if func not in ("CURR", "VOLT"):
            raise ScpiError(-224)  # MEMory sweeps are not simulated
        if self._sweep is not None and func != self.cfg["source_func"]:
            raise ScpiError(-221)  # an armed sweep owns the source
        self.cfg["source_func"] = func
        self._bias()  # with the output on, the new function sources its programmed level

    def _source_level(self, kind: str, limit: float, ranges) -> tuple[Callable, Callable]:
        key, range_key, auto_key = f"{kind}_level", f"{kind}_range", f"{kind}_range_auto"

        def after(value: float) -> None:
            if self.cfg[auto_key]:
                self.cfg[range_key] = _pick_range(value, ranges)
            elif abs(value) > float(self.cfg[range_key]) * (1 + 1e-9):
                raise ScpiError(-222)  # beyond the fixed source range
            self.cfg[key] = value
            if kind == self._kind:  # the other function's level only waits in store
                if self.output and self._sweep is None:
                    self._spend(SOURCE_CHANGE_S)
                self._bias()

        return self._number(key, -limit, limit, after)

    def _range_argument(self, args: list[str], key: str, ranges, default: float) -> float:
        """The range a RANGe command picks: a value, MIN/MAX/DEF, or UP/DOWN from the present."""
        i = ranges.index(float(self.cfg[key]))
        value = scpi.number(
            scpi.one(args),
            -ranges[-1],
            ranges[-1],
            default=default,
            minimum=ranges[0],
            maximum=ranges[-1],
            up=ranges[min(i + 1, len(ranges) - 1)],
            down=ranges[max(i - 1, 0)],
        )
        return _pick_range(value, ranges)

    def _source_range(self, kind: str, ranges) -> tuple[Callable, Callable]:
        key, level_key, auto_key = f"{kind}_range", f"{kind}_level", f"{kind}_range_auto"
        default = RESET_DEFAULTS[key]

        def set_(args: list[str]) -> None:
            chosen = self._range_argument(args, key, ranges, default)
            if abs(float(self.cfg[level_key])) > chosen * (1 + 1e-9):
                raise ScpiError(-221)  # the programmed level would not fit
            self.cfg[key], self.cfg[auto_key] = chosen, False

        def query(args: list[str]) -> str:
            return self._keyword_query(args, ranges[0], ranges[-1], default) or _num(self.cfg[key])

        return set_, query

    def _source_range_auto(self, kind: str, ranges) -> tuple[Callable, Callable]:
        def after(on: bool) -> None:
            self.cfg[f"{kind}_range_auto"] = on
            if on:
                self.cfg[f"{kind}_range"] = _pick_range(float(self.cfg[f"{kind}_level"]), ranges)

        return self._bool(f"{kind}_range_auto", after)

    def _set_source_delay(self, value: float) -> None:
        self.cfg["source_delay"], self.cfg["source_delay_auto"] = value, False

    def _source_list(self, kind: str, limit: float) -> tuple[Callable, Callable, Callable,
                                                            Callable]:
        return scpi.list_handlers(lambda: self.cfg, f"{kind}_list", limit,
                                  per_command=MAX_LIST_PER_COMMAND, total=MAX_POINTS, fmt=_num)

    # -- handlers: SENSe ---------------------------------------------------------------
    @staticmethod
    def _func_name(arg: str) -> str:
        name = scpi.string(arg).strip().upper()
        name = name[:-3] if name.endswith(":DC") else name
        for key, forms in (
            ("VOLT", ("VOLT", "VOLTAGE")),
            ("CURR", ("CURR", "CURRENT")),
            ("RES", ("RES", "RESISTANCE")),
        ):
            if name in forms:
                return key
        raise ScpiError(-224)

    def _set_funcs(self, funcs: set[str]) -> None:
        self.cfg["funcs"] = tuple(f for f in ("VOLT", "CURR", "RES") if f in funcs)

    def _func_on(self, args: list[str]) -> None:
        if not args:
            raise ScpiError(-109)
        names = {self._func_name(a) for a in args}
        if not self.cfg["concurrent"]:
            if len(names) > 1:
                raise ScpiError(-221)
            self._set_funcs(names)
        else:
            self._set_funcs(set(self.cfg["funcs"]) | names)

    def _func_off(self, args: list[str]) -> None:
        if not args:
            raise ScpiError(-109)
        names = {self._func_name(a) for a in args}
        self._set_funcs(set(self.cfg["funcs"]) - names)

    def _func_all(self, args: list[str]) -> None:
        scpi.none(args)
        if not self.cfg["concurrent"]:
            raise ScpiError(-221)
        self._set_funcs({"VOLT", "CURR", "RES"})

    def _func_off_all(self, args: list[str]) -> None:
        scpi.none(args)
        self._set_funcs(set())

    def _funcs_query(self, args: list[str], *, on: bool = True) -> str:
        scpi.none(args)
        names = [f for f in ("VOLT", "CURR", "RES") if (f in self.cfg["funcs"]) == on]
        return ",".join(f'"{FUNC_NAMES[f]}"' for f in names)

    def _func_count(self, args: list[str]) -> str:
        scpi.none(args)
        return str(len(self.cfg["funcs"]))

    def _func_state(self, args: list[str]) -> str:
        return _flag(self._func_name(scpi.one(args)) in self.cfg["funcs"])

    def _set_concurrent(self, on: bool) -> None:
        self.cfg["concurrent"] = on
        funcs = self.cfg["funcs"]
        if not on and len(funcs) > 1:
            # One function survives; the current function is this simulator's primary one.
            self._set_funcs({"CURR"} if "CURR" in funcs else {funcs[0]})

    def _set_volt_prot(self, value: float) -> None:
        self.cfg["volt_prot"] = value
        self._bias()

    def _set_curr_prot(self, value: float) -> None:
        self.cfg["curr_prot"] = value
        self._bias()

    def _sense_range(self, kind: str, ranges) -> tuple[Callable, Callable]:
        key = f"sense_{kind}_range"
        default = RESET_DEFAULTS[key]

        def set_(args: list[str]) -> None:
            chosen = self._range_argument(args, key, ranges, default)
            self.cfg[key], self.cfg[f"{key}_auto"] = chosen, False

        def query(args: list[str]) -> str:
            return self._keyword_query(args, ranges[0], ranges[-1], default) or _num(self.cfg[key])

        return set_, query

    def _tripped(self, args: list[str]) -> str:
        """:SENS:VOLT:PROT:TRIP?: a current source limited at its voltage compliance."""
        scpi.none(args)
        return _flag(self.output and self._source_is_current
                     and self.world.buses[self.bus].in_compliance)

    def _curr_tripped(self, args: list[str]) -> str:
        """:SENS:CURR:PROT:TRIP?: a voltage source limited at its current compliance."""
        scpi.none(args)
        return _flag(self.output and not self._source_is_current
                     and self.world.buses[self.bus].in_compliance)

    # -- handlers: measurement ---------------------------------------------------------
    def _init(self, args: list[str]) -> None:
        scpi.none(args)
        self._initiate()

    def _abort_cmd(self, args: list[str]) -> None:
        scpi.none(args)
        if self._sweep is not None:
            self._abort()
            self._end_sweep()

    def _fetch(self, args: list[str]) -> str:
        scpi.none(args)
        sweep = self._sweep
        if sweep is not None and not self._sweep_done.wait_for(
            lambda: self._sweep is not sweep, timeout=FETCH_WAIT_S
        ):
            raise ScpiError(-230)
        if not self.readings:
            raise ScpiError(-230)
        return self._format(self.readings)

    def _read(self, args: list[str]) -> str:
        scpi.none(args)
        self._initiate()
        return self._fetch([])

    def _configure(self, func: str | None) -> None:
        if self._sweep is not None:
            raise ScpiError(-213)
        if func is not None:
            self._set_funcs({func})
        self.cfg.update(
            trig_source="IMM",
            arm_source="IMM",
            trig_count=1,
            arm_count=1,
            trig_delay=0.0,
            trace_cont="NEV",
            azero=True,
        )
        if not self.cfg["clear_auto"]:
            self._output_on()

    def _conf_command(self, func: str) -> Callable:
        def set_(args: list[str]) -> None:
            scpi.none(args)
            self._configure(func)

        return set_

    def _measure(self, func: str | None) -> Callable:
        def query(args: list[str]) -> str:
            scpi.none(args)
            self._configure(func)
            self._initiate()
            return self._fetch([])

        return query

    # -- handlers: FORMat, TRACe, CALCulate3 -------------------------------------------
    def _set_form_data(self, args: list[str]) -> None:
        if not args:
            raise ScpiError(-109)
        kind = scpi.choice(args[0], ("ASCii", "REAL", "SREal"))
        if kind != "ASC":
            raise ScpiError(-221)  # binary transfer is not simulated
        if len(args) > 1:
            raise ScpiError(-108)
        self.cfg["form_data"] = kind

    def _set_elements(self, args: list[str]) -> None:
        if not args:
            raise ScpiError(-109)
        names = {
            scpi.choice(a, ("VOLTage", "CURRent", "RESistance", "TIME", "STATus")) for a in args
        }
        self.cfg["form_elem"] = tuple(e for e in ELEMENTS if e in names)

    def _elements(self, args: list[str]) -> str:
        scpi.none(args)
        return ",".join(self.cfg["form_elem"])

    def _trace_clear(self, args: list[str]) -> None:
        scpi.none(args)
        self.trace = []
        self.events["MEAS"] &= ~ME_BUFFER_FULL

    def _set_trace_points(self, value: int) -> None:
        if self.cfg["trace_cont"] == "NEXT":
            raise ScpiError(-221)  # not while storage is enabled
        self.cfg["trace_points"] = value

    def _trace_actual(self, args: list[str]) -> str:
        scpi.none(args)
        return str(len(self.trace))

    def _set_feed(self, args: list[str]) -> None:
        m = re.fullmatch(r"(SENS|SENSE|CALC|CALCULATE)([12]?)", scpi.one(args).strip().upper())
        if not m:
            raise ScpiError(-224)
        if self.cfg["trace_cont"] == "NEXT":
            raise ScpiError(-221)
        self.cfg["trace_feed"] = ("SENS" if m.group(1).startswith("SENS") else "CALC") + (
            m.group(2) or "1"
        )

    def _trace_data(self, args: list[str]) -> str:
        scpi.none(args)
        return self._format(self.trace, trace_times=True)

    def _trace_free(self, args: list[str]) -> str:
        scpi.none(args)
        used = len(self.trace) * 40  # the 2400 reports bytes; 40 per reading is close
        return f"{MAX_POINTS * 40 - used},{used}"

    def _calc3_data(self, args: list[str]) -> str:
        scpi.none(args)
        if not self.trace:
            raise ScpiError(-230)
        out = []
        for column in range(3):
            values = [r[column] for r in self.trace if r[column] != NAN]
            out.append(self._statistic(values) if values else NAN)
        return ",".join(f"{v:+.6E}" for v in out)

    def _statistic(self, values: list[float]) -> float:
        kind = self.cfg["calc3_form"]
        if kind == "MEAN":
            return math.fsum(values) / len(values)
        if kind == "MAX":
            return max(values)
        if kind == "MIN":
            return min(values)
        if kind == "PKPK":
            return max(values) - min(values)
        if len(values) < 2:
            return 0.0
        mean = math.fsum(values) / len(values)
        return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))

    def _set_trig_count(self, value: int) -> None:
        if value * int(self.cfg["arm_count"]) > MAX_POINTS:
            raise ScpiError(-221)
        self.cfg["trig_count"] = value

    def _set_arm_count(self, value: int) -> None:
        if value * int(self.cfg["trig_count"]) > MAX_POINTS:
            raise ScpiError(-221)
        self.cfg["arm_count"] = value

    # -- the command table -------------------------------------------------------------
    def _build_tree(self) -> CommandTree:
        curr_list = self._source_list("curr", I_RANGES[-1])
        volt_list = self._source_list("volt", V_RANGES[-1])
        meas = self._event_register("MEAS")
        ques = self._event_register("QUES")
        oper = self._event_register("OPER")
        trig = ":TRIGger[:SEQuence[1]]"
        arm = ":ARM[:SEQuence[1]][:LAYer[1]]"
        table: list[tuple[str, Callable | None, Callable | None]] = [
            # IEEE 488.2 common commands
            ("*IDN", None, self._idn),
            ("*RST", self._rst, None),
            ("*CLS", self._cls, None),
            ("*OPC", self._opc, self._opc_query),
            ("*WAI", self._wai, None),
            ("*STB", None, self._stb_query),
            ("*ESR", None, self._esr_query),
            ("*ESE", *self._register("ese")),
            ("*SRE", *self._register("sre")),
            ("*TRG", self._trg, None),
            ("*TST", None, self._tst),
            # SYSTem
            (":SYSTem:ERRor[:NEXT]", None, self._err_next),
            (":SYSTem:ERRor:ALL", None, self._err_all),
            (":SYSTem:ERRor:COUNt", None, self._err_count),
            (":SYSTem:ERRor:CODE[:NEXT]", None, self._err_code_next),
            (":SYSTem:ERRor:CODE:ALL", None, self._err_code_all),
            (":SYSTem:CLEar", self._err_clear, None),
            (":SYSTem:PRESet", self._rst, None),
            (":SYSTem:VERSion", None, self._version),
            (":SYSTem:LFRequency", self._set_lfr, self._integer("lfr", 50, 60)[1]),
            (":SYSTem:LFRequency:AUTO", *self._bool("lfr_auto")),
            (":SYSTem:AZERo[:STATe]", self._set_azero, self._bool("azero")[1]),
            (":SYSTem:BEEPer[:IMMediate]", self._beep, None),
            (":SYSTem:BEEPer:STATe", *self._bool("beeper")),
            (":SYSTem:RSENse", *self._bool("rsense")),
            (":SYSTem:TIME", None, self._time),
            (":SYSTem:TIME:RESet", self._time_reset, None),
            (":SYSTem:LOCal", self._noop, None),
            (":SYSTem:REMote", self._noop, None),
            (":SYSTem:RWLock", self._noop, None),
            # STATus
            (":STATus:PRESet", self._status_preset, None),
            (":STATus:MEASurement[:EVENt]", None, meas[0]),
            (":STATus:MEASurement:ENABle", meas[1], meas[2]),
            (":STATus:MEASurement:CONDition", None, meas[3]),
            (":STATus:QUEStionable[:EVENt]", None, ques[0]),
            (":STATus:QUEStionable:ENABle", ques[1], ques[2]),
            (":STATus:QUEStionable:CONDition", None, ques[3]),
            (":STATus:OPERation[:EVENt]", None, oper[0]),
            (":STATus:OPERation:ENABle", oper[1], oper[2]),
            (":STATus:OPERation:CONDition", None, oper[3]),
            (":STATus:QUEue[:NEXT]", None, self._err_next),
            (":STATus:QUEue:CLEar", self._err_clear, None),
            # DISPlay, ROUTe, OUTPut
            (":DISPlay:ENABle", *self._bool("display")),
            (":ROUTe:TERMinals", *self._choice("terminals", ("FRONt", "REAR"))),
            (":OUTPut[1][:STATe]", self._bool("output", self._set_output)[0], self._output_query),
            (":OUTPut[1]:SMODe", *self._choice("smode", ("HIMPedance", "NORMal", "ZERO", "GUARd"))),
            # SOURce
            (
                ":SOURce[1]:FUNCtion[:MODE]",
                *self._choice(
                    "source_func", ("CURRent", "VOLTage", "MEMory"), self._set_source_func
                ),
            ),
            (
                ":SOURce[1]:CURRent[:LEVel][:IMMediate][:AMPLitude]",
                *self._source_level("curr", I_RANGES[-1], I_RANGES),
            ),
            (":SOURce[1]:CURRent:RANGe", *self._source_range("curr", I_RANGES)),
            (":SOURce[1]:CURRent:RANGe:AUTO", *self._source_range_auto("curr", I_RANGES)),
            (":SOURce[1]:CURRent:MODE", *self._choice("curr_mode", ("FIXed", "LIST", "SWEep"))),
            (":SOURce[1]:CURRent:STARt", *self._number("curr_start", -1.05, 1.05)),
            (":SOURce[1]:CURRent:STOP", *self._number("curr_stop", -1.05, 1.05)),
            (
                ":SOURce[1]:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
                *self._source_level("volt", V_RANGES[-1], V_RANGES),
            ),
            (":SOURce[1]:VOLTage:RANGe", *self._source_range("volt", V_RANGES)),
            (":SOURce[1]:VOLTage:RANGe:AUTO", *self._source_range_auto("volt", V_RANGES)),
            (":SOURce[1]:VOLTage:MODE", *self._choice("volt_mode", ("FIXed", "LIST", "SWEep"))),
            (":SOURce[1]:VOLTage:STARt", *self._number("volt_start", -210.0, 210.0)),
            (":SOURce[1]:VOLTage:STOP", *self._number("volt_stop", -210.0, 210.0)),
            (":SOURce[1]:SWEep:POINts", *self._integer("sweep_points", 2, MAX_POINTS)),
            (":SOURce[1]:SWEep:SPACing", *self._choice("sweep_spacing", ("LINear",))),
            (
                ":SOURce[1]:DELay",
                *self._number("source_delay", 0.0, 999.9999, self._set_source_delay),
            ),
            (":SOURce[1]:DELay:AUTO", *self._bool("source_delay_auto")),
            (":SOURce[1]:CLEar[:IMMediate]", self._clear, None),
            (":SOURce[1]:CLEar:AUTO", *self._bool("clear_auto")),
            (":SOURce[1]:CLEar:AUTO:MODE", *self._choice("clear_auto_mode", ("ALWays", "TCOunt"))),
            (":SOURce[1]:LIST:CURRent", curr_list[0], curr_list[1]),
            (":SOURce[1]:LIST:CURRent:APPend", curr_list[2], None),
            (":SOURce[1]:LIST:CURRent:POINts", None, curr_list[3]),
            (":SOURce[1]:LIST:VOLTage", volt_list[0], volt_list[1]),
            (":SOURce[1]:LIST:VOLTage:APPend", volt_list[2], None),
            (":SOURce[1]:LIST:VOLTage:POINts", None, volt_list[3]),
            # SENSe
            (":SENSe[1]:FUNCtion:CONCurrent", *self._bool("concurrent", self._set_concurrent)),
            (":SENSe[1]:FUNCtion[:ON]", self._func_on, self._funcs_query),
            (":SENSe[1]:FUNCtion[:ON]:ALL", self._func_all, None),
            (":SENSe[1]:FUNCtion[:ON]:COUNt", None, self._func_count),
            (
                ":SENSe[1]:FUNCtion:OFF",
                self._func_off,
                lambda args: self._funcs_query(args, on=False),
            ),
            (":SENSe[1]:FUNCtion:OFF:ALL", self._func_off_all, None),
            (":SENSe[1]:FUNCtion:STATe", None, self._func_state),
            (
                ":SENSe[1]:CURRent[:DC]:PROTection[:LEVel]",
                *self._number("curr_prot", -1.05, 1.05, self._set_curr_prot),
            ),
            (":SENSe[1]:CURRent[:DC]:PROTection:TRIPped", None, self._curr_tripped),
            (
                ":SENSe[1]:VOLTage[:DC]:PROTection[:LEVel]",
                *self._number("volt_prot", -210.0, 210.0, self._set_volt_prot),
            ),
            (":SENSe[1]:VOLTage[:DC]:PROTection:TRIPped", None, self._tripped),
            (":SENSe[1]:CURRent[:DC]:RANGe[:UPPer]", *self._sense_range("curr", I_RANGES)),
            (":SENSe[1]:CURRent[:DC]:RANGe:AUTO", *self._bool("sense_curr_range_auto")),
            (":SENSe[1]:VOLTage[:DC]:RANGe[:UPPer]", *self._sense_range("volt", V_RANGES)),
            (":SENSe[1]:VOLTage[:DC]:RANGe:AUTO", *self._bool("sense_volt_range_auto")),
            (":SENSe[1]:RESistance:RANGe[:UPPer]", *self._sense_range("res", R_RANGES)),
            (":SENSe[1]:RESistance:RANGe:AUTO", *self._bool("sense_res_range_auto")),
            (":SENSe[1]:RESistance:MODE", *self._choice("res_mode", ("MANual", "AUTO"))),
            (":SENSe[1]:RESistance:OCOMpensated", *self._bool("res_ocomp")),
            # NPLC is one global setting, reachable through each function.
            (":SENSe[1]:CURRent[:DC]:NPLCycles", *self._number("nplc", 0.01, 10.0)),
            (":SENSe[1]:VOLTage[:DC]:NPLCycles", *self._number("nplc", 0.01, 10.0)),
            (":SENSe[1]:RESistance:NPLCycles", *self._number("nplc", 0.01, 10.0)),
            (":SENSe[1]:AVERage[:STATe]", *self._bool("aver")),
            (":SENSe[1]:AVERage:TCONtrol", *self._choice("aver_tcon", ("REPeat", "MOVing"))),
            (":SENSe[1]:AVERage:COUNt", *self._integer("aver_count", 1, 100)),
            # Measurement
            (":INITiate[:IMMediate]", self._init, None),
            (":ABORt", self._abort_cmd, None),
            (":FETCh", None, self._fetch),
            (":READ", None, self._read),
            (":MEASure", None, self._measure(None)),
            (":MEASure:CURRent[:DC]", None, self._measure("CURR")),
            (":MEASure:VOLTage[:DC]", None, self._measure("VOLT")),
            (":MEASure:RESistance", None, self._measure("RES")),
            (":CONFigure", None, self._funcs_query),
            (":CONFigure:CURRent[:DC]", self._conf_command("CURR"), None),
            (":CONFigure:VOLTage[:DC]", self._conf_command("VOLT"), None),
            (":CONFigure:RESistance", self._conf_command("RES"), None),
            # FORMat
            (":FORMat[:DATA]", self._set_form_data, self._choice("form_data", ())[1]),
            (":FORMat:ELEMents[:SENSe[1]]", self._set_elements, self._elements),
            (":FORMat:SREGister", *self._choice("form_sreg", ("ASCii",))),
            (":FORMat:BORDer", *self._choice("form_bord", ("NORMal", "SWAPped"))),
            # TRACe (alias :DATA) and CALCulate3
            *[
                entry
                for root in (":TRACe", ":DATA")
                for entry in (
                    (f"{root}:DATA", None, self._trace_data),
                    (f"{root}:CLEar", self._trace_clear, None),
                    (f"{root}:FREE", None, self._trace_free),
                    (
                        f"{root}:POINts",
                        *self._integer("trace_points", 1, MAX_POINTS, self._set_trace_points),
                    ),
                    (f"{root}:POINts:ACTual", None, self._trace_actual),
                    (f"{root}:FEED", self._set_feed, self._choice("trace_feed", ())[1]),
                    (f"{root}:FEED:CONTrol", *self._choice("trace_cont", ("NEXT", "NEVer"))),
                    (f"{root}:TSTamp:FORMat", *self._choice("trace_tstamp", ("ABSolute", "DELTa"))),
                )
            ],
            (
                ":CALCulate3:FORMat",
                *self._choice("calc3_form", ("MEAN", "SDEViation", "MAXimum", "MINimum", "PKPK")),
            ),
            (":CALCulate3:DATA", None, self._calc3_data),
            # TRIGger and ARM
            (f"{trig}:COUNt", *self._integer("trig_count", 1, MAX_POINTS, self._set_trig_count)),
            (f"{trig}:DELay", *self._number("trig_delay", 0.0, 999.9999)),
            (f"{trig}:SOURce", *self._choice("trig_source", ("IMMediate", "TLINk"))),
            (f"{trig}[:TCONfigure]:ILINe", *self._integer("trig_ilin", 1, 4)),
            (f"{trig}[:TCONfigure]:OLINe", *self._integer("trig_olin", 1, 4)),
            (
                f"{trig}[:TCONfigure]:OUTPut",
                *self._events("trig_outp", ("SOURce", "DELay", "SENSe", "NONE")),
            ),
            (
                f"{trig}[:TCONfigure]:INPut",
                *self._events("trig_inp", ("SOURce", "DELay", "SENSe", "NONE")),
            ),
            (f"{trig}[:TCONfigure]:DIRection", *self._choice("trig_dir", ("SOURce", "ACCeptor"))),
            (":TRIGger:CLEar", self._noop, None),
            (f"{arm}:COUNt", *self._integer("arm_count", 1, MAX_POINTS, self._set_arm_count)),
            (
                f"{arm}:SOURce",
                *self._choice(
                    "arm_source",
                    ("IMMediate", "TLINk", "TIMer", "MANual", "BUS", "NSTest", "PSTest", "BSTest"),
                ),
            ),
            (f"{arm}:TIMer", *self._number("arm_timer", 0.001, 99999.99)),
            (f"{arm}[:TCONfigure]:ILINe", *self._integer("arm_ilin", 1, 4)),
            (f"{arm}[:TCONfigure]:OLINe", *self._integer("arm_olin", 1, 4)),
            (f"{arm}[:TCONfigure]:OUTPut", *self._events("arm_outp", ("TENTer", "TEXit", "NONE"))),
            (f"{arm}[:TCONfigure]:DIRection", *self._choice("arm_dir", ("SOURce", "ACCeptor"))),
        ]
        tree = CommandTree()
        for pattern, set_, query in table:
            tree.add(pattern, set_, query)
        return tree

    # -- fault hooks -------------------------------------------------------------------
    # Used by simulators.faults (FaultSpec.stick_compliance_after); nothing else sets them.
    fault_stuck_compliance: bool = False

    def stick_compliance(self, on: bool = True) -> None:
        """Fault: report compliance (status bit 3, value 8) in every reading while on."""
        with self.world.lock:
            self.fault_stuck_compliance = on
