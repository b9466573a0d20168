"""The `labctl` command line end to end.

Each test runs ``labctl ...`` in a temporary directory (sessions there too) and asserts on
the exit status, the text printed and the files written. Every command that does its job
(station check, iv, fd-scan, train, resume, replay, report) runs at least once as a real
``python -m labctl.cli`` subprocess, and so does the run killed with SIGKILL and its
resume. Where a case is about what a command decides and prints rather than about the
process (a refusal of bad input, a failing instrument's row, the ``sessions list`` status
column, the report and replay of a killed session before and after its resume), it goes
through ``labctl.cli.main`` in this process (:func:`labctl_here`), which spares an
interpreter start and labctl's imports (1-2 s a call). Each kind of refusal keeps at
least one real subprocess, so exit status 2, the one ``labctl: error:`` line on stderr and
the absence of a traceback are still checked across the process boundary. Stations: the
built-in simulated one, a ``python -m simulators.serve`` subprocess described by a station
file, and a "tripwire" station whose every resource is a listening socket that no command
given bad input may ever connect to.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    "MPLBACKEND": "Agg",
    "PYTHONUNBUFFERED": "1",
}
FIVE = {  # instrument -> a part of the identity it must answer
    "smu_a": "MODEL 2400",
    "smu_b": "MODEL 2400",
    "adc": "DIFFADC",
    "switch": "Model 707B",
    "prober": "SENTIO",
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def labctl(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``labctl ARGS`` to the end (a hang fails the test through the timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "labctl.cli", *map(str, args)],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def labctl_here(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``labctl ARGS`` through ``labctl.cli.main`` in this process, run in ``cwd``; the
    result has :func:`labctl`'s shape. An exception escaping ``main`` fails the test, as
    the traceback it would print in a subprocess does; argparse's exit becomes the status.
    Log records of WARNING and above join stderr, as ``main``'s logging setup sends them
    there in a subprocess (here pytest's handlers already hold the root logger). Not for
    cases whose message goes through :mod:`warnings` (pytest captures those in-process, a
    subprocess prints them on stderr)."""
    from labctl.cli import main

    out, err = io.StringIO(), io.StringIO()
    logged = logging.StreamHandler(err)
    logged.setLevel(logging.WARNING)
    logged.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    here = Path.cwd()
    os.chdir(cwd)
    root.addHandler(logged)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main([str(a) for a in args])
            except SystemExit as exc:
                status = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    finally:
        root.removeHandler(logged)
        os.chdir(here)
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def refused(proc: subprocess.CompletedProcess) -> str:
    """A clean refusal: exit 2, one `labctl: error:` line, no traceback. Returns stderr."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "labctl: error: " in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} not written"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000, f"{path} is not a real PNG"


def documents_of(data: bytes) -> list[tuple[str, dict]]:
    """The whole documents in the bytes of a documents.jsonl (a torn last line left out)."""
    lines = data.splitlines(keepends=True)
    return [tuple(json.loads(line)) for line in lines if line.endswith(b"\n")]


def documents(session: Path) -> list[tuple[str, dict]]:
    return documents_of((session / "documents.jsonl").read_bytes())


def stream_events(docs: list[tuple[str, dict]], stream: str) -> list[dict]:
    uids = {d["uid"] for n, d in docs
            if n == "descriptor" and d.get("labctl_stream", d["name"]) == stream}
    return [d["data"] for n, d in docs if n == "event" and d["descriptor"] in uids]


def epoch_keys(session: Path) -> list[tuple[int, int]]:
    return [(e["fold"], e["epoch"]) for e in stream_events(documents(session), "epoch")]


def only_session(sessions_dir: Path) -> Path:
    dirs = [p for p in sessions_dir.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def listed_status(cwd: Path, sessions_dir: Path, session: Path) -> str:
    """The status column of ``session`` in ``labctl sessions list`` (in this process: the
    status comes from the session's files and its writer's lock, not from who asks;
    test_sessions_by_id_under_sessions_dir_or_labctl_sessions lists in a subprocess)."""
    proc = ok(labctl_here("sessions", "list", "--sessions-dir", sessions_dir, cwd=cwd))
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows[0][:2] == ["id", "command"], proc.stdout
    mine = [r for r in rows if r[0] == session.name]
    assert len(mine) == 1, proc.stdout
    statuses = {"success", "fail", "abort", "interrupted", "unreadable"}
    found = [c for c in mine[0] if c in statuses]
    assert found, proc.stdout
    return found[0]


# -- stations -----------------------------------------------------------------------------


def station_text(
    resources: dict[str, str], *, identity_a: str = "MODEL 2400", timeout_s: float = 2.0
) -> str:
    return f"""\
