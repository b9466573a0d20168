"""The compact wire log (instruments.wire_log): real traffic read back exactly, a log
killed at random moments readable to its last whole record, older JSON-lines logs read,
and a real session's logs at least 10x smaller than the JSON lines of the same traffic."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from instruments.replay_transport import WireEntry, load_wire_log
from instruments.transport import WireLog
from instruments.wire_codec import EchoBuffer, Reader, decode_numeric, encode_numeric, render
from instruments.wire_log import (
    MAGIC,
    SIGNATURE,
    CompactWriter,
    WireLogError,
    read_entries,
    write_entries,
)
from labctl.station.file import load_station
from labctl.station.runtime import open_station

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def tee(log: WireLog) -> list[tuple[str, str | bytes]]:
    """Every entry ``log`` logs from now on (kind, value), after those it keeps in memory."""
    seen = []
    for line in log._pending:
        item = json.loads(line)
        kind = next(k for k in item if k != "t")
        seen.append((kind, base64.b64decode(item[kind]) if kind in ("rb", "x") else item[kind]))
    emit = log._emit

    def recording(kind: str, value: str | bytes) -> None:
        seen.append((kind, bytes(value) if isinstance(value, bytes | bytearray) else value))
        emit(kind, value)

    log._emit = recording  # type: ignore[method-assign]
    return seen


def labctl(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labctl.cli", *args], cwd=cwd,
                          env={**ENV, **(env or {})}, capture_output=True, text=True,
                          timeout=120)


# -- real traffic ------------------------------------------------------------------------
def test_real_station_traffic_reads_back_exactly(tmp_path):
    """The drivers over the simulated station: every message logged (list sweeps, binary
    blocks, errors) reads back identical from the file, times to the microsecond."""
    from protocols.engine import Engine
    from protocols.finite_difference import fd_batch

    config = load_station(None)
    with open_station(config) as station:
        seen = {name: tee(log) for name, log in station.wire_logs.items()}
        station.attach_wire_logs(tmp_path)
        rng = np.random.default_rng(1)
        engine = Engine(station, mode="list", nplc=1.0)
        engine.run(fd_batch(rng.uniform(-40e-6, 60e-6, (12, 2)), [1, 2], 1e-6, "swap"))
    for name, log in station.wire_logs.items():
        log.close()
        path = tmp_path / "wire" / f"{name}.wlog"
        assert path.read_bytes().startswith(MAGIC)
        got = read_entries(path)
        assert not got.torn
        assert [(k, v) for k, _, v in got.entries] == seen[name], name
        times = [t for _, t, _ in got.entries]
        assert times == sorted(times)
    assert any(k == "rb" for k, _ in seen["adc"])
    assert any(k == "r" and v.count(",") > 50 for k, v in seen["smu_a"])


def test_a_real_session_is_ten_times_smaller_than_json_lines(tmp_path):
    """The same command twice (the simulator is seeded: the same traffic), with the JSON
    lines and with the compact format: every message equal, >= 10x smaller in all."""
    sizes = {}
    messages = {}
    for fmt in ("jsonl", "wlog"):
        run = labctl("train", "iris", "--folds", "2", "--epochs", "3", "--sessions-dir", fmt,
                     cwd=tmp_path, env={"LABCTL_WIRE_LOG_FORMAT": fmt})
        assert run.returncode == 0, run.stderr
        (session,) = (tmp_path / fmt).iterdir()
        logs = sorted((session / "wire").iterdir())
        assert {p.suffix for p in logs} == {f".{fmt}"}
        sizes[fmt] = {p.stem: p.stat().st_size for p in logs}
        messages[fmt] = {p.stem: [(k, v) for k, _, v in read_entries(p).entries] for p in logs}
    assert messages["wlog"] == messages["jsonl"]
    total = {fmt: sum(s.values()) for fmt, s in sizes.items()}
    ratio = total["jsonl"] / total["wlog"]
    assert ratio >= 10, (ratio, sizes)
    for name in ("smu_a", "smu_b"):  # the list sweeps: most of the bytes
        assert sizes["jsonl"][name] / sizes["wlog"][name] >= 12, sizes


# -- crash safety ------------------------------------------------------------------------
CHILD = r"""
import itertools, sys
sys.path.insert(0, sys.argv[2])
from instruments.transport import WireLog
from tests.test_wire_log import traffic
log = WireLog(sys.argv[1], durable=True)
for n, (kind, value) in enumerate(itertools.cycle(traffic(int(sys.argv[3])))):
    getattr(log, {"w": "written", "r": "read", "rb": "read_binary", "x": "discarded"}[kind])(value)
    if kind != "w":
        print(n + 1, flush=True)  # everything up to here has reached the kernel
