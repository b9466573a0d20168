"""The simulated Keithley 2400: SCPI behaviour on ``handle()`` and end to end over sockets."""

from __future__ import annotations

import socket
import threading
import time
import warnings

import numpy as np
import pytest

from simulators import keithley2400 as k2400
from simulators.keithley2400 import (
    INITIATE_OVERHEAD_S,
    READING_OVERHEAD_S,
    SOURCE_CHANGE_S,
    SimKeithley2400,
)
from simulators.mtj import voltage
from simulators.server import TcpServer
from simulators.world import StationWorld

NOISE_V = 20e-6  # nominal SMU read noise at 1 NPLC
NAN = 9.91e37


def readings(reply: str, n_elements: int = 5) -> np.ndarray:
    """A reading reply as rows of elements."""
    return np.array([float(v) for v in reply.split(",")]).reshape(-1, n_elements)


def device_voltage(world: StationWorld, bus: str, pair: int, current) -> np.ndarray:
    """Model voltage (V) of the device on ``bus`` of pair ``pair`` (0-based) at ``current``."""
    dev = 0 if bus == "A" else 1
    params = world.chip.params.take((np.array([pair]), np.array([dev])))
    return np.asarray(voltage(params, np.asarray(current, dtype=float)))


def errors(smu: SimKeithley2400) -> list[int]:
    """Codes of every queued error, oldest first (empties the queue)."""
    codes = [int(c) for c in smu.handle(":SYST:ERR:CODE:ALL?").split(",")]
    return [] if codes == [0] else codes


@pytest.fixture
def world() -> StationWorld:
    w = StationWorld()
    w.set_contact(True)
    w.set_closed({"1A01", "1B01"})
    return w


@pytest.fixture
def smu(world: StationWorld) -> SimKeithley2400:
    return SimKeithley2400(world, "A")


def source_current(smu: SimKeithley2400, amps: float = 40e-6, compliance: float = 2.0) -> None:
    smu.handle(f":SOUR:FUNC CURR;:SOUR:CURR {amps};:SENS:VOLT:PROT {compliance}")
    smu.handle(":SENS:FUNC 'VOLT';:OUTP ON")


# -- identity and reset defaults ---------------------------------------------------------
def test_idn(smu):
    assert smu.handle("*IDN?") == (
        "KEITHLEY INSTRUMENTS INC.,MODEL 2400,4000001,C30   Mar 17 2006 09:29:29/A02  /K/J"
    )
    other = SimKeithley2400(smu.world, "B", serial="4000002")
    assert other.handle("*idn?").split(",")[2] == "4000002"


RESET_REPLIES = {
    ":SOUR:FUNC?": "VOLT",
    ":SOUR:VOLT?": "0.000000E+00",
    ":SOUR:CURR?": "0.000000E+00",
    ":SOUR:VOLT:RANG?": "2.100000E+01",
    ":SOUR:VOLT:RANG:AUTO?": "1",
    ":SOUR:CURR:RANG?": "1.050000E-04",
    ":SOUR:CURR:RANG:AUTO?": "1",
    ":SOUR:CURR:MODE?": "FIX",
    ":SOUR:DEL?": "1.000000E-03",  # the manual says 0; a real 2400 reads 1 ms (pymeasure)
    ":SOUR:DEL:AUTO?": "1",
    ":SOUR:CLE:AUTO?": "0",
    ":SENS:FUNC:CONC?": "1",
    ":SENS:FUNC?": '"CURR:DC"',
    ":SENS:CURR:PROT?": "1.050000E-04",
    ":SENS:VOLT:PROT?": "2.100000E+01",
    ":SENS:CURR:RANG?": "1.050000E-04",
    ":SENS:CURR:RANG:AUTO?": "1",
    ":SENS:VOLT:RANG?": "2.100000E+01",
    ":SENS:VOLT:RANG:AUTO?": "1",
    ":SENS:RES:RANG?": "2.100000E+05",
    ":SENS:RES:MODE?": "AUTO",
    ":SENS:CURR:NPLC?": "1.000000E+00",
    ":SENS:VOLT:NPLC?": "1.000000E+00",
    ":SENS:AVER?": "0",
    ":SENS:AVER:TCON?": "REP",
    ":SENS:AVER:COUN?": "10",
    ":OUTP?": "0",
    ":OUTP:SMOD?": "NORM",
    ":FORM:DATA?": "ASC",
    ":FORM:ELEM?": "VOLT,CURR,RES,TIME,STAT",
    ":TRIG:COUN?": "1",
    ":TRIG:DEL?": "0.000000E+00",
    ":TRIG:SOUR?": "IMM",
    ":TRIG:ILIN?": "1",
    ":TRIG:OLIN?": "2",
    ":TRIG:OUTP?": "NONE",
    ":ARM:COUN?": "1",
    ":ARM:SOUR?": "IMM",
    ":SYST:AZER?": "1",
    ":SYST:LFR?": "60",
    ":DISP:ENAB?": "1",
    ":ROUT:TERM?": "FRON",
    ":CALC3:FORM?": "MEAN",
}


