"""The wafer report: fits and classification of a scan session, as tables, PNGs and HTML.

:func:`analyse` fits every device of a :class:`~labctl.wafer.records.WaferScan` and
classifies devices and pairs (:mod:`labctl.wafer.classify`); :func:`write_report` writes,
in ``<session>/wafer/``: ``devices.parquet`` / ``devices.csv`` (one row per device: die,
pair, device, status, reason, the fitted parameters with their 1-sigma uncertainties,
``sigma_<name>``, the fit residual in V rms), ``pairs.parquet`` / ``pairs.csv`` (one row per
pair: status, reason, mismatch figures, the derivative scan's recommended dI),
``histograms.png``, ``wafer_maps.png``, ``pair_mismatch.png`` and ``index.html`` (images by
relative path, no network). Everything follows from the session's records, so
``labctl wafer report SESSION`` regenerates the same files.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labctl.wafer import plots
from labctl.wafer.classify import (
    PAIR_STATUSES,
    Thresholds,
    Verdict,
    classify_devices,
    classify_pair,
    mismatch,
)
from labctl.wafer.fits import PARAMS, DeviceFit, fit_die
from labctl.wafer.records import WaferScan, read_scan

REPORT_DIR = "wafer"  # under the scan session
Die = tuple[int, int]


@dataclass
class WaferAnalysis:
    """Fits and verdicts of a scan: keys (die, pair, device) and (die, pair)."""

    scan: WaferScan
    thresholds: Thresholds
    fits: dict[tuple[Die, int, str], DeviceFit] = field(default_factory=dict)
    devices: dict[tuple[Die, int, str], Verdict] = field(default_factory=dict)
    pairs: dict[tuple[Die, int], Verdict] = field(default_factory=dict)

    def device_rows(self) -> list[dict]:
        rows = []
        for (die, pair, dev), f in sorted(self.fits.items()):
            v = self.devices[(die, pair, dev)]
            row = {"die_x": die[0], "die_y": die[1], "pair": pair, "device": dev,
                   "status": v.status, "reason": v.reason, "fitted": f.fitted,
                   "iv_mode": f.iv_mode, "r_low_ohm": f.r_low_ohm}
            row |= {k: f.params[k] for k in PARAMS}
            row |= {f"sigma_{k}": f.sigma[k] for k in PARAMS}
            row |= {"residual_rms_v": f.residual_rms_v, "n_points": f.n_points,
                    "n_compliance": f.n_compliance}
            rows.append(row)
        return rows

    def pair_rows(self) -> list[dict]:
        rows = []
        for (die, pair), v in sorted(self.pairs.items()):
            a, b = self.fits[(die, pair, "A")], self.fits[(die, pair, "B")]
            di, dr = mismatch(a, b) if a.fitted and b.fitted else (math.nan, math.nan)
            scan = self.scan.die(die)
            fd = scan.pair(pair) if scan is not None else None
            rows.append({
                "die_x": die[0], "die_y": die[1], "pair": pair, "status": v.status,
                "reason": v.reason, "di_off_over_iw": di, "rp_ratio_dev": dr,
                "score": self.score(di, dr),
                "recommended_di_a": fd.recommended_di_a if fd is not None else math.nan,
            })
        return rows

    def score(self, di_over_iw: float, rp_dev: float) -> float:
        """How mismatched a pair is, 0 for identical devices and 1 at the first threshold
        reached: max(|dI_off| / I_w / max_di_off_over_iw, |R_P ratio - 1| / max_rp_ratio_dev)."""
        t = self.thresholds
        return max(di_over_iw / t.max_di_off_over_iw, rp_dev / t.max_rp_ratio_dev)

    def die_pairs(self, die: Die) -> dict[int, Verdict]:
        return {p: v for (d, p), v in self.pairs.items() if d == tuple(die)}


def analyse(scan: WaferScan, thresholds: Thresholds | None = None,
            mode: str = "current") -> WaferAnalysis:
    """Fit every device of ``scan`` (its ``mode`` I-V) and classify devices and pairs."""
    thresholds = thresholds or Thresholds()
    out = WaferAnalysis(scan, thresholds)
    for die in scan.dies:
        for f in fit_die(die, mode):
            out.fits[(die.die, f.pair, f.device)] = f
    out.devices = classify_devices(out.fits, thresholds)
    pairs = sorted({(d, p) for d, p, _ in out.fits})
    for die, pair in pairs:
        keys = [(die, pair, x) for x in ("A", "B")]
        missing = [k[2] for k in keys if k not in out.fits]
        if missing:
            out.pairs[(die, pair)] = Verdict("broken", f"device {', '.join(missing)} not measured")
            for k in keys:
                if k not in out.fits:
                    out.fits[k] = DeviceFit(pair, k[2], False, "not measured")
                    out.devices[k] = Verdict("broken", f"{k[2]}: not measured")
            continue
        out.pairs[(die, pair)] = classify_pair(out.fits[keys[0]], out.fits[keys[1]],
                                               out.devices[keys[0]], out.devices[keys[1]],
                                               thresholds)
    return out


def _write_table(rows: list[dict], stem: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    for path, write in ((stem.with_suffix(".parquet"), pq.write_table),
                        (stem.with_suffix(".csv"), pacsv.write_csv)):
        tmp = path.with_name(f".{path.name}.tmp")
        write(table, str(tmp))
        os.replace(tmp, path)


def _medians(rows: list[dict], name: str) -> dict[Die, float]:
    by: dict[Die, list[float]] = {}
    for r in rows:
        by.setdefault((r["die_x"], r["die_y"]), [])
        if r["status"] == "ok":
            by[(r["die_x"], r["die_y"])].append(r[name])
    return {d: float(np.median(v)) if v else math.nan for d, v in by.items()}


def _yield(pair_rows: list[dict]) -> dict[Die, float]:
    by: dict[Die, list[bool]] = {}
    for r in pair_rows:
        by.setdefault((r["die_x"], r["die_y"]), []).append(r["status"] == "ok")
    return {d: float(np.mean(v)) for d, v in by.items()}


def write_report(session_dir: str | os.PathLike,
                 thresholds: Thresholds | None = None) -> Path:
    """Analyse the scan in ``session_dir`` and write its report; returns index.html's path."""
    session_dir = Path(session_dir)
    thresholds = thresholds or Thresholds()
    scan = read_scan(session_dir)
    analysis = analyse(scan, thresholds)
    out = session_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    devices, pairs = analysis.device_rows(), analysis.pair_rows()
    if not devices:
        raise ValueError(f"{session_dir}: the scan recorded no device I-V; nothing to report")
    _write_table(devices, out / "devices")
    _write_table(pairs, out / "pairs")
    name = session_dir.name
    plots.histograms(out / "histograms.png", devices, (*PARAMS, "residual_rms_v"),
                     f"{name}: fitted parameters ({sum(r['fitted'] for r in devices)} devices)")
    maps = {k: _medians(devices, k) for k in ("r_p", "tmr0", "i_off", "i_w")}
    maps["pair yield"] = _yield(pairs)
    plots.wafer_maps(out / "wafer_maps.png", maps, f"{name}: per-die median of ok devices, "
                     "pair yield")
    di = np.array([r["di_off_over_iw"] for r in pairs])
    dr = np.array([r["rp_ratio_dev"] for r in pairs])
    plots.pair_mismatch(out / "pair_mismatch.png", di, dr,
                        (thresholds.max_di_off_over_iw, thresholds.max_rp_ratio_dev),
                        f"{name}: pair mismatch")
    index = out / "index.html"
    index.write_text(_html(name, analysis, devices, pairs, di, dr))
    return index


