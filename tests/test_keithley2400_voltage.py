"""Keithley 2400 voltage sourcing, the reference load and the driver's voltage side, over sockets.

A simulated station whose SMUs are cabled to a 1 kOhm reference resistor
(``Cabling.reference_load_ohm``), served on loopback; pymeasure's stock ``Keithley2400``
and labctl's subclass talk to it through labctl's VISA transport.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import replace

import numpy as np
import pytest
from pymeasure.instruments.keithley import Keithley2400 as PymeasureKeithley2400

from instruments import open_adapter
from instruments.keithley2400 import Keithley2400
from instruments.transport import WireLog
from simulators.cabling import DEFAULT_CABLING
from simulators.keithley2400 import SimKeithley2400
from simulators.station import SimulatedStation
from simulators.world import SimSettings, StationWorld

OHMS = 1000.0
NOISE_V = 20e-6  # nominal SMU read noise at 1 NPLC
REFERENCE = replace(DEFAULT_CABLING, reference_load_ohm=OHMS).validate()


@pytest.fixture(scope="module")
def served():
    """A nominal-noise station on the reference load (module-wide: every test resets)."""
    sim = SimulatedStation(SimSettings(seed=7), cabling=REFERENCE).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def smu(served, tmp_path):
    """labctl's driver on smu_a, reset, with a wire log; left safe and closed after."""
    log = WireLog(tmp_path / "smu_a.jsonl")
    k = Keithley2400(open_adapter(served.resources()["smu_a"], timeout_s=2.0, wire_log=log),
                     name="smu_a")
    k.log_file = log
    k.write("*RST;*CLS")
    try:
        yield k
    finally:
        k.shutdown()
        k.adapter.close()
        log.close()


@pytest.fixture
def stock(served):
    """pymeasure's own Keithley2400 on smu_b (\\n terminated, as over the 2400's serial port)."""
    k = PymeasureKeithley2400(open_adapter(served.resources()["smu_b"], timeout_s=2.0))
    k.clear()
    k.reset()
    try:
        yield k
    finally:
        k.reset()
        k.adapter.close()


def written(smu: Keithley2400) -> list[str]:
    smu.log_file.flush()
    return [e["w"] for e in WireLog.load(smu.log_file.path) if "w" in e]


# -- reset values as the instrument reports them -------------------------------------------
RESET = {
    "source_enabled": False, "output_off_state": "normal", "front_terminals_enabled": True,
    "current_range": 1.05e-4, "current_range_auto_enabled": True, "current_nplc": 1,
    "compliance_current": 1.05e-4, "voltage_range": 21, "voltage_range_auto_enabled": True,
    "voltage_nplc": 1, "compliance_voltage": 21, "resistance_mode_auto_enabled": True,
    "resistance_range": 2.1e5, "resistance_range_auto_enabled": True, "resistance_nplc": 1,
    "repeat_filter_enabled": True, "filter_count": 10, "filter_enabled": False,
    "auto_output_off_enabled": False, "source_mode": "voltage",
    "source_delay": 0.001,  # a real 2400 reads 1 ms, the manual says 0 (pymeasure's suite)
    "source_delay_auto_enabled": True, "source_current_range": 1.05e-4,
    "source_current_range_auto_enabled": True, "source_current": 0,
    "source_voltage_range": 21, "source_voltage_range_auto_enabled": True,
    "source_voltage": 0, "auto_zero_enabled": True, "trigger_count": 1, "arm_count": 1,
    "trigger_delay": 0, "trigger_source": "immediate", "arm_source": "immediate",
    "trigger_input_line": 1, "trigger_output_line": 2, "trigger_output_event": "none",
    "display_enabled": True, "wires": 2, "line_frequency": 60,
}


def test_reset_values_as_the_instrument_reports_them(stock):
    assert {name: getattr(stock, name) for name in RESET} == RESET
    assert stock.check_errors() == []


