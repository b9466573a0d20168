"""A Keysight B2902A as a slave of another instrument's trigger output (issue #12, pairs in
parallel on two B2902As).

The simulator over a real loopback socket: ``:TRIG[c]:TRAN|ACQ|ALL:SOUR EXT<n>`` read back,
refused sources, ``:INIT`` arming on line n, one step per pulse on its own timeline (never
before the sender's pulse), the trigger count ending the sweep, ``:ABOR`` disarming, -213
and -221 as documented, ``:FETC`` of an unfinished sweep -230 with no answer. The driver
(:meth:`KeysightB2902A.arm_list_slave` / ``fetch_list_slave``) over the same socket. A
station of two B2902As (docs/station-two-b2902a.toml): parallel pairs with the readings of
one pair at a time and half the instrument time, a 2400 master pacing a B2902A, and a slave
whose trigger cable is missing failing cleanly (bounded time, every output off).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from instruments import open_adapter
from instruments.keysight_b2900 import KeysightB2902A
from instruments.transport import InstrumentError, WireLog
from instruments.wire_log import read_entries
from labctl.bench.parallel_pairs import epoch_once, parallel_station_text
from labctl.bench.storm import served
from labctl.station.file import one_smu_station_text, parse_station
from labctl.station.runtime import open_station
from protocols.engine import Engine
from protocols.intents import Sweep
from simulators.cabling import Cabling, SmuCable, TriggerCable
from simulators.keysight_b2900 import INITIATE_OVERHEAD_S, SimB2902A
from simulators.server import TcpServer
from simulators.world import SimSettings, StationWorld
from tests.test_sim_b2900 import Client

ROOT = Path(__file__).resolve().parents[1]
#: The slave B2902A on rows A/B; a master SMU on rows C/D whose line 1 reaches the slave's
#: EXT1 and the ADC.
CABLING = Cabling(
    smus=(SmuCable("smu", "1", "A"), SmuCable("smu", "2", "B"),
          SmuCable("master", "1", "C"), SmuCable("master", "2", "D")),
    triggers=(TriggerCable("master", 1, "smu", 1), TriggerCable("master", 1, "adc", 1)),
    matrix_rows=("A", "B", "C", "D"),
)
LEVELS = (10e-6, 40e-6, 70e-6)


class Bench:
    """The world with pair 1 on rows A/B, the slave served on a socket, a raw client."""

    def __init__(self) -> None:
        self.world = StationWorld(SimSettings(seed=5), CABLING)
        self.world.set_contact(True)
        self.world.set_closed({"1A01", "1B01"})
        self.sim = SimB2902A(self.world, {"1": CABLING.smus[0], "2": CABLING.smus[1]})
        self.sim.fetch_wait_s = 0.3  # an unfinished sweep's :FETC gives up soon
        self.server = TcpServer(self.sim).start()
        self.client = Client(self.server.port)

    def pulses(self, n: int, line: int = 1) -> None:
        for step in range(n):
            self.world.pulse("master", line, step)

    def close(self) -> None:
        self.client.close()
        self.server.stop()


@pytest.fixture
def bench():
    b = Bench()
    yield b
    b.close()


def arm(c: Client, source: str = "EXT1", chans: str = "1,2", *, init: bool = True) -> None:
    """Current lists LEVELS x (1 + 0.1 c) (A) on the channels, trigger source ``source``."""
    for ch in chans.split(","):
        listed = ",".join(f"{v * (1 + 0.1 * int(ch)):.9g}" for v in LEVELS)
        c.send(f":SOUR{ch}:FUNC:MODE CURR;:SENS{ch}:VOLT:PROT 0.9;:SENS{ch}:VOLT:NPLC 0.1;"
               f":SOUR{ch}:CURR:MODE LIST;:SOUR{ch}:LIST:CURR {listed};"
               f":TRIG{ch}:ALL:COUN {len(LEVELS)};:TRIG{ch}:ALL:SOUR {source}")
    if init:
        c.send(f":INIT (@{chans})")


def fetched(c: Client, chans: str = "1,2") -> np.ndarray:
    """``:FETC:ARR?`` as rows of (V, I, status) per step and channel."""
    c.send(":FORM:ELEM:SENS VOLT,CURR,STAT")
    values = np.array([float(v) for v in c.ask(f":FETC:ARR? (@{chans})").split(",")])
    return values.reshape(-1, len(chans.split(",")), 3)


@pytest.mark.parametrize(("command", "query", "reply"), [
    (":TRIG:TRAN:SOUR EXT1", ":TRIG:TRAN:SOUR?", "EXT1"),
    (":TRIG2:ACQ:SOUR EXT14", ":TRIG2:ACQ:SOUR?", "EXT14"),
    (":TRIG2:ALL:SOUR EXT7", ":TRIG2:TRAN:SOUR?;:TRIG2:ACQ:SOUR?", "EXT7;EXT7"),
    (":TRIGger1:TRANsient:SOURce:SIGNal EXT3", ":TRIG1:TRAN:SOUR:SIGN?", "EXT3"),
    (":TRIG:SOUR EXT2", ":TRIG:ALL:SOUR?", "EXT2"),
])
def test_external_trigger_sources_read_back(bench: Bench, command: str, query: str,
                                            reply: str):
    c = bench.client
    c.send(command)
    assert c.ask(query) == reply
    assert c.errors() == []


def test_a_bad_trigger_source_is_refused_and_changes_nothing(bench: Bench):
    c = bench.client
    c.send(":TRIG:ALL:SOUR EXT4")
    for bad in ("EXT15", "EXT0", "EXTERNAL", "TLIN"):
        c.send(f":TRIG:ALL:SOUR {bad}")
        assert c.errors() == [-224]
    assert c.ask(":TRIG:TRAN:SOUR?;:TRIG:ACQ:SOUR?") == "EXT4;EXT4"


def test_init_arms_and_each_pulse_takes_one_step_after_the_senders_time(bench: Bench):
    c, world = bench.client, bench.world
    arm(c)
    assert c.errors() == []
    assert world.buses["A"].on and world.buses["A"].set_current == 0.0  # armed, not stepped
    world.clock.spend("master", 2.0)  # the master is 2 s ahead of the slave
    bench.pulses(1)
    assert world.buses["A"].set_current == pytest.approx(LEVELS[0] * 1.1)
    assert world.buses["B"].set_current == pytest.approx(LEVELS[0] * 1.2)
    bench.pulses(2, line=2)  # another line: nobody listens
    assert world.buses["A"].set_current == pytest.approx(LEVELS[0] * 1.1)
    bench.pulses(len(LEVELS) - 1)
    # The trigger count reached ends the sweep: sources back to their fixed level (0 A).
    assert world.buses["A"].set_current == 0.0 and world.buses["B"].set_current == 0.0
    table = fetched(c)
    assert table.shape == (3, 2, 3)
    for k, ch in enumerate((1, 2)):
        currents = np.array(LEVELS) * (1 + 0.1 * ch)
        assert table[:, k, 1] == pytest.approx(currents, rel=1e-9)
        model = [world.chip.ideal_voltage_one(0, k, float(i)) for i in currents]
        assert table[:, k, 0] == pytest.approx(model, abs=2e-4)
        assert (table[:, k, 2].astype(int) & 1).all()  # current source status bit
    # Timestamps: from the master's pulse time on, one lockstep step apart.
    c.send(":FORM:ELEM:SENS TIME")
    t = np.array([float(v) for v in c.ask(":FETC:ARR? (@1)").split(",")])
    assert t[0] >= 2.0 - INITIATE_OVERHEAD_S
    assert np.all(np.diff(t) > 0)
    bench.pulses(1)  # the sweep has ended: a further pulse changes nothing
    assert world.buses["A"].set_current == 0.0
    assert c.errors() == []


def test_acquire_aint_follows_each_transient_step(bench: Bench):
    c, world = bench.client, bench.world
    arm(c, chans="1", init=False)
    c.send(":TRIG1:ACQ:SOUR AINT;:INIT (@1)")
    assert c.errors() == []
    bench.pulses(len(LEVELS))
    table = fetched(c, "1")
    assert table[:, 0, 1] == pytest.approx(np.array(LEVELS) * 1.1, rel=1e-9)
    assert world.buses["A"].set_current == 0.0


def test_errors_init_while_armed_mixed_sources_and_abort(bench: Bench):
    c, world = bench.client, bench.world
    arm(c)
    c.send(":INIT (@1,2)")
    assert c.errors() == [-213]  # init ignored: the armed sweep goes on
    bench.pulses(1)
    assert c.ask(":ABOR (@1,2);*OPC?") == "1"
    assert world.buses["A"].set_current == 0.0  # disarmed: back to the fixed level
    bench.pulses(2)
    assert world.buses["A"].set_current == 0.0 and len(fetched(c)) == 1  # readings stay
    # One :INIT of an externally and an internally triggered channel; an acquire paced
    # from outside with the source from inside: both refused, nothing armed.
    c.send(":TRIG1:ALL:SOUR EXT1;:TRIG2:ALL:SOUR AINT;:INIT (@1,2)")
    c.send(":TRIG1:TRAN:SOUR AINT;:TRIG1:ACQ:SOUR EXT1;:INIT (@1)")
    assert c.errors() == [-221, -221]
    bench.pulses(1)
    assert world.buses["A"].set_current == 0.0
    assert c.errors() == []


def test_fetch_of_a_sweep_that_gets_no_pulses_queues_230_and_answers_nothing(bench: Bench):
    c = bench.client
    arm(c)
    assert c.errors() == []
    t0 = time.perf_counter()
    c.send(":FETC:ARR? (@1,2)")
    # The next reply is that of the error query: the :FETC answered nothing.
    assert c.ask(":SYST:ERR?").startswith("-230")
    assert 0.25 < time.perf_counter() - t0 < 3.0
    bench.pulses(len(LEVELS))  # still armed: it completes on the pulses after all
    assert fetched(c).shape == (3, 2, 3)
    c.send("*RST")
    assert c.errors() == []


# -- the driver --------------------------------------------------------------------------
@pytest.fixture
def driver(bench: Bench):
    log = WireLog()
    smu = KeysightB2902A(open_adapter(bench.server.resource, timeout_s=1.0, wire_log=log),
                         name="smu2")
    smu.ramp_to(0.0)
    smu.prepare_current_source(compliance_v=0.9, nplc=0.1)
    yield smu, log
    smu.adapter.close()


def test_the_driver_arms_both_channels_and_fetches_one_block(bench: Bench, driver):
    smu, log = driver
    levels = {1: np.array(LEVELS), "2": np.array(LEVELS) + 1e-6}
    smu.arm_list_slave(levels, nplc=0.1, trigger_line=1)
    bench.pulses(len(LEVELS))
    readings = smu.fetch_list_slave()
    assert set(readings) == {"1", "2"}
    for k, ch in enumerate(("1", "2")):
        expected = levels[1] if ch == "1" else levels["2"]
        assert readings[ch].current == pytest.approx(expected, rel=1e-9)
        model = [bench.world.chip.ideal_voltage_one(0, k, float(i)) for i in expected]
        assert readings[ch].voltage == pytest.approx(model, abs=2e-4)
    assert bench.sim.counts.get("INIT") == 1 and bench.sim.counts.get("FETC") == 1
    with pytest.raises(InstrumentError, match="no slave list sweep"):
        smu.fetch_list_slave()
    for ch in ("1", "2"):  # trigger sources back to AINT for the next paired sweep
        assert smu.ask(f":TRIG{ch}:ACQ:SOUR?").strip() == "AINT"


@pytest.mark.parametrize(("levels", "kwargs", "match"), [
    ({3: [1e-6]}, {}, "channels are 1 and 2"),
    ({1: [1e-6], 2: [1e-6, 2e-6]}, {}, "same 1 to 2500 points"),
    ({1: [4.0]}, {}, "within"),
    ({1: [1e-6]}, {"trigger_line": 15}, "EXT1 to EXT14"),
    ({1: [1e-6]}, {"nplc": 500}, "nplc"),
])
def test_the_driver_refuses_bad_arguments_before_sending(bench: Bench, driver, levels,
                                                         kwargs, match):
    smu, _ = driver
    before = bench.sim.counts.copy()
    with pytest.raises(ValueError, match=match):
        smu.arm_list_slave(levels, **{"nplc": 0.1, **kwargs})
    assert bench.sim.counts == before and bench.sim._armed is None


def test_a_driver_slave_that_gets_no_pulses_times_out_cleanly(bench: Bench, driver):
    smu, _ = driver
    smu.arm_list_slave({1: LEVELS, 2: LEVELS}, nplc=0.1)
    t0 = time.perf_counter()
    with pytest.raises(InstrumentError, match=r"EXT1 .* did not end.*-230"):
        smu.fetch_list_slave()
    assert time.perf_counter() - t0 < 4.0
    assert bench.sim._armed is None  # aborted
    report = smu.shutdown()
    assert report.confirmed, report.problems
    assert not any(b.on for b in bench.world.buses.values())


# -- stations ----------------------------------------------------------------------------
def two_b2902a_text(**kwargs) -> str:
    return parallel_station_text(first="keysight_b2902a", second="keysight_b2902a", **kwargs)


def test_the_documented_station_is_the_generated_one():
    doc = (ROOT / "docs" / "station-two-b2902a.toml").read_text()
    assert doc.endswith(two_b2902a_text())
    config = parse_station(doc, "docs/station-two-b2902a.toml")
    assert config.wiring.pair(2).a.smu.instrument == "smu2"
    with open_station(config) as station:
        caps = station.capabilities()
        assert caps.list_sweep and caps.parallel_pairs
        assert Engine(station, nplc=0.01).groups([1, 2, 3, 5, 4]) == [[0, 1], [2, 4], [3]]


@pytest.mark.parametrize("first", ["keysight_b2902a", "keithley2400"])
def test_pairs_on_a_second_b2902a_sweep_in_parallel_with_the_same_readings(first):
    alone = epoch_once(True, 0.01, 0.0, batch=20, neurons=4, first=first,
                       second="keysight_b2902a", one_at_a_time=True)
    two = epoch_once(True, 0.01, 0.0, batch=20, neurons=4, first=first,
                     second="keysight_b2902a")
    assert alone["parallel_steps"] == 0 and two["parallel_steps"] == 2
    assert two["v"] == pytest.approx(alone["v"], abs=2e-3)  # the same devices, SMU noise
    assert np.corrcoef(alone["dvdi"].ravel(), two["dvdi"].ravel())[0, 1] > 0.98
    assert 1.7 < alone["instrument_s"] / two["instrument_s"] < 2.1


def test_a_slave_whose_trigger_cable_is_missing_fails_cleanly_with_outputs_off():
    text = two_b2902a_text().replace('[instruments.smu2]\ndriver = "keysight_b2902a"\n',
                                     '[instruments.smu2]\ndriver = "keysight_b2902a"\n'
                                     'timeout_s = 1.0\n')
    with open_station(parse_station(text, "two-b2902a.toml")) as station:
        world = station.simulator.world
        station.simulator.instruments["smu2"].fetch_wait_s = 0.3
        # Miswired: the master's line 1 reaches the ADC but not smu2's EXT1.
        world.cabling = dataclasses.replace(
            world.cabling, triggers=tuple(t for t in world.cabling.triggers
                                          if t.target != "smu2"))
        engine = Engine(station, nplc=0.01)
        i = np.linspace(0.0, 60e-6, 8)
        t0 = time.perf_counter()
        with pytest.raises(InstrumentError, match="smu2.*EXT1.*did not end"):
            engine.execute((Sweep(1, i, i + 1e-6), Sweep(2, i, i + 1e-6)))
        assert time.perf_counter() - t0 < 5.0
        report = station.safe_shutdown()
        assert not report.problems, report.problems
        assert not any(b.on for b in world.buses.values())
    assert not any(b.on for b in world.buses.values())


# -- end to end: labctl sim serve, labctl train iris ------------------------------------
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
DOC = ROOT / "docs" / "station-two-b2902a.toml"


def test_sim_serve_serves_two_b2902as_that_sweep_pairs_in_parallel(tmp_path):
    with served(DOC.read_text(), tmp_path) as bench:
        assert {"smu", "smu2", "adc", "switch", "prober"} <= set(bench.resources)
        with open_station(parse_station(bench.station.read_text(), str(bench.station))) as station:
            assert station.simulator is None and station.capabilities().parallel_pairs
            engine = Engine(station, nplc=0.01)
            i = np.linspace(0.0, 60e-6, 12)
            r1, r2 = engine.execute((Sweep(1, i, i + 1e-6), Sweep(2, i, i + 2e-6)))
            assert engine.stats.parallel_steps == 1
            assert r1.valid.all() and r2.valid.all()
            assert np.all(np.diff(r2.v_a[i > 0]) > 0)  # pair 2 was swept, not held at 0 A
            smu2 = station.wire_logs["smu2"]
            assert smu2.counts["w"] > 0
    assert bench.proc.returncode == 0  # ended cleanly on SIGTERM


def labctl(*args, cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "labctl.cli", *map(str, args)], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr[-3000:])
    return json.loads(proc.stdout)


def test_train_iris_on_two_b2902as_matches_one_pair_at_a_time(tmp_path):
    one = tmp_path / "one-b2902a.toml"
    one.write_text(one_smu_station_text("keysight_b2902a"))
    args = ["train", "iris", "--folds", "2", "--epochs", "3", "--json", "--no-progress",
            "--sessions-dir", tmp_path / "s"]
    parallel = labctl(*args, "--station", DOC, cwd=tmp_path)
    sequential = labctl(*args, "--station", one, cwd=tmp_path)
    assert parallel["accuracy"] == pytest.approx(sequential["accuracy"], abs=0.05)
    assert parallel["grad_cosine"] == pytest.approx(sequential["grad_cosine"], abs=0.01)
    # The parallel session's wire log: smu2 armed on EXT1 and fetched, never paced itself.
    wire = tmp_path / "s" / parallel["session"] / "wire"
    smu2 = [t for k, _, t in read_entries(next(wire.glob("smu2.*"))).entries if k == "w"]
    assert any(":TRIG1:TRAN:SOUR EXT1" in t for t in smu2)
    assert ":INIT (@1,2)" in smu2 and ":FETC:ARR? (@1,2)" in smu2
    assert not any("*OPC?" in t and ":INIT" in t for t in smu2)
