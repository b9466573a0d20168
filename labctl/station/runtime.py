"""An open probe station: the instruments of a station file, behind a few operations.

:func:`open_station` starts the in-process simulator for a simulated station, opens every
instrument's transport (with a wire log when a session directory is given), checks each
`*IDN?` against the configured identity, and returns a :class:`Station`. Leaving its
``with`` block, normally or by an exception, Ctrl-C or SIGTERM, ramps every SMU to zero,
turns every output off and opens the switch matrix (:meth:`Station.safe_shutdown`).
With an adapter factory (an argument, or :func:`adapters_from` around the caller, which is
how ``labctl replay --wire`` reaches the stations a command opens) no simulator is started
and each instrument's adapter comes from the factory instead of its resource.
Units: A, V, s.
"""

from __future__ import annotations

import contextlib
import logging
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
from instruments.prober import Prober
from instruments.switch_matrix import SwitchMatrix
from instruments.transport import InstrumentError, WireLog, verify_identity
from labctl.records.session import wire_log_path
from labctl.station.file import InstrumentConfig, StationConfig

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
    "adc_board": AdcBoard,
    "switch_matrix": SwitchMatrix,
    "prober": Prober,
}


class Station:
    """The opened instruments of one station, by role (smu_a, smu_b, adc, switch, prober)."""

    def __init__(
        self,
        config: StationConfig,
        instruments: dict,
        simulator=None,
        identities: dict[str, str] | None = None,
        wire_logs: dict[str, WireLog] | None = None,
    ):
        self.config = config
        self.instruments = instruments
        self.simulator = simulator
        self.identities = identities or {}
        self.wire_logs = wire_logs or {}
        r = config.roles
        self.smu_a = instruments[r["smu_a"]]
        self.smu_b = instruments[r["smu_b"]]
        self.adc = instruments[r["adc"]]
        self.switch = instruments[r["switch"]]
        self.prober = instruments[r["prober"]] if "prober" in r else None
        # Until when (time.monotonic()) a sweep may still be running in the SMUs: the
        # shutdown after an interrupt must wait that long for their answers.
        self._busy_until = 0.0

    @property
    def world(self):
        """The simulated world (None on hardware)."""
        return self.simulator.world if self.simulator is not None else None

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
                "settings": _settings(cfg.driver, inst),
            }
        return out

    # -- capabilities ----------------------------------------------------------------
    def supports_list_sweeps(self) -> bool:
        smus = (self.smu_a, self.smu_b)
        return all(
            s.capabilities.get("list_sweep") and s.capabilities.get("trigger_link") for s in smus
        ) and self.adc.capabilities.get("triggered_acquisition", False)

    # -- operations used by the engine ----------------------------------------------
    def prepare_sources(self, *, compliance_v: float, nplc: float, adc_gain: int) -> None:
        """Both SMUs as current sources at 0 A with the compliance; outputs on; ADC gain."""
        if self.prober is not None and not self.prober.in_contact():
            self.prober.contact()
        for smu in (self.smu_a, self.smu_b):
            smu.prepare_current_source(compliance_v=compliance_v, nplc=nplc)
        self.adc.gain = adc_gain

    def connect_pair(self, pair: int) -> None:
        """Connect pair ``pair`` (break before make); sources must be at 0 A here."""
        w = self.config.pair(pair)
        self.switch.exclusive_close([w.channel_a, w.channel_b])
        self.adc.channel = w.adc_input

    def list_sweep(self, levels_a: np.ndarray, levels_b: np.ndarray, *, nplc: float) -> dict:
        """One list sweep: SMU A master, SMU B on the trigger link, ADC sampling each pulse."""
        n = len(levels_a)
        self.smu_b.configure_list_slave(levels_b)
        self.adc.arm(n)
        self.smu_a.configure_list_master(levels_a)
        wait_s = self._timeout_s("smu_a") + sweep_duration_bound(n, nplc)
        self._busy_until = time.monotonic() + wait_s
        ra = self.smu_a.run_list_sweep(timeout_s=wait_s)
        self._busy_until = 0.0
        rb = self.smu_b.run_list_sweep()
        samples = self.adc.read_samples()
        # A batch ends with empty error queues, or with the instruments' own error texts.
        for inst in (self.smu_a, self.smu_b, self.adc):
            inst.check_errors_raise()
        if len(ra) != n or len(rb) != n or len(samples) != n:
            raise InstrumentError(
                f"list sweep of {n} points returned {len(ra)} readings from SMU A, "
                f"{len(rb)} from SMU B and {len(samples)} ADC samples"
            )
        return {
            "v_a": ra.voltage,
            "v_b": rb.voltage,
            "v_diff": samples["v"],
            "compliance": ra.compliance | rb.compliance,
            "overrange": (samples["status"] & 1).astype(bool),
        }

    def host_sweep(self, levels_a: np.ndarray, levels_b: np.ndarray, *, nplc: float) -> dict:
        """The same readings, point by point from the host (no list support needed)."""
        out = {k: [] for k in ("v_a", "v_b", "v_diff", "compliance", "overrange")}
        for a, b in zip(levels_a, levels_b, strict=True):
            self.smu_a.source_current = float(a)
            self.smu_b.source_current = float(b)
            ra = self.smu_a.measure_once()
            rb = self.smu_b.measure_once()
            v, over = self.adc.measure()
            out["v_a"].append(ra.voltage[0])
            out["v_b"].append(rb.voltage[0])
            out["v_diff"].append(v)
            out["compliance"].append(bool(ra.compliance[0] or rb.compliance[0]))
            out["overrange"].append(over)
        return {k: np.asarray(v) for k, v in out.items()}

    def check_errors(self) -> None:
        """Raise with the instrument's own text if any error queue is not empty."""
        for inst in self.instruments.values():
            inst.check_errors_raise()

    # -- shutdown --------------------------------------------------------------------
    def safe_shutdown(self) -> list[str]:
        """Ramp every SMU to zero, outputs off, switch open. Returns problems met (logged).

        Each step is tried even if an earlier one failed: a dead ADC must not keep an
        SMU sourcing.
        """
        problems = []
        step = min(p.limits.ramp_step_a for p in self.config.pairs.values())
        for role in ("smu_a", "smu_b"):
            smu = getattr(self, role)
            # An interrupted sweep keeps the SMU busy until it ends: wait that long too.
            wait_s = self._timeout_s(role) + max(0.0, self._busy_until - time.monotonic())
            try:
                with smu.adapter.timeout_scope(wait_s):
                    smu.shutdown(ramp_step_a=step)
            except Exception as exc:  # noqa: BLE001 - shutdown must go on
                problems.append(f"{role}: {exc}")
        try:
            self.switch.open("allslots")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"switch: {exc}")
        for p in problems:
            log.error("safe shutdown failed, AN OUTPUT MAY STILL BE ON: %s", p)
        self._busy_until = 0.0
        return problems

    def _timeout_s(self, role: str) -> float:
        return self.config.instruments[self.config.roles[role]].timeout_s

    def close(self) -> None:
        try:
            self.safe_shutdown()
        finally:
            for inst in self.instruments.values():
                try:
                    inst.adapter.close()
                except Exception:  # noqa: BLE001 - closing what may be gone already
                    pass
            for log in self.wire_logs.values():
                log.close()
            if self.simulator is not None:
                self.simulator.stop()