[station]
name = "served station"

[instruments.smu_a]
driver = "keithley2400"
resource = "{resources["smu_a"]}"
identity = "{identity_a}"
timeout_s = {timeout_s}

[instruments.smu_b]
driver = "keithley2400"
resource = "{resources["smu_b"]}"
timeout_s = {timeout_s}

[instruments.adc]
driver = "adc_board"
resource = "{resources["adc"]}"
timeout_s = {timeout_s}

[instruments.switch]
driver = "switch_matrix"
resource = "{resources["switch"]}"
timeout_s = {timeout_s}

[instruments.prober]
driver = "prober"
resource = "{resources["prober"]}"
timeout_s = {timeout_s}

[wiring]
smu_a = "smu_a"
smu_b = "smu_b"
adc = "adc"
switch = "switch"
prober = "prober"
n_pairs = 16

[limits]
max_current_a = 100e-6
compliance_v = 0.8
ramp_step_a = 20e-6
"""


@pytest.fixture(scope="module")
def served():
    """A `python -m simulators.serve` subprocess; its resources by instrument name."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.serve"],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
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
                pytest.fail(f"simulators.serve did not print ready (exit {proc.poll()})")
            if line.strip() == "ready":
                break
            name, resource = line.split()
            resources[name] = resource
        yield {
            "smu_a": resources["smu_a"],
            "smu_b": resources["smu_b"],
            "adc": resources["adc_socket"],
            "switch": resources["switch"],
            "prober": resources["prober"],
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()


def free_port() -> int:
    """A loopback TCP port with nothing listening on it (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tripwire:
    """A listening socket that never answers; remembers whether anyone connected."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.tcpip = f"TCPIP::127.0.0.1::{self.port}::SOCKET"

    def connections(self) -> int:
        """Connections made so far (the kernel queues them even though none is accepted)."""
        n = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return n
            conn.close()
            n += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tripwire():
    t = Tripwire()
    yield t
    t.close()


@pytest.fixture
def tripwire_station(tmp_path, tripwire) -> Path:
    """A station file (no [simulation]) whose every instrument is the tripwire."""
    f = tmp_path / "tripwire.toml"
    f.write_text(
        station_text(
            {
                "smu_a": tripwire.tcpip,
                "smu_b": tripwire.tcpip,
                "adc": f"socket://127.0.0.1:{tripwire.port}",
                "switch": tripwire.tcpip,
                "prober": tripwire.tcpip,
            },
            timeout_s=1,
        )
    )
    return f


# -- station check -------------------------------------------------------------------------


def check_table(stdout: str, expected_resources: dict[str, str] | None = None) -> None:
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("instrument"))
    assert lines[header].split() == ["instrument", "driver", "resource", "identity", "status"]
    rows = {}
    for line in lines[header + 1 :]:
        if not line.strip() or line.startswith(("pair", "pairs:")):
            break  # the instrument table ends where the pair table begins
        rows[line.split()[0]] = line
    assert set(rows) == set(FIVE), stdout
    for name, identity in FIVE.items():
        assert identity in rows[name], rows[name]
        assert rows[name].rstrip().endswith("ok, error queue empty"), rows[name]
        if expected_resources:
            assert f" {expected_resources[name]} " in rows[name], rows[name]


