"""Wire replay: a transport that answers from a recorded wire log instead of an instrument.

:class:`WireReplayTransport` is a drop-in for :class:`~instruments.visa_transport.VisaTransport`
and :class:`~instruments.serial_transport.SerialTransport` (the same :class:`TransportMixin`
behaviour: lock, ``timeout_s``, ``timeout_scope``, ``query``, ``reconnect``, its own optional
:class:`WireLog`), built from a wire log (``w``, ``r``, ``rb``, ``x`` entries, either
format, see :mod:`instruments.wire_log`):

* every write is compared with the next recorded write, exactly, in the form the transports
  log it (the command as the driver passed it, without terminator; bytes written as
  ``decode("ascii", "backslashreplace")``);
* every text read returns the next recorded ``r`` entry; every binary read the next ``rb``
  entry's bytes (a read of a different byte count than was recorded is a divergence); a
  text read that meets an ``rb`` entry replays the garbled reply it recorded (the
  transports log a non-ASCII text reply as its bytes) and raises the same
  :class:`GarbledReply`;
* unsolicited bytes the recorded transport found waiting before a write (``x`` entries)
  are found again at the same place, so the replay raises the same :class:`StaleReply`;
* anything else (a write where a reply was recorded, a read where a write was recorded, a
  text read where a binary one was recorded, the end of the log) raises
  :class:`WireDivergence`, naming the instrument, the position, and both versions.

Transports that replay one session together share a :class:`ReplayGroup`: the first
divergence is kept there (a command may catch an :class:`InstrumentError` and go on, e.g. a
safe shutdown; the group still knows), and from then on every transport of the group
refuses all I/O with :class:`ReplayStopped`, so nothing after the divergence is compared.

Timestamps (``t``) are not compared, with one use: a read that timed out in the recorded
run left no entry in the log (the transports log only what arrived), so a read that meets
a recorded write is taken as that timeout, and raises :class:`InstrumentTimeout` as the
recorded run did, when the log shows the wait: the next entry came at least 90 % of the
timeout after the previous one (the smaller of the present and the configured timeout: a
timeout stretched by the wall clock, as the safe shutdown after an interrupt does, differs
between the runs). Otherwise it is a divergence. Each such assumption is listed in
:attr:`ReplayGroup.assumed_timeouts`. A read that lost its link left no entry either and
cannot be told from a divergence.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymeasure.adapters import Adapter

from instruments.transport import (
    GarbledReply,
    InstrumentError,
    InstrumentTimeout,
    TransportMixin,
    WireLog,
)
from instruments.wire_log import read_entries

#: A recorded gap of at least this fraction of the timeout counts as a timed-out read.
TIMEOUT_EVIDENCE = 0.9


class WireDivergence(InstrumentError):
    """The replayed command's traffic differs from the recorded wire log.

    ``instrument``: its name; ``index``: 0-based position in the log (its record, or in
    an older JSON-lines log its line, ``index + 1``; ``index == total`` means past its
    end); ``recorded``, ``actual``: what the log has there and what the command did now,
    each as readable text (a written command quoted as the transport logs it, a reply
    prefixed with "reply"). The message
    shows both in full when short, otherwise around their first difference.
    """

    def __init__(self, instrument: str, index: int, recorded: str, actual: str, *,
                 total: int | None = None, path: str | None = None, note: str = ""):
        self.instrument = instrument
        self.index = index
        self.recorded = recorded
        self.actual = actual
        self.total = total
        self.path = path
        self.note = note
        of = f" of {total}" if total is not None else ""
        unit = "line" if str(path).endswith(".jsonl") else "record"
        where = f" ({path}, {unit} {index + 1})" if path and (total is None or index < total) \
            else ""
        more = f"; {note}" if note else ""
        shown_recorded, shown_actual = _excerpts(recorded, actual)
        super().__init__(
            f"{instrument}: wire replay diverged at message {index + 1}{of}{where}: "
            f"recorded {shown_recorded}, now {shown_actual}{more}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The divergence as plain data (for a JSON report)."""
        return {"instrument": self.instrument, "index": self.index, "line": self.index + 1,
                "recorded": self.recorded, "actual": self.actual, "total": self.total,
                "path": self.path, "note": self.note, "message": str(self)}


