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

Devices differ in shape as well as in scale (see :mod:`simulators.device_shapes`): a
bias-asymmetric TMR (V_h+ != V_h-), a multi-domain free layer

    m(I) = (1 - w1 - w2) tanh((I - I_off) / I_w) + sum_k w_k tanh((I - I_off - d_k) / (s_k I_w)),

hysteresis (I_off shifted by +-i_hyst with the branch, held by :class:`DeviceBank`) and a
telegraph fluctuation of m (its state held by :class:`DeviceBank`; the functions here give
the time-averaged curve, whose dV/dI the oracle reports). With the shape fields at 0 the
model is the single-tanh, symmetric one above.

A device driven beyond its breakdown voltage is destroyed for good: it then reads as a
short of ``SHORT_RESISTANCE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from simulators.device_shapes import (
    HYST_SWITCH_WIDTHS,
    ShapeSpread,
    sample_shapes,
    telegraph_occupation,
    telegraph_step,
    temperature_factors,
)

SHORT_RESISTANCE = 50.0  # Ohm, a broken barrier
NEWTON_ITERATIONS = 12


@dataclass(frozen=True)
class MTJParams:
    """Device parameters; every field is an array (or scalar) and they broadcast together.

    r_p: parallel-state resistance (Ohm); tmr0: zero-bias TMR ratio (1.5 = 150 %);
    v_h: bias at which the TMR halves (V); i_off: current at the centre of the
    switching transition (A); i_w: width of the transition (A); v_breakdown: barrier
    breakdown voltage (V).

    Shape fields (0: off; see :mod:`simulators.device_shapes` for the physics and ranges):
    bias_asym: TMR bias asymmetry a, V_h+- = v_h (1 +- a); md_w1, md_w2: weights of two
    free-layer sub-domains; md_d1, md_d2: their transition offsets from I_off (A); md_s1,
    md_s2: their widths relative to i_w; i_hyst: hysteresis half-width (A; the branch is
    a :class:`DeviceBank` state, already in i_off of ``DeviceBank.params``); rtn_amp:
    telegraph amplitude in m; rtn_i: bias scale of its dwell times (A); rtn_tau: its
    dwell time at I_off (s).
    """

    r_p: np.ndarray | float = 3.0e3
    tmr0: np.ndarray | float = 1.5
    v_h: np.ndarray | float = 0.5
    i_off: np.ndarray | float = 40e-6
    i_w: np.ndarray | float = 25e-6
    v_breakdown: np.ndarray | float = 1.0
    bias_asym: np.ndarray | float = 0.0
    md_w1: np.ndarray | float = 0.0
    md_w2: np.ndarray | float = 0.0
    md_d1: np.ndarray | float = 0.0
    md_d2: np.ndarray | float = 0.0
    md_s1: np.ndarray | float = 1.0
    md_s2: np.ndarray | float = 1.0
    i_hyst: np.ndarray | float = 0.0
    rtn_amp: np.ndarray | float = 0.0
    rtn_i: np.ndarray | float = 2e-6
    rtn_tau: np.ndarray | float = 20e-3

    def take(self, index) -> MTJParams:
        """The parameters of the devices selected by a numpy index."""
        return replace(
            self, **{f.name: np.asarray(getattr(self, f.name))[index] for f in fields(self)}
        )


NOMINAL = MTJParams()
#: The fields that change the response's shape (beyond scale); all 0 (md_s* 1) on NOMINAL.
SHAPE_FIELDS = ("bias_asym", "md_w1", "md_w2", "md_d1", "md_d2", "md_s1", "md_s2",
                "i_hyst", "rtn_amp", "rtn_i", "rtn_tau")


def _multidomain(p: MTJParams) -> bool:
    return bool(np.any(np.asarray(p.md_w1) != 0) or np.any(np.asarray(p.md_w2) != 0))