"""


def traffic(seed: int, n: int = 800) -> list[tuple[str, str | bytes]]:
    """Deterministic SMU/ADC-like traffic: commands, list sweeps with readings, errors,
    binary blocks of fixed-size records."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, str | bytes]] = []
    while len(out) < n:
        levels = np.sort(rng.uniform(-5e-5, 5e-5, int(rng.integers(8, 120))))
        out.append(("w", ":SOUR:LIST:CURR " + ",".join(f"{x:.9g}" for x in levels)))
        out.append(("w", ":READ?"))
        volts = levels * 7.8e3 + rng.normal(0, 2e-5, len(levels))
        out.append(("r", ",".join(f"{v:+.6E},{i:+.6E},+9.910000E+37,{t:+.6E},+3.891600E+04"
                                  for v, i, t in zip(volts, levels, np.arange(len(levels)) * 0.017,
                                                     strict=True))))
        out.append(("w", ":SYST:ERR?"))
        out.append(("r", '0,"No error"'))
        records = np.zeros(int(rng.integers(4, 40)), [("t", "<u8"), ("v", "<f8"), ("s", "i1")])
        records["t"] = np.arange(len(records)) * 17147
        records["v"] = rng.normal(0, 0.02, len(records))
        out.append(("w", "ACQ:DATA?"))
        out.append(("rb", b"#8%08d" % records.nbytes))
        out.append(("rb", records.tobytes() + b"\x01\x02\x03\x04\n"))
        if rng.random() < 0.1:
            out.append(("x", bytes(rng.integers(0, 256, 7, dtype=np.uint8))))
    return out


def finished(path: Path) -> None:
    """Wait until no process writes ``path`` (a writer process finishing the pipe of a
    killed command holds its lock; one still starting has not created it yet)."""
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(path, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)


@pytest.mark.parametrize("writer", ["process", "inline"])
def test_a_killed_writer_leaves_a_log_readable_to_its_last_whole_record(tmp_path, writer):
    """SIGKILL at random moments (seeded) of a real child process writing a durable log:
    the log reads up to its last whole record, every record intact, nothing misread; at
    least everything the child had seen committed (with a writer process, it finishes what
    reached its pipe); a new writer cuts a torn tail and appends after it."""
    rng = random.Random(5)
    cycle = traffic(3)
    expected = cycle * 200  # the child writes it over and over until killed
    for attempt in range(3):
        path = tmp_path / f"killed{attempt}.wlog"
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(REPO), "3"],
                                 stdout=subprocess.PIPE, text=True,
                                 env={**ENV, "LABCTL_WIRE_LOG_WRITER": writer})
        assert child.stdout is not None
        first = child.stdout.readline()  # started writing
        assert first.strip()
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        reported = [first, *child.stdout.read().split()]
        child.wait()
        committed = int(reported[-1]) if reported[-1].strip() else 0
        finished(path)
        assert path.read_bytes().startswith(MAGIC)  # the current format version
        got = read_entries(path)
        entries = [(k, v) for k, _, v in got.entries]
        assert len(entries) >= committed
        assert entries == expected[:len(entries)], attempt
        # A writer opening it again cuts the torn tail and appends a new segment.
        size = path.stat().st_size
        with WireLog(path, durable=True) as again:
            again.written("*IDN?")
            again.read("KEITHLEY")
        after = read_entries(path)
        assert not after.torn and after.segments == 2
        assert [(k, v) for k, _, v in after.entries] == entries + [("w", "*IDN?"),
                                                                    ("r", "KEITHLEY")]
        assert path.stat().st_size >= got.end and (got.torn or got.end == size)


