"""The `station` neuron backend: hidden neurons that are MTJ pairs on the probe station."""

from __future__ import annotations

import numpy as np

from labctl.training.neurons import GRAD_MODES, NeuronReadout
from protocols.engine import Engine
from protocols.finite_difference import Calibration, fd_batch
from protocols.intents import require_valid


class StationNeurons:
    """``len(pairs)`` neurons, neuron j on station pair ``pairs[j]``.

    grad: ``fd-swap`` (swap mode), ``fd`` (forward, with ``calibration`` subtracted if
    given) or ``exact`` (the simulator's analytic dV/dI of device A: simulated stations
    only). Compliance hits and overranges are never used as data: they raise
    :class:`ComplianceInData` naming the pair.
    """

    def __init__(
        self,
        engine: Engine,
        pairs: list[int],
        *,
        di: float,
        grad: str = "fd-swap",
        calibration: Calibration | None = None,
    ):
        if grad not in GRAD_MODES:
            raise ValueError(f"grad must be one of {', '.join(GRAD_MODES)}; got {grad!r}")
        if grad == "exact" and engine.station.oracle is None:
            raise ValueError(
                "grad 'exact' needs the simulator's device model: it is for simulated stations only"
            )
        self.engine, self.pairs, self.di, self.grad = engine, list(pairs), di, grad
        self.calibration = calibration
        self.n = len(self.pairs)

    def measure(self, currents: np.ndarray) -> NeuronReadout:
        mode = "swap" if self.grad == "fd-swap" else "forward"
        # Every pair's sweep at once when the station can sweep several pairs together.
        r = self.engine.run(fd_batch(currents, self.pairs, self.di, mode, self.calibration,
                                     together=getattr(self.engine, "parallel", False)))
        for j, pair in enumerate(self.pairs):
            require_valid(r.valid[:, j], self.engine.station.wiring.pair(pair), "a neuron")
        dvdi = r.dvdi
        if self.grad == "exact":
            dvdi = self.engine.station.oracle.dvdi(self.pairs, currents)
        return NeuronReadout(v=r.v, dvdi=dvdi)
