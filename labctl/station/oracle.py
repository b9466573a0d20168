"""The one seam to the simulator's ground truth: exact dV/dI and device parameters.

A simulated station has an :class:`Oracle` (``station.oracle``); a station of real
instruments has None. Commands use it only to show the truth beside what they measured
(derivative error against the exact dV/dI, true I_off beside an estimate) and for the
``exact`` gradient control; nothing else in labctl reaches into the simulated world.
Devices are named as the wiring names them (pair k, device "A" or "B") and found in the
simulator through their switch channels. Units: A, V.
"""

from __future__ import annotations

import numpy as np

from protocols.wiring import Wiring
from simulators.mtj import MTJParams, dvdi
from simulators.world import SimSettings, StationWorld


class Oracle:
    """Ground truth of the devices a simulated ``world`` holds, as ``wiring`` reaches them."""

    def __init__(self, world: StationWorld, wiring: Wiring):
        self._world = world
        self._wiring = wiring

    @classmethod
    def from_settings(cls, settings: SimSettings, wiring: Wiring) -> Oracle:
        """The devices as a simulated station with ``settings`` starts (for offline use)."""
        return cls(StationWorld(settings), wiring)

    def _index(self, pairs: list[int], device: str) -> tuple[np.ndarray, np.ndarray]:
        rows, devs = [], []
        for k in pairs:
            w = self._wiring.pair(k)
            channel = (w.a if device == "A" else w.b).switch_channel
            _, pair_index, dev_index = self._world.channel_target(channel)
            rows.append(pair_index)
            devs.append(dev_index)
        return np.array(rows, dtype=int), np.array(devs, dtype=int)

    def params(self, pairs: list[int], device: str = "A") -> MTJParams:
        """Compact-model parameters of ``device`` of each pair in ``pairs`` (of the die under
        the probes), tuning included."""
        return self._world.chip.params.take(self._index(pairs, device))

    def dvdi(self, pairs: list[int], currents: np.ndarray, device: str = "A") -> np.ndarray:
        """Exact dV/dI (Ohm) of ``device`` of each pair at ``currents`` (A); a column per
        pair (``currents`` of shape (n, len(pairs)), or 1-d for a single pair)."""
        return dvdi(self.params(pairs, device), currents)

    def instrument_time_s(self) -> float:
        """Elapsed station time (s): the latest of the simulated instruments' timelines
        (instruments working at once overlap; see simulators.world.SimClock)."""
        return self._world.clock.now()

    def i_off(self, pair: int) -> dict[str, float]:
        """True I_off (A) of both devices of ``pair``, tuning included."""
        return {d: float(np.ravel(self.params([pair], d).i_off)[0]) for d in ("A", "B")}
