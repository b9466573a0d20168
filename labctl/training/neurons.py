"""Hidden-neuron arrays built from pairs of magnetic tunnel junctions, and their activations.

Units throughout: current in A, voltage in V, differential resistance in Ohm.

Every hidden neuron is a pair of nominally identical MTJs. Device A is biased at the
neuron's current I and its voltage V_A(I) is the activation. The derivative that
backpropagation needs is measured, not computed, with a second bias step dI:

- ``fd``: one differential read, (V_B(I + dI) - V_A(I)) / dI. Any offset between the two
  devices of the pair shows up divided by dI, so this estimate is biased.
- ``fd-swap``: the same read plus one with the roles exchanged, (V_A(I + dI) - V_B(I)) / dI,
  averaged. The offsets cancel and what remains is the mean secant slope of the two
  devices over [I, I + dI].
- ``exact``: the analytic dV/dI of device A from the model; simulation only.

:class:`NeuronArray` is the interface shared by every backend (this module's
:class:`ModelNeurons`, the probe-station backend, replay of recorded sessions).
:class:`MTJActivation` turns a pre-activation into bias currents and the measured voltage
back into a normalised activation; :class:`TanhActivation` is the software baseline with
the same ``forward`` signature, :class:`LinearActivation` the identity (a linear control).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from statistics import NormalDist
from typing import Protocol, runtime_checkable

import numpy as np

from simulators.device_shapes import HYST_SWITCH_WIDTHS, telegraph_occupation
from simulators.measured_devices import MeasuredDevices
from simulators.mtj import (
    NOMINAL,
    MTJParams,
    Variability,
    conductance,
    dvdi,
    sample_pairs,
    variability_preset,
    voltage,
)

GRAD_MODES = ("fd-swap", "fd", "exact")
#: The hidden nonlinearity of the network under training: MTJ neurons, or a software
#: tanh or identity (controls).
ACTIVATIONS = ("mtj", "tanh", "linear")

# Current grid of the per-device lookup tables: cubic Hermite pieces 2 uA wide keep the
# interpolation error below 0.2 uV and 0.05 Ohm on the model's curves (two orders below
# the read noise) with 4 kB of table per neuron.
LUT_STEP_A = 2e-6
LUT_RANGE_A = (-120e-6, 120e-6)
# Beyond this many grid intervals per neuron (a 2 mA span) a call solves the model
# directly instead, so that an absurd current cannot allocate an absurd table.
LUT_MAX_INTERVALS = 1000
# Step of the central difference that gives the slopes of the tabulated derivative
# estimate at the grid points (the slope of V_A itself is the analytic dV/dI).
_SLOPE_STEP_A = 1e-9
# Time one sample's measurement takes on the model backend (s) beyond the SMU's NPLC
# integration at 60 Hz: the differential reads' integration; it paces drift and telegraph
# noise (the station backend uses its instruments' own time instead).
_LINE_FREQUENCY_HZ = 60.0
# I_off drift is applied in steps of this much measurement time (s): the random walk
# sampled every 30 s (55 nA rms per step at the realistic preset's 10 nA/sqrt(s)), the
# tables rebuilt exactly at each step, the devices static in between.
DRIFT_STEP_S = 30.0


@dataclass
class NeuronReadout:
    """One measurement of a neuron array.

    v: activation voltage V_A(I) in V, shape (batch, n).
    dvdi: derivative estimate dV/dI in Ohm of the array's grad mode, shape (batch, n).
    """

    v: np.ndarray
    dvdi: np.ndarray


@runtime_checkable
class NeuronArray(Protocol):
    """What a hidden layer needs from its neurons, whatever they are made of.

    ``n`` is the number of neurons; ``measure`` biases neuron j at ``currents[..., j]`` (A),
    shape (batch, n), and returns the activation voltages and derivative estimates.
    """

    n: int

    def measure(self, currents: np.ndarray) -> NeuronReadout:
        """Bias every neuron at its current (A) and read V (V) and dV/dI (Ohm)."""
        ...


class Activation(Protocol):
    """A hidden-layer nonlinearity: what :class:`labctl.training.mlp.MLP` calls in its forward pass.

    ``forward(z, neurons)`` returns ``(a, dadz, currents, readout)``: the activation, its
    derivative with respect to ``z`` as the backward pass should use it, and for
    hardware-backed activations the bias currents (A) and the raw readout (else None).
    """

    needs_neurons: bool

    def forward(
        self, z: np.ndarray, neurons: NeuronArray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, NeuronReadout | None]: ...


# Resolution of the Gaussian read noise: each draw is one of 2**16 equiprobable normal
# quantiles picked by 16 random bits (tails cut at 4.3 sigma, irrelevant for read noise).
NOISE_BITS = 16


@lru_cache(maxsize=1)
def normal_quantiles(bits: int = NOISE_BITS) -> np.ndarray:
    """The 2**bits equiprobable quantiles (bin midpoints) of N(0, 1), scaled to unit rms."""
    inv_cdf = NormalDist().inv_cdf
    q = np.array([inv_cdf((i + 0.5) / 2**bits) for i in range(2**bits)])
    return q / np.sqrt(np.mean(q**2))


class GaussianNoise:
    """Seeded, independent Gaussian noise in pairs of arrays of rms ``sigma_a``, ``sigma_b``.

    Each draw is one of the :data:`NOISE_BITS`-bit normal quantiles, picked by raw bits of
    ``bit_generator``: a table look-up is several times cheaper than
    ``Generator.standard_normal``, and noise would otherwise be the largest cost of a
    simulated measurement.
    """

    def __init__(self, bit_generator: np.random.BitGenerator, sigma_a: float, sigma_b: float):
        self._bits = bit_generator
        self.sigma_a, self.sigma_b = float(sigma_a), float(sigma_b)
        q = normal_quantiles()
        self._table_a = (q * self.sigma_a).astype(np.float32)
        self._table_b = (q * self.sigma_b).astype(np.float32)

    def draw(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``m`` pairs as two float32 arrays of length ``m``."""
        words = self._bits.random_raw((m + 1) // 2).view(np.uint16)  # 2m (+2) indices
        index = words[: 2 * m].astype(np.intp)
        return (
            np.take(self._table_a, index[:m], mode="wrap"),
            np.take(self._table_b, index[m:], mode="wrap"),
        )


def _check_grad(grad: str) -> str:
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {', '.join(GRAD_MODES)}; got {grad!r}")
    return grad


class ModelNeurons:
    """Simulated neuron array: ``n`` MTJ pairs drawn from a variability preset.

    Parameters
    ----------
    n: number of neurons (pairs).
    variability: preset name (any of :data:`simulators.mtj.PRESETS`) or a
        :class:`~simulators.mtj.Variability`; sets the spread, the in-pair mismatch, the
        read noise and the response shapes. Measurements are taken one sample after the
        other, each ``nplc / 60 Hz + 2 * adc_integration_s`` seconds long; in that time
        I_off drifts (``drift_a_per_sqrt_s``, in steps of DRIFT_STEP_S of measurement
        time, the tables rebuilt at each) and telegraph fluctuators hop (exact two-state
        Markov steps, seeded); a hysteretic device follows its branch through the samples in order.
        What this backend cannot do: relaxation of programmed shifts (nothing programs
        here), the hysteresis branch is device A's and is shared by device B of the pair
        (they differ only within dI of a switching threshold), and the telegraph
        offset's effect on V is linearised (dV/dm at the time-averaged m; amplitudes
        <= 0.1 of m, error < 1 % of the offset).
    temperature_k: device temperature (K), overriding the preset's (None: the preset's).
    measured: a :class:`~simulators.measured_devices.MeasuredDevices` table: the pairs are
        its pairs ``first_pair``, ``first_pair + 1``, ... (0-based) instead of drawn ones,
        their curves its interpolants; ``variability`` then sets only the read noise. A
        current outside a device's measured range raises ValueError naming it.
    seed: seeds the pair parameters (``np.random.default_rng(seed)``) and, through a
        separate stream, the read noise.
    di: bias step of the derivative measurement, A.
    grad: ``fd-swap``, ``fd`` or ``exact`` (see the module docstring).
    nplc: SMU integration time of the activation read in power-line cycles; the noise
        ``Variability.smu_noise_v`` (V rms at 1 NPLC) falls as 1/sqrt(nplc).
    adc_integration_s: integration time of each differential read, s; the noise
        ``Variability.adc_noise_v`` (V rms at 1 ms) falls as 1/sqrt(t / 1 ms).
    lut: if True (default) the noiseless V_A(I) and derivative-estimate curves of every
        pair are tabulated from the device model on a 2 uA grid (growing on demand when
        a current falls outside +-120 uA) and interpolated by cubic Hermite pieces (error
        < 0.2 uV, < 0.05 Ohm, far below the read noise), which makes a measurement a
        table look-up instead of a Newton solve. If False the device model is solved at
        every call (slow; the reference the table is tested against).
    params: the devices themselves, shape (n, 2) ([:, 0] device A), instead of drawing
        them from ``variability`` and ``seed`` (which then set only the read noise): e.g.
        the fitted models of measured devices (:mod:`labctl.wafer.measured_model`).

    The read noise is Gaussian (2**16 quantile levels, tails cut at 4.3 sigma, see
    :class:`GaussianNoise`): one draw of ``sigma_v`` on the activation and one of
    ``sigma_dvdi`` on the derivative estimate per neuron and sample, independent of
    each other and of every other reading. For ``fd-swap`` the two independent
    differential reads are averaged, so their noises combine into one draw of
    sigma_adc / (sqrt(2) * dI), the same distribution at half the cost.
    """

    def __init__(
        self,
        n: int,
        *,
        variability: str | Variability = "nominal",
        seed: int,
        di: float = 2e-6,
        grad: str = "fd-swap",
        nplc: float = 1.0,
        adc_integration_s: float = 1e-3,
        lut: bool = True,
        params: MTJParams | None = None,
        temperature_k: float | None = None,
        measured: MeasuredDevices | None = None,
        first_pair: int = 0,
    ):
        if int(n) != n or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if not di > 0:
            raise ValueError(f"di must be positive (A), got {di!r}")
        if not nplc > 0:
            raise ValueError(f"nplc must be positive, got {nplc!r}")
        if not adc_integration_s > 0:
            raise ValueError(f"adc_integration_s must be positive (s), got {adc_integration_s!r}")
        if isinstance(variability, str):
            variability = variability_preset(variability)
        if temperature_k is not None:
            variability = replace(variability, temperature_k=float(temperature_k))
        self.n = int(n)
        self.variability = variability
        self.seed = seed
        self.di = float(di)
        self.grad = _check_grad(grad)
        self.nplc = float(nplc)
        self.adc_integration_s = float(adc_integration_s)
        self.lut = bool(lut)
        self.measured = measured
        if measured is not None:
            if first_pair < 0 or first_pair + self.n > measured.n_pairs:
                raise ValueError(
                    f"{measured.source}: {self.n} neurons from pair {first_pair + 1} need "
                    f"{first_pair + self.n} pairs; the table has {measured.n_pairs}")
            self.first_pair = int(first_pair)
            self.pairs = None
            self.device_a = self.device_b = None
        elif params is not None:
            try:
                self.pairs = MTJParams(**{
                    f: np.broadcast_to(np.asarray(getattr(params, f), dtype=float),
                                       (self.n, 2)).copy()
                    for f in MTJParams.__dataclass_fields__})
            except ValueError:
                raise ValueError(
                    f"params must have shape ({self.n}, 2), got {np.shape(params.r_p)}"
                ) from None
            self.device_a = self.pairs.take((slice(None), 0))
            self.device_b = self.pairs.take((slice(None), 1))
        else:
            self.pairs = sample_pairs(self.n, variability, np.random.default_rng(seed))
            self.device_a = self.pairs.take((slice(None), 0))
            self.device_b = self.pairs.take((slice(None), 1))
        self.sigma_v = variability.smu_noise_v / math.sqrt(self.nplc)
        sigma_read = variability.adc_noise_v / math.sqrt(self.adc_integration_s / 1e-3)
        self.sigma_dvdi = {
            "fd": sigma_read / self.di,
            "fd-swap": sigma_read / (math.sqrt(2.0) * self.di),
            "exact": 0.0,
        }[self.grad]
        # A separate stream, so that the devices drawn for a seed do not depend on how many
        # measurements were made before. SFC64 because its raw bits are the cheapest.
        self._noise = GaussianNoise(
            np.random.SFC64(np.random.SeedSequence([0x6E6F6973, seed])),
            self.sigma_v,
            self.sigma_dvdi,
        )
        self._table_lo = 0.0
        self._table_k = 0
        self._tables: dict[np.dtype, np.ndarray] = {}
        self._col_offset = np.zeros(0, dtype=np.int32)
        # -- device dynamics (see the class docstring); each its own seeded stream ------
        self.sample_time_s = self.nplc / _LINE_FREQUENCY_HZ + 2.0 * self.adc_integration_s
        self.time_s = 0.0
        self._drift_sigma = float(variability.drift_a_per_sqrt_s) if measured is None else 0.0
        self._drift = np.zeros((self.n, 2))  # I_off drift of devices A, B (A)
        self._drift_table = np.zeros((self.n, 2))  # the drift the tables were built with
        self._drift_steps = 0
        self._drift_rng = np.random.default_rng([0x64726674, seed])
        a = self.device_a
        self._hysteretic = a is not None and bool(np.any(self.pairs.i_hyst != 0))
        self._telegraph = a is not None and bool(np.any(self.pairs.rtn_amp != 0))
        self._branch = np.ones(self.n)  # +1 the up branch, -1 the down branch (device A's)
        self._rtn = np.zeros((2, self.n))  # telegraph states of devices A and B
        self._rtn_rng = np.random.default_rng([0x72746E, seed])

    # -- noiseless physics -------------------------------------------------------------

    def _present_pairs(self) -> tuple[MTJParams, MTJParams]:
        """Devices A and B as they are now: drawn, drift applied; for a hysteretic array
        each twice along the neuron axis, the up branch (I_off + i_hyst) then the down
        branch (I_off - i_hyst)."""
        a, b = self.device_a, self.device_b
        if self._drift_sigma:
            a = replace(a, i_off=a.i_off + self._drift[:, 0])
            b = replace(b, i_off=b.i_off + self._drift[:, 1])
        if not self._hysteretic:
            return a, b

        def both(p: MTJParams) -> MTJParams:
            doubled = {f: np.concatenate([np.asarray(getattr(p, f))] * 2)
                       for f in p.__dataclass_fields__}
            doubled["i_off"] = np.concatenate([p.i_off + p.i_hyst, p.i_off - p.i_hyst])
            return MTJParams(**doubled)

        return both(a), both(b)

    def _measured_columns(self, current: np.ndarray, dev: int, fn: str) -> np.ndarray:
        """V (``fn`` "voltage") or dV/dI ("dvdi") of every neuron's measured device ``dev``
        at ``current[..., j]`` (A); ValueError outside a measured range."""
        out = np.empty(np.broadcast_shapes(current.shape, (self.n,)))
        cur = np.broadcast_to(current, out.shape)
        for j in range(self.n):
            out[..., j] = getattr(self.measured, fn)(self.first_pair + j, dev, cur[..., j])
        return out

    def _estimate_direct(self, current: np.ndarray, pairs=None) -> tuple[np.ndarray, np.ndarray]:
        """Noiseless V_A(I) (V) and derivative estimate (Ohm) by solving the device model
        (``pairs``: the (A, B) parameters to solve, default the present ones) or by
        evaluating the measured interpolants."""
        di = self.di
        if self.measured is not None:
            def volts(i, dev):
                return self._measured_columns(i, dev, "voltage")
            v_a = volts(current, 0)
            if self.grad == "exact":
                return v_a, self._measured_columns(current, 0, "dvdi")
        else:
            a, b = self._present_pairs() if pairs is None else pairs

            def volts(i, dev):
                return voltage(b if dev else a, i)
            v_a = volts(current, 0)
            if self.grad == "exact":
                return v_a, dvdi(a, current)
        if self.grad == "fd":
            d = (volts(current + di, 1) - v_a) / di
        else:
            forward = volts(current + di, 1) - v_a
            swapped = volts(current + di, 0) - volts(current, 1)
            d = (forward + swapped) / (2.0 * di)
        return v_a, d

    def _build_table(self, lo: float, hi: float) -> None:
        k = int(math.ceil((hi - lo) / LUT_STEP_A))
        pairs = self._present_pairs()
        m = int(np.size(pairs[0].r_p))  # neurons, twice over for a hysteretic array
        if m * (k + 1) >= 2**31:
            raise ValueError(f"{self.n} neurons are too many for one table; split the array")
        nodes = (lo + LUT_STEP_A * np.arange(k + 1))[:, None]  # (k + 1, 1), broadcast over m
        v, d = self._estimate_direct(nodes, pairs)
        dv = dvdi(pairs[0], nodes)
        dd = (
            self._estimate_direct(nodes + _SLOPE_STEP_A, pairs)[1]
            - self._estimate_direct(nodes - _SLOPE_STEP_A, pairs)[1]
        ) / (2 * _SLOPE_STEP_A)
        # Row j of neuron i holds the cubic c0 + c1 t + c2 t^2 + c3 t^3, t in [0, 1], of
        # V_A and then of the derivative estimate on [node j, node j + 1]. A last row holds
        # the constant value at the top node, so that the top edge needs no special case.
        # Neuron-major, so that one neuron's rows are adjacent in memory.
        table = np.zeros((m, k + 1, 8))
        for offset, f, df in ((0, v, dv), (4, d, dd)):
            f0, f1 = f[:-1].T, f[1:].T
            s0, s1 = LUT_STEP_A * df[:-1].T, LUT_STEP_A * df[1:].T
            table[:, :-1, offset] = f0
            table[:, :-1, offset + 1] = s0
            table[:, :-1, offset + 2] = 3.0 * (f1 - f0) - 2.0 * s0 - s1
            table[:, :-1, offset + 3] = 2.0 * (f0 - f1) + s0 + s1
            table[:, -1, offset] = f[-1]
        self._table_lo = lo
        self._table_k = k
        self._tables = {np.dtype(np.float64): table.reshape(-1, 8)}
        self._col_offset = (np.arange(m) * (k + 1)).astype(np.int32)
        self._drift_table = self._drift.copy()

    def _table_covers(self, current: np.ndarray) -> bool:
        """Make the table cover ``current`` (A), growing it if needed; False if too wide.

        Covering means one grid step of room on either side, so that float32 rounding of
        the table position can never leave the table.
        """
        lo_needed, hi_needed = float(current.min()), float(current.max())
        if not (math.isfinite(lo_needed) and math.isfinite(hi_needed)):
            raise ValueError("currents must be finite")
        lo = self._table_lo
        hi = self._table_lo + LUT_STEP_A * self._table_k
        if self._table_k and lo + LUT_STEP_A <= lo_needed and hi_needed <= hi - LUT_STEP_A:
            if self._drift_sigma and not np.array_equal(self._drift, self._drift_table):
                self._build_table(lo, hi)
            return True
        if self._table_k == 0:
            lo, hi = LUT_RANGE_A
        # Grow with a margin so that a slowly widening range rebuilds rarely.
        margin = 0.25 * (hi - lo)
        if lo_needed < lo + LUT_STEP_A:
            lo = lo_needed - margin
        if hi_needed > hi - LUT_STEP_A:
            hi = hi_needed + margin
        if (hi - lo) / LUT_STEP_A > LUT_MAX_INTERVALS:
            return False
        self._build_table(lo, hi)
        return True

    def _estimate_lut(self, current: np.ndarray, v: np.ndarray, d: np.ndarray,
                      col_offset: np.ndarray | None = None) -> None:
        """Noiseless V_A (V) into ``v`` and derivative estimate (Ohm) into ``d``, from the
        table (which must cover ``current`` and exist in its dtype); ``col_offset``: each
        element's neuron offset in the table (default: neuron j's, broadcast)."""
        table = self._tables[current.dtype]
        u = current * (1.0 / LUT_STEP_A)
        u -= self._table_lo / LUT_STEP_A  # grid position, >= 1 by the coverage margin
        # int32, not intp: float-to-int64 conversion has no vector instruction here.
        k = u.astype(np.int32)  # truncation is floor, as u > 0
        u -= k.astype(u.dtype)  # position in the grid interval, in [0, 1)
        k += self._col_offset if col_offset is None else col_offset
        # mode="clip" skips the bounds check that raising would need; k is in range.
        c = np.take(table, k, axis=0, mode="clip")  # (rows, n, 8): V_A, then derivative
        np.multiply(c[..., 3], u, out=v)
        v += c[..., 2]
        v *= u
        v += c[..., 1]
        v *= u
        v += c[..., 0]
        np.multiply(c[..., 7], u, out=d)
        d += c[..., 6]
        d *= u
        d += c[..., 5]
        d *= u
        d += c[..., 4]

    # -- device dynamics -----------------------------------------------------------------

    def _advance_drift(self, rows: int) -> None:
        """``rows`` samples' time passes: I_off of every device random-walks."""
        self.time_s += rows * self.sample_time_s
        if self._drift_sigma:
            steps = int(self.time_s // DRIFT_STEP_S) - self._drift_steps
            if steps > 0:
                self._drift_steps += steps
                self._drift += self._drift_rng.normal(
                    0.0, self._drift_sigma * math.sqrt(steps * DRIFT_STEP_S), self._drift.shape)

    def _branches(self, current: np.ndarray) -> np.ndarray:
        """Device A's hysteresis branch (+1 up, -1 down) at every sample of ``current``
        (A, (rows, n), in measurement order), carrying the branch on between calls."""
        a = self.device_a
        centre = a.i_off + (self._drift[:, 0] if self._drift_sigma else 0.0)
        window = a.i_hyst + HYST_SWITCH_WIDTHS * a.i_w
        flat = current.reshape(-1, self.n)
        event = np.where(flat > centre + window, -1.0, np.where(flat < centre - window, 1.0, 0.0))
        rows = np.arange(flat.shape[0])[:, None]
        last = np.maximum.accumulate(np.where(event != 0, rows, -1), axis=0)
        branch = np.where(last >= 0, np.take_along_axis(event, np.maximum(last, 0), axis=0),
                          self._branch)
        self._branch = branch[-1].copy()
        return branch.reshape(current.shape)

    def _dv_dm(self, p: MTJParams, current: np.ndarray, v: np.ndarray) -> np.ndarray:
        """dV/dm (V) at fixed I of devices ``p`` at ``current`` (A) and voltage ``v`` (V)."""
        from simulators.mtj import _dg_dv, _tmr, magnetisation

        t = _tmr(p, v)
        dg_dm = 0.5 / p.r_p * t / (1.0 + t)
        m = magnetisation(p, current)
        return -v * dg_dm / (conductance(p, v, m) + v * _dg_dv(p, v, m))

    def _add_telegraph(self, current: np.ndarray, v: np.ndarray, d: np.ndarray) -> None:
        """Add the telegraph fluctuators' effect to ``v`` (V) and ``d`` (Ohm) in place:
        each sample in order, device A and B's states stepped over the sample time (and
        over the second differential read's time for fd-swap), linearised through dV/dm."""
        a, b = self.device_a, self.device_b
        flat = current.reshape(-1, self.n).astype(float)
        rows = flat.shape[0]
        x_a = (flat - a.i_off) / a.rtn_i
        x_b = (flat + self.di - b.i_off) / b.rtn_i
        amp = np.stack([a.rtn_amp, b.rtn_amp])
        tau = np.stack([a.rtn_tau, b.rtn_tau])
        u = self._rtn_rng.random((rows, 2, 2, self.n))
        x = np.stack([x_a, x_b], axis=1)  # (rows, device, neuron)
        p = telegraph_occupation(x)
        t_read = self.adc_integration_s
        tau_c = tau / (2.0 * np.cosh(0.5 * x))  # device_shapes.telegraph_correlation_time
        # Persistence over the gap before a sample's first read and over its second read.
        keep = np.stack([np.exp(-(self.sample_time_s - t_read) / tau_c),
                         np.exp(-t_read / tau_c)], axis=1)
        base = p[:, None] * (1.0 - keep)  # P(high) = p (1 - keep) + s keep
        state = self._rtn
        reads = np.empty((rows, 2, 2, self.n))  # sample, read, device, neuron
        for r in range(rows):  # a Markov chain: one sample after the other
            for k in (0, 1):
                state = u[r, k] < base[r, k] + state * keep[r, k]
                reads[r, k] = state
        self._rtn = state.astype(float)
        offset = amp * (reads - p[:, None])
        v_flat = v.reshape(-1, self.n).astype(float)
        gain_a = self._dv_dm(a, flat, v_flat)
        gain_b = self._dv_dm(b, flat, v_flat)
        dv_a1, dv_b1 = gain_a * offset[:, 0, 0], gain_b * offset[:, 0, 1]
        v += dv_a1.reshape(v.shape).astype(v.dtype)
        if self.grad == "fd":
            d += ((dv_b1 - dv_a1) / self.di).reshape(d.shape).astype(d.dtype)
        elif self.grad == "fd-swap":
            dv_a2, dv_b2 = gain_a * offset[:, 1, 0], gain_b * offset[:, 1, 1]
            extra = (dv_b1 - dv_a1 + dv_a2 - dv_b2) / (2.0 * self.di)
            d += extra.reshape(d.shape).astype(d.dtype)

    # -- public --------------------------------------------------------------------------

    def measure(self, currents: np.ndarray) -> NeuronReadout:
        """Bias neuron j at ``currents[..., j]`` (A); read V_A (V) and dV/dI (Ohm) with noise.

        ``currents`` has shape (batch, n) (any leading shape works); float32 input gives
        float32 output, anything else float64. Samples are measured in order (row after
        row), which matters for drift, hysteresis and telegraph noise.
        """
        current = np.asarray(currents)
        if current.ndim < 1 or current.shape[-1] != self.n:
            raise ValueError(f"currents must have shape (batch, {self.n}), got {current.shape}")
        dtype = np.dtype(np.float32 if current.dtype == np.float32 else np.float64)
        current = current.astype(dtype, copy=False)
        rows = current.size // self.n
        self._advance_drift(rows)
        if self.measured is None and self.lut and self._table_covers(current):
            if dtype not in self._tables:
                self._tables[dtype] = self._tables[np.dtype(np.float64)].astype(dtype)
            v = np.empty(current.shape, dtype)
            d = np.empty(current.shape, dtype)
            offset = None
            if self._hysteretic:
                down = self._branches(current) < 0
                offset = np.where(down, self._col_offset[self.n:], self._col_offset[:self.n])
            self._estimate_lut(current, v, d, offset)
        elif self._hysteretic:
            down = self._branches(current) < 0
            v, d = self._estimate_direct_branches(current, down)
        else:
            v, d = (x.astype(dtype, copy=False) for x in self._estimate_direct(current))
        if self._telegraph:
            self._add_telegraph(current, v, d)
        if self.sigma_v > 0 or self.sigma_dvdi > 0:
            noise_v, noise_d = self._noise.draw(v.size)
            v += noise_v.reshape(v.shape)
            d += noise_d.reshape(d.shape)
        return NeuronReadout(v=v, dvdi=d)

    def _estimate_direct_branches(self, current: np.ndarray, down: np.ndarray):
        """:meth:`_estimate_direct` of a hysteretic array, each element on its branch."""
        a2, b2 = self._present_pairs()
        halves = []
        for half in (slice(0, self.n), slice(self.n, 2 * self.n)):
            pairs = (a2.take(half), b2.take(half))
            halves.append(self._estimate_direct(current.astype(float), pairs))
        v = np.where(down, halves[1][0], halves[0][0]).astype(current.dtype)
        d = np.where(down, halves[1][1], halves[0][1]).astype(current.dtype)
        return v, d

    def _device_a_now(self) -> MTJParams:
        """Device A's parameters now: drift applied, on its present hysteresis branch."""
        a = self.device_a
        shift = (self._drift[:, 0] if self._drift_sigma else 0.0) + a.i_hyst * self._branch
        return replace(a, i_off=a.i_off + shift)

    def exact_dvdi(self, currents: np.ndarray) -> np.ndarray:
        """dV/dI (Ohm) of every neuron's device A at ``currents`` (A), no noise: analytic for
        the time-averaged model curve (drift applied, on the branch the device is on now),
        the interpolant's derivative for measured devices."""
        current = np.asarray(currents, dtype=float)
        if current.ndim < 1 or current.shape[-1] != self.n:
            raise ValueError(f"currents must have shape (batch, {self.n}), got {current.shape}")
        if self.measured is not None:
            return self._measured_columns(current, 0, "dvdi")
        return dvdi(self._device_a_now(), current)

    def ideal_voltage(self, currents: np.ndarray) -> np.ndarray:
        """Noiseless V_A (V) of every neuron's device A at ``currents`` (A), model solved."""
        current = np.asarray(currents, dtype=float)
        if current.ndim < 1 or current.shape[-1] != self.n:
            raise ValueError(f"currents must have shape (batch, {self.n}), got {current.shape}")
        if self.measured is not None:
            return self._measured_columns(current, 0, "voltage")
        return voltage(self._device_a_now(), current)

    def __repr__(self) -> str:
        return (
            f"ModelNeurons(n={self.n}, variability={self.variability.name!r}, seed={self.seed}, "
            f"di={self.di:g}, grad={self.grad!r}, nplc={self.nplc:g}, "
            f"adc_integration_s={self.adc_integration_s:g})"
        )


class MTJActivation:
    """Pre-activation z -> bias current -> measured voltage -> normalised activation.

    I = clip(i_center + i_scale * z, -i_max, i_max) (A); a = (V - v_center) / v_scale;
    da/dz = dV/dI * i_scale / v_scale, 0 where the current is clipped. ``v_center`` (V) and
    ``v_scale`` (V) come once from the nominal device curve (``device``): v_center =
    V(i_center), v_scale = (V(i_center + i_scale) - V(i_center - i_scale)) / 2, so the
    activation of a nominal device is 0 at z = 0 and has unit mean slope over |z| <= 1.
    Every real device deviates from that; the network learns around it.
    """

    needs_neurons = True

    def __init__(
        self,
        *,
        i_center: float = 40e-6,
        i_scale: float = 30e-6,
        i_max: float = 100e-6,
        device: MTJParams = NOMINAL,
    ):
        if not i_max > 0:
            raise ValueError(f"i_max must be positive (A), got {i_max!r}")
        if not abs(i_center) < i_max:
            raise ValueError(f"i_center must satisfy |i_center| < i_max (A), got {i_center!r}")
        if not i_scale > 0:
            raise ValueError(f"i_scale must be positive (A), got {i_scale!r}")
        self.i_center = float(i_center)
        self.i_scale = float(i_scale)
        self.i_max = float(i_max)
        self.v_center = float(voltage(device, self.i_center))
        v_hi = float(voltage(device, self.i_center + self.i_scale))
        v_lo = float(voltage(device, self.i_center - self.i_scale))
        self.v_scale = 0.5 * (v_hi - v_lo)
        if not self.v_scale > 0:
            raise ValueError(f"v_scale from the device curve is not positive: {self.v_scale}")
        self.limit(self.i_max)
        self._gain = self.i_scale / self.v_scale

    @property
    def gain(self) -> float:
        """da/dz per unit dV/dI: i_scale / v_scale (A/V), so da/dz = dV/dI * gain."""
        return self._gain

    def inside(self, z: np.ndarray) -> np.ndarray:
        """True where ``z`` maps to a current within +-i_max (not clipped): where da/dz is
        the scaled derivative rather than 0."""
        z = np.asarray(z)
        return np.clip(z, self._z_lo, self._z_hi) == z

    def limit(self, i_max: float) -> None:
        """Clip bias currents to +-``i_max`` (A) from now on (a resumed run on new limits)."""
        if not abs(self.i_center) < i_max:
            raise ValueError(f"i_center {self.i_center!r} A is not within +-i_max {i_max!r} A")
        self.i_max = float(i_max)
        self._z_lo = (-self.i_max - self.i_center) / self.i_scale
        self._z_hi = (self.i_max - self.i_center) / self.i_scale

    def currents(self, z: np.ndarray) -> np.ndarray:
        """Bias currents (A) for pre-activations ``z``, clipped to +-i_max."""
        z = np.asarray(z)
        return self.i_center + self.i_scale * np.clip(z, self._z_lo, self._z_hi)

    def forward(
        self, z: np.ndarray, neurons: NeuronArray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, NeuronReadout]:
        """Measure ``neurons`` at the currents for ``z``; return (a, da/dz, currents, readout).

        ``z`` has shape (batch, neurons.n); a and da/dz have the same shape and dtype.
        """
        if neurons is None:
            raise ValueError("MTJActivation needs a NeuronArray")
        z = np.asarray(z)
        zc = np.clip(z, self._z_lo, self._z_hi)
        inside = zc == z
        zc *= self.i_scale
        zc += self.i_center
        currents = zc
        readout = neurons.measure(currents)
        a = readout.v - self.v_center
        a *= 1.0 / self.v_scale
        dadz = readout.dvdi * self._gain
        dadz *= inside
        return a, dadz, currents, readout

    def __repr__(self) -> str:
        return (
            f"MTJActivation(i_center={self.i_center:g}, i_scale={self.i_scale:g}, "
            f"i_max={self.i_max:g})"
        )


class TanhActivation:
    """Software baseline: a = tanh(z), da/dz = 1 - a^2; no neurons, no currents."""

    needs_neurons = False

    def forward(
        self, z: np.ndarray, neurons: NeuronArray | None = None
    ) -> tuple[np.ndarray, np.ndarray, None, None]:
        """Return (tanh(z), 1 - tanh(z)^2, None, None)."""
        a = np.tanh(z)
        dadz = a * a
        np.subtract(1.0, dadz, out=dadz)
        return a, dadz, None, None

    def __repr__(self) -> str:
        return "TanhActivation()"


class LinearActivation:
    """Control: no nonlinearity at all, a = z, da/dz = 1 (a network of these is linear)."""

    needs_neurons = False

    def forward(
        self, z: np.ndarray, neurons: NeuronArray | None = None
    ) -> tuple[np.ndarray, np.ndarray, None, None]:
        """Return (z, ones, None, None)."""
        z = np.asarray(z)
        return z.copy(), np.ones_like(z), None, None

    def __repr__(self) -> str:
        return "LinearActivation()"
