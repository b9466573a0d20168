"""Programming pulses and tuning: the world's pulse physics, the ADC board's PROG commands,
the driver over the real pty, the safety envelope, the I_off estimator and tune_pair."""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import numpy as np
import pytest

from instruments.transport import InstrumentReportedError
from labctl.commands import tune as cmd_tune
from labctl.records.session import Session
from labctl.station.file import load_station
from labctl.station.runtime import open_station
from protocols.engine import Engine
from protocols.intents import Pulse, Sweep, SweepResult, run_offline
from protocols.safety import SafetyEnvelope, SafetyViolation
from protocols.tuning import (
    conductance_peak,
    estimate_i_off,
    pulse_amplitude,
    tune_pair,
    verify_i_off,
)
from protocols.wiring import Ratings
from simulators.adc_board import SimAdcBoard
from simulators.mtj import MTJParams, voltage
from simulators.world import SimSettings, StationWorld

K = 20e-6  # A/V: the simulated devices' programming sensitivity for a 1 us pulse
PAIR4 = 3  # pair 4, 0-based


@pytest.fixture
def world() -> StationWorld:
    """An ideal-preset world (programming without spread) with pair 4 connected."""
    w = StationWorld(SimSettings(seed=5, variability="ideal"))
    w.set_contact(True)
    w.set_closed({"1A04", "1B04"})
    return w


def shift(w: StationWorld, dev: int = 0) -> float:
    return float(w.chip.tuning_state((PAIR4, dev))[0])


def run_cmd(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cmd_tune.add_arguments(parser)
    return cmd_tune.run(parser.parse_args(argv))


# -- the world's pulse physics ---------------------------------------------------------
def test_pulse_threshold_direction_and_width(world: StationWorld):
    world.program("A", 0.35, 1e-3)  # at the threshold: nothing moves, however long
    world.program("A", -0.3, 1e-3)
    assert shift(world) == 0.0
    assert world.chip.max_abs_v[PAIR4, 0] == pytest.approx(0.35)
    world.program("A", 0.5, 1e-6)
    assert shift(world) == pytest.approx(K * 0.15)
    world.program("A", 0.5, 4e-6)  # four times as long: twice the move
    assert shift(world) == pytest.approx(K * 0.15 * 3)
    world.program("A", -0.65, 1e-6)  # the opposite polarity moves I_off down
    assert shift(world) == pytest.approx(K * 0.15 * 3 - K * 0.3)
    assert shift(world, 1) == 0.0  # device B is on the other bus
    i_off = world.chip.params.i_off[PAIR4]
    assert i_off[0] == pytest.approx(world.chip.fabricated.i_off[PAIR4, 0] + shift(world))


def test_pulse_shift_is_clamped_and_persists_across_reads(world: StationWorld):
    for _ in range(5):
        world.program("B", 0.8, 10e-6)  # 28.5 uA a pulse
    assert shift(world, 1) == pytest.approx(40e-6)
    world.program("B", 0.8, 1e-3)
    assert shift(world, 1) == pytest.approx(40e-6)
    # The tuning state is what the SMU reads, again and again, across switching and z moves.
    params = world.chip.params.take((PAIR4, 1))
    expected = float(voltage(params, 60e-6))
    for _ in range(3):
        assert world.drive("B", 60e-6, 21.0).voltage == pytest.approx(expected, rel=1e-9)
    world.set_closed(set())
    world.set_contact(False)
    world.set_contact(True)
    world.set_closed({"1A04", "1B04"})
    assert world.drive("B", 60e-6, 21.0).voltage == pytest.approx(expected, rel=1e-9)
    assert shift(world, 1) == pytest.approx(40e-6)
    for _ in range(5):
        world.program("B", -0.8, 10e-6)
    assert shift(world, 1) == pytest.approx(-40e-6)


def test_pulse_redrives_the_bus(world: StationWorld):
    before = world.drive("A", 40e-6, 21.0).voltage
    world.program("A", 0.6, 10e-6)
    after = world.buses["A"].voltage
    # I_off moved up: at 40 uA the free layer is further from parallel, so more volts.
    assert after > before
    assert after == pytest.approx(float(voltage(world.chip.params.take((PAIR4, 0)), 40e-6)))


def test_no_pulse_reaches_a_device_while_separated_or_unconnected(world: StationWorld):
    world.set_contact(False)
    assert world.program("A", 0.8, 10e-6) == []
    world.set_contact(True)
    world.set_closed({"1B04"})
    world.program("A", 0.8, 10e-6)
    assert not world.chip.max_abs_v.any() and not world.chip.tuning_shift.any()


def test_pulse_beyond_breakdown_destroys_and_is_recorded(world: StationWorld):
    v_bd = world.chip.device(PAIR4, 0)[5]
    world.program("A", v_bd + 0.2, 1e-6)
    record = world.max_bias_record()["1,1"]
    assert record["destroyed"][PAIR4, 0] and not record["destroyed"][PAIR4, 1]
    assert record["max_abs_v"][PAIR4, 0] == pytest.approx(v_bd + 0.2)
    assert record["max_abs_i"][PAIR4, 0] > 100e-6  # what it drew at that voltage
    assert shift(world) == 0.0  # a broken barrier is not programmed
    world.program("A", 0.6, 1e-5)
    assert shift(world) == 0.0
    assert world.drive("A", 10e-6, 21.0).voltage == pytest.approx(10e-6 * 50.0)


def test_pulse_spread_is_seeded():
    def shifts(seed):
        w = StationWorld(SimSettings(seed=seed))  # nominal: 10 % spread per pulse
        w.set_contact(True)
        w.set_closed({"1A01"})
        out = []
        for _ in range(5):
            w.program("A", 0.4, 1e-6)
            out.append(float(w.chip.tuning_state((0, 0))[0]))
        return np.diff([0.0, *out])

    a, b = shifts(11), shifts(11)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, a[0])  # pulse to pulse, not one fixed factor
    np.testing.assert_allclose(a, K * 0.05, rtol=0.5)


