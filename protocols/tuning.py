"""Tuning plans: estimate each device's I_off from an I-V sweep, and pulse it to a target.

Estimating I_off
----------------
The free layer follows m(I) = tanh((I - I_off) / I_w), so the junction's chord conductance
G(I) = I / V(I) rises from G_AP to G_P fastest at I = I_off. :func:`conductance_peak`
takes dG/dI by a local quadratic fit over a few neighbours, finds its largest value
inside the sweep, and refines that point by a quadratic fit of dG/dI over +-``refine_a``
around it (the vertex). Only positive currents are swept, from 5 % of ``i_max`` up:
the transition lies at positive currents, and G = I / V is ill-conditioned near 0 A.

The current where dV/dI is smallest would be the obvious choice, but it sits well above
I_off: dV/dI = (1 - V dG/dm dm/dI) / (...) weighs the transition with V, which grows with
I. On the simulated station's devices it lies 1 to 13 uA above I_off as fabricated and up
to 30 uA above it for a device tuned down to ~10 uA; the conductance peak stays within
about 1.3 uA of I_off for I_off between 15 and 90 uA (a bias of about -0.8 uA, from the
barrier's bias-dependent TMR), which is why it is used here.

Tuning
------
:func:`tune_pair` measures, then pulses every device that is further than the tolerance
from the target and measures again, until both are within it. A pulse above the
programming threshold V_th moves I_off by about k * sign(V) * (|V| - V_th) *
sqrt(width / 1 us); the plan inverts that for the remaining error with its own estimate of
k per device, which it corrects from each pulse's observed effect. Amplitudes never exceed
``max_amplitude_v`` (pass the envelope's ``pulse_amplitude_limit_v(pair)``: it
refuses anything beyond it anyway). A device that no longer moves under the strongest
allowed pulse (its tuning range is exhausted) is given up on; the plan then returns a
failed :class:`TuneResult` saying so, as it does when the pulse budget runs out.

Units: A, V, s, A/V (sensitivity k for a 1 us pulse).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from protocols.intents import DEVICES, Checkpoint, Plan, Pulse, Sweep, SweepResult

FIT_HALF_WIDTH = 4  # neighbours each side in the local fit of dG/dI
WIDTH_REF_S = 1e-6  # the pulse width the sensitivity refers to
MIN_CONTRAST = 0.05  # least relative rise of G over the sweep that counts as a transition


# -- estimation ------------------------------------------------------------------------
def _local_slope(x: np.ndarray, y: np.ndarray, half_width: int) -> np.ndarray:
    """dy/dx by a least-squares quadratic over 2 * half_width + 1 neighbours."""
    n = len(x)
    out = np.empty(n)
    for i in range(n):
        lo, hi = max(0, i - half_width), min(n, i + half_width + 1)
        out[i] = np.polyfit(x[lo:hi] - x[i], y[lo:hi], 2)[1]
    return out


def conductance_peak(
    currents_a: np.ndarray,
    volts: np.ndarray,
    *,
    refine_a: float = 10e-6,
    half_width: int = FIT_HALF_WIDTH,
) -> tuple[float, str]:
    """(I_off estimate in A, problem) of one device from its I-V points.

    The estimate is the current where G = I / V rises fastest (see the module docstring);
    ``currents_a`` must be positive and sorted. When there is no usable transition, the
    estimate is NaN and the problem says why (too few points, a flat G as of a broken
    barrier, or a peak within ``refine_a`` of the ends of the sweep).
    """
    i = np.asarray(currents_a, dtype=float)
    v = np.asarray(volts, dtype=float)
    if len(i) < 2 * half_width + 3:
        return math.nan, f"only {len(i)} valid points"
    if np.any(i <= 0) or np.any(v <= 0) or np.any(np.diff(i) <= 0):
        return math.nan, "needs positive, increasing currents and positive voltages"
    g = i / v
    if (g.max() - g.min()) / g.mean() < MIN_CONTRAST:
        return math.nan, "conductance is flat: no switching transition (broken barrier?)"
    slope = _local_slope(i, g, half_width)
    j = half_width + int(np.argmax(slope[half_width : len(i) - half_width]))
    if i[j] - i[0] < refine_a or i[-1] - i[j] < refine_a:
        return math.nan, (
            f"transition at ~{i[j]:.3g} A is within {refine_a:.3g} A of the sweep's "
            f"ends [{i[0]:.3g}, {i[-1]:.3g}] A"
        )
    near = np.abs(i - i[j]) <= refine_a
    c2, c1, _ = np.polyfit(i[near] - i[j], slope[near], 2)
    if c2 >= 0:
        return float(i[j]), ""  # no maximum to refine towards: keep the grid point
    # The vertex stays within the fit window: a quadratic is only trusted where it was fit.
    return float(i[j] + np.clip(-c1 / (2 * c2), -refine_a, refine_a)), ""


@dataclass(frozen=True)
class IoffEstimate:
    """I_off (A) of both devices of a pair from one I-V sweep; NaN where not found.

    ``i_off`` and ``problems`` are keyed by device ("A", "B"); a problem is "" when the
    estimate is good.
    """

    pair: int
    i_off: dict[str, float]
    problems: dict[str, str]

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def as_dict(self) -> dict:
        return {
            "pair": self.pair,
            **{f"i_off_{d.lower()}": self.i_off[d] for d in DEVICES},
            **{f"problem_{d.lower()}": self.problems[d] for d in DEVICES},
        }


def sweep_currents(i_max: float, points: int) -> np.ndarray:
    """The estimation sweep's currents (A): ``points`` from 5 % of ``i_max`` to ``i_max``."""
    if not (math.isfinite(i_max) and i_max > 0) or points < 2 * FIT_HALF_WIDTH + 3:
        raise ValueError(f"need a positive i_max and at least {2 * FIT_HALF_WIDTH + 3} points, "
                         f"got {i_max!r} and {points!r}")
    return np.linspace(0.05 * i_max, i_max, points)


