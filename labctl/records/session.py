"""Session records in the Bluesky event-model: one directory per labctl command run.

``<root>/<session_id>/``, the id ``YYYYMMDD-HHMMSS-<command>-<4 hex>`` in UTC so ids sort by time::

    documents.jsonl          one ``[name, doc]`` JSON array per line (the suitcase-jsonl layout):
                             start, then descriptor/event/resource/datum as they happen, then stop
    arrays/<name>-<n>.npy    arrays referenced from events through resource + datum documents
    wire/<instrument>.wlog   raw instrument traffic, written by the transports

Each document is one unbuffered ``write`` of a whole line (write and flush in one system call), so
``kill -9`` loses at most the document being written; readers skip a torn last line with a
:class:`TornRecordWarning`. No fsync per line: a killed process's writes survive in the page cache;
only a power cut could lose the tail, and ``stop`` fsyncs once.

Start extras: ``labctl_format`` (:data:`FORMAT_VERSION`), ``labctl_version``, ``labctl_env``,
``argv``, ``config``, ``seeds``, ``station_file`` (its text), ``instruments`` (identity and
settings per instrument). Stop extras: ``labctl_summary``, the headline result, and
``labctl_shutdown``: whether the safe shutdown confirmed every output off (``confirmed``),
what it could not confirm (``problems``, naming the instrument) and any signal held while it
ran (``signals_held``). NaN is written as
``NaN`` (a diverged loss is worth recording; Python's json reads it back).

Arrays get a resource (spec ``NPY_FILE``, root = session dir, resource_path relative) and a datum;
events hold the datum_id under a data key with ``"external": "FILESTORE:"``. Readers resolve
resource_path against the directory they opened, not root, so sessions can be moved.
``resource_kwargs`` holds ``sha256``, the SHA-256 (hex) of the ``.npy`` file's bytes (header
included); :meth:`Session.load_array` and :class:`NpyFileHandler` refuse a file that does not
match ("checksum mismatch"). Format 1 sessions have no checksum and load unverified; from
format 2 a resource without one is refused.

Reading checks structure, not only JSON: every document must carry the keys labctl goes on to
use, with their types (event: uid, time, descriptor, seq_num, data, timestamps; descriptor: uid,
time, name, data_keys, run_start; resource: uid, spec, resource_path, root, resource_kwargs;
datum: datum_id, resource, datum_kwargs; stop: uid, time, run_start, exit_status), references
must point back (an event to a descriptor of its run, its data to exactly the descriptor's keys
with values of the declared dtype, an external value to a datum, a datum to a resource) and
every path a document names must stay inside the session directory (relative, no ``..``, no
symlink out of it; nothing outside is opened). Otherwise :class:`RecordError` names the file,
the line and the key or path. Only the last line may be torn (unparseable); a whole last line
that parses but is malformed is refused like any other.

Run segments (format 2). A session ended by ``abort`` or ``fail`` can be continued
(:meth:`SessionWriter.reopen`). A second stop document for the same run would break Bluesky
consumers (one start, one stop per run), so the continuation is a new run in the same file:
``start`` (a new uid, ``labctl_resumes`` = the uid of the run it continues, ``labctl_segment``
= 1, 2, ...; config, seeds and station file copied from the first start), its own descriptors
(same names and data keys as before), events, resources, datums and its own ``stop``. Each run
is valid event-model on its own and ``RunRouter`` splits the file into them. A start may only
follow a stop. :class:`Session` merges the segments: ``start`` is the first start (the
configuration), ``starts``/``stops`` all of them, ``stop`` the last segment's stop (None if the
last segment never stopped), ``events(name)`` the events of every segment's stream ``name`` in
order. Reopening a session without a stop (killed) still continues its last run in place. A
labctl reading format 1 only refuses format 2 sessions rather than misreading a segmented one.

Wire logs (:func:`wire_log_path`) are :mod:`instruments.wire_log` files: every message an
instrument was sent (``w``) and answered (``r`` text, ``rb`` bytes), ``t`` = seconds since the
transport opened, deflated and crash-safe; sessions recorded before it hold JSON lines
(``wire/<instrument>.jsonl``), which are read alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import re
import secrets
import socket
import stat
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labctl.records import bluesky

FORMAT_VERSION = 3  # 2: array checksums, run segments; 3: NPY_SEQ arrays, Bluesky fields
NPY_SEQ = "NPY_SEQ"  # one resource per stream's data key; a file per event: <path>_<n>.npy
DOCUMENTS = "documents.jsonl"
EXIT_STATUSES = ("success", "abort", "fail")
RESUMABLE_STATUSES = ("abort", "fail")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
DTYPES = ("string", "number", "array", "boolean", "integer")


class RecordError(Exception):
    """A directory cannot be read, or a document cannot be written, as a labctl session."""


class TornRecordWarning(UserWarning):
    """The last line of documents.jsonl is incomplete: the writer was killed mid-write."""


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot record a {type(obj).__name__} in a session document")


def _encode(name: str, doc: dict) -> bytes:
    return (json.dumps([name, doc], default=_default, separators=(",", ":")) + "\n").encode()


def _check_keys(obj: Any, where: str) -> None:
    # event-model's schemas reject '.' and '/' in any dict key under start/descriptor/stop
    # extras; refusing them here keeps every written session valid Bluesky.
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str) or "." in key or "/" in key:
                raise ValueError(f"{where}: key {key!r} must be a string without '.' or '/'")
            _check_keys(value, f"{where}.{key}")
    elif isinstance(obj, list | tuple):
        for value in obj:
            _check_keys(value, where)


def data_key(source: str, dtype: str = "number", units: str = "", shape: tuple = (),
             external: bool = False) -> dict:
    """One event-model data key: ``source`` (the instrument or labctl part that made the
    value), ``dtype``, ``units`` (A, V, s, Ohm; "" for none), ``shape`` (() for a scalar),
    ``external`` for an array kept as a file."""
    key = {"dtype": dtype, "shape": list(shape), "source": source}
    if units:
        key["units"] = units
    if external:
        key["external"] = "FILESTORE:"
    return key


def _safe_name(kind: str, name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise ValueError(f"{kind} name {name!r} is not usable as a file name")
    return name


def _uid() -> str:
    return str(uuid.uuid4())


def _labctl_version() -> str:
    try:
        return importlib.metadata.version("labctl")
    except importlib.metadata.PackageNotFoundError:  # running from an uninstalled source tree
        return "unknown"


def contained_path(session_dir: str | os.PathLike, relative: Any, where: str = "",
                   _root: str | None = None) -> Path:
    """``session_dir / relative`` resolved, if it stays inside the session directory.

    ``relative`` must be a relative POSIX path without ``..``; symlinks are followed and must
    not lead out. Otherwise :class:`RecordError` naming ``where`` (e.g. file and line) and the
    path; nothing is opened here. (``_root``: ``session_dir`` already resolved.)
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise RecordError(f"{prefix}path {relative!r} is not a usable relative path")
    if relative.startswith("/") or ".." in relative.split("/"):
        raise RecordError(f"{prefix}path {relative!r} is outside the session directory "
                          f"{session_dir} (absolute or '..')")
    root = _root or os.path.realpath(session_dir)
    target = os.path.join(root, relative)
    parts = relative.split("/")
    if any(os.path.islink(os.path.join(root, *parts[:n])) for n in range(1, len(parts) + 1)):
        target = os.path.realpath(target)  # only then can it lead anywhere else
    if target != root and not target.startswith(root.rstrip(os.sep) + os.sep):
        raise RecordError(f"{prefix}path {relative!r} is outside the session directory "
                          f"{session_dir} (a symlink to {target})")
    return Path(target)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wire_log_path(session_dir: str | os.PathLike, instrument_name: str) -> Path:
    """Path of the wire log ``wire/<instrument_name>.wlog``; creates ``wire/`` if needed.
    A session whose log is ``.jsonl`` (recorded before the compact format) keeps it, and
    so does every new one while ``LABCTL_WIRE_LOG_FORMAT=jsonl`` (to compare the two).

    Refuses (:class:`RecordError`) a ``wire/`` or log that is a symlink out of the session."""
    session_dir = Path(session_dir)
    stem = _safe_name("instrument", instrument_name)
    legacy = os.environ.get("LABCTL_WIRE_LOG_FORMAT", "wlog") == "jsonl" \
        or (session_dir / "wire" / f"{stem}.jsonl").exists()
    name = f"{stem}.jsonl" if legacy else f"{stem}.wlog"
    if (session_dir / "wire").is_symlink():
        contained_path(session_dir, "wire", str(session_dir))
    wire = session_dir / "wire"
    wire.mkdir(exist_ok=True)
    contained_path(session_dir, f"wire/{name}", str(session_dir))
    return wire / name


