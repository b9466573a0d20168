"""Compact model of a magnetic tunnel junction (MTJ), vectorised with numpy.

Units throughout: current in A, voltage in V, resistance in Ohm, conductance in S.

The free layer's projection on the reference layer follows the bias current,

    m(I) = tanh((I - I_off) / I_w),

and the junction conductance follows Slonczewski's angular dependence with a
bias-dependent tunnelling magnetoresistance,

    G(V, m) = (G_P + G_AP) / 2 + (G_P - G_AP) / 2 * m,
    G_AP    = G_P / (1 + TMR(V)),   TMR(V) = TMR0 / (1 + V^2 / V_h^2).

The voltage is the self-consistent solution of V = I / G(V, m(I)), found by Newton's
method on F(V) = V * G(V, m) - I. Its derivative dV/dI is computed analytically by
implicit differentiation, which is what the finite-difference measurement estimates.

A device driven beyond its breakdown voltage is destroyed for good: it then reads as a
short of ``SHORT_RESISTANCE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

SHORT_RESISTANCE = 50.0  # Ohm, a broken barrier
NEWTON_ITERATIONS = 12


@dataclass(frozen=True)
class MTJParams:
    """Device parameters; every field is an array (or scalar) and they broadcast together.

    r_p: parallel-state resistance (Ohm); tmr0: zero-bias TMR ratio (1.5 = 150 %);
    v_h: bias at which the TMR halves (V); i_off: current at the centre of the
    switching transition (A); i_w: width of the transition (A); v_breakdown: barrier
    breakdown voltage (V).
    """

    r_p: np.ndarray | float = 3.0e3
    tmr0: np.ndarray | float = 1.5
    v_h: np.ndarray | float = 0.5
    i_off: np.ndarray | float = 40e-6
    i_w: np.ndarray | float = 25e-6
    v_breakdown: np.ndarray | float = 1.0

    def take(self, index) -> MTJParams:
        """The parameters of the devices selected by a numpy index."""
        return replace(
            self, **{f.name: np.asarray(getattr(self, f.name))[index] for f in fields(self)}
        )


NOMINAL = MTJParams()


def magnetisation(p: MTJParams, current):
    """Free-layer projection m(I) in [-1, 1] for a current in A."""
    return np.tanh((np.asarray(current, dtype=float) - p.i_off) / p.i_w)


def _tmr(p: MTJParams, v):
    return p.tmr0 / (1.0 + (v / p.v_h) ** 2)


def conductance(p: MTJParams, v, m):
    """Junction conductance G(V, m) in S."""
    g_p = 1.0 / p.r_p
    g_ap = g_p / (1.0 + _tmr(p, v))
    return 0.5 * (g_p + g_ap) + 0.5 * (g_p - g_ap) * m


def _dg_dv(p: MTJParams, v, m):
    g_p = 1.0 / p.r_p
    t = _tmr(p, v)
    dt_dv = -p.tmr0 * 2.0 * v / p.v_h**2 / (1.0 + (v / p.v_h) ** 2) ** 2
    # G = g_p/2 * (1 + m) + g_p/2 * (1 - m) / (1 + T)
    return -0.5 * g_p * (1.0 - m) * dt_dv / (1.0 + t) ** 2


def voltage(p: MTJParams, current):
    """Voltage (V) across an intact junction carrying ``current`` (A)."""
    i = np.asarray(current, dtype=float)
    m = magnetisation(p, i)
    v = i * p.r_p * (1.0 + 0.5 * p.tmr0 * (1.0 - m))  # fair first guess, same sign as i
    for _ in range(NEWTON_ITERATIONS):
        g = conductance(p, v, m)
        v = v - (v * g - i) / (g + v * _dg_dv(p, v, m))
    return v


def dvdi(p: MTJParams, current):
    """Analytic differential resistance dV/dI (Ohm) of an intact junction at ``current`` (A)."""
    i = np.asarray(current, dtype=float)
    m = magnetisation(p, i)
    v = voltage(p, i)
    g_p = 1.0 / p.r_p
    t = _tmr(p, v)
    dg_dm = 0.5 * g_p * t / (1.0 + t)
    dm_di = (1.0 - m**2) / p.i_w
    return (1.0 - v * dg_dm * dm_di) / (conductance(p, v, m) + v * _dg_dv(p, v, m))


def voltage_scalar(r_p: float, tmr0: float, v_h: float, i_off: float, i_w: float,
                   current: float) -> float:
    """:func:`voltage` for one intact device, in plain floats.

    The simulated instruments solve one device per reading; numpy's per-call overhead on
    one-element arrays would cost ~40x more than the arithmetic.
    """
    m = math.tanh((current - i_off) / i_w)
    g_p = 1.0 / r_p
    v = current * r_p * (1.0 + 0.5 * tmr0 * (1.0 - m))
    for _ in range(NEWTON_ITERATIONS):
        x = 1.0 + (v / v_h) ** 2
        t = tmr0 / x
        g = 0.5 * g_p * (1.0 + m) + 0.5 * g_p * (1.0 - m) / (1.0 + t)
        dt_dv = -tmr0 * 2.0 * v / (v_h * v_h) / (x * x)
        dg_dv = -0.5 * g_p * (1.0 - m) * dt_dv / (1.0 + t) ** 2
        step = (v * g - current) / (g + v * dg_dv)
        v -= step
        if abs(step) <= 1e-15 * (abs(v) + 1e-12):
            break
    return v


@dataclass(frozen=True)
class Variability:
    """Device-to-device spread and noise of a population of MTJ pairs.

    spread: relative sigma of each pair's parameters around nominal; mismatch: relative
    sigma between the two devices of one pair; smu_noise_v: SMU voltage read noise (V rms)
    at 1 NPLC, falling as 1/sqrt(NPLC); adc_noise_v: input-referred ADC noise (V rms) for a
    1 ms integration, falling as 1/sqrt(integration time); drift_a_per_sqrt_s: random-walk
    drift of every device's I_off (A per sqrt(s)), 0 for none.
    """

    name: str = "nominal"
    spread: float = 0.05
    mismatch: float = 0.02
    smu_noise_v: float = 20e-6
    adc_noise_v: float = 5e-6
    drift_a_per_sqrt_s: float = 0.0


PRESETS: dict[str, Variability] = {
    "ideal": Variability("ideal", 0.0, 0.0, 0.0, 0.0),
    "nominal": Variability("nominal", 0.05, 0.02),
    "pronounced": Variability("pronounced", 0.10, 0.04),
}


def variability_preset(name: str) -> Variability:
    """The named preset; raises ValueError listing the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown variability preset {name!r}; known: {', '.join(PRESETS)}"
        ) from None


