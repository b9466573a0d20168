"""`labctl station selftest` as a real subprocess, against simulated benches with a reference.

"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from instruments import open_adapter
from instruments.keithley2400 import Keithley2400
from labctl.station.file import BUILTIN_TEXT

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

WIRING = """
[wiring]
smu_a = "smu_a"
smu_b = "smu_b"
trigger_master = "smu_a"
adc = "adc"
adc_input = 1
adc_polarity = 1
switch = "switch"
prober = "prober"
n_pairs = 16

[limits]
max_current_a = 100e-6
compliance_v = 0.8
ramp_step_a = 20e-6
"""


def selftest(station: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labctl.cli", "station", "selftest", "--station", str(station)],
        cwd=cwd, env=ENV, capture_output=True, text=True, timeout=60,
    )


def channel_rows(stdout: str, channel: str) -> list[str]:
    """The table rows printed under ``channel <channel>:``."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"channel {channel}:"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("  "):
            break
        rows.append(line.strip())
    return rows


def test_a_simulated_station_with_a_switched_reference_passes(tmp_path):
    station = tmp_path / "station.toml"
    station.write_text(BUILTIN_TEXT + '\n[reference]\nohms = 1000.0\ntolerance = 0.01\n'
                       'channels = { smu_a = "1A00", smu_b = "1B00" }\n')
    proc = selftest(station, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reference: 1000 Ohm +-1 %, via smu_a 1A00, smu_b 1B00" in proc.stdout
    for channel in ("smu_a", "smu_b"):
        assert f"channel {channel}: pass" in proc.stdout
        rows = channel_rows(proc.stdout, channel)
        assert [r.split()[0] for r in rows] == ["current", "voltage"]
        for row in rows:
            measured = float(row.split()[4])
            assert measured == pytest.approx(1000.0, rel=0.002) and row.endswith("pass")
    assert "outputs: every SMU at 0 and off, switch open (confirmed)" in proc.stdout


def test_a_station_without_a_reference_checks_identities_and_error_queues_only(tmp_path):
    station = tmp_path / "station.toml"
    station.write_text(BUILTIN_TEXT)
    proc = selftest(station, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reference: none declared" in proc.stdout
    assert proc.stdout.count("ok, error queue empty") == 5
    assert "channel " not in proc.stdout


def test_a_bad_reference_table_names_the_file_and_key(tmp_path):
    station = tmp_path / "station.toml"
    station.write_text(BUILTIN_TEXT + '\n[reference]\nohms = 1000.0\n'
                       'channels = { smu_a = "1A01", smu_b = "1B00" }\n')
    proc = selftest(station, tmp_path)
    assert proc.returncode == 2
    assert f"{station}: [reference.channels] smu_a: switch channel 1A01 reaches a device" in (
        proc.stderr)


@pytest.fixture
def served():
    """`labctl sim serve --reference-load 1000`: every SMU on 1 kOhm; its resources."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "sim", "serve", "--reference-load", "1000"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()
    resources: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"labctl sim serve did not print ready (exit {proc.poll()})")
            if line.strip() == "ready":
                break
            name, resource = line.split()
            resources[name] = resource
        yield resources
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()


def client_station(served: dict[str, str], reference: str) -> str:
    instruments = "".join(
        f'[instruments.{name}]\ndriver = "{driver}"\nresource = "{served[key]}"\n'
        f"timeout_s = 2.0\n"
        for name, driver, key in (("smu_a", "keithley2400", "smu_a"),
                                  ("smu_b", "keithley2400", "smu_b"),
                                  ("adc", "adc_board", "adc_socket"),
                                  ("switch", "switch_matrix", "switch"),
                                  ("prober", "prober", "prober"))
    )
    return instruments + WIRING + reference


def test_a_declared_reference_the_served_load_disagrees_with_fails_naming_the_channel(
        served, tmp_path):
    station = tmp_path / "client.toml"
    station.write_text(client_station(served, "\n[reference]\nohms = 1200.0\n"))
    proc = selftest(station, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "reference: 1200 Ohm +-1 %, hard-wired to every SMU channel" in proc.stdout
    for channel in ("smu_a", "smu_b"):
        assert f"channel {channel}: FAIL" in proc.stdout
        for row in channel_rows(proc.stdout, channel):
            error = float(re.search(r"([+-]\d+\.\d+) %", row).group(1))
            assert error == pytest.approx(-16.67, abs=0.2)  # 1000 read against 1200
            assert "FAIL: beyond +-1 %" in row
    # Outputs off at the end, at zero, as the served instruments say.
    for name in ("smu_a", "smu_b"):
        smu = Keithley2400(open_adapter(served[name], timeout_s=2.0), name=name)
        try:
            assert smu.ask(":OUTP?;:SOUR:CURR?;:SOUR:VOLT?").strip() == (
                "0;0.000000E+00;0.000000E+00")
        finally:
            smu.adapter.close()


def test_the_same_served_load_passes_when_declared_right(served, tmp_path):
    station = tmp_path / "client.toml"
    station.write_text(client_station(served, "\n[reference]\nohms = 1000.0\n"
                                              "tolerance = 0.005\n"))
    proc = selftest(station, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "channel smu_a: pass" in proc.stdout and "channel smu_b: pass" in proc.stdout


@pytest.fixture
def served_file(tmp_path):
    """`labctl sim serve --station` of a file with a switched reference, and the client
    station file it writes (``--write-station``)."""
    source = tmp_path / "bench.toml"
    source.write_text(BUILTIN_TEXT + '\n[reference]\nohms = 2200.0\ntolerance = 0.01\n'
                      'channels = { smu_a = "1A00", smu_b = "1B00" }\n')
    client = tmp_path / "client.toml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "sim", "serve", "--station", str(source),
         "--write-station", str(client)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True,
    )
    try:
        for line in proc.stdout:
            if line.strip() == "ready":
                break
        else:
            pytest.fail(f"labctl sim serve did not print ready (exit {proc.wait()})")
        yield client
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_a_served_station_file_serves_its_switched_reference(served_file, tmp_path):
    text = served_file.read_text()
    assert "[simulation]" not in text and "ohms = 2200.0" in text
    proc = selftest(served_file, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "via smu_a 1A00, smu_b 1B00" in proc.stdout
    assert proc.stdout.count(" pass") >= 6  # two channels, two rows each, plus headings


@pytest.mark.parametrize("table, message", [
    ("ohms = 0", "[reference] ohms: must be positive"),
    ("ohm = 1000", "[reference] ohm: unknown key"),
    ("ohms = 1e3\ntolerance = 0.9", "[reference] tolerance: must be at most 0.5"),
    ('ohms = 1e3\nchannels = { smu_a = "1A00" }', "[reference.channels]: no switch channel "
                                                  "for smu_b"),
    ('ohms = 1e3\nchannels = { smu_c = "1A00", smu_a = "1B00" }',
     "[reference.channels] smu_c: biases no device"),
    ('ohms = 1e3\nchannels = { smu_a = "1A00", smu_b = "1A00" }',
     "[reference.channels] smu_b: switch channel 1A00 is given for two SMU channels"),
    ('ohms = 1e3\nchannels = { smu_a = "row A", smu_b = "1B00" }',
     "[reference.channels] smu_a: 'row A' is not a switch channel"),
    ('ohms = 1e3\nchannels = { smu_a = "1A05", smu_b = "1B00" }',
     "[reference.channels] smu_a: switch channel 1A05 reaches a device"),
])
def test_reference_table_errors_name_the_file_and_key(table, message):
    from labctl.station.file import StationFileError, parse_station

    with pytest.raises(StationFileError) as err:
        parse_station(BUILTIN_TEXT + f"\n[reference]\n{table}\n", "bench.toml")
    assert str(err.value).startswith(f"bench.toml: {message}")


def test_a_simulated_reference_off_column_00_is_refused(tmp_path):
    from labctl.station.file import StationFileError, parse_station
    from labctl.station.simulated import cabling_for

    config = parse_station(BUILTIN_TEXT + '\n[reference]\nohms = 1e3\n'
                           'channels = { smu_a = "1A17", smu_b = "1B00" }\n', "bench.toml")
    with pytest.raises(StationFileError, match=r"smu_a: '1A17' does not exist on the "
                                               r"simulated matrix.*1A00"):
        cabling_for(config)


def test_sim_serve_refuses_a_bad_reference_load(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "sim", "serve", "--reference-load", "-5"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert "--reference-load: must be a positive resistance in Ohm, got -5" in proc.stderr


DUAL_CHANNEL = {"keithley2600": ("a", "b"), "keysight_b2902a": ("1", "2")}


def dual_channel_station(driver: str, reference: str) -> str:
    """The built-in station with one two-channel SMU ``smu`` in place of the two 2400s."""
    a, b = DUAL_CHANNEL[driver]
    return (BUILTIN_TEXT.replace('[instruments.smu_a]\ndriver = "keithley2400"\n'
                                 '[instruments.smu_b]\ndriver = "keithley2400"\n',
                                 f'[instruments.smu]\ndriver = "{driver}"\n')
            .replace('smu_a = "smu_a"\nsmu_b = "smu_b"\ntrigger_master = "smu_a"',
                     f'smu_a = "smu:{a}"\nsmu_b = "smu:{b}"\ntrigger_master = "smu:{a}"')
            + reference)


@pytest.mark.parametrize("driver", sorted(DUAL_CHANNEL))
def test_a_dual_channel_smu_station_measures_both_rows_through_each_channel(driver, tmp_path):
    a, b = DUAL_CHANNEL[driver]
    station = tmp_path / "station.toml"
    station.write_text(dual_channel_station(
        driver, f'\n[reference]\nohms = 1000.0\ntolerance = 0.005\n'
                f'channels = {{ "smu:{a}" = "1A00", "smu:{b}" = "1B00" }}\n'))
    proc = selftest(station, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not measured" not in proc.stdout
    names = [line.split()[1].rstrip(":") for line in proc.stdout.splitlines()
             if line.startswith("channel ")]
    assert len(names) == 2
    for name in names:
        assert f"channel {name}: pass" in proc.stdout
        rows = channel_rows(proc.stdout, name)
        assert [r.split()[0] for r in rows] == ["current", "voltage"]
        # The voltage row: half of min(compliance_v, max_current_a x R) = 0.05 V, measured.
        assert rows[1].split()[1:3] == ["0.05", "V"]
        for row in rows:
            assert float(row.split()[4]) == pytest.approx(1000.0, rel=0.005)
            assert row.endswith("pass")
    assert "outputs: every SMU at 0 and off, switch open (confirmed)" in proc.stdout
