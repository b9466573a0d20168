"""`labctl iv --pair K`: I-V sweep of both devices of a pair, within the safety limits."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from labctl import plots
from labctl.commands.lifecycle import (
    add_station_arguments,
    instrument_session,
    report_problem,
    station_config,
)
from labctl.commands.units import quantity
from labctl.progress import Progress, add_progress_argument, counted, planned_points, wanted
from labctl.records.session import data_key
from protocols.engine import Engine
from protocols.finite_difference import iv_sweep


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pair", type=int, required=True, help="pair number (1-based)")
    parser.add_argument("--points", type=int, default=101, help="currents in the sweep")
    parser.add_argument(
        "--i-max",
        type=quantity("A"),
        dest="i_max",
        help="sweep over [-I, I] in A (default: the pair's max_current_a)",
    )
    parser.add_argument("--nplc", type=float, default=1.0, help="SMU integration (NPLC)")
    parser.add_argument("--mode", choices=["auto", "list", "host"], default="auto",
                        help="list sweeps on the trigger cabling, point by point from the host, "
                             "or whichever the station can")
    parser.add_argument(
        "--out", type=Path, help="directory for iv.csv and iv.png (default: the session directory)"
    )
    add_progress_argument(parser)
    add_station_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.points < 2:
        raise ValueError(f"--points must be at least 2, got {args.points}")
    station_cfg = station_config(args)
    limits = station_cfg.pair(args.pair).limits  # a bad pair: refused before any I/O
    if args.i_max is not None and not 0 < args.i_max <= limits.max_current_a:
        raise ValueError(
            f"--i-max {args.i_max} A: must be positive and within pair {args.pair}'s "
            f"max_current_a = {limits.max_current_a} A"
        )
    config = {
        "command": "iv",
        "pair": args.pair,
        "points": args.points,
        "nplc": args.nplc,
        "mode": args.mode,
    }
    with instrument_session(args, "iv", config, seeds={}, station_cfg=station_cfg,
                            dimension="current_a") as run:
        station, writer = run.station, run.writer
        i_max = args.i_max if args.i_max is not None else limits.max_current_a
        currents = np.linspace(-i_max, i_max, args.points)
        engine = Engine(station, mode=args.mode, nplc=args.nplc)
        env = engine.envelope
        with Progress(planned_points(env, [iv_sweep(args.pair, currents)]),
                      f"iv pair {args.pair}", unit="point", enabled=wanted(args)) as bar:
            result = engine.run(counted(iv_sweep(args.pair, currents), env, bar))
        pair = station.wiring.pair(args.pair)
        stream = writer.stream("iv", primary=True, data_keys={
            "current_a": data_key(str(pair.a.smu), units="A"),
            "v_a": data_key(str(pair.a.smu), units="V"),
            "v_b": data_key(str(pair.b.smu), units="V"),
            "v_diff": data_key(station.wiring.adc, units="V"),
            "compliance": data_key("smu", "boolean"),
            "overrange": data_key(station.wiring.adc, "boolean"),
        })
        for j in range(len(currents)):
            writer.event(
                stream,
                {
                    "current_a": currents[j],
                    "v_a": result.v_a[j],
                    "v_b": result.v_b[j],
                    "v_diff": result.v_diff[j],
                    "compliance": bool(result.compliance[j]),
                    "overrange": bool(result.overrange[j]),
                },
            )
        out = args.out or writer.path
        out.mkdir(parents=True, exist_ok=True)
        csv_path, png_path = out / "iv.csv", out / "iv.png"
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["current_a", "v_a_v", "v_b_v", "v_diff_v", "compliance", "overrange"])
            for row in zip(currents, result.v_a, result.v_b, result.v_diff, result.compliance,
                           result.overrange, strict=True):
                w.writerow([f"{row[0]:.6e}", f"{row[1]:.9e}", f"{row[2]:.9e}", f"{row[3]:.9e}",
                            int(row[4]), int(row[5])])
        n_comp, n_over = int(np.sum(result.compliance)), int(np.sum(result.overrange))
        suspects = suspect_devices(pair, currents, result, station.wiring.ratings)
        run.summary.update(pair=args.pair, points=len(currents), compliance_hits=n_comp,
                           overrange_hits=n_over, suspect_devices=suspects)
        run.headline = (f"pair {args.pair}: {len(currents)} points, {n_comp} in compliance, "
                        f"{n_over} overrange" + (f"; suspect: {', '.join(suspects)}"
                                                 if suspects else ""))
        if n_over or suspects:
            run.problem = "; ".join(
                ([f"{n_over} ADC overrange(s)"] if n_over else []) + suspects)
    plots.session_plots(writer.path, out)  # from the record, as `labctl report` draws it
    print(
        f"pair {args.pair}: {len(currents)} points in [{-i_max:.3g}, {i_max:.3g}] A, "
        f"{n_comp} compliance hits, {n_over} ADC overranges"
    )
    print(f"wrote {csv_path} and {png_path} (session {writer.path})")
    return report_problem(run)


def suspect_devices(wiring, currents: np.ndarray, result, ratings) -> list[str]:
    """Devices whose resistance at the largest |I| measured in range lies below the rated
    minimum (a short or a broken barrier), each named with its SMU channel."""
    out = []
    big = np.abs(currents) >= 0.5 * np.max(np.abs(currents))
    for name, dev, v in (("A", wiring.a, result.v_a), ("B", wiring.b, result.v_b)):
        ok = big & ~result.compliance
        if not ok.any():
            continue
        r = float(np.median(np.abs(v[ok] / currents[ok])))
        if r < ratings.min_resistance_ohm:
            out.append(f"pair {wiring.pair} device {name} ({dev.smu}, {dev.switch_channel}) "
                       f"reads {r:.4g} Ohm, below min_resistance_ohm "
                       f"{ratings.min_resistance_ohm:.4g} Ohm: shorted or broken")
    return out
