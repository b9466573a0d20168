"""Compact-model fits of measured I-V curves: R_P, TMR0, V_h, I_off, I_w per device.

The model is the base compact model of :mod:`simulators.mtj` (V(I) from r_p, tmr0, v_h,
i_off, i_w); mechanisms beyond it show up in the residual. Each device is fitted by bounded
least squares (:func:`scipy.optimize.least_squares`, trust-region reflective) with an
analytic Jacobian from implicit differentiation of V * G(V, m(I)) = I, so that one
iteration costs one model solve. Uncertainties are 1 sigma from (J^T J)^-1 times the
residual variance; the residual rms is in V.

Units: A, V, Ohm; TMR0 is a ratio (1.5 = 150 %).

Points the SMU flagged as in compliance carry the compliance limit, not the device's
voltage: they are left out, and a device that had any is fitted with a robust loss
(``soft_l1``) since the points next to compliance may not have settled either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simulators.mtj import MTJParams, voltage

#: Fitted parameters, in this order, and their units.
PARAMS = ("r_p", "tmr0", "v_h", "i_off", "i_w")
UNITS = {"r_p": "Ohm", "tmr0": "1", "v_h": "V", "i_off": "A", "i_w": "A"}

#: Below this low-bias resistance (Ohm) a device is a short (a broken barrier reads 50 Ohm);
#: the station's ratings.min_resistance_ohm is of the same order.
SHORT_OHM = 200.0
#: Above this low-bias resistance (Ohm) a device is open (no contact, a lifted pad).
OPEN_OHM = 1e7
#: Fewest usable points (not in compliance, finite) a fit needs: five parameters and
#: enough left over for a residual variance.
MIN_POINTS = 12

# Noise floor (V) for the robust loss's scale: the SMU read noise at 1 NPLC is ~20 uV.
_F_SCALE_V = 1e-4


@dataclass
class DeviceFit:
    """One device's compact-model fit. Units: Ohm, V, A (tmr0 a ratio).

    ``fitted`` False means the device was not fitted and ``reason`` says why (open,
    short, too few points); then ``params`` and ``sigma`` are NaN.
    """

    pair: int
    device: str
    fitted: bool
    reason: str = ""
    params: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARAMS, math.nan))
    sigma: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARAMS, math.nan))
    residual_rms_v: float = math.nan
    r_low_ohm: float = math.nan
    n_points: int = 0
    n_compliance: int = 0
    iv_mode: str = "current"
    nfev: int = 0

    def mtj_params(self, v_breakdown: float = 1.0) -> MTJParams:
        """The fitted device as simulator parameters (breakdown is not measurable: given)."""
        return MTJParams(**{k: self.params[k] for k in PARAMS}, v_breakdown=v_breakdown)


def _solve(theta: np.ndarray, current: np.ndarray) -> np.ndarray:
    r_p, tmr0, v_h, i_off, i_w = theta
    return voltage(MTJParams(r_p, tmr0, v_h, i_off, i_w), current)


def model_jacobian(theta: np.ndarray, current: np.ndarray,
                   v: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """V (V) at ``current`` (A) and dV/dtheta, shape (n, 5), for theta in :data:`PARAMS` order.

    Implicit differentiation of F = V * G(V, m, theta) - I = 0: dV/dtheta = -V dG/dtheta /
    (G + V dG/dV), which needs only the solved V.
    """
    r_p, tmr0, v_h, i_off, i_w = (float(t) for t in theta)
    if v is None:
        v = _solve(theta, current)
    g_p = 1.0 / r_p
    u = (current - i_off) / i_w
    m = np.tanh(u)
    x = 1.0 + (v / v_h) ** 2
    t = tmr0 / x
    g = 0.5 * g_p * (1.0 + m) + 0.5 * g_p * (1.0 - m) / (1.0 + t)
    dg_dt = -0.5 * g_p * (1.0 - m) / (1.0 + t) ** 2
    dt_dv = -tmr0 * 2.0 * v / v_h**2 / x**2
    denom = g + v * dg_dt * dt_dv
    dg_dm = 0.5 * g_p * t / (1.0 + t)
    dm = 1.0 - m**2
    dg = np.empty((current.size, 5))
    dg[:, 0] = -g / r_p
    dg[:, 1] = dg_dt / x  # dT/dtmr0 = 1 / x
    dg[:, 2] = dg_dt * tmr0 * 2.0 * v**2 / v_h**3 / x**2
    dg[:, 3] = dg_dm * (-dm / i_w)
    dg[:, 4] = dg_dm * (-dm * u / i_w)
    return v, -(v / denom)[:, None] * dg


def initial_guess(current: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Starting parameters from the curve's shape (theta in :data:`PARAMS` order).

    R_P: the smallest chord resistance V/I on the positive side (the parallel state at
    high current); R_AP at low bias: the largest chord resistance near zero, which gives
    TMR0; I_off and I_w: where the chord resistance crosses the middle of its positive-side
    range and how wide the 25-75 % part of that step is.
    """
    i_max = float(np.max(np.abs(current)))
    nz = np.abs(current) > 0.02 * i_max
    r = np.abs(v[nz] / current[nz])
    i_nz = current[nz]
    pos = i_nz > 0
    if pos.sum() >= 3:
        order = np.argsort(i_nz[pos])
        ip, rp = i_nz[pos][order], r[pos][order]
    else:
        ip, rp = np.abs(i_nz), r
    r_p = float(np.min(rp))
    r_hi = float(np.max(r))
    tmr0 = max(r_hi / r_p - 1.0, 0.05)
    lo, hi = float(rp[0]), float(rp[-1])
    span = lo - hi
    if span > 0.05 * r_p:
        def crossing(frac: float) -> float:
            level = lo - frac * span
            k = int(np.argmax(rp <= level))
            return float(ip[k])

        i_off = crossing(0.5)
        i_w = max((crossing(0.75) - crossing(0.25)) / (2 * math.atanh(0.5)), 0.02 * i_max)
    else:  # no step on the positive side: the transition lies beyond the sweep
        i_off, i_w = 0.8 * i_max, 0.3 * i_max
    return np.array([r_p, tmr0, 0.5, i_off, i_w])


