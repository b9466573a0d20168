"""Interruption safety with real processes and signals.

``python -m simulators.serve`` serves the station in one process; ``python -m labctl.cli
iv`` runs a long list sweep against it (a station file pointing at the served resources)
and gets SIGINT or SIGTERM in the middle of the sweep. Afterwards the instruments are asked
over their own sockets whether every output is off and the switch matrix open, the session
must list as ``abort``, and every level the labctl process ever sent an SMU (its wire logs)
must be within the limits and ramped. The in-process tests at the end interrupt a list
sweep with SIGINT where the simulated world (and its maximum-bias record) can be seen.

Time: the served station runs at TIME_SCALE, so the 2001-point sweep at 1 NPLC (34 s of
instrument time) takes SWEEP_S of wall time, or up to ~1.5 times that: the simulator sleeps
per point and every sleep overshoots a little. The simulated 2400 reads the :ABOR that
the interrupted labctl sends only once the :READ? it is running is done, so the rest of
the sweep bounds how fast labctl can exit. Units: A, V, s.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from instruments.transport import WireLog
from labctl.bench.storm import child_env, default_sigint
from labctl.records.session import list_sessions
from labctl.station.file import load_station
from labctl.station.runtime import open_station
from protocols.engine import Engine
from protocols.intents import Sweep
from tests.wire_levels import assert_ramped, source_levels

REPO = Path(__file__).resolve().parents[1]
VISA_SOCKET = re.compile(r"^TCPIP::127\.0\.0\.1::(\d+)::SOCKET$")
TIME_SCALE = 0.1
POINTS = 2001
# 2001 points + 7 ramp points, each 1 NPLC at 60 Hz + 0.25 ms of the simulated 2400.
SWEEP_S = (POINTS + 7) * (1 / 60 + 0.25e-3) * TIME_SCALE  # ~3.4 s
MAX_CURRENT_A = 80e-6
COMPLIANCE_V = 0.7
RAMP_STEP_A = 20e-6  # the default: the station file below does not set it
GETCLOSE = 'print(channel.getclose("allslots"))'


# -- helpers -----------------------------------------------------------------------------
def tcp_query(resource: str, command: str, timeout: float = 10.0) -> str:
    """One query over a raw socket named by a VISA SOCKET resource string.

    The simulated 2400 finishes a running sweep before it reads the next command, so a
    query may wait for the rest of a sweep.
    """
    port = int(VISA_SOCKET.match(resource).group(1))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        stream = sock.makefile("rwb")
        stream.write(command.encode() + b"\n")
        stream.flush()
        return stream.readline().decode().rstrip("\n")


@pytest.fixture
def served():
    """``simulators.serve`` in its own process; yields the resources it printed."""
    with default_sigint():
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulators.serve", "--seed", "1",
             "--time-scale", str(TIME_SCALE)],
            cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
    try:
        resources = {}
        while True:
            line = proc.stdout.readline()
            assert line, f"simulators.serve ended early: {proc.stderr.read()}"
            if line.strip() == "ready":
                break
            name, resource = line.split()
            resources[name] = resource
        yield resources
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def station_file(path: Path, resources: dict[str, str], adc: str, smu_timeout_s: float = 5.0):
    """A hardware station file (no [simulation]) naming the served resources."""
    instruments = {
        "smu_a": ("keithley2400", resources["smu_a"]),
        "smu_b": ("keithley2400", resources["smu_b"]),
        "adc": ("adc_board", resources[adc]),
        "switch": ("switch_matrix", resources["switch"]),
        "prober": ("prober", resources["prober"]),
    }
    text = '[station]\nname = "served simulator"\n'
    for name, (driver, resource) in instruments.items():
        text += f'\n[instruments.{name}]\ndriver = "{driver}"\nresource = "{resource}"\n'
        if driver == "keithley2400":
            text += f"timeout_s = {smu_timeout_s}\n"
    text += "\n[wiring]\n" + "".join(f'{n} = "{n}"\n' for n in instruments) + "n_pairs = 16\n"
    text += f"\n[limits]\nmax_current_a = {MAX_CURRENT_A}\ncompliance_v = {COMPLIANCE_V}\n"
    path.write_text(text)
    assert load_station(path).wiring.adc == "adc"  # a valid station file
    return path


def start_iv(station: Path, sessions: Path) -> subprocess.Popen:
    with default_sigint():
        return subprocess.Popen(
            [sys.executable, "-m", "labctl.cli", "iv", "--pair", "2", "--points", str(POINTS),
             "--station", str(station), "--nplc", "1", "--sessions-dir", str(sessions)],
            cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip


def wait_for_sweep_start(proc: subprocess.Popen, sessions: Path, timeout: float = 20.0):
    """Wait until SMU A's list is configured (the :READ? that runs it follows at once).

    The wire log is flushed at every reply; ':TRIG:OLIN' is followed by an error-queue
    query, so it is on disk as soon as the master is configured.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for log in sessions.glob("*/wire/smu_a.wlog"):
            if any(e.get("w", "").startswith(":TRIG:OLIN") for e in WireLog.load(log)):
                return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"labctl iv ended before its sweep started ({proc.returncode}): {err}")
        time.sleep(0.02)
    pytest.fail("labctl iv did not start its sweep in time")