def test_every_cut_of_the_last_group_is_a_torn_tail_and_damage_is_named(tmp_path):
    path = tmp_path / "cut.wlog"
    expected = traffic(7, n=60)
    write_entries(path, [(k, i * 0.001, v) for i, (k, v) in enumerate(expected)])
    data = path.read_bytes()
    whole = read_entries(path)
    assert not whole.torn and [(k, v) for k, _, v in whole.entries] == expected
    last_group = read_entries_of(tmp_path, data[:-1]).end  # where the last group starts
    assert last_group < len(data)
    cuts = {*range(max(len(MAGIC), last_group - 20), last_group + 20),
            *range(last_group, len(data), max(1, (len(data) - last_group) // 60)),
            *range(len(data) - 20, len(data) + 1)}
    for cut in sorted(cuts):
        got = read_entries_of(tmp_path, data[:cut])
        entries = [(k, v) for k, _, v in got.entries]
        assert entries == expected[:len(entries)]
        assert got.torn == (cut != got.end)
    damaged = bytearray(data)
    damaged[len(MAGIC) + 40] ^= 0xFF  # inside the first group, not the last
    (tmp_path / "damaged.wlog").write_bytes(bytes(damaged))
    with pytest.raises(WireLogError, match=r"damaged\.wlog: group at byte \d+ fails its CRC"):
        read_entries(tmp_path / "damaged.wlog")
    (tmp_path / "other.wlog").write_bytes(b"hello\n")
    with pytest.raises(WireLogError, match=r"other\.wlog"):
        WireLog(tmp_path / "other.wlog")  # refuses to append to what is not a wire log


def read_entries_of(tmp_path: Path, data: bytes):
    path = tmp_path / "piece.wlog"
    path.write_bytes(data)
    return read_entries(path)


# -- older logs ----------------------------------------------------------------------------
def test_version_1_logs_are_read_and_appended_to_unknown_versions_refused(tmp_path):
    """A version-1 log (deflate) reads back and a resumed run appends to it in version 1;
    a log of a version this labctl does not know is refused, naming the file and version."""
    expected = traffic(11, n=120)
    old = tmp_path / "smu_a.wlog"
    writer = CompactWriter(str(old), version=1)
    for n, (kind, value) in enumerate(expected):
        writer.add(kind, n * 1000, value)
        if kind != "w":
            writer.commit()
    writer.close()
    assert old.read_bytes()[:len(MAGIC)] == SIGNATURE + b"\x01" != MAGIC
    assert [(k, v) for k, _, v in read_entries(old).entries] == expected
    with WireLog(old, durable=True) as again:  # a resumed session's instrument
        again.written("*IDN?")
        again.read("KEITHLEY")
    after = read_entries(old)
    assert old.read_bytes()[len(SIGNATURE)] == 1 and after.segments == 2
    assert [(k, v) for k, _, v in after.entries] == [*expected, ("w", "*IDN?"),
                                                     ("r", "KEITHLEY")]
    future = tmp_path / "adc.wlog"
    future.write_bytes(SIGNATURE + b"\x07" + old.read_bytes()[len(MAGIC):])
    with pytest.raises(WireLogError, match=r"adc\.wlog: wire-log format version 7"):
        read_entries(future)
    with pytest.raises(WireLogError, match=r"adc\.wlog: wire-log format version 7.*"
                                           r"refusing to append"):
        WireLog(future)


def test_json_lines_logs_are_still_read_and_written(tmp_path):
    old = tmp_path / "smu_a.jsonl"
    old.write_text('{"t": 0.001, "w": "*IDN?"}\n{"t": 0.0025, "r": "KEITHLEY"}\n'
                   '{"t": 0.003, "rb": "AAEC"}\n{"t": 0.004, "x": "/w=="}\n{"t": 0.005, "w')
    want = [("w", 0.001, "*IDN?"), ("r", 0.0025, "KEITHLEY"), ("rb", 0.003, b"\0\1\2"),
            ("x", 0.004, b"\xff")]
    got = read_entries(old)
    assert got.entries == want and got.torn
    assert load_wire_log(old) == [WireEntry(k, v, t) for k, t, v in want]
    assert WireLog.load(old)[2] == {"t": 0.003, "rb": "AAEC"}
    # A session recorded so keeps its format when its transports append to it.
    with WireLog(old.with_name("more.jsonl")) as log:
        log.written("A?")
    assert json.loads(old.with_name("more.jsonl").read_text())["w"] == "A?"
    # Converted to the compact format and back: the same entries.
    write_entries(tmp_path / "smu_a.wlog", got.entries)
    assert read_entries(tmp_path / "smu_a.wlog").entries == want


# -- the codec on its own ------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    ":SOUR:LIST:CURR " + ",".join(["1.5e-05", "-0", "+0.000", "007", "1.", "2E+05", "3e-5"] * 3),
    ",".join(["+1.000000E-05", "-0.000000E+00", "+9.910000E+37", "-1.234567E-01"] * 20),
    ",".join(f"{x:+.6E}" for x in np.linspace(-1, 1, 300)),
    "x" + ",".join(["123456789012345678"] * 9) + "y",
    "x" + ",".join(["1234567890123456789"] * 9) + "y",  # 19 digits: kept as text
    ",".join(["+1.0E-00", "-1.0E+00", "1.0e-0", "-0.0e-00"] * 4),
    "a 1 b 2 c 3 d 4 e 5 f 6 g 7 h 8 i 9 j 10 é 11 ∑ 12 \udc80 13",
    ",".join(["1", "22", "333", "4444", "55555", "666666", "7777777", "88888888", "0"] * 5),
])
def test_numeric_texts_round_trip_exactly(text, tmp_path):
    coded = encode_numeric(text, EchoBuffer(), is_reply=True)
    if coded is not None:
        assert render(decode_numeric(Reader(coded[0]), EchoBuffer())) == text
    path = tmp_path / "t.wlog"
    with WireLog(path) as log:
        log.written(text)
        log.read(text)
        log.read_binary(text.encode("utf-8", "surrogatepass") * 5)
    entries = read_entries(path).entries
    assert [v for _, _, v in entries] == [text, text, text.encode("utf-8", "surrogatepass") * 5]


