"""`labctl replay SESSION --wire`: re-run a session's command against its recorded wire logs.

The original command line (the start document's ``argv``) is parsed by this labctl and run
in this process, with every station it opens built from
:class:`~instruments.replay_transport.WireReplayTransport` s of ``SESSION/wire/<name>.wlog``
(or ``.jsonl``, sessions recorded before that format)
(through :func:`labctl.station.adapters_from`; no simulator, no instrument): each write is
compared with the next recorded write, each read gets the next recorded reply. So the
command must send exactly what it sent then; the first difference is reported with the
instrument, the position and both versions.

What is changed in the re-run, and why:

* ``--sessions-dir``: the replayed run writes its own session under ``--out`` (default
  ``SESSION/wire-replay/``), never into the user's sessions dir, and without wire logs: its
  traffic is the recording, message for message, up to where it diverged (the replay
  transports compare every message and only count them); what the comparison found is
  written next to it as ``wire-replay.json`` (:class:`WireReplayResult`). ``--out`` of the
  command itself (``iv``) is dropped, so its files land there too;
* ``--station``: the station file text recorded in the session is used, not whatever the
  path holds now (or nothing, on another machine);
* ``train iris --grad a,b`` records one session per derivative mode: only this session's
  mode is run.

What is refused, so that a replay never writes outside its own ``--out``: a recorded command
line that names a session to continue (``train iris --resume OTHER``: the run would append to
and seal OTHER), or any other path option this module does not know to confine; a session
with more than one run segment (resumed after abort/fail: its wire logs hold the traffic of
several commands); wire logs that lead out of the session directory (symlinks).

This module never imports the CLI (``labctl.cli`` imports the command that imports this):
the caller hands it the parser, ``replay_wire(session, out, parser_factory)``, with
``labctl.commands.replay`` passing ``labctl.cli.build_parser``.

How the command ended is compared too. ``success``: every recorded message must have been
replayed (leftover is a divergence). ``fail``: the replay must fail with the same reason,
and replay everything (the recorded failure's cleanup is in the log). ``abort`` (Ctrl-C,
SIGTERM): the first mismatch is taken as the interrupt: ``KeyboardInterrupt`` is raised
there and the cleanup that follows must match the rest of the log. No stop document (the
process was killed): the replay matches if it runs out of recorded messages with every
log consumed. Leftover is never reported when the replay already diverged: past the first
divergence nothing is compared.

A read the recorded run lost to a timeout has no entry in the log; the replay recognises it
by the recorded wait (see :mod:`instruments.replay_transport`) and says so in a note.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instruments.replay_transport import ReplayGroup, WireReplayTransport
from instruments.transport import WireLog
from labctl.records.session import RecordError, Session, contained_path
from labctl.station.file import InstrumentConfig
from labctl.station.runtime import adapters_from

REPLAY_DIR = "wire-replay"
STATION_FILE = "recorded-station.toml"
OUTPUT_FILE = "replay-output.txt"
RESULT_FILE = "wire-replay.json"
ParserFactory = Callable[[], argparse.ArgumentParser]
# Path options of recorded commands: redirected to the replay directory or dropped
# (_prepare_args), or only ever read. Any other path option is refused (_confine).
_CONFINED_PATHS = frozenset({"sessions_dir", "out"})
_READ_ONLY_PATHS = frozenset({"station", "data_dir"})


@dataclass
class WireReplayResult:
    """What a wire replay found.

    ``matched``: the traffic and the way the command ended agree with the record;
    ``messages``: per instrument, messages replayed and recorded; ``divergence``: the
    first one (as :meth:`WireDivergence.as_dict`), or None; ``problem``: why it did not
    match when that is not a divergence (the command ended otherwise than recorded).
    """

    session: str
    command: str
    argv: list[str]
    recorded_status: str
    replayed_status: str = ""
    replayed_reason: str = ""
    matched: bool = False
    messages: dict[str, dict[str, int]] = field(default_factory=dict)
    divergence: dict[str, Any] | None = None
    problem: str = ""
    notes: list[str] = field(default_factory=list)
    replay_session: str | None = None
    output: str | None = None
    result_file: str | None = None


def _parse_recorded_argv(
    argv: list[str], plan_name: str, parser_factory: ParserFactory
) -> argparse.Namespace:
    parser = parser_factory()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit:
        said = err.getvalue().strip().splitlines()
        raise RecordError(
            f"the recorded command line {argv!r} does not parse with this labctl"
            + (f": {said[-1]}" if said else "")
        ) from None
    words = " ".join(w for w in (args.command, getattr(args, "subcommand", None)) if w)
    if words != plan_name or not hasattr(args, "sessions_dir"):
        raise RecordError(
            f"the recorded command line {argv!r} is {words!r}, the session says "
            f"{plan_name!r}; cannot replay it"
        )
    return args


def _confine(args: argparse.Namespace, argv: list[str]) -> None:
    """Refuse a recorded command that would write where the replay cannot redirect it."""
    resume = getattr(args, "resume", None)
    if resume is not None:
        raise RecordError(
            f"the recorded command line {argv!r} continues session {str(resume)!r}: a wire "
            "replay would write into (and seal) that session; refused"
        )
    for key, value in sorted(vars(args).items()):
        if isinstance(value, Path) and key not in _CONFINED_PATHS | _READ_ONLY_PATHS:
            raise RecordError(
                f"the recorded command line {argv!r} names a path ({key} = {str(value)!r}) "
                "that a wire replay cannot keep inside its output directory; refused"
            )


def _check_replayable(start: dict, plan_name: str) -> None:
    settings = (start.get("config") or {}).get("settings") or {}
    if plan_name == "train iris" and settings.get("grad") == "exact":
        raise RecordError(
            "cannot replay: grad 'exact' takes dV/dI from the simulator's device model, "
            "not from the instruments, and a wire replay runs without the simulator"
        )


def _prepare_args(args: argparse.Namespace, start: dict, out: Path) -> list[str]:
    """Point the parsed command at the replay directory; returns notes on what changed."""
    notes = []
    args.sessions_dir = out
    text = start.get("station_file")
    if text:
        station = out / STATION_FILE
        station.write_text(text)
        args.station = str(station)
    elif getattr(args, "station", None):
        notes.append(f"the session holds no station file text; using {args.station} as it "
                     "is now")
    if getattr(args, "out", None) is not None:
        notes.append(f"the command's --out {args.out} is not written; its files go to the "
                     "replay session")
        args.out = None
    settings = (start.get("config") or {}).get("settings") or {}
    if "grad" in settings and getattr(args, "grad", None) not in (None, settings["grad"]):
        notes.append(f"--grad {args.grad}: this session recorded {settings['grad']!r} only")
        args.grad = settings["grad"]
    if hasattr(args, "no_progress"):
        args.no_progress = True
    return notes


class _AfterDivergence(logging.Filter):
    """Drops the station's log lines once the replay diverged (the safe shutdown's
    'replay stopped' complaints say nothing new)."""

    def __init__(self, group: ReplayGroup):
        super().__init__()
        self.group = group

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.group.stopped


def replay_wire(
    session_dir: Path, out: Path | None = None, parser_factory: ParserFactory | None = None
) -> WireReplayResult:
    """Re-run the command of ``session_dir`` against its wire logs (see the module doc);
    ``parser_factory`` builds the labctl parser (``labctl.cli.build_parser``)."""
    if parser_factory is None:
        raise TypeError("replay_wire needs parser_factory (e.g. labctl.cli.build_parser)")
    session = Session.open(session_dir)
    start = session.start
    if not start:
        raise RecordError(f"{session_dir}: no start document")
    plan_name = start.get("plan_name", "")
    argv = list(start.get("argv") or [])
    if len(session.starts) > 1:
        raise RecordError(
            f"{session_dir}: the session holds {len(session.starts)} runs (it was resumed); "
            "its wire logs hold the traffic of all of them and a wire replay re-runs one "
            "command"
        )
    by_name = session.wire_logs()  # refuses logs that lead out of the session
    logs = list(by_name.values())
    if not logs:
        raise RecordError(
            f"{session_dir}: no wire logs (wire/*.wlog) to replay: the {plan_name!r} "
            "command of this session did not talk to instruments (e.g. `train iris "
            "--backend model`), or the session was recorded without wire logs"
        )
    if not argv:
        raise RecordError(f"{session_dir}: the start document holds no argv")
    _check_replayable(start, plan_name)
    stop = session.stop
    recorded_status = stop["exit_status"] if stop else "interrupted"
    result = WireReplayResult(str(session_dir), plan_name, argv, recorded_status)

    args = _parse_recorded_argv(argv, plan_name, parser_factory)
    _confine(args, argv)
    if out is None:
        contained_path(session_dir, REPLAY_DIR, f"{session_dir}: wire replay directory")
        out = Path(session_dir) / REPLAY_DIR
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.notes = _prepare_args(args, start, out)

    interrupt = (stop.get("reason") or "KeyboardInterrupt") if recorded_status == "abort" else None
    group = ReplayGroup(interrupt=interrupt)

    def factory(cfg: InstrumentConfig, wire_log: WireLog) -> WireReplayTransport:
        wire_log.count_only()  # the replayed traffic is the recording: not written again
        if cfg.name not in by_name:
            raise RecordError(
                f"{session_dir}: the command opens instrument {cfg.name!r}, which has no "
                f"wire log here (recorded: {', '.join(sorted(by_name))})"
            )
        recorded = (start.get("instruments") or {}).get(cfg.name) or {}
        return group.open(by_name[cfg.name], name=cfg.name, timeout_s=cfg.timeout_s,
                          resource=recorded.get("resource") or cfg.resource, wire_log=wire_log)

    before = {p for p in out.iterdir() if p.is_dir()}
    output = io.StringIO()
    station_log = logging.getLogger("labctl.station.runtime")
    quiet = _AfterDivergence(group)
    station_log.addFilter(quiet)
    error: BaseException | None = None
    try:
        with adapters_from(factory), contextlib.redirect_stdout(output):
            args._run(args)
    except KeyboardInterrupt as exc:
        if group.interrupted_at is None:
            raise  # a real Ctrl-C of the replay itself
        error = exc
    except Exception as exc:  # noqa: BLE001 - any way the command ends is compared below
        error = exc
    finally:
        station_log.removeFilter(quiet)

    new = sorted({p for p in out.iterdir() if p.is_dir()} - before)
    if new:
        result.replay_session = str(new[-1])
        replayed = Session(new[-1]).stop
        if replayed is not None:
            result.replayed_status = replayed["exit_status"]
            result.replayed_reason = replayed.get("reason", "")
    if not result.replayed_status:
        result.replayed_status = "success" if error is None else (
            "abort" if isinstance(error, KeyboardInterrupt) else "fail")
        result.replayed_reason = "" if error is None else _reason(error)
    where = Path(result.replay_session or out)
    with contextlib.suppress(OSError):
        (where / "wire").rmdir()  # made for the logs the replay does not write; if empty
    output_path = where / OUTPUT_FILE
    output_path.write_text(output.getvalue())
    result.output = str(output_path)
    result.messages = {
        name: {"replayed": t.position, "recorded": len(t.entries), **t.consumed}
        for name, t in sorted(group.transports.items())
    }
    unopened = sorted(set(by_name) - set(group.transports))
    for name, position, waited in group.assumed_timeouts:
        result.notes.append(
            f"{name} message {position + 1}: no reply recorded and the log shows a "
            f"{waited:.3g} s wait, so the read was replayed as a timeout"
        )
    _judge(result, group, stop, error, unopened)
    result.result_file = str(where / RESULT_FILE)
    Path(result.result_file).write_text(json.dumps(result.__dict__, indent=2, default=str)
                                        + "\n")
    return result


def _reason(exc: BaseException) -> str:
    """The stop document's form of an exception (see SessionWriter.__exit__)."""
    if isinstance(exc, KeyboardInterrupt):
        return str(exc) or "KeyboardInterrupt"
    return f"{type(exc).__name__}: {exc}"


