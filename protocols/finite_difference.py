"""Finite-difference plans: the I and I+dI biasing sequences and their calibration.

For each neuron (an MTJ pair) device A is biased at I and device B at I + dI. V_A is the
activation and (V_B - V_A) / dI, read through the differential amplifier and the ADC,
approximates dV/dI. Modes:

- ``forward``: A at I, B at I + dI. The pair's mismatch V_B(I) - V_A(I) biases the
  estimate; a calibration sweep at dI = 0 (:func:`calibrate`) measures that offset per
  pair so that it can be subtracted.
- ``swap``: also the roles exchanged (A at I + dI, B at I), in the same list sweep:
  [(V_B(I+dI) - V_A(I)) - (V_B(I) - V_A(I+dI))] / (2 dI) is the mean of both devices'
  forward differences, with the offset cancelled and the gain mismatch averaged.

Units: A, V, Ohm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from protocols.intents import Plan, Sweep

MODES = ("forward", "swap")


@dataclass
class Calibration:
    """Per pair, the dI = 0 offset V_B(I) - V_A(I) (V) on a grid of currents (A)."""

    grid: dict[int, np.ndarray] = field(default_factory=dict)
    offset: dict[int, np.ndarray] = field(default_factory=dict)

    def offset_at(self, pair: int, currents: np.ndarray) -> np.ndarray:
        if pair not in self.grid:
            return np.zeros_like(currents)
        return np.interp(currents, self.grid[pair], self.offset[pair])


@dataclass
class FdReadout:
    """Activations and derivative estimates of a batch: arrays (batch, n_pairs).

    v: V_A(I) (V); dvdi: the derivative estimate (Ohm); valid: no compliance or
    overrange at any reading that went into that entry.
    """

    v: np.ndarray
    dvdi: np.ndarray
    valid: np.ndarray


def calibrate(pairs: list[int], i_max: float, points: int = 81) -> Plan:
    """Plan: V_B(I) - V_A(I) at dI = 0 on a grid over [-i_max, i_max]; returns a Calibration."""
    cal = Calibration()
    grid = np.linspace(-i_max, i_max, points)
    for pair in pairs:
        r = yield Sweep(pair, grid, grid, label="calibration")
        ok = r.valid
        cal.grid[pair] = grid[ok]
        cal.offset[pair] = r.v_diff[ok]
    return cal


def fd_batch(
    currents: np.ndarray,
    pairs: list[int],
    di: float,
    mode: str = "swap",
    calibration: Calibration | None = None,
    together: bool = False,
) -> Plan:
    """Plan: activations and derivatives for ``currents`` (batch, n_pairs), column j on pairs[j].

    together: yield every pair's sweep at once, as one tuple (an engine on a station that
    sweeps pairs in parallel runs them so); otherwise one sweep after another.
    """
    if mode not in MODES:
        raise ValueError(f"finite-difference mode must be one of {MODES}, got {mode!r}")
    if di == 0:
        raise ValueError("dI must not be zero")
    currents = np.asarray(currents, dtype=float)
    batch, n = currents.shape
    if n != len(pairs):
        raise ValueError(f"currents have {n} columns but {len(pairs)} pairs are given")
    v = np.empty((batch, n))
    d = np.empty((batch, n))
    valid = np.empty((batch, n), dtype=bool)

    def sweep_of(j: int, pair: int) -> Sweep:
        i = currents[:, j]
        if mode == "forward":
            return Sweep(pair, i, i + di, label="fd-forward")
        return Sweep(pair, np.concatenate([i, i + di]), np.concatenate([i + di, i]),
                     label="fd-swap")

    results = (yield tuple(sweep_of(j, p) for j, p in enumerate(pairs))) if together else None
    for j, pair in enumerate(pairs):
        i = currents[:, j]
        r = results[j] if together else (yield sweep_of(j, pair))
        if mode == "forward":
            offset = calibration.offset_at(pair, i) if calibration else 0.0
            d[:, j] = (r.v_diff - offset) / di
            v[:, j] = r.v_a
            valid[:, j] = r.valid
        else:
            d[:, j] = (r.v_diff[:batch] - r.v_diff[batch:]) / (2 * di)
            v[:, j] = r.v_a[:batch]
            valid[:, j] = r.valid[:batch] & r.valid[batch:]
    return FdReadout(v, d, valid)


def iv_sweep(pair: int, currents: np.ndarray) -> Plan:
    """Plan: both devices of ``pair`` at the same currents; returns the SweepResult."""
    return (yield Sweep(pair, currents, currents, label="iv"))


def optimal_step(noise_v: float, curvature_v_per_a2: float) -> float:
    """Forward-difference step (A) minimising the rms error for read noise sigma (V).

    Truncation |V''| dI / 2 against noise sqrt(2) sigma / dI gives
    dI = (8 sigma^2 / V''^2)^(1/4) = 1.68 sqrt(sigma / |V''|).
    """
    return 8**0.25 * np.sqrt(noise_v / abs(curvature_v_per_a2))
