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

A plan may yield several sweeps at once, as a tuple (``fd_batch(..., together=True)``);
the engine sends back a tuple of their results, in the same order. On a station whose
capabilities declare ``parallel_pairs`` (in list mode) it groups them into parallel steps:
sweeps of pairs that share no SMU instrument, read different ADC inputs and have the same
compliance are connected together and swept in one lockstep list sweep
(``StationInterface.list_sweep_many``), so that their instrument time overlaps; each
sweep is still checked, sorted and ramped on its own. Elsewhere they run one by one.

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
    parallel_steps: int = 0  # list sweeps that measured more than one pair at once


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
        #: Sweeps yielded together run in parallel steps (see the module docstring).
        self.parallel = self.mode == "list" and getattr(
            station.capabilities(), "parallel_pairs", False)
        self.stats = EngineStats()
        self._connected: tuple[int, ...] | None = None
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
        if isinstance(intent, tuple) and intent and all(isinstance(s, Sweep) for s in intent):
            for sweep in intent:
                self.envelope.check(sweep)
            return self._sweeps(intent)
        if isinstance(intent, Pulse):
            self.envelope.check(intent)
            return self._pulse(intent)
        raise TypeError(f"the engine cannot run {intent!r}")

    # -- sweeps ----------------------------------------------------------------------
    def _sweep(self, sweep: Sweep) -> SweepResult:
        if len(sweep) == 0:
            return _empty_result(sweep)
        order, a, b, real = self._padded(sweep)
        self._prepare(sweep.pair)
        sweep_on = self.station.list_sweep if self.mode == "list" else self.station.host_sweep
        raw = sweep_on(sweep.pair, a, b, nplc=self.nplc)
        return self._result(sweep, raw, order, a, real)

    def _padded(self, sweep: Sweep):
        """(sort order, levels of A and B with their ramps, mask of the real points)."""
        order = np.argsort(sweep.currents_a, kind="stable")
        a, b, real = self.envelope.ramped(
            sweep.pair, sweep.currents_a[order], sweep.currents_b[order]
        )
        if self.mode == "list" and len(a) > MAX_LIST_POINTS:
            raise SafetyViolation(
                f"sweep of pair {sweep.pair} needs {len(a)} points with its "
                f"ramps; a list holds at most {MAX_LIST_POINTS}"
            )
        return order, a, b, real

    def independent(self, p: int, q: int) -> bool:
        """Pairs ``p`` and ``q`` can be swept in one parallel step: different pairs on
        different SMU instruments and different ADC inputs, with the same compliance."""
        wp, wq = self.station.wiring.pair(p), self.station.wiring.pair(q)
        inst_p = {wp.a.smu.instrument, wp.b.smu.instrument}
        inst_q = {wq.a.smu.instrument, wq.b.smu.instrument}
        return (p != q and not inst_p & inst_q and wp.adc_input != wq.adc_input
                and self.envelope.limits(p).compliance_v == self.envelope.limits(q).compliance_v)

    def groups(self, pairs: list[int]) -> list[list[int]]:
        """Indices into ``pairs`` grouped into parallel steps (first fit, in order; one
        index per group when the engine does not run pairs in parallel)."""
        out: list[list[int]] = []
        for i, pair in enumerate(pairs):
            for group in out if self.parallel else ():
                if all(self.independent(pair, pairs[j]) for j in group):
                    group.append(i)
                    break
            else:
                out.append([i])
        return out

    def _sweeps(self, sweeps: tuple[Sweep, ...]) -> tuple[SweepResult, ...]:
        results: list[SweepResult | None] = [None] * len(sweeps)
        live = [i for i, s in enumerate(sweeps) if len(s)]
        for i, s in enumerate(sweeps):
            if not len(s):
                results[i] = _empty_result(s)
        for group in self.groups([sweeps[i].pair for i in live]):
            members = [live[j] for j in group]
            if len(members) == 1:
                results[members[0]] = self._sweep(sweeps[members[0]])
                continue
            padded = [self._padded(sweeps[i]) for i in members]
            pairs = [sweeps[i].pair for i in members]
            self._prepare_group(pairs)
            raws = self.station.list_sweep_many(
                [(pair, a, b) for pair, (_, a, b, _) in zip(pairs, padded, strict=True)],
                nplc=self.nplc)
            self.stats.parallel_steps += 1
            for i, (order, a, _, real), raw in zip(members, padded, raws, strict=True):
                results[i] = self._result(sweeps[i], raw, order, a, real)
        return tuple(results)

    def _result(self, sweep: Sweep, raw, order, a, real) -> SweepResult:
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
        self._prepare_group([pair])

    def _prepare_group(self, pairs: list[int]) -> None:
        compliance_v = self.envelope.limits(pairs[0]).compliance_v
        if self._compliance_v != compliance_v:
            # Sources sit at 0 A between sweeps, so changing the compliance is safe here.
            self.station.prepare_sources(
                compliance_v=compliance_v, nplc=self.nplc, adc_gain=self.adc_gain
            )
            self._compliance_v = compliance_v
        if self._connected != tuple(pairs):
            if len(pairs) == 1:
                self.station.connect_pair(pairs[0])
            else:
                self.station.connect_pairs(list(pairs))
            self._connected = tuple(pairs)
            self.stats.switches += 1


def _empty_result(sweep: Sweep) -> SweepResult:
    empty = np.zeros(0)
    return SweepResult(sweep, empty, empty, empty, empty.astype(bool), empty.astype(bool))