def _excerpts(a: str, b: str, limit: int = 160, before: int = 40) -> tuple[str, str]:
    """``a`` and ``b`` as they are if short, else cut around their first difference."""
    if len(a) <= limit and len(b) <= limit:
        return a, b
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    lo = max(0, i - before)

    def cut(text: str) -> str:
        head = "..." if lo > 0 else ""
        tail = "..." if lo + limit < len(text) else ""
        return f"{head}{text[lo:lo + limit]}{tail}"

    return (f"{cut(a)} ({len(a)} chars; first difference at char {i + 1})", cut(b))


class ReplayStopped(InstrumentError):
    """I/O after a divergence: the replay compares nothing past the first divergence."""


@dataclass(frozen=True)
class WireEntry:
    """One recorded message: ``kind`` is ``w`` (written), ``r`` (text read) or ``rb``
    (bytes read); ``value`` is the text, or the bytes of a binary read; ``t`` the
    recorded time (s since the log opened), None if absent."""

    kind: str
    value: str | bytes
    t: float | None = None

    def describe(self) -> str:
        """Readable form for a divergence message."""
        if self.kind == "w":
            return repr(self.value)
        if self.kind == "r":
            return f"reply {self.value!r}"
        data = self.value
        assert isinstance(data, bytes)
        shown = data if len(data) <= 40 else data[:40]
        more = "..." if len(data) > 40 else ""
        what = "unsolicited bytes (discarded)" if self.kind == "x" else "binary reply"
        return f"{what} of {len(data)} bytes {shown!r}{more}"


def load_wire_log(path: str | os.PathLike[str]) -> list[WireEntry]:
    """The entries of a wire log (``.wlog`` or older JSON lines), binary replies as bytes.

    A torn tail (a process killed mid-write) is dropped; any other damage raises
    :class:`~instruments.wire_log.WireLogError` (a ValueError) naming the file and where.
    """
    return [WireEntry(kind, value, t) for kind, t, value in read_entries(path).entries]


class ReplayGroup:
    """The transports that replay one session; keeps the first divergence of any of them.

    ``interrupt``: when set (the recorded session was aborted by Ctrl-C or SIGTERM), the
    first mismatch is taken as the point where the recorded run was interrupted: instead
    of a divergence, ``KeyboardInterrupt(interrupt)`` is raised there, so the command's
    cleanup runs as it did then and is compared with the rest of the log. Until then a
    read that meets a recorded write is that interrupt (a reply cut short), never a
    recorded timeout.
    """

    def __init__(self, *, interrupt: str | None = None):
        self.transports: dict[str, WireReplayTransport] = {}
        self.divergence: WireDivergence | None = None
        self.interrupt = interrupt
        self.interrupted_at: WireDivergence | None = None
        #: (instrument, 0-based position, recorded wait in s) of every read replayed as a
        #: timeout (see the module docstring).
        self.assumed_timeouts: list[tuple[str, int, float]] = []

    @property
    def awaiting_interrupt(self) -> bool:
        """True while the recorded interrupt has not been placed yet."""
        return self.interrupt is not None and self.interrupted_at is None

    def open(self, path: str | os.PathLike[str], *, name: str, **kwargs: Any
             ) -> WireReplayTransport:
        """A transport replaying ``path`` as instrument ``name``, in this group."""
        if name in self.transports:
            raise InstrumentError(
                f"{name}: opened a second time in one replay; the session's wire log "
                "covers one opening"
            )
        transport = WireReplayTransport(path, name=name, group=self, **kwargs)
        self.transports[name] = transport
        return transport

    def diverged(self, divergence: WireDivergence) -> BaseException:
        """Record ``divergence`` (if it is the first); the exception to raise for it."""
        if self.interrupt is not None and self.interrupted_at is None:
            self.interrupted_at = divergence
            return KeyboardInterrupt(self.interrupt)
        if self.divergence is None:
            self.divergence = divergence
        return divergence

    @property
    def stopped(self) -> bool:
        """True once any transport of the group has diverged."""
        return self.divergence is not None

    def leftover(self) -> WireDivergence | None:
        """The first unconsumed recorded message of any transport (by instrument name)."""
        for name in sorted(self.transports):
            left = self.transports[name].leftover()
            if left is not None:
                return left
        return None


