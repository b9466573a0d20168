"""A small signal storm (labctl.bench.storm) against real labctl processes.

Eight runs, every signal (SIGINT, SIGTERM, SIGHUP, SIGKILL) once against a real ``labctl
train iris --folds 2 --epochs 3`` and once against a real ``labctl iv --points 1001`` on a
served bench, each after a seeded random delay: the training's in fold-epochs (1 to 4.5 of
its 6, timed by its own recorded epochs, so the signal lands inside the training however
fast or loaded the machine is), the sweep's in s (0.1 to 1.5 s of its 1.7 s of simulated
instrument time, which no machine shortens). What each must leave behind is checked by the
storm itself (see its module docstring), every interrupted training resumed to the end;
here every run must have been tried (not missed) and held, and the storm's own bookkeeping
must agree with its records. ``labctl bench --only storm`` runs the long settings
(:data:`storm.TRAIN_ARGS`, :data:`storm.IV_ARGS`, :data:`storm.DELAYS_S`, 100 runs).
"""

from __future__ import annotations

import json

import pytest

from labctl.bench import storm

N, SEED = 8, 1
#: Three epochs per fold: six fold-epochs, enough for a delay of 1 to 4.5 of them to land
#: in either fold with at least 1.5 epochs left before the stop document.
TRAIN_ARGS = ("train", "iris", "--folds", "2", "--epochs", "3", "--json", "--no-progress")
#: 1001 points at 1 NPLC: 17 s of instrument time, 1.7 s of wall time at storm.TIME_SCALE.
IV_ARGS = ("iv", "--pair", "2", "--points", "1001", "--nplc", "1")
DELAYS = {"train": (1.0, 4.5), "iv": (0.1, 1.5)}
UNITS = {"train": "epochs", "iv": "s"}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = storm.run(N, SEED, workdir=tmp_path_factory.mktemp("storm"), train_args=TRAIN_ARGS,
                    iv_args=IV_ARGS, delays=DELAYS, units=UNITS)
    print("\nsignal storm:", json.dumps(out["signals"]), f"{out['wall_s']} s")
    for r in out["runs"]:
        print(f"  {r['i']:>3} {r['command']:<5} {r['signal']:<7} after {r['delay_s']:5.2f} "
              f"{r.get('unit', 's')} ({r.get('after_start_s', float('nan')):5.2f} s): "
              f"{r['status']}" + "".join(f"\n        {p}" for p in r["problems"]))
    return out


@pytest.mark.parametrize("delays", [None, DELAYS], ids=["bench", "test"])
def test_plan_covers_every_signal_and_command(delays):
    plan = storm.plan(N, SEED, delays)
    assert sorted((c, s) for c, s, _ in plan) == sorted(
        (c, s) for c in storm.COMMANDS for s in storm.SIGNALS
    )
    assert plan == storm.plan(N, SEED, delays)  # seeded
    assert plan != storm.plan(N, SEED + 1, delays)
    for command, _, delay in plan:
        lo, hi = (storm.DELAYS_S if delays is None else delays)[command]
        assert lo <= delay <= hi


def test_storm_bookkeeping(result):
    runs = result["runs"]
    assert [r["i"] for r in runs] == list(range(N))
    for sig, counts in result["signals"].items():
        mine = [r for r in runs if r["signal"] == sig]
        assert counts["tried"] + counts["missed"] == len(mine)
        assert counts["held"] == sum(r["status"] == "held" for r in mine)
    assert result["failures"] == [r for r in runs if r["status"] == "failed"]
    assert {r["unit"] for r in runs if "unit" in r} <= set(UNITS.values())


def describe(r: dict) -> str:
    return (f"run {r['i']}: {r['command']} + {r['signal']} after {r['delay_s']} "
            f"{r.get('unit', 's')}: {r['status']}: " + " | ".join(r["problems"]))


@pytest.mark.parametrize("index", range(N))
def test_signal_held(result, index):
    r = result["runs"][index]
    assert r["status"] != "missed", f"the signal came too late to test anything: {describe(r)}"
    assert r["status"] == "held", describe(r)
    assert r["unit"] == UNITS[r["command"]]
    if r["command"] == "train":
        assert r["resume"]["exit"] == 0, describe(r)
    if r["signal"] != "SIGKILL":
        assert r["exit"] == 130
        assert not storm.unsafe(r["state"]), r["state"]
    else:
        assert r["exit"] == -9


@pytest.mark.parametrize(("command", "delay", "unit"),
                         [("iv", 1.0, "epochs"), ("train", 0.5, "epochs"), ("train", 1.0, "h")])
def test_delay_unit_refused(tmp_path, command, delay, unit):
    # refused before anything starts: no process, no bench needed, no run directory
    with pytest.raises(ValueError, match="a delay of"):
        storm.one_run(0, command, "SIGINT", delay, None, tmp_path, None, unit)
    assert not any(tmp_path.iterdir())