def test_station_check_builtin(tmp_path):
    proc = ok(labctl("station", "check", cwd=tmp_path, timeout=60))
    assert proc.stdout.startswith("station: built-in simulated station"), proc.stdout
    check_table(proc.stdout)


def test_station_check_served_station(tmp_path, served):
    f = tmp_path / "served.toml"
    f.write_text(station_text(served))
    proc = ok(labctl("station", "check", "--station", f, cwd=tmp_path, timeout=60))
    assert proc.stdout.startswith(f"station: served station ({f})"), proc.stdout
    check_table(proc.stdout, served)


def failed_row(proc: subprocess.CompletedProcess, name: str) -> str:
    """The whole table is printed past a failing instrument; exit 1; returns its row.

    The failing cases run in this process: the row is what they are about, and exit 1
    with no traceback is what ``main`` returns or raises, the same in a subprocess."""
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    for other in set(FIVE) - {name}:
        assert rows[other].rstrip().endswith("ok, error queue empty"), rows[other]
    assert "pairs: not checked (an instrument failed)" in proc.stdout
    return rows[name]


def test_station_check_wrong_identity(tmp_path, served):
    f = tmp_path / "wrong.toml"
    f.write_text(station_text(served, identity_a="MODEL 2450"))
    proc = labctl_here("station", "check", "--station", f, cwd=tmp_path)
    row = failed_row(proc, "smu_a")
    assert "error:" in row and "'MODEL 2450'" in row, row
    assert "KEITHLEY INSTRUMENTS INC.,MODEL 2400" in row, row  # what it answered


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_station_check_unreachable_resource(tmp_path, served, tripwire, kind):
    resource = f"TCPIP::127.0.0.1::{free_port()}::SOCKET" if kind == "refused" else tripwire.tcpip
    f = tmp_path / f"{kind}.toml"
    f.write_text(station_text({**served, "smu_a": resource}, timeout_s=1))
    t0 = time.monotonic()
    proc = labctl_here("station", "check", "--station", f, cwd=tmp_path)
    elapsed = time.monotonic() - t0
    err = failed_row(proc, "smu_a")
    assert resource in err, err
    if kind == "refused":
        assert "cannot connect" in err, err
        assert elapsed < 10, elapsed
    else:
        assert "timed out after 1 s" in err, err
        assert 1.0 <= elapsed < 10, elapsed  # the 1 s timeout: no hang
        assert tripwire.connections() == 1


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (
            lambda t: t.replace("timeout_s = 2.0", 'timeout_s = "fast"', 1),
            ["[instruments.smu_a] timeout_s", "must be a number"],
        ),
        (
            lambda t: t.replace("n_pairs = 16", "n_pairs = 16\nn_pears = 3"),
            ["[wiring] n_pears", "unknown key"],
        ),
        (lambda t: t.replace("[limits]", "[limits"), ["not valid TOML", "(at line {limits},"]),
    ],
    ids=["wrong-type", "unknown-key", "bad-toml"],
)
def test_station_check_malformed_file(request, tmp_path, served, edit, names):
    text = station_text(served)
    f = tmp_path / "malformed.toml"
    f.write_text(edit(text))
    assert f.read_text() != text
    # One real process checks the refusal across the process boundary; the other two,
    # whose messages are what differ, need only main.
    run = labctl if request.node.callspec.id == "bad-toml" else labctl_here
    err = refused(run("station", "check", "--station", f, cwd=tmp_path))
    assert f"labctl: error: {f}: " in err, err
    limits = text.splitlines().index("[limits]") + 1
    for part in names:
        assert part.format(limits=limits) in err, err


# -- iv and fd-scan -----------------------------------------------------------------------


