"""`labctl paper`: the reproduction table, run for real on the device model (two seeds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.paper.experiments import EXPERIMENTS, experiment
from labctl.sweep.grid import parse_grid

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
QUICK = ("--set", "folds=2", "--set", "epochs=15")


def labctl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labctl.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("e", EXPERIMENTS, ids=lambda e: e.name)
def test_every_experiment_is_a_grid_the_sweep_accepts(e):
    grid = parse_grid(e.grid_text(10), e.name)
    assert grid.options.command == e.command
    assert [f.dest for f in grid.factors] == ["seed"]
    assert grid.n_cells == 10


@pytest.fixture(scope="module")
def iris_model_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("paper")
    out = labctl("paper", "--only", "iris-model", "--seeds", "2", "-j", "2", "--json",
                 *QUICK, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return cwd, json.loads(out.stdout)


def test_paper_runs_the_sweep_and_tabulates_it_beside_the_paper(iris_model_run):
    cwd, table = iris_model_run
    (row,) = table["experiments"]
    assert row["experiment"] == "iris-model" and row["n"] == 2 and row["seeds"] == [0, 1]
    assert row["paper_value"] == experiment("iris-model").paper_value
    # the figures are the sweep table's, and the paired difference is theirs
    import pyarrow.parquet as pq

    cells = pq.read_table(cwd / "paper" / "iris-model" / "results.parquet").to_pylist()
    acc = [c["accuracy"] for c in cells]
    tanh = [c["tanh_accuracy"] for c in cells]
    assert row["mtj_mean"] == pytest.approx(sum(acc) / 2)
    assert row["base_mean"] == pytest.approx(sum(tanh) / 2)
    assert row["diff_mean"] == pytest.approx(row["mtj_mean"] - row["base_mean"])
    assert 0.6 < row["mtj_mean"] <= 1.0
    assert row["mtj_low"] <= row["mtj_mean"] <= row["mtj_high"]


def test_table_only_runs_nothing_and_prints_the_same_figures(iris_model_run):
    cwd, table = iris_model_run
    before = sorted(p.name for p in (cwd / "paper" / "iris-model" / "sessions").iterdir())
    out = labctl("paper", "--only", "iris-model", "--seeds", "2", "--table", *QUICK, cwd=cwd)
    assert out.returncode == 0, out.stderr
    mean = 100 * table["experiments"][0]["mtj_mean"]
    assert "paper:  95 %+ (simulation)" in out.stdout
    assert f"ours:   {mean:.1f} %" in out.stdout and "n = 2 seeds" in out.stdout
    after = sorted(p.name for p in (cwd / "paper" / "iris-model" / "sessions").iterdir())
    assert after == before
    # without the --set options these are other cells: none of them has run
    out = labctl("paper", "--only", "iris-model", "--seeds", "2", "--table", cwd=cwd)
    assert out.returncode == 0 and "ours:   -  (n = 0 seeds)" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--only", "iris,bogus"], "no experiment 'iris'; known: iris-station"),
    (["--seeds", "1"], "--seeds must be 2 or more"),
    (["--only", ","], "--only: give experiment names"),
    (["--jobs", "0"], "--jobs must be 1 or more"),
    (["--set", "folds"], "--set 'folds': give OPTION=VALUE"),
    (["--set", "bogus=1"], "bogus"),
])
def test_bad_input_is_refused_before_anything_runs(tmp_path, args, message):
    out = labctl("paper", *args, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
    assert not (tmp_path / "paper").exists()
