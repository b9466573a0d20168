"""Session records against corruption and crafted files: array checksums, structure checked
on reading, paths kept inside the session, wire replay kept inside its output directory,
and run segments (a session continued after abort/fail).

Sessions are recorded by real `labctl` child processes on the built-in simulated station;
the crafted variants are edits of those real documents.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from event_model import DocumentNames, RunRouter, schema_validators, unpack_event_page

from labctl import plots
from labctl.commands import report as report_cmd
from labctl.commands.replay import replay_training
from labctl.records.session import (
    FORMAT_VERSION,
    NpyFileHandler,
    NpySeqHandler,
    RecordError,
    Session,
    SessionWriter,
    TornRecordWarning,
    list_sessions,
    read_documents,
    wire_log_path,
)
from labctl.training.iris_record import RecordedRun
from labctl.training.neuron_record import ReplayDivergence

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    "MPLBACKEND": "Agg",
}


def labctl(*args: object, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labctl.cli", *map(str, args)], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=timeout, check=False)


def refused(proc: subprocess.CompletedProcess) -> str:
    """A clean refusal: exit 2, a `labctl: error:` line, no traceback; returns stderr."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "labctl: error: " in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict[str, Path]:
    """A short training run and an I-V sweep, recorded concurrently by child processes."""
    root = tmp_path_factory.mktemp("integrity")
    procs = {
        "train": subprocess.Popen(
            [sys.executable, "-m", "labctl.cli", "train", "iris", "--epochs", "2", "--folds",
             "2", "--no-progress", "--sessions-dir", "train"],
            cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "iv": subprocess.Popen(
            [sys.executable, "-m", "labctl.cli", "iv", "--pair", "2", "--points", "11",
             "--sessions-dir", "iv"],
            cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (name, out, err)
    return {name: next(p for p in (root / name).iterdir() if p.is_dir()) for name in procs}


def copy_session(session: Path, dest: Path) -> Path:
    shutil.copytree(session, dest, ignore=shutil.ignore_patterns("wire-replay", "report",
                                                                 "replay"))
    return dest


def lines_of(session: Path) -> list[list]:
    return [json.loads(line) for line in (session / "documents.jsonl").read_text().splitlines()]


def write_lines(session: Path, docs: list) -> None:
    (session / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))


def edit(session: Path, change) -> None:
    """Apply ``change(name, doc)`` (in place) to every document of a session."""
    docs = lines_of(session)
    for name, doc in docs:
        change(name, doc)
    write_lines(session, docs)


def tree_bytes(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def validate_event_model(session: Path) -> list[tuple[str, dict]]:
    docs = list(read_documents(session))
    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(doc)
    return docs


# -- 1. checksums ------------------------------------------------------------------------
def test_every_array_datum_carries_the_sha256_of_its_file(recorded):
    session = recorded["train"]
    docs = validate_event_model(session)
    resources = {doc["uid"]: doc for name, doc in docs if name == "resource"}
    datums = [doc for name, doc in docs if name == "datum"]
    # one NPY_SEQ resource per array key (weights, measurements, final weights, the tanh
    # baseline's curves)
    assert sorted(r["resource_path"] for r in resources.values()) == [
        "arrays/epoch-measurements", "arrays/epoch-weights", "arrays/fold-final_weights",
        "arrays/fold-tanh_history"]
    assert {r["spec"] for r in resources.values()} == {"NPY_SEQ"}
    # weights + measurements per epoch, fold weights and tanh curves per fold
    assert len(datums) == 2 * 2 * 2 + 2 * 2
    for datum in datums:
        kwargs = datum["datum_kwargs"]
        path = f"{resources[datum['resource']]['resource_path']}_{kwargs['index']}.npy"
        assert kwargs["sha256"] == hashlib.sha256((session / path).read_bytes()).hexdigest()
    assert docs[0][1]["labctl_format"] == FORMAT_VERSION


def to_npy_file_layout(session: Path, fmt: int) -> None:
    """Rewrite a session the way formats 1 and 2 recorded it: a descriptor under its own
    name, one NPY_FILE resource per array file (format 2: with its SHA-256)."""
    out, sequences = [], {}
    for name, doc in lines_of(session):
        if name == "start":
            doc["labctl_format"] = fmt
        if name == "descriptor" and "labctl_stream" in doc:
            doc["name"] = doc.pop("labctl_stream")
        if name == "resource":
            sequences[doc["uid"]] = doc
            continue
        if name == "datum":
            res, kwargs = sequences[doc["resource"]], doc["datum_kwargs"]
            uid = f"{res['uid']}-{kwargs['index']}"
            checksum = {"sha256": kwargs["sha256"]} if fmt >= 2 else {}
            out.append(["resource", {**res, "uid": uid, "spec": "NPY_FILE",
                                     "resource_path": f"{res['resource_path']}_"
                                                      f"{kwargs['index']}.npy",
                                     "resource_kwargs": checksum}])
            doc = {"datum_id": doc["datum_id"], "resource": uid, "datum_kwargs": {}}
        out.append([name, doc])
    write_lines(session, out)


def test_a_corrupted_array_is_refused_naming_session_file_and_checksum(recorded, tmp_path):
    session = copy_session(recorded["train"], tmp_path / "s")
    target = session / "arrays" / "epoch-measurements_3.npy"  # fold 1, epoch 1
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01  # one bit of the last value: np.load alone would never notice
    target.write_bytes(bytes(data))
    np.load(target)  # still a perfectly loadable array
    run = RecordedRun(Session(session))
    with pytest.raises(RecordError) as info:
        run.measurements(1, 1)
    message = str(info.value)
    assert str(session) in message and "arrays/epoch-measurements_3.npy" in message
    assert "checksum mismatch" in message
    run.measurements(0, 0)  # the others are fine
    for command in (["report", session], ["replay", session]):
        err = refused(labctl(*command, cwd=tmp_path))
        assert "checksum mismatch" in err and "epoch-measurements_3.npy" in err, err
    # Bluesky's Filler, through the documented handler, refuses it too.
    docs = list(read_documents(session))
    res = next(d for n, d in docs if n == "resource"
               and d["resource_path"] == "arrays/epoch-measurements")
    datum = next(d for n, d in docs if n == "datum" and d["resource"] == res["uid"]
                 and d["datum_kwargs"]["index"] == 3)
    with pytest.raises(RecordError, match="checksum mismatch"):
        NpySeqHandler(str(session / res["resource_path"]))(**datum["datum_kwargs"])


def test_resuming_an_interrupted_session_refuses_a_corrupted_array(recorded, tmp_path):
    session = copy_session(recorded["train"], tmp_path / "s")
    docs = lines_of(session)
    cut = 1 + next(i for i, (name, doc) in enumerate(docs) if name == "event"
                   and doc["data"].get("fold") == 1 and doc["data"].get("epoch") == 0)
    write_lines(session, docs[:cut])  # killed in fold 1, after its first epoch
    target = session / "arrays" / "epoch-measurements_2.npy"  # fold 1, epoch 0
    data = bytearray(target.read_bytes())
    data[-3] ^= 0x10
    target.write_bytes(bytes(data))
    with pytest.raises(RecordError, match="checksum mismatch"):
        Session(session).verify_arrays()
    err = refused(labctl("train", "iris", "--resume", session, cwd=tmp_path))
    assert "checksum mismatch" in err and "epoch-measurements_2.npy" in err, err
    new = [d for d in lines_of(session)[cut:] if d[0] == "event"]
    assert new == []  # nothing trained on top of the corrupted record


def test_sessions_of_formats_1_and_2_still_load_and_format_2_requires_checksums(
        recorded, tmp_path):
    for fmt in (1, 2):
        old = copy_session(recorded["train"], tmp_path / f"old{fmt}")
        to_npy_file_layout(old, fmt)
        run = RecordedRun(Session(old))
        np.testing.assert_array_equal(run.measurements(1, 1),
                                      RecordedRun(Session(recorded["train"])).measurements(1, 1))
        assert replay_training(Session(old))["metrics_identical"]

    stripped = copy_session(recorded["train"], tmp_path / "stripped")
    to_npy_file_layout(stripped, 2)
    edit(stripped, lambda name, doc: name == "resource" and doc["resource_kwargs"].clear())
    lineno = 1 + next(i for i, (n, _) in enumerate(lines_of(stripped)) if n == "resource")
    with pytest.raises(RecordError) as info:
        Session(stripped)
    assert f"documents.jsonl, line {lineno}" in str(info.value)
    assert "'resource_kwargs.sha256' missing" in str(info.value)


# -- 2. structure checked on reading -----------------------------------------------------
_OTHER_VALUES = (None, "x", 1.5, -1, True, [], {}, [1, "a"], {"a": 1})
_DEEP = {"data", "data_keys", "config", "settings", "resource_kwargs", "datum_kwargs",
         "labctl_summary", "num_events", "instruments", "timestamps", "station", "smu_a"}


# Written for Bluesky's tools (labctl.records.bluesky) and never read back by labctl:
# crafting them tells nothing about labctl's reading, and would multiply the cases.
_FOR_OTHER_TOOLS = {"object_keys", "configuration", "object_name", "dtype_numpy", "plan_type",
                    "plan_args", "scan_id", "detectors"}


def _paths(doc: dict, prefix: tuple = ()):
    """Key paths of a document: top level, and inside the parts labctl reads."""
    for key, value in doc.items():
        if key in _FOR_OTHER_TOOLS or (key == "hints" and "data_keys" in doc):
            continue
        yield (*prefix, key)
        if isinstance(value, dict) and (key in _DEEP or prefix[-1:] == ("data_keys",)):
            yield from _paths(value, (*prefix, key))


def _kind(name: str, doc: dict) -> tuple:
    """Documents of one kind are read by the same code: events of one stream, datums of one
    resource, resources; every descriptor is its own kind (its data keys differ)."""
    if name == "descriptor":
        return name, doc.get("name"), doc.get("uid")
    return name, doc.get("descriptor"), doc.get("resource")


def _representatives(docs: list) -> list[int]:
    """The first and the last document of each kind (where a kind repeats, the ones between
    are read as the first is, and the last is where later references start or end)."""
    first: dict[tuple, int] = {}
    last: dict[tuple, int] = {}
    for i, (name, doc) in enumerate(docs):
        first.setdefault(_kind(name, doc), i)
        last[_kind(name, doc)] = i
    return sorted({*first.values(), *last.values()})


def _mutations(docs: list):
    for i in _representatives(docs):
        doc = docs[i][1]
        for path in _paths(doc):
            parent = doc
            for key in path[:-1]:
                parent = parent[key]
            original = parent[path[-1]]
            yield i, path, "deleted", None
            for value in _OTHER_VALUES:
                if type(value) is not type(original):
                    yield i, path, "set", value


def _apply(docs: list, i: int, path: tuple, how: str, value) -> list:
    """``docs`` with line ``i`` changed (the other lines are shared, not copied)."""
    docs = list(docs)
    docs[i] = copy.deepcopy(docs[i])
    parent = docs[i][1]
    for key in path[:-1]:
        parent = parent[key]
    if how == "deleted":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return docs


def _consume(session_dir: Path, out: Path) -> None:
    """What report, replay and resume do with a session, in process."""
    session = Session(session_dir)
    list(read_documents(session_dir))
    list_sessions(session_dir.parent)
    if "epoch" in session.descriptors or "settings" in session.start.get("config", {}):
        run = RecordedRun(session)
        for key in run.epochs:
            run.measurements(*key)
        for fold in run.folds:
            run.fold_result(fold)
        if run.epochs:
            try:
                replay_training(session)
            except ReplayDivergence:
                pass  # a changed number: the replay says where it differs (a clean error)
    for stream in session.descriptors:
        session.events(stream, fill=True)
    try:
        report_cmd.run(argparse.Namespace(session=session_dir, out=out,
                                          sessions_dir=session_dir.parent))
    except RecordError as err:
        if "no stream this report knows" not in str(err):
            raise


def test_no_crafted_document_gets_past_reading_as_anything_but_a_record_error(
        recorded, tmp_path, monkeypatch):
    for name in ("iv_curves", "error_vs_step", "training_curves", "derivative_scatter",
                 "gradient_fidelity"):
        monkeypatch.setattr(plots, name, lambda path, *args, **kwargs: path)
    tried = accepted = 0
    for kind in ("train", "iv"):
        work = copy_session(recorded[kind], tmp_path / kind / "s")
        file = work / "documents.jsonl"
        original = lines_of(work)
        encoded = [json.dumps(d) + "\n" for d in original]  # the lines no mutation touches
        for i, path, how, value in _mutations(original):
            line = json.dumps(_apply(original, i, path, how, value)[i]) + "\n"
            file.write_text("".join([*encoded[:i], line, *encoded[i + 1:]]))
            tried += 1
            what = f"line {i + 1} ({original[i][0]}), {'.'.join(map(str, path))} {how} {value!r}"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # a whole line is never "torn"
                    Session(work)
            except RecordError as err:
                found = re.search(rf"{re.escape(str(file))}, line (\d+)", str(err))
                assert found, (what, err)
                # At the edited line, naming the key; or later, where a reference breaks.
                assert int(found[1]) >= i + 1, (what, err)
                if how == "deleted" and int(found[1]) == i + 1:
                    assert str(path[-1]) in str(err), (what, err)
                continue
            except Exception as err:  # noqa: BLE001 - this is what the test is about
                pytest.fail(f"{what}: {type(err).__name__}: {err}")
            accepted += 1
            try:
                _consume(work, tmp_path / "out")
            except RecordError:
                pass
            except Exception as err:  # noqa: BLE001
                pytest.fail(f"{what}: accepted, then {type(err).__name__}: {err}")
    assert tried > 1000 and 0 < accepted < tried / 2, (tried, accepted)  # not vacuous


def test_required_keys_are_named_with_file_and_line(recorded, tmp_path):
    session = copy_session(recorded["train"], tmp_path / "s")
    file = session / "documents.jsonl"
    original = lines_of(session)
    first = {name: i for i, (name, _) in reversed(list(enumerate(original)))}
    cases = [("event", ("descriptor",)), ("event", ("data",)), ("event", ("seq_num",)),
             ("event", ("data", "fold")), ("descriptor", ("name",)),
             ("descriptor", ("data_keys",)), ("descriptor", ("run_start",)),
             ("resource", ("resource_path",)), ("resource", ("spec",)),
             ("datum", ("resource",)), ("datum", ("datum_id",)), ("stop", ("exit_status",))]
    for name, path in cases:
        i = first[name]
        if path == ("data", "fold"):  # an epoch's event (the first events are pre-flight)
            i = next(j for j, (n, d) in enumerate(original)
                     if n == "event" and "fold" in d["data"])
        write_lines(session, _apply(original, i, path, "deleted", None))
        label = ".".join(path)
        for read in (Session, lambda p: list(read_documents(p))):
            with pytest.raises(RecordError) as info:
                read(session)
            assert f"{file}, line {i + 1}: {name} document: key {label!r} missing" in str(
                info.value), (name, path, info.value)
        write_lines(session, _apply(original, i, path, "set", ["wrong"]))
        with pytest.raises(RecordError, match=rf"line {i + 1}: {name} document: key "
                                              rf"'{label}' is array, expected"):
            Session(session)
    # Through the commands too: report, replay and resume all read through Session.
    i = first["event"]
    write_lines(session, _apply(original, i, ("descriptor",), "deleted", None))
    for command in (["report", session], ["replay", session],
                    ["train", "iris", "--resume", session]):
        err = refused(labctl(*command, cwd=tmp_path))
        assert f"line {i + 1}: event document: key 'descriptor' missing" in err, err
    write_lines(session, _apply(original, first["descriptor"], ("name",), "deleted", None))
    err = refused(labctl("replay", session, "--wire", cwd=tmp_path))
    assert "descriptor document: key 'name' missing" in err, err


def test_garbage_lines_are_refused_but_a_torn_last_line_is_tolerated(recorded, tmp_path):
    session = copy_session(recorded["train"], tmp_path / "s")
    file = session / "documents.jsonl"
    raw = file.read_bytes().splitlines(keepends=True)
    garbage = [b"garbage\n", b"[1, 2]\n", b'["event"]\n', b'"start"\n', b'["event", []]\n',
               b'["frobnicate", {}]\n', b"\xff\xfe\n", b"[" * 100_000 + b"]" * 100_000 + b"\n",
               b"\n"]
    for junk in garbage:
        for at in (1, len(raw) // 2, len(raw) - 1):
            file.write_bytes(b"".join(raw[:at] + [junk] + raw[at:]))
            with pytest.raises(RecordError, match=rf"{file}, line {at + 1}: "):
                Session(session)
        # As the last line it looks like a torn write: skipped with a warning, as before.
        if b"frobnicate" not in junk:  # unparseable, or no [name, document] pair
            file.write_bytes(b"".join(raw) + junk)
            with pytest.warns(TornRecordWarning):
                assert Session.open(session).stop is not None
    last = raw[-1]
    for cut in (1, len(last) // 3, len(last) - 1):  # the stop document cut short: kill -9
        file.write_bytes(b"".join(raw[:-1]) + last[:cut])
        with pytest.warns(TornRecordWarning, match=rf"line {len(raw)}"):
            session_read = Session.open(session)
        assert session_read.torn and session_read.stop is None
        assert len(RecordedRun(session_read).epochs) == 4
    # A whole, parseable last line that breaks the rules is refused, not taken as torn.
    docs = lines_of(copy_session(recorded["train"], tmp_path / "t"))
    del docs[-1][1]["run_start"]
    write_lines(session, docs)
    with pytest.raises(RecordError, match=rf"line {len(docs)}: stop document: key 'run_start'"):
        Session(session)


def test_out_of_order_and_repeated_documents_are_refused(recorded, tmp_path):
    session = copy_session(recorded["train"], tmp_path / "s")
    original = lines_of(session)
    names = [name for name, _ in original]
    # The first event that refers to an array (the epochs' events follow their datums).
    event = next(i for i, (name, _) in enumerate(original)
                 if name == "event" and original[i - 1][0] == "datum")
    swapped = original[:event - 1] + [original[event], original[event - 1]] + original[event + 1:]
    write_lines(session, swapped)  # an event before the datum it refers to
    with pytest.raises(RecordError, match=rf"line {event}: event document: key 'data.\w+' "
                                          r"'[^']+' is no datum_id"):
        Session(session)
    for i in (0, names.index("descriptor"), len(original) - 1):
        write_lines(session, original[:i + 1] + original[i:])
        with pytest.raises(RecordError, match=rf"line {i + 2}: "):
            Session(session)
    write_lines(session, original + [original[event]])  # an event after the stop
    with pytest.raises(RecordError, match=rf"line {len(original) + 1}: event document: after "
                                          "the stop"):
        Session(session)


# -- 3. containment ----------------------------------------------------------------------
def _retarget(session: Path, resource_path: str) -> int:
    """Point the first measurements resource at ``resource_path``; returns its line."""
    docs = lines_of(session)
    i = next(i for i, (name, doc) in enumerate(docs)
             if name == "resource" and "measurements" in doc["resource_path"])
    docs[i][1]["resource_path"] = resource_path
    write_lines(session, docs)
    return i + 1


@pytest.mark.parametrize("crafted", ["../../../etc/passwd", "/etc/passwd", "arrays/../../x.npy",
                                     "arrays/../../../planted.npy", "/dev/zero", ""])
def test_resource_paths_outside_the_session_are_refused(recorded, tmp_path, crafted):
    session = copy_session(recorded["train"], tmp_path / "s")
    lineno = _retarget(session, crafted)
    file = session / "documents.jsonl"
    with pytest.raises(RecordError) as info:
        Session(session)
    assert f"{file}, line {lineno}" in str(info.value) and repr(crafted) in str(info.value)
    err = refused(labctl("report", session, cwd=tmp_path))
    assert f"line {lineno}" in err and repr(crafted) in err, err
    assert not (session / "report").exists()


def test_symlinks_out_of_the_session_are_refused_and_never_opened(recorded, tmp_path):
    session = copy_session(recorded["train"], tmp_path / "s")
    outside = tmp_path / "outside"
    outside.mkdir()
    fifo = outside / "trap.npy"
    os.mkfifo(fifo)  # opening it would block: a refusal must not even open it
    (session / "arrays" / "trap.npy").symlink_to(fifo)
    lineno = _retarget(session, "arrays/trap.npy")
    with pytest.raises(RecordError, match=rf"line {lineno}: resource_path: path "
                                          r"'arrays/trap.npy' is outside .* symlink"):
        Session(session)
    err = refused(labctl("report", session, cwd=tmp_path, timeout=60))
    assert "arrays/trap.npy" in err, err

    # The whole arrays/ directory moved out and symlinked back: refused too, also planted
    # arrays with a matching checksum (report used to plot them).
    session = copy_session(recorded["train"], tmp_path / "t")
    shutil.move(session / "arrays", outside / "arrays")
    (session / "arrays").symlink_to(outside / "arrays")
    err = refused(labctl("report", session, cwd=tmp_path))
    assert "outside the session directory" in err and "symlink" in err, err
    with pytest.raises(RecordError, match="outside the session directory"):
        SessionWriter.reopen(session)  # nor is anything written through it


def test_wire_logs_outside_the_session_are_refused(recorded, tmp_path):
    session = copy_session(recorded["iv"], tmp_path / "s")
    outside = tmp_path / "outside"
    outside.mkdir()
    log = session / "wire" / "smu_a.wlog"
    shutil.move(log, outside / "smu_a.wlog")
    log.symlink_to(outside / "smu_a.wlog")
    before = tree_bytes(outside)
    err = refused(labctl("replay", session, "--wire", cwd=tmp_path))
    assert "wire/smu_a.wlog" in err and "outside the session directory" in err, err
    assert not (session / "wire-replay").exists()
    with pytest.raises(RecordError, match="outside the session directory"):
        Session(session).wire_logs()
    with pytest.raises(RecordError, match="outside the session directory"):
        wire_log_path(session, "smu_a")  # a resumed run would append through it
    assert tree_bytes(outside) == before

    session = copy_session(recorded["iv"], tmp_path / "t")
    shutil.move(session / "wire", outside / "wire")
    (session / "wire").symlink_to(outside / "wire")
    err = refused(labctl("replay", session, "--wire", cwd=tmp_path))
    assert "outside the session directory" in err, err
    with pytest.raises(RecordError):
        wire_log_path(session, "smu_b")


def test_default_output_directories_are_not_symlinks_out_of_the_session(recorded, tmp_path):
    session = copy_session(recorded["train"], tmp_path / "s")
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("report", "replay"):
        (session / name).symlink_to(outside)
        err = refused(labctl(name, session, cwd=tmp_path))
        assert "outside the session directory" in err, err
    session = copy_session(recorded["iv"], tmp_path / "t")
    (session / "wire-replay").symlink_to(outside)
    err = refused(labctl("replay", session, "--wire", cwd=tmp_path))
    assert "outside the session directory" in err, err
    assert list(outside.iterdir()) == []


# -- 4. wire replay stays in its own directory -------------------------------------------
def _set_argv(session: Path, argv: list[str]) -> None:
    edit(session, lambda name, doc: name == "start" and doc.update(argv=argv))


def test_wire_replay_refuses_a_recorded_resume_of_another_session(recorded, tmp_path):
    other = copy_session(recorded["train"], tmp_path / "other")
    docs = lines_of(other)
    docs[-1][1].update(exit_status="abort", reason="SIGTERM")
    write_lines(other, docs)
    before = tree_bytes(other)
    session = copy_session(recorded["train"], tmp_path / "s")
    argv = lines_of(session)[0][1]["argv"]
    _set_argv(session, [*argv, "--resume", str(other)])
    err = refused(labctl("replay", session, "--wire", cwd=tmp_path))
    assert f"continues session {str(other)!r}" in err and "refused" in err, err
    _set_argv(session, [*argv, "--res", str(other)])  # no abbreviations: it does not parse
    err = refused(labctl("replay", session, "--wire", cwd=tmp_path))
    assert "does not parse" in err and "unrecognized arguments: --res" in err, err
    assert tree_bytes(other) == before
    assert not (session / "wire-replay").exists()


def test_wire_replay_keeps_a_recorded_sessions_dir_inside_its_output(recorded, tmp_path):
    session = copy_session(recorded["iv"], tmp_path / "s")
    victim = tmp_path / "victim"
    argv = lines_of(session)[0][1]["argv"]
    i = argv.index("--sessions-dir")
    _set_argv(session, [*argv[:i], "--sessions-dir", str(victim), *argv[i + 2:],
                        "--out", str(victim / "out")])
    proc = labctl("replay", session, "--wire", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "matched" in proc.stdout
    assert not victim.exists()
    [replayed] = [p for p in (session / "wire-replay").iterdir() if p.is_dir()]
    assert (replayed / "documents.jsonl").is_file()


def test_records_never_import_the_cli_or_the_commands():
    code = ("import sys, labctl.records.wire_replay, labctl.records.session; "
            "print([m for m in sys.modules if m == 'labctl.cli' "
            "or m.startswith('labctl.commands')])")
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    for source in (ROOT / "labctl" / "records").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("labctl.cli", "labctl.commands")), (source, name)
    from labctl.records.wire_replay import replay_wire

    with pytest.raises(TypeError, match="parser_factory"):
        replay_wire(Path("nowhere"))


# -- 5. run segments ---------------------------------------------------------------------
KEYS = {"i": {"dtype": "integer", "shape": [], "source": "t"},
        "w": {"dtype": "array", "shape": [3], "source": "t", "external": "FILESTORE:"}}


def _runs(session: Path) -> list[list[tuple[str, dict]]]:
    """The session's documents as Bluesky's RunRouter splits them, arrays filled."""
    runs: list[list] = []

    def collect(name, doc):
        if name == "event_page":  # RunRouter hands its callbacks pages
            runs[-1].extend(("event", event) for event in unpack_event_page(doc))
        elif name != "datum_page":
            runs[-1].append((name, doc))

    def factory(name, start):
        runs.append([])
        return [collect], []

    router = RunRouter([factory], handler_registry={"NPY_FILE": NpyFileHandler,
                                                    "NPY_SEQ": NpySeqHandler},
                       fill_or_fail=True)
    for name, doc in read_documents(session):
        router(name, doc)
    return runs


def test_a_session_ended_by_abort_continues_as_a_linked_run_segment(tmp_path):
    with pytest.raises(KeyboardInterrupt), \
            SessionWriter.create(tmp_path, "train iris", ["train", "iris"], {"lr": 1.0},
                                 {"numpy": 1}) as w:
        d = w.descriptor("epoch", KEYS)
        for i in range(3):
            w.event(d, {"i": i, "w": np.full(3, float(i))})
        raise KeyboardInterrupt("SIGTERM")
    path = w.path
    assert Session(path).stop["exit_status"] == "abort" and Session(path).resumable

    w2 = SessionWriter.reopen(path, argv=["train", "iris", "--resume", str(path)])
    assert w2.segment == 1 and w2.resumed_from == Session(path).start["uid"]
    assert set(w2.stream_uids()) == {"epoch"}
    with pytest.raises(RuntimeError), w2:
        for i in range(3, 5):
            w2.event(w2.stream_uids()["epoch"], {"i": i, "w": np.full(3, i)})
        raise RuntimeError("compliance")
    s = Session(path)
    assert [st["exit_status"] for st in s.stops] == ["abort", "fail"]
    assert s.stop["exit_status"] == "fail" and s.stops[0]["reason"] == "SIGTERM"
    assert len(s.starts) == 2 and s.start["config"] == {"lr": 1.0}
    assert s.starts[1]["labctl_resumes"] == s.starts[0]["uid"]
    assert s.starts[1]["argv"][-2] == "--resume" and s.starts[1]["config"] == {"lr": 1.0}
    assert [e["i"] for e in s.events("epoch")] == [0, 1, 2, 3, 4]
    filled = s.events("epoch", fill=True)
    assert [float(e["w"][0]) for e in filled] == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in (path / "arrays").iterdir()) == sorted(
        [*(f"epoch-w_{i}.npy" for i in range(3)), "epoch-w-s1_0.npy", "epoch-w-s1_1.npy"])
    assert s.stops[1]["num_events"] == {"epoch": 2}

    # Killed during a third segment: reopen continues that segment in place.
    w3 = SessionWriter.reopen(path)
    w3.event(w3.stream_uids()["epoch"], {"i": 5, "w": np.zeros(3)})
    w3._file.close()  # as if killed: no stop
    s = Session(path)
    assert s.stop is None and s.resumable and len(s.starts) == 3
    w4 = SessionWriter.reopen(path)
    assert w4.segment == 2 and w4.stream_uids() == w3.stream_uids()
    w4.event(w4.stream_uids()["epoch"], {"i": 6, "w": np.ones(3)})
    w4.stop("success", summary={"accuracy": 0.9})
    s = Session(path)
    assert s.stop["exit_status"] == "success" and not s.resumable
    assert [e["i"] for e in s.events("epoch")] == list(range(7))
    assert {p.name for p in (path / "arrays").iterdir()} >= {"epoch-w-s2_0.npy",
                                                             "epoch-w-s2_1.npy"}
    assert s.stops[-1]["num_events"] == {"epoch": 2}
    [summary] = list_sessions(tmp_path)
    assert summary.status == "success" and summary.headline == "accuracy=0.900"
    assert summary.n_events == 7

    # Valid Bluesky: each document against its schema, and RunRouter sees three whole runs.
    validate_event_model(path)
    runs = _runs(path)
    assert [[n for n, _ in run if n in ("start", "stop")] for run in runs] == \
        [["start", "stop"]] * 3
    for run in runs:
        start_uid = run[0][1]["uid"]
        descriptors = {d["uid"] for n, d in run if n == "descriptor"}
        assert all(d["run_start"] == start_uid for n, d in run if n in ("descriptor", "stop"))
        assert all(d["descriptor"] in descriptors for n, d in run if n == "event")
    filled_by_router = [e["data"]["w"] for run in runs for n, e in run if n == "event"]
    assert [type(w) for w in filled_by_router] == [np.ndarray] * 7  # through NpySeqHandler
    assert [float(w[0]) for w in filled_by_router] == [0, 1, 2, 3, 4, 0, 1]


def test_a_real_training_session_reopened_after_abort(recorded, tmp_path):
    session = copy_session(recorded["train"], tmp_path / "s")
    docs = lines_of(session)
    docs[-1][1].update(exit_status="abort", reason="SIGTERM")
    write_lines(session, docs)
    writer = SessionWriter.reopen(session)
    assert set(writer.stream_uids()) == {"differential_check", "epoch", "fold"}
    writer.stop("fail", reason="RuntimeError: test")
    s = Session(session)
    assert [x["exit_status"] for x in s.stops] == ["abort", "fail"]
    run = RecordedRun(s)
    assert len(run.epochs) == 4 and sorted(run.folds) == [0, 1]
    assert replay_training(s)["metrics_identical"]
    proc = labctl("sessions", "list", "--sessions-dir", session.parent, cwd=tmp_path)
    assert proc.returncode == 0 and "fail" in proc.stdout, proc.stdout + proc.stderr
    err = refused(labctl("replay", session, "--wire", cwd=tmp_path))
    assert "resumed" in err, err
    validate_event_model(session)


def test_run_segments_must_be_linked_and_follow_a_stop(recorded, tmp_path):
    session = copy_session(recorded["train"], tmp_path / "s")
    original = lines_of(session)
    second = copy.deepcopy(original[0])
    second[1].update(uid="another", labctl_resumes=original[0][1]["uid"])
    write_lines(session, original[:-1] + [second] + original[-1:])  # before the stop
    with pytest.raises(RecordError, match=rf"line {len(original)}: start document: a start "
                                          "document before the stop"):
        Session(session)
    second[1]["labctl_resumes"] = "somebody-else"
    write_lines(session, original + [second])
    with pytest.raises(RecordError, match="labctl_resumes"):
        Session(session)
    del second[1]["labctl_resumes"]
    write_lines(session, original + [second])
    with pytest.raises(RecordError, match="key 'labctl_resumes' missing"):
        Session(session)
    # Events of the new run must use the new run's descriptors, not the old ones.
    second[1]["labctl_resumes"] = original[0][1]["uid"]
    old_event = next(d for d in original if d[0] == "event")
    write_lines(session, original + [second, old_event])
    with pytest.raises(RecordError, match="names no descriptor of this run"):
        Session(session)
