"""Device and pair classification of a fitted wafer, each verdict with its reason in words.

Device status, in order of precedence:

- ``open``: no contact, or a low-bias resistance above :data:`~labctl.wafer.fits.OPEN_OHM`
  (10 MOhm) or none at all;
- ``short``: a low-bias resistance below :data:`~labctl.wafer.fits.SHORT_OHM` (200 Ohm; a
  broken barrier reads 50 Ohm);
- ``broken``: it conducts but is no working MTJ: the fit failed, it does not switch
  (TMR0 below ``Thresholds.broken_tmr_fraction`` = 20 % of the wafer median), or the compact
  model does not describe its curve (residual rms above ``broken_residual_v`` = 5 mV and
  ``broken_residual_factor`` = 20 x the wafer's median residual);
- ``out_of_family``: a parameter beyond ``z_max`` = 4.5 robust sigma of its die's median,
  and by at least ``rel_floor`` = 15 % of it (of the die's median I_w for I_off, which may
  sit near 0 A). The median is the die's, so a die-to-die gradient (a radial R_P trend) is
  no alarm; the sigma is 1.4826 x the wafer-wide median absolute deviation from the die
  medians; R_P is compared in log. A die with fewer than ``min_die_devices`` = 12 devices
  in the family is compared with the wafer's median instead (the median and MAD of a
  handful of devices, correlated in pairs, underestimate the spread by up to 2x). The
  floor keeps an ideal (spread-free) wafer from flagging fit noise;
- ``ok`` otherwise.

Pair status: the worse of its devices' statuses (``broken`` > ``short`` > ``open`` >
``out_of_family``) if either is not ok; else ``mismatched`` if |I_off,A - I_off,B| /
mean(I_w) > ``max_di_off_over_iw`` (default 0.2: the two devices then sit a fifth of a
transition apart, and their derivative estimates differ by more than the swap read can
average out) or |R_P,B / R_P,A - 1| > ``max_rp_ratio_dev`` (default 0.1); else ``ok``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from labctl.wafer.fits import PARAMS, DeviceFit

DEVICE_STATUSES = ("ok", "out_of_family", "open", "short", "broken")
#: Severity when a pair takes its worst device's status.
SEVERITY = {"ok": 0, "out_of_family": 1, "open": 2, "short": 3, "broken": 4}
PAIR_STATUSES = ("ok", "mismatched", "out_of_family", "open", "short", "broken")
#: Pairs training can never use (refused even when named explicitly).
UNUSABLE = ("open", "short", "broken")
_MAD_SIGMA = 1.4826


@dataclass(frozen=True)
class Thresholds:
    """Classification thresholds (see the module docstring for their meaning)."""

    z_max: float = 4.5
    rel_floor: float = 0.15
    broken_tmr_fraction: float = 0.2
    broken_residual_v: float = 5e-3
    broken_residual_factor: float = 20.0
    max_di_off_over_iw: float = 0.2
    max_rp_ratio_dev: float = 0.1
    min_die_devices: int = 12

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Verdict:
    status: str
    reason: str = ""


def _transform(name: str, x: np.ndarray) -> np.ndarray:
    return np.log(x) if name == "r_p" else x


def classify_devices(fits: dict[tuple, DeviceFit],
                     thresholds: Thresholds | None = None) -> dict[tuple, Verdict]:
    """A verdict per device; ``fits`` maps (die, pair, device) to its fit (die any key)."""
    t = thresholds or Thresholds()
    keys = list(fits)
    out: dict[tuple, Verdict] = {}
    fitted = [k for k in keys if fits[k].fitted]
    for k in keys:
        f = fits[k]
        if not f.fitted:
            kind = f.reason.split(":", 1)[0]
            status = kind if kind in ("open", "short") else "broken"
            out[k] = Verdict(status, f"{f.device}: {f.reason}")
    if not fitted:
        return out
    tmr_med = float(np.median([fits[k].params["tmr0"] for k in fitted]))
    res_med = float(np.median([fits[k].residual_rms_v for k in fitted]))
    family = []
    for k in fitted:
        f = fits[k]
        tmr, res = f.params["tmr0"], f.residual_rms_v
        if tmr < t.broken_tmr_fraction * tmr_med:
            out[k] = Verdict("broken", f"{f.device}: TMR0 {tmr:.3g} < "
                             f"{t.broken_tmr_fraction:g} x wafer median {tmr_med:.3g}: "
                             "does not switch")
        elif res > (limit := max(t.broken_residual_v, t.broken_residual_factor * res_med)):
            out[k] = Verdict("broken", f"{f.device}: fit residual {res * 1e3:.3g} mV rms > "
                             f"{limit * 1e3:.3g} mV: not an MTJ curve")
        else:
            family.append(k)
    if not family:
        return out
    # Robust location per die, robust scale over the wafer (deviations from die medians).
    dies = sorted({k[0] for k in family}, key=str)
    count = {d: sum(k[0] == d for k in family) for d in dies}
    dev: dict[str, dict] = {}
    for name in PARAMS:
        med = {}
        wafer = float(np.median(_transform(name, np.array([fits[k].params[name]
                                                            for k in family]))))
        for d in dies:
            xs = [fits[k].params[name] for k in family if k[0] == d]
            # A die of few devices cannot say where its own centre is: the wafer's, then.
            med[d] = (float(np.median(_transform(name, np.array(xs))))
                      if count[d] >= t.min_die_devices else wafer)
        resid = np.array([_transform(name, np.array(fits[k].params[name])) - med[k[0]]
                          for k in family])
        sigma = _MAD_SIGMA * float(np.median(np.abs(resid - np.median(resid))))
        iw_med = {d: float(np.median([fits[k].params["i_w"] for k in family if k[0] == d]))
                  for d in dies}
        dev[name] = {"med": med, "sigma": sigma, "iw": iw_med}
    for k in family:
        f = fits[k]
        why = []
        for name in PARAMS:
            s = dev[name]
            x = float(_transform(name, np.array(f.params[name])))
            m = s["med"][k[0]]
            if name == "r_p":
                floor = math.log1p(t.rel_floor)
            elif name == "i_off":
                floor = t.rel_floor * abs(s["iw"][k[0]])
            else:
                floor = t.rel_floor * abs(m)
            limit = max(t.z_max * s["sigma"], floor)
            if abs(x - m) > limit:
                value = f.params[name]
                median = math.exp(m) if name == "r_p" else m
                why.append(f"{name} {_fmt(name, value)} vs die median {_fmt(name, median)} "
                           f"(> {t.z_max:g} robust sigma and {t.rel_floor:.0%})")
        out[k] = (Verdict("out_of_family", f"{f.device}: " + "; ".join(why)) if why
                  else Verdict("ok"))
    return out


def _fmt(name: str, value: float) -> str:
    if name == "r_p":
        return f"{value:.4g} Ohm"
    if name in ("i_off", "i_w"):
        return f"{value * 1e6:.3g} uA"
    if name == "v_h":
        return f"{value:.3g} V"
    return f"{value:.3g}"


def mismatch(fit_a: DeviceFit, fit_b: DeviceFit) -> tuple[float, float]:
    """(|dI_off| / mean I_w, |R_P,B / R_P,A - 1|) of a pair of fitted devices."""
    a, b = fit_a.params, fit_b.params
    return (abs(a["i_off"] - b["i_off"]) / (0.5 * (a["i_w"] + b["i_w"])),
            abs(b["r_p"] / a["r_p"] - 1.0))


def classify_pair(fit_a: DeviceFit, fit_b: DeviceFit, verdict_a: Verdict, verdict_b: Verdict,
                  thresholds: Thresholds | None = None) -> Verdict:
    """The pair's verdict from its devices' fits and verdicts."""
    worst = max((verdict_a, verdict_b), key=lambda v: SEVERITY[v.status])
    if worst.status != "ok":
        reasons = "; ".join(v.reason for v in (verdict_a, verdict_b) if v.status != "ok")
        return Verdict(worst.status, reasons)
    di, dr = mismatch(fit_a, fit_b)
    t = thresholds or Thresholds()
    why = []
    if di > t.max_di_off_over_iw:
        why.append(f"|dI_off| / I_w {di:.3g} > {t.max_di_off_over_iw:g}")
    if dr > t.max_rp_ratio_dev:
        why.append(f"|R_P,B / R_P,A - 1| {dr:.3g} > {t.max_rp_ratio_dev:g}")
    return Verdict("mismatched", "; ".join(why)) if why else Verdict("ok")
