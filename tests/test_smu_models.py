"""A station of one Keithley 2602B, and one of one Keysight B2902A, instead of two 2400s.

Each station file puts both devices of every pair on the two channels of one instrument;
``labctl station check`` and ``labctl train iris`` run on it as real child processes, the
list sweeps go through the instrument's own lockstep sweep (one TSP script and one binary
read on the 2602B, one ``:INIT (@1,2)`` and one ``:FETC:ARR?`` on the B2902A, as the wire
logs show), and the training reaches what it reaches on the built-in 2400 station.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instruments.transport import WireLog
from labctl.station.file import one_smu_station_text

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
TRAIN = ["train", "iris", "--folds", "2", "--epochs", "4", "--json", "--no-progress"]
MODELS = {  # driver: what a sweep writes
    "keithley2600": "loadandrunscript",
    "keysight_b2902a": ":INIT (@1,2)",
}


def labctl(*args, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "labctl.cli", *map(str, args)], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


@pytest.fixture(scope="module")
def builtin(tmp_path_factory) -> dict:
    cwd = tmp_path_factory.mktemp("k2400")
    return json.loads(labctl(*TRAIN, cwd=cwd).stdout)


@pytest.mark.parametrize("driver", sorted(MODELS))
def test_a_dual_channel_smu_station_checks_and_trains_as_the_2400_station(
        driver, builtin, tmp_path):
    sweep_command = MODELS[driver]
    station = tmp_path / f"{driver}.toml"
    station.write_text(one_smu_station_text(driver))
    check = labctl("station", "check", "--station", station, cwd=tmp_path)
    assert check.stdout.count(" ok") >= 16 + 4, check.stdout  # every pair, every instrument
    summary = json.loads(labctl(*TRAIN, "--station", station, cwd=tmp_path).stdout)
    assert abs(summary["accuracy"] - builtin["accuracy"]) <= 0.02, (summary, builtin)
    session = tmp_path / "sessions" / summary["session"]
    sent = [e.get("w", "") for e in WireLog.load(session / "wire" / "smu.wlog")]
    sweeps = sum(w.startswith(sweep_command) for w in sent)
    epochs = 2 * 4
    assert sweeps >= epochs, sweeps  # the paired list sweep, not point by point
    assert not any(w.startswith((":SOUR:CURR ", "smua.source.leveli =")) for w in sent)
