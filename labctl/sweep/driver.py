"""Running a sweep: cells to executors, retries, results written as each cell ends.

A cell already ``ok`` in the sweep directory is skipped. Every other cell gets up to
``1 + retries`` attempts: an attempt whose run dies (killed by a signal, or its worker
lost) is tried again, resuming the cell's session where the command can; an attempt
that fails cleanly (the command refused its input or reported an error) is final, except
a failed *resume*, which is tried once more from the start. Each finished cell's result
and the table are written at once, atomically; a failing cell never stops the others.
SIGINT/SIGTERM/SIGHUP end the sweep: running cells are told to stop (their sessions end
``abort``, to be resumed by the next run), finished ones are kept.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from labctl.commands.signals import signals_as_interrupt
from labctl.records.session import _labctl_version
from labctl.sweep.cells import Cell
from labctl.sweep.grid import Grid
from labctl.sweep.metrics import headline
from labctl.sweep.progress import Progress
from labctl.sweep.runner import INTERRUPTED, _alive, _read_json
from labctl.sweep.store import SweepStore

POLL_S = 0.25
#: Exceptions of a task whose worker was lost (Dask), as opposed to one that failed.
LOST = {"KilledWorker", "CommClosedError", "CancelledError", "FutureCancelledError",
        "BrokenProcessPool"}
STOP_WAIT_S = 30.0


@dataclass
class SweepResult:
    total: int
    ok: int = 0
    failed: list[tuple[Cell, str]] = field(default_factory=list)
    skipped: int = 0
    interrupted: str = ""


def sweep_meta(grid: Grid, executor_name: str) -> dict:
    return {"command": grid.options.command, "words": list(grid.options.words),
            "name": grid.name, "source": grid.source, "base_dir": str(grid.base_dir),
            "factors": [f.dest for f in grid.factors], "fixed": [f.dest for f in grid.fixed],
            "labctl_version": _labctl_version(), "executor": executor_name,
            "written": time.time()}


class _Run:
    def __init__(self, grid: Grid, cells: list[Cell], store: SweepStore, executor: Any,
                 retries: int, progress: Progress) -> None:
        self.grid, self.cells, self.store, self.executor = grid, cells, store, executor
        self.retries, self.progress = retries, progress
        self.attempts: dict[str, int] = {c.key: 0 for c in cells}
        self.resume_ok: dict[str, bool] = {c.key: True for c in cells}
        self.running: dict[Any, Cell] = {}
        self.token = uuid.uuid4().hex[:6]
        self.cell_meta = store.meta()["cells"]
        self.dests = {a.dest for a in grid.options.parser._actions}
        self.factor_names = [f.dest for f in grid.factors]
        has = grid.options.has
        self.added = (["--json"] + (["--no-progress"] if has("no_progress") else [])
                      + (["--sessions-dir", "{sessions}"] if has("sessions_dir") else []))

    def spec(self, cell: Cell) -> dict:
        return {"argv": list(cell.argv), "n_words": len(self.grid.options.words),
                "sessions_dir": str(self.store.sessions_dir.resolve()),
                "cell_dir": str(self.store.cell_dir(cell.key).resolve()),
                "cwd": os.getcwd(), "attempt": self.attempts[cell.key],
                "resume": self.resume_ok[cell.key],
                "can_resume": self.grid.options.has("resume"), "added": self.added}

    def submit(self, cell: Cell) -> None:
        self.attempts[cell.key] += 1
        key = f"labctl-cell-{cell.key}-a{self.attempts[cell.key]}-{self.token}"
        self.running[self.executor.submit(self.spec(cell), key)] = cell

    def record(self, cell: Cell, out: dict, status: str, error: str) -> None:
        summary = out.get("summary")
        self.store.write_result(cell.key, {
            "key": cell.key, "index": cell.index, "argv": list(cell.argv),
            "status": status, "error": error,
            "metrics": headline(self.grid.options.command, summary), "summary": summary,
            "session": out.get("session"), "attempts": self.attempts[cell.key],
            "resumed": bool(out.get("resumed")), "adopted": bool(out.get("adopted")),
            "wall_s": out.get("wall_s"), "started": out.get("started"),
            "host": out.get("host"), "rc": out.get("rc"),
        })
        self.write_table()
        detail = error if status != "ok" else (
            f"{out.get('wall_s') or 0:.1f} s, session {out.get('session')}"
            + (" (resumed)" if out.get("resumed") else "")
            + (" (from its finished session)" if out.get("adopted") else ""))
        self.progress.finished(status == "ok", cell.label(self.factor_names), detail)

    def write_table(self) -> None:
        self.store.write_table(self.store.rows(self.cell_meta, self.dests))

    def handle(self, cell: Cell, out: dict, queue: deque) -> bool:
        """Deal with one attempt's outcome; True if the cell is done (ok or failed)."""
        rc = out.get("rc")
        if out.get("adopted") or (rc == 0 and out.get("summary") is not None):
            self.record(cell, out, "ok", "")
            return True
        left = self.attempts[cell.key] < 1 + self.retries
        died = out.get("lost") or (rc is not None and (rc < 0 or rc in INTERRUPTED))
        if died and left:
            self.progress.note(f"sweep: cell {cell.index} ({cell.label(self.factor_names)}): "
                               f"{out.get('error')}; retrying")
            queue.appendleft(cell)
            return False
        if out.get("resumed") and not died and left:
            self.resume_ok[cell.key] = False  # the session cannot be continued: start afresh
            self.progress.note(f"sweep: cell {cell.index}: resume failed ({out.get('error')});"
                               " starting it afresh")
            queue.appendleft(cell)
            return False
        error = out.get("error") or "no JSON summary on stdout"
        if died:
            error = f"{error} ({self.attempts[cell.key]} attempts)"
        self.record(cell, out, "failed", error)
        return True

    def stop_running(self) -> None:
        """Ask the cells running on this host to stop (SIGTERM: their sessions end abort)."""
        host = socket.gethostname()
        for cell in self.running.values():
            info = _read_json(self.store.cell_dir(cell.key) / "running.json")
            if info and info.get("host") == host and _alive(int(info.get("pid", 0))):
                with contextlib.suppress(OSError):
                    os.kill(int(info["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while self.running and time.monotonic() < deadline:
            for fut in self.executor.wait(list(self.running), POLL_S):
                self.running.pop(fut, None)


def run_sweep(grid: Grid, cells: list[Cell], store: SweepStore, executor: Any, *,
              retries: int = 2, progress: bool = True) -> SweepResult:
    """Run every cell of ``grid`` not yet ok in ``store``; returns the counts."""
    try:
        lock = store.lock()
    except RuntimeError:
        executor.close()
        raise
    store.prepare(grid.text, sweep_meta(grid, executor.name), cells)
    todo = [c for c in cells if (store.result(c.key) or {}).get("status") != "ok"]
    result = SweepResult(len(cells), skipped=len(cells) - len(todo))
    bar = Progress(len(cells), result.skipped, enabled=progress)
    run = _Run(grid, cells, store, executor, retries, bar)
    queue: deque[Cell] = deque(todo)
    try:
        run.write_table()
        with signals_as_interrupt():
            try:
                while queue or run.running:
                    capacity = executor.capacity()
                    while queue and len(run.running) < capacity:
                        run.submit(queue.popleft())
                    bar.set_running(len(run.running))
                    for fut in executor.wait(list(run.running), POLL_S):
                        cell = run.running.pop(fut)
                        bar.set_running(len(run.running))
                        try:
                            out = fut.result()
                        except Exception as exc:
                            lost = type(exc).__name__ in LOST  # else a bug: not retried
                            out = {"rc": None, "lost": lost, "error": (
                                "worker lost: " if lost else "sweep runner failed: ")
                                + f"{type(exc).__name__}: {exc}"}
                        run.handle(cell, out, queue)
            except KeyboardInterrupt as exc:
                result.interrupted = str(exc) or "SIGINT"
                bar.note(f"sweep: interrupted ({result.interrupted}); stopping "
                         f"{len(run.running)} running cell(s), finished cells are kept")
                run.stop_running()
        run.write_table()
    finally:
        bar.close()
        executor.close()
        lock.close()
    for c in cells:
        r = store.result(c.key) or {}
        if r.get("status") == "ok":
            result.ok += 1
        elif r.get("status") == "failed":
            result.failed.append((c, r.get("error", "")))
    return result