def _judge(result: WireReplayResult, group: ReplayGroup, stop: dict | None,
           error: BaseException | None, unopened: list[str]) -> None:
    divergence = group.divergence
    if result.recorded_status == "interrupted" and divergence is not None \
            and divergence.total is not None and divergence.index >= divergence.total:
        # The recording ends where the process was killed: running out of it is expected,
        # as long as no other log holds messages the replay did not reach.
        left = group.leftover()
        if left is None and not unopened:
            result.matched = True
            result.notes.append(
                f"the recording ends (the process was killed) where {divergence.instrument} "
                f"would send {divergence.actual}; every recorded message matched up to there"
            )
            return
        divergence = left or divergence
    if divergence is not None:
        result.divergence = divergence.as_dict()
        return
    if unopened:
        result.problem = (f"the replayed command never opened {', '.join(unopened)}, whose "
                          "wire logs the session holds")
        return
    if error is not None and result.replayed_status == "success":
        # Failed outside the session (after its stop document, or before it began).
        result.replayed_status, result.replayed_reason = "fail", _reason(error)
    recorded_reason = (stop or {}).get("reason", "")
    same_end = result.replayed_status == result.recorded_status and (
        result.recorded_status == "success" or result.replayed_reason == recorded_reason
    )
    if result.recorded_status == "abort" and group.interrupted_at is not None:
        same_end = True
        result.notes.append(f"interrupted, as recorded, at {group.interrupted_at.instrument} "
                            f"message {group.interrupted_at.index + 1}")
    if not same_end:
        result.problem = (
            f"the recorded run ended {result.recorded_status}"
            f"{': ' + recorded_reason if recorded_reason else ''}; the replay ended "
            f"{result.replayed_status}"
            f"{': ' + result.replayed_reason if result.replayed_reason else ''}"
        )
        return
    left = group.leftover()
    if left is not None:
        result.divergence = left.as_dict()
        return
    result.matched = True


