"""The shared physical world of the simulated probe station.

Every simulated instrument acts on one :class:`StationWorld`: the current an SMU sources
(:meth:`StationWorld.drive`) flows through whichever device the switch matrix connects to
its bus (when the prober is in contact), a voltage it sources
(:meth:`StationWorld.drive_voltage`) stands across them and they draw the current the MTJ
model's I-V gives, and the ADC board reads the voltage differences its input cables name.
A reference resistor (``Cabling.reference_load_ohm``) loads a bus hard-wired in place of
the matrix, or through its column-00 switch channel (:meth:`StationWorld.reference_ohm`). What
is cabled to what (SMU outputs to buses, ADC inputs, the trigger link) is the world's
:class:`~simulators.cabling.Cabling`; see docs/wire-protocols.md. The buses are the
matrix rows the cabling gives it (``StationWorld.rows``: A and B, or more couples up to H,
each couple reaching every pair). Instrument time is a :class:`SimClock`: one timeline per
instrument, station time the latest of them. Units: A, V, s.

Instruments must hold ``world.lock`` around any compound operation; every public method
here takes it too (it is re-entrant).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from simulators.cabling import DEFAULT_CABLING, ROWS, Cabling, row_device
from simulators.mtj import DeviceBank, Variability, variability_preset
from simulators.wafer import build_wafer

BUSES = ROWS  # the default switch matrix rows; a bus is a row (StationWorld.rows: its own)
_CHANNEL = re.compile(r"^1([A-H])(\d\d)$")
_INVERSION_SPAN_A = 20e-3  # current search range for compliance and parallel devices

# Programming pulses (see StationWorld.program).
PROGRAM_THRESHOLD_V = 0.35  # |V| below which a pulse leaves the tuning state alone
PROGRAM_K_A_PER_V = 20e-6  # I_off shift per volt above threshold, for a 1 us pulse
PROGRAM_WIDTH_REF_S = 1e-6
PROGRAM_SHIFT_LIMIT_A = 40e-6  # the tuning shift saturates at +-this in total
PROGRAM_SPREAD = 0.1  # relative sigma of one pulse's shift (0 on the "ideal" preset)
# An SMU's current read noise (A rms at 1 NPLC) per volt of its voltage read noise: 0.2 nA
# on the nominal presets (20 uV), of the order of the 2400's 100 uA range noise.
SMU_CURRENT_NOISE_A_PER_V = 10e-6
_BISECTIONS = 60


@dataclass(frozen=True)
class SimSettings:
    """Settings of a simulated station (the `[simulation]` table of a station file).

    seed: seeds every random draw; variability: preset name; n_pairs: MTJ pairs per chip;
    die_grid: (columns, rows) of dies on the wafer; time_scale: 0 runs as fast as possible,
    1 is real time; line_frequency: mains frequency in Hz (sets the NPLC time); wafer:
    "grid" (die_grid, no defects) or "round-N" (a round map with gradients and planted
    defects, see simulators.wafer).
    """

    seed: int = 1
    variability: str = "nominal"
    n_pairs: int = 16
    die_grid: tuple[int, int] = (2, 2)
    time_scale: float = 0.0
    line_frequency: float = 60.0
    smu_noise_v: float | None = None
    drift_a_per_sqrt_s: float | None = None
    adc_noise_v: float | None = None
    wafer: str = "grid"
    #: Device temperature (K; None: the preset's, 300 K).
    temperature_k: float | None = None
    #: Where measured devices come from (a CSV path, iv sessions), for the record.
    devices: str | None = None
    #: Measured I-V points (pair 1-based, "A"|"B", current A, voltage V), one tuple per
    #: point: every die then holds these devices (simulators.measured_devices).
    device_table: tuple[tuple[int, str, float, float], ...] | None = None

    def measured_devices(self):
        """The :class:`~simulators.measured_devices.MeasuredDevices` of ``device_table``,
        or None."""
        if not self.device_table:
            return None
        from simulators.measured_devices import MeasuredDevices

        points: dict[tuple[int, str], tuple[list[float], list[float]]] = {}
        for pair, dev, current, volts in self.device_table:
            i, v = points.setdefault((int(pair), str(dev)), ([], []))
            i.append(float(current))
            v.append(float(volts))
        return MeasuredDevices.from_arrays(
            {k: (np.array(i), np.array(v)) for k, (i, v) in points.items()},
            self.devices or "[simulation] devices")

    def variability_model(self) -> Variability:
        v = variability_preset(self.variability)
        from dataclasses import replace

        if self.temperature_k is not None:
            v = replace(v, temperature_k=float(self.temperature_k))
        return replace(
            v,
            smu_noise_v=v.smu_noise_v if self.smu_noise_v is None else self.smu_noise_v,
            adc_noise_v=v.adc_noise_v if self.adc_noise_v is None else self.adc_noise_v,
            drift_a_per_sqrt_s=(
                v.drift_a_per_sqrt_s if self.drift_a_per_sqrt_s is None else self.drift_a_per_sqrt_s
            ),
        )


#: Shortest wall-time sleep (s) SimClock takes; shorter spends accumulate until one is due.
SLEEP_QUANTUM_S = 2e-3


class SimClock:
    """Instrument time: one virtual timeline per instrument, station time the latest of them.

    Each instrument's work advances its own timeline (``spend(instrument, s)``), so
    instruments working at once (a trigger-link master and its slave, the ADC sampling
    during a sweep, two SMUs sweeping two pairs) overlap instead of adding up. What one
    instrument waits for, it starts no earlier than: a trigger pulse brings its receivers
    up to the sender's time (:meth:`wait_until`, called by ``StationWorld.pulse``), and
    the host, which talks to one instrument after another, carries causality between them:
    a command reaching an instrument starts no earlier than the host's time
    (:meth:`command`), and a reply brings the host up to the replying instrument's time
    (:meth:`reply`). The simulated station calls those two around every command it
    serves. ``now()`` is station time, the latest timeline (the host's included);
    ``now(instrument)`` that instrument's own.

    ``spend(s)`` without an instrument is the whole station waiting s seconds (a chuck
    move, or a test letting time pass): every timeline moves to station time + s.

    time_scale: each spend of s seconds sleeps s * time_scale of wall time in the thread of
    the instrument that spends it, so instruments spending at once in their own threads
    overlap in wall time too and wall time follows the longest timeline (time_scale 1 is
    real time, 0 as fast as possible). Units: s.
    """

    def __init__(self, time_scale: float):
        self.time_scale = time_scale
        self._timelines: dict[str, float] = {}
        self._host = 0.0
        self._floor = 0.0  # every timeline, seen or not, is at least here
        self._due: dict[str | None, float] = {}  # wall time (perf_counter) each is paced to
        self._lock = threading.Lock()

    def spend(self, instrument: str | float, seconds: float | None = None, *,
              sleep: bool = True) -> None:
        """``spend(instrument, s)``: ``instrument`` works for s seconds on its timeline;
        ``spend(s)``: the whole station waits s seconds. ``sleep=False``: no wall time is
        slept for it (work done in another instrument's thread, in the shadow of that
        instrument's own spends: a trigger-link slave's step)."""
        if seconds is None:
            seconds, name = float(instrument), None
        else:
            name = str(instrument)
        with self._lock:
            if name is None:
                self._floor = self._now() + seconds
                self._host = self._floor
                for key in self._timelines:
                    self._timelines[key] = self._floor
            else:
                self._timelines[name] = self._get(name) + seconds
        if sleep and self.time_scale > 0 and seconds > 0:
            self._sleep(name, seconds * self.time_scale)

    def _sleep(self, name: str | None, wall_s: float) -> None:
        """Sleep ``wall_s`` for ``name``; short spends accumulate until a sleep of at least
        SLEEP_QUANTUM_S is due, so that thousands of sub-millisecond sweep steps do not each
        pay the operating system's sleep overshoot. An instrument that was idle (behind its
        pace: waiting for the host) does not catch up on the idle time."""
        wall = time.perf_counter()
        with self._lock:
            due = max(self._due.get(name, wall), wall) + wall_s
            self._due[name] = due
        if due - wall >= SLEEP_QUANTUM_S:
            time.sleep(due - wall)

    def wait_until(self, instrument: str, t: float) -> None:
        """``instrument`` has waited for something that happened at ``t`` (s): its timeline
        is no earlier than ``t`` from now on (no wall time is slept: what it waited for
        slept already)."""
        with self._lock:
            self._timelines[instrument] = max(self._get(instrument), t)

    def command(self, instrument: str) -> None:
        """A host command reaches ``instrument``: it starts no earlier than the host."""
        with self._lock:
            self._timelines[instrument] = max(self._get(instrument), self._host)

    def reply(self, instrument: str) -> None:
        """``instrument`` replies to the host: the host is no earlier than the instrument."""
        with self._lock:
            self._host = max(self._host, self._get(instrument))

    def now(self, instrument: str | None = None) -> float:
        """Virtual seconds since the station started: station time (the latest timeline),
        or ``instrument``'s own timeline."""
        with self._lock:
            return self._now() if instrument is None else self._get(instrument)

    def timelines(self) -> dict[str, float]:
        """Every instrument's timeline (s), by name, and the host's under ``"<host>"``."""
        with self._lock:
            return {**self._timelines, "<host>": self._host}

    def _get(self, name: str) -> float:
        return max(self._timelines.get(name, self._floor), self._floor)

    def _now(self) -> float:
        return max(self._floor, self._host, *self._timelines.values())


