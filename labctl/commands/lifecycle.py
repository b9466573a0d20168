"""The life of a command that touches instruments: station, session record, safe exit.

:func:`instrument_session` opens the station (wire logs into the session), writes the
start document with every instrument's identity (or, resuming, a new segment of the same
session), and on any way out (return, exception, Ctrl-C, SIGTERM, SIGHUP) brings every
output to zero and off, disarms the ADC and opens the switch matrix, confirming each, and
only then writes the stop document, which says what the shutdown confirmed. A second
signal during that shutdown is held, not obeyed. What was recorded before stays recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from instruments.transport import InstrumentError
from labctl.commands.session_args import add_sessions_dir_argument
from labctl.commands.signals import shielded, signals_as_interrupt
from labctl.records.session import Session, SessionWriter, data_key, exit_status
from labctl.station.file import (
    PRESETS,
    StationConfig,
    StationFileError,
    load_station,
    parse_station,
    simulation_from_record,
)
from labctl.station.runtime import Station, open_station
from protocols.preflight import DifferentialCheck
from protocols.station import ShutdownReport


def add_station_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every instrument command shares."""
    g = parser.add_argument_group("station")
    g.add_argument(
        "--station",
        metavar="FILE",
        help="station file (TOML); default: the built-in simulated station",
    )
    g.add_argument("--seed", type=int, help="simulated station: seed (overrides the file)")
    g.add_argument(
        "--variability",
        choices=list(PRESETS),  # simulators.mtj.PRESETS, as the station file checks
        help="simulated station: device variability preset",
    )
    g.add_argument(
        "--time-scale",
        type=float,
        dest="time_scale",
        help="simulated station: 0 = as fast as possible, 1 = real instrument time",
    )
    g.add_argument(
        "--temperature-k",
        type=float,
        dest="temperature_k",
        metavar="K",
        help="simulated station: device temperature in K (a heated or cooled chuck; "
             "overrides the file's temperature_k and the preset's 300 K)",
    )
    add_sessions_dir_argument(g)


def station_config(args: argparse.Namespace) -> StationConfig:
    return load_station(
        args.station, seed=args.seed, variability=args.variability, time_scale=args.time_scale,
        temperature_k=getattr(args, "temperature_k", None),
    )


@dataclass
class Run:
    """What an instrument command works with; it puts its headline result in ``summary``."""

    station: Station | None
    writer: SessionWriter
    summary: dict = field(default_factory=dict)
    #: Set when the command ran to its end but its result is not good (flagged data, a
    #: target not reached): the stop document then says ``fail`` with this reason.
    problem: str = ""
    #: The result in one readable line, for ``labctl sessions list``.
    headline: str = ""


def report_problem(run: Run) -> int:
    """The exit status of a command that ran to its end: 0, or 1 with ``run.problem`` on
    stderr (the stop document says ``fail`` with it already)."""
    if not run.problem:
        return 0
    print(f"labctl: failed: {run.problem} (session {run.writer.path.name})", file=sys.stderr)
    return 1


class ShutdownNotConfirmed(InstrumentError):
    """The safe shutdown could not confirm every output off; names each instrument."""


def _shutdown_record(report: ShutdownReport | None, signals: list[str]) -> dict:
    if report is None:
        return {"confirmed": True, "problems": [], "notes": [], "instruments": False,
                "signals_held": signals}
    return {"confirmed": report.confirmed, "problems": list(report.problems),
            "notes": list(report.notes), "instruments": True, "signals_held": signals}


