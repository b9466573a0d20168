"""An epoch's measured hidden neurons beside the truth, for the page's neuron plots.

Per layer and neuron: the bias currents (A) the trainer asked for during the epoch, the
activation V_A (V) and the derivative it used (dV/dI, Ohm), and where the record allows it
the truth on a grid over the same currents: the simulated devices rebuilt from the recorded
station (the oracle, as a simulated station starts) or the device model on the model
backend. A station of real devices has no truth: only what was measured is served.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from labctl.records.session import RecordError, Session
from labctl.training.iris_record import RecordedRun
from labctl.training.truth import recorded_truth

GRID_POINTS = 80  # truth curve points per neuron
MAX_POINTS = 400  # measured points per neuron served (evenly thinned beyond)


@functools.lru_cache(maxsize=16)
def _truth(path: str, start_uid: str):
    """(kind, functions) for a session: kind "simulator" or "model", functions per layer
    mapping currents (n, hidden) in A to (V in V, dV/dI in Ohm); or (None, None).
    Cached per session run (its start document's uid)."""
    session = Session(path)
    settings = RecordedRun(session).settings
    try:
        return recorded_truth(session, settings)
    except RecordError:
        if settings.backend != "model":
            raise
        return None, None  # the wafer scan it ran on is gone: the measured points only


def truth_of(session_dir: str | Path):
    """(kind, functions) of :func:`_truth` for a session directory (a training session;
    RecordError otherwise)."""
    session = Session(session_dir)
    return _truth(str(Path(session_dir).resolve()), session.start["uid"])


def _thin(n: int) -> np.ndarray:
    return np.arange(n) if n <= MAX_POINTS else np.linspace(0, n - 1, MAX_POINTS).astype(int)


def epoch_neurons(session_dir: str | Path, fold: int | None = None,
                  epoch: int | None = None) -> dict:
    """The view model of one epoch's neurons (the latest recorded when ``fold``/``epoch``
    are None): ``{"fold", "epoch", "grad", "truth", "layers": [[neuron, ...], ...]}``,
    a neuron ``{"neuron", "pair", "i_a", "v_v", "dvdi_ohm", "truth_i_a", "truth_v_v",
    "truth_dvdi_ohm", "dvdi_err_median"}`` (truth keys None without a truth)."""
    session = Session(session_dir)
    run = RecordedRun(session)
    if not run.epochs:
        return {"fold": None, "epoch": None, "layers": [], "truth": None,
                "grad": run.settings.grad}
    key = max(run.epochs) if fold is None or epoch is None else (fold, epoch)
    if key not in run.epochs:
        raise RecordError(f"{session.file}: no epoch {key[1]} of fold {key[0]} recorded")
    block = run.measurements(*key)
    kind, truth = _truth(str(Path(session_dir).resolve()), session.start["uid"])
    s = run.settings
    layers = []
    for li in range(block.shape[0] if block.size else 0):
        currents = block[li, :, :, 0]
        grid = None
        if truth is not None:
            lo, hi = currents.min(axis=0), currents.max(axis=0)
            grid = np.linspace(lo, hi, GRID_POINTS)  # (points, hidden)
            t_v, t_d = truth[li](grid)
            _, at_measured = truth[li](currents)
        neurons = []
        for j in range(block.shape[2]):
            order = np.argsort(currents[:, j], kind="stable")[_thin(currents.shape[0])]
            n = {"neuron": j + 1, "pair": s.layer_pairs(li)[j] if s.backend == "station"
                 else None,
                 "i_a": currents[order, j].tolist(), "v_v": block[li, order, j, 1].tolist(),
                 "dvdi_ohm": block[li, order, j, 2].tolist(),
                 "truth_i_a": None, "truth_v_v": None, "truth_dvdi_ohm": None,
                 "dvdi_err_median": None}
            if grid is not None:
                n["truth_i_a"] = grid[:, j].tolist()
                n["truth_v_v"] = None if t_v is None else np.asarray(t_v)[:, j].tolist()
                n["truth_dvdi_ohm"] = np.asarray(t_d)[:, j].tolist()
                rel = block[li, :, j, 2] / np.asarray(at_measured)[:, j] - 1
                rel = rel[np.isfinite(rel)]
                n["dvdi_err_median"] = float(np.median(np.abs(rel))) if rel.size else None
            neurons.append(n)
        layers.append(neurons)
    return {"fold": int(key[0]), "epoch": int(key[1]), "grad": s.grad, "truth": kind,
            "backend": s.backend, "layers": layers}
