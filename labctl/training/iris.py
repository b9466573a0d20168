"""Iris training with MTJ-pair hidden neurons: k-fold cross-validation and a tanh baseline.

:func:`train_folds` is the one training loop for live runs, replays and resumes: what
differs is only where the hidden layers' measurements come from (``neuron_source``) and
where each epoch goes (``sink``). Because the trainer is deterministic given its
measurements, feeding it recorded measurements reproduces a run bit for bit.

Besides Iris the same loop trains the 2-D tasks of :mod:`labctl.training.tasks`
(``task``), and controls: a tanh or linear network in place of the MTJ one
(``activation``) and control derivative sources (``grad``, see
:mod:`labctl.training.derivative_sources`). Every epoch row carries the gradient fidelity
(:mod:`labctl.training.fidelity`) when the neuron source can give exact derivatives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from labctl.training.derivative_sources import DERIVATIVE_SOURCES
from labctl.training.fidelity import FIDELITY_KEYS, GradientFidelity, empty_fidelity
from labctl.training.iris_data import standardise, stratified_folds
from labctl.training.mlp import MLP, HiddenLayer, TrainConfig, Trainer
from labctl.training.neuron_record import RecordingNeurons
from labctl.training.neurons import (
    ACTIVATIONS,
    LinearActivation,
    MTJActivation,
    NeuronArray,
    TanhActivation,
)
from labctl.training.tasks import TASKS, load_task, task_shape
from simulators.device_shapes import temperature_factors

if TYPE_CHECKING:
    from labctl.progress import Progress

BACKENDS = ("station", "model")


def _whole_numbers(values, at_least: int) -> bool:
    """A list (or tuple) of integers (not booleans) of at least ``at_least``."""
    return isinstance(values, (list, tuple)) and all(
        isinstance(k, int) and not isinstance(k, bool) and k >= at_least for k in values)


@dataclass(frozen=True)
class IrisSettings:
    """Everything that defines an Iris run. Currents in A."""

    layers: int = 1
    hidden: int = 8
    folds: int = 5
    grad: str = "fd-swap"
    backend: str = "station"
    epochs: int = 100
    lr: float = 0.05
    optimizer: str = "adam"
    schedule: str = "constant"
    weight_decay: float = 0.5
    batch_size: int | None = None
    patience: int | None = None
    seed: int = 0
    di: float = 1e-6
    i_center: float = 40e-6
    i_scale: float = 20e-6
    nplc: float = 1.0
    #: The simulated devices' preset; None for a station of real devices (train_iris).
    variability: str | None = "nominal"
    #: The model backend's device temperature (K): the station file's ``temperature_k``
    #: or ``--temperature-k``; None: the preset's 300 K.
    temperature_k: float | None = None
    #: What is learnt: ``iris`` or a 2-D task of :mod:`labctl.training.tasks`.
    task: str = "iris"
    #: The network under training's hidden nonlinearity: ``mtj``, ``tanh`` or ``linear``.
    activation: str = "mtj"
    #: Learning-rate factor of the ``exponential`` (per epoch) and ``step`` schedules.
    decay_factor: float = 0.5
    #: Epochs between the ``step`` schedule's decays.
    step_size: int = 10
    #: Station pairs of the hidden neurons, layer by layer (None: 1..layers x hidden); with
    #: ``devices_from``, the scan's pairs whose fitted models the model backend runs on.
    pairs: list[int] | None = None
    #: A wafer-scan session: the model backend runs on its fitted devices (``pairs`` of
    #: die ``die``) instead of drawing them from the preset.
    devices_from: str | None = None
    die: list[int] | None = None
    #: A training session whose final weights of each fold start this run's folds.
    init_from: str | None = None

    def layer_pairs(self, layer: int) -> list[int]:
        """Station pairs of hidden ``layer`` (0-based): ``pairs``' choice, else the next
        1..N."""
        h = self.hidden
        if self.pairs is not None:
            return list(self.pairs[layer * h: (layer + 1) * h])
        return list(range(1 + layer * h, 1 + (layer + 1) * h))

    def validate(self, max_current_a: float, n_pairs: int | None) -> None:
        """Refuse impossible settings before any instrument is touched (ValueError, why)."""
        if self.layers not in (1, 2):
            raise ValueError(f"--layers must be 1 or 2, got {self.layers}")
        if self.hidden < 1:
            raise ValueError(f"--hidden must be at least 1 neuron, got {self.hidden}")
        if self.grad not in DERIVATIVE_SOURCES:
            raise ValueError(
                f"--grad must be one of {', '.join(DERIVATIVE_SOURCES)}, got {self.grad!r}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"--activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if isinstance(self.decay_factor, bool) or not 0 < self.decay_factor <= 1:
            raise ValueError(
                f"--decay-factor must be in (0, 1] (1: no decay), got {self.decay_factor}"
            )
        if isinstance(self.step_size, bool) or self.step_size < 1:
            raise ValueError(
                f"--step-size must be a positive number of epochs, got {self.step_size}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(
                f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )
        if self.task == "iris":
            if not 2 <= self.folds <= 150:
                raise ValueError(
                    f"--folds must be between 2 and the 150 Iris samples, got {self.folds}"
                )
            if self.folds > 50:
                raise ValueError(
                    f"--folds {self.folds} is more than the 50 samples of each Iris class"
                )
        else:
            smallest = task_shape(self.task)[2]
            if not 2 <= self.folds <= smallest:
                raise ValueError(
                    f"--folds must be between 2 and the {smallest} samples of each "
                    f"{self.task} class, got {self.folds}"
                )
        if not self.di > 0:
            raise ValueError(f"--di must be positive, got {self.di}")
        if self.temperature_k is not None:
            temperature_factors(self.temperature_k)  # ValueError out of its 1..450 K
        if self.pairs is not None and not _whole_numbers(self.pairs, at_least=1):
            raise ValueError(f"--pairs must be pair numbers (1-based), got {self.pairs!r}")
        if self.die is not None and not (_whole_numbers(self.die, at_least=0)
                                         and len(self.die) == 2):
            raise ValueError(f"die must be [column, row], got {self.die!r}")
        if self.pairs is not None and len(self.pairs) != self.layers * self.hidden:
            raise ValueError(
                f"--pairs names {len(self.pairs)} pairs; {self.layers} layer(s) of "
                f"{self.hidden} neurons need {self.layers * self.hidden}"
            )
        if n_pairs is not None and self.layers * self.hidden > n_pairs:
            raise ValueError(
                f"{self.layers} layer(s) of {self.hidden} neurons need "
                f"{self.layers * self.hidden} MTJ pairs; the station wires {n_pairs}"
            )
        i_max = max_current_a - self.di
        if i_max <= 0:
            raise ValueError(
                f"--di {self.di} A leaves no room under the station's current "
                f"limit {max_current_a} A"
            )
        if abs(self.i_center) >= i_max:
            raise ValueError(
                f"--i-center {self.i_center} A is at or beyond the safety limit: "
                f"|I| must stay below {i_max:.3g} A (max_current_a - dI)"
            )
        if not self.i_scale > 0:
            raise ValueError(f"--i-scale must be positive, got {self.i_scale}")
        TrainConfig(**self.train_config_kwargs(0))  # its own checks (epochs, lr, ...)

    def train_config_kwargs(self, fold: int) -> dict:
        return dict(
            epochs=self.epochs,
            lr=self.lr,
            optimizer=self.optimizer,
            schedule=self.schedule,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            patience=self.patience,
            restore_best=self.patience is not None,
            gamma=self.decay_factor,
            step_size=self.step_size,
            seed=self.seed * 1000 + fold,
        )

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FoldResult:
    """One fold: validation accuracy of the MTJ network and of the tanh baseline."""

    fold: int
    val_acc: float
    tanh_val_acc: float
    epochs: int
    best_epoch: int | None
    history: dict = field(default_factory=dict)
    tanh_history: dict = field(default_factory=dict)
    weights: list[np.ndarray] = field(default_factory=list)
    #: Per-epoch gradient fidelity: FIDELITY_KEYS -> one value per epoch (NaN: none).
    fidelity: dict[str, list[float]] = field(default_factory=dict)


class NeuronSource(Protocol):
    """Where a fold's hidden layers get their neurons (live, replay or resume)."""

    def layers(self, fold: int) -> list[NeuronArray]: ...

    def before_epoch(self, fold: int, epoch: int) -> None: ...

    # Optional: ``exact_derivatives(fold)`` -> one callable per hidden layer giving the
    # exact dV/dI (Ohm) at bias currents (A), or None; train_folds then records the
    # gradient fidelity of every epoch.


