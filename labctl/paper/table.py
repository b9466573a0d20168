"""The reproduction table: each experiment's sweep over seeds beside the paper's figure.

Per experiment, over the seeds whose cell finished ok: the MTJ network's mean accuracy
with its Student-t confidence interval, the baseline's (tanh, or the network without
distillation) on the same seeds, and their paired difference (``scipy.stats.ttest_rel``).
Accuracies are fractions (0..1) in the data and percent in the text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from labctl.paper.experiments import Experiment
from labctl.sweep.cells import Cell
from labctl.sweep.report import mean_ci, paired_ci
from labctl.sweep.store import SweepStore


def experiment_row(e: Experiment, sweep_dir: Path, cells: list[Cell],
                   confidence: float) -> dict[str, Any]:
    """The table row of ``e`` from the results of ``cells`` in its sweep directory (which
    may hold cells of other settings too: ``--set``); ``n`` 0 when none ran yet."""
    rows = SweepStore(sweep_dir).rows(
        [{"key": c.key, "index": c.index, "settings": c.settings} for c in cells],
        set(cells[0].settings) if cells else set())
    ok = [r for r in rows if r.get("status") == "ok" and r.get(e.metric) is not None]
    row: dict[str, Any] = {"experiment": e.name, "title": e.title, "paper": e.paper,
                           "paper_value": e.paper_value, "metric": e.metric,
                           "baseline": e.baseline, "baseline_label": e.baseline_label,
                           "sweep": str(sweep_dir), "cells": len(rows), "n": len(ok),
                           "failed": sum(r.get("status") == "failed" for r in rows),
                           "seeds": sorted(int(r["seed"]) for r in ok)}
    x = np.array([r[e.metric] for r in ok], dtype=float)
    row.update(_stats("mtj", x, confidence))
    if e.baseline:
        both = [r for r in ok if r.get(e.baseline) is not None]
        b = np.array([r[e.baseline] for r in both], dtype=float)
        a = np.array([r[e.metric] for r in both], dtype=float)
        row.update(_stats("base", b, confidence))
        diff, low, high, _, p = paired_ci(a, b, confidence)
        row.update(diff_mean=diff, diff_low=low, diff_high=high, diff_p=p)
    return row


def _stats(prefix: str, x: np.ndarray, confidence: float) -> dict[str, float]:
    if len(x) == 0:
        return {f"{prefix}_mean": math.nan, f"{prefix}_low": math.nan,
                f"{prefix}_high": math.nan}
    low, high = mean_ci(x, confidence)
    return {f"{prefix}_mean": float(np.mean(x)), f"{prefix}_low": low, f"{prefix}_high": high}


def _pct(mean: float, low: float, high: float) -> str:
    if math.isnan(mean):
        return "-"
    if math.isnan(low):
        return f"{100 * mean:.1f} %"
    return f"{100 * mean:.1f} % [{100 * low:.1f}, {100 * high:.1f}]"


def _points(mean: float, low: float, high: float, p: float) -> str:
    if math.isnan(mean):
        return "-"
    text = f"{100 * mean:+.1f} pts"
    if not math.isnan(low):
        text += f" [{100 * low:+.1f}, {100 * high:+.1f}]"
    if not math.isnan(p):
        text += f" p={p:.2g}"
    return text


def render(rows: list[dict[str, Any]], confidence: float) -> str:
    """The table as text: one block per experiment (the lines are too wide for columns)."""
    pct = f"{confidence:.0%}"
    out = [f"Reproduction of arXiv 2603.03947 ({pct} t intervals over seeds; paired "
           "differences on the same seeds)"]
    for r in rows:
        n = f"n = {r['n']} seeds" + (f", {r['failed']} failed" if r["failed"] else "")
        out += ["", f"{r['experiment']}: {r['title']}",
                f"  paper:  {r['paper']}",
                f"  ours:   {_pct(r['mtj_mean'], r['mtj_low'], r['mtj_high'])}  ({n})"]
        if r.get("baseline"):
            out.append(f"  {r['baseline_label']}: "
                       f"{_pct(r['base_mean'], r['base_low'], r['base_high'])}")
            out.append(f"  MTJ - {r['baseline_label']}: "
                       f"{_points(r['diff_mean'], r['diff_low'], r['diff_high'], r['diff_p'])}")
        if r["paper_value"] is not None and not math.isnan(r["mtj_mean"]):
            gap = r["mtj_mean"] - r["paper_value"]
            out.append(f"  ours - paper: {100 * gap:+.1f} pts")
        out.append(f"  sweep: {r['sweep']}")
    return "\n".join(out)
