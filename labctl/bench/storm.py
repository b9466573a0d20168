"""Benchmark: a storm of signals against real labctl processes on a served station.

``run(n, seed)`` serves the built-in bench (``labctl sim serve --station``, at
:data:`TIME_SCALE`, so a 2001-point I-V sweep takes a few seconds of wall time) and then,
``n`` times, starts a real ``labctl train iris --folds 2 --epochs 30`` or ``labctl iv
--points 2001`` against it and sends it one signal (SIGINT, SIGTERM, SIGHUP or SIGKILL,
chosen with ``random.Random(seed)``) after a random delay (0.3 to 6 s, 0.2 to 3 s:
:data:`DELAYS_S`) after its session started. ``run``'s keywords change the commands'
arguments and delays; a training's delay may also be counted in its fold-epochs as they are
recorded (``units={"train": "epochs"}``), which lands at the same point of a short training
on any machine (tests/test_signal_storm.py runs 3 epochs per fold so). After each it checks
what a signal must leave behind:

- SIGINT, SIGTERM, SIGHUP: exit 130, a stop document ``abort`` naming the signal, with
  ``labctl_shutdown.confirmed``;
- SIGKILL: no stop document, but ``labctl sessions list`` and ``labctl report`` read the
  session;
- every signal: asked over their own sockets, both SMUs have their output off at 0 A, the
  ADC is not ARMED and the switch matrix has nothing closed (after a SIGKILL nobody could
  switch them off: the storm then only records what it found and switches them off itself
  before the next run, see :func:`make_safe`);
- every training: ``labctl train iris --resume`` completes (exit 0, every fold).

A process that ended before the signal reached it (the delay outlived the command) counts
as ``missed``, not as tried. Returns (and ``labctl bench --only storm`` prints) per signal
how many were tried and how many held, and every failure with what was found.
``python -m labctl.bench.storm [n] [seed]`` runs it alone.

The helpers (:func:`served`, :func:`raw_query`, :func:`bench_state`, :func:`labctl`) are
also what tests/test_fault_matrix.py uses to run commands against a served, faulty bench.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
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
DELAYS_S = {"train": (0.3, 6.0), "iv": (0.2, 3.0)}
#: The unit of a delay: "s" (wall time after the session started) or, for a training,
#: "epochs" (its fold-epochs as they are recorded, see :func:`_sleep_epochs`).
DELAY_UNITS = ("s", "epochs")
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
def default_sigint() -> Iterator[None]:
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
    with default_sigint():
        return subprocess.Popen(labctl_argv(*args), cwd=cwd, env=child_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def labctl(*args: object, cwd: Path, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run ``labctl ARGS`` to the end (a hang raises ``subprocess.TimeoutExpired``)."""
    with default_sigint():
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
    with default_sigint():
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


# -- the storm ---------------------------------------------------------------------------
def station_text(time_scale: float) -> str:
    """The built-in station, served at ``time_scale``."""
    from labctl.station.file import BUILTIN_TEXT

    text = BUILTIN_TEXT.replace("time_scale = 0.0", f"time_scale = {time_scale!r}")
    if f"time_scale = {time_scale!r}" not in text:
        raise RuntimeError("the built-in station text has no time_scale = 0.0 to replace")
    return text


def plan(n: int, seed: int, delays: dict[str, tuple[float, float]] | None = None
         ) -> list[tuple[str, str, float]]:
    """``n`` (command, signal, delay): every command x signal once per block of eight, in a
    seeded order, each with a seeded delay from ``delays`` (per command, (lowest, highest)
    in the command's delay unit; default :data:`DELAYS_S`, in s)."""
    delays = DELAYS_S if delays is None else delays
    rng = random.Random(seed)
    out: list[tuple[str, str, float]] = []
    while len(out) < n:
        block = [(c, s) for c in COMMANDS for s in SIGNALS]
        rng.shuffle(block)
        for command, sig in block[: n - len(out)]:
            lo, hi = delays[command]
            out.append((command, sig, round(rng.uniform(lo, hi), 3)))
    return out


