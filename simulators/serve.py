"""Run a simulated station in the foreground (``python -m simulators.serve``).

Prints one ``<name> <resource>`` line per instrument, then ``ready``, and serves until
Ctrl-C, SIGTERM or SIGHUP, then stops cleanly with exit status 0. ``labctl sim serve``
(labctl.commands.sim_serve) serves a station file's bench through :func:`serve`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from simulators.faults import FaultSpec
from simulators.mtj import PRESETS
from simulators.world import SimSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``labctl sim serve`` to ``parser``."""
    defaults = SimSettings()
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help=f"seed of every random draw (default {defaults.seed})")
    parser.add_argument("--variability", choices=sorted(PRESETS), default=defaults.variability,
                        help=f"device variability preset (default {defaults.variability})")
    parser.add_argument("--pairs", type=_pair_count, default=defaults.n_pairs,
                        help=f"MTJ pairs per chip (default {defaults.n_pairs})")
    parser.add_argument("--time-scale", type=_non_negative_float, default=defaults.time_scale,
                        help="instrument time per wall time: 0 as fast as possible, 1 real "
                             f"time (default {defaults.time_scale:g})")
    parser.add_argument("--port-base", type=_port, default=None,
                        help="serve the TCP instruments on consecutive ports from this one "
                             "(smu_a, smu_b, adc_socket, switch, prober); default: ephemeral")
    parser.add_argument("--fault", action="append", default=[], type=_fault,
                        metavar="NAME:KNOB=VALUE,...",
                        help="inject faults into instrument NAME, e.g. smu_a:drop_after=40 "
                             "(simulators.faults.FaultSpec; repeatable)")


def run(args: argparse.Namespace) -> int:
    """Serve the built-in bench until a stop signal; returns the exit status."""
    from simulators.station import SimulatedStation

    settings = SimSettings(seed=args.seed, variability=args.variability, n_pairs=args.pairs,
                           time_scale=args.time_scale)
    try:
        station = SimulatedStation(settings, faults=dict(args.fault), port_base=args.port_base)
    except ValueError as exc:
        print(f"labctl sim serve: {exc}", file=sys.stderr)
        return 2
    return serve(station)


def serve(station, on_ready=None) -> int:
    """Start ``station`` (a SimulatedStation), print its resources, call
    ``on_ready(resources)`` if given, print ``ready``, serve until SIGINT, SIGTERM or SIGHUP,
    stop; returns the exit status."""
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        try:
            station.start()
        except OSError as exc:
            print(f"labctl sim serve: cannot start the station: {exc}", file=sys.stderr)
            return 1
        try:
            resources = station.resources()
            for name, resource in resources.items():
                print(f"{name} {resource}")
            if on_ready is not None:
                on_ready(resources)
            print("ready", flush=True)
            # A timed wait keeps the main thread responsive to signals on every platform.
            while not stop.wait(0.2):
                pass
        finally:
            station.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _pair_count(text: str) -> int:
    value = int(text)
    # Channel names carry the pair number in two digits (1A01..1A99).
    if not 1 <= value <= 99:
        raise argparse.ArgumentTypeError(f"must be 1..99, got {value}")
    return value


def _fault(text: str) -> tuple[str, FaultSpec]:
    name, sep, spec = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:KNOB=VALUE,..., got {text!r}")
    try:
        return name, FaultSpec.from_option(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535 - 4:
        raise argparse.ArgumentTypeError(f"port base must be 1..65531, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="labctl sim serve", description="Run the simulated probe station in the foreground."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