def summary(devices: list[dict], pairs: list[dict]) -> dict:
    """Counts per status of devices and pairs."""
    dev_counts: dict[str, int] = {}
    for r in devices:
        dev_counts[r["status"]] = dev_counts.get(r["status"], 0) + 1
    pair_counts = {s: sum(r["status"] == s for r in pairs) for s in PAIR_STATUSES}
    return {"devices": dev_counts, "pairs": {k: v for k, v in pair_counts.items() if v}}


_UNITS = {"r_p": (1.0, "Ohm"), "tmr0": (1.0, "ratio"), "v_h": (1.0, "V"),
          "i_off": (1e6, "uA"), "i_w": (1e6, "uA")}


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _stat(x: np.ndarray) -> str:
    x = x[np.isfinite(x)]
    if not x.size:
        return "-"
    return f"median {np.median(x):.3g}, p90 {np.percentile(x, 90):.3g}, max {np.max(x):.3g}"


def _html(name: str, analysis: WaferAnalysis, devices: list[dict], pairs: list[dict],
          di: np.ndarray, dr: np.ndarray) -> str:
    s = summary(devices, pairs)
    t = analysis.thresholds
    fitted = [r for r in devices if r["status"] == "ok"]
    param_rows = []
    for k in PARAMS:
        scale, unit = _UNITS[k]
        x = np.array([r[k] for r in fitted]) * scale
        sig = np.array([r[f"sigma_{k}"] for r in fitted]) * scale
        param_rows.append([f"{k} ({unit})", f"{np.median(x):.4g}" if x.size else "-",
                           f"{1.4826 * np.median(np.abs(x - np.median(x))):.3g}" if x.size
                           else "-", f"{np.median(sig):.3g}" if x.size else "-"])
    bad = [[f"{r['die_x']},{r['die_y']}", r["pair"], r["device"], r["status"], r["reason"]]
           for r in devices if r["status"] != "ok"]
    bad_pairs = [[f"{r['die_x']},{r['die_y']}", r["pair"], r["status"], r["reason"]]
                 for r in pairs if r["status"] != "ok"]
    dies = [[f"{d.die[0]}:{d.die[1]}", d.status, d.reason,
             f"{sum(r['status'] == 'ok' for r in pairs if (r['die_x'], r['die_y']) == d.die)}"
             f" / {sum((r['die_x'], r['die_y']) == d.die for r in pairs)}"]
            for d in analysis.scan.dies]
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>wafer report {html.escape(name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:90%}}img{{max-width:100%}}</style>
</head><body>
<h1>Wafer report: {html.escape(name)}</h1>
<p>Scan status: {html.escape(analysis.scan.status)}; {len(analysis.scan.dies)} dies,
{len(devices)} devices, {len(pairs)} pairs. Tables: <a href="devices.csv">devices.csv</a>
(<a href="devices.parquet">Parquet</a>), <a href="pairs.csv">pairs.csv</a>
(<a href="pairs.parquet">Parquet</a>).</p>
<h2>Classification</h2>
{_table(["what", "counts"], [["devices", _counts(s["devices"])],
                              ["pairs", _counts(s["pairs"])]])}
<p>Thresholds (labctl.wafer.classify): {html.escape(", ".join(f"{k} = {v:g}"
                                                    for k, v in t.as_dict().items()))}</p>
<h2>Parameters of ok devices</h2>
{_table(["parameter", "median", "robust sigma (1.4826 MAD)", "median 1-sigma fit uncertainty"],
        param_rows)}
<img src="histograms.png" alt="parameter histograms">
<h2>Wafer maps</h2>
<img src="wafer_maps.png" alt="wafer maps">
{_table(["die", "scan status", "reason", "ok pairs"], dies)}
<h2>Pair mismatch</h2>
<p>|dI_off| / I_w: {_stat(di)}; |R_P,B / R_P,A - 1|: {_stat(dr)}</p>
<img src="pair_mismatch.png" alt="pair mismatch">
<h2>Pairs not ok</h2>
{_table(["die", "pair", "status", "reason"], bad_pairs)}
<h2>Devices not ok</h2>
{_table(["die", "pair", "device", "status", "reason"], bad)}
</body></html>
"""