@dataclass
class _Stream:
    name: str
    keys: frozenset[str]
    external: tuple[str, ...]
    count: int = 0
    data_keys: dict = field(default_factory=dict)  # as declared (shapes filled in)
    #: The descriptor document while it waits for its first event (its shapes open).
    pending: dict | None = None


PRIMARY = "primary"  # Bluesky's name for a run's main stream


def stream_name(descriptor: dict) -> str:
    """The stream name labctl reads a descriptor under: a command's main stream is named
    ``primary`` for Bluesky and keeps its own name as ``labctl_stream``."""
    return descriptor.get("labctl_stream") or descriptor["name"]


def _open_locked(file: Path, mode: str) -> Any:
    """``file`` opened unbuffered for writing, holding an exclusive lock on it for as long
    as it is open: no two writers append to one session, and :func:`is_being_written`
    tells a running session from one that was killed (the kernel drops a dead process's
    lock)."""
    f = open(file, mode, buffering=0)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RecordError(f"{file.parent}: the session is being written by another "
                          "process") from None
    return f


def is_being_written(session_dir: str | os.PathLike) -> bool:
    """True while some process has the session open for writing (see :func:`_open_locked`)."""
    try:
        with open(Path(session_dir) / DOCUMENTS, "rb") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except OSError:
        return False


def _dimension(start: dict) -> str | None:
    """The primary stream's dimension a start document's hints name, if any."""
    try:
        return str(start["hints"]["dimensions"][0][0][0])
    except (KeyError, IndexError, TypeError):
        return None


def _environment() -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform(), "host": socket.gethostname()}


def exit_status(exc: BaseException | None, interrupted: str = "KeyboardInterrupt"
                ) -> tuple[str, str]:
    """The stop document's (exit_status, reason) for a run that ended with ``exc`` (None:
    normally); ``interrupted`` is the reason of a bare ``KeyboardInterrupt``."""
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
        return "success", ""
    if isinstance(exc, KeyboardInterrupt):
        return "abort", str(exc) or interrupted
    return "fail", f"{type(exc).__name__}: {exc}"


