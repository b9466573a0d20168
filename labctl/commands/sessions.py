"""`labctl sessions list`: the recorded sessions, oldest first."""

from __future__ import annotations

import argparse
import time

from labctl.commands.session_args import add_sessions_dir_argument
from labctl.records.session import list_sessions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sessions_dir_argument(parser)


def run(args: argparse.Namespace) -> int:
    sessions = list_sessions(args.sessions_dir)
    if not sessions:
        print(f"no sessions in {args.sessions_dir}")
        return 0
    rows = [("id", "command", "started (UTC)", "status", "result")]
    for s in sessions:
        started = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.start_time)) if s.start_time else "-"
        )
        result = s.headline or s.reason
        rows.append((s.id, s.command, started, s.status, result))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    return 0
