"""Pairs measured in parallel: more matrix rows, an ADC scan list, the engine's grouping.

The simulated matrix gets rows C/D (each couple of rows reaches every pair: C its devices
A, D its devices B), the ADC board samples several inputs per trigger (``ACQ:CHAN 1,2``),
and on a station of four Keithley 2400s (odd pairs on rows A/B and ADC input 1, even pairs
on rows C/D and input 2, one trigger master; or the odd pairs on one 2602B or B2902A that
paces the even pairs' 2400s) the engine sweeps an odd and an even pair in one step: same
readings as one pair at a time (deterministic for a seed), about half the instrument time,
every source within limits and off afterwards; ``labctl train iris`` on it (a real child process)
reaches what the built-in 2400 station reaches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from instruments.adc_board import parse_block
from instruments.wire_log import read_entries
from labctl.bench.parallel_pairs import epoch_once, parallel_station_text
from labctl.station.file import parse_station
from labctl.station.runtime import open_station
from protocols.engine import Engine
from protocols.intents import Pulse, Sweep
from protocols.safety import SafetyViolation
from simulators.adc_board import SimAdcBoard
from simulators.cabling import AdcInputCable, Cabling, SmuCable, TriggerCable
from simulators.switch_matrix import SimSwitchMatrix
from simulators.world import StationWorld

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}


def four_row_world() -> StationWorld:
    cabling = Cabling(
        smus=tuple(SmuCable(f"smu_{r.lower()}", "1", r) for r in "ABCD"),
        adc_inputs=(AdcInputCable(1, "B", "A"), AdcInputCable(2, "D", "C")),
        triggers=(TriggerCable("smu_a", 1, "adc", 1),),
        matrix_rows=("A", "B", "C", "D"),
    )
    world = StationWorld(cabling=cabling)
    world.set_contact(True)
    return world


def test_rows_c_and_d_reach_every_pairs_devices_a_and_b():
    world = four_row_world()
    assert world.channel_target("1C05") == ("C", 4, 0)
    assert world.channel_target("1D05") == ("D", 4, 1)
    assert "1D16" in world.channels()
    with pytest.raises(ValueError, match="no channel '1E01'"):
        world.channel_target("1E01")
    with pytest.raises(ValueError, match="no channel '1C01'"):
        StationWorld().channel_target("1C01")  # the default matrix keeps rows A and B
    with pytest.raises(ValueError, match="rows are A, B, C and D"):
        Cabling(smus=(SmuCable("s", "1", "E"),), matrix_rows=("A", "B", "C", "D")).validate()
    with pytest.raises(ValueError, match="whole couples"):
        Cabling(smus=(SmuCable("s", "1", "A"),), matrix_rows=("A", "B", "C")).validate()


def test_one_device_on_two_rows_is_refused_by_the_matrix():
    world = four_row_world()
    switch = SimSwitchMatrix(world)
    switch.handle('channel.close("1A01,1C01")')  # device A of pair 1 on rows A and C
    code, message, *_ = switch.handle("print(errorqueue.next())").split("\t")
    assert code == "-221" and "1A01" in message and "1C01" in message
    assert world.closed == set()
    switch.handle('channel.exclusiveclose("1A01,1B01,1C02,1D02")')  # two pairs: fine
    assert switch.handle("print(errorqueue.count)") == "0"


def test_the_adc_samples_every_input_of_its_scan_list_per_trigger():
    world = four_row_world()
    world.set_closed({"1A01", "1B01", "1C02", "1D02"})
    for row, current in zip("ABCD", (10e-6, 11e-6, 30e-6, 31e-6), strict=True):
        world.drive(row, current, 0.8)
    board = SimAdcBoard(world)
    board.handle("ACQ:CHAN 3")
    board.handle("ACQ:CHAN 1,1")
    assert board.handle("SYST:ERR?").startswith("-222")
    assert board.handle("SYST:ERR?").startswith("-222")
    board.handle("GAIN 1")
    board.handle("ACQ:CHAN 1,2")
    assert board.handle("ACQ:CHAN?") == "1,2"
    board.handle("ACQ:COUN 3")
    board.handle("ACQ:ARM")
    board.handle("ACQ:CHAN 2")
    assert board.handle("SYST:ERR?").startswith("-221")  # not while armed
    for step in range(3):
        world.pulse("smu_a", 1, step)
    records = parse_block("adc", board.handle("ACQ:DATA?"))
    assert len(records) == 6
    d1, d2 = world.differential(1), world.differential(2)
    assert d1 != pytest.approx(d2, abs=1e-3)
    assert records["v"][0::2] == pytest.approx([d1] * 3, abs=1e-3)
    assert records["v"][1::2] == pytest.approx([d2] * 3, abs=1e-3)
    assert (records["t_us"][0::2] == records["t_us"][1::2]).all()  # sampled together
    board.handle("ACQ:CHAN 0")  # back to the CHAN input alone
    assert board.handle("ACQ:CHAN?") == "0"


def parallel_config():
    return parse_station(parallel_station_text(), "parallel.toml")


@pytest.mark.parametrize("first", ["keithley2400", "keithley2600", "keysight_b2902a"])
def test_the_engine_sweeps_independent_pairs_together_with_the_same_readings(first):
    # The odd pairs on two 2400s, or on one 2602B / B2902A pacing the 2400s of the even.
    one = epoch_once(False, 0.01, 0.0, batch=20, neurons=4)
    two = epoch_once(True, 0.01, 0.0, batch=20, neurons=4, first=first)
    assert one["parallel_steps"] == 0 and two["parallel_steps"] == 2
    assert two["v"] == pytest.approx(one["v"], abs=2e-3)  # the same devices, SMU noise
    assert np.corrcoef(one["dvdi"].ravel(), two["dvdi"].ravel())[0, 1] > 0.98
    # Half the sweeps' time, less the slaves' :INIT the host waits for (3 instead of 1).
    assert 1.5 < one["instrument_s"] / two["instrument_s"] < 2.0


def test_a_parallel_step_keeps_the_safety_envelope_and_leaves_every_output_off():
    with open_station(parallel_config()) as station:
        world = station.simulator.world
        engine = Engine(station, nplc=0.01)
        assert engine.parallel
        assert [len(g) for g in engine.groups([1, 3, 2, 4, 6])] == [2, 2, 1]
        too_much = np.full(5, 150e-6)  # above max_current_a = 100 uA
        with pytest.raises(SafetyViolation):
            engine.execute((Sweep(1, np.full(5, 10e-6), np.full(5, 11e-6)),
                            Sweep(2, too_much, too_much)))
        assert engine.stats.sweeps == 0 and not any(b.on for b in world.buses.values())
        i = np.linspace(0.0, 80e-6, 30)
        r1, r2 = engine.execute((Sweep(1, i, i + 1e-6), Sweep(2, i[:10], i[:10] + 1e-6)))
        assert engine.stats.parallel_steps == 1
        assert len(r1.v_a) == 30 and len(r2.v_a) == 10  # each its own length
        assert r1.valid.all() and r2.valid.all()
        peak = max(abs(b.set_current) for b in world.buses.values())
        assert peak <= 100e-6
        # A pulse on an even pair lands on its own row (D for device B), not on row B.
        before = float(world.chip.tuning_state((1, 1))[0])
        engine.execute(Pulse(2, "B", 0.6, 1e-5))
        assert float(world.chip.tuning_state((1, 1))[0]) > before + 5e-6
    # After the with block: every SMU channel ramped to 0 A and off.
    assert set(world.buses) == {"A", "B", "C", "D"}
    assert not any(b.on for b in world.buses.values())


def labctl(*args, cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "labctl.cli", *map(str, args)], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr[-3000:])
    return json.loads(proc.stdout)


def test_train_iris_with_two_pairs_in_parallel_reaches_the_2400_stations_accuracy(tmp_path):
    station = tmp_path / "parallel.toml"
    station.write_text(parallel_station_text())
    args = ["train", "iris", "--folds", "2", "--epochs", "4", "--json", "--no-progress",
            "--sessions-dir", tmp_path / "s"]
    parallel = labctl(*args, "--station", station, cwd=tmp_path)
    builtin = labctl(*args, cwd=tmp_path)
    assert parallel["accuracy"] == pytest.approx(builtin["accuracy"], abs=0.05)
    assert parallel["accuracy"] > 0.6
    # The parallel session's wire logs: ADC acquisitions on both inputs, the second
    # couple's SMUs swept as slaves of smu_a.
    wire = tmp_path / "s" / parallel["session"] / "wire"
    adc = [t for k, _, t in read_entries(next(wire.glob("adc.*"))).entries if k == "w"]
    smu_c = [t for k, _, t in read_entries(next(wire.glob("smu_c.*"))).entries if k == "w"]
    assert "ACQ:CHAN 1,2" in adc
    assert ":TRIG:SOUR TLIN" in smu_c and ":INIT" in smu_c


def test_a_parallel_epoch_is_deterministic_for_a_seed():
    a = epoch_once(True, 0.01, 0.0, batch=10, neurons=4)
    b = epoch_once(True, 0.01, 0.0, batch=10, neurons=4)
    assert np.array_equal(a["v"], b["v"]) and np.array_equal(a["dvdi"], b["dvdi"])
    assert a["instrument_s"] == b["instrument_s"]