def test_reset_defaults(smu):
    smu.handle(":SOUR:FUNC CURR;:SOUR:CURR 1e-5;:SENS:VOLT:PROT 3;:SENS:CURR:NPLC 5")
    smu.handle(":OUTP ON;:TRIG:COUN 7;:FORM:ELEM VOLT;:SENS:FUNC 'VOLT','RES';:TRIG:SOUR TLIN")
    smu.handle(":TRAC:POIN 50;:SOUR:CURR:MODE LIST")
    smu.handle("*RST")
    for query, expected in RESET_REPLIES.items():
        assert smu.handle(query) == expected, query
    assert smu.handle(":TRAC:POIN?") == "50"  # *RST leaves the TRACe subsystem alone
    assert not smu.world.buses["A"].on
    assert errors(smu) == []


def test_trace_power_on_defaults(smu):
    assert smu.handle(":TRAC:POIN?;:TRAC:FEED:CONT?;:TRAC:POIN:ACT?") == "100;NEV;0"


# -- parser ------------------------------------------------------------------------------
def test_short_long_forms_case_and_optional_nodes(smu):
    smu.handle(":source:current:level:immediate:amplitude 1.5e-6")
    assert smu.handle(":SOUR:CURR?") == "1.500000E-06"
    smu.handle(":SOUR1:CURR:LEV 2e-6")
    assert smu.handle(":SOURCE:CURRENT:LEVEL:IMMEDIATE:AMPLITUDE?") == "2.000000E-06"
    smu.handle("SENSE1:CURRENT:DC:NPLCYCLES 2")
    assert smu.handle(":sens:volt:nplc?") == "2.000000E+00"  # NPLC is global
    assert smu.handle(":TRIG:SEQ1:COUN 3;:ARM:SEQ:LAY1:COUN?;:TRIG:COUN?") == "1;3"
    smu.handle(":SOUR:CURRE 1e-6")  # neither short nor long form
    assert errors(smu) == [-113]


def test_compound_messages_and_relative_paths(smu):
    smu.handle(":SENS:CURR:NPLC 2;PROT 1e-3")  # PROT is relative to :SENS:CURR
    assert smu.handle(":SENS:CURR:NPLC?;PROT?") == "2.000000E+00;1.000000E-03"
    # Common commands leave the path alone; a leading ':' returns to the root.
    smu.handle(":SOUR:CURR 3e-6")
    assert smu.handle(":SOUR:CURR?;*OPC?;CURR?;:SYST:LFR?") == "3.000000E-06;1;3.000000E-06;60"
    smu.handle(":SENS:CURR:PROT 2e-3;:PROT 1")
    assert errors(smu) == [-113]
    assert smu.handle(":SENS:CURR:PROT?") == "2.000000E-03"
    smu.handle(":FORM:ELEM VOLTAGE, CURRENT, RESISTANCE, TIME, STATUS;")  # pymeasure's
    assert smu.handle(':SENS:FUNC "VOLT","CURR:DC";:SENS:FUNC?') == '"VOLT:DC","CURR:DC"'
    assert errors(smu) == []


def test_error_numbers_and_no_state_change(smu):
    smu.handle(":SOUR:FUNC CURR;:SOUR:CURR 1e-5")
    smu.handle(":NOT:A:COMMAND")
    smu.handle(":SOUR:CURR abc")
    smu.handle(":SOUR:CURR 2")
    smu.handle(":SOUR:CURR")
    smu.handle(":SOUR:CURR 1,2")
    smu.handle(":SENS:FUNC VOLT")  # function names are strings
    smu.handle(":SOUR:CURR:MODE BOGUS")
    assert errors(smu) == [-113, -104, -222, -109, -108, -104, -224]
    assert smu.handle(":SOUR:CURR?;:SENS:FUNC?;:SOUR:CURR:MODE?") == '1.000000E-05;"CURR:DC";FIX'
    # A failing command in the middle of a message: the others still run.
    assert smu.handle(":SOUR:CURR 2e-5;:BOGUS;:SOUR:CURR?") == "2.000000E-05"
    assert errors(smu) == [-113]
    assert smu.handle(":SYST:ERR?") == '0,"No error"'
    assert smu.handle(":SYST:ERR:NEXT?") == '0,"No error"'


