"""The simulated wafer: which dies exist, and the devices on each, as a real wafer has them.

Two kinds (``SimSettings.wafer``):

``"grid"`` (the default, every station file written before wafers had a shape)
    a rectangular ``die_grid`` of dies, each die's pairs drawn independently from the
    variability preset; no gradients, no defects. The draws are the same as they always
    were (one generator seeded ``[seed, 1]``, dies in row-major order), so old sessions
    replay against the same devices.
``"round-N"``
    an N x N grid minus what lies off the round wafer (dies whose centre is more than N/2
    die pitches from the wafer's centre: for N = 5 the four corners, 21 dies), with

    - die-to-die gradients: R_P rises radially, ``r_p *= 1 + RADIAL_R_P * rho**2``
      (rho = distance from the centre / (N/2), 0..1), and I_off drifts across the wafer,
      ``i_off += I_OFF_TILT_A * x`` (x = column offset / (N/2), -1..1);
    - planted defects, drawn without replacement over every device of the wafer (exact
      counts, at least one of each kind when there are enough devices):
      ``open`` (no contact: a current source runs into its voltage compliance, a voltage
      source reads 0 A), ``short`` (a broken barrier, ``SHORT_RESISTANCE`` = 50 Ohm),
      ``broken`` (no magnetoresistance: TMR0 ~ 0) and ``out_of_family`` (R_P several sigma
      off its die's population).

Everything is seeded from ``SimSettings.seed`` and deterministic. The truth (parameters and
the planted defects) reaches labctl only through :class:`labctl.station.oracle.Oracle`.
Units: A, V, Ohm.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import numpy as np

from simulators.mtj import DeviceBank, Variability, sample_pairs

GRID = "grid"
_ROUND = re.compile(r"round-(\d+)\Z")
MIN_ROUND, MAX_ROUND = 3, 50
RADIAL_R_P = 0.12  # relative R_P rise from the centre to the edge
I_OFF_TILT_A = 3e-6  # I_off shift (A) at the left/right edge
# Fractions of all devices planted with each defect (a few percent in all).
DEFECT_FRACTIONS = {"open": 0.02, "short": 0.02, "broken": 0.015, "out_of_family": 0.015}
DEFECT_KINDS = tuple(DEFECT_FRACTIONS)
BROKEN_TMR0 = 1e-3  # what is left of the magnetoresistance of a broken device
OUT_OF_FAMILY_SIGMAS = 8.0  # R_P this many population sigma off
MIN_SPREAD = 0.05  # sigma used for out-of-family when the preset has no spread (ideal)
# The planted defects' own random stream ([seed, this]): world.py uses 1..3 for the dies,
# drift and device dynamics, and a new draw there must not move a defect.
DEFECT_STREAM = 0x776166  # "waf"


def wafer_kind(name: str) -> tuple[str, int]:
    """("grid", 0) or ("round", N) for a wafer name; ValueError for anything else."""
    if name == GRID:
        return GRID, 0
    m = _ROUND.match(name)
    if m and MIN_ROUND <= int(m.group(1)) <= MAX_ROUND:
        return "round", int(m.group(1))
    raise ValueError(f"wafer {name!r}: expected \"grid\" or \"round-N\" with N "
                     f"{MIN_ROUND}..{MAX_ROUND}")


def round_map(n: int) -> list[tuple[int, int]]:
    """Dies (column, row), 1-based, of an n x n grid whose centres lie within n/2 die
    pitches of the wafer's centre, in row-major order."""
    centre = (n + 1) / 2
    return [(c, r) for r in range(1, n + 1) for c in range(1, n + 1)
            if math.hypot(c - centre, r - centre) <= n / 2]


def grid_map(cols: int, rows: int) -> list[tuple[int, int]]:
    """Every die of a cols x rows grid in row-major order."""
    return [(c, r) for r in range(1, rows + 1) for c in range(1, cols + 1)]


@dataclass
class Wafer:
    """The dies of a simulated wafer and what was planted on them.

    banks: die -> its DeviceBank (params of shape (n_pairs, 2)); opens: die -> set of
    (pair index, device index) with no contact; defects: (die, pair index 0-based, device
    0=A 1=B) -> kind.
    """

    banks: dict[tuple[int, int], DeviceBank]
    opens: dict[tuple[int, int], frozenset[tuple[int, int]]] = field(default_factory=dict)
    defects: dict[tuple[tuple[int, int], int, int], str] = field(default_factory=dict)


def build_wafer(name: str, die_grid: tuple[int, int], n_pairs: int, variability: Variability,
                seed: int) -> Wafer:
    """The wafer ``name`` (see the module docstring), seeded by ``seed``."""
    kind, n = wafer_kind(name)
    die_rng = np.random.default_rng([seed, 1])
    dies = grid_map(*die_grid) if kind == GRID else round_map(n)
    params = {die: sample_pairs(n_pairs, variability, die_rng) for die in dies}
    if kind == GRID:
        return Wafer({die: DeviceBank(p) for die, p in params.items()})
    centre, half = (n + 1) / 2, n / 2
    for (c, r), p in params.items():
        rho = math.hypot(c - centre, r - centre) / half
        x = (c - centre) / half
        params[c, r] = replace(p, r_p=p.r_p * (1 + RADIAL_R_P * rho**2),
                               i_off=p.i_off + I_OFF_TILT_A * x)
    defects = _plant(dies, n_pairs, np.random.default_rng([seed, DEFECT_STREAM]))
    sigma = max(variability.spread, MIN_SPREAD)
    for (die, pair, dev), what in defects.items():
        p = params[die]
        if what == "broken":
            tmr0 = np.array(p.tmr0, dtype=float)
            tmr0[pair, dev] = BROKEN_TMR0
            params[die] = replace(p, tmr0=tmr0)
        elif what == "out_of_family":
            r_p = np.array(p.r_p, dtype=float)
            # Up or down, alternating by position so both directions occur.
            sign = 1.0 if (pair + dev + die[0] + die[1]) % 2 == 0 else -1.0
            r_p[pair, dev] *= math.exp(sign * OUT_OF_FAMILY_SIGMAS * sigma)
            params[die] = replace(p, r_p=r_p)
    banks = {die: DeviceBank(p) for die, p in params.items()}
    opens: dict[tuple[int, int], set[tuple[int, int]]] = {}
    for (die, pair, dev), what in defects.items():
        if what == "short":
            banks[die].destroyed[pair, dev] = True  # a barrier broken from the start
        elif what == "open":
            opens.setdefault(die, set()).add((pair, dev))
    return Wafer(banks, {d: frozenset(s) for d, s in opens.items()}, defects)


def _plant(dies: list[tuple[int, int]], n_pairs: int, rng: np.random.Generator
           ) -> dict[tuple[tuple[int, int], int, int], str]:
    """Exact numbers of each defect kind over every device, drawn without replacement."""
    devices = [(die, pair, dev) for die in dies for pair in range(n_pairs) for dev in (0, 1)]
    total = len(devices)
    counts = {k: max(1, round(f * total)) for k, f in DEFECT_FRACTIONS.items()}
    if sum(counts.values()) > total // 2:  # a tiny wafer: one of each, most devices healthy
        counts = {k: int(i < total // 4) for i, k in enumerate(DEFECT_KINDS)}
    order = rng.permutation(total)
    out, at = {}, 0
    for kind in DEFECT_KINDS:
        for j in order[at: at + counts[kind]]:
            out[devices[int(j)]] = kind
        at += counts[kind]
    return out

