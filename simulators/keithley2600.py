"""Simulated Keithley 2602B System SourceMeter: TSP on a real Lua 5.4, two SMU channels.

Each line a client sends is one TSP chunk, compiled and run by Lua
(:mod:`simulators.tsp.runtime`, sandboxed: no ``os``, ``io``, ``require``, files or
processes); the instrument's objects (``smua``, ``smub``, ``localnode``, ``errorqueue``,
``format``, ``status``, ``trigger``, ``digio``, ``timer``, ``display``) are proxies into this
module. ``loadandrunscript [name]`` / ``loadscript name`` ... ``endscript`` collect the lines
between and compile them as one chunk (then run it, or define the script ``name`` with
``name()`` and ``name.run()``). ``*IDN?``, ``*RST``, ``*CLS``, ``*OPC?``, ``*WAI`` are
understood as on the instrument. ``print(...)`` joins its values with tabs, numbers as
``format.asciiprecision`` digits in exponent form (``1.00000e+00`` at the default 6);
``printbuffer``/``printnumber`` write ``format.data``: ASCII values joined by ", ", or
``#0`` + IEEE 754 REAL32/REAL64 values in ``format.byteorder`` + newline.

Physics, as :mod:`simulators.keithley2400`: a channel is the SMU of its
:class:`~simulators.cabling.SmuCable` (``cables["a"]`` and ``cables["b"]``, both of one
instrument name, channel "a"/"b"); with its output on, a current source drives its present
level onto its row with ``world.drive`` (the voltage compliance is ``source.limitv``), a
voltage source with ``world.drive_voltage`` (current compliance ``source.limiti``), and
output off calls ``world.release`` (whatever ``source.offmode``). A voltage reading is the
row voltage plus ``world.smu_noise(nplc)``; a current reading is the row's current (a
voltage source's plus ``world.smu_current_noise(nplc)``). ``smuX.source.compliance`` and
``status.measurement.instrument.smuX.condition`` (bit 0, 1: VOLTAGE_LIMIT of a current
source; bit 1, 2: CURRENT_LIMIT of a voltage source) report a source held at its limit, and
a buffer reading's status has bit 0x40 then. A channel without a cable measures noise
around 0 V. On a world without ``drive_voltage`` (:attr:`SimKeithley2600.voltage_physical`
false) only current sourcing is physical: turning an output on while it sources voltage,
selecting voltage with the output on, or initiating a voltage sweep is then refused with
-221 "Settings conflict" (a simulator decision; the instrument would source it).

Trigger model (one arm layer, ``trigger.count`` steps per arm): per step the source action
sets the next list value (``trigger.source.listi/listv``, ``lineari/linearv``; a list shorter
than the steps repeats), the measure action stores ``trigger.measure.v/i/iv/r/p(buf[, buf2])``
readings, the end-pulse action returns to the idle level (SOURCE_IDLE) or holds it
(SOURCE_HOLD, the default); after the sweep ``endsweep.action`` SOURCE_IDLE (default)
returns to the fixed level ``source.leveli``. Events (``smuX.trigger.*_EVENT_ID``) feed
``trigger.blender[N]`` (1 to 6; OR with ``orenable``, else AND of its four stimuli) and
``digio.trigger[N]`` (1 to 14): a digio line whose mode is not TRIG_BYPASS and whose
stimulus fires pulses ``world.pulse(instrument, N, step)``, which reaches the inputs the
cabling's trigger cables lead to (the ADC samples each step); ``digio.trigger[N].assert()``
pulses it at once. ``smuX.trigger.initiate()`` arms a channel and sets its bit in
``status.operation.sweeping.condition`` (2 smua, 4 smub; ``status.operation.condition``
bit 3, 8); the armed channels run when the chunk ends or at ``waitcomplete()``, every
channel whose stimuli the armed channels produce, together in lockstep: in each step both
sources change first, then their SOURCE_COMPLETE events fire, then both measure. A channel
waiting on an event nothing armed produces (another channel not initiated, a digio input,
a timer) stays armed until ``smuX.abort()`` or the other channel's initiate. Stimulus
settings are stored and read back; their only effect is that grouping (the simulator does
not model a channel waiting part-way on a partner).

A slave of another instrument's trigger output: armed channels whose stimuli include the
event of a digio line in a trigger-input mode (``digio.trigger[N].mode`` not TRIG_BYPASS,
``smuX.trigger.source.stimulus = digio.trigger[N].EVENT_ID``), the rest produced by the
group itself, wait for pulses on line N of the trigger link (``world.subscribe_trigger``:
only what the cabling's trigger cables bring). Each pulse runs one trigger-model step of
the group as above (sources first, at subscriber order 0, so the ADC's sample at order 10
sees them), on the instrument's own timeline, which the pulse first brought up to the
sender's time; it is not slept (it runs in the sender's thread). After the last step (a
late subscriber, order 20) the sweep ends as above; ``smuX.abort()``, ``reset()`` or
turning the output off ends it early for that channel. Meanwhile
``status.operation.sweeping.condition`` shows the channels armed, and ``waitcomplete()``
waits up to ``fetch_wait_s`` of wall time (default FETCH_WAIT_S) for the pulses, then
returns with the sweep still armed.

Instrument time (:mod:`simulators.tsp.timing`, the 2602B datasheet): a trigger-model step
costs ``sweep_step_s(nplc)`` (12,000 / 4,200 / 560 / 59 steps/s at 0.001 / 0.01 / 0.1 / 1
NPLC and 60 Hz), a measurement a command or script takes ``script_measure_s`` (20,000 / 4,900
/ 580 / 59 /s), a level a script changes with the output on SCRIPT_SOURCE_CHANGE_S; the
automatic measure delay (``measure.delay = DELAY_AUTO``, the reset default) adds the current
range's settling time after each source change; ``delay(s)`` spends s.

Refused input (the 2600B's error codes, Series 2600B Reference Manual error summary): a
chunk that does not compile: -285 "TSP Syntax error at line N: ..." and nothing runs; a Lua
run-time error (calling ``smuc.reset()`` on a 2602B, a wrong argument type, assigning a
field the object does not have): -286 "TSP Runtime error at line N: ..." and the chunk stops
there; a setting above its range: 1101 "Parameter too big", below it: 1102 "Parameter too
small" (a source level beyond the range, a list longer than MAX_LIST_POINTS, an NPLC outside
0.001 to 25, ...): that setting is unchanged and the script goes on. The error queue holds
ERROR_QUEUE_DEPTH entries (then the last becomes -350 "Queue overflow"); each entry is
(code, message, severity 20 RECOVERABLE, node 1); ``errorqueue.next()`` on an empty queue
gives 0, "Queue Is Empty", 0, 0. Simulator limits, each a -286 when passed: a chunk runs at
most the runtime's INSTRUCTION_BUDGET Lua instructions in LUA_MEMORY_BYTES, prints at most
MAX_OUTPUT_BYTES per message; a script being loaded holds at most MAX_SCRIPT_BYTES.

Locking: ``handle`` holds the instrument lock and ``world.lock``; the world lock is released
while instrument time is slept (time_scale > 0). Units: A, V, s, Hz.
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulators.cabling import SmuCable
from simulators.tsp.buffers import ReadingBuffer
from simulators.tsp.objects import TOO_BIG, Node, attr, flag, integer_in, number, ro, within
from simulators.tsp.runtime import (
    RUNTIME_ERROR,
    ParameterError,
    Ref,
    TspRuntime,
    TspRuntimeError,
)
from simulators.tsp.smu import (
    CHANNELS,
    EVENTS,
    MAX_LIST_POINTS,
    SOURCE_IDLE,
    SmuChannel,
)
from simulators.tsp.timing import sweep_step_s
from simulators.world import StationWorld

MODEL = "2602B"
FIRMWARE = "4.0.4"
IDN = "Keithley Instruments Inc., Model {model}, {serial}, {firmware}"
ERROR_QUEUE_DEPTH = 100
MAX_OUTPUT_BYTES = 16 << 20  # what one message may print (a simulator limit)
MAX_SCRIPT_BYTES = 32 << 20  # a script being loaded (a simulator limit)
SEVERITY = 20  # RECOVERABLE
N_BLENDERS = 6
N_DIGIO = 14
_BLENDER_BASE, _DIGIO_BASE, COMMAND_EVENT = 40, 60, 100
FETCH_WAIT_S = 5.0  # wall time waitcomplete() waits for an externally triggered sweep
DIGIO_CONSTANTS = {
    "TRIG_BYPASS": 0, "TRIG_FALLING": 1, "TRIG_RISING": 2, "TRIG_EITHER": 3,
    "TRIG_SYNCHRONOUSA": 4, "TRIG_SYNCHRONOUS": 5, "TRIG_SYNCHRONOUSM": 6,
    "TRIG_RISINGA": 7, "TRIG_RISINGM": 8,
}
FORMAT_CONSTANTS = {"ASCII": 1, "SREAL": 2, "REAL32": 2, "REAL": 3, "REAL64": 3, "DREAL": 3,
                    "NORMAL": 0, "BIGENDIAN": 0, "NETWORK": 0, "SWAPPED": 1,
                    "LITTLEENDIAN": 1}
_SWALLOWED = ("display", "beeper")  # accepted and ignored
_SWALLOW_FUNCS = frozenset({"clear", "settext", "setcursor", "sendkey", "getlastkey",
                            "trigger", "loadmenu", "prompt", "inputvalue", "menu", "gettext",
                            "waitkey", "getannunciators", "beep", "getcursor", "savebuffer"})


@dataclass
class _Blender:
    orenable: bool = False
    stimulus: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    fired: set[int] = field(default_factory=set)


@dataclass
class _DigioLine:
    mode: int = 0
    stimulus: int = 0
    pulsewidth: float = 10e-6


@dataclass
class _External:
    """A trigger-model sweep armed on digio trigger inputs: its channels, the steps taken,
    its trigger-link subscriptions."""

    group: list
    steps: int = 0
    handles: list[int] = field(default_factory=list)


class SimKeithley2600:
    """A Keithley 2602B cabled into ``world``: ``cables`` maps "a"/"b" to the channels'
    :class:`~simulators.cabling.SmuCable` (a channel left out is cabled to nothing).

    Raises ValueError for a key other than "a"/"b", a cable not in the world's cabling, a
    cable whose channel is not its key, or cables of two different instruments.
    """

    def __init__(self, world: StationWorld, cables: Mapping[str, SmuCable], *,
                 serial: str = "4412345"):
        names = set()
        for key, cable in cables.items():
            if key not in CHANNELS:
                raise ValueError(f"a 2602B has channels 'a' and 'b', not {key!r}")
            if cable not in world.cabling.smus:
                raise ValueError(f"{cable} is not a cable of the world's cabling")
            if cable.channel != key:
                raise ValueError(f"{cable.instrument}: the cable of channel {key!r} names "
                                 f"channel {cable.channel!r}")
            names.add(cable.instrument)
        if len(names) != 1:
            raise ValueError(f"a 2602B is one instrument; its cables name {sorted(names)}")
        self.world = world
        self.name = names.pop()
        self.serial = serial
        self._lock = threading.Lock()
        #: The sweep armed on digio trigger inputs (None: none), and its end.
        self._external: _External | None = None
        self._external_done = threading.Condition(world.lock)
        #: Wall seconds waitcomplete() waits for an externally triggered sweep.
        self.fetch_wait_s = FETCH_WAIT_S
        self.errors: deque[tuple[int, str]] = deque()
        self._buffers: dict[str, ReadingBuffer] = {}
        self._collect: tuple[str, str, list[str]] | None = None
        self._collect_bytes = 0
        self._out: list[bytes] = []
        self.linefreq = int(world.settings.line_frequency)
        #: Voltage sourcing is physical when the world can drive a voltage onto a row.
        self.voltage_physical = callable(getattr(world, "drive_voltage", None))
        #: How many chunks (lines outside scripts, and whole scripts) were run: the
        #: simulator's count of uploads, for tests.
        self.chunks_run = 0
        self.scripts_run = 0
        with world.lock:
            self.channels = {k: SmuChannel(self, k, cables.get(k)) for k in CHANNELS}
            self._reset_globals()
            self._roots = self._build_roots()
        self._lua = TspRuntime(self, list(self._roots) + list(_SWALLOWED),
                               ["print", "printbuffer", "printnumber", "delay",
                                "waitcomplete", "reset", "opc"])

    # -- protocol --------------------------------------------------------------------------
    def handle(self, line: str) -> str | bytes | None:
        """Run one line (a chunk, or a line of a script being loaded); what it printed."""
        with self._lock, self.world.lock:
            self._out, self._out_bytes = [], 0
            for text in line.split("\n"):
                self._line(text.rstrip("\r"))
            out, self._out = b"".join(self._out), []
        if not out:
            return None
        try:
            return out.decode("ascii").removesuffix("\n")
        except UnicodeDecodeError:
            return out

    def _line(self, text: str) -> None:
        stripped = text.strip()
        if self._collect is not None:
            if stripped == "endscript":
                kind, name, lines = self._collect
                self._collect = None
                self._end_script(kind, name, "\n".join(lines))
            else:
                self._collect[2].append(text)
                self._collect_bytes += len(text) + 1
                if self._collect_bytes > MAX_SCRIPT_BYTES:
                    # Script memory is finite on the instrument too: drop it, say why.
                    self._collect = None
                    self.tsp_error(RUNTIME_ERROR, f"TSP Runtime error: script beyond "
                                                  f"{MAX_SCRIPT_BYTES} bytes, discarded")
            return
        words = stripped.split()
        if words and words[0] in ("loadscript", "loadandrunscript") and len(words) <= 2:
            self._collect = (words[0], words[1] if len(words) == 2 else "", [])
            self._collect_bytes = 0
            return
        common = stripped.upper()
        if common == "*IDN?":
            self._write(IDN.format(model=MODEL, serial=self.serial, firmware=FIRMWARE))
        elif common == "*RST":
            self._reset_all()
        elif common == "*CLS":
            self.errors.clear()
        elif common == "*OPC?":
            self._write("1")
        elif common in ("*WAI", "*OPC", "*TRG"):
            return
        elif stripped:
            self._chunk(text)

    def _chunk(self, source: str) -> None:
        self.chunks_run += 1
        try:
            self._lua.execute(source)
        finally:
            self._run_pending()

    def _end_script(self, kind: str, name: str, source: str) -> None:
        self.scripts_run += 1
        fn = self._lua.compile(source, name or "script")
        if fn is None:
            return
        if name:
            self._lua.define_script(name, fn, source)
        if kind == "loadandrunscript":
            try:
                self._lua.run(fn)
            finally:
                self._run_pending()

    def _write(self, text: str) -> None:
        self._emit(text.encode("ascii", "replace") + b"\n")

    def _emit(self, data: bytes) -> None:
        # The instrument's output queue would make a runaway printer wait for its reader;
        # the simulator ends the chunk instead of holding unbounded output.
        self._out_bytes = getattr(self, "_out_bytes", 0) + len(data)
        if self._out_bytes > MAX_OUTPUT_BYTES:
            raise TspRuntimeError(f"output beyond {MAX_OUTPUT_BYTES} bytes in one message")
        self._out.append(data)

    # -- errors ----------------------------------------------------------------------------
    def tsp_error(self, code: int, message: str) -> None:
        if len(self.errors) >= ERROR_QUEUE_DEPTH:
            self.errors[-1] = (-350, "Queue overflow")
            return
        self.errors.append((code, message))

    def _next_error(self, args: list[Any]) -> tuple[Any, ...]:
        if not self.errors:
            return 0, "Queue Is Empty", 0, 0
        code, message = self.errors.popleft()
        return code, message, SEVERITY, 1

    # -- time ------------------------------------------------------------------------------
    def now(self) -> float:
        return self.world.clock.now(self.name) - self._t0

    def spend(self, seconds: float) -> None:
        if seconds <= 0:
            return
        clock = self.world.clock
        if clock.time_scale > 0:
            self.world.lock.release()  # the other instruments keep running meanwhile
            try:
                clock.spend(self.name, seconds)
            finally:
                self.world.lock.acquire()
        else:
            clock.spend(self.name, seconds)

    # -- global state ----------------------------------------------------------------------
    def _reset_globals(self) -> None:
        self._drop_stale_external()  # (the channels' reset disarmed them)
        self.format_data, self.byteorder, self.asciiprecision = 1, 1, 6
        self.blenders = [_Blender() for _ in range(N_BLENDERS)]
        self.digio = [_DigioLine() for _ in range(N_DIGIO)]
        self._t0 = self.world.clock.now(self.name)
        self._timer0 = self.world.clock.now(self.name)

    def _reset_all(self) -> None:
        for ch in self.channels.values():
            ch.reset()
        self._reset_globals()

    # -- buffers ---------------------------------------------------------------------------
    def buffer_node(self, buf: ReadingBuffer) -> Node:
        def column(name: str) -> Node:
            values = buf.column(name)
            return Node(items=lambda i: values[i - 1] if 1 <= i <= len(values) else None,
                         length=lambda: len(values))

        node = Node(
            attrs={
                "n": ro(lambda: buf.n),
                "capacity": ro(lambda: buf.capacity),
                "basetimestamp": ro(lambda: buf.basetimestamp),
                "appendmode": attr(buf, "appendmode", lambda v: flag(v, "appendmode")),
                "collectsourcevalues": attr(buf, "collectsourcevalues",
                                             lambda v: flag(v, "collectsourcevalues")),
                "collecttimestamps": attr(buf, "collecttimestamps",
                                           lambda v: flag(v, "collecttimestamps")),
                "fillmode": (lambda: 0, lambda v: None),
            },
            funcs={"clear": lambda a: (buf.clear(), ())[1],
                   "clearcache": lambda a: ()},
            kids={name: column(name) for name in ("readings", "sourcevalues", "timestamps",
                                                  "statuses")},
            length=lambda: buf.n,
        )
        node.kids["_buffer"] = buf
        return node

    def makebuffer(self, args: list[Any]) -> tuple[Any, ...]:
        if len(args) != 1:
            raise TspRuntimeError("makebuffer expects the buffer size")
        size = int(within(number(args[0], "makebuffer size"), 1, MAX_LIST_POINTS))
        key = f"buf{len(self._buffers) + 1}"
        self._buffers[key] = ReadingBuffer(size=size)
        self._roots[key] = self.buffer_node(self._buffers[key])
        return (self._lua.proxy(key),)

    def buffer_arg(self, value: Any) -> ReadingBuffer:
        """The reading buffer a proxy argument names; a run-time error for anything else."""
        if isinstance(value, Ref):
            node = self._resolve(value.path)
            if isinstance(node, Node) and "_buffer" in node.kids:
                return node.kids["_buffer"]
        raise TspRuntimeError("bad argument: a reading buffer is expected")

    def _column_arg(self, value: Any) -> list[float]:
        if isinstance(value, Ref):
            node = self._resolve(value.path)
            if isinstance(node, Node):
                if "_buffer" in node.kids:
                    return node.kids["_buffer"].readings
                parent = self._resolve(value.path[:-1])
                if isinstance(parent, Node) and "_buffer" in parent.kids:
                    return parent.kids["_buffer"].column(value.path[-1])
        raise TspRuntimeError("bad argument: printbuffer expects buffers or buffer columns")

    # -- events ----------------------------------------------------------------------------
    def check_event(self, value: Any) -> int:
        event = int(within(number(value, "stimulus"), 0, COMMAND_EVENT))
        if event and event not in self._known_events():
            raise ParameterError(*TOO_BIG)
        return event

    def _known_events(self) -> set[int]:
        known = {COMMAND_EVENT}
        for ch in self.channels.values():
            known |= {ch.event(e) for e in EVENTS}
        known |= {_BLENDER_BASE + n for n in range(1, N_BLENDERS + 1)}
        known |= {_DIGIO_BASE + n for n in range(1, N_DIGIO + 1)}
        return known

    def _fire(self, event: int, step: int) -> None:
        """Deliver ``event``: to the blenders it feeds, and to digio lines it stimulates."""
        for n, blender in enumerate(self.blenders, start=1):
            if event not in blender.stimulus:
                continue
            if blender.orenable:
                self._fire(_BLENDER_BASE + n, step)
                continue
            blender.fired.add(event)
            wanted = {s for s in blender.stimulus if s}
            if wanted <= blender.fired:
                blender.fired.clear()
                self._fire(_BLENDER_BASE + n, step)
        for n, line in enumerate(self.digio, start=1):
            if line.mode and line.stimulus == event:
                self.world.pulse(self.name, n, step)

    def _produced(self, group: list[SmuChannel]) -> set[int]:
        events = {ch.event(e) for ch in group for e in EVENTS}
        changed = True
        while changed:
            changed = False
            for n, blender in enumerate(self.blenders, start=1):
                wanted = {s for s in blender.stimulus if s}
                ok = (wanted & events) if blender.orenable else (wanted and wanted <= events)
                if ok and _BLENDER_BASE + n not in events:
                    events.add(_BLENDER_BASE + n)
                    changed = True
        return events

    # -- running the trigger model ---------------------------------------------------------
    def _run_pending(self) -> None:
        self._drop_stale_external()
        armed = set(self._external.group) if self._external is not None else set()
        group = [ch for ch in self.channels.values() if ch.pending and ch not in armed]
        inputs = self._input_events()
        while group:
            produced = self._produced(group) | inputs
            ready = [ch for ch in group if ch.trig.stimuli() <= produced]
            if len(ready) == len(group):
                break
            group = ready
        if not group:
            return
        waits_on = {e for ch in group for e in ch.trig.stimuli()} & (inputs - self._produced(group))
        if not waits_on:
            self._sweep(group)
        elif self._external is None:
            self._arm_external(group, sorted(e - _DIGIO_BASE for e in waits_on))
        # else: one externally triggered sweep at a time; the rest stay armed, waiting.

    def _input_events(self) -> set[int]:
        """The events of the digio lines set up as trigger inputs."""
        return {_DIGIO_BASE + n for n, line in enumerate(self.digio, start=1) if line.mode}

    def _begin(self, group: list[SmuChannel]) -> None:
        for blender in self.blenders:
            blender.fired.clear()
        for ch in group:
            if ch.trig.measure_action:
                for buf in ch.trig.measure_buffers:
                    if not buf.appendmode:
                        buf.clear()
        for ch in group:
            self._fire(ch.event("ARMED"), 0)
            self._fire(ch.event("SWEEPING"), 0)

    def _step(self, active: list[SmuChannel], step: int,
              spend: Callable[[float], None]) -> None:
        """One trigger-model step of ``active`` in lockstep (module docstring)."""
        for ch in active:
            if ch.trig.source_action:
                levels = ch.trig.source_list
                ch.step_to(levels[step % len(levels)])
        for ch in active:
            self._fire(ch.event("SOURCE_COMPLETE"), step)
        spend(max(ch.measure_delay_s() for ch in active))
        for ch in active:
            t = ch.trig
            if t.measure_action:
                volts, amps, status = ch.sample()
                ch.store(t.measure_func, t.measure_buffers, volts, amps, status)
        for ch in active:
            self._fire(ch.event("MEASURE_COMPLETE"), step)
        spend(max(sweep_step_s(ch.nplc, self.linefreq) for ch in active))
        for ch in active:
            if ch.trig.endpulse_action == SOURCE_IDLE:
                ch.present = ch.idle_level()
                ch.drive()
            self._fire(ch.event("PULSE_COMPLETE"), step)

    def _finish(self, group: list[SmuChannel]) -> None:
        # Whatever happened, the sweep is over: back to the fixed level, bits cleared.
        for ch in group:
            ch.pending = False
            if ch.trig.endsweep_action == SOURCE_IDLE:
                ch.present = ch.idle_level()
                ch.drive()
            self._fire(ch.event("SWEEP_COMPLETE"), 0)
            self._fire(ch.event("IDLE"), 0)

    def _sweep(self, group: list[SmuChannel]) -> None:
        """Run the armed channels' trigger models together, step by step."""
        try:
            self._begin(group)
            for step in range(max(ch.total_steps() for ch in group)):
                self._step([ch for ch in group if step < ch.total_steps()], step, self.spend)
        finally:
            self._finish(group)

    # -- a slave on the trigger link ------------------------------------------------------
    def _arm_external(self, group: list[SmuChannel], lines: list[int]) -> None:
        self._begin(group)
        ext = _External(group)
        for line in lines:
            ext.handles += [
                self.world.subscribe_trigger(self.name, line, self._on_pulse, order=0),
                # After the acquirers (order 10): they must sample the last step too.
                self.world.subscribe_trigger(self.name, line, self._after_pulse, order=20),
            ]
        self._external = ext

    def _on_pulse(self, step: int) -> None:
        # World lock held, in the sender's thread: never take the instrument lock here.
        ext = self._external
        if ext is None:
            return
        active = [ch for ch in ext.group if ch.pending and ext.steps < ch.total_steps()]
        if not active:
            return
        self._step(active, ext.steps,
                   lambda s: self.world.clock.spend(self.name, s, sleep=False) if s > 0 else None)
        ext.steps += 1

    def _after_pulse(self, step: int) -> None:
        ext = self._external
        if ext is not None and all(not ch.pending or ext.steps >= ch.total_steps()
                                   for ch in ext.group):
            self._end_external()

    def _end_external(self) -> None:
        ext, self._external = self._external, None
        if ext is None:
            return
        for handle in ext.handles:
            self.world.unsubscribe_trigger(handle)
        self._finish([ch for ch in ext.group if ch.pending])
        self._external_done.notify_all()

    def _drop_stale_external(self) -> None:
        """An externally triggered sweep whose channels were all aborted: unsubscribe."""
        ext = self._external
        if ext is not None and not any(ch.pending for ch in ext.group):
            self._end_external()

    def _waitcomplete(self) -> None:
        self._run_pending()
        ext = self._external
        if ext is not None:
            self._external_done.wait_for(
                lambda: self._external is not ext or not any(ch.pending for ch in ext.group),
                timeout=self.fetch_wait_s)
            self._drop_stale_external()

    # -- fault hooks -----------------------------------------------------------------------
    # Used by simulators.faults (FaultSpec.stick_compliance_after); nothing else sets them.
    fault_stuck_compliance: bool = False

    def stick_compliance(self, on: bool = True) -> None:
        """Fault: both channels report compliance (buffer status 0x40, ``source.compliance``
        true, the limit bit of ``status.measurement.instrument.smuX``) while on."""
        with self.world.lock:
            self.fault_stuck_compliance = on

    # -- the object tree -------------------------------------------------------------------
    def _build_roots(self) -> dict[str, Any]:
        roots: dict[str, Any] = {f"smu{k}": ch.node() for k, ch in self.channels.items()}

        def linefreq(value: Any) -> None:
            self.linefreq = integer_in(value, "linefreq", (50, 60))

        roots["localnode"] = Node(
            attrs={
                "model": ro(lambda: MODEL),
                "serialno": ro(lambda: self.serial),
                "revision": ro(lambda: FIRMWARE),
                "description": (lambda: f"Keithley Instruments SMU {MODEL} - {self.serial}",
                                lambda v: None),
                "linefreq": (lambda: self.linefreq, linefreq),
                "autolinefreq": (lambda: 0, lambda v: None),
                "prompts": (lambda: 0, lambda v: None),
                "prompts4882": (lambda: 1, lambda v: None),
                "showerrors": (lambda: 0, lambda v: None),
            },
            funcs={"reset": lambda a: (self._reset_all(), ())[1]},
        )
        roots["errorqueue"] = Node(
            attrs={"count": ro(lambda: len(self.errors))},
            funcs={"next": self._next_error, "clear": lambda a: (self.errors.clear(), ())[1]},
        )
        roots["format"] = Node(
            attrs={
                "data": attr(self, "format_data", lambda v: integer_in(v, "data", (1, 2, 3))),
                "byteorder": attr(self, "byteorder",
                                   lambda v: integer_in(v, "byteorder", (0, 1))),
                "asciiprecision": attr(self, "asciiprecision",
                                        lambda v: int(within(number(v, "precision"), 1, 16))),
            },
            consts=dict(FORMAT_CONSTANTS),
        )

        def sweeping() -> int:
            return sum(2 << i for i, ch in enumerate(self.channels.values()) if ch.pending)

        def register(condition: Callable[[], int]) -> Node:
            return Node(attrs={"condition": ro(condition), "event": ro(condition),
                                "enable": (lambda: 0, lambda v: None),
                                "ntr": (lambda: 0, lambda v: None),
                                "ptr": (lambda: 0, lambda v: None)})

        operation = register(lambda: 8 if sweeping() else 0)
        operation.kids["sweeping"] = register(sweeping)
        instrument = register(lambda: 0)
        for k, ch in self.channels.items():
            instrument.kids[f"smu{k}"] = register(
                lambda ch=ch: ch.limit_bits)
        measurement = register(lambda: 0)
        measurement.kids["instrument"] = instrument
        roots["status"] = Node(
            attrs={"condition": ro(lambda: 0)},
            funcs={"reset": lambda a: ()},
            kids={"operation": operation, "measurement": measurement},
        )

        def blender(n: int) -> Node | None:
            if not 1 <= n <= N_BLENDERS:
                return None
            b = self.blenders[n - 1]

            def stimulus(m: int) -> Any:
                return None if not 1 <= m <= 4 else ("slot", b.stimulus, m - 1)

            return Node(
                attrs={"orenable": attr(b, "orenable", lambda v: bool(flag(v, "orenable"))),
                       "overrun": ro(lambda: False)},
                funcs={"clear": lambda a: (b.fired.clear(), ())[1]},
                consts={"EVENT_ID": _BLENDER_BASE + n},
                kids={"stimulus": Node(items=stimulus)},
            )

        roots["trigger"] = Node(
            consts={"EVENT_ID": COMMAND_EVENT},
            funcs={"clear": lambda a: (), "wait": lambda a: (False,)},
            kids={"blender": Node(items=blender)},
        )

        def digio_line(n: int) -> Node | None:
            if not 1 <= n <= N_DIGIO:
                return None
            line = self.digio[n - 1]
            return Node(
                attrs={
                    "mode": attr(line, "mode",
                                  lambda v: integer_in(v, "mode", tuple(range(9)))),
                    "stimulus": attr(line, "stimulus", self.check_event),
                    "pulsewidth": attr(line, "pulsewidth",
                                        lambda v: within(number(v, "pulsewidth"), 0, 100)),
                    "overrun": ro(lambda: False),
                },
                funcs={"assert": lambda a: (self.world.pulse(self.name, n, 0), ())[1],
                       "clear": lambda a: (), "release": lambda a: (),
                       "wait": lambda a: (False,)},
                consts={"EVENT_ID": _DIGIO_BASE + n},
            )

        roots["digio"] = Node(consts=dict(DIGIO_CONSTANTS),
                               kids={"trigger": Node(items=digio_line)})
        roots["timer"] = Node(
            funcs={"reset": lambda a: (setattr(self, "_timer0", self.world.clock.now(self.name)),
                                       ())[1]},
            kids={"measure": Node(funcs={
                "t": lambda a: (self.world.clock.now(self.name) - self._timer0,)})},
        )
        return roots

    # -- TspHost ---------------------------------------------------------------------------
    def _resolve(self, path: tuple[str, ...]) -> Any:
        node: Any = self._roots.get(path[0])
        for part in path[1:]:
            if not isinstance(node, Node):
                return None
            if part in node.kids and part != "_buffer":
                node = node.kids[part]
            elif node.items is not None and part.lstrip("-").isdigit():
                node = node.items(int(part))
            else:
                return None
        return node

    def tsp_index(self, path: tuple[str, ...]) -> tuple[str, Any]:
        if path[0] in _SWALLOWED:
            last = path[-1]
            if last in _SWALLOW_FUNCS:
                return "func", None
            return ("value", 0) if last.isupper() else ("node", None)
        parent = self._resolve(path[:-1]) if len(path) > 1 else None
        last = path[-1]
        if len(path) == 1:
            return ("node", None) if path[0] in self._roots else ("nil", None)
        if not isinstance(parent, Node):
            return "nil", None
        if last == "#":
            return ("value", parent.length()) if parent.length else ("nil", None)
        if last in parent.kids and last != "_buffer":
            return "node", None
        if last in parent.funcs:
            return "func", None
        if last in parent.attrs:
            return "value", self._lua_value(parent.attrs[last][0]())
        if last in parent.consts:
            return "value", parent.consts[last]
        if parent.items is not None and last.lstrip("-").isdigit():
            item = parent.items(int(last))
            if isinstance(item, Node):
                return "node", None
            if isinstance(item, tuple) and item and item[0] == "slot":
                return "value", item[1][item[2]]
            return ("nil", None) if item is None else ("value", item)
        return "nil", None

    @staticmethod
    def _lua_value(value: Any) -> Any:
        if isinstance(value, (bool, int, float, str)) or value is None:
            return value
        return None

    def tsp_assign(self, path: tuple[str, ...], value: Any) -> None:
        if path[0] in _SWALLOWED:
            return
        parent = self._resolve(path[:-1])
        last = path[-1]
        if not isinstance(parent, Node):
            raise TspRuntimeError(f"attempt to index a nil value ({'.'.join(path[:-1])})")
        if last in parent.attrs:
            setter = parent.attrs[last][1]
            if setter is None:
                raise TspRuntimeError(f"{'.'.join(path)} is read-only")
            setter(value)
            return
        if parent.items is not None and last.isdigit():
            item = parent.items(int(last))
            if isinstance(item, tuple) and item and item[0] == "slot":
                item[1][item[2]] = self.check_event(value)
                return
        raise TspRuntimeError(f"cannot set {'.'.join(path)}: no such attribute")

    def tsp_call(self, path: tuple[str, ...], args: list[Any]) -> tuple[Any, ...]:
        if len(path) == 1:
            return self._global_call(path[0], args)
        if path[0] in _SWALLOWED:
            return ()
        parent = self._resolve(path[:-1])
        if not isinstance(parent, Node) or path[-1] not in parent.funcs:
            raise TspRuntimeError(f"attempt to call {'.'.join(path)} (not a function)")
        return parent.funcs[path[-1]](args)

    # -- global functions ------------------------------------------------------------------
    def _global_call(self, name: str, args: list[Any]) -> tuple[Any, ...]:
        if name == "print":
            self._write("\t".join(self._ascii(v) for v in args))
        elif name == "printnumber":
            self._print_values([number(v, "printnumber") for v in args])
        elif name == "printbuffer":
            self._printbuffer(args)
        elif name == "delay":
            if len(args) != 1:
                raise TspRuntimeError("delay expects the time in s")
            self.spend(within(number(args[0], "delay"), 0, 1e5))
        elif name == "waitcomplete":
            self._waitcomplete()
        elif name == "reset":
            self._reset_all()
        elif name == "opc":
            pass
        return ()

    def _ascii(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return f"{float(value):.{self.asciiprecision - 1}e}"
        return "nil" if value is None else str(value)

    def _print_values(self, values: list[float]) -> None:
        if self.format_data == 1:
            self._write(", ".join(self._ascii(v) for v in values))
            return
        code = "f" if self.format_data == 2 else "d"
        order = "<" if self.byteorder == 1 else ">"
        self._emit(b"#0" + struct.pack(f"{order}{len(values)}{code}", *values) + b"\n")

    def _printbuffer(self, args: list[Any]) -> None:
        if len(args) < 3:
            raise TspRuntimeError("printbuffer expects start, end and at least one buffer")
        start, stop = (int(number(a, "printbuffer index")) for a in args[:2])
        columns = [self._column_arg(a) for a in args[2:]]
        n = min(len(c) for c in columns)
        if not 1 <= start <= stop <= n:
            raise TspRuntimeError(f"printbuffer: indices {start} to {stop} outside the "
                                  f"buffer's 1 to {n}")
        values = [col[i] for i in range(start - 1, stop) for col in columns]
        self._print_values(values)
