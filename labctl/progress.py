"""Progress of a command's whole work: one bar per command, on stderr only.

Every command whose work takes more than a second shows one :class:`Progress` over all of
it (the points of its sweeps, the epochs of every fold and grad, a sweep's cells), with an
estimated time to the end from the rate so far:

- on a terminal (stderr is a tty): a tqdm bar, its description naming what runs now;
- elsewhere (a log file, a pipe): plain lines ``DESC: n/total UNIT (p %), elapsed, ETA``
  every ``every_s`` seconds (also while one long step runs) and at every tenth of the work;
- nothing at all when disabled: ``--no-progress`` or ``--json`` (see :func:`wanted`).

stdout is never written (it carries the command's result and ``--json``). Updates are
cheap: the tty bar redraws at most four times a second and the plain lines are rate
limited, so counting every point costs nothing measurable.

Use::

    with Progress(total, "iv pair 1", unit="point", enabled=wanted(args)) as bar:
        bar.update(n)                      # n more units done
        bar.set_description("fold 2/5")    # what runs now
        bar.write("a note")                # a line that does not tear the bar

Instrument work is counted in source points: :func:`counted` wraps a plan and advances the
bar by the points (ramp padding included) of every sweep it yields; :func:`planned_points`
gives the total of plans that do not adapt to their readings.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import numpy as np

from protocols.intents import Plan, Pulse, Sweep, SweepResult, run_offline
from protocols.safety import SafetyEnvelope

#: Seconds between the plain lines written when stderr is not a terminal.
PLAIN_EVERY_S = 10.0
#: Fraction of the work between plain lines (one line per tenth).
PLAIN_EVERY_FRACTION = 0.1
#: Plurals of the units that do not just take an "s".
PLURALS = {"batch": "batches"}
#: Seconds between redraws of a tty bar when nothing is counted (elapsed keeps moving).
TTY_REFRESH_S = 1.0


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-progress`` (the same flag in every command; a sweep passes it to cells)."""
    parser.add_argument("--no-progress", action="store_true", dest="no_progress",
                        help="no progress bar on stderr (nor progress lines off a terminal)")


def wanted(args: argparse.Namespace) -> bool:
    """Whether the command shows progress: not with ``--no-progress`` nor ``--json``."""
    return not (getattr(args, "no_progress", False) or getattr(args, "json", False))


