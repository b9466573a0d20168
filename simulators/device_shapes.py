"""Per-device response shapes of MTJs from physical mechanisms, and how they are drawn.

Units: current in A, voltage in V, time in s, temperature in K.

The compact model (:mod:`simulators.mtj`) describes one junction by a tanh free layer and a
bias-dependent TMR. Real junctions differ in *shape*, not only in scale. The mechanisms
simulated here, each a field of :class:`simulators.mtj.MTJParams` (0 turns it off):

- **Bias asymmetry of the TMR** (``bias_asym``, dimensionless a): the TMR halves at
  V_h+ = V_h (1 + a) for V > 0 and at V_h- = V_h (1 - a) for V < 0. MgO junctions show
  V_h+ != V_h- by 0.05-0.3 V around V_h ~ 0.4-0.6 V, i.e. a ~ 0.05-0.25 (Yuasa et al.,
  Nat. Mater. 3, 868 (2004); Parkin et al., Nat. Mater. 3, 862 (2004)); the asymmetry comes
  from the two barrier interfaces differing (Zhang & White, J. Appl. Phys. 83, 6512 (1998)).
- **A multi-domain / tilted free layer** (``md_w1``, ``md_w2``: weights of two sub-domains,
  the main domain keeps 1 - w1 - w2; ``md_d1``, ``md_d2``: their transition offsets from
  I_off in A; ``md_s1``, ``md_s2``: their widths relative to I_w): m(I) is the weighted sum
  of the sub-domains' tanh, a staircase-like, non-tanh shape. Junctions above ~50 nm switch
  incoherently through sub-domains or a tilted state (Sun, IBM J. Res. Dev. 50, 81 (2006);
  Devolder et al., PRB 93, 024420 (2016)); the weights drawn here (0.05-0.3 each) are a
  sub-domain of a few tens of nm in a ~100 nm pillar.
- **Hysteresis / bistability near switching** (``i_hyst``, A): the transition sits at
  I_off + i_hyst on a sweep coming from below (the up branch) and at I_off - i_hyst coming
  from above (the down branch); the branch flips once the current leaves the window
  I_off +- (i_hyst + HYST_SWITCH_WIDTHS * I_w). STT switching is hysteretic with
  I_c+ != |I_c-| (Slonczewski, JMMM 159, L1 (1996); Katine et al., PRL 84, 3149 (2000));
  in a junction biased to work as an analog neuron (in-plane field near the coercive
  field) the window shrinks to a fraction of I_w: 0.1-0.3 I_w, a few uA, drawn here.
- **Random telegraph noise near I_off** (``rtn_amp``: the two levels' separation in m;
  ``rtn_i``, A: bias scale of the dwell times; ``rtn_tau``, s: the dwell time at I_off):
  a sub-domain with a small barrier hops between two states; its dwell times follow
  Neel-Brown with spin torque, tau_01 = rtn_tau exp(-(I - I_off) / (2 rtn_i)) and
  tau_10 = rtn_tau exp(+(I - I_off) / (2 rtn_i)), so the fluctuation lives near I_off and
  freezes away from it. Superparamagnetic and near-switching junctions show this with
  dwell times of us to s varying exponentially with current (Rippard et al., PRB 84,
  064439 (2011); Mizrahi et al., Nat. Commun. 9, 1533 (2018); Vodenicarevic et al., Phys.
  Rev. Appl. 8, 054045 (2017)); amplitudes 0.02-0.1 of the full swing are a sub-domain of
  the free layer. The noiseless curve is the time average; the fluctuation is
  rtn_amp * (s - p(I)) with s in {0, 1} and p(I) its equilibrium occupation.
- **Temperature** (``Variability.temperature_k``, reference 300 K, see
  :func:`temperature_factors`): TMR(T) from the magnon model P(T) = P0 (1 - alpha T^1.5)
  (Shang et al., PRB 58, R2917 (1998)) with alpha such that the TMR falls 30 % from 4 K to
  300 K (MgO: 247 % at 20 K, 180 % at 300 K, Yuasa 2004); R_P rises ~10 % on cooling to
  4 K; I_w is half static (inhomogeneity) and half thermal (proportional to T); I_off
  follows the thermally assisted switching current I_c = I_c0 (1 - (kT / E_b) ln(t / tau0))
  with Delta = E_b / kT = 60 at 300 K (thermal stability 40-80 for memory junctions) and
  ln(t / tau0) = ln(1 ms / 1 ns) (Koch, Katine & Sun, PRL 92, 088302 (2004)).
- **Drift and slow relaxation** (``Variability.drift_a_per_sqrt_s``,
  ``relax_fraction``, ``relax_tau_s``): I_off random-walks in instrument time, and a
  programmed shift relaxes by ``relax_fraction`` of itself with time constant
  ``relax_tau_s`` (charge trapping in the barrier and thermal relaxation of the
  programmed state: retention loss of a few % to 20 % over minutes is reported for
  analog-tuned junctions; here 10 % over 300 s in the realistic preset).

:class:`ShapeSpread` holds a preset's distributions of those parameters and
:func:`sample_shapes` draws them, per device (every junction has its own domain structure).
Nothing here imports the rest of the simulators: :mod:`simulators.mtj` imports this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The hysteresis branch flips once |I - I_off| exceeds i_hyst + this many I_w (m is
#: within tanh(2) = 0.96 of saturation there, so the jump at the flip is small).
HYST_SWITCH_WIDTHS = 2.0
REFERENCE_TEMPERATURE_K = 300.0
#: The temperatures (K) the models below are taken over.
MIN_TEMPERATURE_K, MAX_TEMPERATURE_K = 1.0, 450.0
# Magnon model of the spin polarisation: TMR(T) proportional to 1 - alpha T^1.5 with
# TMR(300 K) / TMR(4 K) = 0.70.
_TMR_ALPHA = 0.30 / (300.0**1.5 - 0.70 * 4.0**1.5)
_RP_RISE_TO_4K = 0.10  # R_P(4 K) / R_P(300 K) - 1
_IW_THERMAL_PART = 0.5
_DELTA_300K = 60.0  # E_b / kT at 300 K
_LN_ATTEMPTS = math.log(1e-3 / 1e-9)  # ln(t / tau0), 1 ms at a 1 ns attempt time


@dataclass(frozen=True)
class ShapeSpread:
    """Distributions of the shape parameters of a preset (see the module docstring).

    asym_mean, asym_sigma: bias asymmetry a ~ N(mean, sigma) per device, clipped to
    +-0.5. md_weight: median weight of each of the two sub-domains (lognormal, sigma 0.5,
    the two together at most 0.6), 0 for a single domain; md_offset_iw: sigma of their
    transition offsets, in units of I_w; md_width: (low, high) of their widths relative
    to I_w, uniform. hyst_iw: median hysteresis half-width in units of I_w (lognormal,
    sigma 0.5), 0 for none. rtn_fraction: fraction of devices with an active telegraph
    fluctuator; rtn_amp: median amplitude in m (lognormal, sigma 0.4); rtn_i_a: bias
    scale of the dwell times (A); rtn_tau_s: median dwell time at I_off (s, lognormal,
    sigma 1.0: decades of spread, as measured).
    """

    asym_mean: float = 0.0
    asym_sigma: float = 0.0
    md_weight: float = 0.0
    md_offset_iw: float = 0.6
    md_width: tuple[float, float] = (0.5, 1.0)
    hyst_iw: float = 0.0
    rtn_fraction: float = 0.0
    rtn_amp: float = 0.04
    rtn_i_a: float = 2e-6
    rtn_tau_s: float = 20e-3

    def validate(self) -> ShapeSpread:
        """Self, or ValueError naming the field out of its physical range."""
        checks = {
            "asym_mean": abs(self.asym_mean) <= 0.5,
            "asym_sigma": 0 <= self.asym_sigma <= 0.3,
            "md_weight": 0 <= self.md_weight <= 0.3,
            "md_offset_iw": 0 <= self.md_offset_iw <= 3,
            "md_width": 0 < self.md_width[0] <= self.md_width[1] <= 3,
            "hyst_iw": 0 <= self.hyst_iw <= 2,
            "rtn_fraction": 0 <= self.rtn_fraction <= 1,
            "rtn_amp": 0 <= self.rtn_amp <= 0.5,
            "rtn_i_a": self.rtn_i_a > 0,
            "rtn_tau_s": self.rtn_tau_s > 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"shape parameters out of range: {', '.join(bad)}")
        return self


def sample_shapes(n_pairs: int, spread: ShapeSpread, i_w: np.ndarray,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Shape fields of :class:`simulators.mtj.MTJParams` for ``n_pairs`` pairs, each of
    shape (n_pairs, 2), drawn independently per device from ``spread``; ``i_w`` (A, the
    devices' transition widths) sets the scale of the offsets and the window."""
    shape = (n_pairs, 2)
    out: dict[str, np.ndarray] = {}
    if spread.asym_mean or spread.asym_sigma:  # draw nothing for a shape that is off
        a = spread.asym_mean + spread.asym_sigma * rng.standard_normal(shape)
        out["bias_asym"] = np.clip(a, -0.5, 0.5)
    if spread.md_weight > 0:
        w = spread.md_weight * np.exp(0.5 * rng.standard_normal((2, *shape)))
        total = w.sum(axis=0)
        w *= np.minimum(1.0, 0.6 / total)  # the main domain keeps at least 40 %
        d = spread.md_offset_iw * i_w * rng.standard_normal((2, *shape))
        s = rng.uniform(*spread.md_width, size=(2, *shape))
        out.update(md_w1=w[0], md_w2=w[1], md_d1=d[0], md_d2=d[1], md_s1=s[0], md_s2=s[1])
    if spread.hyst_iw > 0:
        out["i_hyst"] = spread.hyst_iw * i_w * np.exp(0.5 * rng.standard_normal(shape))
    if spread.rtn_fraction > 0:
        active = rng.random(shape) < spread.rtn_fraction
        amp = spread.rtn_amp * np.exp(0.4 * rng.standard_normal(shape))
        out["rtn_amp"] = np.where(active, np.minimum(amp, 0.5), 0.0)
        out["rtn_i"] = np.full(shape, spread.rtn_i_a)
        out["rtn_tau"] = spread.rtn_tau_s * np.exp(rng.standard_normal(shape))
    return out


