"""Simulated switch matrix: the Keithley 707B/3706A-style TSP subset of docs/wire-protocols.md.

Each line is one TSP statement from a fixed set (no Lua interpreter). Channel lists are
comma-separated channel names (case-insensitive, e.g. ``"1A01,1b02"``) in single or double
quotes; ``"allslots"`` names every channel where the table allows it. Closing acts on
``world.set_closed``, which re-drives the buses through the new connections.
"""

from __future__ import annotations

import re
from collections import deque

from simulators.world import StationWorld

ERROR_QUEUE_DEPTH = 100
SEVERITY_RECOVERABLE = 20  # TSP severity of a command error
NODE = 1  # localnode

_CALL = re.compile(r"^channel\.(\w+)\(\s*(?:(['\"])(.*?)\2)?\s*\)$")
_PRINT = re.compile(r"^print\((.*)\)$")


class _TspError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(code, message)
        self.code = code
        self.message = message


class SimSwitchMatrix:
    """The switch matrix's line protocol acting on a :class:`StationWorld`.

    Forbidden channels and the error queue are the matrix's own state; the closed set
    lives in the world. Everything is guarded by ``world.lock`` so that a compound
    operation (exclusiveclose) is one step for every other instrument.
    """

    def __init__(self, world: StationWorld, *, serial: str = "04123456"):
        self.world = world
        self.serial = serial
        self.forbidden: set[str] = set()
        self._errors: deque[tuple[int, str]] = deque(maxlen=ERROR_QUEUE_DEPTH)

    def handle(self, line: str) -> str | None:
        """Execute one statement; returns the printed reply, or None when nothing is printed."""
        text = line.strip()
        if not text:
            return None
        with self.world.lock:
            try:
                return self._execute(text)
            except _TspError as err:
                self._errors.append((err.code, err.message))
                return None

    # -- statements ------------------------------------------------------------------
    def _execute(self, text: str) -> str | None:
        if text.upper() == "*IDN?":
            return f"Keithley Instruments Inc., Model 707B, {self.serial}, 1.0.0"
        if text.upper() == "*RST" or text == "reset()":
            self.world.set_closed(set())
            self.forbidden.clear()
            return None
        if text == "errorqueue.clear()":
            self._errors.clear()
            return None
        printed = _PRINT.match(text)
        if printed:
            return self._print(printed.group(1).strip())
        call = _CALL.match(text)
        if not call:
            raise _syntax_error(text)
        name, arg = call.group(1), call.group(3)
        if arg is None:
            raise _syntax_error(text)
        if name == "close":
            self._close(self._channel_list(arg, allslots=False), exclusive=False)
        elif name == "exclusiveclose":
            self._close(self._channel_list(arg, allslots=False), exclusive=True)
        elif name == "open":
            channels = self._channel_list(arg, allslots=True)
            self.world.set_closed(self.world.closed - channels)
        elif name == "setforbidden":
            self.forbidden |= self._channel_list(arg, allslots=True)
        elif name == "clearforbidden":
            self.forbidden -= self._channel_list(arg, allslots=True)
        else:
            raise _syntax_error(text)
        return None

    def _print(self, expr: str) -> str:
        if expr == "errorqueue.count":
            return str(len(self._errors))
        if expr == "errorqueue.next()":
            if not self._errors:
                return "0\tQueue Is Empty\t0\t0"
            code, message = self._errors.popleft()
            return f"{code}\t{message}\t{SEVERITY_RECOVERABLE}\t{NODE}"
        call = _CALL.match(expr)
        if call and call.group(3) is not None:
            name, arg = call.group(1), call.group(3)
            if name == "getclose":
                return _nil_or_list(self.world.closed & self._channel_list(arg, allslots=True))
            if name == "getforbidden":
                return _nil_or_list(self.forbidden & self._channel_list(arg, allslots=True))
        raise _syntax_error(f"print({expr})")

    def _close(self, channels: set[str], *, exclusive: bool) -> None:
        blocked = sorted(channels & self.forbidden)
        if blocked:
            raise _TspError(-1116, f"Forbidden channel {','.join(blocked)}")
        try:
            if exclusive:
                # Break before make: the world sees every channel open before the new ones
                # close, so the old device is never connected in parallel with the new one.
                self.world.set_closed(set())
                self.world.set_closed(channels)
            else:
                self.world.set_closed(self.world.closed | channels)
        except ValueError as exc:  # one device on two rows (a simulator limit)
            raise _TspError(-221, f"Settings conflict: {exc}") from None

    def _channel_list(self, arg: str, *, allslots: bool) -> set[str]:
        """The channels named by a TSP channel-list string; -1115 for any unknown name."""
        if allslots and arg.strip().lower() == "allslots":
            return set(self.world.channels())
        names = [part.strip().upper() for part in arg.split(",")]
        known = set(self.world.channels())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise _TspError(-1115, f"Parameter error: invalid channel {unknown[0] or '(empty)'}")
        return set(names)


def _nil_or_list(channels: set[str]) -> str:
    return ";".join(sorted(channels)) if channels else "nil"


def _syntax_error(text: str) -> _TspError:
    return _TspError(-285, f"TSP Syntax error at line 1: unexpected symbol near `{text}'")
