"""PNG plots (matplotlib, Agg backend, imported only when a plot is made)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(figsize: tuple[float, float]):
    """A figure drawn by the Agg backend, without pyplot (no global state, faster import)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def iv_curves(
    path: Path, currents_a: np.ndarray, curves: dict[str, np.ndarray], title: str
) -> Path:
    """V against I for each named curve (currents in A, voltages in V)."""
    fig = _figure((6, 4.2))
    ax = fig.subplots()
    for label, v in curves.items():
        ax.plot(currents_a * 1e6, v, ".-", ms=3, label=label)
    ax.set_xlabel("I (uA)")
    ax.set_ylabel("V (V)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def derivative_scatter(
    path: Path, analytic: np.ndarray, measured: dict[str, np.ndarray], title: str
) -> Path:
    """Measured dV/dI (Ohm) against the analytic one, one series per label."""
    fig = _figure((5, 5))
    ax = fig.subplots()
    lo, hi = float(np.min(analytic)), float(np.max(analytic))
    for label, m in measured.items():
        ax.plot(analytic, m, ".", ms=3, alpha=0.6, label=label)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set_xlabel("analytic dV/dI (Ohm)")
    ax.set_ylabel("measured dV/dI (Ohm)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def training_curves(path: Path, histories: dict[str, dict[str, list[float]]], title: str) -> Path:
    """Loss and accuracy per epoch; ``histories`` maps a label to its per-epoch metrics."""
    fig = _figure((10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for label, h in histories.items():
        for key, style in (("train_loss", "-"), ("val_loss", "--")):
            if h.get(key):
                ax_loss.plot(range(1, len(h[key]) + 1), h[key], style, label=f"{label} {key[:-5]}")
        for key, style in (("train_acc", "-"), ("val_acc", "--")):
            if h.get(key):
                ax_acc.plot(range(1, len(h[key]) + 1), h[key], style, label=f"{label} {key[:-4]}")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def error_vs_step(
    path: Path, steps_a: np.ndarray, errors: dict[str, np.ndarray], title: str
) -> Path:
    """Median relative derivative error against the finite-difference step dI (A)."""
    fig = _figure((6, 4.2))
    ax = fig.subplots()
    for label, e in errors.items():
        ax.loglog(steps_a, e, "o-", label=label)
    ax.set_xlabel("dI (A)")
    ax.set_ylabel("median |relative error|")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def gradient_fidelity(path: Path, series: dict[str, dict[str, list[float]]], title: str) -> Path:
    """Per epoch: the cosine between the measured and the exact weight gradient (left) and
    the median and 90th percentile of |measured / exact dV/dI - 1| (right, log scale).

    ``series`` maps a label (a fold) to ``grad_cosine``, ``dvdi_err_median`` and
    ``dvdi_err_p90`` lists, one value per epoch (NaN: not known, left out).
    """
    fig = _figure((10, 4))
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
    ax_err.set_ylabel("|measured / exact dV/dI - 1|")
    for ax in (ax_cos, ax_err):
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
