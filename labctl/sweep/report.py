"""`labctl sweep report`: a sweep's table aggregated over seeds, paired differences, plots.

For every metric and every combination of the grid's factors other than the seed: n,
mean, standard deviation and the confidence interval of the mean (Student t, from
``scipy.stats.ttest_1samp``). For every factor with two or more levels, each level
against the first (the grid's order), within every combination of the other factors:
the difference on the same seeds (``scipy.stats.ttest_rel``: mean difference, its t
interval, t and p). Only cells with status ok count. Plots (PNG, Agg): each metric
against each factor, error bars the confidence interval, a line per combination of the
other factors. Files: ``<sweep>/report/summary.csv``, ``paired.csv``, ``report.json`` and
``<metric>-vs-<factor>.png``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from labctl.sweep.store import RUN_COLUMNS, STATUS_COLUMNS, SweepStore

REPLICATE = "seed"


def metric_columns(rows: list[dict], settings: list[str]) -> list[str]:
    """The numeric columns that are results (not settings, status or timing)."""
    skip = {"cell", "key", *settings, *STATUS_COLUMNS, *RUN_COLUMNS}
    names: list[str] = []
    for row in rows:
        for k, v in row.items():
            if (k not in skip and k not in names and isinstance(v, (int, float))
                    and not isinstance(v, bool)):
                names.append(k)
    return names


def _levels(rows: list[dict], factor: str, order: list[Any]) -> list[Any]:
    present = {r[factor] for r in rows}
    return [v for v in order if v in present]


def mean_ci(x: np.ndarray, confidence: float) -> tuple[float, float]:
    """The Student-t confidence interval of the mean of ``x`` (NaN for fewer than 2)."""
    from scipy import stats

    if len(x) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):  # no spread: the interval is the point (scipy says NaN)
        return float(x[0]), float(x[0])
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def paired_ci(xb: np.ndarray, xa: np.ndarray,
              confidence: float) -> tuple[float, float, float, float, float]:
    """(mean of xb - xa, its t interval low, high, t, p) for values paired by position
    (``scipy.stats.ttest_rel``); NaN where fewer than 2 pairs, t and p NaN without spread."""
    from scipy import stats

    d = xb - xa
    if len(d) == 0:
        return math.nan, math.nan, math.nan, math.nan, math.nan
    if len(d) < 2:
        return float(d[0]), math.nan, math.nan, math.nan, math.nan
    if np.all(d == d[0]):  # identical differences: no spread
        return float(d[0]), float(d[0]), float(d[0]), math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(xb, xa)
    ci = res.confidence_interval(confidence)
    return (float(np.mean(d)), float(ci.low), float(ci.high), float(res.statistic),
            float(res.pvalue))


def summarise(rows: list[dict], factors: list[str], metrics: list[str],
              level_order: dict[str, list[Any]], confidence: float) -> list[dict]:
    """One entry per metric and combination of the non-seed factors."""
    from scipy import stats

    groups = [f for f in factors if f != REPLICATE]
    out = []
    combos = itertools.product(*(_levels(rows, g, level_order[g]) for g in groups))
    for combo in combos:
        members = [r for r in rows if all(r[g] == v for g, v in zip(groups, combo, strict=True))]
        for m in metrics:
            x = np.array([r[m] for r in members if r.get(m) is not None], dtype=float)
            if len(x) == 0:
                continue
            low, high = mean_ci(x, confidence)
            out.append({**dict(zip(groups, combo, strict=True)), "metric": m, "n": len(x),
                        "mean": float(np.mean(x)),
                        "std": float(np.std(x, ddof=1)) if len(x) > 1 else math.nan,
                        "sem": float(stats.sem(x)) if len(x) > 1 else math.nan,
                        "ci_low": low, "ci_high": high})
    return out


def paired(rows: list[dict], factors: list[str], metrics: list[str],
           level_order: dict[str, list[Any]], confidence: float) -> list[dict]:
    """Each level of each factor against its first level, on the same seeds."""

    if REPLICATE not in factors:
        return []
    groups = [f for f in factors if f != REPLICATE]
    out = []
    for factor in groups:
        levels = _levels(rows, factor, level_order[factor])
        others = [g for g in groups if g != factor]
        for base, level in ((levels[0], lv) for lv in levels[1:]):
            for combo in itertools.product(*(_levels(rows, g, level_order[g]) for g in others)):
                fixed = dict(zip(others, combo, strict=True))
                sel = [r for r in rows if all(r[g] == v for g, v in fixed.items())]
                for m in metrics:
                    a = {r[REPLICATE]: r[m] for r in sel if r[factor] == base
                         and r.get(m) is not None}
                    b = {r[REPLICATE]: r[m] for r in sel if r[factor] == level
                         and r.get(m) is not None}
                    seeds = sorted(set(a) & set(b))
                    if not seeds:
                        continue
                    xa = np.array([a[s] for s in seeds], dtype=float)
                    xb = np.array([b[s] for s in seeds], dtype=float)
                    mean, low, high, t, p = paired_ci(xb, xa, confidence)
                    out.append({"factor": factor, "level": level, "baseline": base, **fixed,
                                "metric": m, "n": len(seeds), "mean_diff": mean,
                                "ci_low": low, "ci_high": high, "t": t, "p": p})
    return out


def plot(summary: list[dict], factors: list[str], metric: str, factor: str,
         level_order: dict[str, list[Any]], confidence: float, path: Path,
         identity: str = "") -> Path | None:
    """``metric`` against ``factor``: mean and confidence interval, a line per combination
    of the other non-seed factors (:func:`labctl.plots.metric_vs_factor`)."""
    from labctl.plots import metric_vs_factor

    others = [f for f in factors if f not in (factor, REPLICATE)]
    return metric_vs_factor(summary, others, metric, factor, level_order[factor], confidence,
                            path, identity)


def _write_csv(path: Path, entries: list[dict]) -> None:
    names: list[str] = []
    for e in entries:
        names += [k for k in e if k not in names]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, names)
        w.writeheader()
        w.writerows(entries)


def build_report(store: SweepStore, metrics: list[str] | None = None,
                 confidence: float = 0.95, plots: bool = True) -> dict:
    """The report of a sweep (also written into ``<sweep>/report/``)."""
    if not 0 < confidence < 1:
        raise ValueError(f"--confidence must be between 0 and 1, got {confidence}")
    meta = store.meta()
    rows = store.read_table()
    factors = list(meta["factors"])
    settings = factors + list(meta.get("fixed", []))
    known = metric_columns(rows, settings)
    if metrics:
        bad = [m for m in metrics if m not in known]
        if bad:
            raise ValueError(f"{store.root}: no metric {', '.join(bad)} in the table "
                             f"(metrics: {', '.join(known) or 'none'})")
    else:
        metrics = known
    level_order: dict[str, list[Any]] = {f: [] for f in factors}
    for cell in meta["cells"]:  # the grid's order of levels
        for f in factors:
            if cell["settings"][f] not in level_order[f]:
                level_order[f].append(cell["settings"][f])
    ok = [r for r in rows if r["status"] == "ok"]
    summary = summarise(ok, factors, metrics, level_order, confidence)
    diffs = paired(ok, factors, metrics, level_order, confidence)
    out_dir = store.root / "report"
    out_dir.mkdir(exist_ok=True)
    files = []
    if plots:
        for m in (m for m in metrics if not m.endswith("_std")):
            for f in (f for f in factors if f != REPLICATE):
                p = plot(summary, factors, m, f, level_order, confidence,
                         out_dir / f"{m}-vs-{f}.png",
                         f"labctl sweep {meta['command']} · {store.root.name}")
                if p is not None:
                    files.append(str(p))
    report = {"sweep": str(store.root), "command": meta["command"], "factors": factors,
              "replicate": REPLICATE if REPLICATE in factors else None,
              "confidence": confidence, "cells": len(rows), "ok": len(ok),
              "failed": sum(r["status"] == "failed" for r in rows),
              "pending": sum(r["status"] == "pending" for r in rows),
              "metrics": metrics, "summary": summary, "paired": diffs, "plots": files}
    _write_csv(out_dir / "summary.csv", summary)
    _write_csv(out_dir / "paired.csv", diffs)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def render(report: dict) -> str:
    """The report as text tables."""
    groups = [f for f in report["factors"] if f != REPLICATE]
    pct = f"{report['confidence']:.0%}"
    lines = [f"sweep {report['sweep']}: {report['command']}, {report['cells']} cells "
             f"({report['ok']} ok, {report['failed']} failed, {report['pending']} pending); "
             f"over {'seeds' if report['replicate'] else 'no replicate (no seed factor)'}"]
    for m in report["metrics"]:
        entries = [e for e in report["summary"] if e["metric"] == m]
        rows = [[*groups, "n", "mean", "std", f"{pct} CI"]]
        rows += [[_fmt(e[g]) for g in groups] + [str(e["n"]), _fmt(e["mean"]), _fmt(e["std"]),
                 f"[{_fmt(e['ci_low'])}, {_fmt(e['ci_high'])}]"] for e in entries]
        lines += ["", f"{m}:", _table(rows)]
    if report["paired"]:
        lines += ["", f"paired differences (level - baseline, same seeds; {pct} CI, "
                  "scipy.stats.ttest_rel):"]
        rows = [["metric", "factor", "level - baseline", "within", "n", "mean diff",
                 f"{pct} CI", "t", "p"]]
        for e in report["paired"]:
            within = ", ".join(f"{g}={e[g]}" for g in groups if g in e and g != e["factor"])
            rows.append([e["metric"], e["factor"], f"{e['level']} - {e['baseline']}",
                         within or "-", str(e["n"]), _fmt(e["mean_diff"]),
                         f"[{_fmt(e['ci_low'])}, {_fmt(e['ci_high'])}]", _fmt(e["t"]),
                         _fmt(e["p"])])
        lines.append(_table(rows))
    if report["plots"]:
        lines += ["", "plots: " + ", ".join(report["plots"])]
    return "\n".join(lines)


def report_command(args: argparse.Namespace) -> int:
    store = SweepStore(args.sweep)
    report = build_report(store, args.metric, args.confidence, plots=not args.no_plots)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(render(report))
    return 0
