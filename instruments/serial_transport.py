"""Serial transport: pymeasure's ``SerialAdapter`` on any pyserial URL, with lock, wire log,
timeouts and reconnection.

Entry point: ``SerialTransport("/dev/ttyUSB0", timeout_s=2.0)``; any URL
``serial.serial_for_url`` opens works (``/dev/pts/3``, ``socket://host:port``,
``loop://``, ``rfc2217://...``). The line settings (baud rate, parity, stop and data bits,
flow control) and the terminations are a :class:`~instruments.line_settings.LinkSettings`
(default: 115200 baud, 8N1, no flow control, ``\\n`` both ways); an ``rfc2217://`` link
sends them to the port server. A read that does not complete within the timeout raises
:class:`InstrumentTimeout` naming the port and the timeout; nothing waits longer.
On ``socket://`` links Nagle's algorithm is turned off (see ``visa_transport``).

Units: s, baud.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import serial
from pymeasure.adapters import SerialAdapter
from serial.urlhandler import protocol_socket

from instruments.line_settings import LinkSettings
from instruments.transport import (
    InstrumentConnectionError,
    InstrumentTimeout,
    TransportMixin,
    WireLog,
    set_tcp_nodelay,
    socket_peer_closed,
    take_waiting,
)


class SerialTransport(TransportMixin, SerialAdapter):
    """A pymeasure serial adapter for labctl.

    url: device path or pyserial URL; timeout_s: longest wait for a reply (s), also the
    write timeout; line: the line settings and terminations (a
    :class:`~instruments.line_settings.LinkSettings`; default 115200 8N1, ``\\n`` both
    ways); baud_rate (baud): shorthand for a line that differs only in its rate (ignored
    when ``line`` is given); wire_log: optional :class:`WireLog`; name: used in error
    messages (default: the URL). Further keyword arguments go to
    ``serial.serial_for_url`` and override ``line``.
    """

    #: Time (s) the line stays closed when the link is closed to be reopened.
    hangup_s = 0.1

    _io_errors = (serial.SerialException, OSError)

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        baud_rate: int = 115200,
        line: LinkSettings | None = None,
        wire_log: WireLog | None = None,
        name: str | None = None,
        **kwargs: Any,
    ):
        self._init_transport(url, timeout_s, wire_log, name)
        self.url = url
        self.line = line if line is not None else LinkSettings(baud_rate=baud_rate)
        self._serial_kwargs = {**self.line.pyserial_kwargs(), **kwargs}
        self._read_end = self.line.read_termination.encode("ascii")
        # pyserial's RFC 2217 client has no write timeout (it raises NotImplementedError).
        self._write_timeout = not url.lower().startswith("rfc2217://")
        self.nodelay: bool | None = None
        super().__init__(self._connect(), write_termination=self.line.write_termination,
                         read_termination=self.line.read_termination)

    # -- opening -------------------------------------------------------------------------
    def _connect(self) -> serial.SerialBase:
        try:
            timeouts = {"timeout": self._timeout_s}
            if self._write_timeout:
                timeouts["write_timeout"] = self._timeout_s
            conn = serial.serial_for_url(self.url, **timeouts, **self._serial_kwargs)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise InstrumentConnectionError(f"{self.who}: cannot open: {exc}") from exc
        sock = self._tcp_socket(conn)
        if sock is not None:
            self.nodelay = set_tcp_nodelay(sock)
        return conn

    @staticmethod
    def _tcp_socket(conn: serial.SerialBase) -> socket.socket | None:
        # pyserial's socket:// handler keeps its socket as ``_socket``; nothing public. Only
        # that handler's: rfc2217:// keeps one too, but a thread of its own reads it (telnet
        # framing), so a peek or a recv here would steal its bytes.
        if not isinstance(conn, protocol_socket.Serial):
            return None
        sock = getattr(conn, "_socket", None)
        return sock if isinstance(sock, socket.socket) else None

    def _open_link(self) -> None:
        self.connection = self._connect()

    def _close_link(self) -> None:
        self.connection.close()
        # A hang-up the far end can see: a device (or a USB-serial bridge) needs a moment
        # with the line closed before a reopen counts as a new connection.
        time.sleep(self.hangup_s)

    def close(self) -> None:
        """Close the port (idempotent)."""
        conn = getattr(self, "connection", None)
        if conn is not None:
            conn.close()

    # -- I/O hooks -----------------------------------------------------------------------
    def _send_text(self, command: str) -> None:
        self._send_bytes((command + self.write_termination).encode("ascii"))

    def _send_bytes(self, data: bytes) -> None:
        try:
            self.connection.write(data)
        except serial.SerialTimeoutException:
            raise InstrumentTimeout(self.url, self._timeout_s,
                                    waiting_for="room to write") from None

    def _recv_text(self) -> str:
        end = self._read_end
        line = self.connection.read_until(end)
        if not line.endswith(end):
            raise InstrumentTimeout(self.url, self._timeout_s, partial=line)
        return self._decode_reply(line[: -len(end)])

    def _recv_bytes(self, count: int, break_on_termchar: bool) -> bytes:
        if count < 0:
            # pymeasure's meaning of -1: whatever arrives until the timeout.
            return SerialAdapter._read_bytes(self, count, break_on_termchar)
        data = SerialAdapter._read_bytes(self, count, break_on_termchar)
        complete = len(data) == count or (break_on_termchar and data.endswith(self._read_end))
        if not complete:
            raise InstrumentTimeout(self.url, self._timeout_s,
                                    waiting_for=f"{count} bytes", partial=data)
        return data

    def _is_link_error(self, exc: BaseException) -> bool:
        return isinstance(exc, (serial.SerialException, OSError)) and not isinstance(
            exc, serial.SerialTimeoutException
        )

    def _link_dropped(self) -> bool:
        sock = self._tcp_socket(self.connection)
        return sock is not None and socket_peer_closed(sock)

    def _poll_input(self) -> tuple[bytes, bool]:
        # pyserial reads line by line without buffering ahead, so whatever is waiting is
        # in the socket or the tty's input queue: one non-blocking recv, or one ioctl.
        sock = self._tcp_socket(self.connection)
        if sock is not None:
            return take_waiting(sock)
        conn = self.connection
        if not conn.is_open:
            return b"", True
        chunks = []
        while waiting := conn.in_waiting:
            chunks.append(conn.read(waiting))
        return b"".join(chunks), False

    def _apply_timeout(self, seconds: float) -> None:
        self.connection.timeout = seconds
        if self._write_timeout:
            self.connection.write_timeout = seconds

    def _discard_input(self) -> None:
        self.connection.reset_input_buffer()

    def __repr__(self) -> str:
        return f"<SerialTransport(url={self.url!r})>"
