"""Devices from measured I-V curves: the CSV table, the interpolant, the station file, a
`labctl iv` on a station built from a table, iv sessions as devices, the model backend."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from labctl.station.file import BUILTIN_TEXT, StationFileError, parse_station
from labctl.station.oracle import Oracle
from labctl.training.neurons import ModelNeurons
from simulators.measured_devices import MeasuredDevices, MeasuredTableError
from simulators.mtj import NOMINAL, PRESETS, sample_pairs, voltage
from simulators.world import StationWorld

GRID = np.linspace(-100e-6, 100e-6, 51)  # A: the built-in station's current limit


def table_devices(n_pairs: int = 2) -> dict[tuple[int, str], np.ndarray]:
    """Voltages (V) on GRID of devices unlike the compact model's nominal ones: sub-domain
    shapes of the multidomain preset, A and B of each pair distinct."""
    p = sample_pairs(n_pairs, PRESETS["multidomain"], np.random.default_rng(11))
    return {(k + 1, "AB"[d]): voltage(p.take((k, d)), GRID)
            for k in range(n_pairs) for d in (0, 1)}


def write_table(path: Path, curves, shuffle: bool = True) -> Path:
    rows = [(k, dev, i, v) for (k, dev), volts in curves.items()
            for i, v in zip(GRID, volts, strict=True)]
    if shuffle:  # any order of rows and points
        rows = [rows[j] for j in np.random.default_rng(0).permutation(len(rows))]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["voltage_v", "pair", "device", "current_a", "note"])
        for k, dev, i, v in rows:
            w.writerow([f"{v:.12e}", k, dev, f"{i:.9e}", "x"])
    return path


def station_text(devices_line: str, n_pairs: int = 2) -> str:
    """The built-in station on ``n_pairs`` pairs, [simulation] n_pairs replaced by
    ``devices_line``."""
    text = BUILTIN_TEXT.replace('prober = "prober"\nn_pairs = 16',
                                f'prober = "prober"\nn_pairs = {n_pairs}')
    return text.replace("n_pairs = 16\n", devices_line + "\n")


def test_table_is_reproduced_by_the_interpolant_and_its_derivative(tmp_path):
    curves = table_devices()
    m = MeasuredDevices.from_csv(write_table(tmp_path / "t.csv", curves))
    assert m.n_pairs == 2
    for (k, dev), volts in curves.items():
        d = "AB".index(dev)
        np.testing.assert_allclose(m.voltage(k - 1, d, GRID), volts, rtol=0, atol=1e-12)
        i = np.linspace(-90e-6, 90e-6, 37)
        step = 1e-10
        numeric = (m.voltage(k - 1, d, i + step) - m.voltage(k - 1, d, i - step)) / (2 * step)
        np.testing.assert_allclose(m.dvdi(k - 1, d, i), numeric, rtol=1e-4)
        assert np.all(m.dvdi(k - 1, d, i) > 0)  # monotone (PCHIP keeps the data's shape)
        for x in i[::5]:
            assert m.voltage_one(k - 1, d, float(x)) == pytest.approx(
                float(m.voltage(k - 1, d, x)), rel=1e-12)
    with pytest.raises(ValueError, match=r"pair 2 device B: current 0.00012 A is outside its "
                                         r"measured range \[-0.0001, 0.0001\] A"):
        m.voltage(1, 1, 120e-6)
    assert float(m.voltage(1, 1, 120e-6, strict=False)) > float(m.voltage(1, 1, 100e-6))


@pytest.mark.parametrize(("edit", "match"), [
    (lambda rows: [r[:1] + r[2:] for r in rows], "missing column"),
    (lambda rows: rows[:1] + [r for r in rows[1:] if not (r[1] == "2" and r[2] == "B")],
     "pair 2 has no device B"),
    (lambda rows: rows[:1] + [r for r in rows[1:] if r[1] == "1"] + [
        ["0.1", "3", "A", "0"]] * 1, "3 distinct|1 distinct"),
    (lambda rows: rows[:5] + [["oops", *rows[5][1:]]] + rows[6:], r":6: .*numbers"),
    (lambda rows: rows[:1] + [[("-1" if j == 10 and r[1] == "1" and r[2] == "A" else r[0]),
                               *r[1:]] for j, r in enumerate(rows[1:], start=1)],
     "V does not rise with I"),
])
def test_bad_tables_are_refused_naming_the_entry(tmp_path, edit, match):
    path = write_table(tmp_path / "t.csv", table_devices(), shuffle=False)
    rows = list(csv.reader(path.read_text().splitlines()))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(edit(rows))
    with pytest.raises(MeasuredTableError, match=match):
        MeasuredDevices.from_csv(path)


def test_station_file_devices_option_and_its_checks(tmp_path):
    write_table(tmp_path / "t.csv", table_devices())
    station = tmp_path / "st.toml"
    station.write_text(station_text('devices = "t.csv"'))
    cfg = parse_station(station.read_text(), str(station))
    assert cfg.simulation.n_pairs == 2 and cfg.simulation.devices == str(tmp_path / "t.csv")
    assert len(cfg.simulation.device_table) == 4 * len(GRID)
    # The record's form (SimSettings as the start document's JSON holds it) gives the
    # same devices without the file.
    import json
    from dataclasses import asdict

    from labctl.station.file import simulation_from_record

    again = simulation_from_record(json.loads(json.dumps(asdict(cfg.simulation))), "record")
    assert [list(r) for r in again.device_table] == [list(r) for r in
                                                       cfg.simulation.device_table]
    bad = station_text('devices = "t.csv"\nn_pairs = 3')
    with pytest.raises(StationFileError, match=r"n_pairs: 3 disagrees with the 2 pairs"):
        parse_station(bad, str(station))
    narrow = station_text('devices = "t.csv"').replace("max_current_a = 100e-6",
                                                        "max_current_a = 120e-6")
    with pytest.raises(StationFileError, match=r"does not cover pair 1's max_current_a"):
        parse_station(narrow, str(station))
    with pytest.raises(StationFileError, match=r"\[simulation\] devices: .*cannot read"):
        parse_station(station_text('devices = "none.csv"'), str(station))


def test_labctl_iv_on_a_station_built_from_a_table_gives_back_the_table(tmp_path, capsys):
    from labctl.cli import main

    curves = table_devices()
    write_table(tmp_path / "t.csv", curves)
    station = tmp_path / "st.toml"
    station.write_text(station_text('devices = "t.csv"'))
    out = tmp_path / "iv"
    status = main(["iv", "--pair", "2", "--points", "21", "--station", str(station),
                   "--out", str(out), "--sessions-dir", str(tmp_path / "s"), "--no-progress"])
    capsys.readouterr()
    assert status == 0
    rows = list(csv.DictReader((out / "iv.csv").read_text().splitlines()))
    i = np.array([float(r["current_a"]) for r in rows])
    m = MeasuredDevices.from_csv(tmp_path / "t.csv")
    for key, dev in (("v_a_v", 0), ("v_b_v", 1)):
        measured = np.array([float(r[key]) for r in rows])
        # SMU read noise 20 uV rms at 1 NPLC: within 6 sigma of the table at every point.
        np.testing.assert_allclose(measured, m.voltage(1, dev, i), rtol=0, atol=120e-6)
    # The oracle's exact dV/dI is the interpolant's derivative.
    cfg = parse_station(station.read_text(), str(station))
    world = StationWorld(cfg.simulation)
    oracle = Oracle(world, cfg.wiring)
    np.testing.assert_allclose(oracle.dvdi([2], i[2:-2]), m.dvdi(1, 0, i[2:-2]), rtol=1e-12)
    # And these devices are the table's, not the compact model's.
    assert np.max(np.abs(m.voltage(1, 0, i) - voltage(NOMINAL, i))) > 5e-3


def test_iv_sessions_become_devices_of_a_station_and_of_the_model_backend(tmp_path, capsys):
    from labctl.cli import main

    status = main(["iv", "--pair", "1", "--points", "41", "--sessions-dir",
                   str(tmp_path / "s"), "--no-progress", "--variability", "pronounced"])
    assert status == 0
    capsys.readouterr()
    sessions = sorted(p.name for p in (tmp_path / "s").iterdir())
    station = tmp_path / "st.toml"
    station.write_text(station_text(f'iv_sessions = ["s/{sessions[0]}"]', n_pairs=1))
    cfg = parse_station(station.read_text(), str(station))
    assert cfg.simulation.n_pairs == 1
    measured = cfg.simulation.measured_devices()
    iv = list(csv.DictReader((tmp_path / "s" / sessions[0] / "iv.csv").read_text().splitlines()))
    i = np.array([float(r["current_a"]) for r in iv])
    v_a = np.array([float(r["v_a_v"]) for r in iv])
    np.testing.assert_allclose(measured.voltage(0, 0, i), v_a, atol=1e-9)
    neurons = ModelNeurons(1, seed=0, measured=measured, variability="nominal", grad="fd-swap")
    r = neurons.measure(i[5:-5, None])
    np.testing.assert_allclose(r.v[:, 0], v_a[5:-5], atol=120e-6)
    with pytest.raises(ValueError, match=r"pair 1 device A: current 0.0002 A is outside"):
        neurons.measure(np.array([[200e-6]]))
    with pytest.raises(ValueError, match="need 2 pairs; the table has 1"):
        ModelNeurons(1, seed=0, measured=measured, first_pair=1)
    twice = station_text(f'iv_sessions = ["s/{sessions[0]}", "s/{sessions[0]}"]', n_pairs=1)
    with pytest.raises(StationFileError, match="both sweep pair 1"):
        parse_station(twice, str(station))


def test_model_backend_on_measured_devices_matches_its_compact_twin():
    # Tabulate two compact-model pairs finely: the measured-device backend must then give
    # the model backend's own readings (the same noise streams for the same seed).
    p = sample_pairs(2, PRESETS["nominal"], np.random.default_rng(5))
    fine = np.linspace(-110e-6, 110e-6, 441)
    data = {(k + 1, "AB"[d]): (fine, voltage(p.take((k, d)), fine)) for k in (0, 1)
            for d in (0, 1)}
    measured = MeasuredDevices.from_arrays(data, "twin")
    twin = ModelNeurons(2, seed=1, params=p, grad="fd-swap", lut=False)
    table = ModelNeurons(2, seed=1, measured=measured, grad="fd-swap")
    currents = 40e-6 + 20e-6 * np.random.default_rng(2).standard_normal((50, 2))
    a, b = twin.measure(currents), table.measure(currents)
    np.testing.assert_allclose(a.v, b.v, atol=2e-7)
    np.testing.assert_allclose(a.dvdi, b.dvdi, rtol=2e-3)
    np.testing.assert_allclose(table.exact_dvdi(currents), twin.exact_dvdi(currents), rtol=2e-3)
    assert replace(NOMINAL) == NOMINAL


def test_train_iris_model_backend_runs_on_the_station_files_measured_devices(tmp_path, capsys):
    from labctl.cli import main

    write_table(tmp_path / "t.csv", table_devices(8))
    station = tmp_path / "st.toml"
    station.write_text(station_text('devices = "t.csv"', n_pairs=8))
    plain = tmp_path / "plain.toml"
    plain.write_text(station_text("", n_pairs=8))
    runs = {}
    for name, path in (("measured", station), ("drawn", plain)):
        status = main(["train", "iris", "--backend", "model", "--station", str(path),
                       "--folds", "2", "--epochs", "3", "--json", "--no-progress",
                       "--sessions-dir", str(tmp_path / "s")])
        assert status == 0
        runs[name] = json.loads(capsys.readouterr().out)
    # the sub-domain devices of the table train otherwise than the preset's drawn ones,
    # and the derivative is measured on them: near-exact against their own interpolant
    assert runs["measured"]["dvdi_err_median"] != runs["drawn"]["dvdi_err_median"]
    assert runs["measured"]["grad_cosine"] > 0.99
