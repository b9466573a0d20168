"""Session records in the Bluesky event-model: one directory per labctl command run.

``<root>/<session_id>/``, the id ``YYYYMMDD-HHMMSS-<command>-<4 hex>`` in UTC so ids sort by time::

    documents.jsonl          one ``[name, doc]`` JSON array per line (the suitcase-jsonl layout):
                             start, then descriptor/event/resource/datum as they happen, then stop
    arrays/<name>-<n>.npy    arrays referenced from events through resource + datum documents
    wire/<instrument>.jsonl  raw instrument traffic, written by the transports

Each document is one unbuffered ``write`` of a whole line (write and flush in one system call), so
``kill -9`` loses at most the document being written; readers skip a torn last line with a
:class:`TornRecordWarning`. No fsync per line: a killed process's writes survive in the page cache;
only a power cut could lose the tail, and ``stop`` fsyncs once.

Start extras: ``labctl_format`` (:data:`FORMAT_VERSION`), ``labctl_version``, ``labctl_env``,
``argv``, ``config``, ``seeds``, ``station_file`` (its text), ``instruments`` (identity and
settings per instrument). Stop extra: ``labctl_summary``, the headline result. NaN is written as
``NaN`` (a diverged loss is worth recording; Python's json reads it back).

Arrays get a resource (spec ``NPY_FILE``, root = session dir, resource_path relative) and a datum;
events hold the datum_id under a data key with ``"external": "FILESTORE:"``. Readers resolve
resource_path against the directory they opened, not root, so sessions can be moved.

Wire logs (:func:`wire_log_path`) are JSON lines, ``t`` = seconds since the transport opened:
``{"t": 0.001, "w": "*IDN?\\n"}`` text written, ``{"t": 0.015, "r": "KEITHLEY,...\\n"}`` text
read, ``{"t": 0.031, "rb": "AAECAw=="}`` bytes read, base64-encoded.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import re
import secrets
import signal
import socket
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
DOCUMENTS = "documents.jsonl"
EXIT_STATUSES = ("success", "abort", "fail")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


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


def wire_log_path(session_dir: str | os.PathLike, instrument_name: str) -> Path:
    """Path of the wire log ``wire/<instrument_name>.jsonl``; creates ``wire/`` if needed."""
    wire = Path(session_dir) / "wire"
    wire.mkdir(exist_ok=True)
    return wire / f"{_safe_name('instrument', instrument_name)}.jsonl"


@dataclass
class _Stream:
    name: str
    keys: frozenset[str]
    external: tuple[str, ...]
    count: int = 0


class SessionWriter:
    """Writes one session. Use as a context manager so every way out ends with a stop document.

    Nest it inside :func:`terminate_as_interrupt` so SIGTERM also yields ``abort``::

        with terminate_as_interrupt(), SessionWriter.create(root, ...) as session:
            ...
    """

    def __init__(self, path: Path, file: Any, start_uid: str) -> None:
        self.path = path
        self.start_uid = start_uid
        self._file = file
        self._streams: dict[str, _Stream] = {}  # descriptor uid -> stream
        self._arrays: dict[str, int] = {}

    @classmethod
    def create(cls, root: str | os.PathLike, command: str, argv: list[str], config: dict,
               seeds: dict, instruments: dict | None = None,
               station_file_text: str | None = None) -> SessionWriter:
        """Create ``root/<session_id>/`` and write the start document."""
        now = time.time()
        env = {"python": platform.python_version(), "numpy": np.__version__,
               "platform": platform.platform(), "host": socket.gethostname()}
        start = {"uid": _uid(), "time": now, "plan_name": command,
                 "labctl_format": FORMAT_VERSION, "labctl_version": _labctl_version(),
                 "labctl_env": env, "argv": list(argv), "config": config, "seeds": seeds,
                 "station_file": station_file_text, "instruments": instruments or {}}
        _check_keys(start, "start")
        line = _encode("start", start)  # before mkdir, so bad input leaves no junk directory
        root = Path(root)
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
        writer = cls(path, open(path / DOCUMENTS, "xb", buffering=0), start["uid"])
        writer._write(line)
        return writer

    @classmethod
    def reopen(cls, session_dir: str | os.PathLike) -> SessionWriter:
        """Continue an interrupted session (one with no stop document).

        A torn last line is cut off first; new documents follow the last whole one, on
        the session's existing streams (see :meth:`stream_uids`).
        """
        path = Path(session_dir)
        session = Session(path)
        if session.stop is not None:
            raise RecordError(f"{path}: session has a stop document "
                              f"({session.stop.get('exit_status')}); it cannot be continued")
        file = path / DOCUMENTS
        if session.torn:
            data = file.read_bytes()
            os.truncate(file, data.rstrip(b"\n").rfind(b"\n") + 1)
        writer = cls(path, open(file, "ab", buffering=0), session.start["uid"])
        for name, desc in session.descriptors.items():
            keys = desc["data_keys"]
            external = tuple(k for k, spec in keys.items() if spec.get("external"))
            count = len(session._events.get(desc["uid"], []))
            writer._streams[desc["uid"]] = _Stream(name, frozenset(keys), external, count)
        for npy in (path / "arrays").glob("*.npy"):
            name, _, n = npy.stem.rpartition("-")
            writer._arrays[name] = max(writer._arrays.get(name, 0), int(n) + 1)
        return writer

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

    def descriptor(self, name: str, data_keys: dict[str, dict]) -> str:
        """Declare stream ``name`` with event-model data keys; returns the descriptor uid."""
        if any(stream.name == name for stream in self._streams.values()):
            raise ValueError(f"stream {name!r} already has a descriptor")
        for key, spec in data_keys.items():
            missing = {"dtype", "shape", "source"} - spec.keys()
            if missing:
                raise ValueError(f"data key {key!r} lacks {sorted(missing)}")
        _check_keys(data_keys, f"descriptor {name!r}")
        uid = _uid()
        doc = {"uid": uid, "time": time.time(), "run_start": self.start_uid, "name": name,
               "data_keys": data_keys}
        self._write(_encode("descriptor", doc))
        external = tuple(k for k, spec in data_keys.items() if spec.get("external"))
        self._streams[uid] = _Stream(name, frozenset(data_keys), external)
        return uid

    def event(self, descriptor_uid: str, data: dict, timestamps: dict | None = None) -> None:
        """Write one event; ``data`` must have exactly the descriptor's keys."""
        stream = self._streams[descriptor_uid]
        if data.keys() != stream.keys:
            raise ValueError(f"event keys {sorted(data)} differ from stream {stream.name!r} "
                             f"keys {sorted(stream.keys)}")
        now = time.time()
        doc = {"uid": _uid(), "time": now, "descriptor": descriptor_uid,
               "seq_num": stream.count + 1, "data": data,
               "timestamps": timestamps if timestamps is not None else dict.fromkeys(data, now)}
        if stream.external:  # as the RunEngine does: tells Filler which keys are datum_ids
            doc["filled"] = dict.fromkeys(stream.external, False)
        self._write(_encode("event", doc))
        stream.count += 1

    def array(self, name: str, arr: Any) -> str:
        """Save ``arr`` as ``arrays/<name>-<n>.npy``; returns the datum_id for an event."""
        n = self._arrays.get(_safe_name("array", name), 0)
        relative = f"arrays/{name}-{n}.npy"
        target = self.path / relative
        target.parent.mkdir(exist_ok=True)
        partial = target.with_suffix(".npy.partial")
        with open(partial, "wb") as f:
            np.save(f, np.asarray(arr), allow_pickle=False)
        os.replace(partial, target)  # a datum never points at a half-written file
        self._arrays[name] = n + 1
        resource = {"uid": _uid(), "spec": "NPY_FILE", "root": str(self.path.resolve()),
                    "resource_path": relative, "resource_kwargs": {}, "path_semantics": "posix",
                    "run_start": self.start_uid}
        self._write(_encode("resource", resource))
        datum_id = f"{resource['uid']}/0"
        self._write(_encode("datum", {"datum_id": datum_id, "resource": resource["uid"],
                                      "datum_kwargs": {}}))
        return datum_id

    def stop(self, exit_status: str = "success", reason: str = "",
             summary: dict | None = None) -> None:
        """Write the stop document (``summary`` is the headline result) and close the file."""
        if exit_status not in EXIT_STATUSES:
            raise ValueError(f"exit_status must be one of {EXIT_STATUSES}, not {exit_status!r}")
        _check_keys(summary or {}, "labctl_summary")
        doc = {"uid": _uid(), "time": time.time(), "run_start": self.start_uid,
               "exit_status": exit_status, "reason": reason,
               "num_events": {s.name: s.count for s in self._streams.values()},
               "labctl_summary": summary or {}}
        self._write(_encode("stop", doc))
        file, self._file = self._file, None
        os.fsync(file.fileno())
        file.close()

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if self._file is None:
            return False
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
            status, reason = "success", ""
        elif isinstance(exc, KeyboardInterrupt):
            status, reason = "abort", str(exc) or "KeyboardInterrupt"
        else:
            status, reason = "fail", f"{type(exc).__name__}: {exc}"
        try:
            self.stop(status, reason)
        except Exception as err:
            if exc is None:
                raise
            # The run's own exception matters more than its record: don't mask it.
            warnings.warn(f"{self.path}: stop document not written: {err}", RuntimeWarning,
                          stacklevel=2)
        return False