def temperature_factors(temperature_k: float) -> dict[str, float]:
    """Multipliers of r_p, tmr0, i_w and i_off at ``temperature_k`` (K) relative to 300 K
    (see the module docstring for the models and their sources); 1 at 300 K."""
    t = float(temperature_k)
    if not MIN_TEMPERATURE_K <= t <= MAX_TEMPERATURE_K:
        raise ValueError(f"temperature must be within {MIN_TEMPERATURE_K:g}.."
                         f"{MAX_TEMPERATURE_K:g} K, got {temperature_k!r}")
    ref = REFERENCE_TEMPERATURE_K
    tmr = (1.0 - _TMR_ALPHA * t**1.5) / (1.0 - _TMR_ALPHA * ref**1.5)
    r_p = 1.0 + _RP_RISE_TO_4K * (ref - t) / (ref - 4.0)
    i_w = (1.0 - _IW_THERMAL_PART) + _IW_THERMAL_PART * t / ref
    i_off = (1.0 - _LN_ATTEMPTS * t / (_DELTA_300K * ref)) / (1.0 - _LN_ATTEMPTS / _DELTA_300K)
    return {"r_p": r_p, "tmr0": tmr, "i_w": i_w, "i_off": i_off}


# -- telegraph noise -------------------------------------------------------------------

