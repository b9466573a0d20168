"""A small wafer scan of the simulated round wafer, made once per test run and shared by
the wafer-analysis tests (tests/test_wafer_report.py, tests/test_pair_selection.py).

A 3 x 3 round wafer ("round-3", 9 dies) of 8 pairs per die. The seed is the first whose
planted defects (read through the oracle, as tests may) put a broken device on the die
the prober starts over, leave at least two healthy pairs there, and put every kind of
defect (open, short, broken, out of family) on at most three dies: those are scanned,
with short sweeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from labctl.station.file import BUILTIN_TEXT, parse_station
from labctl.station.oracle import Oracle

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
KINDS = {"open", "short", "broken", "out_of_family"}
N_PAIRS = 8
_CACHE: dict[str, object] = {}


@dataclass
class Scanned:
    work: Path  # holds station.toml
    sessions: Path
    scan: Path  # the wafer-scan session
    dies: list[tuple[int, int]]  # the dies scanned; dies[0] is under the probes at start
    planted: dict  # (die, pair, "A"|"B") -> kind, on the scanned dies

    def bad_pairs(self, die) -> dict[int, str]:
        """pair -> the kind planted on one of its devices, on ``die``."""
        return {p: kind for (d, p, _), kind in self.planted.items() if d == tuple(die)}

    def ok_pairs(self, die) -> list[int]:
        return [p for p in range(1, N_PAIRS + 1) if p not in self.bad_pairs(die)]


def station_text(seed: int = 1) -> str:
    return (BUILTIN_TEXT.replace("time_scale = 0.0", 'time_scale = 0.0\nwafer = "round-3"')
            .replace("n_pairs = 16", f"n_pairs = {N_PAIRS}")
            .replace("\nseed = 1\n", f"\nseed = {seed}\n"))


def _plan(seed: int) -> tuple[list, dict] | None:
    config = parse_station(station_text(seed), "<wafer test station>")
    oracle = Oracle.from_settings(config.simulation, config.wiring)
    start = min(oracle._world.dies, key=lambda d: (d[1], d[0]))  # the prober's first die
    planted = oracle.planted_defects()
    on_start = {p: k for (d, p, _), k in planted.items() if d == start}
    if "broken" not in on_start.values() or N_PAIRS - len(on_start) < 2:
        return None
    # The start die, then the dies that add the most kinds not covered yet.
    dies, covered = [start], set(on_start.values())
    others = sorted({d for d, _, _ in planted} - {start})
    while covered != KINDS and len(dies) < 3:
        def gain(d, covered=covered):
            return len({k for (dd, _, _), k in planted.items() if dd == d} - covered)

        best = max(others, key=gain)
        if gain(best) == 0:
            break
        dies.append(best)
        others.remove(best)
        covered |= {k for (d, _, _), k in planted.items() if d == best}
    if covered != KINDS:
        return None
    return dies, {k: v for k, v in planted.items() if k[0] in dies}


def labctl(*args, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labctl.cli", *map(str, args)], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=timeout, check=False)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def scanned(tmp_path_factory) -> Scanned:
    """The scan, made on first use."""
    if "scan" not in _CACHE:
        seed, plan = next((s, p) for s in range(1, 200) if (p := _plan(s)) is not None)
        dies, planted = plan
        work = tmp_path_factory.mktemp("wafer")
        (work / "station.toml").write_text(station_text(seed))
        sessions = work / "sessions"
        proc = ok(labctl("wafer", "scan", "--station", "station.toml", "--sessions-dir",
                         sessions, "--dies", ",".join(f"{c}:{r}" for c, r in dies),
                         "--iv-points", 31, "--voltage-points", 0, "--fd-points", 3,
                         "--fd-steps", "1e-6", "--json", cwd=work))
        _CACHE["scan"] = Scanned(work, sessions, sessions / json.loads(proc.stdout)["session"],
                                 dies, planted)
    return _CACHE["scan"]  # type: ignore[return-value]

