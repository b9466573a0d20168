"""`labctl sessions list`: the recorded sessions, oldest first, with their size."""

from __future__ import annotations

import argparse
import time

from labctl.commands.session_args import add_sessions_dir_argument
from labctl.records.session import SessionSummary, list_sessions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sessions_dir_argument(parser)


def human_size(n_bytes: int) -> str:
    """Bytes as a short readable size (1000-based, as disk tools print: kB, MB, GB)."""
    size = float(n_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def table(sessions: list[SessionSummary]) -> list[str]:
    """The listing's lines: a header, then one row per session."""
    rows = [("id", "command", "started (UTC)", "status", "size", "result")]
    for s in sessions:
        started = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.start_time)) if s.start_time else "-"
        )
        result = s.headline or s.reason
        rows.append((s.id, s.command, started, s.status, human_size(s.size_bytes), result))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return ["  ".join(c.rjust(w) if i == 4 else c.ljust(w)
                      for i, (c, w) in enumerate(zip(r[:5], widths, strict=True))) + "  " + r[5]
            for r in rows]


def run(args: argparse.Namespace) -> int:
    sessions = list_sessions(args.sessions_dir)
    if not sessions:
        print(f"no sessions in {args.sessions_dir}")
        return 0
    for line in table(sessions):
        print(line)
    total = sum(s.size_bytes for s in sessions)
    print(f"{len(sessions)} sessions, {human_size(total)} in {args.sessions_dir}")
    return 0