def _parse(file: Path, lineno: int, raw: bytes) -> tuple[str, dict]:
    try:
        name, doc = json.loads(raw)
        if not isinstance(name, str) or not isinstance(doc, dict):
            raise ValueError("not a [name, document] pair")
    except (ValueError, TypeError) as err:
        raise RecordError(f"{file}, line {lineno}: invalid document ({err})") from None
    if lineno == 1:
        if name != "start" or not isinstance(doc.get("labctl_format"), int):
            raise RecordError(f"{file}, line 1: not a labctl session (no start document "
                              "with labctl_format)")
        if doc["labctl_format"] > FORMAT_VERSION:
            raise RecordError(f"{file}: session format {doc['labctl_format']} is newer than "
                              f"format {FORMAT_VERSION} read by this labctl; upgrade labctl")
    return name, doc


def _documents(session_dir: Path, torn: list[str]) -> Iterator[tuple[str, dict]]:
    """Yield documents; a torn last line is skipped and described in ``torn``."""
    file = session_dir / DOCUMENTS
    try:
        f = open(file, "rb")
    except FileNotFoundError:
        raise RecordError(f"{file}: missing, not a labctl session") from None
    with f:
        lines = enumerate(f, 1)
        pending = next(lines, None)
        if pending is None:
            raise RecordError(f"{file}: empty, not a labctl session")
        for following in lines:  # one line of look-ahead: only the last line may be torn
            yield _parse(file, *pending)
            pending = following
        lineno, raw = pending
        try:
            if not raw.endswith(b"\n"):
                raise RecordError(f"{file}, line {lineno}: no trailing newline")
            last = _parse(file, lineno, raw)
        except RecordError as err:
            if lineno == 1:  # without a whole start document this is no session at all
                raise
            torn.append(f"{err}; torn last line skipped")
            return
        yield last


