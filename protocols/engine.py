"""The engine: runs plans' intents against a station, inside the safety envelope.

The engine is written against :class:`protocols.station.StationInterface`. Work is
grouped by device configuration: a :class:`Sweep` of pair k connects that pair once, then
runs all its points as one list sweep (the wiring's trigger master pacing the other SMU
channel and the ADC, which takes one sample per step), so that N points cost ceil(N/100)
list commands and a handful of round trips. Stations whose instruments cannot (as they
declare in :meth:`capabilities`) are driven point by point from the host instead.

Every Sweep is checked by the :class:`SafetyEnvelope` before any instrument sees it;
points are sorted by current and padded with ramp points to and from zero. Compliance
hits and ADC overranges are flagged in the result, never silently used as data.

A :class:`Pulse` is checked by the envelope too, then connects its pair the same way as a
sweep (the SMUs stay on at 0 A) and fires the ADC board's pulse generator on the device's
bus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.intents import Checkpoint, Plan, Pulse, Sweep, SweepResult
from protocols.safety import MAX_LIST_POINTS, SafetyEnvelope, SafetyViolation
from protocols.station import StationInterface


@dataclass
class EngineStats:
    """What the engine did: sweeps, points (incl. ramp padding), pair switches, pulses."""

    sweeps: int = 0
    points: int = 0
    padded_points: int = 0
    switches: int = 0
    pulses: int = 0


class Engine:
    """Runs plans on a station.

    mode: "list", "host" or "auto" (list when the station's capabilities declare list
    sweeps); nplc: SMU integration in power-line
    cycles; adc_gain: the differential amplifier's gain; on_checkpoint: called with each
    :class:`Checkpoint` a plan yields.
    """

    def __init__(
        self,
        station: StationInterface,
        *,
        mode: str = "auto",
        nplc: float = 1.0,
        adc_gain: int = 100,
        on_checkpoint: Callable[[Checkpoint], None] | None = None,
    ):
        if mode not in ("auto", "list", "host"):
            raise ValueError(f"engine mode must be auto, list or host, got {mode!r}")
        self.station = station
        self.envelope = SafetyEnvelope(station.wiring)
        self.nplc = nplc
        self.adc_gain = adc_gain
        self.on_checkpoint = on_checkpoint
        list_capable = station.capabilities().list_sweep
        if mode == "list" and not list_capable:
            raise ValueError(
                "list mode asked for, but the station's instruments do not declare "
                "list sweeps on the trigger cabling"
            )
        self.mode = ("list" if list_capable else "host") if mode == "auto" else mode
        self.stats = EngineStats()
        self._connected: int | None = None
        self._compliance_v: float | None = None

    def run(self, plan: Plan) -> Any:
        """Run ``plan`` to completion and return its value."""
        try:
            intent = next(plan)
            while True:
                intent = plan.send(self.execute(intent))
        except StopIteration as stop:
            return stop.value

    def execute(self, intent):
        if isinstance(intent, Checkpoint):
            if self.on_checkpoint is not None:
                self.on_checkpoint(intent)
            return None
        if isinstance(intent, Sweep):
            self.envelope.check(intent)
            return self._sweep(intent)
        if isinstance(intent, Pulse):
            self.envelope.check(intent)
            return self._pulse(intent)
        raise TypeError(f"the engine cannot run {intent!r}")

    # -- sweeps ----------------------------------------------------------------------
    def _sweep(self, sweep: Sweep) -> SweepResult:
        if len(sweep) == 0:
            empty = np.zeros(0)
            return SweepResult(sweep, empty, empty, empty, empty.astype(bool), empty.astype(bool))
        order = np.argsort(sweep.currents_a, kind="stable")
        a, b, real = self.envelope.ramped(
            sweep.pair, sweep.currents_a[order], sweep.currents_b[order]
        )
        if self.mode == "list" and len(a) > MAX_LIST_POINTS:
            raise SafetyViolation(
                f"sweep of pair {sweep.pair} needs {len(a)} points with its "
                f"ramps; a list holds at most {MAX_LIST_POINTS}"
            )
        self._prepare(sweep.pair)
        sweep_on = self.station.list_sweep if self.mode == "list" else self.station.host_sweep
        raw = sweep_on(sweep.pair, a, b, nplc=self.nplc)
        self.stats.sweeps += 1
        self.stats.points += len(sweep)
        self.stats.padded_points += len(a)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))

        if len(raw.v_a) != len(a):
            raise RuntimeError(
                f"sweep of pair {sweep.pair}: {len(a)} steps asked, {len(raw.v_a)} read back"
            )

        def pick(values):
            return np.asarray(values)[real][inverse]

        return SweepResult(
            sweep,
            v_a=pick(raw.v_a),
            v_b=pick(raw.v_b),
            v_diff=pick(raw.v_diff),
            compliance=pick(raw.compliance).astype(bool),
            overrange=pick(raw.overrange).astype(bool),
        )

    # -- pulses ----------------------------------------------------------------------
    def _pulse(self, pulse: Pulse) -> None:
        # Every sweep's list ends on its ramp's 0 A and _prepare leaves fresh sources at
        # 0 A, so the SMUs on the buses carry nothing while the pulse is applied.
        self._prepare(pulse.pair)
        self.station.program_pulse(pulse.pair, pulse.device, pulse.amplitude_v, pulse.width_s)
        self.stats.pulses += 1
        return None

    def _prepare(self, pair: int) -> None:
        compliance_v = self.envelope.limits(pair).compliance_v
        if self._compliance_v != compliance_v:
            # Sources sit at 0 A between sweeps, so changing the compliance is safe here.
            self.station.prepare_sources(
                compliance_v=compliance_v, nplc=self.nplc, adc_gain=self.adc_gain
            )
            self._compliance_v = compliance_v
        if self._connected != pair:
            self.station.connect_pair(pair)
            self._connected = pair
            self.stats.switches += 1
