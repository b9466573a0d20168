"""Progress over a sweep's cells: a tqdm bar on a terminal, plain lines otherwise.

Shows cells done (of the whole grid, counting those finished by an earlier run), running
and failed, and the estimated time to the end (from this run's finished cells).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, done: int, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.total, self.done, self.failed, self.running = total, done, 0, 0
        self._stream = stream or sys.stderr
        self._start_done = done
        self._t0 = time.monotonic()
        self._bar = None
        self._plain = enabled and not self._stream.isatty()
        if enabled and self._stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, desc="cells", unit="cell",
                             file=self._stream, dynamic_ncols=True)
            self._postfix()

    def eta_s(self) -> float | None:
        """Seconds to the end at this run's rate so far (None before the first cell)."""
        finished = self.done + self.failed - self._start_done
        if finished <= 0:
            return None
        rate = (time.monotonic() - self._t0) / finished
        return rate * (self.total - self.done - self.failed)

    def _postfix(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"running {self.running}, failed {self.failed}")

    def set_running(self, n: int) -> None:
        if n != self.running:
            self.running = n
            self._postfix()

    def finished(self, ok: bool, label: str, detail: str) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self._bar is not None:
            self._bar.update(1)
            self._postfix()
            if not ok:
                self._bar.write(f"cell failed: {label}: {detail}", file=self._stream)
        elif self._plain:
            eta = self.eta_s()
            print(f"sweep: [{self.done + self.failed}/{self.total}] {'ok' if ok else 'FAILED'} "
                  f"{label}: {detail}; done {self.done}, running {self.running}, failed "
                  f"{self.failed}" + (f", ETA {eta:.0f} s" if eta is not None else ""),
                  file=self._stream, flush=True)

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self._stream)
        else:
            print(text, file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
