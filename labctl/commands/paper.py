"""`labctl paper`: the reproduction table of arXiv 2603.03947, each figure over seeds.

    labctl paper                          every experiment, 10 seeds each
    labctl paper --only iris-model,mnist --seeds 12 -j 2
    labctl paper --only iris-model --set folds=2 --set epochs=20   a quick look
    labctl paper --table                  the table of what has run so far; runs nothing
    labctl paper --list                   the experiments, their grids and time estimates

Each experiment is an ordinary sweep (``labctl sweep``) in OUT/<experiment>: finished
cells are kept, so an interrupted run continues where it stopped, and every cell is a
session that ``labctl report`` and ``labctl replay`` read. The table prints our mean with
its t interval over seeds beside the paper's figure, the tanh baseline on the same seeds
and the paired difference. Exit status: 0 all cells ok, 1 some failed, 2 bad input, 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from labctl.paper.experiments import EXPERIMENTS, Experiment, experiment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from labctl.sweep.executors import default_jobs

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--only", metavar="NAMES",
                        help="a comma list of experiments (default: all of "
                             + ", ".join(e.name for e in EXPERIMENTS) + ")")
    parser.add_argument("--seeds", type=int, default=10,
                        help="seeds per experiment, 0..N-1 (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="an option of the experiments' command given to every cell "
                             "(repeatable), e.g. --set folds=2; the table then says so")
    parser.add_argument("-j", "--jobs", type=int, default=default_jobs(),
                        help="cells at a time (default: the CPU count, %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("paper"),
                        help="the experiments' sweep directories (default: %(default)s)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="confidence level of the intervals (default: %(default)s)")
    parser.add_argument("--table", action="store_true",
                        help="print the table of what has run; run nothing")
    parser.add_argument("--list", action="store_true",
                        help="list the experiments and their grids; run nothing")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _chosen(args: argparse.Namespace) -> list[Experiment]:
    if not args.only:
        return list(EXPERIMENTS)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if not names:
        raise ValueError("--only: give experiment names, e.g. --only iris-model")
    return [experiment(n) for n in names]


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    out = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: give OPTION=VALUE, e.g. --set folds=2")
        out[key.strip().lstrip("-")] = value.strip()
    return out


def _grid(e: Experiment, args: argparse.Namespace):
    """(grid, cells) of ``e`` with the chosen seeds and --set options; GridError naming the
    experiment for an option its command refuses."""
    from labctl.sweep.cells import build_cells
    from labctl.sweep.grid import parse_grid

    grid = parse_grid(e.grid_text(args.seeds, _overrides(args)), f"labctl paper: {e.name}")
    return grid, build_cells(grid)


def _run_one(e: Experiment, grid, cells, args: argparse.Namespace) -> tuple[int, bool]:
    """(failed cells, interrupted) of running ``e``'s sweep."""
    from labctl.sweep.driver import run_sweep
    from labctl.sweep.executors import make_executor
    from labctl.sweep.store import SweepStore

    print(f"paper: {e.name}: {len(cells)} cells in {args.out / e.name}", file=sys.stderr)
    result = run_sweep(grid, cells, SweepStore(args.out / e.name),
                       make_executor("local", args.jobs, None),
                       progress=not args.no_progress and not args.json)
    return len(result.failed), bool(result.interrupted)


def run(args: argparse.Namespace) -> int:
    from labctl.paper.table import experiment_row, render

    if args.seeds < 2:
        raise ValueError(f"--seeds must be 2 or more (a confidence interval needs two), "
                         f"got {args.seeds}")
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must be between 0 and 1, got {args.confidence}")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be 1 or more, got {args.jobs}")
    chosen = _chosen(args)
    grids = {e.name: _grid(e, args) for e in chosen}  # every grid checked before any runs
    if args.list:
        for e in chosen:
            when = "time not measured yet" if e.cell_s is None else (
                f"about {e.cell_s * args.seeds / args.jobs / 60:.0f} min with -j {args.jobs} "
                f"({e.cell_s:.0f} s a cell alone, default settings)")
            print(f"{e.name}: {e.title}\n  paper: {e.paper}\n  {when}\n"
                  + "".join(f"    {line}\n" for line in grids[e.name][0].text.splitlines()))
        return 0
    failed, interrupted = 0, False
    if not args.table:
        for e in chosen:
            f, interrupted = _run_one(e, *grids[e.name], args)
            failed += f
            if interrupted:
                break
    rows = [experiment_row(e, args.out / e.name, grids[e.name][1], args.confidence)
            for e in chosen]
    if args.json:
        print(json.dumps({"confidence": args.confidence, "experiments": rows}, indent=1))
    else:
        print(render(rows, args.confidence))
    if interrupted:
        print("labctl paper: interrupted; run it again to finish", file=sys.stderr)
        return 130
    return 1 if failed else 0