def magnetisation(p: MTJParams, current):
    """Free-layer projection m(I) in [-1, 1] for a current in A (time-averaged)."""
    x = np.asarray(current, dtype=float) - p.i_off
    if not _multidomain(p):
        return np.tanh(x / p.i_w)
    w0 = 1.0 - p.md_w1 - p.md_w2
    return (w0 * np.tanh(x / p.i_w) + p.md_w1 * np.tanh((x - p.md_d1) / (p.md_s1 * p.i_w))
            + p.md_w2 * np.tanh((x - p.md_d2) / (p.md_s2 * p.i_w)))


def _dm_di(p: MTJParams, current):
    """dm/dI (1/A) of :func:`magnetisation`."""
    x = np.asarray(current, dtype=float) - p.i_off
    if not _multidomain(p):
        return (1.0 - np.tanh(x / p.i_w) ** 2) / p.i_w
    w0 = 1.0 - p.md_w1 - p.md_w2
    out = w0 * (1.0 - np.tanh(x / p.i_w) ** 2) / p.i_w
    for w, d, s in ((p.md_w1, p.md_d1, p.md_s1), (p.md_w2, p.md_d2, p.md_s2)):
        out = out + w * (1.0 - np.tanh((x - d) / (s * p.i_w)) ** 2) / (s * p.i_w)
    return out


def _v_h(p: MTJParams, v):
    """Bias (V) at which the TMR halves, on the side of ``v``: v_h (1 + a sign(v))."""
    return p.v_h * (1.0 + p.bias_asym * np.sign(v))


def _tmr(p: MTJParams, v):
    return p.tmr0 / (1.0 + (v / _v_h(p, v)) ** 2)


def conductance(p: MTJParams, v, m):
    """Junction conductance G(V, m) in S."""
    g_p = 1.0 / p.r_p
    g_ap = g_p / (1.0 + _tmr(p, v))
    return 0.5 * (g_p + g_ap) + 0.5 * (g_p - g_ap) * m


def _dg_dv(p: MTJParams, v, m):
    g_p = 1.0 / p.r_p
    t = _tmr(p, v)
    v_h = _v_h(p, v)  # constant on each side of 0, where dTMR/dV is 0 from both sides
    dt_dv = -p.tmr0 * 2.0 * v / v_h**2 / (1.0 + (v / v_h) ** 2) ** 2
    # G = g_p/2 * (1 + m) + g_p/2 * (1 - m) / (1 + T)
    return -0.5 * g_p * (1.0 - m) * dt_dv / (1.0 + t) ** 2


def voltage(p: MTJParams, current, dm=0.0):
    """Voltage (V) across an intact junction carrying ``current`` (A); ``dm``: an offset of
    m (a telegraph state), clipped so that |m| <= 1."""
    i = np.asarray(current, dtype=float)
    m = magnetisation(p, i)
    if np.any(np.asarray(dm) != 0):
        m = np.clip(m + dm, -1.0, 1.0)
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
    dm_di = _dm_di(p, i)
    return (1.0 - v * dg_dm * dm_di) / (conductance(p, v, m) + v * _dg_dv(p, v, m))


def voltage_scalar(r_p: float, tmr0: float, v_h: float, i_off: float, i_w: float,
                   current: float) -> float:
    """:func:`voltage` for one intact device, in plain floats.

    The simulated instruments solve one device per reading; numpy's per-call overhead on
    one-element arrays would cost ~40x more than the arithmetic.
    """
    return _newton_scalar(r_p, tmr0, v_h, math.tanh((current - i_off) / i_w), current)


def _newton_scalar(r_p: float, tmr0: float, v_h: float, m: float, current: float) -> float:
    """The voltage (V) solving V G(V, m) = I for one device at free-layer projection
    ``m``, by Newton's method from a first guess of the right sign."""
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


