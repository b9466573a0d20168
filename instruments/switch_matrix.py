"""Switch matrix: the Keithley 707B/3706A-style TSP subset of docs/wire-protocols.md.

Channels are named ``<slot><row><column>`` (``1A01``: slot 1, row A, column 01); a channel
list is a Python list of names or one comma-separated string. Every switching command is
followed by an error-queue check (one round trip): the matrix refuses a forbidden or
unknown channel silently, only its error queue tells.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pymeasure.instruments import Instrument

from instruments.transport import (
    GarbledReply,
    InstrumentReportedError,
    LockedInstrumentMixin,
)

_CHANNEL = re.compile(r"^[1-9][A-Z]\d\d$")
ALLSLOTS = "allslots"


def channel_list(channels: str | Iterable[str], *, allslots: bool = False) -> str:
    """The TSP channel-list string of ``channels``; ValueError for a malformed name.

    Names are checked here so that nothing but channel names ever lands inside the
    quoted TSP string.
    """
    if isinstance(channels, str):
        if allslots and channels.strip().lower() == ALLSLOTS:
            return ALLSLOTS
        names = channels.split(",")
    else:
        names = list(channels)
    cleaned = [str(n).strip().upper() for n in names]
    bad = [n for n in cleaned if not _CHANNEL.match(n)]
    if not cleaned or bad:
        raise ValueError(f"not channel names: {bad or channels!r} (expected e.g. '1A01')")
    return ",".join(cleaned)


class SwitchMatrix(LockedInstrumentMixin, Instrument):
    """The switch matrix; no I/O on construction."""

    capabilities = {"exclusive_close": True, "forbidden_channels": True}

    def __init__(self, adapter, name: str = "switch matrix", **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)

    id = Instrument.measurement("*IDN?", """Get the identification (str).""",
                                cast=str, maxsplit=0)

    def reset(self) -> None:
        """Open every channel and clear the forbidden list."""
        self.write("reset()")

    def close(self, channels: str | Iterable[str]) -> None:
        """Close ``channels`` (others stay as they are)."""
        self._switch(f'channel.close("{channel_list(channels)}")')

    def open(self, channels: str | Iterable[str] = ALLSLOTS) -> None:
        """Open ``channels``; by default every channel."""
        self._switch(f'channel.open("{channel_list(channels, allslots=True)}")')

    def exclusive_close(self, channels: str | Iterable[str]) -> None:
        """Open every other channel first (break before make), then close ``channels``."""
        self._switch(f'channel.exclusiveclose("{channel_list(channels)}")')

    def closed(self) -> list[str]:
        """The closed channels, sorted."""
        return self._list_query('print(channel.getclose("allslots"))')

    def set_forbidden(self, channels: str | Iterable[str]) -> None:
        """Forbid closing ``channels`` until cleared or reset."""
        self._switch(f'channel.setforbidden("{channel_list(channels, allslots=True)}")')

    def clear_forbidden(self, channels: str | Iterable[str] = ALLSLOTS) -> None:
        """Allow ``channels`` again; by default every channel."""
        self._switch(f'channel.clearforbidden("{channel_list(channels, allslots=True)}")')

    def forbidden(self) -> list[str]:
        """The forbidden channels, sorted."""
        return self._list_query('print(channel.getforbidden("allslots"))')

    def clear_errors(self) -> None:
        """Empty the error queue without reading it."""
        self.write("errorqueue.clear()")

    def check_errors_raise(self) -> None:
        """Read the error queue (``errorqueue.count`` then ``errorqueue.next()`` per
        entry); raise :class:`InstrumentReportedError` with the matrix's own texts."""
        with self.lock:
            reply = self.ask("print(errorqueue.count)")
            try:
                count = int(float(reply))
            except ValueError:
                raise GarbledReply(self.name, reply, "expected the error count") from None
            errors = [self._next_error() for _ in range(count)]
        errors = [e for e in errors if e[0] != 0]
        if errors:
            raise InstrumentReportedError(self.name, errors)

    def _next_error(self) -> tuple[int, str]:
        reply = self.ask("print(errorqueue.next())")
        fields = reply.strip("\r\n").split("\t")
        try:
            return int(float(fields[0])), fields[1]
        except (ValueError, IndexError):
            raise GarbledReply(self.name, reply, "expected <code>\\t<message>\\t...") from None

    def _switch(self, statement: str) -> None:
        with self.lock:
            self.write(statement)
            self.check_errors_raise()

    def _list_query(self, statement: str) -> list[str]:
        reply = self.ask(statement).strip()
        if reply == "nil":
            return []
        names = reply.split(";")
        if not all(_CHANNEL.match(n) for n in names):
            raise GarbledReply(self.name, reply, "expected ';'-separated channels or nil")
        return names
