"""Recorded sessions of every command kind, fed to the Bluesky tools a user already has.

The sessions are recorded by one real ``labctl`` child process on the built-in simulated
station, which runs each command through ``labctl.cli.main`` with its own ``sys.argv``: one
interpreter start instead of five, and the documents are those the CLI writes. Each
command is kept as small as it can be while its session still carries every stream and
document kind it has (train: resource and datum documents, the epoch, fold and
differential_check streams; fd-scan: calibration arrays; tune: the verify_iv stream). They
are then read by, as they are installed from the registry: event-model's schemas;
databroker's temporary catalog (``run.primary.read()`` as xarray, arrays filled through the
handlers labctl registers as entry points); bluesky's ``LiveTable`` and
``BestEffortCallback`` (headless); and bluesky's ``TiledWriter`` into a temporary Tiled
server, read back key by key through the Tiled client. Values read back must equal the
recorded ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from event_model import DocumentNames, schema_validators

from labctl.records.session import PRIMARY, Session, read_documents

ROOT = Path(__file__).resolve().parents[1]
# Sizes: the fewest points, steps and epochs that still give each stream more than one
# event where it had more than one (so shapes along time are checked), and tune a
# verification sweep long enough to end in "success" as the default does (21 points
# does not on the built-in station).
COMMANDS = {
    "train": ["train", "iris", "--folds", "2", "--epochs", "1", "--no-progress"],
    "iv": ["iv", "--pair", "2", "--points", "5"],
    "fd-scan": ["fd-scan", "--pair", "1", "--steps", "0.5e-6,1e-6", "--points", "5",
                "--fine-points", "41"],
    "tune": ["tune", "--pair", "1", "--i-off=30e-6", "--verify-points", "61"],
    "station-check": ["station", "check"],
}
# The child: runs each command of the plan (JSON, kind -> argv) as the CLI would, sys.argv
# included (a session records it), and writes every exit status to a JSON file.
RECORDER = """
import json, sys
from labctl.cli import main
plan, out = json.loads(sys.argv[1]), sys.argv[2]
status = {}
for kind, argv in plan.items():
    sys.argv = ["labctl", *argv]
    status[kind] = main(argv)
with open(out, "w") as f:
    json.dump(status, f)
"""


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> dict[str, Path]:
    """One session per command kind, each in its own sessions directory."""
    root = tmp_path_factory.mktemp("bluesky")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    plan = {kind: [*argv, "--sessions-dir", str(root / kind)]
            for kind, argv in COMMANDS.items()}
    status_file = root / "status.json"
    proc = subprocess.run([sys.executable, "-c", RECORDER, json.dumps(plan), str(status_file)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    status = json.loads(status_file.read_text())
    out = {}
    for kind in COMMANDS:
        # tune may end "fail" (target not reached): still a whole session to read
        assert status[kind] in (0, 1), (kind, status, proc.stdout, proc.stderr)
        [out[kind]] = [p for p in (root / kind).iterdir() if p.is_dir()]
    return out


def recorded(session: Path, stream: str) -> list[dict]:
    return Session(session).events(stream, fill=True)


def primary_name(session: Path) -> str:
    s = Session(session)
    return next(name for name, d in s.descriptors.items() if d["name"] == PRIMARY)


def test_every_document_passes_event_models_schemas(sessions):
    for kind, session in sessions.items():
        docs = list(read_documents(session))
        for name, doc in docs:
            schema_validators[DocumentNames[name]].validate(doc)
        if kind == "train":  # the only kind with external arrays: keep the handlers read
            assert {"resource", "datum"} <= {name for name, _ in docs}
        start = docs[0][1]
        assert isinstance(start["scan_id"], int) and start["plan_type"] == "generator", kind
        assert start["hints"]["dimensions"][0][1] == PRIMARY, kind
        for name, doc in docs:
            if name == "descriptor":
                assert set(doc["object_keys"]) == set(doc["configuration"]), kind
                assert all(None not in spec["shape"] for spec in doc["data_keys"].values())


def test_databroker_reads_the_primary_stream_as_xarray_with_arrays_filled(sessions):
    import databroker

    catalog = databroker.temp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for kind, session in sessions.items():
            for name, doc in read_documents(session):
                catalog.v1.insert(name, doc)
            run = catalog.v2[Session(session).start["uid"]]
            data = run.primary.read()
            rows = recorded(session, primary_name(session))
            for key in rows[0]:
                want = np.array([r[key] for r in rows])
                got = data[key].values
                assert got.shape == want.shape, (kind, key, got.shape, want.shape)
                assert (got == want).all(), (kind, key)


def test_bluesky_live_table_and_best_effort_callback_take_every_session(sessions):
    from bluesky.callbacks import LiveTable
    from bluesky.callbacks.best_effort import BestEffortCallback

    for kind, session in sessions.items():
        docs = list(read_documents(session))
        dimension = docs[0][1]["hints"]["dimensions"][0][0][0]
        bec = BestEffortCallback()
        bec.disable_plots()
        table = LiveTable([dimension])
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            for name, doc in docs:
                bec(name, doc)
                table(name, doc)
        text = printed.getvalue()
        assert f"Scan ID: {docs[0][1]['scan_id']}" in text, (kind, text[:500])
        assert dimension in text, kind


def test_tiled_writer_writes_every_session_into_a_tiled_server(sessions, tmp_path):
    from bluesky.callbacks.tiled_writer import TiledWriter
    from tiled.client import from_uri
    from tiled.server import SimpleTiledServer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with SimpleTiledServer(directory=tmp_path / "tiled",
                               readable_storage=[str(p.parent) for p in sessions.values()]
                               ) as server:
            client = from_uri(server.uri)
            writer = TiledWriter(client)
            for kind, session in sessions.items():
                for name, doc in read_documents(session):
                    writer(name, doc)
                s = Session(session)
                run = client[s.start["uid"]]
                for stream, descriptor in s.descriptors.items():
                    node = run[descriptor["name"]]
                    rows = recorded(session, stream)
                    # Scalars in one request for the stream's table; arrays key by key (a
                    # table reads them back as text).
                    table = node.read()
                    for key in rows[0]:
                        want = np.array([r[key] for r in rows])
                        scalar = descriptor["data_keys"][key]["dtype"] != "array"
                        got = np.asarray(table[key] if scalar else node[key].read())
                        assert got.shape == want.shape, (kind, stream, key)
                        assert (got == want).all(), (kind, stream, key)
