"""The simulated bench is cabled explicitly (simulators/cabling.py), and only as its cabling
says: trigger pulses travel along trigger cables only, the ADC inputs read the rows their
cables name, and each SMU drives the row its cable names. Checked over real sockets and the
ADC's pty with the labctl drivers (pyvisa ``@py`` for the VISA resources)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from instruments import open_adapter
from instruments.adc_board import AdcBoard
from instruments.keithley2400 import Keithley2400
from instruments.prober import Prober
from instruments.switch_matrix import SwitchMatrix
from instruments.transport import InstrumentReportedError
from simulators import keithley2400 as sim_k2400
from simulators import mtj
from simulators.cabling import (
    DEFAULT_CABLING,
    AdcInputCable,
    Cabling,
    SmuCable,
    TriggerCable,
    two_smu_cabling,
)
from simulators.station import NAMES, SimulatedStation, resource_names, tcp_names
from simulators.world import SimSettings, StationWorld

COMPLIANCE_V = 0.9  # below the devices' 1 V breakdown
SETTINGS = SimSettings(seed=13, variability="nominal")
SMU_TOL_V = 1e-4  # 5 sigma of the nominal SMU read noise at 1 NPLC
ADC_TOL_V = 3e-5  # many sigma of the ADC noise at AVER 10 (10 ms)

#: "left" on row B, "right" on row A, "right" masters the trigger link, ADC input 2 reads
#: V(A) - V(B) and input 1 is open.
SWAPPED = two_smu_cabling({"left": "B", "right": "A"}, master="right", adc_inputs={2: "A-B"})


def device_v(station: SimulatedStation, pair: int, dev: int, current) -> np.ndarray:
    """Model voltage (V) of device ``dev`` (0 = A, 1 = B) of pair ``pair`` (1-based)."""
    params = station.world.chip.params.take((pair - 1, dev))
    return np.asarray(mtj.voltage(params, np.asarray(current, dtype=float)))


class Bench:
    """A served simulated station on ``cabling`` and a driver on every instrument."""

    def __init__(self, cabling: Cabling):
        self.cabling = cabling
        self.sim = SimulatedStation(SETTINGS, cabling=cabling).start()
        res = self.sim.resources()
        self.smu = {
            name: Keithley2400(open_adapter(res[name], timeout_s=2.0), name=name)
            for name in cabling.smu_names
        }
        self.adc = AdcBoard(open_adapter(res[cabling.adc], timeout_s=2.0), name=cabling.adc)
        self.switch = SwitchMatrix(open_adapter(res[cabling.switch], timeout_s=2.0),
                                   name=cabling.switch)
        self.prober = Prober(open_adapter(res[cabling.prober], timeout_s=2.0),
                             name=cabling.prober)

    def on_row(self, row: str) -> Keithley2400:
        return self.smu[self.cabling.smu_on_row(row).instrument]

    def connect(self, *channels: str) -> None:
        self.prober.contact()
        self.switch.exclusive_close(list(channels))
        for smu in self.smu.values():
            smu.prepare_current_source(compliance_v=COMPLIANCE_V, nplc=1)
        self.adc.gain = 10
        self.adc.averaging = 10

    def close(self) -> None:
        for inst in (*self.smu.values(), self.adc, self.switch, self.prober):
            inst.adapter.close()
        self.sim.stop()


@pytest.fixture
def swapped():
    bench = Bench(SWAPPED)
    try:
        yield bench
    finally:
        bench.close()


# -- the cabling itself ----------------------------------------------------------------
def test_default_cabling_is_the_documented_bench():
    assert DEFAULT_CABLING.smus == (SmuCable("smu_a", "1", "A"), SmuCable("smu_b", "1", "B"))
    assert DEFAULT_CABLING.adc_input(1) == AdcInputCable(1, "B", "A")
    assert DEFAULT_CABLING.adc_input(2).is_open
    assert set(DEFAULT_CABLING.triggers) == {
        TriggerCable("smu_a", 1, "smu_b", 1),
        TriggerCable("smu_a", 1, "adc", 1),
    }
    assert two_smu_cabling() == DEFAULT_CABLING
    assert resource_names(DEFAULT_CABLING) == NAMES
    assert NAMES == ("smu_a", "smu_b", "adc", "adc_socket", "switch", "prober")


def test_a_pulse_goes_only_along_the_cables():
    world = StationWorld(SimSettings(seed=1))
    got: list[tuple[str, int, int]] = []
    for name in ("smu_a", "smu_b", "adc"):
        for line in (1, 2):
            world.subscribe_trigger(name, line, lambda s, n=name, li=line: got.append((n, li, s)),
                                    order=0)
    world.pulse("smu_a", 1, 7)
    assert sorted(got) == [("adc", 1, 7), ("smu_b", 1, 7)]
    got.clear()
    world.pulse("smu_b", 1, 0)  # SMU B's output is cabled to nothing
    world.pulse("smu_a", 2, 0)  # nor is SMU A's line 2
    world.pulse("adc", 1, 0)
    assert got == []


def test_resources_are_keyed_by_the_cablings_names(swapped: Bench):
    res = swapped.sim.resources()
    assert tuple(res) == ("left", "right", "adc", "adc_socket", "switch", "prober")
    assert tcp_names(SWAPPED) == ("left", "right", "adc_socket", "switch", "prober")
    # One simulated 2400 per SMU cable, serials in cabling order.
    assert "MODEL 2400,4000001" in swapped.smu["left"].ask("*IDN?")
    assert "MODEL 2400,4000002" in swapped.smu["right"].ask("*IDN?")
    renamed = two_smu_cabling(adc="daq", switch="matrix", prober="sentio")
    assert resource_names(renamed) == ("smu_a", "smu_b", "daq", "daq_socket", "matrix",
                                       "sentio")


# -- trigger link ----------------------------------------------------------------------
def test_sweep_mastered_by_right_steps_left_and_the_adc(swapped: Bench):
    swapped.connect("1A02", "1B02")
    left, right, adc = swapped.smu["left"], swapped.smu["right"], swapped.adc
    adc.channel = 2  # A - B
    n = 24
    i_right = np.linspace(-40e-6, 40e-6, n)
    i_left = np.linspace(30e-6, -30e-6, n)
    left.configure_list_slave(i_left)
    adc.arm(n)
    right.configure_list_master(i_right)
    r_right = right.run_list_sweep()
    r_left = left.run_list_sweep()
    samples = adc.read_samples()
    assert len(r_right) == len(r_left) == len(samples) == n
    np.testing.assert_allclose(r_left.current, i_left, rtol=1e-5, atol=1e-12)
    # right is on row A (device A of pair 2), left on row B (device B of pair 2).
    v_a, v_b = device_v(swapped.sim, 2, 0, i_right), device_v(swapped.sim, 2, 1, i_left)
    np.testing.assert_allclose(r_right.voltage, v_a, atol=SMU_TOL_V)
    np.testing.assert_allclose(r_left.voltage, v_b, atol=SMU_TOL_V)
    # The ADC took one sample per step of both sources: input 2 reads V(A) - V(B).
    np.testing.assert_allclose(samples["v"], v_a - v_b, atol=ADC_TOL_V)
    assert np.ptp(v_a - v_b) > 0.1


def test_sweep_mastered_by_left_triggers_nobody(swapped: Bench, monkeypatch):
    """left's output line has no cable: right (armed as slave) and the ADC never step."""
    monkeypatch.setattr(sim_k2400, "FETCH_WAIT_S", 0.2)
    swapped.connect("1A02", "1B02")
    left, right, adc = swapped.smu["left"], swapped.smu["right"], swapped.adc
    world = swapped.sim.world
    n = 10
    levels = np.linspace(5e-6, 50e-6, n)
    right.configure_list_slave(levels)
    adc.arm(n)
    left.configure_list_master(levels)
    r_left = left.run_list_sweep()  # a master paces itself: it has its readings
    np.testing.assert_allclose(r_left.current, levels, rtol=1e-5, atol=1e-12)
    assert adc.status() == ("ARMED", 0)
    assert world.buses["A"].set_current == 0.0  # right still sits at its 0 A bias
    with pytest.raises(InstrumentReportedError, match="-230"):
        right.run_list_sweep(timeout_s=1.0)  # :FETC? waits, then -230 and no reply
    adc.abort()
    assert adc.status() == ("IDLE", 0)