def voltage_scalar_shaped(dev: tuple[float, ...], current: float, i_off: float,
                          dm: float = 0.0) -> float:
    """:func:`voltage` for one intact device of any shape, in floats: ``dev`` is the
    device's fields in MTJParams order, ``i_off`` (A) the transition centre to use (the
    hysteresis branch applied), ``dm`` a telegraph offset of m."""
    (r_p, tmr0, v_h, _, i_w, _, asym, w1, w2, d1, d2, s1, s2) = dev[:13]
    x = current - i_off
    m = (1.0 - w1 - w2) * math.tanh(x / i_w)
    if w1:
        m += w1 * math.tanh((x - d1) / (s1 * i_w))
    if w2:
        m += w2 * math.tanh((x - d2) / (s2 * i_w))
    m = min(1.0, max(-1.0, m + dm))
    # V has the sign of the current, so the side of the asymmetric V_h is known up front.
    v_h = v_h * (1.0 + asym) if current >= 0 else v_h * (1.0 - asym)
    return _newton_scalar(r_p, tmr0, v_h, m, current)


@dataclass(frozen=True)
class Variability:
    """Device-to-device spread and noise of a population of MTJ pairs.

    spread: relative sigma of each pair's parameters around nominal; mismatch: relative
    sigma between the two devices of one pair; smu_noise_v: SMU voltage read noise (V rms)
    at 1 NPLC, falling as 1/sqrt(NPLC); adc_noise_v: input-referred ADC noise (V rms) for a
    1 ms integration, falling as 1/sqrt(integration time); drift_a_per_sqrt_s: random-walk
    drift of every device's I_off (A per sqrt(s)), 0 for none.

    stream: 0 draws the devices from the caller's generator as it is (the ``nominal`` and
    ``ideal`` presets, unchanged since they were introduced); any other value draws them
    from a stream of their own (seeded by one draw of the caller's generator and
    ``stream``), so that two presets give independent devices for one seed, not the same
    normal draws scaled. shapes: the distributions of the response shapes
    (:class:`~simulators.device_shapes.ShapeSpread`); temperature_k: device temperature
    (K, reference 300 K); relax_fraction, relax_tau_s: a non-volatile I_off shift
    (programmed or drifted) relaxes by this fraction of itself with this time constant (s).
    """

    name: str = "nominal"
    spread: float = 0.05
    mismatch: float = 0.02
    smu_noise_v: float = 20e-6
    adc_noise_v: float = 5e-6
    drift_a_per_sqrt_s: float = 0.0
    stream: int = 0
    shapes: ShapeSpread = ShapeSpread()
    temperature_k: float = 300.0
    relax_fraction: float = 0.0
    relax_tau_s: float = 300.0

    @property
    def shaped(self) -> bool:
        """True if the devices differ in shape (not only in scale) or relax."""
        return self.shapes != ShapeSpread() or self.relax_fraction > 0


# Shape presets: parameters chosen from the literature ranges in simulators.device_shapes,
# before any training was run on them (not tuned to make one derivative source win).
_HYSTERETIC = ShapeSpread(hyst_iw=0.2)
_MULTIDOMAIN = ShapeSpread(asym_mean=0.12, asym_sigma=0.05, md_weight=0.15)
_TELEGRAPH = ShapeSpread(rtn_fraction=0.5, rtn_amp=0.04, rtn_i_a=2e-6, rtn_tau_s=20e-3)
_REALISTIC = ShapeSpread(asym_mean=0.12, asym_sigma=0.05, md_weight=0.08, hyst_iw=0.1,
                         rtn_fraction=0.25, rtn_amp=0.03, rtn_i_a=2e-6, rtn_tau_s=20e-3)