class SessionWriter:
    """Writes one session. Use as a context manager so every way out ends with a stop document.

    Nest it inside :func:`labctl.commands.signals.signals_as_interrupt` so SIGTERM and
    SIGHUP also yield ``abort``::

        with signals_as_interrupt(), SessionWriter.create(root, ...) as session:
            ...
    """

    def __init__(self, path: Path, file: Any, start_uid: str) -> None:
        self.path = path
        self.start_uid = start_uid  # of the run segment being written
        self.segment = 0  # 0: the first run of the session; n: its n-th continuation
        self.resumed_from: str | None = None  # start uid of the run a new segment continues
        self._file = file
        self._streams: dict[str, _Stream] = {}  # descriptor uid -> stream
        self._sequences: dict[tuple[str, str], str] = {}  # (stream, key) -> NPY_SEQ resource
        self.instruments: dict = {}  # the snapshot of the start: descriptors' configuration
        self.dimension: str | None = None  # what the primary stream is plotted against

    @classmethod
    def create(cls, root: str | os.PathLike, command: str, argv: list[str], config: dict,
               seeds: dict, instruments: dict | None = None,
               station_file_text: str | None = None,
               dimension: str | None = None) -> SessionWriter:
        """Create ``root/<session_id>/`` and write the start document; ``dimension`` is the
        data key the command's primary stream is plotted against (Bluesky's hints)."""
        now = time.time()
        root = Path(root)
        instruments = instruments or {}
        start = {"uid": _uid(), "time": now, "plan_name": command,
                 **bluesky.start_fields(config, instruments, bluesky.next_scan_id(root),
                                        dimension),
                 "labctl_format": FORMAT_VERSION, "labctl_version": _labctl_version(),
                 "labctl_env": _environment(), "argv": list(argv), "config": config,
                 "seeds": seeds, "station_file": station_file_text, "instruments": instruments}
        _check_keys(start, "start")
        line = _encode("start", start)  # before mkdir, so bad input leaves no junk directory
        root.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", command.lower()).strip("-")[:40] or "session"
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
        for _ in range(100):
            path = root / f"{stamp}-{slug}-{secrets.token_hex(2)}"
            with contextlib.suppress(FileExistsError):
                path.mkdir()
                break
        else:
            raise RecordError(f"{root}: no free session id for {stamp}-{slug}")
        writer = cls(path, _open_locked(path / DOCUMENTS, "xb"), start["uid"])
        writer.instruments, writer.dimension = instruments, dimension
        writer._write(line)
        return writer

    @classmethod
    def reopen(cls, session_dir: str | os.PathLike, argv: list[str] | None = None,
               instruments: dict | None = None) -> SessionWriter:
        """Continue a session.

        Without a stop document (the process was killed) the last run continues in place,
        on its existing streams. With one (``abort``/``fail``, or any status: which sessions
        may be resumed is the caller's policy, see :attr:`Session.resumable`) a new run
        segment begins: a start document linked to the previous run (``labctl_resumes``;
        ``argv``/``instruments`` of the resuming command, by default the previous ones) and
        a descriptor for every stream the session has, so :meth:`stream_uids` names the same
        streams either way. A torn last line is cut off first; array files keep counting
        from the highest index on disk, so nothing recorded is overwritten.
        """
        path = Path(session_dir)
        if is_being_written(path):  # before anything here could touch its file
            raise RecordError(f"{path}: the session is being written by another process")
        session = Session(path)
        for sub in (DOCUMENTS, "arrays", "wire"):  # never append or write through a symlink out
            if (path / sub).exists() or (path / sub).is_symlink():
                contained_path(path, sub, str(path))
        file = path / DOCUMENTS
        if session.torn:
            data = file.read_bytes()
            os.truncate(file, data.rstrip(b"\n").rfind(b"\n") + 1)
        last = session.starts[-1]
        first = session.start
        dimension = _dimension(first)
        if session.stop is None:
            writer = cls(path, _open_locked(file, "ab"), last["uid"])
            writer.segment = len(session.starts) - 1
            writer.instruments = last.get("instruments", {})
            for uid in session._segment_descriptors[-1]:
                desc = session._descriptors_by_uid[uid]
                keys = desc["data_keys"]
                external = tuple(k for k, spec in keys.items() if spec.get("external"))
                count = session._event_counts.get(uid, 0)
                writer._streams[uid] = _Stream(stream_name(desc), frozenset(keys), external,
                                               count, keys)
        else:
            bluesky_fields = {k: first[k] for k in ("scan_id", "plan_type", "plan_args",
                                                     "detectors", "hints") if k in first}
            start = {"uid": _uid(), "time": time.time(), "plan_name": first.get("plan_name", ""),
                     **bluesky_fields,
                     "labctl_format": FORMAT_VERSION, "labctl_version": _labctl_version(),
                     "labctl_env": _environment(), "labctl_resumes": last["uid"],
                     "labctl_segment": len(session.starts),
                     "argv": list(argv) if argv is not None else list(last.get("argv", [])),
                     "config": first.get("config", {}), "seeds": first.get("seeds", {}),
                     "station_file": first.get("station_file"),
                     "instruments": (instruments if instruments is not None
                                     else last.get("instruments", {}))}
            _check_keys(start, "start")
            line = _encode("start", start)
            writer = cls(path, _open_locked(file, "ab"), start["uid"])
            writer.segment = start["labctl_segment"]
            writer.resumed_from = last["uid"]
            writer.instruments = start["instruments"]
            writer.dimension = dimension
            writer._write(line)
            for name, desc in session.descriptors.items():
                writer.descriptor(name, desc["data_keys"], primary=desc["name"] == PRIMARY)
        bases = {writer._base(st.name, key): (st.name, key)
                 for st in writer._streams.values() for key in st.external}
        for resource, _ in session._resources.values():  # the continued run's sequences
            if resource.get("run_start") == writer.start_uid and resource["spec"] == NPY_SEQ:
                if resource["resource_path"] in bases:
                    writer._sequences[bases[resource["resource_path"]]] = resource["uid"]
        return writer

    def _base(self, stream: str, key: str) -> str:
        """The resource_path of the array files of ``key`` in ``stream`` (this segment)."""
        base = f"arrays/{_safe_name('stream', stream)}-{_safe_name('data key', key)}"
        return f"{base}-s{self.segment}" if self.segment else base

    def stream_uids(self) -> dict[str, str]:
        """Descriptor uid of each stream, by stream name."""
        return {stream.name: uid for uid, stream in self._streams.items()}

    def _write(self, line: bytes) -> None:
        if self._file is None:
            raise RecordError(f"{self.path}: session already stopped")
        if self._file.write(line) != len(line):  # regular files write short only when full
            # Stop here: appending would bury the torn line mid-file, where readers refuse it.
            self._file.close()
            self._file = None
            raise RecordError(f"{self.path / DOCUMENTS}: short write (disk full?)")

    def stream(self, name: str, data_keys: dict[str, dict], *, primary: bool = False) -> str:
        """The uid of stream ``name``: the one this session already has (a resumed run
        re-declares every stream), else a new descriptor with ``data_keys``."""
        return self.stream_uids().get(name) or self.descriptor(name, data_keys,
                                                               primary=primary)

    def descriptor(self, name: str, data_keys: dict[str, dict], *,
                   primary: bool = False) -> str:
        """Declare stream ``name`` with event-model data keys; returns the descriptor uid.

        ``primary``: the command's main stream, named ``primary`` in the document (as
        Bluesky's consumers look for it) and ``name`` as ``labctl_stream``. A shape with a
        ``None`` dimension is filled in from the first event, and the descriptor is
        written just before it (see :mod:`labctl.records.bluesky`)."""
        if any(stream.name == name for stream in self._streams.values()):
            raise ValueError(f"stream {name!r} already has a descriptor")
        data_keys = {key: dict(spec) for key, spec in data_keys.items()}
        for key, spec in data_keys.items():
            missing = {"dtype", "shape", "source"} - spec.keys()
            if missing:
                raise ValueError(f"data key {key!r} lacks {sorted(missing)}")
            spec["shape"] = list(spec["shape"])
        _check_keys(data_keys, f"descriptor {name!r}")
        uid = _uid()
        doc = {"uid": uid, "time": time.time(), "run_start": self.start_uid,
               "name": PRIMARY if primary else name, "data_keys": data_keys,
               **bluesky.descriptor_fields(data_keys, self.instruments,
                                           self.dimension if primary else None)}
        if primary:
            doc["labctl_stream"] = name
        external = tuple(k for k, spec in data_keys.items() if spec.get("external"))
        stream = _Stream(name, frozenset(data_keys), external, data_keys=data_keys)
        if bluesky.has_open_shape(data_keys):
            stream.pending = doc
        else:
            self._write(_encode("descriptor", doc))
        self._streams[uid] = stream
        return uid

    def _write_pending(self, stream: _Stream) -> None:
        if stream.pending is not None:
            self._write(_encode("descriptor", stream.pending))
            stream.pending = None

    def event(self, descriptor_uid: str, data: dict, timestamps: dict | None = None) -> None:
        """Write one event; ``data`` must have exactly the descriptor's keys, with arrays
        (anything numpy takes) for the external ones: each is saved as a file."""
        stream = self._streams[descriptor_uid]
        if data.keys() != stream.keys:
            raise ValueError(f"event keys {sorted(data)} differ from stream {stream.name!r} "
                             f"keys {sorted(stream.keys)}")
        arrays = {key: np.asarray(data[key]) for key in stream.external}
        shapes = {key: arr.shape for key, arr in arrays.items()}
        dtypes = {key: arr.dtype.str for key, arr in arrays.items()}
        if stream.pending is not None:
            bluesky.fill_shapes(stream.pending["data_keys"], shapes, dtypes)
            self._write_pending(stream)
        elif shapes:
            bluesky.check_shapes(stream.name, stream.data_keys, shapes)
        data = dict(data)
        for key, arr in arrays.items():
            data[key] = self._save(stream, key, arr)
        now = time.time()
        doc = {"uid": _uid(), "time": now, "descriptor": descriptor_uid,
               "seq_num": stream.count + 1, "data": data,
               "timestamps": timestamps if timestamps is not None else dict.fromkeys(data, now)}
        if stream.external:  # as the RunEngine does: tells Filler which keys are datum_ids
            doc["filled"] = dict.fromkeys(stream.external, False)
        self._write(_encode("event", doc))
        stream.count += 1

    def _save(self, stream: _Stream, key: str, arr: np.ndarray) -> str:
        """Save the value of ``key`` in the next event of ``stream`` as the next file of
        its NPY_SEQ resource; returns the datum_id (its kwargs: index and the file's
        SHA-256)."""
        index = stream.count  # the file's number is the event's seq_num - 1 (as Tiled reads it)
        base = self._base(stream.name, key)
        relative = f"{base}_{index}.npy"
        target = self.path / relative
        if (self.path / "arrays").is_symlink():
            contained_path(self.path, "arrays", str(self.path))
        target.parent.mkdir(exist_ok=True)
        contained_path(self.path, relative, str(self.path))
        buffer = io.BytesIO()
        np.save(buffer, arr, allow_pickle=False)
        data = buffer.getvalue()
        partial = target.with_suffix(".npy.partial")
        partial.unlink(missing_ok=True)  # a leftover (or planted symlink) is never written through
        with open(partial, "xb") as f:
            f.write(data)
        # A file left by a killed run at this index was never referenced by an event.
        os.replace(partial, target)  # a datum never points at a half-written file
        uid = self._sequences.get((stream.name, key))
        if uid is None:
            uid = _uid()
            self._write(_encode("resource", {
                "uid": uid, "spec": NPY_SEQ, "root": str(self.path.resolve()),
                "resource_path": base, "resource_kwargs": {}, "path_semantics": "posix",
                "run_start": self.start_uid}))
            self._sequences[(stream.name, key)] = uid
        datum_id = f"{uid}/{index}"
        self._write(_encode("datum", {"datum_id": datum_id, "resource": uid,
                                      "datum_kwargs": {"index": index, "sha256": _sha256(data)}}))
        return datum_id

    def stop(self, exit_status: str = "success", reason: str = "",
             summary: dict | None = None, shutdown: dict | None = None,
             headline: str = "") -> None:
        """Write the stop document (``summary`` is the result, ``headline`` one readable
        line of it; ``shutdown`` what the safe shutdown confirmed, as ``labctl_shutdown``)
        and close the file."""
        if exit_status not in EXIT_STATUSES:
            raise ValueError(f"exit_status must be one of {EXIT_STATUSES}, not {exit_status!r}")
        _check_keys(summary or {}, "labctl_summary")
        for stream in self._streams.values():  # declared, never had an event: shapes open
            self._write_pending(stream)
        doc = {"uid": _uid(), "time": time.time(), "run_start": self.start_uid,
               "exit_status": exit_status, "reason": reason,
               "num_events": {s.name: s.count for s in self._streams.values()},
               "labctl_summary": summary or {}}
        if shutdown is not None:
            _check_keys(shutdown, "labctl_shutdown")
            doc["labctl_shutdown"] = shutdown
        if headline:
            doc["labctl_headline"] = headline
        self._write(_encode("stop", doc))
        file, self._file = self._file, None
        os.fsync(file.fileno())
        file.close()

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if self._file is None:
            return False
        status, reason = exit_status(exc)
        try:
            self.stop(status, reason)
        except Exception as err:
            if exc is None:
                raise
            # The run's own exception matters more than its record: don't mask it.
            warnings.warn(f"{self.path}: stop document not written: {err}", RuntimeWarning,
                          stacklevel=2)
        return False


