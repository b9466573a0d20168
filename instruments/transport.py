"""Pieces every transport and driver shares: wire log, errors, per-instrument lock.

* :class:`WireLog` records every message of one instrument as JSON lines
  (``{"t": <s since open>, "w": text}``, ``{"t": ..., "r": text}``,
  ``{"t": ..., "rb": <base64>}``).
* :class:`InstrumentError` and its subclasses name the instrument (or resource) they come
  from; a driver never lets a bare ``VisaIOError`` or ``SerialException`` escape.
* :class:`LockedInstrumentMixin` makes a query (write + read) one step under the adapter's
  re-entrant lock, so several threads may share one instrument.
* :func:`verify_identity` checks an instrument's ``*IDN?`` reply.

Units: s.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO


# -- errors ---------------------------------------------------------------------------
class InstrumentError(Exception):
    """Base of every error an instrument, its driver or its transport raises."""


class InstrumentConnectionError(InstrumentError):
    """The link to the instrument cannot be opened, or dropped and could not be restored."""


class InstrumentTimeout(InstrumentError):
    """No (complete) reply within the timeout.

    ``partial`` holds whatever arrived before the timeout (bytes, possibly empty).
    """

    def __init__(self, resource: str, timeout_s: float, *, waiting_for: str = "a reply",
                 partial: bytes = b""):
        self.resource = resource
        self.timeout_s = timeout_s
        self.partial = partial
        got = f"; got only {partial[:80]!r}" if partial else ""
        super().__init__(f"{resource}: timed out after {timeout_s:g} s waiting for "
                         f"{waiting_for}{got}")


class GarbledReply(InstrumentError):
    """A reply that does not parse as the protocol says; the message quotes it."""

    def __init__(self, instrument: str, raw: str | bytes, why: str = ""):
        self.instrument = instrument
        self.raw = raw
        shown = raw if len(raw) <= 200 else raw[:200]
        more = f" ... ({len(raw)} chars)" if len(raw) > 200 else ""
        reason = f" ({why})" if why else ""
        super().__init__(f"{instrument}: garbled reply {shown!r}{more}{reason}")


class IdentityMismatch(InstrumentError):
    """``*IDN?`` did not contain the expected text: the wrong instrument is at this address."""

    def __init__(self, instrument: str, expected: str, received: str):
        self.instrument = instrument
        self.expected = expected
        self.received = received
        super().__init__(f"{instrument}: expected an identity containing {expected!r}, "
                         f"the instrument answered {received!r}")


class InstrumentReportedError(InstrumentError):
    """The instrument's own error queue (or error code) reported a problem.

    ``errors`` holds the (code, text) pairs as the instrument reported them.
    """

    def __init__(self, instrument: str, errors: list[tuple[int, str]]):
        self.instrument = instrument
        self.errors = errors
        listed = "; ".join(f"{code}, {text}" for code, text in errors)
        super().__init__(f"{instrument} reported: {listed}")


# -- wire log -------------------------------------------------------------------------
class WireLog:
    """Every message of one instrument as JSON lines.

    ``t`` is seconds since the log was opened. ``counts`` tallies the entries by kind
    (``w``, ``r``, ``rb``), which is how round trips are counted. With no ``path`` the
    lines are kept in memory until :meth:`attach` gives them a file (an instrument is
    opened, and its identity read, before its session directory exists). With
    ``durable`` the file is flushed at every reply, so a killed process loses at most the
    commands of one exchange; otherwise it is written in large buffered blocks. Adapters
    hold their own lock around every call, so one log per instrument needs no lock.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 buffer_bytes: int = 1 << 16, durable: bool = False):
        self.path: str | None = None
        self._file: TextIO | None = None
        self._pending: list[str] = []
        self._durable = durable
        self._t0 = time.perf_counter()
        self.counts = {"w": 0, "r": 0, "rb": 0}
        if path is not None:
            self.attach(path, buffer_bytes=buffer_bytes)

    def attach(self, path: str | os.PathLike[str], *, buffer_bytes: int = 1 << 16) -> None:
        """Write to ``path`` from now on, starting with the lines kept in memory."""
        self.path = os.fspath(path)
        self._file = open(  # noqa: SIM115 - lives as long as the log
            self.path, "a", encoding="utf-8", buffering=buffer_bytes
        )
        self._file.writelines(self._pending)
        self._pending = []
        if self._durable:
            self._file.flush()

    def _emit(self, kind: str, value: str) -> None:
        self.counts[kind] += 1
        line = json.dumps({"t": round(time.perf_counter() - self._t0, 6), kind: value}) + "\n"
        if self._file is None:
            self._pending.append(line)
            return
        self._file.write(line)
        if self._durable and kind != "w":
            self._file.flush()

    def written(self, text: str) -> None:
        """Record text written to the instrument (without terminator)."""
        self._emit("w", text)

    def read(self, text: str) -> None:
        """Record text read from the instrument (without terminator)."""
        self._emit("r", text)

    def read_binary(self, data: bytes) -> None:
        """Record a binary read, base64 encoded."""
        self._emit("rb", base64.b64encode(data).decode("ascii"))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> WireLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def load(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """The entries of a wire-log file (binary reads stay base64)."""
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


# -- locking --------------------------------------------------------------------------
def adapter_lock(adapter: Any) -> threading.RLock:
    """The re-entrant lock of ``adapter``; one is attached if the adapter has none.

    Transports of this package own one; pymeasure's test adapter gets one here.
    """
    lock = getattr(adapter, "lock", None)
    if lock is None:
        lock = threading.RLock()
        adapter.lock = lock
    return lock


class LockedInstrumentMixin:
    """Mix into a pymeasure ``Instrument`` so that each query runs under the adapter lock.

    pymeasure's ``ask`` is a write followed by a read: without the lock, two threads
    sharing an instrument could each read the other's reply. Multi-message operations
    (a list sweep's configuration, a binary block) take :attr:`lock` themselves.
    """

    adapter: Any

    @property
    def lock(self) -> threading.RLock:
        """The lock that serialises every exchange with this instrument."""
        return adapter_lock(self.adapter)

    def ask(self, command: str, query_delay: float | None = None) -> str:
        with self.lock:
            return super().ask(command, query_delay)  # type: ignore[misc]

    def timeout_scope(self, timeout_s: float | None) -> contextlib.AbstractContextManager:
        """A context in which reads wait up to ``timeout_s`` (s); None keeps the timeout."""
        scope = getattr(self.adapter, "timeout_scope", None)
        if timeout_s is None or scope is None:
            return contextlib.nullcontext()
        return scope(timeout_s)


def parse_scpi_error(instrument: str, reply: str) -> tuple[int, str]:
    """(code, text) of a SCPI ``:SYST:ERR?`` reply such as ``-113,"Undefined header"``."""
    code_text, sep, message = reply.strip().partition(",")
    try:
        code = int(code_text)
    except ValueError:
        raise GarbledReply(instrument, reply, "expected <code>,\"<message>\"") from None
    return code, message.strip().strip('"') if sep else ""


def drain_scpi_errors(instrument: Any, query: str = "SYST:ERR?", limit: int = 64
                      ) -> list[tuple[int, str]]:
    """Read a SCPI error queue until ``0,"No error"``; at most ``limit`` entries."""
    errors: list[tuple[int, str]] = []
    with instrument.lock:
        for _ in range(limit):
            code, text = parse_scpi_error(instrument.name, instrument.ask(query))
            if code == 0:
                break
            errors.append((code, text))
    return errors


def verify_identity(instrument: Any, expected_substring: str) -> str:
    """Ask ``*IDN?`` and return the reply; raise :class:`IdentityMismatch` if it lacks
    ``expected_substring`` (compared case-insensitively)."""
    received = instrument.ask("*IDN?").strip()
    if expected_substring.lower() not in received.lower():
        raise IdentityMismatch(instrument.name, expected_substring, received)
    return received


# -- the behaviour every transport shares ---------------------------------------------
class TransportMixin:
    """Lock, wire log, timeouts and reconnection around a pymeasure adapter.

    Mixed in before a pymeasure adapter class, it takes over the adapter's ``_write``,
    ``_write_bytes``, ``_read`` and ``_read_bytes`` and calls the pymeasure
    implementation through the ``_send_*`` / ``_recv_*`` hooks. A subclass provides:

    * ``_send_text(command)``, ``_send_bytes(data)``: write; may raise the link's errors;
    * ``_recv_text()``, ``_recv_bytes(count, break_on_termchar)``: read, raising
      :class:`InstrumentTimeout` when the timeout expires;
    * ``_is_link_error(exc)``: whether an exception means the link is gone;
    * ``_link_dropped()``: a cheap check (no waiting) that the peer closed the link;
    * ``_open_link()`` / ``_close_link()``; ``_apply_timeout(seconds)``;
      ``_discard_input()``.

    Reconnection: a link found closed before a write is reopened silently (nothing was
    lost). A write that fails on a dead link is retried once on a reopened link. A link
    lost while waiting for a reply is reopened for the next command and the read raises
    :class:`InstrumentConnectionError`: the reply is gone and repeating a command (say
    ``:READ?``, which triggers a measurement) is the caller's decision. If reopening
    fails the error says so.
    """

    resource: str
    name: str
    wire_log: WireLog | None
    lock: threading.RLock
    _timeout_s: float
    _stale: bool

    def _init_transport(self, resource: str, timeout_s: float, wire_log: WireLog | None,
                        name: str | None) -> None:
        if not timeout_s > 0:
            raise ValueError(f"{resource}: timeout_s must be > 0 s, got {timeout_s!r}")
        self.resource = resource
        self.name = name or resource
        self.wire_log = wire_log
        self.lock = threading.RLock()
        self._timeout_s = float(timeout_s)
        # Set after a timeout: a late reply may still arrive and must not be taken as
        # the reply to the next query.
        self._stale = False
        # Set when a wait for a reply was cut short (timeout, Ctrl-C, SIGTERM): the reply
        # may arrive any time later, so the next command goes out on a fresh link.
        self._out_of_step = False
        self.reconnects = 0

    # -- timeouts ------------------------------------------------------------------------
    @property
    def timeout_s(self) -> float:
        """Longest wait for a reply (s)."""
        return self._timeout_s

    @timeout_s.setter
    def timeout_s(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"{self.resource}: timeout must be > 0 s, got {seconds!r}")
        with self.lock:
            self._timeout_s = float(seconds)
            self._apply_timeout(self._timeout_s)

    @contextlib.contextmanager
    def timeout_scope(self, seconds: float) -> Iterator[None]:
        """Hold the lock and wait up to ``seconds`` (s) for replies inside the block."""
        with self.lock:
            old = self._timeout_s
            self.timeout_s = seconds
            try:
                yield
            finally:
                self.timeout_s = old

    # -- pymeasure adapter interface -----------------------------------------------------
    def _write(self, command: str, **kwargs: Any) -> None:
        with self.lock:
            if self.wire_log is not None:
                self.wire_log.written(command)
            self._guarded_send(self._send_text, command)

    def _write_bytes(self, content: bytes, **kwargs: Any) -> None:
        with self.lock:
            if self.wire_log is not None:
                self.wire_log.written(content.decode("ascii", "backslashreplace"))
            self._guarded_send(self._send_bytes, content)

    def _read(self, **kwargs: Any) -> str:
        with self.lock:
            text = self._guarded_recv(self._recv_text)
            if self.wire_log is not None:
                self.wire_log.read(text)
            return text

    def _read_bytes(self, count: int, break_on_termchar: bool = False, **kwargs: Any) -> bytes:
        with self.lock:
            data = self._guarded_recv(self._recv_bytes, count, break_on_termchar)
            if self.wire_log is not None:
                self.wire_log.read_binary(data)
            return data

    def query(self, command: str) -> str:
        """Write ``command`` and read its reply as one step under the lock."""
        with self.lock:
            self.write(command)  # type: ignore[attr-defined]
            return self.read()  # type: ignore[attr-defined]

    # -- link handling -------------------------------------------------------------------
    def reconnect(self) -> None:
        """Close and reopen the link once; :class:`InstrumentConnectionError` on failure."""
        with self.lock:
            with contextlib.suppress(Exception):
                self._close_link()
            self._stale = self._out_of_step = False
            try:
                self._open_link()
            except InstrumentConnectionError as exc:
                raise InstrumentConnectionError(
                    f"{self.resource}: the link was lost and cannot reopen: {exc}"
                ) from exc
            self.reconnects += 1

    def _guarded_send(self, send: Any, payload: Any) -> None:
        if self._out_of_step:
            self._out_of_step = False
            try:
                self.reconnect()
            except InstrumentConnectionError:
                pass  # a link that cannot reopen: fall back to discarding what is waiting
        if self._stale:
            self._stale = False
            with contextlib.suppress(Exception):
                self._discard_input()
        if self._link_dropped():
            self.reconnect()
        try:
            send(payload)
        except Exception as exc:
            if not self._is_link_error(exc):
                raise self._as_instrument_error(exc) from exc
            self.reconnect()
            try:
                send(payload)
            except Exception as again:
                raise InstrumentConnectionError(
                    f"{self.resource}: link lost; reopened once but writing {payload!r} "
                    f"failed again: {again}"
                ) from again

    def _guarded_recv(self, recv: Any, *args: Any) -> Any:
        try:
            return recv(*args)
        except (KeyboardInterrupt, SystemExit):
            self._stale = self._out_of_step = True
            raise
        except InstrumentTimeout:
            self._stale = self._out_of_step = True
            if self._link_dropped():
                self._reopen_after_loss()
                raise InstrumentConnectionError(
                    f"{self.resource}: the link dropped while waiting for a reply; reopened "
                    "it, the command was not repeated"
                ) from None
            raise
        except Exception as exc:
            if not self._is_link_error(exc):
                raise self._as_instrument_error(exc) from exc
            self._reopen_after_loss()
            raise InstrumentConnectionError(
                f"{self.resource}: the link dropped while waiting for a reply ({exc}); "
                "reopened it, the command was not repeated"
            ) from exc

    def _reopen_after_loss(self) -> None:
        try:
            self.reconnect()
        except InstrumentConnectionError as exc:
            raise InstrumentConnectionError(
                f"{self.resource}: the link dropped while waiting for a reply; {exc}"
            ) from exc

    def _as_instrument_error(self, exc: Exception) -> Exception:
        """An I/O library's own error as an :class:`InstrumentError` naming the resource;
        anything else (a bug) unchanged."""
        if isinstance(exc, InstrumentError) or not isinstance(exc, self._io_errors):
            return exc
        return InstrumentError(f"{self.resource}: {exc}")

    # -- hooks (see the class docstring) -------------------------------------------------
    #: Exception types of the I/O library that must not escape unwrapped.
    _io_errors: tuple[type[BaseException], ...] = (OSError,)

    def _send_text(self, command: str) -> None:
        raise NotImplementedError

    def _send_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def _recv_text(self) -> str:
        raise NotImplementedError

    def _recv_bytes(self, count: int, break_on_termchar: bool) -> bytes:
        raise NotImplementedError

    def _is_link_error(self, exc: BaseException) -> bool:
        return isinstance(exc, (ConnectionError, OSError))

    def _link_dropped(self) -> bool:
        return False

    def _open_link(self) -> None:
        raise NotImplementedError

    def _close_link(self) -> None:
        raise NotImplementedError

    def _apply_timeout(self, seconds: float) -> None:
        raise NotImplementedError

    def _discard_input(self) -> None:
        raise NotImplementedError


def socket_peer_closed(sock: Any) -> bool:
    """True if the peer of a connected TCP socket closed or reset it; never waits.

    Peeks one byte without blocking: EOF or an error means gone; pending data or nothing
    to read means alive. Needs a socket in blocking mode (no Python-level timeout),
    otherwise CPython would wait for readability before the peek.
    """
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    return data == b""


def set_tcp_nodelay(sock: Any) -> bool:
    """Turn Nagle's algorithm off on ``sock``; True if the option reads back as on."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
