"""Compact-model fits (labctl.wafer.fits) and classification (labctl.wafer.classify).

Fits are checked against curves with known parameters: the compact model itself (noiseless
and with the SMU's read noise), and real I-V sweeps of the built-in simulated station
through the protocol layer, against its oracle. Classification is checked on planted
opens, shorts, broken (non-switching) and out-of-family devices of synthetic dies.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.station.file import load_station
from labctl.station.runtime import open_station
from labctl.wafer.classify import Thresholds, Verdict, classify_devices, classify_pair
from labctl.wafer.fits import PARAMS, fit_curve, fit_device, model_jacobian
from labctl.wafer.records import DeviceScan
from protocols.engine import Engine
from protocols.finite_difference import iv_sweep
from simulators.mtj import SHORT_RESISTANCE, MTJParams, sample_pairs, variability_preset, voltage

CURRENTS = np.linspace(-100e-6, 100e-6, 61)  # the built-in station's max_current_a = 100 uA


def _truth(p: MTJParams, name: str) -> float:
    return float(np.ravel(getattr(p, name))[0])


def scan_of(p: MTJParams, rng=None, noise_v: float = 0.0, pair: int = 1, device: str = "A",
            compliance_v: float | None = None) -> DeviceScan:
    """A device's current-bias I-V from the compact model (noise seeded), as a scan has it."""
    v = voltage(p, CURRENTS)
    if noise_v:
        v = v + rng.normal(0.0, noise_v, CURRENTS.size)
    hit = np.zeros(CURRENTS.size, bool)
    if compliance_v is not None:
        hit = np.abs(v) >= compliance_v
        v = np.clip(v, -compliance_v, compliance_v)
    low = np.abs(CURRENTS) <= 10e-6
    r_low = float(np.polyfit(CURRENTS[low], v[low], 1)[0])
    return DeviceScan(pair, device, True, r_low, CURRENTS.copy(), v, "current", hit)


@pytest.mark.parametrize("p", [
    MTJParams(),
    MTJParams(r_p=1.2e3, tmr0=0.8, v_h=0.35, i_off=-15e-6, i_w=12e-6),
    MTJParams(r_p=5.5e3, tmr0=2.2, v_h=0.8, i_off=55e-6, i_w=30e-6),
], ids=["nominal", "low-r-negative-ioff", "high-r"])
def test_noiseless_compact_model_curves_give_their_parameters_back(p):
    f = fit_device(scan_of(p))
    assert f.fitted, f.reason
    for name in PARAMS:
        assert f.params[name] == pytest.approx(_truth(p, name), rel=1e-6), name
    assert f.residual_rms_v < 1e-9


def test_noisy_fits_recover_parameters_and_their_uncertainties_are_calibrated():
    rng = np.random.default_rng(11)
    pop = sample_pairs(30, variability_preset("pronounced"), rng)
    rel, pulls, res = [], [], []
    for k in range(30):
        p = pop.take((k, 0))
        f = fit_device(scan_of(p, rng, noise_v=20e-6))
        assert f.fitted, f.reason
        rel.append([abs(f.params[n] / _truth(p, n) - 1) for n in PARAMS])
        pulls.append([(f.params[n] - _truth(p, n)) / f.sigma[n] for n in PARAMS])
        res.append(f.residual_rms_v)
    rel, pulls = np.array(rel), np.array(pulls)
    assert np.median(rel[:, PARAMS.index("r_p")]) < 1e-3
    assert np.median(rel[:, PARAMS.index("i_off")]) < 1e-3
    assert np.all(np.max(rel, axis=0) < 0.02)
    # 1-sigma uncertainties: the errors are about one sigma wide (not 10x off either way).
    spread = np.std(pulls, axis=0)
    assert np.all((spread > 0.5) & (spread < 2.0)), spread
    assert np.median(res) == pytest.approx(20e-6, rel=0.2)  # the read noise, in V rms


def test_jacobian_is_the_derivative_of_the_model():
    theta = np.array([3.1e3, 1.4, 0.45, 35e-6, 22e-6])
    v, jac = model_jacobian(theta, CURRENTS)
    for k in range(len(PARAMS)):
        h = 1e-6 * theta[k]
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        numeric = (voltage(MTJParams(*up), CURRENTS)
                   - voltage(MTJParams(*down), CURRENTS)) / (2 * h)
        assert np.allclose(jac[:, k], numeric, rtol=1e-5, atol=1e-7 * np.max(np.abs(numeric)))


def test_points_in_compliance_are_left_out_and_the_fit_still_recovers_the_device():
    p = MTJParams(r_p=4.0e3, tmr0=1.8, v_h=0.6, i_off=40e-6, i_w=25e-6)
    scan = scan_of(p, np.random.default_rng(3), noise_v=20e-6, compliance_v=0.5)
    assert scan.compliance_hit.sum() >= 5  # the negative end is clamped at 0.5 V
    f = fit_device(scan)
    assert f.fitted and f.n_compliance == scan.compliance_hit.sum()
    assert f.n_points == CURRENTS.size - f.n_compliance
    assert f.params["r_p"] == pytest.approx(4.0e3, rel=2e-3)
    assert f.params["i_off"] == pytest.approx(40e-6, rel=2e-2)
    # Fitted blindly (compliance points kept), the clamped points would bias the fit.
    naive = fit_curve(scan.iv_current_a, scan.iv_voltage_v)
    assert naive["residual_rms_v"] > 10 * f.residual_rms_v


