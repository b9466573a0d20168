"""The B2902A driver (instruments/keysight_b2900.py) against the simulator over a real
loopback socket (pyvisa ``@py``): no I/O on construction, the 2400-style channel methods,
the paired list sweep (one INIT and one FETC on the wire, a trigger pulse per step, the
device model's voltages), refused settings, and a confirmed shutdown from any state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instruments import open_adapter
from instruments.keysight_b2900 import B2900Readings, KeysightB2902A
from instruments.transport import (
    InstrumentError,
    InstrumentReportedError,
    UnexpectedReply,
    WireLog,
)
from simulators.cabling import Cabling, SmuCable, TriggerCable
from simulators.keysight_b2900 import SimB2902A
from simulators.server import TcpServer
from simulators.world import SimSettings, StationWorld

NOISE_V = 20e-6  # nominal SMU read noise at 1 NPLC
CABLING = Cabling(
    smus=(SmuCable("smu", "1", "A"), SmuCable("smu", "2", "B")),
    triggers=(TriggerCable("smu", 3, "adc", 1),),
)


class Bench:
    """World with pair 1 connected, the simulated B2902A served, a driver with a wire log."""

    def __init__(self) -> None:
        self.world = StationWorld(SimSettings(seed=11), CABLING)
        self.world.set_contact(True)
        self.world.set_closed({"1A01", "1B01"})
        self.sim = SimB2902A(self.world, {"1": CABLING.smus[0], "2": CABLING.smus[1]})
        self.server = TcpServer(self.sim).start()
        self.log = WireLog()
        self.smu = KeysightB2902A(open_adapter(self.server.resource, timeout_s=2.0,
                                               wire_log=self.log), name="smu")
        self.pulses: list[int] = []
        self.world.subscribe_trigger("adc", 1, self.pulses.append, order=10)

    def writes(self) -> list[str]:
        """Every command written so far (the wire log keeps them in memory)."""
        entries = (json.loads(e) for e in self.log._pending)
        return [e["w"] for e in entries if "w" in e]

    def close(self) -> None:
        self.smu.adapter.close()
        self.server.stop()


@pytest.fixture
def bench():
    b = Bench()
    yield b
    b.close()


def model_v(world: StationWorld, dev: int, currents) -> np.ndarray:
    return np.array([world.chip.ideal_voltage_one(0, dev, float(i)) for i in currents])


def prepared(bench: Bench, nplc: float = 1.0) -> KeysightB2902A:
    """Both channels current sources at 0 A, as the station's prepare_sources does."""
    bench.smu.ramp_to(0.0)
    bench.smu.prepare_current_source(compliance_v=0.9, nplc=nplc)
    return bench.smu


def test_no_io_on_construction_and_channels(bench: Bench):
    assert bench.log.counts == {"w": 0, "r": 0, "rb": 0}
    assert set(bench.smu.channels) == {1, 2}
    assert bench.smu.channel(2) is bench.smu.ch_2
    with pytest.raises(ValueError, match="channels 1 and 2"):
        bench.smu.channel(3)
    caps = bench.smu.ch_1.capabilities
    assert caps["channels"] == ("1", "2") and caps["paired_list_sweep"] and caps["voltage_source"]


def test_prepare_and_measure_once(bench: Bench):
    smu = prepared(bench)
    smu.ch_2.source_current = 30e-6
    r = smu.ch_2.measure_once()
    assert isinstance(r, B2900Readings) and len(r) == 1
    assert r.current[0] == 30e-6 and not r.compliance[0]
    assert abs(r.voltage[0] - model_v(bench.world, 1, [30e-6])[0]) < 5 * NOISE_V
    assert smu.ch_2.present_state() == (True, "CURR", 30e-6)
    assert smu.ch_1.present_state() == (True, "CURR", 0.0)
    config = smu.configuration()
    assert config["2"]["source_level"] == 30e-6 and config["1"]["voltage_compliance_v"] == 0.9
    assert ":MEAS? (@2)" in bench.writes()
    assert smu.ramp_to(0.0, 10e-6, 0.0) == 0.0  # both channels, in steps
    ramps = [w for w in bench.writes() if w.startswith(":SOUR2:CURR ")]
    assert [float(w.split()[1]) for w in ramps[-3:]] == [2e-05, 1e-05, 0.0]


