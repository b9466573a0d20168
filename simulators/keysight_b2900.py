"""Simulated Keysight B2902A Precision Source/Measure Unit: two channels, SCPI.

Each channel is the SMU of one :class:`~simulators.cabling.SmuCable` of the world's cabling
(both cables name the same instrument, channels "1" and "2"): with its output on, a channel
drives its row. A current source drives its level with ``world.drive`` and the voltage
limit ``:SENS[c]:VOLT:PROT``; a voltage source is physical too, ``world.drive_voltage``
with the current limit ``:SENS[c]:CURR:PROT``: the world solves the device current at the
source voltage, and when the devices would draw more than the limit the channel sits in
current compliance at a lower voltage. Turning an output off releases the row whatever
``:OUTP[c]:OFF:MODE`` says (ZERO, HIZ and NORMal all leave no device current). Units: A, V,
Ohm, s.

Reference: Agilent/Keysight B2900 Series SCPI Command Reference (B2910-90030, Edition 2,
July 2011, and the B2961A/B2962A Edition 6 text, which is the same). From there:
channel suffix ``[c]`` 1 or 2, a missing suffix meaning 1 (p. 1-8); channel lists
``(@1)``, ``(@2)``, ``(@1,2)``, ``(@1:2)``, ``(@2,1)``, ``(@2:1)``, default ``(@1)``,
data of both channels always channel 1 first, interleaved step by step in ``:FETC:ARR?``
(p. 4-68); ``:FORM:ELEM:SENS`` elements in the fixed order VOLT, CURR, RES, TIME, STAT,
SOUR, all six until the command is sent; +9.910000E+37 ("not a number") for a function
that is not measured or data that does not exist (pp. 1-12, 4-21); ``:FORM[:DATA]
ASCii|REAL,32|REAL,64`` with IEEE 488.2 definite-length blocks ``#<digits><length><bytes>``
plus the newline, ``:FORM:BORD NORMal|SWAPped`` (p. 1-12; NORMal is taken as most
significant byte first, SWAPped as little-endian); lists of at most 2500 values in total
(p. 4-105); the status word of Table 1-2 (bit 0: current source, bits 1-2: compliance,
value 2 here, bit 13: range overflow); the source ranges of Tables 2-4/2-6 with their
over-range (see ``V_RANGES``/``I_RANGES``). Error numbers are the standard SCPI ones
of chapter 5 (-1xx command, -2xx execution errors).

Decisions where the simulator simplifies or had to choose (manual pages not at hand):

* Bad input: a header suffix other than 1 or 2 (``:SOUR3:CURR``) is -114 "Header suffix
  out of range"; a channel other than 1 or 2 in a channel list (``(@3)``) is -224
  "Illegal parameter value" (a list of possibles was expected); a list beyond 2500 values
  is -223 "Too much data"; a level outside the fixed source range (auto range off) or
  beyond the top range, and any number outside a command's range, is -222 "Data out of
  range". A refused command changes nothing.
* Trigger system: per channel an ACQuire and a TRANsient layer (``:TRIG[c][:ALL]|:ACQ|
  :TRAN:COUN|SOUR|TIM|DEL|TOUT[:STAT]|TOUT:SIGN``; ALL sets both, and its query reads the
  ACQuire layer). ``:INIT (@...)`` starts the listed channels together: step j sets every
  listed channel's level j (transient), pulses the transient trigger outputs, then takes
  every listed channel's reading (acquire, with its own trigger output pulse). The
  trigger sources AINT and TIMer run within ``:INIT``; BUS, INT1, INT2 and LAN are -221 at
  ``:INIT``. A channel with fewer steps than the other idles after its last one. After the
  sweep every source returns to its fixed (``[:IMM]``) level. The arm layer is stored only.
* External triggers (a slave of another instrument's trigger output): a channel whose
  TRANsient source is ``EXTn`` (its ACQuire source ``EXTm`` or AINT, which here means
  "after each transient step") is armed by ``:INIT`` (which returns at once, after
  INITIATE_OVERHEAD_S) on Digital I/O line n of the trigger link
  (``world.subscribe_trigger``: pulses arrive only along the cabling's trigger cables).
  Each pulse on the transient line sets the channel's next level; each pulse on the
  acquire line (or, with ACQ AINT, each transient step) takes its next reading, the
  source having been set first (sources step at subscriber order 0, the ADC samples at
  10). Every pulse the instrument takes costs it one lockstep step (``_step_s``) on its
  own timeline, which the pulse first brought up to the sender's time
  (``SimClock.wait_until``), so a slave never finishes before its master's pulses; it is
  not slept (it runs in the sender's thread, in the shadow of the sender's own steps).
  When every armed channel has reached both its trigger counts the sweep ends (in a late
  subscriber, order 20, so the ADC samples the last step too) and the sources return to
  their fixed levels. ``:ABOR (@...)`` disarms the listed channels (their readings stay),
  ``*RST`` all. ``:INIT`` while a sweep is armed is -213 "Init ignored"; one ``:INIT``
  that lists external-trigger and internal-trigger channels together, or an external
  ACQuire source with an internal TRANsient one, is -221 "Settings conflict".
  ``:FETC`` and ``:READ`` on an armed sweep wait up to ``fetch_wait_s`` (wall time,
  default FETCH_WAIT_S, as the simulated 2400's ``:FETC?``) for it to end; then they queue
  -230 "Data corrupt or stale" and answer nothing (the sweep stays armed). ``*OPC?`` does
  not wait for an armed sweep here (it answers 1 at once; the instrument would wait).
  The Digital I/O pin function (``:SOUR:DIG:EXT<n>:FUNC TINP``) is not simulated: a line
  is a trigger input whenever a trigger source names it.
* ``:SOUR[c]:TOUT[:STAT]`` / ``:SOUR[c]:TOUT:SIGN`` are the transient layer's trigger
  output (the source-change trigger; the form that B2900 user scripts use), the same
  setting as ``:TRIG[c]:TRAN:TOUT``. A pulse on ``EXTn`` is ``world.pulse(name, n, step)``
  (it reaches what the cabling's trigger cables from line n lead to); INT1, INT2 and LAN
  reach nobody here.
* Time model (``world.clock``): a sweep step lasts max(MIN_TRIGGER_INTERVAL_S, the TIMer
  interval when the source is TIMer, trigger delay + aperture + ACQUIRE_OVERHEAD_S) over
  the listed channels (they run in lockstep). The aperture is NPLC / line frequency, 8 us
  to 2 s (NPLC 4e-4 to 100 at 50 Hz, 4.8e-4 to 120 at 60 Hz; p. 4-88 of Edition 6).
  MIN_TRIGGER_INTERVAL_S is the data sheet's minimum arm/trigger interval of the
  B2901A/B2902A (20 us; the B2911A/B2912A: 10 us), and the trigger count range 1 to
  100000 is its "arm/trigger event" figure (B2900A Series data sheet, "Timer and
  triggering specification").
  ACQUIRE_OVERHEAD_S and INITIATE_OVERHEAD_S are assumptions of this simulator (the user's
  guide says only "measurement time = aperture time + overhead time"). A spot ``:MEAS?``
  costs aperture + overhead.
* ``:MEAS?``/``:MEAS:<elem>?`` is a spot measurement of the present output of each listed
  channel; it neither turns an output on nor runs the trigger system. ``:INIT`` and
  ``:READ:ARR?`` turn a listed channel's output on when ``:OUTP[c]:ON:AUTO`` is on (its
  default, p. 4-67 of Edition 6); with it off, a channel whose output is off measures the
  released row (0 V, no current). Current readings carry no noise; voltage readings carry
  ``world.smu_noise(nplc)``.
* An NPLC or aperture beyond its range is set to the minimum or maximum, as the manual
  says for ``:SENS:<func>:NPLC`` (p. 4-88 of Edition 6), not refused.
* Reset defaults (``*RST``): from the manual, the compliance 100 uA / 2 V (p. 4-90 of
  Edition 6), NPLC 0.1, auto source ranging on (p. 4-96), output auto-on on, levels 0
  and list (0); assumed: source VOLT, FIXed modes, sense functions VOLT and CURR, output
  off, off mode ZERO, trigger and arm counts 1, sources AINT, timer 20 us, delay 0,
  trigger outputs off on EXT1, format ASCii NORMal, all elements. ``*RST`` keeps the
  error queue, as SCPI says.
* A binary block must be the last query of its message (text replies before it are sent
  first, joined with ``;``).

Locking: ``handle`` holds the instrument's own lock and ``world.lock``; the world lock is
released while instrument time is slept (time_scale > 0).
"""

