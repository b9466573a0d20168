"""A small signal storm (labctl.bench.storm) against real labctl processes.

Eight runs, every signal (SIGINT, SIGTERM, SIGHUP, SIGKILL) once against a real ``labctl
train iris --folds 2 --epochs 30`` and once against a real ``labctl iv --points 2001`` on
a served bench, each after a seeded random delay. What each must leave behind is checked
by the storm itself (see its module docstring); here every run must have been tried (not
missed) and held, and the storm's own bookkeeping must agree with its records.
"""

from __future__ import annotations

import json

import pytest

from labctl.bench import storm

N, SEED = 8, 1


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = storm.run(N, SEED, workdir=tmp_path_factory.mktemp("storm"))
    print("\nsignal storm:", json.dumps(out["signals"]), f"{out['wall_s']} s")
    for r in out["runs"]:
        print(f"  {r['i']:>3} {r['command']:<5} {r['signal']:<7} after {r['delay_s']:5.2f} s: "
              f"{r['status']}" + "".join(f"\n        {p}" for p in r["problems"]))
    return out


def test_plan_covers_every_signal_and_command():
    plan = storm.plan(N, SEED)
    assert sorted((c, s) for c, s, _ in plan) == sorted(
        (c, s) for c in storm.COMMANDS for s in storm.SIGNALS
    )
    assert plan == storm.plan(N, SEED)  # seeded
    assert plan != storm.plan(N, SEED + 1)
    for command, _, delay in plan:
        lo, hi = storm.DELAYS_S[command]
        assert lo <= delay <= hi


def test_storm_bookkeeping(result):
    runs = result["runs"]
    assert [r["i"] for r in runs] == list(range(N))
    for sig, counts in result["signals"].items():
        mine = [r for r in runs if r["signal"] == sig]
        assert counts["tried"] + counts["missed"] == len(mine)
        assert counts["held"] == sum(r["status"] == "held" for r in mine)
    assert result["failures"] == [r for r in runs if r["status"] == "failed"]


def describe(r: dict) -> str:
    return (f"run {r['i']}: {r['command']} + {r['signal']} after {r['delay_s']} s: "
            f"{r['status']}: " + " | ".join(r["problems"]))


@pytest.mark.parametrize("index", range(N))
def test_signal_held(result, index):
    r = result["runs"][index]
    assert r["status"] != "missed", f"the signal came too late to test anything: {describe(r)}"
    assert r["status"] == "held", describe(r)
    if r["command"] == "train":
        assert r["resume"]["exit"] == 0, describe(r)
    if r["signal"] != "SIGKILL":
        assert r["exit"] == 130
        assert not storm.unsafe(r["state"]), r["state"]
    else:
        assert r["exit"] == -9
