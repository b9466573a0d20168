"""`labctl wafer ...`: characterise a wafer die by die.

``labctl wafer scan [--station FILE] [--map FILE] [--dies LIST] [--resume SESSION]``
steps the prober over every die of the wafer map and measures every pair on each (see
:mod:`labctl.wafer.scan`); every die is recorded as it is measured (streams of
:mod:`labctl.wafer.records`). The map is the ``--map`` file's, else the station file's
``[wafer]`` table, else the prober's own; one that does not match the prober's map is
refused before any motion, as is a ``--dies`` die the prober does not have and a station
without a prober. A prober error or a lost contact stops the scan: outputs off and
confirmed, chuck separated, the die named, exit status 2, session ``fail``. ``--resume``
continues such a session (or a killed one) at the next die not finished; a die cut short
is measured again from its start and the reader keeps only the finished pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from labctl.commands.lifecycle import (
    add_station_arguments,
    instrument_session,
    resume_station,
    station_config,
)
from labctl.commands.units import quantity
from labctl.progress import Progress, add_progress_argument, wanted
from labctl.records.session import RecordError, Session, find_session
from labctl.station.file import StationConfig, load_wafer_map
from labctl.wafer import records
from labctl.wafer.scan import (
    ProberFault,
    ScanSettings,
    WaferScanError,
    check_dies,
    check_map,
    declare_streams,
    park,
    parse_dies,
    record_map,
    scan_die,
)
from simulators.wafer import wafer_kind

COMMAND = "wafer-scan"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``wafer`` group: one subparser per entry of :data:`SUBCOMMANDS`."""
    sub = parser.add_subparsers(dest="wafer_command", required=True, metavar="WAFER_COMMAND",
                                parser_class=type(parser))
    for add in SUBCOMMANDS:
        add(sub)


def run(args: argparse.Namespace) -> int:
    return args._wafer_run(args)


def _subparser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    # -v anywhere, as every labctl command (SUPPRESS keeps one given before the words)
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log instrument traffic")
    return parser


def add_scan(sub) -> None:
    """``wafer scan``."""
    parser = _subparser(sub, "scan", "measure every die of the wafer map")
    add_scan_arguments(parser)
    parser.set_defaults(_wafer_run=run_scan)


