"""VISA transport: pymeasure's ``VISAAdapter`` with Nagle off, lock, wire log, reconnection.

Entry point: ``VisaTransport("TCPIP::127.0.0.1::5025::SOCKET", timeout_s=2.0)``; pass it to
any pymeasure ``Instrument``. Backend: pyvisa-py (``@py``) unless ``visa_library`` says
otherwise (``"@ivi"``, a vendor library's path such as
``/usr/lib/x86_64-linux-gnu/libvisa.so``); :func:`resource_manager` keeps one pyvisa
``ResourceManager`` per library for every transport of the process, and a library that
cannot be loaded is a :class:`VisaLibraryError` naming the instrument and the library.

Why TCP_NODELAY matters: on a raw socket a driver often writes a command and then sends a
query (``:SOUR:CURR 1e-5`` then ``:READ?``). With Nagle's algorithm on, the query waits in
the kernel until the instrument ACKs the first segment, and the instrument delays that
ACK (delayed ACK, ~40 ms on Linux). A 50 us exchange then costs ~44 ms. pyvisa-py 0.8.1
registers ``VI_ATTR_TCPIP_NODELAY`` with a setter that raises ``UnknownAttribute``, so
the option is set here on the socket that pyvisa-py's ``TCPIPSocketSession`` keeps as
``.interface``, right after every (re)open; when that socket cannot be found the VISA
attribute is tried, and failing that a warning says what the missing option costs.

Units: s.
"""

from __future__ import annotations

import os
import socket
import threading
import warnings
from typing import Any

import pyvisa
from pymeasure.adapters import VISAAdapter
from pyvisa.constants import ResourceAttribute, StatusCode

from instruments.line_settings import DEFAULT_TERMINATION, DEFAULT_VISA_LIBRARY
from instruments.transport import (
    InstrumentConnectionError,
    InstrumentTimeout,
    TransportMixin,
    WireLog,
    set_tcp_nodelay,
    socket_peer_closed,
    take_waiting,
)

_managers: dict[str, pyvisa.ResourceManager] = {}
_managers_lock = threading.Lock()


class VisaLibraryError(InstrumentConnectionError):
    """The VISA library an instrument names cannot be loaded (``library``: as given)."""

    def __init__(self, who: str, library: str, why: str):
        self.library = library
        self.why = why
        super().__init__(f"{who}: VISA library {library!r} cannot be loaded: {why}")


def resource_manager(visa_library: str = DEFAULT_VISA_LIBRARY, *, who: str = "VISA"
                     ) -> pyvisa.ResourceManager:
    """The process's one pyvisa ``ResourceManager`` for ``visa_library`` (``""`` and
    ``"@py"`` are the same: pyvisa-py), opened on first use and again after it was
    closed. :class:`VisaLibraryError` (naming ``who`` and the library) if it cannot be
    loaded."""
    key = visa_library.strip() or DEFAULT_VISA_LIBRARY
    with _managers_lock:
        rm = _managers.get(key)
        if rm is not None:
            try:
                _ = rm.session  # raises once the manager was closed
                return rm
            except pyvisa.errors.InvalidSession:
                del _managers[key]
        try:
            rm = pyvisa.ResourceManager(key)
        except (pyvisa.errors.LibraryError, OSError, ValueError) as exc:
            raise VisaLibraryError(who, visa_library, str(exc)) from exc
        _managers[key] = rm
        return rm


# VISA status codes that mean the link itself is gone, not a slow instrument.
_LINK_LOST = {
    StatusCode.error_connection_lost,
    StatusCode.error_io,
    StatusCode.error_invalid_object,
    StatusCode.error_resource_not_found,
}


