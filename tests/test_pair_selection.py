"""Pair selection from a wafer scan (labctl.wafer.selection) and the model of the measured
devices (--backend model --devices-from, --init-from), through `labctl train iris` on the
simulated round wafer of tests/wafer_analysis_support.py (its first die, the one under
the probes, has a broken device and at least two healthy pairs)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from labctl.cli import main
from labctl.records.session import Session
from labctl.station.file import load_station
from labctl.training.iris_record import RecordedRun
from labctl.wafer import selection
from labctl.wafer.measured_model import check_init_session, measured_pairs
from tests.wafer_analysis_support import labctl, ok, scanned

TRAIN = ("train", "iris", "--station", "station.toml", "--hidden", 2, "--folds", 2,
         "--no-progress", "--json")


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return scanned(tmp_path_factory)


def _session(scan, proc):
    return scan.sessions / json.loads(proc.stdout)["session"]


def _start_config(path) -> dict:
    return json.loads((path / "documents.jsonl").open().readline())[1]["config"]


def test_auto_pairs_avoid_the_bad_pairs_and_offline_weights_start_a_station_run(scan):
    die = scan.dies[0]
    bad, healthy = scan.bad_pairs(die), scan.ok_pairs(die)
    # Offline: the model backend on the fitted devices of the pairs auto chooses.
    offline = _session(scan, ok(labctl(*TRAIN, "--backend", "model", "--devices-from",
                                       scan.scan.name, "--epochs", 2, "--sessions-dir",
                                       scan.sessions, cwd=scan.work)))
    cfg = _start_config(offline)
    chosen = cfg["settings"]["pairs"]
    assert len(chosen) == 2 and set(chosen) <= set(healthy), (chosen, bad)
    assert cfg["settings"]["die"] == list(die)
    assert cfg["settings"]["devices_from"] == str(scan.scan)
    choice = cfg["pair_selection"]
    assert choice["how"] == "auto" and choice["session"] == str(scan.scan)
    assert {int(p) for p in choice["excluded"]} == set(bad)
    for pair, kind in bad.items():
        assert choice["excluded"][str(pair)].startswith(f"{kind}: "), choice["excluded"]
    # On the station: the same pairs, started from the offline weights (a learning rate
    # so small that the first epoch leaves them where they were).
    station = _session(scan, ok(labctl(*TRAIN, "--pairs", "auto", "--init-from", offline.name,
                                       "--epochs", 1, "--lr", 1e-9, "--sessions-dir",
                                       scan.sessions, cwd=scan.work)))
    cfg = _start_config(station)
    assert cfg["settings"]["pairs"] == chosen and cfg["settings"]["backend"] == "station"
    assert cfg["settings"]["init_from"] == str(offline)
    before, after = RecordedRun(Session(offline)), RecordedRun(Session(station))
    for fold in range(2):
        final = before.fold_result(fold).weights[0]
        first = after.session.load_array(after.epochs[(fold, 0)]["weights"])
        assert np.max(np.abs(first - final)) < 1e-6
        trained_from = before.session.load_array(before.epochs[(fold, 0)]["weights"])
        assert np.max(np.abs(final - trained_from)) > 1e-3  # the offline run did move them
    # The record reads back with the choice (a --resume trains on the same pairs).
    assert after.settings.pairs == chosen and after.settings.die == list(die)
    # --init-from refuses another network or other folds.
    check_init_session(offline, after.settings)
    with pytest.raises(ValueError, match="hidden 2 there, 3 here"):
        check_init_session(offline, replace(after.settings, hidden=3))
    # The devices the model ran on are the fitted ones of those pairs.
    fitted = measured_pairs(scan.scan, die, chosen)
    assert np.shape(fitted.r_p) == (2, 2) and np.all(np.asarray(fitted.tmr0) > 1.0)


def test_a_named_broken_pair_is_refused_naming_it_and_why(scan, capsys, monkeypatch):
    die = scan.dies[0]
    broken = next(p for p, kind in scan.bad_pairs(die).items() if kind == "broken")
    named = f"{scan.ok_pairs(die)[0]},{broken}"
    monkeypatch.chdir(scan.work)
    before = set(scan.sessions.iterdir())
    code = main([*map(str, TRAIN), "--pairs", named, "--epochs", "1", "--sessions-dir",
                 str(scan.sessions)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"pair {broken} is broken (" in err and "TMR0" in err
    assert f"die {die[0]}:{die[1]}" in err
    assert set(scan.sessions.iterdir()) == before  # refused before any session or motion


def test_selection_errors_name_the_die_and_the_shortfall(scan):
    die, sessions = scan.dies[0], scan.sessions
    n_ok = len(scan.ok_pairs(die))
    with pytest.raises(ValueError, match=rf"{n_ok + 1} pairs needed, but only {n_ok} of die "
                                         rf"{die[0]}:{die[1]}'s 8 pairs are ok.*broken"):
        selection.choose(n_ok + 1, die, sessions)
    unscanned = next((c, r) for c in (1, 2, 3) for r in (1, 2, 3) if (c, r) not in scan.dies)
    with pytest.raises(ValueError, match=f"no wafer scan .* measured die "
                                         f"{unscanned[0]}:{unscanned[1]}"):
        selection.choose(1, unscanned, sessions)
    assert selection.scans_of_die(die, sessions) == [scan.scan]
    # A simulated station of another seed holds another wafer: the scan does not vouch.
    sim = load_station(scan.work / "station.toml").simulation
    assert selection.scans_of_die(die, sessions, sim) == [scan.scan]
    with pytest.raises(ValueError, match="no wafer scan .* of this simulated wafer"):
        selection.choose(1, die, sessions, simulation=replace(sim, seed=sim.seed + 1))
    # An open device: its pair is excluded, and it has no fitted model to run on.
    (d_open, p_open, dev_open) = next(k for k, kind in scan.planted.items() if kind == "open")
    best = selection.choose(1, d_open, sessions)
    assert p_open not in best.pairs
    assert best.excluded[str(p_open)].startswith(f"open: {dev_open}: open")
    with pytest.raises(ValueError, match=f"pair {p_open} device {dev_open} has no fitted"):
        measured_pairs(scan.scan, d_open, [p_open])


def test_die_is_named_col_row_as_wafer_scan_names_it(scan, capsys):
    """--die takes the col:row of ``wafer scan --dies``; on the station it must be the die
    under the probes, and the model backend runs on the die it names."""
    under, other = scan.dies[0], scan.dies[1]
    station = ["--station", str(scan.work / "station.toml"), "--sessions-dir", str(scan.sessions)]
    code = main([*map(str, TRAIN), "--pairs", "auto", "--die", f"{other[0]}:{other[1]}",
                 *station])
    err = capsys.readouterr().err
    assert code == 2, err
    assert (f"--die {other[0]}:{other[1]}: the prober is over die {under[0]}:{under[1]}"
            in err)
    with pytest.raises(SystemExit) as usage:  # argparse's usage error
        main([*map(str, TRAIN), "--die", f"{other[0]},{other[1]}", *station])
    assert usage.value.code == 2
    assert "expected col:row such as 2:1" in capsys.readouterr().err
    code = main([*map(str, TRAIN), "--backend", "model", "--devices-from", str(scan.scan),
                 "--die", f"{other[0]}:{other[1]}", "--epochs", "1", *station])
    out = capsys.readouterr().out
    assert code == 0, out
    cfg = _start_config(scan.sessions / json.loads(out)["session"])
    assert cfg["settings"]["die"] == list(other)
    assert set(cfg["settings"]["pairs"]) <= set(scan.ok_pairs(other))


@pytest.mark.parametrize("options, message", [
    (["--backend", "model", "--pairs", "1,2"], "--pairs chooses station pairs"),
    (["--devices-from", "x"], "--devices-from runs the model backend"),
    (["--pairs", "1,2,3"], "--pairs names 3 pairs; 1 layer(s) of 2 neurons need 2"),
])
def test_training_pair_options_that_cannot_work_are_refused(scan, capsys, options, message):
    code = main([*map(str, TRAIN), *options, "--station", str(scan.work / "station.toml"),
                 "--sessions-dir", str(scan.sessions)])
    assert code == 2 and message in capsys.readouterr().err