def assert_instruments_safe(resources: dict[str, str]) -> None:
    """Asked over their own sockets: outputs off at 0 A, every switch channel open."""
    for smu in ("smu_a", "smu_b"):
        assert tcp_query(resources[smu], ":OUTP?") == "0", smu
        assert float(tcp_query(resources[smu], ":SOUR:CURR?")) == 0.0, smu
    assert tcp_query(resources["switch"], GETCLOSE) == "nil"


def assert_session_wire_logs_safe(session: Path) -> None:
    for smu in ("smu_a", "smu_b"):
        entries = WireLog.load(session / "wire" / f"{smu}.wlog")
        assert_ramped(source_levels(entries), MAX_CURRENT_A, RAMP_STEP_A)
        outputs = [e["w"] for e in entries if e.get("w", "").upper().startswith(":OUTP ")]
        assert outputs and outputs[-1].upper() == ":OUTP OFF", (smu, outputs[-3:])
    switch = [e["w"] for e in WireLog.load(session / "wire" / "switch.wlog") if "w" in e]
    last_close = max(i for i, w in enumerate(switch) if "close(" in w and "get" not in w)
    assert any(w == 'channel.open("allslots")' for w in switch[last_close:])


# -- signals to a labctl process -------------------------------------------------------------
@pytest.mark.parametrize(
    ("stop_signal", "adc", "reason"),
    [
        (signal.SIGINT, "adc", "SIGINT"),  # the ADC on its pty
        (signal.SIGTERM, "adc_socket", "SIGTERM"),  # the ADC over socket://
        (signal.SIGHUP, "adc", "SIGHUP"),  # a closed terminal
    ],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_signal_mid_sweep_leaves_the_station_safe(served, tmp_path, stop_signal, adc, reason):
    sessions = tmp_path / "sessions"
    # A reply timeout well beyond the sweep, so that only the signal ends it (see
    # test_sweep_longer_than_the_reply_timeout for what a shorter one does).
    station = station_file(tmp_path / "station.toml", served, adc, smu_timeout_s=15.0)
    proc = start_iv(station, sessions)
    try:
        wait_for_sweep_start(proc, sessions)
        time.sleep(min(1.0, SWEEP_S / 3))  # well inside the sweep
        sent = time.monotonic()
        proc.send_signal(stop_signal)
        out, err = proc.communicate(timeout=SWEEP_S + 10)
        exit_s = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert exit_s < 2 * SWEEP_S, exit_s  # the rest of the sweep, then a prompt cleanup
    assert "interrupted" in err and "MAY STILL BE ON" not in err and "garbled" not in err

    (summary,) = list_sessions(sessions)
    assert (summary.command, summary.status, summary.reason) == ("iv", "abort", reason)
    assert summary.n_events == 0  # interrupted before the sweep's readings came back
    assert not (summary.path / "iv.csv").exists()
    smu_a = WireLog.load(summary.path / "wire" / "smu_a.wlog")
    assert any(e.get("w") == ":READ?" for e in smu_a)  # the sweep had started

    assert_instruments_safe(served)
    assert_session_wire_logs_safe(summary.path)


def test_sweep_longer_than_the_reply_timeout(served, tmp_path):
    """TIME_SCALE compresses the 34 s sweep of real time to SWEEP_S; timeout_s = 0.5 s is
    the default 5 s compressed alike. On hardware: any 2001-point sweep at 1 NPLC."""
    sessions = tmp_path / "sessions"
    station = station_file(tmp_path / "station.toml", served, "adc_socket", smu_timeout_s=0.5)
    proc = start_iv(station, sessions)
    try:
        out, err = proc.communicate(timeout=SWEEP_S + 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    try:
        assert proc.returncode == 0, err
    finally:
        assert_instruments_safe(served)


# -- SIGINT in-process: the world and its maximum-bias record in view ---------------------------
IN_PROCESS_POINTS = 1001
IN_PROCESS_SWEEP_S = (IN_PROCESS_POINTS + 10) * (1 / 60 + 0.25e-3) * TIME_SCALE  # ~1.7 s


def interrupt_list_sweep(tmp_path: Path) -> dict:
    """Run a 1001-point list sweep at +-100 uA on the built-in station and SIGINT this
    process 0.5 s into it; returns what happened."""
    config = load_station(None, seed=1, variability="nominal", time_scale=TIME_SCALE)
    currents = np.linspace(-100e-6, 100e-6, IN_PROCESS_POINTS)
    armed = threading.Event()
    state: dict = {"config": config}

    def on_sigint(signum, frame):
        if armed.is_set():  # only inside the window below; never anywhere else in pytest
            armed.clear()
            state["signal_at"] = time.monotonic()
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    try:
        with pytest.raises(KeyboardInterrupt):
            with open_station(config) as st:
                st.attach_wire_logs(tmp_path)
                state["world"] = world = st.simulator.world
                engine = Engine(st, mode="list")
                engine.execute(Sweep(2, currents[:5], currents[:5]))  # prepared, connected
                assert world.buses["A"].on and world.closed == {"1A02", "1B02"}
                armed.set()
                timer.start()
                state["started"] = time.monotonic()
                engine.execute(Sweep(2, currents, currents))
                armed.clear()
                pytest.fail("the sweep ended before the interrupt")
        state["exited_s"] = time.monotonic() - state["signal_at"]
    finally:
        armed.clear()
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, previous)
    state["wire"] = {n: WireLog.load(tmp_path / "wire" / f"{n}.wlog") for n in ("smu_a", "smu_b")}
    return state


def test_sigint_mid_list_sweep_in_process(tmp_path):
    state = interrupt_list_sweep(tmp_path)
    world, config = state["world"], state["config"]
    assert state["signal_at"] - state["started"] < IN_PROCESS_SWEEP_S / 2
    assert state["exited_s"] < 2 * IN_PROCESS_SWEEP_S
    assert world.buses["A"].on is False and world.buses["B"].on is False
    assert world.buses["A"].set_current == 0.0 and world.buses["B"].set_current == 0.0
    assert world.closed == set()
    limits = config.limits
    for die, record in world.max_bias_record().items():
        assert not record["destroyed"].any(), die
        assert record["max_abs_i"].max() <= limits.max_current_a * (1 + 1e-9), die
        assert record["max_abs_v"].max() <= limits.compliance_v + 1e-9, die
    assert world.max_bias_record()["1,1"]["max_abs_i"][1].max() > 0  # pair 2 was swept
    for levels in map(source_levels, state["wire"].values()):
        assert_ramped(levels, limits.max_current_a, limits.ramp_step_a)


def test_sigint_mid_list_sweep_shutdown_is_clean(tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="labctl.station.runtime"):
        interrupt_list_sweep(tmp_path)
    problems = [r.getMessage() for r in caplog.records if "safe shutdown" in r.getMessage()]
    assert problems == []


def test_after_kill9_mid_host_sweep_the_next_command_ramps_from_what_is_sourced(
        served, tmp_path):
    """A host-paced sweep killed with SIGKILL leaves both SMUs sourcing; the next command
    reads what they source and ramps from there, never jumping to 0 A."""
    station = station_file(tmp_path / "station.toml", served, "adc_socket")
    killed = tmp_path / "killed"
    with default_sigint():
        proc = subprocess.Popen(
            [sys.executable, "-m", "labctl.cli", "iv", "--pair", "2", "--points", "401",
             "--mode", "host", "--station", str(station), "--sessions-dir", str(killed)],
            cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        left = 0.0
        while time.monotonic() < deadline and abs(left) < 30e-6:
            time.sleep(0.05)
            for log in killed.glob("*/wire/smu_a.wlog"):
                levels = source_levels(WireLog.load(log))
                left = levels[-1] if levels else 0.0
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc.stdout.close()
    proc.stderr.close()
    assert abs(left) >= 30e-6, "the sweep never got far from 0 A"
    sourced = float(tcp_query(served["smu_a"], ":SOUR:CURR?"))
    assert tcp_query(served["smu_a"], ":OUTP?") == "1" and abs(sourced) > RAMP_STEP_A, sourced

    after = tmp_path / "after"
    done = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "iv", "--pair", "3", "--points", "11",
         "--station", str(station), "--sessions-dir", str(after)],
        cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (session,) = after.iterdir()
    levels = source_levels(WireLog.load(session / "wire" / "smu_a.wlog"))
    steps = np.abs(np.diff([sourced, *levels]))
    assert steps.max() <= RAMP_STEP_A + 1e-10, (sourced, levels[:6])
    assert_instruments_safe(served)
