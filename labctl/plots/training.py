"""Training curves: every fold's validation curve (thin), their mean (thick) and the tanh
baseline's mean (dashed), for one derivative source or a comparison of several."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labctl.plots.figure import figure, figure_legend_below, save

PANELS = (("val_acc", "validation accuracy (%)", 100.0),
          ("val_loss", "validation loss (cross-entropy, nats)", 1.0))


@dataclass
class TrainingRun:
    """One run's curves: ``folds`` and ``tanh`` hold per fold a dict of per-epoch lists
    (``val_acc`` as a fraction, ``val_loss`` in nats); ``tanh_final_acc`` the baseline's
    recorded final accuracy per fold (drawn as a level where its curves were not recorded)."""

    label: str
    folds: list[dict[str, list[float]]]
    tanh: list[dict[str, list[float]]] = field(default_factory=list)
    tanh_final_acc: list[float] = field(default_factory=list)


def fold_mean(curves: list[list[float]]) -> np.ndarray:
    """Mean over folds at each epoch, of the folds that reached it (early stopping ends
    folds at different epochs)."""
    n = max((len(c) for c in curves), default=0)
    grid = np.full((len(curves), n), np.nan)
    for i, c in enumerate(curves):
        grid[i, : len(c)] = c
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: nothing there
        return np.nanmean(grid, axis=0) if len(curves) else grid[0:0]


def _epochs(n: int) -> np.ndarray:
    return np.arange(1, n + 1)


def training_curves(path: Path, runs: list[TrainingRun], title: str) -> Path:
    """Validation accuracy (%) and loss against epoch: per run a colour, each fold thin,
    the folds' mean thick; the tanh baseline's mean dashed (once: every run of a comparison
    trains it on the same splits and seeds)."""
    from matplotlib.ticker import MaxNLocator

    fig = figure((10, 4.8))
    axes = fig.subplots(1, 2)
    tanh_run = next((r for r in runs if r.tanh), None)
    for (key, ylabel, scale), ax in zip(PANELS, axes, strict=True):
        for i, run in enumerate(runs):
            colour = f"C{i % 10}"
            curves = [f.get(key, []) for f in run.folds]
            for j, c in enumerate(curves):
                ax.plot(_epochs(len(c)), np.asarray(c, dtype=float) * scale, "-", lw=0.7,
                        alpha=0.45, color=colour,
                        label=f"{run.label}: each fold" if j == 0 else None)
            mean = fold_mean(curves)
            ax.plot(_epochs(len(mean)), mean * scale, "-", lw=2.4, color=colour,
                    label=f"{run.label}: mean of {len(curves)} folds")
        if tanh_run is not None:
            mean = fold_mean([f.get(key, []) for f in tanh_run.tanh])
            ax.plot(_epochs(len(mean)), mean * scale, "--", lw=2, color="k",
                    label=f"tanh baseline: mean of {len(tanh_run.tanh)} folds")
        elif key == "val_acc":
            finals = [a for r in runs for a in r.tanh_final_acc]
            if finals:
                ax.axhline(float(np.mean(finals)) * scale, ls="--", lw=2, color="k",
                           label="tanh baseline: final accuracy, mean (no curve recorded)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    figure_legend_below(fig, axes, ncol=min(3, 2 * len(runs) + 1))
    fig.suptitle(title, fontsize=9)
    return save(fig, path)
