"""Where commands find sessions: ``--sessions-dir`` and a SESSION given by path or id.

Kept apart from the command lifecycle so that offline commands (replay, report, sessions)
start without importing the instrument stack.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_sessions_dir_argument(parser) -> None:
    """``--sessions-dir``: where session records are; default $LABCTL_SESSIONS, else
    ./sessions."""
    parser.add_argument(
        "--sessions-dir",
        default=Path(os.environ.get("LABCTL_SESSIONS", "sessions")),
        type=Path,
        help="where session records are (default: $LABCTL_SESSIONS, else ./sessions)",
    )


def session_argument(parser: argparse.ArgumentParser) -> None:
    """The positional SESSION: a session directory, or its id under --sessions-dir."""
    parser.add_argument("session", type=Path,
                        help="session directory, or its id (as `labctl sessions list` prints)")
    add_sessions_dir_argument(parser)
