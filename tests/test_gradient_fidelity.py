"""Gradient fidelity per epoch: cosine ~1 for exact derivatives, lower for shuffled ones;
the probe only reads (training is bit for bit the same with it); the figures are recorded
in the epoch stream, sessions without them still read, and ``labctl report`` plots them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labctl.commands.replay import replay_training
from labctl.commands.train_iris import LiveSource
from labctl.records.session import RecordError, Session
from labctl.training.fidelity import FIDELITY_KEYS, cosine, relative_errors
from labctl.training.iris import IrisSettings, summarise, train_folds
from labctl.training.iris_record import NullSink, RecordedRun, flatten

LIMIT_A = 100e-6


def test_cosine_and_relative_errors():
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == 1.0
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == 0.0
    assert np.isnan(cosine(np.zeros(2), np.ones(2)))
    err = relative_errors(np.array([[110.0, 90.0, 5.0]]), np.array([[100.0, 100.0, 0.0]]))
    np.testing.assert_allclose(err, [0.1, 0.1])  # exact 0 is left out


def _settings(grad: str, **changes) -> IrisSettings:
    s = IrisSettings(**({"backend": "model", "task": "rings", "folds": 2, "epochs": 8,
                         "grad": grad, "seed": 4} | changes))
    s.validate(LIMIT_A, None)
    return s


def _run(s: IrisSettings, source=None):
    return train_folds(s, LIMIT_A, source or LiveSource(s), NullSink())


def test_exact_derivatives_give_cosine_one_and_shuffled_ones_do_not():
    figures = {g: summarise(_run(_settings(g))) for g in ("exact", "fd-swap", "shuffled")}
    exact, swap, shuffled = figures["exact"], figures["fd-swap"], figures["shuffled"]
    # exact: the model's tabulated dV/dI against its solved one (table error < 0.05 Ohm).
    assert exact["grad_cosine"] > 0.99999 and exact["dvdi_err_p90"] < 1e-3, exact
    assert swap["grad_cosine"] > 0.95 and 0.005 < swap["dvdi_err_median"] < 0.1, swap
    assert shuffled["grad_cosine"] < 0.8 and shuffled["grad_cosine"] < swap["grad_cosine"]
    assert shuffled["dvdi_err_median"] > 2 * swap["dvdi_err_median"], (shuffled, swap)
    for r in _run(_settings("exact", epochs=3)):
        assert len(r.fidelity["grad_cosine"]) == r.epochs == 3


class _NoOracle:
    """The live source without exact derivatives: the trainer makes no fidelity probe."""

    def __init__(self, live: LiveSource):
        self.live = live

    def layers(self, fold):
        return self.live.layers(fold)

    def before_epoch(self, fold, epoch):
        self.live.before_epoch(fold, epoch)


def test_the_probe_only_reads_training_is_bit_for_bit_the_same():
    s = _settings("fd", task="xor", epochs=6, seed=2)
    plain = _run(s, _NoOracle(LiveSource(s)))
    probed = _run(s)
    assert all(np.isnan(plain[0].fidelity["grad_cosine"]))
    assert np.isfinite(probed[0].fidelity["grad_cosine"]).all()
    for a, b in zip(plain, probed, strict=True):
        assert a.history["train_loss"] == b.history["train_loss"]
        assert a.history["val_acc"] == b.history["val_acc"]
        np.testing.assert_array_equal(flatten(a.weights), flatten(b.weights))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A short recorded model-backend run (fd, rings), in-process through the command."""
    from labctl.cli import main

    tmp = tmp_path_factory.mktemp("fidelity")
    argv = ["train", "iris", "--backend", "model", "--task", "rings", "--grad", "fd",
            "--epochs", "4", "--folds", "2", "--json", "--no-progress", "--sessions-dir",
            str(tmp / "s")]
    assert main(argv) == 0
    [path] = (tmp / "s").iterdir()
    return path


def test_the_epoch_stream_records_the_fidelity_and_report_plots_it(recorded, capsys):
    from labctl.cli import main

    capsys.readouterr()
    run = RecordedRun(Session.open(recorded))
    rows = [run.epochs[(f, e)] for f in range(2) for e in range(4)]
    for row in rows:
        assert 0.0 < row["grad_cosine"] < 0.9  # plain fd: the in-pair offset over dI
        assert row["dvdi_err_p90"] > row["dvdi_err_median"] > 0.1
    desc = Session.open(recorded).descriptors["epoch"]["data_keys"]
    assert all(desc[k]["dtype"] == "number" for k in FIDELITY_KEYS)
    assert main(["report", str(recorded)]) == 0
    made = capsys.readouterr().out.split()
    png = recorded / "report" / "fidelity.png"
    assert str(png) in made
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def _rewrite(src, dst, edit):
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("report", "replay"))
    lines = []
    for line in (dst / "documents.jsonl").read_text().splitlines():
        name, doc = json.loads(line)
        lines.append(json.dumps([name, edit(name, doc)]))
    (dst / "documents.jsonl").write_text("\n".join(lines) + "\n")
    return dst


def test_a_session_recorded_before_the_fidelity_still_reads_replays_and_reports(
        recorded, tmp_path, capsys):
    from labctl.cli import main

    def strip(name, doc):
        if name == "descriptor" and doc.get("labctl_stream") == "epoch":
            for k in FIDELITY_KEYS:
                del doc["data_keys"][k]
        if name == "event" and "grad_cosine" in doc["data"]:
            for k in FIDELITY_KEYS:
                del doc["data"][k], doc["timestamps"][k]
        return doc

    old = _rewrite(recorded, tmp_path / "old", strip)
    run = RecordedRun(Session.open(old))
    assert len(run.epochs) == 8
    assert all(np.isnan(v) for v in run.fidelity(0)["grad_cosine"])
    r = replay_training(Session.open(old))
    assert r["metrics_identical"] and r["final_weights_identical"], r
    capsys.readouterr()
    assert main(["report", str(old)]) == 0
    made = capsys.readouterr().out.split()
    assert made and not any(p.endswith("fidelity.png") for p in made)


def test_a_fidelity_key_of_another_type_is_refused_naming_it(recorded, tmp_path):
    def retype(name, doc):
        if name == "descriptor" and doc.get("labctl_stream") == "epoch":
            doc["data_keys"]["grad_cosine"]["dtype"] = "string"
        if name == "event" and "grad_cosine" in doc["data"]:
            doc["data"]["grad_cosine"] = "high"
        return doc

    bad = _rewrite(recorded, tmp_path / "bad", retype)
    with pytest.raises(RecordError, match="grad_cosine"):
        RecordedRun(Session.open(bad))