def parse_line(file: Path, lineno: int, raw: bytes) -> tuple[str, dict]:
    """(name, document) of line ``lineno`` of a documents file, in either JSONL layout;
    RecordError naming the file and line otherwise (line 1 must be a labctl start)."""
    try:
        item = json.loads(raw)
        # suitcase-jsonl writes [name, doc]; other Bluesky tools write {"name", "doc"}.
        name, doc = (item["name"], item["doc"]) if isinstance(item, dict) else item
        if not isinstance(name, str) or not isinstance(doc, dict):
            raise ValueError("not a [name, document] pair")
    except (ValueError, TypeError, KeyError, RecursionError) as err:
        raise RecordError(f"{file}, line {lineno}: invalid document ({err!s})") from None
    if lineno == 1:
        fmt = doc.get("labctl_format")
        if name != "start" or not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
            raise RecordError(f"{file}, line 1: not a labctl session (no start document "
                              "with labctl_format)")
        if fmt > FORMAT_VERSION:
            raise RecordError(f"{file}: session format {fmt} is newer than "
                              f"format {FORMAT_VERSION} read by this labctl (it reads format "
                              f"1 to {FORMAT_VERSION}); upgrade labctl")
    return name, doc


_KINDS: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


_PLAIN = {"string": str, "object": dict, "array": list}


