"""A sweep's metric against one of its factors: mean and confidence interval over seeds,
a line per combination of the other factors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labctl.plots.figure import figure, legend_outside, save

MAX_LINES = 8  # lines in one plot; more combinations are left out (and said so)
#: Units of the metrics a sweep tabulates, for the axis label ("" : a plain number).
UNITS = {"accuracy": "fraction", "tanh_accuracy": "fraction", "elapsed_s": "s",
         "instrument_s": "s", "di": "A", "i_center": "A", "i_scale": "A"}


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _axis_label(name: str) -> str:
    unit = UNITS.get(name) or ("A" if name.endswith("_a") else "s" if name.endswith("_s")
                               else "")
    return f"{name} ({unit})" if unit else name


def metric_vs_factor(summary: list[dict], others: list[str], metric: str, factor: str,
                     levels: list[Any], confidence: float, path: Path,
                     identity: str = "") -> Path | None:
    """``metric`` against ``factor`` (``summary``: the entries of sweep.report.summarise;
    ``levels``: the factor's levels in the grid's order); None if nothing to plot."""
    entries = [e for e in summary if e["metric"] == metric and factor in e]
    if not entries:
        return None
    levels = [v for v in levels if any(e[factor] == v for e in entries)]
    numeric = _numeric(levels)
    xs = {v: (float(v) if numeric else i) for i, v in enumerate(levels)}
    fig = figure((7.5, 4.4))
    ax = fig.subplots()
    combos = sorted({tuple(e[o] for o in others) for e in entries}, key=str)
    for combo in combos[:MAX_LINES]:
        line = [e for e in entries if tuple(e[o] for o in others) == combo]
        line.sort(key=lambda e: xs[e[factor]])
        x = np.array([xs[e[factor]] for e in line])
        y = np.array([e["mean"] for e in line])
        low = np.array([e["ci_low"] for e in line])
        high = np.array([e["ci_high"] for e in line])
        err = np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0)
        label = ", ".join(f"{o}={v}" for o, v in zip(others, combo, strict=True)) or metric
        ax.errorbar(x, y, yerr=err, marker="o", capsize=4, label=label)
    if numeric and min(xs.values()) > 0 and max(xs.values()) / min(xs.values()) >= 10:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(list(xs.values()), [str(v) for v in levels])
        ax.set_xlim(-0.5, len(levels) - 0.5)
    ax.set_xlabel(_axis_label(factor))
    ax.set_ylabel(_axis_label(metric))
    n = max(e["n"] for e in entries)
    title = f"{metric} against {factor}: mean, {confidence:.0%} CI over {n} seed(s)"
    if len(combos) > MAX_LINES:
        title += f" ({MAX_LINES} of {len(combos)} lines)"
    ax.set_title(f"{identity}\n{title}" if identity else title, fontsize=9)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    return save(fig, path)
