"""Derivatives per hidden layer: the dV/dI backpropagation used, as recorded, against the
bias current; the simulator's (or device model's) exact dV/dI beside it where there is one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labctl.plots.figure import figure, figure_legend_below, save

#: ``--grad`` -> what the recorded dV/dI is (``exact`` was never measured).
SOURCES = {
    "fd-swap": "measured: (V_B - V_A)/dI, A and B swapped",
    "fd": "measured: forward difference (V_B - V_A)/dI",
    "exact": "exact dV/dI from the simulator (not measured)",
    "constant": "control: the batch's mean measured dV/dI",
    "shuffled": "control: measured dV/dI permuted over samples and neurons",
    "nominal-model": "control: the nominal device model's dV/dI",
}


def source_label(grad: str) -> str:
    """What a recorded derivative of source ``grad`` is, for a legend."""
    return f"{grad}: {SOURCES.get(grad, 'recorded dV/dI')}"


@dataclass
class LayerDerivatives:
    """One hidden layer: bias currents (A) and the dV/dI used (Ohm), each (rows, neurons);
    the exact dV/dI (Ohm, (points, neurons)) on a current grid (A, (points,)) if known."""

    currents_a: np.ndarray
    dvdi_ohm: np.ndarray
    exact_currents_a: np.ndarray | None = None
    exact_ohm: np.ndarray | None = None


def derivative_scatter(path: Path, layers: list[LayerDerivatives], grad: str,
                       title: str) -> Path:
    """A panel per hidden layer: recorded dV/dI (kOhm) against bias current (uA), one
    colour per neuron, dots; the exact curve of each neuron a line of its colour."""
    fig = figure((5.2 * len(layers) + 0.5, 4.8))
    axes = np.atleast_1d(fig.subplots(1, len(layers), squeeze=False)[0])
    label = source_label(grad)
    has_exact = any(layer.exact_ohm is not None for layer in layers)
    for k, (ax, layer) in enumerate(zip(axes, layers, strict=True)):
        i_ua = np.asarray(layer.currents_a, dtype=float) * 1e6
        d_k = np.asarray(layer.dvdi_ohm, dtype=float) / 1e3
        for j in range(i_ua.shape[1]):
            colour = f"C{j % 10}"
            ax.plot(i_ua[:, j], d_k[:, j], ".", ms=2.5, alpha=0.5, color=colour,
                    label=f"dV/dI used, {label}" if j == 0 else None)
            if layer.exact_ohm is not None:
                ax.plot(np.asarray(layer.exact_currents_a) * 1e6, layer.exact_ohm[:, j] / 1e3,
                        "-", lw=1, color=colour,
                        label="exact dV/dI of device A (oracle)" if j == 0 else None)
        ax.set_xlabel("bias current of device A (uA)")
        ax.set_ylabel("dV/dI (kOhm)")
        ax.set_title(f"hidden layer {k + 1}: {i_ua.shape[1]} neurons (a colour each)",
                     fontsize=8)
        ax.grid(alpha=0.3)
    if not has_exact:
        axes[0].plot([], [], " ", label="no exact dV/dI: real devices have no oracle")
    figure_legend_below(fig, axes, ncol=2)
    fig.suptitle(title, fontsize=9)
    return save(fig, path)
