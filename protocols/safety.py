"""The safety envelope: every intent is checked before any instrument sees it.

Limits come from the bench's wiring (:mod:`protocols.wiring`, per pair): no source level
beyond ``max_current_a``, the SMUs' voltage compliance at ``compliance_v``, and no step of
the source level larger than ``ramp_step_a``: every list is padded with ramp points to and
from zero, and between any two levels further apart than a step. A programming pulse's
|amplitude| stays within ``pulse_max_v`` and the current it can drive through the lowest
rated device resistance within ``pulse_max_current_a``. Units: A, V, s.
"""

from __future__ import annotations

import numpy as np

from protocols.intents import Pulse, Sweep
from protocols.wiring import Limits, Wiring

MAX_LIST_POINTS = 2500  # the 2400's source list memory


class SafetyViolation(ValueError):
    """An intent that would leave the safety envelope; nothing was sent to any instrument."""


class SafetyEnvelope:
    """The station's limits, applied to intents."""

    def __init__(self, wiring: Wiring):
        self.wiring = wiring

    def limits(self, pair: int) -> Limits:
        return self.wiring.pair(pair).limits

    def check(self, intent) -> None:
        """Raise :class:`SafetyViolation` if ``intent`` leaves the envelope."""
        if isinstance(intent, Pulse):
            self._check_pulse(intent)
            return
        if not isinstance(intent, Sweep):
            return
        if intent.pair not in self.wiring.pairs:
            raise SafetyViolation(
                f"sweep asks for pair {intent.pair}, which the station "
                f"({self.wiring.source}) does not wire"
            )
        lim = self.limits(intent.pair)
        for device, currents in (("A", intent.currents_a), ("B", intent.currents_b)):
            if not np.all(np.isfinite(currents)):
                raise SafetyViolation(f"pair {intent.pair} device {device}: non-finite current")
            worst = float(np.max(np.abs(currents))) if len(currents) else 0.0
            if worst > lim.max_current_a * (1 + 1e-12):
                raise SafetyViolation(
                    f"pair {intent.pair} device {device}: |I| = {worst:.6g} A exceeds the "
                    f"limit max_current_a = {lim.max_current_a:.6g} A"
                )

    def _check_pulse(self, pulse: Pulse) -> None:
        where = f"pulse on pair {pulse.pair} device {pulse.device}"
        if pulse.pair not in self.wiring.pairs:
            raise SafetyViolation(
                f"{where}: the station ({self.wiring.source}) does not wire pair {pulse.pair}"
            )
        if not (np.isfinite(pulse.amplitude_v) and np.isfinite(pulse.width_s)):
            raise SafetyViolation(f"{where}: non-finite amplitude or width")
        if pulse.width_s <= 0:
            raise SafetyViolation(f"{where}: width {pulse.width_s:.6g} s is not positive")
        lim, ratings = self.limits(pulse.pair), self.wiring.ratings
        amplitude = abs(pulse.amplitude_v)
        if amplitude > lim.pulse_max_v * (1 + 1e-12):
            raise SafetyViolation(
                f"{where}: |amplitude| = {amplitude:.6g} V exceeds the limit "
                f"pulse_max_v = {lim.pulse_max_v:.6g} V"
            )
        drive = amplitude / ratings.min_resistance_ohm
        if drive > lim.pulse_max_current_a * (1 + 1e-12):
            raise SafetyViolation(
                f"{where}: |amplitude| = {amplitude:.6g} V can drive {drive:.6g} A through a "
                f"{ratings.min_resistance_ohm:.6g} Ohm device (min_resistance_ohm), beyond "
                f"pulse_max_current_a = {lim.pulse_max_current_a:.6g} A"
            )

    def pulse_amplitude_limit_v(self, pair: int) -> float:
        """The largest |pulse amplitude| (V) this envelope lets through on ``pair``."""
        return self.limits(pair).pulse_amplitude_limit_v(self.wiring.ratings)

    def ramped(self, pair: int, levels_a: np.ndarray, levels_b: np.ndarray):
        """Pad two lists of levels with ramp points; returns (a, b, mask of real points).

        The padded lists start and end at 0 A and no step of either exceeds ramp_step_a.
        """
        step = self.limits(pair).ramp_step_a
        a_out, b_out, real = [], [], []
        prev_a = prev_b = 0.0
        for a, b in zip([*levels_a, 0.0], [*levels_b, 0.0], strict=True):
            n = int(np.ceil(max(abs(a - prev_a), abs(b - prev_b)) / step - 1e-9))
            for k in range(1, n):
                a_out.append(prev_a + (a - prev_a) * k / n)
                b_out.append(prev_b + (b - prev_b) * k / n)
                real.append(False)
            a_out.append(a)
            b_out.append(b)
            real.append(True)
            prev_a, prev_b = a, b
        real[-1] = False  # the final zero
        return np.array(a_out), np.array(b_out), np.array(real)