from __future__ import annotations

import math
import re
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from simulators import scpi
from simulators.cabling import SmuCable
from simulators.scpi import CommandTree, ErrorQueue, ScpiError, ScpiParser
from simulators.world import StationWorld

CHANNELS = ("1", "2")
NAN = 9.91e37  # the B2900's ASCII "not a number"
IDN = "Keysight Technologies,B2902A,{serial},3.4.2011.5100"
MAX_POINTS = 2500  # list values per channel (command reference p. 4-105)
MAX_COUNT = 100_000  # arm/trigger count (data sheet)
MIN_TRIGGER_INTERVAL_S = 20e-6  # B2901A/B2902A minimum arm/trigger interval (data sheet)
MAX_TIMER_S = 1e5
MIN_APERTURE_S, MAX_APERTURE_S = 8e-6, 2.0
ACQUIRE_OVERHEAD_S = 20e-6  # assumption: per reading, beyond the aperture
INITIATE_OVERHEAD_S = 0.5e-3  # assumption: per :INIT / :READ, trigger system start
FETCH_WAIT_S = 5.0  # wall time :FETC/:READ wait for an armed sweep (as the 2400's)

#: Source ranges (V, A) with the largest level each accepts (Tables 2-4 and 2-6).
V_RANGES = ((0.2, 0.21), (2.0, 2.1), (20.0, 21.0), (200.0, 210.0))
I_RANGES = (
    (1e-7, 1.05e-7), (1e-6, 1.05e-6), (1e-5, 1.05e-5), (1e-4, 1.05e-4), (1e-3, 1.05e-3),
    (1e-2, 1.05e-2), (0.1, 0.105), (1.0, 1.05), (1.5, 1.515), (3.0, 3.03),
)
MAX_V, MAX_I = V_RANGES[-1][1], I_RANGES[-1][1]
ELEMENTS = ("VOLT", "CURR", "RES", "TIME", "STAT", "SOUR")
SENSE_FUNCS = ("VOLT", "CURR", "RES")
SIGNALS = tuple(f"EXT{n}" for n in range(1, 15)) + ("LAN", "INT1", "INT2")
TRIGGER_SOURCES = ("AINT", "BUS", "TIM", "INT1", "INT2", "LAN",
                   *(f"EXT{n}" for n in range(1, 15)))
LAYERS = ("ACQ", "TRAN")
# Status word bits (Table 1-2).
ST_I_SOURCE, ST_COMPLIANCE, ST_OVERFLOW = 1, 2, 1 << 13
ESR_OPC, ESR_QYE, ESR_DDE, ESR_EXE, ESR_CME = 1, 4, 8, 16, 32

#: Per-channel *RST state (see the module docstring).
RESET_DEFAULTS: dict[str, object] = {
    "source_func": "VOLT",
    "curr_level": 0.0,
    "volt_level": 0.0,
    "curr_range": I_RANGES[0][0],
    "volt_range": V_RANGES[0][0],
    "curr_range_auto": True,
    "volt_range_auto": True,
    "curr_mode": "FIX",
    "volt_mode": "FIX",
    "curr_list": (0.0,),
    "volt_list": (0.0,),
    "curr_start": 0.0,
    "curr_stop": 0.0,
    "volt_start": 0.0,
    "volt_stop": 0.0,
    "sweep_points": 1,
    "funcs": ("VOLT", "CURR"),
    "curr_prot": 1e-4,
    "volt_prot": 2.0,
    "nplc": 0.1,
    "off_mode": "ZERO",
    "on_auto": True,
    **{f"{layer}_{key}": value for layer in LAYERS for key, value in (
        ("count", 1), ("source", "AINT"), ("timer", MIN_TRIGGER_INTERVAL_S),
        ("delay", 0.0), ("tout", False), ("tout_sign", ("EXT1",)),
        ("arm_count", 1), ("arm_source", "AINT"))},
}
#: Instrument-wide *RST state.
GLOBAL_DEFAULTS: dict[str, object] = {
    "form_data": "ASC",
    "form_bord": "NORM",
    "form_elem": ELEMENTS,
}

