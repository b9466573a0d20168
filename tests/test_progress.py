"""Progress of the long commands (labctl/progress.py): one bar per command over its whole
work, on stderr only; plain periodic lines off a terminal, a tqdm bar on one (a pty),
nothing with --json or --no-progress.

The command tests run real ``labctl`` subprocesses on the built-in simulated station
(time scale 0) or the model backend, with small settings.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest

from labctl.cli import main
from labctl.progress import Progress, _blank, counted, format_s, intent_points, planned_points
from labctl.station.file import load_station
from protocols.finite_difference import fd_batch, iv_sweep
from protocols.intents import run_offline
from protocols.safety import SafetyEnvelope

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "datasets" / "mnist"
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    "MPLBACKEND": "Agg",
    "PYTHONUNBUFFERED": "1",
}
LINE = re.compile(r"^(?P<desc>.+?): (?P<n>\d+)/(?P<total>\d+) (?P<unit>\w+) \(\d+ %\), "
                  r"\S+ elapsed, ETA \S+", re.M)


def labctl(*args: object, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``labctl ARGS`` with stderr on a pipe (not a terminal)."""
    return subprocess.run([sys.executable, "-m", "labctl.cli", *map(str, args)], cwd=tmp_path,
                          env=ENV, capture_output=True, text=True, timeout=timeout)


