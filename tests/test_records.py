"""Session records: real files, event-model's own validators, real child processes and signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from event_model import DocumentNames, Filler, schema_validators

from labctl.records.session import (
    FORMAT_VERSION,
    NpySeqHandler,
    RecordError,
    Session,
    SessionWriter,
    TornRecordWarning,
    list_sessions,
    read_documents,
    wire_log_path,
)

REPO = Path(__file__).resolve().parents[1]
SCALARS = {
    "epoch": {"dtype": "integer", "shape": [], "source": "trainer"},
    "loss": {"dtype": "number", "shape": [], "source": "trainer"},
}
WEIGHTS = {"weights": {"dtype": "array", "shape": [4, 3], "source": "trainer",
                       "external": "FILESTORE:"}}


def write_training_session(root: Path, epochs: int = 3) -> Path:
    """A complete session: scalar stream, array stream, numpy values everywhere."""
    instruments = {"smu": {"identity": "KEITHLEY INSTRUMENTS,MODEL 2450,04412345,1.7.3",
                           "settings": {"compliance_A": 1e-3, "nplc": np.float64(1.0)}}}
    with SessionWriter.create(
        root, "train iris", ["labctl", "train", "iris", "--epochs", str(epochs)],
        config={"lr": 0.05, "hidden": np.int64(8), "layers": [4, 8, 3]},
        seeds={"numpy": 1234}, instruments=instruments,
        station_file_text='[smu]\nresource = "ASRL/dev/ttyUSB0::INSTR"\n',
    ) as session:
        train = session.descriptor("train", SCALARS)
        snapshots = session.descriptor("weights", WEIGHTS)
        for epoch in range(epochs):
            session.event(train, {"epoch": epoch, "loss": np.float32(1.0 / (epoch + 1))})
            weights = np.arange(12.0).reshape(4, 3) * epoch
            session.event(snapshots, {"weights": weights})
        session.stop("success", summary={"accuracy": np.float64(0.96), "epochs": epochs})
    return session.path


def run_child(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_every_document_validates_against_event_model(tmp_path):
    path = write_training_session(tmp_path)
    docs = list(read_documents(path))
    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(doc)
    names = [name for name, _ in docs]
    assert names[0] == "start" and names[-1] == "stop"
    # one NPY_SEQ resource for the array key, a datum per event
    assert names.count("event") == 6 and names.count("resource") == 1
    assert names.count("datum") == 3

    start, stop = docs[0][1], docs[-1][1]
    assert start["plan_name"] == "train iris" and start["labctl_format"] == FORMAT_VERSION
    assert start["config"]["hidden"] == 8 and start["seeds"] == {"numpy": 1234}
    assert start["instruments"]["smu"]["settings"]["nplc"] == 1.0
    assert start["station_file"].startswith("[smu]")
    assert stop["exit_status"] == "success" and stop["run_start"] == start["uid"]
    assert stop["num_events"] == {"train": 3, "weights": 3}
    assert stop["labctl_summary"] == {"accuracy": 0.96, "epochs": 3}

    session = Session.open(path)
    assert [e["epoch"] for e in session.events("train")] == [0, 1, 2]
    assert session.events("train")[1]["loss"] == pytest.approx(0.5)
    assert not session.torn
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(start["time"]))
    assert path.name.startswith(f"{stamp}-train-iris-")


def test_seq_num_counts_per_stream(tmp_path):
    path = write_training_session(tmp_path)
    session = Session.open(path)
    seq = {}
    for name, doc in read_documents(path):
        if name == "event":
            seq.setdefault(doc["descriptor"], []).append(doc["seq_num"])
    assert seq == {session.descriptors["train"]["uid"]: [1, 2, 3],
                   session.descriptors["weights"]["uid"]: [1, 2, 3]}


def test_arrays_round_trip_via_resource_and_datum(tmp_path):
    path = write_training_session(tmp_path)
    session = Session.open(path)
    refs = [e["weights"] for e in session.events("weights")]
    assert all(isinstance(ref, str) for ref in refs)
    for epoch, ref in enumerate(refs):
        expected = np.arange(12.0).reshape(4, 3) * epoch
        np.testing.assert_array_equal(session.load_array(ref), expected)
    filled = session.events("weights", fill=True)
    np.testing.assert_array_equal(filled[2]["weights"], np.arange(12.0).reshape(4, 3) * 2)
    assert sorted(p.name for p in (path / "arrays").iterdir()) == [
        "weights-weights_0.npy", "weights-weights_1.npy", "weights-weights_2.npy"]

    # Bluesky's own Filler loads them too, through the documented handler.
    with Filler({"NPY_SEQ": NpySeqHandler}, inplace=False) as filler:
        events = [filler(name, doc)[1] for name, doc in read_documents(path)]
    arrays = [e["data"]["weights"] for e in events if "weights" in e.get("data", {})]
    np.testing.assert_array_equal(arrays[1], np.arange(12.0).reshape(4, 3))

    # resource root is only where it was written: a moved session still loads.
    moved = tmp_path / "elsewhere" / path.name
    shutil.move(path, moved)
    np.testing.assert_array_equal(Session.open(moved).load_array(refs[1]),
                                  np.arange(12.0).reshape(4, 3))


def test_sigkill_mid_run_leaves_readable_interrupted_session(tmp_path):
    child = run_child("""
        import sys
        from labctl.records.session import SessionWriter
        w = SessionWriter.create(sys.argv[1], "train iris", sys.argv, {}, {"numpy": 1})
        d = w.descriptor("train", {"i": {"dtype": "integer", "shape": [], "source": "t"},
                                   "pad": {"dtype": "string", "shape": [], "source": "t"}})
        print(w.path, flush=True)
        i = 0
        while True:
            w.event(d, {"i": i, "pad": "x" * 3000})  # long lines: more chance to tear one
            print(i, flush=True)
            i += 1
    """, str(tmp_path))
    with child:
        path = Path(child.stdout.readline().strip())
        acknowledged = -1
        while acknowledged < 300:
            acknowledged = int(child.stdout.readline())
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    session = Session(path)  # quiet: a torn last line is allowed here, a crash is not
    assert session.stop is None
    indices = [e["i"] for e in session.events("train")]
    # Every event whose write returned before the kill is there, in order, none lost between.
    assert indices == list(range(len(indices))) and len(indices) > acknowledged
    [summary] = list_sessions(tmp_path)
    assert summary.status == "interrupted" and summary.n_events == len(indices)
    assert summary.command == "train iris"


def test_torn_last_line_warns_and_keeps_earlier_documents(tmp_path):
    path = write_training_session(tmp_path)
    file = path / "documents.jsonl"
    lines = file.read_bytes().splitlines(keepends=True)
    file.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # stop cut in half

    with pytest.warns(TornRecordWarning, match=rf"documents\.jsonl, line {len(lines)}"):
        docs = list(read_documents(path))
    assert [name for name, _ in docs] == [json.loads(line)[0] for line in lines[:-1]]
    with pytest.warns(TornRecordWarning):
        session = Session.open(path)
    assert session.torn and session.stop is None and len(session.events("train")) == 3


def test_complete_last_line_without_newline_is_torn(tmp_path):
    path = write_training_session(tmp_path)
    file = path / "documents.jsonl"
    file.write_bytes(file.read_bytes()[:-1])
    with pytest.warns(TornRecordWarning, match="no trailing newline"):
        assert [name for name, _ in read_documents(path)][-1] != "stop"


def test_corrupted_middle_line_raises_naming_file_and_line(tmp_path):
    path = write_training_session(tmp_path)
    file = path / "documents.jsonl"
    lines = file.read_bytes().splitlines(keepends=True)
    lines[4] = b'["event", {"uid": "x", "da\n'
    file.write_bytes(b"".join(lines))
    with pytest.raises(RecordError, match=rf"{file}, line 5: invalid document"):
        list(read_documents(path))
    with pytest.raises(RecordError, match="line 5"):
        Session.open(path)


def test_newer_format_is_refused_naming_both_versions(tmp_path):
    path = write_training_session(tmp_path)
    file = path / "documents.jsonl"
    lines = file.read_text().splitlines(keepends=True)
    name, start = json.loads(lines[0])
    start["labctl_format"] = FORMAT_VERSION + 1
    file.write_text(json.dumps([name, start]) + "\n" + "".join(lines[1:]))
    with pytest.raises(RecordError) as info:
        list(read_documents(path))
    assert f"format {FORMAT_VERSION + 1}" in str(info.value)
    assert f"format {FORMAT_VERSION} read" in str(info.value)


def test_not_a_labctl_session_is_refused(tmp_path):
    (tmp_path / "bluesky").mkdir()
    (tmp_path / "bluesky" / "documents.jsonl").write_text('["start", {"uid": "a", "time": 1}]\n')
    with pytest.raises(RecordError, match=r"documents\.jsonl, line 1: not a labctl session"):
        list(read_documents(tmp_path / "bluesky"))
    with pytest.raises(RecordError, match=r"documents\.jsonl: missing"):
        list(read_documents(tmp_path))


def test_exception_writes_fail_and_propagates(tmp_path):
    with pytest.raises(ZeroDivisionError), SessionWriter.create(tmp_path, "train", [], {}, {}) as w:
        _ = 1 / 0
    stop = Session.open(w.path).stop
    assert stop["exit_status"] == "fail" and "ZeroDivisionError: division by zero" in stop["reason"]


def test_keyboard_interrupt_writes_abort_and_propagates(tmp_path):
    with pytest.raises(KeyboardInterrupt), SessionWriter.create(tmp_path, "train", [], {}, {}) as w:
        raise KeyboardInterrupt
    assert Session.open(w.path).stop["exit_status"] == "abort"


def test_clean_exit_without_stop_is_success_and_stop_is_final(tmp_path):
    with SessionWriter.create(tmp_path, "probe", [], {}, {}) as w:
        d = w.descriptor("r", {"r": {"dtype": "number", "shape": [], "source": "smu"}})
        w.event(d, {"r": 1.0})
    assert Session.open(w.path).stop["exit_status"] == "success"
    with pytest.raises(RecordError, match="already stopped"):
        w.event(d, {"r": 2.0})


def test_writer_refuses_what_would_make_an_unreadable_session(tmp_path):
    with SessionWriter.create(tmp_path, "probe", [], {}, {}) as w:
        d = w.descriptor("r", {"r": {"dtype": "number", "shape": [], "source": "smu"}})
        with pytest.raises(ValueError, match="differ"):
            w.event(d, {"resistance": 1.0})
        with pytest.raises(ValueError, match="lacks"):
            w.descriptor("bad", {"x": {"dtype": "number"}})
        with pytest.raises(ValueError, match="'.'"):
            w.stop(summary={"val.acc": 0.9})
        bad = w.descriptor("../escape", {"x": {"dtype": "array", "shape": [2], "source": "t",
                                               "external": "FILESTORE:"}})
        with pytest.raises(ValueError, match="file name"):
            w.event(bad, {"x": np.zeros(2)})
    with pytest.raises(TypeError, match="object"):
        SessionWriter.create(tmp_path / "other", "x", [], {"thing": object()}, {})
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").iterdir())
    for name, doc in read_documents(w.path):
        schema_validators[DocumentNames[name]].validate(doc)


def test_session_ids_are_unique_and_start_with_utc_time(tmp_path):
    paths = []
    for _ in range(20):
        with SessionWriter.create(tmp_path, "Train Iris!", [], {}, {}) as w:
            paths.append(w.path)
    assert len({p.name for p in paths}) == 20
    stamps = [p.name[:15] for p in paths]  # YYYYMMDD-HHMMSS
    assert stamps == sorted(stamps) and all(p.name[15:21] == "-train" for p in paths)


def test_list_sessions_mixes_good_interrupted_and_junk(tmp_path):
    good = write_training_session(tmp_path)
    with pytest.raises(RuntimeError), SessionWriter.create(tmp_path, "sweep", [], {}, {}) as w:
        raise RuntimeError("compliance reached")
    failed = w.path
    interrupted = SessionWriter.create(tmp_path, "probe", [], {}, {})  # never stopped
    (tmp_path / "zz-junk").mkdir()
    (tmp_path / "zz-empty").mkdir()
    (tmp_path / "zz-empty" / "documents.jsonl").write_bytes(b"")
    (tmp_path / "zz-garbage").mkdir()
    (tmp_path / "zz-garbage" / "documents.jsonl").write_bytes(b"\xff\xfe not json\n")
    (tmp_path / "notes.txt").write_text("not a session")

    running = {s.id: s.status for s in list_sessions(tmp_path)}[interrupted.path.name]
    assert running == "running"  # its writer holds the session open
    interrupted._file.close()  # as a kill -9 would: no stop document, the lock released
    summaries = {s.id: s for s in list_sessions(tmp_path)}
    assert set(summaries) == {good.name, failed.name, interrupted.path.name,
                              "zz-junk", "zz-empty", "zz-garbage"}
    assert summaries[good.name].status == "success"
    assert summaries[good.name].headline == "accuracy=0.960, epochs=3"
    assert summaries[good.name].n_events == 6 and summaries[good.name].command == "train iris"
    assert summaries[failed.name].status == "fail"
    assert "compliance reached" in summaries[failed.name].reason
    assert summaries[interrupted.path.name].status == "interrupted"
    for junk, why in [("zz-junk", "missing"), ("zz-empty", "empty"), ("zz-garbage", "line 1")]:
        assert summaries[junk].status == "unreadable" and why in summaries[junk].reason
    assert list_sessions(tmp_path / "nowhere") == []


def test_wire_log_path(tmp_path):
    path = wire_log_path(tmp_path, "smu")
    assert path == tmp_path / "wire" / "smu.wlog" and path.parent.is_dir()
    with pytest.raises(ValueError):
        wire_log_path(tmp_path, "../smu")


def test_reading_never_emits_unexpected_warnings(tmp_path):
    path = write_training_session(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(read_documents(path))
        Session.open(path)
