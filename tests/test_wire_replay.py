"""`labctl replay SESSION --wire`: sessions recorded by real child processes on the simulated
station, replayed by real child processes against their wire logs (no simulator), plus the
replay transport on its own against the drivers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from instruments.adc_board import SAMPLE_DTYPE, AdcBoard
from instruments.keithley2400 import Keithley2400
from instruments.replay_transport import (
    ReplayGroup,
    ReplayStopped,
    WireDivergence,
    WireEntry,
    WireReplayTransport,
    load_wire_log,
)
from instruments.transport import InstrumentTimeout, WireLog, verify_identity
from instruments.wire_log import read_entries, write_entries
from labctl.station.file import BUILTIN_TEXT

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
IDN = "KEITHLEY INSTRUMENTS INC.,MODEL 2400,4000001,C30"
FORMAT = ":FORMAT:ELEMENTS VOLTAGE, CURRENT, RESISTANCE, TIME, STATUS"


# -- helpers -----------------------------------------------------------------------------
def labctl(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "labctl.cli", *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def replay(session: Path, *extra: str) -> tuple[int, str, str]:
    return finish(labctl("replay", str(session), "--wire", *extra, cwd=session.parent))


def only_session(root: Path) -> Path:
    (session,) = [p for p in root.iterdir() if p.is_dir()]
    return session


def messages(path: Path) -> list[dict]:
    """A wire log without its timestamps."""
    return [{k: v for k, v in e.items() if k != "t"} for e in WireLog.load(path)]


def copy_session(session: Path, dest: Path) -> Path:
    shutil.copytree(session, dest, ignore=shutil.ignore_patterns("wire-replay"))
    return dest


def rewrite(path: Path, index: int, kind: str, value: str) -> None:
    """Replace entry ``index`` of a wire log (its kind must be ``kind``) by ``value``."""
    entries = read_entries(path).entries
    assert entries[index][0] == kind, entries[index]
    entries[index] = (kind, entries[index][1], value)
    write_entries(path, entries)


def replay_result(out: str) -> dict:
    """The comparison the replay kept (the path its report names)."""
    line = next(x for x in out.splitlines() if x.strip().startswith("comparison: "))
    return json.loads(Path(line.split("comparison: ", 1)[1]).read_text())


def sweep_configured(log: Path) -> bool:
    """Whether SMU A's log holds a reply after its list sweep's :TRIG:OLIN (a reply ends a
    group, so what the reader finds is on disk)."""
    if not log.exists():
        return False
    entries = read_entries(log).entries
    olin = [i for i, (k, _, v) in enumerate(entries) if k == "w" and v.startswith(":TRIG:OLIN")]
    return bool(olin) and any(k == "r" for k, _, _ in entries[olin[0]:])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict[str, Path]:
    """Three sessions recorded concurrently by child processes: an I-V sweep, a short
    training run, and an I-V sweep stopped by SIGTERM during its list sweep on a station
    that takes real instrument time."""
    root = tmp_path_factory.mktemp("recorded")
    slow = BUILTIN_TEXT.replace("time_scale = 0.0", "time_scale = 1.0")
    (root / "slow.toml").write_text(slow)
    procs = {
        "iv": labctl("iv", "--pair", "2", "--points", "21", "--sessions-dir", "iv", cwd=root),
        "train": labctl("train", "iris", "--epochs", "2", "--folds", "2",
                        "--sessions-dir", "train", cwd=root),
        "abort": labctl("iv", "--pair", "1", "--points", "100", "--station", "slow.toml",
                        "--sessions-dir", "abort", cwd=root),
    }
    # SMU A's list sweep is configured once its error check after :TRIG:OLIN is answered
    # (a reply flushes the wire log); its :READ? then takes seconds at time_scale 1.
    deadline = time.monotonic() + 30
    while not any(sweep_configured(log) for log in (root / "abort").glob("*/wire/smu_a.wlog")):
        assert time.monotonic() < deadline and procs["abort"].poll() is None
        time.sleep(0.02)
    time.sleep(0.3)
    procs["abort"].send_signal(signal.SIGTERM)
    expected = {"iv": 0, "train": 0, "abort": 130}
    for name, proc in procs.items():
        rc, out, err = finish(proc)
        assert rc == expected[name], (name, out, err)
    return {name: only_session(root / name) for name in procs}


# -- end to end ------------------------------------------------------------------------
def test_iv_replays_exactly_without_writing_into_the_sessions_dir(recorded):
    session = recorded["iv"]
    rc, out, err = replay(session)
    assert rc == 0, (out, err)
    assert "matched" in out.splitlines()[0]
    assert only_session(session.parent) == session  # nothing new in the sessions dir
    replayed = only_session(session / "wire-replay")
    logs = sorted((session / "wire").glob("*.wlog"))
    assert [p.stem for p in logs] == ["adc", "prober", "smu_a", "smu_b", "switch"]
    result = replay_result(out)
    for log in logs:
        n = len(messages(log))
        assert f"{n} of {n:>6} messages" in out
        assert result["messages"][log.stem]["replayed"] == n
    # The replayed run's traffic is the recording, compared message for message: it is
    # not written again (the replayed session has no wire logs), the comparison is kept.
    assert not (replayed / "wire").exists()
    assert result["matched"] and result["result_file"] == str(replayed / "wire-replay.json")
    assert (replayed / "iv.csv").read_text() == (session / "iv.csv").read_text()
    assert "recorded run: success; replayed run: success" in out


def test_training_replays_exactly(recorded):
    session = recorded["train"]
    rc, out, err = replay(session, "--json")
    assert rc == 0, (out, err)
    result = json.loads(out)
    assert result["matched"] and result["divergence"] is None
    assert result["command"] == "train iris"
    for name, counts in result["messages"].items():
        recorded_n = len(messages(session / "wire" / f"{name}.wlog"))
        assert counts["replayed"] == counts["recorded"] == recorded_n
        assert counts["w"] + counts["r"] + counts["rb"] == recorded_n
    assert result["messages"]["adc"]["rb"] > 0  # binary blocks replayed too


def test_an_edited_written_command_is_named_with_both_versions(recorded, tmp_path):
    session = copy_session(recorded["iv"], tmp_path / "edited")
    log = session / "wire" / "smu_b.wlog"
    entries = WireLog.load(log)
    index = next(i for i, e in enumerate(entries) if e.get("w", "").startswith(":TRIG:ILIN"))
    rewrite(log, index, "w", ":TRIG:ILIN 2")
    rc, out, err = replay(session)
    assert rc == 1, (out, err)
    assert "DIVERGED" in out
    assert (f"smu_b: wire replay diverged at message {index + 1} of {len(entries)} "
            f"({log}, record {index + 1}): "
            "recorded ':TRIG:ILIN 2', now ':TRIG:ILIN 1'") in err
    assert "Traceback" not in err


def test_an_edited_reply_changes_what_is_sent_next(recorded, tmp_path):
    """The SMU's answer to :SOUR:FUNC? during the safe shutdown picks the ramp's commands;
    the shutdown swallows instrument errors, the replay still reports the divergence."""
    session = copy_session(recorded["iv"], tmp_path / "edited")
    log = session / "wire" / "smu_a.wlog"
    entries = WireLog.load(log)
    asks = [i for i, e in enumerate(entries) if e.get("w") == ":SOUR:FUNC?"]
    reply = asks[-1] + 1  # the last one is the safe shutdown's (earlier: snapshot, ramp_to)
    assert entries[reply]["r"] == "CURR"
    rewrite(log, reply, "r", "VOLT")
    assert entries[reply + 1]["w"] == ":SOUR:CURR:MODE FIX"
    rc, out, err = replay(session)
    assert rc == 1, (out, err)
    assert (f"smu_a: wire replay diverged at message {reply + 2} of {len(entries)}" in err)
    assert "recorded ':SOUR:CURR:MODE FIX', now ':SOUR:VOLT:MODE FIX'" in err
    assert "safe shutdown" not in err  # nothing past the divergence is compared or logged


def test_an_edited_measurement_changes_later_training_currents(recorded, tmp_path):
    """One voltage of the first sweep feeds the forward pass, the gradient and so the
    currents of a later sweep: the replay stops at the first list command that differs."""
    session = copy_session(recorded["train"], tmp_path / "edited")
    log = session / "wire" / "smu_a.wlog"
    entries = WireLog.load(log)
    reads = [i for i, e in enumerate(entries) if e.get("w") == ":READ?"]
    reply = reads[8] + 1  # the first 8 sweeps are the pre-flight checks of the 8 pairs
    values = entries[reply]["r"].split(",")
    k = 5 * (len(values) // 10)  # a voltage in the middle of the sweep, not a ramp point
    values[k] = f"{float(values[k]) * 1.5:+.6E}"
    rewrite(log, reply, "r", ",".join(values))
    rc, out, err = replay(session, "--json")
    assert rc == 1, (out, err)
    divergence = json.loads(out)["divergence"]
    assert divergence["instrument"] in ("smu_a", "smu_b")
    assert divergence["recorded"].startswith("':SOUR:LIST:CURR")
    assert divergence["actual"].startswith("':SOUR:LIST:CURR")
    assert divergence["recorded"] != divergence["actual"]
    assert divergence["index"] > reply


def test_a_session_without_wire_logs_is_refused_clearly(recorded, tmp_path):
    session = copy_session(recorded["iv"], tmp_path / "no-wire")
    shutil.rmtree(session / "wire")
    rc, out, err = replay(session)
    assert rc == 2
    assert "no wire logs (wire/*.wlog) to replay" in err and "Traceback" not in err
    assert not (session / "wire-replay").exists() or not any((session / "wire-replay").iterdir())


def test_an_aborted_session_replays_its_interrupt_and_shutdown(recorded):
    """SIGTERM while waiting for the sweep's readings: the first mismatch is taken as the
    interrupt; the safe shutdown that followed must match the rest of the log."""
    session = recorded["abort"]
    rc, out, err = replay(session)
    assert rc == 0, (out, err)
    assert "matched" in out.splitlines()[0]
    assert "recorded run: abort; replayed run: abort (SIGTERM)" in out
    assert "interrupted, as recorded, at smu_a message" in out
    replayed = only_session(session / "wire-replay")
    assert not (replayed / "wire").exists()
    result = replay_result(out)
    assert result["matched"] and result["recorded_status"] == "abort"
    for log in (session / "wire").glob("*.wlog"):
        assert result["messages"][log.stem]["recorded"] == len(messages(log))


def test_a_session_recorded_as_json_lines_still_replays(recorded, tmp_path):
    """Sessions recorded before the compact format hold wire/<name>.jsonl: read alike."""
    session = copy_session(recorded["iv"], tmp_path / "old")
    for log in sorted((session / "wire").glob("*.wlog")):
        write_entries(log.with_suffix(".jsonl"), read_entries(log).entries)
        log.unlink()
    assert json.loads((session / "wire" / "smu_a.jsonl").read_text().splitlines()[0])["w"]
    rc, out, err = replay(session)
    assert rc == 0, (out, err)
    assert "matched" in out.splitlines()[0]
    result = replay_result(out)
    assert set(result["messages"]) == {"adc", "prober", "smu_a", "smu_b", "switch"}


# -- the transport on its own ----------------------------------------------------------
def smu(entries: list[WireEntry], group: ReplayGroup | None = None) -> Keithley2400:
    transport = WireReplayTransport(entries=entries, name="smu", timeout_s=1.0, group=group)
    return Keithley2400(transport, name="smu")


def test_transport_replays_writes_and_replies_for_a_driver():
    inst = smu([WireEntry("w", FORMAT), WireEntry("w", "*IDN?"), WireEntry("r", IDN),
                WireEntry("w", ":SOUR:CURR 1e-05"), WireEntry("w", ":READ?"),
                WireEntry("r", "+1.0E-01,+1.0E-05,+9.91E+37,+1.0E+00,+8.0E+00")])
    assert verify_identity(inst, "MODEL 24") == IDN
    readings = inst.source_and_measure(1e-5)
    assert readings.voltage[0] == pytest.approx(0.1) and readings.compliance[0]
    assert inst.adapter.remaining == 0 and inst.adapter.leftover() is None
    assert inst.adapter.consumed == {"w": 4, "r": 2, "rb": 0}


def test_transport_divergence_names_position_and_both_versions_then_stops_the_group():
    group = ReplayGroup()
    inst = smu([WireEntry("w", FORMAT), WireEntry("w", ":SOUR:CURR 2e-05"),
                WireEntry("w", ":OUTP OFF")], group)
    other = WireReplayTransport(entries=[WireEntry("w", "X")], name="other", group=group)
    with pytest.raises(WireDivergence) as info:
        inst.write(":SOUR:CURR 1e-05")
    exc = info.value
    assert (exc.instrument, exc.index) == ("smu", 1)
    assert (exc.recorded, exc.actual) == ("':SOUR:CURR 2e-05'", "':SOUR:CURR 1e-05'")
    assert "smu: wire replay diverged at message 2 of 3" in str(exc)
    assert group.divergence is exc
    with pytest.raises(ReplayStopped):
        other.write("X")  # nothing is compared past the first divergence


def test_transport_kinds_end_of_log_and_leftover():
    t = WireReplayTransport(entries=[WireEntry("w", "A?"), WireEntry("r", "1"),
                                     WireEntry("w", "B")], name="dev")
    t.write("A?")
    with pytest.raises(WireDivergence, match=r"recorded reply '1', now 'C'.*read a reply"):
        t.write("C")
    t = WireReplayTransport(entries=[WireEntry("w", "A?"), WireEntry("r", "1")], name="dev")
    assert "recorded 'A?', now nothing" in str(t.leftover())
    assert t.query("A?") == "1"
    with pytest.raises(WireDivergence, match=r"message 3 of 2: recorded \(end of the log\), "
                                             r"now 'B'"):
        t.write("B")


def test_transport_replays_binary_blocks_and_checks_their_size():
    samples = np.zeros(3, SAMPLE_DTYPE)
    samples["v"] = [1e-3, 2e-3, 3e-3]
    payload = samples.tobytes()
    block = (b"#8%08d" % len(payload) + payload + struct.pack("<I", zlib.crc32(payload))
             + b"\n")
    entries = [WireEntry("w", "ACQ:DATA?"), WireEntry("rb", block[:10]),
               WireEntry("rb", block[10:])]
    adc = AdcBoard(WireReplayTransport(entries=entries, name="adc"), name="adc")
    np.testing.assert_array_equal(adc.read_samples()["v"], samples["v"])
    t = WireReplayTransport(entries=entries, name="adc")
    t.write("ACQ:DATA?")
    with pytest.raises(WireDivergence, match="now a binary read of 12 bytes"):
        t.read_bytes(12)


def test_a_recorded_timeout_is_replayed_as_one_only_when_the_log_shows_the_wait():
    waited = [WireEntry("w", ":READ?", 0.0), WireEntry("w", ":SYST:ERR?", 1.0),
              WireEntry("r", '0,"No error"', 1.0)]
    t = WireReplayTransport(entries=waited, name="smu", resource="TCPIP::x::5025::SOCKET",
                            timeout_s=1.0)
    t.write(":READ?")
    timed_out = r"smu \(TCPIP::x::5025::SOCKET\): timed out after 1 s"
    with pytest.raises(InstrumentTimeout, match=timed_out):
        t.read()
    assert t.query(":SYST:ERR?") == '0,"No error"'
    assert t.group.assumed_timeouts == [("smu", 1, 1.0)]
    # Until an aborted session's interrupt is placed, a missing reply is that interrupt.
    group = ReplayGroup(interrupt="SIGTERM")
    t = WireReplayTransport(entries=waited, name="smu", timeout_s=1.0, group=group)
    t.write(":READ?")
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        t.read()
    assert group.interrupted_at is not None and group.interrupted_at.index == 1
    assert group.divergence is None
    quick = [WireEntry("w", ":READ?", 0.0), WireEntry("w", ":SYST:ERR?", 0.2)]
    t = WireReplayTransport(entries=quick, name="smu", timeout_s=1.0)
    t.write(":READ?")
    with pytest.raises(WireDivergence, match="recorded ':SYST:ERR\\?', now a text read"):
        t.read()


def test_wire_log_loading_keeps_times_and_drops_only_a_torn_last_line(tmp_path):
    path = tmp_path / "dev.jsonl"
    path.write_text('{"t": 0.5, "w": "A?"}\n{"t": 0.6, "rb": "AAE="}\n{"t": 0.7, "r')
    assert load_wire_log(path) == [WireEntry("w", "A?", 0.5), WireEntry("rb", b"\0\1", 0.6)]
    path.write_text('{"t": 0.5, "x": "A?"}\n')
    with pytest.raises(ValueError, match="line 1"):
        load_wire_log(path)
