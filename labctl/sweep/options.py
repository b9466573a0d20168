"""A command's own options, read from its argparse parser (``labctl.cli.build_parser``).

Nothing here lists a command's options: they come from the parser the command itself
builds, so an option added to ``train iris`` tomorrow can be swept without a change here.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class GridError(ValueError):
    """Bad sweep input: names the grid file and key, or the option, and the problem."""


#: Options the sweep sets itself for every cell (or that make no sense in a grid).
RESERVED = {
    "help": "",
    "json": "the sweep reads each cell's --json summary",
    "no_progress": "cells never draw progress bars",
    "sessions_dir": "cells record into the sweep's own sessions directory",
    "resume": "the sweep resumes interrupted cells itself",
    "new_limits": "a sweep never changes a station's limits under a cell",
    "out": "the sweep directory holds each cell's output",
}

#: Commands that are not experiments.
NOT_SWEEPABLE = {("sweep",), ("bench",), ("replay",), ("report",), ("export",),
                 ("sessions", "list"), ("sessions", "prune"), ("sim", "serve"),
                 ("station", "check"), ("station", "selftest")}


class _ParseError(Exception):
    pass


def _raise(message: str) -> None:
    raise _ParseError(message)


@dataclass
class CommandOptions:
    """The options of one labctl command (e.g. ``("train", "iris")``)."""

    words: tuple[str, ...]
    parser: argparse.ArgumentParser

    @classmethod
    def load(cls, words: tuple[str, ...]) -> CommandOptions:
        from labctl.cli import COMMANDS, build_parser

        known = [w for w, _, _ in COMMANDS]
        if words not in known or words in NOT_SWEEPABLE:
            sweepable = [" ".join(w) for w in known if w not in NOT_SWEEPABLE]
            raise GridError(
                f"command {' '.join(words)!r} cannot be swept (known: {', '.join(sweepable)})"
            )
        parser: argparse.ArgumentParser = build_parser(list(words))
        for word in words:
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = sub.choices[word]
        parser.error = _raise  # type: ignore[method-assign]  # an exception, not sys.exit
        opts = cls(words, parser)
        if opts.action("json") is None:
            raise GridError(
                f"command {' '.join(words)!r} has no --json summary, so a sweep cannot read "
                "its result"
            )
        return opts

    @property
    def command(self) -> str:
        return " ".join(self.words)

    def action(self, name: str) -> argparse.Action | None:
        """The option named ``name``: its dest (``i_center``), its long option without dashes
        (``i-center``) or with them (``--i-center``)."""
        flag = name if name.startswith("-") else "--" + name.replace("_", "-")
        for a in self.parser._actions:
            if a.option_strings and (flag in a.option_strings or a.dest == name):
                return a
        return None

    def has(self, dest: str) -> bool:
        return any(a.dest == dest for a in self.parser._actions if a.option_strings)

    def sweepable(self, name: str, where: str) -> argparse.Action:
        """The action of option ``name`` for a grid, or a GridError saying why not."""
        action = self.action(name)
        if action is None:
            options = sorted(
                a.option_strings[-1] for a in self.parser._actions
                if a.option_strings and a.dest not in RESERVED
            )
            raise GridError(
                f"{where}: {self.command} has no option {name!r} (its options: "
                f"{', '.join(options)})"
            )
        if action.dest in RESERVED:
            raise GridError(f"{where}: {action.option_strings[-1]} is set by the sweep "
                            f"({RESERVED[action.dest] or 'not an experiment setting'})")
        if not is_flag(action) and action.nargs not in (None, "?"):
            raise GridError(f"{where}: {action.option_strings[-1]} takes several values; "
                            "a sweep cannot vary it")
        if not is_flag(action) and type(action).__name__ != "_StoreAction":
            raise GridError(f"{where}: {action.option_strings[-1]} ({type(action).__name__}) "
                            "cannot be varied by a sweep")
        return action

    def check_level(self, action: argparse.Action, text: str, where: str) -> Any:
        """``text`` converted and checked as argparse would (type, choices); its value."""
        flag = action.option_strings[-1]
        if is_flag(action):
            return flag_level(text, f"{where}: {flag}")
        try:
            value = action.type(text) if action.type is not None else text
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            detail = str(exc) or f"not a valid {getattr(action.type, '__name__', 'value')}"
            raise GridError(f"{where}: {flag}: invalid value {text!r} ({detail})") from None
        if action.choices is not None and value not in action.choices:
            raise GridError(f"{where}: {flag}: invalid value {text!r} (choose from "
                            f"{', '.join(map(str, action.choices))})")
        return value

    def parse(self, argv: list[str], where: str) -> argparse.Namespace:
        """The namespace a cell's argv gives (every option after defaults)."""
        try:
            return self.parser.parse_args(argv)
        except _ParseError as exc:
            raise GridError(f"{where}: {' '.join(argv)}: {exc}") from None


def is_flag(action: argparse.Action) -> bool:
    return isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))


TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0"}


def flag_level(value: Any, where: str) -> bool:
    """A flag's level: True/False, or a word for one."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise GridError(f"{where}: a flag's level must be true or false, got {value!r}")


def jsonable(value: Any) -> Any:
    """An option value as JSON (paths as strings) for a cell's configuration."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
