"""A sweep's grid: a command and levels for any of its options, from a TOML file or inline.

Grid file::

    command = "train iris"      # any command with a --json summary
    name = "variability"        # optional: the sweep directory's name
    [fixed]                     # given to every cell
    backend = "model"
    folds = 2
    [grid]                      # the cartesian product of these levels
    seed = "0:10"               # a range: 0..9 ("start:stop[:step]", stop excluded)
    variability = ["nominal", "pronounced"]
    di = [0.5e-6, 1e-6, 2e-6]
    # distill = [true, false]   # a flag (simulate mnist's --distill): given or not

Keys are the command's long options without dashes (``i-center`` or ``i_center``).
Inline: ``labctl sweep train iris --seed 0:10 --variability nominal,pronounced``; levels
are separated by commas, or by semicolons when a level itself holds commas
(``--widths "64,64;128,128"``); an option given one level is fixed. Every level is
checked by the option's own type and choices before any cell runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from labctl.sweep.options import CommandOptions, GridError, is_flag

RANGE = re.compile(r"^\s*(-?\d+)\s*:\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?$")
TOP_KEYS = {"command", "name", "grid", "fixed"}


@dataclass
class Factor:
    """One option of the grid and its levels (argv texts, or booleans for a flag)."""

    dest: str
    flag: str  # the long option, e.g. "--di"
    levels: list[Any]
    values: list[Any]  # the levels as the option's type makes them
    is_flag: bool = False


@dataclass
class Grid:
    options: CommandOptions
    name: str
    factors: list[Factor]
    fixed: list[Factor]
    text: str  # the grid as given (TOML), kept in the sweep directory
    source: str = "<inline>"
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def n_cells(self) -> int:
        n = 1
        for f in self.factors:
            n *= len(f.levels)
        return n

    def digest(self) -> str:
        """A short hash of what the grid asks for (its sweep directory's suffix)."""
        canon = {"command": self.options.command,
                 "factors": [[f.dest, [str(v) for v in f.levels]] for f in self.factors],
                 "fixed": [[f.dest, str(f.levels[0])] for f in self.fixed]}
        return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:8]

    def combinations(self) -> list[list[tuple[Factor, Any]]]:
        """Every cell's (factor, level) pairs: fixed options first, then the factors, in
        the grid's order (the last factor varies fastest)."""
        fixed = [(f, f.levels[0]) for f in self.fixed]
        return [fixed + list(zip(self.factors, combo, strict=True))
                for combo in itertools.product(*(f.levels for f in self.factors))]


def expand_range(text: str) -> list[str] | None:
    """``"0:10"`` -> ["0", ..., "9"]; ``"0:10:2"`` in steps of 2; None if not a range."""
    m = RANGE.match(text)
    if not m:
        return None
    start, stop, step = int(m[1]), int(m[2]), int(m[3] or 1)
    if step == 0:
        raise GridError(f"range {text!r}: the step must not be 0")
    levels = [str(i) for i in range(start, stop, step)]
    if not levels:
        raise GridError(f"range {text!r} is empty (the stop is excluded)")
    return levels


def _level_text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _factor(options: CommandOptions, name: str, raw: list[Any], where: str,
            base_dir: Path) -> Factor:
    action = options.sweepable(name, where)
    flag = action.option_strings[-1]
    if not raw:
        raise GridError(f"{where}: no levels")
    if is_flag(action):
        levels = [options.check_level(action, v, where) for v in raw]
        values = list(levels)
    else:
        levels = []
        for v in raw:
            if isinstance(v, bool) or isinstance(v, (dict, list)):
                raise GridError(f"{where}: {flag} takes a value, got {v!r}")
            text = _level_text(v)
            if action.dest == "station" or action.type is Path:
                text = str((base_dir / text).resolve())  # cells may run elsewhere
            levels.append(text)
        values = [options.check_level(action, t, where) for t in levels]
    if len(set(map(str, levels))) != len(levels):
        raise GridError(f"{where}: {flag}: a level is given twice ({levels})")
    return Factor(action.dest, flag, levels, values, is_flag(action))


def _check_unique(factors: list[Factor], where: str) -> None:
    seen: set[str] = set()
    for f in factors:
        if f.dest in seen:
            raise GridError(f"{where}: {f.flag} is given twice")
        seen.add(f.dest)


