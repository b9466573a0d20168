"""A process that writes compact wire logs, so the coding runs beside the instruments' work.

:class:`~instruments.wire_log.WireLog` (``.wlog``) hands each group of records to this
process through a pipe, in one ``write`` per reply as the in-process writer writes the file:
a record has reached the kernel when it is logged. The process codes and writes them
(:class:`~instruments.wire_log.CompactWriter`, the same file format), a group holding up
to :data:`~instruments.wire_log.COMMIT_S` of exchanges; a killed labctl leaves it to finish
the pipe's content, so the log is complete; killed both, the log ends at a whole group, as
any torn log. It ignores SIGINT, SIGTERM and SIGHUP (a Ctrl-C reaches
the whole process group: the logs must outlive the command's shutdown) and ends when the
pipe closes.

Frames on the pipe: ``op varint(log id) varint(len) payload``; op 1 open (path, UTF-8),
2 records (``kind varint(t_us) varint(len) value`` each, kind ``w``/``r``/``rb``/``x`` as
0..3) ending a group, 3 records not ending one, 4 close, 5 sync (the process answers a
line once everything before it is written). ``LABCTL_WIRE_LOG_WRITER=inline`` keeps the
coding in the instruments' process.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import subprocess
import sys
import threading
from typing import BinaryIO

from instruments.wire_codec import Reader, unzz, varint, zz

KINDS = ("w", "r", "rb", "x")  # as instruments.wire_log numbers them

OPEN, GROUP, RECORDS, CLOSE, SYNC = 1, 2, 3, 4, 5
_orphans: list[object] = []  # a forked child's copies of its parent's writer
_KIND = {k: i for i, k in enumerate(KINDS)}


def record(kind: str, t_us: int, value: str | bytes) -> bytes:
    """One record of a frame's payload."""
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return bytes([_KIND[kind] | (4 if isinstance(value, str) else 0)]) + varint(zz(t_us)) \
        + varint(len(raw)) + raw


def records_of(payload: bytes) -> list[tuple[str, int, str | bytes]]:
    """The records of a frame's payload: ``(kind, t_us, value)``."""
    p = Reader(payload)
    out: list[tuple[str, int, str | bytes]] = []
    while p.pos < len(payload):
        head = p.take(1)[0]
        t_us = unzz(p.uint())
        value = p.take(p.uint())
        out.append((KINDS[head & 3], t_us,
                    value.decode("utf-8", "surrogatepass") if head & 4 else value))
    return out


class WriterProcess:
    """The writer process of this labctl process (started on first use; a forked child
    starts its own)."""

    _instance: WriterProcess | None = None
    _lock = threading.Lock()

    @classmethod
    def _forget(cls) -> None:
        """In a forked child: drop the parent's pipe (its writer must see the parent's
        end of file, not wait for the child's), start afresh if the child logs."""
        if cls._instance is not None:
            for f in (cls._instance._in, cls._instance._out):
                with contextlib.suppress(OSError):
                    f.close()  # the child's copies only
            _orphans.append(cls._instance)  # never collected: no second close, no wait
            cls._instance = None
        cls._lock = threading.Lock()

    @classmethod
    def get(cls) -> WriterProcess:
        with cls._lock:
            if cls._instance is None or cls._instance.pid != os.getpid() \
                    or cls._instance.proc.poll() is not None:
                cls._instance = WriterProcess()
            return cls._instance

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from instruments.wire_log import serve_main; serve_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with contextlib.suppress(OSError, AttributeError):  # room for bursts: 1 MiB (Linux)
            fcntl.fcntl(self.proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        self._in: BinaryIO = self.proc.stdin
        self._out: BinaryIO = self.proc.stdout
        self._send_lock = threading.Lock()
        self._next = 0
        atexit.register(self.stop)

    def open(self, path: str) -> int:
        with self._send_lock:
            self._next += 1
            # Absolute: the writer outlives a command and keeps the cwd it started in.
            self._write(OPEN, self._next, os.fsencode(os.path.abspath(path)))
            return self._next

    def send(self, log: int, payload: bytes, *, ends_group: bool) -> None:
        with self._send_lock:
            self._write(GROUP if ends_group else RECORDS, log, payload)

    def close(self, log: int) -> None:
        with self._send_lock:
            self._write(CLOSE, log, b"")
        self.sync()

    def sync(self) -> None:
        """Return once everything sent so far is written (or the process is gone)."""
        with self._send_lock:
            self._write(SYNC, 0, b"")
            line = self._out.readline()
        if line != b"ok\n":
            raise OSError(f"the wire-log writer process ended ({self.proc.poll()})")

    def _write(self, op: int, log: int, payload: bytes) -> None:
        # One write per frame: the payload is in the kernel (the pipe) when this returns.
        os.write(self._in.fileno(), bytes([op]) + varint(log) + varint(len(payload)) + payload)

    def stop(self) -> None:
        if self.pid != os.getpid():
            return
        try:
            self._in.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


os.register_at_fork(after_in_child=WriterProcess._forget)
