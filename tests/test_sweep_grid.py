"""`labctl sweep` input: grids from files and inline options, refused before any cell runs.

Every case runs the real command in-process (`labctl.cli.main`); a refused grid must exit
2 with an error naming the file and key or the option, and leave no sweep directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from labctl.cli import main
from labctl.sweep.cells import build_cells
from labctl.sweep.grid import load_grid, parse_inline

REPO = Path(__file__).resolve().parent.parent


def _refused(capsys, tmp_path, *argv: str) -> str:
    out = tmp_path / "never"
    assert main(["sweep", "--out", str(out), *argv]) == 2
    assert not out.exists()
    return capsys.readouterr().err


def _grid_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("argv", "named"), [
    (["train", "iris", "--seed", "0:2", "--bogus", "1,2"], "has no option '--bogus'"),
    (["train", "iris", "--seed", "0:2", "--variability", "nominal,huge"],
     "--variability: invalid value 'huge' (choose from ideal, nominal, pronounced, "
     "hysteretic, multidomain, telegraph, realistic)"),
    (["train", "iris", "--seed", "0:2", "--di", "1e-6,big"], "--di: invalid value 'big'"),
    (["train", "iris", "--seed", "0:2", "--json"], "--json is set by the sweep"),
    (["train", "iris", "--seed", "0:2", "--resume", "x"], "--resume is set by the sweep"),
    (["train", "iris", "--folds", "5"], "no option with more than one level"),
    (["simulate", "mnist", "--seed", "0:2", "--widths", "64,x;8"],
     "--widths: invalid value '64,x'"),
    (["replay", "--seed", "0:2"], "'replay' cannot be swept"),
    (["train", "iris", "--seed", "0:100"], "the grid has 100 cells, more than --max-cells 64"),
    (["train", "iris", "--seed", "3:3"], "range '3:3' is empty"),
    (["train", "iris", "--seed", "0:2", "--station", str(REPO / "docs/station-example.toml")],
     "a station with real instruments (no [simulation] table)"),
])
def test_bad_inline_grids_are_refused_naming_the_option(capsys, tmp_path, argv, named):
    assert named in _refused(capsys, tmp_path, *argv)


def test_a_simulated_station_that_names_resources_is_refused(capsys, tmp_path):
    text = (REPO / "tests/foreign_station.toml").read_text().replace(
        'driver = "adc_board"', 'driver = "adc_board"\nresource = "/dev/ttyUSB0"')
    station = tmp_path / "station.toml"
    station.write_text(text)
    err = _refused(capsys, tmp_path, "train", "iris", "--seed", "0:2", "--station", str(station))
    # Refused by the sweep, or already by the station file's own checks: naming it either way.
    assert "--station" in err and str(station) in err and "resource" in err


@pytest.mark.parametrize(("text", "named"), [
    ('command = "train iris"\n[grid]\nfolds = [2, 3]\nlayer = [1, 2]\n',
     "grid.toml: [grid] layer: train iris has no option 'layer'"),
    ('command = "train iris"\n[grid]\nseed = [0, 1]\n[fixed]\nbackend = "quantum"\n',
     "grid.toml: [fixed] backend: --backend: invalid value 'quantum'"),
    ('command = "train iris"\nseeds = 3\n[grid]\nseed = [0, 1]\n',
     "grid.toml: unknown key(s) seeds"),
    ('[grid]\nseed = [0, 1]\n', "grid.toml: command: missing"),
    ('command = "train iris"\n[grid]\nseed = [0, 0]\n', "[grid] seed: --seed: a level is given"),
    ('command = "train iris"\n[grid]\ndistill = [true, false]\n', "has no option 'distill'"),
    ('command = "train iris"\n[grid]\nseed = "0:2"\nfolds = [5]\n[fixed]\nfolds = 2\n',
     "--folds is given twice"),
    ('command = "train iris"\n[grid\n', "grid.toml: not valid TOML"),
])
def test_bad_grid_files_are_refused_naming_the_file_and_key(capsys, tmp_path, text, named):
    assert named in _refused(capsys, tmp_path, _grid_file(tmp_path, text))


def test_a_grid_beyond_max_cells_runs_with_yes(capsys, tmp_path):
    argv = ["train", "iris", "--seed", "0:5", "--max-cells", "4"]
    assert "pass --yes" in _refused(capsys, tmp_path, *argv)
    assert main(["sweep", "--out", str(tmp_path / "s"), "--dry-run", "--yes", *argv]) == 0
    assert capsys.readouterr().out.startswith("5 cells of train iris")


def test_file_and_inline_grids_give_the_same_cells_keyed_by_full_configuration(tmp_path):
    path = _grid_file(tmp_path, 'command = "train iris"\nname = "v"\n[fixed]\nbackend = "model"\n'
                      '[grid]\nseed = "0:2"\nvariability = ["nominal", "pronounced"]\n'
                      'di = [0.5e-6, 1e-6]\n')
    from_file = build_cells(load_grid(path))
    inline = build_cells(parse_inline(("train", "iris"), [
        "--backend", "model", "--seed", "0:2", "--variability", "nominal,pronounced",
        "--di", "5e-7,1e-06"]))
    assert len(from_file) == 8 and [c.key for c in from_file] == [c.key for c in inline]
    assert from_file[0].settings == {"backend": "model", "seed": 0, "variability": "nominal",
                                     "di": 5e-7}
    # A default given explicitly is the same cell; another value is another.
    same = build_cells(parse_inline(("train", "iris"), [
        "--backend", "model", "--folds", "5", "--seed", "0:2", "--variability",
        "nominal,pronounced", "--di", "0.5e-6,1e-6"]))
    assert [c.key for c in same] == [c.key for c in from_file]
    other = build_cells(parse_inline(("train", "iris"), [
        "--backend", "model", "--folds", "4", "--seed", "0:2", "--variability",
        "nominal,pronounced", "--di", "0.5e-6,1e-6"]))
    assert not {c.key for c in other} & {c.key for c in from_file}


def test_options_come_from_the_commands_own_parser(tmp_path, capsys):
    # simulate mnist: a flag swept on/off, levels holding commas split on ';'.
    cells = build_cells(parse_inline(("simulate", "mnist"), [
        "--subset", "200", "--widths", "16,16;32", "--distill", "true,false"]))
    assert [c.settings for c in cells] == [
        {"subset": 200, "widths": "16,16", "distill": True},
        {"subset": 200, "widths": "16,16", "distill": False},
        {"subset": 200, "widths": "32", "distill": True},
        {"subset": 200, "widths": "32", "distill": False}]
    assert cells[0].argv == ("simulate", "mnist", "--subset", "200", "--widths", "16,16",
                             "--distill")
    assert main(["sweep", "--dry-run", "--out", str(tmp_path / "d"), "simulate", "mnist",
                 "--epochs", "1,2", "-j", "3"]) == 0  # -j: the sweep's, not the command's
    assert "2 cells of simulate mnist" in capsys.readouterr().out


def test_a_sweep_directory_in_use_is_refused(capsys, tmp_path):
    from labctl.sweep.store import SweepStore

    held = SweepStore(tmp_path / "busy").lock()  # as a running sweep holds it
    try:
        assert main(["sweep", "--out", str(tmp_path / "busy"), "train", "iris", "--seed",
                     "0:2"]) == 2
        assert "another labctl sweep is running in it" in capsys.readouterr().err
        assert not (tmp_path / "busy" / "sweep.json").exists()
    finally:
        held.close()


def test_without_dask_the_dask_executor_says_what_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    assert "pip install 'labctl[dask]'" in _refused(
        capsys, tmp_path, "--executor", "dask", "train", "iris", "--seed", "0:2")
