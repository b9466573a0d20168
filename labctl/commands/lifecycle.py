"""The life of a command that touches instruments: station, session record, safe exit.

:func:`instrument_session` loads the station file, opens the station (wire logs into the
session), writes the start document with every instrument's identity, and on any way out
(return, exception, Ctrl-C, SIGTERM) brings every output to zero and off, opens the
switch matrix and writes the stop document. What was recorded before stays recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labctl.records.session import SessionWriter, terminate_as_interrupt
from labctl.station.file import StationConfig, load_station
from labctl.station.runtime import Station, open_station


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
        choices=["ideal", "nominal", "pronounced"],
        help="simulated station: device variability preset",
    )
    g.add_argument(
        "--time-scale",
        type=float,
        dest="time_scale",
        help="simulated station: 0 = as fast as possible, 1 = real instrument time",
    )
    g.add_argument(
        "--sessions-dir",
        default="sessions",
        type=Path,
        help="where session records go (default: ./sessions)",
    )


def station_config(args: argparse.Namespace) -> StationConfig:
    return load_station(
        args.station, seed=args.seed, variability=args.variability, time_scale=args.time_scale
    )


def _jsonable(config: StationConfig) -> dict:
    sim = asdict(config.simulation) if config.simulation else None
    return {
        "source": config.source,
        "name": config.name,
        "limits": asdict(config.limits),
        "simulation": sim,
        "pairs": {str(k): asdict(p) for k, p in config.pairs.items()},
    }


@dataclass
class Run:
    """What an instrument command works with; it puts its headline result in ``summary``."""

    station: Station | None
    writer: SessionWriter
    summary: dict = field(default_factory=dict)


@contextlib.contextmanager
def instrument_session(
    args: argparse.Namespace,
    command: str,
    config: dict,
    seeds: dict,
    *,
    need_station: bool = True,
    station_cfg: StationConfig | None = None,
) -> Iterator[Run]:
    """Open the station (unless not needed) and a session record for one command.

    On the way out every output is brought to zero and off first, then the stop document
    is written: ``success`` with ``run.summary``, or ``fail``/``abort`` with the reason.
    """
    if station_cfg is None:  # commands that validated their input against it pass it in
        station_cfg = station_config(args)
    with contextlib.ExitStack() as stack:
        stack.enter_context(terminate_as_interrupt())
        station = stack.enter_context(open_station(station_cfg)) if need_station else None
        writer = SessionWriter.create(
            args.sessions_dir,
            command,
            sys.argv[1:],
            {**config, "station": _jsonable(station_cfg)},
            seeds,
            instruments=station.snapshot() if station else {},
            station_file_text=station_cfg.text,
        )
        if station is not None:
            station.attach_wire_logs(writer.path)
        with writer:
            run = Run(station, writer)
            try:
                yield run
            finally:
                if station is not None:
                    station.safe_shutdown()
            writer.stop("success", summary=run.summary)