def _bounds(theta0: np.ndarray, i_max: float) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([0.2 * theta0[0], 0.0, 0.02, -5.0 * i_max, 0.005 * i_max])
    hi = np.array([5.0 * theta0[0], 20.0, 20.0, 5.0 * i_max, 5.0 * i_max])
    return lo, hi


def fit_curve(current_a: np.ndarray, voltage_v: np.ndarray,
              compliance: np.ndarray | None = None) -> dict:
    """Fit the compact model to one I-V curve (A, V); points flagged in ``compliance`` are
    left out. Returns params, sigma (dicts in :data:`PARAMS`), residual_rms_v, n_points,
    n_compliance, nfev. Raises ValueError if fewer than :data:`MIN_POINTS` points remain."""
    from scipy.optimize import least_squares  # here: importing scipy costs ~0.3 s

    i = np.asarray(current_a, dtype=float).ravel()
    v = np.asarray(voltage_v, dtype=float).ravel()
    if i.shape != v.shape:
        raise ValueError(f"{i.size} currents but {v.size} voltages")
    comp = (np.zeros(i.shape, bool) if compliance is None
            else np.asarray(compliance, dtype=bool).ravel())
    keep = ~comp & np.isfinite(i) & np.isfinite(v)
    n_comp = int(comp.sum())
    i, v = i[keep], v[keep]
    if i.size < MIN_POINTS:
        raise ValueError(f"{i.size} usable points (not in compliance), at least {MIN_POINTS} "
                         "needed")
    i_max = float(np.max(np.abs(i)))
    theta0 = initial_guess(i, v)
    lo, hi = _bounds(theta0, i_max)
    theta0 = np.clip(theta0, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
    # Scaled unknowns (each ~1) so that tolerances and the covariance are well conditioned.
    scale = np.array([theta0[0], 1.0, 1.0, i_max, i_max])
    cache: dict = {}

    def model(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = x.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = model_jacobian(x * scale, i)
        return cache[key]

    def residual(x):
        return model(x)[0] - v

    def jac(x):
        return model(x)[1] * scale

    loss = "soft_l1" if n_comp else "linear"
    res = least_squares(residual, theta0 / scale, jac=jac, bounds=(lo / scale, hi / scale),
                        method="trf", loss=loss, f_scale=_F_SCALE_V, x_scale=1.0,
                        ftol=1e-12, xtol=1e-10, gtol=1e-12, max_nfev=200)
    theta = res.x * scale
    r = residual(res.x)
    dof = max(i.size - len(PARAMS), 1)
    s2 = float(r @ r) / dof
    jj = res.jac.T @ res.jac if loss == "linear" else jac(res.x).T @ jac(res.x)
    try:
        cov = np.linalg.inv(jj) * s2
        sig = np.sqrt(np.clip(np.diag(cov), 0.0, None)) * scale
    except np.linalg.LinAlgError:  # a degenerate parameter (no transition in the sweep)
        sig = np.full(len(PARAMS), math.inf)
    return {
        "params": dict(zip(PARAMS, map(float, theta), strict=True)),
        "sigma": dict(zip(PARAMS, map(float, sig), strict=True)),
        "residual_rms_v": math.sqrt(float(r @ r) / i.size),
        "n_points": int(i.size),
        "n_compliance": n_comp,
        "nfev": int(res.nfev),
    }


def unfittable_reason(scan) -> str:
    """Why a :class:`~labctl.wafer.records.DeviceScan` cannot be fitted ("" if it can)."""
    r_low = float(scan.r_low_ohm)
    if not scan.contact_ok:
        return "open: no contact"
    if not math.isfinite(r_low) or r_low > OPEN_OHM:
        return f"open: R_low {r_low:.4g} Ohm > {OPEN_OHM:.0e} Ohm"
    if r_low < SHORT_OHM:
        return f"short: R_low {r_low:.4g} Ohm < {SHORT_OHM:.0f} Ohm"
    return ""


def fit_device(scan) -> DeviceFit:
    """Fit one :class:`~labctl.wafer.records.DeviceScan`; an open or shorted device, or one
    with too few usable points, is returned unfitted with the reason."""
    out = DeviceFit(pair=int(scan.pair), device=str(scan.device), fitted=False,
                    r_low_ohm=float(scan.r_low_ohm), iv_mode=str(scan.iv_mode))
    comp = np.asarray(scan.compliance_hit, dtype=bool)
    out.n_compliance = int(comp.sum())
    reason = unfittable_reason(scan)
    if reason:
        out.reason = reason
        return out
    try:
        f = fit_curve(scan.iv_current_a, scan.iv_voltage_v, comp)
    except ValueError as err:
        out.reason = f"not fitted: {err}"
        return out
    out.fitted = True
    out.params, out.sigma = f["params"], f["sigma"]
    out.residual_rms_v, out.n_points, out.nfev = f["residual_rms_v"], f["n_points"], f["nfev"]
    return out


def fit_die(die_scan, mode: str = "current") -> list[DeviceFit]:
    """Every device of a :class:`~labctl.wafer.records.DieScan` measured in bias ``mode``
    (current bias by default; a device measured only in the other mode is fitted in that)."""
    chosen: dict[tuple[int, str], object] = {}
    for d in die_scan.devices:
        key = (d.pair, d.device)
        if key not in chosen or (d.iv_mode == mode and chosen[key].iv_mode != mode):
            chosen[key] = d
    return [fit_device(chosen[k]) for k in sorted(chosen)]
