"""Devices from measured I-V curves: a monotone interpolant of V(I) per device.

Units: current in A, voltage in V, differential resistance in Ohm.

A table of measured curves replaces the compact model: each device's V(I) is the
piecewise-cubic monotone interpolant (scipy's PchipInterpolator, Fritsch-Carlson) of its
points, its dV/dI the interpolant's derivative (exact for the interpolant, so the oracle
stays exact for these devices). The CSV table (:meth:`MeasuredDevices.from_csv`) has a
header and one row per point with the columns

    pair       1-based pair number (pairs 1..N, every one given)
    device     A or B
    current_a  bias current (A)
    voltage_v  measured voltage (V)

in any order; other columns are ignored. Points of one device may come in any order;
repeated currents (an up and a down sweep) are averaged. Every device needs at least 4
distinct currents and a strictly increasing V(I) (a junction's I-V is monotone; noise
that makes it fall is refused, naming the device and the current). Inside the simulated
station (:class:`MeasuredBank`) a current outside a device's measured range extrapolates
linearly with the end slope (the compliance search must see a V(I) everywhere; the
station file refuses a table that does not cover its current limit, so no instrument
reads there); :meth:`MeasuredDevices.voltage` with ``strict=True`` refuses instead, with
an error naming the device and its range. Tuning shifts a measured curve along I (a
moved transition), as it shifts I_off of a modelled device.

Nothing here imports labctl: a labctl-side adapter (labctl.station.measured_iv) turns
``labctl iv`` sessions into :meth:`MeasuredDevices.from_arrays`.
"""

from __future__ import annotations

import bisect
import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simulators.mtj import NOMINAL, SHORT_RESISTANCE, DeviceBank, MTJParams

MIN_POINTS = 4
COLUMNS = ("pair", "device", "current_a", "voltage_v")
_DEVICES = {"A": 0, "B": 1}

if TYPE_CHECKING:
    from scipy.interpolate import PchipInterpolator


class MeasuredTableError(ValueError):
    """A measured I-V table that cannot describe devices (names the source and the entry)."""


@dataclass(frozen=True)
class _Curve:
    """One device's interpolant: knots x (A), cubic coefficients c (4, n - 1)."""

    x: np.ndarray
    c: np.ndarray
    interp: PchipInterpolator
    deriv: PchipInterpolator
    knots: tuple[float, ...]  # x as floats, and c by interval: the scalar hot path's
    pieces: tuple[tuple[float, float, float, float], ...]

    @property
    def lo(self) -> float:
        return float(self.x[0])

    @property
    def hi(self) -> float:
        return float(self.x[-1])


def _curve(current: np.ndarray, volts: np.ndarray, where: str) -> _Curve:
    order = np.argsort(current, kind="stable")
    current, volts = current[order], volts[order]
    knots, inverse = np.unique(current, return_inverse=True)
    mean_v = np.bincount(inverse, weights=volts) / np.bincount(inverse)
    if len(knots) < MIN_POINTS:
        raise MeasuredTableError(
            f"{where}: {len(knots)} distinct currents, at least {MIN_POINTS} needed")
    falls = np.flatnonzero(np.diff(mean_v) <= 0)
    if falls.size:
        k = int(falls[0])
        raise MeasuredTableError(
            f"{where}: V does not rise with I between {knots[k]:.6g} A ({mean_v[k]:.6g} V) "
            f"and {knots[k + 1]:.6g} A ({mean_v[k + 1]:.6g} V); a junction's I-V is monotone")
    # imported here: scipy.interpolate costs ~0.4 s, and only measured devices need it
    from scipy.interpolate import PchipInterpolator

    interp = PchipInterpolator(knots, mean_v, extrapolate=False)
    c = np.asarray(interp.c)
    return _Curve(knots, c, interp, interp.derivative(), tuple(knots.tolist()),
                  tuple(tuple(col) for col in c.T.tolist()))


