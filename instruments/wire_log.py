"""Wire logs: every message of one instrument, compact and crash-safe (``.wlog``).

:class:`WireLog` records what a transport wrote (``w``, text without terminator), read
(``r``, text), read as bytes (``rb``) and found waiting unsolicited and discarded (``x``),
each with ``t``, s since the log was opened (kept to the microsecond). A path ending in
``.jsonl`` gets the JSON lines of labctl before this format (``{"t": 0.001, "w": "..."}``,
binary base64; a session recorded so keeps its format when resumed);
:meth:`WireLog.load` and :func:`read_entries` read both.

Format of a ``.wlog`` file::

    file    := MAGIC segment (0x00 segment)*       MAGIC = SIGNATURE + version byte
    segment := group*                              one writer's compressed stream
    group   := varint(n > 0) crc32(data, LE u32) data[n]
    data    := compressed output up to a flush: whole records, nothing else

``SIGNATURE`` is ``b"\\x89LWL\\r\\n\\x1a\\n"``. Version 2 (written): a segment is one zstd
stream (level :data:`ZSTD_LEVEL`), never ended, each group closed by a block flush; version
1 (still read, and kept by a writer that appends to such a log): a raw deflate stream, each
group closed by a partial flush. Any other version is refused, naming file and version.

A group is one ``write`` system call: with ``durable`` (the sessions' logs) a group ends at
every reply (``r``, ``rb``, ``x``), as the JSON lines were flushed, so a killed process
loses at most the commands of one exchange (the writer process holds them up to
:data:`COMMIT_S`, see :func:`serve`); otherwise when 64 KiB are pending, and at
:meth:`~WireLog.flush` and :meth:`~WireLog.close`.

The coding runs in a writer process (:mod:`instruments.wire_log_process`, one per labctl
process, started with the first log): each exchange's records go to it through a pipe in
one ``write`` (in the kernel when logged, as before), and it writes the groups. So the
coding costs the instruments' process nothing but a copy; a ``kill -9`` of labctl loses
nothing (the writer finishes the pipe, then exits); a writer holds an exclusive ``flock``
on its log, so a resumed run appends only after it. ``LABCTL_WIRE_LOG_WRITER=inline``
codes in the process itself. A ``kill -9`` can only leave the last
group short: the reader stops at a group whose bytes run past the end of the file, or whose
CRC does not match as the file's last group (a torn tail, :attr:`LogContents.torn`); any
other damage raises :class:`WireLogError` naming the file and offset. A writer that opens
an existing log cuts a torn tail off and starts a new segment (``0x00``: a fresh deflate
stream; times restart at 0 as a new log's do).

Records, inside the compressed stream::

    record := head varint(dt) body           dt: us since the previous record (first: since
                                             the log opened), zig-zag
    head   := kind | encoding << 2           kind 0 w, 1 r, 2 rb, 3 x
    body   := varint(len) bytes              encoding 0: text as UTF-8, bytes as they are
            | numeric                        encoding 1: text as numbers, see wire_codec
            | shuffled                       encoding 2: bytes in planes, see wire_codec
            | varint(place)                  encoding 3: a short text (< 64 characters)
                                             met again: its place among the last 64
                                             distinct ones, most recent first

Numeric text rebuilds every character (the shape of each number is kept); its columns are
predicted from their own past, from the numbers written before (an SMU's readings repeat
its source list) or from another column, see :mod:`instruments.wire_codec`. Writer and
reader keep the written numbers alike (:class:`~instruments.wire_codec.EchoBuffer`, reset
with each segment).
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import select
import signal
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

import zstandard

from instruments import wire_log_process as writer_process
from instruments.wire_codec import (
    CodecError,
    EchoBuffer,
    Plans,
    Reader,
    decode_binary,
    decode_numeric,
    encode_binary,
    encode_numeric,
    render,
    varint,
    zz,
)

#: The first 8 bytes of every ``.wlog``; a version byte follows (:data:`VERSIONS`).
SIGNATURE = b"\x89LWL\r\n\x1a\n"
#: Version 1: segments are raw deflate streams (zlib); 2: zstd streams (what is written).
VERSIONS = (1, 2)
VERSION = 2
MAGIC = SIGNATURE + bytes([VERSION])
SUFFIX = ".wlog"
LEGACY_SUFFIX = ".jsonl"
KINDS = ("w", "r", "rb", "x")
_KIND = {k: i for i, k in enumerate(KINDS)}
#: Texts shorter than this stay literal: deflate does as well, and faster.
NUMERIC_MIN_CHARS = 64
#: zlib level of version 1 (a log of that version appended to).
LEVEL = 6
#: zstd level of version 2: on a default training's coded records, 9 gives 7 % fewer
#: bytes than deflate 6 in about its time (3: 2 %, twice as fast; 19: 10 %, 15x slower).
ZSTD_LEVEL = 9
#: Distinct short texts remembered (a station's commands and short replies repeat).
RECENT = 64
#: A numeric body is kept when at most this fraction of the text (raw sizes; deflate
#: shrinks a list of numbers as text to about a quarter, and the numeric body a little).
NUMERIC_RATIO = 0.5


class WireLogError(ValueError):
    """A wire log that cannot be read (not a wire log, or damaged before its end)."""


def is_compact(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (an existing file) is in this format (else: JSON lines)."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
    return head[:len(SIGNATURE)] == SIGNATURE and len(head) == len(MAGIC)


# -- writing ----------------------------------------------------------------------------
class Recent:
    """The last :data:`RECENT` distinct short texts, most recent first: a text met again
    is coded as its place here (writer and reader move it to the front alike)."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def find(self, text: str) -> int | None:
        """The place of ``text`` (None: new), and ``text`` moved (or put) in front."""
        try:
            at: int | None = self.texts.index(text)
        except ValueError:
            at = None
        else:
            del self.texts[at]
        self.texts.insert(0, text)
        del self.texts[RECENT:]
        return at

    def take(self, at: int) -> str:
        if at >= len(self.texts):
            raise CodecError(f"a repeated text at place {at} of {len(self.texts)}")
        text = self.texts.pop(at)
        self.texts.insert(0, text)
        return text


