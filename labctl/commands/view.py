"""`labctl view [SESSION ...]`: a local web page that follows sessions as they are written.

Serves on 127.0.0.1 only (``--port``, default a free one) and prints the page's URL; the page
reads every session from its documents on disk, so it follows a running one and shows a
finished one alike, and survives a reload or a restart of the view. Ctrl-C or SIGTERM ends it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from labctl.commands.session_args import add_sessions_dir_argument
from labctl.commands.signals import signals_as_interrupt
from labctl.records.session import RecordError, find_session


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sessions", nargs="*", type=Path, metavar="SESSION",
                        help="session directories or ids, shown side by side (none: the "
                        "index of every session under --sessions-dir)")
    parser.add_argument("--port", type=int, default=0,
                        help="TCP port on 127.0.0.1 (default: 0, a free port)")
    add_sessions_dir_argument(parser)


def named_sessions(refs: list[Path], root: Path) -> dict[str, Path]:
    """Session id -> directory for the sessions given (by path or id); a directory name
    given twice from different places gets a suffix so both can be shown."""
    named: dict[str, Path] = {}
    for ref in refs:
        path = find_session(ref, root)
        if not path.is_dir():
            raise RecordError(f"{ref}: no session directory there")
        sid, n = path.name, 2
        while sid in named and named[sid].resolve() != path.resolve():
            sid, n = f"{path.name}~{n}", n + 1
        named[sid] = path
    return named


def run(args: argparse.Namespace) -> int:
    from labctl.view.documents import DocumentReader
    from labctl.view.server import ViewServer

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: not a TCP port (0 to 65535)")
    named = named_sessions(args.sessions, args.sessions_dir)
    for path in named.values():  # refuse what is no session now, not later on the page
        DocumentReader(chunk_bytes=1).read(path, 0)
    server = ViewServer(args.sessions_dir, named, args.port)
    server.warm()
    try:
        print(f"labctl view: {server.page_url(list(named))}", flush=True)
        with signals_as_interrupt():
            server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM: the way to end it
    finally:
        server.server_close()
    return 0
