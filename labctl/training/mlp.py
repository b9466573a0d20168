"""A small numpy multilayer perceptron whose hidden nonlinearities may be physical neurons.

Weights live in software. Each hidden layer has an activation object (see
:mod:`labctl.training.neurons`): :class:`~labctl.training.neurons.MTJActivation` over a
:class:`~labctl.training.neurons.NeuronArray`, or
:class:`~labctl.training.neurons.TanhActivation`. The forward pass keeps the derivative
each activation returned, and backpropagation multiplies by it, so a measured dV/dI
replaces the analytic derivative wherever neurons are hardware.

The output layer is linear with a softmax cross-entropy loss, optionally mixed with a
distillation term on a teacher's softened outputs. :class:`Trainer` runs epochs with SGD
(momentum, Nesterov) or Adam, a learning-rate schedule, minibatches or full batch, early
stopping with restore-best on a validation set, and an ``on_epoch`` hook for records.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from labctl.training.neurons import Activation, NeuronArray, NeuronReadout

if TYPE_CHECKING:
    from labctl.progress import Progress

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "step", "exponential", "cosine")
MONITORS = ("val_loss", "val_acc")


@dataclass
class HiddenLayer:
    """One hidden layer: ``width`` units, their activation and, if physical, their neurons."""

    width: int
    activation: Activation
    neurons: NeuronArray | None = None


@dataclass
class LayerTrace:
    """What one hidden layer did in the latest forward pass (for records and plots).

    currents: bias currents in A (None for software activations); readout: the raw
    voltages (V) and derivative estimates (Ohm), or None.
    """

    currents: np.ndarray | None
    readout: NeuronReadout | None


class MLP:
    """Fully connected network: inputs -> hidden layers -> linear logits.

    Weights are a list ``[W_0, b_0, W_1, b_1, ...]`` with W_i of shape (fan_in, fan_out).
    ``init`` is ``xavier`` (Glorot uniform, suits tanh and the normalised MTJ activation,
    whose mean slope over |z| <= 1 is 1) or ``he`` (He normal); biases start at 0. All
    random numbers come from ``np.random.default_rng(seed)``.
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[HiddenLayer],
        n_outputs: int,
        *,
        seed: int,
        init: str = "xavier",
        dtype: type = np.float32,
    ):
        if n_inputs < 1 or n_outputs < 1:
            raise ValueError(
                f"n_inputs and n_outputs must be positive, got {n_inputs}, {n_outputs}"
            )
        if init not in ("xavier", "he"):
            raise ValueError(f"init must be 'xavier' or 'he', got {init!r}")
        for i, layer in enumerate(hidden):
            if layer.width < 1:
                raise ValueError(f"hidden layer {i}: width must be positive, got {layer.width}")
            if getattr(layer.activation, "needs_neurons", False):
                if layer.neurons is None:
                    raise ValueError(f"hidden layer {i}: {layer.activation!r} needs neurons")
                if layer.neurons.n != layer.width:
                    raise ValueError(
                        f"hidden layer {i}: width {layer.width} but the neuron array has "
                        f"{layer.neurons.n} neurons"
                    )
        self.hidden = list(hidden)
        self.sizes = [int(n_inputs), *(int(h.width) for h in hidden), int(n_outputs)]
        self.dtype = np.dtype(dtype)
        self.init = init
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.params: list[np.ndarray] = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            if init == "xavier":
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                w = rng.uniform(-limit, limit, (fan_in, fan_out))
            else:
                w = rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)
            self.params += [w.astype(self.dtype), np.zeros(fan_out, dtype=self.dtype)]
        self.trace: list[LayerTrace] = []
        self._inputs: list[np.ndarray] = []
        self._dadz: list[np.ndarray] = []

    @property
    def n_params(self) -> int:
        """Number of trainable numbers."""
        return sum(p.size for p in self.params)

    def get_weights(self) -> list[np.ndarray]:
        """Copies of ``[W_0, b_0, W_1, b_1, ...]``."""
        return [p.copy() for p in self.params]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Load weights in the order of :meth:`get_weights`; shapes must match."""
        if len(weights) != len(self.params):
            raise ValueError(f"expected {len(self.params)} arrays, got {len(weights)}")
        for i, (p, w) in enumerate(zip(self.params, weights, strict=True)):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise ValueError(f"weight {i}: expected shape {p.shape}, got {w.shape}")
        self.params = [np.array(w, dtype=self.dtype) for w in weights]

    def forward(self, x: np.ndarray, *, keep: bool = False) -> np.ndarray:
        """Logits, shape (batch, n_outputs), for inputs ``x`` of shape (batch, n_inputs).

        With ``keep`` the layer inputs and activation derivatives are kept for
        :meth:`backward`. Every call records the hidden layers' currents and readouts in
        :attr:`trace`.
        """
        a = np.asarray(x, dtype=self.dtype)
        if a.ndim != 2 or a.shape[1] != self.sizes[0]:
            raise ValueError(f"inputs must have shape (batch, {self.sizes[0]}), got {a.shape}")
        inputs, dadzs, trace = [], [], []
        for i, layer in enumerate(self.hidden):
            z = a @ self.params[2 * i]
            z += self.params[2 * i + 1]
            inputs.append(a)
            a, dadz, currents, readout = layer.activation.forward(z, layer.neurons)
            dadzs.append(dadz)
            trace.append(LayerTrace(currents, readout))
        logits = a @ self.params[-2]
        logits += self.params[-1]
        inputs.append(a)
        self.trace = trace
        if keep:
            self._inputs, self._dadz = inputs, dadzs
        return logits

    def backward(self, dlogits: np.ndarray) -> list[np.ndarray]:
        """Gradients of the loss for the latest ``forward(..., keep=True)``.

        ``dlogits`` is d(loss)/d(logits), shape (batch, n_outputs), already including any
        1/batch of a mean. Returns arrays in the order of :meth:`get_weights`. The
        derivative of each hidden activation is the one its forward pass returned.
        """
        grads = self.gradients(dlogits)
        self._inputs, self._dadz = [], []
        return grads

    def gradients(
        self, dlogits: np.ndarray, dadz: Sequence[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """Gradients as :meth:`backward` computes them, keeping the forward pass's state.

        ``dadz`` (one array per hidden layer, the shapes of the forward pass's) replaces
        the derivatives the activations returned: how a diagnostic compares the gradient
        from measured derivatives with the one from exact derivatives on the same pass.
        """
        if not self._inputs:
            raise RuntimeError("backward() needs a preceding forward(..., keep=True)")
        dadzs = self._dadz if dadz is None else list(dadz)
        if len(dadzs) != len(self.hidden):
            raise ValueError(f"dadz needs {len(self.hidden)} arrays, got {len(dadzs)}")
        delta = np.asarray(dlogits, dtype=self.dtype)
        grads: list[np.ndarray] = [None] * len(self.params)  # type: ignore[list-item]
        for i in range(len(self.hidden), -1, -1):
            a_in = self._inputs[i]
            grads[2 * i] = a_in.T @ delta
            grads[2 * i + 1] = delta.sum(axis=0)
            if i > 0:
                delta = delta @ self.params[2 * i].T
                delta *= dadzs[i - 1]
        return grads

    def pre_activation(self, layer: int) -> np.ndarray:
        """z of hidden layer ``layer`` in the latest ``forward(..., keep=True)``, recomputed
        by the forward pass's own operations (so bit for bit the same)."""
        if not self._inputs:
            raise RuntimeError("pre_activation() needs a preceding forward(..., keep=True)")
        z = self._inputs[layer] @ self.params[2 * layer]
        z += self.params[2 * layer + 1]
        return z

    def predict_logits(self, x: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """Logits for ``x`` in batches of ``batch_size``.

        Batches bound the memory and keep the working arrays small enough for the CPU cache.
        """
        x = np.asarray(x)
        out = [self.forward(x[s : s + batch_size]) for s in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.sizes[-1]), self.dtype)

    def predict(self, x: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        """Predicted class indices for ``x``."""
        return self.predict_logits(x, batch_size=batch_size).argmax(axis=1)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, computed stably."""
    z = logits / temperature if temperature != 1.0 else logits.copy()
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean softmax cross-entropy (nats) and accuracy of ``logits`` against int ``labels``."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    idx = np.arange(len(labels))
    loss = float(np.mean(log_norm - z[idx, labels])) if len(labels) else float("nan")
    acc = float(np.mean(logits.argmax(axis=1) == labels)) if len(labels) else float("nan")
    return loss, acc


def loss_and_dlogits(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    soft_targets: np.ndarray | None = None,
    temperature: float = 1.0,
    alpha: float = 0.0,
) -> tuple[float, np.ndarray]:
    """Training objective and its gradient with respect to the logits.

    Objective: (1 - alpha) * CE(labels, softmax(logits)) + alpha * T^2 *
    CE(soft_targets, softmax(logits / T)), averaged over the batch. ``soft_targets`` are
    the teacher's softened probabilities at the same temperature T; the T^2 keeps the
    soft term's gradient on the scale of the hard one (Hinton et al. 2015). Without soft
    targets (or alpha = 0) it is plain cross-entropy.
    """
    objective, _, grad = _objective(logits, labels, soft_targets, temperature, alpha)
    return objective, grad


def _objective(
    logits: np.ndarray,
    labels: np.ndarray,
    soft_targets: np.ndarray | None,
    temperature: float,
    alpha: float,
) -> tuple[float, float, np.ndarray]:
    """(objective, hard-label cross-entropy, d objective / d logits)."""
    n = len(labels)
    p = softmax(logits)
    idx = np.arange(n)
    hard = -float(np.mean(np.log(np.maximum(p[idx, labels], 1e-30))))
    objective = hard
    grad = p
    grad[idx, labels] -= 1.0
    if soft_targets is not None and alpha > 0:
        q = softmax(logits, temperature)
        soft = -float(np.mean(np.sum(soft_targets * np.log(np.maximum(q, 1e-30)), axis=1)))
        objective = (1.0 - alpha) * hard + alpha * temperature**2 * soft
        grad *= 1.0 - alpha
        q -= soft_targets
        q *= alpha * temperature
        grad += q
    grad /= n
    return objective, hard, grad


# -- optimisers ------------------------------------------------------------------------


class SGD:
    """Stochastic gradient descent with (optionally Nesterov) momentum and L2 weight decay.

    v = momentum * v + g (+ weight_decay * w on weight matrices); w -= lr * v, or with
    Nesterov w -= lr * (g + momentum * v).
    """

    def __init__(self, *, momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0):
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self._velocity: list[np.ndarray] | None = None

    def step(self, params: list[np.ndarray], grads: list[np.ndarray], lr: float) -> None:
        """Update ``params`` in place."""
        if self._velocity is None:
            self._velocity = [np.zeros_like(p) for p in params]
        for p, g, v in zip(params, grads, self._velocity, strict=True):
            if self.weight_decay and p.ndim > 1:
                g = g + self.weight_decay * p
            v *= self.momentum
            v += g
            if self.nesterov:
                p -= lr * (g + self.momentum * v)
            else:
                p -= lr * v

    def state(self) -> dict:
        """Optimiser state for resume."""
        return {"velocity": None if self._velocity is None else [v.copy() for v in self._velocity]}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state`."""
        vel = state.get("velocity")
        self._velocity = None if vel is None else [np.array(v) for v in vel]


class Adam:
    """Adam with bias correction and decoupled weight decay (AdamW) on weight matrices."""

    def __init__(
        self,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {beta1}, {beta2}")
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self._m: list[np.ndarray] | None = None
        self._v: list[np.ndarray] | None = None
        self._tmp: list[np.ndarray] | None = None
        self.t = 0

    def step(self, params: list[np.ndarray], grads: list[np.ndarray], lr: float) -> None:
        """Update ``params`` in place."""
        if self._m is None or self._v is None or self._tmp is None:
            self._m = [np.zeros_like(p) for p in params]
            self._v = [np.zeros_like(p) for p in params]
        if self._tmp is None:
            self._tmp = [np.empty_like(p) for p in params]
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step = lr * math.sqrt(1.0 - b2**self.t) / (1.0 - b1**self.t)
        eps = self.eps * math.sqrt(1.0 - b2**self.t)
        # In-place arithmetic: on a 1 M-parameter net the update is a visible part of a step.
        for p, g, m, v, tmp in zip(params, grads, self._m, self._v, self._tmp, strict=True):
            m *= b1
            np.multiply(g, 1.0 - b1, out=tmp)
            m += tmp
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - b2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= step
            if self.weight_decay and p.ndim > 1:
                p *= 1.0 - lr * self.weight_decay
            p -= tmp

    def state(self) -> dict:
        """Optimiser state for resume."""
        copy = (lambda xs: None if xs is None else [x.copy() for x in xs])  # noqa: E731
        return {"t": self.t, "m": copy(self._m), "v": copy(self._v)}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state`."""
        self.t = int(state.get("t", 0))
        self._m = None if state.get("m") is None else [np.array(x) for x in state["m"]]
        self._v = None if state.get("v") is None else [np.array(x) for x in state["v"]]
        self._tmp = None


# -- training ----------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Training settings. Learning rates are per step; epochs count passes over the data.

    batch_size None trains full batch. Schedules (epoch e counted from 0): constant;
    step: lr * gamma ** (e // step_size); exponential: lr * gamma ** e; cosine:
    min_lr + (lr - min_lr) * (1 + cos(pi * e / epochs)) / 2. ``warmup_epochs`` ramps the
    rate linearly up to the schedule's value. Early stopping (needs a validation set)
    stops after ``patience`` epochs without an improvement of ``monitor`` by more than
    ``min_delta``; with ``restore_best`` the best epoch's weights are loaded at the end.
    """

    epochs: int = 100
    batch_size: int | None = None
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "constant"
    step_size: int = 10
    gamma: float = 0.5
    min_lr: float = 0.0
    warmup_epochs: int = 0
    patience: int | None = None
    min_delta: float = 0.0
    monitor: str = "val_loss"
    restore_best: bool = True
    shuffle: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be positive or None, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {MONITORS}, got {self.monitor!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.schedule == "step" and self.step_size < 1:
            raise ValueError(f"step_size must be positive, got {self.step_size}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma (the decay factor) must be in (0, 1], got {self.gamma}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be positive or None, got {self.patience}")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (from 0)."""
        if self.schedule == "constant":
            lr = self.lr
        elif self.schedule == "step":
            lr = self.lr * self.gamma ** (epoch // self.step_size)
        elif self.schedule == "exponential":
            lr = self.lr * self.gamma**epoch
        else:
            lr = self.min_lr + (self.lr - self.min_lr) * 0.5 * (
                1.0 + math.cos(math.pi * epoch / self.epochs)
            )
        if epoch < self.warmup_epochs:
            lr *= (epoch + 1) / (self.warmup_epochs + 1)
        return lr

    def make_optimizer(self) -> SGD | Adam:
        """A fresh optimiser of the configured kind."""
        if self.optimizer == "sgd":
            return SGD(
                momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay
            )
        return Adam(
            beta1=self.beta1, beta2=self.beta2, eps=self.eps, weight_decay=self.weight_decay
        )


@dataclass
class History:
    """Per-epoch record; every list has one entry per finished epoch.

    Losses are mean cross-entropy in nats against the true labels (for a distilled
    student too, so that runs compare); train figures are means over the epoch's
    minibatches as they were trained. Times in s: ``epoch_time_s`` is the whole epoch
    (training pass and validation), ``train_time_s`` the training pass alone.
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_time_s: list[float] = field(default_factory=list)
    train_time_s: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    def as_dict(self) -> dict:
        """Plain-python view (JSON-ready; NaN stays NaN)."""
        return asdict(self)


EpochCallback = Callable[[int, History, list[np.ndarray]], "bool | None"]


def evaluate(
    model: MLP, x: np.ndarray, y: np.ndarray, *, batch_size: int = 512
) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy of ``model`` on (``x``, ``y``)."""
    return cross_entropy(model.predict_logits(x, batch_size=batch_size), np.asarray(y))


class Trainer:
    """Trains ``model`` one epoch per :meth:`run_epoch` call; :func:`train` runs them all.

    Stepping epochs from outside lets two trainers alternate, so that their epoch times
    are measured under the same machine load.

    ``soft_targets`` (teacher probabilities at ``temperature``, one row per training
    sample) with ``alpha`` > 0 switch on distillation. ``on_epoch(epoch, history,
    weights)`` is called after every epoch with a copy of the weights; returning True
    stops training. ``probe(model, dlogits)`` (optional) is called on every training
    batch between the forward and the backward pass, for diagnostics that must not change
    the training. ``augment(x_batch, rng)`` (optional) returns a transformed copy of
    each training minibatch (data augmentation), with a generator seeded from
    ``config.seed``. ``progress`` (a :class:`labctl.progress.Progress`, optional) is
    advanced by one per training batch (see :meth:`batches_per_epoch`).
    """

    def __init__(
        self,
        model: MLP,
        x: np.ndarray,
        y: np.ndarray,
        *,
        config: TrainConfig,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        soft_targets: np.ndarray | None = None,
        temperature: float = 1.0,
        alpha: float = 0.0,
        on_epoch: EpochCallback | None = None,
        probe: Callable[[MLP, np.ndarray], object] | None = None,
        progress: Progress | None = None,
        desc: str = "train",
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    ):
        self.model = model
        self.x = np.ascontiguousarray(x, dtype=model.dtype)
        self.y = np.asarray(y, dtype=np.intp)
        if self.x.ndim != 2 or len(self.x) != len(self.y):
            raise ValueError(
                f"x must be (n, features) matching y; got {self.x.shape}, {self.y.shape}"
            )
        if len(self.y) == 0:
            raise ValueError("no training samples")
        if (x_val is None) != (y_val is None):
            raise ValueError("give both x_val and y_val, or neither")
        self.x_val = None if x_val is None else np.asarray(x_val, dtype=model.dtype)
        self.y_val = None if y_val is None else np.asarray(y_val, dtype=np.intp)
        if soft_targets is not None:
            soft_targets = np.asarray(soft_targets, dtype=model.dtype)
            if soft_targets.shape != (len(self.y), model.sizes[-1]):
                raise ValueError(
                    f"soft_targets must have shape {(len(self.y), model.sizes[-1])}, "
                    f"got {soft_targets.shape}"
                )
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if config.patience is not None and self.x_val is None:
            raise ValueError("early stopping (patience) needs a validation set")
        self.soft_targets = soft_targets
        self.temperature, self.alpha = temperature, alpha
        self.config = config
        self.optimizer = config.make_optimizer()
        self.on_epoch = on_epoch
        self.probe = probe
        self.progress, self.desc = progress, desc
        self.history = History()
        self.done = False
        self._rng = np.random.default_rng(config.seed)
        self.augment = augment
        self._augment_rng = np.random.default_rng([config.seed, 0x617567])
        self._best_score: float | None = None
        self._best_weights: list[np.ndarray] | None = None
        self._since_best = 0

    @property
    def epoch(self) -> int:
        """Number of finished epochs."""
        return len(self.history.epoch)

    def batches_per_epoch(self) -> int:
        """Training batches in one epoch (the progress units of an epoch)."""
        return -(-len(self.y) // (self.config.batch_size or len(self.y)))

    def _batches(self) -> list[np.ndarray]:
        n = len(self.y)
        order = self._rng.permutation(n) if self.config.shuffle else np.arange(n)
        size = self.config.batch_size or n
        return [order[s : s + size] for s in range(0, n, size)]

    def run_epoch(self) -> dict:
        """Train one epoch, validate, call the hook; returns the epoch's history row."""
        if self.done:
            raise RuntimeError("training has finished")
        cfg, model, e = self.config, self.model, self.epoch
        lr = cfg.lr_at(e)
        t0 = time.perf_counter()
        full = cfg.batch_size is None or cfg.batch_size >= len(self.y)
        loss_sum = correct = 0.0
        batches = self._batches()
        for idx in batches:
            xb = self.x if full and not cfg.shuffle else self.x[idx]
            if self.augment is not None:
                xb = np.asarray(self.augment(xb, self._augment_rng), dtype=model.dtype)
            yb = self.y[idx]
            logits = model.forward(xb, keep=True)
            soft = None if self.soft_targets is None else self.soft_targets[idx]
            _, loss, dlogits = _objective(logits, yb, soft, self.temperature, self.alpha)
            loss_sum += loss * len(idx)
            correct += float(np.sum(logits.argmax(axis=1) == yb))
            if self.probe is not None:  # sees the pass before backward() drops its state
                self.probe(model, dlogits)
            grads = model.backward(dlogits)
            self.optimizer.step(model.params, grads, lr)
            if self.progress is not None:
                self.progress.update(1)
        t_train = time.perf_counter() - t0
        n = len(self.y)
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"{self.desc}: training loss is not finite in epoch {e}")
        if self.x_val is not None and self.y_val is not None:
            val_loss, val_acc = evaluate(model, self.x_val, self.y_val)
        else:
            val_loss = val_acc = float("nan")
        h = self.history
        h.epoch.append(e)
        h.train_loss.append(loss_sum / n)
        h.train_acc.append(correct / n)
        h.val_loss.append(val_loss)
        h.val_acc.append(val_acc)
        h.lr.append(lr)
        h.train_time_s.append(t_train)
        h.epoch_time_s.append(time.perf_counter() - t0)
        self._track_best(e, val_loss, val_acc)
        stop = False
        if self.on_epoch is not None:
            stop = bool(self.on_epoch(e, h, model.get_weights()))
        if self.epoch >= cfg.epochs or stop:
            self.done = True
        elif cfg.patience is not None and self._since_best >= cfg.patience:
            self.done = h.stopped_early = True
        return {k: getattr(h, k)[-1] for k in ("epoch", "train_loss", "train_acc", "val_loss",
                                              "val_acc", "lr", "epoch_time_s", "train_time_s")}

    def _track_best(self, epoch: int, val_loss: float, val_acc: float) -> None:
        if self.x_val is None:
            return
        score = val_loss if self.config.monitor == "val_loss" else -val_acc
        if self._best_score is None or score < self._best_score - self.config.min_delta:
            self._best_score = score
            self.history.best_epoch = epoch
            self._since_best = 0
            if self.config.restore_best:
                self._best_weights = self.model.get_weights()
        else:
            self._since_best += 1

    def finish(self) -> History:
        """End training: load the best weights if so configured; return the history."""
        self.done = True
        if self.config.restore_best and self._best_weights is not None:
            self.model.set_weights(self._best_weights)
        return self.history


def train(model: MLP, x: np.ndarray, y: np.ndarray, **kwargs) -> History:
    """Train ``model`` on (``x``, ``y``) (int labels); keyword arguments as :class:`Trainer`.

    Returns the history, with the best weights loaded if so configured.
    """
    trainer = Trainer(model, x, y, **kwargs)
    while not trainer.done:
        trainer.run_epoch()
    return trainer.finish()
