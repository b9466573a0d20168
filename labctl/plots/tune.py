"""Tuning a pair's I_off: the estimates and pulses of every iteration against the target,
and the independent verification sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labctl.plots.figure import figure, legend_outside, save


def tune_progress(path: Path, iterations: np.ndarray, i_off_a: dict[str, np.ndarray],
                  pulses_v: dict[str, np.ndarray], target_a: float, tolerance_a: float,
                  title: str, *, verify: dict[str, np.ndarray] | None = None,
                  verified_a: dict[str, float] | None = None,
                  truth_a: dict[str, float] | None = None) -> Path:
    """Top left: each device's estimated I_off (uA) per iteration, the target and its
    tolerance band; bottom left: the pulse amplitude (V) applied after each estimate;
    right: the verification I-V (``current_a``, ``v_a``, ``v_b``: A, V) with the
    verified (and, simulated, the true) I_off marked."""
    fig = figure((11, 5.4))
    axes = fig.subplot_mosaic([["ioff", "iv"], ["pulse", "iv"]], width_ratios=(1.1, 1))
    ax_i, ax_p, ax_v = axes["ioff"], axes["pulse"], axes["iv"]
    it = np.asarray(iterations)
    ax_i.axhspan((target_a - tolerance_a) * 1e6, (target_a + tolerance_a) * 1e6,
                 color="0.85", label=f"target {target_a * 1e6:.3g} +- {tolerance_a * 1e6:.2g} uA")
    ax_i.axhline(target_a * 1e6, color="k", lw=1)
    width = 0.38
    for k, (device, values) in enumerate(i_off_a.items()):
        colour = f"C{k}"
        ax_i.plot(it, np.asarray(values, dtype=float) * 1e6, "o-", ms=4, color=colour,
                  label=f"device {device}: estimate")
        if verified_a and np.isfinite(verified_a.get(device, np.nan)):
            ax_i.plot([it[-1] + 1 if len(it) else 0], [verified_a[device] * 1e6], "s",
                      ms=7, mfc="none", color=colour, label=f"device {device}: verified")
        if truth_a and device in truth_a:
            ax_i.plot([it[-1] + 1 if len(it) else 0], [truth_a[device] * 1e6], "x", ms=8,
                      color=colour, label=f"device {device}: simulator's true I_off")
        p = np.asarray(pulses_v.get(device, []), dtype=float)
        ax_p.bar(it[: len(p)] + (k - 0.5) * width, p, width, color=colour,
                 label=f"device {device}")
    ax_p.axhline(0.0, color="k", lw=0.6)
    ax_i.set_ylabel("I_off (uA)")
    ax_i.set_xlabel("iteration (last + 1: verification)")
    ax_p.set_ylabel("pulse amplitude (V)")
    ax_p.set_xlabel("iteration")
    if verify is not None:
        i_ua = np.asarray(verify["current_a"], dtype=float) * 1e6
        ax_v.plot(i_ua, verify["v_a"], ".-", ms=2, lw=1, color="C0", label="device A")
        ax_v.plot(i_ua, verify["v_b"], ".-", ms=2, lw=1, color="C1", label="device B")
        for k, device in enumerate(verified_a or {}):
            if np.isfinite(verified_a[device]):
                ax_v.axvline(verified_a[device] * 1e6, color=f"C{k}", ls=":", lw=1,
                             label=f"verified I_off {device}")
        ax_v.set_title("verification I-V sweep", fontsize=8)
    ax_v.set_xlabel("bias current I (uA)")
    ax_v.set_ylabel("V (V)")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_i, ax_p):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations are whole
    for ax in (ax_i, ax_p, ax_v):
        ax.grid(alpha=0.3)
        legend_outside(ax)
    fig.suptitle(title, fontsize=9)
    return save(fig, path)