def load_grid(path: str | Path) -> Grid:
    """A grid file (TOML); every error names the file and the key."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise GridError(f"{path}: cannot read grid file: {exc.strerror}") from None
    return parse_grid(text, str(path), path.parent.resolve())


def parse_grid(text: str, source: str, base_dir: Path | None = None) -> Grid:
    base_dir = base_dir or Path.cwd()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise GridError(f"{source}: unknown key(s) {', '.join(unknown)} (known: "
                        f"{', '.join(sorted(TOP_KEYS))})")
    command = data.get("command")
    if not isinstance(command, str) or not command.strip():
        raise GridError(f"{source}: command: missing, e.g. command = \"train iris\"")
    try:
        options = CommandOptions.load(tuple(command.split()))
    except GridError as exc:
        raise GridError(f"{source}: command: {exc}") from None
    name = data.get("name", Path(source).stem if source != "<inline>" else "")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]*", name):
        raise GridError(f"{source}: name: must be letters, digits, '.', '_' or '-', got "
                        f"{name!r}")
    tables = {}
    for table in ("grid", "fixed"):
        value = data.get(table, {})
        if not isinstance(value, dict):
            raise GridError(f"{source}: {table}: must be a table ([{table}])")
        tables[table] = value
    if not tables["grid"]:
        raise GridError(f"{source}: [grid]: no option to vary")
    factors = []
    for key, value in tables["grid"].items():
        where = f"{source}: [grid] {key}"
        if isinstance(value, str) and (levels := expand_range(value)) is not None:
            raw: list[Any] = levels
        else:
            raw = value if isinstance(value, list) else [value]
        factors.append(_factor(options, key, raw, where, base_dir))
    fixed = []
    for key, value in tables["fixed"].items():
        where = f"{source}: [fixed] {key}"
        if isinstance(value, list):
            raise GridError(f"{where}: one value expected (levels go in [grid]), got {value!r}")
        fixed.append(_factor(options, key, [value], where, base_dir))
    _check_unique(fixed + factors, source)
    return Grid(options, name or options.command.replace(" ", "-"), factors, fixed, text,
                source, base_dir)


def _split_levels(text: str) -> list[str]:
    sep = ";" if ";" in text else ","
    levels = [t.strip() for t in text.split(sep)]
    if any(not t for t in levels):
        raise GridError(f"empty level in {text!r}")
    if len(levels) == 1 and (expanded := expand_range(levels[0])) is not None:
        return expanded
    return levels


def parse_inline(words: tuple[str, ...], tokens: list[str]) -> Grid:
    """The inline form: ``train iris --seed 0:3 --di 1e-6,2e-6 --backend model``."""
    options = CommandOptions.load(words)
    entries: list[tuple[str, list[Any]]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("-"):
            raise GridError(f"{options.command}: unexpected {token!r} (options come as "
                            "--name LEVELS)")
        name, eq, value = token.partition("=")
        action = options.sweepable(name, f"{options.command} {name}")
        if is_flag(action):
            if eq:
                raw: list[Any] = _split_levels(value)
                i += 1
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
                raw = _split_levels(tokens[i + 1])
                i += 2
            else:
                raw, i = [True], i + 1
        else:
            if not eq:
                if i + 1 >= len(tokens):
                    raise GridError(f"{options.command} {name}: expects a value")
                value = tokens[i + 1]
                i += 1
            i += 1
            try:
                raw = _split_levels(value)
            except GridError as exc:
                raise GridError(f"{options.command} {name}: {exc}") from None
        entries.append((name, raw))
    factors, fixed = [], []
    for name, raw in entries:
        where = f"{options.command} {name}"
        (factors if len(raw) > 1 else fixed).append(_factor(options, name, raw, where, Path.cwd()))
    _check_unique(fixed + factors, options.command)
    if not factors:
        raise GridError(f"{options.command}: no option with more than one level to vary "
                        "(e.g. --seed 0:4)")
    return Grid(options, options.command.replace(" ", "-"), factors, fixed,
                grid_toml(options.command, factors, fixed, tokens))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(str(v))


def grid_toml(command: str, factors: list[Factor], fixed: list[Factor],
              tokens: list[str] | None = None) -> str:
    """A grid file equivalent to an inline grid (kept in the sweep directory)."""
    lines = []
    if tokens is not None:
        lines.append(f"# labctl sweep {command} {' '.join(tokens)}")
    lines.append(f"command = {json.dumps(command)}")
    lines += ["", "[fixed]"] + [f"{f.dest} = {_toml_value(f.levels[0])}" for f in fixed]
    lines += ["", "[grid]"]
    lines += [f"{f.dest} = [{', '.join(_toml_value(v) for v in f.levels)}]" for f in factors]
    return "\n".join(lines) + "\n"
