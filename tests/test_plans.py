"""Plans and the safety envelope, with no instrument at all."""

import numpy as np
import pytest

from labctl.station.file import load_station
from protocols.finite_difference import calibrate, fd_batch, optimal_step
from protocols.intents import Sweep, SweepResult, run_offline
from protocols.safety import SafetyEnvelope, SafetyViolation
from simulators.mtj import NOMINAL, dvdi, voltage

OFFSET_V = 2e-3  # a pair whose device B reads 2 mV above device A at any current


def ideal_pair(sweep: Sweep) -> SweepResult:
    va = voltage(NOMINAL, sweep.currents_a)
    vb = voltage(NOMINAL, sweep.currents_b) + OFFSET_V
    false = np.zeros(len(sweep), bool)
    return SweepResult(sweep, va, vb, vb - va, false, false)


def test_swap_cancels_the_offset_forward_needs_calibration():
    currents = np.linspace(-60e-6, 80e-6, 15)[:, None]
    di = 0.5e-6
    exact = dvdi(NOMINAL, currents + di / 2)[:, 0]
    swap = run_offline(fd_batch(currents, [1], di, "swap"), ideal_pair)
    np.testing.assert_allclose(swap.dvdi[:, 0], exact, rtol=2e-3)
    fwd = run_offline(fd_batch(currents, [1], di, "forward"), ideal_pair)
    np.testing.assert_allclose(fwd.dvdi[:, 0] - OFFSET_V / di, exact, rtol=0.05)
    cal = run_offline(calibrate([1], 100e-6), ideal_pair)
    fixed = run_offline(fd_batch(currents, [1], di, "forward", calibration=cal), ideal_pair)
    np.testing.assert_allclose(fixed.dvdi[:, 0], exact, rtol=0.05)
    np.testing.assert_allclose(swap.v[:, 0], voltage(NOMINAL, currents[:, 0]))
    assert cal.offset_at(1, np.array([0.0]))[0] == pytest.approx(OFFSET_V)


def test_fd_batch_asks_one_sweep_per_pair_in_order():
    asked = []

    def answer(sweep):
        asked.append((sweep.pair, len(sweep)))
        return ideal_pair(sweep)

    run_offline(fd_batch(np.zeros((5, 3)), [4, 2, 9], 1e-6, "swap"), answer)
    assert asked == [(4, 10), (2, 10), (9, 10)]
    with pytest.raises(ValueError, match="3 columns but 2 pairs"):
        run_offline(fd_batch(np.zeros((5, 3)), [1, 2], 1e-6), answer)


def test_envelope_refuses_before_any_instrument():
    env = SafetyEnvelope(load_station(None))
    env.check(Sweep(1, [100e-6], [-100e-6]))
    with pytest.raises(SafetyViolation, match=r"pair 1 device B: \|I\| = 0.000101 A exceeds"):
        env.check(Sweep(1, [0.0], [101e-6]))
    with pytest.raises(SafetyViolation, match="pair 17, which the station"):
        env.check(Sweep(17, [0.0], [0.0]))
    with pytest.raises(SafetyViolation, match="non-finite"):
        env.check(Sweep(2, [np.nan], [0.0]))


def test_ramps_start_and_end_at_zero_in_small_steps():
    env = SafetyEnvelope(load_station(None))
    a, b, real = env.ramped(
        1, np.array([-100e-6, -99e-6, 90e-6]), np.array([-99e-6, -98e-6, 91e-6])
    )
    assert a[-1] == 0 and b[-1] == 0
    for levels in (a, b):
        steps = np.abs(np.diff(np.concatenate([[0.0], levels])))
        assert steps.max() <= 20e-6 + 1e-18
    np.testing.assert_array_equal(a[real], [-100e-6, -99e-6, 90e-6])


def test_optimal_step_formula():
    assert optimal_step(1e-6, 1e8) == pytest.approx(1.68 * np.sqrt(1e-6 / 1e8), rel=2e-3)
