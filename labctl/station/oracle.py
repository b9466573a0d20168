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
from simulators.mtj import MTJParams
from simulators.world import SimSettings, StationWorld


class Oracle:
    """Ground truth of the devices a simulated ``world`` holds, as ``wiring`` reaches them."""

    def __init__(self, world: StationWorld, wiring: Wiring):
        self._world = world
        self._wiring = wiring

    @classmethod
    def from_settings(cls, settings: SimSettings, wiring: Wiring) -> Oracle:
        """The devices as a simulated station with ``settings`` starts (for offline use);
        its matrix has the rows the wiring's switch channels reach (``1Ckk`` ...: whole
        couples from A/B on, as labctl.station.simulated cables a station)."""
        from dataclasses import replace

        from simulators.cabling import DEFAULT_CABLING, MATRIX_ROWS

        named = [(p.a if d == "A" else p.b).switch_channel[1:2]
                 for p in wiring.pairs.values() for d in ("A", "B")]
        last = max((MATRIX_ROWS.index(r) for r in named if r in MATRIX_ROWS), default=1)
        rows = MATRIX_ROWS[:max(2, 2 * (last // 2 + 1))]
        return cls(StationWorld(settings, replace(DEFAULT_CABLING, matrix_rows=rows)), wiring)

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
        pair (``currents`` of shape (n, len(pairs)), or 1-d for a single pair). For devices
        with a shape, the time-averaged curve on the hysteresis branch they are on now; for
        measured devices, the derivative of their interpolant (DeviceBank.exact_dvdi)."""
        return self._world.chip.exact_dvdi(self._index(pairs, device), currents)

    def instrument_time_s(self) -> float:
        """Elapsed station time (s): the latest of the simulated instruments' timelines
        (instruments working at once overlap; see simulators.world.SimClock)."""
        return self._world.clock.now()

    def i_off(self, pair: int) -> dict[str, float]:
        """True I_off (A) of both devices of ``pair``, tuning included."""
        return {d: float(np.ravel(self.params([pair], d).i_off)[0]) for d in ("A", "B")}

    def _wiring_index(self) -> dict[tuple[int, int], tuple[int, str]]:
        """(pair index, device index) in the simulator -> (pair, "A"/"B") of the wiring."""
        out = {}
        for k in sorted(self._wiring.pairs):
            w = self._wiring.pair(k)
            for device, end in (("A", w.a), ("B", w.b)):
                _, pair_index, dev_index = self._world.channel_target(end.switch_channel)
                out[pair_index, dev_index] = (k, device)
        return out

    def die_params(self, die: tuple[int, int]) -> MTJParams:
        """As-fabricated compact-model parameters of every wired pair of ``die``, shape
        (n_pairs, 2): row j is the j-th pair of the wiring (sorted), column 0 device A."""
        bank = self._world.dies[tuple(die)]
        pairs = sorted(self._wiring.pairs)
        rows_a, devs_a = self._index(pairs, "A")
        rows_b, devs_b = self._index(pairs, "B")
        index = (np.stack([rows_a, rows_b], axis=1), np.stack([devs_a, devs_b], axis=1))
        return bank.fabricated.take(index)

    def planted_defects(self) -> dict[tuple[tuple[int, int], int, str], str]:
        """What the simulated wafer planted, as the wiring names the devices:
        (die, pair 1-based, "A"/"B") -> "open" | "short" | "broken" | "out_of_family".
        Devices the wiring does not reach are left out."""
        names = self._wiring_index()
        return {(die, *names[pair, dev]): kind
                for (die, pair, dev), kind in self._world.planted.items()
                if (pair, dev) in names}
