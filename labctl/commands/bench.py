"""`labctl bench`: the benchmarks (long runs that are not part of the test suite).

Sections (``--only`` picks some; ``mnist`` runs only when asked for, it takes minutes):

- ``smu``: queries/s of a raw-socket client against the simulated SMU.
- ``smu-models``: one 2500-point list sweep at NPLC 0.01 and 1 on the 2400 trigger-link
  pair, the 2602B script and the B2902A list, side by side (labctl/bench/smu_models.py).
- ``parallel-pairs``: an Iris epoch's measurements (120 x 8, fd-swap) with one pair at a
  time and with two pairs in parallel, instrument time side by side.
- ``transport``: a host-paced write+query pair over loopback with TCP_NODELAY and, side
  by side, with Nagle left on; messages per list sweep of N points.
- ``protocol``: an Iris-sized batch (120 samples x 8 neurons, swap mode) at time scale 1:
  round trips, wall time and instrument time (the simulator's time model) in list mode
  at NPLC 1 and 0.01, and host-paced at NPLC 0.01.
- ``train``: `labctl train iris` (5 folds, one hidden layer, time scale 0) as a
  subprocess, its wall time; then ``replay``: `labctl replay` of that session, the ratio.
- ``mnist``: `labctl simulate mnist` on ../shared/datasets/mnist.
- ``storm``: 100 random signals (SIGINT, SIGTERM, SIGHUP, SIGKILL, seeded) over real
  `labctl train iris` and `labctl iv` processes; tried and held per signal.
- ``wirelog``: wire-log bytes of `labctl train iris --epochs 5` and of the default run, JSON
  lines against the compact format; their wall times side by side; write cost per record
  (bench/wirelog.py).
- ``sweep``: a 2 x 4 grid of short Iris runs (`labctl sweep`): local executor with 2
  workers against 1, side by side, and a Dask LocalCluster's overhead per cell.
- ``wafer``: a wafer scan's wall time per die against the simulator's instrument time at
  NPLC 1, time scale 1 (2 pairs, 3 dies of the round wafer; bench/wafer.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECTIONS = ("smu", "smu-models", "parallel-pairs", "transport", "protocol",
            "train", "replay", "mnist", "storm", "sweep", "wirelog", "wafer")
DEFAULT = ("smu", "transport", "protocol", "train", "replay")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT),
        help=f"comma-separated sections among {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--mnist-dir",
        default="../shared/datasets/mnist",
        help="MNIST IDX files for the mnist section",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON only")


def bench_protocol(batch: int = 120, neurons: int = 8, seed: int = 0) -> dict:
    """One Iris-sized batch on the simulated station at time scale 1, three ways."""
    from labctl.station.file import load_station
    from labctl.station.runtime import open_station
    from protocols.engine import Engine
    from protocols.finite_difference import fd_batch

    rng = np.random.default_rng(seed)
    currents = rng.uniform(-60e-6, 90e-6, (batch, neurons))
    pairs = list(range(1, neurons + 1))
    out = {}
    for label, mode, nplc in (
        ("list_nplc1", "list", 1.0),
        ("list_nplc0.01", "list", 0.01),
        ("host_nplc0.01", "host", 0.01),
    ):
        config = load_station(None, time_scale=1.0)
        with open_station(config) as station:
            engine = Engine(station, mode=mode, nplc=nplc)
            engine.run(fd_batch(currents[:2, :1], pairs[:1], 1e-6, "swap"))  # connect, configure
            trips0, clock0 = station.round_trips(), station.oracle.instrument_time_s()
            t0 = time.perf_counter()
            engine.run(fd_batch(currents, pairs, 1e-6, "swap"))
            wall = time.perf_counter() - t0
            instrument = station.oracle.instrument_time_s() - clock0
            out[label] = {
                "round_trips": station.round_trips() - trips0,
                "wall_s": wall,
                "instrument_s": instrument,
                "overhead": (wall - instrument) / instrument,
                "points": engine.stats.padded_points,
            }
    out["list_vs_host_speedup_nplc0.01"] = (
        out["host_nplc0.01"]["wall_s"] / out["list_nplc0.01"]["wall_s"]
    )
    return out


def _labctl(*args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", *args], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"labctl {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    return wall, proc.stdout


def bench_train_and_replay(replay: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        wall, stdout = _labctl("train", "iris", "--json", "--no-progress", "--sessions-dir", tmp)
        summary = json.loads(stdout)
        out = {
            "train": {
                "wall_s": wall,
                "accuracy": summary["accuracy"],
                "tanh_accuracy": summary["tanh_accuracy"],
                "session": summary["session"],
            }
        }
        if replay:
            session = str(Path(tmp) / summary["session"])
            replay_wall, stdout = _labctl("replay", session, "--json")
            r = json.loads(stdout)
            out["replay"] = {
                "wall_s": replay_wall,
                "replay_s": r["replay_s"],
                "recorded_s": r["recorded_s"],
                "speedup": r["speedup"],
                "metrics_identical": r["metrics_identical"],
                "final_weights_identical": r["final_weights_identical"],
                "speedup_whole_command": r["recorded_s"] / replay_wall,
            }
    return out


def run(args: argparse.Namespace) -> int:
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ValueError(
            f"--only: unknown section(s) {', '.join(bad)}; known: {', '.join(SECTIONS)}"
        )
    results: dict[str, object] = {}
    if "smu" in sections:
        from labctl.bench.smu import run as smu

        results["smu"] = smu(2.0)
    if "smu-models" in sections:
        from labctl.bench.smu_models import run as smu_models
        from labctl.bench.smu_models import table

        results["smu-models"] = smu_models()
        if not args.json:
            print(table(results["smu-models"]))
    if "parallel-pairs" in sections:
        from labctl.bench.parallel_pairs import run as parallel_pairs
        from labctl.bench.parallel_pairs import table as parallel_table

        results["parallel-pairs"] = parallel_pairs()
        if not args.json:
            print(parallel_table(results["parallel-pairs"]))
    if "transport" in sections:
        from labctl.bench.transport import run as transport

        results["transport"] = transport()
    if "protocol" in sections:
        results["protocol"] = bench_protocol()
    if "train" in sections or "replay" in sections:
        results |= bench_train_and_replay("replay" in sections)
    if "mnist" in sections:
        wall, stdout = _labctl(
            "simulate", "mnist", "--json", "--no-progress", "--data-dir", args.mnist_dir
        )
        results["mnist"] = {"wall_s": wall, "summary": json.loads(stdout)}
    if "storm" in sections:
        from labctl.bench.storm import run as storm

        result = storm(100, 0)
        results["storm"] = {k: v for k, v in result.items() if k != "runs"}
    if "wirelog" in sections:
        from labctl.bench.wirelog import run_both as wirelog

        results["wirelog"] = wirelog()
    if "sweep" in sections:
        from labctl.bench.sweep import run as sweep

        results["sweep"] = sweep()
    if "wafer" in sections:
        from labctl.bench.wafer import run as wafer
        from labctl.bench.wafer import table as wafer_table

        results["wafer"] = wafer()
        if not args.json:
            print(wafer_table(results["wafer"]))
    if args.json:
        print(json.dumps(results, indent=2, default=float))
    else:
        for name, value in results.items():
            print(f"== {name}")
            print(json.dumps(value, indent=2, default=float))
    return 0