def _wait_for_session(proc: subprocess.Popen, sessions: Path, timeout: float = 60.0):
    """The session directory once its start document is written (None: the process ended
    first or took too long)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = [p.parent for p in sessions.glob("*/documents.jsonl") if p.stat().st_size]
        if found:
            return found[0]
        time.sleep(0.01)
    return None


def _sleep_epochs(proc: subprocess.Popen, session: Path, epochs: float,
                  timeout: float = 120.0) -> None:
    """Wait until a training has been ``epochs`` fold-epochs long (``epochs`` >= 1): the
    whole ones counted from its recorded epoch events, the fraction timed by the duration of
    the last one recorded (the first one's counts from the session start). A delay in
    epochs lands at the same point of the training on a fast idle machine and on a loaded
    one, where a delay in s outlives a short training on the first and comes ever earlier
    on the second. Returns early if the process ends first (or the epochs take over
    ``timeout`` s): the caller sees which by polling it."""
    whole, part = int(epochs), epochs - int(epochs)
    if whole < 1:
        raise ValueError(f"a delay in epochs starts after the first epoch: {epochs}")
    path = session / "documents.jsonl"
    times: list[float] = []  # the start document's, then each epoch event's (s, time.time())
    pos, pending = 0, b""
    deadline = time.monotonic() + timeout
    while len(times) <= whole:
        if proc.poll() is not None or time.monotonic() > deadline:
            return
        with path.open("rb") as f:
            f.seek(pos)
            chunk = f.read()
        pos += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            kind, doc = json.loads(line)
            if kind == "start" or (kind == "event" and "epoch" in doc.get("data", {})):
                times.append(doc["time"])
        if len(times) <= whole:
            time.sleep(0.005)
    time.sleep(max(0.0, times[whole] + part * (times[whole] - times[whole - 1]) - time.time()))


def _read_session(path: Path):
    from labctl.records.session import Session

    return Session(path)


def one_run(i: int, command: str, sig: str, delay_s: float, bench: Served, work: Path,
            args: tuple[str, ...] | None = None, unit: str = "s") -> dict:
    """Start ``command`` (its argument list ``args``, default :data:`TRAIN_ARGS` or
    :data:`IV_ARGS`), send ``sig`` ``delay_s`` after its session started (in ``unit``, s or
    a training's epochs, see :data:`DELAY_UNITS`), check what it left. Returns a record:
    ``status`` is "held", "failed" or "missed" (the command ended before the signal could
    be sent, or the signal came after its stop document); ``delay_s`` is the planned delay,
    in ``unit``."""
    if unit not in DELAY_UNITS or (unit == "epochs" and (command != "train" or delay_s < 1)):
        raise ValueError(f"a delay of {delay_s} {unit} for {command!r} (in epochs: a "
                         "training's, at least its first)")
    work = work / f"run-{i:03d}-{command}-{sig}"
    sessions = work / "sessions"
    work.mkdir(parents=True)
    if args is None:
        args = TRAIN_ARGS if command == "train" else IV_ARGS
    rec: dict = {"i": i, "command": command, "signal": sig, "delay_s": delay_s,
                 "unit": unit, "problems": [], "status": "failed"}
    problems = rec["problems"]
    proc = start_labctl(*args, "--station", bench.station, "--sessions-dir", sessions, cwd=work)
    try:
        session = _wait_for_session(proc, sessions)
        if session is None:
            out, err = proc.communicate(timeout=60)
            problems.append(f"no session started (exit {proc.returncode}): {err[-500:]}")
            return rec
        if unit == "epochs":
            _sleep_epochs(proc, session, delay_s)
        else:
            time.sleep(delay_s)
        if proc.poll() is not None:
            rec["status"] = "missed"
            proc.communicate(timeout=60)
            return rec
        sent = time.time()
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    rec |= {"exit": proc.returncode, "session": str(session)}
    doc = _read_session(session)
    rec["after_start_s"] = round(sent - doc.start["time"], 3)  # s, what the delay came to
    stop = doc.stop
    if stop is not None and stop["exit_status"] == "success" and stop["time"] < sent:
        rec["status"] = "missed"  # it had finished its work; the signal came at the very end
    elif sig == "SIGKILL":
        _check_killed(proc, session, stop, work, problems)
    else:
        _check_stopped(proc, err, sig, stop, problems)
    state = bench_state(bench.resources)
    rec["state"] = state
    if sig == "SIGKILL":
        make_safe(bench.resources)  # nobody switched them off; the next run needs them off
    elif unsafe(state):
        problems.append(f"left unsafe: {'; '.join(unsafe(state))}")
        make_safe(bench.resources)
    if command == "train" and rec["status"] != "missed" and _read_session(session).resumable:
        rec["resume"] = _resume(session, work, problems)
        after = bench_state(bench.resources)
        if unsafe(after):
            problems.append(f"left unsafe after the resume: {'; '.join(unsafe(after))}")
            make_safe(bench.resources)
    elif command == "train" and rec["status"] != "missed":
        problems.append("the interrupted training is not resumable")
    if rec["status"] != "missed":
        rec["status"] = "failed" if problems else "held"
    return rec


def _check_stopped(proc, err: str, sig: str, stop: dict | None, problems: list[str]) -> None:
    if proc.returncode != 130:
        problems.append(f"exit {proc.returncode}, expected 130: {err[-500:]}")
    if "Traceback" in err:
        problems.append(f"traceback: {err[-1500:]}")
    if stop is None:
        problems.append("no stop document")
        return
    if (stop["exit_status"], stop.get("reason")) != ("abort", sig):
        problems.append(f"stop document {stop['exit_status']!r} ({stop.get('reason')!r}), "
                        f"expected 'abort' ({sig!r})")
    shutdown = stop.get("labctl_shutdown") or {}
    if shutdown.get("confirmed") is not True:
        problems.append(f"shutdown not confirmed: {shutdown}")


def _check_killed(proc, session: Path, stop: dict | None, work: Path,
                  problems: list[str]) -> None:
    if proc.returncode != -signal.SIGKILL:
        problems.append(f"exit {proc.returncode}, expected {-signal.SIGKILL}")
    if stop is not None:
        problems.append(f"a stop document after SIGKILL: {stop}")
    listed = labctl("sessions", "list", "--sessions-dir", session.parent, cwd=work)
    rows = [line.split() for line in listed.stdout.splitlines()]
    mine = [r for r in rows if r and r[0] == session.name]
    if listed.returncode != 0 or not mine or "interrupted" not in mine[0]:
        problems.append(f"sessions list (exit {listed.returncode}) does not list it as "
                        f"interrupted: {listed.stdout[-500:]} {listed.stderr[-500:]}")
    report = labctl("report", session, cwd=work)
    if report.returncode != 0 or "Traceback" in report.stderr:
        problems.append(f"report exit {report.returncode}: {report.stderr[-800:]}")


def _resume(session: Path, work: Path, problems: list[str]) -> dict:
    t0 = time.monotonic()
    proc = labctl("train", "iris", "--resume", session, "--json", "--no-progress",
                  "--sessions-dir", session.parent, cwd=work, timeout=300)
    out = {"exit": proc.returncode, "wall_s": round(time.monotonic() - t0, 2)}
    if proc.returncode != 0:
        problems.append(f"resume exit {proc.returncode}: {proc.stderr[-800:]}")
        return out
    summary = json.loads(proc.stdout)
    resumed = _read_session(session)
    stop = resumed.stop
    folds = resumed.start["config"]["settings"]["folds"]  # as the training was started
    if summary.get("folds") != folds or summary.get("session") != session.name:
        problems.append(f"resume summary {summary}")
    if stop is None or stop["exit_status"] != "success":
        problems.append(f"resumed session's stop document: {stop}")
    return out


def run(n: int = 100, seed: int = 0, workdir: str | os.PathLike | None = None, *,
        train_args: tuple[str, ...] = TRAIN_ARGS, iv_args: tuple[str, ...] = IV_ARGS,
        delays: dict[str, tuple[float, float]] | None = None,
        units: dict[str, str] | None = None) -> dict:
    """The storm: ``n`` signals (:func:`plan` with ``delays``, default :data:`DELAYS_S`, in
    ``units`` per command, default s), trainings (``train_args``) and I-V sweeps
    (``iv_args``) on two lanes at once, each lane with its own served bench (the trainings'
    at time scale 0, the sweeps' at :data:`TIME_SCALE`). A shorter command needs a shorter
    delay range, or its signals come after it ended (``missed``). Returns ``{"n", "seed",
    "wall_s", "signals": {name: {"tried", "held", "missed"}}, "failures": [records], "runs":
    [records]}``."""
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="labctl-storm-"))
        root = Path(workdir).resolve()
        runs = list(enumerate(plan(n, seed, delays)))
        argv = {"train": tuple(train_args), "iv": tuple(iv_args)}
        units = {c: "s" for c in COMMANDS} | (units or {})
        records: list[dict] = []

        def lane(command: str, time_scale: float) -> list[dict]:
            out = []
            with served(station_text(time_scale), root / f"bench-{command}") as bench:
                for i, (cmd, sig, delay) in runs:
                    if cmd == command:
                        try:
                            out.append(one_run(i, cmd, sig, delay, bench, root, argv[cmd],
                                               units[cmd]))
                        except Exception as exc:  # noqa: BLE001 - a storm reports, goes on
                            out.append({"i": i, "command": cmd, "signal": sig,
                                        "delay_s": delay, "status": "failed",
                                        "problems": [f"{type(exc).__name__}: {exc}"]})
            return out

        results: dict[str, list[dict]] = {}
        threads = [threading.Thread(target=lambda c=c, ts=ts: results.__setitem__(c, lane(c, ts)))
                   for c, ts in (("train", 0.0), ("iv", TIME_SCALE))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for command in COMMANDS:
            if command not in results:
                raise RuntimeError(f"the {command} lane of the storm did not finish")
            records += results[command]
    records.sort(key=lambda r: r["i"])
    counts = {s: {"tried": 0, "held": 0, "missed": 0} for s in SIGNALS}
    for r in records:
        c = counts[r["signal"]]
        if r["status"] == "missed":
            c["missed"] += 1
        else:
            c["tried"] += 1
            c["held"] += r["status"] == "held"
    return {"n": n, "seed": seed, "wall_s": round(time.monotonic() - t0, 1),
            "signals": counts, "failures": [r for r in records if r["status"] == "failed"],
            "runs": records}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[0]) if argv else 100
    seed = int(argv[1]) if len(argv) > 1 else 0
    result = run(n, seed)
    print(json.dumps({k: result[k] for k in ("n", "seed", "wall_s", "signals", "failures")},
                     indent=2, default=str))
    return 0 if not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