def _settings(driver: str, inst) -> dict:
    """A few settings worth keeping with a session; what cannot be read is left out."""
    queries = {
        "keithley2400": {
            "source_function": ":SOUR:FUNC?",
            "voltage_compliance_v": ":SENS:VOLT:PROT?",
            "nplc": ":SENS:VOLT:NPLC?",
            "output": ":OUTP?",
        },
        "adc_board": {"gain": "GAIN?", "rate_sps": "RATE?", "averaging": "AVER?"},
        "switch_matrix": {"closed": 'print(channel.getclose("allslots"))'},
        "prober": {"chuck": "get_chuck_z_state", "die": "map:die:get_current_index"},
    }[driver]
    out = {}
    for key, query in queries.items():
        try:
            out[key] = inst.ask(query).strip()
        except InstrumentError as exc:
            out[key] = f"unreadable: {exc}"
    return out


def _open_one(cfg: InstrumentConfig, wire_log: WireLog, factory: AdapterFactory | None):
    if factory is not None:
        adapter = factory(cfg, wire_log)
    else:
        adapter = open_adapter(
            cfg.resource,
            timeout_s=cfg.timeout_s,
            wire_log=wire_log,
            baud_rate=cfg.baud_rate,
            name=cfg.name,
        )
    inst = DRIVER_CLASSES[cfg.driver](adapter, name=cfg.name)
    identity = verify_identity(inst, cfg.identity)
    return inst, identity


def open_station(config: StationConfig, adapter_factory: AdapterFactory | None = None) -> Station:
    """Open every instrument of ``config`` (starting the simulator if it is simulated).

    Each instrument's traffic is logged from its first byte; the logs stay in memory until
    :meth:`Station.attach_wire_logs` gives them a session. ``adapter_factory`` (default: the
    one :func:`adapters_from` set, if any) makes each adapter as
    ``adapter_factory(instrument_config, wire_log)``; then no simulator is started.
    """
    factory = adapter_factory or _ADAPTER_FACTORY.get()
    simulator = None
    if config.simulation is not None and factory is None:
        from simulators.station import SimulatedStation

        simulator = SimulatedStation(config.simulation).start()
        served = simulator.resources()
        instruments = {}
        for name, cfg in config.instruments.items():
            if cfg.resource is None:
                role = next((r for r, n in config.roles.items() if n == name), None)
                if role is None:
                    raise InstrumentError(
                        f"{config.source}: [instruments.{name}] has no "
                        "resource and no simulated counterpart"
                    )
                cfg = replace(cfg, resource=served[role])
            instruments[name] = cfg
        config = replace(config, instruments=instruments)
    opened, identities = {}, {}
    logs = {name: WireLog(durable=True) for name in config.instruments}
    try:
        for name, cfg in config.instruments.items():
            opened[name], identities[name] = _open_one(cfg, logs[name], factory)
    except BaseException:
        for inst in opened.values():
            try:
                inst.adapter.close()
            except Exception:  # noqa: BLE001
                pass
        if simulator is not None:
            simulator.stop()
        raise
    return Station(config, opened, simulator, identities, logs)


def sweep_duration_bound(points: int, nplc: float) -> float:
    """Upper bound (s) of a list sweep's duration on a 2400 at 50 Hz mains, margin included."""
    return 2.0 * points * (nplc / 50.0 + 2e-3)