PRESETS: dict[str, Variability] = {
    "ideal": Variability("ideal", 0.0, 0.0, 0.0, 0.0),
    "nominal": Variability("nominal", 0.05, 0.02),
    "pronounced": Variability("pronounced", 0.10, 0.04, stream=2),
    # Shapes, one mechanism each, on the nominal spread and noise:
    "hysteretic": Variability("hysteretic", 0.05, 0.02, stream=3, shapes=_HYSTERETIC),
    "multidomain": Variability("multidomain", 0.05, 0.02, stream=4, shapes=_MULTIDOMAIN),
    "telegraph": Variability("telegraph", 0.05, 0.02, stream=5, shapes=_TELEGRAPH),
    # Everything at once, at moderate strength, with drift and slow relaxation on:
    "realistic": Variability("realistic", 0.08, 0.03, drift_a_per_sqrt_s=10e-9, stream=6,
                             shapes=_REALISTIC, relax_fraction=0.1, relax_tau_s=300.0),
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
    """Draw parameters of ``n_pairs`` pairs, shape (n_pairs, 2): [:, 0] is device A.

    Every field comes back as an (n_pairs, 2) array. A preset with a ``stream`` draws from
    its own generator (see :class:`Variability`); the shapes are drawn after the scales.
    """
    if variability.stream:
        rng = np.random.default_rng([int(rng.integers(2**63)), int(variability.stream)])
    if variability.temperature_k != 300.0:
        f = temperature_factors(variability.temperature_k)
        base = replace(base, **{k: np.asarray(getattr(base, k)) * f[k] for k in f})

    def draw(value, sigma_rel, lognormal=False):
        pair = rng.standard_normal((n_pairs, 1))
        dev = rng.standard_normal((n_pairs, 2))
        if lognormal:
            return value * np.exp(variability.spread * pair + variability.mismatch * dev)
        return value * (1.0 + sigma_rel * (variability.spread * pair + variability.mismatch * dev))

    drawn = dict(
        r_p=draw(base.r_p, 1.0, lognormal=True),
        tmr0=draw(base.tmr0, 1.0),
        i_off=draw(base.i_off, 1.0),
        i_w=draw(base.i_w, 1.0),
        v_breakdown=draw(base.v_breakdown, 0.5),
    )
    drawn.update(sample_shapes(n_pairs, variability.shapes.validate(), drawn["i_w"], rng))
    full = {f.name: np.broadcast_to(np.asarray(drawn.get(f.name, getattr(base, f.name)),
                                               dtype=float), (n_pairs, 2)).copy()
            for f in fields(MTJParams)}
    return MTJParams(**full)


_FIELDS = tuple(f.name for f in fields(MTJParams))
_I_OFF, _I_W, _HYST, _RTN_AMP, _RTN_I, _RTN_TAU = (
    _FIELDS.index(k) for k in ("i_off", "i_w", "i_hyst", "rtn_amp", "rtn_i", "rtn_tau"))


class DeviceBank:
    """A stateful population of junctions: tuning, breakdown and the maximum-bias record.

    ``params`` holds the as-fabricated parameters; the non-volatile tuning state shifts
    I_off by ``tuning_shift`` (A) and scales I_w by ``tuning_scale``, and persists until
    re-tuned. Every bias applied through :meth:`bias` is recorded in ``max_abs_v`` and
    ``max_abs_i``; a junction that sees more than its breakdown voltage is destroyed.

    Shape states: ``branch`` (+1 the up branch, transition at I_off + i_hyst; -1 the down
    branch) follows each device's bias history; ``rtn_state`` (0/1) is each telegraph
    fluctuator's state, advanced in time by :meth:`advance` at the device's last bias
    current ``last_current`` (A); ``relax_shift`` (A) is the relaxed part of the
    non-volatile shift (:meth:`advance`).
    """

    def __init__(self, params: MTJParams):
        shape = np.broadcast_shapes(*(np.shape(getattr(params, f.name)) for f in fields(params)))
        self.fabricated = replace(params, **{
            f.name: np.broadcast_to(np.asarray(getattr(params, f.name), dtype=float),
                                    shape).copy() for f in fields(params)})
        self.shape = shape
        self.tuning_shift = np.zeros(shape)
        self.tuning_scale = np.ones(shape)
        self.destroyed = np.zeros(shape, dtype=bool)
        self.max_abs_v = np.zeros(shape)
        self.max_abs_i = np.zeros(shape)
        self.branch = np.ones(shape)
        self.rtn_state = np.zeros(shape)
        self.last_current = np.zeros(shape)
        self.relax_shift = np.zeros(shape)
        fab = self.fabricated
        self._hysteretic = bool(np.any(fab.i_hyst != 0))
        self._telegraph = bool(np.any(fab.rtn_amp != 0))
        self._shaped_dev = np.zeros(shape, dtype=bool)
        for name in SHAPE_FIELDS:
            if name in ("md_s1", "md_s2", "rtn_i", "rtn_tau"):
                continue  # inert while the weight/amplitude they belong to is 0
            self._shaped_dev |= getattr(fab, name) != 0
        # Per device: (floats in field order, centre not including the branch; shaped?)
        self._scalar: dict[tuple[int, int], tuple[tuple[float, ...], bool]] = {}

    @property
    def params(self) -> MTJParams:
        """Present parameters, with the tuning state, relaxation and hysteresis branch
        applied."""
        p = self.fabricated
        return replace(p, i_off=p.i_off + self.tuning_shift + self.relax_shift
                       + p.i_hyst * self.branch, i_w=p.i_w * self.tuning_scale)

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

    def _one(self, key: tuple[int, int]) -> tuple[tuple[float, ...], bool]:
        """(the device's floats in field order, I_off without the branch; shaped?)."""
        got = self._scalar.get(key)
        if got is None:
            fab = self.fabricated
            row = [float(getattr(fab, name)[key]) for name in _FIELDS]
            row[_I_OFF] += float(self.tuning_shift[key] + self.relax_shift[key])
            row[_I_W] *= float(self.tuning_scale[key])
            got = self._scalar[key] = (tuple(row), bool(self._shaped_dev[key]))
        return got

    def device(self, pair: int, dev: int) -> tuple[float, ...]:
        """(r_p, tmr0, v_h, i_off, i_w, v_breakdown, shape fields...) of one device as
        floats, tuning and hysteresis branch applied."""
        row, _ = self._one((pair, dev))
        if row[_HYST]:
            row = list(row)
            row[_I_OFF] += row[_HYST] * float(self.branch[pair, dev])
            row = tuple(row)
        return row

    def _branch_after(self, key: tuple[int, int], row: tuple[float, ...],
                      current: float) -> float:
        """The hysteresis branch of device ``key`` once it carries ``current`` (A)."""
        window = row[_HYST] + HYST_SWITCH_WIDTHS * row[_I_W]
        if current > row[_I_OFF] + window:
            return -1.0
        if current < row[_I_OFF] - window:
            return 1.0
        return float(self.branch[key])

    def ideal_voltage_one(self, pair: int, dev: int, current: float) -> float:
        """:meth:`ideal_voltage` of one device, in floats."""
        if self.destroyed[pair, dev]:
            return current * SHORT_RESISTANCE
        row, shaped = self._one((pair, dev))
        if not shaped:
            return voltage_scalar(row[0], row[1], row[2], row[3], row[4], current)
        i_off = row[_I_OFF]
        if row[_HYST]:
            i_off += row[_HYST] * self._branch_after((pair, dev), row, current)
        dm = 0.0
        if row[_RTN_AMP]:
            occupation = float(telegraph_occupation((current - row[_I_OFF]) / row[_RTN_I]))
            dm = row[_RTN_AMP] * (float(self.rtn_state[pair, dev]) - occupation)
        return voltage_scalar_shaped(row, current, i_off, dm)

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
        row, shaped = self._one(key)
        if shaped:
            if row[_HYST]:
                self.branch[key] = self._branch_after(key, row, current)
            self.last_current[key] = current
        if not self.destroyed[key] and abs(v) > row[5]:
            self.destroyed[key] = True
            return current * SHORT_RESISTANCE
        return v

    def _centre(self, index) -> np.ndarray:
        """I_off (A) of the devices at ``index`` without the hysteresis branch."""
        return (self.fabricated.i_off[index] + self.tuning_shift[index]
                + self.relax_shift[index])

    def _branches(self, index, current) -> np.ndarray:
        """Hysteresis branches of the devices at ``index`` once they carry ``current`` (A)."""
        fab = self.fabricated
        centre = self._centre(index)
        window = fab.i_hyst[index] + HYST_SWITCH_WIDTHS * fab.i_w[index] * self.tuning_scale[index]
        return np.where(current > centre + window, -1.0,
                        np.where(current < centre - window, 1.0, self.branch[index]))

    def _present(self, index, current) -> tuple[MTJParams, np.ndarray | float]:
        """Parameters of the devices at ``index`` once they carry ``current`` (A) (on the
        hysteresis branch it leaves them on) and their telegraph offset of m."""
        p = self.params.take(index)
        current = np.asarray(current, dtype=float)
        dm: np.ndarray | float = 0.0
        if self._hysteretic:
            p = replace(p, i_off=self._centre(index)
                        + p.i_hyst * self._branches(index, current))
        if self._telegraph:
            occupation = telegraph_occupation((current - self._centre(index)) / p.rtn_i)
            dm = p.rtn_amp * (self.rtn_state[index] - occupation)
        return p, dm

    def ideal_voltage(self, index, current):
        """Voltage (V) the devices at ``index`` would show at ``current`` (A); no side effects."""
        p, dm = self._present(index, current)
        v = voltage(p, current, dm)
        return np.where(self.destroyed[index], np.asarray(current) * SHORT_RESISTANCE, v)

    def exact_dvdi(self, index, current):
        """dV/dI (Ohm) of the time-averaged curve of the devices at ``index`` at ``current``
        (A), on the hysteresis branch they are on now; no side effects."""
        return dvdi(self.params.take(index), current)

    def bias(self, index, current):
        """Drive ``current`` (A) through the devices at ``index``; returns their voltage (V).

        Records the largest |V| and |I| each device saw and destroys any device driven
        beyond its breakdown voltage (it then reads as a short).
        """
        current = np.asarray(current, dtype=float)
        v = self.ideal_voltage(index, current)
        if self._hysteretic:
            # Vectorised callers pass one current per device (an index without repeats).
            self.branch[index] = self._branches(index, current)
        if self._telegraph or self._hysteretic:
            self.last_current[index] = current
        return self._record_bias(index, current, v, np.asarray(self.params.v_breakdown)[index])

    def _record_bias(self, index, current: np.ndarray, v: np.ndarray,
                     v_breakdown: np.ndarray) -> np.ndarray:
        """Record the largest |V| and |I| of the devices at ``index`` and destroy those
        driven beyond ``v_breakdown`` (V); returns the voltages they show afterwards."""
        np.maximum.at(self.max_abs_i, index, np.abs(current))
        np.maximum.at(self.max_abs_v, index, np.abs(v))
        broken = np.abs(v) > v_breakdown
        if np.any(broken):
            idx = np.zeros(self.shape, dtype=bool)
            idx[index] = broken
            self.destroyed |= idx
            v = np.where(broken, current * SHORT_RESISTANCE, v)
        return v

    @property
    def dynamic(self) -> bool:
        """True if :meth:`advance` changes anything without relaxation (telegraph noise)."""
        return self._telegraph

    def advance(self, dt: float, rng: np.random.Generator, relax_fraction: float = 0.0,
                relax_tau_s: float = 300.0) -> None:
        """Let ``dt`` seconds pass: telegraph fluctuators hop (at each device's last bias
        current, exactly for a two-state Markov process), and the relaxing part of the
        non-volatile shift moves towards -``relax_fraction`` x the shift with time constant
        ``relax_tau_s`` (s). Seeded by ``rng``."""
        if dt <= 0:
            return
        if self._telegraph:
            fab = self.fabricated
            centre = fab.i_off + self.tuning_shift + self.relax_shift
            x = (self.last_current - centre) / fab.rtn_i
            u = rng.random(self.shape)
            self.rtn_state = np.where(fab.rtn_amp != 0,
                                      telegraph_step(self.rtn_state, x, fab.rtn_tau, dt, u), 0.0)
        if relax_fraction > 0:
            target = -relax_fraction * self.tuning_shift
            self.relax_shift += (target - self.relax_shift) * (
                1.0 - math.exp(-dt / relax_tau_s))
            self._scalar.clear()
