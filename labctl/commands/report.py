"""`labctl report SESSION`: the plots of a recorded session, made offline.

The same plots the command that made the session wrote (:func:`labctl.plots.session_plots`,
from the record alone): I-V of both devices and their difference (``iv``), derivative
error against dI with the recommended dI (``fd_scan``), I_off per tuning iteration and the
verification sweep (``tuning``), and for a training the curves of every fold with their
mean and the tanh baseline, the derivatives of every hidden layer (against the oracle's
exact dV/dI where the station was simulated) and the per-epoch gradient fidelity.
``--compare SESSION ...`` adds one training figure of several sessions (a ``--grad``
comparison).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from labctl import plots
from labctl.commands.session_args import session_argument
from labctl.records.session import RecordError, Session, contained_path, find_session


def add_arguments(parser: argparse.ArgumentParser) -> None:
    session_argument(parser)
    parser.add_argument("--out", type=Path, help="where the plots go (default: SESSION/report)")
    parser.add_argument(
        "--compare", nargs="+", type=Path, metavar="SESSION", default=None,
        help="training sessions (directories or ids) to draw beside SESSION in one figure, "
             "training-comparison.png")


def run(args: argparse.Namespace) -> int:
    args.session = find_session(args.session, args.sessions_dir)
    session = Session.open(args.session)
    if args.out is None:  # never write through a planted symlink out of the session
        contained_path(args.session, "report", f"{args.session}: report directory")
    out = args.out or args.session / "report"
    out.mkdir(parents=True, exist_ok=True)
    made = plots.session_plots(args.session, out)
    if getattr(args, "compare", None):
        others = [find_session(s, args.sessions_dir) for s in args.compare]
        made.append(plots.comparison_plot([args.session, *others],
                                          out / "training-comparison.png"))
    finished = session.stop is not None and session.stop["exit_status"] == "success"
    if not made and (session.n_events == 0 or not finished):
        # Stopped before its first plotted event (a training killed during its pre-flight
        # check has only that check's stream): nothing is wrong with the record.
        status = session.stop["exit_status"] if session.stop else "interrupted"
        what = "measurement" if session.n_events == 0 else "plotted result"
        print(f"{args.session}: nothing recorded to plot yet (session {status} before its "
              f"first {what}; streams: {', '.join(session.descriptors) or 'none'})")
        return 0
    if not made:
        raise RecordError(
            f"{args.session}: no stream this report knows how to plot "
            f"({', '.join(session.descriptors) or 'no streams'})"
        )
    for path in made:
        print(path)
    return 0