@contextlib.contextmanager
def instrument_session(
    args: argparse.Namespace,
    command: str,
    config: dict,
    seeds: dict,
    *,
    need_station: bool = True,
    station_cfg: StationConfig | None = None,
    resume: Session | None = None,
    dimension: str | None = None,
    report_failures: bool = False,
) -> Iterator[Run]:
    """Open the station (unless not needed) and a session record for one command.

    ``resume``: continue that session (a new segment of its record) instead of starting
    one. ``dimension``: the data key the command's primary stream is plotted against.
    ``report_failures``: instruments that could not be opened are the command's to report
    (``run.station.failures``), instead of ending the run with the first. On
    the way out every output is brought to zero and off first (no signal can cut
    that short), then the stop document is written: ``success`` with ``run.summary``, or
    ``fail``/``abort`` with the reason, and what the shutdown confirmed. An exception
    leaving the block carries the session's path as ``labctl_session``. If the shutdown
    could not confirm every output off, :class:`ShutdownNotConfirmed` is raised (after the
    record is complete) unless another exception is already on its way.
    """
    if station_cfg is None:  # commands that validated their input against it pass it in
        station_cfg = station_config(args)
    with signals_as_interrupt():
        # Keep going past an instrument that fails to open: the session records why, and
        # the instruments that did open are still brought to a safe state.
        station = open_station(station_cfg, keep_going=True) if need_station else None
        report: ShutdownReport | None = None
        writer = None
        try:
            snapshot = station.snapshot() if station else {}
            if resume is None:
                writer = SessionWriter.create(
                    args.sessions_dir,
                    command,
                    sys.argv[1:],
                    {**config, "station": station_record(station_cfg)},
                    seeds,
                    instruments=snapshot,
                    station_file_text=station_cfg.text,
                    dimension=dimension,
                )
            else:
                writer = SessionWriter.reopen(resume.path, argv=sys.argv[1:],
                                              instruments=snapshot or None)
            if station is not None:
                station.attach_wire_logs(writer.path)
            run = Run(station, writer)
            failure: BaseException | None = None
            try:
                if station is not None and station.failures and not report_failures:
                    raise next(iter(station.failures.values()))
                yield run
            except BaseException as exc:
                failure = exc
                exc.labctl_session = writer.path
                raise
            finally:
                with shielded() as held:
                    if station is not None:
                        report = station.safe_shutdown()
                    status, reason = exit_status(failure, interrupted="SIGINT")
                    if status == "success" and run.problem:
                        status, reason = "fail", run.problem
                    if report is not None and not report.confirmed and status == "success":
                        status, reason = "fail", "safe shutdown not confirmed"
                    writer.stop(status, reason, summary=run.summary,
                                shutdown=_shutdown_record(report, held),
                                headline=run.headline)
        finally:
            if station is not None:
                station.close(shutdown=report is None or not report.confirmed)
    if report is not None and not report.confirmed:
        err = ShutdownNotConfirmed(
            "safe shutdown could not confirm every output off, AN OUTPUT MAY STILL BE ON: "
            + "; ".join(report.problems)
        )
        err.labctl_session = writer.path
        raise err


def station_record(config: StationConfig) -> dict:
    """The station as a session's start document keeps it (JSON)."""
    sim = asdict(config.simulation) if config.simulation else None
    w = config.wiring
    return {
        "source": config.source,
        "name": config.name,
        "limits": asdict(w.limits),
        "ratings": asdict(w.ratings),
        "trigger_master": str(w.trigger_master),
        "simulation": sim,
        "pairs": {str(k): asdict(p) for k, p in w.pairs.items()},
    }


def recorded_station(session: Session) -> StationConfig:
    """The station a session ran on: its recorded station file and simulation settings."""
    start = session.start
    text = start.get("station_file")
    if not text:
        raise StationFileError(f"{session.path}: the start document holds no station file")
    config = parse_station(text, f"{session.path} (recorded station file)")
    sim = start.get("config", {}).get("station", {}).get("simulation")
    if sim and config.simulation is not None:
        where = f"{session.file}, line 1: start document: config.station.simulation"
        config = replace(config, simulation=simulation_from_record(sim, where))
    return config


def station_changes(recorded: StationConfig, current: StationConfig) -> list[str]:
    """How ``current``'s wiring, limits and ratings differ from ``recorded``'s (empty: no
    change that matters to the devices)."""
    r, c = recorded.wiring, current.wiring
    changes = [f"{f.name}: {getattr(r, f.name)} -> {getattr(c, f.name)}" for f in fields(r)
               if f.name not in ("pairs", "source") and getattr(r, f.name) != getattr(c, f.name)]
    for k in sorted(set(r.pairs) | set(c.pairs)):
        if r.pairs.get(k) != c.pairs.get(k):
            changes.append(f"pair {k}: {r.pairs.get(k)} -> {c.pairs.get(k)}")
    return changes


def resume_station(args: argparse.Namespace, session: Session) -> StationConfig:
    """The station to resume ``session`` on: the station file re-read (``--station``, else
    the file the session was recorded with, if it is still there), refused if its wiring or
    limits changed since, unless ``--new-limits`` says to use the new ones."""
    recorded = recorded_station(session)
    source = session.start.get("config", {}).get("station", {}).get("source", "")
    path = args.station or (source if source and Path(source).is_file() else None)
    if path is None:
        return recorded
    current = load_station(path)
    if current.simulation is not None and recorded.simulation is not None:
        current = replace(current, simulation=recorded.simulation)  # the same devices
    changes = station_changes(recorded, current)
    if changes and not args.new_limits:
        raise StationFileError(
            f"{path}: the station changed since {session.path.name} was recorded "
            f"({'; '.join(changes)}); resume with --new-limits to use the new ones"
        )
    return current


def record_differential_checks(writer: SessionWriter, checks: list[DifferentialCheck]) -> None:
    """The pre-flight checks of the differential path as a ``differential_check`` stream."""
    stream = writer.stream("differential_check", {
        "pair": data_key("labctl.preflight", "integer"),
        "slope": data_key("labctl.preflight", units="V/V"),
        "rms_v": data_key("labctl.preflight", units="V"),
        "span_v": data_key("labctl.preflight", units="V"),
        "verdict": data_key("labctl.preflight", "string"),
    })
    for c in checks:
        writer.event(stream, {"pair": c.pair, "slope": c.slope, "rms_v": c.rms_v,
                              "span_v": c.span_v, "verdict": c.verdict})