def test_open_and_shorted_devices_are_not_fitted_and_say_why():
    p = MTJParams()
    short = scan_of(p)
    short.iv_voltage_v = CURRENTS * SHORT_RESISTANCE
    short.r_low_ohm = SHORT_RESISTANCE
    f = fit_device(short)
    assert not f.fitted and f.reason == "short: R_low 50 Ohm < 200 Ohm"
    assert all(math.isnan(f.params[n]) for n in PARAMS)
    open_ = scan_of(p)
    open_.contact_ok, open_.r_low_ohm = False, math.nan
    assert fit_device(open_).reason == "open: no contact"
    few = scan_of(p)
    few.compliance_hit[:] = True
    few.compliance_hit[:5] = False
    g = fit_device(few)
    assert not g.fitted and "5 usable points" in g.reason


def test_on_the_simulated_station_fits_recover_the_oracles_parameters():
    """Real I-V sweeps (protocol layer, list sweeps over the simulated instruments) of the
    built-in station: median relative error of R_P and I_off far within 2 %."""
    config = load_station(None)
    pairs = [1, 4, 7, 10, 13, 16]
    errors = {n: [] for n in PARAMS}
    with open_station(config) as station:
        engine = Engine(station, nplc=1.0)
        for k in pairs:
            r = engine.run(iv_sweep(k, CURRENTS))
            for dev, v in (("A", r.v_a), ("B", r.v_b)):
                f = fit_curve(CURRENTS, v, r.compliance)
                truth = station.oracle.params([k], dev)
                for n in PARAMS:
                    errors[n].append(abs(f["params"][n] / _truth(truth, n) - 1))
    assert np.median(errors["r_p"]) < 2e-3  # the brief asks < 2 %; measured ~2e-5
    assert np.median(errors["i_off"]) < 2e-3
    assert max(max(e) for e in errors.values()) < 0.02


# -- classification -----------------------------------------------------------------------

def _die_fits(seed: int, n_pairs: int, die, plant: dict) -> dict:
    """Fits of a synthetic die (noise 20 uV) with planted defects: (pair, dev) -> kind."""
    rng = np.random.default_rng(seed)
    pop = sample_pairs(n_pairs, variability_preset("nominal"), rng)
    out = {}
    for k in range(n_pairs):
        for d, name in enumerate("AB"):
            p = pop.take((k, d))
            kind = plant.get((k + 1, name))
            if kind == "broken":
                p = MTJParams(p.r_p, 1e-3, p.v_h, p.i_off, p.i_w)
            elif kind == "out_of_family":
                p = MTJParams(p.r_p * math.exp(0.4), p.tmr0, p.v_h, p.i_off, p.i_w)
            scan = scan_of(p, rng, 20e-6, pair=k + 1, device=name)
            if kind == "short":
                scan.iv_voltage_v = CURRENTS * SHORT_RESISTANCE
                scan.r_low_ohm = SHORT_RESISTANCE
            elif kind == "open":
                scan.contact_ok, scan.r_low_ohm = False, math.nan
            out[(die, k + 1, name)] = fit_device(scan)
    return out


def test_planted_defects_are_classified_so_and_healthy_devices_are_not_flagged():
    plant1 = {(2, "A"): "short", (5, "B"): "open", (7, "A"): "broken",
              (9, "B"): "out_of_family"}
    plant2 = {(3, "B"): "out_of_family", (11, "A"): "broken"}
    fits = _die_fits(1, 12, (1, 1), plant1) | _die_fits(2, 12, (2, 1), plant2)
    verdicts = classify_devices(fits)
    planted = {((1, 1), *k): v for k, v in plant1.items()}
    planted |= {((2, 1), *k): v for k, v in plant2.items()}
    for key, verdict in verdicts.items():
        assert verdict.status == planted.get(key, "ok"), (key, verdict)
    assert verdicts[((1, 1), 2, "A")].reason == "A: short: R_low 50 Ohm < 200 Ohm"
    assert "TMR0" in verdicts[((1, 1), 7, "A")].reason
    assert "r_p" in verdicts[((1, 1), 9, "B")].reason
    # A pair takes its worst device's status, with that device's reason.
    a, b = fits[((1, 1), 2, "A")], fits[((1, 1), 2, "B")]
    pv = classify_pair(a, b, verdicts[((1, 1), 2, "A")], verdicts[((1, 1), 2, "B")])
    assert pv.status == "short" and pv.reason.startswith("A: short")


def test_a_die_to_die_gradient_is_no_out_of_family_alarm():
    """Each die's R_P scaled by up to 30 %: compared with its own die's median, no device
    is out of family."""
    fits = {}
    for j, scale in enumerate((1.0, 1.15, 1.3)):
        for key, f in _die_fits(10 + j, 10, (j + 1, 1), {}).items():
            f.params["r_p"] *= scale
            fits[key] = f
    assert {v.status for v in classify_devices(fits).values()} == {"ok"}


def test_pair_mismatch_beyond_the_threshold_is_reported_with_the_figures():
    base = MTJParams()
    shifted = MTJParams(i_off=40e-6 + 0.3 * 25e-6)
    fa, fb = fit_device(scan_of(base)), fit_device(scan_of(shifted, device="B"))
    ok = Verdict("ok")
    v = classify_pair(fa, fb, ok, ok)
    assert v.status == "mismatched"
    assert v.reason.startswith("|dI_off| / I_w 0.3 > 0.2")
    assert classify_pair(fa, fb, ok, ok, Thresholds(max_di_off_over_iw=0.5)).status == "ok"
    wide = MTJParams(r_p=3.0e3 * 1.2)
    assert "R_P,B / R_P,A" in classify_pair(fa, fit_device(scan_of(wide)), ok, ok).reason
