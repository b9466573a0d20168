"""A recorded session's plots, from its documents and arrays alone.

The command that makes a session, ``labctl report`` and ``labctl replay`` all call
:func:`session_plots`, so one session gives one set of PNGs wherever they are made. Every
value is read through :mod:`labctl.records` (checked: a crafted or damaged record gives a
:class:`RecordError` naming the file, never a traceback). Units: A, V, Ohm, s.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import labctl.plots as plots  # the kinds are looked up at call time (tests may stub them)
from labctl.plots.derivatives import LayerDerivatives
from labctl.plots.identity import run_identity
from labctl.plots.training import TrainingRun
from labctl.records.session import RecordError, Session

IV_KEYS = dict.fromkeys(("current_a", "v_a", "v_b"), "number")
FD_SCAN_KEYS = dict.fromkeys(("di_a", "forward_cal", "swap", "swap_vs_model"), "number")
TUNING_KEYS = dict.fromkeys(("iteration", "i_off_a", "i_off_b", "pulse_a_v", "pulse_b_v"),
                            "number")
#: The tanh baseline's per-epoch curves in the fold stream (an optional key): its rows.
TANH_ROWS = ("train_loss", "train_acc", "val_loss", "val_acc")
EXACT_POINTS = 121  # points of each exact dV/dI curve


def _number(value, default=None):
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else default


def _summary(session: Session) -> dict:
    summary = (session.stop or {}).get("labctl_summary")
    return summary if isinstance(summary, dict) else {}


def _column(rows: list[dict], key: str, default=np.nan) -> np.ndarray:
    return np.array([r.get(key, default) for r in rows], dtype=float)


def session_plots(session_dir: str | Path, out: str | Path,
                  training: TrainingRun | None = None) -> list[Path]:
    """Every plot the session's streams allow, written into ``out``; the paths made.

    ``training``: curves to draw instead of the recorded ones (a replay's own, which must
    equal them)."""
    session_dir, out = Path(session_dir), Path(out)
    session = Session(session_dir)
    title = run_identity(session.start, session_dir)
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    if "iv" in session.descriptors:
        made.append(_iv(session, out / "iv.png", title))
    if "fd_scan" in session.descriptors:
        made.append(_fd_scan(session, out / "fd_scan.png", title))
    if "tuning" in session.descriptors:
        made.append(_tune(session, out / "tune.png", title))
    if "epoch" in session.descriptors:
        made += _training(session, out, title, training)
    return made


def _iv(session: Session, path: Path, title: str) -> Path:
    session.check_stream("iv", IV_KEYS)
    rows = session.events("iv")
    has_diff = all(_number(r.get("v_diff")) is not None for r in rows) and rows
    return plots.iv_curves(
        path, _column(rows, "current_a"), _column(rows, "v_a"), _column(rows, "v_b"),
        f"{title}\npair {session.start.get('config', {}).get('pair', '?')}: I-V of both "
        "devices and their difference",
        v_diff=_column(rows, "v_diff") if has_diff else None,
        compliance=np.array([r.get("compliance") is True for r in rows]))


def _fd_scan(session: Session, path: Path, title: str) -> Path:
    session.check_stream("fd_scan", FD_SCAN_KEYS)
    rows = session.events("fd_scan")
    summary = _summary(session)
    recommended = _number(summary.get("recommended_di_a"))
    if recommended is None and rows:  # interrupted: the command's rule, least swap error
        recommended = float(min(rows, key=lambda r: r["swap"])["di_a"])
    keys = [k for k in ("forward_raw", "forward_cal", "swap", "swap_vs_model")
            if all(_number(r.get(k), math.nan) is not None for r in rows)]
    pair = session.start.get("config", {}).get("pair", "?")
    return plots.error_vs_step(
        path, _column(rows, "di_a"), {k: _column(rows, k) for k in keys},
        f"{title}\npair {pair}: dV/dI error against the step dI (reference: fine I-V sweep)",
        recommended_di_a=recommended, theory_di_a=_number(summary.get("theory_di_a")))


def _tune(session: Session, path: Path, title: str) -> Path:
    session.check_stream("tuning", TUNING_KEYS)
    rows = session.events("tuning")
    config = session.start.get("config", {})
    target = _number(config.get("target_i_off_a"))
    tolerance = _number(config.get("tolerance_a"))
    if target is None or tolerance is None:
        raise RecordError(f"{session.file}, line 1: start document: key "
                          "'config.target_i_off_a' or 'config.tolerance_a' missing or not a "
                          "number")
    verify = None
    if "verify_iv" in session.descriptors:
        session.check_stream("verify_iv", IV_KEYS)
        v = session.events("verify_iv")
        verify = {k: _column(v, k) for k in ("current_a", "v_a", "v_b")}
    summary = _summary(session)

    def devices(value) -> dict[str, float] | None:
        if not isinstance(value, dict):
            return None
        out = {d: _number(value.get(d)) for d in ("A", "B")}
        return {d: x for d, x in out.items() if x is not None} or None

    verified = summary.get("verified")
    if isinstance(verified, dict):  # recorded as i_off_a, i_off_b (protocols.tuning)
        verified = {"i_off": {d: verified.get(f"i_off_{d.lower()}") for d in ("A", "B")}}
    return plots.tune_progress(
        path, _column(rows, "iteration"),
        {"A": _column(rows, "i_off_a"), "B": _column(rows, "i_off_b")},
        {"A": _column(rows, "pulse_a_v"), "B": _column(rows, "pulse_b_v")},
        target, tolerance,
        f"{title}\npair {config.get('pair', '?')}: I_off tuned by programming pulses",
        verify=verify,
        verified_a=devices(verified.get("i_off") if isinstance(verified, dict) else None),
        truth_a=devices(summary.get("simulator_i_off_a")))


def recorded_training(session: Session, label: str | None = None) -> TrainingRun:
    """A training session's curves as recorded: per fold its epochs' validation figures,
    the tanh baseline's curves (where the fold stream holds them) and final accuracy."""
    from labctl.training.iris_record import RecordedRun

    run = RecordedRun(session)
    if not run.epochs:
        raise RecordError(f"{session.path}: no epoch was recorded; nothing to plot")
    by_fold: dict[int, dict[str, list[float]]] = {}
    for (fold, _), row in sorted(run.epochs.items()):
        h = by_fold.setdefault(fold, {k: [] for k in TANH_ROWS})
        for k in TANH_ROWS:
            h[k].append(row[k])
    tanh = []
    for fold in sorted(run.folds):
        curves = _tanh_curves(session, run.folds[fold], fold)
        if curves is None:
            tanh = []
            break
        tanh.append(curves)
    return TrainingRun(label or network_label(run.settings), [by_fold[f] for f in sorted(by_fold)],
                       tanh, [float(run.folds[f]["tanh_val_acc"]) for f in sorted(run.folds)])