def test_error_queue_overflow_and_status(smu):
    for _ in range(12):
        smu.handle(":BOGUS")
    assert smu.handle(":SYST:ERR:COUN?") == "10"
    assert int(smu.handle("*STB?")) & 4  # error available
    assert int(smu.handle("*ESR?")) & 32  # command error
    assert errors(smu) == [-113] * 9 + [-350]
    smu.handle(":BOGUS;*CLS")
    assert smu.handle(":SYST:ERR?;*ESR?;*STB?") == '0,"No error";0;0'


def test_voltage_sourcing_drives_the_device(smu, world):
    # The reset state is a voltage source; 0.1 V across device A of pair 1.
    assert smu.handle(":SOUR:FUNC?") == "VOLT"
    smu.handle(":SOUR:VOLT 0.1;:SENS:CURR:PROT 1e-3;:OUTP ON")
    v, i, r, _, status = readings(smu.handle(":MEAS:CURR?"))[0]
    assert errors(smu) == []
    assert v == 0.1 and not int(status) & 8 and not int(status) & (1 << 15)
    assert float(device_voltage(world, "A", 0, i)[0]) == pytest.approx(0.1, abs=1e-5)
    # Switching the function with the output on sources the new function's level.
    smu.handle(":SOUR:CURR 20e-6;:SOUR:FUNC CURR")
    assert world.buses["A"].source == "CURR" and world.buses["A"].current == 20e-6
    smu.handle(":SOUR:FUNC VOLT")
    assert world.buses["A"].source == "VOLT" and world.buses["A"].voltage == 0.1
    assert smu.handle(":SOUR:FUNC?;:OUTP?") == "VOLT;1"


def test_ranges_and_levels(smu):
    smu.handle(":SOUR:FUNC CURR;:SOUR:CURR 5e-4")
    assert smu.handle(":SOUR:CURR:RANG?") == "1.050000E-03"  # auto range follows the level
    smu.handle(":SOUR:CURR:RANG 1e-2")
    assert smu.handle(":SOUR:CURR:RANG?;RANG:AUTO?") == "1.050000E-02;0"
    smu.handle(":SOUR:CURR 2e-2")  # beyond the fixed range
    smu.handle(":SOUR:CURR:RANG 1e-5")  # the level would not fit
    assert errors(smu) == [-222, -221]
    assert smu.handle(":SOUR:CURR?;:SOUR:CURR? MAX;:SOUR:CURR? DEF") == (
        "5.000000E-04;1.050000E+00;0.000000E+00"
    )
    smu.handle(":SENS:CURR:NPLC 11")
    smu.handle(":TRIG:COUN 2501")
    smu.handle(":SOUR:VOLT 211")
    assert errors(smu) == [-222, -222, -222]
    smu.handle(":TRIG:COUN 2500;:SENS:VOLT:PROT MAX")
    assert smu.handle(":TRIG:COUN?;:SENS:VOLT:PROT?") == "2500;2.100000E+02"


def test_list_limits(smu):
    hundred = ",".join(f"{k * 1e-7:g}" for k in range(100))
    smu.handle(f":SOUR:LIST:CURR {hundred}")
    assert smu.handle(":SOUR:LIST:CURR:POIN?") == "100"
    smu.handle(f":SOUR:LIST:CURR {hundred},1e-6")  # 101 values in one command
    assert errors(smu) == [-223]
    assert smu.handle(":SOUR:LIST:CURR:POIN?") == "100"
    for _ in range(24):
        smu.handle(f":SOUR:LIST:CURR:APP {hundred}")
    assert smu.handle(":SOUR:LIST:CURR:POIN?") == "2500"
    smu.handle(":SOUR:LIST:CURR:APP 1e-6")
    smu.handle(":SOUR:LIST:CURR 1e-6,2")  # out of range: the whole list is refused
    assert errors(smu) == [-223, -222]
    assert smu.handle(":SOUR:LIST:CURR:POIN?") == "2500"
    smu.handle(":SOUR:LIST:CURR 1e-6, 2e-6")
    assert smu.handle(":SOUR:LIST:CURR?") == "1.000000E-06,2.000000E-06"