def labctl_on_pty(*args: object, tmp_path: Path, timeout: float = 120
                  ) -> tuple[int, str, str]:
    """``labctl ARGS`` with stderr on a pseudo-terminal 160 columns wide; returns (exit
    status, stdout, everything the terminal received)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "labctl.cli", *map(str, args)],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=10), out, b"".join(chunks).decode(errors="replace")


def plain_lines(stderr: str) -> list[re.Match]:
    lines = list(LINE.finditer(stderr))
    assert lines, f"no progress lines on stderr:\n{stderr}"
    return lines


def assert_reaches_total(stderr: str, unit: str) -> tuple[int, list[re.Match]]:
    lines = plain_lines(stderr)
    counts = [int(m["n"]) for m in lines]
    assert counts == sorted(counts), counts  # never backwards
    last = lines[-1]
    assert last["unit"] == unit and int(last["n"]) == int(last["total"]) > 0, last.group(0)
    return int(last["total"]), lines


# -- the module ------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_every_tenth_and_every_interval_with_an_eta():
    clock, out = FakeClock(), io.StringIO()
    with Progress(30, "work", unit="point", stream=out, every_s=10.0, clock=clock) as bar:
        for _ in range(30):
            clock.t += 0.1
            bar.update(1)
        clock.t += 50.0  # one slow unit: a line because 10 s passed, not a tenth
        bar.set_total(31)
        bar.update(1)
    counts = [int(m["n"]) for m in plain_lines(out.getvalue())]
    # 3 x 0.1 is reached at exactly 30 %: one line per tenth, then the slow unit's line
    assert counts == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 31]
    first = plain_lines(out.getvalue())[0].group(0)
    assert first == "work: 3/30 points (10 %), 0:00 elapsed, ETA 0:03"


def test_initial_units_count_but_not_towards_the_rate():
    clock = FakeClock()
    bar = Progress(10, "cells", unit="cell", initial=5, stream=io.StringIO(), clock=clock)
    assert bar.eta_s() is None
    clock.t = 20.0
    bar.update(1)
    assert bar.eta_s() == pytest.approx(80.0)  # 20 s per cell of this run, 4 to go
    clock.t = 30.0  # 10 s into the next cell: the ETA counts down, as a clock would
    assert bar.eta_s() == pytest.approx(70.0)
    bar.close()
    assert format_s(3725) == "1:02:05" and format_s(None) == "?"


def test_setup_before_start_stays_out_of_the_rate():
    clock = FakeClock()
    bar = Progress(10, "train", unit="epoch", stream=io.StringIO(), clock=clock)
    clock.t = 30.0  # opening the station, the preflight
    bar.start()
    clock.t = 32.0
    bar.update(1)
    assert bar.eta_s() == pytest.approx(18.0)  # 2 s per epoch, not 32
    clock.t = 40.0
    bar.start()  # too late: a unit is done, nothing changes
    assert bar.elapsed_s() == pytest.approx(10.0)
    bar.close()


def test_a_long_silent_step_still_gets_a_line_and_disabled_shows_nothing():
    out = io.StringIO()
    with Progress(4, "sweep", unit="point", stream=out, every_s=0.2):
        time.sleep(0.6)  # no update at all: the heartbeat writes the line
    assert int(plain_lines(out.getvalue())[0]["n"]) == 0
    quiet = io.StringIO()
    with Progress(4, "sweep", stream=quiet, enabled=False) as bar:
        bar.update(4)
        bar.set_description("x")
    assert quiet.getvalue() == ""


def test_points_counted_are_the_points_planned_ramps_included():
    envelope = SafetyEnvelope(load_station(None).wiring)
    currents = np.linspace(-50e-6, 50e-6, 11)
    plans = lambda: [iv_sweep(1, currents),  # noqa: E731
                     fd_batch(np.zeros((3, 2)), [1, 2], 1e-6, "swap", together=True)]
    total = planned_points(envelope, plans())
    bar = Progress(total, "plan", stream=io.StringIO())
    answers = []

    def answer(intent):
        answers.append(intent_points(envelope, intent))
        return run_offline_blank(intent)

    for plan in plans():
        run_offline(counted(plan, envelope, bar), answer)
    assert bar.n == total == sum(answers)
    # 11 points from and back to 0 A in ramp steps: more than 11
    assert intent_points(envelope, next(iv_sweep(1, currents))) > 11
    bar.close()


def run_offline_blank(intent):
    return tuple(_blank(s) for s in intent) if isinstance(intent, tuple) else _blank(intent)


# -- the commands ----------------------------------------------------------------------
def test_iv_off_a_terminal_prints_lines_to_the_total_on_stderr_only(tmp_path):
    proc = labctl("iv", "--pair", 1, "--points", 21, "--sessions-dir", tmp_path / "s",
                  tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    total, lines = assert_reaches_total(proc.stderr, "points")
    assert lines[-1]["desc"] == "iv pair 1" and total > 21  # ramp points counted
    assert not LINE.search(proc.stdout)


def test_no_progress_shows_nothing(tmp_path, capsys, monkeypatch):
    # In-process (the subprocesses above cost an interpreter start each): the same parser
    # and command, stderr captured (not a terminal, so plain lines would show).
    monkeypatch.chdir(tmp_path)
    assert main(["iv", "--pair", "1", "--points", "21", "--sessions-dir", "s"]) == 0
    assert LINE.search(capsys.readouterr().err)
    assert main(["iv", "--pair", "1", "--points", "21", "--no-progress",
                 "--sessions-dir", "s"]) == 0
    err = capsys.readouterr().err
    assert not LINE.search(err) and "points" not in err, err


def test_fd_scan_and_tune_count_their_sweeps_to_the_end(tmp_path):
    scan = labctl("fd-scan", "--pair", 1, "--steps", "1e-6,2e-6", "--points", 5,
                  "--fine-points", 41, "--sessions-dir", tmp_path / "s", tmp_path=tmp_path)
    assert scan.returncode == 0, scan.stderr
    assert_reaches_total(scan.stderr, "points")
    tune = labctl("tune", "--pair", 1, "--i-off", "-30uA", "--max-pulses", 6, "--points", 48,
                  "--verify-points", 41, "--sessions-dir", tmp_path / "s", tmp_path=tmp_path)
    assert tune.returncode in (0, 1), tune.stderr  # 1: not tuned, still a finished run
    _, lines = assert_reaches_total(tune.stderr, "points")
    assert lines[-1]["desc"] == "tune pair 1: verification"


def test_train_iris_one_bar_over_folds_epochs_and_grads(tmp_path):
    proc = labctl("train", "iris", "--backend", "model", "--folds", 2, "--epochs", 3,
                  "--grad", "fd-swap,exact", "--sessions-dir", tmp_path / "s",
                  tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    total, lines = assert_reaches_total(proc.stderr, "epochs")
    assert total == 2 * 3 * 2  # folds x epochs x grads
    descs = {m["desc"] for m in lines}
    assert "exact (grad 2/2) fold 2/2" in descs
    assert any(d.startswith("fd-swap (grad 1/2) fold") for d in descs)


def test_train_iris_on_a_terminal_draws_a_tqdm_bar(tmp_path):
    status, out, tty = labctl_on_pty(
        "train", "iris", "--backend", "model", "--folds", 2, "--epochs", 4,
        "--sessions-dir", tmp_path / "s", tmp_path=tmp_path)
    assert status == 0, tty
    assert "\r" in tty and ("epoch/s" in tty or "s/epoch" in tty), tty  # tqdm redraws
    assert re.search(r"fd-swap fold 2/2: 100%\|[^|]*\| 8/8 ", tty), tty
    assert not LINE.search(tty)  # no plain lines on a terminal
    assert "MTJ accuracy" in out and "\r" not in out


def test_json_gets_no_progress_and_valid_json(tmp_path):
    proc = labctl("train", "iris", "--backend", "model", "--folds", 2, "--epochs", 2,
                  "--json", "--sessions-dir", tmp_path / "s", tmp_path=tmp_path)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    assert json.loads(proc.stdout)["folds"] == 2


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"{SHARED_MNIST} not present")
def test_simulate_mnist_counts_batches_of_every_network(tmp_path):
    proc = labctl("simulate", "mnist", "--data-dir", SHARED_MNIST, "--subset", 400,
                  "--epochs", 1, "--widths", "8,8,8,8", "--batch-size", 60,
                  tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    total, lines = assert_reaches_total(proc.stderr, "batches")
    assert total == 2 * 6  # tanh and MTJ, 1 epoch of ceil(360 / 60) batches
    assert {m["desc"] for m in lines} & {"tanh epoch 1/1", "mtj epoch 1/1"}
