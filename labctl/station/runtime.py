"""An open probe station: the instruments of a station file, driven as its wiring says.

:func:`open_station` starts the in-process simulator for a simulated station (cabled as
the wiring says: :mod:`labctl.station.simulated`), opens every instrument's transport
(with a wire log when a session directory is given), checks each `*IDN?` against the
configured identity, and returns a :class:`Station`, which implements the engine's
:class:`protocols.station.StationInterface`. Leaving its ``with`` block, normally or by an
exception, Ctrl-C or SIGTERM, ramps every SMU to zero, turns every output off, disarms the
ADC and opens the switch matrix, confirming each (:meth:`Station.safe_shutdown`).
With an adapter factory (an argument, or :func:`adapters_from` around the caller, which is
how ``labctl replay --wire`` reaches the stations a command opens) no simulator is started
and each instrument's adapter comes from the factory instead of its resource.
Units: A, V, s.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from instruments import open_adapter
from instruments.adc_board import AdcBoard
from instruments.keithley2400 import Keithley2400
from instruments.keithley2600 import Keithley2600
from instruments.keysight_b2900 import KeysightB2902A
from instruments.prober import Prober
from instruments.switch_matrix import SwitchMatrix
from instruments.transport import InstrumentError, WireLog, verify_identity
from instruments.visa_transport import VisaLibraryError
from labctl.records.session import wire_log_path
from labctl.station.file import InstrumentConfig, StationConfig
from labctl.station.oracle import Oracle
from protocols.station import Capabilities, RawSweep, ShutdownReport
from protocols.wiring import TRIGGER_LINE, Channel, Wiring

log = logging.getLogger(__name__)

#: Makes an instrument's adapter from its configuration and the wire log the station keeps
#: for it, in place of opening ``config.resource``.
AdapterFactory = Callable[[InstrumentConfig, WireLog], Any]
_ADAPTER_FACTORY: ContextVar[AdapterFactory | None] = ContextVar("adapter_factory", default=None)


@contextlib.contextmanager
def adapters_from(factory: AdapterFactory) -> Iterator[None]:
    """Within the block, :func:`open_station` calls without a factory of their own use
    ``factory`` (a context variable: it does not reach stations opened in other threads)."""
    token = _ADAPTER_FACTORY.set(factory)
    try:
        yield
    finally:
        _ADAPTER_FACTORY.reset(token)


DRIVER_CLASSES = {
    "keithley2400": Keithley2400,
    "keithley2600": Keithley2600,
    "keysight_b2902a": KeysightB2902A,
    "adc_board": AdcBoard,
    "switch_matrix": SwitchMatrix,
    "prober": Prober,
}


class Station:
    """The opened instruments of one station, driven as its wiring says.

    Implements :class:`protocols.station.StationInterface`. ``oracle`` is the simulator's
    ground truth on a simulated station, None on real instruments.
    """

    def __init__(
        self,
        config: StationConfig,
        instruments: dict,
        simulator=None,
        identities: dict[str, str] | None = None,
        wire_logs: dict[str, WireLog] | None = None,
        failures: dict[str, InstrumentError] | None = None,
    ):
        self.config = config
        #: Instruments that could not be opened (name -> the error); only ``keep_going``
        #: opens a station with any (to report them all, and still shut down the rest).
        self.failures = failures or {}
        self.wiring: Wiring = config.wiring
        self.instruments = instruments
        self.simulator = simulator
        self.identities = identities or {}
        self.wire_logs = wire_logs or {}
        w = self.wiring
        self.adc = instruments.get(w.adc)
        self.switch = instruments.get(w.switch)
        self.prober = instruments.get(w.prober) if w.prober else None
        self.oracle = Oracle(simulator.world, w) if simulator is not None else None
        # Until when (time.monotonic()) a sweep may still be running in the SMUs: the
        # shutdown after an interrupt must wait that long for their answers.
        self._busy_until = 0.0
        # The ADC scan list a parallel sweep left armed (None: the board's CHAN input).
        self._adc_scan: tuple[int, ...] | None = None

    def smu(self, channel: Channel):
        """The driver of an SMU channel (a single-channel instrument is its own channel)."""
        inst = self.instruments[channel.instrument]
        return inst.channel(channel.channel) if "channels" in inst.capabilities else inst

    def smus(self) -> list:
        """The drivers of every SMU channel that biases a device."""
        return [self.smu(ch) for ch in self.wiring.smu_channels()]

    def _paired(self, pair: int):
        """The instrument that sweeps both devices of ``pair`` itself (its two channels in
        lockstep, one script or one :INIT), or None."""
        w = self.wiring.pair(pair)
        if w.a.smu.instrument != w.b.smu.instrument or w.a.smu == w.b.smu:
            return None
        inst = self.instruments[w.a.smu.instrument]
        return inst if inst.capabilities.get("paired_list_sweep") else None

    def __enter__(self) -> Station:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- records -----------------------------------------------------------------------
    def attach_wire_logs(self, session_dir: Path) -> None:
        """From now on (and from the first byte, kept until now) log traffic into the session."""
        for name, log in self.wire_logs.items():
            log.attach(wire_log_path(session_dir, name))

    def round_trips(self) -> int:
        """Replies read from every instrument so far (each one a round trip)."""
        return sum(log.counts["r"] + log.counts["rb"] for log in self.wire_logs.values())

    def snapshot(self) -> dict:
        """Identity, resource and present settings of every instrument, for the record."""
        out = {}
        for name, inst in self.instruments.items():
            cfg = self.config.instruments[name]
            out[name] = {
                "driver": cfg.driver,
                "resource": cfg.resource,
                "identity": self.identities.get(name, ""),
                "settings": inst.configuration(),
            }
        return out

    # -- StationInterface --------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        """List sweeps when every pair can run one: on one instrument that sweeps both its
        channels together, or on two joined by a trigger link."""

        def linked(pair: int) -> bool:
            w = self.wiring.pair(pair)
            return all(self.smu(d.smu).capabilities.get("list_sweep")
                       and self.smu(d.smu).capabilities.get("trigger_link") for d in (w.a, w.b))

        list_sweep = (all(self._paired(k) is not None or linked(k) for k in self.wiring.pairs)
                      and self.adc.capabilities.get("triggered_acquisition", False))
        return Capabilities(list_sweep=list_sweep,
                            parallel_pairs=list_sweep and self._lockstep_capable())

    def _paired_master(self):
        """The trigger master's instrument when it sweeps its two channels itself (a 2602B
        or B2902A, one script or one :INIT, its trigger output pacing the rest), or None."""
        inst = self.instruments[self.wiring.trigger_master.instrument]
        return inst if inst.capabilities.get("paired_list_sweep") else None

    def _lockstep_capable(self) -> bool:
        """Several pairs can be swept in one step: more than one pair's worth of SMU
        channels; the trigger master a trigger-link list master (a 2400) or an instrument
        that sweeps its two channels itself; every channel of the other instruments a
        trigger-link slave (2400s) or on an instrument that arms its channels as a slave of
        the master's trigger output (``list_slave``: a B2902A); an ADC that samples several
        inputs per trigger."""
        master = self.wiring.trigger_master
        channels = self.wiring.smu_channels()
        others = [ch for ch in channels if ch.instrument != master.instrument]
        master_ok = (self._paired_master() is not None
                     or hasattr(self.smu(master), "configure_list_master"))

        def slave_ok(ch: Channel) -> bool:
            if self.instruments[ch.instrument].capabilities.get("list_slave"):
                return True
            return (hasattr(self.smu(ch), "configure_list_slave")
                    and bool(self.smu(ch).capabilities.get("trigger_link")))

        return (len(channels) > 2 and bool(others) and master_ok
                and all(slave_ok(ch) for ch in others)
                and len(self.adc.capabilities.get("scan_inputs", ())) > 1)

    def _arm_adc(self, n: int, inputs: tuple[int, ...] | None = None) -> None:
        """Arm the ADC for ``n`` pulses, on the scan list ``inputs`` or (None) the CHAN
        input alone (returning to it after a parallel sweep)."""
        wanted = None if inputs in (None, (0,)) else tuple(inputs)
        if wanted == self._adc_scan:
            self.adc.arm(n)  # the board keeps its scan list from the last arm
        else:
            self.adc.arm(n, (0,) if wanted is None else wanted)
        self._adc_scan = wanted

    def prepare_sources(self, *, compliance_v: float, nplc: float, adc_gain: int) -> None:
        """Every SMU channel a current source at 0 A with the compliance, output on, ramped
        there from whatever level it had; ADC gain."""
        if self.prober is not None and not self.prober.in_contact():
            self.prober.contact()
        step = self.wiring.min_ramp_step_a()
        for smu in self.smus():
            smu.ramp_to(0.0, step)
            smu.prepare_current_source(compliance_v=compliance_v, nplc=nplc)
        self.adc.gain = adc_gain

    def connect_pair(self, pair: int) -> None:
        """Connect pair ``pair`` (break before make); sources must be at 0 A here."""
        w = self.wiring.pair(pair)
        self.switch.exclusive_close(list(w.switch_channels))
        self.adc.channel = w.adc_input

    def list_sweep(self, pair: int, levels_a: np.ndarray, levels_b: np.ndarray, *,
                   nplc: float) -> RawSweep:
        """One list sweep: the trigger master pacing the pair's other SMU channel and the
        ADC, which samples each step."""
        w = self.wiring.pair(pair)
        paired = self._paired(pair)
        master = self.wiring.trigger_master
        # A pair on another two-channel instrument than the master's is paced by the master
        # when the station can (the ADC takes the master's pulses, not that instrument's).
        if paired is not None and (paired is self.instruments[master.instrument]
                                   or not self._lockstep_capable()):
            return self._paired_sweep(paired, pair, levels_a, levels_b, nplc=nplc)
        if master not in (w.a.smu, w.b.smu) and self._lockstep_capable():
            # A pair beside the master's: the master paces it, sweeping 0 A itself.
            return self._lockstep([(pair, levels_a, levels_b)], nplc=nplc)[0]
        if master not in (w.a.smu, w.b.smu):
            raise InstrumentError(
                f"pair {pair}: the trigger master {master} biases neither of its devices "
                f"({w.a.smu}, {w.b.smu}); a list sweep cannot be paced"
            )
        levels = {w.a.smu: levels_a, w.b.smu: levels_b}
        (slave,) = (ch for ch in levels if ch != master)
        n = len(levels_a)
        self.smu(slave).configure_list_slave(levels[slave])
        self._arm_adc(n)
        self.smu(master).configure_list_master(levels[master])
        timeout_s = self.config.instrument_of(master).timeout_s
        wait_s = timeout_s + sweep_duration_bound(n, nplc)
        self._busy_until = time.monotonic() + wait_s
        readings = {master: self.smu(master).run_list_sweep(timeout_s=wait_s)}
        self._busy_until = 0.0
        readings[slave] = self.smu(slave).run_list_sweep()
        samples = self.adc.read_samples()
        # A batch ends with empty error queues, or with the instruments' own error texts.
        for inst in (self.smu(master), self.smu(slave), self.adc):
            inst.check_errors_raise()
        return _raw_sweep(w, readings[w.a.smu], readings[w.b.smu], samples, n,
                          "list sweep")

    def _paired_sweep(self, inst, pair: int, levels_a: np.ndarray, levels_b: np.ndarray, *,
                      nplc: float) -> RawSweep:
        """A list sweep of both devices on the two channels of ``inst`` in lockstep, its
        trigger output pacing the ADC."""
        w = self.wiring.pair(pair)
        n = len(levels_a)
        by_channel = {w.a.smu.channel: levels_a, w.b.smu.channel: levels_b}
        first, second = inst.capabilities["channels"]
        self._arm_adc(n)
        timeout_s = self.config.instrument_of(w.a.smu).timeout_s
        wait_s = timeout_s + sweep_duration_bound(n, nplc)
        self._busy_until = time.monotonic() + wait_s
        readings = dict(zip((first, second), inst.pair_list_sweep(
            by_channel[first], by_channel[second], nplc=nplc, trigger_line=TRIGGER_LINE,
            timeout_s=wait_s), strict=True))
        self._busy_until = 0.0
        samples = self.adc.read_samples()
        self.adc.check_errors_raise()  # (pair_list_sweep ends with the SMU's own check)
        return _raw_sweep(w, readings[w.a.smu.channel], readings[w.b.smu.channel], samples,
                          n, f"paired list sweep on {inst.name}")

    def connect_pairs(self, pairs: list[int]) -> None:
        """Connect every pair of ``pairs`` at once (break before make); sources at 0 A."""
        channels = [ch for k in pairs for ch in self.wiring.pair(k).switch_channels]
        self.switch.exclusive_close(channels)

    def list_sweep_many(self, sweeps: list[tuple[int, np.ndarray, np.ndarray]], *,
                        nplc: float) -> list[RawSweep]:
        """The connected pairs' sweeps in one lockstep list sweep: the trigger master paces
        every SMU channel of them (sweeping 0 A itself if none of the pairs is its own),
        the ADC samples each pair's input per step (a scan list). Shorter lists hold 0 A
        after their end (each ends on its ramp's 0 A); every pair gets its own readings."""
        if len(sweeps) == 1:
            return [self.list_sweep(*sweeps[0], nplc=nplc)]
        if not self.capabilities().parallel_pairs:
            raise InstrumentError("this station cannot sweep pairs in parallel")
        return self._lockstep(sweeps, nplc=nplc)

    def _lockstep(self, sweeps: list[tuple[int, np.ndarray, np.ndarray]], *,
                  nplc: float) -> list[RawSweep]:
        """One list sweep paced by the trigger master for every pair of ``sweeps``: the
        other instruments' channels armed first, as 2400 trigger-link slaves or (a B2902A,
        a 2602B: ``list_slave``) all of one instrument's channels in one go on its trigger
        input, each stepping once per pulse of the master's trigger output."""
        master = self.wiring.trigger_master
        n = max(len(a) for _, a, _ in sweeps)
        levels: dict[Channel, np.ndarray] = {}
        inputs: list[int] = []
        for pair, a, b in sweeps:
            w = self.wiring.pair(pair)
            if len(a) != len(b):
                raise ValueError(f"pair {pair}: {len(a)} levels for A, {len(b)} for B")
            for dev, lv in ((w.a, a), (w.b, b)):
                if dev.smu in levels:
                    raise InstrumentError(f"pair {pair}: SMU channel {dev.smu} is in two "
                                          "pairs of one parallel sweep")
                levels[dev.smu] = np.concatenate([np.asarray(lv, float),
                                                  np.zeros(n - len(lv))])
            if w.adc_input in inputs:
                raise InstrumentError(f"pair {pair}: ADC input {w.adc_input} is in two pairs "
                                      "of one parallel sweep")
            inputs.append(w.adc_input)
        paired = self._paired_master()
        # The master's own channels (both, for an instrument that sweeps its two) sweep
        # 0 A when none of the pairs is theirs: they pace the others all the same.
        own = ([Channel(master.instrument, c) for c in paired.capabilities["channels"]]
               if paired is not None else [master])
        for ch in own:
            levels.setdefault(ch, np.zeros(n))
        slaves = [ch for ch in levels if ch.instrument != master.instrument]
        # Instruments that arm all their channels in one go (a B2902A) and 2400-style
        # per-channel trigger-link slaves.
        armed = {ch.instrument for ch in slaves
                 if self.instruments[ch.instrument].capabilities.get("list_slave")}
        for name in sorted(armed):
            self.instruments[name].arm_list_slave(
                {ch.channel: levels[ch] for ch in slaves if ch.instrument == name},
                nplc=nplc, trigger_line=TRIGGER_LINE)
        for ch in slaves:
            if ch.instrument not in armed:
                self.smu(ch).configure_list_slave(levels[ch])
        self._arm_adc(n, tuple(inputs))
        timeout_s = self.config.instrument_of(master).timeout_s
        wait_s = timeout_s + sweep_duration_bound(n, nplc)
        self._busy_until = time.monotonic() + wait_s
        if paired is not None:
            # (pair_list_sweep ends with the instrument's own error check)
            readings = dict(zip(own, paired.pair_list_sweep(
                levels[own[0]], levels[own[1]], nplc=nplc, trigger_line=TRIGGER_LINE,
                timeout_s=wait_s), strict=True))
        else:
            self.smu(master).configure_list_master(levels[master])
            readings = {master: self.smu(master).run_list_sweep(timeout_s=wait_s)}
            self.smu(master).check_errors_raise()
        self._busy_until = 0.0
        for name in sorted(armed):
            # (fetch_list_slave ends with the instrument's own error check)
            for channel, r in self.instruments[name].fetch_list_slave().items():
                readings[Channel(name, channel)] = r
        for ch in slaves:
            if ch.instrument not in armed:
                readings[ch] = self.smu(ch).run_list_sweep()
        samples = self.adc.read_samples()
        for ch in slaves:
            if ch.instrument not in armed:
                self.smu(ch).check_errors_raise()
        self.adc.check_errors_raise()
        k = len(inputs)
        if len(samples) != n * k or any(len(r) != n for r in readings.values()):
            raise InstrumentError(
                f"parallel list sweep of {n} steps on {k} pairs returned "
                f"{', '.join(f'{len(r)} readings from {ch}' for ch, r in readings.items())} "
                f"and {len(samples)} ADC samples ({n * k} expected)")
        out = []
        for j, (pair, a, _) in enumerate(sweeps):
            w, m = self.wiring.pair(pair), len(a)
            ra, rb = readings[w.a.smu], readings[w.b.smu]
            mine = samples[j::k][:m]  # the scan list's records come pulse by pulse
            out.append(RawSweep(
                v_a=ra.voltage[:m], v_b=rb.voltage[:m], v_diff=w.adc_polarity * mine["v"],
                compliance=(ra.compliance | rb.compliance)[:m],
                overrange=(mine["status"] & 1).astype(bool)))
        return out

    def host_sweep(self, pair: int, levels_a: np.ndarray, levels_b: np.ndarray, *,
                   nplc: float) -> RawSweep:
        """The same readings, point by point from the host (no list support needed)."""
        w = self.wiring.pair(pair)
        smu_a, smu_b = self.smu(w.a.smu), self.smu(w.b.smu)
        out = {k: [] for k in ("v_a", "v_b", "v_diff", "compliance", "overrange")}
        for a, b in zip(levels_a, levels_b, strict=True):
            smu_a.source_current = float(a)
            smu_b.source_current = float(b)
            ra = smu_a.measure_once()
            rb = smu_b.measure_once()
            v, over = self.adc.measure()
            out["v_a"].append(ra.voltage[0])
            out["v_b"].append(rb.voltage[0])
            out["v_diff"].append(w.adc_polarity * v)
            out["compliance"].append(bool(ra.compliance[0] or rb.compliance[0]))
            out["overrange"].append(over)
        return RawSweep(**{k: np.asarray(v) for k, v in out.items()})

    def program_pulse(self, pair: int, device: str, amplitude_v: float,
                      width_s: float) -> None:
        """A pulse from the ADC board's generator on the bus of ``device`` ("A"/"B"): the
        matrix row its switch channel names (``1Ckk``: row C), so that a pair reached on
        another couple of rows than A/B is pulsed on its own rows."""
        w = self.wiring.pair(pair)  # a pair the wiring does not know: refused
        channel = (w.a if device == "A" else w.b).switch_channel
        row = re.fullmatch(r"\d([A-H])\d\d", channel)
        bus = row.group(1) if row else device
        if bus not in self.adc.pulse_buses:
            # The wiring reaches this device on a row beyond A/B: the bench has that row.
            self.adc.pulse_buses = (*self.adc.pulse_buses, bus)
        self.adc.program_pulse(bus, amplitude_v, width_s)

    # -- shutdown --------------------------------------------------------------------
    def safe_shutdown(self) -> ShutdownReport:
        """Ramp every SMU to zero, outputs off, ADC disarmed, switch open; each confirmed.

        Each step is tried even if an earlier one failed: a dead ADC must not keep an
        SMU sourcing. What could not be confirmed is in the report (and logged).
        """
        report = ShutdownReport()
        step = self.wiring.min_ramp_step_a()
        for name in self.wiring.smu_instruments():
            # An interrupted sweep keeps the SMU busy until it ends: wait that long too.
            wait_s = (self.config.instruments[name].timeout_s
                      + max(0.0, self._busy_until - time.monotonic()))

            def off(smu, wait_s=wait_s):
                with smu.adapter.timeout_scope(wait_s):
                    return smu.shutdown(ramp_step_a=step)

            self._confirm(report, name, off)
        for name in (self.wiring.adc, self.wiring.switch):
            self._confirm(report, name, lambda part: part.shutdown())
        for p in report.problems:
            log.error("safe shutdown could not confirm, AN OUTPUT MAY STILL BE ON: %s", p)
        self._busy_until = 0.0
        return report

    def _confirm(self, report: ShutdownReport, name: str, shutdown) -> None:
        """``shutdown(instrument)`` of instrument ``name`` (a driver's SafeStateReport),
        merged into ``report``: what it confirmed is confirmed, whatever went wrong on the
        way; what it did not confirm is a problem."""
        part = self.instruments.get(name)
        if part is None:
            report.add(f"{name}: not open ({self.failures.get(name, 'unknown')})")
            return
        try:
            r = shutdown(part)
        except Exception as exc:  # noqa: BLE001 - shutdown must go on
            report.add(f"{name}: {exc}")
            return
        if r.confirmed:
            report.notes.extend(f"{name}: {n}" for n in (*r.problems, *r.notes))
        else:
            for problem in r.problems or ["state not confirmed"]:
                report.add(f"{name}: {problem}")

    def close(self, *, shutdown: bool = True) -> None:
        """Close every link (and stop the simulator); first a safe shutdown unless
        ``shutdown`` is False (the caller has just done one and it was confirmed)."""
        try:
            if shutdown:
                self.safe_shutdown()
        finally:
            for inst in self.instruments.values():
                try:
                    inst.adapter.close()
                except Exception:  # noqa: BLE001 - closing what may be gone already
                    pass
            for log_ in self.wire_logs.values():
                log_.close()
            if self.simulator is not None:
                self.simulator.stop()


def _raw_sweep(w, ra, rb, samples, n: int, what: str) -> RawSweep:
    """A pair's readings (devices A and B, the ADC's samples) as the engine takes them;
    InstrumentError unless every part returned ``n``."""
    if len(ra) != n or len(rb) != n or len(samples) != n:
        raise InstrumentError(
            f"{what} of {n} points returned {len(ra)} readings from {w.a.smu}, "
            f"{len(rb)} from {w.b.smu} and {len(samples)} ADC samples")
    return RawSweep(
        v_a=ra.voltage,
        v_b=rb.voltage,
        v_diff=w.adc_polarity * samples["v"],
        compliance=ra.compliance | rb.compliance,
        overrange=(samples["status"] & 1).astype(bool),
    )


def _open_one(cfg: InstrumentConfig, wire_log: WireLog, factory: AdapterFactory | None):
    """Open one instrument (its link as the station file sets it up: VISA library, serial
    line, terminations) and check its identity; (driver, ``*IDN?`` reply)."""
    if factory is not None:
        adapter = factory(cfg, wire_log)
    else:
        try:
            adapter = open_adapter(cfg.resource, timeout_s=cfg.timeout_s, wire_log=wire_log,
                                   name=cfg.name, **cfg.link_settings())
        except VisaLibraryError as exc:
            # Name the station file's key: the library, not the instrument, is what failed.
            raise VisaLibraryError(f"{cfg.name} ([instruments.{cfg.name}] visa_library)",
                                   exc.library, exc.why) from exc
    inst = DRIVER_CLASSES[cfg.driver](adapter, name=cfg.name)
    try:
        identity = verify_identity(inst, cfg.identity)
    except BaseException:
        with contextlib.suppress(Exception):
            adapter.close()
        raise
    return inst, identity


def _start_simulator(config: StationConfig):
    """Serve the simulated instruments of ``config``; returns (simulator, config with their
    resources filled in)."""
    from labctl.station.simulated import cabling_for, smu_models_for
    from simulators.station import SimulatedStation

    simulator = SimulatedStation(
        config.simulation, cabling=cabling_for(config), faults=config.faults,
        smu_models=smu_models_for(config),
    ).start()
    served = simulator.resources()
    instruments = {}
    for name, cfg in config.instruments.items():
        if cfg.resource is None:
            if name not in served:
                simulator.stop()
                raise InstrumentError(
                    f"{config.source}: [instruments.{name}] has no resource and the "
                    "wiring gives it no simulated counterpart"
                )
            cfg = replace(cfg, resource=served[name])
        instruments[name] = cfg
    return simulator, replace(config, instruments=instruments)


def open_station(config: StationConfig, adapter_factory: AdapterFactory | None = None, *,
                 keep_going: bool = False) -> Station:
    """Open every instrument of ``config`` (starting the simulator if it is simulated).

    An instrument that cannot be opened (unreachable, wrong identity) raises, unless
    ``keep_going``: then it is left out and named with the reason in ``Station.failures``.

    Each instrument's traffic is logged from its first byte; the logs stay in memory until
    :meth:`Station.attach_wire_logs` gives them a session. ``adapter_factory`` (default: the
    one :func:`adapters_from` set, if any) makes each adapter as
    ``adapter_factory(instrument_config, wire_log)``; then no simulator is started.
    """
    factory = adapter_factory or _ADAPTER_FACTORY.get()
    simulator = None
    if config.simulation is not None and factory is None:
        simulator, config = _start_simulator(config)
    opened, identities, failures = {}, {}, {}
    logs = {name: WireLog(durable=True) for name in config.instruments}
    try:
        for name, cfg in config.instruments.items():
            try:
                opened[name], identities[name] = _open_one(cfg, logs[name], factory)
            except InstrumentError as exc:
                if not keep_going:
                    raise
                failures[name] = exc
    except BaseException:
        for inst in opened.values():
            try:
                inst.adapter.close()
            except Exception:  # noqa: BLE001
                pass
        if simulator is not None:
            simulator.stop()
        raise
    _cap_voltage_sources(config, opened)
    return Station(config, opened, simulator, identities, logs, failures)


def _cap_voltage_sources(config: StationConfig, opened: dict) -> None:
    """Cap every SMU channel that can source voltage (the 2400, each channel of a 2602B or
    B2902A) at its pair limits (the smallest of the pairs it biases): |V| <= compliance_v,
    current compliance <= max_current_a (no I/O: the drivers' validators refuse beyond
    them); and its voltage ramp step at ramp_step_a x min_resistance_ohm, so that no
    voltage step can move a healthy device's current by more than a current ramp step."""
    ratings = config.wiring.ratings
    for channel in config.wiring.smu_channels():
        inst = opened.get(channel.instrument)
        if inst is None:
            continue
        # A two-channel instrument is capped channel by channel (as Station.smu picks them).
        smu = inst.channel(channel.channel) if "channels" in inst.capabilities else inst
        if not hasattr(smu, "limit_voltage_source"):
            continue
        limits = [p.limits for p in config.wiring.pairs.values()
                  if channel in (p.a.smu, p.b.smu)]
        # Never above the instrument's own ranges (the class caps are those).
        cls = type(smu)
        smu.limit_voltage_source(
            max_abs_v=min(cls.voltage_cap_v, *(lim.compliance_v for lim in limits)),
            max_compliance_a=min(cls.compliance_cap_a, *(lim.max_current_a for lim in limits)))
        smu.ramp_step_v = min(cls.ramp_step_v, *(lim.ramp_step_a * ratings.min_resistance_ohm
                                                 for lim in limits))


def sweep_duration_bound(points: int, nplc: float) -> float:
    """Upper bound (s) of a list sweep's duration on a 2400 at 50 Hz mains, margin included."""
    return 2.0 * points * (nplc / 50.0 + 2e-3)