def estimable_range(i_max: float, refine_a: float = 10e-6) -> tuple[float, float]:
    """I_off values (A) the estimation sweep up to ``i_max`` can locate."""
    return 0.05 * i_max + refine_a, i_max - refine_a


def estimate_i_off(
    pair: int, *, i_max: float = 100e-6, points: int = 96, refine_a: float = 10e-6
) -> Plan:
    """Plan: one I-V sweep of both devices of ``pair``; returns an :class:`IoffEstimate`.

    ``i_max`` (A): the sweep's top (pass the pair's ``max_current_a``); points at
    compliance or overrange are left out.
    """
    currents = sweep_currents(i_max, points)
    r = yield Sweep(pair, currents, currents, label="tuning-iv")
    return estimate_from_sweep(r, i_floor=0.05 * i_max, refine_a=refine_a)


def estimate_from_sweep(
    result: SweepResult, *, i_floor: float, refine_a: float = 10e-6
) -> IoffEstimate:
    """I_off of both devices from an I-V sweep of a pair at equal currents (A), using its
    valid points at or above ``i_floor`` (A)."""
    sweep = result.sweep
    if not np.array_equal(sweep.currents_a, sweep.currents_b):
        raise ValueError("I_off estimation needs both devices at the same currents")
    i_off, problems = {}, {}
    for device, volts in zip(DEVICES, (result.v_a, result.v_b), strict=True):
        use = result.valid & (sweep.currents_a >= i_floor)
        order = np.argsort(sweep.currents_a[use], kind="stable")
        i_off[device], problems[device] = conductance_peak(
            sweep.currents_a[use][order], volts[use][order], refine_a=refine_a
        )
    return IoffEstimate(sweep.pair, i_off, problems)


def verify_i_off(
    pair: int, *, i_max: float = 100e-6, points: int = 201, refine_a: float = 10e-6
) -> Plan:
    """Plan: an independent check, a full I-V sweep of both devices over [-i_max, i_max]
    (A) on a grid of its own; returns (IoffEstimate from its points above 5 % of i_max,
    the SweepResult)."""
    currents = np.linspace(-i_max, i_max, points)
    r = yield Sweep(pair, currents, currents, label="tuning-verify")
    return estimate_from_sweep(r, i_floor=0.05 * i_max, refine_a=refine_a), r


