"""Benchmark: one list sweep on each simulated SMU model, side by side.

The same sweep (``points`` levels, a triangle 0 -> 60 uA -> 0 on device A and 1 uA above it
on device B, so that every source starts and ends at 0 A) runs on pair 1 of three stations
through ``Station.list_sweep``: the built-in station's two Keithley 2400s on the trigger
link (one ``:READ?`` on the master, the slave and the ADC paced by it), a Keithley 2602B
(one TSP script, one binary read) and a Keysight B2902A (one ``:INIT (@1,2)``, one
``:FETC:ARR?``), at each NPLC of ``nplcs``.

For each: ``instrument_s``, the station time the sweep took in the simulator's time model
(the oracle: the latest instrument timeline), and ``host_s``, the wall time of the same
sweep at time_scale 0 (instrument time costs no wall time, so this is what the host,
drivers, sockets and simulator cost). ``points_per_s`` is points / (instrument_s +
host_s), what a bench whose host work does not overlap the instruments' would reach;
``overhead`` is host_s / instrument_s. With ``realtime_nplc`` the sweep runs once more at
time_scale 1 at that NPLC, and ``realtime_overhead`` is (wall - instrument) / instrument
measured. Units: s, points/s.
"""

from __future__ import annotations

import time

import numpy as np

from labctl.station.file import StationConfig, load_station, one_smu_station_text, parse_station
from labctl.station.runtime import open_station

#: Label -> (driver, channel of device A, of device B); None: the built-in 2400 station.
MODELS: dict[str, str | None] = {  # label: the two-channel driver (None: two 2400s)
    "2400_trigger_link": None,
    "2602B_script": "keithley2600",
    "B2902A_list": "keysight_b2902a",
}


def station_config(label: str, time_scale: float) -> StationConfig:
    """The station of model ``label`` (a key of :data:`MODELS`) at ``time_scale``."""
    model = MODELS[label]
    if model is None:
        return load_station(None, time_scale=time_scale)
    return parse_station(one_smu_station_text(model, time_scale=time_scale),
                         f"<bench {label}>")


def levels(points: int) -> tuple[np.ndarray, np.ndarray]:
    """Device A's and B's levels (A): 0 -> 60 uA -> 0 in ``points`` steps, B 1 uA above A
    (0 at both ends); every step well within the 20 uA ramp step."""
    up = np.linspace(0.0, 60e-6, (points + 1) // 2)
    a = np.concatenate([up, up[::-1][points % 2:]])[:points]
    b = np.where(a > 0, a + 1e-6, 0.0)
    return a, b


def sweep_once(label: str, points: int, nplc: float, time_scale: float) -> dict:
    """One sweep of ``points`` at ``nplc`` on ``label``'s station: wall and instrument time."""
    a, b = levels(points)
    with open_station(station_config(label, time_scale)) as station:
        station.prepare_sources(compliance_v=0.8, nplc=nplc, adc_gain=100)
        station.connect_pair(1)
        clock0 = station.oracle.instrument_time_s()
        t0 = time.perf_counter()
        raw = station.list_sweep(1, a, b, nplc=nplc)
        wall = time.perf_counter() - t0
        instrument = station.oracle.instrument_time_s() - clock0
    if len(raw.v_a) != points or raw.compliance.any() or raw.overrange.any():
        raise RuntimeError(f"{label}: the benchmark sweep did not read {points} clean points")
    return {"wall_s": wall, "instrument_s": instrument}


def run(points: int = 2500, nplcs: tuple[float, ...] = (0.01, 1.0),
        realtime_nplc: float | None = 0.01) -> dict:
    """Every model of :data:`MODELS` at every NPLC; see the module docstring."""
    out: dict[str, dict] = {}
    for label in MODELS:
        for nplc in nplcs:
            r = sweep_once(label, points, nplc, 0.0)
            host, instrument = r["wall_s"], r["instrument_s"]
            row = {"points": points, "nplc": nplc, "instrument_s": instrument, "host_s": host,
                   "points_per_s": points / (instrument + host),
                   "instrument_points_per_s": points / instrument,
                   "overhead": host / instrument}
            if realtime_nplc is not None and nplc == realtime_nplc:
                real = sweep_once(label, points, nplc, 1.0)
                row["realtime_wall_s"] = real["wall_s"]
                row["realtime_overhead"] = (real["wall_s"] - real["instrument_s"]) / real[
                    "instrument_s"]
            out[f"{label}_nplc{nplc:g}"] = row
    return out


def table(results: dict) -> str:
    """The results as a text table, a row per model and NPLC."""
    head = (f"{'sweep':28s} {'points':>6s} {'NPLC':>5s} {'instr s':>9s} {'host s':>8s} "
            f"{'points/s':>9s} {'overhead':>9s} {'real-time ovh':>13s}")
    lines = [head]
    for name, r in results.items():
        real = r.get("realtime_overhead")
        lines.append(f"{name:28s} {r['points']:6d} {r['nplc']:5g} {r['instrument_s']:9.3f} "
                     f"{r['host_s']:8.3f} {r['points_per_s']:9.0f} {r['overhead']:8.1%} "
                     f"{'' if real is None else f'{real:.1%}':>13s}")
    return "\n".join(lines)


def main() -> int:
    print(table(run()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
