"""Another lab's bench (tests/foreign_station.toml): every command runs to completion on it,
within its limits, and a miswired differential path is refused before any training.

Commands run as real subprocesses; the simulator is cabled as the station file's wiring
says (trigger master on device B's SMU, ADC input 2 with negative polarity, 8 pairs on
other switch channels, 60 uA / 5 uA ramp limits). Units: A, V.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from instruments.transport import WireLog
from labctl.records.session import Session
from labctl.station.file import load_station
from tests.wire_levels import assert_ramped, source_levels

REPO = Path(__file__).resolve().parents[1]
FOREIGN = REPO / "tests" / "foreign_station.toml"


def labctl(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "labctl.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def only_session(root: Path) -> Path:
    [path] = [p for p in root.iterdir() if p.is_dir()]
    return path


def assert_within_limits(session: Path) -> None:
    """Every level each SMU was sent stays within the station's limits and ramp step."""
    config = load_station(FOREIGN)
    w = config.wiring
    for name in w.smu_instruments():
        levels = source_levels(WireLog.load(session / "wire" / f"{name}.wlog"))
        assert_ramped(levels, w.limits.max_current_a, w.limits.ramp_step_a)


def test_the_foreign_station_file_parses_as_written():
    config = load_station(FOREIGN)
    w = config.wiring
    assert sorted(w.pairs) == list(range(1, 9))
    p4 = w.pair(4)
    assert (str(p4.a.smu), str(p4.b.smu), p4.adc_input, p4.adc_polarity) == (
        "right", "left", 2, -1)
    assert p4.switch_channels == ("1A08", "1B08")
    assert p4.limits.max_current_a == 50e-6 and p4.limits.ramp_step_a == 4e-6
    assert str(w.trigger_master) == "left" and w.ratings.breakdown_v == 0.95
    assert config.simulation.line_frequency == 50.0 and config.simulation.die_grid == (3, 1)


def test_station_check_iv_fd_scan_on_the_foreign_station(tmp_path):
    check = labctl("station", "check", "--station", FOREIGN, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    for name in ("left", "right", "amp", "matrix", "chuck"):
        assert name in check.stdout
    assert "pair 8" in check.stdout and "ok" in check.stdout

    iv = labctl("iv", "--pair", 4, "--station", FOREIGN, "--sessions-dir", tmp_path / "iv",
                cwd=tmp_path)
    assert iv.returncode == 0, iv.stderr
    session = only_session(tmp_path / "iv")
    rows = np.genfromtxt(session / "iv.csv", delimiter=",", names=True)
    assert np.max(np.abs(rows["current_a"])) == pytest.approx(50e-6)  # pair 4's own limit
    # The ADC (input 2, negative polarity, corrected) agrees with the SMUs' V_B - V_A.
    assert np.allclose(rows["v_diff_v"], rows["v_b_v"] - rows["v_a_v"], atol=2e-4)
    assert_within_limits(session)

    scan = labctl("fd-scan", "--pair", 2, "--steps", "0.5e-6,1e-6,2e-6", "--points", 21,
                  "--station", FOREIGN, "--sessions-dir", tmp_path / "fd", cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    session = only_session(tmp_path / "fd")
    rows = Session.open(session).events("fd_scan")
    swap_vs_model = {r["di_a"]: r["swap_vs_model"] for r in rows}
    assert swap_vs_model[1e-6] <= 0.03, swap_vs_model
    [check_row] = Session.open(session).events("differential_check")
    assert check_row["verdict"] == "ok" and check_row["pair"] == 2
    assert_within_limits(session)


def test_tune_on_the_foreign_station(tmp_path):
    out = labctl("tune", "--pair", 3, "--i-off", 45e-6, "--station", FOREIGN,
                 "--sessions-dir", tmp_path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "both devices within tolerance" in out.stdout
    session = only_session(tmp_path)
    assert_within_limits(session)
    events = Session.open(session).events("tuning")
    pulses = [abs(e[k]) for e in events for k in ("pulse_a_v", "pulse_b_v")]
    assert max(pulses) > 0.35  # it did program (above the threshold) ...
    # ... within pulse_max_v = 0.7 V and 250 uA through 2.5 kOhm (0.625 V)
    assert max(pulses) <= 0.625 + 1e-9


def test_the_foreign_bench_served_by_sim_serve(tmp_path):
    """`labctl sim serve --station` serves the bench as its wiring says; a client station
    file written by it reaches every instrument over loopback and the pty."""
    client = tmp_path / "client.toml"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "sim", "serve", "--station", FOREIGN,
         "--write-station", client], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        served = {}
        for line in server.stdout:
            if line.strip() == "ready":
                break
            name, resource = line.split()
            served[name] = resource
        assert {"left", "right", "amp", "matrix", "chuck"} <= set(served), served
        text = client.read_text()
        assert "[simulation" not in text and served["right"] in text
        check = labctl("station", "check", "--station", client, cwd=tmp_path)
        assert check.returncode == 0, (check.stdout, check.stderr)
        iv = labctl("iv", "--pair", 8, "--station", client, "--sessions-dir", tmp_path / "iv",
                    cwd=tmp_path)
        assert iv.returncode == 0, iv.stderr
        session = only_session(tmp_path / "iv")
        assert_within_limits(session)
        assert Session.open(session).start["config"]["station"]["simulation"] is None
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 0


def test_train_iris_on_the_foreign_station(tmp_path):
    out = labctl("train", "iris", "--folds", 2, "--epochs", 15, "--json", "--station", FOREIGN,
                 "--sessions-dir", tmp_path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["accuracy"] >= 0.8, summary
    session = only_session(tmp_path)
    s = Session.open(session)
    assert s.stop["exit_status"] == "success" and s.stop["labctl_shutdown"]["confirmed"]
    settings = s.start["config"]["settings"]
    # The operating point follows the station's limits (the smallest pair limit, 50 uA).
    assert settings["i_center"] == pytest.approx(20e-6)
    assert settings["i_scale"] == pytest.approx(10e-6)
    checks = s.events("differential_check")
    assert [c["pair"] for c in checks] == list(range(1, 9))
    assert all(c["verdict"] == "ok" for c in checks)
    assert_within_limits(session)
    assert (session / "derivative.png").is_file()


@pytest.mark.parametrize("miswire, verdict", [("adc_open", "open"),
                                              ("adc_reversed", "reversed")])
def test_a_miswired_differential_path_is_refused_before_training(tmp_path, miswire, verdict):
    station = tmp_path / "miswired.toml"
    station.write_text(FOREIGN.read_text() + f"\n[simulation.miswire]\n{miswire} = true\n")
    out = labctl("train", "iris", "--folds", 2, "--epochs", 3, "--station", station,
                 "--sessions-dir", tmp_path / "s", cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "differential path check failed" in out.stderr
    assert "pair 1:" in out.stderr, out.stderr
    session = Session.open(only_session(tmp_path / "s"))
    assert session.stop["exit_status"] == "fail"
    assert "epoch" not in session.descriptors  # refused before any training
    checks = session.events("differential_check")
    assert {c["verdict"] for c in checks} == {verdict}