def _print_report(result: WireReplayResult) -> None:
    cmd = " ".join(result.argv)
    if result.matched:
        print(f"wire replay of {result.session} ({cmd}): matched")
    else:
        print(f"wire replay of {result.session} ({cmd}): DIVERGED")
    width = max((len(n) for n in result.messages), default=0)
    for name, m in result.messages.items():
        print(f"  {name:<{width}}  {m['replayed']:>6} of {m['recorded']:>6} messages "
              f"({m['w']} written, {m['r']} text replies, {m['rb']} binary replies)")
    if result.divergence is not None and not result.matched:
        ended = "stopped at the divergence"
    else:
        ended = result.replayed_status + (f" ({result.replayed_reason})"
                                          if result.replayed_reason else "")
    print(f"  recorded run: {result.recorded_status}; replayed run: {ended}")
    for note in result.notes:
        print(f"  note: {note}")
    if result.replay_session:
        print(f"  replayed session: {result.replay_session}")
    print(f"  the command's own output: {result.output}")
    print(f"  comparison: {result.result_file}")
    if result.divergence is not None:
        print(f"labctl: {result.divergence['message']}", file=sys.stderr)
    elif result.problem:
        print(f"labctl: wire replay did not match: {result.problem}", file=sys.stderr)


def run(args: argparse.Namespace, parser_factory: ParserFactory) -> int:
    """`labctl replay SESSION --wire` (``--out``: where the replayed session goes;
    ``--json``: print the result as JSON); ``parser_factory``: see :func:`replay_wire`."""
    result = replay_wire(args.session, args.out, parser_factory)
    if getattr(args, "json", False):
        print(json.dumps(result.__dict__, indent=2, default=str))
    else:
        _print_report(result)
    return 0 if result.matched else 1
