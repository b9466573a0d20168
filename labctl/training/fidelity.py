"""Gradient fidelity: how far the gradient a run trains with is from the exact one.

On every training batch :class:`GradientFidelity` takes the forward pass the trainer just
made and backpropagates it twice: with the derivatives the hidden neurons returned (what
the optimiser uses) and with the exact dV/dI at the same bias currents (the simulator's
oracle on a simulated station, the device model on the model backend). Per epoch it
reports

- ``grad_cosine``: the cosine between the two weight gradients, over every weight and
  bias of the hidden layers (the output layer's gradient does not depend on the
  derivatives and would only pull the cosine towards 1); the mean over the epoch's
  batches.
- ``dvdi_err_median``, ``dvdi_err_p90``: the median and 90th percentile of
  |measured / exact - 1| over every (sample, neuron) the epoch's training batches
  measured (dimensionless).

All three are NaN where nothing can be compared (software activations, real devices).
The diagnostic only reads: training is bit for bit the same with or without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from labctl.training.mlp import MLP
from labctl.training.neurons import MTJActivation

FIDELITY_KEYS = ("grad_cosine", "dvdi_err_median", "dvdi_err_p90")
#: Exact dV/dI (Ohm) of a layer's neurons at bias currents (A) of shape (batch, n).
ExactDerivative = Callable[[np.ndarray], np.ndarray]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two flat vectors; NaN if either is zero."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else float("nan")


def relative_errors(measured: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|measured / exact - 1|, flat, where exact is not zero."""
    measured, exact = np.ravel(measured).astype(float), np.ravel(exact).astype(float)
    keep = exact != 0
    return np.abs(measured[keep] / exact[keep] - 1.0)


def empty_fidelity() -> dict[str, float]:
    return dict.fromkeys(FIDELITY_KEYS, float("nan"))


class GradientFidelity:
    """A :class:`~labctl.training.mlp.Trainer` probe; ``exact[i]`` gives layer i's exact
    dV/dI (None: the layer is not compared, and nothing is)."""

    def __init__(self, exact: Sequence[ExactDerivative | None]):
        self.exact = list(exact)
        self._cosines: list[float] = []
        self._errors: list[np.ndarray] = []

    def __call__(self, model: MLP, dlogits: np.ndarray) -> None:
        if len(self.exact) != len(model.hidden):
            return
        exact_dadz, used_dvdi, exact_dvdi = [], [], []
        for i, layer in enumerate(model.hidden):
            act, trace, exact = layer.activation, model.trace[i], self.exact[i]
            if not isinstance(act, MTJActivation) or exact is None or trace.readout is None:
                return
            d = np.asarray(exact(trace.currents), dtype=model.dtype)
            exact_dvdi.append(d)
            used_dvdi.append(trace.readout.dvdi)
            exact_dadz.append(d * act.gain * act.inside(model.pre_activation(i)))
        hidden = 2 * len(model.hidden)  # W, b of every hidden layer
        used = model.gradients(dlogits)[:hidden]
        ideal = model.gradients(dlogits, exact_dadz)[:hidden]
        self._cosines.append(
            cosine(np.concatenate([g.ravel() for g in used]),
                   np.concatenate([g.ravel() for g in ideal]))
        )
        self._errors += [relative_errors(u, e) for u, e in zip(used_dvdi, exact_dvdi,
                                                                strict=True)]

    def take(self) -> dict[str, float]:
        """The epoch's figures (see the module docstring); starts the next epoch."""
        out = empty_fidelity()
        if self._cosines:
            out["grad_cosine"] = float(np.mean(self._cosines))
        errors = np.concatenate(self._errors) if self._errors else np.zeros(0)
        if errors.size:
            out["dvdi_err_median"] = float(np.median(errors))
            out["dvdi_err_p90"] = float(np.quantile(errors, 0.9))
        self._cosines, self._errors = [], []
        return out