def test_compliance_flag_from_the_status_word(bench: Bench):
    bench.world.set_contact(False)  # nothing connected: a current source runs into its limit
    smu = prepared(bench)
    smu.ch_1.source_current = 10e-6
    r = smu.ch_1.measure_once()
    assert r.compliance[0] and abs(r.voltage[0] - 0.9) < 5 * NOISE_V


@pytest.mark.parametrize("data_format", ["REAL,64", "REAL,32"])
def test_pair_list_sweep_in_lockstep(bench: Bench, data_format: str):
    smu = prepared(bench)
    n = 200
    a = np.linspace(0.0, 40e-6, n)
    b = np.linspace(5e-6, -30e-6, n)
    ra, rb = smu.pair_list_sweep(a, b, nplc=1.0, trigger_line=3, data_format=data_format)
    assert len(ra) == len(rb) == n
    np.testing.assert_allclose(ra.current, a, rtol=1e-6, atol=1e-15)
    np.testing.assert_allclose(rb.current, b, rtol=1e-6, atol=1e-15)
    assert np.max(np.abs(ra.voltage - model_v(bench.world, 0, a))) < 5 * NOISE_V
    assert np.max(np.abs(rb.voltage - model_v(bench.world, 1, b))) < 5 * NOISE_V
    assert not ra.compliance.any() and not rb.compliance.any()
    assert np.all(np.diff(ra.time) > 0) and np.array_equal(ra.time, rb.time)
    # One INIT and one FETC per sweep, on the server's side and on the wire.
    assert bench.sim.counts.get("INIT") == 1 and bench.sim.counts.get("FETC") == 1
    writes = bench.writes()
    assert sum(w.startswith(":INIT") for w in writes) == 1
    assert sum(w.startswith(":FETC") for w in writes) == 1
    assert bench.pulses == list(range(n))  # channel 1's EXT3 pulsed every step
    # The spot measurement afterwards is text again, at the fixed level.
    assert smu.ch_1.measure_once().current[0] == 0.0