# -- ADC inputs ------------------------------------------------------------------------
def read_both_inputs(cabling: Cabling, i_a: float, i_b: float) -> tuple[dict[int, float], float]:
    """Row A at ``i_a``, row B at ``i_b`` (A) through pair 2; the ADC's two inputs (V) and
    the model's V(B) - V(A)."""
    bench = Bench(cabling)
    try:
        bench.connect("1A02", "1B02")
        bench.on_row("A").source_and_measure(i_a)
        bench.on_row("B").source_and_measure(i_b)
        out = {}
        for channel in (1, 2):
            bench.adc.channel = channel
            volts, overrange = bench.adc.measure()
            assert not overrange
            out[channel] = volts
        b_minus_a = float(device_v(bench.sim, 2, 1, i_b) - device_v(bench.sim, 2, 0, i_a))
        return out, b_minus_a
    finally:
        bench.close()


def test_reversed_input_reads_the_negated_difference_and_an_open_input_reads_zero():
    default, b_minus_a = read_both_inputs(DEFAULT_CABLING, 30e-6, -20e-6)
    swapped, same = read_both_inputs(SWAPPED, 30e-6, -20e-6)
    assert same == b_minus_a and abs(b_minus_a) > 0.05  # the same chip (same seed)
    assert default[1] == pytest.approx(b_minus_a, abs=ADC_TOL_V)  # B - A
    assert swapped[2] == pytest.approx(-b_minus_a, abs=ADC_TOL_V)  # A - B
    for open_input in (default[2], swapped[1]):
        assert abs(open_input) < ADC_TOL_V


