"""`labctl export SESSION --to netcdf|parquet`: a session's streams as files for other tools."""

from __future__ import annotations

import argparse
from pathlib import Path

from labctl.commands.session_args import session_argument
from labctl.records.export import FORMATS, export
from labctl.records.session import Session, contained_path, find_session


def add_arguments(parser: argparse.ArgumentParser) -> None:
    session_argument(parser)
    parser.add_argument("--to", required=True, choices=FORMATS,
                        help="netcdf: one xarray dataset per stream (needs the 'export' "
                             "extra); parquet: one table per stream")
    parser.add_argument("--out", type=Path,
                        help="where the files go (default: SESSION/export-<format>)")


def run(args: argparse.Namespace) -> int:
    args.session = find_session(args.session, args.sessions_dir)
    session = Session.open(args.session)
    name = f"export-{args.to}"
    if args.out is None:  # never write through a planted symlink out of the session
        contained_path(args.session, name, f"{args.session}: export directory")
    for path in export(session, args.to, args.out or args.session / name):
        print(path)
    return 0
