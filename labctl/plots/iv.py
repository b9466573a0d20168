"""I-V of a pair: both devices, and their difference, the pair mismatch that the
finite-difference derivative sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labctl.plots.figure import figure, legend_outside, save


def iv_curves(path: Path, currents_a: np.ndarray, v_a: np.ndarray, v_b: np.ndarray,
              title: str, *, v_diff: np.ndarray | None = None,
              compliance: np.ndarray | None = None) -> Path:
    """Top: V_A and V_B (V) against I (uA). Bottom: V_B - V_A (mV) from the SMUs and, where
    recorded, the ADC's differential reading (mV). Points in compliance are crossed out."""
    i_ua = np.asarray(currents_a, dtype=float) * 1e6
    v_a, v_b = np.asarray(v_a, dtype=float), np.asarray(v_b, dtype=float)
    fig = figure((7.5, 6))
    ax_v, ax_d = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    ax_v.plot(i_ua, v_a, ".-", ms=3, lw=1, label="device A (V_A)")
    ax_v.plot(i_ua, v_b, ".-", ms=3, lw=1, label="device B (V_B)")
    ax_d.plot(i_ua, (v_b - v_a) * 1e3, ".-", ms=3, lw=1, color="C2",
              label="V_B - V_A (SMUs)")
    if v_diff is not None:
        ax_d.plot(i_ua, np.asarray(v_diff, dtype=float) * 1e3, "--", lw=1.2, color="C3",
                  alpha=0.7, label="ADC differential reading")
    if compliance is not None and np.any(compliance):
        hit = np.asarray(compliance, dtype=bool)
        ax_v.plot(i_ua[hit], v_a[hit], "kx", ms=6, label="in compliance")
        ax_v.plot(i_ua[hit], v_b[hit], "kx", ms=6)
    ax_d.axhline(0.0, color="k", lw=0.6)
    ax_v.set_ylabel("V (V)")
    ax_d.set_ylabel("V_B - V_A (mV)")
    ax_d.set_xlabel("bias current I (uA)")
    for ax in (ax_v, ax_d):
        ax.grid(alpha=0.3)
        legend_outside(ax)
    fig.suptitle(title, fontsize=9)
    return save(fig, path)
