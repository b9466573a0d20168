"""Resuming a training that ended by a fault: it continues from its last epoch on the
station file re-read, and refuses a station file whose limits changed unless told to use
the new ones (real subprocesses, a simulated station with an injected fault)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from labctl.records.session import Session
from labctl.station.file import BUILTIN_TEXT

REPO = Path(__file__).resolve().parents[1]


def labctl(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "labctl.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_a_training_ended_by_a_fault_resumes_on_the_station_file_reread(tmp_path):
    station = tmp_path / "station.toml"
    # SMU A reports compliance from its 900th message on: training refuses such data.
    station.write_text(BUILTIN_TEXT + "\n[simulation.faults.smu_a]\nstick_compliance_after = 900\n")
    train = ("train", "iris", "--folds", 2, "--epochs", 6, "--json", "--no-progress",
             "--sessions-dir", tmp_path / "s")
    first = labctl(*train, "--station", station, cwd=tmp_path)
    assert first.returncode == 2, (first.stdout, first.stderr)
    assert "compliance" in first.stderr and "Traceback" not in first.stderr
    [path] = (tmp_path / "s").iterdir()
    assert f"session {path.name} kept" in first.stderr
    session = Session.open(path)
    assert session.stop["exit_status"] == "fail" and session.resumable
    assert session.stop["labctl_shutdown"]["confirmed"] is True
    epochs_before = len(session.events("epoch"))
    assert 0 < epochs_before < 12

    # The fault is gone but the limits were edited: refused, naming what changed.
    station.write_text(BUILTIN_TEXT.replace("max_current_a = 100e-6", "max_current_a = 90e-6"))
    resume = ("train", "iris", "--resume", path.name, "--sessions-dir", tmp_path / "s",
              "--json", "--no-progress", "--station", station)
    refused = labctl(*resume, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "the station changed since" in refused.stderr and "--new-limits" in refused.stderr
    assert "max_current_a=0.0001" in refused.stderr and "max_current_a=9e-05" in refused.stderr
    assert len(Session.open(path).events("epoch")) == epochs_before  # nothing appended

    done = labctl(*resume, "--new-limits", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["folds"] == 2
    session = Session.open(path)
    assert session.stop["exit_status"] == "success"
    assert len(session.starts) == 2  # the resumed run is a second segment of one record
    assert len(session.events("epoch")) >= epochs_before
    assert [e["fold"] for e in session.events("fold")] == [0, 1]


def test_recorded_simulation_settings_are_held_to_the_station_files_bounds(tmp_path):
    """A crafted start document's simulator settings (a wafer of 10^10 dies) are refused by
    report and resume alike, naming the file and line, before any world is built."""
    sessions = tmp_path / "s"
    first = labctl("train", "iris", "--folds", 2, "--epochs", 2, "--json", "--no-progress",
                   "--sessions-dir", sessions, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    [path] = sessions.iterdir()
    file = path / "documents.jsonl"
    lines = file.read_text().splitlines()
    name, start = json.loads(lines[0])
    start["config"]["station"]["simulation"]["die_grid"] = [100000, 100000]
    file.write_text("\n".join([json.dumps([name, start]), *lines[1:-1]]) + "\n")  # no stop
    for command in (("report", path), ("train", "iris", "--resume", path)):
        out = labctl(*command, "--sessions-dir", sessions, cwd=tmp_path)
        assert out.returncode == 2, (command, out.stderr)
        assert f"{file}, line 1: start document: config.station.simulation" in out.stderr
        assert "die_grid: must be [columns, rows], each an integer 1..20" in out.stderr