def _is(value: Any, kinds: str) -> bool:
    plain = _PLAIN.get(kinds)
    if plain is not None:  # the common case, fast
        return isinstance(value, plain)
    return any(_KINDS[kind](value) for kind in kinds.split("|"))


def _kind_of(value: Any) -> str:
    return next((k for k in ("null", "boolean", "integer", "number", "string", "object", "array")
                 if _KINDS[k](value)), type(value).__name__)


class _Checker:
    """Checks documents in file order (the rules are in the module docstring)."""

    def __init__(self, session_dir: Path, file: Path) -> None:
        self.dir, self.file = session_dir, file
        self.root = os.path.realpath(session_dir)
        self.start: dict | None = None  # of the open run segment; None once it stopped
        self.previous: str | None = None  # start uid of the last stopped run
        self.format = FORMAT_VERSION
        self.descriptors: dict[str, dict] = {}  # uid -> descriptor, of the open run
        self.resources: dict[str, str] = {}  # uid -> spec
        self.datums: set[str] = set()
        self.lineno, self.name = 0, ""

    def error(self, message: str) -> RecordError:
        return RecordError(f"{self.file}, line {self.lineno}: {self.name} document: {message}")

    def key(self, doc: dict, key: str, kinds: str, optional: bool = False,
            where: str = "") -> Any:
        if key not in doc:
            if optional:
                return None
            raise self.error(f"key {where + key!r} missing")
        value = doc[key]
        if not _is(value, kinds):
            raise self.error(f"key {where + key!r} is {_kind_of(value)}, expected "
                             f"{kinds.replace('|', ' or ')}")
        return value

    def check(self, lineno: int, name: str, doc: dict) -> None:
        self.lineno, self.name = lineno, name
        handlers = {"start": self._start, "descriptor": self._descriptor, "event": self._event,
                    "resource": self._resource, "datum": self._datum, "stop": self._stop}
        if name not in handlers:
            raise RecordError(f"{self.file}, line {lineno}: unknown document {name!r}")
        if name == "start" and self.start is not None:
            raise self.error("a start document before the stop of the run it would follow")
        if name != "start" and self.start is None:
            raise self.error("after the stop document (only a start may follow a stop)")
        handlers[name](doc)

    def _run_start(self, doc: dict, optional: bool = False) -> None:
        run_start = self.key(doc, "run_start", "string", optional)
        if run_start is not None and run_start != self.start["uid"]:
            raise self.error(f"key 'run_start' {run_start!r} is not this run's start uid "
                             f"{self.start['uid']!r}")

    def _start(self, doc: dict) -> None:
        self.key(doc, "uid", "string")
        self.key(doc, "time", "number")
        fmt = self.key(doc, "labctl_format", "integer")
        if not 1 <= fmt <= FORMAT_VERSION:
            raise self.error(f"key 'labctl_format' {fmt} is not a format read by this labctl "
                             f"(1 to {FORMAT_VERSION})")
        self.key(doc, "plan_name", "string", optional=True)
        self.key(doc, "hints", "object", optional=True)
        argv = self.key(doc, "argv", "array", optional=True)
        if argv is not None and not all(isinstance(a, str) for a in argv):
            raise self.error("key 'argv' must be an array of strings")
        config = self.key(doc, "config", "object", optional=True) or {}
        self.key(config, "settings", "object", True, "config.")
        self.key(config, "max_current_a", "number", True, "config.")
        station = self.key(config, "station", "object", True, "config.") or {}
        self.key(station, "simulation", "object|null", True, "config.station.")
        self.key(doc, "seeds", "object", optional=True)
        self.key(doc, "station_file", "string|null", optional=True)
        instruments = self.key(doc, "instruments", "object", optional=True) or {}
        for name in instruments:
            self.key(instruments, name, "object", where="instruments.")
            self.key(instruments[name], "resource", "string|null", True,
                     f"instruments.{name}.")
        if self.previous is not None:
            resumes = self.key(doc, "labctl_resumes", "string")
            if resumes != self.previous:
                raise self.error(f"key 'labctl_resumes' {resumes!r} is not the uid of the run "
                                 f"before it ({self.previous!r})")
        self.start, self.format, self.descriptors = doc, fmt, {}

    def _descriptor(self, doc: dict) -> None:
        uid = self.key(doc, "uid", "string")
        self.key(doc, "time", "number")
        self._run_start(doc)
        self.key(doc, "name", "string")
        self.key(doc, "labctl_stream", "string", optional=True)
        name = stream_name(doc)
        if any(stream_name(d) == name or d["name"] == doc["name"]
               for d in self.descriptors.values()):
            raise self.error(f"stream {name!r} has a descriptor already in this run")
        data_keys = self.key(doc, "data_keys", "object")
        for key in data_keys:
            spec = self.key(data_keys, key, "object", where="data_keys.")
            where = f"data_keys.{key}."
            dtype = self.key(spec, "dtype", "string", where=where)
            if dtype not in DTYPES:
                raise self.error(f"key {where + 'dtype'!r} is {dtype!r}, not one of {DTYPES}")
            self.key(spec, "shape", "array", where=where)
            self.key(spec, "source", "string", where=where)
            self.key(spec, "external", "string", True, where)
        self.descriptors[uid] = doc

    def _event(self, doc: dict) -> None:
        self.key(doc, "uid", "string")
        self.key(doc, "time", "number")
        uid = self.key(doc, "descriptor", "string")
        if uid not in self.descriptors:
            raise self.error(f"key 'descriptor' {uid!r} names no descriptor of this run")
        descriptor = self.descriptors[uid]
        self.key(doc, "seq_num", "integer")
        data = self.key(doc, "data", "object")
        self.key(doc, "timestamps", "object")
        self.key(doc, "filled", "object", optional=True)
        declared = descriptor["data_keys"]
        for key in data.keys() - declared.keys():
            raise self.error(f"key 'data.{key}' is not a data key of stream "
                             f"{descriptor['name']!r}")
        for key, spec in declared.items():
            kinds = "string" if spec.get("external") else spec["dtype"]
            value = self.key(data, key, kinds, where="data.")
            if spec.get("external") and value not in self.datums:
                raise self.error(f"key 'data.{key}' {value!r} is no datum_id of this session")


    def _resource(self, doc: dict) -> None:
        uid = self.key(doc, "uid", "string")
        spec = self.key(doc, "spec", "string")
        path = self.key(doc, "resource_path", "string")
        self.key(doc, "root", "string")
        kwargs = self.key(doc, "resource_kwargs", "object")
        semantics = self.key(doc, "path_semantics", "string", optional=True)
        if semantics not in (None, "posix"):
            raise self.error(f"key 'path_semantics' is {semantics!r}, expected 'posix'")
        self._run_start(doc, optional=True)
        contained_path(self.dir, path, f"{self.file}, line {self.lineno}: resource_path",
                       self.root)
        if spec == "NPY_FILE":
            checksum = self.key(kwargs, "sha256", "string", optional=self.format < 2,
                                where="resource_kwargs.")
            if checksum is not None and not _SHA256.match(checksum):
                raise self.error(f"key 'resource_kwargs.sha256' {checksum!r} is not a "
                                 "SHA-256 in hex")
        self.resources[uid] = spec

    def _datum(self, doc: dict) -> None:
        datum_id = self.key(doc, "datum_id", "string")
        resource = self.key(doc, "resource", "string")
        if resource not in self.resources:
            raise self.error(f"key 'resource' {resource!r} names no resource of this session")
        kwargs = self.key(doc, "datum_kwargs", "object")
        if self.resources[resource] == NPY_SEQ:
            index = self.key(kwargs, "index", "integer", where="datum_kwargs.")
            if index < 0:
                raise self.error(f"key 'datum_kwargs.index' {index} is negative")
            checksum = self.key(kwargs, "sha256", "string", where="datum_kwargs.")
            if not _SHA256.match(checksum):
                raise self.error(f"key 'datum_kwargs.sha256' {checksum!r} is not a SHA-256 "
                                 "in hex")
        self.datums.add(datum_id)

    def _stop(self, doc: dict) -> None:
        self.key(doc, "uid", "string")
        self.key(doc, "time", "number")
        self._run_start(doc)
        status = self.key(doc, "exit_status", "string")
        if status not in EXIT_STATUSES:
            raise self.error(f"key 'exit_status' is {status!r}, not one of {EXIT_STATUSES}")
        self.key(doc, "reason", "string", optional=True)
        self.key(doc, "num_events", "object", optional=True)
        self.key(doc, "labctl_summary", "object", optional=True)
        self.key(doc, "labctl_shutdown", "object", optional=True)
        self.key(doc, "labctl_headline", "string", optional=True)
        self.previous, self.start = self.start["uid"], None