def add_report(sub) -> None:
    """``wafer report SESSION``: regenerate a scan's report (labctl.wafer.report)."""
    from labctl.commands.session_args import session_argument

    parser = _subparser(sub, "report", "fit and classify a wafer scan's devices again and "
                        "rewrite its report (SESSION/wafer: tables, PNGs, index.html)")
    session_argument(parser)
    parser.add_argument("--max-di-off", type=float, dest="max_di_off", default=None,
                        help="pairs with |dI_off| / I_w above this are mismatched "
                             "(default 0.2)")
    parser.add_argument("--max-rp-ratio", type=float, dest="max_rp_ratio", default=None,
                        help="pairs with |R_P,B / R_P,A - 1| above this are mismatched "
                             "(default 0.1)")
    parser.set_defaults(_wafer_run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from labctl.wafer.classify import Thresholds
    from labctl.wafer.report import write_report

    t = Thresholds()
    for name, option, value in (("max_di_off_over_iw", "--max-di-off", args.max_di_off),
                                ("max_rp_ratio_dev", "--max-rp-ratio", args.max_rp_ratio)):
        if value is not None:
            if not value > 0:
                raise ValueError(f"{option}: must be positive, got {value}")
            t = replace(t, **{name: value})
    index = write_report(find_session(args.session, args.sessions_dir), t)
    print(f"wafer report: {index}")
    return 0


#: What ``labctl wafer`` offers: each adds its subparser (setting ``_wafer_run``).
SUBCOMMANDS = [add_scan, add_report]


def add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--map", type=Path, metavar="FILE",
                        help="wafer map file (TOML: dies = [[col, row], ...]); default: the "
                             "station file's [wafer] table, else the prober's map")
    parser.add_argument("--dies", metavar="LIST",
                        help="only these dies, col:row comma separated (e.g. 2:1,3:1)")
    parser.add_argument("--resume", metavar="SESSION",
                        help="continue a scan session (directory or id) at its next "
                             "unfinished die")
    parser.add_argument("--new-limits", action="store_true", dest="new_limits",
                        help="with --resume: continue although the station file's wiring or "
                             "limits changed")
    parser.add_argument("--wafer", metavar="NAME",
                        help='simulated station: its wafer, "grid" (the die_grid, no '
                             'defects) or "round-N" (round map, gradients, planted '
                             "defects); overrides the station file's [simulation] wafer")
    parser.add_argument("--nplc", type=float, default=1.0, help="SMU integration (NPLC)")
    parser.add_argument("--iv-points", type=int, default=ScanSettings.iv_points,
                        dest="iv_points", help="currents in each device's I-V sweep")
    parser.add_argument("--voltage-points", type=int, default=ScanSettings.voltage_points,
                        dest="voltage_points",
                        help="levels of each device's voltage-bias I-V (0: none)")
    parser.add_argument("--fd-steps", default=",".join(f"{s:g}" for s in ScanSettings.fd_steps_a),
                        dest="fd_steps", help="dI values of the derivative scan (A, commas)")
    parser.add_argument("--fd-points", type=int, default=ScanSettings.fd_points,
                        dest="fd_points", help="test currents per dI")
    parser.add_argument("--no-report", action="store_true", dest="no_report",
                        help="do not write the report at the end (labctl wafer report "
                             "SESSION writes it later)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    add_progress_argument(parser)
    add_station_arguments(parser)


def _settings(args: argparse.Namespace) -> ScanSettings:
    parse = quantity("A")
    try:
        steps = tuple(parse(s) for s in args.fd_steps.split(","))
    except (ValueError, argparse.ArgumentTypeError):
        raise WaferScanError(f"--fd-steps must be currents separated by commas, got "
                             f"{args.fd_steps!r}") from None
    settings = ScanSettings(nplc=args.nplc, iv_points=args.iv_points, fd_steps_a=steps,
                            fd_points=args.fd_points, voltage_points=args.voltage_points)
    settings.check()
    return settings


def _station(args: argparse.Namespace) -> StationConfig:
    """The station, with ``--wafer`` applied (a simulated station only)."""
    cfg = station_config(args)
    if args.wafer is None:
        return cfg
    if cfg.simulation is None:
        raise WaferScanError(f"{cfg.source}: --wafer given, but the station has no "
                             "[simulation]: a real wafer is whatever is on the chuck")
    try:
        kind, size = wafer_kind(args.wafer)
    except ValueError as exc:
        raise WaferScanError(f"--wafer: {exc}") from None
    grid = (size, size) if kind != "grid" else cfg.simulation.die_grid
    return replace(cfg, simulation=replace(cfg.simulation, wafer=args.wafer, die_grid=grid))


def _require_prober(cfg: StationConfig) -> None:
    if cfg.wiring.prober is None:
        raise WaferScanError(f"{cfg.source}: the station has no prober ([wiring] prober): "
                             "a wafer scan steps a prober over the dies")


def _wafer_record(cfg: StationConfig, settings: ScanSettings, dies) -> dict:
    sim = cfg.simulation
    return {"seed": sim.seed if sim else None, "preset": sim.variability if sim else None,
            "simulated_wafer": sim.wafer if sim else None,
            "limits": {str(k): {"max_current_a": p.limits.max_current_a,
                                "compliance_v": p.limits.compliance_v,
                                "ramp_step_a": p.limits.ramp_step_a}
                       for k, p in sorted(cfg.wiring.pairs.items())},
            "settings": settings.record(),
            "dies": [list(d) for d in dies] if dies is not None else None}


def run_scan(args: argparse.Namespace) -> int:
    session = None
    if args.resume is not None:
        given = [opt for opt, value in (("--map", args.map), ("--dies", args.dies),
                                        ("--wafer", args.wafer)) if value is not None]
        if given:
            raise WaferScanError(f"--resume continues the recorded map and dies; "
                                 f"{', '.join(given)} cannot change them")
        path = find_session(args.resume, args.sessions_dir)
        session = Session.open(path)
        if session.start.get("plan_name") != COMMAND:
            raise WaferScanError(f"{path}: not a wafer scan session "
                                 f"({session.start.get('plan_name')!r})")
        if not session.resumable:
            raise WaferScanError(f"{path}: scan already finished "
                                 f"({session.stop['exit_status']}); nothing to resume")
        session.verify_arrays()
        recorded = session.start["config"]["wafer"]
        settings = ScanSettings(**{k: tuple(v) if isinstance(v, list) else v
                                   for k, v in recorded["settings"].items()})
        dies = [tuple(d) for d in recorded["dies"]] if recorded.get("dies") else None
        cfg = resume_station(args, session)
        config = session.start["config"]
        map_source = "recorded map"
        prior = records.read_scan(path)
        # The recorded map stands: checked against the prober's below, like a map file.
        wanted_map = [tuple(d) for d in prior.station.get("map", [])] or None
        done = {d.die for d in prior.dies if d.status == "done"}
    else:
        settings = _settings(args)
        dies = parse_dies(args.dies) if args.dies else None
        cfg = _station(args)
        if args.map is not None:
            wanted_map, map_source = list(load_wafer_map(args.map)), str(args.map)
        elif cfg.wafer_map is not None:
            wanted_map, map_source = list(cfg.wafer_map), f"{cfg.source} [wafer]"
        else:
            wanted_map, map_source = None, "prober"
        config = {"command": COMMAND, "wafer": _wafer_record(cfg, settings, dies)}
        done = set()
    _require_prober(cfg)
    seeds = {"simulation": cfg.simulation.seed} if cfg.simulation else {}
    with instrument_session(args, COMMAND, config, seeds=seeds, station_cfg=cfg,
                            resume=session, dimension="die_x") as run_:
        station, writer = run_.station, run_.writer
        # Everything below up to the first move is checks: nothing moves before them.
        try:
            prober_map = station.prober.wafer_map()
        except Exception as exc:
            raise ProberFault(f"reading the prober's wafer map: {exc}") from exc
        scan_map = check_map(prober_map, wanted_map, map_source)
        if dies is not None:
            check_dies(dies, prober_map)
            todo_all = [d for d in scan_map if d in set(dies)]
        else:
            todo_all = scan_map
        streams = declare_streams(writer, settings, len(settings.fd_steps_a))
        if session is None:
            record_map(writer, scan_map, map_source)
        todo = [d for d in todo_all if d not in done]
        finished = len(todo_all) - len(todo)
        progress = Progress(len(todo_all), "wafer scan", unit="die", initial=finished,
                            enabled=wanted(args))
        current = None
        try:
            with progress:
                for die in todo:
                    current = die
                    progress.set_description(f"wafer scan, die {die[0]}:{die[1]}")
                    scan_die(station, writer, streams, die, settings)
                    finished += 1
                    progress.update(1)
            current = None
        finally:
            problems = park(station)  # outputs off (confirmed), then separated
            if problems and current is not None:
                print(f"labctl: while stopping at die {current[0]}:{current[1]}: "
                      + "; ".join(problems), file=sys.stderr)
        run_.summary.update(dies=len(todo_all), measured=len(todo), finished=finished,
                            map_source=map_source)
        run_.headline = f"{finished}/{len(todo_all)} dies scanned ({map_source} map)"
    report = None if args.no_report else _write_report(writer.path)
    summary = {"session": writer.path.name, "dies": len(todo_all), "finished": finished,
               "measured_now": len(todo), "report": str(report) if report else None}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wafer scan: {finished}/{len(todo_all)} dies ({len(todo)} measured now); "
              f"session {writer.path}" + (f"; report {report}" if report else ""))
    return 0


def _write_report(session_dir: Path) -> Path | None:
    """The scan's report (labctl.wafer.report), if that module exists yet."""
    try:
        from labctl.wafer.report import write_report
    except ImportError:
        return None
    try:
        return write_report(session_dir)
    except (ValueError, RecordError, OSError) as exc:
        print(f"labctl: wafer report not written: {exc}", file=sys.stderr)
        return None