# -- rows ------------------------------------------------------------------------------
def test_swapped_rows_bias_the_devices_the_switch_channels_say(swapped: Bench):
    left, right, world = swapped.smu["left"], swapped.smu["right"], swapped.sim.world
    # Only row A is connected (to device A of pair 5): left, on row B, finds no device.
    swapped.connect("1A05")
    assert left.source_and_measure(25e-6).compliance.all()
    reading = right.source_and_measure(-15e-6)
    assert not reading.compliance.any()
    assert reading.voltage[0] == pytest.approx(device_v(swapped.sim, 5, 0, -15e-6),
                                               abs=SMU_TOL_V)
    # Row B to device B of pair 3: left biases that device, right still device A of pair 5.
    swapped.switch.exclusive_close(["1A05", "1B03"])
    reading = left.source_and_measure(25e-6)
    assert not reading.compliance.any()
    assert world.buses["B"].set_current == 25e-6 and world.buses["B"].current == 25e-6
    assert reading.voltage[0] == pytest.approx(device_v(swapped.sim, 3, 1, 25e-6),
                                               abs=SMU_TOL_V)
    assert right.source_and_measure(-15e-6).voltage[0] == pytest.approx(
        device_v(swapped.sim, 5, 0, -15e-6), abs=SMU_TOL_V)


# -- invalid cablings ------------------------------------------------------------------
def _smus(*rows: str) -> tuple[SmuCable, ...]:
    return tuple(SmuCable(f"smu{i}", "1", row) for i, row in enumerate(rows))


