"""`labctl fd-scan --pair K`: derivative error against dI, and a recommended dI.

A fine I-V sweep of the pair gives the reference dV/dI (a local quadratic fit); then for a
range of dI the finite-difference derivative is measured at test currents in each mode
(forward raw, forward with the dI = 0 calibration subtracted, swap) and compared with the
reference. On a simulated station the device model's analytic dV/dI is the reference
too. Units: A, V, Ohm.
"""

from __future__ import annotations

import argparse

import numpy as np

from labctl import plots
from labctl.commands.lifecycle import (
    add_station_arguments,
    instrument_session,
    record_differential_checks,
    station_config,
)
from labctl.progress import Progress, add_progress_argument, counted, planned_points, wanted
from labctl.records.session import data_key
from protocols.engine import Engine
from protocols.finite_difference import calibrate, fd_batch, iv_sweep, optimal_step
from protocols.intents import require_valid
from protocols.preflight import differential_check, refuse_failed
from protocols.safety import SafetyEnvelope

DEFAULT_STEPS = "0.1e-6,0.25e-6,0.5e-6,1e-6,2e-6,5e-6,10e-6"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pair", type=int, required=True, help="pair number (1-based)")
    parser.add_argument(
        "--steps", default=DEFAULT_STEPS, help="dI values to try (A, comma separated)"
    )
    parser.add_argument("--points", type=int, default=41, help="test currents per dI")
    parser.add_argument("--fine-points", type=int, default=401, help="points of the fine I-V sweep")
    parser.add_argument("--nplc", type=float, default=1.0,
                        help="SMU integration time (power-line cycles)")
    add_progress_argument(parser)
    add_station_arguments(parser)