def read_documents(session_dir: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """Yield ``(name, doc)``; warns :class:`TornRecordWarning` for a torn last line."""
    torn: list[str] = []
    yield from _documents(Path(session_dir), torn)
    for message in torn:
        warnings.warn(message, TornRecordWarning, stacklevel=2)


class NpyFileHandler:
    """event-model handler for spec ``NPY_FILE``: ``Filler({"NPY_FILE": NpyFileHandler})``."""

    def __init__(self, full_path: str, **resource_kwargs: Any) -> None:
        self.full_path = full_path

    def __call__(self, **datum_kwargs: Any) -> np.ndarray:
        return np.load(self.full_path, allow_pickle=False)


class Session:
    """A session read back: ``start``, ``descriptors`` by stream name, ``stop`` (None when the
    run was interrupted) and ``torn`` (the last line was cut short and skipped).

    ``Session(path)`` reads quietly; :meth:`open` also warns about a torn last line."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.start: dict = {}
        self.descriptors: dict[str, dict] = {}
        self.stop: dict | None = None
        self._events: dict[str, list[dict]] = {}  # descriptor uid -> event data
        self._resources: dict[str, dict] = {}
        self._datums: dict[str, dict] = {}
        self.torn_messages: list[str] = []
        self.last_time: float | None = None  # of the last whole document
        for name, doc in _documents(self.path, self.torn_messages):
            self.last_time = doc.get("time", self.last_time)
            if name == "start":
                self.start = doc
            elif name == "descriptor":
                self.descriptors[doc["name"]] = doc
            elif name == "event":
                self._events.setdefault(doc["descriptor"], []).append(doc["data"])
            elif name == "resource":
                self._resources[doc["uid"]] = doc
            elif name == "datum":
                self._datums[doc["datum_id"]] = doc
            elif name == "stop":
                self.stop = doc
        self.torn = bool(self.torn_messages)

    @classmethod
    def open(cls, session_dir: str | os.PathLike) -> Session:
        session = cls(session_dir)
        for message in session.torn_messages:
            warnings.warn(message, TornRecordWarning, stacklevel=2)
        return session

    def events(self, stream_name: str, fill: bool = False) -> list[dict]:
        """Event data of a stream in order; ``fill`` loads external (array) keys."""
        if stream_name not in self.descriptors:
            raise KeyError(f"no stream {stream_name!r} in {self.path}: {sorted(self.descriptors)}")
        descriptor = self.descriptors[stream_name]
        rows = self._events.get(descriptor["uid"], [])
        external = [k for k, spec in descriptor["data_keys"].items() if spec.get("external")]
        if not (fill and external):
            return list(rows)
        return [{**row, **{k: self.load_array(row[k]) for k in external}} for row in rows]

    def load_array(self, datum_id: str) -> np.ndarray:
        """Load the array an event refers to by datum_id."""
        try:
            resource = self._resources[self._datums[datum_id]["resource"]]
        except KeyError:
            raise RecordError(f"{self.path}: no datum/resource for {datum_id!r}") from None
        if resource["spec"] != "NPY_FILE":
            raise RecordError(f"{self.path}: cannot load spec {resource['spec']!r}")
        return np.load(self.path / resource["resource_path"], allow_pickle=False)


@dataclass(frozen=True)
class SessionSummary:
    """One line of ``labctl sessions``; status is success/fail/abort, ``interrupted`` (no stop
    document) or ``unreadable`` (``reason`` says why)."""

    id: str
    path: Path
    command: str
    start_time: float | None
    status: str
    headline: str
    n_events: int
    reason: str = ""


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value == 0 or 1e-3 <= abs(value) < 1e6 else f"{value:.3g}"
    return str(value)


def _summarise(path: Path) -> SessionSummary:
    try:
        session = Session(path)
        stop = session.stop or {}
        summary = stop.get("labctl_summary") or {}
        headline = ", ".join(f"{k}={_format_value(v)}" for k, v in summary.items())
        n_events = sum(map(len, session._events.values()))
    except Exception as err:  # one broken directory must never break the whole listing
        return SessionSummary(path.name, path, "", None, "unreadable", "", 0, str(err))
    reason = stop.get("reason") or "; ".join(session.torn_messages)
    return SessionSummary(path.name, path, session.start.get("plan_name", ""),
                          session.start.get("time"), stop.get("exit_status", "interrupted"),
                          headline, n_events, reason)


def list_sessions(root: str | os.PathLike) -> list[SessionSummary]:
    """Summaries of the session directories under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [_summarise(p) for p in dirs]


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt("SIGTERM")`` in the main thread, so
    cleanup runs as for Ctrl-C and the stop document says abort / SIGTERM."""

    def handler(signum: int, frame: Any) -> None:
        # One shot: a second SIGTERM must not cut short the cleanup the first one started
        # (e.g. ramping a source down); kill -9 remains for a hung process.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
