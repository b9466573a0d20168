"""Every driver against the simulated station over real sockets and a pty."""

from __future__ import annotations

import numpy as np
import pytest

from instruments import open_adapter
from instruments.adc_board import AdcBoard
from instruments.keithley2400 import Keithley2400
from instruments.prober import Prober
from instruments.switch_matrix import SwitchMatrix
from instruments.transport import InstrumentReportedError, WireLog, verify_identity
from simulators.station import SimulatedStation
from simulators.world import SimSettings

COMPLIANCE_V = 0.9  # below the devices' 1 V breakdown


@pytest.fixture
def station(tmp_path):
    """A noise-free simulated station and every driver on it (SMU A with a wire log)."""
    sim = SimulatedStation(SimSettings(seed=3, variability="ideal")).start()
    res = sim.resources()
    log = WireLog(tmp_path / "smu_a.jsonl")
    drivers = {
        "smu_a": Keithley2400(open_adapter(res["smu_a"], timeout_s=2.0, wire_log=log),
                              name="smu_a"),
        "smu_b": Keithley2400(open_adapter(res["smu_b"], timeout_s=2.0), name="smu_b"),
        "adc": AdcBoard(open_adapter(res["adc"], timeout_s=2.0), name="adc"),
        "switch": SwitchMatrix(open_adapter(res["switch"], timeout_s=2.0), name="switch"),
        "prober": Prober(open_adapter(res["prober"], timeout_s=2.0), name="prober"),
    }
    drivers["world"] = sim.world
    drivers["log"] = log
    drivers["sim"] = sim
    try:
        yield drivers
    finally:
        for name in ("smu_a", "smu_b", "adc", "switch", "prober"):
            drivers[name].adapter.close()
        log.close()
        sim.stop()


def connect_pair_1(st) -> None:
    st["prober"].contact()
    st["switch"].exclusive_close(["1A01", "1B01"])
    for smu in (st["smu_a"], st["smu_b"]):
        smu.prepare_current_source(compliance_v=COMPLIANCE_V, nplc=1)
    st["adc"].gain = 10
    st["adc"].channel = 1


def test_identities(station):
    expected = {"smu_a": "MODEL 2400", "smu_b": "MODEL 2400", "adc": "DIFFADC",
                "switch": "Model 707B", "prober": "SENTIO"}
    for name, text in expected.items():
        assert text in verify_identity(station[name], text)


