"""Which pairs training uses: the healthy, best-matched pairs of the die's last wafer scan.

``--pairs auto`` looks in the sessions directory for the newest ``wafer scan`` session
(by its start time) in which the die under the probes was measured to the end, takes
its pair verdicts (the report's ``wafer/pairs.parquet`` if the scan wrote one, else the
scan analysed afresh, :func:`labctl.wafer.report.analyse`) and chooses the pairs whose
status is ``ok``, best matched first (the mismatch score of
:meth:`~labctl.wafer.report.WaferAnalysis.score`, then the pair number). Pairs named
explicitly (``--pairs 1,3,5``) are checked against the same verdicts when a scan of the
die exists: one classified open, short or broken is refused, naming it and why.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labctl.records.session import RecordError, first_start
from labctl.wafer.classify import UNUSABLE, Thresholds
from labctl.wafer.records import STREAM_DIE, read_scan
from labctl.wafer.report import REPORT_DIR, analyse

SCAN_COMMAND = "wafer-scan"
Die = tuple[int, int]


@dataclass
class PairChoice:
    """What was chosen and from which characterization (recorded with the training)."""

    pairs: list[int]
    die: list[int] | None = None
    session: str | None = None  # the wafer scan's directory, None without one
    how: str = "auto"  # "auto" | "named" | "default"
    excluded: dict[str, str] = field(default_factory=dict)  # pair -> status: reason
    scores: dict[str, float] = field(default_factory=dict)  # chosen pair -> mismatch score

    def as_dict(self) -> dict:
        return asdict(self)


def parse_pairs(text: str) -> list[int] | str:
    """``auto`` or a comma list of 1-based pair numbers (ValueError naming the bad one)."""
    if text.strip() == "auto":
        return "auto"
    out = []
    for word in text.split(","):
        word = word.strip()
        if not word.isdigit() or int(word) < 1:
            raise ValueError(f"--pairs: {word!r} is not a pair number (1, 2, ...); give a comma "
                             "list such as 1,3,5 or auto")
        out.append(int(word))
    if len(set(out)) != len(out):
        raise ValueError(f"--pairs {text}: a pair named twice")
    return out


def same_wafer(doc: dict, simulation) -> bool:
    """Whether a scan's start document describes the wafer a station with ``simulation``
    (its SimSettings, None for real instruments) holds: a simulated wafer is another one
    under another seed or shape; real wafers cannot be told apart this way."""
    if simulation is None:
        return True
    wafer = doc.get("config", {}).get("wafer", {})
    return (wafer.get("seed") == simulation.seed
            and wafer.get("simulated_wafer", "grid") == getattr(simulation, "wafer", "grid")
            and wafer.get("preset") == simulation.variability)


def scans_of_die(die: Die, sessions_dir: str | os.PathLike, simulation=None) -> list[Path]:
    """Wafer-scan sessions in ``sessions_dir`` that measured ``die`` to its end, newest
    first (by start time); on a simulated station (``simulation``, its SimSettings) only
    scans of the same simulated wafer."""
    root = Path(sessions_dir)
    found = []
    if not root.is_dir():
        return []
    for path in root.iterdir():
        doc = first_start(path)
        if doc is None or doc.get("plan_name") != SCAN_COMMAND:
            continue
        if not same_wafer(doc, simulation):
            continue
        try:
            finished = done_dies(path)
        except (RecordError, OSError, ValueError, KeyError):
            continue  # a damaged scan cannot vouch for any pair
        if tuple(die) in finished:
            found.append((float(doc.get("time", 0.0)), path))
    return [p for _, p in sorted(found, reverse=True)]


def done_dies(path: Path) -> list[Die]:
    """Dies a scan session measured to their end, in the order they ended (from its ``die``
    events alone: no array is read, as :func:`~labctl.wafer.records.read_scan` would)."""
    from labctl.records.session import Session

    session = Session(path)
    if STREAM_DIE not in session.descriptors:
        return []
    out: list[Die] = []
    for e in session.events(STREAM_DIE):
        die = (int(e["die_x"]), int(e["die_y"]))
        if e["status"] == "done" and die not in out:
            out.append(die)
    return out


def pair_verdicts(session_dir: Path, die: Die,
                  thresholds: Thresholds | None = None) -> dict[int, dict]:
    """pair -> its row of the pair table (status, reason, score, ...) on ``die``."""
    table = session_dir / REPORT_DIR / "pairs.parquet"
    if table.is_file():
        import pyarrow.parquet as pq

        rows = pq.read_table(table).to_pylist()
    else:
        rows = analyse(read_scan(session_dir), thresholds).pair_rows()
    return {int(r["pair"]): r for r in rows if (r["die_x"], r["die_y"]) == tuple(die)}


def _ranked(verdicts: dict[int, dict]) -> list[int]:
    ok = [p for p, r in verdicts.items() if r["status"] == "ok"]
    return sorted(ok, key=lambda p: (verdicts[p]["score"]
                                     if math.isfinite(verdicts[p]["score"]) else math.inf, p))


def choose(n: int, die: Die, sessions_dir: str | os.PathLike,
           scan: str | os.PathLike | None = None, simulation=None) -> PairChoice:
    """The ``n`` best pairs of ``die`` from its newest scan (of the station's simulated
    wafer, ``simulation``, if it is one), or from ``scan`` if given."""
    if scan is None:
        scans = scans_of_die(die, sessions_dir, simulation)
        if not scans:
            raise ValueError(f"--pairs auto: no wafer scan in {sessions_dir} measured die "
                             f"{die[0]}:{die[1]} to its end"
                             + (" of this simulated wafer (seed, wafer and variability as "
                                "the station's)" if simulation is not None else "")
                             + "; run `labctl wafer scan` first or name the pairs "
                             "(--pairs 1,2,...)")
        scan = scans[0]
    scan = Path(scan)
    verdicts = pair_verdicts(scan, die)
    if not verdicts:
        raise ValueError(f"{scan}: die {die[0]}:{die[1]} has no pairs in its scan")
    ranked = _ranked(verdicts)
    excluded = {str(p): f"{r['status']}: {r['reason']}" for p, r in sorted(verdicts.items())
                if r["status"] != "ok"}
    if len(ranked) < n:
        raise ValueError(
            f"--pairs auto: {n} pairs needed, but only {len(ranked)} of die {die[0]}:{die[1]}'s "
            f"{len(verdicts)} pairs are ok in {scan}; excluded: "
            + "; ".join(f"pair {p} {why}" for p, why in excluded.items()))
    chosen = ranked[:n]
    return PairChoice(chosen, list(die), str(scan), "auto", excluded,
                      {str(p): float(verdicts[p]["score"]) for p in chosen})


def check_named(pairs: list[int], die: Die | None, sessions_dir: str | os.PathLike,
                simulation=None) -> PairChoice:
    """Named pairs, refused (ValueError naming each) if the newest scan of ``die`` classified
    any open, short or broken; accepted unchecked when no scan of the die exists."""
    scans = scans_of_die(die, sessions_dir, simulation) if die is not None else []
    if not scans:
        return PairChoice(list(pairs), list(die) if die else None, None, "named")
    verdicts = pair_verdicts(scans[0], die)
    bad = [f"pair {p} is {verdicts[p]['status']} ({verdicts[p]['reason']})"
           for p in pairs if p in verdicts and verdicts[p]["status"] in UNUSABLE]
    if bad:
        raise ValueError(f"--pairs: refused on die {die[0]}:{die[1]} as the wafer scan "
                         f"{scans[0]} classified them: " + "; ".join(bad))
    warn = {str(p): f"{verdicts[p]['status']}: {verdicts[p]['reason']}" for p in pairs
            if p in verdicts and verdicts[p]["status"] != "ok"}
    return PairChoice(list(pairs), list(die), str(scans[0]), "named", warn,
                      {str(p): float(verdicts[p]["score"]) for p in pairs if p in verdicts})


# -- training options (labctl train iris) ----------------------------------------------------

def _option(parse):
    """An argparse type from a parser raising ValueError: the message is kept."""
    import argparse

    def wrapped(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    wrapped.__name__ = parse.__name__
    return wrapped


def add_pair_arguments(parser) -> None:
    """--pairs, --die, --devices-from and --init-from of the training commands."""
    parser.add_argument(
        "--pairs", type=_option(parse_pairs), default=None,
        help="the hidden neurons' pairs, layer by layer: a comma list (1,3,5,...; refused "
             "if the newest wafer scan of the die classified one open, short or broken), or "
             "auto: the healthy, best-matched pairs of the newest wafer scan of the die under "
             "the probes (default: 1..layers x hidden)")
    parser.add_argument(
        "--die", type=_option(parse_die), default=None,
        help="the die (col:row) the pairs are on: on the station it must be the die under the "
             "probes (the default); with --devices-from, default the scan's first die")
    parser.add_argument(
        "--devices-from", dest="devices_from", metavar="SESSION", default=None,
        help="with --backend model: run on the fitted devices of this wafer scan (its "
             "directory or id), the pairs --pairs auto would choose unless named")
    parser.add_argument(
        "--init-from", dest="init_from", metavar="SESSION", default=None,
        help="start each fold from the final weights of that fold in an earlier training "
             "session (e.g. one trained offline with --devices-from)")


def parse_die(text: str) -> list[int]:
    """``col:row`` -> [col, row], as ``wafer scan --dies`` takes them (ValueError naming
    the text)."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise ValueError(f"--die {text!r}: expected col:row such as 2:1")
    return [int(p) for p in parts]


