"""Recorded sessions of every command kind, fed to the Bluesky tools a user already has.

Each session is recorded by a real ``labctl`` child process on the built-in simulated
station, then read by, as they are installed from the registry: event-model's schemas;
databroker's temporary catalog (``run.primary.read()`` as xarray, arrays filled through the
handlers labctl registers as entry points); bluesky's ``LiveTable`` and
``BestEffortCallback`` (headless); and bluesky's ``TiledWriter`` into a temporary Tiled
server, read back through the Tiled client. Values read back must equal the recorded ones.
"""

from __future__ import annotations

import contextlib
import io
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
COMMANDS = {
    "train": ["train", "iris", "--folds", "2", "--epochs", "2", "--no-progress"],
    "iv": ["iv", "--pair", "2", "--points", "21"],
    "fd-scan": ["fd-scan", "--pair", "1"],
    "tune": ["tune", "--pair", "1", "--i-off=30e-6"],
    "station-check": ["station", "check"],
}


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> dict[str, Path]:
    """One session per command kind, recorded side by side by child processes."""
    root = tmp_path_factory.mktemp("bluesky")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    out = {}
    for kind, argv in COMMANDS.items():
        store = root / kind
        proc = subprocess.run([sys.executable, "-m", "labctl.cli", *argv, "--sessions-dir",
                               str(store)], cwd=root, env=env, capture_output=True, text=True,
                              timeout=180)
        # tune may end "fail" (target not reached): still a whole session to read
        assert proc.returncode in (0, 1), (kind, proc.stdout, proc.stderr)
        [out[kind]] = [p for p in store.iterdir() if p.is_dir()]
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
                    for key in rows[0]:
                        want = np.array([r[key] for r in rows])
                        got = np.asarray(node[key].read())
                        assert got.shape == want.shape, (kind, stream, key)
                        assert (got == want).all(), (kind, stream, key)
