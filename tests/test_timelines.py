"""Each simulated instrument keeps its own timeline (simulators.world.SimClock).

Instruments working at once overlap (station time is the latest timeline, wall time at
time_scale > 0 follows it), work one after another through the host adds up, and a
trigger-link list sweep on the built-in station (two 2400s and the ADC, driven by the real
drivers over loopback sockets) takes the trigger master's time, not master + slave + ADC.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from labctl.station.file import load_station
from labctl.station.runtime import open_station
from simulators.keithley2400 import INITIATE_OVERHEAD_S, READING_OVERHEAD_S
from simulators.world import SimClock, StationWorld


def test_two_instruments_spending_at_once_take_the_longer_one():
    clock = SimClock(0.0)
    clock.spend("smu_a", 1.0)
    clock.spend("smu_b", 0.4)
    assert clock.now("smu_a") == 1.0 and clock.now("smu_b") == 0.4
    assert clock.now() == 1.0


def test_work_one_after_another_through_the_host_adds_up():
    clock = SimClock(0.0)
    clock.command("smu_a")
    clock.spend("smu_a", 1.0)
    clock.reply("smu_a")  # the host reads smu_a's answer, then talks to smu_b
    clock.command("smu_b")
    clock.spend("smu_b", 0.5)
    assert clock.now("smu_b") == pytest.approx(1.5)
    assert clock.now() == pytest.approx(1.5)
    # A command sent before the reply arrived is not held back by it.
    clock.command("adc")
    assert clock.now("adc") == pytest.approx(1.0)


def test_the_whole_station_waiting_moves_every_timeline():
    clock = SimClock(0.0)
    clock.spend("smu_a", 2.0)
    clock.spend(0.25)  # no instrument: everybody waits (a chuck move, a test's pause)
    assert clock.now("smu_b") == pytest.approx(2.25)
    assert clock.now("never_seen") == pytest.approx(2.25)
    assert clock.now() == pytest.approx(2.25)


def test_wall_time_follows_the_longest_timeline_not_the_sum():
    clock = SimClock(1.0)  # real time
    threads = [threading.Thread(target=clock.spend, args=(name, 0.3)) for name in ("a", "b")]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    assert clock.now() == pytest.approx(0.3)
    assert 0.3 <= wall < 0.5  # one after another it would be 0.6 s


def test_a_pulse_brings_what_it_reaches_up_to_the_senders_time():
    world = StationWorld()  # default cabling: smu_a line 1 -> smu_b line 1 and the ADC
    world.clock.spend("smu_a", 0.7)
    world.clock.spend("switch", 0.1)
    world.pulse("smu_a", 1, 0)
    assert world.clock.now("smu_b") == pytest.approx(0.7)
    assert world.clock.now("adc") == pytest.approx(0.7)
    assert world.clock.now("switch") == pytest.approx(0.1)  # no cable: untouched
    world.pulse("smu_a", 2, 0)  # a line with no cable reaches nobody, moves nobody
    world.clock.spend("smu_b", 0.5)
    world.pulse("smu_a", 1, 1)
    assert world.clock.now("smu_b") == pytest.approx(1.2)  # never pulled back


def test_a_trigger_link_sweep_takes_the_masters_time():
    n, nplc = 400, 0.01
    with open_station(load_station(None)) as station:
        clock = station.simulator.world.clock
        station.prepare_sources(compliance_v=0.8, nplc=nplc, adc_gain=100)
        station.connect_pair(1)
        before = clock.timelines()
        t0 = clock.now()
        levels = np.linspace(0.0, 60e-6, n)
        raw = station.list_sweep(1, levels, levels + 1e-6, nplc=nplc)
        after = clock.timelines()
        station_s = clock.now() - t0
        samples_t = station.adc.read_samples()["t_us"]  # the same block, read again
    assert len(raw.v_a) == n
    spent = {name: after[name] - before.get(name, 0.0) for name in ("smu_a", "smu_b", "adc")}
    step_s = nplc / 60.0 + READING_OVERHEAD_S
    # The slave's :INIT (which the host waits for) then the master's whole sweep.
    assert station_s == pytest.approx(2 * INITIATE_OVERHEAD_S + n * step_s, rel=1e-9)
    assert station_s == pytest.approx(after["smu_a"] - before["<host>"], rel=1e-9)
    assert spent["smu_b"] <= spent["smu_a"] and spent["adc"] <= spent["smu_a"]
    assert station_s < spent["smu_a"] + spent["smu_b"] + spent["adc"]
    # The ADC's timestamps follow the master's steps (it waits for each pulse).
    assert np.diff(samples_t.astype(float)) == pytest.approx(step_s * 1e6, abs=1.0)