def test_iv_writes_csv_and_png_and_report(tmp_path):
    sessions = tmp_path / "sessions"
    proc = ok(labctl("iv", "--pair", 3, "--sessions-dir", sessions, cwd=tmp_path))
    session = only_session(sessions)
    assert "pair 3: 101 points" in proc.stdout and session.name in proc.stdout, proc.stdout
    with open(session / "iv.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["current_a", "v_a_v", "v_b_v", "v_diff_v", "compliance", "overrange"]
    data = np.array(rows[1:], dtype=float)
    assert data.shape == (101, 6)
    current, v_a, v_b = data[:, 0], data[:, 1], data[:, 2]
    assert np.all(np.abs(current) <= 100e-6 * (1 + 1e-9))
    assert current[0] == pytest.approx(-100e-6) and current[-1] == pytest.approx(100e-6)
    assert np.all(np.diff(current) > 0)
    assert not data[:, 4].any() and not data[:, 5].any()  # no compliance hit, no overrange
    for v in (v_a, v_b):  # real devices: V has the sign of I and stays under compliance
        assert np.all(np.abs(v) < 0.8)
        big = np.abs(current) > 1e-6
        assert np.all(np.sign(v[big]) == np.sign(current[big]))
    assert_png(session / "iv.png")
    assert listed_status(tmp_path, sessions, session) == "success"

    # In this process: an iv session is reported by a real process in
    # test_sessions_by_id_under_sessions_dir_or_labctl_sessions.
    report = ok(labctl_here("report", session, cwd=tmp_path))
    assert report.stdout.split() == [str(session / "report" / "iv.png")]
    assert_png(session / "report" / "iv.png")

    err = refused(labctl_here("replay", session, cwd=tmp_path))  # replay is for training only
    assert "replay knows 'train iris' sessions" in err and "'iv'" in err, err


def test_fd_scan_table_and_recommendation(tmp_path):
    sessions = tmp_path / "sessions"
    proc = ok(
        labctl(
            "fd-scan",
            "--pair",
            2,
            "--steps",
            "0.5e-6,1e-6,2e-6",
            "--points",
            21,
            "--sessions-dir",
            sessions,
            cwd=tmp_path,
        )
    )
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["dI", "(A)"])
    assert "swap" in lines[header].split()
    rows = [line.split() for line in lines[header + 1 : header + 4]]
    steps = [float(r[0]) for r in rows]
    assert steps == [0.5e-6, 1e-6, 2e-6]
    swap = [float(r[4].rstrip("%")) for r in rows]
    assert all(0 < s < 3 for s in swap), lines[header : header + 4]
    m = re.search(r"recommended dI = (\S+) A \(swap, error ([\d.]+)%\)", proc.stdout)
    assert m, proc.stdout
    assert float(m.group(1)) in steps
    assert float(m.group(2)) == pytest.approx(min(swap), abs=0.006)
    session = only_session(sessions)
    assert_png(session / "fd_scan.png")
    assert listed_status(tmp_path, sessions, session) == "success"


# -- training, replay, report -------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`train iris --epochs 3 --folds 2 --json` on the built-in station, run once."""
    cwd = tmp_path_factory.mktemp("trained")
    sessions = cwd / "sessions"
    proc = labctl(
        "train",
        "iris",
        "--epochs",
        3,
        "--folds",
        2,
        "--json",
        "--sessions-dir",
        sessions,
        cwd=cwd,
    )
    return cwd, sessions, proc


