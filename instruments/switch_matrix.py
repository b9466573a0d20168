"""Switch matrix: the Keithley 707B/3706A-style TSP subset of docs/wire-protocols.md.

Channels are named ``<slot><row><column>`` (``1A01``: slot 1, row A, column 01); a channel
list is a Python list of names or one comma-separated string. Every switching command is
followed by an error-queue check (one round trip): the matrix refuses a forbidden or
unknown channel silently, only its error queue tells. Every reply is checked against what
its statement prints (:meth:`SwitchMatrix.reply_rule`); :meth:`SwitchMatrix.open_all`
opens every channel and confirms that none is closed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from pymeasure.instruments import Instrument

from instruments import replies
from instruments.transport import (
    GarbledReply,
    InstrumentReportedError,
    LockedInstrumentMixin,
    SafeStateReport,
    read_setting,
)

_CHANNEL = re.compile(r"^[1-9][A-Z]\d\d$")
ALLSLOTS = "allslots"


def _channels_or_nil(reply: str) -> str | None:
    text = reply.strip()
    if text == "nil" or all(_CHANNEL.match(n) for n in text.split(";")):
        return None
    return "expected ';'-separated channels or nil"


_RULES: dict[str, Callable[[str], str | None]] = {
    "*IDN?": replies.text,
    "print(errorqueue.count)": replies.integer_in(range(0, 1 << 31)),
    "print(errorqueue.next())": replies.fields(replies.integer, replies.text,
                                               replies.integer, replies.integer,
                                               separator="\t"),
}


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

    def reply_rule(self, command: str) -> Callable[[str], str | None] | None:
        """The check of ``command``'s reply (docs/wire-protocols.md)."""
        statement = command.strip()
        if statement.startswith(("print(channel.getclose(", "print(channel.getforbidden(")):
            return _channels_or_nil
        return _RULES.get(statement)

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

    def open_all(self) -> SafeStateReport:
        """Open every channel and confirm that the matrix reports none closed (resyncing
        first if the last exchange failed, and once more if that fails); never raises
        for the matrix's sake. Ctrl-C and SIGTERM wait until it is done."""
        def opened(report: SafeStateReport) -> str | None:
            self.open(ALLSLOTS)
            closed = self.closed()
            report.state = {"closed": closed}
            return f"still closed after opening all: {closed}" if closed else None

        return self.confirm_safe("open every channel", opened)

    def shutdown(self) -> SafeStateReport:
        """:meth:`open_all`, then pymeasure's shutdown bookkeeping."""
        report = self.open_all()
        Instrument.shutdown(self)
        return report

    def configuration(self) -> dict[str, Any]:
        """The settings worth recording: closed and forbidden channels (sorted lists);
        ``"unreadable: <why>"`` for one that cannot be read."""
        with self.lock:
            return {
                "closed": read_setting(self, 'print(channel.getclose("allslots"))', _names),
                "forbidden": read_setting(self, 'print(channel.getforbidden("allslots"))',
                                          _names),
            }

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


def _names(reply: str) -> list[str]:
    text = reply.strip()
    return [] if text == "nil" else text.split(";")
