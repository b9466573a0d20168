"""Checks of instrument replies: what a command can answer, as small functions.

A check takes the reply text and returns None when the reply is acceptable, or the
reason it is not (a short phrase). Drivers map each command to a check in their
``reply_rule`` (see :class:`instruments.transport.LockedInstrumentMixin`), which raises
:class:`~instruments.transport.UnexpectedReply` naming instrument, command and reply.

:func:`scpi_header` reduces a SCPI command to a canonical key (short forms, upper case,
no leading colon, no default suffix, no optional trailing node), so that
``:SOURCE:CURRENT:LEVEL?``, ``sour:curr?`` and ``:SOUR:CURR?`` are the same query.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable

Check = Callable[[str], "str | None"]

_VOWELS = set("AEIOU")
# Optional nodes that may end a header without changing its meaning.
_OPTIONAL_TAIL = ("LEV", "STAT", "IMM", "AMPL", "DC")


def _short(node: str) -> str:
    """SCPI short form of one header node (``SOURCE`` -> ``SOUR``, ``ERROR`` -> ``ERR``)."""
    query = node.endswith("?")
    core = node[:-1] if query else node
    match = re.fullmatch(r"([*A-Z]+)(\d*)", core)
    if match is None:
        return node
    alpha, digits = match.groups()
    if len(alpha) > 4 and not alpha.startswith("*"):
        alpha = alpha[:3] if alpha[3] in _VOWELS else alpha[:4]
    if digits == "1":  # the default suffix: SENS1 is SENS
        digits = ""
    return alpha + digits + ("?" if query else "")


@functools.lru_cache(maxsize=512)
def scpi_header(command: str) -> str:
    """Canonical key of the first command of ``command`` (header only, arguments dropped)."""
    first = command.split(";", 1)[0].strip().upper()
    header = first.split(None, 1)[0] if first else ""
    query = header.endswith("?")
    nodes = [_short(n) for n in header.rstrip("?").lstrip(":").split(":") if n]
    while len(nodes) > 1 and nodes[-1] in _OPTIONAL_TAIL:
        nodes.pop()
    return ":".join(nodes) + ("?" if query else "")


def scpi_commands(command: str) -> list[tuple[str, str]]:
    """(canonical header, argument text) of each ``;``-separated command."""
    out = []
    for part in command.split(";"):
        part = part.strip()
        if part:
            head, _, arg = part.partition(" ")
            out.append((scpi_header(head), arg.strip()))
    return out


# -- checks -----------------------------------------------------------------------------
def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def number(reply: str) -> str | None:
    """One finite number."""
    return None if _float(reply.strip()) is not None else "expected a number"


def number_in(low: float, high: float) -> Check:
    """One number within [low, high]."""

    def check(reply: str) -> str | None:
        value = _float(reply.strip())
        if value is None or not low <= value <= high:
            return f"expected a number from {low:g} to {high:g}"
        return None

    return check


def integer(reply: str) -> str | None:
    """One integer (``+5``, ``5``, ``5.0``, ``5e0``)."""
    value = _float(reply.strip())
    return None if value is not None and value == int(value) else "expected an integer"


def integer_in(allowed: Iterable[int] | range) -> Check:
    """One integer among ``allowed``."""
    allowed = allowed if isinstance(allowed, range) else frozenset(allowed)

    def check(reply: str) -> str | None:
        value = _float(reply.strip())
        if value is None or value != int(value) or int(value) not in allowed:
            shown = (f"{allowed.start} to {allowed.stop - 1}" if isinstance(allowed, range)
                     else ", ".join(str(v) for v in sorted(allowed)))
            return f"expected an integer among {shown}"
        return None

    return check


def flag(reply: str) -> str | None:
    """``0`` or ``1``."""
    return None if reply.strip() in ("0", "1") else "expected 0 or 1"


def one_of(*words: str, quoted: bool = False) -> Check:
    """One of ``words`` (upper case; optionally in double quotes)."""
    allowed = frozenset(words)

    def check(reply: str) -> str | None:
        text = reply.strip()
        if quoted:
            text = text.strip('"')
        if text.upper() not in allowed:
            return "expected one of " + ", ".join(sorted(allowed))
        return None

    return check


def text(reply: str) -> str | None:
    """Any non-empty text."""
    return None if reply.strip() else "expected a non-empty reply"


def exactly(expected: str) -> Check:
    def check(reply: str) -> str | None:
        return None if reply.strip() == expected else f"expected {expected!r}"

    return check


_SCPI_ERROR = re.compile(r'^[+-]?\d+,".*"$')


def scpi_error(reply: str) -> str | None:
    """A SCPI error-queue entry, ``<code>,"<text>"``."""
    return None if _SCPI_ERROR.match(reply.strip()) else 'expected <code>,"<message>"'


def numbers(count: int, what: str = "") -> Check:
    """Exactly ``count`` comma-separated finite numbers (a short, truncated list is
    refused, never padded)."""

    def check(reply: str) -> str | None:
        fields = reply.strip().split(",")
        shown = f" ({what})" if what else ""
        if len(fields) != count:
            return (f"expected {count} comma-separated numbers{shown}, got "
                    f"{len(fields)} fields")
        bad = next((i for i, f in enumerate(fields) if _float(f) is None), None)
        if bad is not None:
            return f"field {bad + 1} of {count} ({fields[bad][:20]!r}) is not a number"
        return None

    return check


def numbers_multiple(per_record: int, most: int | None = None, what: str = "") -> Check:
    """A positive multiple of ``per_record`` comma-separated numbers, at most ``most``."""

    def check(reply: str) -> str | None:
        fields = reply.strip().split(",")
        shown = f" ({what})" if what else ""
        if len(fields) % per_record or (most is not None and len(fields) > most):
            limit = f", at most {most}" if most is not None else ""
            return (f"expected a multiple of {per_record} comma-separated numbers{shown}"
                    f"{limit}, got {len(fields)} fields")
        return numbers(len(fields), what)(reply)

    return check


def fields(*checks: Check, separator: str = ",") -> Check:
    """Exactly ``len(checks)`` fields, each passing its check."""

    def check(reply: str) -> str | None:
        parts = reply.strip().split(separator)
        if len(parts) != len(checks):
            return f"expected {len(checks)} {separator!r}-separated fields, got {len(parts)}"
        for i, (part, sub) in enumerate(zip(parts, checks, strict=True)):
            why = sub(part)
            if why is not None:
                return f"field {i + 1}: {why}"
        return None

    return check
