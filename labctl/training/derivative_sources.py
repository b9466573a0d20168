"""Control derivative sources: what backpropagation uses instead of the measured dV/dI.

Units: current in A, differential resistance dV/dI in Ohm.

The physical sources (``fd-swap``, ``fd``, ``exact``, :data:`GRAD_MODES`) are measured by
the neuron array itself. The controls tell whether the measured derivative matters at all;
each measures like ``fd-swap`` (the activation V_A is the real one) and then replaces the
derivative the array returns:

- ``constant``: every entry of the batch set to the mean of the batch's measured dV/dI
  (over samples and neurons): the right scale, no information on where each neuron sits
  on its curve.
- ``shuffled``: the batch's measured dV/dI permuted across samples and neurons (one
  seeded permutation of the flattened (batch, n) array per call): the right distribution,
  attached to the wrong neuron and sample.
- ``nominal-model``: dV/dI of the nominal device model (:data:`simulators.mtj.NOMINAL`) at
  the bias current: what a model-based trainer would use, blind to device variation (on
  the shape presets of :mod:`simulators.device_shapes` also blind to the shapes: the
  single-tanh, symmetric, hysteresis-free model; on measured devices, blind to them too).

Because the replacement happens inside the neuron array, the session records the
derivative that backpropagation used, so a replay needs nothing but the record.
"""

from __future__ import annotations

import numpy as np

from labctl.training.neurons import GRAD_MODES, NeuronArray, NeuronReadout
from simulators.mtj import NOMINAL, dvdi

CONTROL_MODES = ("constant", "shuffled", "nominal-model")
#: Every value ``--grad`` takes: the measured sources, then the controls.
DERIVATIVE_SOURCES = GRAD_MODES + CONTROL_MODES
# Tags the permutation stream so that it shares no state with any other seeded stream.
_SHUFFLE_TAG = 0x73687566


def check_source(grad: str, option: str = "--grad") -> str:
    """``grad`` if it is a derivative source, else ValueError naming ``option``."""
    if grad not in DERIVATIVE_SOURCES:
        raise ValueError(
            f"{option} must be one of {', '.join(DERIVATIVE_SOURCES)}, got {grad!r}"
        )
    return grad


def measured_mode(grad: str) -> str:
    """The physical grad mode a neuron array must measure with for source ``grad``."""
    return grad if grad in GRAD_MODES else "fd-swap"


def constant_dvdi(measured: np.ndarray) -> np.ndarray:
    """Every entry the mean of ``measured`` (Ohm), same shape and dtype."""
    measured = np.asarray(measured)
    return np.full_like(measured, measured.mean(dtype=np.float64))


def shuffled_dvdi(measured: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``measured`` (Ohm) permuted across all its entries (samples and neurons) by ``rng``."""
    measured = np.asarray(measured)
    flat = measured.reshape(-1)
    return flat[rng.permutation(flat.size)].reshape(measured.shape)


def nominal_dvdi(currents: np.ndarray, dtype=np.float64) -> np.ndarray:
    """dV/dI (Ohm) of the nominal device model at ``currents`` (A)."""
    return np.asarray(dvdi(NOMINAL, np.asarray(currents, dtype=float)), dtype=dtype)


class ControlledNeurons:
    """A neuron array whose derivative readout is replaced by a control source.

    ``inner`` measures (it must measure with :func:`measured_mode`, i.e. ``fd-swap``);
    ``grad`` is one of :data:`CONTROL_MODES`. The ``shuffled`` permutations come from a
    generator seeded with (``seed``, fold, epoch) at every :meth:`before_epoch`, so an
    epoch's permutations do not depend on how the run got there (a resume draws the
    same ones as an uninterrupted run would).
    """

    def __init__(self, inner: NeuronArray, grad: str, *, seed: int):
        if grad not in CONTROL_MODES:
            raise ValueError(
                f"a control source must be one of {', '.join(CONTROL_MODES)}, got {grad!r}"
            )
        self.inner = inner
        self.grad = grad
        self.seed = int(seed)
        self.n = inner.n
        self._rng = np.random.default_rng([_SHUFFLE_TAG, self.seed])

    def before_epoch(self, fold: int, epoch: int) -> None:
        """Reseed the permutation stream for (fold, epoch)."""
        self._rng = np.random.default_rng([_SHUFFLE_TAG, self.seed, fold, epoch])

    def measure(self, currents: np.ndarray) -> NeuronReadout:
        """Measure with ``inner``; return its V (V) and the control's dV/dI (Ohm)."""
        r = self.inner.measure(currents)
        if self.grad == "constant":
            d = constant_dvdi(r.dvdi)
        elif self.grad == "shuffled":
            d = shuffled_dvdi(r.dvdi, self._rng)
        else:
            d = nominal_dvdi(currents, dtype=np.asarray(r.dvdi).dtype)
        return NeuronReadout(v=r.v, dvdi=d)

    def __repr__(self) -> str:
        return f"ControlledNeurons({self.inner!r}, grad={self.grad!r}, seed={self.seed})"
