"""The wafer report of a real scan of the simulated round wafer (labctl wafer scan, then
labctl.wafer.report): planted defects classified against the oracle, fits against the true
parameters, the files written, and `labctl wafer report` regenerating them the same."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from labctl.cli import main
from labctl.commands.lifecycle import recorded_station
from labctl.records.session import Session
from labctl.station.oracle import Oracle
from labctl.wafer.records import read_scan
from labctl.wafer.report import analyse
from tests.wafer_analysis_support import labctl, ok, scanned

FILES = ("devices.parquet", "devices.csv", "pairs.parquet", "pairs.csv", "histograms.png",
         "wafer_maps.png", "pair_mismatch.png", "index.html")


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return scanned(tmp_path_factory)


def _oracle(session_dir):
    config = recorded_station(Session(session_dir))
    return config, Oracle.from_settings(config.simulation, config.wiring)


def test_every_planted_defect_is_classified_so_and_no_healthy_device_is_flagged(scan):
    session = scan.scan
    config, oracle = _oracle(session)
    planted = {k: v for k, v in oracle.planted_defects().items() if k[0] in scan.dies}
    assert sorted(set(planted.values())) == ["broken", "open", "out_of_family", "short"]
    analysis = analyse(read_scan(session))
    assert len(analysis.devices) == len(scan.dies) * len(config.pairs) * 2
    for key, verdict in analysis.devices.items():
        assert verdict.status == planted.get(key, "ok"), (key, verdict)
    # Pairs take their worst device's status; the rest of these dies are healthy.
    for (die, pair), verdict in analysis.pairs.items():
        kinds = [planted[k] for k in ((die, pair, "A"), (die, pair, "B")) if k in planted]
        assert verdict.status == (kinds[0] if kinds else "ok"), (die, pair, verdict)


def test_fitted_parameters_recover_the_true_ones(scan):
    session = scan.scan
    config, oracle = _oracle(session)
    analysis = analyse(read_scan(session))
    rel = {"r_p": [], "i_off": []}
    for (die, pair, dev), f in analysis.fits.items():
        if analysis.devices[(die, pair, dev)].status != "ok":
            continue
        truth = oracle.die_params(die)
        j, d = sorted(config.pairs).index(pair), "AB".index(dev)
        for name in rel:
            rel[name].append(abs(f.params[name] / np.asarray(getattr(truth, name))[j, d] - 1))
    assert np.median(rel["r_p"]) < 0.02 and np.median(rel["i_off"]) < 0.02
    assert np.median(rel["r_p"]) < 1e-3  # measured ~2e-5: far within the 2 % asked


def test_the_scan_writes_its_report_and_wafer_report_regenerates_it_the_same(scan):
    work, sessions, session = scan.work, scan.sessions, scan.scan
    out = session / "wafer"
    before = {name: (out / name).read_bytes() for name in FILES}
    for name in FILES:
        assert len(before[name]) > 200, name
    page = before["index.html"].decode()
    assert "http://" not in page and "https://" not in page  # no CDN, no network
    for img in ("histograms.png", "wafer_maps.png", "pair_mismatch.png"):
        assert f'src="{img}"' in page
    with open(out / "devices.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    shorts = {(int(r["die_x"]), int(r["die_y"]), int(r["pair"]), r["device"]): r["reason"]
              for r in rows if r["status"] == "short"}
    assert shorts.keys() == {(*d, p, dev) for (d, p, dev), kind in scan.planted.items()
                             if kind == "short"}
    for (_, _, _, dev), reason in shorts.items():
        assert re.fullmatch(dev + r": short: R_low [45]\d(\.\d+)? Ohm < 200 Ohm", reason)
    assert {"r_p", "sigma_r_p", "i_off", "sigma_i_off", "residual_rms_v"} <= set(rows[0])
    for name in FILES:
        (out / name).unlink()
    proc = ok(labctl("wafer", "report", session.name, "--sessions-dir", sessions, cwd=work))
    assert str(out / "index.html") in proc.stdout
    for name in FILES:
        assert (out / name).read_bytes() == before[name], f"{name} differs when regenerated"


def test_wafer_report_refuses_a_bad_threshold_before_reading_anything(scan, capsys):
    code = main(["wafer", "report", "x", "--max-di-off", "-1", "--sessions-dir",
                 str(scan.sessions)])
    assert code == 2
    assert capsys.readouterr().err == "labctl: error: --max-di-off: must be positive, got -1.0\n"
