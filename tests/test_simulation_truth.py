"""Records say what is true about simulation: simulation settings only where a simulator
served the devices.

A ``[simulation]`` table beside instruments with resources is refused (it would start a
simulator nobody measures and record its seed and variability as the devices' own), and a
training on a station of real instruments (here: the built-in bench served by ``labctl sim
serve``, which the client cannot tell from hardware) records no variability preset.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.records.session import Session
from labctl.station.file import BUILTIN_TEXT, StationFileError, parse_station

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}


def test_simulation_beside_resources_is_refused_naming_the_instruments():
    text = BUILTIN_TEXT.replace('[instruments.smu_b]\ndriver = "keithley2400"',
                                '[instruments.smu_b]\ndriver = "keithley2400"\n'
                                'resource = "GPIB0::25::INSTR"')
    text = text.replace('[instruments.adc]\ndriver = "adc_board"',
                        '[instruments.adc]\ndriver = "adc_board"\nresource = "/dev/ttyUSB0"')
    with pytest.raises(StationFileError) as info:
        parse_station(text, "bench.toml")
    message = str(info.value)
    assert message.startswith("bench.toml: [instruments.smu_b] resource: given beside "
                              "[simulation]"), message
    assert "also adc" in message
    parse_station(BUILTIN_TEXT, "builtin")  # every instrument simulated: fine


def test_a_training_on_real_instruments_records_no_simulation(tmp_path):
    client = tmp_path / "client.toml"
    station = tmp_path / "bench.toml"
    station.write_text(BUILTIN_TEXT)
    server = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "sim", "serve", "--station", station,
         "--write-station", client], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        for line in server.stdout:
            if line.strip() == "ready":
                break
        proc = subprocess.run(
            [sys.executable, "-m", "labctl.cli", "train", "iris", "--station", client,
             "--folds", "2", "--epochs", "1", "--no-progress", "--sessions-dir",
             tmp_path / "s"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
            timeout=180)
        assert proc.returncode == 0, proc.stderr
        [session] = list((tmp_path / "s").iterdir())
        config = Session(session).start["config"]
        assert config["station"]["simulation"] is None
        assert config["settings"]["variability"] is None
        refused = subprocess.run(
            [sys.executable, "-m", "labctl.cli", "train", "iris", "--station", client,
             "--variability", "pronounced", "--sessions-dir", tmp_path / "s"], cwd=tmp_path,
            env=ENV, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "has no [simulation]" in refused.stderr
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 0