Reading = tuple[float, float, float, float, float, float]  # V, I, R, t, status, source
_CHANLIST = re.compile(r"\(\s*@\s*(\d+)\s*(?:([,:])\s*(\d+)\s*)?\)\Z")
# A header node with a channel suffix other than 1 or 2 (header suffix out of range).
_BAD_SUFFIX = re.compile(r"(?:^|:)(?:SOUR|SOURCE|SENS|SENSE|OUTP|OUTPUT|TRIG|TRIGGER|ARM)"
                         r"(?:[03-9]|\d\d+)(?::|$)", re.IGNORECASE)


def _num(value: float) -> str:
    return f"{value:+.6E}"


def _flag(value: object) -> str:
    return "1" if value else "0"


def channel_list(args: Sequence[str]) -> tuple[str, ...]:
    """The channels ("1", "2") of a channel-list argument, ascending; ``(@1)`` when absent.

    The parser split ``(@1,2)`` at its comma, so the arguments are joined again. -104 for
    something that is not a channel list, -224 for a channel other than 1 or 2.
    """
    if not args or args == [""]:
        return ("1",)
    m = _CHANLIST.match(",".join(a.strip() for a in args))
    if not m:
        raise ScpiError(-104)
    first, sep, last = m.groups()
    numbers = {int(first)} if sep is None else {int(first), int(last)}
    if sep == ":":
        lo, hi = sorted((int(first), int(last)))
        numbers = set(range(lo, hi + 1))
    if not numbers <= {1, 2}:
        raise ScpiError(-224)
    return tuple(str(n) for n in sorted(numbers))


def _pick_range(value: float, ranges) -> float:
    """The smallest range whose over-range holds |value|; -222 beyond the top one."""
    for nominal, top in ranges:
        if abs(value) <= top * (1 + 1e-12):
            return nominal
    raise ScpiError(-222)


def _range_top(nominal: float, ranges) -> float:
    return dict(ranges)[nominal]


class _Parser(ScpiParser):
    """The shared parser, with -114 instead of -113 for a channel suffix out of range."""

    def _resolve(self, path, header):
        try:
            return super()._resolve(path, header)
        except ScpiError as err:
            if err.code == -113 and _BAD_SUFFIX.search(header.rstrip("?")):
                raise ScpiError(-114) from None
            raise


@dataclass
class _Channel:
    """One source/measure channel: its cable, settings, output and readings."""

    name: str
    cable: SmuCable
    cfg: dict[str, object] = field(default_factory=dict)
    output: bool = False
    readings: list[Reading] = field(default_factory=list)

    @property
    def bus(self) -> str:
        return self.cable.row

    @property
    def func(self) -> str:
        return str(self.cfg["source_func"])


@dataclass
class _Plan:
    """What one channel of an externally triggered sweep does: its levels (A or V), its
    acquire count, the lines its layers wait on (acq_line None: after each transient step)
    and how far it got."""

    ch: _Channel
    levels: list[float]
    n_acq: int
    tran_line: int
    acq_line: int | None
    source: float
    tran_done: int = 0
    acq_done: int = 0

    @property
    def done(self) -> bool:
        return self.tran_done >= len(self.levels) and self.acq_done >= self.n_acq


@dataclass
class _Armed:
    """A sweep armed on external trigger lines: its channels' plans, its subscriptions."""

    plans: dict[str, _Plan]
    handles: list[int] = field(default_factory=list)


