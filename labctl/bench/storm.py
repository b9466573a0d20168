"""Benchmark: a storm of signals against real labctl processes on a served station.

``run(n, seed)`` serves the built-in bench (``labctl sim serve --station``, at
:data:`TIME_SCALE`, so a 2001-point I-V sweep takes a few seconds of wall time) and then,
``n`` times, starts a real ``labctl train iris --folds 2 --epochs 30`` or ``labctl iv
--points 2001`` against it and sends it one signal (SIGINT, SIGTERM, SIGHUP or SIGKILL,
chosen with ``random.Random(seed)``) after a random delay. After each it checks what a
signal must leave behind:

- SIGINT, SIGTERM, SIGHUP: exit 130, a stop document ``abort`` naming the signal, with
  ``labctl_shutdown.confirmed``;
- SIGKILL: no stop document, but ``labctl sessions list`` and ``labctl report`` read the
  session;
- every signal: asked over their own sockets, both SMUs have their output off at 0 A, the
  ADC is not ARMED and the switch matrix has nothing closed (after a SIGKILL nobody could
  switch them off: the storm then only records what it found and switches them off itself
  before the next run, see :func:`make_safe`);
- every training: ``labctl train iris --resume`` completes (exit 0, both folds).

A process that ended before the signal reached it (the delay outlived the command) counts
as ``missed``, not as tried. Returns (and ``labctl bench --only storm`` prints) per signal
how many were tried and how many held, and every failure with what was found.
``python -m labctl.bench.storm [n] [seed]`` runs it alone.

The helpers (:func:`served`, :func:`raw_query`, :func:`bench_state`, :func:`labctl`) are
also what tests/test_fault_matrix.py uses to run commands against a served, faulty bench.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Instrument time per wall time of the served station: the 2001-point sweep at 1 NPLC
#: (34 s of instrument time) takes about 3.4 s.
TIME_SCALE = 0.1
SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGKILL")
COMMANDS = ("train", "iv")
TRAIN_ARGS = ("train", "iris", "--folds", "2", "--epochs", "30", "--json", "--no-progress")
IV_ARGS = ("iv", "--pair", "2", "--points", "2001", "--nplc", "1")
#: (lowest, highest) wall-time delay (s) before the signal, per command.
DELAYS_S = {"train": (0.3, 6.0), "iv": (0.3, 4.0)}
GETCLOSE = 'print(channel.getclose("allslots"))'
_TCPIP = re.compile(r"^TCPIP0?::([^:]+)::(\d+)::SOCKET$", re.IGNORECASE)
_SOCKET = re.compile(r"^socket://([^:/]+):(\d+)$")


# -- processes -------------------------------------------------------------------------
def child_env() -> dict[str, str]:
    """The environment of a labctl subprocess: this source tree importable, no display."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}


def labctl_argv(*args: object) -> list[str]:
    return [sys.executable, "-m", "labctl.cli", *map(str, args)]