def test_train_iris_json_replay_report(trained):
    cwd, sessions, proc = trained
    ok(proc)
    summary = json.loads(proc.stdout)
    assert summary["folds"] == 2
    for key in ("accuracy", "tanh_accuracy"):
        assert 0.34 < summary[key] <= 1.0, summary  # above chance (3 balanced classes)
    session = sessions / summary["session"]
    assert session == only_session(sessions)
    assert sorted(epoch_keys(session)) == [(f, e) for f in range(2) for e in range(3)]
    assert listed_status(cwd, sessions, session) == "success"

    replay = ok(labctl("replay", session, "--json", cwd=cwd))
    r = json.loads(replay.stdout)
    assert r["metrics_identical"] is True and r["final_weights_identical"] is True, r
    assert r["epochs_replayed"] == r["epochs_recorded"] == 6 and r["folds_replayed"] == 2
    assert r["ended"] == "complete"
    assert r["summary"]["accuracy"] == summary["accuracy"]
    assert r["summary"]["tanh_accuracy"] == summary["tanh_accuracy"]

    report = ok(labctl("report", session, cwd=cwd))
    made = report.stdout.split()
    for name in ("training.png", "derivative.png"):
        assert str(session / "report" / name) in made, report.stdout
        assert_png(session / "report" / name)


def test_train_iris_model_backend(tmp_path):
    sessions = tmp_path / "sessions"
    proc = ok(
        labctl(
            "train",
            "iris",
            "--backend",
            "model",
            "--epochs",
            20,
            "--json",
            "--sessions-dir",
            sessions,
            cwd=tmp_path,
        )
    )
    summary = json.loads(proc.stdout)
    assert summary["folds"] == 5
    assert summary["accuracy"] > 0.8 and summary["tanh_accuracy"] > 0.8, summary
    session = sessions / summary["session"]
    start = documents(session)[0][1]
    assert start["instruments"] == {}  # no station was opened
    assert not (session / "wire").exists()
    assert len(epoch_keys(session)) == 5 * 20


# -- kill -9 and resume -------------------------------------------------------------------

