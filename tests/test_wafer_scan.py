"""`labctl wafer scan` as real subprocesses against the simulated station (loopback sockets,
the simulated prober and SMUs), and the simulated wafer's planted defects.

Small on purpose (a 3x3 round wafer of 2 pairs, three dies scanned, short sweeps, time
scale 0): a scan's records read back with read_scan and checked against the oracle; kill
-9 mid-scan then --resume; a prober error stopping the scan safely; bad input refused
before any motion.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from instruments.wire_log import read_entries
from labctl.cli import main
from labctl.records.session import Session
from labctl.station.file import BUILTIN_TEXT, parse_station
from labctl.station.oracle import Oracle
from labctl.wafer.records import read_scan
from simulators.mtj import SHORT_RESISTANCE, voltage
from simulators.wafer import DEFECT_KINDS, round_map
from simulators.world import SimSettings, StationWorld

REPO = Path(__file__).resolve().parents[1]
FAST = ("--iv-points", 21, "--fd-points", 4, "--fd-steps", "1e-6,2e-6",
        "--voltage-points", 5, "--no-report", "--no-progress")
# Round-3, 2 pairs, seed 1: die 3:2 has an open (2A) and an out-of-family device (1A), die
# 1:3 a short (2B), die 2:2 a broken one (2A) -- asserted against the oracle below.
DEFECT_DIES = "3:2,1:3,2:2"


def station_text(extra: str = "", *, pairs: int = 2, wafer: str = "round-3") -> str:
    return (BUILTIN_TEXT.replace("n_pairs = 16", f"n_pairs = {pairs}")
            .replace("time_scale = 0.0", f'time_scale = 0.0\nwafer = "{wafer}"') + extra)


def labctl(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "labctl.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def prober_commands(session_dir: Path) -> list[str]:
    return [str(v) for kind, _, v in read_entries(session_dir / "wire" / "prober.wlog").entries
            if kind == "w"]


def assert_never_moved_in_contact(commands: list[str]) -> None:
    contact = False
    for c in commands:
        if c == "move_chuck_contact":
            contact = True
        elif c == "move_chuck_separation":
            contact = False
        elif c.startswith(("map:step_die", "map:step_next_die")):
            assert not contact, f"{c} sent while in contact"


def oracle_for(text: str) -> tuple[Oracle, object]:
    cfg = parse_station(text, "test")
    return Oracle.from_settings(cfg.simulation, cfg.wiring), cfg


def test_scan_records_read_back_and_match_the_planted_wafer(tmp_path):
    text = station_text()
    station = tmp_path / "station.toml"
    station.write_text(text)
    wafer_map = tmp_path / "map.toml"  # the prober's map, in another order: accepted
    wafer_map.write_text("dies = [" + ", ".join(f"[{c}, {r}]" for c, r in
                                                reversed(round_map(3))) + "]\n")
    run = labctl("wafer", "scan", "--station", station, "--map", wafer_map, "--dies",
                 DEFECT_DIES, *FAST, "--sessions-dir", tmp_path / "s", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    [path] = (tmp_path / "s").iterdir()
    scan = read_scan(path)
    assert scan.status == "success"
    assert scan.station["map"] == [list(d) for d in reversed(round_map(3))]
    assert scan.station["seed"] == 1 and scan.station["limits"]["1"]["max_current_a"] == 1e-4
    # In the map's order (reversed: row 3 first), each die once and finished.
    assert [d.die for d in scan.dies] == [(1, 3), (3, 2), (2, 2)]
    assert all(d.status == "done" and d.duration_s > 0 for d in scan.dies)
    oracle, cfg = oracle_for(text)
    planted = oracle.planted_defects()
    assert planted == {((3, 2), 2, "A"): "open", ((3, 2), 1, "A"): "out_of_family",
                       ((1, 3), 2, "B"): "short", ((2, 2), 2, "A"): "broken"}
    low_i = np.linspace(-5e-6, 5e-6, 5)
    for die in scan.dies:
        assert len(die.devices) == 8 and len(die.pairs) == 2  # 2 pairs x A/B x 2 modes
        truth = oracle.die_params(die.die)
        for dev in (d for d in die.devices if d.iv_mode == "current"):
            kind = planted.get((die.die, dev.pair, dev.device))
            assert len(dev.iv_current_a) == 21 and dev.compliance_hit.dtype == bool
            if kind == "open":  # no current: the SMU sits at its voltage compliance
                assert not dev.contact_ok and math.isnan(dev.r_low_ohm)
                assert dev.compliance_hit[dev.iv_current_a != 0].all()
                assert np.allclose(np.abs(dev.iv_voltage_v[dev.iv_current_a != 0]), 0.8,
                                   atol=1e-3)
            elif kind == "short":
                # At 5 uA a short shows 250 uV, the SMU's read noise 20 uV: the low-bias
                # value is rough, the slope of the whole I-V is not.
                assert dev.r_low_ohm == pytest.approx(SHORT_RESISTANCE, rel=0.25)
                slope = np.polyfit(dev.iv_current_a, dev.iv_voltage_v, 1)[0]
                assert slope == pytest.approx(SHORT_RESISTANCE, rel=0.01)
            else:  # the low-bias slope of the true device
                p = truth.take((dev.pair - 1, "AB".index(dev.device)))
                expected = np.sum(voltage(p, low_i) * low_i) / np.sum(low_i**2)
                assert dev.contact_ok and dev.r_low_ohm == pytest.approx(expected, rel=0.01)
                assert not dev.compliance_hit.any()
        for dev in (d for d in die.devices if d.iv_mode == "voltage"):
            if planted.get((die.die, dev.pair, dev.device)) == "open":
                assert np.all(np.abs(dev.iv_current_a) < 1e-8)  # 0 A plus read noise
            else:
                assert np.abs(dev.iv_current_a).max() > 1e-6
            assert np.abs(dev.iv_voltage_v).max() <= 0.8 + 1e-6  # compliance_v
        for pair in die.pairs:
            assert pair.fd_steps_a.tolist() == [1e-6, 2e-6] and len(pair.dvdi_ohm) == 4
    healthy = scan.die((2, 2)).pair(1)
    assert healthy.fd_error["swap"].max() < 0.05 and healthy.recommended_di_a in (1e-6, 2e-6)
    # Safe at every step: never an xy move in contact; outputs off and confirmed at the end,
    # the chuck left separated.
    commands = prober_commands(path)
    assert_never_moved_in_contact(commands)
    assert [c for c in commands if c.startswith("map:step_die")] == [
        "map:step_die 1,3", "map:step_die 3,2", "map:step_die 2,2"]
    assert commands[-2:] == ["move_chuck_separation", "get_chuck_z_state"]
    assert Session(path).stop["labctl_shutdown"]["confirmed"] is True


def _done_dies(path: Path) -> int:
    try:
        return (path / "documents.jsonl").read_bytes().count(b'"status":"done"')
    except OSError:
        return 0


def test_kill_9_mid_scan_then_resume_completes_the_table_with_no_die_twice(tmp_path, capsys):
    station = tmp_path / "station.toml"
    station.write_text(station_text(pairs=1, wafer="grid").replace(
        "time_scale = 0.0", "time_scale = 0.0\ndie_grid = [3, 1]"))
    sessions = tmp_path / "s"
    args = ("wafer", "scan", "--station", station, *FAST, "--sessions-dir", sessions)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "labctl.cli", *map(str, args)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        path = None
        while time.monotonic() < deadline:
            dirs = list(sessions.glob("*")) if sessions.exists() else []
            path = dirs[0] if dirs else None
            # Die 1 finished (its 2 devices) and die 2 under way (its first device recorded).
            if path is not None and _done_dies(path) == 1 and (
                    path / "documents.jsonl").read_bytes().count(b'"iv_mode":"current"') > 2:
                break
            time.sleep(0.005)
        else:
            pytest.fail("the scan never reached its second die")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = read_scan(path)
    assert before.status == "interrupted"
    first = before.die((1, 1))
    assert first.status == "done"
    cut = before.die((2, 1))
    assert cut is not None and cut.status == "failed" and cut.devices  # kept, not lost

    # The resume in-process (labctl.cli.main) to spare a Python start.
    code = main(["wafer", "scan", "--resume", path.name, "--sessions-dir", str(sessions),
                 "--no-progress", "--no-report"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "3/3 dies (2 measured now)" in out.out
    after = read_scan(path)
    assert after.status == "success"
    assert [d.die for d in after.dies] == [(1, 1), (2, 1), (3, 1)]
    assert all(d.status == "done" for d in after.dies)
    assert after.die((1, 1)).attempt == first.attempt  # the finished die was not re-measured
    assert after.die((2, 1)).attempt != cut.attempt  # the cut one was, from its start
    session = Session(path)
    steps = [c for c in prober_commands(path) if c.startswith("map:step_die")]
    assert steps.count("map:step_die 1,1") == 1  # measured once, over both runs
    assert len(session.starts) == 1  # a killed run continues in place (no stop to follow)
    # Nothing measured is lost: the cut pass's events are still in the record.
    attempts = {e["attempt"] for e in session.events("device_iv")}
    assert cut.attempt in attempts and len(attempts) == 4


def test_a_prober_error_stops_the_scan_safely_naming_the_die(tmp_path, capsys):
    station = tmp_path / "station.toml"
    # Prober messages: 4 on opening (identity, state), 4 reading the 3-die map, 8 for die 1
    # (separate, state, step, contact, state, the engine's state, the contact checks after
    # the pair and the die); then separate, state, and the 19th is the step to die 2:1:
    # its reply is garbled.
    station.write_text(station_text("\n[simulation.faults.prober]\ngarble_after = 19\n",
                                    pairs=1, wafer="grid").replace(
        "time_scale = 0.0", "time_scale = 0.0\ndie_grid = [3, 1]"))
    code = main([str(a) for a in ("wafer", "scan", "--station", station, *FAST,
                                  "--sessions-dir", tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "die 2:1: prober error while stepping" in err, err
    [path] = (tmp_path / "s").iterdir()
    session = Session(path)
    assert session.stop["exit_status"] == "fail" and "die 2:1" in session.stop["reason"]
    assert session.stop["labctl_shutdown"]["confirmed"] is True
    scan = read_scan(path)
    assert [(d.die, d.status) for d in scan.dies] == [((1, 1), "done"), ((2, 1), "failed")]
    assert "prober" in scan.die((2, 1)).reason
    assert len(scan.die((1, 1)).devices) == 4  # die 1's data is all there
    commands = prober_commands(path)
    assert_never_moved_in_contact(commands)
    assert "move_chuck_separation" in commands[-3:]  # parked separated
    for smu in ("smu_a", "smu_b"):  # the last thing each SMU was told: output off
        sent = [str(v) for k, _, v in read_entries(path / "wire" / f"{smu}.wlog").entries
                if k == "w"]
        assert ":OUTP OFF" in sent[-6:], sent[-6:]


@pytest.mark.parametrize("case", ["map", "die", "no-prober", "station-map"])
def test_bad_input_is_refused_before_any_motion(tmp_path, case, capsys):
    # In-process (labctl.cli.main), to spare a Python start per case; the station is still
    # the simulator served on loopback sockets.
    text = station_text(pairs=1)
    extra: tuple = ()
    if case == "map":
        bad = tmp_path / "map.toml"
        bad.write_text("dies = [[1, 1], [2, 1], [9, 9]]\n")
        extra = ("--map", bad)
        expected = "does not match the prober's (3 dies against 9): 9:9 not on the prober's map"
    elif case == "die":
        extra = ("--dies", "2:2,9:9")
        expected = "the prober has no die 9:9"
    elif case == "station-map":
        text += "\n[wafer]\ndies = [[1, 1], [2, 1]]\n"
        expected = "[wafer]: the wafer map does not match the prober's (2 dies against 9)"
    else:
        text = text.replace('[instruments.prober]\ndriver = "prober"\n', "").replace(
            'prober = "prober"\n', "")
        expected = "the station has no prober"
    station = tmp_path / "station.toml"
    station.write_text(text)
    code = main([str(a) for a in ("wafer", "scan", "--station", station, *FAST, *extra,
                                  "--sessions-dir", tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err, err
    sessions = list((tmp_path / "s").glob("*")) if (tmp_path / "s").exists() else []
    if case == "no-prober":
        assert sessions == []  # refused before any instrument was opened
        return
    [path] = sessions
    commands = prober_commands(path)
    assert not any(c.startswith(("map:step", "move_chuck_contact")) for c in commands)
    assert Session(path).stop["exit_status"] == "fail"


def test_the_round_wafer_plants_a_few_percent_of_each_defect_seeded():
    settings = SimSettings(seed=7, n_pairs=16, wafer="round-5", die_grid=(5, 5))
    world = StationWorld(settings)
    assert sorted(world.dies) == sorted(round_map(5)) and len(world.dies) == 21
    assert (1, 1) not in world.dies and world.die == (2, 1)
    kinds = list(world.planted.values())
    n = 21 * 16 * 2
    for kind in DEFECT_KINDS:
        assert 0.01 * n <= kinds.count(kind) <= 0.03 * n, kind
    assert StationWorld(settings).planted == world.planted  # deterministic for a seed
    assert StationWorld(SimSettings(seed=8, n_pairs=16, wafer="round-5")).planted != \
        world.planted
    # Gradients: R_P rises towards the edge, I_off across the wafer.
    centre = np.median(world.dies[3, 3].fabricated.r_p)
    edge = np.median([np.median(world.dies[d].fabricated.r_p) for d in [(1, 3), (5, 3)]])
    assert edge > 1.06 * centre
    left = np.median(world.dies[1, 3].fabricated.i_off)
    right = np.median(world.dies[5, 3].fabricated.i_off)
    assert right - left > 4e-6
    # The grid (every older station file) is unchanged: no defects, same first draws.
    grid = StationWorld(SimSettings(seed=7))
    assert grid.planted == {} and grid.opens == {} and sorted(grid.dies) == [
        (1, 1), (1, 2), (2, 1), (2, 2)]


def test_planted_opens_and_shorts_behave_as_planted_on_the_bus():
    world = StationWorld(SimSettings(seed=7, n_pairs=16, wafer="round-5"))
    (die, pair, dev), _ = next((k, v) for k, v in world.planted.items() if v == "open")
    world.set_die(die)
    world.set_contact(True)
    bus = "AB"[dev]
    world.set_closed({f"1{bus}{pair + 1:02d}"})
    state = world.drive(bus, 10e-6, 0.8)
    assert state.in_compliance and state.voltage == pytest.approx(0.8) and state.current == 0
    state = world.drive_voltage(bus, 0.3, 1e-4)
    assert state.current == 0.0
    world.release(bus)
    world.set_contact(False)
    (die, pair, dev), _ = next((k, v) for k, v in world.planted.items() if v == "short")
    world.set_die(die)
    world.set_contact(True)
    bus = "AB"[dev]
    world.set_closed({f"1{bus}{pair + 1:02d}"})
    state = world.drive(bus, 10e-6, 0.8)
    assert not state.in_compliance
    assert state.voltage / 10e-6 == pytest.approx(SHORT_RESISTANCE, rel=1e-6)


@pytest.mark.parametrize("text, expected", [
    ("dies = [[1, 1], [1, 1]]", "dies[1]: die [1, 1] is listed twice"),
    ("dies = [[1, 0]]", "dies[0]: must be [col, row], integers >= 1, got [1, 0]"),
    ("dies = []", "dies: must be a list of 1..10000 [col, row] pairs"),
    ("die = [[1, 1]]", "die: unknown key"),
    ("dies = [[1, 1]", "not a wafer map (TOML)"),
])
def test_a_bad_map_file_is_refused_naming_the_file_and_entry(tmp_path, text, expected):
    from labctl.station.file import StationFileError, load_wafer_map

    path = tmp_path / "map.toml"
    path.write_text(text + "\n")
    with pytest.raises(StationFileError) as err:
        load_wafer_map(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_a_round_wafer_and_a_disagreeing_die_grid_are_refused():
    from labctl.station.file import StationFileError

    text = station_text(wafer="round-5").replace("time_scale = 0.0",
                                                 "time_scale = 0.0\ndie_grid = [2, 2]")
    with pytest.raises(StationFileError, match=r"die_grid: \[2, 2\] disagrees with wafer"):
        parse_station(text, "st.toml")
    with pytest.raises(StationFileError, match="wafer: wafer 'square'"):
        parse_station(station_text(wafer="square"), "st.toml")


def test_a_lost_contact_stops_the_die_naming_it_and_the_outputs_end_off(tmp_path):
    # In-process: the chuck drops (the simulated world loses contact) after pair 1.
    from labctl.records.session import SessionWriter
    from labctl.station.runtime import open_station
    from labctl.wafer.scan import ProberFault, ScanSettings, declare_streams, park, scan_die

    cfg = parse_station(station_text(pairs=2, wafer="grid"), "test")
    settings = ScanSettings(iv_points=21, fd_points=4, fd_steps_a=(1e-6,), voltage_points=0)
    with open_station(cfg) as station:
        writer = SessionWriter.create(tmp_path, "wafer-scan", [], {"wafer": {}}, {})
        streams = declare_streams(writer, settings, 1)
        world = station.simulator.world

        def drop(pair: int) -> None:
            if pair == 1:
                world.set_contact(False)

        with pytest.raises(ProberFault, match="die 1:1: the prober lost contact"):
            scan_die(station, writer, streams, (1, 1), settings, on_pair=drop)
        assert park(station) == []
        assert not world.in_contact and not any(b.on for b in world.buses.values())
        writer.stop("fail", "lost contact")
    scan_dir = writer.path
    session = Session(scan_dir)
    [die] = session.events("die")
    assert die["status"] == "failed" and "lost contact" in die["reason"]
    assert {e["pair"] for e in session.events("device_iv")} == {1}  # pair 1 kept, 2 not run