@dataclass
class BusState:
    """What a bus carries now: what is sourced, the terminal voltage (V) and current (A).

    source: "CURR" (a current source of set_current A, voltage compliance compliance_v V)
    or "VOLT" (a voltage source of set_voltage V, current compliance compliance_a A).
    """

    on: bool = False
    set_current: float = 0.0
    compliance_v: float = 21.0
    voltage: float = 0.0
    current: float = 0.0
    in_compliance: bool = False
    source: str = "CURR"
    set_voltage: float = 0.0
    compliance_a: float = 1.05e-4


@dataclass
class _Subscriber:
    order: int
    callback: Callable[[int], None]
    handle: int = field(default=0)


class StationWorld:
    """Devices, prober, switch matrix, buses and the trigger link of one simulated station.

    ``cabling`` (default :data:`~simulators.cabling.DEFAULT_CABLING`, validated here: a bad
    one raises ValueError) says which rows the ADC inputs read and where trigger pulses go.
    """

    def __init__(self, settings: SimSettings | None = None, cabling: Cabling | None = None):
        self.cabling = (DEFAULT_CABLING if cabling is None else cabling).validate()
        self.settings = settings or SimSettings()
        self.variability = self.settings.variability_model()
        self.lock = threading.RLock()
        self.clock = SimClock(self.settings.time_scale)
        self.rng = np.random.default_rng(self.settings.seed)
        self._drift_rng = np.random.default_rng([self.settings.seed, 2])
        self._drift_t = 0.0
        # Telegraph noise and relaxation: their own stream, so that turning them on does
        # not change any other draw.
        self._dynamics_rng = np.random.default_rng([self.settings.seed, 3])
        wafer = build_wafer(self.settings.wafer, self.settings.die_grid,
                            self.settings.n_pairs, self.variability, self.settings.seed)
        self.dies: dict[tuple[int, int], DeviceBank] = wafer.banks
        measured = self.settings.measured_devices()
        if measured is not None:  # measured curves replace the drawn devices on every die
            from simulators.measured_devices import MeasuredBank

            self.dies = {die: MeasuredBank(measured) for die in self.dies}
        #: Devices with no contact, per die: never connected to a bus (see connected()).
        self.opens = wafer.opens
        #: What the wafer planted: (die, pair index, device index) -> kind (the oracle's).
        self.planted = wafer.defects
        # The prober starts over the first die of its map (1,1 on a grid).
        self.die: tuple[int, int] = min(self.dies, key=lambda die: (die[1], die[0]))
        self._dynamic_devices = self.variability.relax_fraction > 0 or any(
            bank.dynamic for bank in self.dies.values())
        self.in_contact = False
        self.closed: set[str] = set()
        self._connections: dict[str, list[tuple[int, int]]] | None = None  # see connected()
        #: The matrix rows (buses) of this world: the cabling's ``matrix_rows``.
        self.rows: tuple[str, ...] = self.cabling.matrix_rows
        self.buses = {b: BusState() for b in self.rows}
        # Pulse-to-pulse spread of programming; an ideal population programs exactly.
        ideal = self.variability.spread == 0 and self.variability.mismatch == 0
        self.program_spread = 0.0 if ideal else PROGRAM_SPREAD
        self._subscribers: dict[tuple[str, int], list[_Subscriber]] = {}
        self._next_handle = 0
        self._reference_hardwired = (self.cabling.reference_load_ohm is not None
                                     and not self.cabling.reference_channels)

    # -- devices ---------------------------------------------------------------------
    @property
    def chip(self) -> DeviceBank:
        """The devices of the die under the probes."""
        return self.dies[self.die]

    def channel_target(self, name: str) -> tuple[str, int, int]:
        """(bus, pair index 0-based, device 0=A 1=B) of switch channel ``name``.

        Raises ValueError for a name that is not a channel of this station.
        """
        m = _CHANNEL.match(name)
        if (not m or m.group(1) not in self.rows
                or not 1 <= int(m.group(2)) <= self.settings.n_pairs):
            raise ValueError(f"no channel {name!r}")
        bus = m.group(1)
        return bus, int(m.group(2)) - 1, row_device(bus)

    def channels(self) -> list[str]:
        """Every switch channel: the devices' 1Akk/1Bkk, then the cabling's reference
        channels (column 00)."""
        devices = [f"1{b}{k:02d}" for b in self.rows
                   for k in range(1, self.settings.n_pairs + 1)]
        return devices + list(self.cabling.reference_channels)

    def connected(self, bus: str) -> list[tuple[int, int]]:
        """(pair, device) indices connected to ``bus`` now (none while separated, none
        while a reference resistor is hard-wired in place of the matrix)."""
        if not self.in_contact or self._reference_hardwired:
            return []
        if self._connections is None:  # worked out once per switch state and die: a hot path
            opens = self.opens.get(self.die, ())
            by_bus: dict[str, list[tuple[int, int]]] = {}
            for name in sorted(self.closed):
                if name not in self.cabling.reference_channels:
                    b, pair, dev = self.channel_target(name)
                    # a device without contact carries nothing, as if not connected
                    if (pair, dev) not in opens:
                        by_bus.setdefault(b, []).append((pair, dev))
            self._connections = by_bus
        return list(self._connections.get(bus, ()))

    # -- switch and prober -----------------------------------------------------------
    def set_closed(self, channels: set[str]) -> None:
        """Set the closed channels; every bus is re-driven through the new connections.

        ValueError for an unknown channel, or for two closed channels that reach the same
        device on two rows (two sources on one device: the simulator does not model it).
        """
        with self.lock:
            reached: dict[tuple[int, int], str] = {}
            for name in sorted(channels):
                if name not in self.cabling.reference_channels:
                    _, pair, dev = self.channel_target(name)
                    if (pair, dev) in reached:
                        # Two rows (two sources) on one device: not modelled here.
                        raise ValueError(f"channels {reached[pair, dev]} and {name} both "
                                         f"reach device {'AB'[dev]} of pair {pair + 1}")
                    reached[pair, dev] = name
            self.closed = set(channels)
            self._connections = None
            self._redrive()

    def set_contact(self, in_contact: bool) -> None:
        with self.lock:
            self.in_contact = in_contact
            self._redrive()

    def set_die(self, die: tuple[int, int]) -> None:
        with self.lock:
            if die not in self.dies:
                raise ValueError(f"no die {die}")
            if self.in_contact:
                raise RuntimeError("chuck is in contact")
            self.die = die
            self._connections = None  # another die's opens

    # -- buses -----------------------------------------------------------------------
    def drive(self, bus: str, current: float, compliance_v: float) -> BusState:
        """Source ``current`` (A) on ``bus`` with a voltage compliance (V); returns the state.

        The connected devices carry the current; if they would need more than the
        compliance voltage, the source limits at the compliance voltage instead. With no
        device connected the bus sits at the compliance voltage and carries no current.
        """
        with self.lock:
            self._drift()
            state = self.buses[bus]
            state.on, state.set_current, state.compliance_v = True, current, abs(compliance_v)
            state.source = "CURR"
            self._drive_bus(bus)
            return state

    def drive_voltage(self, bus: str, voltage: float, compliance_a: float) -> BusState:
        """Source ``voltage`` (V) on ``bus`` with a current compliance (A); returns the state.

        The current is what the connected load draws at that voltage (the devices through
        the MTJ model's I-V, which is monotonic, solved by bisection; a reference resistor
        by Ohm's law). If it would exceed the compliance, the source limits: it carries
        the compliance current (with the sign of the voltage) at the voltage that draws
        it, and ``in_compliance`` is set. With nothing connected the bus sits at the
        source voltage and carries no current.
        """
        with self.lock:
            self._drift()
            state = self.buses[bus]
            state.on, state.set_voltage, state.compliance_a = True, voltage, abs(compliance_a)
            state.source = "VOLT"
            self._drive_bus(bus)
            return state

    def reference_ohm(self, bus: str) -> float | None:
        """The reference resistance (Ohm) on ``bus`` now: hard-wired, or through its closed
        column-00 switch channel (the resistor is on the bench, not the wafer: the prober
        does not matter); None when none is connected."""
        ohms = self.cabling.reference_load_ohm
        if ohms is None:
            return None
        if self._reference_hardwired or f"1{bus}00" in self.closed:
            return float(ohms)
        return None

    def _drift(self) -> None:
        """Random walk of every device's I_off over the instrument time elapsed (A/sqrt(s)),
        and the devices' own dynamics over it (telegraph fluctuators, relaxation of the
        non-volatile shift: DeviceBank.advance), each from its own seeded stream."""
        sigma = self.variability.drift_a_per_sqrt_s
        now = self.clock.now()
        dt, self._drift_t = now - self._drift_t, now
        if dt <= 0:
            return
        if sigma > 0:
            for bank in self.dies.values():
                bank.tune(
                    slice(None),
                    bank.tuning_shift
                    + self._drift_rng.normal(0.0, sigma * np.sqrt(dt), bank.shape),
                    bank.tuning_scale,
                )
        if self._dynamic_devices:
            v = self.variability
            for bank in self.dies.values():
                bank.advance(dt, self._dynamics_rng, v.relax_fraction, v.relax_tau_s)

    def release(self, bus: str) -> None:
        """Turn the source on ``bus`` off: the bus sits at 0 V and carries no current."""
        with self.lock:
            self.buses[bus] = BusState(compliance_v=self.buses[bus].compliance_v)

    def bus_voltage(self, bus: str) -> float:
        return self.buses[bus].voltage

    def differential(self, channel: int) -> float:
        """Noise-free voltage (V) at the ADC board's input ``channel``: V(plus row) -
        V(minus row) of its input cable, 0 for an open input."""
        cable = self.cabling.adc_input(channel)
        if cable.is_open:
            return 0.0
        return self.buses[cable.plus_row].voltage - self.buses[cable.minus_row].voltage

    def _redrive(self) -> None:
        for bus in self.rows:
            if self.buses[bus].on:
                self._drive_bus(bus)

    def _drive_bus(self, bus: str) -> None:
        state = self.buses[bus]
        devices = self.connected(bus)
        r_ref = self.reference_ohm(bus)
        if state.source == "VOLT":
            self._drive_voltage_bus(state, devices, r_ref)
            return
        if r_ref is not None:
            self._drive_current_with_reference(state, devices, r_ref)
            return
        i_set, v_comp = state.set_current, state.compliance_v
        if not devices:
            state.voltage = float(np.copysign(v_comp, i_set)) if i_set != 0 else 0.0
            state.current, state.in_compliance = 0.0, i_set != 0
            return
        if len(devices) == 1:
            self._drive_one(state, *devices[0])
            return
        idx = tuple(np.array(devices).T)
        v = self._parallel_voltage(idx, i_set)
        if abs(v) > v_comp:
            v = float(np.copysign(v_comp, i_set))
            currents = self._device_currents(idx, v)
            state.in_compliance = True
        else:
            currents = self._device_currents(idx, v) if len(devices) > 1 else np.array([i_set])
            state.in_compliance = False
        v_dev = self.chip.bias(idx, currents)
        state.voltage = float(np.mean(v_dev))
        state.current = float(np.sum(currents)) if state.in_compliance else i_set

    def _drive_one(self, state: BusState, pair: int, dev: int) -> None:
        """One device on the bus: the common case, solved in floats."""
        chip, i_set = self.chip, state.set_current
        v = chip.ideal_voltage_one(pair, dev, i_set)
        if abs(v) > state.compliance_v:
            v = float(np.copysign(state.compliance_v, i_set))
            current = float(self._device_currents((np.array([pair]), np.array([dev])), v)[0])
            state.in_compliance = True
        else:
            current = i_set
            state.in_compliance = False
        state.voltage = chip.bias_one(pair, dev, current, v)
        state.current = current

    # -- loads of a voltage source, and a current source with a reference resistor -------
    def _drive_voltage_bus(self, state: BusState, devices: list[tuple[int, int]],
                           r_ref: float | None) -> None:
        v_set, i_comp = state.set_voltage, state.compliance_a
        if not devices and r_ref is None:
            state.voltage, state.current, state.in_compliance = v_set, 0.0, False
            return
        for _ in range(2):  # twice if the bias destroyed a device: a short draws more
            v, i = v_set, self._load_current(devices, r_ref, v_set)
            state.in_compliance = abs(i) > i_comp
            if state.in_compliance:
                i = float(np.copysign(i_comp, v_set))
                v = self._load_voltage(devices, r_ref, i, abs(v_set))
            if not self._record_bias(devices, v):
                break
        state.voltage, state.current = v, i

    def _drive_current_with_reference(self, state: BusState, devices: list[tuple[int, int]],
                                      r_ref: float) -> None:
        i_set, v_comp = state.set_current, state.compliance_v
        for _ in range(2):
            v_limit = float(np.copysign(v_comp, i_set))
            i_limit = self._load_current(devices, r_ref, v_limit)
            # The load's I-V is monotonic: it needs more than the compliance voltage exactly
            # when it draws less than the set current at the compliance voltage.
            state.in_compliance = abs(i_limit) < abs(i_set)
            if state.in_compliance:
                v, i = v_limit, i_limit
            else:
                v, i = self._load_voltage(devices, r_ref, i_set, v_comp), i_set
            if not self._record_bias(devices, v):
                break
        state.voltage, state.current = v, i

    def _record_bias(self, devices: list[tuple[int, int]], v: float) -> bool:
        """Every device on a bus at ``v`` (V) goes into the maximum-bias record; True if
        that destroyed one (the load changed)."""
        chip, broke = self.chip, False
        for pair, dev in devices:
            intact = not chip.destroyed[pair, dev]
            chip.bias_one(pair, dev, self._device_current_one(pair, dev, v), v)
            broke |= intact and bool(chip.destroyed[pair, dev])
        return broke

    def _load_current(self, devices: list[tuple[int, int]], r_ref: float | None,
                      v: float) -> float:
        """Current (A) the devices and reference resistor on a bus draw together at ``v`` (V)."""
        i = v / r_ref if r_ref is not None else 0.0
        return i + sum(self._device_current_one(pair, dev, v) for pair, dev in devices)

    def _load_voltage(self, devices: list[tuple[int, int]], r_ref: float | None,
                      current: float, v_max: float) -> float:
        """Voltage (V) at which the load draws ``current`` (A), within +-``v_max`` (V): the
        compliance bracket (the load's I-V is monotonic, so bisection finds it)."""
        if not devices:
            return current * r_ref if r_ref is not None else float(np.copysign(v_max, current))
        if r_ref is None and len(devices) == 1:
            return self.chip.ideal_voltage_one(*devices[0], current)
        lo, hi = -v_max, v_max
        for _ in range(_BISECTIONS):
            mid = 0.5 * (lo + hi)
            if self._load_current(devices, r_ref, mid) > current:
                hi = mid
            else:
                lo = mid
        return 0.5 * (lo + hi)

    def _device_current_one(self, pair: int, dev: int, v: float) -> float:
        """Current (A) one device draws at ``v`` (V), by bisection in floats."""
        lo, hi = -_INVERSION_SPAN_A, _INVERSION_SPAN_A
        chip = self.chip
        for _ in range(_BISECTIONS):
            mid = 0.5 * (lo + hi)
            if chip.ideal_voltage_one(pair, dev, mid) > v:
                hi = mid
            else:
                lo = mid
        return 0.5 * (lo + hi)

    def _device_currents(self, idx, v: float) -> np.ndarray:
        """Currents (A) the devices at ``idx`` draw at voltage ``v``, by bisection."""
        lo = np.full(len(idx[0]), -_INVERSION_SPAN_A)
        hi = np.full(len(idx[0]), _INVERSION_SPAN_A)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = self.chip.ideal_voltage(idx, mid) > v
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid)
        return 0.5 * (lo + hi)

    def _parallel_voltage(self, idx, current: float) -> float:
        """Common voltage (V) of devices in parallel that together carry ``current`` (A)."""
        if len(idx[0]) == 1:
            return float(self.chip.ideal_voltage(idx, np.array([current]))[0])
        lo, hi = -10.0, 10.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if np.sum(self._device_currents(idx, mid)) > current:
                hi = mid
            else:
                lo = mid
        return 0.5 * (lo + hi)

    # -- programming -----------------------------------------------------------------
    def program(self, bus: str, amplitude_v: float, width_s: float) -> list[tuple[int, int]]:
        """A programming pulse of ``amplitude_v`` (V) for ``width_s`` (s) on ``bus``.

        Every device connected to the bus (none while separated: then nothing happens) sees
        the pulse's voltage. Like any bias, |amplitude| and the current the device draws at
        it go into the maximum-bias record, and a pulse beyond the device's breakdown
        voltage destroys it (a destroyed device is not programmed any more). Above the
        programming threshold V_th = 0.35 V the pulse moves the device's non-volatile I_off
        shift by

            dI = k * sign(V) * (|V| - V_th) * sqrt(width / 1 us),   k = 20 uA/V,

        times (1 + s * N(0, 1)) with s = ``program_spread`` (0.1; 0 on the ideal preset,
        drawn from ``rng``), and the total shift is clamped to +-40 uA. Below the threshold
        the tuning state is left as it is. The pulse's own duration is not spent here (the
        instrument does that, outside the lock). Returns the (pair, device) indices pulsed.
        """
        with self.lock:
            devices = self.connected(bus)
            chip = self.chip
            for pair, dev in devices:
                idx = (np.array([pair]), np.array([dev]))
                current = float(self._device_currents(idx, amplitude_v)[0])
                chip.bias_one(pair, dev, current, amplitude_v)
                excess = abs(amplitude_v) - PROGRAM_THRESHOLD_V
                if chip.destroyed[pair, dev] or excess <= 0:
                    continue
                step = (
                    PROGRAM_K_A_PER_V
                    * float(np.sign(amplitude_v))
                    * excess
                    * np.sqrt(width_s / PROGRAM_WIDTH_REF_S)
                )
                if self.program_spread:
                    step *= 1.0 + self.program_spread * float(self.rng.standard_normal())
                shift, scale = chip.tuning_state((pair, dev))
                shift = float(np.clip(shift + step, -PROGRAM_SHIFT_LIMIT_A, PROGRAM_SHIFT_LIMIT_A))
                chip.tune((pair, dev), shift, float(scale))
            if devices:
                # The sources now see the re-tuned (or destroyed) devices.
                self._redrive()
            return devices

    # -- noise -----------------------------------------------------------------------
    def smu_noise(self, nplc: float) -> float:
        """One draw of SMU voltage read noise (V) at ``nplc`` power-line cycles."""
        return float(self.rng.normal(0.0, self.variability.smu_noise_v / np.sqrt(nplc)))

    def smu_current_noise(self, nplc: float) -> float:
        """One draw of SMU current read noise (A) at ``nplc`` power-line cycles: the voltage
        read noise times SMU_CURRENT_NOISE_A_PER_V (0 on the ideal preset)."""
        sigma = self.variability.smu_noise_v * SMU_CURRENT_NOISE_A_PER_V / np.sqrt(nplc)
        return float(self.rng.normal(0.0, sigma))

    def adc_noise(self, integration_s: float) -> float:
        """One draw of the ADC's input-referred noise (V) for an integration time (s)."""
        sigma = self.variability.adc_noise_v / np.sqrt(integration_s / 1e-3)
        return float(self.rng.normal(0.0, sigma))

    # -- trigger link ----------------------------------------------------------------
    def subscribe_trigger(
        self, instrument: str, in_line: int, callback: Callable[[int], None], order: int
    ) -> int:
        """Call ``callback(step)`` on every pulse that reaches input line ``in_line`` of
        ``instrument`` along a trigger cable of the cabling.

        Lower ``order`` runs first among everything one pulse reaches: sources (SMUs
        stepping their level) use 0, acquirers (the ADC taking a sample) 10, so that a
        sample sees every source's new level. Returns a handle for
        :meth:`unsubscribe_trigger`.
        """
        with self.lock:
            self._next_handle += 1
            subs = self._subscribers.setdefault((instrument, in_line), [])
            subs.append(_Subscriber(order, callback, self._next_handle))
            subs.sort(key=lambda s: s.order)
            return self._next_handle

    def unsubscribe_trigger(self, handle: int) -> None:
        with self.lock:
            for subs in self._subscribers.values():
                subs[:] = [s for s in subs if s.handle != handle]

    def pulse(self, instrument: str, out_line: int, step: int) -> None:
        """``instrument`` pulses its trigger-link output ``out_line`` for sweep step
        ``step`` (0-based). The pulse reaches the input lines the trigger cables from that
        output lead to, and nothing else: an output line with no cable triggers nobody.
        Every instrument it reaches has waited for it: its timeline is brought up to the
        sender's (:meth:`SimClock.wait_until`) before its callbacks run."""
        with self.lock:
            targets = self.cabling.trigger_targets(instrument, out_line)
            # The pulse leaves at the sender's time: what it reaches starts no earlier.
            sent_at = self.clock.now(instrument)
            for target, _ in targets:
                self.clock.wait_until(target, sent_at)
            subs = [
                sub
                for endpoint in targets
                for sub in self._subscribers.get(endpoint, [])
            ]
            subs.sort(key=lambda s: s.order)
            for sub in subs:
                sub.callback(step)

    # -- records ---------------------------------------------------------------------
    def max_bias_record(self) -> dict[str, np.ndarray]:
        """Per die: the largest |V| and |I| every device ever saw, and which are destroyed."""
        return {
            f"{c},{r}": {
                "max_abs_v": bank.max_abs_v.copy(),
                "max_abs_i": bank.max_abs_i.copy(),
                "destroyed": bank.destroyed.copy(),
            }
            for (c, r), bank in self.dies.items()
        }

    # -- fault hooks -------------------------------------------------------------------
    # Used by simulators.faults (FaultSpec.break_device_after); nothing else calls them.
    def destroy_device(self, pair: int, dev: int, die: tuple[int, int] | None = None) -> None:
        """Fault: destroy device ``dev`` (0 = A, 1 = B) of pair ``pair`` (0-based) on ``die``
        (default: the die under the probes); it is then a short, as after a breakdown."""
        with self.lock:
            bank = self.dies[self.die if die is None else die]
            if not (0 <= pair < bank.shape[0] and dev in (0, 1)):
                raise ValueError(f"no device {dev} in pair {pair}")
            bank.destroyed[pair, dev] = True
            self._redrive()  # the sources now see the short