# -- the simulated board -----------------------------------------------------------------
def test_board_prog_commands(world: StationWorld):
    board = SimAdcBoard(world)
    assert board.handle("PROG:COUN?") == "0"
    t0 = world.clock.now()
    assert board.handle("prog:puls a , 0.5 , 1e-6") is None
    assert board.handle("SYST:ERR?") == '0,"No error"'
    assert shift(world) == pytest.approx(K * 0.15)
    assert world.clock.now() - t0 == pytest.approx(1e-6)
    assert board.handle("PROG:PULS B,-0.9,1e-3") is None  # the ideal devices break at 1 V
    assert shift(world, 1) == pytest.approx(-40e-6)
    assert board.handle("PROG:PULS A,0.2,1e-7") is None  # below threshold: counted all the same
    assert board.handle("PROG:COUN?") == "3"
    board.handle("*RST")
    assert board.handle("PROG:COUN?") == "0"
    assert shift(world) == pytest.approx(K * 0.15)  # the device keeps its state


@pytest.mark.parametrize(
    "command, code",
    [
        ("PROG:PULS", -104),
        ("PROG:PULS A,0.5", -104),
        ("PROG:PULS A,0.5,1e-6,1", -104),
        ("PROG:PULS A,volts,1e-6", -104),
        ("PROG:PULS A,nan,1e-6", -104),
        ("PROG:PULS ,0.5,1e-6", -104),
        ("PROG:COUN? 1", -104),
        ("PROG:PULS C,0.5,1e-6", -222),
        ("PROG:PULS A,1.51,1e-6", -222),
        ("PROG:PULS B,-1.6,1e-6", -222),
        ("PROG:PULS A,0.5,9e-8", -222),
        ("PROG:PULS A,0.5,1.1e-3", -222),
        ("PROG:PUL A,0.5,1e-6", -113),
    ],
)
def test_board_prog_errors_change_nothing(world: StationWorld, command: str, code: int):
    board = SimAdcBoard(world)
    t0 = world.clock.now()
    assert board.handle(command) is None
    assert int(board.handle("SYST:ERR?").split(",")[0]) == code
    assert board.handle("PROG:COUN?") == "0"
    assert not world.chip.max_abs_v.any() and not world.chip.tuning_shift.any()
    assert world.clock.now() == t0


def test_board_refuses_pulse_while_armed(world: StationWorld):
    board = SimAdcBoard(world)
    board.handle("ACQ:ARM")
    board.handle("PROG:PULS A,0.6,1e-5")
    assert board.handle("SYST:ERR?") == '-221,"Settings conflict"'
    assert board.handle("PROG:COUN?") == "0" and shift(world) == 0.0
    board.handle("ACQ:ABOR")
    board.handle("PROG:PULS A,0.6,1e-5")
    assert board.handle("PROG:COUN?") == "1" and shift(world) > 0


# -- the driver over the real pty, the envelope and the engine ---------------------------
@pytest.fixture(scope="module")
def station():
    """The built-in simulated station (seed 1, nominal), ADC board on its pty."""
    with open_station(load_station(None)) as st:
        yield st