class WireReplayTransport(TransportMixin, Adapter):
    """A pymeasure adapter that replays a wire log (see the module docstring).

    path: the wire log (or ``entries``, already loaded); name: the instrument's name in
    errors (default: the file's stem); resource: the resource string errors name (default
    ``wire-replay:<path>``; give the recorded one so errors read as they did); timeout_s:
    kept for drivers that read or scope it, and to recognise recorded timeouts (nothing
    waits); wire_log: optional :class:`WireLog` for the replay's own traffic;
    group: the :class:`ReplayGroup` it belongs to (default: a group of its own).
    """

    resync_quiet_s = 0.0  # nothing arrives late in a replay: the drain ends at once

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        entries: list[WireEntry] | None = None,
        name: str | None = None,
        resource: str | None = None,
        timeout_s: float = 5.0,
        wire_log: WireLog | None = None,
        group: ReplayGroup | None = None,
    ):
        if (path is None) == (entries is None):
            raise ValueError("give exactly one of path and entries")
        self.path = os.fspath(path) if path is not None else None
        resource = resource or f"wire-replay:{self.path or name or 'entries'}"
        default_name = Path(self.path).stem if self.path else resource
        self._init_transport(resource, timeout_s, wire_log, name or default_name)
        self._configured_timeout_s = float(timeout_s)
        super().__init__()
        self.entries = load_wire_log(path) if path is not None else list(entries or [])
        self.position = 0
        self.consumed = {"w": 0, "r": 0, "rb": 0}
        self.group = group if group is not None else ReplayGroup()
        self.connection = None
        self.closed = False

    # -- the replay -------------------------------------------------------------------
    def _next(self) -> WireEntry | None:
        if self.group.stopped:
            raise ReplayStopped(f"{self.name}: the wire replay stopped at the first "
                                f"divergence ({self.group.divergence})")
        if self.position < len(self.entries):
            return self.entries[self.position]
        return None

    def _diverge(self, entry: WireEntry | None, actual: str, note: str = "") -> BaseException:
        recorded = entry.describe() if entry is not None else "(end of the log)"
        divergence = WireDivergence(self.name, self.position, recorded, actual,
                                    total=len(self.entries), path=self.path, note=note)
        return self.group.diverged(divergence)

    def _expect_write(self, text: str) -> None:
        entry = self._next()
        if entry is None or entry.kind != "w" or entry.value != text:
            note = ""
            if entry is not None and entry.kind != "w":
                note = "the recorded run read a reply here"
            raise self._diverge(entry, repr(text), note)
        self._take(entry)

    def _expect_read(self, kind: str, actual: str) -> WireEntry:
        entry = self._next()
        if entry is not None and entry.kind == "w" and self._recorded_timeout(entry):
            raise InstrumentTimeout(self.resource, self.timeout_s)
        if entry is None or entry.kind != kind:
            note = ""
            if entry is not None and entry.kind == "w":
                note = ("the recorded run read no reply here (nor waited a timeout for one; "
                        "a read that lost its link leaves no entry either)")
            raise self._diverge(entry, actual, note)
        return entry

    def _recorded_timeout(self, entry: WireEntry) -> bool:
        """Whether the log shows a wait of a timeout before ``entry`` (see the module doc);
        if so the assumption is noted in the group."""
        if self.position == 0 or self.group.awaiting_interrupt:
            return False
        before = self.entries[self.position - 1]
        if entry.t is None or before.t is None:
            return False
        waited = entry.t - before.t
        if waited < TIMEOUT_EVIDENCE * min(self.timeout_s, self._configured_timeout_s):
            return False
        self.group.assumed_timeouts.append((self.name, self.position, waited))
        return True

    def _take(self, entry: WireEntry) -> None:
        self.position += 1
        self.consumed[entry.kind] = self.consumed.get(entry.kind, 0) + 1

    def leftover(self) -> WireDivergence | None:
        """A divergence for the first recorded message not replayed, or None."""
        if self.position >= len(self.entries):
            return None
        entry = self.entries[self.position]
        return WireDivergence(
            self.name, self.position, entry.describe(), "nothing (the command ended)",
            total=len(self.entries), path=self.path,
            note=f"{len(self.entries) - self.position} recorded messages not replayed",
        )

    @property
    def remaining(self) -> int:
        """Recorded messages not replayed yet."""
        return len(self.entries) - self.position

    # -- TransportMixin hooks ------------------------------------------------------------
    def _send_text(self, command: str) -> None:
        self._expect_write(command)

    def _send_bytes(self, data: bytes) -> None:
        # The form TransportMixin._write_bytes logs.
        self._expect_write(data.decode("ascii", "backslashreplace"))

    def _recv_text(self) -> str:
        entry = self._next()
        if entry is not None and entry.kind == "rb":
            # The recorded run got a reply that was not ASCII text: the same GarbledReply.
            assert isinstance(entry.value, bytes)
            try:
                self._decode_reply(entry.value)
            except GarbledReply:
                self._take(entry)
                raise
            raise self._diverge(entry, "a text read", "the recorded run read these bytes "
                                "as a binary reply")
        entry = self._expect_read("r", "a text read")
        self._take(entry)
        assert isinstance(entry.value, str)
        return entry.value

    def _recv_bytes(self, count: int, break_on_termchar: bool) -> bytes:
        wanted = "bytes until the timeout" if count < 0 else f"{count} bytes"
        entry = self._expect_read("rb", f"a binary read of {wanted}")
        data = entry.value
        assert isinstance(data, bytes)
        if count >= 0 and len(data) != count and not (
            break_on_termchar and data.endswith(b"\n") and len(data) < count
        ):
            raise self._diverge(entry, f"a binary read of {count} bytes")
        self._take(entry)
        return data

    def _is_link_error(self, exc: BaseException) -> bool:
        return False

    def _link_dropped(self) -> bool:
        return False

    def _poll_input(self) -> tuple[bytes, bool]:
        entry = self._next()
        if entry is not None and entry.kind == "x":
            self._take(entry)
            assert isinstance(entry.value, bytes)
            return entry.value, False
        return b"", False

    def _open_link(self) -> None:
        """Nothing to open: reconnecting leaves the replay where it is (the recorded
        transport logged no message for a reconnection either)."""

    def _close_link(self) -> None:
        """Nothing to close."""

    def _apply_timeout(self, seconds: float) -> None:
        """Nothing waits in a replay; the timeout is only kept."""

    def _discard_input(self) -> None:
        """Nothing is pending: the recorded log holds no discarded bytes."""

    # -- the rest of the adapter interface ------------------------------------------------
    def flush_read_buffer(self) -> None:
        """Discard pending input: nothing (the recorded log holds no discarded bytes)."""

    def close(self) -> None:
        """Close (idempotent). The log's leftover is checked by :meth:`leftover`, not here:
        whether leftover is a divergence depends on how the command ended."""
        self.closed = True
        if self.wire_log is not None:
            with contextlib.suppress(Exception):
                self.wire_log.flush()

    def __repr__(self) -> str:
        return (f"<WireReplayTransport(name={self.name!r}, at {self.position} of "
                f"{len(self.entries)})>")
