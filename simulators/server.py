"""Serve a simulated instrument's line protocol on a loopback TCP socket or a pseudo-terminal.

An instrument is any object with ``handle(line: str) -> str | bytes | None``: a str reply
is sent with a ``\\n`` terminator, bytes are sent as they are (a binary block carries its
own framing), None sends nothing. The servers only frame lines; the instrument keeps its
own state and lock, so several clients may talk to it in turn and a client that vanishes
mid-command leaves the instrument serving the next one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import threading
import tty
from typing import Protocol


class LineInstrument(Protocol):
    def handle(self, line: str) -> str | bytes | None: ...


def _frame(reply: str | bytes | None) -> bytes:
    if reply is None:
        return b""
    if isinstance(reply, bytes):
        return reply
    return reply.encode("ascii", "replace") + b"\n"


def _split_lines(buffer: bytearray) -> list[str]:
    lines = []
    while (end := buffer.find(b"\n")) >= 0:
        raw = bytes(buffer[:end]).rstrip(b"\r")
        del buffer[: end + 1]
        lines.append(raw.decode("ascii", "replace"))
    return lines


class TcpServer:
    """A threaded TCP server bound to 127.0.0.1 that feeds lines to one instrument."""

    def __init__(self, instrument: LineInstrument, port: int = 0):
        self.instrument = instrument
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._clients: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def resource(self) -> str:
        """The VISA resource string of this server."""
        return f"TCPIP::127.0.0.1::{self.port}::SOCKET"

    @property
    def url(self) -> str:
        """The pyserial URL of this server."""
        return f"socket://127.0.0.1:{self.port}"

    def start(self) -> TcpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        # close() alone does not wake a thread blocked in accept() on Linux; shutdown() does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        for client in list(self._clients):
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
                client.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            # Replies are small and latency-bound: never wait for Nagle's coalescing.
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._clients.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        buffer = bytearray()
        try:
            while not self._stop.is_set():
                data = client.recv(65536)
                if not data:
                    return
                buffer += data
                for line in _split_lines(buffer):
                    out = _frame(self.instrument.handle(line))
                    if out:
                        client.sendall(out)
        except OSError:
            return
        finally:
            self._clients.discard(client)
            with contextlib.suppress(OSError):
                client.close()


class PtyServer:
    """Serve an instrument on a pseudo-terminal; clients open :attr:`path` like a tty."""

    def __init__(self, instrument: LineInstrument):
        self.instrument = instrument
        self._master, self._slave = os.openpty()
        # Raw mode: no echo and no newline translation, so binary blocks pass unchanged.
        tty.setraw(self._slave)
        self.path: str = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return self.path

    def start(self) -> PtyServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _serve(self) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self._master, 65536)
            except OSError as exc:
                if exc.errno == errno.EIO:  # no client has the tty open right now
                    continue
                return
            buffer += data
            for line in _split_lines(buffer):
                out = _frame(self.instrument.handle(line))
                while out:
                    written = os.write(self._master, out)
                    out = out[written:]
