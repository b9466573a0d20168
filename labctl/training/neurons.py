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
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Protocol, runtime_checkable

import numpy as np

from simulators.mtj import (
    NOMINAL,
    MTJParams,
    Variability,
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
    variability: preset name (``nominal``, ``pronounced``, ``ideal``) or a
        :class:`~simulators.mtj.Variability`; sets the spread, the in-pair mismatch and
        the read noise. Drift is not simulated here (the array is stateless), so a
        non-zero ``drift_a_per_sqrt_s`` is refused.
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
        if variability.drift_a_per_sqrt_s:
            raise ValueError(
                "ModelNeurons is stateless and does not simulate drift; "
                f"variability {variability.name!r} has drift_a_per_sqrt_s="
                f"{variability.drift_a_per_sqrt_s}"
            )
        self.n = int(n)
        self.variability = variability
        self.seed = seed
        self.di = float(di)
        self.grad = _check_grad(grad)
        self.nplc = float(nplc)
        self.adc_integration_s = float(adc_integration_s)
        self.lut = bool(lut)
        self.pairs: MTJParams = sample_pairs(self.n, variability, np.random.default_rng(seed))
        self.device_a: MTJParams = self.pairs.take((slice(None), 0))
        self.device_b: MTJParams = self.pairs.take((slice(None), 1))
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

    # -- noiseless physics -------------------------------------------------------------

    def _estimate_direct(self, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Noiseless V_A(I) (V) and derivative estimate (Ohm) by solving the device model."""
        a, b, di = self.device_a, self.device_b, self.di
        v_a = voltage(a, current)
        if self.grad == "exact":
            d = dvdi(a, current)
        elif self.grad == "fd":
            d = (voltage(b, current + di) - v_a) / di
        else:
            forward = voltage(b, current + di) - v_a
            swapped = voltage(a, current + di) - voltage(b, current)
            d = (forward + swapped) / (2.0 * di)
        return v_a, d

    def _build_table(self, lo: float, hi: float) -> None:
        k = int(math.ceil((hi - lo) / LUT_STEP_A))
        if self.n * (k + 1) >= 2**31:
            raise ValueError(f"{self.n} neurons are too many for one table; split the array")
        nodes = (lo + LUT_STEP_A * np.arange(k + 1))[:, None]  # (k + 1, 1), broadcast over n
        v, d = self._estimate_direct(nodes)
        dv = dvdi(self.device_a, nodes)
        dd = (
            self._estimate_direct(nodes + _SLOPE_STEP_A)[1]
            - self._estimate_direct(nodes - _SLOPE_STEP_A)[1]
        ) / (2 * _SLOPE_STEP_A)
        # Row j of neuron i holds the cubic c0 + c1 t + c2 t^2 + c3 t^3, t in [0, 1], of
        # V_A and then of the derivative estimate on [node j, node j + 1]. A last row holds
        # the constant value at the top node, so that the top edge needs no special case.
        # Neuron-major, so that one neuron's rows are adjacent in memory.
        table = np.zeros((self.n, k + 1, 8))
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
        self._col_offset = (np.arange(self.n) * (k + 1)).astype(np.int32)

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

    def _estimate_lut(self, current: np.ndarray, v: np.ndarray, d: np.ndarray) -> None:
        """Noiseless V_A (V) into ``v`` and derivative estimate (Ohm) into ``d``, from the
        table (which must cover ``current`` and exist in its dtype)."""
        table = self._tables[current.dtype]
        u = current * (1.0 / LUT_STEP_A)
        u -= self._table_lo / LUT_STEP_A  # grid position, >= 1 by the coverage margin
        # int32, not intp: float-to-int64 conversion has no vector instruction here.
        k = u.astype(np.int32)  # truncation is floor, as u > 0
        u -= k.astype(u.dtype)  # position in the grid interval, in [0, 1)
        k += self._col_offset
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

    # -- public --------------------------------------------------------------------------

    def measure(self, currents: np.ndarray) -> NeuronReadout:
        """Bias neuron j at ``currents[..., j]`` (A); read V_A (V) and dV/dI (Ohm) with noise.

        ``currents`` has shape (batch, n) (any leading shape works); float32 input gives
        float32 output, anything else float64.
        """
        current = np.asarray(currents)
        if current.ndim < 1 or current.shape[-1] != self.n:
            raise ValueError(f"currents must have shape (batch, {self.n}), got {current.shape}")
        dtype = np.dtype(np.float32 if current.dtype == np.float32 else np.float64)
        current = current.astype(dtype, copy=False)
        if self.lut and self._table_covers(current):
            if dtype not in self._tables:
                self._tables[dtype] = self._tables[np.dtype(np.float64)].astype(dtype)
            v = np.empty(current.shape, dtype)
            d = np.empty(current.shape, dtype)
            self._estimate_lut(current, v, d)
        else:
            v, d = (x.astype(dtype, copy=False) for x in self._estimate_direct(current))
        if self.sigma_v > 0 or self.sigma_dvdi > 0:
            noise_v, noise_d = self._noise.draw(v.size)
            v += noise_v.reshape(v.shape)
            d += noise_d.reshape(d.shape)
        return NeuronReadout(v=v, dvdi=d)

    def exact_dvdi(self, currents: np.ndarray) -> np.ndarray:
        """Analytic dV/dI (Ohm) of every neuron's device A at ``currents`` (A), no noise."""
        current = np.asarray(currents, dtype=float)
        if current.ndim < 1 or current.shape[-1] != self.n:
            raise ValueError(f"currents must have shape (batch, {self.n}), got {current.shape}")
        return dvdi(self.device_a, current)

    def ideal_voltage(self, currents: np.ndarray) -> np.ndarray:
        """Noiseless V_A (V) of every neuron's device A at ``currents`` (A), model solved."""
        current = np.asarray(currents, dtype=float)
        if current.ndim < 1 or current.shape[-1] != self.n:
            raise ValueError(f"currents must have shape (batch, {self.n}), got {current.shape}")
        return voltage(self.device_a, current)

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