def test_a_failed_writer_process_is_replaced_by_writing_in_this_process(tmp_path, caplog,
                                                                        monkeypatch):
    """The writer process dies (killed here): the log goes on in this process, with a
    warning; what was written before is kept (flushed first), nothing is misread."""
    from instruments.wire_log_process import WriterProcess

    monkeypatch.setenv("LABCTL_WIRE_LOG_WRITER", "process")
    path = tmp_path / "smu.wlog"
    log = WireLog(path, durable=True)
    log.written(":READ?")
    log.read("+1.0E-01,+1.0E-05")
    log.flush()
    writer = WriterProcess.get()
    writer.proc.kill()
    writer.proc.wait()
    log.written(":SYST:ERR?")
    log.read('0,"No error"')  # the hand-over fails here: written in this process
    log.close()
    assert "wire-log writer process failed" in caplog.text
    got = read_entries(path)
    assert [(k, v) for k, _, v in got.entries] == [
        ("w", ":READ?"), ("r", "+1.0E-01,+1.0E-05"), ("w", ":SYST:ERR?"), ("r", '0,"No error"')]
    assert got.segments == 2 and not got.torn
    assert WriterProcess.get() is not writer  # the next log gets a new one


def test_the_writer_process_groups_exchanges_and_writes_them_within_its_delay(tmp_path,
                                                                              monkeypatch):
    """A durable log coded by the writer process: a burst of exchanges goes to the file in
    far fewer groups than replies (one compressed block and group head for many), and all
    of it is in the file within COMMIT_S of the last reply, with no flush or close."""
    from instruments.wire_log import COMMIT_S, _groups

    monkeypatch.setenv("LABCTL_WIRE_LOG_WRITER", "process")
    path = tmp_path / "smu.wlog"
    sent = traffic(13, n=400)
    log = WireLog(path, durable=True)
    for kind, value in sent:
        {"w": log.written, "r": log.read, "rb": log.read_binary, "x": log.discarded}[kind](
            value)  # type: ignore[operator]
    last = time.monotonic()
    replies = sum(kind != "w" for kind, _ in sent)
    while time.monotonic() - last < COMMIT_S + 5.0:  # the writer's delay, with room for load
        if path.exists() and len(read_entries(path).entries) == len(sent):
            break
        time.sleep(0.02)
    got = read_entries(path)
    assert [(k, v) for k, _, v in got.entries] == sent and not got.torn
    groups = [g for g in _groups(path.read_bytes(), str(path)) if g[1] is not None]
    assert 1 <= len(groups) < replies / 4, (len(groups), replies)
    log.close()
