"""Benchmark: an Iris epoch's measurements with one pair at a time and two pairs at once.

Simulated stations with the same chip (seed 1, nominal): the built-in one (two Keithley
2400s on rows A/B, one pair at a time) and :func:`parallel_station_text`'s (odd pairs on
rows A/B and ADC input 1, biased by two 2400s or by the two channels of one 2602B or
B2902A; even pairs on rows C/D, ADC input 2, biased by two more 2400s, smu_c/smu_d, or by
the two channels of a second B2902A or 2602B, smu2, armed on its trigger input (EXT1, digio
line 1); the odd pairs' trigger master paces all of them and the ADC, which samples both
inputs per step), where
the engine sweeps an odd and an even pair in one step. On each,
the hidden layer of an Iris network (``neurons`` pairs, 1..neurons) measures an
Iris-sized batch (``batch`` samples, fd-swap: activations and derivatives), which is
what one epoch of full-batch training asks of the station. ``instrument_s`` is the
station time that took (the oracle: the latest instrument timeline), ``host_s`` its wall
time at time_scale 0; ``realtime_wall_s`` (NPLC 0.01 only) the wall time at time_scale 1.
Units: s.
"""

from __future__ import annotations

import time

import numpy as np

from labctl.station.file import StationConfig, load_station, parse_station
from labctl.station.runtime import open_station
from labctl.training.station_neurons import StationNeurons
from protocols.engine import Engine

#: The first couple's SMU: driver -> (instrument names of device A's and B's channels).
FIRST_PAIR_SMUS = {
    "keithley2400": ("smu_a", "smu_b"),
    "keithley2600": ("smu:a", "smu:b"),
    "keysight_b2902a": ("smu:1", "smu:2"),
}


#: The second couple's SMUs: driver -> (instrument names of device A's and B's channels).
SECOND_PAIR_SMUS = {
    "keithley2400": ("smu_c", "smu_d"),
    "keithley2600": ("smu2:a", "smu2:b"),
    "keysight_b2902a": ("smu2:1", "smu2:2"),
}
#: The parallel stations the benchmark measures: (first couple's SMU, second couple's).
STATIONS = (("keithley2400", "keithley2400"), ("keithley2600", "keithley2400"),
            ("keysight_b2902a", "keithley2400"), ("keysight_b2902a", "keysight_b2902a"),
            ("keithley2600", "keithley2600"))


def parallel_station_text(time_scale: float = 0.0, seed: int = 1, n_pairs: int = 16,
                          first: str = "keithley2400", second: str = "keithley2400") -> str:
    """A simulated station that measures two pairs at once (module doc): odd pairs on
    ``first`` (two 2400s, or one 2602B or B2902A whose two channels bias them and whose
    trigger output paces everything), even pairs on ``second`` (two 2400s, smu_c and
    smu_d, trigger-link slaves; or the two channels of a B2902A or 2602B, smu2, armed on
    its trigger input line 1)."""
    if second not in SECOND_PAIR_SMUS:
        raise ValueError(f"the second couple is on {sorted(SECOND_PAIR_SMUS)}, not {second!r}")
    even_a, even_b = SECOND_PAIR_SMUS[second]
    pairs = "".join(
        f'\n[[wiring.pair]]\npair = {k}\nsmu_a = "{even_a}"\nsmu_b = "{even_b}"\n'
        f'channel_a = "1C{k:02d}"\nchannel_b = "1D{k:02d}"\nadc_input = 2\n'
        for k in range(2, n_pairs + 1, 2))
    smu_a, smu_b = FIRST_PAIR_SMUS[first]
    drivers = ({"smu_a": first, "smu_b": first} if first == "keithley2400"
               else {"smu": first})
    drivers.update({"smu_c": second, "smu_d": second} if second == "keithley2400"
                   else {"smu2": second})
    smus = "".join(f'[instruments.{x}]\ndriver = "{d}"\n' for x, d in drivers.items())
    beside = "two 2400s" if second == "keithley2400" else f"a {second}"
    return f"""\
[station]
name = "two pairs in parallel ({first} beside {beside})"

{smus}[instruments.adc]
driver = "adc_board"
[instruments.switch]
driver = "switch_matrix"
[instruments.prober]
driver = "prober"

[wiring]
smu_a = "{smu_a}"
smu_b = "{smu_b}"
trigger_master = "{smu_a}"
adc = "adc"
adc_input = 1
switch = "switch"
prober = "prober"
n_pairs = {n_pairs}
{pairs}
[limits]
max_current_a = 100e-6
compliance_v = 0.8
ramp_step_a = 20e-6

[simulation]
seed = {seed}
variability = "nominal"
n_pairs = {n_pairs}
time_scale = {time_scale!r}
"""


