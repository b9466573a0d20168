"""pymeasure's own device test suite for the Keithley 2400, unmodified, against `labctl sim serve`.

The suite (``tests/instruments/keithley/test_keithley2400_with_device.py`` and the
``--device-address`` option of ``tests/conftest.py``) ships in pymeasure's sdist, not in its
wheel: the sdist of the installed pymeasure version is fetched from the package index with
``pip download`` into the pytest cache (once), and the two files are run as they are, with
pytest in a subprocess, against a ``labctl sim serve --reference-load 1000 --smu-serial``
subprocess: every SMU on a 1 kOhm resistor to ground, and on a pseudo-terminal (its RS-232
port, ``ASRL<pty>::INSTR``: the suite opens ``Keithley2400(address)`` with no termination,
and pyvisa ends serial reads at ``\\n`` by default, where a raw socket would wait). All
75 cases must pass.
"""

from __future__ import annotations

import importlib.metadata
import os
import queue
import signal
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SUITE = "tests/instruments/keithley/test_keithley2400_with_device.py"
CONFTEST = "tests/conftest.py"
EXPECTED_CASES = 75


def _sdist(cache_dir: Path, version: str) -> Path:
    """pymeasure's sdist of ``version`` in ``cache_dir``, downloaded with pip if absent."""
    target = cache_dir / f"pymeasure-{version}.tar.gz"
    if not target.exists():
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--disable-pip-version-check", "-q", "-d", str(cache_dir),
             f"pymeasure=={version}"],
            capture_output=True, text=True, timeout=120,
        )
        if proc.returncode != 0 or not target.exists():
            pytest.fail(f"pip download pymeasure=={version} failed (exit {proc.returncode}):\n"
                        f"{proc.stderr[-2000:]}")
    return target


@pytest.fixture(scope="module")
def device_suite(request, tmp_path_factory) -> Path:
    """A directory holding pymeasure's conftest and 2400 device suite as the sdist has them."""
    version = importlib.metadata.version("pymeasure")
    cache_plugin = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    if cache_plugin is not None:
        cache = Path(cache_plugin.mkdir("pymeasure-sdist"))
    else:
        cache = tmp_path_factory.getbasetemp().parent / "labctl-pymeasure-sdist"
        cache.mkdir(exist_ok=True)
    sdist = _sdist(cache, version)
    out = tmp_path_factory.mktemp("pymeasure-suite")
    prefix = f"pymeasure-{version}/"
    with tarfile.open(sdist) as tar:
        for name in (CONFTEST, SUITE):
            member = tar.getmember(prefix + name)
            data = tar.extractfile(member)
            assert data is not None, f"{sdist}: {name} is not a file"
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.read())
    (out / "pytest.ini").write_text("[pytest]\n")  # the rootdir; no configuration of ours
    return out


@pytest.fixture(scope="module")
def served() -> dict[str, str]:
    """A `labctl sim serve --reference-load 1000 --smu-serial` subprocess; its resources."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "sim", "serve", "--reference-load", "1000",
         "--smu-serial"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()  # a thread reads: no select on a buffered pipe
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()
    resources: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"labctl sim serve did not print ready (exit {proc.poll()}): "
                            f"{proc.stderr.read() if proc.poll() is not None else ''}")
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
        proc.stderr.close()


def test_pymeasure_keithley2400_device_suite_passes_75_of_75(device_suite, served, tmp_path):
    address = served["smu_a_serial"]
    assert address.startswith("ASRL/dev/") and address.endswith("::INSTR")
    report = tmp_path / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", SUITE, "--device-address", address, "-q",
         "-p", "no:cacheprovider", f"--junitxml={report}", "-o", "junit_family=xunit2"],
        cwd=device_suite, env={**os.environ, "PYTHONPATH": ""}, capture_output=True,
        text=True, timeout=120,
    )
    assert report.exists(), f"pytest wrote no report (exit {proc.returncode}):\n{proc.stdout}"
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [c.get("name") for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    assert counts == {"tests": EXPECTED_CASES, "failures": 0, "errors": 0, "skipped": 0}, (
        f"{counts}, failed: {failed}\n{proc.stdout[-4000:]}"
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
