"""Devices that differ in shape: hysteresis, bias asymmetry, sub-domains, telegraph noise,
drift, temperature; on the station's simulator, through the oracle and on the model backend."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from labctl.station.file import BUILTIN_TEXT, StationFileError, parse_station
from labctl.station.oracle import Oracle
from labctl.training.neurons import ModelNeurons
from protocols.wiring import Wiring
from simulators.device_shapes import (
    dwell_times,
    telegraph_occupation,
    temperature_factors,
)
from simulators.mtj import (
    NOMINAL,
    PRESETS,
    DeviceBank,
    _tmr,
    dvdi,
    sample_pairs,
    voltage,
)
from simulators.world import SimSettings, StationWorld

SHAPED = ("hysteretic", "multidomain", "telegraph", "realistic")
SWEEP = np.linspace(-100e-6, 160e-6, 131)


def world_with(preset: str, seed: int = 2) -> StationWorld:
    w = StationWorld(SimSettings(seed=seed, variability=preset, n_pairs=4, die_grid=(1, 1)))
    w.set_contact(True)
    return w


def sweep_bus(w: StationWorld, channel: str, currents) -> np.ndarray:
    """Drive ``currents`` (A) one after the other through ``channel``'s device: V (V)."""
    w.set_closed({channel})
    out = [w.drive("A", float(i), 2.0).voltage for i in currents]
    w.release("A")
    return np.array(out)


def test_hysteresis_up_and_down_sweeps_differ_near_i_off_and_agree_far_from_it():
    w = world_with("hysteretic")
    p = w.chip.fabricated
    h, i_off, i_w = float(p.i_hyst[0, 0]), float(p.i_off[0, 0]), float(p.i_w[0, 0])
    assert 0.5e-6 < h < 20e-6  # a few uA: 0.1-0.3 I_w, see simulators.device_shapes
    up = sweep_bus(w, "1A01", SWEEP)
    down = sweep_bus(w, "1A01", SWEEP[::-1])[::-1]
    near = np.abs(SWEEP - i_off) < i_w
    far = np.abs(SWEEP - i_off) > h + 4 * i_w
    assert np.max(np.abs(up - down)[near]) > 2e-3  # V, the branches differ by mV
    assert np.max(np.abs(up - down)[far]) < 0.02 * np.max(np.abs(up - down))
    assert np.all(up[near] >= down[near])  # up branch: transition later, more antiparallel


def test_hysteresis_branch_is_the_oracles_and_its_dvdi_exact():
    w = world_with("hysteretic")
    wiring = parse_station(BUILTIN_TEXT.replace("n_pairs = 16", "n_pairs = 4"), "t").wiring
    oracle = Oracle(w, wiring)
    sweep_bus(w, "1A01", SWEEP)  # ends above the window: down branch
    assert w.chip.branch[0, 0] == -1
    i = np.linspace(0, 80e-6, 9)
    p = oracle.params([1]).take(0)
    step = 1e-10
    numeric = (voltage(p, i + step) - voltage(p, i - step)) / (2 * step)
    np.testing.assert_allclose(oracle.dvdi([1], i), numeric, rtol=1e-5)
    assert float(p.i_off) == pytest.approx(float(w.chip.fabricated.i_off[0, 0]
                                                 - w.chip.fabricated.i_hyst[0, 0]))


def test_bias_asymmetry_halves_the_tmr_at_different_biases():
    p = replace(NOMINAL, bias_asym=0.2)
    assert float(_tmr(p, 0.6)) == pytest.approx(NOMINAL.tmr0 / 2)  # V_h+ = 0.5 * 1.2
    assert float(_tmr(p, -0.4)) == pytest.approx(NOMINAL.tmr0 / 2)  # V_h- = 0.5 * 0.8
    # Far below I_off (antiparallel), a symmetric junction is odd in I, this one is not.
    frozen = replace(p, i_off=1.0, i_w=1e-6)
    sym = replace(frozen, bias_asym=0.0)
    i = np.array([50e-6, 100e-6])
    np.testing.assert_allclose(voltage(sym, i), -voltage(sym, -i), rtol=1e-12)
    assert np.all(voltage(frozen, i) > -voltage(frozen, -i) + 1e-3)  # more TMR kept at V > 0
    assert np.ptp(PRESETS["multidomain"].shapes.asym_mean + np.zeros(1)) == 0
    drawn = sample_pairs(64, PRESETS["multidomain"], np.random.default_rng(0))
    assert 0.05 < float(np.mean(drawn.bias_asym)) < 0.2 and np.std(drawn.bias_asym) > 0.02