def station_config(parallel: bool, time_scale: float, first: str = "keithley2400",
                   second: str = "keithley2400") -> StationConfig:
    """The built-in station, or (``parallel``) :func:`parallel_station_text`'s."""
    if not parallel:
        return load_station(None, time_scale=time_scale)
    return parse_station(parallel_station_text(time_scale, first=first, second=second),
                         f"<parallel-pairs bench, {first} + {second}>")


def epoch_once(parallel: bool, nplc: float, time_scale: float, *, batch: int = 120,
               neurons: int = 8, seed: int = 0, first: str = "keithley2400",
               second: str = "keithley2400", one_at_a_time: bool = False) -> dict:
    """One Iris-sized batch through the hidden layer; times, engine counts, readings.
    ``one_at_a_time``: on the (parallel) station, but the engine sweeps one pair per step
    (the same instruments' time without pairs in parallel)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1.0, 1.0, (batch, neurons))
    with open_station(station_config(parallel, time_scale, first, second)) as station:
        engine = Engine(station, nplc=nplc)
        if one_at_a_time:
            engine.parallel = False
        layer = StationNeurons(engine, list(range(1, neurons + 1)), di=1e-6)
        centre, scale = station.wiring.operating_point()
        currents = centre + scale * z
        layer.measure(currents[:2])  # prepare and connect: not part of the epoch
        steps0, clock0 = engine.stats.parallel_steps, station.oracle.instrument_time_s()
        t0 = time.perf_counter()
        readout = layer.measure(currents)
        wall = time.perf_counter() - t0
        instrument = station.oracle.instrument_time_s() - clock0
    return {"instrument_s": instrument, "wall_s": wall,
            "parallel_steps": engine.stats.parallel_steps - steps0,
            "v": readout.v, "dvdi": readout.dvdi}


def run(nplcs: tuple[float, ...] = (0.01, 1.0), realtime_nplc: float | None = 0.01) -> dict:
    """1 pair at a time (the built-in 2400 station) against 2 at once on each parallel
    station (:data:`STATIONS`: the odd pairs' SMU beside two 2400s or a second B2902A), at
    each NPLC."""
    out: dict[str, dict] = {}
    for nplc in nplcs:
        one = epoch_once(False, nplc, 0.0)
        for first, second in STATIONS:
            two = epoch_once(True, nplc, 0.0, first=first, second=second)
            beside = "2x keithley2400" if second == "keithley2400" else second
            alone = epoch_once(True, nplc, 0.0, first=first, second=second,
                               one_at_a_time=True)
            row = {"nplc": nplc, "station": f"{first} + {beside}",
                   "same_station_one_pair_instrument_s": alone["instrument_s"],
                   "same_station_speedup": alone["instrument_s"] / two["instrument_s"],
                   "one_pair_instrument_s": one["instrument_s"],
                   "two_pairs_instrument_s": two["instrument_s"],
                   "speedup": one["instrument_s"] / two["instrument_s"],
                   "one_pair_host_s": one["wall_s"], "two_pairs_host_s": two["wall_s"],
                   "parallel_steps": two["parallel_steps"],
                   "max_abs_dv_v": float(np.max(np.abs(one["v"] - two["v"])))}
            if realtime_nplc is not None and nplc == realtime_nplc and first == "keithley2400":
                row["one_pair_realtime_wall_s"] = epoch_once(False, nplc, 1.0)["wall_s"]
                row["two_pairs_realtime_wall_s"] = epoch_once(True, nplc, 1.0)["wall_s"]
            key = first if second == "keithley2400" else f"{first}_{second}"
            out[f"iris_epoch_{key}_nplc{nplc:g}"] = row
    return out


def table(results: dict) -> str:
    """The results as a text table, a row per parallel station and NPLC."""
    lines = [f"{'Iris epoch (120 x 8)':36s} {'NPLC':>5s} {'1 pair s':>9s} {'2 pairs s':>9s} "
             f"{'speedup':>8s} {'same stn 1 pair s':>17s} {'speedup':>8s} {'par steps':>9s} "
             f"{'wall 1/2 at ts=1':>17s}",
             "(1 pair s: the built-in 2400 station; same stn: the parallel station, one pair "
             "per step)"]
    for r in results.values():
        real = (f"{r['one_pair_realtime_wall_s']:.2f}/{r['two_pairs_realtime_wall_s']:.2f}"
                if "one_pair_realtime_wall_s" in r else "")
        lines.append(f"{r['station']:36s} {r['nplc']:5g} {r['one_pair_instrument_s']:9.3f} "
                     f"{r['two_pairs_instrument_s']:9.3f} {r['speedup']:7.2f}x "
                     f"{r['same_station_one_pair_instrument_s']:17.3f} "
                     f"{r['same_station_speedup']:7.2f}x "
                     f"{r['parallel_steps']:9d} {real:>17s}")
    return "\n".join(lines)


def main() -> int:
    print(table(run()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