# -- every setting pymeasure's Keithley2400 declares -------------------------------------
SETTINGS = {
    "source_enabled": [True, False],
    "source_mode": ["voltage", "current"],
    "source_delay": [0.1],
    "source_delay_auto_enabled": [True, False],
    "auto_zero_enabled": [True, False],
    "output_off_state": ["disconnected", "normal", "zero", "guard"],
    "auto_output_off_enabled": [True, False],
    "filter_enabled": [True, False],
    "repeat_filter_enabled": [True, False],
    "filter_count": [10, 55],
    "current_range": [1.05e-4, 1.05e-2],
    "current_range_auto_enabled": [True, False],
    "current_nplc": [1.0, 0.5],
    "compliance_current": [0.01],
    "source_current": [0.002],
    "source_current_range": [0.0105],
    "source_current_range_auto_enabled": [True, False],
    "voltage_range": [21.0, 2.1],
    "voltage_range_auto_enabled": [True, False],
    "voltage_nplc": [1.0, 2.0],
    "compliance_voltage": [1.0],
    "source_voltage": [1.5],
    "source_voltage_range": [2.1],
    "source_voltage_range_auto_enabled": [True, False],
    "resistance_mode_auto_enabled": [True, False],
    "resistance_range": [2100.0],
    "resistance_range_auto_enabled": [True, False],
    "resistance_nplc": [1.0],
    "trigger_delay": [0.5],
    "arm_timer": [1.0],
    "trigger_source": ["immediate", "trigger_link"],
    "arm_source": ["immediate", "trigger_link", "timer", "manual", "bus"],
    "trigger_output_event": ["source", "delay", "sense", "none"],
    "arm_output_event": ["trigger_enter", "trigger_exit", "none"],
    "trigger_input_line": [2],
    "arm_input_line": [3],
    "trigger_output_line": [4],
    "arm_output_line": [1],
    "display_enabled": [True, False],
    "wires": [4, 2],
    "line_frequency": [50, 60],
    "line_frequency_auto_enabled": [True, False],
    "front_terminals_enabled": [True, False],
    "buffer_points": [64],
    "trigger_count": [10],
    "arm_count": [5],
}
# Settable in name only: measurements and queries, and the deprecated aliases.
NOT_SETTINGS = {"complete", "current", "id", "maximums", "means", "minimums", "next_error",
                "options", "resistance", "standard_devs", "status", "voltage"}


def test_the_table_covers_every_setting_pymeasure_declares():
    declared = set()
    for name in dir(PymeasureKeithley2400):
        attr = inspect.getattr_static(PymeasureKeithley2400, name)
        if isinstance(attr, property) and attr.fset is not None:
            if ".. deprecated::" in (attr.__doc__ or "") and name != "output_off_state":
                continue  # output_off_state deprecates old values, not itself
            declared.add(name)
    assert declared - NOT_SETTINGS == set(SETTINGS)


@pytest.mark.parametrize("cls", [PymeasureKeithley2400, Keithley2400], ids=["pymeasure", "labctl"])
def test_every_setting_reads_back_with_an_empty_error_queue(served, cls):
    k = cls(open_adapter(served.resources()["smu_b"], timeout_s=2.0))
    try:
        for name, values in SETTINGS.items():
            for value in values:
                k.reset()
                setattr(k, name, value)
                got = getattr(k, name)
                assert got == pytest.approx(value) if isinstance(value, float) else got == value, (
                    name, value, got)
                assert k.check_errors() == [], (name, value)
    finally:
        k.reset()
        k.adapter.close()


# -- sourcing into the reference load ------------------------------------------------------
def test_current_sourcing_into_the_reference_load(smu):
    smu.prepare_current_source(compliance_v=2.0, nplc=1)
    for amps in (0.0, 20e-6, 40e-6, -40e-6):
        smu.ramp_to(amps)
        r = smu.measure_once()
        assert r.current[0] == amps and not r.compliance[0]
        assert r.voltage[0] == pytest.approx(amps * OHMS, abs=6 * NOISE_V)


def test_voltage_sourcing_into_the_reference_load(smu):
    smu.prepare_voltage_source(compliance_a=1e-3, nplc=1)
    for volts in (0.05, 0.1, 0.3, -0.3):
        smu.ramp_voltage_to(volts, 0.05)
        r = smu.measure_once()
        assert r.voltage[0] == pytest.approx(volts, abs=6 * NOISE_V)
        assert r.current[0] == pytest.approx(volts / OHMS, abs=6 * NOISE_V / OHMS)
        assert r.voltage[0] / r.current[0] == pytest.approx(OHMS, rel=2e-3)
        assert not r.compliance[0] and not r.status[0] & (1 << 15)  # not an I-source
    assert smu.ask(":SENS:CURR:PROT:TRIP?").strip() == "0"
    smu.check_errors_raise()


def test_compliance_bit_when_the_current_limit_clamps(smu):
    smu.prepare_voltage_source(compliance_a=100e-6, nplc=1)
    smu.ramp_voltage_to(0.5, 0.05)
    r = smu.measure_once()
    # 0.5 V into 1 kOhm wants 500 uA: the source sits at the voltage of 100 uA instead.
    assert r.compliance[0]
    assert r.current[0] == pytest.approx(100e-6, abs=6 * NOISE_V / OHMS)
    assert r.voltage[0] == pytest.approx(0.1, abs=6 * NOISE_V)
    assert smu.ask(":SENS:CURR:PROT:TRIP?").strip() == "1"
    assert smu.source_voltage == 0.5  # the programmed level stays