class MeasuredDevices:
    """Measured I-V curves of ``n_pairs`` pairs: ``curves[(pair, dev)]`` with pair 0-based
    and dev 0 (A) or 1 (B); ``source`` names where they came from in every error."""

    def __init__(self, curves: dict[tuple[int, int], _Curve], source: str):
        pairs = sorted({k for k, _ in curves})
        self.n_pairs = len(pairs)
        if pairs != list(range(self.n_pairs)):
            missing = sorted(set(range(max(pairs) + 1)) - set(pairs))
            raise MeasuredTableError(
                f"{source}: pairs must be 1..N with none missing; missing "
                f"{', '.join(str(k + 1) for k in missing)}")
        for k in pairs:
            for dev, name in ((0, "A"), (1, "B")):
                if (k, dev) not in curves:
                    raise MeasuredTableError(f"{source}: pair {k + 1} has no device {name}")
        self.curves = curves
        self.source = source

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, data: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]],
                    source: str) -> MeasuredDevices:
        """From ``{(pair 1-based, "A"|"B"): (currents in A, voltages in V)}``."""
        curves = {}
        for (pair, device), (current, volts) in data.items():
            where = f"{source}: pair {pair} device {device}"
            if device not in _DEVICES or int(pair) != pair or pair < 1:
                raise MeasuredTableError(f"{where}: no such device (pairs 1.., devices A, B)")
            current = np.asarray(current, dtype=float).ravel()
            volts = np.asarray(volts, dtype=float).ravel()
            if current.shape != volts.shape:
                raise MeasuredTableError(f"{where}: {current.size} currents, {volts.size} "
                                         "voltages")
            if not (np.all(np.isfinite(current)) and np.all(np.isfinite(volts))):
                raise MeasuredTableError(f"{where}: non-finite current or voltage")
            curves[(int(pair) - 1, _DEVICES[device])] = _curve(current, volts, where)
        if not curves:
            raise MeasuredTableError(f"{source}: no devices")
        return cls(curves, source)

    @classmethod
    def from_csv(cls, path: str | Path) -> MeasuredDevices:
        """From a CSV table with the columns of the module docstring."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise MeasuredTableError(f"{path}: cannot read the table: {exc.strerror}") from None
        reader = csv.DictReader(text.splitlines())
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise MeasuredTableError(
                f"{path}: missing column(s) {', '.join(missing)}; a measured-device table "
                f"has the columns {', '.join(COLUMNS)}")
        points: dict[tuple[int, str], tuple[list[float], list[float]]] = {}
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            try:
                pair = int(row["pair"])
                current = float(row["current_a"])
                volts = float(row["voltage_v"])
            except ValueError:
                raise MeasuredTableError(
                    f"{path}:{line}: pair must be an integer and current_a, voltage_v "
                    f"numbers; got {row['pair']!r}, {row['current_a']!r}, "
                    f"{row['voltage_v']!r}") from None
            device = row["device"].upper()
            if device not in _DEVICES or pair < 1:
                raise MeasuredTableError(
                    f"{path}:{line}: no device {row['device']!r} of pair {pair} (pairs 1.., "
                    "devices A, B)")
            i_list, v_list = points.setdefault((pair, device), ([], []))
            i_list.append(current)
            v_list.append(volts)
        return cls.from_arrays({k: (np.array(i), np.array(v)) for k, (i, v) in points.items()},
                               str(path))

    def to_csv(self, path: str | Path) -> None:
        """Write the tabulated points (the knots and their mean voltages) as a CSV table."""
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for (pair, dev), c in sorted(self.curves.items()):
                for x, y in zip(c.x, c.interp(c.x), strict=True):
                    w.writerow([pair + 1, "AB"[dev], f"{x:.9e}", f"{y:.9e}"])

    # -- evaluation ----------------------------------------------------------------------
    def range(self, pair: int, dev: int) -> tuple[float, float]:
        """(lowest, highest) measured current (A) of device ``dev`` of ``pair`` (0-based)."""
        c = self.curves[(pair, dev)]
        return c.lo, c.hi

    def covers(self, lo: float, hi: float) -> list[str]:
        """Devices whose measured range does not span [lo, hi] (A), as readable entries."""
        return [f"pair {k + 1} device {'AB'[d]} [{c.lo:.4g}, {c.hi:.4g}] A"
                for (k, d), c in sorted(self.curves.items())
                if c.lo > lo + 1e-15 or c.hi < hi - 1e-15]

    def _check(self, pair: int, dev: int, current: np.ndarray) -> None:
        c = self.curves[(pair, dev)]
        if current.size and (current.min() < c.lo or current.max() > c.hi):
            bad = current[(current < c.lo) | (current > c.hi)].ravel()[0]
            raise ValueError(
                f"{self.source}: pair {pair + 1} device {'AB'[dev]}: current {bad:.6g} A is "
                f"outside its measured range [{c.lo:.6g}, {c.hi:.6g}] A")

    def voltage(self, pair: int, dev: int, current, strict: bool = True) -> np.ndarray:
        """V (V) of one device at ``current`` (A): the interpolant; outside the measured
        range ValueError (``strict``) or the linear extrapolation with the end slope."""
        current = np.asarray(current, dtype=float)
        c = self.curves[(pair, dev)]
        if strict:
            self._check(pair, dev, current)
            return c.interp(current)
        inside = np.clip(current, c.lo, c.hi)
        return c.interp(inside) + (current - inside) * c.deriv(inside)

    def dvdi(self, pair: int, dev: int, current, strict: bool = True) -> np.ndarray:
        """dV/dI (Ohm) of one device at ``current`` (A): the interpolant's derivative (the
        end slope outside the range when not ``strict``)."""
        current = np.asarray(current, dtype=float)
        c = self.curves[(pair, dev)]
        if strict:
            self._check(pair, dev, current)
            return c.deriv(current)
        return c.deriv(np.clip(current, c.lo, c.hi))

    def voltage_one(self, pair: int, dev: int, current: float) -> float:
        """:meth:`voltage` (not strict) of one device at one current, in floats: the
        simulated instruments' hot path (scipy's call costs ~20x the arithmetic)."""
        c = self.curves[(pair, dev)]
        x = c.knots
        if current <= x[0] or current >= x[-1]:
            return float(self.voltage(pair, dev, current, strict=False))
        k = bisect.bisect_right(x, current) - 1
        t = current - x[k]
        c3, c2, c1, c0 = c.pieces[k]
        return ((c3 * t + c2) * t + c1) * t + c0

    def params_estimate(self) -> MTJParams:
        """Compact-model parameters that describe the curves roughly, shape (n_pairs, 2):
        r_p the large-current resistance V/I, i_off the current of the steepest fall of
        dV/dI (the transition's centre), others nominal (for readouts such as the
        oracle's I_off; the curves themselves are what the devices do)."""
        shape = (self.n_pairs, 2)
        r_p, i_off = np.empty(shape), np.empty(shape)
        for (k, d), c in self.curves.items():
            grid = np.linspace(c.lo, c.hi, 400)
            r_p[k, d] = c.interp(c.hi) / c.hi if c.hi > 0 else NOMINAL.r_p
            slope = np.gradient(c.deriv(grid), grid)
            i_off[k, d] = grid[int(np.argmin(slope))]
        full = {name: np.full(shape, float(getattr(NOMINAL, name)))
                for name in MTJParams.__dataclass_fields__}
        full.update(r_p=r_p, i_off=i_off)
        return MTJParams(**full)


class MeasuredBank(DeviceBank):
    """A :class:`~simulators.mtj.DeviceBank` whose devices are measured curves.

    Breakdown, the maximum-bias record and tuning work as for modelled devices (the
    breakdown voltage is NOMINAL's, 1 V, unless given); a tuning shift moves a curve along
    I by the shift, a tuning scale stretches it about its centre."""

    def __init__(self, measured: MeasuredDevices, v_breakdown: float = NOMINAL.v_breakdown):
        params = replace(measured.params_estimate(), v_breakdown=np.full(
            (measured.n_pairs, 2), float(v_breakdown)))
        super().__init__(params)
        self.measured = measured
        self._centre0 = np.asarray(params.i_off)

    def _local(self, pair: int, dev: int, current):
        """The current (A) on the measured curve that a tuned device at ``current`` maps to."""
        shift = self.tuning_shift[pair, dev] + self.relax_shift[pair, dev]
        centre = self._centre0[pair, dev] + shift
        return self._centre0[pair, dev] + (current - centre) / self.tuning_scale[pair, dev]

    def ideal_voltage_one(self, pair: int, dev: int, current: float) -> float:
        if self.destroyed[pair, dev]:
            return current * SHORT_RESISTANCE
        key = (pair, dev)
        tuned = self._scalar.get(key)  # (centre at fabrication, shift, scale) as floats
        if tuned is None:
            tuned = self._scalar[key] = (
                float(self._centre0[key]),
                float(self.tuning_shift[key] + self.relax_shift[key]),
                float(self.tuning_scale[key]))
        centre0, shift, scale = tuned
        return self.measured.voltage_one(pair, dev, centre0 + (current - centre0 - shift) / scale)

    def bias_one(self, pair: int, dev: int, current: float, v: float) -> float:
        key = (pair, dev)
        self.max_abs_i[key] = max(self.max_abs_i[key], abs(current))
        self.max_abs_v[key] = max(self.max_abs_v[key], abs(v))
        if not self.destroyed[key] and abs(v) > self.fabricated.v_breakdown[key]:
            self.destroyed[key] = True
            return current * SHORT_RESISTANCE
        return v

    def _each(self, index, current, fn) -> np.ndarray:
        rows, devs = (np.broadcast_to(np.asarray(i), np.shape(self.destroyed[index]))
                      for i in index)
        current = np.asarray(current, dtype=float)
        out = np.empty(np.broadcast_shapes(current.shape, rows.shape))
        cur = np.broadcast_to(current, out.shape)
        flat_r = np.broadcast_to(rows, out.shape)
        flat_d = np.broadcast_to(devs, out.shape)
        for k, d in set(zip(flat_r.ravel().tolist(), flat_d.ravel().tolist(), strict=True)):
            sel = (flat_r == k) & (flat_d == d)
            out[sel] = fn(k, d, cur[sel])
        return out

    def ideal_voltage(self, index, current):
        index = tuple(np.asarray(i) for i in index)

        def volts(k, d, i):
            if self.destroyed[k, d]:
                return i * SHORT_RESISTANCE
            return self.measured.voltage(k, d, self._local(k, d, i), strict=False)

        return self._each(index, current, volts)

    def exact_dvdi(self, index, current):
        index = tuple(np.asarray(i) for i in index)
        return self._each(index, current, lambda k, d, i: self.measured.dvdi(
            k, d, self._local(k, d, i), strict=False) / self.tuning_scale[k, d])

    def bias(self, index, current):
        current = np.asarray(current, dtype=float)
        v = self.ideal_voltage(index, current)
        return self._record_bias(index, current, v, self.fabricated.v_breakdown[index])
