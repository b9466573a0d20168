"""A Keithley 2602B as a slave of another instrument's trigger output (issue #12, pairs in
parallel beside a B2902A or a second 2602B).

The simulated 2602B over a real loopback socket: channels whose source stimulus is a digio
trigger input's event (``digio.trigger[N].mode = digio.TRIG_RISING``, ``smuX.trigger.source.
stimulus = digio.trigger[N].EVENT_ID``) stay armed after ``initiate()`` (the sweeping bits
of ``status.operation.sweeping.condition`` set) and take one step per pulse on line N, on
their own timeline, never before the sender's pulse; the trigger count ends the sweep;
``smuX.abort()`` disarms; ``waitcomplete()`` gives up after ``fetch_wait_s``. The driver
(``arm_list_slave`` / ``fetch_list_slave``) over the same socket, a slave that gets no
pulses failing cleanly, and stations of two 2602Bs (or a B2902A beside a 2602B) sweeping
two pairs at once with one pair's readings.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from instruments import WireLog, open_adapter
from instruments.keithley2600 import Keithley2600
from instruments.transport import InstrumentError
from labctl.bench.parallel_pairs import epoch_once, parallel_station_text
from labctl.station.file import parse_station
from labctl.station.runtime import open_station
from simulators.cabling import Cabling, SmuCable, TriggerCable
from simulators.keithley2600 import SimKeithley2600
from simulators.server import TcpServer
from simulators.world import SimSettings, StationWorld
from tests.test_sim_keithley2600 import Client

#: The slave 2602B on rows A/B; a master SMU on rows C/D whose line 1 reaches the slave's
#: digio line 1.
CABLING = Cabling(
    smus=(SmuCable("k2602", "a", "A"), SmuCable("k2602", "b", "B"),
          SmuCable("master", "1", "C"), SmuCable("master", "2", "D")),
    triggers=(TriggerCable("master", 1, "k2602", 1),),
    matrix_rows=("A", "B", "C", "D"),
)
LEVELS = (10e-6, 40e-6, 70e-6)


class Bench:
    def __init__(self) -> None:
        self.world = StationWorld(SimSettings(seed=3), CABLING)
        self.world.set_contact(True)
        self.world.set_closed({"1A01", "1B01"})
        self.sim = SimKeithley2600(self.world, {"a": CABLING.smus[0], "b": CABLING.smus[1]})
        self.sim.fetch_wait_s = 0.3
        self.server = TcpServer(self.sim).start()
        self.client = Client(self.server.port)

    def pulses(self, n: int, line: int = 1) -> None:
        for step in range(n):
            self.world.pulse("master", line, step)

    def close(self) -> None:
        self.client.sock.close()
        self.server.stop()


@pytest.fixture
def bench():
    b = Bench()
    yield b
    b.close()


def arm(c: Client, line: int = 1, mode: str = "digio.TRIG_RISING") -> None:
    """Both channels current sources with lists LEVELS x (1, 1.5) (A), stepped by line."""
    parts = [f"digio.trigger[{line}].mode = {mode}"]
    for s, k in (("smua", 1.0), ("smub", 1.5)):
        levels = ", ".join(f"{v * k:.9g}" for v in LEVELS)
        parts += [
            f"{s}.source.func = {s}.OUTPUT_DCAMPS {s}.source.limitv = 1 "
            f"{s}.source.leveli = 0 {s}.source.output = 1 {s}.measure.nplc = 0.01",
            f"{s}.nvbuffer1.clear() {s}.nvbuffer2.clear() {s}.nvbuffer1.collecttimestamps = 1",
            f"{s}.trigger.source.listi({{{levels}}}) {s}.trigger.source.action = {s}.ENABLE",
            f"{s}.trigger.measure.iv({s}.nvbuffer1, {s}.nvbuffer2) "
            f"{s}.trigger.measure.action = {s}.ENABLE",
            f"{s}.trigger.count = {len(LEVELS)}",
            f"{s}.trigger.source.stimulus = digio.trigger[{line}].EVENT_ID",
        ]
    parts.append("smua.trigger.initiate() smub.trigger.initiate()")
    c.send(" ".join(parts))


def sweeping(c: Client) -> int:
    return int(float(c.ask("print(status.operation.sweeping.condition)")))


def test_a_digio_input_arms_the_sweep_one_step_per_pulse_after_the_senders_time(bench):
    c, world = bench.client, bench.world
    arm(c)
    assert c.errors() == []
    assert sweeping(c) == 6  # both channels armed, waiting for line 1
    assert world.buses["A"].set_current == 0.0
    world.clock.spend("master", 3.0)
    bench.pulses(1)
    assert world.buses["A"].set_current == pytest.approx(LEVELS[0])
    assert world.buses["B"].set_current == pytest.approx(1.5 * LEVELS[0])
    bench.pulses(2, line=2)  # another line: nobody listens
    assert world.buses["A"].set_current == pytest.approx(LEVELS[0])
    bench.pulses(len(LEVELS) - 1)
    assert sweeping(c) == 0  # the trigger count ended it: back to the fixed level
    assert world.buses["A"].set_current == 0.0 and world.buses["B"].set_current == 0.0
    for s, k, dev in (("smua", 1.0, 0), ("smub", 1.5, 1)):
        amps = [float(x) for x in c.ask(f"printbuffer(1, 3, {s}.nvbuffer1.readings)")
                .split(",")]
        volts = [float(x) for x in c.ask(f"printbuffer(1, 3, {s}.nvbuffer2.readings)")
                 .split(",")]
        assert amps == pytest.approx(np.array(LEVELS) * k, rel=1e-5)
        model = [world.chip.ideal_voltage_one(0, dev, float(i) * k) for i in LEVELS]
        assert volts == pytest.approx(model, abs=1e-3)
    # The first reading at the master's pulse (3 s on), one step apart (buffer-relative).
    assert float(c.ask("print(smua.nvbuffer1.basetimestamp)")) >= 3.0
    t = [float(x) for x in c.ask("printbuffer(1, 3, smua.nvbuffer1.timestamps)").split(",")]
    assert np.all(np.diff(t) > 0)
    assert c.errors() == []


def test_abort_and_reset_disarm_and_bypass_lines_take_no_pulses(bench):
    c, world = bench.client, bench.world
    arm(c)
    assert sweeping(c) == 6  # (a round trip: the arm script has run)
    bench.pulses(1)
    assert c.ask("smua.abort() smub.abort() print(status.operation.sweeping.condition)") \
        .startswith("0")
    bench.pulses(2)
    assert world.buses["A"].set_current == pytest.approx(LEVELS[0])  # disarmed: not stepped
    assert c.ask("reset() print(status.operation.sweeping.condition)").startswith("0")
    assert world.buses["A"].on is False
    # A line left in TRIG_BYPASS is no trigger input: nothing can step the channels, so they
    # stay armed (as the instrument would) until aborted, and pulses reach no one.
    arm(c, mode="digio.TRIG_BYPASS")
    assert sweeping(c) == 6  # (a round trip: the arm script has run)
    bench.pulses(2)
    assert world.buses["A"].set_current == 0.0
    c.send("smua.abort() smub.abort()")
    assert sweeping(c) == 0 and c.errors() == []


def test_waitcomplete_gives_up_on_a_sweep_that_gets_no_pulses(bench):
    c = bench.client
    arm(c)
    assert sweeping(c) == 6
    t0 = time.perf_counter()
    assert c.ask("waitcomplete() print(status.operation.sweeping.condition)").startswith("6")
    assert 0.25 < time.perf_counter() - t0 < 3.0
    bench.pulses(len(LEVELS))  # still armed: the pulses complete it after all
    assert sweeping(c) == 0


# -- the driver --------------------------------------------------------------------------
@pytest.fixture
def driver(bench):
    k = Keithley2600(open_adapter(bench.server.resource, timeout_s=1.0, wire_log=WireLog()),
                     name="k2602")
    for ch in (k.ChA, k.ChB):
        ch.ramp_to(0.0)
        ch.prepare_current_source(compliance_v=1.0, nplc=0.01)
    yield k
    k.adapter.close()


def test_the_driver_arms_on_a_digio_line_and_fetches_one_block(bench, driver):
    levels = {"a": np.array(LEVELS), "b": np.array(LEVELS) + 2e-6}
    driver.arm_list_slave(levels, nplc=0.01, trigger_line=1)
    bench.pulses(len(LEVELS))
    readings = driver.fetch_list_slave()
    for dev, ch in enumerate("ab"):
        assert readings[ch].current == pytest.approx(levels[ch], rel=1e-5)
        model = [bench.world.chip.ideal_voltage_one(0, dev, float(i)) for i in levels[ch]]
        assert readings[ch].voltage == pytest.approx(model, abs=1e-3)
    with pytest.raises(InstrumentError, match="no slave list sweep"):
        driver.fetch_list_slave()
    with pytest.raises(ValueError, match="channels are a and b"):
        driver.arm_list_slave({"c": [1e-6]}, nplc=0.01)
    with pytest.raises(ValueError, match="digio trigger lines"):
        driver.arm_list_slave({"a": [1e-6]}, nplc=0.01, trigger_line=15)


def test_a_driver_slave_that_gets_no_pulses_times_out_cleanly(bench, driver):
    driver.arm_list_slave({"a": LEVELS, "b": LEVELS}, nplc=0.01)
    t0 = time.perf_counter()
    with pytest.raises(InstrumentError, match="digio line 1 .* did not end"):
        driver.fetch_list_slave(timeout_s=0.5)
    assert time.perf_counter() - t0 < 3.0
    assert driver.ask("print(status.operation.sweeping.condition)").startswith("0")  # aborted
    report = driver.shutdown()
    assert report.confirmed, report.problems
    assert not any(b.on for b in bench.world.buses.values())


# -- stations ----------------------------------------------------------------------------
@pytest.mark.parametrize("first", ["keithley2600", "keysight_b2902a"])
def test_pairs_on_a_second_2602b_sweep_in_parallel_with_the_same_readings(first):
    config = parse_station(parallel_station_text(first=first, second="keithley2600"), "x")
    with open_station(config) as station:
        assert station.capabilities().parallel_pairs
    alone = epoch_once(True, 0.01, 0.0, batch=20, neurons=4, first=first,
                       second="keithley2600", one_at_a_time=True)
    two = epoch_once(True, 0.01, 0.0, batch=20, neurons=4, first=first,
                     second="keithley2600")
    assert alone["parallel_steps"] == 0 and two["parallel_steps"] == 2
    assert two["v"] == pytest.approx(alone["v"], abs=2e-3)
    assert np.corrcoef(alone["dvdi"].ravel(), two["dvdi"].ravel())[0, 1] > 0.98
    # Shorter than one pair at a time (short sweeps: the slave's arm and fetch round trips
    # weigh; the bench's Iris epoch shows 2.0x).
    assert alone["instrument_s"] / two["instrument_s"] > 1.15