def test_voltage_sweeps_list_and_staircase(smu):
    smu.prepare_voltage_source(compliance_a=1e-3, nplc=1)
    smu.write(":SOUR:VOLT:MODE LIST;:SOUR:LIST:VOLT 0.1,0.2,0.3;:TRIG:COUN 3")
    rows = np.array(smu.values(":READ?")).reshape(-1, 5)
    assert rows[:, 1] == pytest.approx([1e-4, 2e-4, 3e-4], abs=1e-7)
    smu.write(":SOUR:VOLT:STAR -0.2;:SOUR:VOLT:STOP 0.2;:SOUR:SWE:POIN 5;:SOUR:VOLT:MODE SWE;"
              ":TRIG:COUN 5")
    rows = np.array(smu.values(":READ?")).reshape(-1, 5)
    assert rows[:, 0] == pytest.approx([-0.2, -0.1, 0.0, 0.1, 0.2], abs=1e-4)
    assert rows[:, 1] == pytest.approx(rows[:, 0] / OHMS, abs=1e-7)
    smu.write(":SOUR:VOLT:MODE FIX;:TRIG:COUN 1")
    assert abs(smu.measure_once().voltage[0]) < 1e-4  # back at the fixed level, 0 V
    smu.check_errors_raise()


# -- safety: caps and the shutdown from a voltage source ---------------------------------
def test_voltage_caps_refuse_before_anything_is_sent(smu):
    smu.limit_voltage_source(max_abs_v=0.8, max_compliance_a=100e-6)
    with pytest.raises(ValueError):
        smu.prepare_voltage_source(compliance_a=200e-6)
    smu.prepare_voltage_source(compliance_a=100e-6)
    before = written(smu)
    with pytest.raises(ValueError):
        smu.source_voltage = 0.9
    with pytest.raises(ValueError):
        smu.ramp_voltage_to(-0.81)
    with pytest.raises(ValueError):
        smu.compliance_current = 1e-3
    assert written(smu) == before
    assert smu.ask(":SOUR:VOLT?;:SENS:CURR:PROT?").strip() == "0.000000E+00;1.000000E-04"
    with pytest.raises(ValueError):
        smu.limit_voltage_source(max_abs_v=300, max_compliance_a=1e-3)


def test_shutdown_from_a_voltage_source_ramps_then_turns_off_confirmed(smu, served):
    smu.prepare_voltage_source(compliance_a=1e-3, nplc=1)
    smu.ramp_voltage_to(0.3, 0.05)
    state = smu.present_state()
    assert state == (True, "VOLT", 0.3)
    start = len(written(smu))
    report = smu.shutdown()
    assert report.confirmed, report.problems
    assert report.state["before"] == {"function": "VOLT", "level": 0.3}
    sent = written(smu)[start:]
    steps = [float(w.split()[1]) for w in sent if w.startswith(":SOUR:VOLT ")]
    assert steps[-1] == 0.0 and max(np.abs(np.diff([0.3, *steps]))) <= smu.ramp_step_v + 1e-12
    assert sent.index(":OUTP OFF") > sent.index(":SOUR:VOLT 0")
    bus = served.world.buses["A"]
    assert not bus.on and bus.current == 0.0
    assert smu.ask(":OUTP?;:SOUR:VOLT?;:SOUR:CURR?").strip() == "0;0.000000E+00;0.000000E+00"


def test_ramp_to_zero_from_a_voltage_source_then_a_current_source_starts_at_zero(smu, served):
    # A channel left sourcing voltage with a stale current level stored.
    smu.write(":SOUR:CURR 50e-6;:SOUR:FUNC VOLT;:SENS:CURR:PROT 1e-3;:SOUR:VOLT 0.2;:OUTP ON")
    assert smu.present_state() == (True, "VOLT", 0.2)
    smu.ramp_to(0.0)
    assert smu.present_state() == (True, "VOLT", 0.0)
    smu.prepare_current_source(compliance_v=1.0)
    assert served.world.buses["A"].current == 0.0  # no jump to the stale 50 uA
    assert smu.present_state() == (True, "CURR", 0.0)


# -- physics on the world ---------------------------------------------------------------------
def test_open_circuit_voltage_source_reads_zero_current():
    world = StationWorld(SimSettings(seed=2))
    k = SimKeithley2400(world, "A")
    reply = k.handle(":SOUR:VOLT 0.5;:SENS:FUNC:ALL;:OUTP ON;:READ?")
    v, i, r, _, status = (float(x) for x in reply.split(","))
    assert v == pytest.approx(0.5, abs=1e-4) and abs(i) < 2e-9 and not int(status) & 8
    assert k.handle(":SYST:ERR?") == '0,"No error"'