def _numbered_documents(session_dir: Path, torn: list[str]) -> Iterator[tuple[int, str, dict]]:
    """Yield checked ``(line, name, doc)``; a torn last line is skipped and described in
    ``torn``. A last line that parses but breaks the rules is refused, not skipped."""
    file = session_dir / DOCUMENTS
    try:
        f = open(file, "rb")
    except FileNotFoundError:
        raise RecordError(f"{file}: missing, not a labctl session") from None
    checker = _Checker(session_dir, file)
    with f:
        lines = enumerate(f, 1)
        pending = next(lines, None)
        if pending is None:
            raise RecordError(f"{file}: empty, not a labctl session")
        for following in lines:  # one line of look-ahead: only the last line may be torn
            name, doc = parse_line(file, *pending)
            checker.check(pending[0], name, doc)
            yield pending[0], name, doc
            pending = following
        lineno, raw = pending
        try:
            if not raw.endswith(b"\n"):
                raise RecordError(f"{file}, line {lineno}: no trailing newline")
            name, doc = parse_line(file, lineno, raw)
        except RecordError as err:
            if lineno == 1:  # without a whole start document this is no session at all
                raise
            torn.append(f"{err}; torn last line skipped")
            return
        checker.check(lineno, name, doc)
        yield lineno, name, doc


def _documents(session_dir: Path, torn: list[str]) -> Iterator[tuple[str, dict]]:
    """Yield checked documents; a torn last line is skipped and described in ``torn``."""
    for _, name, doc in _numbered_documents(session_dir, torn):
        yield name, doc


