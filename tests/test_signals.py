"""Stop signals: SIGINT, SIGTERM and SIGHUP end a command alike, and a second signal
during the cleanup is held, not obeyed (real child processes, real signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labctl.commands.signals import STOP_SIGNALS, shielded, signals_as_interrupt
from labctl.records.session import Session

REPO = Path(__file__).resolve().parents[1]

CHILD = """
    import sys, time
    from labctl.commands.signals import shielded, signals_as_interrupt
    from labctl.records.session import SessionWriter
    with signals_as_interrupt(), SessionWriter.create(sys.argv[1], "sweep", [], {}, {}) as w:
        d = w.descriptor("iv", {"v": {"dtype": "number", "shape": [], "source": "smu"}})
        try:
            w.event(d, {"v": 0.1})
            print(w.path, flush=True)  # only now may the parent signal: cleanup is armed
            while True:
                w.event(d, {"v": 0.1})
                time.sleep(0.001)
        finally:  # stands for the protocol layer ramping the sources down
            with shielded() as held:
                print("cleanup-start", flush=True)
                time.sleep(0.5)
                print("cleanup-done", sorted(held), flush=True)
"""


@pytest.mark.parametrize("first", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_aborts_and_a_second_one_is_held(tmp_path, first):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with child:
        path = Path(child.stdout.readline().strip())
        child.send_signal(getattr(signal, first))
        assert child.stdout.readline().strip() == "cleanup-start"
        child.send_signal(signal.SIGINT)  # a second signal must not cut the cleanup short
        child.send_signal(signal.SIGHUP)
        out, err = child.communicate(timeout=10)
    assert "cleanup-done ['SIGHUP', 'SIGINT']" in out, err  # held, in whatever order
    assert child.returncode != 0 and f"Interrupted: {first}" in err

    session = Session.open(path)
    assert session.stop["exit_status"] == "abort" and session.stop["reason"] == first
    assert session.stop["num_events"]["iv"] == len(session.events("iv")) > 0


def test_handlers_are_restored():
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    with signals_as_interrupt():
        assert all(signal.getsignal(s) is not before[s] for s in STOP_SIGNALS)
        with shielded():
            os.kill(os.getpid(), signal.SIGTERM)  # held: nothing is raised here
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before


def test_a_signal_ignored_at_start_stays_ignored():
    """nohup: SIGHUP ignored by the parent must not end the command."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)  # nothing raised
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
