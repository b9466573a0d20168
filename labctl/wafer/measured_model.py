"""A model of the measured devices: the fitted compact models of a scan's pairs, for the
``model`` training backend (``--backend model --devices-from SESSION``).

Each chosen pair becomes the two fitted devices (R_P, TMR0, V_h, I_off, I_w from
:mod:`labctl.wafer.fits`), so hyperparameters can be tuned offline on this chip's devices;
the read noise is the scan's variability preset's (a real station: the nominal one). The
breakdown voltage cannot be measured without destroying the device: the model takes the
station's rated ``breakdown_v`` (it never biases beyond its limits anyway). Units: A, V, Ohm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labctl.records.session import Session
from labctl.wafer.fits import PARAMS
from labctl.wafer.records import read_scan
from labctl.wafer.report import REPORT_DIR, analyse
from simulators.mtj import MTJParams

Die = tuple[int, int]


def device_rows(session_dir: Path) -> list[dict]:
    """The scan's device table: the report's ``devices.parquet``, else analysed afresh."""
    table = Path(session_dir) / REPORT_DIR / "devices.parquet"
    if table.is_file():
        import pyarrow.parquet as pq

        return pq.read_table(table).to_pylist()
    return analyse(read_scan(session_dir)).device_rows()


def measured_pairs(session_dir: Path, die: Die, pairs: list[int],
                   v_breakdown: float = 1.0) -> MTJParams:
    """Fitted parameters of ``pairs`` on ``die``, shape (len(pairs), 2): [:, 0] device A.

    ValueError naming the pair and device if one was not fitted (open, short)."""
    rows = {(r["pair"], r["device"]): r for r in device_rows(session_dir)
            if (r["die_x"], r["die_y"]) == tuple(die)}
    values = {k: np.zeros((len(pairs), 2)) for k in PARAMS}
    for j, pair in enumerate(pairs):
        for d, dev in enumerate(("A", "B")):
            row = rows.get((pair, dev))
            if row is None or not row["fitted"]:
                why = "not measured" if row is None else f"{row['status']}: {row['reason']}"
                raise ValueError(f"{session_dir}: die {die[0]}:{die[1]} pair {pair} device "
                                 f"{dev} has no fitted model ({why})")
            for k in PARAMS:
                values[k][j, d] = row[k]
    return MTJParams(**values, v_breakdown=np.full((len(pairs), 2), float(v_breakdown)))


def scan_preset(session_dir: Path) -> str:
    """The variability preset the scan's simulated station ran with ("nominal" if none)."""
    wafer = Session(session_dir).start.get("config", {}).get("wafer", {})
    preset = wafer.get("preset") if isinstance(wafer, dict) else None
    return preset if isinstance(preset, str) and preset else "nominal"


# -- the training commands' use of it ---------------------------------------------------

def layer_params(settings, layer: int) -> MTJParams | None:
    """The fitted devices of hidden ``layer`` (0-based) for settings with ``devices_from``
    (its pairs of die ``die``, ``hidden`` per layer); None without."""
    if not getattr(settings, "devices_from", None):
        return None
    return measured_pairs(Path(settings.devices_from), tuple(settings.die),
                          settings.layer_pairs(layer))


#: Settings an --init-from session must share: the same network and the same folds.
_SAME = ("task", "layers", "hidden", "folds", "seed", "activation")


def check_init_session(path: Path, settings) -> None:
    """ValueError naming the setting if the training session ``path`` cannot start a run
    of ``settings`` (another network or other folds), or lacks a fold's final weights."""
    from labctl.training.iris_record import RecordedRun

    recorded = RecordedRun(Session.open(path))
    other = recorded.settings
    diff = [f"{k} {getattr(other, k)!r} there, {getattr(settings, k)!r} here" for k in _SAME
            if getattr(other, k) != getattr(settings, k)]
    if diff:
        raise ValueError(f"--init-from {path}: another network or other folds: "
                         + "; ".join(diff))
    missing = [str(f + 1) for f in range(settings.folds) if f not in recorded.folds]
    if missing:
        raise ValueError(f"--init-from {path}: no final weights of fold(s) "
                         f"{', '.join(missing)} (the session did not finish them)")


def initial_weights(settings) -> dict[int, np.ndarray] | None:
    """fold -> the final weights (flat) of that fold in ``settings.init_from``; None
    without it."""
    if not getattr(settings, "init_from", None):
        return None
    from labctl.training.iris_record import RecordedRun

    recorded = RecordedRun(Session.open(settings.init_from))
    return {f: recorded.fold_result(f).weights[0] for f in range(settings.folds)}