def test_two_sweeps_reuse_the_format_and_pulse_nobody_on_an_uncabled_line(bench: Bench):
    smu = prepared(bench, nplc=0.1)
    smu.pair_list_sweep([1e-6, 2e-6], [3e-6, 4e-6], nplc=0.1, trigger_line=5)
    ra, _ = smu.pair_list_sweep([1e-6, 2e-6], [3e-6, 4e-6], nplc=0.1, trigger_line=None)
    assert bench.pulses == [] and len(ra) == 2
    assert sum(w.startswith(":FORM:ELEM") for w in bench.writes()) == 1  # once for both


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    (([0.0, 1e-6], [0.0]), {"nplc": 1.0}, "same 1 to 2500 points"),
    (([0.0] * 2501, [0.0] * 2501), {"nplc": 1.0}, "same 1 to 2500 points"),
    (([0.0, 4.0], [0.0, 0.0]), {"nplc": 1.0}, "within"),
    (([0.0, np.nan], [0.0, 0.0]), {"nplc": 1.0}, "finite"),
    (([0.0], [0.0]), {"nplc": 1.0, "trigger_line": 15}, "EXT1 to EXT14"),
    (([0.0], [0.0]), {"nplc": 200.0}, "nplc"),
    (([0.0], [0.0]), {"nplc": 1.0, "data_format": "ASC"}, "data_format"),
])
def test_pair_list_sweep_refuses_bad_arguments_without_io(bench: Bench, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        bench.smu.pair_list_sweep(*args, **kwargs)
    assert bench.log.counts["w"] == 0


def test_an_error_the_instrument_reports_raises_with_its_text(bench: Bench):
    bench.smu.write(":SOUR2:CURR 9;:SOUR3:CURR 0")
    with pytest.raises(InstrumentReportedError, match=r"-222, Data out of range; -114"):
        bench.smu.ch_2.check_errors_raise()
    bench.smu.check_errors_raise()  # the queue is empty now
    with pytest.raises(InstrumentError, match="needs a current source"):
        bench.smu.ch_2.ramp_to(1e-6)  # reset state: a voltage source


# -- shutdown from any state -------------------------------------------------------------
def _current_mid_level(bench: Bench) -> None:
    smu = prepared(bench)
    smu.ch_1.ramp_to(45e-6, 5e-6, 0.0)
    smu.ch_2.ramp_to(-25e-6, 5e-6, 0.0)


def _after_a_sweep(bench: Bench) -> None:
    smu = prepared(bench)
    smu.pair_list_sweep(np.linspace(0, 40e-6, 20), np.linspace(0, 30e-6, 20), nplc=0.1)
    smu.ch_1.source_current = 35e-6


def _voltage_source(bench: Bench) -> None:
    bench.sim.handle(":SOUR:FUNC:MODE VOLT;:SENS:CURR:PROT 1e-3;:VOLT 0.3;:OUTP ON")
    bench.sim.handle(":SOUR2:FUNC:MODE VOLT;:SENS2:CURR:PROT 1e-3;:SOUR2:VOLT -0.2;:OUTP2 ON")


def _outputs_off(bench: Bench) -> None:
    bench.sim.handle(":SOUR:FUNC:MODE CURR;:CURR 1e-5")


def _link_out_of_step(bench: Bench) -> None:
    _current_mid_level(bench)
    bench.smu.write("*IDN?")  # a reply nobody reads: the next write finds it waiting


@pytest.mark.parametrize("state", [_current_mid_level, _after_a_sweep, _voltage_source,
                                   _outputs_off, _link_out_of_step])
def test_shutdown_from_any_state_is_confirmed_and_ramped(bench: Bench, state):
    state(bench)
    bench.log._pending.clear()
    report = bench.smu.shutdown(ramp_step_a=5e-6, ramp_delay_s=0.0)
    assert report.confirmed, report.problems
    for c in ("1", "2"):
        ch = bench.sim.channels[c]
        assert not ch.output and ch.cfg["curr_level"] == 0.0 and ch.cfg["curr_mode"] == "FIX"
        assert ch.cfg["volt_level"] == 0.0 or ch.cfg["source_func"] == "CURR"
    assert not bench.world.buses["A"].on and not bench.world.buses["B"].on
    # Bounded steps from the level the driver read back: each write within one step.
    for c in ("1", "2"):
        before = report.state[f"smu channel {c}"]["before"]
        func, start = before["function"], before["level"]
        size = 5e-6 if func == "CURR" else 0.05
        prefix = f":SOUR{c}:{func} "
        levels = [float(w[len(prefix):]) for w in bench.writes() if w.startswith(prefix)]
        assert np.all(np.abs(np.diff([start, *levels])) <= size * (1 + 1e-9))
        assert levels[-1:] == ([0.0] if start != 0.0 else [])


def test_channel_shutdown_leaves_the_other_channel_alone(bench: Bench):
    smu = prepared(bench)
    smu.ch_2.source_current = 10e-6
    report = smu.ch_1.shutdown(ramp_delay_s=0.0)
    assert report.confirmed and report.instrument == "smu channel 1"
    assert bench.sim.channels["2"].output and bench.world.buses["B"].current == 10e-6


class _Lying:
    """The simulator, except that ``:OUTP1?`` answers 2 (neither 0 nor 1)."""

    def __init__(self, sim: SimB2902A):
        self.sim = sim

    def handle(self, line: str):
        return "2" if line.strip() == ":OUTP1?" else self.sim.handle(line)


def test_a_reply_the_query_cannot_give_is_refused(bench: Bench):
    bench.server.instrument = _Lying(bench.sim)
    with pytest.raises(UnexpectedReply, match="expected 0 or 1"):
        bench.smu.ch_1.output_enabled  # noqa: B018 - the query is the test
    assert bench.smu.ch_2.output_enabled is False  # channel 2's reply is fine
