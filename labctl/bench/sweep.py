"""`labctl bench --only sweep`: a 2 x 4 grid of short Iris runs three ways, side by side.

The grid: ``train iris --backend model --folds 2 --epochs 300`` over ``--grad fd,fd-swap``
and ``--seed 0:4`` (8 cells, each a `labctl train iris` subprocess of about 2 s). It runs
on the local executor with one worker (sequential) and with two, then on a Dask
LocalCluster of two single-threaded workers; each into its own sweep directory. Figures:
wall time of each (s), the speedup of two local workers over one, the Dask cluster's
start-up time and its overhead per cell against the two local workers ((Dask run - local
run) / cells, s), whether the three tables agree but for the timing columns, and the
machine's load average (other work on it skews every ratio).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

GRID = ["--backend", "model", "--folds", "2", "--epochs", "300", "--grad", "fd,fd-swap",
        "--seed", "0:4"]


def _sweep(out: Path, executor) -> tuple[float, list[dict]]:
    from labctl.sweep.cells import build_cells
    from labctl.sweep.driver import run_sweep
    from labctl.sweep.grid import parse_inline
    from labctl.sweep.store import SweepStore

    grid = parse_inline(("train", "iris"), list(GRID))
    cells = build_cells(grid)
    store = SweepStore(out)
    t0 = time.perf_counter()
    result = run_sweep(grid, cells, store, executor, retries=0, progress=False)
    wall = time.perf_counter() - t0
    if result.ok != len(cells):
        cell, error = result.failed[0]
        raise RuntimeError(f"bench sweep {out}: {len(result.failed)} cell(s) failed, e.g. "
                           f"cell {cell.index} ({' '.join(cell.argv)}): {error}")
    return wall, store.read_table()


def run(dask: bool = True) -> dict:
    from labctl.sweep.executors import DaskExecutor, LocalExecutor
    from labctl.sweep.store import RUN_COLUMNS

    def same(a: list[dict], b: list[dict]) -> bool:
        strip = [{k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in a]
        return strip == [{k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in b]

    load_before = os.getloadavg()[0]  # other work on the machine skews the ratios
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seq_s, seq = _sweep(root / "seq", LocalExecutor(1))
        par_s, par = _sweep(root / "par", LocalExecutor(2))
        n = len(seq)
        out: dict = {
            "grid": "train iris " + " ".join(GRID),
            "cells": n,
            "cell_wall_s_mean_sequential": sum(r["wall_s"] for r in seq) / n,
            "local_1_worker_s": seq_s,
            "local_2_workers_s": par_s,
            "speedup_2_workers": seq_s / par_s,
            "tables_identical": same(seq, par),
        }
        if dask:
            t0 = time.perf_counter()
            executor = DaskExecutor(None, 2)
            startup = time.perf_counter() - t0
            dask_s, dsk = _sweep(root / "dask", executor)
            out["dask"] = {
                "localcluster_startup_s": startup,
                "run_s": dask_s,
                "overhead_per_cell_s": (dask_s - par_s) / n,
                "tables_identical": same(seq, dsk),
            }
    out["cpus"] = os.cpu_count()
    out["load_average_1min_before_after"] = [load_before, os.getloadavg()[0]]
    return out