def telegraph_occupation(x):
    """Equilibrium probability of the fluctuator's high-m state at (I - I_off) / rtn_i = x."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x)))


def telegraph_correlation_time(tau, x):
    """Correlation time (s) 1 / (1/tau_01 + 1/tau_10) of the fluctuator at x = (I - I_off)
    / rtn_i with dwell time ``tau`` (s) at I_off."""
    return np.asarray(tau) / (2.0 * np.cosh(0.5 * np.asarray(x)))


def telegraph_step(state: np.ndarray, x: np.ndarray, tau: np.ndarray, dt: float,
                   u: np.ndarray) -> np.ndarray:
    """The fluctuators' states (0/1 floats) ``dt`` seconds after ``state``, exactly for a
    two-state Markov process at constant bias: P(high) = p + (s - p) exp(-dt / tau_c).
    ``u``: uniform(0, 1) draws of the same shape (seeded by the caller)."""
    p = telegraph_occupation(x)
    keep = np.exp(-dt / telegraph_correlation_time(tau, x))
    p_high = p + (state - p) * keep
    return (u < p_high).astype(float)


def dwell_times(tau: float, x: float) -> tuple[float, float]:
    """(tau_01, tau_10): mean dwell (s) in the low and in the high state at x = (I - I_off)
    / rtn_i, dwell time ``tau`` (s) at I_off."""
    return tau * math.exp(-0.5 * x), tau * math.exp(0.5 * x)
