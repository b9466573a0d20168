"""One SMU channel (``smua`` / ``smub``) of the simulated 2602B: its settings with the
instrument's checks, its physics on the world's row, measurements and its trigger model's
settings. The instrument (:class:`simulators.keithley2600.SimKeithley2600`) runs the
trigger models of its channels together; see its module docstring. Units: A, V, s.

Reset defaults (``smuX.reset()``): voltage source at 0 V, output off (OUTPUT_NORMAL), source
and measure autoranges on, limits 20 V / 100 mA, NPLC 1, measure delay DELAY_AUTO, source
delay 0, local sense, measure count 1; trigger model: arm count 1, count 1, source and
measure actions disabled, end-pulse SOURCE_HOLD, end-sweep SOURCE_IDLE, all stimuli 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from simulators.cabling import SmuCable
from simulators.tsp.buffers import STATUS_COMPLIANCE, ReadingBuffer
from simulators.tsp.objects import (
    SETTINGS_CONFLICT,
    TOO_BIG,
    TOO_SMALL,
    Node,
    attr,
    flag,
    integer_in,
    number,
    pick_range,
    ro,
    within,
)
from simulators.tsp.runtime import ParameterError, TspRuntimeError
from simulators.tsp.timing import (
    SCRIPT_SOURCE_CHANGE_S,
    current_settling_s,
    script_measure_s,
    voltage_settling_s,
)
from simulators.world import StationWorld


class SmuHost(Protocol):
    """What a channel needs from its instrument (the simulated 2602B)."""

    world: StationWorld
    linefreq: int
    voltage_physical: bool
    fault_stuck_compliance: bool

    def now(self) -> float: ...
    def spend(self, seconds: float) -> None: ...
    def check_event(self, value: Any) -> int: ...
    def buffer_arg(self, value: Any) -> ReadingBuffer: ...
    def buffer_node(self, buf: ReadingBuffer) -> Node: ...
    def makebuffer(self, args: list[Any]) -> tuple[Any, ...]: ...

CHANNELS = ("a", "b")
I_RANGES = (100e-9, 1e-6, 10e-6, 100e-6, 1e-3, 10e-3, 100e-3, 1.0, 3.0)
V_RANGES = (0.1, 1.0, 6.0, 40.0)
FULL_SCALE = 1.01  # a source range's full scale is 101 % of the range
MAX_CURRENT_A = I_RANGES[-1] * FULL_SCALE
MAX_VOLTAGE_V = V_RANGES[-1] * FULL_SCALE
MAX_LIST_POINTS = 60_000  # a dedicated buffer's capacity with timestamps (datasheet)

# Output function and other enumerations of smuX (values as the instrument prints them).
DCAMPS, DCVOLTS = 0, 1
SOURCE_IDLE, SOURCE_HOLD = 0, 1
DELAY_AUTO = -1
SMU_CONSTANTS = {
    "OUTPUT_DCAMPS": DCAMPS, "OUTPUT_DCVOLTS": DCVOLTS, "OUTPUT_OFF": 0, "OUTPUT_ON": 1,
    "OUTPUT_NORMAL": 0, "OUTPUT_HIGH_Z": 1, "OUTPUT_ZERO": 2, "ENABLE": 1, "DISABLE": 0,
    "ASYNC": 2, "AUTORANGE_OFF": 0, "AUTORANGE_ON": 1, "AUTORANGE_FOLLOW_LIMIT": 2,
    "SENSE_LOCAL": 0, "SENSE_REMOTE": 1, "SENSE_CALA": 3, "SOURCE_IDLE": SOURCE_IDLE,
    "SOURCE_HOLD": SOURCE_HOLD, "DELAY_OFF": 0, "DELAY_AUTO": DELAY_AUTO,
    "AUTOZERO_OFF": 0, "AUTOZERO_ONCE": 1, "AUTOZERO_AUTO": 2, "FILTER_MOVING_AVG": 0,
    "FILTER_REPEAT_AVG": 1, "FILTER_MEDIAN": 2, "FILTER_ON": 1, "FILTER_OFF": 0,
}
EVENTS = ("ARMED", "SWEEPING", "SOURCE_COMPLETE", "MEASURE_COMPLETE", "PULSE_COMPLETE",
          "SWEEP_COMPLETE", "IDLE")
_EVENT_BASE = {"a": 1, "b": 21}


@dataclass
class TriggerModel:
    """The trigger-model settings of one channel (``smuX.trigger.*``); stimuli are event
    ids (0: none), actions 0 DISABLE / 1 ENABLE, end actions SOURCE_IDLE / SOURCE_HOLD."""

    arm_count: int = 1
    arm_stimulus: int = 0
    count: int = 1
    source_action: int = 0
    source_stimulus: int = 0
    source_kind: str = "i"
    source_list: list[float] = field(default_factory=lambda: [0.0])
    measure_action: int = 0
    measure_stimulus: int = 0
    measure_func: str = "iv"
    measure_buffers: tuple[ReadingBuffer, ...] = ()
    endpulse_action: int = SOURCE_HOLD
    endpulse_stimulus: int = 0
    endsweep_action: int = SOURCE_IDLE
    source_limitv: float = 0.0
    source_limiti: float = 0.0

    def stimuli(self) -> set[int]:
        return {s for s in (self.arm_stimulus, self.source_stimulus, self.measure_stimulus,
                            self.endpulse_stimulus) if s}


class SmuChannel:
    """One SMU channel (smua or smub) of the simulated 2602B."""

    def __init__(self, instrument: SmuHost, letter: str, cable: SmuCable | None):
        self.inst = instrument
        self.world = instrument.world
        self.letter = letter
        self.cable = cable
        self.nvbuffer1 = ReadingBuffer()
        self.nvbuffer2 = ReadingBuffer()
        self.pending = False
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """smuX.reset(): the reset defaults (output off, voltage source at 0 V, 1 NPLC)."""
        self.pending = False
        self.output = 0
        self.release()
        self.func = DCVOLTS
        self.levelv = self.leveli = 0.0
        self.rangev, self.rangei = V_RANGES[0], I_RANGES[0]
        self.autorangev = self.autorangei = 1
        self.limitv, self.limiti = 20.0, 0.1
        self.offmode, self.source_delay, self.sink, self.highc = 0, 0.0, 0, 0
        self.lowrangev, self.lowrangei = V_RANGES[0], I_RANGES[0]
        self.nplc = 1.0
        self.m_rangev, self.m_rangei = V_RANGES[0], I_RANGES[0]
        self.m_autorangev = self.m_autorangei = 1
        self.m_autozero, self.m_count, self.m_interval, self.m_delay = 2, 1, 0.0, DELAY_AUTO
        self.filter_enable, self.filter_count, self.filter_type = 0, 1, 1
        self.sense = 0
        if hasattr(self, "trig"):  # in place: the TSP object tree holds this one
            self.trig.__dict__.update(TriggerModel().__dict__)
        else:
            self.trig = TriggerModel()
        self.present = 0.0  # the level the source outputs now (A or V)
        self._settle = False
        for buf in (self.nvbuffer1, self.nvbuffer2):
            buf.clear()

    @property
    def name(self) -> str:
        return f"smu{self.letter}"

    def release(self) -> None:
        if self.cable is not None:
            self.world.release(self.cable.row)

    def drive(self) -> None:
        """Put the present level on the row (output on) or release it (output off)."""
        if self.cable is None:
            return
        row = self.cable.row
        if not self.output:
            self.world.release(row)
            return
        state = self.world.buses[row]
        if self.func == DCAMPS:
            compliance = abs(self.limitv)
            if not (state.on and getattr(state, "source", "CURR") == "CURR"
                    and state.set_current == self.present
                    and state.compliance_v == compliance):
                self.world.drive(row, self.present, compliance)
                self._settle = True
        elif self.inst.voltage_physical:
            compliance = abs(self.limiti)
            if not (state.on and state.source == "VOLT" and state.set_voltage == self.present
                    and state.compliance_a == compliance):
                self.world.drive_voltage(row, self.present, compliance)
                self._settle = True
        else:
            self.world.release(row)

    def step_to(self, level: float) -> None:
        """A trigger-model source step to ``level`` (A or V): with autorange on the range
        follows the level, then the row is driven."""
        self.present = level
        kind = self.trig.source_kind
        if getattr(self, f"autorange{kind}"):
            ranges = I_RANGES if kind == "i" else V_RANGES
            setattr(self, f"range{kind}", pick_range(level / FULL_SCALE, ranges))
        self.drive()

    def idle_level(self) -> float:
        return self.leveli if self.func == DCAMPS else self.levelv

    # -- setters with the instrument's checks ------------------------------------------------
    def set_func(self, value: Any) -> None:
        func = integer_in(value, "source.func", (DCAMPS, DCVOLTS))
        if func == DCVOLTS and self.output and not self.inst.voltage_physical:
            raise ParameterError(*SETTINGS_CONFLICT)
        self.func = func
        self.present = self.idle_level()
        self.drive()

    def set_output(self, value: Any) -> None:
        on = integer_in(value, "source.output", (0, 1))
        if on and self.func == DCVOLTS and not self.inst.voltage_physical:
            raise ParameterError(*SETTINGS_CONFLICT)  # voltage sourcing is not simulated
        self.output = on
        if not on:
            self.pending = False
        self.present = self.idle_level()
        self.drive()

    def set_level(self, kind: str, value: Any) -> None:
        level = number(value, f"source.level{kind}")
        top = MAX_CURRENT_A if kind == "i" else MAX_VOLTAGE_V
        within(level, -top, top)
        ranges = I_RANGES if kind == "i" else V_RANGES
        if getattr(self, f"autorange{kind}"):
            setattr(self, f"range{kind}", pick_range(level / FULL_SCALE, ranges))
        elif abs(level) > getattr(self, f"range{kind}") * FULL_SCALE * (1 + 1e-9):
            raise ParameterError(*(TOO_BIG if level > 0 else TOO_SMALL))
        setattr(self, f"level{kind}", level)
        if (kind == "i") == (self.func == DCAMPS):
            self.present = level
            if self.output:
                self.inst.spend(SCRIPT_SOURCE_CHANGE_S)
                self.drive()

    def set_limit(self, kind: str, value: Any) -> None:
        """source.limitv / limiti (V / A); a new limit applies at once with the output on."""
        lo, hi = (10e-3, V_RANGES[-1]) if kind == "v" else (10e-9, I_RANGES[-1])
        setattr(self, f"limit{kind}", within(number(value, f"source.limit{kind}"), lo, hi))
        self.drive()

    def set_source_range(self, kind: str, value: Any) -> None:
        ranges = I_RANGES if kind == "i" else V_RANGES
        chosen = pick_range(number(value, f"source.range{kind}"), ranges)
        if abs(getattr(self, f"level{kind}")) > chosen * FULL_SCALE * (1 + 1e-9):
            raise ParameterError(*SETTINGS_CONFLICT)  # the level would not fit
        setattr(self, f"range{kind}", chosen)
        setattr(self, f"autorange{kind}", 0)

    def set_source_autorange(self, kind: str, value: Any) -> None:
        on = flag(value, f"source.autorange{kind}")
        setattr(self, f"autorange{kind}", on)
        if on:
            ranges = I_RANGES if kind == "i" else V_RANGES
            level = getattr(self, f"level{kind}")
            setattr(self, f"range{kind}", pick_range(level / FULL_SCALE, ranges))

    def set_measure_range(self, kind: str, value: Any) -> None:
        ranges = I_RANGES if kind == "i" else V_RANGES
        setattr(self, f"m_range{kind}", pick_range(number(value, "measure.range"), ranges))
        setattr(self, f"m_autorange{kind}", 0)

    # -- measurement ------------------------------------------------------------------------
    def sample(self) -> tuple[float, float, int]:
        """(V, A, buffer status) of the output now (world lock held)."""
        noise = self.world.smu_noise(self.nplc)
        if self.cable is None:
            return noise, 0.0, 0
        state = self.world.buses[self.cable.row]
        on = self.output and state.on
        volts = (state.voltage if on else 0.0) + noise
        amps = state.current if on else 0.0
        if self.func == DCVOLTS and self.inst.voltage_physical:
            # A voltage source's current is what is measured: it gets the read noise; a
            # current source reads back its set current (as the 2400 simulator does).
            amps += self.world.smu_current_noise(self.nplc)
        stuck = self.inst.fault_stuck_compliance  # fault hook
        status = STATUS_COMPLIANCE if (on and state.in_compliance) or stuck else 0
        status |= 0x10 if self.sense == 1 else 0
        return volts, amps, status

    @property
    def in_compliance(self) -> bool:
        if self.inst.fault_stuck_compliance:
            return True
        if self.cable is None or not self.output:
            return False
        state = self.world.buses[self.cable.row]
        return state.on and state.in_compliance

    @property
    def limit_bits(self) -> int:
        """status.measurement.instrument.smuX bits: 1 VOLTAGE_LIMIT, 2 CURRENT_LIMIT."""
        if not self.in_compliance:
            return 0
        return 1 if self.func == DCAMPS else 2

    def measure_delay_s(self) -> float:
        if self.m_delay == DELAY_AUTO:
            settle, self._settle = self._settle, False
            if settle and self.output:
                if self.func == DCAMPS:
                    return current_settling_s(self.rangei)
                return voltage_settling_s(self.rangev)
            return 0.0
        return max(0.0, self.m_delay)

    def values(self, func: str, volts: float, amps: float) -> list[float]:
        """The readings of measure function ``func``, in the order TSP returns them."""
        if func == "v":
            return [volts]
        if func == "i":
            return [amps]
        if func == "iv":
            return [amps, volts]
        if func == "r":
            return [volts / amps if amps else 9.91e37]
        return [volts * amps]  # "p"

    def store(self, func: str, buffers: tuple[ReadingBuffer, ...], volts: float,
              amps: float, status: int) -> list[float]:
        values = self.values(func, volts, amps)
        t = self.inst.now()
        for value, buf in zip(values, buffers, strict=False):
            buf.store(value, self.present, t, status)
        return values

    def measure(self, func: str, args: list[Any]) -> tuple[Any, ...]:
        """smuX.measure.<func>([buf[, buf2]]): measure.count readings, the last returned."""
        buffers = tuple(self.inst.buffer_arg(a) for a in args if a is not None)
        if len(buffers) > (2 if func == "iv" else 1):
            raise TspRuntimeError(f"too many arguments to {self.name}.measure.{func}")
        for buf in buffers:
            if not buf.appendmode:
                buf.clear()
        values: list[float] = []
        for k in range(self.m_count):
            if k:
                self.inst.spend(self.m_interval)
            self.inst.spend(self.measure_delay_s() + script_measure_s(self.nplc,
                                                                      self.inst.linefreq))
            volts, amps, status = self.sample()
            values = self.store(func, buffers, volts, amps, status)
        return tuple(values)

    # -- trigger model ----------------------------------------------------------------------
    def set_list(self, kind: str, args: list[Any]) -> tuple[Any, ...]:
        if len(args) != 1 or not isinstance(args[0], list):
            raise TspRuntimeError(f"{self.name}.trigger.source.list{kind} expects a table "
                                  "of levels")
        values = [number(v, f"list{kind} entry") for v in args[0]]
        self._check_list(kind, values)
        self.trig.source_kind, self.trig.source_list = kind, values
        return ()

    def set_linear(self, kind: str, args: list[Any]) -> tuple[Any, ...]:
        if len(args) != 3:
            raise TspRuntimeError(f"{self.name}.trigger.source.linear{kind} expects start, "
                                  "stop, points")
        start, stop = (number(a, f"linear{kind}") for a in args[:2])
        points = int(within(number(args[2], "points"), 1, MAX_LIST_POINTS))
        values = [start + (stop - start) * k / max(points - 1, 1) for k in range(points)]
        self._check_list(kind, values)
        self.trig.source_kind, self.trig.source_list = kind, values
        return ()

    def _check_list(self, kind: str, values: list[float]) -> None:
        if not values:
            raise ParameterError(*TOO_SMALL)
        if len(values) > MAX_LIST_POINTS:
            raise ParameterError(*TOO_BIG)
        top = MAX_CURRENT_A if kind == "i" else MAX_VOLTAGE_V
        for v in values:
            within(v, -top, top)

    def set_trigger_measure(self, func: str, args: list[Any]) -> tuple[Any, ...]:
        buffers = tuple(self.inst.buffer_arg(a) for a in args)
        if not 1 <= len(buffers) <= (2 if func == "iv" else 1):
            raise TspRuntimeError(f"{self.name}.trigger.measure.{func} expects "
                                  f"{'one or two buffers' if func == 'iv' else 'a buffer'}")
        self.trig.measure_func, self.trig.measure_buffers = func, buffers
        return ()

    def initiate(self, args: list[Any]) -> tuple[Any, ...]:
        t = self.trig
        if t.source_action and (t.source_kind == "i") != (self.func == DCAMPS):
            raise ParameterError(*SETTINGS_CONFLICT)  # a list of the other function
        if (t.source_action and self.func == DCVOLTS and self.output
                and not self.inst.voltage_physical):
            raise ParameterError(*SETTINGS_CONFLICT)  # voltage sourcing is not simulated
        self.pending = True
        return ()

    def event(self, name: str) -> int:
        return _EVENT_BASE[self.letter] + EVENTS.index(name)

    def total_steps(self) -> int:
        return self.trig.arm_count * self.trig.count

    # -- the TSP object -------------------------------------------------------------------
    def node(self) -> Node:
        num = number

        def level(kind):
            return (lambda: getattr(self, f"level{kind}"),
                    lambda v: self.set_level(kind, v))

        def bounded(name, lo, hi, conv=float):
            return attr(self, name, lambda v: conv(within(num(v, name), lo, hi)))

        source = Node(attrs={
            "func": (lambda: self.func, self.set_func),
            "output": (lambda: self.output, self.set_output),
            "levelv": level("v"), "leveli": level("i"),
            "rangev": (lambda: self.rangev, lambda v: self.set_source_range("v", v)),
            "rangei": (lambda: self.rangei, lambda v: self.set_source_range("i", v)),
            "autorangev": (lambda: self.autorangev,
                           lambda v: self.set_source_autorange("v", v)),
            "autorangei": (lambda: self.autorangei,
                           lambda v: self.set_source_autorange("i", v)),
            "limitv": (lambda: self.limitv, lambda v: self.set_limit("v", v)),
            "limiti": (lambda: self.limiti, lambda v: self.set_limit("i", v)),
            "offmode": attr(self, "offmode", lambda v: integer_in(v, "offmode", (0, 1, 2))),
            "delay": attr(self, "source_delay", lambda v: within(num(v, "delay"), -1, 60)),
            "sink": attr(self, "sink", lambda v: flag(v, "sink")),
            "highc": attr(self, "highc", lambda v: flag(v, "highc")),
            "lowrangev": attr(self, "lowrangev",
                               lambda v: pick_range(num(v, "lowrangev"), V_RANGES)),
            "lowrangei": attr(self, "lowrangei",
                               lambda v: pick_range(num(v, "lowrangei"), I_RANGES)),
            "compliance": ro(lambda: self.in_compliance),
        })
        measure = Node(
            attrs={
                "nplc": bounded("nplc", 0.001, 25.0),
                "rangev": (lambda: self.m_rangev, lambda v: self.set_measure_range("v", v)),
                "rangei": (lambda: self.m_rangei, lambda v: self.set_measure_range("i", v)),
                "autorangev": attr(self, "m_autorangev",
                                    lambda v: integer_in(v, "autorangev", (0, 1, 2))),
                "autorangei": attr(self, "m_autorangei",
                                    lambda v: integer_in(v, "autorangei", (0, 1, 2))),
                "autozero": attr(self, "m_autozero",
                                  lambda v: integer_in(v, "autozero", (0, 1, 2))),
                "count": bounded("m_count", 1, MAX_LIST_POINTS, int),
                "interval": bounded("m_interval", 0.0, 1.0),
                "delay": attr(self, "m_delay", lambda v: within(num(v, "delay"), -1, 60)),
            },
            funcs={f: (lambda a, f=f: self.measure(f, a)) for f in ("v", "i", "iv", "r", "p")},
            kids={"filter": Node(attrs={
                "enable": attr(self, "filter_enable", lambda v: flag(v, "filter.enable")),
                "count": bounded("filter_count", 1, 100, int),
                "type": attr(self, "filter_type", lambda v: integer_in(v, "type", (0, 1, 2))),
            })},
        )
        t = self.trig

        def tattr(name, check):
            return attr(t, name, check)

        def stim(name):
            return tattr(name, lambda v: self.inst.check_event(v))

        action = lambda v: integer_in(v, "action", (0, 1, 2))  # noqa: E731
        trigger = Node(
            attrs={
                "count": tattr("count", lambda v: int(within(num(v, "count"), 1,
                                                              MAX_LIST_POINTS))),
            },
            funcs={"initiate": self.initiate},
            consts={f"{e}_EVENT_ID": self.event(e) for e in EVENTS},
            kids={
                "arm": Node(attrs={
                    "count": tattr("arm_count", lambda v: int(within(num(v, "arm.count"), 1,
                                                                      MAX_LIST_POINTS))),
                    "stimulus": stim("arm_stimulus"),
                }),
                "source": Node(
                    attrs={
                        "action": tattr("source_action", action),
                        "stimulus": stim("source_stimulus"),
                        "limitv": tattr("source_limitv",
                                        lambda v: within(num(v, "limitv"), 0, V_RANGES[-1])),
                        "limiti": tattr("source_limiti",
                                        lambda v: within(num(v, "limiti"), 0, I_RANGES[-1])),
                    },
                    funcs={
                        "listi": lambda a: self.set_list("i", a),
                        "listv": lambda a: self.set_list("v", a),
                        "lineari": lambda a: self.set_linear("i", a),
                        "linearv": lambda a: self.set_linear("v", a),
                    },
                ),
                "measure": Node(
                    attrs={"action": tattr("measure_action", action),
                           "stimulus": stim("measure_stimulus")},
                    funcs={f: (lambda a, f=f: self.set_trigger_measure(f, a))
                           for f in ("v", "i", "iv", "r", "p")},
                ),
                "endpulse": Node(attrs={"action": tattr("endpulse_action", action),
                                         "stimulus": stim("endpulse_stimulus")}),
                "endsweep": Node(attrs={"action": tattr("endsweep_action", action)}),
            },
        )
        return Node(
            attrs={"sense": attr(self, "sense", lambda v: integer_in(v, "sense", (0, 1, 3)))},
            funcs={
                "reset": lambda a: (self.reset(), ())[1],
                "abort": lambda a: (setattr(self, "pending", False), ())[1],
                "makebuffer": lambda a: self.inst.makebuffer(a),
            },
            kids={
                "source": source, "measure": measure, "trigger": trigger,
                "nvbuffer1": self.inst.buffer_node(self.nvbuffer1),
                "nvbuffer2": self.inst.buffer_node(self.nvbuffer2),
            },
            consts=dict(SMU_CONSTANTS),
        )