# Epoch events recorded before the SIGKILL. EPOCHS - KILL_AFTER epochs (>= 0.2 s each on an
# idle machine) are the room the kill has to land in before fold 0 ends.
KILL_AFTER = 3
EPOCHS, FOLDS = 10, 2


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A `train iris` killed with SIGKILL mid fold 0, inspected, then resumed.

    Returns the outputs of each step, taken in order, for the tests below to judge.
    """
    cwd = tmp_path_factory.mktemp("killed")
    sessions = cwd / "sessions"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labctl.cli",
            "train",
            "iris",
            "--epochs",
            str(EPOCHS),
            "--folds",
            str(FOLDS),
            "--no-progress",
            "--sessions-dir",
            str(sessions),
        ],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    session = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            dirs = list(sessions.glob("*/documents.jsonl")) if sessions.is_dir() else []
            if dirs:
                session = dirs[0].parent
                if len(epoch_keys(session)) >= KILL_AFTER:
                    break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        stderr = proc.stderr.read()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"not killed ({proc.returncode}): {stderr}"
    assert session is not None
    out = {"cwd": cwd, "sessions": sessions, "session": session}
    out["recorded"] = epoch_keys(session)
    out["bytes_at_kill"] = (session / "documents.jsonl").read_bytes()
    out["status_at_kill"] = listed_status(cwd, sessions, session)
    # The resume is a new process, as after a crash. Report and replay only read the
    # session's files, so they run in this process; each runs as a real process on a
    # whole session in test_train_iris_json_replay_report.
    out["report"] = labctl_here("report", session, cwd=cwd)
    out["replay_at_kill"] = labctl_here("replay", session, "--json", cwd=cwd)
    out["resume"] = labctl("train", "iris", "--resume", session, "--json", cwd=cwd)
    out["status_after"] = listed_status(cwd, sessions, session)
    out["replay_after"] = labctl_here("replay", session, cwd=cwd)
    return out


def test_kill9_leaves_an_interrupted_reportable_session(killed):
    session = killed["session"]
    recorded = killed["recorded"]
    assert KILL_AFTER <= len(recorded) < EPOCHS, recorded  # killed inside fold 0
    assert recorded == [(0, e) for e in range(len(recorded))]
    assert killed["status_at_kill"] == "interrupted"
    names = [n for n, _ in documents_of(killed["bytes_at_kill"])]
    assert "stop" not in names
    report = ok(killed["report"])
    assert str(session / "report" / "training.png") in report.stdout.split()
    assert_png(session / "report" / "training.png")


def test_kill9_replay_stops_at_the_last_recorded_epoch(killed):
    replay = ok(killed["replay_at_kill"])
    r = json.loads(replay.stdout)
    n = len(killed["recorded"])
    assert r["epochs_replayed"] == r["epochs_recorded"] == n, r
    assert r["metrics_identical"] is True and r["final_weights_identical"] is True, r
    assert r["folds_replayed"] == 0
    assert f"before epoch {n} of fold 0" in r["ended"], r["ended"]


def test_resume_completes_the_killed_session(killed):
    session = killed["session"]
    resume = ok(killed["resume"])
    summary = json.loads(resume.stdout)
    assert summary["session"] == session.name and summary["folds"] == FOLDS
    assert 0.34 < summary["accuracy"] <= 1 and 0.34 < summary["tanh_accuracy"] <= 1
    assert killed["status_after"] == "success"
    assert [p.name for p in killed["sessions"].iterdir()] == [session.name]  # no new session

    # What was recorded before the kill is kept as it was; the rest follows it.
    data = (session / "documents.jsonl").read_bytes()
    whole = killed["bytes_at_kill"][: killed["bytes_at_kill"].rfind(b"\n") + 1]
    assert data.startswith(whole)
    docs = documents(session)
    names = [n for n, _ in docs]
    assert names.count("start") == 1 and names.count("stop") == 1 and names[-1] == "stop"
    assert docs[-1][1]["exit_status"] == "success"
    keys = epoch_keys(session)
    assert len(keys) == len(set(keys)) == FOLDS * EPOCHS, sorted(keys)
    assert set(keys) == {(f, e) for f in range(FOLDS) for e in range(EPOCHS)}
    assert sorted(e["fold"] for e in stream_events(docs, "fold")) == list(range(FOLDS))
    epoch_uid = next(d["uid"] for n, d in docs
                     if n == "descriptor" and d.get("labctl_stream") == "epoch")
    seq = [d["seq_num"] for n, d in docs if n == "event" and d["descriptor"] == epoch_uid]
    assert seq == list(range(1, FOLDS * EPOCHS + 1))  # the stream continues, no gap or repeat

    replay = ok(killed["replay_after"])
    assert f"replayed {FOLDS * EPOCHS} of {FOLDS * EPOCHS} recorded epochs (complete)" in (
        replay.stdout
    ), replay.stdout
    assert "per-epoch metrics identical: True; final weights identical: True" in replay.stdout


def _dvdi_error(session: Path, key: tuple[int, int]) -> float:
    """Median |measured/analytic - 1| of layer 1's dV/dI in epoch ``key``, the analytic
    value from the simulated chip the session's start document records."""
    from simulators.mtj import dvdi
    from simulators.world import SimSettings, StationWorld

    docs = documents(session)
    sim = docs[0][1]["config"]["station"]["simulation"]
    world = StationWorld(SimSettings(**(sim | {"die_grid": tuple(sim["die_grid"])})))
    event = next(e for e in stream_events(docs, "epoch") if (e["fold"], e["epoch"]) == key)
    datum = next(d for n, d in docs if n == "datum" and d["datum_id"] == event["measurements"])
    resource = next(d for n, d in docs if n == "resource" and d["uid"] == datum["resource"])
    index = datum["datum_kwargs"]["index"]
    block = np.load(session / f"{resource['resource_path']}_{index}.npy")[0]
    idx = np.arange(block.shape[1])
    analytic = dvdi(world.chip.params.take((idx, np.zeros_like(idx))), block[..., 0])
    return float(np.median(np.abs(block[..., 2] / analytic - 1)))


