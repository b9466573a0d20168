"""`labctl bench --only wirelog`: the compact wire log against the JSON lines it replaced.

(a) Bytes: one `labctl train iris --epochs N` (default folds, time scale 0, seeded: the same
    traffic every run) recorded with JSON lines (``LABCTL_WIRE_LOG_FORMAT=jsonl``) and with
    the compact format; ``wire/`` per instrument and in all, and the ratio. The messages of
    the two sessions are checked equal (kind and text or bytes, in order).
(b) Wall time: the same command ``repeats`` times each way, interleaved, as subprocesses;
    the medians and their ratio (the recording overhead of the format on a training run).
(c) Write cost per record: the JSON-lines session's messages written again through each
    writer (durable: a group, or a flush, at every reply), in this process: JSON lines, the
    compact format coded in this process (``wlog_inline``: the coding's cost) and by the
    writer process (``wlog_process``: what the instruments' process pays; ``close`` waits
    for the writer to finish); microseconds per record by kind and size (``long``: 64
    characters or bytes and more), and the read back of the whole log.

Run ``python -m labctl.bench.wirelog`` (prints JSON) or ``labctl bench --only wirelog``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from instruments.wire_log import WireLog, read_entries


def _train(sessions: Path, fmt: str, epochs: int) -> tuple[float, Path]:
    env = {**os.environ, "LABCTL_WIRE_LOG_FORMAT": fmt}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "train", "iris", "--epochs", str(epochs),
         "--json", "--no-progress", "--sessions-dir", str(sessions)],
        capture_output=True, text=True, env=env, check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"labctl train iris ({fmt}) failed ({proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    session = sessions / json.loads(proc.stdout)["session"]
    return wall, session


def _sizes(session: Path) -> dict[str, int]:
    return {p.stem: p.stat().st_size for p in sorted((session / "wire").iterdir())}


def _write_cost(session: Path, tmp: Path) -> dict[str, Any]:
    """Each writer on the recorded messages: us per record by kind and size."""
    logs = {p.stem: read_entries(p).entries for p in sorted((session / "wire").iterdir())}
    out: dict[str, Any] = {}
    for label, suffix, writer in (("jsonl", ".jsonl", "inline"), ("wlog_inline", ".wlog",
                                  "inline"), ("wlog_process", ".wlog", "process")):
        os.environ["LABCTL_WIRE_LOG_WRITER"] = writer
        spent: dict[str, float] = defaultdict(float)
        count: dict[str, int] = defaultdict(int)
        read_s = 0.0
        for name, entries in logs.items():
            path = tmp / f"{name}.{label}{suffix}"
            log = WireLog(path, durable=True)
            emit = {"w": log.written, "r": log.read, "rb": log.read_binary,
                    "x": log.discarded}
            for kind, _, value in entries:
                key = f"{kind} {'long' if len(value) >= 64 else 'short'}"
                t0 = time.perf_counter()
                emit[kind](value)  # type: ignore[operator, arg-type]
                spent[key] += time.perf_counter() - t0
                count[key] += 1
            t0 = time.perf_counter()
            log.close()  # the writer process finishes here: its lag counts
            spent["close"] += time.perf_counter() - t0
            count["close"] += 1
            t0 = time.perf_counter()
            read_entries(path)
            read_s += time.perf_counter() - t0
        total = sum(spent.values())
        out[label] = {
            "records": sum(count.values()),
            "write_s": total,
            "us_per_record": 1e6 * total / max(1, sum(count.values())),
            "us_per_record_by_kind": {k: 1e6 * spent[k] / count[k] for k in sorted(spent)},
            "records_by_kind": dict(sorted(count.items())),
            "read_s": read_s,
        }
    os.environ.pop("LABCTL_WIRE_LOG_WRITER", None)
    return out


def run(epochs: int = 5, repeats: int = 3) -> dict[str, Any]:
    """(a), (b) and (c) of the module doc; sizes in bytes, times in s unless named us."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        walls: dict[str, list[float]] = {"jsonl": [], "wlog": []}
        sessions: dict[str, Path] = {}
        for k in range(repeats):
            for fmt in ("jsonl", "wlog"):
                wall, session = _train(tmp / f"{fmt}{k}", fmt, epochs)
                walls[fmt].append(wall)
                sessions.setdefault(fmt, session)
        sizes = {fmt: _sizes(s) for fmt, s in sessions.items()}
        same = all(
            [(k, v) for k, _, v in read_entries(sessions["jsonl"] / "wire" / f"{n}.jsonl"
                                                ).entries]
            == [(k, v) for k, _, v in read_entries(sessions["wlog"] / "wire" / f"{n}.wlog"
                                                   ).entries]
            for n in sizes["jsonl"]
        )
        total = {fmt: sum(s.values()) for fmt, s in sizes.items()}
        cost_dir = tmp / "cost"
        cost_dir.mkdir()
        cost = _write_cost(sessions["jsonl"], cost_dir)
    median = {fmt: statistics.median(w) for fmt, w in walls.items()}
    return {
        "command": f"labctl train iris --epochs {epochs} (default folds), "
                   f"{repeats}x each way, interleaved",
        "bytes": {
            "jsonl": sizes["jsonl"], "wlog": sizes["wlog"], "total": total,
            "ratio": total["jsonl"] / total["wlog"],
            "ratio_by_instrument": {n: sizes["jsonl"][n] / sizes["wlog"][n]
                                    for n in sizes["jsonl"]},
        },
        "messages_identical": same,
        "wall_s": walls,
        "wall_median_s": median,
        "wall_ratio_wlog_over_jsonl": median["wlog"] / median["jsonl"],
        "write_cost": cost,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
