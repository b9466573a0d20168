"""`labctl station check`: open every instrument, check its identity and error queue."""

from __future__ import annotations

import argparse

from instruments.transport import InstrumentError
from labctl.commands.lifecycle import add_station_arguments, station_config
from labctl.station.runtime import open_station


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_station_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config = station_config(args)
    print(f"station: {config.name} ({config.source})")
    rows = []
    failed = False
    with open_station(config) as station:
        for name, inst in station.instruments.items():
            cfg = station.config.instruments[name]
            try:
                inst.check_errors_raise()
                status = "ok, error queue empty"
            except InstrumentError as exc:  # report every instrument, then fail
                status, failed = f"error: {exc}", True
            rows.append((name, cfg.driver, cfg.resource, station.identities[name], status))
    widths = [max(len(str(r[i])) for r in rows + [HEADER]) for i in range(len(HEADER))]
    for row in [HEADER, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 1 if failed else 0


HEADER = ("instrument", "driver", "resource", "identity", "status")
