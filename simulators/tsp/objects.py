"""The object model TSP sees on the simulated 2600B, and the instrument's argument checks.

A :class:`Node` is one TSP object (``smua.source``, ``trigger.blender[1]``): attributes as
(getter, setter or None), functions taking the argument list and returning a tuple,
children, constants, numbered items (``[N]``) and a length (``#``). The checks raise what
the 2600B reports: :class:`~simulators.tsp.runtime.TspRuntimeError` (-286) for a wrong type,
:class:`~simulators.tsp.runtime.ParameterError` with 1101 "Parameter too big" / 1102
"Parameter too small" for a number outside its range (Series 2600B Reference Manual, error
summary); -221 "Settings conflict" for a setting the present state does not allow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulators.tsp.runtime import Opaque, ParameterError, Ref, TspRuntimeError

TOO_BIG = (1101, "Parameter too big")
TOO_SMALL = (1102, "Parameter too small")
SETTINGS_CONFLICT = (-221, "Settings conflict")


# -- argument checks ----------------------------------------------------------------------
def number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TspRuntimeError(f"bad argument: {what} expects a number, got {kind(value)}")
    if not math.isfinite(value):
        raise ParameterError(*TOO_BIG)
    return float(value)


def kind(value: Any) -> str:
    if isinstance(value, Opaque):
        return value.lua_type
    return {type(None): "nil", bool: "boolean", str: "string", Ref: "table"}.get(
        type(value), "table")


def within(value: float, lo: float, hi: float) -> float:
    if value > hi * (1 + 1e-9) + 1e-15:
        raise ParameterError(*TOO_BIG)
    if value < lo * (1 - 1e-9 if lo > 0 else 1 + 1e-9) - 1e-15:
        raise ParameterError(*TOO_SMALL)
    return value


def integer_in(value: Any, what: str, allowed: tuple[int, ...]) -> int:
    value = number(value, what)
    if value not in allowed:
        raise ParameterError(*(TOO_BIG if value > max(allowed) else TOO_SMALL))
    return int(value)


def pick_range(value: float, ranges: tuple[float, ...]) -> float:
    for r in ranges:
        if abs(value) <= r * (1 + 1e-9):
            return r
    raise ParameterError(*TOO_BIG)


def flag(value: Any, what: str) -> int:
    if isinstance(value, bool):
        return int(value)
    return integer_in(value, what, (0, 1))


# -- object model -------------------------------------------------------------------------
@dataclass
class Node:
    """A TSP object: attributes (get, set or None), functions, children, constants, items."""

    attrs: dict[str, tuple[Callable[[], Any], Callable[[Any], None] | None]] = field(
        default_factory=dict)
    funcs: dict[str, Callable[[list[Any]], tuple[Any, ...]]] = field(default_factory=dict)
    kids: dict[str, Any] = field(default_factory=dict)
    consts: dict[str, Any] = field(default_factory=dict)
    items: Callable[[int], Any] | None = None  # [N]: a _Node or a value, None if absent
    length: Callable[[], int] | None = None


def attr(obj: Any, name: str, check: Callable[[Any], Any] | None = None,
          after: Callable[[Any], None] | None = None):
    """An attribute stored as ``obj.<name>``; ``check`` validates (and converts) a value."""

    def get() -> Any:
        return getattr(obj, name)

    def set_(value: Any) -> None:
        new = check(value) if check else value
        if after is not None:
            after(new)
        else:
            setattr(obj, name, new)

    return get, set_


def ro(get: Callable[[], Any]):
    return get, None
