"""A grid's cells: each one run of the command, keyed by a hash of its full configuration.

The key hashes every option value after the command's defaults (so ``--folds 5`` and no
``--folds`` are the same cell), the command, the labctl version, and the content of a
station file the cell names: a cell whose result could differ gets another key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.records.session import _labctl_version
from labctl.sweep.grid import Grid
from labctl.sweep.options import RESERVED, GridError, jsonable


@dataclass(frozen=True)
class Cell:
    """One cell: ``argv`` are the command's words and options as given to it (without
    the options the sweep adds), ``settings`` the grid's options as values (for the
    table), ``config`` what the key hashes."""

    index: int
    key: str
    argv: tuple[str, ...]
    settings: dict[str, Any]
    config: dict[str, Any]

    def label(self, factors: list[str]) -> str:
        return ", ".join(f"{k}={self.settings[k]}" for k in factors)


def cell_key(config: dict) -> str:
    """12 hex digits of the SHA-256 of the configuration as canonical JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _file_digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def table_value(value: Any) -> Any:
    """An option value as a table cell: lists as "64,64", paths as text."""
    value = jsonable(value)
    if isinstance(value, list):
        return ",".join(map(str, value))
    return value


def build_cells(grid: Grid) -> list[Cell]:
    """Every cell of ``grid``, parsed by the command's own parser (GridError naming the
    cell's options if it refuses one)."""
    opts = grid.options
    cells = []
    version = _labctl_version()
    for index, combo in enumerate(grid.combinations()):
        argv: list[str] = list(opts.words)
        for factor, level in combo:
            if factor.is_flag:
                if level:
                    argv.append(factor.flag)
            else:
                argv += [factor.flag, str(level)]
        where = f"{grid.source}: cell {index}"
        ns = opts.parse(argv[len(opts.words):], where)
        values = {k: jsonable(v) for k, v in sorted(vars(ns).items())
                  if not k.startswith("_") and k not in RESERVED and not callable(v)}
        config: dict[str, Any] = {"command": opts.command, "labctl_version": version,
                                  "options": values}
        if values.get("station"):
            config["station_file_sha256"] = _file_digest(values["station"])
        settings = {f.dest: table_value(getattr(ns, f.dest)) for f, _ in combo}
        cells.append(Cell(index, cell_key(config), tuple(argv), settings, config))
    seen: dict[str, Cell] = {}
    for c in cells:
        if c.key in seen:
            first = seen[c.key]
            raise GridError(f"{grid.source}: cells {first.index} ({' '.join(first.argv)}) and "
                            f"{c.index} ({' '.join(c.argv)}) are the same run (two levels "
                            "with one value?)")
        seen[c.key] = c
    return cells