def test_multidomain_free_layer_is_not_a_tanh():
    drawn = sample_pairs(32, PRESETS["multidomain"], np.random.default_rng(1))
    assert np.all(drawn.md_w1 + drawn.md_w2 <= 0.6 + 1e-12) and np.all(drawn.md_w1 > 0)
    # Fit the best single tanh to one device's V(I): the residual is far above the read
    # noise (20 uV), where a single-domain device fits it exactly.
    from scipy.optimize import curve_fit

    i = np.linspace(-100e-6, 140e-6, 241)

    def single(ii, i_off, i_w, r_p):
        return voltage(replace(NOMINAL, i_off=i_off, i_w=i_w, r_p=r_p), ii)

    for params, worst in ((drawn.take((3, 0)), 1e-3), (replace(NOMINAL, i_off=45e-6), 1e-7)):
        v = voltage(params, i)
        fit, _ = curve_fit(single, i, v, p0=(40e-6, 25e-6, 3e3), maxfev=4000)
        residual = np.max(np.abs(single(i, *fit) - v))
        assert (residual > worst) if worst > 1e-6 else (residual < worst)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_exact_dvdi_matches_a_fine_numerical_derivative_for_every_shape(preset):
    p = sample_pairs(6, PRESETS[preset], np.random.default_rng(3))
    i = np.linspace(-120e-6, 160e-6, 141)[:, None, None]
    step = 1e-10
    numeric = (voltage(p, i + step) - voltage(p, i - step)) / (2 * step)
    np.testing.assert_allclose(dvdi(p, i), numeric, rtol=2e-5, atol=0.05)


@pytest.mark.parametrize("preset", SHAPED)
def test_scalar_hot_path_agrees_with_the_vector_model(preset):
    bank = DeviceBank(sample_pairs(3, PRESETS[preset], np.random.default_rng(4)))
    for i in np.linspace(-100e-6, 100e-6, 21):
        for dev in (0, 1):
            assert bank.ideal_voltage_one(1, dev, float(i)) == pytest.approx(
                float(bank.ideal_voltage((1, dev), i)), rel=1e-12, abs=1e-15)


def test_telegraph_noise_has_two_levels_and_the_dwell_time_statistics():
    w = world_with("telegraph", seed=5)
    p = w.chip.fabricated
    pair = int(np.flatnonzero(p.rtn_amp[:, 0] > 0)[0])
    i_off, tau = float(p.i_off[pair, 0]), float(p.rtn_tau[pair, 0])
    w.set_closed({f"1A{pair + 1:02d}"})
    dt = tau / 20
    v = []
    for _ in range(6000):
        w.clock.spend(dt)
        v.append(w.drive("A", i_off, 2.0).voltage)
    v = np.array(v)
    levels = np.unique(np.round(v, 9))
    assert len(levels) == 2 and np.ptp(levels) > 1e-4  # two levels, >0.1 mV apart
    high = v > levels.mean()
    # Dwell times: runs of one level; exponential with mean tau at I_off (|x| = 0).
    edges = np.flatnonzero(np.diff(high.astype(int))) + 1
    runs = np.diff(edges) * dt
    assert len(runs) > 100
    assert np.mean(runs) == pytest.approx(tau, rel=0.25)
    assert abs(np.mean(high) - 0.5) < 0.12
    # Away from I_off the fluctuation freezes into the favoured state.
    w.set_closed({f"1A{pair + 1:02d}"})
    x = 6.0
    bias = i_off + x * float(p.rtn_i[pair, 0])
    away = []
    for _ in range(800):
        w.clock.spend(dt)
        away.append(w.drive("A", bias, 2.0).voltage)
    away = np.array(away[100:])
    favoured = np.isclose(away, np.min(away), rtol=0, atol=1e-9)  # high m: the lower V
    assert np.mean(favoured) > 0.95
    assert float(telegraph_occupation(x)) > 0.99
    t01, t10 = dwell_times(tau, x)
    assert t10 / t01 == pytest.approx(np.exp(x))


def test_realistic_preset_drifts_and_relaxes_by_default():
    assert PRESETS["realistic"].drift_a_per_sqrt_s > 0
    assert PRESETS["realistic"].relax_fraction > 0
    w = world_with("realistic")
    w.set_closed({"1A02"})
    v0 = w.drive("A", 40e-6, 2.0).voltage
    w.chip.tune((1, 0), shift_a=10e-6)
    w.clock.spend(3000.0)  # ten relaxation times: the shift has relaxed 10 %
    w.drive("A", 40e-6, 2.0)
    assert w.chip.relax_shift[1, 0] == pytest.approx(-1e-6, rel=0.1)
    assert np.std(w.chip.tuning_shift) > 0  # drift on
    assert w.drive("A", 40e-6, 2.0).voltage != v0


