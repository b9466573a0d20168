"""`labctl report SESSION`: the plots of a recorded session, made offline.

I-V curves (``iv`` stream), derivative error against dI (``fd_scan``), training curves
and the measured-against-analytic derivative scatter (``epoch``/``fold``; the analytic
curve is rebuilt from the recorded simulation settings, so it exists for simulated runs),
and the per-epoch gradient fidelity (``fidelity.png``) where the epochs recorded it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from labctl import plots
from labctl.commands.session_args import session_argument
from labctl.records.session import RecordError, Session, contained_path, find_session
from labctl.training.derivative_sources import measured_mode
from labctl.training.iris_record import RecordedRun

IV_KEYS = dict.fromkeys(("current_a", "v_a", "v_b"), "number")
FD_SCAN_KEYS = dict.fromkeys(("di_a", "forward_cal", "swap", "swap_vs_model"), "number")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    session_argument(parser)
    parser.add_argument("--out", type=Path, help="where the plots go (default: SESSION/report)")


def _analytic_dvdi(session: Session, run: RecordedRun, currents: np.ndarray):
    """dV/dI of device A of each hidden neuron of layer 1, if the record allows it."""
    s = run.settings
    n = currents.shape[1]
    if s.backend == "model":
        from labctl.training.neurons import ModelNeurons

        return ModelNeurons(
            n, variability=s.variability, seed=s.seed * 10, di=s.di, grad=measured_mode(s.grad)
        ).exact_dvdi(currents)
    sim = session.start.get("config", {}).get("station", {}).get("simulation")
    if not sim:
        return None
    from labctl.commands.lifecycle import recorded_station
    from labctl.station.file import StationFileError
    from labctl.station.oracle import Oracle

    try:
        config = recorded_station(session)  # its errors name the file and line already
    except StationFileError as err:
        raise RecordError(str(err)) from None
    try:
        return Oracle.from_settings(config.simulation, config.wiring).dvdi(
            list(range(1, n + 1)), currents)
    except (TypeError, ValueError, KeyError) as err:
        where = f"{session.file}, line 1: start document: config.station"
        raise RecordError(f"{where}: {type(err).__name__}: {err}") from None


def run(args: argparse.Namespace) -> int:
    args.session = find_session(args.session, args.sessions_dir)
    session = Session.open(args.session)
    if args.out is None:  # never write through a planted symlink out of the session
        contained_path(args.session, "report", f"{args.session}: report directory")
    out = args.out or args.session / "report"
    out.mkdir(parents=True, exist_ok=True)
    made = []
    title = f"{session.start.get('plan_name', '')} {args.session.name}"
    if "iv" in session.descriptors:
        session.check_stream("iv", IV_KEYS)
        rows = session.events("iv")
        i = np.array([r["current_a"] for r in rows])
        made.append(
            plots.iv_curves(
                out / "iv.png",
                i,
                {
                    "device A": np.array([r["v_a"] for r in rows]),
                    "device B": np.array([r["v_b"] for r in rows]),
                },
                title,
            )
        )
    if "fd_scan" in session.descriptors:
        session.check_stream("fd_scan", FD_SCAN_KEYS)
        rows = session.events("fd_scan")
        di = np.array([r["di_a"] for r in rows])
        made.append(
            plots.error_vs_step(
                out / "fd_scan.png",
                di,
                {
                    k: np.array([r[k] for r in rows])
                    for k in ("forward_cal", "swap", "swap_vs_model")
                },
                title,
            )
        )
    if "epoch" in session.descriptors:
        run_ = RecordedRun(session)
        if not run_.epochs:
            raise RecordError(f"{args.session}: no epoch was recorded; nothing to plot")
        by_fold: dict[int, dict[str, list]] = {}
        for (fold, _), row in sorted(run_.epochs.items()):
            h = by_fold.setdefault(
                fold, {k: [] for k in ("train_loss", "val_loss", "train_acc", "val_acc")}
            )
            for k in h:
                h[k].append(row[k])
        made.append(
            plots.training_curves(
                out / "training.png", {f"fold {f + 1}": h for f, h in by_fold.items()}, title
            )
        )
        fidelity = {f"fold {f + 1}": run_.fidelity(f) for f in by_fold}
        if any(np.isfinite(v).any() for f in fidelity.values() for v in f.values()):
            made.append(plots.gradient_fidelity(
                out / "fidelity.png", fidelity, f"{title}: gradient fidelity ({run_.settings.grad})"
            ))
        last = max(run_.epochs)
        measured = run_.measurements(*last)
        block = measured[0] if measured.size else None  # layer 1: (rows, n, [I, V, dV/dI])
        analytic = None if block is None else _analytic_dvdi(session, run_, block[..., 0])
        if analytic is not None:
            made.append(
                plots.derivative_scatter(
                    out / "derivative.png",
                    analytic.ravel(),
                    {run_.settings.grad: block[..., 2].ravel()},
                    f"layer 1, fold {last[0] + 1} epoch {last[1] + 1}: measured vs analytic",
                )
            )
    if not made and session.n_events == 0:
        status = session.stop["exit_status"] if session.stop else "interrupted"
        print(f"{args.session}: nothing recorded to plot yet (session {status} before its "
              "first measurement)")
        return 0
    if not made:
        raise RecordError(
            f"{args.session}: no stream this report knows how to plot "
            f"({', '.join(session.descriptors) or 'no streams'})"
        )
    for path in made:
        print(path)
    return 0
