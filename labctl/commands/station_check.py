"""`labctl station check`: open every instrument, check its identity and error queue, then
check each pair's differential path (the ADC's difference against the SMUs' V_B - V_A).

Every instrument is reported, also past one that fails; the pair table needs them all. The
check is a session like any command's: an ``instrument_check`` stream (its primary one, a
row per instrument) and the ``differential_check`` stream; ``fail`` if anything failed.
"""

from __future__ import annotations

import argparse
import sys

from instruments.transport import InstrumentError
from labctl.commands.lifecycle import (
    ShutdownNotConfirmed,
    add_station_arguments,
    instrument_session,
    record_differential_checks,
    report_problem,
    station_config,
)
from labctl.records.session import SessionWriter, data_key
from protocols.engine import Engine
from protocols.preflight import check_pairs

HEADER = ("instrument", "driver", "resource", "identity", "status")
PAIR_HEADER = ("pair", "device A", "device B", "ADC input", "ADC/(V_B-V_A)", "verdict")
CHECK_DI_A = 1e-6
INSTRUMENT_KEYS = {"instrument": "string", "driver": "string", "resource": "string",
                   "identity": "string", "status": "string", "ok": "boolean"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-pairs", action="store_true",
                        help="check the instruments only, not each pair's differential path")
    add_station_arguments(parser)


def table(header: tuple, rows: list[tuple], indent: str = "") -> None:
    """Print ``rows`` under ``header`` in aligned columns."""
    widths = [max(len(str(r[i])) for r in [*rows, header]) for i in range(len(header))]
    for row in [header, *rows]:
        line = "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        print(indent + line.rstrip())


def check_instruments(station, writer: SessionWriter, source: str, *,
                      primary: bool = False) -> list[str]:
    """Identity (checked on opening) and error queue of every instrument, as a table and
    the ``instrument_check`` stream (data keys from ``source``); the names of those that
    failed. Every instrument is checked, also past one that fails."""
    stream = writer.stream("instrument_check", {
        k: data_key(source, dtype) for k, dtype in INSTRUMENT_KEYS.items()
    }, primary=primary)
    rows, failed = [], []
    for name, cfg in station.config.instruments.items():
        inst = station.instruments.get(name)
        ok = False
        if inst is None:
            status = f"error: {station.failures[name]}"
        else:
            try:
                inst.check_errors_raise()
                status, ok = "ok, error queue empty", True
            except InstrumentError as exc:
                status = f"error: {exc}"
        if not ok:
            failed.append(name)
        row = (name, cfg.driver, cfg.resource or "", station.identities.get(name, ""), status)
        rows.append(row)
        writer.event(stream, dict(zip(INSTRUMENT_KEYS, (*row, ok), strict=True)))
    table(HEADER, rows)
    return failed


def run(args: argparse.Namespace) -> int:
    config = station_config(args)
    print(f"station: {config.name} ({config.source})")
    try:
        return _check(args, config)
    except ShutdownNotConfirmed as exc:
        # An instrument that failed to open was never touched, so it cannot be confirmed
        # off: say so, and fail as a check does (the session records it all).
        print(f"labctl: {exc}", file=sys.stderr)
        return 1


def _check(args: argparse.Namespace, config) -> int:
    with instrument_session(args, "station check", {"settings": {"no_pairs": args.no_pairs}},
                            seeds={}, station_cfg=config, dimension="instrument",
                            report_failures=True) as run_:
        station, writer = run_.station, run_.writer
        failed = check_instruments(station, writer, "labctl.station_check", primary=True)
        n_instruments = len(station.config.instruments)
        run_.summary.update(instruments=n_instruments, failed_instruments=", ".join(failed))
        if failed:
            run_.problem = f"instrument(s) failed: {', '.join(failed)}"
            if not args.no_pairs:
                print("pairs: not checked (an instrument failed)")
        elif not args.no_pairs:
            pairs = [config.wiring.pair(k) for k in sorted(config.wiring.pairs)]
            checks = check_pairs(Engine(station), pairs, CHECK_DI_A)
            record_differential_checks(writer, checks)
            table(PAIR_HEADER, [
                (f"pair {p.pair}", f"{p.a.smu} {p.a.switch_channel}",
                 f"{p.b.smu} {p.b.switch_channel}", f"{p.adc_input} ({p.adc_polarity:+d})",
                 f"{c.slope:+.3f}", c.verdict if c.ok else c.message)
                for p, c in zip(pairs, checks, strict=True)
            ])
            bad = [str(p.pair) for p, c in zip(pairs, checks, strict=True) if not c.ok]
            run_.summary.update(pairs=len(pairs), failed_pairs=", ".join(bad))
            if bad:
                run_.problem = f"differential path of pair(s) {', '.join(bad)} failed"
        run_.headline = run_.problem or (
            f"{n_instruments} instruments ok" + ("" if args.no_pairs else
                                             f", {len(config.wiring.pairs)} pairs ok"))
    return report_problem(run_)