def test_driver_program_pulse_over_the_pty(station):
    world, adc = station.simulator.world, station.adc
    assert station.config.instruments["adc"].resource.startswith("/dev/")  # the pty
    station.prepare_sources(compliance_v=0.8, nplc=1, adc_gain=100)
    station.connect_pair(16)
    count = adc.pulse_count
    before = float(world.chip.tuning_state((15, 1))[0])
    adc.program_pulse("b", 0.6, 1e-5)
    assert adc.pulse_count == count + 1
    moved = float(world.chip.tuning_state((15, 1))[0]) - before
    assert moved == pytest.approx(K * 0.25 * math.sqrt(10), rel=0.4)
    assert world.chip.max_abs_v[15, 1] >= 0.6
    for bad in (("C", 0.5, 1e-5), ("A", 1.6, 1e-5), ("A", math.nan, 1e-5), ("A", 0.5, 2e-3)):
        with pytest.raises(ValueError):
            adc.program_pulse(*bad)
    adc.arm(1)
    try:
        with pytest.raises(InstrumentReportedError, match="-221"):
            adc.program_pulse("A", 0.5, 1e-5)
    finally:
        adc.abort()
    assert adc.pulse_count == count + 1


def test_envelope_refuses_pulses_beyond_the_pulse_limits(station):
    env = SafetyEnvelope(station.wiring)
    # 0.6 V through the lowest rated resistance (2 kOhm) drives 300 uA: the current limit.
    assert env.pulse_amplitude_limit_v(4) == pytest.approx(0.6)
    env.check(Pulse(4, "A", 0.6, 1e-5))
    env.check(Pulse(4, "b", -0.6, 1e-5))
    with pytest.raises(SafetyViolation, match=r"can drive 0.000305 A .* pulse_max_current_a"):
        env.check(Pulse(4, "B", -0.61, 1e-5))
    stiff = SafetyEnvelope(replace(station.wiring, ratings=Ratings(min_resistance_ohm=4000.0)))
    stiff.check(Pulse(4, "A", 0.8, 1e-5))
    with pytest.raises(SafetyViolation, match=r"\|amplitude\| = 0.81 V exceeds .* 0.8 V"):
        stiff.check(Pulse(4, "B", -0.81, 1e-5))
    with pytest.raises(SafetyViolation, match="does not wire pair 17"):
        env.check(Pulse(17, "A", 0.5, 1e-5))
    with pytest.raises(SafetyViolation, match="non-finite"):
        env.check(Pulse(4, "A", math.inf, 1e-5))
    with pytest.raises(ValueError, match="device must be A or B"):
        Pulse(4, "C", 0.5, 1e-5)
    engine = Engine(station)
    count = station.adc.pulse_count
    with pytest.raises(SafetyViolation):
        engine.execute(Pulse(4, "A", 1.2, 1e-5))
    assert station.adc.pulse_count == count and engine.stats.pulses == 0


# -- estimation and tuning ---------------------------------------------------------------
def test_conductance_peak_on_the_model():
    i = np.linspace(5e-6, 100e-6, 96)
    for i_off in (20e-6, 40e-6, 60e-6, 85e-6):
        p = MTJParams(i_off=i_off)
        est, problem = conductance_peak(i, voltage(p, i))
        assert problem == "" and est == pytest.approx(i_off, abs=1.2e-6)
    est, problem = conductance_peak(i, i * 50.0)  # a short
    assert math.isnan(est) and "flat" in problem
    est, problem = conductance_peak(i, voltage(MTJParams(i_off=98e-6), i))
    assert math.isnan(est) and "sweep's ends" in problem


def test_estimator_tracks_the_true_i_off(station):
    """Every device of the built-in chip, as fabricated and re-tuned: within ~1.5 uA."""
    world, engine = station.simulator.world, Engine(station)
    errors = []
    for pair in range(1, 17):
        est = engine.run(estimate_i_off(pair))
        errors += [est.i_off[d] - world.chip.params.i_off[pair - 1, j]
                   for j, d in enumerate("AB")]
    bank = world.dies[(2, 2)]  # another die: re-tune it by hand, then measure there
    station.prober.separate()
    station.prober.move_to_die(2, 2)
    station.prober.contact()
    try:
        for pair, shift_a in ((1, -22e-6), (2, 25e-6), (3, 40e-6)):
            bank.tune((pair - 1, slice(None)), shift_a)
            est = engine.run(estimate_i_off(pair))
            errors += [est.i_off[d] - bank.params.i_off[pair - 1, j] for j, d in enumerate("AB")]
    finally:
        station.prober.separate()
        station.prober.move_to_die(1, 1)
        station.prober.contact()
    errors = np.array(errors)
    assert np.all(np.abs(errors) < 1.5e-6), errors