INVALID = {
    "unknown trigger target": (
        lambda: Cabling(_smus("A"), triggers=[TriggerCable("smu0", 1, "scope", 1)]),
        "unknown instrument 'scope'",
    ),
    "unknown trigger source": (
        lambda: Cabling(_smus("A"), triggers=[TriggerCable("ghost", 1, "adc", 1)]),
        "unknown instrument 'ghost'",
    ),
    "two SMUs on one row": (
        lambda: two_smu_cabling({"left": "A", "right": "A"}),
        "two SMU channels on row A: left channel 1 and right channel 1",
    ),
    "row C": (lambda: Cabling(_smus("C")), "SMU 'smu0' is cabled to row 'C'"),
    "no SMU": (lambda: Cabling(()), "no SMU is cabled"),
    "repeated name": (
        lambda: Cabling((SmuCable("adc", "1", "A"),)),
        "instrument name 'adc' is used more than once",
    ),
    "name taken by the ADC socket": (
        lambda: Cabling((SmuCable("adc_socket", "1", "A"),)),
        "'adc_socket' is taken by the ADC board 'adc'",
    ),
    "ADC input 3": (
        lambda: Cabling(_smus("A"), adc_inputs=[AdcInputCable(3, "B", "A")]),
        "the ADC board has no input 3",
    ),
    "ADC input twice": (
        lambda: Cabling(_smus("A"), adc_inputs=[AdcInputCable(1, "B", "A"),
                                                AdcInputCable(1, "A", "B")]),
        "ADC input 1 is cabled twice",
    ),
    "half-open ADC input": (
        lambda: Cabling(_smus("A"), adc_inputs=[AdcInputCable(1, "B", None)]),
        "ADC input 1 is half open",
    ),
    "ADC input on row Z": (
        lambda: two_smu_cabling(adc_inputs={2: "Z-A"}),
        "ADC input 2 reads row 'Z'",
    ),
    "ADC input against itself": (
        lambda: two_smu_cabling(adc_inputs={1: "A-A"}),
        "ADC input 1 reads row A against itself",
    ),
    "trigger from the switch": (
        lambda: Cabling(_smus("A"), triggers=[TriggerCable("switch", 1, "smu0", 1)]),
        "'switch' has no trigger link",
    ),
    "trigger from the ADC": (
        lambda: Cabling(_smus("A", "B"), triggers=[TriggerCable("adc", 1, "smu0", 1)]),
        "'adc' has no trigger output",
    ),
    "SMU to itself": (
        lambda: Cabling(_smus("A"), triggers=[TriggerCable("smu0", 1, "smu0", 2)]),
        "an instrument cabled to itself",
    ),
    "line 5": (
        lambda: Cabling(_smus("A", "B"), triggers=[TriggerCable("smu0", 5, "smu1", 1)]),
        "no output line 5",
    ),
    "ADC trigger input 2": (
        lambda: Cabling(_smus("A"), triggers=[TriggerCable("smu0", 1, "adc", 2)]),
        "the ADC board has one trigger input, line 1",
    ),
    "master not an SMU": (
        lambda: two_smu_cabling(master="adc"),
        "trigger master 'adc' is not one of the SMUs",
    ),
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_cabling_raises_naming_the_problem(case: str):
    build, message = INVALID[case]
    with pytest.raises(ValueError, match=re.escape(message)):
        build().validate()


def test_invalid_cabling_is_refused_by_the_world_and_the_station():
    bad = Cabling(_smus("A", "A"))
    with pytest.raises(ValueError, match="two SMU channels on row A"):
        StationWorld(SETTINGS, bad)
    with pytest.raises(ValueError, match="two SMU channels on row A"):
        SimulatedStation(SETTINGS, cabling=bad)
    # Valid as a cabling, but a 2400 has one channel: refused when the SMU is built.
    two_channel = Cabling((SmuCable("k2636", "2", "A"),))
    with pytest.raises(ValueError, match="one channel"):
        SimulatedStation(SETTINGS, cabling=two_channel).start()