def read_documents(session_dir: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """Yield ``(name, doc)``, each checked (see the module docstring: :class:`RecordError`
    names file, line and key); warns :class:`TornRecordWarning` for a torn last line."""
    torn: list[str] = []
    yield from _documents(Path(session_dir), torn)
    for message in torn:
        warnings.warn(message, TornRecordWarning, stacklevel=2)


def _load_npy(data: bytes, where: str) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise RecordError(f"{where}: not a readable .npy array ({err})") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        raise RecordError(f"{where}: not a single .npy array")
    return arr


class NpyFileHandler:
    """event-model handler for spec ``NPY_FILE``: ``Filler({"NPY_FILE": NpyFileHandler})``;
    verifies the resource's ``sha256`` when it has one."""

    def __init__(self, full_path: str, sha256: str | None = None, **resource_kwargs: Any) -> None:
        self.full_path = full_path
        self.sha256 = sha256

    def __call__(self, **datum_kwargs: Any) -> np.ndarray:
        data = Path(self.full_path).read_bytes()
        if self.sha256 is not None and _sha256(data) != self.sha256:
            raise RecordError(f"{self.full_path}: checksum mismatch (SHA-256 {_sha256(data)}, "
                              f"recorded {self.sha256})")
        return _load_npy(data, self.full_path)


class NpySeqHandler:
    """event-model / databroker handler for spec ``NPY_SEQ`` (as ophyd.sim's): file
    ``<full_path>_<index>.npy``, refused if it does not match the datum's ``sha256``."""

    def __init__(self, full_path: str, **resource_kwargs: Any) -> None:
        self.full_path = full_path

    def __call__(self, index: int, sha256: str | None = None) -> np.ndarray:
        path = f"{self.full_path}_{int(index)}.npy"
        data = Path(path).read_bytes()
        if sha256 is not None and _sha256(data) != sha256:
            raise RecordError(f"{path}: checksum mismatch (SHA-256 {_sha256(data)}, "
                              f"recorded {sha256})")
        return _load_npy(data, path)


class Session:
    """A session read back (every document checked, see the module docstring).

    ``start`` (the first run's: the configuration), ``starts`` and ``stops`` (one per run
    segment; a session is resumed after abort/fail as a new segment), ``stop`` (the last
    segment's, None when it was interrupted), ``descriptors`` (by stream name, the latest),
    ``torn`` (the last line was cut short and skipped).

    ``Session(path)`` reads quietly; :meth:`open` also warns about a torn last line."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.file = self.path / DOCUMENTS
        self.start: dict = {}
        self.starts: list[dict] = []
        self.stops: list[dict] = []
        self.descriptors: dict[str, dict] = {}
        self.stop: dict | None = None
        self._descriptors_by_uid: dict[str, dict] = {}
        self._descriptor_lines: dict[str, int] = {}
        self._segment_descriptors: list[list[str]] = []  # descriptor uids, per run segment
        self._events: dict[str, list[tuple[str, dict]]] = {}  # stream -> (descriptor uid, data)
        self._event_counts: dict[str, int] = {}  # descriptor uid -> events
        self._event_times: dict[str, list[tuple[float, int]]] = {}  # stream -> (time, seq)
        self._resources: dict[str, tuple[dict, int]] = {}  # uid -> (resource, line)
        self._datums: dict[str, dict] = {}
        self.torn_messages: list[str] = []
        self.last_time: float | None = None  # of the last whole document
        for lineno, name, doc in _numbered_documents(self.path, self.torn_messages):
            self.last_time = doc.get("time", self.last_time)
            if name == "start":
                self.starts.append(doc)
                self._segment_descriptors.append([])
                self.stop = None
            elif name == "descriptor":
                self.descriptors[stream_name(doc)] = doc
                self._descriptors_by_uid[doc["uid"]] = doc
                self._descriptor_lines[doc["uid"]] = lineno
                self._segment_descriptors[-1].append(doc["uid"])
            elif name == "event":
                uid = doc["descriptor"]
                stream = stream_name(self._descriptors_by_uid[uid])
                self._events.setdefault(stream, []).append((uid, doc["data"]))
                self._event_times.setdefault(stream, []).append((doc["time"], doc["seq_num"]))
                self._event_counts[uid] = self._event_counts.get(uid, 0) + 1
            elif name == "resource":
                self._resources[doc["uid"]] = (doc, lineno)
            elif name == "datum":
                self._datums[doc["datum_id"]] = doc
            elif name == "stop":
                self.stops.append(doc)
                self.stop = doc
        self.start = self.starts[0]
        self.torn = bool(self.torn_messages)

    @classmethod
    def open(cls, session_dir: str | os.PathLike) -> Session:
        session = cls(session_dir)
        for message in session.torn_messages:
            warnings.warn(message, TornRecordWarning, stacklevel=2)
        return session

    @property
    def resumable(self) -> bool:
        """Interrupted (no stop), or its last run ended ``abort``/``fail``."""
        return self.stop is None or self.stop["exit_status"] in RESUMABLE_STATUSES

    @property
    def n_events(self) -> int:
        return sum(self._event_counts.values())

    def events(self, name: str, fill: bool = False) -> list[dict]:
        """Event data of a stream in order, over every run segment; ``fill`` loads external
        (array) keys."""
        if name not in self.descriptors:
            raise KeyError(f"no stream {name!r} in {self.path}: {sorted(self.descriptors)}")
        rows = self._events.get(name, [])
        if not fill:
            return [data for _, data in rows]
        out = []
        for uid, data in rows:
            keys = self._descriptors_by_uid[uid]["data_keys"]
            external = [k for k, spec in keys.items() if spec.get("external")]
            out.append({**data, **{k: self.load_array(data[k]) for k in external}})
        return out

    def event_times(self, name: str) -> tuple[list[float], list[int]]:
        """Time (s since the epoch) and seq_num of each event of stream ``name``, in the
        order of :meth:`events`."""
        pairs = self._event_times.get(name, [])
        return [t for t, _ in pairs], [n for _, n in pairs]

    def check_stream(self, name: str, keys: dict[str, str]) -> None:
        """Refuse (:class:`RecordError`, naming the descriptor's line and the key) a stream
        whose descriptors lack one of ``keys`` or declare it otherwise: ``keys`` maps data
        key -> dtype ("number" also takes "integer") or "external" (an array file). Events
        are checked against their descriptor on reading, so their values then have these
        types."""
        for uid, desc in self._descriptors_by_uid.items():
            if stream_name(desc) != name:
                continue
            where = f"{self.file}, line {self._descriptor_lines[uid]}: stream {name!r}"
            declared = desc["data_keys"]
            for key, want in keys.items():
                if key not in declared:
                    raise RecordError(f"{where}: data key {key!r} missing")
                spec = declared[key]
                if want == "external":
                    ok = bool(spec.get("external"))
                else:
                    ok = not spec.get("external") and spec["dtype"] in (
                        (want, "integer") if want == "number" else (want,))
                if not ok:
                    got = "external" if spec.get("external") else spec["dtype"]
                    raise RecordError(f"{where}: data key {key!r} is {got}, expected {want}")

    def load_array(self, datum_id: str) -> np.ndarray:
        """Load the array an event refers to by datum_id, verifying its checksum."""
        datum = self._datums.get(datum_id) if isinstance(datum_id, str) else None
        if datum is None:
            raise RecordError(f"{self.path}: no datum/resource for {datum_id!r}")
        resource, lineno = self._resources[datum["resource"]]
        if resource["spec"] == NPY_SEQ:
            relative = f"{resource['resource_path']}_{datum['datum_kwargs']['index']}.npy"
            expected = datum["datum_kwargs"]["sha256"]
        elif resource["spec"] == "NPY_FILE":
            relative = resource["resource_path"]
            expected = resource["resource_kwargs"].get("sha256")
        else:
            raise RecordError(f"{self.path}: cannot load spec {resource['spec']!r}")
        where = f"{self.file}, line {lineno}"
        path = contained_path(self.path, relative, f"{where}: resource_path")
        if not path.is_file():
            raise RecordError(f"{self.path}: array file {relative} is missing or not a regular "
                              f"file ({where})")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise RecordError(f"{self.path}: array file {relative}: {err}") from None
        if expected is not None and _sha256(data) != expected:
            raise RecordError(f"session {self.path}: array file {relative}: checksum mismatch "
                              f"(SHA-256 {_sha256(data)}, recorded {expected} on {where})")
        return _load_npy(data, f"{self.path}: array file {relative}")

    def verify_arrays(self) -> int:
        """Load every array the session's datums refer to, verifying each checksum (the
        first bad one raises :class:`RecordError`); returns how many were checked. For a
        resume to call before it appends anything."""
        for datum_id in self._datums:
            self.load_array(datum_id)
        return len(self._datums)

    def wire_logs(self) -> dict[str, Path]:
        """The wire logs ``wire/<instrument>.wlog`` (or ``.jsonl``, older sessions) by
        instrument name, resolved; a log or ``wire/`` that leads out of the session is
        refused (nothing outside is opened)."""
        wire = self.path / "wire"
        if not (wire.exists() or wire.is_symlink()):
            return {}
        contained_path(self.path, "wire", f"{self.path}: wire logs")
        logs: dict[str, Path] = {}
        for log in sorted([*wire.glob("*.wlog"), *wire.glob("*.jsonl")]):
            path = contained_path(self.path, f"wire/{log.name}", f"{self.path}: wire log")
            if not path.is_file():
                raise RecordError(f"{self.path}: wire log wire/{log.name} is not a regular file")
            if log.stem in logs:
                raise RecordError(f"{self.path}: two wire logs for {log.stem!r} "
                                  f"(wire/{logs[log.stem].name} and wire/{log.name})")
            logs[log.stem] = path
        return logs


@dataclass(frozen=True)
class SessionSummary:
    """One line of ``labctl sessions``; status is success/fail/abort, ``running`` (a process
    is writing it now), ``interrupted`` (no stop document, nobody writing: killed) or
    ``unreadable`` (``reason`` says why). ``size_bytes``: all its files."""

    id: str
    path: Path
    command: str
    start_time: float | None
    status: str
    headline: str
    n_events: int
    reason: str = ""
    size_bytes: int = 0


HEADLINE_CHARS = 100


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value == 0 or 1e-3 <= abs(value) < 1e6 else f"{value:.3g}"
    return str(value)


def headline_of(stop: dict) -> str:
    """The stop document's headline: the command's own sentence (``labctl_headline``), else
    its summary's scalar values, cut to :data:`HEADLINE_CHARS`."""
    text = stop.get("labctl_headline")
    if not isinstance(text, str) or not text:
        summary = stop.get("labctl_summary") or {}
        text = ", ".join(f"{k}={_format_value(v)}" for k, v in summary.items()
                         if isinstance(v, str | int | float) and len(_format_value(v)) <= 40)
    return text if len(text) <= HEADLINE_CHARS else text[:HEADLINE_CHARS - 3] + "..."


def tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks are not followed)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(folder, name))
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def first_start(session_dir: Path) -> dict | None:
    """The start document on the first line of ``session_dir``'s documents (either JSONL
    layout), or None if there is none that reads: a cheap look before opening a session."""
    file = session_dir / DOCUMENTS
    try:
        with open(file, "rb") as f:
            name, doc = parse_line(file, 1, f.readline())
    except (OSError, RecordError):
        return None
    return doc if name == "start" else None