def test_tune_pair_moves_pair_4_to_50_uA(station):
    world = station.simulator.world
    source_at_pulse = []
    program = world.program

    def spy(bus, amplitude_v, width_s):
        source_at_pulse.append(world.buses[bus].set_current)
        return program(bus, amplitude_v, width_s)

    world.program = spy
    try:
        engine = Engine(station)
        count = station.adc.pulse_count
        result = engine.run(tune_pair(4, 50e-6, max_amplitude_v=0.8))
    finally:
        del world.program
    true = world.chip.params.i_off[PAIR4]
    assert result.success, result.reason
    assert all(36e-6 < result.before.i_off[d] < 42e-6 for d in "AB")
    assert all(abs(result.after.i_off[d] - 50e-6) <= 2e-6 for d in "AB")
    # The estimate's bias (about -0.8 uA) adds to the tolerance against the truth.
    np.testing.assert_allclose(true, 50e-6, atol=3e-6)
    assert 2 <= result.pulses_applied == engine.stats.pulses == len(source_at_pulse)
    assert station.adc.pulse_count == count + result.pulses_applied
    assert source_at_pulse == [0.0] * len(source_at_pulse)  # SMUs at 0 A under every pulse
    assert all(abs(p.amplitude_v) <= 0.8 for p in result.pulses)
    verified, _ = engine.run(verify_i_off(4))
    assert all(abs(verified.i_off[d] - 50e-6) <= 2.5e-6 for d in "AB")


def test_tune_pair_fails_cleanly_when_the_target_is_unreachable(station):
    engine = Engine(station)
    result = engine.run(tune_pair(5, 10e-6))  # below what the sweep can locate
    assert not result.success and "outside the range" in result.reason
    assert result.pulses_applied == 0
    # Beyond the +-40 uA tuning range of pair 6 (fabricated near 40 uA): it saturates.
    cap = engine.envelope.pulse_amplitude_limit_v(6)
    result = engine.run(tune_pair(6, 88e-6, max_pulses=40, max_amplitude_v=cap))
    assert not result.success and "unreachable" in result.reason
    assert result.pulses_applied < 40
    assert all(abs(p.amplitude_v) <= cap for p in result.pulses)
    assert np.allclose(station.simulator.world.chip.tuning_state((5, slice(None)))[0], 40e-6)
    # A budget too small for the job ends the run too.
    result = engine.run(tune_pair(7, 20e-6, max_pulses=1))
    assert not result.success and "budget of 1" in result.reason


def test_tune_pair_offline_never_exceeds_the_amplitude_cap():
    """A device that ignores every pulse: the plan gives up, never beyond its cap."""
    asked = []

    def answer(intent):
        if isinstance(intent, Pulse):
            asked.append(intent.amplitude_v)
            return None
        if isinstance(intent, Sweep):
            p = MTJParams(i_off=40e-6)
            v = voltage(p, intent.currents_a)
            false = np.zeros(len(intent), bool)
            return SweepResult(intent, v, v, 0 * v, false, false)
        return None

    result = run_offline(tune_pair(1, 60e-6, max_amplitude_v=0.7), answer)
    assert not result.success and "unreachable" in result.reason
    assert asked and max(abs(a) for a in asked) <= 0.7
    assert pulse_amplitude(-5e-6, K, 10e-6, 0.35, 0.8) == pytest.approx(
        -(0.35 + 5e-6 / (K * math.sqrt(10)))
    )


def test_cli_tune_records_and_verifies(tmp_path, capsys):
    rc = run_cmd(["--pair", "4", "--i-off", "50e-6", "--sessions-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "tuned: both devices within tolerance" in out
    assert "verification (201-point I-V sweep): both devices within tolerance" in out
    (session_dir,) = tmp_path.iterdir()
    session = Session.open(session_dir)
    rows = session.events("tuning")
    assert rows[0]["iteration"] == 0 and rows[-1]["pulses_total"] >= 2
    assert len(session.events("verify_iv")) == 201
    summary = session.stop["labctl_summary"]
    assert summary["success"] and summary["verified_ok"]
    assert abs(summary["simulator_i_off_a"]["A"] - 50e-6) < 3e-6
