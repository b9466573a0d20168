"""Serve a simulated instrument's line protocol on a loopback TCP socket or a pseudo-terminal.

An instrument is any object with ``handle(line: str) -> str | bytes | None``: a str reply
is sent with a ``\\n`` terminator, bytes are sent as they are (a binary block carries its
own framing), None sends nothing. The servers only frame lines; the instrument keeps its
own state and lock, so several clients may talk to it in turn and a client that vanishes
mid-command leaves the instrument serving the next one.

Faults: both servers take ``faults=`` (a :class:`~simulators.faults.FaultSpec`) and wrap the
instrument with :func:`~simulators.faults.wrap`, or serve an instrument wrapped already.
A :class:`~simulators.faults.DropLink` from ``handle`` sends its reply and drops the link:
TCP closes that client's socket and goes on accepting; a pty discards input until the
client has closed and reopened the device (the server polls every 10 ms, so a client must
stay closed longer than that). Any other exception of ``handle`` is logged and the line
gets no reply; on TCP an OSError from ``handle`` closes that client's connection.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import threading
import time
import tty
from typing import Any, Protocol

from simulators.faults import DropLink, FaultSpec, FaultyInstrument, frame, wrap

__all__ = [
    "DropLink",
    "FaultSpec",
    "FaultyInstrument",
    "LineInstrument",
    "PtyServer",
    "TcpServer",
    "wrap",
]
log = logging.getLogger(__name__)
DRAIN_S = 0.2  # how long a dropped TCP link's unread input is drained before the close
REOPEN_POLL_S = 0.01


class LineInstrument(Protocol):
    def handle(self, line: str) -> str | bytes | None: ...


_frame = frame


def _split_lines(buffer: bytearray) -> list[str]:
    lines = []
    while (end := buffer.find(b"\n")) >= 0:
        raw = bytes(buffer[:end]).rstrip(b"\r")
        del buffer[: end + 1]
        lines.append(raw.decode("ascii", "replace"))
    return lines


class TcpServer:
    """A threaded TCP server bound to 127.0.0.1 that feeds lines to one instrument."""

    def __init__(
        self,
        instrument: LineInstrument,
        port: int = 0,
        faults: FaultSpec | None = None,
        *,
        world: Any = None,
        name: str = "",
    ):
        self.instrument = wrap(instrument, faults, world, name)
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
            except OSError as exc:
                if self._stop.is_set() or exc.errno in (errno.EINVAL, errno.EBADF):
                    return  # the listener was shut down or closed
                log.warning("accept failed (%s); still listening", exc)
                time.sleep(0.05)
                continue
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
                    try:
                        out = _frame(self.instrument.handle(line))
                    except DropLink as drop:
                        if drop.reply:
                            client.sendall(drop.reply)
                        self._hang_up(client)
                        return
                    except OSError:
                        return  # the instrument closes this link
                    except Exception:
                        log.exception("instrument failed on %r; serving on", line)
                        continue
                    if out:
                        client.sendall(out)
        except OSError:
            return
        finally:
            self._clients.discard(client)
            with contextlib.suppress(OSError):
                client.close()

    @staticmethod
    def _hang_up(client: socket.socket) -> None:
        """Send FIN after the last reply, then drain unread input so close() sends no RST."""
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + DRAIN_S
            while (left := deadline - time.monotonic()) > 0:
                client.settimeout(left)
                if not client.recv(65536):
                    break


class PtyServer:
    """Serve an instrument on a pseudo-terminal; clients open :attr:`path` like a tty."""

    def __init__(
        self,
        instrument: LineInstrument,
        faults: FaultSpec | None = None,
        *,
        world: Any = None,
        name: str = "",
    ):
        self.instrument = wrap(instrument, faults, world, name)
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
            if fd >= 0:
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
                    self._stop.wait(REOPEN_POLL_S)
                    continue
                return
            buffer += data
            buffer = self._feed(buffer)

    def _feed(self, buffer: bytearray) -> bytearray:
        """Handle every complete line of ``buffer``; what is left to read on."""
        while lines := _split_lines(buffer):
            for line in lines:
                try:
                    out = _frame(self.instrument.handle(line))
                except DropLink as drop:
                    self._write(drop.reply)
                    buffer = self._drop_link()
                    break  # the lines after it went with the dropped link
                except Exception:
                    log.exception("instrument failed on %r; serving on", line)
                    continue
                self._write(out)
        return buffer

    def _write(self, out: bytes) -> None:
        try:
            while out:
                written = os.write(self._master, out)
                out = out[written:]
        except OSError as exc:
            log.warning("pty write failed (%s); reply lost", exc)

    def _drop_link(self) -> bytearray:
        """Ignore the client until it has closed and reopened the tty; its first input.

        The server's own slave descriptor is closed meanwhile, so that the master sees the
        client's close (EIO); input read before that is discarded, uncounted.
        """
        with contextlib.suppress(OSError):
            os.close(self._slave)
        self._slave = -1
        closed = False
        pending = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], REOPEN_POLL_S)
            if not ready:
                if closed:
                    break  # reopened, nothing sent yet
                continue
            try:
                data = os.read(self._master, 65536)
            except OSError as exc:
                if exc.errno != errno.EIO:
                    return pending
                closed = True
                self._stop.wait(REOPEN_POLL_S)
                continue
            if closed:
                pending += data  # the new client's first input
                break
        if not self._stop.is_set():
            with contextlib.suppress(OSError):
                self._slave = os.open(self.path, os.O_RDWR | os.O_NOCTTY)
        return pending