def test_resume_measures_on_the_recorded_station(killed):
    ok(killed["resume"])
    assert _dvdi_error(killed["session"], (0, 0)) < 0.05  # before the kill
    assert _dvdi_error(killed["session"], (FOLDS - 1, EPOCHS - 1)) < 0.05  # after resume


# -- bad input ----------------------------------------------------------------------------

BAD_TRAIN = [
    (["--hidden", "0"], "--hidden must be at least 1 neuron, got 0"),
    (["--folds", "1000"], "--folds must be between 2 and the 150 Iris samples, got 1000"),
    (["--layers", "3"], "--layers must be 1 or 2, got 3"),
    (["--i-center", "2e-4"], "--i-center 0.0002 A is at or beyond the safety limit"),
    (["--grad", "bogus"], "'bogus'"),
]


@pytest.mark.parametrize(("args", "reason"), BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_train_bad_input_refused_before_any_instrument(
    tmp_path, tripwire, tripwire_station, args, reason
):
    sessions = tmp_path / "sessions"
    # One real process (the refusal that reads the station's limits first) checks the
    # refusal across the process boundary; the rest differ only in the message.
    run = labctl if args == ["--i-center", "2e-4"] else labctl_here
    proc = run(
        "train",
        "iris",
        *args,
        "--station",
        tripwire_station,
        "--sessions-dir",
        sessions,
        cwd=tmp_path,
    )
    err = refused(proc)
    assert reason in err, err
    assert tripwire.connections() == 0, "an instrument was contacted"
    assert not sessions.exists(), "a session was recorded for refused input"


@pytest.mark.parametrize(
    "command",
    [
        ["iv", "--pair", "99"],
        ["fd-scan", "--pair", "99"],
    ],
    ids=["iv", "fd-scan"],
)
def test_bad_pair_refused_before_any_instrument(tmp_path, tripwire, tripwire_station, command):
    sessions = tmp_path / "sessions"
    run = labctl if command[0] == "iv" else labctl_here  # one real process is enough
    proc = run(
        *command,
        "--station",
        tripwire_station,
        "--sessions-dir",
        sessions,
        cwd=tmp_path,
    )
    err = refused(proc)
    assert "no pair 99" in err and "pairs 1..16" in err, err
    assert tripwire.connections() == 0, "an instrument was contacted"
    assert not sessions.exists(), "a session was recorded for refused input"


def test_bad_pair_names_the_pair_on_the_builtin_station(tmp_path):
    err = refused(labctl_here("iv", "--pair", 99, "--sessions-dir", tmp_path / "s",
                              cwd=tmp_path))
    assert "<built-in station>: no pair 99 in [wiring] (pairs 1..16)" in err, err


def copy_session(trained, tmp_path: Path, name: str) -> Path:
    cwd, sessions, proc = trained
    ok(proc)
    src = sessions / json.loads(proc.stdout)["session"]
    dst = tmp_path / name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("report", "replay"))
    return dst


def test_replay_missing_dir(tmp_path):
    # A real process: the replay refusals below run in this one.
    err = refused(labctl("replay", tmp_path / "nowhere", cwd=tmp_path))
    assert f"{tmp_path / 'nowhere' / 'documents.jsonl'}: missing" in err, err


def test_replay_garbled_line_names_file_and_line(tmp_path, trained):
    session = copy_session(trained, tmp_path, "garbled")
    file = session / "documents.jsonl"
    lines = file.read_bytes().splitlines(keepends=True)
    lines[5] = lines[5][:40] + b"\n"  # a whole line, but not JSON: not a torn write
    file.write_bytes(b"".join(lines))
    err = refused(labctl_here("replay", session, cwd=tmp_path))
    assert f"{file}, line 6: invalid document" in err, err


