"""Benchmark ``wafer``: a wafer scan's wall time per die against the simulator's instrument
time, at NPLC 1 and time scale 1 (the simulated instruments take real time).

The scan's own code (:func:`labctl.wafer.scan.scan_die`: moves, sweeps, the voltage-bias
I-V, the records written) runs on a simulated station of ``pairs`` pairs over ``dies``
dies of the round wafer; per die, wall time (time.perf_counter) and instrument time (the
simulator's clock, :meth:`Oracle.instrument_time_s`) are taken around the same call, side
by side. Overhead = wall / instrument - 1 (target: at most 15 %).

Run: ``labctl bench --only wafer`` (about 10 s of instrument time per die and pair).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from labctl.records.session import SessionWriter
from labctl.station.file import BUILTIN_TEXT, parse_station
from labctl.station.runtime import open_station
from labctl.wafer.scan import ScanSettings, declare_streams, park, scan_die

TARGET_OVERHEAD = 0.15


def station_text(pairs: int, time_scale: float) -> str:
    """The built-in station with ``pairs`` pairs on the round-5 simulated wafer."""
    return (BUILTIN_TEXT.replace("n_pairs = 16", f"n_pairs = {pairs}")
            .replace("time_scale = 0.0", f'time_scale = {time_scale!r}\nwafer = "round-5"'))


def run(pairs: int = 2, dies: int = 3, nplc: float = 1.0, time_scale: float = 1.0) -> dict:
    """Scan ``dies`` dies; per die wall and instrument time (s) and the overhead."""
    cfg = parse_station(station_text(pairs, time_scale), "<bench wafer station>")
    settings = ScanSettings(nplc=nplc)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, open_station(cfg) as station:
        writer = SessionWriter.create(Path(tmp), "wafer-scan", [], {"wafer": {}}, {})
        station.attach_wire_logs(writer.path)
        streams = declare_streams(writer, settings, len(settings.fd_steps_a))
        die_map = station.prober.wafer_map()[:dies]
        try:
            for die in die_map:
                t_inst = station.oracle.instrument_time_s()
                t_wall = time.perf_counter()
                scan_die(station, writer, streams, die, settings)
                wall = time.perf_counter() - t_wall
                inst = station.oracle.instrument_time_s() - t_inst
                rows.append({"die": f"{die[0]}:{die[1]}", "wall_s": wall, "instrument_s": inst,
                             "overhead": wall / inst - 1 if inst > 0 else float("nan")})
        finally:
            park(station)
            writer.stop("success")
    wall = sum(r["wall_s"] for r in rows)
    inst = sum(r["instrument_s"] for r in rows)
    return {"pairs": pairs, "nplc": nplc, "time_scale": time_scale, "dies": rows,
            "wall_s_per_die": wall / len(rows), "instrument_s_per_die": inst / len(rows),
            "overhead": wall / inst - 1, "target_overhead": TARGET_OVERHEAD,
            "settings": settings.record()}


def table(result: dict) -> str:
    """The result as a text table, a row per die and the mean."""
    lines = [f"wafer scan, {result['pairs']} pairs per die, NPLC {result['nplc']:g}, time "
             f"scale {result['time_scale']:g}",
             f"{'die':>6} {'wall (s)':>10} {'instrument (s)':>15} {'overhead':>9}"]
    for r in result["dies"]:
        lines.append(f"{r['die']:>6} {r['wall_s']:>10.2f} {r['instrument_s']:>15.2f} "
                     f"{r['overhead']:>+9.1%}")
    lines.append(f"{'mean':>6} {result['wall_s_per_die']:>10.2f} "
                 f"{result['instrument_s_per_die']:>15.2f} {result['overhead']:>+9.1%}"
                 f"   (target <= {result['target_overhead']:.0%})")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(table(run()))
