"""Signals that end a command: SIGINT (Ctrl-C), SIGTERM and SIGHUP (a closed terminal or a
dropped SSH link) all end it the same way, and none of them cuts a safe shutdown short.

:func:`signals_as_interrupt` turns the first of them into :class:`Interrupted` (a
``KeyboardInterrupt``) in the main thread, so every ``finally`` runs as for Ctrl-C and the
session's stop document says ``abort`` with the signal's name. :func:`shielded` holds any
further signal while the outputs are ramped down and the stop document is written; what
arrived is noted, never raised, so a second Ctrl-C cannot leave a source on.
``kill -9`` remains for a hung process (and a session killed so is resumable).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = tuple(
    s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None
)


class Interrupted(KeyboardInterrupt):
    """A command ended by a signal; ``str()`` is the signal's name (e.g. "SIGHUP")."""


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _handlers(handler: Any, *, keep_ignored: bool = False) -> Iterator[None]:
    if not _in_main_thread():  # signal handlers can only be set there; nothing to do
        yield
        return
    previous = {}
    for s in STOP_SIGNALS:
        if keep_ignored and signal.getsignal(s) == signal.SIG_IGN:
            continue  # nohup's SIGHUP, a background job's SIGINT: ignored as asked
        previous[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, signal.SIG_DFL if old is None else old)


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (once: a
    later one is ignored until the block ends, so the cleanup the first started runs). A
    signal the process was started ignoring (``nohup``) stays ignored."""
    fired: list[str] = []

    def handler(signum: int, frame: Any) -> None:
        if fired:
            return
        fired.append(signal.Signals(signum).name)
        raise Interrupted(fired[0])

    with _handlers(handler, keep_ignored=True):
        yield


@contextlib.contextmanager
def shielded() -> Iterator[list[str]]:
    """Within the block no stop signal interrupts anything; the names of those that arrived
    are appended to the yielded list."""
    arrived: list[str] = []

    def handler(signum: int, frame: Any) -> None:
        arrived.append(signal.Signals(signum).name)

    with _handlers(handler):
        yield arrived