def test_replay_truncated_file_warns_and_replays_what_is_whole(tmp_path, trained):
    session = copy_session(trained, tmp_path, "truncated")
    file = session / "documents.jsonl"
    data = file.read_bytes()
    cut = len(data) * 3 // 4  # past the pre-flight checks, into the epochs
    file.write_bytes(data[:cut])  # cut mid-line, as a kill -9 might leave it
    lineno = data[:cut].count(b"\n") + 1
    # A real process: the notice is a warning, which pytest would capture in this one.
    proc = ok(labctl("replay", session, "--json", cwd=tmp_path))
    assert f"{file}, line {lineno}: no trailing newline; torn last line skipped" in (proc.stderr), (
        proc.stderr
    )
    r = json.loads(proc.stdout)
    assert r["metrics_identical"] is True and r["epochs_replayed"] == r["epochs_recorded"]
    assert r["epochs_recorded"] < 6 and r["ended"].startswith("the record ends before")


def test_replay_garbled_first_line(tmp_path, trained):
    session = copy_session(trained, tmp_path, "nostart")
    file = session / "documents.jsonl"
    file.write_bytes(b'["event",{}]\n' + file.read_bytes())
    err = refused(labctl_here("replay", session, cwd=tmp_path))
    assert f"{file}, line 1: not a labctl session" in err, err


def test_replay_refuses_a_newer_format(tmp_path, trained):
    session = copy_session(trained, tmp_path, "future")
    file = session / "documents.jsonl"
    first, rest = file.read_bytes().split(b"\n", 1)
    name, start = json.loads(first)
    start["labctl_format"] = 99
    file.write_bytes(json.dumps([name, start]).encode() + b"\n" + rest)
    err = refused(labctl_here("replay", session, cwd=tmp_path))
    assert re.search(r"\b99\b", err) and re.search(r"format 1\b", err), err
    assert str(file) in err, err


def test_replay_of_a_session_killed_before_its_first_epoch(tmp_path, trained):
    session = copy_session(trained, tmp_path, "startonly")
    file = session / "documents.jsonl"
    file.write_bytes(file.read_bytes().split(b"\n", 1)[0] + b"\n")  # the start document only
    err = refused(labctl_here("replay", session, cwd=tmp_path))
    assert str(session) in err, err


def test_resume_refuses_a_finished_session(tmp_path, trained):
    session = copy_session(trained, tmp_path, "finished")
    before = (session / "documents.jsonl").read_bytes()
    err = refused(labctl_here("train", "iris", "--resume", session, cwd=tmp_path))
    assert "session already finished (success); nothing to resume" in err, err
    assert (session / "documents.jsonl").read_bytes() == before


def test_sessions_list_empty_dir(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = ok(labctl("sessions", "list", "--sessions-dir", empty, cwd=tmp_path))
    assert proc.stdout.strip() == f"no sessions in {empty}"
    assert proc.stderr == ""


def test_sessions_by_id_under_sessions_dir_or_labctl_sessions(tmp_path, monkeypatch):
    store = tmp_path / "store"
    ok(labctl("iv", "--pair", 2, "--points", 11, "--sessions-dir", store, cwd=tmp_path))
    session = only_session(store)
    listed = ok(labctl("sessions", "list", "--sessions-dir", store, cwd=tmp_path))
    assert session.name in listed.stdout
    report = ok(labctl("report", session.name, "--sessions-dir", store, cwd=tmp_path))
    assert str(store / session.name / "report" / "iv.png") in report.stdout
    # $LABCTL_SESSIONS twice: here for the report, in the subprocess for the refusal.
    monkeypatch.setenv("LABCTL_SESSIONS", str(store))
    monkeypatch.setitem(ENV, "LABCTL_SESSIONS", str(store))
    again = ok(labctl_here("report", session.name, cwd=tmp_path))
    assert "iv.png" in again.stdout
    err = refused(labctl("report", "20990101-000000-iv-0000", cwd=tmp_path))
    assert "no session there, nor an id of one in" in err and str(store) in err