def format_s(seconds: float | None) -> str:
    """``h:mm:ss`` or ``m:ss`` of a duration in s; ``?`` when unknown."""
    if seconds is None or not np.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """One progress display over ``total`` units of work (see the module docstring).

    ``initial`` units are done already (a resumed run, a sweep's finished cells): they
    count towards n but not towards the rate, so the ETA stays this run's. ``every_s`` (s)
    and ``every_fraction`` pace the plain lines (``every_fraction`` None: time only).
    ``stream`` defaults to ``sys.stderr``; ``clock`` (s, monotonic) is for tests.
    """

    def __init__(self, total: int, desc: str, *, unit: str = "step", enabled: bool = True,
                 initial: int = 0, stream: TextIO | None = None,
                 every_s: float = PLAIN_EVERY_S,
                 every_fraction: float | None = PLAIN_EVERY_FRACTION,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.n, self.desc, self.unit = max(int(total), 0), int(initial), desc, unit
        self.postfix = ""
        self._initial = int(initial)
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._t0 = clock()
        self._every_s, self._every_fraction = every_s, every_fraction
        self._lock = threading.RLock()
        self._closed = False
        self._bar = None
        self._plain = False
        self._last_line = self._t_update = self._t0
        self._tenth = 1  # the next multiple of every_fraction to report
        self._printed_n: int | None = None
        if not enabled:
            self._closed = True
            return
        if _isatty(self._stream):
            from tqdm import tqdm

            # smoothing=0: the average rate over the run, not the last few steps (steps
            # of unequal size would make a smoothed ETA jump).
            self._bar = tqdm(total=self.total, initial=self.n, desc=desc, unit=unit,
                             file=self._stream, dynamic_ncols=True, mininterval=0.25,
                             smoothing=0, leave=True)
        else:
            self._plain = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name="labctl-progress",
                                        daemon=True)
        self._thread.start()

    # -- state -----------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """Whether anything is shown (a tty bar or plain lines)."""
        return self._bar is not None or self._plain

    @property
    def tty(self) -> bool:
        """A tqdm bar on a terminal is shown."""
        return self._bar is not None

    @property
    def plain(self) -> bool:
        """Plain progress lines are written (stderr is not a terminal)."""
        return self._plain

    def elapsed_s(self) -> float:
        return self._clock() - self._t0

    def eta_s(self) -> float | None:
        """Seconds to the end at this run's average rate (None before the first unit).

        The rate is taken at the last update, and the time since counts as spent on the
        rest: during one long step the ETA goes down, as a clock would."""
        done = self.n - self._initial
        if done <= 0:
            return None
        per_unit = (self._t_update - self._t0) / done
        return max(per_unit * max(self.total - self.n, 0) - (self._clock() - self._t_update),
                   0.0)

    def line(self) -> str:
        """The plain progress line: description, n/total, percent, elapsed, ETA, postfix."""
        pct = 100.0 * self.n / self.total if self.total else 100.0
        units = PLURALS.get(self.unit, self.unit + "s")
        text = (f"{self.desc}: {self.n}/{self.total} {units} ({pct:.0f} %), "
                f"{format_s(self.elapsed_s())} elapsed, ETA {format_s(self.eta_s())}")
        return text + (f"; {self.postfix}" if self.postfix else "")

    # -- updates ---------------------------------------------------------------------
    def start(self) -> None:
        """The counted work begins now: what came before it (opening the station, the
        preflight checks) stays out of the rate. No effect once a unit is done."""
        with self._lock:
            if self.n == self._initial:
                self._t0 = self._t_update = self._clock()
                if self._bar is not None:
                    self._bar.reset(total=self.total)
                    self._bar.n = self._bar.last_print_n = self._bar.initial = self.n

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        if not self.enabled or n == 0:
            return
        with self._lock:
            self.n += n
            self._t_update = self._clock()
            if self._bar is not None:
                self._bar.update(n)
            elif self._plain and self._due():
                self._emit()

    def set_description(self, desc: str) -> None:
        """Say what runs now (e.g. ``fd-swap fold 2/5``)."""
        with self._lock:
            self.desc = desc
            if self._bar is not None:
                self._bar.set_description_str(desc, refresh=False)

    def set_postfix(self, text: str) -> None:
        """A short status after the counts (e.g. ``loss 0.31, val 0.93``)."""
        with self._lock:
            self.postfix = text
            if self._bar is not None:
                self._bar.set_postfix_str(text, refresh=False)

    def set_total(self, total: int) -> None:
        """The work turned out to be ``total`` units (e.g. a tuning that ended early)."""
        with self._lock:
            self.total = max(int(total), self.n)
            if self._bar is not None:
                self._bar.total = self.total
                self._bar.refresh()

    def write(self, text: str) -> None:
        """A line on the progress stream that does not tear a tty bar (always written,
        also when progress is disabled: notes are not progress)."""
        with self._lock:
            if self._bar is not None:
                self._bar.write(text, file=self._stream)
            else:
                print(text, file=self._stream, flush=True)
                self._last_line = self._clock()  # the log is not silent: no heartbeat due

    def close(self, failed: bool = False) -> None:
        """End the display; off a terminal a last line with the final count (none when
        the work ``failed`` before any of it was done: the error says it all)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            if self._bar is not None:
                self._bar.close()
            elif (self._plain and self._printed_n != self.n
                  and not (failed and self.n == self._initial)):
                self._emit()
            self._bar, self._plain = None, False
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        self.close(failed=exc_type is not None)

    # -- internals -------------------------------------------------------------------
    def _due(self) -> bool:
        if self._clock() - self._last_line >= self._every_s:
            return True
        return self._fraction_n() is not None and self.n >= self._fraction_n()

    def _fraction_n(self) -> int | None:
        """The count at which the next fraction line is due (None: no fraction lines)."""
        if not self._every_fraction or not self.total:
            return None
        # Integer multiples, so that 3 x 0.1 is still reached at 30 % exactly.
        return math.ceil(self._tenth * self._every_fraction * self.total - 1e-9)

    def _emit(self) -> None:
        print(self.line(), file=self._stream, flush=True)
        self._last_line, self._printed_n = self._clock(), self.n
        # Past every fraction already reached: one line per crossing, not per update.
        while (self._fraction_n() is not None and self._fraction_n() <= self.n
               and self._tenth * self._every_fraction < 1):
            self._tenth += 1

    def _heartbeat(self) -> None:
        """Keep the display alive while one long step runs: the tty bar's elapsed time
        moves, and a plain line still comes every ``every_s``."""
        wait = TTY_REFRESH_S if self._bar is not None else min(self._every_s, 1.0)
        while not self._stop.wait(wait):
            with self._lock:
                if self._closed:
                    return
                if self._bar is not None:
                    self._bar.refresh()
                elif self._plain and self._clock() - self._last_line >= self._every_s:
                    self._emit()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or a bare file-like object
        return False


# -- instrument work ---------------------------------------------------------------------
# The instruments' work is counted in source points: a sweep costs its points with the ramp
# padding the engine adds (what the instruments spend their time on, so the ETA follows
# instrument time); sweeps yielded together cost the longest of them (they may run in
# parallel); a pulse costs one point.

def intent_points(envelope: SafetyEnvelope, intent: Any) -> int:
    """Source points of one intent (0 for a checkpoint)."""
    if isinstance(intent, Sweep):
        if len(intent) == 0:
            return 0
        order = np.argsort(intent.currents_a, kind="stable")
        a, _, _ = envelope.ramped(intent.pair, intent.currents_a[order],
                                  intent.currents_b[order])
        return len(a)
    if isinstance(intent, tuple) and intent:
        return max(intent_points(envelope, s) for s in intent)
    if isinstance(intent, Pulse):
        return 1
    return 0


def counted(plan: Plan, envelope: SafetyEnvelope, progress: Progress) -> Plan:
    """The same plan, ``progress`` advanced by each intent's points once its result is
    back (``engine.run(counted(plan, engine.envelope, bar))``)."""
    try:
        intent = next(plan)
        while True:
            result = yield intent
            progress.update(intent_points(envelope, intent))
            intent = plan.send(result)
    except StopIteration as stop:
        return stop.value


def planned_points(envelope: SafetyEnvelope, plans: Iterable[Plan]) -> int:
    """Source points of plans that do not adapt to their readings, found by running them
    offline against blank readings (nothing reaches an instrument)."""
    total = 0

    def answer(intent: Any) -> Any:
        nonlocal total
        total += intent_points(envelope, intent)
        if isinstance(intent, Sweep):
            return _blank(intent)
        if isinstance(intent, tuple):
            return tuple(_blank(s) for s in intent)
        return None

    for plan in plans:
        run_offline(plan, answer)
    return total


def _blank(sweep: Sweep) -> SweepResult:
    n = len(sweep)
    ones = np.ones(n)
    return SweepResult(sweep, ones, 2 * ones, ones, np.zeros(n, bool), np.zeros(n, bool))
