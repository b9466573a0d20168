"""Command-line values with units: ``50uA``, ``-30e-6``, ``0.8 V``, ``2ms``.

:func:`quantity` makes an argparse type for one unit (A, V, s, Ohm): a plain number is taken
in that unit; a number with an SI prefix and the unit (``p n u µ m k M``) is scaled; any
other unit is refused, naming what was expected. Errors read like argparse's own.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

PREFIXES = {"p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3,
            "M": 1e6}
_VALUE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Zµ]*)\s*$")
_NAMES = {"A": "a current", "V": "a voltage", "s": "a time", "Ohm": "a resistance"}


def quantity(unit: str) -> Callable[[str], float]:
    """An argparse type: a float in ``unit`` (see the module docstring)."""

    def parse(text: str) -> float:
        match = _VALUE.match(text)
        if match:
            number, suffix = match.groups()
            if suffix == "":
                return float(number)
            if suffix.endswith(unit) and suffix[: -len(unit)] in PREFIXES:
                return float(number) * PREFIXES[suffix[: -len(unit)]]
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {_NAMES.get(unit, 'a value')} in {unit}: a number (e.g. 5e-05) "
            f"or one with a unit (e.g. 50u{unit}, 0.05m{unit})")

    parse.__name__ = f"value in {unit}"
    return parse


def quantities(unit: str) -> Callable[[str], list[float]]:
    """An argparse type: a comma-separated list of :func:`quantity` values."""
    one = quantity(unit)

    def parse(text: str) -> list[float]:
        values = [one(part) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r}: no values")
        return values

    parse.__name__ = f"list of values in {unit}"
    return parse
