"""`labctl bench --only wirelog`: the compact wire log against the JSON lines it replaced.

(a) Bytes: one `labctl train iris --epochs N` (default folds, time scale 0, seeded: the same
    traffic every run; N omitted: the default run) recorded with JSON lines
    (``LABCTL_WIRE_LOG_FORMAT=jsonl``) and with the compact format; ``wire/`` per instrument
    and in all, and the ratio. The messages of the two sessions are checked equal (kind and
    text or bytes, in order). ``where``: the compact log's bytes by kind of message (ADC
    blocks, SMU readings, source lists, commands, times), each kind coded as in the log
    but compressed on its own (so they add up to about the log's size, not exactly).
(b) Wall time: the same command ``repeats`` times each way, interleaved, as subprocesses;
    the medians and their ratio (the recording overhead of the format on a training run),
    the ratio of each back-to-back pair, and the CPU time of each run (user + system, the
    simulator and the writer process included: the cost on a machine with no core to
    spare).
(c) Write cost per record: the JSON-lines session's messages written again through each
    writer (durable: a group, or a flush, at every reply), in this process: JSON lines, the
    compact format coded in this process (``wlog_inline``: the coding's cost) and by the
    writer process (``wlog_process``: what the instruments' process pays; ``close`` waits
    for the writer to finish); microseconds per record by kind and size (``long``: 64
    characters or bytes and more), and the read back of the whole log.

Both on ``--epochs 5`` and on the default run (minutes each: a bench, not a test). Run
``python -m labctl.bench.wirelog [--epochs N|default ...] [--repeats R] [--no-cost]``
(prints JSON) or ``labctl bench --only wirelog`` (both runs, 3 repeats).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import zstandard

from instruments.wire_codec import Reader, varint
from instruments.wire_log import ZSTD_LEVEL, CompactWriter, WireLog, read_entries


def _train(sessions: Path, fmt: str, epochs: int | None) -> tuple[float, float, Path]:
    """One run: wall time (s), CPU time (s, user + system of labctl, its simulator and
    its wire-log writer process: all waited for), session directory."""
    env = {**os.environ, "LABCTL_WIRE_LOG_FORMAT": fmt}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "train", "iris",
         *([] if epochs is None else ["--epochs", str(epochs)]),
         "--json", "--no-progress", "--sessions-dir", str(sessions)],
        capture_output=True, text=True, env=env, check=False,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"labctl train iris ({fmt}) failed ({proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    session = sessions / json.loads(proc.stdout)["session"]
    return wall, cpu, session


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


def where(path: Path) -> dict[str, int]:
    """(a)'s ``where``: bytes of the compact log of ``path``'s messages by kind, each kind
    coded by :class:`~instruments.wire_log.CompactWriter` (so with the same numeric and
    binary codings, echoes and repeats) and compressed apart (zstd, level of the log)."""
    entries = read_entries(path).entries
    streams: dict[str, list] = {}

    def label(kind: str, value: str | bytes) -> str:
        if kind in ("rb", "x"):
            return "binary replies" if len(value) >= 64 else "binary heads"
        if len(value) < 64:
            return "short commands" if kind == "w" else "short replies"
        if kind == "w":
            return "long commands (source lists)"
        return "long replies (readings)"

    class Split:
        """Takes the place of the writer's compressor: each record to its kind's own."""

        def __init__(self) -> None:
            self.kind = ""

        def compress(self, record: bytes) -> bytes:
            head = 1 + len(varint(Reader(record, 1).uint()))  # the head and the time
            for name, part in (("times (record heads)", record[:head]), (self.kind,
                                                                         record[head:])):
                stream = streams.setdefault(name, [zstandard.ZstdCompressor(
                    level=ZSTD_LEVEL).compressobj(), 0])
                stream[1] += len(stream[0].compress(part))
            return b""

        def flush(self, mode: int) -> bytes:
            return b""

    with tempfile.TemporaryDirectory() as tmp:
        writer = CompactWriter(str(Path(tmp) / "split.wlog"))
        split = Split()
        writer._co = split
        for kind, t, value in entries:
            split.kind = label(kind, value)
            writer.add(kind, round((t or 0.0) * 1e6), value)
        writer.close()
    out = {}
    for name, (co, size) in streams.items():
        out[name] = size + len(co.flush())
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def run(epochs: int | None = 5, repeats: int = 3, cost: bool = True) -> dict[str, Any]:
    """(a), (b) and (c) of the module doc for one run (``epochs`` None: the default one);
    sizes in bytes, times in s unless named us."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        walls: dict[str, list[float]] = {"jsonl": [], "wlog": []}
        cpus: dict[str, list[float]] = {"jsonl": [], "wlog": []}
        sessions: dict[str, Path] = {}
        for k in range(repeats):
            for fmt in ("jsonl", "wlog"):
                wall, cpu, session = _train(tmp / f"{fmt}{k}", fmt, epochs)
                walls[fmt].append(wall)
                cpus[fmt].append(cpu)
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
        kinds = {name: where(sessions["jsonl"] / "wire" / f"{name}.jsonl")
                 for name in sizes["jsonl"]}
        cost_dir = tmp / "cost"
        cost_dir.mkdir()
        costs = _write_cost(sessions["jsonl"], cost_dir) if cost else None
    median = {fmt: statistics.median(w) for fmt, w in walls.items()}
    cpu_median = {fmt: statistics.median(c) for fmt, c in cpus.items()}
    return {
        "command": "labctl train iris" + ("" if epochs is None else f" --epochs {epochs}")
                   + f" (default folds), {repeats}x each way, interleaved",
        "bytes": {
            "jsonl": sizes["jsonl"], "wlog": sizes["wlog"], "total": total,
            "ratio": total["jsonl"] / total["wlog"],
            "ratio_by_instrument": {n: sizes["jsonl"][n] / sizes["wlog"][n]
                                    for n in sizes["jsonl"]},
            "where": kinds,
        },
        "messages_identical": same,
        "wall_s": walls,
        "wall_median_s": median,
        "wall_ratio_wlog_over_jsonl": median["wlog"] / median["jsonl"],
        # Pair by pair (each pair ran back to back): less exposed to a machine whose load
        # changes over minutes than the ratio of the medians.
        "wall_ratio_pairs": [w / j for w, j in zip(walls["wlog"], walls["jsonl"],
                                                   strict=True)],
        # CPU seconds, writer process included: what the recording costs a loaded machine.
        "cpu_s": cpus,
        "cpu_median_s": cpu_median,
        "cpu_ratio_wlog_over_jsonl": cpu_median["wlog"] / cpu_median["jsonl"],
        "write_cost": costs,
    }


def run_both(repeats: int = 3) -> dict[str, Any]:
    """:func:`run` on ``--epochs 5`` and on the default run (what ``labctl bench --only
    wirelog`` reports)."""
    return {"epochs_5": run(5, repeats), "default": run(None, repeats, cost=False)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m labctl.bench.wirelog",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", nargs="+", default=["5", "default"],
                        help="runs to measure: epoch counts, or 'default' (the default run)")
    parser.add_argument("--repeats", type=int, default=3, help="runs each way, interleaved")
    parser.add_argument("--no-cost", action="store_true", help="skip (c), the cost per record")
    args = parser.parse_args(argv)
    out = {}
    for epochs in args.epochs:
        n = None if epochs == "default" else int(epochs)
        out[f"epochs_{epochs}"] = run(n, args.repeats, cost=not args.no_cost)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
