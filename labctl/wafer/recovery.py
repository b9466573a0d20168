"""How well a scan of a *simulated* wafer was analysed: fits against the simulator's true
parameters and classification against the planted defects (through the oracle only).

``python -m labctl.wafer.recovery SESSION`` prints, for a wafer-scan session recorded on a
simulated station: the median (and 90th percentile, max) relative error of every fitted
parameter of the healthy devices, the confusion table planted -> classified, every device
classified otherwise than planted, and the fit time. Not part of the test suite: a full
wafer takes a while. Units: relative errors are ratios; times in s.
"""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

from labctl.commands.lifecycle import recorded_station
from labctl.records.session import Session
from labctl.station.oracle import Oracle
from labctl.wafer.fits import PARAMS
from labctl.wafer.records import read_scan
from labctl.wafer.report import analyse


def recovery(session_dir: Path) -> dict:
    """The figures above as a dict (JSON-able)."""
    config = recorded_station(Session(session_dir))
    if config.simulation is None:
        raise ValueError(f"{session_dir}: recorded on real instruments: no truth to compare")
    oracle = Oracle.from_settings(config.simulation, config.wiring)
    scan = read_scan(session_dir)
    wall, cpu = time.perf_counter(), time.process_time()
    analysis = analyse(scan)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    planted = oracle.planted_defects()
    order = sorted(config.pairs)
    rel: dict[str, list[float]] = {k: [] for k in PARAMS}
    confusion: collections.Counter = collections.Counter()
    wrong = []
    for key, fit in analysis.fits.items():
        die, pair, dev = key
        truth, got = planted.get(key, "ok"), analysis.devices[key].status
        confusion[f"{truth} -> {got}"] += 1
        if truth != got:
            wrong.append({"die": list(die), "pair": pair, "device": dev, "planted": truth,
                          "classified": got, "reason": analysis.devices[key].reason})
        if truth == "ok" and fit.fitted:
            p = oracle.die_params(die)
            j, d = order.index(pair), "AB".index(dev)
            for k in PARAMS:
                rel[k].append(abs(fit.params[k] / float(np.asarray(getattr(p, k))[j, d]) - 1))
    return {
        "session": str(session_dir),
        "devices": len(analysis.fits),
        "fit_and_classify_s": {"wall": round(wall, 2), "cpu": round(cpu, 2)},
        "relative_error": {k: {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
                               "max": float(np.max(v))} for k, v in rel.items() if v},
        "confusion": dict(sorted(confusion.items())),
        "misclassified": wrong,
        "pairs": dict(collections.Counter(v.status for v in analysis.pairs.values())),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m labctl.wafer.recovery SESSION", file=sys.stderr)
        return 2
    print(json.dumps(recovery(Path(argv[0])), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
