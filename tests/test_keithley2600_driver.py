"""labctl's Keithley 2602B driver against the simulated 2602B over a real socket (pyvisa
``@py``): the station's channel methods, the paired list sweep (one script upload and one
binary read, counted on the wire log) with a cabled ADC, and shutdown from any state."""

from __future__ import annotations

import numpy as np
import pytest

from instruments import WireLog, open_adapter
from instruments.keithley2600 import Keithley2600
from instruments.transport import GarbledReply, InstrumentReportedError
from simulators.adc_board import SimAdcBoard
from simulators.cabling import Cabling, SmuCable, TriggerCable
from simulators.keithley2600 import SimKeithley2600
from simulators.mtj import voltage
from simulators.server import FaultSpec, TcpServer
from simulators.world import SimSettings, StationWorld

CABLING = Cabling(
    smus=(SmuCable("k2602", "a", "A"), SmuCable("k2602", "b", "B")),
    triggers=(TriggerCable("k2602", 1, "adc", 1),),
)
NOISE_V = 20e-6  # nominal SMU read noise at 1 NPLC


class Bench:
    def __init__(self):
        self.world = StationWorld(SimSettings(seed=11), CABLING)
        self.world.set_contact(True)
        self.world.set_closed({"1A03", "1B03"})
        self.sim = SimKeithley2600(self.world, {"a": CABLING.smus[0], "b": CABLING.smus[1]})
        self.adc = SimAdcBoard(self.world)
        self.server = TcpServer(self.sim).start()
        self.log = WireLog()
        self.k = Keithley2600(open_adapter(self.server.resource, timeout_s=2.0,
                                           wire_log=self.log), name="k2602")

    def model_v(self, dev: int, current) -> np.ndarray:
        params = self.world.chip.params.take((np.array([2]), np.array([dev])))
        return np.asarray(voltage(params, np.asarray(current, dtype=float)))

    def close(self):
        self.k.adapter.close()
        self.server.stop()


@pytest.fixture
def bench():
    b = Bench()
    yield b
    b.close()


def prepare(k: Keithley2600, nplc: float = 0.01) -> None:
    for ch in (k.ChA, k.ChB):
        ch.ramp_to(0.0)
        ch.prepare_current_source(compliance_v=1.0, nplc=nplc)


def test_channel_methods(bench):
    k = bench.k
    prepare(k, nplc=1.0)
    assert k.channel("b") is k.ChB
    with pytest.raises(ValueError, match="no channel 'c'"):
        k.channel("c")
    assert k.ChA.present_state() == (True, "CURR", 0.0)
    k.ChA.ramp_to(30e-6, step_a=10e-6, delay_s=0)
    r = k.ChA.measure_once()
    assert r.current[0] == pytest.approx(30e-6)
    assert r.voltage[0] == pytest.approx(bench.model_v(0, 30e-6)[0], abs=6 * NOISE_V)
    assert not r.compliance[0]
    assert k.ChA.configuration() == {
        "source_function": "CURR", "voltage_compliance_v": 1.0, "nplc": 1.0,
        "output": True, "source_level": pytest.approx(30e-6)}
    assert k.capabilities["channels"] == ("a", "b")
    assert k.capabilities["paired_list_sweep"] is True


def test_instrument_errors_are_raised_with_their_codes(bench):
    bench.k.write("smua.source.leveli = 10")
    with pytest.raises(InstrumentReportedError, match="1101, Parameter too big"):
        bench.k.check_errors_raise()
    bench.k.check_errors_raise()  # emptied


def test_pair_list_sweep_one_script_one_read(bench):
    k = bench.k
    prepare(k)
    n = 200
    levels_a = np.linspace(0, 50e-6, n)
    levels_b = levels_a + 2e-6
    bench.adc.handle("ACQ:COUN 200")
    bench.adc.handle("ACQ:ARM")
    before = dict(bench.log.counts)
    scripts = bench.sim.scripts_run
    ra, rb = k.pair_list_sweep(levels_a, levels_b, nplc=0.01, trigger_line=1)
    assert bench.sim.scripts_run - scripts == 1
    assert bench.log.counts["rb"] - before.get("rb", 0) == 1  # one binary buffer read
    # The sweep is one write; the rest is the error-queue check (one count query).
    assert bench.log.counts["w"] - before["w"] == 2
    assert bench.log.counts["r"] - before["r"] == 1
    tol = 6 * NOISE_V / np.sqrt(0.01)
    np.testing.assert_allclose(ra.current, levels_a, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ra.voltage, bench.model_v(0, levels_a), atol=tol)
    np.testing.assert_allclose(rb.voltage, bench.model_v(1, levels_b), atol=tol)
    assert not ra.compliance.any() and not rb.compliance.any()
    assert np.all(np.diff(ra.time) > 0)
    assert bench.adc.handle("ACQ:STAT?") == f"DONE,{n}"
    diff = np.array([s.volts for s in bench.adc.samples])
    np.testing.assert_allclose(diff, bench.model_v(1, levels_b) - bench.model_v(0, levels_a),
                               atol=1e-4)
    # Back at the fixed level (0 A) after the sweep.
    assert k.ChA.present_state() == (True, "CURR", 0.0)
    assert bench.world.buses["A"].set_current == 0.0