class EpochSink(Protocol):
    """Where each finished epoch and fold go (session records, or nothing)."""

    def epoch(
        self, fold: int, row: dict, weights: list[np.ndarray], measurements: list[np.ndarray]
    ) -> None: ...

    def fold(self, result: FoldResult) -> None: ...


def fold_data(settings: IrisSettings):
    """The standardised (x_train, y_train, x_val, y_val) of every fold of the task."""
    x, y = load_task(settings.task, settings.seed)
    out = []
    for train_idx, val_idx in stratified_folds(y, settings.folds, settings.seed):
        xt, xv = standardise(x[train_idx], x[val_idx])
        out.append((xt, y[train_idx], xv, y[val_idx]))
    return out


def activation(settings: IrisSettings, max_current_a: float) -> MTJActivation:
    return MTJActivation(
        i_center=settings.i_center, i_scale=settings.i_scale, i_max=max_current_a - settings.di
    )


def build_network(
    settings: IrisSettings,
    fold: int,
    neurons: list[NeuronArray] | None,
    act: MTJActivation | None,
    *,
    activation: str | None = None,
) -> MLP:
    """The fold's MLP: MTJ layers over ``neurons``, or tanh layers when neurons is None;
    ``activation`` ``tanh`` or ``linear`` builds those software layers instead."""
    kind = activation or ("tanh" if neurons is None else "mtj")
    if kind == "mtj":
        if neurons is None:
            raise ValueError("an MTJ network needs neuron arrays")
        hidden = [HiddenLayer(settings.hidden, act, n) for n in neurons]
    else:
        software = TanhActivation if kind == "tanh" else LinearActivation
        hidden = [HiddenLayer(settings.hidden, software()) for _ in range(settings.layers)]
    n_in, n_out, _ = task_shape(settings.task)
    return MLP(n_in, hidden, n_out, seed=settings.seed * 1000 + fold, dtype=np.float64)