# -- tuning ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PulseRecord:
    """One pulse of a tuning run and the device's I_off (A) measured before and after."""

    iteration: int
    device: str
    amplitude_v: float
    width_s: float
    i_off_before_a: float
    i_off_after_a: float


@dataclass
class TuneResult:
    """What :func:`tune_pair` did: success (both devices within tolerance of the target),
    the reason when not, the estimates before and after, and every pulse."""

    pair: int
    target_a: float
    tolerance_a: float
    success: bool
    reason: str
    before: IoffEstimate
    after: IoffEstimate
    iterations: int = 0
    pulses: list[PulseRecord] = field(default_factory=list)

    @property
    def pulses_applied(self) -> int:
        return len(self.pulses)

    def error_a(self, device: str) -> float:
        """After tuning: estimated I_off minus the target (A)."""
        return self.after.i_off[device] - self.target_a

    def as_dict(self) -> dict:
        return {
            "pair": self.pair,
            "target_a": self.target_a,
            "tolerance_a": self.tolerance_a,
            "success": self.success,
            "reason": self.reason,
            "iterations": self.iterations,
            "pulses_applied": self.pulses_applied,
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "pulses": [asdict(p) for p in self.pulses],
        }


@dataclass
class _DeviceState:
    """What the plan has learnt about one device while tuning it."""

    sensitivity: float  # A/V for a 1 us pulse: this device's k as learnt so far
    initial: float  # the k the plan started from (A/V)
    stalls: int = 0
    given_up: str = ""

    def learn(self, error_a: float, amplitude_v: float, moved_a: float, *, threshold_v: float,
              root: float, max_amplitude_v: float, stall_limit: int, i_off_a: float) -> None:
        """Update k and the stall count from one pulse's observed move ``moved_a`` (A)."""
        predicted = self.sensitivity * (abs(amplitude_v) - threshold_v) * root
        observed = math.copysign(1.0, error_a) * moved_a  # along the intended direction
        at_cap = abs(amplitude_v) >= max_amplitude_v * (1 - 1e-9)
        self.stalls = self.stalls + 1 if at_cap and observed < 0.25 * predicted else 0
        if self.stalls >= stall_limit:
            self.given_up = (
                f"stopped moving at I_off = {i_off_a:.4g} A under {stall_limit} pulses of "
                f"{max_amplitude_v:.3g} V (tuning range exhausted?): target unreachable"
            )
        # Small predicted moves drown in the estimate's noise; only larger ones teach k.
        if predicted >= 1e-6:
            # Half a step in log space, bounded, so one unlucky pulse cannot derail k.
            ratio = min(max(observed / predicted, 0.25), 4.0)
            self.sensitivity = min(max(self.sensitivity * math.sqrt(ratio), self.initial / 16),
                                   self.initial * 16)


def pulse_amplitude(
    error_a: float,
    sensitivity_a_per_v: float,
    width_s: float,
    threshold_v: float,
    max_amplitude_v: float,
) -> float:
    """Amplitude (V) expected to move I_off by ``error_a`` (A), capped at the maximum."""
    excess = abs(error_a) / (sensitivity_a_per_v * math.sqrt(width_s / WIDTH_REF_S))
    return math.copysign(min(threshold_v + excess, max_amplitude_v), error_a)