def summarise_session(path: Path) -> SessionSummary:
    size = tree_size(path)
    try:
        session = Session(path)
        stop = session.stop or {}
        n_events = session.n_events
    except Exception as err:  # one broken directory must never break the whole listing
        return SessionSummary(path.name, path, "", None, "unreadable", "", 0, str(err), size)
    status = stop.get("exit_status") or ("running" if is_being_written(path) else "interrupted")
    reason = stop.get("reason") or "; ".join(session.torn_messages)
    return SessionSummary(path.name, path, session.start.get("plan_name", ""),
                          session.start.get("time"), status, headline_of(stop), n_events,
                          reason, size)


def list_sessions(root: str | os.PathLike) -> list[SessionSummary]:
    """Summaries of the session directories under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [summarise_session(p) for p in dirs]


def find_session(ref: str | os.PathLike, root: str | os.PathLike) -> Path:
    """A session given as its directory, or as its id (a directory name under ``root``,
    the sessions directory). A path is returned as it is (opening it says what is wrong);
    a bare id that names no session here nor under ``root`` is a RecordError naming both."""
    path = Path(ref)
    if path.name != str(ref) or (path / DOCUMENTS).is_file():
        return path
    by_id = Path(root) / path.name
    if (by_id / DOCUMENTS).is_file():
        return by_id
    raise RecordError(f"{ref}: no session there, nor an id of one in {root}")