def network_label(settings) -> str:
    """``MTJ (fd-swap)``, or the control network's name (``tanh (fd)``)."""
    kind = "MTJ" if settings.activation == "mtj" else settings.activation
    return f"{kind} ({settings.grad})"


def _tanh_curves(session: Session, fold_row: dict, fold: int) -> dict[str, list[float]] | None:
    """The fold's recorded tanh baseline curves, None if this record has none."""
    if "tanh_history" not in fold_row:
        return None
    curves = session.load_array(fold_row["tanh_history"])
    if curves.dtype.kind not in "fiu" or curves.ndim != 2 or curves.shape[0] != len(TANH_ROWS):
        raise RecordError(f"{session.path}: fold {fold}: tanh_history of shape {curves.shape} "
                          f"({curves.dtype}), expected ({len(TANH_ROWS)}, epochs)")
    return {k: curves[i].astype(float).tolist() for i, k in enumerate(TANH_ROWS)}


def _training(session: Session, out: Path, title: str,
              training: TrainingRun | None) -> list[Path]:
    from labctl.training.iris_record import RecordedRun

    run = RecordedRun(session)
    curves = training if training is not None else recorded_training(session)
    made = [plots.training_curves(
        out / "training.png", [curves],
        f"{title}\nvalidation per epoch: each fold, their mean, and the tanh baseline")]
    fidelity = {f"fold {f + 1}": run.fidelity(f) for f in sorted({f for f, _ in run.epochs})}
    if any(np.isfinite(v).any() for f in fidelity.values() for v in f.values()):
        made.append(plots.gradient_fidelity(
            out / "fidelity.png", fidelity, f"{title}\ngradient fidelity per epoch"))
    layers = recorded_derivatives(session, run)
    if layers:
        fold, epoch = max(run.epochs)
        made.append(plots.derivative_scatter(
            out / "derivative.png", layers, run.settings.grad,
            f"{title}\ndV/dI used by backpropagation, fold {fold + 1} epoch {epoch + 1}"))
    return made


def recorded_derivatives(session: Session, run) -> list[LayerDerivatives]:
    """Each hidden layer's bias currents and dV/dI of the last recorded epoch, and the
    exact dV/dI where the record allows it (a simulated station's oracle, rebuilt from the
    recorded station; the model backend's device model); empty for a software network."""
    if run.settings.activation != "mtj" or not run.epochs:
        return []
    block = run.measurements(*max(run.epochs))
    if block.size == 0:
        return []
    exact = _exact_source(session, run)
    layers = []
    for k in range(block.shape[0]):
        currents, dvdi = block[k, ..., 0], block[k, ..., 2]
        layer = LayerDerivatives(currents, dvdi)
        if exact is not None:
            grid = np.linspace(float(currents.min()), float(currents.max()), EXACT_POINTS)
            layer.exact_currents_a = grid
            layer.exact_ohm = exact(k, grid[:, None] * np.ones((1, currents.shape[1])))
        layers.append(layer)
    return layers


def _exact_source(session: Session, run):
    """(layer, currents (A)) -> exact dV/dI (Ohm), or None without an oracle (real devices)."""
    from labctl.training.truth import recorded_truth

    _, layers = recorded_truth(session, run.settings)
    if layers is None:
        return None
    return lambda k, currents: layers[k](currents)[1]


def comparison_plot(session_dirs: list[Path], path: Path) -> Path:
    """One training figure of several sessions (a ``--grad`` comparison): each run's folds
    and mean in a colour of its own, the tanh baseline once."""
    sessions = [Session(d) for d in session_dirs]
    runs = [recorded_training(s) for s in sessions]
    ids = ", ".join(Path(d).name for d in session_dirs)
    first = run_identity(sessions[0].start, Path(session_dirs[0])).split(" · ")
    where = " · ".join(p for p in first[2:] if not p.startswith("grad "))
    return plots.training_curves(
        path, runs, f"{first[0]} · comparison of {', '.join(r.label for r in runs)} · "
        f"{where}\nsessions {ids}")
