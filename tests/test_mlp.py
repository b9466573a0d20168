"""The numpy MLP and its trainer (labctl.training.mlp)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.training.mlp import (
    MLP,
    SGD,
    Adam,
    HiddenLayer,
    TrainConfig,
    Trainer,
    cross_entropy,
    loss_and_dlogits,
    softmax,
    train,
)
from labctl.training.neurons import ModelNeurons, MTJActivation, NeuronReadout, TanhActivation


def tanh_net(sizes=(5, 7, 6, 4), seed=0, dtype=np.float64) -> MLP:
    hidden = [HiddenLayer(w, TanhActivation()) for w in sizes[1:-1]]
    return MLP(sizes[0], hidden, sizes[-1], seed=seed, dtype=dtype)


def numeric_gradients(model, x, y, **loss_kwargs):
    def loss():
        return loss_and_dlogits(model.forward(x), y, **loss_kwargs)[0]

    grads = []
    for p in model.params:
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + 1e-6
            up = loss()
            p[i] = old - 1e-6
            down = loss()
            p[i] = old
            g[i] = (up - down) / 2e-6
        grads.append(g)
    return grads


@pytest.mark.parametrize("distill", [False, True])
def test_backprop_matches_numeric_gradients(distill):
    rng = np.random.default_rng(0)
    model = tanh_net()
    x = rng.standard_normal((9, 5))
    y = rng.integers(0, 4, 9)
    kwargs = {}
    if distill:
        kwargs = dict(soft_targets=softmax(rng.standard_normal((9, 4)), 3.0), temperature=3.0,
                      alpha=0.7)
    _, dlogits = loss_and_dlogits(model.forward(x, keep=True), y, **kwargs)
    analytic = model.backward(dlogits)
    numeric = numeric_gradients(model, x, y, **kwargs)
    for a, n in zip(analytic, numeric, strict=True):
        np.testing.assert_allclose(a, n, rtol=1e-5, atol=1e-8)


class ScaledDerivative:
    """A neuron array whose activation is tanh-like but reports k times its derivative."""

    def __init__(self, n, k):
        self.n, self.k = n, k

    def measure(self, currents):
        v = np.tanh(currents * 1e4)
        return NeuronReadout(v=v, dvdi=self.k * 1e4 * (1 - v**2))


def test_backward_uses_the_measured_derivative():
    x = np.random.default_rng(1).standard_normal((6, 3))
    y = np.array([0, 1, 0, 1, 1, 0])
    grads = []
    for k in (1.0, 3.0):
        act = MTJActivation(i_center=0.0, i_scale=1e-4, i_max=1.0)
        model = MLP(3, [HiddenLayer(4, act, ScaledDerivative(4, k))], 2, seed=2)
        _, dlogits = loss_and_dlogits(model.forward(x, keep=True), y)
        grads.append(model.backward(dlogits))
    # Output layer: no activation derivative involved; first layer: scaled by k.
    np.testing.assert_allclose(grads[1][2], grads[0][2])
    np.testing.assert_allclose(grads[1][0], 3.0 * grads[0][0], rtol=1e-6)


def two_moons(n=240, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    x = np.where(label[:, None] == 0,
                 np.c_[np.cos(t), np.sin(t)],
                 np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
    x += rng.normal(0, 0.1, x.shape)
    return (x - x.mean(0)) / x.std(0), label


@pytest.mark.parametrize("grad", ["fd-swap", "fd"])
def test_small_mtj_network_learns_two_moons(grad):
    x, y = two_moons()
    neurons = ModelNeurons(16, seed=3, grad=grad)
    model = MLP(2, [HiddenLayer(16, MTJActivation(), neurons)], 2, seed=4, dtype=np.float64)
    history = train(model, x[:200], y[:200], x_val=x[200:], y_val=y[200:],
                    config=TrainConfig(epochs=150, lr=0.03, seed=5))
    assert history.train_loss[-1] < 0.3 * history.train_loss[0]
    assert cross_entropy(model.forward(x[:200]), y[:200])[1] > 0.95
    assert history.val_acc[-1] >= 0.9


def test_mtj_network_is_deterministic():
    x, y = two_moons(80)

    def run():
        layers = [HiddenLayer(8, MTJActivation(), ModelNeurons(8, seed=s)) for s in (1, 2)]
        model = MLP(2, layers, 2, seed=6)
        h = train(model, x, y, config=TrainConfig(epochs=5, batch_size=16, lr=0.01, seed=7))
        return h, model.get_weights()

    (h1, w1), (h2, w2) = run(), run()
    assert h1.train_loss == h2.train_loss
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [None, 32])
def test_optimisers_reduce_the_loss(optimizer, batch_size):
    x, y = two_moons()
    model = tanh_net((2, 16, 2), seed=8)
    cfg = TrainConfig(epochs=40, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01,
                      batch_size=batch_size, seed=9)
    history = train(model, x, y, config=cfg)
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]


def test_sgd_and_adam_steps():
    p = [np.array([1.0, -2.0])]
    g = [np.array([0.5, 0.5])]
    sgd = SGD(momentum=0.9)
    sgd.step(p, g, lr=0.1)
    np.testing.assert_allclose(p[0], [0.95, -2.05])
    sgd.step(p, g, lr=0.1)  # velocity 0.9 * 0.5 + 0.5
    np.testing.assert_allclose(p[0], [0.855, -2.145])
    q = [np.array([1.0, -2.0])]
    adam = Adam()
    adam.step(q, [np.array([0.5, -3.0])], lr=0.1)
    np.testing.assert_allclose(q[0], [0.9, -1.9], rtol=1e-6)  # first step: lr * sign(g)


def test_learning_rate_schedules():
    assert TrainConfig(lr=0.1).lr_at(50) == 0.1
    step = TrainConfig(lr=0.1, schedule="step", step_size=10, gamma=0.5)
    assert [step.lr_at(e) for e in (0, 9, 10, 25)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    exp = TrainConfig(lr=0.1, schedule="exponential", gamma=0.9)
    assert exp.lr_at(3) == pytest.approx(0.1 * 0.9**3)
    cos = TrainConfig(lr=0.1, schedule="cosine", epochs=10, min_lr=0.01)
    assert cos.lr_at(0) == pytest.approx(0.1)
    assert cos.lr_at(5) == pytest.approx(0.055)
    assert cos.lr_at(9) > 0.01
    warm = TrainConfig(lr=0.1, warmup_epochs=3)
    assert [warm.lr_at(e) for e in range(4)] == pytest.approx([0.025, 0.05, 0.075, 0.1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"schedule": "linear"}, "schedule"),
        ({"lr": 0.0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"monitor": "acc"}, "monitor"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_early_stopping_restores_the_best_weights():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((60, 4))
    y = rng.integers(0, 3, 60)
    x_val = rng.standard_normal((60, 4))
    y_val = rng.integers(0, 3, 60)  # noise: validation loss rises as the net memorises
    model = tanh_net((4, 32, 3), seed=11)
    seen = {}

    def on_epoch(epoch, history, weights):
        seen[epoch] = weights
        assert len(history.epoch) == epoch + 1

    history = train(model, x, y, x_val=x_val, y_val=y_val, on_epoch=on_epoch,
                    config=TrainConfig(epochs=300, lr=0.02, patience=5, seed=12))
    assert history.stopped_early
    assert len(history.epoch) < 300
    best = history.best_epoch
    assert history.val_loss[best] == min(history.val_loss)
    assert len(history.epoch) == best + 1 + 5
    for a, b in zip(model.get_weights(), seen[best], strict=True):
        np.testing.assert_array_equal(a, b)


def test_on_epoch_can_stop_and_history_is_complete():
    x, y = two_moons(64)
    model = tanh_net((2, 8, 2), seed=13)
    history = train(model, x, y, x_val=x, y_val=y, config=TrainConfig(epochs=50, seed=14),
                    on_epoch=lambda e, h, w: e == 3)
    assert len(history.epoch) == 4
    d = history.as_dict()
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s"):
        assert len(d[key]) == 4
    assert all(0 <= a <= 1 for a in d["val_acc"])


def test_trainer_steps_and_refuses_after_the_end():
    x, y = two_moons(64)
    trainer = Trainer(tanh_net((2, 8, 2)), x, y, config=TrainConfig(epochs=2, seed=0))
    rows = [trainer.run_epoch(), trainer.run_epoch()]
    assert trainer.done and [r["epoch"] for r in rows] == [0, 1]
    with pytest.raises(RuntimeError):
        trainer.run_epoch()


def test_weights_round_trip_and_shape_checks():
    model = tanh_net()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(5, 7), (7,), (7, 6), (6,), (6, 4), (4,)]
    other = tanh_net(seed=1)
    other.set_weights(weights)
    x = np.random.default_rng(0).standard_normal((3, 5))
    np.testing.assert_array_equal(other.forward(x), model.forward(x))
    weights[0] += 1.0  # a copy: the model is unchanged
    np.testing.assert_array_equal(other.forward(x), model.forward(x))
    with pytest.raises(ValueError, match="shape"):
        other.set_weights([np.zeros((5, 8))] + weights[1:])
    with pytest.raises(ValueError, match="arrays"):
        other.set_weights(weights[:2])


def test_initialisations():
    xavier = MLP(400, [HiddenLayer(300, TanhActivation())], 10, seed=0, init="xavier")
    assert np.abs(xavier.params[0]).max() <= np.sqrt(6 / 700)
    assert xavier.params[0].std() == pytest.approx(np.sqrt(2 / 700), rel=0.05)
    he = MLP(400, [HiddenLayer(300, TanhActivation())], 10, seed=0, init="he")
    assert he.params[0].std() == pytest.approx(np.sqrt(2 / 400), rel=0.05)
    assert not xavier.params[1].any() and not he.params[1].any()
    a, b = (MLP(4, [HiddenLayer(3, TanhActivation())], 2, seed=s).params[0] for s in (0, 0))
    np.testing.assert_array_equal(a, b)


def test_mlp_validation():
    with pytest.raises(ValueError, match="needs neurons"):
        MLP(2, [HiddenLayer(3, MTJActivation())], 2, seed=0)
    with pytest.raises(ValueError, match="3 neurons"):
        MLP(2, [HiddenLayer(4, MTJActivation(), ModelNeurons(3, seed=0))], 2, seed=0)
    with pytest.raises(ValueError, match="inputs"):
        tanh_net().forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="validation"):
        Trainer(tanh_net(), np.zeros((4, 5)), np.zeros(4, int),
                config=TrainConfig(patience=3))


def test_augment_hook_sees_every_minibatch():
    x, y = two_moons(64)
    seen = []

    def augment(xb, rng):
        seen.append(len(xb))
        return xb + rng.normal(0, 0.01, xb.shape)

    def run():
        model = tanh_net((2, 8, 2), seed=15)
        train(model, x, y, config=TrainConfig(epochs=2, batch_size=16, seed=16), augment=augment)
        return model.get_weights()

    first, second = run(), run()
    assert seen == [16] * 16  # 4 minibatches, 2 epochs, 2 runs
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
