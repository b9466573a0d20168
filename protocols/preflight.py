"""Pre-flight check of the differential path: does the ADC read V_B - V_A of each pair?

The finite-difference derivative is (V_B - V_A) / dI as the differential amplifier reads
it, and the SMUs read V_A and V_B themselves. :func:`differential_check` sweeps a pair over
a few points where the two devices sit a few dI apart and fits the ADC's difference
against the SMUs' V_B - V_A. A slope near 1 means the path works; near -1, the amplifier
is reversed or ``adc_polarity`` is wrong; near 0, the input is open or it is the wrong
``adc_input``. Units: A, V.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.intents import Plan, Sweep
from protocols.wiring import PairWiring

SLOPE_TOLERANCE = 0.2  # |slope - 1| within which the path is taken as working
POINTS = 9


@dataclass(frozen=True)
class DifferentialCheck:
    """The fit of one pair's ADC difference against the SMUs' V_B - V_A.

    slope: fitted v_diff / (V_B - V_A); rms_v: residual of that fit (V); span_v: the range
    of V_B - V_A the check covered (V); verdict: "ok", "reversed", "open" or "inconsistent";
    message: why, naming the pair.
    """

    pair: int
    slope: float
    rms_v: float
    span_v: float
    verdict: str
    message: str

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


def check_points(wiring: PairWiring, di: float) -> tuple[np.ndarray, np.ndarray]:
    """Currents (A) of device A and B: A across half the pair's range, B a few dI off."""
    i_max = wiring.limits.max_current_a
    offset = min(4 * di, 0.1 * i_max)
    a = np.linspace(-0.5, 0.5, POINTS) * i_max
    sign = np.where(np.arange(POINTS) % 2 == 0, 1.0, -1.0)
    b = np.clip(a + sign * offset, -i_max, i_max)
    return a, b


def judge(pair: int, v_diff: np.ndarray, smu_diff: np.ndarray) -> DifferentialCheck:
    """The verdict on one pair from the ADC's and the SMUs' differences (V)."""
    span = float(np.ptp(smu_diff)) if len(smu_diff) else 0.0
    denom = float(np.dot(smu_diff, smu_diff))
    slope = float(np.dot(v_diff, smu_diff) / denom) if denom > 0 else 0.0
    rms = float(np.sqrt(np.mean((v_diff - slope * smu_diff) ** 2))) if len(smu_diff) else 0.0
    where = f"pair {pair}: the ADC reads {slope:+.2f} x (V_B - V_A)"
    if abs(slope - 1) <= SLOPE_TOLERANCE:
        return DifferentialCheck(pair, slope, rms, span, "ok", f"{where}: ok")
    if abs(slope + 1) <= SLOPE_TOLERANCE:
        why = ("the amplifier is wired reversed, or adc_polarity in the station file is "
               "wrong")
        return DifferentialCheck(pair, slope, rms, span, "reversed", f"{where}: {why}")
    if abs(slope) <= SLOPE_TOLERANCE:
        why = "the ADC input is open or it is not this pair's input (check adc_input)"
        return DifferentialCheck(pair, slope, rms, span, "open", f"{where}: {why}")
    why = "neither the difference nor its negative (amplifier gain, or a wrong pair?)"
    return DifferentialCheck(pair, slope, rms, span, "inconsistent", f"{where}: {why}")


def differential_check(wiring: PairWiring, di: float) -> Plan:
    """Plan: sweep the pair over :func:`check_points` and return a :class:`DifferentialCheck`.

    Points in compliance or overrange are left out of the fit; if none is left the verdict
    is "inconsistent".
    """
    a, b = check_points(wiring, di)
    r = yield Sweep(wiring.pair, a, b, label="differential check")
    ok = r.valid
    if not ok.any():
        return DifferentialCheck(
            wiring.pair, float("nan"), float("nan"), 0.0, "inconsistent",
            f"pair {wiring.pair}: every check point was in compliance or overrange",
        )
    return judge(wiring.pair, r.v_diff[ok], (r.v_b - r.v_a)[ok])


class DifferentialPathError(RuntimeError):
    """The differential path of one or more pairs does not read V_B - V_A."""


def check_pairs(engine, pairs: list[PairWiring], di: float) -> list[DifferentialCheck]:
    """:func:`differential_check` of every pair in ``pairs``, run by ``engine``."""
    return [engine.run(differential_check(p, di)) for p in pairs]


def refuse_failed(checks: list[DifferentialCheck]) -> None:
    """Raise :class:`DifferentialPathError` naming each failing pair and the likely cause."""
    bad = [c for c in checks if not c.ok]
    if bad:
        raise DifferentialPathError(
            "differential path check failed: " + "; ".join(c.message for c in bad)
        )
