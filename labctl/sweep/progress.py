"""Progress over a sweep's cells, on :class:`labctl.progress.Progress` (one bar per
command): a tqdm bar on a terminal, plain lines otherwise, nothing with ``--no-progress``.

Shows cells done (of the whole grid, counting those finished by an earlier run), running
and failed, and the estimated time to the end (from this run's finished cells). Off a
terminal every finished cell gets its own line (``sweep: [n/total] ok LABEL: ...``), and
a line every 10 s while cells run.
"""

from __future__ import annotations

from typing import TextIO

from labctl.progress import Progress as CommandProgress


class Progress:
    """The sweep's view of a :class:`labctl.progress.Progress` over its cells."""

    def __init__(self, total: int, done: int, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.total, self.done, self.failed, self.running = total, done, 0, 0
        # Cells report themselves: no extra line per tenth, only the 10 s heartbeat.
        self._bar = CommandProgress(total, "sweep cells", unit="cell", enabled=enabled,
                                    initial=done, stream=stream, every_fraction=None)
        self._postfix()

    def eta_s(self) -> float | None:
        """Seconds to the end at this run's rate so far (None before the first cell)."""
        return self._bar.eta_s()

    def _postfix(self) -> None:
        self._bar.set_postfix(f"running {self.running}, failed {self.failed}")

    def set_running(self, n: int) -> None:
        if n != self.running:
            self.running = n
            self._postfix()

    def finished(self, ok: bool, label: str, detail: str) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        self._postfix()
        self._bar.update(1)
        if self._bar.tty and not ok:
            self._bar.write(f"cell failed: {label}: {detail}")
        elif self._bar.plain:
            eta = self.eta_s()
            self._bar.write(
                f"sweep: [{self.done + self.failed}/{self.total}] {'ok' if ok else 'FAILED'} "
                f"{label}: {detail}; done {self.done}, running {self.running}, failed "
                f"{self.failed}" + (f", ETA {eta:.0f} s" if eta is not None else ""))

    def note(self, text: str) -> None:
        self._bar.write(text)

    def close(self) -> None:
        self._bar.close()