def sample_pairs(
    n_pairs: int,
    variability: Variability,
    rng: np.random.Generator,
    base: MTJParams = NOMINAL,
) -> MTJParams:
    """Draw parameters of ``n_pairs`` pairs, shape (n_pairs, 2): [:, 0] is device A."""

    def draw(value, sigma_rel, lognormal=False):
        pair = rng.standard_normal((n_pairs, 1))
        dev = rng.standard_normal((n_pairs, 2))
        if lognormal:
            return value * np.exp(variability.spread * pair + variability.mismatch * dev)
        return value * (1.0 + sigma_rel * (variability.spread * pair + variability.mismatch * dev))

    return MTJParams(
        r_p=draw(base.r_p, 1.0, lognormal=True),
        tmr0=draw(base.tmr0, 1.0),
        v_h=np.broadcast_to(np.asarray(base.v_h, dtype=float), (n_pairs, 2)).copy(),
        i_off=draw(base.i_off, 1.0),
        i_w=draw(base.i_w, 1.0),
        v_breakdown=draw(base.v_breakdown, 0.5),
    )


class DeviceBank:
    """A stateful population of junctions: tuning, breakdown and the maximum-bias record.

    ``params`` holds the as-fabricated parameters; the non-volatile tuning state shifts
    I_off by ``tuning_shift`` (A) and scales I_w by ``tuning_scale``, and persists until
    re-tuned. Every bias applied through :meth:`bias` is recorded in ``max_abs_v`` and
    ``max_abs_i``; a junction that sees more than its breakdown voltage is destroyed.
    """

    def __init__(self, params: MTJParams):
        self.fabricated = params
        shape = np.broadcast_shapes(*(np.shape(getattr(params, f.name)) for f in fields(params)))
        self.shape = shape
        self.tuning_shift = np.zeros(shape)
        self.tuning_scale = np.ones(shape)
        self.destroyed = np.zeros(shape, dtype=bool)
        self.max_abs_v = np.zeros(shape)
        self.max_abs_i = np.zeros(shape)
        self._scalar: dict[tuple[int, int], tuple[float, ...]] = {}

    @property
    def params(self) -> MTJParams:
        """Present parameters, with the tuning state applied."""
        p = self.fabricated
        return replace(p, i_off=p.i_off + self.tuning_shift, i_w=p.i_w * self.tuning_scale)

    def tune(self, index, shift_a: float = 0.0, scale: float = 1.0) -> None:
        """Set the non-volatile tuning state of the devices at ``index``."""
        if np.any(np.asarray(scale) <= 0):
            raise ValueError(f"tuning scale must be positive, got {scale}")
        self.tuning_shift[index] = shift_a
        self.tuning_scale[index] = scale
        self._scalar.clear()

    def tuning_state(self, index) -> tuple[float | np.ndarray, float | np.ndarray]:
        """(I_off shift in A, I_w scale) of the devices at ``index``: copies, not views."""
        return np.copy(self.tuning_shift[index])[()], np.copy(self.tuning_scale[index])[()]

    def device(self, pair: int, dev: int) -> tuple[float, ...]:
        """(r_p, tmr0, v_h, i_off, i_w, v_breakdown) of one device as floats, tuning applied."""
        key = (pair, dev)
        if key not in self._scalar:
            p = self.params
            self._scalar[key] = tuple(
                float(np.broadcast_to(getattr(p, f.name), self.shape)[key]) for f in fields(p)
            )
        return self._scalar[key]

    def ideal_voltage_one(self, pair: int, dev: int, current: float) -> float:
        """:meth:`ideal_voltage` of one device, in floats."""
        if self.destroyed[pair, dev]:
            return current * SHORT_RESISTANCE
        return voltage_scalar(*self.device(pair, dev)[:5], current)

    def bias_one(self, pair: int, dev: int, current: float, v: float) -> float:
        """Record that one device carries ``current`` (A) at its ideal voltage ``v`` (V).

        The scalar twin of :meth:`bias`, for a voltage already solved; returns the
        voltage the device shows afterwards (a short's, if this destroyed it).
        """
        key = (pair, dev)
        if abs(current) > self.max_abs_i[key]:
            self.max_abs_i[key] = abs(current)
        if abs(v) > self.max_abs_v[key]:
            self.max_abs_v[key] = abs(v)
        if not self.destroyed[key] and abs(v) > self.device(pair, dev)[5]:
            self.destroyed[key] = True
            self._scalar.pop(key, None)
            return current * SHORT_RESISTANCE
        return v

    def ideal_voltage(self, index, current):
        """Voltage (V) the devices at ``index`` would show at ``current`` (A); no side effects."""
        v = voltage(self.params.take(index), current)
        return np.where(self.destroyed[index], np.asarray(current) * SHORT_RESISTANCE, v)

    def bias(self, index, current):
        """Drive ``current`` (A) through the devices at ``index``; returns their voltage (V).

        Records the largest |V| and |I| each device saw and destroys any device driven
        beyond its breakdown voltage (it then reads as a short).
        """
        current = np.asarray(current, dtype=float)
        v = self.ideal_voltage(index, current)
        np.maximum.at(self.max_abs_i, index, np.abs(current))
        np.maximum.at(self.max_abs_v, index, np.abs(v))
        broken = np.abs(v) > np.asarray(self.params.v_breakdown)[index]
        if np.any(broken):
            idx = np.zeros(self.shape, dtype=bool)
            idx[index] = broken
            self.destroyed |= idx
            v = np.where(broken, current * SHORT_RESISTANCE, v)
        return v
