"""Gradient fidelity per epoch: how close the weight gradient from the derivative used is
to the one from the exact derivative."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labctl.plots.figure import figure, figure_legend_below, save


def gradient_fidelity(path: Path, series: dict[str, dict[str, list[float]]], title: str) -> Path:
    """Per epoch: the cosine between the measured and the exact weight gradient (left) and
    the median and 90th percentile of |measured / exact dV/dI - 1| (right, log scale).

    ``series`` maps a label (a fold) to ``grad_cosine``, ``dvdi_err_median`` and
    ``dvdi_err_p90`` lists, one value per epoch (NaN: not known, left out).
    """
    fig = figure((10, 4.6))
    ax_cos, ax_err = fig.subplots(1, 2)
    for i, (label, f) in enumerate(series.items()):
        colour = f"C{i % 10}"
        cos = np.asarray(f.get("grad_cosine", []), dtype=float)
        ax_cos.plot(np.arange(1, len(cos) + 1), cos, "-", color=colour, label=label)
        for key, style in (("dvdi_err_median", "-"), ("dvdi_err_p90", "--")):
            err = np.asarray(f.get(key, []), dtype=float)
            shown = np.isfinite(err) & (err > 0)  # a log axis cannot show 0
            if shown.any():
                ax_err.semilogy(np.flatnonzero(shown) + 1, err[shown], style, color=colour,
                                label=f"{label} {'median' if key.endswith('median') else 'p90'}")
    ax_cos.set_xlabel("epoch")
    ax_cos.set_ylabel("cos(measured, exact weight gradient)")
    ax_cos.set_ylim(min(-0.05, ax_cos.get_ylim()[0]), 1.05)
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("|measured / exact dV/dI - 1| (ratio)")
    for ax in (ax_cos, ax_err):
        ax.grid(alpha=0.3, which="both")
    figure_legend_below(fig, (ax_cos, ax_err), ncol=4)
    fig.suptitle(title, fontsize=9)
    return save(fig, path)