@contextlib.contextmanager
def _default_sigint() -> Iterator[None]:
    """A child started here gets SIGINT's default disposition even if this process ignores
    it (a background job): only then does Python turn SIGINT into KeyboardInterrupt."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_labctl(*args: object, cwd: Path) -> subprocess.Popen:
    """``labctl ARGS`` as a subprocess (stdout and stderr piped, text)."""
    with _default_sigint():
        return subprocess.Popen(labctl_argv(*args), cwd=cwd, env=child_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def labctl(*args: object, cwd: Path, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run ``labctl ARGS`` to the end (a hang raises ``subprocess.TimeoutExpired``)."""
    with _default_sigint():
        return subprocess.run(labctl_argv(*args), cwd=cwd, env=child_env(),
                              capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Served:
    """A running ``labctl sim serve``: its resources and the client station file."""

    proc: subprocess.Popen
    resources: dict[str, str]
    station: Path
    stderr: list[str] = field(default_factory=list)


@contextlib.contextmanager
def served(station_text: str, workdir: Path, timeout: float = 30.0) -> Iterator[Served]:
    """``labctl sim serve --station`` of ``station_text`` (a station file with
    ``[simulation]``) in its own process, until the block ends (SIGTERM)."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    source, client = workdir / "served.toml", workdir / "client.toml"
    source.write_text(station_text)
    with _default_sigint():
        proc = subprocess.Popen(
            labctl_argv("sim", "serve", "--station", source, "--write-station", client),
            cwd=workdir, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []

    def pump(stream, sink) -> None:
        for line in stream:
            sink(line)
        if stream is proc.stdout:
            lines.put(None)

    readers = [threading.Thread(target=pump, args=(proc.stdout, lines.put), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, errors.append), daemon=True)]
    for r in readers:
        r.start()
    try:
        resources: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("labctl sim serve did not print ready in time") from None
            if line is None:
                proc.wait(timeout=5)
                raise RuntimeError(f"labctl sim serve ended early ({proc.returncode}): "
                                   + "".join(errors)[-2000:])
            if line.strip() == "ready":
                break
            name, resource = line.split()
            resources[name] = resource
        yield Served(proc, resources, client, errors)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for r in readers:
            r.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()


# -- the instruments asked directly -----------------------------------------------------------
def _address(resource: str) -> tuple[str, int]:
    m = _TCPIP.match(resource) or _SOCKET.match(resource)
    if not m:
        raise ValueError(f"not a TCP resource: {resource!r}")
    return m.group(1), int(m.group(2))


def raw_query(resource: str, command: str, timeout: float = 15.0) -> str:
    """One query over a fresh raw socket to a TCP resource (VISA SOCKET or socket://).

    The simulated 2400 finishes a running sweep before it reads the next command, so a
    query may wait for the rest of a sweep."""
    with socket.create_connection(_address(resource), timeout=timeout) as sock:
        stream = sock.makefile("rwb")
        stream.write(command.encode() + b"\n")
        stream.flush()
        return stream.readline().decode("ascii", "replace").rstrip("\r\n")


def raw_write(resource: str, command: str, timeout: float = 15.0) -> None:
    with socket.create_connection(_address(resource), timeout=timeout) as sock:
        sock.sendall(command.encode() + b"\n")


def adc_resource(resources: dict[str, str]) -> str:
    """The ADC board's TCP resource (the served bench also has it on a pty)."""
    return resources.get("adc_socket") or resources["adc"]


def bench_state(resources: dict[str, str]) -> dict[str, str]:
    """What the served instruments say about themselves, asked over their own sockets."""
    state = {}
    for smu in ("smu_a", "smu_b"):
        state[f"{smu}:OUTP?"] = raw_query(resources[smu], ":OUTP?")
        state[f"{smu}:SOUR:CURR?"] = raw_query(resources[smu], ":SOUR:CURR?")
    state["adc:ACQ:STAT?"] = raw_query(adc_resource(resources), "ACQ:STAT?")
    state["switch:getclose"] = raw_query(resources["switch"], GETCLOSE)
    return state


def unsafe(state: dict[str, str]) -> list[str]:
    """What in ``state`` (:func:`bench_state`) is not safe: an output on, a current set, the
    ADC armed, a switch channel closed. Empty: all safe."""
    bad = []
    for smu in ("smu_a", "smu_b"):
        if state[f"{smu}:OUTP?"] != "0":
            bad.append(f"{smu} output {state[f'{smu}:OUTP?']!r}")
        try:
            level = float(state[f"{smu}:SOUR:CURR?"])
        except ValueError:
            level = float("nan")
        if level != 0.0:
            bad.append(f"{smu} source current {state[f'{smu}:SOUR:CURR?']!r}")
    if state["adc:ACQ:STAT?"].startswith("ARMED") or not state["adc:ACQ:STAT?"]:
        bad.append(f"adc {state['adc:ACQ:STAT?']!r}")
    if state["switch:getclose"] != "nil":
        bad.append(f"switch closed {state['switch:getclose']!r}")
    return bad


def make_safe(resources: dict[str, str], ramp_step_a: float = 20e-6) -> None:
    """Switch the served bench off directly (after a SIGKILL nobody else will): each SMU's
    sweep aborted, its current ramped to 0 A in steps of at most ``ramp_step_a``, its output
    off; the ADC disarmed; the switch matrix opened."""
    for smu in ("smu_a", "smu_b"):
        raw_write(resources[smu], ":ABOR")
        raw_write(resources[smu], ":SOUR:CURR:MODE FIX")
        try:
            level = float(raw_query(resources[smu], ":SOUR:CURR?"))
        except ValueError:
            level = 0.0
        while level != 0.0:
            level = 0.0 if abs(level) <= ramp_step_a else level - ramp_step_a * (level > 0 or -1)
            raw_write(resources[smu], f":SOUR:CURR {level:.9g}")
        raw_write(resources[smu], ":OUTP OFF")
    raw_write(adc_resource(resources), "ACQ:ABOR")
    raw_write(resources["switch"], 'channel.open("allslots")')