class SimB2902A:
    """A Keysight B2902A cabled into ``world``, speaking SCPI line by line.

    ``cables`` maps channel "1" and "2" to their :class:`~simulators.cabling.SmuCable` in
    ``world.cabling`` (both of one instrument, whose name is the one the trigger link
    knows). Raises ValueError for a missing or extra channel, a cable not in the world's
    cabling, cables of two instruments, or a cable whose channel is not its key.
    """

    def __init__(self, world: StationWorld, cables: Mapping[str, SmuCable], *,
                 serial: str = "MY51140001"):
        if sorted(cables) != list(CHANNELS):
            raise ValueError(f"a B2902A has channels '1' and '2', got {sorted(cables)!r}")
        names = {c.instrument for c in cables.values()}
        if len(names) != 1:
            raise ValueError(f"the cables of one B2902A name one instrument, got {names}")
        for key, cable in cables.items():
            if cable not in world.cabling.smus:
                raise ValueError(f"{cable} is not a cable of the world's cabling")
            if cable.channel != key:
                raise ValueError(f"channel {key!r} was given the cable of channel "
                                 f"{cable.channel!r} ({cable})")
        self.world = world
        self.name = names.pop()
        self.serial = serial
        self.channels = {c: _Channel(c, cables[c]) for c in CHANNELS}
        self.cfg: dict[str, object] = {"lfr": int(world.settings.line_frequency)}
        self.esr = self.ese = self.sre = 0
        self.errors = ErrorQueue(10, on_push=self._on_error)
        self._lock = threading.Lock()
        self._binary: bytes | None = None
        #: The sweep armed on external triggers (None: none), and its end.
        self._armed: _Armed | None = None
        self._armed_done = threading.Condition(world.lock)
        #: Wall seconds :FETC/:READ wait for an armed sweep (module docstring).
        self.fetch_wait_s = FETCH_WAIT_S
        #: Program messages per header kind, for tests that count the wire ("INIT", "FETC").
        self.counts: dict[str, int] = {}
        self._parser = _Parser(self._build_tree(), self.errors)
        with world.lock:
            self._reset()

    # -- protocol ----------------------------------------------------------------------
    def handle(self, line: str) -> str | bytes | None:
        """Execute one program message; the joined replies, a binary block (bytes, with
        its newline) when a binary-format query ran, or None."""
        with self._lock, self.world.lock:
            self._binary = None
            reply = self._parser.execute(line)
            block, self._binary = self._binary, None
        if block is None:
            return reply
        return (reply or "").encode("ascii") + block + b"\n"

    def _on_error(self, code: int) -> None:
        if -199 <= code <= -100:
            self.esr |= ESR_CME
        elif -299 <= code <= -200:
            self.esr |= ESR_EXE
        elif -499 <= code <= -400:
            self.esr |= ESR_QYE
        else:
            self.esr |= ESR_DDE

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    # -- state -------------------------------------------------------------------------
    def _reset(self) -> None:
        self._disarm(CHANNELS)
        for ch in self.channels.values():
            self._output_off(ch)
            ch.cfg = dict(RESET_DEFAULTS)
            ch.readings = []
        self.cfg.update(GLOBAL_DEFAULTS)
        self._t0 = self.world.clock.now(self.name)

    def _drive(self, ch: _Channel, level: float) -> None:
        """Source ``level`` (A or V, as the channel's function) on its row now."""
        if ch.func == "CURR":
            self.world.drive(ch.bus, level, abs(float(ch.cfg["volt_prot"])))
        else:
            self.world.drive_voltage(ch.bus, level, abs(float(ch.cfg["curr_prot"])))

    def _fixed_level(self, ch: _Channel) -> float:
        return float(ch.cfg["curr_level" if ch.func == "CURR" else "volt_level"])

    def _bias(self, ch: _Channel) -> None:
        """Drive the fixed level while the output is on."""
        if ch.output:
            self._drive(ch, self._fixed_level(ch))

    def _output_off(self, ch: _Channel) -> None:
        ch.output = False
        self.world.release(ch.bus)

    def _in_compliance(self, ch: _Channel) -> bool:
        state = self.world.buses[ch.bus]
        # A current source limits at its voltage limit, a voltage source at its current one.
        return ch.output and state.on and state.in_compliance

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
    def _aperture(self, ch: _Channel) -> float:
        return float(ch.cfg["nplc"]) / float(self.cfg["lfr"])

    def _sample(self, ch: _Channel, source: float) -> Reading:
        """A reading of the channel's row now (world lock held)."""
        state = self.world.buses[ch.bus]
        funcs = ch.cfg["funcs"]
        on = ch.output and state.on
        v_true = state.voltage if on else 0.0
        i_true = state.current if on else 0.0
        v = v_true + self.world.smu_noise(float(ch.cfg["nplc"]))
        volts = v if "VOLT" in funcs else NAN
        amps = i_true if "CURR" in funcs else NAN
        ohms = v / i_true if ("RES" in funcs and i_true != 0.0) else NAN
        status = ST_I_SOURCE if ch.func == "CURR" else 0
        if self._in_compliance(ch):
            status |= ST_COMPLIANCE
        t = self.world.clock.now(self.name) - self._t0
        return (volts, amps, ohms, t, float(status), source)

    def _levels(self, ch: _Channel, n: int) -> list[float]:
        """Source levels (A or V) of a channel's n transient steps."""
        kind = "curr" if ch.func == "CURR" else "volt"
        mode = ch.cfg[f"{kind}_mode"]
        if mode == "LIST":
            values = ch.cfg[f"{kind}_list"]
            return [float(values[j % len(values)]) for j in range(n)]
        if mode == "SWE":
            start, stop = float(ch.cfg[f"{kind}_start"]), float(ch.cfg[f"{kind}_stop"])
            points = int(ch.cfg["sweep_points"])
            if points == 1:
                return [start] * n
            return [start + (stop - start) * (j % points) / (points - 1) for j in range(n)]
        return [self._fixed_level(ch)] * n

    def _step_s(self, ch: _Channel) -> float:
        """Instrument time of one lockstep step as this channel alone would pace it."""
        step = MIN_TRIGGER_INTERVAL_S
        for layer in LAYERS:
            if ch.cfg[f"{layer}_source"] == "TIM":
                step = max(step, float(ch.cfg[f"{layer}_timer"]))
        busy = float(ch.cfg["ACQ_delay"]) + self._aperture(ch) + ACQUIRE_OVERHEAD_S
        return max(step, busy)

    def _pulse(self, ch: _Channel, layer: str, step: int) -> None:
        if not ch.cfg[f"{layer}_tout"]:
            return
        for signal in ch.cfg[f"{layer}_tout_sign"]:
            if signal.startswith("EXT"):
                self.world.pulse(self.name, int(signal[3:]), step)

    def _initiate(self, chans: tuple[str, ...]) -> None:
        """Run the listed channels' trigger systems together (see the module docstring)."""
        selected = [self.channels[c] for c in chans]
        if self._armed is not None:
            raise ScpiError(-213)  # a sweep is armed on the trigger link
        external = [ch for ch in selected
                    if any(str(ch.cfg[f"{layer}_source"]).startswith("EXT") for layer in LAYERS)]
        if external:
            if len(external) != len(selected):
                raise ScpiError(-221)  # one :INIT of externally and internally paced channels
            self._arm(selected)
            return
        for ch in selected:
            for layer in LAYERS:
                if ch.cfg[f"{layer}_source"] not in ("AINT", "TIM"):
                    raise ScpiError(-221)  # BUS, INT1/2, LAN: not simulated
        plans = []
        for ch in selected:
            if ch.cfg["on_auto"] and not ch.output:
                ch.output = True  # :OUTP:ON:AUTO (default ON): :INIT turns the output on
                self._bias(ch)
            n_tran, n_acq = int(ch.cfg["TRAN_count"]), int(ch.cfg["ACQ_count"])
            plans.append((ch, self._levels(ch, n_tran), n_acq))
            ch.readings = []
        steps = max(max(len(levels), n_acq) for _, levels, n_acq in plans)
        step_s = max(self._step_s(ch) for ch in selected)
        self._spend(INITIATE_OVERHEAD_S)
        source = {ch.name: self._fixed_level(ch) for ch in selected}
        for j in range(steps):
            for ch, levels, _ in plans:
                if j < len(levels):
                    source[ch.name] = levels[j]
                    if ch.output:
                        self._drive(ch, levels[j])
            for ch, levels, _ in plans:
                if j < len(levels):
                    self._pulse(ch, "TRAN", j)
            for ch, _, n_acq in plans:
                if j < n_acq:
                    self._pulse(ch, "ACQ", j)
                    ch.readings.append(self._sample(ch, source[ch.name]))
            self._spend(step_s)
        for ch in selected:
            self._bias(ch)

    # -- externally triggered sweeps (a slave on the trigger link) -----------------------
    def _arm(self, selected: list[_Channel]) -> None:
        """Arm the channels' trigger systems on their EXT lines (module docstring)."""
        for ch in selected:
            tran, acq = str(ch.cfg["TRAN_source"]), str(ch.cfg["ACQ_source"])
            if not tran.startswith("EXT") or not (acq.startswith("EXT") or acq == "AINT"):
                raise ScpiError(-221)  # an acquire paced from outside, a source from inside
        plans = {}
        for ch in selected:
            if ch.cfg["on_auto"] and not ch.output:
                ch.output = True
                self._bias(ch)
            acq = str(ch.cfg["ACQ_source"])
            plans[ch.name] = _Plan(
                ch, self._levels(ch, int(ch.cfg["TRAN_count"])), int(ch.cfg["ACQ_count"]),
                int(str(ch.cfg["TRAN_source"])[3:]),
                int(acq[3:]) if acq.startswith("EXT") else None, self._fixed_level(ch))
            ch.readings = []
        self._spend(INITIATE_OVERHEAD_S)
        armed = _Armed(plans)
        lines = sorted({p.tran_line for p in plans.values()}
                       | {p.acq_line for p in plans.values() if p.acq_line is not None})
        for line in lines:
            armed.handles += [
                self.world.subscribe_trigger(self.name, line, partial(self._on_pulse, line),
                                             order=0),
                # After the acquirers (order 10): they must sample the last step too.
                self.world.subscribe_trigger(self.name, line, self._after_pulse, order=20),
            ]
        self._armed = armed

    def _on_pulse(self, line: int, step: int) -> None:
        # World lock held, in the sender's thread: never take the instrument lock here.
        armed = self._armed
        if armed is None:
            return
        stepped = set()
        for p in armed.plans.values():
            if p.tran_line == line and p.tran_done < len(p.levels):
                p.source = p.levels[p.tran_done]
                if p.ch.output:
                    self._drive(p.ch, p.source)
                self._pulse(p.ch, "TRAN", p.tran_done)
                p.tran_done += 1
                stepped.add(p.ch.name)
        took = bool(stepped)
        for p in armed.plans.values():
            triggered = p.acq_line == line or (p.acq_line is None and p.ch.name in stepped)
            if triggered and p.acq_done < p.n_acq:
                self._pulse(p.ch, "ACQ", p.acq_done)
                p.ch.readings.append(self._sample(p.ch, p.source))
                p.acq_done += 1
                took = True
        if took:
            # Its own step on its own timeline (overlapping the sender's); not slept.
            step_s = max(self._step_s(p.ch) for p in armed.plans.values())
            self.world.clock.spend(self.name, step_s, sleep=False)

    def _after_pulse(self, step: int) -> None:
        armed = self._armed
        if armed is not None and all(p.done for p in armed.plans.values()):
            self._disarm(tuple(armed.plans))

    def _disarm(self, chans: Sequence[str]) -> None:
        """Disarm the listed channels of the armed sweep (readings stay, sources back to
        their fixed levels); the whole sweep once none is left."""
        armed = self._armed
        if armed is None:
            return
        for c in chans:
            plan = armed.plans.pop(c, None)
            if plan is not None:
                self._bias(plan.ch)
        if not armed.plans:
            for handle in armed.handles:
                self.world.unsubscribe_trigger(handle)
            self._armed = None
            self._armed_done.notify_all()

    def _wait_armed(self, chans: Sequence[str]) -> bool:
        """Wait (world lock released) up to ``fetch_wait_s`` for an armed sweep of any of
        ``chans`` to end; False if it is still armed."""
        armed = self._armed
        if armed is None or not set(chans) & set(armed.plans):
            return True
        return self._armed_done.wait_for(lambda: self._armed is not armed,
                                         timeout=self.fetch_wait_s)

    def _records(self, chans: tuple[str, ...], elements: tuple[str, ...], *,
                 latest: bool) -> list[float]:
        """Values of every reading of the listed channels, step by step, channel 1 first;
        NAN for a channel with no reading at a step (or none at all)."""
        index = [ELEMENTS.index(e) for e in elements]
        per = {c: self.channels[c].readings for c in chans}
        if latest:
            per = {c: r[-1:] for c, r in per.items()}
        steps = max(1, *(len(r) for r in per.values()))
        out: list[float] = []
        for j in range(steps):
            for c in chans:
                r = per[c]
                out.extend(r[j][i] if j < len(r) else NAN for i in index)
        return out

    def _format(self, values: list[float]) -> str:
        kind = self.cfg["form_data"]
        if kind == "ASC":
            return ",".join(_num(v) for v in values)
        code = ("f" if kind == "REAL,32" else "d")
        order = ">" if self.cfg["form_bord"] == "NORM" else "<"
        payload = struct.pack(f"{order}{len(values)}{code}",
                              *(math.nan if v == NAN else v for v in values))
        length = str(len(payload))
        self._binary = f"#{len(length)}{length}".encode("ascii") + payload
        return ""

    # -- handlers: common and SYSTem ---------------------------------------------------
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

    def _opc(self, args: list[str]) -> None:
        scpi.none(args)
        self.esr |= ESR_OPC  # every operation completes before the next command runs

    def _opc_query(self, args: list[str]) -> str:
        scpi.none(args)
        return "1"

    def _noop(self, args: list[str]) -> None:
        scpi.none(args)

    def _esr_query(self, args: list[str]) -> str:
        scpi.none(args)
        value, self.esr = self.esr, 0
        return str(value)

    def _stb_query(self, args: list[str]) -> str:
        scpi.none(args)
        stb = (4 if len(self.errors) else 0) | (32 if self.esr & self.ese else 0)
        return str(stb | (64 if stb & self.sre else 0))

    def _register(self, name: str) -> tuple[Callable, Callable]:
        def set_(args: list[str]) -> None:
            setattr(self, name, scpi.integer(scpi.one(args), 0, 255))

        def query(args: list[str]) -> str:
            scpi.none(args)
            return str(getattr(self, name))

        return set_, query

    def _tst(self, args: list[str]) -> str:
        scpi.none(args)
        return "0"

    def _err_next(self, args: list[str]) -> str:
        scpi.none(args)
        code, text = self.errors.next()
        return f'{code:+d},"{text}"'

    def _err_all(self, args: list[str]) -> str:
        scpi.none(args)
        entries = [self.errors.next() for _ in range(len(self.errors))] or [(0, "No error")]
        return ",".join(f'{code:+d},"{text}"' for code, text in entries)

    def _err_count(self, args: list[str]) -> str:
        scpi.none(args)
        return str(len(self.errors))

    def _set_lfr(self, args: list[str]) -> None:
        value = scpi.integer(scpi.one(args), 50, 60)
        if value not in (50, 60):
            raise ScpiError(-222)
        self.cfg["lfr"] = value

    def _lfr(self, args: list[str]) -> str:
        scpi.none(args)
        return str(self.cfg["lfr"])

    # -- handlers: FORMat --------------------------------------------------------------
    def _set_form_data(self, args: list[str]) -> None:
        if not args or args == [""]:
            raise ScpiError(-109)
        kind = scpi.choice(args[0], ("ASCii", "REAL", "REAL32", "REAL64"))
        if kind == "ASC":
            if len(args) > 1:
                raise ScpiError(-108)
            self.cfg["form_data"] = "ASC"
            return
        if kind in ("REAL32", "REAL64"):
            bits = kind[4:]
            if len(args) > 1:
                raise ScpiError(-108)
        else:
            if len(args) != 2:
                raise ScpiError(-109 if len(args) < 2 else -108)
            value = scpi.number(args[1])
            if value not in (32.0, 64.0):
                raise ScpiError(-224)  # one of a list of possibles
            bits = str(int(value))
        self.cfg["form_data"] = f"REAL,{bits}"

    def _form_data(self, args: list[str]) -> str:
        scpi.none(args)
        return str(self.cfg["form_data"])

    def _set_bord(self, args: list[str]) -> None:
        self.cfg["form_bord"] = scpi.choice(scpi.one(args), ("NORMal", "SWAPped"))

    def _bord(self, args: list[str]) -> str:
        scpi.none(args)
        return str(self.cfg["form_bord"])

    def _set_elements(self, args: list[str]) -> None:
        if not args or args == [""]:
            raise ScpiError(-109)
        names = {scpi.choice(a, ("VOLTage", "CURRent", "RESistance", "TIME", "STATus",
                                 "SOURce")) for a in args}
        self.cfg["form_elem"] = tuple(e for e in ELEMENTS if e in names)

    def _elements(self, args: list[str]) -> str:
        scpi.none(args)
        return ",".join(self.cfg["form_elem"])

    # -- handlers: measurement ---------------------------------------------------------
    def _init(self, args: list[str]) -> None:
        chans = channel_list(args)
        self._count("INIT")
        self._initiate(chans)

    def _abort(self, args: list[str]) -> None:
        # Internally paced sweeps complete within :INIT: only an armed one is left to abort.
        self._disarm(channel_list(args))

    def _fetch(self, element: str | None, *, latest: bool) -> Callable:
        def query(args: list[str]) -> str:
            chans = channel_list(args)
            self._count("FETC")
            if not self._wait_armed(chans):
                raise ScpiError(-230)
            elements = (element,) if element else tuple(self.cfg["form_elem"])
            return self._format(self._records(chans, elements, latest=latest))

        return query

    def _read_array(self, args: list[str]) -> str:
        chans = channel_list(args)
        self._count("READ")
        self._initiate(chans)
        if not self._wait_armed(chans):
            raise ScpiError(-230)
        return self._format(self._records(chans, tuple(self.cfg["form_elem"]), latest=False))

    def _measure(self, element: str | None) -> Callable:
        def query(args: list[str]) -> str:
            chans = channel_list(args)
            self._count("MEAS")
            selected = [self.channels[c] for c in chans]
            for ch in selected:
                ch.readings = [self._sample(ch, self._fixed_level(ch))]
            self._spend(max(self._aperture(ch) + ACQUIRE_OVERHEAD_S for ch in selected))
            elements = (element,) if element else tuple(self.cfg["form_elem"])
            return self._format(self._records(chans, elements, latest=True))

        return query

    # -- handlers: per-channel settings ------------------------------------------------
    def _number(self, ch: _Channel, key: str, lo: float, hi: float,
                after: Callable[[float], None] | None = None) -> tuple[Callable, Callable]:
        default = RESET_DEFAULTS[key]

        def set_(args: list[str]) -> None:
            value = scpi.number(scpi.one(args), lo, hi, default=default)
            if after is None:
                ch.cfg[key] = value
            else:
                after(value)

        def query(args: list[str]) -> str:
            if args:
                text = scpi.one(args).strip().upper()
                if text not in ("MIN", "MINIMUM", "MAX", "MAXIMUM", "DEF", "DEFAULT"):
                    raise ScpiError(-224)
                return _num(scpi.number(text, lo, hi, default=default))
            return _num(float(ch.cfg[key]))

        return set_, query

    def _integer(self, ch: _Channel, key: str, lo: int, hi: int) -> tuple[Callable, Callable]:
        default = RESET_DEFAULTS[key]

        def set_(args: list[str]) -> None:
            ch.cfg[key] = scpi.integer(scpi.one(args), lo, hi, default=default)

        def query(args: list[str]) -> str:
            scpi.none(args)
            return str(ch.cfg[key])

        return set_, query

    def _bool(self, ch: _Channel, key: str) -> tuple[Callable, Callable]:
        def set_(args: list[str]) -> None:
            ch.cfg[key] = scpi.boolean(scpi.one(args))

        def query(args: list[str]) -> str:
            scpi.none(args)
            return _flag(ch.cfg[key])

        return set_, query

    def _choice(self, ch: _Channel, key: str, choices: tuple[str, ...],
                after: Callable[[str], None] | None = None) -> tuple[Callable, Callable]:
        def set_(args: list[str]) -> None:
            value = scpi.choice(scpi.one(args), choices)
            if after is None:
                ch.cfg[key] = value
            else:
                after(value)

        def query(args: list[str]) -> str:
            scpi.none(args)
            return str(ch.cfg[key])

        return set_, query

    def _output(self, ch: _Channel) -> tuple[Callable, Callable]:
        def set_(args: list[str]) -> None:
            if scpi.boolean(scpi.one(args)):
                ch.output = True
                self._bias(ch)
            else:
                self._output_off(ch)

        def query(args: list[str]) -> str:
            scpi.none(args)
            return _flag(ch.output)

        return set_, query

    def _set_func(self, ch: _Channel) -> Callable[[str], None]:
        def after(func: str) -> None:
            ch.cfg["source_func"] = func
            self._bias(ch)

        return after

    def _source_level(self, ch: _Channel, kind: str) -> tuple[Callable, Callable]:
        ranges = I_RANGES if kind == "curr" else V_RANGES
        top = ranges[-1][1]

        def after(value: float) -> None:
            if ch.cfg[f"{kind}_range_auto"]:
                chosen = _pick_range(value, ranges)
            else:
                chosen = float(ch.cfg[f"{kind}_range"])
                if abs(value) > _range_top(chosen, ranges) * (1 + 1e-12):
                    raise ScpiError(-222)  # beyond the fixed source range
            ch.cfg[f"{kind}_range"], ch.cfg[f"{kind}_level"] = chosen, value
            if (kind == "curr") == (ch.func == "CURR"):
                self._bias(ch)

        return self._number(ch, f"{kind}_level", -top, top, after)

    def _source_range(self, ch: _Channel, kind: str) -> tuple[Callable, Callable]:
        ranges = I_RANGES if kind == "curr" else V_RANGES
        key = f"{kind}_range"
        nominal = tuple(r for r, _ in ranges)

        def set_(args: list[str]) -> None:
            value = scpi.number(scpi.one(args), -ranges[-1][1], ranges[-1][1],
                                default=RESET_DEFAULTS[key], minimum=nominal[0],
                                maximum=nominal[-1])
            chosen = _pick_range(value, ranges)
            if abs(float(ch.cfg[f"{kind}_level"])) > _range_top(chosen, ranges) * (1 + 1e-12):
                raise ScpiError(-221)  # the programmed level would not fit
            ch.cfg[key], ch.cfg[f"{kind}_range_auto"] = chosen, False

        def query(args: list[str]) -> str:
            scpi.none(args)
            return _num(float(ch.cfg[key]))

        return set_, query

    def _source_range_auto(self, ch: _Channel, kind: str) -> tuple[Callable, Callable]:
        ranges = I_RANGES if kind == "curr" else V_RANGES

        def set_(args: list[str]) -> None:
            on = scpi.boolean(scpi.one(args))
            ch.cfg[f"{kind}_range_auto"] = on
            if on:
                ch.cfg[f"{kind}_range"] = _pick_range(float(ch.cfg[f"{kind}_level"]), ranges)

        return set_, self._bool(ch, f"{kind}_range_auto")[1]

    def _source_list(self, ch: _Channel, kind: str) -> tuple[Callable, Callable, Callable,
                                                            Callable]:
        return scpi.list_handlers(lambda: ch.cfg, f"{kind}_list",
                                  MAX_I if kind == "curr" else MAX_V,
                                  per_command=MAX_POINTS, total=MAX_POINTS, fmt=_num)

    def _protection(self, ch: _Channel, kind: str) -> tuple[Callable, Callable]:
        key = f"{kind}_prot"
        limit = MAX_I if kind == "curr" else MAX_V

        def after(value: float) -> None:
            ch.cfg[key] = abs(value)
            self._bias(ch)

        return self._number(ch, key, -limit, limit, after)

    def _tripped(self, ch: _Channel, kind: str) -> Callable:
        def query(args: list[str]) -> str:
            scpi.none(args)
            limiting = (ch.func == "CURR") == (kind == "volt")
            return _flag(limiting and self._in_compliance(ch))

        return query

    def _nplc(self, ch: _Channel) -> tuple[Callable, Callable]:
        def set_(args: list[str]) -> None:
            lf = float(self.cfg["lfr"])
            lo, hi = MIN_APERTURE_S * lf, MAX_APERTURE_S * lf
            value = scpi.number(scpi.one(args), default=0.1, minimum=lo, maximum=hi)
            ch.cfg["nplc"] = min(max(value, lo), hi)  # the manual: set to MIN or MAX

        def query(args: list[str]) -> str:
            scpi.none(args)
            return _num(float(ch.cfg["nplc"]))

        return set_, query

    def _aperture_cmd(self, ch: _Channel) -> tuple[Callable, Callable]:
        def set_(args: list[str]) -> None:
            seconds = scpi.number(scpi.one(args), default=0.1 / float(self.cfg["lfr"]),
                                  minimum=MIN_APERTURE_S, maximum=MAX_APERTURE_S)
            seconds = min(max(seconds, MIN_APERTURE_S), MAX_APERTURE_S)
            ch.cfg["nplc"] = seconds * float(self.cfg["lfr"])

        def query(args: list[str]) -> str:
            scpi.none(args)
            return _num(self._aperture(ch))

        return set_, query

    def _funcs(self, ch: _Channel) -> tuple[Callable, Callable, Callable]:
        def names(args: list[str]) -> set[str]:
            if not args or args == [""]:
                raise ScpiError(-109)
            out = set()
            for a in args:
                text = scpi.string(a).strip().upper()
                text = text[:-3] if text.endswith(":DC") else text
                for key, forms in (("VOLT", ("VOLT", "VOLTAGE")), ("CURR", ("CURR", "CURRENT")),
                                   ("RES", ("RES", "RESISTANCE"))):
                    if text in forms:
                        out.add(key)
                        break
                else:
                    raise ScpiError(-224)
            return out

        def on(args: list[str]) -> None:
            wanted = set(ch.cfg["funcs"]) | names(args)
            ch.cfg["funcs"] = tuple(f for f in SENSE_FUNCS if f in wanted)

        def off(args: list[str]) -> None:
            wanted = set(ch.cfg["funcs"]) - names(args)
            ch.cfg["funcs"] = tuple(f for f in SENSE_FUNCS if f in wanted)

        def query(args: list[str]) -> str:
            scpi.none(args)
            return ",".join(f'"{f}"' for f in ch.cfg["funcs"])

        return on, off, query

    def _layer(self, ch: _Channel, layers: tuple[str, ...], key: str, convert: Callable
               ) -> tuple[Callable, Callable]:
        """A trigger (or arm) setting of ``layers`` (ALL: both, read back from the first)."""

        def set_(args: list[str]) -> None:
            value = convert(args)
            for layer in layers:
                ch.cfg[f"{layer}_{key}"] = value

        def query(args: list[str]) -> str:
            scpi.none(args)
            value = ch.cfg[f"{layers[0]}_{key}"]
            if isinstance(value, bool):
                return _flag(value)
            if isinstance(value, float):
                return _num(value)
            if isinstance(value, tuple):
                return ",".join(value)
            return str(value)

        return set_, query

    @staticmethod
    def _signals(args: list[str]) -> tuple[str, ...]:
        if not args or args == [""]:
            raise ScpiError(-109)
        return tuple(dict.fromkeys(scpi.choice(a, SIGNALS) for a in args))

    # -- the command table -------------------------------------------------------------
    def _channel_table(self, ch: _Channel) -> list[tuple[str, Callable | None, Callable | None]]:
        c = ch.name
        sour = "[:SOURce[1]]" if c == "1" else ":SOURce2"
        sens, outp = (":SENSe[1]", ":OUTPut[1]") if c == "1" else (":SENSe2", ":OUTPut2")
        trig, arm = (":TRIGger[1]", ":ARM[1]") if c == "1" else (":TRIGger2", ":ARM2")
        rows: list[tuple[str, Callable | None, Callable | None]] = [
            (f"{outp}[:STATe]", *self._output(ch)),
            (f"{outp}:OFF:MODE", *self._choice(ch, "off_mode", ("ZERO", "HIZ", "NORMal"))),
            (f"{outp}:ON:AUTO", *self._bool(ch, "on_auto")),
            (f"{sour}:FUNCtion:MODE",
             *self._choice(ch, "source_func", ("CURRent", "VOLTage"), self._set_func(ch))),
            (f"{sour}:SWEep:POINts", *self._integer(ch, "sweep_points", 1, MAX_POINTS)),
        ]
        for kind, node, limit in (("curr", "CURRent", MAX_I), ("volt", "VOLTage", MAX_V)):
            lst = self._source_list(ch, kind)
            rows += [
                (f"{sour}:{node}[:LEVel][:IMMediate][:AMPLitude]",
                 *self._source_level(ch, kind)),
                (f"{sour}:{node}:RANGe", *self._source_range(ch, kind)),
                (f"{sour}:{node}:RANGe:AUTO", *self._source_range_auto(ch, kind)),
                (f"{sour}:{node}:MODE",
                 *self._choice(ch, f"{kind}_mode", ("FIXed", "LIST", "SWEep"))),
                (f"{sour}:{node}:STARt", *self._number(ch, f"{kind}_start", -limit, limit)),
                (f"{sour}:{node}:STOP", *self._number(ch, f"{kind}_stop", -limit, limit)),
                (f"{sour}:LIST:{node}", lst[0], lst[1]),
                (f"{sour}:LIST:{node}:APPend", lst[2], None),
                (f"{sour}:LIST:{node}:POINts", None, lst[3]),
                (f"{sens}:{node}[:DC]:PROTection[:LEVel]", *self._protection(ch, kind)),
                (f"{sens}:{node}[:DC]:PROTection:TRIPped", None, self._tripped(ch, kind)),
                (f"{sens}:{node}[:DC]:NPLCycles", *self._nplc(ch)),
                (f"{sens}:{node}[:DC]:APERture", *self._aperture_cmd(ch)),
            ]
        rows += [
            (f"{sens}:RESistance:NPLCycles", *self._nplc(ch)),
            (f"{sens}:RESistance:APERture", *self._aperture_cmd(ch)),
        ]
        on, off, funcs = self._funcs(ch)
        rows += [(f"{sens}:FUNCtion[:ON]", on, funcs), (f"{sens}:FUNCtion:OFF", off, None)]

        def count(args):
            return scpi.integer(scpi.one(args), 1, MAX_COUNT, default=1)

        def timer(args):
            return scpi.number(scpi.one(args), MIN_TRIGGER_INTERVAL_S, MAX_TIMER_S,
                               default=MIN_TRIGGER_INTERVAL_S)

        def delay(args):
            return scpi.number(scpi.one(args), 0.0, MAX_TIMER_S, default=0.0)

        def source(args):
            return scpi.choice(scpi.one(args), ("AINT", "BUS", "TIMer", "INT1", "INT2", "LAN",
                                                *(f"EXT{n}" for n in range(1, 15))))

        def state(args):
            return scpi.boolean(scpi.one(args))

        for node, layers in (("[:ALL]", LAYERS), (":ACQuire", ("ACQ",)),
                             (":TRANsient", ("TRAN",))):
            rows += [
                (f"{trig}{node}:COUNt", *self._layer(ch, layers, "count", count)),
                (f"{trig}{node}:SOURce[:SIGNal]", *self._layer(ch, layers, "source", source)),
                (f"{trig}{node}:TIMer", *self._layer(ch, layers, "timer", timer)),
                (f"{trig}{node}:DELay", *self._layer(ch, layers, "delay", delay)),
                (f"{trig}{node}:TOUTput[:STATe]", *self._layer(ch, layers, "tout", state)),
                (f"{trig}{node}:TOUTput:SIGNal",
                 *self._layer(ch, layers, "tout_sign", self._signals)),
                (f"{arm}{node}:COUNt", *self._layer(ch, layers, "arm_count", count)),
                (f"{arm}{node}:SOURce[:SIGNal]",
                 *self._layer(ch, layers, "arm_source", source)),
            ]
        rows += [
            (f"{sour}:TOUTput[:STATe]", *self._layer(ch, ("TRAN",), "tout", state)),
            (f"{sour}:TOUTput:SIGNal", *self._layer(ch, ("TRAN",), "tout_sign", self._signals)),
        ]
        return rows

    def _build_tree(self) -> CommandTree:
        table: list[tuple[str, Callable | None, Callable | None]] = [
            ("*IDN", None, self._idn),
            ("*RST", self._rst, None),
            ("*CLS", self._cls, None),
            ("*OPC", self._opc, self._opc_query),
            ("*WAI", self._noop, None),
            ("*ESR", None, self._esr_query),
            ("*STB", None, self._stb_query),
            ("*ESE", *self._register("ese")),
            ("*SRE", *self._register("sre")),
            ("*TST", None, self._tst),
            (":SYSTem:ERRor[:NEXT]", None, self._err_next),
            (":SYSTem:ERRor:ALL", None, self._err_all),
            (":SYSTem:ERRor:COUNt", None, self._err_count),
            (":SYSTem:LFRequency", self._set_lfr, self._lfr),
            (":FORMat[:DATA]", self._set_form_data, self._form_data),
            (":FORMat:BORDer", self._set_bord, self._bord),
            (":FORMat:ELEMents:SENSe", self._set_elements, self._elements),
            (":INITiate[:IMMediate][:ALL]", self._init, None),
            (":ABORt[:ALL]", self._abort, None),
            (":FETCh:ARRay", None, self._fetch(None, latest=False)),
            (":FETCh[:SCALar]", None, self._fetch(None, latest=True)),
            (":READ:ARRay", None, self._read_array),
            (":MEASure", None, self._measure(None)),
        ]
        for element, node in zip(ELEMENTS, ("VOLTage", "CURRent", "RESistance", "TIME",
                                            "STATus", "SOURce"), strict=True):
            table += [
                (f":FETCh:ARRay:{node}", None, self._fetch(element, latest=False)),
                (f":FETCh[:SCALar]:{node}", None, self._fetch(element, latest=True)),
            ]
            if element in SENSE_FUNCS:
                table.append((f":MEASure:{node}", None, self._measure(element)))
        for ch in self.channels.values():
            table += self._channel_table(ch)
        tree = CommandTree()
        for pattern, set_, query in table:
            tree.add(pattern, set_, query)
        return tree
