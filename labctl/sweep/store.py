"""The sweep directory: the grid as given, the cells, their results, the tidy table.

::

    <sweep>/grid.toml                 the grid as given (an inline grid as its TOML form)
    <sweep>/sweep.json                the command, factors and every cell (key, argv, settings)
    <sweep>/sessions/<id>/            the cells' sessions (``labctl sessions list --sessions-dir``)
    <sweep>/cells/<key>/result.json   a finished cell (ok or failed), written atomically
    <sweep>/cells/<key>/attempt-N.out|.err  each attempt's stdout and stderr
    <sweep>/results.parquet, results.csv    one row per cell, rewritten atomically per cell

A cell's ``result.json`` is the index: a cell is done when it holds ``"status": "ok"``.
Every file is replaced atomically (write, fsync, rename), so a sweep killed at any moment
leaves each one whole: the old version or the new.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from labctl.sweep.cells import Cell
from labctl.sweep.runner import write_json_atomic

#: Columns that differ between two runs of the same grid: timing, and the session ids
#: (they hold the start time).
RUN_COLUMNS = ("wall_s", "started_utc", "session")
STATUS_COLUMNS = ("status", "error", "attempts", "resumed")


class SweepStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def sessions_dir(self) -> Path:
        return self.root / "sessions"

    def cell_dir(self, key: str) -> Path:
        return self.root / "cells" / key

    @property
    def table_path(self) -> Path:
        return self.root / "results.parquet"

    @property
    def csv_path(self) -> Path:
        return self.root / "results.csv"

    def lock(self) -> Any:
        """Hold the sweep directory for this process (released when it exits, even by
        SIGKILL): two sweeps must never run the same cells at once."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        f = open(self.root / ".lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise RuntimeError(f"{self.root}: another labctl sweep is running in it") from None
        return f

    def exists(self) -> bool:
        return (self.root / "sweep.json").is_file()

    def prepare(self, grid_text: str, meta: dict, cells: list[Cell]) -> None:
        """Create the directory, keep the grid and the cells (replacing what a previous
        run of the sweep wrote: results of its cells stay and are reused by key)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.sessions_dir.mkdir(exist_ok=True)
        (self.root / "cells").mkdir(exist_ok=True)
        tmp = self.root / ".grid.toml.tmp"
        tmp.write_text(grid_text)
        os.replace(tmp, self.root / "grid.toml")
        write_json_atomic(self.root / "sweep.json", {
            **meta,
            "cells": [{"index": c.index, "key": c.key, "argv": list(c.argv),
                       "settings": c.settings} for c in cells],
        })

    def meta(self) -> dict:
        try:
            return json.loads((self.root / "sweep.json").read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.root}: not a sweep directory (sweep.json: {exc})") from None

    def result(self, key: str) -> dict | None:
        try:
            return json.loads((self.cell_dir(key) / "result.json").read_text())
        except (OSError, ValueError):
            return None

    def write_result(self, key: str, record: dict) -> None:
        self.cell_dir(key).mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.cell_dir(key) / "result.json", record)

    def rows(self, cells: list[dict], option_dests: set[str]) -> list[dict]:
        """One row per cell: settings, status, headline metrics, attempts, session, time."""
        results = {c["key"]: self.result(c["key"]) for c in cells}
        metric_names: list[str] = []
        for r in results.values():
            for name in (r or {}).get("metrics", {}):
                if name not in metric_names and name not in option_dests:
                    metric_names.append(name)
        rows = []
        for c in cells:
            r = results[c["key"]] or {}
            metrics = r.get("metrics", {})
            started = r.get("started")
            rows.append({
                "cell": c["index"], "key": c["key"], **c["settings"],
                "status": r.get("status", "pending"), "error": r.get("error", ""),
                **{m: metrics.get(m) for m in metric_names},
                "attempts": r.get("attempts", 0), "resumed": bool(r.get("resumed", False)),
                "session": r.get("session"), "wall_s": r.get("wall_s"),
                "started_utc": (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
                                if started else None),
            })
        return rows

    def write_table(self, rows: list[dict]) -> None:
        """results.parquet and results.csv, each replaced atomically."""
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows)
        for path, write in ((self.table_path, pq.write_table), (self.csv_path, pacsv.write_csv)):
            tmp = path.with_name(f".{path.name}.tmp")
            write(table, str(tmp))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)

    def read_table(self) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        if not self.table_path.is_file():
            raise ValueError(f"{self.root}: no results table ({self.table_path.name}); run the "
                             "sweep first")
        return pq.read_table(self.table_path).to_pylist()