def test_voltage_bias_of_a_device_in_compliance_sits_at_the_compliance_current():
    world = StationWorld(SimSettings(seed=2, variability="ideal"))
    world.set_contact(True)
    world.set_closed({"1A01"})
    k = SimKeithley2400(world, "A")
    k.handle(":SOUR:VOLT 0.9;:SENS:CURR:PROT 50e-6;:SENS:FUNC:ALL;:OUTP ON")
    v, i, _, _, status = (float(x) for x in k.handle(":READ?").split(","))
    assert int(status) & 8 and i == pytest.approx(50e-6, rel=1e-9)
    model_v = world.chip.ideal_voltage_one(0, 0, 50e-6)
    assert v == pytest.approx(model_v, abs=1e-6)  # 7 digits on the wire
    assert world.chip.max_abs_v[0, 0] == pytest.approx(model_v, rel=1e-9)  # bias recorded


def test_a_switched_reference_is_connected_only_through_its_channel():
    cabling = replace(DEFAULT_CABLING, reference_load_ohm=OHMS,
                      reference_channels=("1A00", "1B00")).validate()
    world = StationWorld(SimSettings(seed=2, variability="ideal"), cabling)
    assert "1A00" in world.channels()
    world.drive_voltage("A", 0.1, 1e-3)
    assert world.buses["A"].current == 0.0  # open: nothing closed
    world.set_closed({"1A00"})
    assert world.buses["A"].current == pytest.approx(1e-4, rel=1e-12)
    world.set_contact(True)
    world.set_closed({"1A00", "1A01"})  # the device in parallel with the resistor
    device = world._device_current_one(0, 0, 0.1)
    assert world.buses["A"].current == pytest.approx(1e-4 + device, rel=1e-9)
    world.drive("A", 2 * (1e-4 + device), 0.15)  # twice that current needs > 0.15 V
    state = world.buses["A"]
    assert state.in_compliance and state.voltage == 0.15
    assert not math.isnan(state.current) and state.current < 2 * (1e-4 + device)


def test_reference_cabling_is_validated():
    for bad, message in (
        (dict(reference_load_ohm=0.0), "positive"),
        (dict(reference_load_ohm=1e3, reference_channels=("1A01",)), "column 00"),
        (dict(reference_channels=("1A00",)), "without a reference_load_ohm"),
    ):
        with pytest.raises(ValueError, match=message):
            replace(DEFAULT_CABLING, **bad).validate()


def test_an_opened_station_caps_voltage_sourcing_at_its_pair_limits():
    from labctl.station.file import load_station
    from labctl.station.runtime import open_station

    station = open_station(load_station(None))  # max_current_a 100 uA, compliance_v 0.8 V
    try:
        for name in ("smu_a", "smu_b"):
            smu = station.instruments[name]
            assert (smu.voltage_cap_v, smu.compliance_cap_a) == (0.8, 100e-6)
            # 20 uA ramp steps through the 2 kOhm lowest rated device resistance.
            assert smu.ramp_step_v == pytest.approx(0.04)
            with pytest.raises(ValueError):
                smu.source_voltage = 0.81
            with pytest.raises(ValueError):
                smu.prepare_voltage_source(compliance_a=101e-6)
    finally:
        station.close()


def test_a_voltage_list_steps_on_the_trigger_link_like_a_current_list():
    world = StationWorld(SimSettings(seed=2, variability="ideal"), REFERENCE)
    master, slave = SimKeithley2400(world, "A"), SimKeithley2400(world, "B")
    slave.handle(":SENS:CURR:PROT 1e-3;:SENS:FUNC:ALL;:OUTP ON;:SOUR:VOLT:MODE LIST;"
                 ":SOUR:LIST:VOLT 0.1,0.2,0.3;:TRIG:COUN 3;:TRIG:SOUR TLIN;:TRIG:ILIN 1;:INIT")
    master.handle(":SOUR:FUNC CURR;:SENS:VOLT:PROT 1;:SENS:FUNC 'VOLT';:OUTP ON;"
                  ":SOUR:CURR:MODE LIST;:SOUR:LIST:CURR 1e-5,2e-5,3e-5;:TRIG:COUN 3;"
                  ":TRIG:OUTP SOUR;:TRIG:OLIN 1")
    master_rows = np.array([float(x) for x in master.handle(":READ?").split(",")]).reshape(-1, 5)
    rows = np.array([float(x) for x in slave.handle(":FETC?").split(",")]).reshape(-1, 5)
    assert master_rows[:, 0] == pytest.approx([0.01, 0.02, 0.03], abs=1e-9)
    assert rows[:, 0] == pytest.approx([0.1, 0.2, 0.3]) and rows[:, 1] == pytest.approx(
        [1e-4, 2e-4, 3e-4], rel=1e-6)
    assert world.buses["B"].voltage == 0.0 and world.buses["B"].source == "VOLT"  # bias: 0 V
    assert slave.handle(":SYST:ERR?") == '0,"No error"'