# -- physics -----------------------------------------------------------------------------
def test_reading_matches_device_model(smu, world):
    source_current(smu, 40e-6)
    v, i, r, t, status = readings(smu.handle(":READ?"))[0]
    expected = device_voltage(world, "A", 0, 40e-6)[0]
    assert abs(v - expected) < 5 * NOISE_V
    assert i == 40e-6
    assert r == NAN  # RES is not a sense function
    assert int(status) & 8 == 0
    assert world.buses["A"].on and world.buses["A"].set_current == 40e-6


def test_compliance_bit(smu, world):
    source_current(smu, 40e-6, compliance=2.0)
    world.set_contact(False)  # an open bus: the source runs into its compliance
    v, i, _, _, status = readings(smu.handle(":READ?"))[0]
    assert int(status) & 8
    assert abs(v - 2.0) < 5 * NOISE_V
    assert i == 0.0  # measured: nothing flows
    smu.handle(":SENS:FUNC:OFF 'CURR'")
    assert readings(smu.handle(":READ?"))[0][1] == 40e-6  # not measured: the programmed value
    assert smu.handle(":SENS:VOLT:PROT:TRIP?") == "1"
    world.set_contact(True)
    assert int(readings(smu.handle(":READ?"))[0][4]) & 8 == 0


def test_output_off_behaviour(smu, world):
    smu.handle(":SOUR:FUNC CURR;:SOUR:CURR 20e-6;:SENS:VOLT:PROT 2")
    assert smu.handle(":READ?") is None  # output off, auto output-off disabled
    smu.handle(":INIT")
    assert errors(smu) == [803, 803]
    assert smu.handle(":FETC?") is None  # nothing measured since *RST
    assert errors(smu) == [-230]
    assert not world.buses["A"].on
    # :MEAS? turns the output on and leaves it on.
    assert readings(smu.handle(":MEAS:VOLT?"))[0][0] > 0
    assert smu.handle(":OUTP?") == "1" and world.buses["A"].on
    # Turning off releases the bus whatever the output-off state.
    for state in ("HIMP", "NORM", "ZERO", "GUAR"):
        smu.handle(f":OUTP:SMOD {state};:OUTP ON")
        assert world.buses["A"].set_current == 20e-6
        smu.handle(":OUTP OFF")
        assert not world.buses["A"].on and world.buses["A"].current == 0.0
    # Auto output-off: each reading turns the source on and off again.
    smu.handle(":SOUR:CLE:AUTO ON")
    assert readings(smu.handle(":READ?"))[0][0] > 0
    assert not world.buses["A"].on and smu.handle(":OUTP?") == "0"
    assert errors(smu) == []


def test_level_change_redrives_and_time_model(smu, world):
    source_current(smu, 10e-6)
    start = world.clock.now()
    smu.handle(":SOUR:CURR 30e-6")
    assert world.clock.now() - start == pytest.approx(SOURCE_CHANGE_S)
    assert world.buses["A"].set_current == 30e-6
    smu.handle(":SENS:VOLT:PROT 1.5")
    assert world.buses["A"].compliance_v == 1.5
    start = world.clock.now()
    smu.handle(":SENS:CURR:NPLC 2;:TRIG:COUN 3;:READ?")
    step = READING_OVERHEAD_S
    assert world.clock.now() - start == pytest.approx(INITIATE_OVERHEAD_S + 3 * (2 / 60 + step))
    start = world.clock.now()
    smu.handle(":SOUR:DEL 0.01;:SYST:LFR 50;:READ?")
    assert world.clock.now() - start == pytest.approx(
        INITIATE_OVERHEAD_S + 3 * (0.01 + 2 / 50 + step)
    )
    t = readings(smu.handle(":FETC?"))[:, 3]
    assert np.all(np.diff(t) > 0)


def test_format_elements_follow_the_2400_order(smu):
    source_current(smu, 10e-6)
    smu.handle(":FORM:ELEM STAT,CURR,VOLT")
    assert smu.handle(":FORM:ELEM?") == "VOLT,CURR,STAT"
    v, i, status = (float(x) for x in smu.handle(":READ?").split(","))
    assert 0 < v < 1 and i == 10e-6 and int(status) & (1 << 15)


