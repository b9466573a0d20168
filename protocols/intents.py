"""Intents: what a plan asks of the station, and what the engine answers.

A plan is a generator that yields intents and receives each one's result::

    def plan():
        result = yield Sweep(pair=3, currents_a=i, currents_b=i + di)
        ...
        return something

Plans know nothing of buses or drivers, so they can be unit-tested by sending them
hand-made results. Units: A, V, s.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocols.wiring import PairWiring


@dataclass(frozen=True)
class Sweep:
    """Bias pair ``pair``: device A at ``currents_a[j]`` and device B at ``currents_b[j]``.

    For every point j the engine reads V_A, V_B (the SMUs) and V_B - V_A (the
    differential amplifier and ADC). The engine may reorder and pad the points (ramps);
    the result is always in the order given here.
    """

    pair: int
    currents_a: np.ndarray
    currents_b: np.ndarray
    label: str = ""

    def __post_init__(self):
        a = np.atleast_1d(np.asarray(self.currents_a, dtype=float))
        b = np.atleast_1d(np.asarray(self.currents_b, dtype=float))
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(
                f"sweep of pair {self.pair}: currents_a {a.shape} and "
                f"currents_b {b.shape} must be 1-d of equal length"
            )
        object.__setattr__(self, "currents_a", a)
        object.__setattr__(self, "currents_b", b)

    def __len__(self) -> int:
        return len(self.currents_a)


@dataclass(frozen=True)
class SweepResult:
    """The readings of one :class:`Sweep`, in its order.

    v_a, v_b: device voltages read by the SMUs (V); v_diff: V_B - V_A read by the
    differential amplifier (V); compliance: either SMU was in compliance at that point;
    overrange: the ADC was overranged at that point.
    """

    sweep: Sweep
    v_a: np.ndarray
    v_b: np.ndarray
    v_diff: np.ndarray
    compliance: np.ndarray
    overrange: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """Points that may be used as data (no compliance hit, no overrange)."""
        return ~(self.compliance | self.overrange)


class ComplianceInData(RuntimeError):
    """Readings taken in compliance or overrange were about to be used as data."""


def require_valid(valid: np.ndarray, wiring: PairWiring, what: str) -> None:
    """Raise :class:`ComplianceInData` naming the pair, where its readings come from and
    ``what`` they were for, if any of ``valid`` (per reading) is False."""
    bad = int(np.size(valid) - np.count_nonzero(valid))
    if bad:
        raise ComplianceInData(
            f"pair {wiring.pair}: {bad} readings in compliance or overrange ({what}; "
            f"{wiring.describe()}); check the station limits and the current scale"
        )


DEVICES = ("A", "B")


@dataclass(frozen=True)
class Pulse:
    """A programming pulse of ``amplitude_v`` (V) for ``width_s`` (s) on one device of a pair.

    ``device`` is "A" or "B". The pulse moves the device's non-volatile tuning state when
    its |amplitude| exceeds the device's programming threshold; the safety envelope refuses
    amplitudes beyond the pair's voltage limit. The engine answers None once it is applied.
    """

    pair: int
    device: str
    amplitude_v: float
    width_s: float
    label: str = ""

    def __post_init__(self):
        device = str(self.device).upper()
        if device not in DEVICES:
            raise ValueError(f"pulse on pair {self.pair}: device must be A or B, got "
                             f"{self.device!r}")
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "amplitude_v", float(self.amplitude_v))
        object.__setattr__(self, "width_s", float(self.width_s))


@dataclass(frozen=True)
class Checkpoint:
    """A point where the plan's state is worth recording (e.g. the end of an epoch)."""

    label: str
    data: dict[str, Any] = field(default_factory=dict)


Intent = Sweep | Pulse | Checkpoint
Plan = Generator[Intent, Any, Any]


def run_offline(plan: Plan, answer) -> Any:
    """Run a plan with ``answer(intent) -> result`` instead of an engine (for tests)."""
    try:
        intent = next(plan)
        while True:
            intent = plan.send(answer(intent))
    except StopIteration as stop:
        return stop.value
