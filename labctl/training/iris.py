"""Iris training with MTJ-pair hidden neurons: k-fold cross-validation and a tanh baseline.

:func:`train_folds` is the one training loop for live runs, replays and resumes: what
differs is only where the hidden layers' measurements come from (``neuron_source``) and
where each epoch goes (``sink``). Because the trainer is deterministic given its
measurements, feeding it recorded measurements reproduces a run bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from labctl.training.iris_data import load_iris, standardise, stratified_folds
from labctl.training.mlp import MLP, HiddenLayer, TrainConfig, Trainer
from labctl.training.neuron_record import RecordingNeurons
from labctl.training.neurons import GRAD_MODES, MTJActivation, NeuronArray, TanhActivation

BACKENDS = ("station", "model")


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

    def validate(self, max_current_a: float, n_pairs: int | None) -> None:
        """Refuse impossible settings before any instrument is touched (ValueError, why)."""
        if self.layers not in (1, 2):
            raise ValueError(f"--layers must be 1 or 2, got {self.layers}")
        if self.hidden < 1:
            raise ValueError(f"--hidden must be at least 1 neuron, got {self.hidden}")
        if self.grad not in GRAD_MODES:
            raise ValueError(f"--grad must be one of {', '.join(GRAD_MODES)}, got {self.grad!r}")
        if self.backend not in BACKENDS:
            raise ValueError(
                f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )
        if not 2 <= self.folds <= 150:
            raise ValueError(
                f"--folds must be between 2 and the 150 Iris samples, got {self.folds}"
            )
        if self.folds > 50:
            raise ValueError(f"--folds {self.folds} is more than the 50 samples of each Iris class")
        if not self.di > 0:
            raise ValueError(f"--di must be positive, got {self.di}")
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


class NeuronSource(Protocol):
    """Where a fold's hidden layers get their neurons (live, replay or resume)."""

    def layers(self, fold: int) -> list[NeuronArray]: ...

    def before_epoch(self, fold: int, epoch: int) -> None: ...


class EpochSink(Protocol):
    """Where each finished epoch and fold go (session records, or nothing)."""

    def epoch(
        self, fold: int, row: dict, weights: list[np.ndarray], measurements: list[np.ndarray]
    ) -> None: ...

    def fold(self, result: FoldResult) -> None: ...


def fold_data(settings: IrisSettings):
    """The standardised (x_train, y_train, x_val, y_val) of every fold."""
    x, y = load_iris()
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
    settings: IrisSettings, fold: int, neurons: list[NeuronArray] | None, act: MTJActivation | None
) -> MLP:
    """The fold's MLP: MTJ layers over ``neurons``, or tanh layers when neurons is None."""
    if neurons is None:
        hidden = [HiddenLayer(settings.hidden, TanhActivation()) for _ in range(settings.layers)]
    else:
        hidden = [HiddenLayer(settings.hidden, act, n) for n in neurons]
    return MLP(4, hidden, 3, seed=settings.seed * 1000 + fold, dtype=np.float64)


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
    progress: Callable[[str], object] | None = None,
    live_max_current_a: float | None = None,
    recorded: set[tuple[int, int]] = frozenset(),
) -> list[FoldResult]:
    """Train the MTJ network and the tanh baseline on each fold (all folds by default).

    A resume replays the ``recorded`` (fold, epoch)s with the limit they were made under,
    ``max_current_a`` (A), and trains the rest under ``live_max_current_a`` if given (the
    station's new limits)."""
    data = fold_data(settings)
    act = activation(settings, max_current_a)
    results = []
    for fold in folds if folds is not None else range(settings.folds):
        xt, yt, xv, yv = data[fold]
        layers = neuron_source.layers(fold)
        recorders = [RecordingNeurons(n) for n in layers]
        model = build_network(settings, fold, recorders, act)

        def on_epoch(e, history, weights, fold=fold, recorders=recorders):
            row = {
                k: getattr(history, k)[-1]
                for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
            }
            sink.epoch(fold, row, weights, [r.take() for r in recorders])

        trainer = Trainer(
            model,
            xt,
            yt,
            config=TrainConfig(**settings.train_config_kwargs(fold)),
            x_val=xv,
            y_val=yv,
            on_epoch=on_epoch,
        )
        bar = progress(f"fold {fold + 1}/{settings.folds}") if progress else None
        while not trainer.done:
            if live_max_current_a is not None:
                limit = max_current_a if (fold, trainer.epoch) in recorded else (
                    live_max_current_a)
                act.limit(limit - settings.di)
            neuron_source.before_epoch(fold, trainer.epoch)
            row = trainer.run_epoch()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row['val_acc']:.3f}")
        if bar is not None:
            bar.close()
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
        )
        sink.fold(result)
        results.append(result)
    return results


def summarise(results: list[FoldResult]) -> dict:
    acc = np.array([r.val_acc for r in results])
    tanh = np.array([r.tanh_val_acc for r in results])
    return {
        "accuracy": float(acc.mean()),
        "accuracy_std": float(acc.std()),
        "tanh_accuracy": float(tanh.mean()),
        "tanh_accuracy_std": float(tanh.std()),
        "folds": len(results),
    }