def local_slope(x: np.ndarray, y: np.ndarray, half_width: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """dy/dx and d2y/dx2 by a least-squares quadratic over 2*half_width+1 neighbours."""
    n = len(x)
    d1, d2 = np.empty(n), np.empty(n)
    for i in range(n):
        lo, hi = max(0, i - half_width), min(n, i + half_width + 1)
        c = np.polyfit(x[lo:hi] - x[i], y[lo:hi], 2)
        d1[i], d2[i] = c[1], 2 * c[0]
    return d1, d2


def median_rel_error(estimate: np.ndarray, reference: np.ndarray) -> float:
    return float(np.median(np.abs(estimate / reference - 1)))


def _planned(envelope: SafetyEnvelope, wiring, steps: list[float], fine_i: np.ndarray,
             test_i: np.ndarray, i_max: float) -> int:
    """Source points of the whole scan (the plans below, in the order :func:`run` runs
    them), so that one bar with an ETA covers it."""
    z, pair = test_i[:, None], wiring.pair
    plans = [differential_check(wiring, min(steps)), iv_sweep(pair, fine_i),
             calibrate([pair], i_max), fd_batch(np.full((16, 1), 0.0), [pair], steps[0],
                                                "forward")]
    for di in steps:
        plans += [fd_batch(z, [pair], di, "forward"), fd_batch(z, [pair], di, "forward"),
                  fd_batch(z, [pair], di, "swap")]
    return planned_points(envelope, plans)


def run(args: argparse.Namespace) -> int:
    try:
        steps = [float(s) for s in args.steps.split(",")]
    except ValueError:
        raise ValueError(
            f"--steps must be numbers separated by commas, got {args.steps!r}"
        ) from None
    if any(s <= 0 for s in steps):
        raise ValueError(f"--steps must all be positive, got {args.steps!r}")
    station_cfg = station_config(args)
    i_max = station_cfg.pair(args.pair).limits.max_current_a  # a bad pair: refused before I/O
    config = {
        "command": "fd-scan",
        "pair": args.pair,
        "steps": steps,
        "points": args.points,
        "fine_points": args.fine_points,
        "nplc": args.nplc,
    }
    rows = []
    wiring = station_cfg.pair(args.pair)
    fine_i = np.linspace(-i_max, i_max, args.fine_points)
    span = max(steps)
    test_i = np.linspace(-0.8 * i_max, 0.8 * i_max - span, args.points)
    total = _planned(SafetyEnvelope(station_cfg.wiring), wiring, steps, fine_i, test_i, i_max)
    with instrument_session(args, "fd-scan", config, seeds={}, station_cfg=station_cfg,
                            dimension="di_a") as run_, Progress(
            total, f"fd-scan pair {args.pair}", unit="point", enabled=wanted(args)) as bar:
        station, writer = run_.station, run_.writer
        engine = Engine(station, nplc=args.nplc)

        def run_plan(plan):
            return engine.run(counted(plan, engine.envelope, bar))

        checks = [run_plan(differential_check(wiring, min(steps)))]
        record_differential_checks(writer, checks)
        refuse_failed(checks)
        fine = run_plan(iv_sweep(args.pair, fine_i))
        require_valid(fine.valid, wiring, "the fine I-V sweep")
        slope, curvature = local_slope(fine_i, fine.v_a)
        cal = run_plan(calibrate([args.pair], i_max))
        # The dI = 0 offset is kept with the session: a later forward-mode run can use it.
        grid = (len(cal.grid[args.pair]),)
        cal_stream = writer.stream("calibration", {
            "pair": data_key("fd-scan", "integer"),
            "grid_a": data_key("fd-scan", "array", "A", grid),
            "offset_v": data_key(station.wiring.adc, "array", "V", grid),
        })
        writer.event(
            cal_stream,
            {"pair": args.pair, "grid_a": cal.grid[args.pair], "offset_v": cal.offset[args.pair]},
        )
        ref = np.interp(test_i, fine_i, slope)
        analytic = None
        if station.oracle is not None:
            analytic = station.oracle.dvdi([args.pair], test_i)
        # Read noise of one differential reading, from repeats at one current.
        repeat = run_plan(fd_batch(np.full((16, 1), 0.0), [args.pair], steps[0], "forward"))
        noise_v = float(np.std(repeat.dvdi[:, 0]) * steps[0])
        v2 = float(np.median(np.abs(np.interp(test_i, fine_i, curvature))))
        theory = optimal_step(max(noise_v, 1e-12), max(v2, 1e-3))
        stream = writer.stream("fd_scan", primary=True, data_keys={
            k: data_key("fd-scan", units=u)
            for k, u in (("di_a", "A"), ("forward_raw", ""), ("forward_cal", ""), ("swap", ""),
                         ("swap_vs_model", ""), ("forward_bias", ""))
        })
        for di in steps:
            z = test_i[:, None]
            bar.set_description(f"fd-scan pair {args.pair}, dI {di:.3g} A")
            fwd = run_plan(fd_batch(z, [args.pair], di, "forward"))
            fwdc = run_plan(fd_batch(z, [args.pair], di, "forward", calibration=cal))
            swp = run_plan(fd_batch(z, [args.pair], di, "swap"))
            for mode, r in (("forward", fwd), ("forward calibrated", fwdc), ("swap", swp)):
                require_valid(r.valid, wiring, f"{mode} at dI = {di:g} A")
            row = {
                "di_a": di,
                "forward_raw": median_rel_error(fwd.dvdi[:, 0], ref),
                "forward_cal": median_rel_error(fwdc.dvdi[:, 0], ref),
                "swap": median_rel_error(swp.dvdi[:, 0], ref),
                "swap_vs_model": (
                    median_rel_error(swp.dvdi[:, 0], analytic)
                    if analytic is not None
                    else float("nan")
                ),
                "forward_bias": float(np.median(fwd.dvdi[:, 0] / ref - 1)),
            }
            rows.append(row)
            writer.event(stream, row)
        bar.close()
        best = min(rows, key=lambda r: r["swap"])
        run_.summary.update(
            pair=args.pair,
            recommended_di_a=best["di_a"],
            swap_error=best["swap"],
            theory_di_a=theory,
        )
        run_.headline = (f"pair {args.pair}: recommended dI {best['di_a']:.3g} A "
                         f"(swap error {best['swap']:.2%}; theory {theory:.3g} A)")
    plots.session_plots(writer.path, writer.path)  # fd_scan.png, as `labctl report` draws it
    print(f"pair {args.pair}: derivative error (median |rel|) against the fine-sweep reference")
    print(
        f"{'dI (A)':>10} {'fwd raw':>9} {'fwd bias':>9} {'fwd cal':>9} {'swap':>9}"
        f" {'swap/model':>11}"
    )
    for r in rows:
        print(
            f"{r['di_a']:>10.3g} {r['forward_raw']:>9.2%} {r['forward_bias']:>+9.2%} "
            f"{r['forward_cal']:>9.2%} {r['swap']:>9.2%} {r['swap_vs_model']:>11.2%}"
        )
    print(
        f"read noise {noise_v:.3g} V, median |V''| {v2:.3g} V/A^2: "
        f"forward-difference optimum 1.68*sqrt(sigma/|V''|) = {theory:.3g} A"
    )
    print(
        f"recommended dI = {best['di_a']:.3g} A (swap, error {best['swap']:.2%}); "
        f"session {writer.path}"
    )
    return 0