def test_presets_draw_independent_devices_and_ideal_stays_ideal():
    rng = np.random.default_rng
    nominal = sample_pairs(200, PRESETS["nominal"], rng(7))
    pronounced = sample_pairs(200, PRESETS["pronounced"], rng(7))
    z_n = np.log(nominal.r_p[:, 0] / NOMINAL.r_p)
    z_p = np.log(pronounced.r_p[:, 0] / NOMINAL.r_p)
    assert abs(np.corrcoef(z_n, z_p)[0, 1]) < 0.25  # not the same draws scaled
    again = sample_pairs(200, PRESETS["pronounced"], rng(7))
    np.testing.assert_array_equal(again.i_off, pronounced.i_off)  # seeded
    ideal = sample_pairs(8, PRESETS["ideal"], rng(7))
    np.testing.assert_array_equal(ideal.i_off, NOMINAL.i_off)
    for name in ("bias_asym", "md_w1", "md_w2", "i_hyst", "rtn_amp"):
        assert not np.any(getattr(ideal, name)) and not np.any(getattr(nominal, name))


def test_temperature_moves_tmr_rp_width_and_switching_current():
    f4, f300 = temperature_factors(4.0), temperature_factors(300.0)
    assert all(v == pytest.approx(1.0) for v in f300.values())
    assert 1.0 / f4["tmr0"] == pytest.approx(0.70, rel=1e-6)  # TMR falls 30 % to 300 K
    assert f4["r_p"] == pytest.approx(1.10) and f4["i_w"] < 0.55 and f4["i_off"] > 1.2
    with pytest.raises(ValueError, match="temperature"):
        temperature_factors(1000.0)
    warm = replace(PRESETS["nominal"], stream=9)
    cool = replace(warm, temperature_k=250.0)
    a, b = (sample_pairs(16, v, np.random.default_rng(1)) for v in (warm, cool))
    np.testing.assert_allclose(b.tmr0 / a.tmr0, temperature_factors(250.0)["tmr0"])
    text = BUILTIN_TEXT.replace("time_scale = 0.0", "time_scale = 0.0\ntemperature_k = 250.0")
    assert parse_station(text, "t.toml").simulation.temperature_k == 250.0
    with pytest.raises(StationFileError, match=r"t.toml: \[simulation\] temperature_k"):
        parse_station(text.replace("250.0", "900.0"), "t.toml")
    world = StationWorld(SimSettings(seed=1, temperature_k=250.0, n_pairs=2, die_grid=(1, 1)))
    assert world.variability.temperature_k == 250.0


@pytest.mark.parametrize("preset", SHAPED)
def test_model_backend_runs_on_the_shapes(preset):
    currents = 40e-6 + 25e-6 * np.random.default_rng(0).standard_normal((64, 6))
    fast = ModelNeurons(6, variability=preset, seed=3, grad="fd-swap")
    slow = ModelNeurons(6, variability=preset, seed=3, grad="fd-swap", lut=False)
    a, b = fast.measure(currents), slow.measure(currents)
    np.testing.assert_allclose(a.v, b.v, atol=1e-6)
    np.testing.assert_allclose(a.dvdi, b.dvdi, atol=1.0)
    exact = fast.exact_dvdi(currents)
    assert np.median(np.abs(a.dvdi / exact - 1)) < 0.15


def test_model_backend_hysteresis_follows_the_sweep_direction():
    n = ModelNeurons(4, variability="hysteretic", seed=1, grad="exact")
    up = SWEEP[:, None] * np.ones(4)
    v_up = n.measure(up).v
    v_down = n.measure(up[::-1]).v[::-1]
    gap = np.abs(v_up - v_down)
    assert np.all(gap.max(axis=0) > 2e-3)
    assert np.all(gap[:10].max(axis=0) < 0.2e-3) and np.all(gap[-5:].max(axis=0) < 0.2e-3)


def test_model_backend_telegraph_noise_hurts_fd_more_than_fd_swap():
    # A slow fluctuator is nearly the same in both reads of a swap, which cancels it;
    # a plain fd read carries it divided by dI.
    currents = np.full((600, 8), 40e-6)
    spread = {g: ModelNeurons(8, variability="telegraph", seed=4, grad=g).measure(
        currents).dvdi.std(axis=0) for g in ("fd", "fd-swap")}
    quiet = ModelNeurons(8, variability="nominal", seed=4, grad="fd").measure(
        currents).dvdi.std(axis=0)
    noisy = spread["fd"] > 5 * np.median(quiet)
    assert noisy.any()
    assert np.all(spread["fd-swap"][noisy] < 0.7 * spread["fd"][noisy])


