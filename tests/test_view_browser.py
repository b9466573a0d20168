"""`labctl view` in a real headless browser (Debian's chromium): the page of a RUNNING
`labctl train iris` (a real subprocess on the built-in simulated station) shows the epoch
count advancing and its curves drawn; once the run has ended (Ctrl-C after its first fold,
as a user ends a long run, or on its own) a reload from a restarted view shows the ended
session the same way, as its record on disk holds it (the page reads only from disk).

Checked through the DOM chromium dumps once the page's script has run (``--dump-dom`` with a
virtual time budget: the page's polls and fetches run before the dump)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from labctl.records.session import DOCUMENTS, RecordError, Session, SessionWriter, data_key

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser",
                                                        "google-chrome")) if p), None)
# Small, and slowed a little in instrument time (sleeping, not CPU) so that the run outlasts
# the two page loads that see it running on a fast machine too.
FOLDS, EPOCHS, HIDDEN, TIME_SCALE = 3, 5, 3, "0.01"


def need_chromium() -> str:
    if CHROMIUM is None:
        message = ("chromium not found: the view's browser test needs it "
                   "(apt-get update && apt-get install -y chromium)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


class Elements(HTMLParser):
    """Every element's tag and attributes, in document order; an element inside a chart
    also gets ``chart``: the chart's data-role."""

    def __init__(self, html: str):
        super().__init__()
        self.items: list[tuple[str, dict]] = []
        self.chart: str | None = None
        self.text = ""
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg":
            self.chart = attrs.get("data-role")
        elif self.chart:
            attrs["chart"] = self.chart
        self.items.append((tag, attrs))

    def handle_data(self, data):
        self.text += data

    def handle_endtag(self, tag):
        if tag == "svg":
            self.chart = None

    def find(self, **attrs) -> list[dict]:
        return [a for _, a in self.items if all(a.get(k) == v for k, v in attrs.items())]


