"""`labctl sim serve`: serve a simulated bench on loopback and a pseudo-terminal.

Without ``--station`` it serves the built-in bench (simulator options as in
``python -m simulators.serve``). With ``--station FILE`` it serves that file's bench: its
instruments under their names, cabled as its wiring says, with its ``[simulation]``
settings and faults. ``--write-station OUT`` writes the station file a client uses to reach
what is served: the same file with every resource filled in and no ``[simulation]``.

``--reference-load OHMS`` cables every SMU channel to a reference resistor of OHMS to
ground instead of the switch matrix (a bench's calibration resistor; ``Cabling.
reference_load_ohm``): a client then sources and measures a known load with no switch
or prober commands. ``--smu-serial`` also serves every SMU on a pseudo-terminal, the
2400's RS-232 port, printed as ``<smu>_serial ASRL<pty>::INSTR``: pyvisa ends reads at
``\n`` on a serial resource by default, so a client that passes no termination (such as
pymeasure's own device test suite, ``Keithley2400(address)``) can talk to it; on the raw
socket (``::SOCKET``) pyvisa waits for a termination it was not given.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
from dataclasses import replace
from pathlib import Path

from simulators import serve as sim_serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sim_serve.add_arguments(parser)
    parser.add_argument("--station", metavar="FILE", type=Path,
                        help="serve this station file's bench (it needs a [simulation] table); "
                             "the simulator options above then come from the file")
    parser.add_argument("--write-station", metavar="OUT", type=Path,
                        help="write a station file with the served resources filled in")
    parser.add_argument("--reference-load", metavar="OHMS", type=_ohms, default=None,
                        help="cable every SMU channel to a reference resistor of OHMS (Ohm, "
                             "to ground) instead of the switch matrix")
    parser.add_argument("--smu-serial", action="store_true",
                        help="also serve every SMU on a pseudo-terminal (its RS-232 port), "
                             "printed as <smu>_serial ASRL<pty>::INSTR")


def _ohms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a resistance in Ohm, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive resistance in Ohm, got {text}")
    return value


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
        if args.reference_load is None and not args.smu_serial:
            return sim_serve.run(args)
        return _serve_builtin(args)
    from labctl.station.file import load_station

    config = load_station(args.station)
    if config.simulation is None:
        raise ValueError(f"{args.station}: no [simulation] table: nothing to simulate")
    return _serve(config, args)


def _serve_builtin(args: argparse.Namespace) -> int:
    """The built-in bench (settings as ``simulators.serve.run`` takes them), with a
    reference load and SMU serial ports as asked."""
    from simulators.cabling import DEFAULT_CABLING
    from simulators.station import SimulatedStation
    from simulators.world import SimSettings

    settings = SimSettings(seed=args.seed, variability=args.variability, n_pairs=args.pairs,
                           time_scale=args.time_scale)
    cabling = _with_reference(DEFAULT_CABLING, args.reference_load)
    station = SimulatedStation(settings, cabling=cabling, faults=dict(args.fault),
                               port_base=args.port_base)
    return _run_served(station, args, None)


def _with_reference(cabling, ohms: float | None):
    """``cabling`` with a hard-wired reference load of ``ohms`` on every SMU row (none:
    unchanged)."""
    if ohms is None:
        return cabling
    return replace(cabling, reference_load_ohm=ohms, reference_channels=()).validate()


def _serve(config, args: argparse.Namespace) -> int:
    from labctl.station.simulated import cabling_for, smu_models_for
    from simulators.station import SimulatedStation

    station = SimulatedStation(config.simulation,
                               cabling=_with_reference(cabling_for(config), args.reference_load),
                               faults=config.faults | dict(args.fault),
                               port_base=args.port_base, smu_models=smu_models_for(config))
    write = None
    if args.write_station is not None:
        def write(resources: dict[str, str]) -> None:
            args.write_station.write_text(client_station_text(config.text, resources))

    return _run_served(station, args, write)


def _run_served(station, args: argparse.Namespace, write) -> int:
    """Serve ``station`` until a stop signal: with ``--smu-serial`` every SMU on a
    pseudo-terminal too (the same instrument, faults included), stopped with it."""
    ptys: list = []

    def ready(resources: dict[str, str]) -> None:
        if write is not None:
            write(resources)
        if args.smu_serial:
            from simulators.server import PtyServer

            for name in station.cabling.smu_names:
                pty = PtyServer(station.servers[name].instrument).start()
                ptys.append(pty)
                print(f"{name}_serial ASRL{pty.path}::INSTR")

    try:
        return sim_serve.serve(station, on_ready=ready)
    finally:
        for pty in ptys:
            with contextlib.suppress(OSError):
                pty.stop()