def test_model_backend_drift_moves_the_devices_in_measurement_time():
    n = ModelNeurons(8, variability="realistic", seed=2, grad="exact")
    i = np.full((1, 8), 40e-6)
    before = n.ideal_voltage(i)
    n.measure(np.full((4000, 8), 40e-6))  # 4000 samples, ~75 s of measurement time
    assert n.time_s == pytest.approx(4000 * n.sample_time_s)
    assert not np.allclose(n.ideal_voltage(i), before, atol=1e-7, rtol=0)
    same = ModelNeurons(8, variability="realistic", seed=2, grad="exact")
    same.measure(np.full((4000, 8), 40e-6))
    np.testing.assert_array_equal(same.ideal_voltage(i), n.ideal_voltage(i))  # seeded


def test_oracle_stays_exact_on_a_realistic_station():
    w = world_with("realistic", seed=3)
    wiring: Wiring = parse_station(BUILTIN_TEXT.replace("n_pairs = 16", "n_pairs = 4"),
                                   "t").wiring
    oracle = Oracle(w, wiring)
    i = np.linspace(-50e-6, 90e-6, 15)[:, None] * np.ones(2)
    p = oracle.params([1, 2])
    step = 1e-10
    numeric = (voltage(p, i + step) - voltage(p, i - step)) / (2 * step)
    np.testing.assert_allclose(oracle.dvdi([1, 2], i), numeric, rtol=1e-5)


def test_temperature_option_heats_the_simulated_chuck(tmp_path, capsys):
    """``--temperature-k`` overrides the station's temperature, is recorded with the
    simulation, changes what the devices read and is refused out of range."""
    from labctl.cli import main
    from labctl.records.session import Session

    sessions = tmp_path / "s"
    volts = {}
    for kelvin in ("300", "400"):
        argv = ["iv", "--pair", "1", "--points", "11", "--no-progress", "--sessions-dir",
                str(sessions / kelvin)]
        assert main([*argv, "--temperature-k", kelvin]) == 0
        [path] = (sessions / kelvin).iterdir()
        session = Session(path)
        assert session.start["config"]["station"]["simulation"]["temperature_k"] == float(kelvin)
        volts[kelvin] = np.array([row["v_a"] for row in session.events("iv")])
    # Warmer: lower R_P and TMR, so every reading away from 0 A is lower in magnitude.
    moved = np.abs(volts["400"]) < np.abs(volts["300"]) - 1e-4
    assert moved.sum() >= 8, (volts["300"], volts["400"])
    capsys.readouterr()
    assert main(["iv", "--pair", "1", "--temperature-k", "900", "--sessions-dir",
                 str(sessions / "hot")]) == 2
    assert "--temperature-k must be between 1 and 450 K, got 900.0" in capsys.readouterr().err
    assert not (sessions / "hot").exists()


def test_model_backend_runs_at_the_stations_temperature(tmp_path, capsys):
    """``train iris --backend model`` on a warm station: the settings record the
    temperature, its model devices are the warm ones, and the view's and plots' truth is
    rebuilt from the record at that temperature."""
    import json

    from labctl.cli import main
    from labctl.records.session import Session
    from labctl.training.iris_record import RecordedRun
    from labctl.training.model_backend import model_layers

    argv = ["train", "iris", "--backend", "model", "--folds", "2", "--epochs", "1",
            "--hidden", "2", "--json", "--no-progress", "--sessions-dir", str(tmp_path)]
    assert main([*argv, "--temperature-k", "400"]) == 0
    session = Session(tmp_path / json.loads(capsys.readouterr().out)["session"])
    settings = RecordedRun(session).settings
    assert settings.temperature_k == 400.0
    [warm] = model_layers(settings)
    [room] = model_layers(replace(settings, temperature_k=None))
    np.testing.assert_allclose(warm.variability.temperature_k, 400.0)
    currents = np.full((1, 2), 40e-6)
    # Warm devices switch at a lower current, so at 40 uA they are further into their
    # transition than the 300 K preset's.
    assert np.all(warm.exact_dvdi(currents) > 1.1 * room.exact_dvdi(currents))
    with pytest.raises(ValueError, match="temperature must be within 1..450 K"):
        replace(settings, temperature_k=900.0).validate(1e-3, None)
