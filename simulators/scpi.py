"""A small, reusable SCPI parser and dispatcher for the simulated instruments.

An instrument registers its command tree as header patterns written the way instrument
manuals write them, each with a setter and/or a query handler::

    tree = CommandTree()
    tree.add(":SOURce[1]:CURRent[:LEVel][:IMMediate][:AMPLitude]", set_level, query_level)
    tree.add("*IDN", query=idn)
    parser = ScpiParser(tree, ErrorQueue())
    parser.execute(":sour:curr 1e-6;:SOURCE:CURRENT?")   # -> "1.000000E-06"

Header rules (IEEE 488.2 / SCPI-99):

* each node matches its short form (the upper-case letters) or its long form, case
  insensitively, nothing in between; ``[...]`` nodes are optional; a numeric suffix written
  ``SENSe[1]`` is optional, one written ``CALCulate3`` is required;
* a program message is split at ``;`` (outside quoted strings); a header that starts with
  ``:`` is absolute, one without is relative to the path of the previous command in the
  same message (its header minus the leaf); common commands (``*XXX``) do not change that
  path; the first header of a message is relative to the root;
* a header ending in ``?`` is a query; the replies of all queries of one message are joined
  with ``;`` into one line.

Errors are queued as SCPI ``(code, text)`` pairs in an :class:`ErrorQueue` (10 deep, the
last slot turns into -350 "Queue overflow"); a failing command changes nothing, is
skipped, and the rest of the message still runs. Handlers raise :class:`ScpiError` to
report one and must validate every argument before they change any state.

Resolved headers are cached per (path, raw header) string, so a steady stream of the same
commands costs one dictionary look-up per header.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

#: Texts of the standard SCPI error numbers (SCPI-99 vol. 2, ch. 21).
ERROR_TEXTS: dict[int, str] = {
    0: "No error",
    -100: "Command error",
    -101: "Invalid character",
    -102: "Syntax error",
    -103: "Invalid separator",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -110: "Command header error",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -120: "Numeric data error",
    -140: "Character data error",
    -150: "String data error",
    -200: "Execution error",
    -210: "Trigger error",
    -211: "Trigger ignored",
    -213: "Init ignored",
    -220: "Parameter error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -223: "Too much data",
    -224: "Illegal parameter value",
    -230: "Data corrupt or stale",
    -300: "Device-specific error",
    -350: "Queue overflow",
    -400: "Query error",
    -410: "Query INTERRUPTED",
    -420: "Query UNTERMINATED",
}

Setter = Callable[[list[str]], None]
Query = Callable[[list[str]], str]

_NRF = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z", re.ASCII)
_NODE = re.compile(r"(\[)?:?(\*?[A-Za-z]+)(\d*)(?:\[(\d+)\])?(\])?")
_CACHE_LIMIT = 4096
log = logging.getLogger(__name__)


class ScpiError(Exception):
    """A command failed with SCPI error ``code``; the failing command changed no state."""

    def __init__(self, code: int, text: str | None = None):
        self.code = code
        self.text = text if text is not None else ERROR_TEXTS.get(code, "Unknown error")
        super().__init__(f"{code},{self.text}")


class ErrorQueue:
    """The instrument's error queue: oldest first, at most ``capacity`` entries.

    When full, the newest entry is replaced by -350 "Queue overflow" and further errors
    are lost until the queue is read, as SCPI prescribes. ``on_push(code)`` (optional) is
    called for every error, e.g. to set the event status register bits.
    """

    def __init__(self, capacity: int = 10, on_push: Callable[[int], None] | None = None):
        self.capacity = capacity
        self.on_push = on_push
        self._queue: deque[tuple[int, str]] = deque()

    def push(self, code: int, text: str | None = None) -> None:
        if self.on_push is not None:
            self.on_push(code)
        if len(self._queue) >= self.capacity:
            self._queue[-1] = (-350, ERROR_TEXTS[-350])
            return
        self._queue.append((code, text if text is not None else ERROR_TEXTS.get(code, "")))

    def next(self) -> tuple[int, str]:
        """Remove and return the oldest error, ``(0, "No error")`` when empty."""
        return self._queue.popleft() if self._queue else (0, ERROR_TEXTS[0])

    def clear(self) -> None:
        self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)

    @staticmethod
    def format(entry: tuple[int, str]) -> str:
        """``code,"text"`` as ``:SYST:ERR?`` answers it."""
        return f'{entry[0]},"{entry[1]}"'


# -- arguments ---------------------------------------------------------------------------
def one(args: Sequence[str]) -> str:
    """The single argument of a command: -109 if missing, -108 if there are more."""
    if not args or (len(args) == 1 and args[0] == ""):
        raise ScpiError(-109)
    if len(args) > 1:
        raise ScpiError(-108)
    return args[0]


def none(args: Sequence[str]) -> None:
    """Check that a command got no argument (-108 otherwise)."""
    if args:
        raise ScpiError(-108)


def number(
    arg: str,
    lo: float | None = None,
    hi: float | None = None,
    *,
    default: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    up: float | None = None,
    down: float | None = None,
) -> float:
    """A numeric argument (NRf), or one of the keywords the command allows.

    ``MIN``/``MAX`` give ``minimum``/``maximum`` (``lo``/``hi`` when those are None),
    ``DEF`` gives ``default``, ``UP``/``DOWN`` give ``up``/``down``; a keyword the command
    does not take is -224. Character data that is not a number is -104 (data type error),
    a value outside ``[lo, hi]`` is -222 (data out of range), and so is a number too large
    for a double (``1e309``: it would be inf).
    """
    text = arg.strip()
    if not text:
        raise ScpiError(-109)
    if _NRF.match(text):
        value = _finite(text)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ScpiError(-222)
        return value
    key = text.upper()
    keywords = {
        "MIN": minimum if minimum is not None else lo,
        "MINIMUM": minimum if minimum is not None else lo,
        "MAX": maximum if maximum is not None else hi,
        "MAXIMUM": maximum if maximum is not None else hi,
        "DEF": default,
        "DEFAULT": default,
        "UP": up,
        "DOWN": down,
    }
    if key in keywords:
        value = keywords[key]
        if value is None:
            raise ScpiError(-224)
        return value
    raise ScpiError(-104)


def _finite(text: str) -> float:
    """An NRf string as a float; -222 when it overflows a double."""
    value = float(text)
    if not math.isfinite(value):
        raise ScpiError(-222)
    return value


def integer(arg: str, lo: int, hi: int, *, default: int | None = None) -> int:
    """An integer argument: numbers are rounded as SCPI prescribes, then range-checked."""
    value = round(number(arg, default=default, minimum=lo, maximum=hi))
    if not lo <= value <= hi:
        raise ScpiError(-222)
    return value


def boolean(arg: str) -> bool:
    """A boolean: ``ON``/``OFF`` or a number (non-zero after rounding is on)."""
    text = arg.strip().upper()
    if text == "ON":
        return True
    if text == "OFF":
        return False
    if not text:
        raise ScpiError(-109)
    if _NRF.match(text):
        return round(_finite(text)) != 0
    if text[0] in "'\"":
        raise ScpiError(-104)
    raise ScpiError(-224)


def mnemonic_forms(mnemonic: str) -> tuple[str, str]:
    """(short, long) upper-case forms of a manual mnemonic such as ``NPLCycles``."""
    short = "".join(itertools.takewhile(lambda c: not c.islower(), mnemonic))
    return short.upper(), mnemonic.upper()


def choice(arg: str, choices: Iterable[str]) -> str:
    """Character data out of ``choices`` (manual mnemonics); returns the short form.

    A string or number where character data belongs is -104, an unknown name -224.
    """
    text = arg.strip().upper()
    if not text:
        raise ScpiError(-109)
    for mnemonic in choices:
        short, long = mnemonic_forms(mnemonic)
        if text in (short, long):
            return short
    if text[0] in "'\"" or _NRF.match(text):
        raise ScpiError(-104)
    raise ScpiError(-224)


def string(arg: str) -> str:
    """A quoted string argument ('...' or "..."; a doubled quote inside is one quote)."""
    text = arg.strip()
    if not text:
        raise ScpiError(-109)
    if len(text) < 2 or text[0] not in "'\"" or text[-1] != text[0]:
        raise ScpiError(-104)
    quote = text[0]
    return text[1:-1].replace(quote * 2, quote)


def list_handlers(settings: Callable[[], dict], key: str, limit: float, *, per_command: int,
                  total: int, fmt: Callable[[float], str]
                  ) -> tuple[Callable, Callable, Callable, Callable]:
    """Handlers of a source list ``settings()[key]`` (a tuple of levels within +-``limit``;
    ``settings`` is called at each command, the instrument's settings of the moment): set
    (-109 for no value, -223 beyond ``per_command`` values), query (``fmt`` per value),
    append (-223 beyond ``total`` in all) and the points query. Every value is checked
    before the list changes."""

    def values(args: Sequence[str]) -> list[float]:
        if not args or list(args) == [""]:
            raise ScpiError(-109)
        if len(args) > per_command:
            raise ScpiError(-223)
        return [number(a, -limit, limit) for a in args]

    def set_(args: Sequence[str]) -> None:
        settings()[key] = tuple(values(args))

    def append(args: Sequence[str]) -> None:
        new, cfg = values(args), settings()
        if len(cfg[key]) + len(new) > total:
            raise ScpiError(-223)
        cfg[key] = tuple(cfg[key]) + tuple(new)

    def query(args: Sequence[str]) -> str:
        none(args)
        return ",".join(fmt(v) for v in settings()[key])

    def points(args: Sequence[str]) -> str:
        none(args)
        return str(len(settings()[key]))

    return set_, query, append, points


def split_units(message: str) -> list[str]:
    """Split a program message at ``;`` outside quoted strings."""
    if "'" not in message and '"' not in message:
        return message.split(";")
    return _split_outside_quotes(message, ";")


def split_args(text: str) -> list[str]:
    """Split a parameter list at ``,`` outside quoted strings; items are stripped."""
    if "'" not in text and '"' not in text:
        return [a.strip() for a in text.split(",")]
    return [a.strip() for a in _split_outside_quotes(text, ",")]


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, start, quote = [], 0, ""
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == sep:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


# -- command tree ------------------------------------------------------------------------
@dataclass
class Command:
    """What a header leads to: a setter, a query, or both."""

    pattern: str
    set: Setter | None = None
    query: Query | None = None


@dataclass
class _TrieNode:
    children: dict[str, _TrieNode] = field(default_factory=dict)
    command: Command | None = None


@dataclass(frozen=True)
class _PatternNode:
    tokens: tuple[str, ...]
    optional: bool


def _parse_pattern(pattern: str) -> list[_PatternNode]:
    nodes, pos = [], 0
    while pos < len(pattern):
        m = _NODE.match(pattern, pos)
        if not m or m.end() == pos:
            raise ValueError(f"bad SCPI pattern {pattern!r} at {pos}")
        opened, name, suffix, optional_suffix, closed = m.groups()
        if bool(opened) != bool(closed):
            raise ValueError(f"unbalanced [] in SCPI pattern {pattern!r}")
        short, long = mnemonic_forms(name)
        forms = {short, long}
        if suffix:
            forms = {f + suffix for f in forms}
        elif optional_suffix:
            forms |= {f + optional_suffix for f in forms}
        nodes.append(_PatternNode(tuple(sorted(forms)), bool(opened)))
        pos = m.end()
    return nodes


class CommandTree:
    """Header patterns mapped to commands, held as a trie over upper-case tokens."""

    def __init__(self) -> None:
        self._root = _TrieNode()

    def add(self, pattern: str, set: Setter | None = None, query: Query | None = None) -> None:
        """Register a header pattern (e.g. ``:SENSe[1]:CURRent[:DC]:NPLCycles``).

        Raises ValueError when a header the pattern accepts already leads to another
        handler of the same kind, so table mistakes show at start-up.
        """
        nodes = _parse_pattern(pattern)
        optional = [i for i, n in enumerate(nodes) if n.optional]
        for drop in itertools.product((False, True), repeat=len(optional)):
            dropped = {i for i, d in zip(optional, drop, strict=True) if d}
            path = [n for i, n in enumerate(nodes) if i not in dropped]
            if path:
                self._insert(path, pattern, set, query)

    def _insert(self, path: list[_PatternNode], pattern: str, set_, query) -> None:
        node = self._root
        for pnode in path:
            child = next((node.children[t] for t in pnode.tokens if t in node.children), None)
            if child is None:
                child = _TrieNode()
            for t in pnode.tokens:
                node.children.setdefault(t, child)
            node = child
        if node.command is None:
            node.command = Command(pattern)
        cmd = node.command
        if (set_ is not None and cmd.set not in (None, set_)) or (
            query is not None and cmd.query not in (None, query)
        ):
            raise ValueError(f"{pattern!r} collides with {cmd.pattern!r}")
        cmd.set = set_ if set_ is not None else cmd.set
        cmd.query = query if query is not None else cmd.query

    def lookup(self, tokens: Iterable[str]) -> Command | None:
        """The command at a sequence of upper-case header tokens, or None."""
        node = self._root
        for t in tokens:
            node = node.children.get(t)
            if node is None:
                return None
        return node.command


class ScpiParser:
    """Executes program messages against a :class:`CommandTree`, queueing errors."""

    def __init__(self, tree: CommandTree, errors: ErrorQueue):
        self.tree = tree
        self.errors = errors
        self._cache: dict[tuple[tuple[str, ...], str], tuple[Command, bool, tuple[str, ...]]] = {}

    def execute(self, message: str) -> str | None:
        """Run every command of ``message``; the joined query replies, or None."""
        replies: list[str] = []
        path: tuple[str, ...] = ()
        for unit in split_units(message):
            unit = unit.strip()
            if not unit:
                continue  # empty units: a trailing ';' as pymeasure sends it
            parts = unit.split(None, 1)
            try:
                command, is_query, path = self._resolve(path, parts[0])
                args = split_args(parts[1]) if len(parts) > 1 else []
                if is_query:
                    if command.query is None:
                        raise ScpiError(-113)
                    replies.append(command.query(args))
                else:
                    if command.set is None:
                        raise ScpiError(-113)
                    command.set(args)
            except ScpiError as err:
                self.errors.push(err.code, err.text)
            except Exception:  # a simulator bug must not take the server down
                # Logged, not sent: no reply carries Python exception text.
                log.exception("SCPI command %r failed", unit)
                self.errors.push(-300)
        return ";".join(replies) if replies else None

    def _resolve(self, path: tuple[str, ...], header: str) -> tuple[Command, bool, tuple[str, ...]]:
        key = (path, header)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        is_query = header.endswith("?")
        text = header[:-1] if is_query else header
        if text.startswith("*"):
            tokens: tuple[str, ...] = (text.upper(),)
            new_path = path  # common commands leave the path alone (IEEE 488.2 7.6.1.3)
        else:
            absolute = text.startswith(":")
            raw = (text[1:] if absolute else text).split(":")
            if not all(raw):
                raise ScpiError(-113)
            tokens = (() if absolute else path) + tuple(t.upper() for t in raw)
            new_path = tokens[:-1]
        command = self.tree.lookup(tokens)
        if command is None:
            raise ScpiError(-113)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = (command, is_query, new_path)
        return command, is_query, new_path