def die_under_probes(config) -> Die:
    """The die the prober of station ``config`` is over (the station opened and closed
    again: nothing is sourced); ValueError if the station has no prober."""
    from labctl.station.runtime import open_station

    if not config.wiring.prober:
        raise ValueError(f"{config.source}: the station has no prober, so the die under the "
                         "probes is unknown; name it with --die")
    with open_station(config) as station:
        return tuple(station.prober.die())


def resolve_training(args, config, settings):
    """Settings with the pairs, devices and initial weights the options ask for, and what
    to record of the choice (None when the default pairs 1..N are used unchecked)."""
    from dataclasses import replace

    from labctl.records.session import find_session

    n = settings.layers * settings.hidden
    spec, die = getattr(args, "pairs", None), getattr(args, "die", None)
    devices_from = getattr(args, "devices_from", None)
    choice = None
    if devices_from is not None:
        if settings.backend != "model":
            raise ValueError("--devices-from runs the model backend on a scan's devices: "
                             "add --backend model")
        scan = find_session(devices_from, args.sessions_dir)
        if die is None:
            done = done_dies(scan)
            if not done:
                raise ValueError(f"--devices-from {scan}: no die of the scan was finished")
            die = list(done[0])
        die = tuple(die)
        if spec is None or spec == "auto":
            choice = choose(n, die, args.sessions_dir, scan=scan)
        else:
            choice = _check_against(spec, die, scan)
        from labctl.wafer.measured_model import scan_preset

        settings = replace(settings, devices_from=str(scan),
                           variability=args.variability or scan_preset(scan))
        if args.i_center is None and args.i_scale is None:
            # The station's operating point, so that the model trains as the station would.
            centre, scale = config.wiring.operating_point()
            settings = replace(settings, i_center=centre, i_scale=scale)
    elif spec is not None:
        if settings.backend != "station":
            raise ValueError("--pairs chooses station pairs: it needs --backend station, or "
                             "--devices-from SCAN with --backend model")
        # A named pair can only be checked on a known die; auto needs one.
        probes = (die_under_probes(config) if config.wiring.prober or (spec == "auto"
                                                                        and die is None)
                  else None)
        if die is not None and probes is not None and tuple(die) != probes:
            raise ValueError(f"--die {die[0]}:{die[1]}: the prober is over die "
                             f"{probes[0]}:{probes[1]}")
        die = tuple(die) if die is not None else probes
        choice = (choose(n, die, args.sessions_dir, simulation=config.simulation)
                  if spec == "auto"
                  else check_named(spec, die, args.sessions_dir, config.simulation))
    if choice is not None:
        unknown = [p for p in choice.pairs if p not in config.pairs]
        if unknown and settings.backend == "station":
            raise ValueError(f"--pairs: pair(s) {', '.join(map(str, unknown))} not wired on "
                             f"{config.source} (pairs {min(config.pairs)}..{max(config.pairs)})")
        settings = replace(settings, pairs=list(choice.pairs),
                           die=list(die) if die is not None else None)
    init_from = getattr(args, "init_from", None)
    if init_from is not None:
        from labctl.wafer.measured_model import check_init_session

        path = find_session(init_from, args.sessions_dir)
        check_init_session(path, settings)
        settings = replace(settings, init_from=str(path))
    return settings, (choice.as_dict() if choice is not None else None)


def _check_against(pairs: list[int], die: Die, scan: Path) -> PairChoice:
    verdicts = pair_verdicts(scan, die)
    bad = [f"pair {p} is {verdicts[p]['status']} ({verdicts[p]['reason']})"
           for p in pairs if p in verdicts and verdicts[p]["status"] in UNUSABLE]
    missing = [str(p) for p in pairs if p not in verdicts]
    if bad or missing:
        raise ValueError(f"--pairs: refused on die {die[0]}:{die[1]} of {scan}: "
                         + "; ".join(bad + ([f"pair(s) {', '.join(missing)} not in the scan"]
                                            if missing else [])))
    return PairChoice(list(pairs), list(die), str(scan), "named", {},
                      {str(p): float(verdicts[p]["score"]) for p in pairs})
