"""Pieces every transport and driver shares: wire log, errors, per-instrument lock.

* :class:`WireLog` (from :mod:`instruments.wire_log`) records every message of one
  instrument: text written (``w``) and read (``r``), bytes read (``rb``) and unsolicited
  bytes found waiting before a write and discarded (``x``).
* :class:`InstrumentError` and its subclasses name the instrument (or resource) they come
  from; a driver never lets a bare ``VisaIOError`` or ``SerialException`` escape.
* Replies are checked, never trusted: bytes already waiting before a command is written
  raise :class:`StaleReply` (they are discarded and logged, never read as an answer); a
  reply that is not ASCII raises :class:`GarbledReply`; drivers check each reply against
  what its command can answer (:class:`UnexpectedReply`, see :mod:`instruments.replies`).
  :meth:`TransportMixin.resync` realigns a link.
* :class:`LockedInstrumentMixin` makes a query (write + read) one step under the adapter's
  re-entrant lock, so several threads may share one instrument, and validates the reply.
* :func:`interrupts_deferred` keeps Ctrl-C / SIGTERM from cutting a safe shutdown short.
* :func:`verify_identity` checks an instrument's ``*IDN?`` reply.

Units: s.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from instruments.wire_log import WireLog


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
        self.waiting_for = waiting_for
        got = f"; got only {partial[:80]!r}" if partial else ""
        super().__init__(f"{resource}: timed out after {timeout_s:g} s waiting for "
                         f"{waiting_for}{got}")


class GarbledReply(InstrumentError):
    """A reply that does not parse as the protocol says (or is not ASCII); the message
    names the instrument and, when known, the command, and quotes the reply (``raw``:
    the text, or the bytes as they arrived)."""

    label = "garbled reply"

    def __init__(self, instrument: str, raw: str | bytes, why: str = "", *,
                 command: str | None = None):
        self.instrument = instrument
        self.raw = raw
        self.command = command
        self.why = why
        shown = raw if len(raw) <= 200 else raw[:200]
        more = f" ... ({len(raw)} chars)" if len(raw) > 200 else ""
        reason = f" ({why})" if why else ""
        to = f" to {command!r}" if command else ""
        super().__init__(f"{instrument}: {self.label}{to} {shown!r}{more}{reason}")


class UnexpectedReply(GarbledReply):
    """A well-formed line that is not what the command can answer (a number where a
    number is expected, the right number of fields, one of the allowed words, ...).

    Often the sign of a link out of step (a stale reply read as the answer to a later
    query), so the transport is marked for :meth:`TransportMixin.resync`.
    """

    label = "unexpected reply"


class StaleReply(InstrumentError):
    """Bytes were waiting in the input before ``command`` was written: a duplicated or late
    reply. They were discarded (and logged as ``x``), never read as an answer, and the
    command was NOT sent. ``data`` holds the discarded bytes."""

    def __init__(self, instrument: str, command: str, data: bytes):
        self.instrument = instrument
        self.command = command
        self.data = data
        shown = data if len(data) <= 120 else data[:120]
        more = f" ... ({len(data)} bytes)" if len(data) > 120 else ""
        super().__init__(
            f"{instrument}: {len(data)} unsolicited bytes were waiting before {command!r} "
            f"(a duplicated or late reply): {shown!r}{more}; discarded, {command!r} was not "
            "sent"
        )


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
    """Mix into a pymeasure ``Instrument`` so that each query runs under the adapter lock
    and each reply is checked against what its command can answer.

    pymeasure's ``ask`` is a write followed by a read: without the lock, two threads
    sharing an instrument could each read the other's reply. Multi-message operations
    (a list sweep's configuration, a binary block) take :attr:`lock` themselves.

    Every query of pymeasure's properties goes through ``ask`` too (``values`` calls it),
    so :meth:`check_reply` sees every text reply: a driver overrides :meth:`reply_rule`
    to return, for a command, a function that gives the reason a reply is wrong (or
    None); :class:`UnexpectedReply` names instrument, command and reply, and marks the
    transport for a resync (a wrong kind of reply usually means the link is out of step).
    """

    adapter: Any
    name: str

    @property
    def lock(self) -> threading.RLock:
        """The lock that serialises every exchange with this instrument."""
        return adapter_lock(self.adapter)

    def ask(self, command: str, query_delay: float | None = None) -> str:
        with self.lock:
            reply = super().ask(command, query_delay)  # type: ignore[misc]
            rule = self.reply_rule(command)
            if rule is not None and rule(reply) is not None:
                self.check_reply(command, reply)
            return reply

    def reply_rule(self, command: str) -> Callable[[str], str | None] | None:
        """The check of ``command``'s reply: reply -> reason it is wrong, or None. None
        (the default) accepts any (ASCII) reply."""
        return None

    def check_reply(self, command: str, reply: str) -> None:
        """Raise :class:`UnexpectedReply` if ``reply`` is not what ``command`` answers."""
        rule = self.reply_rule(command)
        if rule is None:
            return
        why = rule(reply)
        if why is not None:
            self.mark_suspect(f"{command!r} answered {reply[:80]!r}: {why}")
            raise UnexpectedReply(self.name, reply, why, command=command)

    def mark_suspect(self, reason: str) -> None:
        """Note on the transport that the link may be out of step (see
        :attr:`TransportMixin.last_failure`); nothing for adapters without resync."""
        if hasattr(self.adapter, "resync"):
            self.adapter.last_failure = reason

    @property
    def link_suspect(self) -> str | None:
        """Why the last exchange failed (the link may be out of step), or None."""
        return getattr(self.adapter, "last_failure", None)

    def resync(self, probe: str = "*IDN?") -> bool:
        """Realign the link (:meth:`TransportMixin.resync`); False if it could not be
        confirmed or the adapter cannot resync (pymeasure's test adapters)."""
        resync = getattr(self.adapter, "resync", None)
        if resync is None:
            return False
        return bool(resync(probe))

    def confirm_safe(self, what: str, check: Callable[[SafeStateReport], str | None]
                     ) -> SafeStateReport:
        """A safe state reached and read back: ``check(report)`` does it and returns None
        when the instrument confirms it, else the problem. Resyncs first if the last
        exchange failed, and once more if ``check`` fails; never raises for the
        instrument's sake; Ctrl-C and SIGTERM wait until it is done."""
        report = SafeStateReport(self.name)
        with self.lock, interrupts_deferred():
            if self.link_suspect:
                self._resync_noted(report, f"the last exchange failed ({self.link_suspect})")
            for attempt in range(2):
                try:
                    problem = check(report)
                    if problem is None:
                        report.confirmed = True
                        break
                    report.problems.append(problem)
                except InstrumentError as exc:
                    report.problems.append(f"{what}: {exc}")
                if attempt or not self._resync_noted(report, f"to {what}"):
                    break
        return report

    def _resync_noted(self, report: SafeStateReport, why: str) -> bool:
        """:meth:`resync`, noted in ``report`` (a note if it worked, a problem if not)."""
        if self.resync():
            report.notes.append(f"resynced the link: {why}")
            return True
        problem = getattr(self.adapter, "resync_problem", None) or "no resync available"
        report.problems.append(f"{why}; {problem}")
        return False

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


def read_setting(instrument: Any, query: str, cast: Callable[[str], Any] = str.strip) -> Any:
    """``cast(instrument.ask(query))`` (a checked reply), or ``"unreadable: <why>"``."""
    try:
        return cast(instrument.ask(query))
    except (InstrumentError, ValueError) as exc:
        return f"unreadable: {exc}"


# -- safe states ------------------------------------------------------------------------
@dataclass
class SafeStateReport:
    """What a driver's confirmed shutdown / safe state found; returned, never raised.

    ``confirmed``: the instrument itself answered that it is safe (read back, not
    assumed); ``problems``: what went wrong on the way (empty when all went well);
    ``last_level``: the last source level seen or written (A, or V for a voltage source;
    None when none was read); ``notes``: things done that are not problems (a resync);
    ``state``: what the confirming queries answered.
    """

    instrument: str
    confirmed: bool = False
    problems: list[str] = field(default_factory=list)
    last_level: float | None = None
    notes: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


_deferral = threading.local()
#: The signals :func:`interrupts_deferred` holds: Ctrl-C, SIGTERM, SIGHUP (closed terminal).
_HELD_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None))
                      if s is not None)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[list[BaseException]]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done, then deliver them.

    How: in the main thread, the handlers of those signals are replaced for the
    duration of the block by one that only records the first signal (so no
    ``KeyboardInterrupt`` can be raised between two steps of a ramp, nor in the middle of
    an exchange); at the end the previous handlers are put back and the recorded signal is
    handed to its previous handler (which raises ``KeyboardInterrupt``, or labctl's
    ``KeyboardInterrupt("SIGTERM")``; ``SIG_DFL`` re-raises the signal; ``SIG_IGN``
    drops it). ``KeyboardInterrupt`` / ``SystemExit`` raised by code in the block anyway
    (a hook, another library) are to be caught by the block and appended to the list
    this yields (see :func:`call_through_interrupts`); the first is re-raised at the end.
    Nested blocks hand everything to the outermost one, so a station-wide shutdown can
    wrap every driver's. Other threads cannot set handlers: there only the list applies.
    """
    outer = getattr(_deferral, "pending", None)
    if outer is not None:  # nested: the outermost block delivers
        yield outer
        return
    pending: list[BaseException] = []
    caught: list[tuple[int, Any]] = []
    previous: dict[int, Any] = {}

    def hold(signum: int, frame: Any) -> None:
        if not caught:
            caught.append((signum, frame))

    if threading.current_thread() is threading.main_thread():
        for sig in _HELD_SIGNALS:
            try:
                previous[sig] = signal.signal(sig, hold)
            except (ValueError, OSError):  # pragma: no cover - no signals here
                pass
    _deferral.pending = pending
    try:
        yield pending
    finally:
        # Also when the block raised: a held Ctrl-C must not be lost (it then wins).
        _deferral.pending = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signum, frame = caught[0]
            handler = previous.get(signum)
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)
        if pending:
            raise pending[0]


def call_through_interrupts(pending: list[BaseException], fn: Callable[..., Any], *args: Any,
                            attempts: int = 3) -> Any:
    """``fn(*args)``, repeated if a ``KeyboardInterrupt`` or ``SystemExit`` cuts it short
    (each is appended to ``pending`` for :func:`interrupts_deferred` to re-raise); for
    idempotent steps only (setting a level, a query). After ``attempts`` interrupted
    tries, :class:`InstrumentError`."""
    for _ in range(attempts):
        try:
            return fn(*args)
        except (KeyboardInterrupt, SystemExit) as exc:
            pending.append(exc)
    raise InstrumentError(f"interrupted on each of {attempts} attempts at {fn.__name__}")


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
    * ``_poll_input()``: without waiting, take whatever bytes are already waiting in the
      input, and whether the peer closed the link: ``(bytes, dropped)`` (the default
      knows no input and asks ``_link_dropped``);
    * ``_open_link()`` / ``_close_link()``; ``_apply_timeout(seconds)``;
      ``_discard_input()``; ``_restore_link()`` (for :meth:`resync`; default: reopen).

    Replies checked, never trusted: before every write the input is polled without
    waiting (the same one non-blocking peek the dropped-link check costs); bytes found
    there answer nothing that was asked (a duplicated, or a late, reply), so they are
    logged as ``x``, thrown away and :class:`StaleReply` is raised naming the instrument
    and the command, which is not sent. Text replies must be ASCII (tab allowed; a
    trailing ``\r`` is ignored by the serial transport): anything else raises
    :class:`GarbledReply` with the raw bytes (logged as ``rb``). :attr:`last_failure`
    says why the last exchange failed (None after a good reply); a driver then calls
    :meth:`resync` before trusting the link again.

    Reconnection: a link found closed before a write is reopened silently (nothing was
    lost). A write that fails on a dead link is retried once on a reopened link. A link
    lost while waiting for a reply is reopened for the next command and the read raises
    :class:`InstrumentConnectionError`: the reply is gone and repeating a command (say
    ``:READ?``, which triggers a measurement) is the caller's decision. If reopening
    fails the error says so. Every error names the instrument and its resource.
    """

    #: Quiet time (s) that ends the drain of :meth:`resync`.
    resync_quiet_s = 0.05

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
        #: Why the last exchange failed (None once a reply came back fine): the link
        #: may be out of step until :meth:`resync` says otherwise.
        self.last_failure: str | None = None
        #: The last ``*IDN?`` reply: what :meth:`resync` expects from its probe.
        self.identity: str | None = None
        #: Why the last :meth:`resync` failed, None if it succeeded.
        self.resync_problem: str | None = None
        self.resyncs = 0
        self._last_command: str | None = None

    @property
    def who(self) -> str:
        """The instrument's name with its resource, for messages."""
        return self.resource if self.name == self.resource else f"{self.name} ({self.resource})"

    # -- timeouts ------------------------------------------------------------------------
    @property
    def timeout_s(self) -> float:
        """Longest wait for a reply (s)."""
        return self._timeout_s

    @timeout_s.setter
    def timeout_s(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"{self.who}: timeout must be > 0 s, got {seconds!r}")
        with self.lock:
            self._timeout_s = float(seconds)
            try:
                self._apply_timeout(self._timeout_s)
            except self._io_errors:
                # A dead session: the next command reopens the link with this timeout.
                self._out_of_step = True

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
            self._before_send(command)
            if self.wire_log is not None:
                self.wire_log.written(command)
            self._last_command = command
            self._guarded_send(self._send_text, command)

    def _write_bytes(self, content: bytes, **kwargs: Any) -> None:
        with self.lock:
            text = content.decode("ascii", "backslashreplace")
            self._before_send(text)
            if self.wire_log is not None:
                self.wire_log.written(text)
            self._last_command = text
            self._guarded_send(self._send_bytes, content)

    def _read(self, **kwargs: Any) -> str:
        with self.lock:
            try:
                text = self._guarded_recv(self._recv_text)
            except GarbledReply as exc:
                if self.wire_log is not None and isinstance(exc.raw, bytes):
                    self.wire_log.read_binary(exc.raw)
                raise
            if self.wire_log is not None:
                self.wire_log.read(text)
            self.last_failure = None
            if self._last_command is not None and self._last_command.strip() == "*IDN?":
                self.identity = text.strip()
            return text

    def _read_bytes(self, count: int, break_on_termchar: bool = False, **kwargs: Any) -> bytes:
        with self.lock:
            data = self._guarded_recv(self._recv_bytes, count, break_on_termchar)
            if self.wire_log is not None:
                self.wire_log.read_binary(data)
            self.last_failure = None
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
                self.last_failure = f"the link was lost and cannot reopen: {exc}"
                raise InstrumentConnectionError(
                    f"{self.who}: the link was lost and cannot reopen: {exc}"
                ) from exc
            self.reconnects += 1

    def resync(self, probe: str = "*IDN?", expect: str | None = None, *,
               quiet_s: float | None = None, drain_limit_s: float | None = None) -> bool:
        """Bring the link back in step; True once a query with a known answer confirms it.

        Closes and reopens the link (:meth:`_restore_link`: a VISA session that supports
        it gets a device clear instead), reads and discards (logging them as ``x``) any
        bytes until the input has been quiet for ``quiet_s`` (s; at most
        ``drain_limit_s``, default the timeout), then asks ``probe`` and compares the
        answer with ``expect`` (case-insensitive substring; default the last ``*IDN?``
        reply seen). With nothing to compare against, two identical answers in a row
        confirm it. Two attempts. Never raises for the instrument's sake: False, with
        the reason in :attr:`resync_problem`.
        """
        quiet = self.resync_quiet_s if quiet_s is None else quiet_s
        limit = self._timeout_s if drain_limit_s is None else drain_limit_s
        with self.lock:
            self.resyncs += 1
            expected = expect if expect is not None else self.identity
            problem = "not attempted"
            for attempt in range(2):
                try:
                    if attempt == 0:
                        self._restore_link()
                    self._drain_input(quiet, limit)
                    reply = self.query(probe).strip()
                    if expected is not None:
                        aligned = expected.strip().lower() in reply.lower()
                    else:
                        aligned = bool(reply) and self.query(probe).strip() == reply
                    if aligned:
                        self.last_failure = self.resync_problem = None
                        return True
                    problem = (f"{probe!r} answered {reply[:120]!r}, expected "
                               f"{expected if expected is not None else 'the same twice'!r}")
                except InstrumentError as exc:
                    problem = str(exc)
                    if isinstance(exc, InstrumentConnectionError):
                        break
            self.resync_problem = f"{self.who}: resync failed: {problem}"
            self.last_failure = self.resync_problem
            return False

    def _drain_input(self, quiet_s: float, limit_s: float) -> bytes:
        """Take and log (``x``) whatever arrives until ``quiet_s`` (s) pass without a byte,
        or ``limit_s`` in all."""
        drained = bytearray()
        start = last = time.monotonic()
        while True:
            data, dropped = self._poll_input_guarded()
            now = time.monotonic()
            if data:
                drained += data
                if self.wire_log is not None:
                    self.wire_log.discarded(data)
                last = now
            if dropped:
                self.reconnect()
                last = time.monotonic()
            elif now - last >= quiet_s or now - start >= limit_s:
                return bytes(drained)
            else:
                time.sleep(min(0.005, quiet_s))

    def _poll_input_guarded(self) -> tuple[bytes, bool]:
        try:
            return self._poll_input()
        except Exception as exc:
            if self._is_link_error(exc) or isinstance(exc, self._io_errors):
                return b"", True
            raise

    def _before_send(self, command: str) -> None:
        """Reopen an out-of-step or dropped link; refuse to write over unsolicited input."""
        if self._out_of_step:
            self._out_of_step = False
            try:
                self.reconnect()
            except InstrumentConnectionError:
                pass  # a link that cannot reopen: fall back to discarding what is waiting
        data, dropped = self._poll_input_guarded()
        if data and self._stale:
            # The late reply of a timed-out query: expected, discarded, logged.
            if self.wire_log is not None:
                self.wire_log.discarded(data)
            data, dropped = self._poll_input_guarded()
        self._stale = False
        if data:
            if self.wire_log is not None:
                self.wire_log.discarded(data)
            error = StaleReply(self.who, command, data)
            self.last_failure = str(error)
            raise error
        if dropped:
            self.reconnect()

    def _guarded_send(self, send: Any, payload: Any) -> None:
        try:
            send(payload)
        except (KeyboardInterrupt, SystemExit):
            self._out_of_step = True  # a command half written: start again on a new link
            self.last_failure = f"interrupted while writing {payload!r}"
            raise
        except Exception as exc:
            if not self._is_link_error(exc):
                error = self._as_instrument_error(exc)
                self.last_failure = str(error)
                raise error from exc
            try:
                self.reconnect()
                send(payload)
            except Exception as again:
                self.last_failure = f"link lost; writing {payload!r} failed again: {again}"
                raise InstrumentConnectionError(
                    f"{self.who}: link lost; reopened once but writing {payload!r} "
                    f"failed again: {again}"
                ) from again

    def _guarded_recv(self, recv: Any, *args: Any) -> Any:
        waiting = f"the reply to {self._last_command!r}"
        try:
            return recv(*args)
        except (KeyboardInterrupt, SystemExit):
            self._stale = self._out_of_step = True
            self.last_failure = f"interrupted while waiting for {waiting}"
            raise
        except InstrumentTimeout as exc:
            self._stale = self._out_of_step = True
            self.last_failure = f"timed out waiting for {waiting}"
            if self._link_dropped():
                self._reopen_after_loss()
                raise InstrumentConnectionError(
                    f"{self.who}: the link dropped while waiting for {waiting}; reopened "
                    "it, the command was not repeated"
                ) from None
            # Name the instrument and the command, not only the resource.
            raise InstrumentTimeout(self.who, exc.timeout_s, waiting_for=waiting,
                                    partial=exc.partial) from None
        except InstrumentError as exc:
            self.last_failure = str(exc)
            raise
        except Exception as exc:
            if not self._is_link_error(exc):
                error = self._as_instrument_error(exc)
                self.last_failure = str(error)
                raise error from exc
            self.last_failure = f"the link dropped while waiting for {waiting}"
            self._reopen_after_loss()
            raise InstrumentConnectionError(
                f"{self.who}: the link dropped while waiting for {waiting} ({exc}); "
                "reopened it, the command was not repeated"
            ) from exc

    def _reopen_after_loss(self) -> None:
        try:
            self.reconnect()
        except InstrumentConnectionError as exc:
            raise InstrumentConnectionError(
                f"{self.who}: the link dropped while waiting for a reply; {exc}"
            ) from exc

    def _decode_reply(self, raw: bytes) -> str:
        """``raw`` (one reply line, terminator removed; a trailing ``\\r`` is dropped) as
        text; :class:`GarbledReply` naming the instrument, the command and the bytes if it
        is not printable ASCII (tab allowed)."""
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise GarbledReply(self.who, raw, f"not ASCII: byte 0x{raw[exc.start]:02x} at "
                               f"offset {exc.start}", command=self._last_command) from None
        if not text.isprintable() and not text.replace("\t", " ").isprintable():
            bad = next(i for i, ch in enumerate(text) if not (ch.isprintable() or ch == "\t"))
            raise GarbledReply(self.who, raw, f"control byte 0x{raw[bad]:02x} at offset "
                               f"{bad}", command=self._last_command)
        return text

    def _as_instrument_error(self, exc: Exception) -> Exception:
        """An I/O library's own error as an :class:`InstrumentError` naming the resource;
        anything else (a bug) unchanged."""
        if isinstance(exc, InstrumentError) or not isinstance(exc, self._io_errors):
            return exc
        return InstrumentConnectionError(f"{self.who}: {type(exc).__name__}: {exc}")

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

    def _poll_input(self) -> tuple[bytes, bool]:
        return b"", self._link_dropped()

    def _restore_link(self) -> None:
        self.reconnect()

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


def take_waiting(sock: Any) -> tuple[bytes, bool]:
    """Without waiting, the bytes already waiting on a connected socket (taken out of it)
    and whether the peer closed or reset it: ``(data, dropped)``.

    The common case, nothing waiting, is one non-blocking ``recv`` (the same cost as
    :func:`socket_peer_closed`). Needs a socket without a Python-level timeout.
    """
    chunks: list[bytes] = []
    while True:
        try:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return b"".join(chunks), False
        except OSError:
            return b"".join(chunks), True
        if not data:
            return b"".join(chunks), True
        chunks.append(data)


def set_tcp_nodelay(sock: Any) -> bool:
    """Turn Nagle's algorithm off on ``sock``; True if the option reads back as on."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
