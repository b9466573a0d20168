"""`labctl tune --pair K --i-off A`: pulse a pair's devices to a target I_off and verify it.

Each device's I_off is estimated from an I-V sweep (the current where its conductance
I / V rises fastest, see protocols.tuning); every device further than the tolerance from
the target gets a programming pulse from the ADC board's pulse generator (|amplitude|
never beyond the pair's ``compliance_v``), and the pair is measured again, until both are
within tolerance, the pulse budget is spent or a device stops responding. A final,
independent I-V sweep on a grid of its own verifies the result.

The session records a ``tuning`` stream (every iteration's estimates and the pulses just
applied) and a ``verify_iv`` stream (the verification sweep, point by point); the stop
document's summary holds before, after and verified estimates. Exit status 0 when both
devices verify within tolerance, 1 otherwise. Units: A, V, s.
"""

from __future__ import annotations

import argparse
import math

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
from protocols.intents import DEVICES, Checkpoint
from protocols.safety import SafetyEnvelope
from protocols.tuning import IoffEstimate, estimate_i_off, tune_pair, verify_i_off

TUNING_KEYS = (
    ("pair", "integer", ""),
    ("iteration", "integer", ""),
    ("i_off_a", "number", "A"),
    ("i_off_b", "number", "A"),
    ("pulse_a_v", "number", "V"),
    ("pulse_b_v", "number", "V"),
    ("width_s", "number", "s"),
    ("pulses_total", "integer", ""),
)
VERIFY_KEYS = (("current_a", "A"), ("v_a", "V"), ("v_b", "V"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pair", type=int, required=True, help="pair number (1-based)")
    parser.add_argument(
        "--i-off", type=quantity("A"), required=True, dest="i_off",
        help="target I_off of both devices (A; e.g. -30e-6 or -30uA)"
    )
    parser.add_argument(
        "--tolerance", type=quantity("A"), default=2e-6, help="accepted |I_off - target| (A)"
    )
    parser.add_argument(
        "--max-pulses",
        type=int,
        default=40,
        dest="max_pulses",
        help="pulses of both devices together (default 40)",
    )
    parser.add_argument(
        "--width", type=float, default=10e-6, help="programming pulse width (s, default 1e-5)"
    )
    parser.add_argument(
        "--points", type=int, default=96, help="points of each tuning I-V sweep (default 96)"
    )
    parser.add_argument(
        "--verify-points",
        type=int,
        default=201,
        dest="verify_points",
        help="points of the final verification sweep over [-I_max, I_max] (default 201)",
    )
    parser.add_argument("--nplc", type=float, default=1.0, help="SMU integration (NPLC)")
    parser.add_argument("--mode", choices=["auto", "list", "host"], default="auto",
                        help="list sweeps on the trigger cabling, point by point from the host, "
                             "or whichever the station can")
    add_progress_argument(parser)
    add_station_arguments(parser)


def _ua(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * 1e6:.2f} uA"


def _verdict(estimate: IoffEstimate, target: float, tolerance: float) -> str:
    off = [d for d in DEVICES if not abs(estimate.i_off[d] - target) <= tolerance]
    if not off:
        return "both devices within tolerance"
    return "out of tolerance: " + ", ".join(
        f"device {d} {estimate.problems[d] or _ua(estimate.i_off[d] - target) + ' off'}"
        for d in off
    )


def work_bound(envelope: SafetyEnvelope, args: argparse.Namespace, i_max: float
               ) -> tuple[int, int]:
    """(source points of the tuning at most, of the verification sweep).

    The tuning measures once, then per iteration pulses (one point each) and measures
    again; every iteration spends at least one pulse of the budget, so at most
    ``max_pulses`` iterations: the bar's ETA is an upper bound until the tuning ends."""
    measure = planned_points(envelope, [estimate_i_off(args.pair, i_max=i_max,
                                                       points=args.points)])
    verify = planned_points(envelope, [verify_i_off(args.pair, i_max=i_max,
                                                    points=args.verify_points)])
    return measure * (1 + args.max_pulses) + args.max_pulses, verify


def run(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.i_off) and args.tolerance > 0 and args.width > 0):
        raise ValueError("--i-off must be a number, --tolerance and --width positive")
    if args.max_pulses < 0:
        raise ValueError(f"--max-pulses must not be negative, got {args.max_pulses}")
    station_cfg = station_config(args)
    limits = station_cfg.pair(args.pair).limits  # a bad pair: refused before any I/O
    config = {
        "command": "tune",
        "pair": args.pair,
        "target_i_off_a": args.i_off,
        "tolerance_a": args.tolerance,
        "max_pulses": args.max_pulses,
        "width_s": args.width,
        "points": args.points,
        "verify_points": args.verify_points,
        "nplc": args.nplc,
        "mode": args.mode,
    }
    tuning_bound, verify_points = work_bound(SafetyEnvelope(station_cfg.wiring), args,
                                             limits.max_current_a)
    with instrument_session(args, "tune", config, seeds={}, station_cfg=station_cfg,
                            dimension="iteration") as run_, Progress(
            tuning_bound + verify_points, f"tune pair {args.pair}", unit="point",
            enabled=wanted(args)) as bar:
        station, writer = run_.station, run_.writer
        tuning = writer.stream("tuning", primary=True, data_keys={
            k: data_key("labctl.tune", dtype, unit) for k, dtype, unit in TUNING_KEYS
        })

        def record(checkpoint: Checkpoint) -> None:
            if checkpoint.label == "tuning":
                writer.event(tuning, {key: checkpoint.data[key] for key, _, _ in TUNING_KEYS})
                d = checkpoint.data
                bar.set_description(f"tune pair {args.pair}: iteration {d['iteration']}, "
                                    f"{d['pulses_total']}/{args.max_pulses} pulses")

        engine = Engine(station, mode=args.mode, nplc=args.nplc, on_checkpoint=record)
        result = engine.run(counted(
            tune_pair(
                args.pair,
                args.i_off,
                args.tolerance,
                args.max_pulses,
                width_s=args.width,
                max_amplitude_v=engine.envelope.pulse_amplitude_limit_v(args.pair),
                i_max=limits.max_current_a,
                points=args.points,
            ), engine.envelope, bar)
        )
        # The budget was not all spent: what is left is the verification.
        bar.set_total(bar.n + verify_points)
        bar.set_description(f"tune pair {args.pair}: verification")
        verified, sweep = engine.run(counted(
            verify_i_off(args.pair, i_max=limits.max_current_a, points=args.verify_points),
            engine.envelope, bar))
        bar.close()
        stream = writer.stream(
            "verify_iv",
            {key: data_key("labctl.tune", units=unit) for key, unit in VERIFY_KEYS}
            | {"compliance": data_key("smu", "boolean")},
        )
        for j, current in enumerate(sweep.sweep.currents_a):
            writer.event(
                stream,
                {
                    "current_a": float(current),
                    "v_a": float(sweep.v_a[j]),
                    "v_b": float(sweep.v_b[j]),
                    "compliance": bool(sweep.compliance[j]),
                },
            )
        true_i_off = None
        if station.oracle is not None:
            # The simulator knows the truth: worth showing next to the estimates.
            true_i_off = station.oracle.i_off(args.pair)
        ok = result.success and all(
            abs(verified.i_off[d] - args.i_off) <= args.tolerance for d in DEVICES
        )
        run_.summary.update(
            result.as_dict(),
            verified=verified.as_dict(),
            verified_ok=ok,
            **({"simulator_i_off_a": true_i_off} if true_i_off else {}),
        )
        run_.headline = f"pair {args.pair}: I_off tuned to {args.i_off:.3g} A"
        if not ok:
            why = result.reason if not result.success else "verification outside the tolerance"
            where = station_cfg.pair(args.pair).describe()
            run_.problem = f"pair {args.pair} not tuned ({where}): {why}"
            run_.headline = f"pair {args.pair}: not tuned to {args.i_off:.3g} A: {why}"
    print(
        f"pair {args.pair}: target I_off {_ua(args.i_off)}, tolerance {_ua(args.tolerance)} "
        f"({station.config.name})"
    )
    header = f"{'':8} {'before':>10} {'after':>10} {'verified':>10}"
    print(header + (f" {'simulator':>10}" if true_i_off else ""))
    for d in DEVICES:
        row = (
            f"device {d} {_ua(result.before.i_off[d]):>10} {_ua(result.after.i_off[d]):>10} "
            f"{_ua(verified.i_off[d]):>10}"
        )
        print(row + (f" {_ua(true_i_off[d]):>10}" if true_i_off else ""))
    outcome = "tuned" if result.success else "NOT tuned"
    print(
        f"{outcome}: {result.reason} ({result.pulses_applied} pulses, "
        f"{result.iterations} iterations)"
    )
    print(
        f"verification ({len(sweep.sweep)}-point I-V sweep): "
        f"{_verdict(verified, args.i_off, args.tolerance)}"
    )
    plots.session_plots(writer.path, writer.path)  # tune.png, as `labctl report` draws it
    print(f"session {writer.path}")
    return report_problem(run_)
