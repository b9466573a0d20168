"""Instrument time of the simulated 2602B, from its datasheet.

Figures of the Models 2601B/2602B/2604B specifications (SPEC-2602B Rev. B, February 2014),
"Measurement speed characteristics", maximum sweep operation rates at 60 Hz (50 Hz), trigger
origin internal, current ranges of 1 mA and above:

=========  =====================  ==========================  ======================
NPLC       source-measure to      measure to memory           source-measure to
           memory, sweep API      (user scripts)              memory (user scripts)
=========  =====================  ==========================  ======================
0.001      12,000 (12,000) /s     20,000 (20,000) /s          7,000 (7,000) /s
0.01       4,200 (3,700)          4,900 (4,000)               3,400 (3,000)
0.1        560 (470)              580 (480)                   550 (465)
1.0        59 (49)                59 (49)                     59 (49)
=========  =====================  ==========================  ======================

A step takes the integration time NPLC / line frequency plus an overhead; the overhead is
what the 60 Hz figure leaves beyond the integration, interpolated linearly in log10(NPLC)
between the table's points and held beyond them (the 50 Hz column then follows within 2 %).
A source level changed by a script costs SCRIPT_SOURCE_CHANGE_S more (the difference of the
two user-script columns, 90 to 94 us at every NPLC up to 0.1).

Current source output settling (time to 0.1 % of the final value on a fixed range, same
datasheet, "Current source output settling time"): 3 A to 10 mA < 80 us, 1 mA < 100 us,
100 uA < 150 us, 10 uA < 500 us, 1 uA < 2 ms, 100 nA < 20 ms; voltage source output
settling ("Voltage source output settling time"): 100 mV and 1 V < 50 us, 6 V < 110 us,
40 V < 150 us. The simulator spends it as the automatic measure delay
(``smuX.measure.delay = smuX.DELAY_AUTO``, the reset default) after each source step.
Units: s, Hz.
"""

from __future__ import annotations

import bisect
import math

_NPLC_POINTS = (0.001, 0.01, 0.1, 1.0)
#: Readings/s at 60 Hz per column, at the NPLC points above.
SWEEP_API_RATE = (12_000.0, 4_200.0, 560.0, 59.0)
SCRIPT_MEASURE_RATE = (20_000.0, 4_900.0, 580.0, 59.0)
SCRIPT_SOURCE_CHANGE_S = 90e-6
#: Settling time (s) of the current source by range (A), the datasheet's table.
CURRENT_SETTLING_S = (
    (100e-9, 20e-3),
    (1e-6, 2e-3),
    (10e-6, 500e-6),
    (100e-6, 150e-6),
    (1e-3, 100e-6),
    (3.0, 80e-6),
)

VOLTAGE_SETTLING_S = ((1.0, 50e-6), (6.0, 110e-6), (40.0, 150e-6))


def _overhead(rates: tuple[float, ...], nplc: float) -> float:
    """Seconds per step beyond the integration at 60 Hz, interpolated in log10(NPLC)."""
    over = [1.0 / r - n / 60.0 for r, n in zip(rates, _NPLC_POINTS, strict=True)]
    x = math.log10(min(max(nplc, _NPLC_POINTS[0]), _NPLC_POINTS[-1]))
    xs = [math.log10(n) for n in _NPLC_POINTS]
    i = min(max(bisect.bisect_right(xs, x) - 1, 0), len(xs) - 2)
    f = (x - xs[i]) / (xs[i + 1] - xs[i])
    return over[i] + f * (over[i + 1] - over[i])


def sweep_step_s(nplc: float, line_frequency: float) -> float:
    """One source-measure step of the trigger model (sweep API), in s."""
    return nplc / line_frequency + _overhead(SWEEP_API_RATE, nplc)


def script_measure_s(nplc: float, line_frequency: float) -> float:
    """One measurement a script (or a command) takes into memory, in s."""
    return nplc / line_frequency + _overhead(SCRIPT_MEASURE_RATE, nplc)


def current_settling_s(range_a: float) -> float:
    """Settling time (s) of the current source on range ``range_a`` (A)."""
    for top, seconds in CURRENT_SETTLING_S:
        if range_a <= top * (1 + 1e-9):
            return seconds
    return CURRENT_SETTLING_S[-1][1]


def voltage_settling_s(range_v: float) -> float:
    """Settling time (s) of the voltage source on range ``range_v`` (V)."""
    for top, seconds in VOLTAGE_SETTLING_S:
        if range_v <= top * (1 + 1e-9):
            return seconds
    return VOLTAGE_SETTLING_S[-1][1]
