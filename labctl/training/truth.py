"""The truth a recorded training's measured derivatives are judged against.

Rebuilt from the record alone, for the plots and the live view: on the model backend its
devices (:func:`labctl.training.model_backend.model_layers`); on a simulated station the
oracle of the recorded station (the simulator's ground truth, device A of each layer's
pairs as trained); on real instruments none.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labctl.records.session import RecordError, Session
from labctl.training.iris import IrisSettings

#: currents (n, hidden) in A -> (V in V, or None where the truth has no V(I); dV/dI in Ohm)
LayerTruth = Callable[[np.ndarray], tuple[np.ndarray | None, np.ndarray]]


def recorded_truth(session: Session, settings: IrisSettings
                   ) -> tuple[str | None, list[LayerTruth] | None]:
    """("model" or "simulator", a :data:`LayerTruth` per hidden layer), or (None, None) for
    a training on real instruments. RecordError naming the start document's key where the
    record cannot rebuild it."""
    start = f"{session.file}, line 1: start document"
    if settings.backend == "model":
        from labctl.training.model_backend import model_layers

        try:
            models = model_layers(settings)
        except (OSError, ValueError, KeyError) as err:  # a wafer scan gone or changed
            raise RecordError(f"{start}: config.settings.devices_from: {err}") from None
        # The model's activation curve is not exposed; its derivative is the truth.
        return "model", [lambda c, m=m: (None, m.exact_dvdi(c)) for m in models]
    if not session.start.get("config", {}).get("station", {}).get("simulation"):
        return None, None
    from labctl.commands.lifecycle import recorded_station
    from labctl.station.file import StationFileError
    from labctl.station.oracle import Oracle
    from simulators.mtj import voltage

    try:
        config = recorded_station(session)  # its errors name the file and line already
    except StationFileError as err:
        raise RecordError(str(err)) from None
    where = f"{start}: config.station"
    try:
        oracle = Oracle.from_settings(config.simulation, config.wiring)
        layers = [(pairs, oracle.params(pairs, "A"))
                  for pairs in map(settings.layer_pairs, range(settings.layers))]
    except (TypeError, ValueError, KeyError) as err:
        raise RecordError(f"{where}: {type(err).__name__}: {err}") from None

    def truth(currents: np.ndarray, pairs: list[int], params) -> tuple[np.ndarray, np.ndarray]:
        try:
            return voltage(params, currents), oracle.dvdi(pairs, currents)
        except (TypeError, ValueError, KeyError) as err:
            raise RecordError(f"{where}: {type(err).__name__}: {err}") from None

    return "simulator", [lambda c, p=pairs, q=params: truth(c, p, q) for pairs, params in layers]