def test_list_sweep_trace_buffer_and_statistics(smu, world):
    source_current(smu, 0.0)
    smu.handle(":SOUR:CURR:MODE LIST;:SOUR:LIST:CURR 10e-6,20e-6,30e-6;:TRIG:COUN 6")
    smu.handle(":TRAC:CLE;:TRAC:POIN 6;:TRAC:FEED SENS;:TRAC:FEED:CONT NEXT;:STAT:MEAS:ENAB 512")
    smu.handle("*SRE 1")
    rows = readings(smu.handle(":READ?"))
    assert list(rows[:, 1]) == [10e-6, 20e-6, 30e-6] * 2  # the list wraps
    expected = device_voltage(world, "A", 0, rows[:, 1])
    assert np.all(np.abs(rows[:, 0] - expected) < 5 * NOISE_V)
    assert world.buses["A"].set_current == 0.0  # back to the bias level
    assert int(smu.handle("*STB?")) & 65 == 65  # buffer full, as pymeasure polls it
    assert smu.handle(":TRAC:POIN:ACT?;:TRAC:FEED:CONT?") == "6;NEV"
    trace = readings(smu.handle(":TRAC:DATA?"))
    assert trace[0, 3] == 0.0 and np.allclose(trace[:, :3], rows[:, :3])
    mean_v, mean_i, mean_r = (float(x) for x in smu.handle(":CALC3:DATA?").split(","))
    assert mean_v == pytest.approx(rows[:, 0].mean(), abs=1e-6) and mean_r == NAN


def test_trigger_link_master_and_slave(world):
    smu_a = SimKeithley2400(world, "A")
    smu_b = SimKeithley2400(world, "B", serial="4000002")
    levels = [10e-6, 25e-6, 40e-6, 55e-6, 70e-6]
    for smu in (smu_a, smu_b):
        source_current(smu, 0.0)
        smu.handle(":SENS:FUNC 'CURR';:SOUR:CURR:MODE LIST;:TRIG:COUN 5")
        smu.handle(":SOUR:LIST:CURR " + ",".join(f"{x:g}" for x in levels))
        smu.handle(":TRAC:CLE;:TRAC:POIN 5;:TRAC:FEED:CONT NEXT")
    smu_b.handle(":TRIG:SOUR TLIN;:TRIG:ILIN 1;:INIT")
    smu_b.handle(":INIT")  # already armed
    assert errors(smu_b) == [-213]
    seen = []  # an acquirer on the ADC's trigger input sees both sources' new levels
    world.subscribe_trigger(
        "adc", 1, lambda step: seen.append((world.buses["A"].current, world.buses["B"].current)),
        10,
    )
    smu_a.handle(":TRIG:OUTP SOUR;:TRIG:OLIN 1")
    a_rows = readings(smu_a.handle(":READ?"))
    b_rows = readings(smu_b.handle(":FETC?"))
    assert seen == [(x, x) for x in levels]
    for bus, rows in (("A", a_rows), ("B", b_rows)):
        assert list(rows[:, 1]) == levels
        expected = device_voltage(world, bus, 0, levels)
        assert np.all(np.abs(rows[:, 0] - expected) < 5 * NOISE_V), bus
    smu_b_trace = readings(smu_b.handle(":TRAC:DATA?"))
    assert np.allclose(smu_b_trace[:, :3], b_rows[:, :3])
    assert np.allclose(readings(smu_a.handle(":TRAC:DATA?"))[:, :3], a_rows[:, :3])
    # Both return to their bias level; the slave is idle again.
    assert world.buses["A"].set_current == 0.0 and world.buses["B"].set_current == 0.0
    smu_a.handle(":READ?")
    assert readings(smu_b.handle(":FETC?")).shape == (5, 5)
    assert errors(smu_a) == [] and errors(smu_b) == []