def tune_pair(
    pair: int,
    target_i_off_a: float,
    tolerance_a: float = 2e-6,
    max_pulses: int = 40,
    *,
    width_s: float = 10e-6,
    max_amplitude_v: float = 0.8,
    threshold_v: float = 0.35,
    sensitivity_a_per_v: float = 20e-6,
    stall_limit: int = 3,
    i_max: float = 100e-6,
    points: int = 96,
    refine_a: float = 10e-6,
) -> Plan:
    """Plan: pulse both devices of ``pair`` until their I_off is within ``tolerance_a`` of
    ``target_i_off_a`` (A); returns a :class:`TuneResult` (it does not raise for a target
    it cannot reach: the result says why).

    ``max_pulses`` counts the pulses of both devices together; each pulse lasts
    ``width_s`` (s), its |amplitude| (V) is at most ``max_amplitude_v`` (pass the
    envelope's pulse amplitude limit of the pair); ``threshold_v`` (V) and
    ``sensitivity_a_per_v`` (A/V for a 1 us pulse) are the device's programming
    characteristics as the plan starts out believing them. A device that moves less than a
    quarter of the prediction under the strongest allowed pulse ``stall_limit`` times in a
    row is given up on. A Checkpoint "tuning" is yielded after each measurement:
    iteration, both estimates and the pulses just applied.
    """
    if not (tolerance_a > 0 and width_s > 0 and sensitivity_a_per_v > 0 and max_pulses >= 0):
        raise ValueError("tolerance_a, width_s and sensitivity_a_per_v must be positive and "
                         "max_pulses not negative")

    def measure() -> Plan:
        return (yield from estimate_i_off(pair, i_max=i_max, points=points, refine_a=refine_a))

    def checkpoint(iteration: int, est: IoffEstimate, applied: dict[str, float], total: int):
        return Checkpoint("tuning", {
            "pair": pair,
            "iteration": iteration,
            **{f"i_off_{d.lower()}": est.i_off[d] for d in DEVICES},
            **{f"pulse_{d.lower()}_v": applied.get(d, 0.0) for d in DEVICES},
            "width_s": width_s,
            "pulses_total": total,
        })

    before = est = yield from measure()
    result = TuneResult(pair, target_i_off_a, tolerance_a, False, "", before, before)
    yield checkpoint(0, est, {}, 0)
    lo, hi = estimable_range(i_max, refine_a)
    if not lo <= target_i_off_a <= hi:
        result.reason = (f"target {target_i_off_a:.4g} A is outside the range the "
                         f"estimation sweep can locate, [{lo:.4g}, {hi:.4g}] A")
        return result
    if max_amplitude_v <= threshold_v:
        result.reason = (f"the largest allowed amplitude {max_amplitude_v:.4g} V does not "
                         f"exceed the programming threshold {threshold_v:.4g} V")
        return result
    states = {d: _DeviceState(sensitivity_a_per_v, sensitivity_a_per_v) for d in DEVICES}
    root = math.sqrt(width_s / WIDTH_REF_S)
    iteration = 0
    while True:
        if not est.ok:
            bad = "; ".join(f"device {d}: {p}" for d, p in est.problems.items() if p)
            result.reason = f"I_off could not be estimated ({bad})"
            break
        errors = {d: target_i_off_a - est.i_off[d] for d in DEVICES}
        pending = [d for d in DEVICES
                   if abs(errors[d]) > tolerance_a and not states[d].given_up]
        if not pending:
            given_up = [f"device {d}: {s.given_up}" for d, s in states.items() if s.given_up]
            result.success = not given_up
            result.reason = "; ".join(given_up) or "both devices within tolerance"
            break
        if len(result.pulses) + len(pending) > max_pulses:
            result.reason = (f"pulse budget of {max_pulses} spent with device(s) "
                             f"{', '.join(pending)} still out of tolerance")
            break
        iteration += 1
        applied = {}
        for d in pending:
            amplitude = pulse_amplitude(errors[d], states[d].sensitivity, width_s,
                                        threshold_v, max_amplitude_v)
            yield Pulse(pair, d, amplitude, width_s, label="tuning")
            applied[d] = amplitude
        new = yield from measure()
        for d, amplitude in applied.items():
            result.pulses.append(PulseRecord(iteration, d, amplitude, width_s,
                                             est.i_off[d], new.i_off[d]))
            if not new.ok:
                continue
            states[d].learn(errors[d], amplitude, new.i_off[d] - est.i_off[d],
                            threshold_v=threshold_v, root=root,
                            max_amplitude_v=max_amplitude_v, stall_limit=stall_limit,
                            i_off_a=new.i_off[d])
        est = new
        yield checkpoint(iteration, est, applied, len(result.pulses))
    result.after, result.iterations = est, iteration
    return result