class CompactWriter:
    """Appends records to a ``.wlog`` file; one ``write`` per group (see the module doc)."""

    def __init__(self, path: str, *, group_bytes: int = 1 << 16, version: int = VERSION):
        self.path = path
        self.group_bytes = group_bytes
        # Unbuffered: each group goes to the kernel in one write, nothing waits in Python.
        self._file: BinaryIO = open(path, "a+b", buffering=0)  # noqa: SIM115 - closed in close
        try:
            # One writer at a time: a writer process still finishing the log of a killed
            # command holds it; whoever appends next (a resumed run) waits for it.
            _lock(self._file, path)
            head, version = _open_for_append(self._file, path, version)
        except BaseException:
            self._file.close()
            raise
        self.version = version  # a log keeps the version it was begun with
        self._co: Any
        if version == 1:
            self._co = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, 9)
            self._flush_mode = zlib.Z_PARTIAL_FLUSH
        else:
            self._co = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
            self._flush_mode = zstandard.COMPRESSOBJ_FLUSH_BLOCK
        self._out = bytearray()
        self._prefix = head  # written with the first group
        self._raw = 0
        self._last_us = 0
        self._echo = EchoBuffer()
        self._recent = Recent()
        self._plans = Plans()
        self._stride = 1  # of the last binary record (the same instrument sends alike)
        self.closed = False

    def add(self, kind: str, t_us: int, value: str | bytes) -> None:
        """Encode one record (it reaches the file with the next :meth:`commit`)."""
        code = _KIND[kind]
        dt = t_us - self._last_us
        self._last_us = t_us
        stamp = varint(zz(dt))
        if isinstance(value, str) and len(value) < NUMERIC_MIN_CHARS:
            at = self._recent.find(value)
            if at is None:
                raw = value.encode("utf-8", "surrogatepass")
                record = bytes([code]) + stamp + varint(len(raw)) + raw
            else:
                record = bytes([code | 3 << 2]) + stamp + varint(at)
            if kind == "w":
                self._echo.add_text(value)
        elif isinstance(value, str):
            raw = value.encode("utf-8", "surrogatepass")
            record = bytes([code]) + stamp + varint(len(raw)) + raw
            coded = None
            if len(value) >= NUMERIC_MIN_CHARS:
                coded = encode_numeric(value, self._echo, kind == "r", self._plans)
            if coded is not None and len(coded[0]) <= NUMERIC_RATIO * len(raw):
                record = bytes([code | 1 << 2]) + stamp + coded[0]
            else:
                coded = None
            if kind == "w":
                if coded is not None:
                    self._echo.add(coded[1])
                else:
                    self._echo.add_text(value)
        else:
            body = encode_binary(value, self._stride)
            if body is not None:
                self._stride = int(Reader(body).uints(2)[1])
            if body is None:
                record = bytes([code]) + stamp + varint(len(value)) + value
            else:
                record = bytes([code | 2 << 2]) + stamp + body
        self._raw += len(record)
        out = self._co.compress(record)
        if out:
            self._out += out

    def commit(self) -> None:
        """Flush the deflate stream and write everything pending as one group."""
        if not self._raw:
            return
        data = bytes(self._out) + self._co.flush(self._flush_mode)
        self._out = bytearray()
        self._raw = 0
        group = varint(len(data)) + (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "little")
        self._file.write(self._prefix + group + data)
        self._prefix = b""

    def maybe_commit(self) -> None:
        """Commit when a group's worth of records is pending (the non-durable mode)."""
        if self._raw >= self.group_bytes:
            self.commit()

    def close(self) -> None:
        if not self.closed:
            try:
                self.commit()
            finally:
                self.closed = True
                self._file.close()