def test_pair_list_sweep_flags_compliance(bench):
    k = bench.k
    prepare(k)
    bench.world.set_contact(False)
    ra, rb = k.pair_list_sweep([1e-6, 2e-6], [1e-6, 2e-6], nplc=0.01)
    assert ra.compliance.all() and rb.compliance.all()


def test_pair_list_sweep_refuses_bad_input_before_sending(bench):
    k = bench.k
    before = dict(bench.log.counts)
    with pytest.raises(ValueError, match="same on both"):
        k.pair_list_sweep([0.0, 1e-6], [0.0], nplc=0.01)
    with pytest.raises(ValueError, match="within"):
        k.pair_list_sweep([5.0], [0.0], nplc=0.01)
    with pytest.raises(ValueError, match="digio"):
        k.pair_list_sweep([0.0], [0.0], nplc=0.01, trigger_line=15)
    assert bench.log.counts == before


@pytest.mark.parametrize("state", ["biased", "voltage_source_on_refused", "idle",
                                   "after_errors", "mid_armed"])
def test_shutdown_from_any_state(bench, state):
    k = bench.k
    if state == "biased":
        prepare(k)
        k.ChA.ramp_to(40e-6, step_a=10e-6, delay_s=0)
        k.ChB.ramp_to(-20e-6, step_a=10e-6, delay_s=0)
    elif state == "voltage_source_on_refused":
        k.write("smua.source.levelv = 0.2 smua.source.output = 1")
    elif state == "after_errors":
        k.write("x = = 1")
        k.write("smuc.reset()")
    elif state == "mid_armed":
        prepare(k)
        k.write("smub.source.leveli = 10e-6 smub.trigger.source.stimulus = "
                "smua.trigger.SOURCE_COMPLETE_EVENT_ID smub.trigger.initiate()")
    report = k.shutdown(ramp_step_a=10e-6, ramp_delay_s=0)
    assert report.confirmed, report.problems
    for bus in ("A", "B"):
        assert not bench.world.buses[bus].on
    for ch in (k.ChA, k.ChB):
        assert ch.present_state() == (False, ch.present_state().function, 0.0)


def faulty_bench() -> Bench:
    """A bench whose server wraps the simulator with a fault spec (one that strikes only
    past the end of the test: each test sets the fault it needs, counted from now)."""
    b = Bench.__new__(Bench)
    Bench.__init__(b)
    b.server.stop()
    b.k.adapter.close()
    b.server = TcpServer(b.sim, faults=FaultSpec(garble_after=10**9)).start()
    b.log = WireLog()
    b.k = Keithley2600(open_adapter(b.server.resource, timeout_s=1.0, wire_log=b.log),
                       name="k2602")
    return b


def test_shutdown_after_a_garbled_reply_resyncs_and_confirms():
    b = faulty_bench()
    try:
        prepare(b.k)
        b.k.ChA.ramp_to(20e-6, step_a=10e-6, delay_s=0)
        assert b.k.ChA.present_state().level == pytest.approx(20e-6)  # writes done
        faulty = b.server.instrument
        faulty.spec = FaultSpec(non_ascii_after=faulty.messages + 1)  # the next reply
        with pytest.raises(GarbledReply):
            b.k.ChA.measure_once()
        assert b.k.link_suspect
        report = b.k.shutdown(ramp_step_a=10e-6, ramp_delay_s=0)
        assert report.confirmed, report.problems
        assert any("resynced" in note for note in report.notes)
        assert not b.world.buses["A"].on and not b.world.buses["B"].on
    finally:
        b.close()


def test_stuck_compliance_fault_is_flagged():
    b = faulty_bench()
    try:
        prepare(b.k)
        faulty = b.server.instrument
        faulty.spec = FaultSpec(stick_compliance_after=faulty.messages + 1)
        b.k.ChA.measure_once()  # the message after which compliance sticks
        ra, rb = b.k.pair_list_sweep([1e-6, 2e-6], [1e-6, 2e-6], nplc=0.01)
        assert ra.compliance.all() and rb.compliance.all()
        assert b.k.ChB.measure_once().compliance[0]
    finally:
        b.close()


def test_pymeasure_channel_properties_work_unchanged(bench):
    ch = bench.k.ChB
    ch.source_mode = "current"
    ch.compliance_voltage = 0.9
    ch.measure_nplc = 0.1
    ch.source_current = 15e-6
    ch.source_output = "ON"
    assert ch.source_mode == "current"
    assert ch.compliance_voltage == pytest.approx(0.9)
    assert ch.measure_nplc == pytest.approx(0.1)
    assert ch.current == pytest.approx(15e-6)
    assert ch.voltage == pytest.approx(bench.model_v(1, 15e-6)[0],
                                       abs=6 * NOISE_V / np.sqrt(0.1))
    assert bench.k.check_errors() == []  # pymeasure's own error-queue reader
    assert bench.k.shutdown(ramp_step_a=5e-6, ramp_delay_s=0).confirmed
