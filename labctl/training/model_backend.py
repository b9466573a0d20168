"""The model backend's devices, built the one way a training, its plots and its view use.

A training with ``backend = "model"`` runs on :class:`~labctl.training.neurons.ModelNeurons`
per hidden layer: the preset's devices (at the settings' temperature), a wafer scan's
fitted devices (``devices_from``), or a station file's measured devices. The oracle a plot
or the live view draws against is the same devices, rebuilt from the recorded settings.
"""

from __future__ import annotations

from labctl.training.derivative_sources import measured_mode
from labctl.training.iris import IrisSettings
from labctl.training.neurons import ModelNeurons
from simulators.measured_devices import MeasuredDevices


def model_layers(s: IrisSettings, measured: MeasuredDevices | None = None) -> list[ModelNeurons]:
    """One ModelNeurons per hidden layer of ``s``; ``measured``: the station file's measured
    devices (layer k on pairs k * hidden ...). Raises what reading ``devices_from`` raises
    (OSError, ValueError, KeyError) for a scan that is gone or does not fit."""
    params = [None] * s.layers
    if s.devices_from:
        from labctl.wafer.measured_model import layer_params

        params = [layer_params(s, k) for k in range(s.layers)]
    return [ModelNeurons(s.hidden, variability=s.variability, seed=s.seed * 10 + k, di=s.di,
                         grad=measured_mode(s.grad), nplc=s.nplc, params=params[k],
                         temperature_k=s.temperature_k, measured=measured,
                         first_pair=k * s.hidden)
            for k in range(s.layers)]
