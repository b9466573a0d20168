"""The simulated neuron array and the activations (labctl.training.neurons)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.training.neurons import (
    ModelNeurons,
    MTJActivation,
    NeuronArray,
    NeuronReadout,
    TanhActivation,
)
from simulators.mtj import NOMINAL, Variability, dvdi, voltage

N = 300


def grid(lo: float, hi: float, n: int = N, points: int = 61) -> np.ndarray:
    """Every neuron swept over [lo, hi] A: shape (points, n)."""
    return np.repeat(np.linspace(lo, hi, points)[:, None], n, axis=1)


def relative_error(neurons: ModelNeurons, currents: np.ndarray) -> np.ndarray:
    exact = neurons.exact_dvdi(currents)
    return (neurons.measure(currents).dvdi - exact) / exact


def test_is_a_neuron_array():
    neurons = ModelNeurons(4, seed=0)
    assert isinstance(neurons, NeuronArray)
    readout = neurons.measure(np.full((3, 4), 40e-6))
    assert isinstance(readout, NeuronReadout)
    assert readout.v.shape == readout.dvdi.shape == (3, 4)


@pytest.mark.parametrize(
    ("lo", "hi", "di"),
    [
        (-100e-6, 100e-6, 2e-6),  # the whole unclipped range of MTJActivation, default dI
        (-30e-6, 30e-6, 2e-6),  # the band |z| <= 1 of the MNIST operating point (0 A)
        (10e-6, 70e-6, 1e-6),  # the band |z| <= 1 around I_off, where V'' is largest
    ],
)
def test_swap_derivative_matches_analytic(lo, hi, di):
    neurons = ModelNeurons(N, variability="nominal", seed=1, di=di, grad="fd-swap")
    assert np.median(np.abs(relative_error(neurons, grid(lo, hi)))) < 0.03


def test_forward_mode_bias_is_removed_by_swap():
    currents = grid(-100e-6, 100e-6)
    per_neuron = {}
    for grad in ("fd", "fd-swap"):
        neurons = ModelNeurons(N, variability="nominal", seed=2, grad=grad)
        # Mean over the sweep: what stays is each neuron's systematic error.
        per_neuron[grad] = np.abs(relative_error(neurons, currents).mean(axis=0))
    assert np.median(per_neuron["fd"]) > 0.10
    assert np.median(per_neuron["fd-swap"]) < 0.02
    # The bias comes from the pair mismatch: without it forward mode is as good as swap.
    matched = Variability("matched", spread=0.05, mismatch=0.0)
    neurons = ModelNeurons(N, variability=matched, seed=2, grad="fd")
    assert np.median(np.abs(relative_error(neurons, currents).mean(axis=0))) < 0.02


def test_exact_mode_is_the_analytic_derivative_of_device_a():
    neurons = ModelNeurons(16, seed=3, grad="exact")
    currents = grid(-100e-6, 100e-6, 16)
    readout = neurons.measure(currents)
    np.testing.assert_allclose(readout.dvdi, dvdi(neurons.device_a, currents), atol=0.05)
    assert neurons.sigma_dvdi == 0.0


@pytest.mark.parametrize("grad", ["fd-swap", "fd", "exact"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_table_matches_the_device_model(grad, dtype):
    # Same seed, so the same devices and the same noise; only the evaluation differs.
    fast = ModelNeurons(64, seed=4, grad=grad)
    slow = ModelNeurons(64, seed=4, grad=grad, lut=False)
    currents = np.random.default_rng(0).uniform(-110e-6, 110e-6, (40, 64)).astype(dtype)
    a, b = fast.measure(currents), slow.measure(currents)
    assert a.v.dtype == b.v.dtype == dtype
    np.testing.assert_allclose(a.v, b.v, rtol=0, atol=5e-7)
    np.testing.assert_allclose(a.dvdi, b.dvdi, rtol=0, atol=0.05)


def test_table_grows_and_far_currents_use_the_model():
    fast = ModelNeurons(8, seed=5, variability="ideal")
    for limit in (300e-6, 5e-3):  # beyond the initial table; beyond any table
        currents = np.random.default_rng(1).uniform(-limit, limit, (20, 8))
        np.testing.assert_allclose(
            fast.measure(currents).v, voltage(fast.device_a, currents), rtol=1e-6, atol=5e-7
        )


def test_measure_rejects_bad_input():
    neurons = ModelNeurons(4, seed=0)
    with pytest.raises(ValueError, match="shape"):
        neurons.measure(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="finite"):
        neurons.measure(np.array([[0.0, np.nan, 0.0, 0.0]]))


def test_noise_levels_follow_integration_times():
    currents = np.full((4000, 8), 20e-6)
    base = ModelNeurons(8, seed=6, grad="fd-swap")
    noiseless = ModelNeurons(8, seed=6, grad="fd-swap", variability="ideal")
    assert base.sigma_v == pytest.approx(20e-6)
    assert base.sigma_dvdi == pytest.approx(5e-6 / (np.sqrt(2) * 2e-6))
    for kwargs, sigma_v, sigma_d in [
        ({}, 20e-6, 5e-6 / (np.sqrt(2) * 2e-6)),
        ({"nplc": 4.0}, 10e-6, 5e-6 / (np.sqrt(2) * 2e-6)),
        ({"adc_integration_s": 4e-3}, 20e-6, 2.5e-6 / (np.sqrt(2) * 2e-6)),
        ({"grad": "fd"}, 20e-6, 5e-6 / 2e-6),
    ]:
        neurons = ModelNeurons(8, seed=6, **kwargs)
        readout = neurons.measure(currents)
        # The same devices read twice differ only by noise.
        clean = ModelNeurons(8, seed=6, variability=Variability("quiet", 0.05, 0.02, 0, 0),
                             **kwargs).measure(currents)
        dv, dd = readout.v - clean.v, readout.dvdi - clean.dvdi
        assert dv.std() == pytest.approx(sigma_v, rel=0.05)
        assert dd.std() == pytest.approx(sigma_d, rel=0.05)
        assert abs(dv.mean()) < 5 * sigma_v / np.sqrt(dv.size)
        assert abs(dd.mean()) < 5 * sigma_d / np.sqrt(dd.size)
        # Independent from one another.
        assert abs(np.corrcoef(dv.ravel(), dd.ravel())[0, 1]) < 0.02
    r = noiseless.measure(currents)
    assert np.all(r.v == r.v[0]) and np.all(r.dvdi == r.dvdi[0])


def test_deterministic_for_a_seed():
    currents = np.random.default_rng(2).uniform(-100e-6, 100e-6, (50, 32))
    first = [ModelNeurons(32, seed=7).measure(currents) for _ in range(2)]
    np.testing.assert_array_equal(first[0].v, first[1].v)
    np.testing.assert_array_equal(first[0].dvdi, first[1].dvdi)
    other = ModelNeurons(32, seed=8).measure(currents)
    assert not np.allclose(other.v, first[0].v, rtol=0, atol=1e-4)
    # Successive readings of one array carry fresh noise.
    neurons = ModelNeurons(32, seed=7)
    assert not np.array_equal(neurons.measure(currents).v, neurons.measure(currents).v)


def test_pairs_have_distinct_devices():
    neurons = ModelNeurons(100, seed=9)
    assert np.asarray(neurons.pairs.r_p).shape == (100, 2)
    assert not np.allclose(neurons.device_a.i_off, neurons.device_b.i_off)
    ideal = ModelNeurons(100, seed=9, variability="ideal")
    np.testing.assert_array_equal(ideal.device_a.i_off, NOMINAL.i_off)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grad": "central"}, "grad"),
        ({"di": 0.0}, "di"),
        ({"nplc": -1.0}, "nplc"),
        ({"adc_integration_s": 0.0}, "adc_integration_s"),
        ({"variability": "wild"}, "unknown variability"),
        # Drift is simulated now (tests/test_device_shapes.py); a bad temperature is refused.
        ({"temperature_k": 1000.0}, "temperature"),
    ],
)
def test_model_neurons_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelNeurons(4, seed=0, **kwargs)


def test_mtj_activation_normalisation_and_clipping():
    act = MTJActivation()
    assert act.v_center == pytest.approx(float(voltage(NOMINAL, 40e-6)))
    half = float(voltage(NOMINAL, 70e-6) - voltage(NOMINAL, 10e-6)) / 2
    assert act.v_scale == pytest.approx(half)
    neurons = ModelNeurons(3, seed=0, variability="ideal", grad="exact")
    z = np.array([[0.0, 1.0, -1.0], [10.0, -10.0, 0.5]])
    a, dadz, currents, readout = act.forward(z, neurons)
    np.testing.assert_allclose(currents, np.clip(40e-6 + 30e-6 * z, -100e-6, 100e-6))
    assert a[0, 0] == pytest.approx(0.0, abs=1e-5)
    assert a[0, 1] - a[0, 2] == pytest.approx(2.0, abs=1e-5)  # v_scale is the half swing
    np.testing.assert_allclose(a, (readout.v - act.v_center) / act.v_scale)
    expected = dvdi(NOMINAL, currents) * 30e-6 / act.v_scale
    np.testing.assert_allclose(dadz[0], expected[0], rtol=1e-4)
    assert dadz[1, 0] == 0.0 and dadz[1, 1] == 0.0  # clipped: no gradient
    assert dadz[1, 2] > 0


def test_mtj_activation_keeps_float32():
    act = MTJActivation(i_center=0.0)
    z = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    a, dadz, currents, _ = act.forward(z, ModelNeurons(7, seed=1))
    assert a.dtype == dadz.dtype == currents.dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"i_max": 0.0}, "i_max"),
        ({"i_max": -1e-4}, "i_max"),
        ({"i_center": 100e-6}, "i_center"),
        ({"i_center": -150e-6}, "i_center"),
        ({"i_scale": 0.0}, "i_scale"),
    ],
)
def test_mtj_activation_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MTJActivation(**kwargs)


def test_mtj_activation_needs_neurons():
    with pytest.raises(ValueError, match="NeuronArray"):
        MTJActivation().forward(np.zeros((1, 2)), None)


def test_tanh_activation():
    z = np.linspace(-3, 3, 13).reshape(1, -1)
    a, dadz, currents, readout = TanhActivation().forward(z)
    np.testing.assert_allclose(a, np.tanh(z))
    np.testing.assert_allclose(dadz, 1 - np.tanh(z) ** 2)
    assert currents is None and readout is None


def test_gaussian_noise_source():
    from statistics import NormalDist

    from labctl.training.neurons import GaussianNoise, normal_quantiles

    q = normal_quantiles()
    assert len(q) == 2**16 and np.all(np.diff(q) > 0)
    assert np.sqrt(np.mean(q**2)) == pytest.approx(1.0)
    a, b = GaussianNoise(np.random.SFC64(5), 1.0, 2.0).draw(400_001)
    assert a.dtype == b.dtype == np.float32 and len(a) == len(b) == 400_001
    assert a.std() == pytest.approx(1.0, rel=0.01) and b.std() == pytest.approx(2.0, rel=0.01)
    assert abs(a.mean()) < 0.01 and abs(np.corrcoef(a, b)[0, 1]) < 0.01
    # The shape of a normal: the fraction beyond 1 and 2 sigma.
    for k in (1.0, 2.0):
        assert np.mean(np.abs(a) > k) == pytest.approx(2 * NormalDist().cdf(-k), abs=0.003)
    again = GaussianNoise(np.random.SFC64(5), 1.0, 2.0).draw(10)
    np.testing.assert_array_equal(again[0], a[:10])


def test_array_size_limit():
    neurons = ModelNeurons(2, seed=0)
    neurons.measure(np.zeros((1, 2)))
    assert neurons._col_offset.dtype == np.int32
