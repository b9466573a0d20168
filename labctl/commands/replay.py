"""`labctl replay SESSION`: re-run a recorded session offline, without the station.

A training session is fed through the same trainer and plotting code as the live run,
its hidden layers answering from the recorded measurements; every epoch's metrics and
every fold's final weights are compared with the record, bit for bit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from labctl import plots
from labctl.commands.session_args import session_argument
from labctl.plots.session import network_label
from labctl.plots.training import TrainingRun
from labctl.records.session import RecordError, Session, contained_path, find_session
from labctl.training.iris import summarise, train_folds
from labctl.training.iris_record import METRICS, NullSink, RecordedRun, ReplaySource, flatten
from labctl.training.neuron_record import EndOfRecord


def add_arguments(parser: argparse.ArgumentParser) -> None:
    session_argument(parser)
    parser.add_argument(
        "--out", type=Path, help="where the replay's plots go (default: SESSION/replay)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary only")
    parser.add_argument(
        "--wire",
        action="store_true",
        help="re-run the session's command against its recorded wire logs and compare "
        "every message (any command; --out: where the replayed session goes, "
        "default SESSION/wire-replay)",
    )


def replay_training(session: Session) -> dict:
    """Replay a training session; returns what matched, what was replayed, and the timing."""
    recorded = RecordedRun(session)
    if not recorded.epochs:
        raise RecordError(f"{session.path}: no epoch was recorded; nothing to replay")
    settings = recorded.settings
    sink = NullSink()
    t0 = time.perf_counter()
    end = None
    try:
        train_folds(settings, recorded.max_current_a, ReplaySource(recorded), sink)
    except EndOfRecord as exc:
        end = str(exc)
    replay_s = time.perf_counter() - t0
    mismatched = [
        k for k, row in sink.rows.items() if any(row[m] != recorded.epochs[k][m] for m in METRICS)
    ]
    weights_equal = all(
        np.array_equal(flatten(r.weights), recorded.fold_result(r.fold).weights[0])
        for r in sink.results
        if r.fold in recorded.folds
    )
    recorded_s = _recorded_duration(session)
    return {
        "epochs_replayed": len(sink.rows),
        "epochs_recorded": len(recorded.epochs),
        "folds_replayed": len(sink.results),
        "metrics_identical": not mismatched and len(sink.rows) == len(recorded.epochs),
        "first_mismatch": list(mismatched[0]) if mismatched else None,
        "final_weights_identical": weights_equal,
        "ended": end or "complete",
        "replay_s": replay_s,
        "recorded_s": recorded_s,
        "speedup": recorded_s / replay_s if replay_s > 0 and recorded_s else None,
        "summary": summarise(sink.results) if sink.results else None,
        "_results": sink.results,
    }


def _recorded_duration(session: Session) -> float | None:
    stop = session.stop
    start = session.start.get("time")
    if stop is not None:
        return stop["time"] - start
    last = session.last_time
    return last - start if last else None


def run(args: argparse.Namespace) -> int:
    if args.wire:
        from labctl.cli import build_parser  # lazily: the cli imports this module
        from labctl.records.wire_replay import run as run_wire

        return run_wire(args, build_parser)
    args.session = find_session(args.session, args.sessions_dir)
    session = Session.open(args.session)
    command = session.start.get("plan_name", "")
    if command != "train iris":
        raise RecordError(
            f"{args.session}: replay knows 'train iris' sessions; this one is "
            f"{command!r} (use `labctl report` for its plots)"
        )
    result = replay_training(session)
    results = result.pop("_results")
    if results:
        if args.out is None:  # never write through a planted symlink out of the session
            contained_path(args.session, "replay", f"{args.session}: replay directory")
        out = args.out or args.session / "replay"
        out.mkdir(parents=True, exist_ok=True)
        # The session's plots, its training curves the replay's own: equal to the
        # record's when the replay is faithful, so the PNG is the command's and report's.
        replayed = TrainingRun(
            network_label(RecordedRun(session).settings), [r.history for r in results],
            [r.tanh_history for r in results], [r.tanh_val_acc for r in results])
        plots.session_plots(args.session, out, training=replayed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"replayed {result['epochs_replayed']} of {result['epochs_recorded']} recorded "
            f"epochs ({result['ended']})"
        )
        print(
            f"per-epoch metrics identical: {result['metrics_identical']}; "
            f"final weights identical: {result['final_weights_identical']}"
        )
        if result["speedup"]:
            print(
                f"replay {result['replay_s']:.3f} s against {result['recorded_s']:.3f} s "
                f"recorded: {result['speedup']:.0f}x faster"
            )
    ok = result["metrics_identical"] and result["final_weights_identical"]
    return 0 if ok else 1
