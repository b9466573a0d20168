"""`labctl sweep`: a grid of ordinary labctl runs over seeds and settings; `sweep report`.

    labctl sweep [OPTIONS] GRID.toml            a grid file (see labctl.sweep.grid)
    labctl sweep [OPTIONS] SWEEP_DIR            run an existing sweep again (its grid.toml)
    labctl sweep [OPTIONS] train iris --seed 0:10 --variability nominal,pronounced
    labctl sweep report SWEEP_DIR [--metric M] [--confidence 0.95] [--json]

Each cell is one run of the command with its own session in SWEEP_DIR/sessions; a cell
already finished is skipped, an interrupted one resumed. The sweep's own options go
before the grid (or after a grid file); after the command words, an option the command
does not have but the sweep does (-j, --retries, --out, ...) is the sweep's. Exit status:
0 every cell ok, 1 some cell failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labctl.sweep.options import RESERVED, CommandOptions, GridError, is_flag

DEFAULT_MAX_CELLS = 64


def _sweep_options(parser: argparse.ArgumentParser) -> None:
    from labctl.sweep.executors import default_jobs

    parser.add_argument("-j", "--jobs", type=int, default=default_jobs(),
                        help="cells at a time (local executor, or LocalCluster workers; "
                             "default: the CPU count, %(default)s)")
    parser.add_argument("--executor", choices=("local", "dask"), default="local",
                        help="local processes (default) or Dask (a LocalCluster unless "
                             "--scheduler)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="a Dask scheduler, e.g. tcp://10.0.0.5:8786 (implies --executor "
                             "dask; see docs/sweeps.md for SLURM)")
    parser.add_argument("--retries", type=int, default=2,
                        help="attempts more for a cell whose worker dies (default: 2)")
    parser.add_argument("--max-cells", type=int, default=DEFAULT_MAX_CELLS,
                        help="a larger grid needs --yes (default: %(default)s)")
    parser.add_argument("--yes", action="store_true", help="run a grid beyond --max-cells")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="the sweep directory (default: sweeps/<name>-<hash>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the cells (key and options) and run nothing")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    _sweep_options(parser)
    parser.add_argument("target", nargs=argparse.REMAINDER, metavar="GRID | COMMAND ...",
                        help="a grid file, a sweep directory, a command and its options "
                             "with levels, or `report SWEEP_DIR`")


def _option_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labctl sweep", add_help=False)
    _sweep_options(parser)
    parser.error = _refuse  # type: ignore[method-assign]
    return parser


def _refuse(message: str) -> None:
    raise GridError(f"labctl sweep: {message}")


def _command_words(tokens: list[str]) -> tuple[str, ...] | None:
    from labctl.cli import COMMANDS

    best: tuple[str, ...] | None = None
    for words, _, _ in COMMANDS:
        if tuple(tokens[: len(words)]) == words and (best is None or len(words) > len(best)):
            best = words
    return best


def _split_inline(opts: CommandOptions, tokens: list[str]) -> tuple[list[str], list[str]]:
    """(the command's tokens, the sweep's tokens) of an inline grid's options."""
    sweep_parser = _option_parser()
    sweep_flags = {s: a for a in sweep_parser._actions for s in a.option_strings}
    mine, sweep = [], []
    i = 0
    while i < len(tokens):
        name = tokens[i].partition("=")[0]
        action = opts.action(name) if name.startswith("-") else None
        ours = name in sweep_flags and (action is None or action.dest in RESERVED)
        target = sweep if ours else mine
        target.append(tokens[i])
        takes_value = (sweep_flags[name].nargs != 0 if ours
                       else action is not None and not is_flag(action))
        if takes_value and "=" not in tokens[i] and i + 1 < len(tokens):
            target.append(tokens[i + 1])
            i += 1
        i += 1
    return mine, sweep


def _load(args: argparse.Namespace):
    """(grid, sweep directory given, args) from the target tokens."""
    from labctl.sweep.grid import load_grid, parse_inline

    tokens = list(args.target)
    if not tokens:
        raise GridError("labctl sweep: give a grid file, a sweep directory, or a command "
                        "with its options (e.g. labctl sweep train iris --seed 0:4)")
    words = _command_words(tokens)
    if words is not None:
        opts = CommandOptions.load(words)
        mine, sweep = _split_inline(opts, tokens[len(words):])
        _option_parser().parse_args(sweep, namespace=args)
        return parse_inline(words, mine), None, args
    first, rest = Path(tokens[0]), tokens[1:]
    _option_parser().parse_args(rest, namespace=args)
    if first.is_dir():
        if not (first / "grid.toml").is_file():
            raise GridError(f"{first}: not a sweep directory (no grid.toml)")
        from labctl.sweep.grid import parse_grid
        from labctl.sweep.store import SweepStore

        base = Path(SweepStore(first).meta().get("base_dir") or Path.cwd())
        meta_source = first / "grid.toml"
        grid = parse_grid(meta_source.read_text(), str(meta_source), base)
        return grid, first, args
    if not first.exists() and not first.suffix:
        raise GridError(f"labctl sweep: {tokens[0]!r} is neither a grid file nor a command")
    return load_grid(first), None, args


def _run_sweep(args: argparse.Namespace) -> int:
    from labctl.sweep.cells import build_cells
    from labctl.sweep.driver import run_sweep
    from labctl.sweep.executors import make_executor
    from labctl.sweep.safety import check_stations
    from labctl.sweep.store import SweepStore

    grid, existing, args = _load(args)
    if args.retries < 0:
        raise GridError(f"--retries must be 0 or more, got {args.retries}")
    cells = build_cells(grid)
    check_stations(cells, grid.source)
    if len(cells) > args.max_cells and not args.yes:
        raise GridError(f"{grid.source}: the grid has {len(cells)} cells, more than --max-cells "
                        f"{args.max_cells}; pass --yes to run them all")
    root = args.out or existing or Path("sweeps") / f"{grid.name}-{grid.digest()}"
    if args.dry_run:
        factors = [f.dest for f in grid.factors]
        print(f"{len(cells)} cells of {grid.options.command}, sweep directory {root}")
        for c in cells:
            print(f"{c.index:>4}  {c.key}  {c.label(factors)}")
        return 0
    executor = make_executor(args.executor, args.jobs, args.scheduler)
    store = SweepStore(root)
    result = run_sweep(grid, cells, store, executor, retries=args.retries,
                       progress=not args.no_progress)
    print(f"sweep {root}: {result.total} cells, {result.ok} ok, {len(result.failed)} failed"
          + (f" ({result.skipped} finished before)" if result.skipped else "")
          + f"; table {store.table_path}")
    for cell, error in result.failed:
        print(f"  failed: cell {cell.index} ({' '.join(cell.argv)}): {error}")
    if result.interrupted:
        print(f"labctl sweep: interrupted ({result.interrupted}); run it again to finish "
              f"({root})", file=sys.stderr)
        return 130
    return 1 if result.failed else 0


def _report(tokens: list[str]) -> int:
    from labctl.sweep.report import report_command

    parser = argparse.ArgumentParser(prog="labctl sweep report",
                                     description="statistics over seeds and plots of a sweep")
    parser.add_argument("sweep", type=Path, help="the sweep directory")
    parser.add_argument("--metric", action="append",
                        help="a metric column (repeatable; default: all)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="confidence level of the intervals (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-plots", action="store_true", help="no PNG plots")
    return report_command(parser.parse_args(tokens))


def run(args: argparse.Namespace) -> int:
    if args.target and args.target[0] == "report":
        return _report(args.target[1:])
    return _run_sweep(args)