def test_list_sweep_with_slave_and_adc_is_consistent(station):
    connect_pair_1(station)
    smu_a, smu_b, adc = station["smu_a"], station["smu_b"], station["adc"]
    n = 250
    levels_a = np.linspace(-50e-6, 50e-6, n)
    levels_b = levels_a[::-1].copy()
    smu_b.configure_list_slave(levels_b)
    adc.arm(n)
    smu_a.configure_list_master(levels_a)
    ra = smu_a.run_list_sweep()
    rb = smu_b.run_list_sweep()
    samples = adc.read_samples()
    assert len(ra) == len(rb) == len(samples) == n
    np.testing.assert_allclose(ra.current, levels_a, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(rb.current, levels_b, rtol=1e-5, atol=1e-12)
    assert not ra.compliance.any() and not rb.compliance.any()
    # Real devices: a few hundred mV across each at 50 uA, with the sign of the current.
    assert 0.05 < np.max(np.abs(ra.voltage)) < COMPLIANCE_V
    assert np.all(np.sign(ra.voltage[levels_a != 0]) == np.sign(levels_a[levels_a != 0]))
    # The ADC sampled V_B - V_A at every step, as the SMUs read their own sides.
    np.testing.assert_allclose(samples["v"], rb.voltage - ra.voltage, atol=1e-5)
    assert not (samples["status"] & 1).any()
    assert np.all(np.diff(samples["t_us"].astype(np.int64)) > 0)
    assert adc.status() == ("DONE", n)
    station["smu_a"].check_errors_raise()
    station["smu_b"].check_errors_raise()
    station["adc"].check_errors_raise()


def test_list_sweep_costs_chunks_plus_a_constant(station):
    connect_pair_1(station)
    smu_a, log = station["smu_a"], station["log"]
    counts = {}
    for n in (1, 100, 101, 250, 2500):
        before = dict(log.counts)
        smu_a.configure_list_master(np.full(n, 1e-6))
        assert len(smu_a.run_list_sweep()) == n
        counts[n] = log.counts["w"] - before["w"]
    constants = {n: counts[n] - -(-n // 100) for n in counts}
    assert len(set(constants.values())) == 1 and constants[1] <= 10, counts


def test_host_paced_reading_matches_the_list_reading(station):
    connect_pair_1(station)
    smu_a = station["smu_a"]
    host = smu_a.source_and_measure(30e-6)
    smu_a.configure_list_master([30e-6])
    listed = smu_a.run_list_sweep()
    assert host.voltage[0] == pytest.approx(listed.voltage[0], abs=1e-6)
    smu_a.use_fixed_source()
    assert len(smu_a.measure_once()) == 1


def test_compliance_flag_when_the_prober_is_separated(station):
    connect_pair_1(station)
    smu_a, smu_b = station["smu_a"], station["smu_b"]
    station["prober"].separate()
    assert not station["prober"].in_contact()
    reading = smu_a.source_and_measure(10e-6)
    assert reading.compliance[0]
    assert reading.voltage[0] == pytest.approx(COMPLIANCE_V, rel=1e-3)
    levels = [5e-6, -5e-6, 20e-6]
    smu_b.configure_list_slave(levels)
    smu_a.configure_list_master(levels)
    assert smu_a.run_list_sweep().compliance.all()
    assert smu_b.run_list_sweep().compliance.all()
    station["prober"].contact()
    assert not smu_a.source_and_measure(10e-6).compliance[0]


def test_safe_shutdown_ramps_down_and_releases_the_buses(station):
    connect_pair_1(station)
    smu_a, smu_b, world = station["smu_a"], station["smu_b"], station["world"]
    smu_a.source_current = 45e-6
    assert smu_a.source_current == pytest.approx(45e-6)  # a query: the write has landed
    assert world.buses["A"].on and world.buses["A"].set_current == pytest.approx(45e-6)
    smu_b.configure_list_slave(np.linspace(0, 40e-6, 50))  # armed, mid-"sweep"
    station["log"].flush()
    first = len(WireLog.load(station["log"].path))
    assert smu_a.shutdown(ramp_step_a=10e-6, ramp_delay_s=0).confirmed
    assert smu_b.safe_off().confirmed
    for bus in ("A", "B"):
        assert not world.buses[bus].on and world.buses[bus].current == 0.0
    assert smu_a.ask(":OUTP?").strip() == "0" and smu_b.ask(":OUTP?").strip() == "0"
    station["log"].flush()
    written = [e["w"] for e in WireLog.load(station["log"].path)[first:] if "w" in e]
    levels = [float(w.split()[1]) for w in written if w.startswith(":SOUR:CURR ")]
    assert levels[-1] == 0.0 and len(levels) == 5
    assert np.all(np.abs(np.diff([45e-6, *levels])) <= 10e-6 + 1e-12)
    assert written[0] == ":ABOR" and written[-4:] == [":OUTP OFF", ":OUTP?", ":SOUR:CURR?",
                                                      ":OUTP?"]
    smu_a.check_errors_raise()
    smu_b.check_errors_raise()


def test_read_with_output_off_reports_the_instruments_reason(station):
    smu_a = station["smu_a"]
    smu_a.source_mode = "current"
    smu_a.adapter.timeout_s = 0.2
    with pytest.raises(InstrumentReportedError, match="OUTPUT off"):
        smu_a.measure_once()


def test_switch_and_prober_errors_carry_the_instruments_text(station):
    switch, prober = station["switch"], station["prober"]
    switch.exclusive_close(["1A01", "1B01"])
    switch.set_forbidden(["1A16"])
    with pytest.raises(InstrumentReportedError, match="-1116"):
        switch.close("1A16")
    with pytest.raises(InstrumentReportedError, match="-1115"):
        switch.close("1A99")
    assert switch.closed() == ["1A01", "1B01"]
    switch.open()
    assert switch.closed() == [] and station["world"].closed == set()
    prober.contact()
    with pytest.raises(InstrumentReportedError, match="chuck is in contact") as err:
        prober.move_to_die(2, 1)
    assert err.value.errors[0][0] == 5
    prober.separate()
    assert prober.move_to_die(2, 1) == (2, 1) == prober.die()
    assert prober.position_um() == (5000.0, 0.0)
    assert prober.next_die() == (1, 2)


def test_adc_over_its_socket_url_too(station):
    res = station["sim"].resources()
    adc = AdcBoard(open_adapter(res["adc_socket"], timeout_s=2.0), name="adc_socket")
    try:
        adc.gain = 1000
        assert adc.gain == 1000 and station["adc"].gain == 1000  # the same board
        volts, over = adc.measure()
        assert abs(volts) < 1e-3 and not over
        adc.arm(3)
        assert adc.status() == ("ARMED", 0)
        adc.abort()
        assert len(adc.read_samples()) == 0
    finally:
        adc.adapter.close()
