"""`labctl view`'s JSON endpoints over a real loopback socket (urllib): documents after an
offset, a document appended while serving, a line being written not served half, both JSONL
layouts, NaN as null, and errors that name the file and line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from labctl.records.session import DOCUMENTS, SessionWriter, data_key
from labctl.view.server import ViewServer


@pytest.fixture
def server(tmp_path):
    srv = ViewServer(tmp_path / "sessions")
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def get(server: ViewServer, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(server.url + path.lstrip("/"), timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def new_session(root: Path) -> SessionWriter:
    writer = SessionWriter.create(root, "iv", ["iv", "--pair", "1"], {"pair": 1}, {})
    return writer


def test_documents_after_an_offset_and_one_appended_while_serving(server):
    writer = new_session(server.root)
    sid = writer.path.name
    with writer:
        uid = writer.stream("iv", {"current_a": data_key("smu_a", units="A"),
                                   "v_a": data_key("smu_a", units="V")}, primary=True)
        writer.event(uid, {"current_a": 1e-6, "v_a": 0.01})
        status, first = get(server, f"/api/docs?s={sid}&offset=0")
        assert status == 200 and first["writing"] is True
        assert [name for name, _ in first["docs"]] == ["start", "descriptor", "event"]
        assert first["next_offset"] == (writer.path / DOCUMENTS).stat().st_size
        # Nothing new: the same offset again, no documents.
        status, same = get(server, f"/api/docs?s={sid}&offset={first['next_offset']}")
        assert same["docs"] == [] and same["next_offset"] == first["next_offset"]
        writer.event(uid, {"current_a": 2e-6, "v_a": float("nan")})  # appended while serving
        status, more = get(server, f"/api/docs?s={sid}&offset={first['next_offset']}")
        assert [name for name, _ in more["docs"]] == ["event"]
        assert more["docs"][0][1]["data"] == {"current_a": 2e-6, "v_a": None}  # NaN -> null
    status, end = get(server, f"/api/docs?s={sid}&offset={more['next_offset']}")
    assert [name for name, _ in end["docs"]] == ["stop"] and end["writing"] is False
    assert end["docs"][0][1]["exit_status"] == "success"


def test_a_line_being_written_is_not_served_half(server):
    writer = new_session(server.root)
    sid, file = writer.path.name, writer.path / DOCUMENTS
    with writer:
        uid = writer.stream("iv", {"v_a": data_key("smu_a", units="V")}, primary=True)
        writer.event(uid, {"v_a": 0.5})
        size = file.stat().st_size
        whole = file.read_bytes().splitlines(keepends=True)[-1]  # the event line
        with open(file, "ab") as f:  # a second writer's half line: the torn tail of a write
            f.write(whole[:20])
        status, chunk = get(server, f"/api/docs?s={sid}&offset=0")
        assert status == 200 and chunk["next_offset"] == size and chunk["pending"] == 20
        assert [name for name, _ in chunk["docs"]] == ["start", "descriptor", "event"]
        status, again = get(server, f"/api/docs?s={sid}&offset={size}")
        assert again["docs"] == [] and again["next_offset"] == size
        with open(file, "ab") as f:
            f.write(whole[20:])
        status, done = get(server, f"/api/docs?s={sid}&offset={size}")
        assert len(done["docs"]) == 1 and done["docs"][0][1]["data"] == {"v_a": 0.5}


def test_both_jsonl_layouts_and_chunks(server):
    writer = new_session(server.root)
    with writer:
        uid = writer.stream("iv", {"v_a": data_key("smu_a", units="V")}, primary=True)
        for k in range(50):
            writer.event(uid, {"v_a": k / 10})
    file = writer.path / DOCUMENTS
    # Rewrite it in the {"name": ..., "doc": ...} layout other Bluesky tools write.
    other = server.root / "other-layout"
    other.mkdir()
    lines = [json.loads(line) for line in file.read_text().splitlines()]
    (other / DOCUMENTS).write_text("".join(json.dumps({"name": n, "doc": d}) + "\n"
                                           for n, d in lines))
    server.reader.chunk_bytes = 500  # several reads: the page asks again while "more"
    for sid in (writer.path.name, "other-layout"):
        docs, offset, reads = [], 0, 0
        while True:
            status, chunk = get(server, f"/api/docs?s={sid}&offset={offset}")
            assert status == 200
            docs += chunk["docs"]
            offset, reads = chunk["next_offset"], reads + 1
            if not chunk["more"]:
                break
        assert reads > 3
        assert docs == [list(item) for item in lines]


def test_errors_name_the_file_and_the_line(server):
    writer = new_session(server.root)
    with writer:
        uid = writer.stream("iv", {"v_a": data_key("smu_a", units="V")}, primary=True)
        writer.event(uid, {"v_a": 0.5})
    sid, file = writer.path.name, writer.path / DOCUMENTS
    status, reply = get(server, f"/api/docs?s={sid}&offset=7")
    assert status == 422 and f"{file}: offset 7 does not start a line" in reply["error"]
    status, reply = get(server, f"/api/docs?s={sid}&offset=99999999")
    assert status == 422 and "outside the file" in reply["error"]
    status, reply = get(server, f"/api/docs?s={sid}&offset=x")
    assert status == 422 and "'offset'" in reply["error"]
    status, reply = get(server, "/api/docs?s=../../etc&offset=0")
    assert status == 404 and "no session" in reply["error"]
    status, reply = get(server, f"/api/neurons?s={sid}")
    assert status == 422 and "not an Iris training session" in reply["error"]
    lines = file.read_bytes().splitlines(keepends=True)
    file.write_bytes(b"".join(lines[:2]) + b"{not json\n" + b"".join(lines[2:]))
    status, reply = get(server, f"/api/docs?s={sid}&offset=0")
    assert status == 422 and f"{file}, line 3: invalid document" in reply["error"]
    status, reply = get(server, "/static/../server.py")
    assert status == 404


def test_the_index_lists_sessions_and_pages_are_served(server):
    writer = new_session(server.root)
    with writer:
        pass
    status, reply = get(server, "/api/sessions")
    assert status == 200
    assert [(s["id"], s["status"]) for s in reply["sessions"]] == [(writer.path.name, "success")]
    for page, marker in (("/", b"/static/index.js"), (f"/view?s={writer.path.name}",
                                                       b"/static/view.js")):
        with urllib.request.urlopen(server.url + page.lstrip("/"), timeout=10) as r:
            assert marker in r.read()
    # Nothing from a CDN: no page or script loads or fetches anything but this server's.
    for name in ("index.html", "view.html", "view.js", "plot.js", "index.js", "view.css"):
        with urllib.request.urlopen(server.url + "static/" + name, timeout=10) as r:
            body = r.read()
        assert not re.search(rb"(src|href)\s*=\s*[\"']?(https?:)?//|@import|url\((?!#)", body), name
        assert all(arg in (b'"/', b"`/") for arg in re.findall(rb"fetch\((..)", body)), name


def test_the_command_refuses_what_is_no_session(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / DOCUMENTS).write_text('["start", {"uid": "x"}]\n')
    for ref, message in (("nope", "no session there, nor an id of one in"),
                         (str(tmp_path / "empty"), "line 1: not a labctl session")):
        done = subprocess.run([sys.executable, "-m", "labctl.cli", "view", ref,
                               "--sessions-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert done.stdout == ""


def test_neurons_of_a_training_on_chosen_pairs_are_those_pairs_and_their_truth(
        server, capsys):
    """``train iris --pairs 5,7``: the view names pairs 5 and 7 and draws their truth (the
    oracle of the recorded station), not pairs 1 and 2's; the plots' exact dV/dI is the same
    truth."""
    import numpy as np

    from labctl.cli import main
    from labctl.plots.session import recorded_derivatives
    from labctl.records.session import Session
    from labctl.station.file import load_station
    from labctl.station.oracle import Oracle
    from labctl.training.iris_record import RecordedRun

    assert main(["train", "iris", "--pairs", "5,7", "--hidden", "2", "--folds", "2",
                 "--epochs", "1", "--json", "--no-progress", "--sessions-dir",
                 str(server.root)]) == 0
    sid = json.loads(capsys.readouterr().out)["session"]
    status, reply = get(server, f"/api/neurons?s={sid}")
    assert status == 200, reply
    [layer] = reply["layers"]
    assert [n["pair"] for n in layer] == [5, 7]
    config = load_station(None)
    oracle = Oracle.from_settings(config.simulation, config.wiring)
    grid = np.array([n["truth_i_a"] for n in layer]).T  # (points, neurons)
    np.testing.assert_allclose(np.array([n["truth_dvdi_ohm"] for n in layer]).T,
                               oracle.dvdi([5, 7], grid), rtol=1e-9)
    session = Session(server.root / sid)
    [plotted] = recorded_derivatives(session, RecordedRun(session))
    np.testing.assert_allclose(
        plotted.exact_ohm,
        oracle.dvdi([5, 7], plotted.exact_currents_a[:, None] * np.ones((1, 2))), rtol=1e-9)
