"""One attempt at one cell, run where a worker is (a local thread or a Dask worker).

The attempt is the ordinary command as a subprocess (``python -m labctl.cli ...``) with
one BLAS thread (workers run side by side), its stdout and stderr kept in the cell's
directory, its pid in ``running.json`` while it runs. What it does depends on the cell's
latest session in the sweep's sessions directory (the filesystem is shared with the
sweep): a session that ended ``success`` is taken as the cell's result without running
anything (the sweep was stopped after the run finished but before it was written); one
that was killed, interrupted or failed is continued with ``--resume`` where the command
has it; otherwise the run starts afresh. Everything here is plain data in and out, so a
Dask worker can run it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: One BLAS/OpenMP thread per cell: cells already run in parallel.
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

#: Options the sweep adds to every cell (dropped when matching a session's argv).
ADDED_FLAGS = ("--json", "--no-progress")
ADDED_VALUED = ("--sessions-dir",)

#: Exit statuses of a run ended by a signal (labctl turns SIGINT/SIGTERM/SIGHUP into 130).
INTERRUPTED = (130, 137, 143)

STALE_WAIT_S = 30.0


def cell_argv(argv: list[str]) -> list[str]:
    """A run's argv without the options the sweep adds: what identifies its cell."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token in ADDED_FLAGS:
            continue
        elif token in ADDED_VALUED:
            skip = True
        elif not any(token.startswith(f + "=") for f in ADDED_VALUED):
            out.append(token)
    return out


def latest_session(sessions_dir: Path, argv: list[str]) -> Path | None:
    """The newest session under ``sessions_dir`` whose run was started with ``argv`` (the
    cell's argv; ids sort by start time)."""
    from labctl.records.session import first_start

    if not sessions_dir.is_dir():
        return None
    found = None
    for path in sorted(p for p in sessions_dir.iterdir() if p.is_dir()):
        start = first_start(path)
        if start is not None and cell_argv(list(start.get("argv", []))) == argv:
            found = path
    return found


def session_state(path: Path) -> tuple[str, dict, float | None]:
    """(exit status or "interrupted", the stop's labctl_summary, run time in s)."""
    from labctl.records.session import Session

    session = Session(path)
    if session.stop is None:
        return "interrupted", {}, None
    wall = session.stop["time"] - session.starts[-1]["time"]
    return session.stop["exit_status"], session.stop.get("labctl_summary") or {}, wall


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_stale(cell_dir: Path, timeout_s: float = STALE_WAIT_S) -> None:
    """An earlier attempt's process still running here (its sweep was killed and it has
    not yet seen its parent go) is waited for, then killed: two runs must never write one
    session."""
    info = _read_json(cell_dir / "running.json")
    if not info or info.get("host") != socket.gethostname():
        return
    pid = int(info.get("pid", 0))
    deadline = time.monotonic() + timeout_s
    while pid > 0 and _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid > 0 and _alive(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``path`` so that a reader (or a crash) sees the old file or the new, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the thread that started it goes,
    i.e. when the sweep or the Dask worker dies, so no orphaned run writes on."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _error_text(stderr: str, rc: int) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"worker died ({name})"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("labctl:", "simulate mnist:"))]
    text = errors[-1] if errors else " | ".join(lines[-3:])
    return text[:500] or f"exit status {rc}"


def _parse_summary(stdout: str) -> dict | None:
    text = stdout.strip()
    if not text:
        return None
    with contextlib.suppress(ValueError):
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    for line in reversed(text.splitlines()):  # a JSON line after other output
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return None


def run_attempt(spec: dict) -> dict:
    """Run (or resume, or adopt) one cell once; returns what happened.

    ``spec``: ``argv`` (the cell's command words and options), ``sessions_dir``,
    ``cell_dir`` (absolute paths), ``cwd``, ``added`` (the options the sweep adds, the
    sessions directory as "{sessions}"), ``attempt`` (1, 2, ...), ``resume`` (False:
    start afresh even if a session could be continued), ``can_resume`` (the command has
    --resume). Returns ``rc`` (None: adopted), ``summary`` (the --json output), ``error``,
    ``session``, ``resumed``, ``wall_s`` (s), ``started`` (Unix time), ``host``.
    """
    cell_dir, sessions_dir = Path(spec["cell_dir"]), Path(spec["sessions_dir"])
    cell_dir.mkdir(parents=True, exist_ok=True)
    argv = list(spec["argv"])
    host = socket.gethostname()
    wait_for_stale(cell_dir)
    previous = latest_session(sessions_dir, argv)
    resumed = False
    if previous is not None:
        status, summary, wall = session_state(previous)
        if status == "success" and summary:
            return {"rc": None, "summary": {**summary, "session": previous.name}, "error": "",
                    "session": previous.name, "resumed": False, "adopted": True,
                    "wall_s": wall, "started": None, "host": host}
        if spec.get("resume", True) and spec.get("can_resume") and status != "success":
            command = argv[: spec.get("n_words", 2)]
            argv = [*command, "--resume", str(previous)]
            resumed = True
    added = spec.get("added", [*ADDED_FLAGS, "--sessions-dir", "{sessions}"])
    full = [*argv, *(str(sessions_dir) if a == "{sessions}" else a for a in added)]
    n = int(spec["attempt"])
    out_path, err_path = cell_dir / f"attempt-{n}.out", cell_dir / f"attempt-{n}.err"
    env = {**os.environ, **SINGLE_THREAD, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    # A Dask nanny sets this for its worker (to return memory to the OS); inherited by a
    # cell it makes every numpy free a system call and the run ~1.5x slower.
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    cwd = spec.get("cwd")
    if cwd and not Path(cwd).is_dir():  # a worker on another machine: run from anywhere
        cwd = None
    started, t0 = time.time(), time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labctl.cli", *full], stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, cwd=cwd, env=env, preexec_fn=_die_with_parent,
        )
        write_json_atomic(cell_dir / "running.json",
                          {"pid": proc.pid, "host": host, "attempt": n, "started": started})
        try:
            rc = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted here: the run ends with the sweep
                proc.send_signal(signal.SIGTERM)
                proc.wait()
    wall = time.perf_counter() - t0
    with contextlib.suppress(OSError):
        (cell_dir / "running.json").unlink()
    stdout = out_path.read_text(errors="replace")
    summary = _parse_summary(stdout)
    session = (summary or {}).get("session")
    if session is None:  # killed or failed: the session it wrote to, if any
        latest = latest_session(sessions_dir, list(spec["argv"]))
        if latest is not None and (latest != previous or resumed):
            session = latest.name
    error = "" if rc == 0 else _error_text(err_path.read_text(errors="replace"), rc)
    return {"rc": rc, "summary": summary, "error": error, "session": session,
            "resumed": resumed, "adopted": False, "wall_s": wall, "started": started,
            "host": host}
