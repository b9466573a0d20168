"""Benchmark of the instrument layer against the simulated station, in this process.

(a) Host-paced cost: the median wall time of a write followed by a query to the simulated
    SMU over loopback through :class:`~instruments.visa_transport.VisaTransport`, with
    TCP_NODELAY (the default) and, side by side on the same server, with Nagle left on.
    Two pairs are timed: the bare transport (``:SOUR:CURR <I>`` then ``:SOUR:CURR?``) and
    the driver's host-paced step (``source_and_measure``: ``:SOUR:CURR <I>`` then
    ``:READ?`` and its parse, the simulator computing the device's voltage).
(b) Messages per list sweep: :meth:`Keithley2400.configure_list_master` plus
    :meth:`Keithley2400.run_list_sweep` for N points, counted in the wire log: messages
    written (each command or query is one) and replies waited for.

Run ``python -m labctl.bench.transport`` (prints JSON). Times in s unless a key says ms.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from typing import Any

from instruments.keithley2400 import Keithley2400
from instruments.transport import WireLog
from instruments.visa_transport import VisaTransport

SWEEP_SIZES = (1, 100, 101, 250, 2500)


def _median_pair_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _transport_pair(adapter: VisaTransport) -> None:
    adapter.write(":SOUR:CURR 1e-06")
    adapter.query(":SOUR:CURR?")


def run(pairs: int = 2000, nagle_pairs: int = 20) -> dict[str, Any]:
    """Run both measurements on a fresh simulated station; returns the numbers.

    pairs: write+query pairs timed with NODELAY; nagle_pairs: the same with Nagle on
    (each costs a delayed ACK, ~40 ms, so keep it small).
    """
    from simulators.station import SimulatedStation
    from simulators.world import SimSettings

    with SimulatedStation(SimSettings(seed=1, variability="ideal")) as sim:
        res = sim.resources()
        fast = VisaTransport(res["smu_a"], timeout_s=5.0)
        slow = VisaTransport(res["smu_a"], timeout_s=5.0, nodelay=False)
        log = WireLog(os.devnull)
        smu = Keithley2400(VisaTransport(res["smu_b"], timeout_s=30.0, wire_log=log),
                           name="smu_b")
        smu_fast = Keithley2400(fast, name="smu_a")
        smu_slow = Keithley2400(slow, name="smu_a (Nagle on)")
        try:
            smu_fast.prepare_current_source(compliance_v=1.0, nplc=0.01)
            for _ in range(50):  # warm caches, the simulator's parser cache included
                _transport_pair(fast)
                smu_fast.source_and_measure(1e-6)
            transport_nodelay = _median_pair_s(lambda: _transport_pair(fast), pairs)
            transport_nagle = _median_pair_s(lambda: _transport_pair(slow), nagle_pairs)
            step_nodelay = _median_pair_s(lambda: smu_fast.source_and_measure(1e-6), pairs)
            step_nagle = _median_pair_s(lambda: smu_slow.source_and_measure(1e-6),
                                        nagle_pairs)

            smu.prepare_current_source(compliance_v=1.0, nplc=0.01)
            sweeps = {}
            for n in SWEEP_SIZES:
                before = dict(log.counts)
                t0 = time.perf_counter()
                smu.configure_list_master([1e-6] * n)
                readings = smu.run_list_sweep()
                elapsed = time.perf_counter() - t0
                assert len(readings) == n
                written = log.counts["w"] - before["w"]
                chunks = math.ceil(n / 100)
                sweeps[n] = {
                    "messages": written,
                    "replies_waited": log.counts["r"] - before["r"],
                    "list_commands": chunks,
                    "constant": written - chunks,
                    "wall_ms": round(elapsed * 1e3, 2),
                }
        finally:
            for adapter in (fast, slow, smu.adapter):
                adapter.close()
            log.close()
    return {
        "nodelay_in_effect": fast.nodelay,
        "transport_write_query_ms": {
            "nodelay": round(transport_nodelay * 1e3, 4),
            "nagle": round(transport_nagle * 1e3, 3),
            "ratio": round(transport_nagle / transport_nodelay, 1),
        },
        "host_paced_step_ms": {
            "nodelay": round(step_nodelay * 1e3, 4),
            "nagle": round(step_nagle * 1e3, 3),
            "ratio": round(step_nagle / step_nodelay, 1),
        },
        "list_sweep_messages": sweeps,
        "pairs_timed": {"nodelay": pairs, "nagle": nagle_pairs},
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