def _fold_accuracy(trainer: Trainer) -> tuple[float, int | None]:
    h = trainer.history
    if trainer.config.patience is not None and h.best_epoch is not None:
        return h.val_acc[h.best_epoch], h.best_epoch  # the restored weights' accuracy
    return h.val_acc[-1], None


def train_folds(
    settings: IrisSettings,
    max_current_a: float,
    neuron_source: NeuronSource,
    sink: EpochSink,
    *,
    folds: list[int] | None = None,
    progress: Progress | None = None,
    label: str = "",
    live_max_current_a: float | None = None,
    recorded: set[tuple[int, int]] = frozenset(),
    initial_weights: dict[int, np.ndarray] | None = None,
) -> list[FoldResult]:
    """Train the MTJ network and the tanh baseline on each fold (all folds by default).

    A resume replays the ``recorded`` (fold, epoch)s with the limit they were made under,
    ``max_current_a`` (A), and trains the rest under ``live_max_current_a`` if given (the
    station's new limits).

    ``progress`` (a :class:`labctl.progress.Progress` over the command's whole work, in
    epochs) advances one per epoch, named ``label`` and the fold running now; a fold that
    stops early counts its remaining epochs as done, so the bar ends at its total.

    ``initial_weights`` (fold -> every weight flattened in MLP order, e.g. an earlier
    session's final weights) starts the MTJ network of those folds from them."""
    data = fold_data(settings)
    act = activation(settings, max_current_a)
    results = []
    for fold in folds if folds is not None else range(settings.folds):
        xt, yt, xv, yv = data[fold]
        layers = neuron_source.layers(fold)
        recorders = [RecordingNeurons(n) for n in layers]
        model = build_network(settings, fold, recorders, act, activation=settings.activation)
        if initial_weights is not None and fold in initial_weights:
            model.set_weights(_unflatten(initial_weights[fold], model.get_weights(), fold))
        probe = _fidelity_probe(settings, neuron_source, fold)
        fidelity: dict[str, list[float]] = {k: [] for k in FIDELITY_KEYS}

        def on_epoch(e, history, weights, fold=fold, recorders=recorders, probe=probe,
                     fidelity=fidelity):
            row = {
                k: getattr(history, k)[-1]
                for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
            }
            row |= probe.take() if probe is not None else empty_fidelity()
            for k in FIDELITY_KEYS:
                fidelity[k].append(row[k])
            sink.epoch(fold, row, weights, [r.take() for r in recorders])

        trainer = Trainer(
            model,
            xt,
            yt,
            config=TrainConfig(**settings.train_config_kwargs(fold)),
            x_val=xv,
            y_val=yv,
            on_epoch=on_epoch,
            probe=probe,
        )
        if progress is not None:
            progress.start()  # the first fold's first epoch: setup is not epoch time
            progress.set_description(
                f"{label + ' ' if label else ''}fold {fold + 1}/{settings.folds}")
        while not trainer.done:
            if live_max_current_a is not None:
                limit = max_current_a if (fold, trainer.epoch) in recorded else (
                    live_max_current_a)
                act.limit(limit - settings.di)
            neuron_source.before_epoch(fold, trainer.epoch)
            row = trainer.run_epoch()
            if progress is not None:
                progress.set_postfix(f"loss {row['train_loss']:.3f}, val {row['val_acc']:.3f}")
                progress.update(1)
        if progress is not None:
            progress.update(settings.epochs - trainer.epoch)  # early stopping
        trainer.finish()
        acc, best = _fold_accuracy(trainer)
        baseline = Trainer(
            build_network(settings, fold, None, None),
            xt,
            yt,
            config=TrainConfig(**settings.train_config_kwargs(fold)),
            x_val=xv,
            y_val=yv,
        )
        while not baseline.done:
            baseline.run_epoch()
        baseline.finish()
        result = FoldResult(
            fold,
            acc,
            _fold_accuracy(baseline)[0],
            trainer.epoch,
            best,
            trainer.history.as_dict(),
            baseline.history.as_dict(),
            model.get_weights(),
            fidelity,
        )
        sink.fold(result)
        results.append(result)
    return results


