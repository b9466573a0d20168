"""The 2-D tasks: seeded generators of the documented sizes and noise, and a real, seeded
check that they need the nonlinearity (a linear network stays near chance on them, an MTJ
network on the model backend learns them). Iris runs exactly as before."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.commands.train_iris import LiveSource
from labctl.training import tasks
from labctl.training.iris import IrisSettings, fold_data, summarise, train_folds
from labctl.training.iris_data import load_iris, standardise, stratified_folds
from labctl.training.iris_record import NullSink

LIMIT_A = 100e-6


@pytest.mark.parametrize("task", ["rings", "spirals", "xor"])
def test_each_task_is_seeded_balanced_and_of_the_documented_size(task):
    x, y = tasks.load_task(task, 3)
    assert x.shape == (tasks.TASK_SAMPLES, 2) and y.shape == (tasks.TASK_SAMPLES,)
    assert np.bincount(y).tolist() == [tasks.TASK_SAMPLES // 2] * 2
    again, _ = tasks.load_task(task, 3)
    np.testing.assert_array_equal(x, again)
    other, _ = tasks.load_task(task, 4)
    assert not np.allclose(x, other)
    assert tasks.task_shape(task) == (2, 2, tasks.TASK_SAMPLES // 2)


def test_rings_have_the_documented_radii_and_noise():
    x, y = tasks.rings(0, n=4000)
    r = np.hypot(x[:, 0], x[:, 1])
    for cls, radius in ((0, 0.5), (1, 1.0)):
        assert r[y == cls].mean() == pytest.approx(radius, abs=0.01)
        assert r[y == cls].std() == pytest.approx(tasks.RINGS_NOISE, rel=0.1)


def test_xor_clusters_sit_on_the_diagonals_of_their_class():
    x, y = tasks.xor(0, n=4000)
    differ = np.sign(x[:, 0]) != np.sign(x[:, 1])
    # Only the Gaussian tails (rms XOR_NOISE about +-1) cross an axis: P ~ 2 * 0.0004.
    assert np.mean(differ == (y == 1)) > 0.99
    assert np.abs(x).mean() == pytest.approx(1.0, abs=0.03)


def test_spirals_follow_their_arms():
    x, y = tasks.spirals(0, n=4000)
    r = np.hypot(x[:, 0], x[:, 1])
    t = np.clip((r - 0.15) / 0.85, 0, 1)
    expected = 2 * np.pi * tasks.SPIRAL_TURNS * t + np.pi * y
    miss = np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - expected)))
    # rad: the noise moves a point along and across its arm by a few tenths of a radian,
    # never near the other arm (pi away).
    assert np.median(np.abs(miss)) < 0.3
    assert np.mean(np.abs(miss) < np.pi / 2) > 0.99


def test_an_unknown_task_is_refused_naming_the_option():
    with pytest.raises(ValueError, match="--task must be one of iris, rings, spirals, xor"):
        tasks.load_task("moons", 0)


def _accuracy(**changes) -> float:
    s = IrisSettings(backend="model", folds=3, epochs=100, **changes)
    s.validate(LIMIT_A, None)
    return summarise(train_folds(s, LIMIT_A, LiveSource(s), NullSink()))["accuracy"]


@pytest.mark.parametrize("task", ["rings", "xor"])
def test_a_linear_network_stays_near_chance_while_an_mtj_network_learns(task):
    linear = _accuracy(task=task, activation="linear", seed=1)
    mtj = _accuracy(task=task, seed=1)
    assert linear < 0.65, linear  # chance is 0.5
    assert mtj > 0.9, mtj


def test_iris_is_the_default_task_with_its_folds_as_before():
    s = IrisSettings(seed=3)
    assert s.task == "iris" and s.activation == "mtj"
    x, y = load_iris()
    for (xt, yt, xv, yv), (ti, vi) in zip(fold_data(s), stratified_folds(y, 5, 3),
                                          strict=True):
        want_t, want_v = standardise(x[ti], x[vi])
        np.testing.assert_array_equal(xt, want_t)
        np.testing.assert_array_equal(xv, want_v)
        np.testing.assert_array_equal(yt, y[ti])
        np.testing.assert_array_equal(yv, y[vi])
