"""`labctl sim serve`: serve a simulated bench on loopback and a pseudo-terminal.

Without ``--station`` it serves the built-in bench (simulator options as in
``python -m simulators.serve``). With ``--station FILE`` it serves that file's bench: its
instruments under their names, cabled as its wiring says, with its ``[simulation]``
settings and faults. ``--write-station OUT`` writes the station file a client uses to reach
what is served: the same file with every resource filled in and no ``[simulation]``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from simulators import serve as sim_serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sim_serve.add_arguments(parser)
    parser.add_argument("--station", metavar="FILE", type=Path,
                        help="serve this station file's bench (it needs a [simulation] table); "
                             "the simulator options above then come from the file")
    parser.add_argument("--write-station", metavar="OUT", type=Path,
                        help="write a station file with the served resources filled in")


def client_station_text(text: str, resources: dict[str, str]) -> str:
    """``text`` (a station file) with ``resource = ...`` set in every instrument table and the
    ``[simulation]`` tables removed: how a client reaches the served bench."""
    out: list[str] = []
    table = None
    skipping = False
    for line in text.splitlines():
        head = re.match(r"^\s*\[+\s*([^\]]+?)\s*\]+", line)
        if head:
            table = head.group(1)
            skipping = table == "simulation" or table.startswith("simulation.")
            if skipping:
                continue
            out.append(line)
            name = table.removeprefix("instruments.") if table.startswith("instruments.") else None
            if name in resources:
                out.append(f'resource = "{resources[name]}"')
            continue
        if skipping:
            continue
        if table and table.startswith("instruments.") and re.match(r"^\s*resource\s*=", line):
            continue  # replaced above
        out.append(line)
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    if args.station is None:
        if args.write_station is not None:
            raise ValueError("--write-station needs --station (the file to serve)")
        return sim_serve.run(args)
    from labctl.station.file import load_station

    config = load_station(args.station)
    if config.simulation is None:
        raise ValueError(f"{args.station}: no [simulation] table: nothing to simulate")
    return _serve(config, args)


def _serve(config, args: argparse.Namespace) -> int:
    from labctl.station.simulated import cabling_for
    from simulators.station import SimulatedStation

    station = SimulatedStation(config.simulation, cabling=cabling_for(config),
                               faults=config.faults | dict(args.fault),
                               port_base=args.port_base)
    if args.write_station is None:
        return sim_serve.serve(station)

    def write(resources: dict[str, str]) -> None:
        args.write_station.write_text(
            client_station_text(config.text, resources)
        )

    return sim_serve.serve(station, on_ready=write)