#: How long a writer waits for another one to finish the same log (s).
LOCK_WAIT_S = 30.0


def _lock(f: BinaryIO, path: str) -> None:
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise WireLogError(f"{path}: another process has been writing this wire log "
                                   f"for {LOCK_WAIT_S:g} s; not appending to it") from None
            time.sleep(0.01)


def _check_appendable(path: str) -> None:
    """Refuse (:class:`WireLogError`) to append to a file that is not a wire log."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    except FileNotFoundError:
        return
    if head:
        version_of(head, path, "refusing to append to it")


def version_of(data: bytes, path: str, refusing: str = "") -> int:
    """The format version of a ``.wlog`` beginning with ``data``; :class:`WireLogError`
    naming the file (and the version) if it is no wire log or one of an unknown version
    (``refusing``: what is not done, added to the message)."""
    tail = f"; {refusing}" if refusing else ""
    if data[:len(SIGNATURE)] != SIGNATURE or len(data) < len(MAGIC):
        raise WireLogError(f"{path}: not a wire log (no {SIGNATURE[:4]!r} header){tail}")
    version = data[len(SIGNATURE)]
    if version not in VERSIONS:
        raise WireLogError(f"{path}: wire-log format version {version}; this labctl reads "
                           f"versions {', '.join(map(str, VERSIONS))} (a newer labctl wrote "
                           f"it?){tail}")
    return version


def _open_for_append(f: BinaryIO, path: str, new: int = VERSION) -> tuple[bytes, int]:
    """Prepare ``f`` (opened a+b) for a new segment: what to write before the first group
    (the signature and version ``new`` for an empty file, 0x00 after existing groups), a
    torn tail cut off first; and the format version to write (an existing log's own)."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    if size == 0:
        if new not in VERSIONS:
            raise WireLogError(f"{path}: no wire-log format version {new}")
        return SIGNATURE + bytes([new]), new
    f.seek(0)
    data = f.read()
    version = version_of(data, path, "refusing to append to it")
    last = (0, None, None, len(MAGIC), False)
    for last in _groups(data, path):  # noqa: B007 - the last one tells where whole ones end
        pass
    end, torn = last[3], last[4]
    if torn:
        os.truncate(path, end)
    return b"\x00", version


def _groups(data: bytes, path: str):
    """``(offset, data or None for a segment mark, view, end, torn)`` of every group after
    MAGIC, CRCs checked; the last item has ``torn`` set if the tail was cut short."""
    pos = end = len(MAGIC)
    view = memoryview(data)
    while pos < len(data):
        head = Reader(view, pos)
        try:
            n = head.uint()
        except CodecError:
            yield pos, None, view, end, True  # a group length cut short
            return
        if n == 0:
            end = head.pos
            yield pos, None, view, end, False
            pos = end
            continue
        start = head.pos + 4
        if start + n > len(data):
            yield pos, None, view, end, True
            return
        crc = int.from_bytes(data[head.pos:start], "little")
        chunk = data[start:start + n]
        if zlib.crc32(chunk) & 0xFFFFFFFF != crc:
            if start + n == len(data):
                yield pos, None, view, end, True  # the last group, damaged as it was written
                return
            raise WireLogError(f"{path}: group at byte {pos} fails its CRC (damaged log)")
        end = start + n
        yield pos, chunk, view, end, False
        pos = end


def write_entries(path: str | os.PathLike[str],
                  entries: list[tuple[str, float | None, str | bytes]]) -> None:
    """Write ``entries`` (``(kind, t in s, value)``, as :func:`read_entries` gives them)
    as a new log, in the format its suffix names; a group at every reply, as a durable
    log would have (to edit a recorded log, or to convert one)."""
    path = os.fspath(path)
    with open(path, "wb"):
        pass  # truncated: a new log
    if path.endswith(LEGACY_SUFFIX):
        with open(path, "w", encoding="utf-8") as f:
            for kind, t, value in entries:
                if isinstance(value, bytes):
                    value = base64.b64encode(value).decode("ascii")
                f.write(json.dumps({"t": t, kind: value} if t is not None else {kind: value})
                        + "\n")
        return
    writer = CompactWriter(path)
    try:
        for kind, t, value in entries:
            writer.add(kind, round((t or 0.0) * 1e6), value)
            if kind != "w":
                writer.commit()
    finally:
        writer.close()


# -- reading ----------------------------------------------------------------------------
@dataclass
class LogContents:
    """A log's records: ``(kind, t in s, text or bytes)``; ``torn``: a short last group
    was skipped (the writer was killed while writing it); ``end``: the offset where the
    whole groups end; ``segments``: how many writers appended to it."""

    entries: list[tuple[str, float, str | bytes]] = field(default_factory=list)
    torn: bool = False
    end: int = 0
    segments: int = 1


def read_entries(path: str | os.PathLike[str]) -> LogContents:
    """Every whole record of a wire log, either format (a torn tail skipped)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(SIGNATURE):
        return _parse(data, path)
    return _parse_jsonl(data, path)


def _parse(data: bytes, path: str) -> LogContents:
    version = version_of(data, path)
    out = LogContents(end=len(MAGIC))
    state = _Segment(version)
    for pos, chunk, _, end, torn in _groups(data, path):
        if torn:
            out.torn = True
            break
        if chunk is None:  # the next writer's segment
            state = _Segment(version)
            out.segments += 1
        else:
            try:
                state.feed(chunk, out.entries)
            except (CodecError, zlib.error, zstandard.ZstdError, UnicodeDecodeError,
                    IndexError) as exc:
                raise WireLogError(f"{path}: group at byte {pos} does not decode: {exc}"
                                   ) from None
        out.end = end
    return out


class _Segment:
    """Reader state of one segment: its deflate (version 1) or zstd (2) stream, time and
    echo buffer."""

    def __init__(self, version: int) -> None:
        self.d: Any = (zlib.decompressobj(-15) if version == 1
                       else zstandard.ZstdDecompressor().decompressobj())
        self.t_us = 0
        self.echo = EchoBuffer()
        self.recent = Recent()

    def feed(self, chunk: bytes, entries: list[tuple[str, float, str | bytes]]) -> None:
        raw = self.d.decompress(chunk)
        r = Reader(raw)
        while r.pos < len(raw):
            head = r.take(1)[0]
            kind, encoding = KINDS[head & 3], head >> 2
            self.t_us += r.sint()
            value: str | bytes
            if encoding == 0:
                value = r.take(r.uint())
                if kind in ("w", "r"):
                    value = value.decode("utf-8", "surrogatepass")
                    if len(value) < NUMERIC_MIN_CHARS:
                        self.recent.find(value)
                    if kind == "w":
                        self.echo.add_text(value)
            elif encoding == 3 and kind in ("w", "r"):
                value = self.recent.take(r.uint())
                if kind == "w":
                    self.echo.add_text(value)
            elif encoding == 1 and kind in ("w", "r"):
                tokens = decode_numeric(r, self.echo)
                value = render(tokens)
                if kind == "w":
                    self.echo.add(tokens)
            elif encoding == 2 and kind in ("rb", "x"):
                value = decode_binary(r)
            else:
                raise CodecError(f"record of kind {kind!r} with encoding {encoding}")
            entries.append((kind, self.t_us / 1e6, value))


def _parse_jsonl(data: bytes, path: str) -> LogContents:
    """The JSON lines of an older log; a torn (unterminated, unparsable) last line is
    skipped, any other bad line raises :class:`WireLogError` naming it."""
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    out = LogContents()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines):  # no newline after it: cut short by a kill
                out.torn = True
                break
            raise WireLogError(f"{path}, line {n}: not a wire log (not JSON: {exc})") from None
        kinds = [k for k in KINDS if isinstance(item, dict) and k in item]
        if len(kinds) != 1 or not isinstance(item[kinds[0]], str):
            raise WireLogError(f"{path}, line {n}: expected one of {KINDS} with a string, "
                               f"got {item!r}")
        kind = kinds[0]
        value: str | bytes = item[kind]
        if kind in ("rb", "x"):
            try:
                value = base64.b64decode(item[kind], validate=True)
            except ValueError as exc:
                raise WireLogError(f"{path}, line {n}: {kind!r} is not base64: {exc}") from None
        t = item.get("t")
        out.entries.append((kind, float(t) if isinstance(t, int | float) else None, value))
    out.end = len(data)
    return out


# -- the log a transport writes ---------------------------------------------------------
class WireLog:
    """Every message of one instrument (see the module doc for the file format).

    ``t`` is seconds since the log was opened. ``counts`` tallies the entries by kind
    (``w``, ``r``, ``rb``; ``x``, discarded unsolicited bytes, appears once there are
    any), which is how round trips are counted. With no ``path`` the entries are kept in
    memory (``_pending``, JSON lines) until :meth:`attach` gives them a file (an instrument
    is opened, and its identity read, before its session directory exists). With
    ``durable`` each reply ends a group that is written at once, so a killed process loses
    at most the commands of one exchange; otherwise groups of 64 KiB (``buffer_bytes``)
    are written. A path ending in ``.jsonl`` is written as JSON lines (older sessions).
    Adapters hold their own lock around every call, so one log per instrument needs none.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 buffer_bytes: int = 1 << 16, durable: bool = False):
        self.path: str | None = None
        self._file: TextIO | None = None
        self._compact: CompactWriter | None = None
        self._proc: Any = None  # the WriterProcess coding this log, if any
        self._id = 0
        self._frame = bytearray()  # records not yet handed to it
        self._pending: list[str] = []
        self._durable = durable
        self._keep = True
        self._t0 = time.perf_counter()
        self.counts = {"w": 0, "r": 0, "rb": 0}
        if path is not None:
            self.attach(path, buffer_bytes=buffer_bytes)

    def attach(self, path: str | os.PathLike[str], *, buffer_bytes: int = 1 << 16) -> None:
        """Write to ``path`` from now on, starting with the entries kept in memory."""
        if not self._keep:
            return
        self.path = os.fspath(path)
        if self.path.endswith(LEGACY_SUFFIX):
            self._file = open(  # noqa: SIM115 - lives as long as the log
                self.path, "a", encoding="utf-8", buffering=buffer_bytes
            )
            self._file.writelines(self._pending)
            if self._durable:
                self._file.flush()
        else:
            entries = []
            for line in self._pending:
                item = json.loads(line)
                kind = next(k for k in KINDS if k in item)
                value = item[kind]
                if kind in ("rb", "x"):
                    value = base64.b64decode(value)
                entries.append((kind, round(item["t"] * 1e6), value))
            if os.environ.get("LABCTL_WIRE_LOG_WRITER", "process") == "process":
                _check_appendable(self.path)  # refused here, not in the writer process
                self._proc = writer_process.WriterProcess.get()
                self._record = writer_process.record
                self._id = self._proc.open(self.path)
                payload = b"".join(writer_process.record(*entry) for entry in entries)
                self._proc.send(self._id, payload, ends_group=True)
            else:
                self._compact = CompactWriter(self.path, group_bytes=buffer_bytes)
                for entry in entries:
                    self._compact.add(*entry)
                self._compact.commit()
        self._pending = []

    def count_only(self) -> None:
        """Keep counting, record nothing from now on (a wire replay's own traffic: it is
        the recording it replays); :meth:`attach` then opens no file."""
        self._keep = False
        self._pending = []

    def _emit(self, kind: str, value: str | bytes) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if not self._keep:
            return
        t = time.perf_counter() - self._t0
        if self._proc is not None:
            self._frame += self._record(kind, round(t * 1e6), value)
            if self._durable and kind != "w":  # a reply: the exchange, in one write
                self._hand_over(ends_group=True)
            elif not self._durable and len(self._frame) >= 1 << 16:
                self._hand_over(ends_group=False)
            return
        compact = self._compact
        if compact is not None:
            compact.add(kind, round(t * 1e6), value)
            if self._durable:
                if kind != "w":  # replies and discards end a group, written at once
                    compact.commit()
            else:
                compact.maybe_commit()
            return
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        line = json.dumps({"t": round(t, 6), kind: value}) + "\n"
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
        """Record a binary read."""
        self._emit("rb", bytes(data))

    def discarded(self, data: bytes) -> None:
        """Record unsolicited bytes found waiting and thrown away (``x``)."""
        self._emit("x", bytes(data))

    def _hand_over(self, *, ends_group: bool) -> None:
        """The pending records to the writer process; if it is gone, write them here from
        now on (what its pipe held is lost: said in a warning, never misread)."""
        try:
            self._proc.send(self._id, bytes(self._frame), ends_group=ends_group)
        except OSError as exc:
            logging.getLogger(__name__).warning(
                "%s: the wire-log writer process failed (%s); writing in this process, "
                "messages it had not written are missing", self.path, exc)
            self._proc = None
            assert self.path is not None
            self._compact = CompactWriter(self.path)
            for entry in writer_process.records_of(bytes(self._frame)):
                self._compact.add(*entry)
            self._compact.commit()
        self._frame = bytearray()

    def flush(self) -> None:
        """Everything logged so far in the file (waits for the writer process)."""
        if self._proc is not None:
            self._hand_over(ends_group=True)
        if self._proc is not None:
            self._proc.sync()
        if self._compact is not None:
            self._compact.commit()
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._proc is not None:
            self._hand_over(ends_group=True)
        if self._proc is not None:
            proc, self._proc = self._proc, None
            proc.close(self._id)
        if self._compact is not None:
            self._compact.close()
            self._compact = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> WireLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def load(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """The entries of a wire-log file, either format, as ``{"t": s, kind: value}``
        (binary values base64, as in the JSON lines)."""
        out = []
        for kind, t, value in read_entries(path).entries:
            if isinstance(value, bytes):
                value = base64.b64encode(value).decode("ascii")
            out.append({"t": t, kind: value} if t is not None else {kind: value})
        return out


# -- the writer process ------------------------------------------------------------
#: How long the writer process may hold the groups a durable log asks for (s): one group
#: then carries many exchanges (a deflate block and a group head each: about 7 % of a
#: session's log when written at every reply) and costs one flush and one ``write``. The
#: records are in the kernel (the pipe) once logged, so a ``kill -9`` of labctl loses none
#: of them; killed both, a log ends at most this much before its last reply.
COMMIT_S = 0.2


def serve(source: BinaryIO, answer: BinaryIO, *, commit_s: float = COMMIT_S) -> None:
    """The writer process's loop (:mod:`instruments.wire_log_process`): frames from
    ``source`` to the logs, an answer line on ``answer`` for every sync. A frame that ends
    a group (a durable log's reply) has its log's pending records written ``commit_s``
    (s) after the first such frame since the last write, or at a sync, a close, the
    pipe's end; 64 KiB pending are written at once."""
    writers: dict[int, CompactWriter] = {}
    dirty: set[int] = set()  # logs with records that a frame asked to be written
    since = 0.0  # when the first of them came
    buf = b""
    fd = source.fileno()

    def commit_dirty() -> None:
        for log in dirty:
            if log in writers:
                writers[log].commit()
        dirty.clear()

    try:
        while True:
            if dirty:
                wait = since + commit_s - time.monotonic()
                ready = wait > 0 and select.select([fd], [], [], wait)[0]
                if not ready:  # the time is up, or nothing more is coming for now
                    commit_dirty()
                    continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            buf += chunk
            pos = 0
            while True:
                r = Reader(buf, pos)
                try:
                    op = r.take(1)[0]
                    log = r.uint()
                    size = r.uint()
                except ValueError:
                    break  # the frame's head is still coming
                if r.pos + size > len(buf):
                    break
                payload = buf[r.pos:r.pos + size]
                pos = r.pos + size
                if op == writer_process.OPEN:
                    writers[log] = CompactWriter(os.fsdecode(payload))
                elif op in (writer_process.GROUP, writer_process.RECORDS):
                    writer = writers[log]
                    for entry in writer_process.records_of(payload):
                        writer.add(*entry)
                    if op == writer_process.GROUP and log not in dirty:
                        if not dirty:
                            since = time.monotonic()
                        dirty.add(log)
                    writer.maybe_commit()
                elif op == writer_process.CLOSE:
                    dirty.discard(log)
                    writers.pop(log).close()
                elif op == writer_process.SYNC:
                    dirty.clear()
                    for writer in writers.values():
                        writer.commit()
                    answer.write(b"ok\n")
                    answer.flush()
            buf = buf[pos:]
    finally:
        for writer in writers.values():
            writer.close()


def serve_main() -> None:
    """Entry of the writer process (started by :class:`~instruments.wire_log_process.
    WriterProcess`): stdin to the logs until it closes."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # a Ctrl-C of the command must not cut the logs
    serve(sys.stdin.buffer, sys.stdout.buffer)
