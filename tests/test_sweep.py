"""`labctl sweep` end to end: real cells (`labctl train iris` subprocesses on the model
backend, seconds each), real files, real signals.

- The same grid run locally and then on a Dask LocalCluster gives identical tables but for
  the timing columns and session ids (so also two runs of it are alike); run again locally
  in the Dask run's directory it has nothing to do, or takes a finished run whose result
  was never written from its session; `sweep report` on it gives scipy's t intervals and
  paired differences, and PNG plots.
- A `labctl sweep` process killed (SIGKILL) mid-cell and run again: the finished cell is not
  re-run (same session), the interrupted one resumes its session, the table is complete.
- A cell whose option makes the run fail is reported failed with the run's error while the
  other finishes; a cell whose process is killed (SIGKILL) is retried and resumed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

from labctl.cli import main
from labctl.records.session import Session
from labctl.sweep.store import RUN_COLUMNS

TINY = ["train", "iris", "--backend", "model", "--folds", "2", "--epochs", "3"]
GRID = [*TINY, "--seed", "0:2", "--grad", "fd,fd-swap"]


def _sweep(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "labctl.cli", "sweep", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _table(path: Path) -> list[dict]:
    return pq.read_table(path / "results.parquet").to_pylist()


def _without_run_columns(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in rows]


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def first_sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "a"
    assert main(["sweep", "-j", "2", "--out", str(out), *GRID]) == 0
    return out


def test_same_grid_locally_and_on_dask_gives_identical_tables(first_sweep, tmp_path, capsys):
    rows_a = _table(first_sweep)
    assert [r["status"] for r in rows_a] == ["ok"] * 4
    assert [(r["seed"], r["grad"]) for r in rows_a] == [(0, "fd"), (0, "fd-swap"),
                                                       (1, "fd"), (1, "fd-swap")]
    for r in rows_a:  # each cell its own session, holding the metrics the table has
        session = Session(first_sweep / "sessions" / r["session"])
        assert session.stop["exit_status"] == "success"
        assert session.stop["labctl_summary"]["accuracy"] == r["accuracy"]
        assert 0.3 < r["accuracy"] <= 1 and r["tanh_accuracy"] > 0.3
    assert len({r["session"] for r in rows_a}) == 4 and len({r["key"] for r in rows_a}) == 4

    # A second local run of the grid would be the fixture's run again (same code, same
    # options): the Dask run is the second run, compared with the first.
    out = tmp_path / "c"
    assert main(["sweep", "--executor", "dask", "-j", "2", "--out", str(out), *GRID]) == 0
    err = capsys.readouterr().err
    assert "sweep: [4/4] ok" in err  # not a terminal: plain progress lines
    rows_c = _table(out)
    assert _without_run_columns(rows_c) == _without_run_columns(rows_a)
    assert {r["session"] for r in rows_c}.isdisjoint(r["session"] for r in rows_a)
    csv_head = (out / "results.csv").read_text().splitlines()[0]
    assert '"seed"' in csv_head and '"accuracy"' in csv_head

    # Run again (locally): nothing to do, the table is unchanged (same sessions).
    assert main(["sweep", "-j", "2", "--out", str(out), *GRID]) == 0
    assert _table(out) == rows_c
    # A run that finished but whose result the sweep never wrote (killed in between) is
    # taken from its session, not run again.
    (out / "cells" / rows_c[2]["key"] / "result.json").unlink()
    assert main(["sweep", "-j", "2", "--out", str(out), *GRID]) == 0
    assert "(from its finished session)" in capsys.readouterr().err
    rows = _table(out)
    assert [r["session"] for r in rows] == [r["session"] for r in rows_c]
    assert _without_run_columns(rows) == _without_run_columns(rows_c)
    assert len(list((out / "sessions").iterdir())) == 4


def test_report_gives_t_intervals_paired_differences_and_plots(first_sweep, capsys):
    assert main(["sweep", "report", str(first_sweep), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = _table(first_sweep)
    for grad in ("fd", "fd-swap"):
        x = np.array([r["accuracy"] for r in rows if r["grad"] == grad])
        entry = next(e for e in report["summary"]
                     if e["metric"] == "accuracy" and e["grad"] == grad)
        half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
        assert entry["n"] == 2 and entry["mean"] == pytest.approx(x.mean())
        assert entry["ci_low"] == pytest.approx(x.mean() - half)
        assert entry["ci_high"] == pytest.approx(x.mean() + half)
    d = np.array([rows[i + 1]["accuracy"] - rows[i]["accuracy"] for i in (0, 2)])
    pair = next(e for e in report["paired"] if e["metric"] == "accuracy")
    assert (pair["factor"], pair["level"], pair["baseline"]) == ("grad", "fd-swap", "fd")
    assert pair["mean_diff"] == pytest.approx(d.mean())
    if d[0] != d[1]:
        half = stats.t.ppf(0.975, 1) * d.std(ddof=1) / np.sqrt(2)
        assert pair["ci_low"] == pytest.approx(d.mean() - half)
    png = first_sweep / "report" / "accuracy-vs-grad.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (first_sweep / "report" / "summary.csv").read_text().startswith("grad,metric,n")
    assert main(["sweep", "report", str(first_sweep), "--metric", "nope"]) == 2
    assert "no metric nope" in capsys.readouterr().err


def test_a_killed_sweep_loses_no_finished_cell_and_resumes_the_interrupted_one(
        tmp_path, monkeypatch, capsys):
    out = tmp_path / "k"
    # 500 epochs: a cell runs ~3 s past the first epochs recorded, so the kill lands inside
    # it even when this process is descheduled under load (200 left ~1 s).
    args = ["-j", "1", "--out", str(out), "train", "iris", "--backend", "model", "--folds",
            "2", "--epochs", "500", "--seed", "0:2"]
    proc = _sweep(*args, cwd=tmp_path)
    try:
        cells = _wait_for(lambda: (out / "sweep.json").is_file()
                          and json.loads((out / "sweep.json").read_text())["cells"], 20,
                          "sweep.json")
        first, second = (c["key"] for c in cells)
        _wait_for(lambda: (out / "cells" / first / "result.json").is_file(), 20, "cell 0")
        # Cell 1 has started its session and recorded some epochs: kill the sweep now.
        _wait_for(lambda: (out / "cells" / second / "running.json").is_file(), 20, "cell 1")
        _wait_for(lambda: any(s.stat().st_size > 50_000 for s in
                              (out / "sessions").glob("*/documents.jsonl")
                              if s.parent.name != _session_of(out, first)), 20, "epochs")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.communicate()
    before = _table(out)
    assert [r["status"] for r in before] == ["ok", "pending"]
    # The cell's run got SIGTERM as its parent died: its session ends abort, resumable.
    interrupted = _wait_for(lambda: _stopped_session(out, exclude=before[0]["session"]), 10,
                            "the interrupted cell's stop document")
    assert interrupted.stop["exit_status"] == "abort"

    # The second run is not about the process boundary: in this process, cwd as before.
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", *args]) == 0
    assert "1 finished before" in capsys.readouterr().out
    after = _table(out)
    assert [r["status"] for r in after] == ["ok", "ok"]
    assert after[0] == before[0]  # not re-run: same session, same row
    assert after[1]["session"] == interrupted.path.name and after[1]["resumed"] is True
    resumed = Session(interrupted.path)
    assert len(resumed.starts) == 2 and resumed.stop["exit_status"] == "success"


def _session_of(out: Path, key: str) -> str:
    try:
        return json.loads((out / "cells" / key / "result.json").read_text())["session"]
    except (OSError, ValueError):
        return ""


def _stopped_session(out: Path, exclude: str) -> Session | None:
    for path in (out / "sessions").iterdir():
        if path.name != exclude:
            session = Session(path)
            return session if session.stop is not None else None
    return None


def test_a_failing_cell_is_reported_and_a_killed_cell_is_retried(tmp_path):
    out = tmp_path / "f"
    proc = _sweep("-j", "2", "--out", str(out), "train", "iris", "--backend", "model",
                  "--folds", "2", "--epochs", "200", "--grad", "fd,bogus", cwd=tmp_path)
    try:
        cells = _wait_for(lambda: (out / "sweep.json").is_file()
                          and json.loads((out / "sweep.json").read_text())["cells"], 20,
                          "sweep.json")
        running = out / "cells" / cells[0]["key"] / "running.json"
        pid = _wait_for(lambda: running.is_file() and json.loads(running.read_text())["pid"],
                        20, "cell 0 running")
        _wait_for(lambda: any((out / "sessions").glob("*/documents.jsonl")), 20, "session")
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)  # the cell's worker process dies
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr  # the sweep finished, one cell failed
    rows = {r["grad"]: r for r in _table(out)}
    assert rows["bogus"]["status"] == "failed" and rows["bogus"]["attempts"] == 1
    assert "--grad must be among" in rows["bogus"]["error"]
    assert "--grad must be among" in stdout
    assert rows["fd"]["status"] == "ok" and rows["fd"]["attempts"] == 2
    assert "worker died (SIGKILL); retrying" in stderr
    session = Session(out / "sessions" / rows["fd"]["session"])
    assert session.stop["exit_status"] == "success"
    assert len(list((out / "sessions").iterdir())) == 1  # resumed, not started again


SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"


@pytest.mark.skipif(not SHARED_MNIST.is_dir() and not os.environ.get("CI"),
                    reason=f"{SHARED_MNIST} not present")
def test_simulate_mnist_cells_are_sessions_with_their_test_accuracies(tmp_path):
    out = tmp_path / "m"
    assert main(["sweep", "-j", "2", "--out", str(out), "simulate", "mnist", "--data-dir",
                 str(SHARED_MNIST), "--subset", "300", "--val-size", "30", "--widths", "16",
                 "--epochs", "1", "--seed", "0:2"]) == 0
    rows = _table(out)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for r in rows:
        session = Session(out / "sessions" / r["session"])
        assert session.start["plan_name"] == "simulate mnist"
        assert session.stop["labctl_summary"]["mtj_test_acc"] == r["mtj_test_acc"]
        assert 0 <= r["tanh_test_acc"] <= 1 and r["epoch_time_ratio"] > 0
    assert rows[0]["mtj_test_acc"] != rows[1]["mtj_test_acc"]  # the seed matters