def test_slave_fetch_waits_for_the_master(world, monkeypatch):
    smu_a = SimKeithley2400(world, "A")
    smu_b = SimKeithley2400(world, "B")
    for smu in (smu_a, smu_b):
        source_current(smu, 20e-6)
        smu.handle(":TRIG:COUN 3")
    smu_b.handle(":TRIG:SOUR TLIN;:INIT")
    replies = []
    waiter = threading.Thread(target=lambda: replies.append(smu_b.handle(":FETC?")))
    waiter.start()
    time.sleep(0.1)  # the slave's :FETC? is waiting now, without the world lock
    smu_a.handle(":TRIG:OUTP SOUR;:TRIG:OLIN 1;:READ?")
    waiter.join(timeout=5)
    assert not waiter.is_alive() and readings(replies[0]).shape == (3, 5)
    # Without pulses the wait ends in -230 and no reply; :ABOR disarms.
    monkeypatch.setattr(k2400, "FETCH_WAIT_S", 0.05)
    smu_b.handle(":INIT")
    assert smu_b.handle(":FETC?") is None
    assert errors(smu_b) == [-230]
    smu_b.handle(":ABOR;:TRIG:SOUR IMM")
    assert readings(smu_b.handle(":READ?")).shape == (3, 5)


def _list_read_s(smu, points: int) -> float:
    """The quickest of three ``:READ?`` of a ``points``-point list sweep (s of this thread's
    CPU time: on a loaded machine, wall time also counts the time slices others had)."""
    values = ",".join(["1e-6"] * 100)
    smu.handle(f":SOUR:CURR:MODE LIST;:SOUR:LIST:CURR {values};:TRIG:COUN {points}")
    for _ in range(points // 100 - 1):
        smu.handle(f":SOUR:LIST:CURR:APP {values}")
    best = float("inf")
    for _ in range(3):
        start = time.thread_time()
        reply = smu.handle(":READ?")
        best = min(best, time.thread_time() - start)
        assert readings(reply).shape == (points, 5)
    return best


def test_long_list_sweep_is_fast(smu, world):
    """A list sweep's cost grows linearly with its points: 10x the points within 30x the
    CPU time (a cost per point that grew with the list would give 100x), timed side by side
    on this machine; and 2500 points well under the second a client would notice."""
    world.set_contact(False)  # time the SMU itself, not the device model's solver
    source_current(smu, 0.0)
    short, long = _list_read_s(smu, 250), _list_read_s(smu, 2500)
    assert long < 30 * short, (short, long)
    assert long < 2.0, long


# -- end to end over sockets -------------------------------------------------------------
@pytest.fixture
def server(smu):
    srv = TcpServer(smu).start()
    yield srv
    srv.stop()


def test_pymeasure_keithley2400_end_to_end(server, world):
    from pymeasure.instruments.keithley import Keithley2400

    k = Keithley2400(
        server.resource, visa_library="@py", read_termination="\n", write_termination="\n"
    )
    try:
        k.reset()
        assert k.id.startswith("KEITHLEY INSTRUMENTS INC.,MODEL 2400,")
        assert k.source_mode == "voltage"
        assert k.compliance_voltage == 21.0
        assert k.compliance_current == 105e-6
        assert k.current_nplc == 1.0
        assert k.source_enabled is False
        assert k.auto_output_off_enabled is False
        assert k.output_off_state == "normal"
        assert k.line_frequency == 60
        assert k.trigger_count == 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecated helpers, still used
            k.apply_current()
            k.compliance_voltage = 2.0
            k.source_current = 40e-6
            k.enable_source()
            k.measure_voltage()
        assert k.source_mode == "current" and k.source_enabled is True
        expected = device_voltage(world, "A", 0, 40e-6)[0]
        assert abs(k.voltage - expected) < 5 * NOISE_V
        assert k.current == 40e-6
        assert k.check_errors() == []
        k.write(":SOUR:CURR:BOGUS 1")
        assert k.next_error[0] == -113
        assert k.check_errors() == []
    finally:
        k.adapter.close()


def test_client_disconnecting_mid_line(server):
    with socket.create_connection(("127.0.0.1", server.port)) as dropped:
        dropped.sendall(b":SOUR:FUNC CURR;:SOUR:CURR 5e-6;*IDN")  # no terminator
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(5)
        sock.sendall(b"*IDN?\n:SOUR:FUNC?;:SOUR:CURR?\n:SYST:ERR?\n")
        data = b""
        while data.count(b"\n") < 3:
            data += sock.recv(4096)
    idn, state, err = data.decode().splitlines()
    assert idn.startswith("KEITHLEY INSTRUMENTS INC.,MODEL 2400,")
    assert state == "VOLT;0.000000E+00"  # the unterminated line never ran
    assert err == '0,"No error"'