def _unflatten(flat: np.ndarray, like: list[np.ndarray], fold: int) -> list[np.ndarray]:
    flat = np.asarray(flat, dtype=np.float64).ravel()
    if flat.size != sum(w.size for w in like):
        raise ValueError(f"initial weights of fold {fold + 1}: {flat.size} values, the network "
                         f"has {sum(w.size for w in like)}")
    out, pos = [], 0
    for w in like:
        out.append(flat[pos: pos + w.size].reshape(w.shape).copy())
        pos += w.size
    return out


def _fidelity_probe(
    settings: IrisSettings, neuron_source: NeuronSource, fold: int
) -> GradientFidelity | None:
    """A fidelity probe if the network is MTJ and the source knows exact derivatives."""
    exact = getattr(neuron_source, "exact_derivatives", None)
    if settings.activation != "mtj" or exact is None:
        return None
    fns = exact(fold)
    return None if fns is None or any(f is None for f in fns) else GradientFidelity(fns)


def summarise(results: list[FoldResult]) -> dict:
    """Mean and spread of the folds' accuracies; where recorded, the gradient fidelity
    (each FIDELITY_KEYS figure averaged over every epoch of every fold)."""
    acc = np.array([r.val_acc for r in results])
    tanh = np.array([r.tanh_val_acc for r in results])
    out = {
        "accuracy": float(acc.mean()),
        "accuracy_std": float(acc.std()),
        "tanh_accuracy": float(tanh.mean()),
        "tanh_accuracy_std": float(tanh.std()),
        "folds": len(results),
    }
    for k in FIDELITY_KEYS:
        values = np.array([v for r in results for v in r.fidelity.get(k, [])], dtype=float)
        values = values[np.isfinite(values)]
        if values.size:
            out[k] = float(values.mean())
    return out
