"""`labctl station check`: open every instrument, check its identity and error queue, then
check each pair's differential path (the ADC's difference against the SMUs' V_B - V_A).

Every instrument is reported, also past one that fails; the pair table needs them all.
"""

from __future__ import annotations

import argparse

from instruments.transport import InstrumentError
from labctl.commands.lifecycle import add_station_arguments, station_config
from labctl.station.runtime import open_station
from protocols.engine import Engine
from protocols.preflight import check_pairs

HEADER = ("instrument", "driver", "resource", "identity", "status")
PAIR_HEADER = ("pair", "device A", "device B", "ADC input", "ADC/(V_B-V_A)", "verdict")
CHECK_DI_A = 1e-6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-pairs", action="store_true",
                        help="check the instruments only, not each pair's differential path")
    add_station_arguments(parser)


def _table(header: tuple, rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in [*rows, header]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def run(args: argparse.Namespace) -> int:
    config = station_config(args)
    print(f"station: {config.name} ({config.source})")
    rows, failed = [], False
    with open_station(config, keep_going=True) as station:
        for name, cfg in station.config.instruments.items():
            inst = station.instruments.get(name)
            if inst is None:
                status, failed = f"error: {station.failures[name]}", True
            else:
                try:
                    inst.check_errors_raise()
                    status = "ok, error queue empty"
                except InstrumentError as exc:  # report every instrument, then fail
                    status, failed = f"error: {exc}", True
            rows.append((name, cfg.driver, cfg.resource, station.identities.get(name, ""),
                         status))
        _table(HEADER, rows)
        if args.no_pairs:
            return 1 if failed else 0
        if failed:
            print("pairs: not checked (an instrument failed)")
            return 1
        engine = Engine(station)
        pairs = [config.wiring.pair(k) for k in sorted(config.wiring.pairs)]
        checks = check_pairs(engine, pairs, CHECK_DI_A)
        _table(PAIR_HEADER, [
            (f"pair {p.pair}", f"{p.a.smu} {p.a.switch_channel}",
             f"{p.b.smu} {p.b.switch_channel}", f"{p.adc_input} ({p.adc_polarity:+d})",
             f"{c.slope:+.3f}", c.verdict if c.ok else c.message)
            for p, c in zip(pairs, checks, strict=True)
        ])
        failed = not all(c.ok for c in checks)
    return 1 if failed else 0
