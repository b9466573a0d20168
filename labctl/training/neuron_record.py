"""Recording and replaying what a neuron array measured.

:class:`RecordingNeurons` wraps any backend and keeps, per epoch, every row it was asked
for: the bias currents (A), the activation voltages (V) and the derivative estimates
(Ohm), as one array (rows, n, 3). :class:`ReplayNeurons` answers the same calls from such
arrays, so the trainer runs unchanged offline; it stops at the first call whose currents
differ from the recorded ones, with both values.
"""

from __future__ import annotations

import numpy as np

from labctl.training.neurons import NeuronArray, NeuronReadout


class ReplayDivergence(RuntimeError):
    """The replayed run asked for other currents than the recorded one did."""


class EndOfRecord(ReplayDivergence):
    """The replay reached the end of an interrupted record."""


class RecordingNeurons:
    """A neuron array that remembers what it measured until :meth:`take`."""

    def __init__(self, inner: NeuronArray):
        self.inner = inner
        self.n = inner.n
        self._rows: list[np.ndarray] = []

    def measure(self, currents: np.ndarray) -> NeuronReadout:
        r = self.inner.measure(currents)
        self._rows.append(np.stack([np.asarray(currents, dtype=float), r.v, r.dvdi], axis=-1))
        return r

    def take(self) -> np.ndarray:
        """Everything measured since the last call, shape (rows, n, 3)."""
        rows = np.concatenate(self._rows) if self._rows else np.zeros((0, self.n, 3))
        self._rows = []
        return rows


class ReplayNeurons:
    """A neuron array that plays back recorded measurements (see :class:`RecordingNeurons`)."""

    def __init__(self, n: int, label: str):
        self.n = n
        self.label = label
        self._rows = np.zeros((0, n, 3))
        self._pos = 0
        self._where = ""

    def load(self, rows: np.ndarray, where: str) -> None:
        """Play ``rows`` next; ``where`` names them in errors (e.g. 'fold 2 epoch 7')."""
        if rows.ndim != 3 or rows.shape[1:] != (self.n, 3):
            raise ReplayDivergence(
                f"{self.label}, {where}: recorded measurements have shape "
                f"{rows.shape}, expected (rows, {self.n}, 3)"
            )
        self.finish()
        self._rows, self._pos, self._where = rows, 0, where

    def measure(self, currents: np.ndarray) -> NeuronReadout:
        currents = np.asarray(currents, dtype=float)
        chunk = self._rows[self._pos : self._pos + len(currents)]
        if len(chunk) != len(currents):
            raise ReplayDivergence(
                f"{self.label}, {self._where}: the replay asks for more "
                f"measurements than were recorded ({len(self._rows)} rows)"
            )
        differ = np.argwhere(chunk[..., 0] != currents)
        if len(differ):
            r, j = differ[0]
            raise ReplayDivergence(
                f"{self.label}, {self._where}, row {self._pos + r}, neuron {j}: recorded "
                f"current {chunk[r, j, 0]!r} A, replay asks for {currents[r, j]!r} A"
            )
        self._pos += len(currents)
        return NeuronReadout(v=chunk[..., 1].copy(), dvdi=chunk[..., 2].copy())

    def finish(self) -> None:
        """Check the previous block was used up exactly."""
        if self._pos != len(self._rows):
            raise ReplayDivergence(
                f"{self.label}, {self._where}: the replay used {self._pos} "
                f"of {len(self._rows)} recorded rows"
            )
