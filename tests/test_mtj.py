"""The MTJ device model: self-consistency, analytic derivative, tuning and breakdown."""

from dataclasses import replace

import numpy as np
import pytest

from simulators.mtj import (
    NOMINAL,
    PRESETS,
    SHORT_RESISTANCE,
    DeviceBank,
    conductance,
    dvdi,
    magnetisation,
    sample_pairs,
    variability_preset,
    voltage,
)

CURRENTS = np.linspace(-150e-6, 150e-6, 301)


def test_voltage_is_self_consistent():
    v = voltage(NOMINAL, CURRENTS)
    residual = v * conductance(NOMINAL, v, magnetisation(NOMINAL, CURRENTS)) - CURRENTS
    assert np.max(np.abs(residual)) < 1e-15


def test_limits_are_the_parallel_and_antiparallel_resistances():
    # Far above I_off the free layer is parallel: R -> R_P; at small negative bias it is
    # antiparallel with the zero-bias TMR: R -> R_P (1 + TMR0).
    p = replace(NOMINAL, i_w=1e-9)  # a sharp switch, so m = -1 just below I_off
    big = 2e-3
    assert voltage(p, big) / big == pytest.approx(p.r_p, rel=1e-9)
    small = -1e-7
    assert voltage(p, small) / small == pytest.approx(p.r_p * (1 + p.tmr0), rel=1e-5)


def test_analytic_derivative_matches_numeric():
    h = 1e-10
    numeric = (voltage(NOMINAL, CURRENTS + h) - voltage(NOMINAL, CURRENTS - h)) / (2 * h)
    np.testing.assert_allclose(dvdi(NOMINAL, CURRENTS), numeric, rtol=1e-5)


def test_nominal_response_is_monotonic_and_nonlinear():
    d = dvdi(NOMINAL, CURRENTS)
    assert np.all(d > 0)
    assert d.max() / d.min() > 3  # a useful nonlinearity, not a resistor


def test_variability_presets_and_seeding():
    a = sample_pairs(64, PRESETS["nominal"], np.random.default_rng(5))
    b = sample_pairs(64, PRESETS["nominal"], np.random.default_rng(5))
    np.testing.assert_array_equal(a.r_p, b.r_p)
    spread = np.std(np.log(a.r_p[:, 0]))
    assert 0.03 < spread < 0.08
    wide = sample_pairs(64, PRESETS["pronounced"], np.random.default_rng(5))
    assert np.std(np.log(wide.r_p[:, 0])) > 1.5 * spread
    with pytest.raises(ValueError, match="unknown variability preset 'wild'"):
        variability_preset("wild")


def test_tuning_shifts_the_transition_and_persists():
    bank = DeviceBank(sample_pairs(2, PRESETS["ideal"], np.random.default_rng(0)))
    before = bank.ideal_voltage((0, 0), 40e-6)
    bank.tune((0, 0), shift_a=20e-6)
    after = bank.ideal_voltage((0, 0), 40e-6)
    assert after > before  # transition moved up: more antiparallel at the same current
    assert magnetisation(bank.params.take((0, 0)), 60e-6) == pytest.approx(0.0, abs=1e-12)
    assert magnetisation(bank.params.take((0, 1)), 40e-6) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="positive"):
        bank.tune((0, 0), scale=0)


def test_breakdown_destroys_and_is_recorded():
    bank = DeviceBank(sample_pairs(2, PRESETS["nominal"], np.random.default_rng(0)))
    bank.bias((0, 0), 50e-6)
    assert not bank.destroyed[0, 0]
    v = bank.bias((0, 0), 1e-3)  # ~3 V across a ~1 V barrier
    assert bank.destroyed[0, 0] and not bank.destroyed[0, 1]
    assert bank.max_abs_v[0, 0] > 1.0 and bank.max_abs_i[0, 0] == pytest.approx(1e-3)
    assert v == pytest.approx(1e-3 * SHORT_RESISTANCE)
    assert bank.bias((0, 0), 50e-6) == pytest.approx(50e-6 * SHORT_RESISTANCE)


def test_drift_is_a_seeded_random_walk_in_instrument_time():
    from simulators.world import SimSettings, StationWorld

    def run(drift):
        w = StationWorld(SimSettings(seed=3, drift_a_per_sqrt_s=drift))
        w.set_contact(True)
        w.set_closed({"1A01"})
        v0 = w.drive("A", 40e-6, 0.8).voltage
        w.clock.spend(100.0)
        return v0, w.drive("A", 40e-6, 0.8).voltage, w.chip.tuning_shift.copy()

    still = run(0.0)
    assert still[0] == still[1] and not still[2].any()
    a, b = run(1e-7), run(1e-7)
    np.testing.assert_array_equal(a[2], b[2])  # same seed, same walk
    # 100 s at 0.1 uA/sqrt(s): about 1 uA rms of I_off, a visible change of V_A at 40 uA
    assert 0.3e-6 < np.std(a[2]) < 3e-6
    assert a[1] != a[0]
