"""`labctl sessions prune`: remove recorded sessions by age, status or size.

A dry run unless ``--yes``: it lists what would go and how much room that frees. A session
some process is writing (``running``) is never removed, whatever the criteria. Criteria
combine with AND; at least one is needed, so a bare ``prune`` removes nothing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import time

from labctl.commands.session_args import add_sessions_dir_argument
from labctl.commands.sessions import human_size, table
from labctl.records.session import SessionSummary, list_sessions

STATUSES = ("success", "fail", "abort", "interrupted", "unreadable")
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])\Z")
_AGE_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kMG]?B)\Z")
_SIZE_B = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def age_s(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` in seconds."""
    match = _AGE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age: a number with s, m, h, d or w (e.g. 30d)")
    return float(match[1]) * _AGE_S[match[2]]


def size_bytes(text: str) -> float:
    """``500MB``, ``2GB``, ``800kB``, ``100B`` in bytes."""
    match = _SIZE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: a number with B, kB, MB or GB (e.g. 500MB)")
    return float(match[1]) * _SIZE_B[match[2]]


def statuses(text: str) -> set[str]:
    chosen = {s.strip() for s in text.split(",") if s.strip()}
    unknown = sorted(chosen - set(STATUSES))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown status {', '.join(unknown) or repr(text)}; one of {', '.join(STATUSES)}")
    return chosen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than", type=age_s, metavar="AGE",
                        help="started longer ago than AGE (e.g. 30d, 12h)")
    parser.add_argument("--status", type=statuses, metavar="S[,S...]",
                        help=f"with one of these statuses ({', '.join(STATUSES)})")
    parser.add_argument("--larger-than", type=size_bytes, metavar="SIZE",
                        help="taking more than SIZE on disk (e.g. 500MB)")
    parser.add_argument("--yes", action="store_true",
                        help="remove them (without it: only list what would be removed)")
    add_sessions_dir_argument(parser)


def selected(sessions: list[SessionSummary], args: argparse.Namespace,
             now: float) -> list[SessionSummary]:
    """The sessions every given criterion picks (never a running one)."""
    out = []
    for s in sessions:
        if s.status == "running":
            continue
        if args.older_than is not None and (s.start_time is None
                                            or now - s.start_time <= args.older_than):
            continue
        if args.status is not None and s.status not in args.status:
            continue
        if args.larger_than is not None and s.size_bytes <= args.larger_than:
            continue
        out.append(s)
    return out


def run(args: argparse.Namespace) -> int:
    if args.older_than is None and args.status is None and args.larger_than is None:
        raise ValueError("sessions prune needs --older-than, --status or --larger-than "
                         "(a bare prune would remove everything)")
    chosen = selected(list_sessions(args.sessions_dir), args, time.time())
    if not chosen:
        print(f"no session in {args.sessions_dir} matches")
        return 0
    for line in table(chosen):
        print(line)
    total = human_size(sum(s.size_bytes for s in chosen))
    if not args.yes:
        print(f"would remove {len(chosen)} sessions ({total}); run again with --yes to do it")
        return 0
    for s in chosen:
        shutil.rmtree(s.path)
    print(f"removed {len(chosen)} sessions ({total})")
    return 0