class VisaTransport(TransportMixin, VISAAdapter):
    """A pymeasure VISA adapter for labctl.

    resource_name: VISA resource string; timeout_s: longest wait for a reply (s), also
    the open timeout; wire_log: optional :class:`WireLog`; name: used in error messages
    (default: the resource string); nodelay: turn Nagle's algorithm off on raw sockets
    (False only to measure what it costs); visa_library: ``"@py"`` (pyvisa-py, the
    default), ``"@ivi"`` or a vendor VISA library's path (see :func:`resource_manager`);
    read_termination / write_termination: ``"\\n"`` unless given (``"\\r\\n"``,
    ``"\\r"``); further keyword arguments go to pyvisa's ``open_resource`` (an ``ASRL``
    resource's ``baud_rate``, ``parity``, ...).

    ``nodelay`` afterwards tells what is in effect: True (off, verified), False (Nagle
    on) or None (not a raw TCP socket: the option does not apply).
    """

    _io_errors = (pyvisa.errors.Error, OSError)

    def __init__(
        self,
        resource_name: str,
        *,
        timeout_s: float = 5.0,
        wire_log: WireLog | None = None,
        name: str | None = None,
        nodelay: bool = True,
        visa_library: str = DEFAULT_VISA_LIBRARY,
        read_termination: str = DEFAULT_TERMINATION,
        write_termination: str = DEFAULT_TERMINATION,
        **kwargs: Any,
    ):
        self._init_transport(resource_name, timeout_s, wire_log, name)
        self.nodelay_requested = nodelay
        self.nodelay: bool | None = None
        self._socket: socket.socket | None = None
        self._session: Any = None
        self.visa_library = visa_library
        self._read_end = read_termination.encode("ascii")
        ms = _ms(timeout_s)
        self._open_kwargs: dict[str, Any] = {
            "read_termination": read_termination,
            "write_termination": write_termination,
            "timeout": ms,
            "open_timeout": ms,
            **kwargs,
        }
        # Before the try below: a library that will not load says so, not "cannot open".
        rm = resource_manager(visa_library, who=self.who)
        try:
            # pyvisa hands back the manager of a library it has loaded: this one.
            super().__init__(resource_name, rm.visalib, **self._open_kwargs)
        except Exception as exc:
            raise InstrumentConnectionError(
                f"{self.who}: cannot open ({exc}) within {timeout_s:g} s"
            ) from exc
        self._after_open()

    # -- opening -------------------------------------------------------------------------
    def _open_link(self) -> None:
        try:
            self.connection = self.manager.open_resource(self.resource_name, **self._open_kwargs)
        except Exception as exc:
            raise InstrumentConnectionError(
                f"{self.who}: cannot open ({exc}) within {self.timeout_s:g} s"
            ) from exc
        self._after_open()

    def _after_open(self) -> None:
        self._session = self._find_session()
        self._socket = self._find_socket()
        if self._socket is not None:
            # pyvisa-py connects without blocking and takes "writable" as success, so a
            # refused connection only shows as a pending socket error.
            err = self._socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._close_link()
                raise InstrumentConnectionError(
                    f"{self.who}: cannot connect: {os.strerror(err)}"
                )
        self.nodelay = self._disable_nagle() if self.nodelay_requested else False

    def _find_session(self) -> Any:
        """pyvisa-py's session object of the open resource, or None."""
        try:
            return self.connection.visalib.sessions[self.connection.session]
        except Exception:  # another backend, or no session table: no session to reach
            return None

    def _find_socket(self) -> socket.socket | None:
        """The TCP socket under a pyvisa-py raw-socket session, or None."""
        sock = getattr(self._find_session(), "interface", None)
        return sock if isinstance(sock, socket.socket) else None

    def _disable_nagle(self) -> bool | None:
        if not self.resource_name.upper().endswith("::SOCKET"):
            return None
        if self._socket is not None:
            try:
                if set_tcp_nodelay(self._socket):
                    return True
            except OSError:
                pass
        try:
            self.connection.set_visa_attribute(ResourceAttribute.tcpip_nodelay, True)
            return True
        except Exception as exc:
            warnings.warn(
                f"{self.resource_name}: cannot turn Nagle's algorithm off ({exc}); a write "
                "followed by a query may cost ~40 ms instead of well under 1 ms",
                RuntimeWarning,
                stacklevel=3,
            )
            return False

    def _close_link(self) -> None:
        self._socket = self._session = None
        self.connection.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._socket = self._session = None
        if getattr(self, "connection", None) is None:
            return
        try:
            super().close()
        except (pyvisa.errors.InvalidSession, pyvisa.errors.VisaIOError):
            pass  # already closed

    # -- I/O hooks -----------------------------------------------------------------------
    def _send_text(self, command: str) -> None:
        VISAAdapter._write(self, command)

    def _send_bytes(self, data: bytes) -> None:
        VISAAdapter._write_bytes(self, data)

    def _recv_text(self) -> str:
        try:
            raw = self.connection.read_raw()
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == StatusCode.error_timeout:
                raise InstrumentTimeout(self.resource_name, self.timeout_s) from None
            raise
        # Decoded here, not by pyvisa: a non-ASCII reply is a GarbledReply naming the
        # instrument and command, not a bare UnicodeDecodeError.
        end = self._read_end
        return self._decode_reply(raw[: -len(end)] if raw.endswith(end) else raw)

    def _recv_bytes(self, count: int, break_on_termchar: bool) -> bytes:
        try:
            return VISAAdapter._read_bytes(self, count, break_on_termchar)
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == StatusCode.error_timeout:
                raise InstrumentTimeout(self.resource_name, self.timeout_s,
                                        waiting_for=f"{count} bytes") from None
            raise

    def _is_link_error(self, exc: BaseException) -> bool:
        if isinstance(exc, pyvisa.errors.VisaIOError):
            return exc.error_code in _LINK_LOST
        return isinstance(exc, (OSError, pyvisa.errors.InvalidSession))

    def _link_dropped(self) -> bool:
        return self._socket is not None and socket_peer_closed(self._socket)

    def _poll_input(self) -> tuple[bytes, bool]:
        # pyvisa-py keeps what arrived after a reply's terminator in the session's
        # pending buffer: a duplicate that came in the same segment waits there, not in
        # the socket. Other backends (no socket found): nothing can be polled.
        session = self._session
        pending = getattr(session, "_pending_buffer", None)
        held = b""
        if pending:
            held = bytes(pending)
            pending.clear()
        if self._socket is None:
            return held, False
        data, dropped = take_waiting(self._socket)
        return held + data, dropped

    def _restore_link(self) -> None:
        # A raw socket has no device clear (pyvisa-py's only drains it): reopen. Sessions
        # with a real device clear (VXI-11, GPIB, USBTMC) get one, else a reopen.
        if self._socket is not None or self.resource_name.upper().endswith("::SOCKET"):
            self.reconnect()
            return
        try:
            self.connection.clear()
        except Exception:  # noqa: BLE001 - no device clear here: reopen instead
            self.reconnect()

    def _apply_timeout(self, seconds: float) -> None:
        self._open_kwargs["timeout"] = _ms(seconds)
        self.connection.timeout = _ms(seconds)

    def _discard_input(self) -> None:
        self.flush_read_buffer()

    def __repr__(self) -> str:
        return f"<VisaTransport(resource={self.resource_name!r}, nodelay={self.nodelay})>"


def _ms(seconds: float) -> int:
    """pyvisa timeouts are whole milliseconds; never round a short timeout to 0 (= no wait)."""
    return max(1, round(seconds * 1000))