def dump_dom(url: str, profile: Path, budget_ms: int = 2500) -> Elements:
    done = subprocess.run(
        [need_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
    return Elements(done.stdout)


def start_view(args: list[str], env: dict) -> tuple[subprocess.Popen, str]:
    view = subprocess.Popen([sys.executable, "-m", "labctl.cli", "view", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = view.stdout.readline()
    match = re.fullmatch(r"labctl view: (http://127\.0\.0\.1:(\d+)/\S*)\n", line)
    assert match, (line, view.stderr.read() if view.poll() is not None else "")
    return view, match.group(1)


def stop_view(view: subprocess.Popen) -> None:
    view.send_signal(signal.SIGTERM)
    assert view.wait(10) == 0, view.stderr.read()


def record_iv(root: Path) -> Path:
    """A finished five-point I-V session whose last point hit compliance (a real record)."""
    keys = {k: data_key("smu_a", units=u) for k, u in (("current_a", "A"), ("v_a", "V"),
                                                       ("v_b", "V"))}
    keys["compliance"] = data_key("smu_a", "boolean")
    with SessionWriter.create(root, "iv", ["iv", "--pair", "1"], {"pair": 1}, {}) as w:
        uid = w.stream("iv", keys, primary=True)
        for k in range(5):
            w.event(uid, {"current_a": k * 1e-5, "v_a": k * 0.1, "v_b": k * 0.11,
                          "compliance": k == 4})
    return w.path


def training_state(dom: Elements) -> tuple[str, int, list[int]]:
    """(status, epochs the page counts, points of each fold's validation curve)."""
    status = dom.find(**{"data-role": "status"})[0]  # the first column's
    (count,) = dom.find(**{"data-role": "epoch-count"})
    curves = [a for a in dom.find(**{"class": "series", "chart": "accuracy-plot"})
              if re.fullmatch(r"fold \d+", a.get("data-label", ""))]  # validation, per fold
    points = [int(a["data-points"]) for a in curves]
    for a in curves:
        assert re.fullmatch(r"M[\d. ]+(L[\d. ]+)*", a["d"]), a["d"]
    return status["data-status"], int(count["data-epochs"]), points


def test_view_follows_a_running_training_and_shows_it_finished(tmp_path):
    need_chromium()
    sessions = tmp_path / "sessions"
    env = {**os.environ, "LABCTL_SESSIONS": str(sessions), "PYTHONUNBUFFERED": "1"}
    train = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "train", "iris", "--folds", str(FOLDS),
         "--epochs", str(EPOCHS), "--hidden", str(HIDDEN), "--time-scale", TIME_SCALE,
         "--seed", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    view = None
    try:
        deadline = time.monotonic() + 60
        session = None
        while time.monotonic() < deadline and train.poll() is None:
            found = list(sessions.glob(f"*/{DOCUMENTS}")) if sessions.exists() else []
            try:
                record = Session(found[0].parent) if found else None
            except RecordError:  # created, its start document not written yet
                record = None
            if record is not None and "epoch" in record.descriptors:  # with its first epoch
                session = record.path
                break
            time.sleep(0.1)
        assert session is not None, "no epoch recorded: " + train.stderr.read()[-2000:]
        view, url = start_view([session.name, "--sessions-dir", str(sessions)], env)
        assert url.endswith(f"/view?s={session.name}")

        status1, epochs1, points1 = training_state(dump_dom(url, tmp_path / "chrome"))
        status2, epochs2, points2 = training_state(dump_dom(url, tmp_path / "chrome"))  # reload
        assert status1 == "running", "the run ended before the page saw it running"
        assert 1 <= epochs1 < epochs2 <= FOLDS * EPOCHS
        assert sum(points1) == epochs1 and sum(points2) == epochs2  # the curves are drawn

        # Ended as a user ends a long run (Ctrl-C) once fold 1 is done, so that the test
        # does not wait for every fold; a run that finished already is shown as finished.
        while train.poll() is None and not Session(session).events("fold"):
            assert time.monotonic() < deadline, "fold 1 never ended"
            time.sleep(0.1)
        if train.poll() is None:
            train.send_signal(signal.SIGINT)
        code = train.wait(60)
        assert code in (0, 130), train.stderr.read()[-2000:]
        recorded = Session(session)
        expected = "success" if code == 0 else "aborted"
        assert recorded.stop["exit_status"] == {"success": "success", "aborted": "abort"}[expected]
        epochs = recorded.events("epoch")
        per_fold = [sum(e["fold"] == f for e in epochs) for f in range(FOLDS)]

        # A restart of the view (same port) and a reload: the same page, now ended, beside
        # a second session (an I-V sweep with a compliance hit) in its own column.
        iv = record_iv(sessions)
        port = re.search(r":(\d+)/", url).group(1)
        stop_view(view)
        view, url2 = start_view([str(session), iv.name, "--port", port, "--sessions-dir",
                                 str(sessions)], env)
        assert url2 == f"{url}&s={iv.name}"
        dom = dump_dom(url2, tmp_path / "chrome", budget_ms=3000)
        assert [a["data-session"] for a in dom.find(**{"class": "session"})] == [
            session.name, iv.name]
        (iv_points,) = dom.find(**{"class": "series", "chart": "iv-plot", "data-label": "device B"})
        assert iv_points["data-points"] == "5"
        assert dom.find(**{"data-kind": "compliance", "class": "bad"})
        status3, epochs3, points3 = training_state(dom)
        assert (status3, epochs3, points3) == (expected, len(epochs),
                                               [n for n in per_fold if n])
        if sum(n > 0 for n in per_fold) > 1:
            assert dom.find(**{"data-label": "mean validation", "chart": "accuracy-plot"})
        assert dom.find(**{"class": "ref", "chart": "accuracy-plot"}), "no tanh baseline drawn"
        # The latest epoch's neurons beside the simulator's truth: dots and truth curves.
        for chart in ("activation-plot", "derivative-plot"):
            dots = [int(a["data-points"]) for a in dom.find(**{"class": "dots", "chart": chart})]
            truth = dom.find(**{"class": "series", "chart": chart})
            assert len(dots) == HIDDEN and min(dots) > 0 and len(truth) == HIDDEN, chart
        last = epochs[-1]
        assert f"fold {last['fold'] + 1}, epoch {last['epoch'] + 1}: dots measured" in dom.text
        assert "simulator truth" in dom.text
        # What those plots draw: the simulator's truth agrees with what was measured.
        with urllib.request.urlopen(url2.replace("/view?", "/api/neurons?"), timeout=30) as r:
            model = json.loads(r.read())  # the first session's: s= is the first parameter
        assert (model["truth"], model["fold"], model["epoch"]) == ("simulator", last["fold"],
                                                                    last["epoch"])
        for n in model["layers"][0]:
            truth_v = np.interp(n["i_a"], n["truth_i_a"], n["truth_v_v"])
            assert np.median(np.abs(truth_v - n["v_v"])) < 5e-3  # V
            assert 0 < n["dvdi_err_median"] < 0.2  # fd-swap against the exact dV/dI
        shutdown = [a for a in dom.find(**{"data-kind": "shutdown"}) if a.get("class") == "ok"]
        assert shutdown, "the confirmed shutdown is not shown"
        if expected == "aborted":
            assert dom.find(**{"data-kind": "refusal", "class": "bad"})  # aborted: why
    finally:
        for proc in (train, view):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
