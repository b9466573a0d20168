"""One plot per question, the same everywhere (issue #16).

Small real sessions of every plot kind are made once, by the commands on the built-in
simulated station (and one training on a bench served by ``labctl sim serve``, which the
client cannot tell from hardware: no oracle). Then:

- the command's PNG, ``labctl report``'s and ``labctl replay``'s are the same bytes;
- what each figure plots is what the session recorded (read back independently of
  labctl.plots): both devices and V_B - V_A, the error per mode and the recommended dI,
  every fold, their mean and the tanh baseline, every hidden layer's derivatives against
  the oracle (``exact`` lies on it and is not called measured), the tuning iterations;
- every figure names the run in its title, has units on its axes and no legend over a
  plot area; a session without an oracle still gets its derivative plot.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import labctl.plots.derivatives
import labctl.plots.fd_scan
import labctl.plots.fidelity
import labctl.plots.iv
import labctl.plots.training
import labctl.plots.tune
from labctl.bench.storm import served
from labctl.cli import main
from labctl.records.session import Session
from labctl.station.file import BUILTIN_TEXT

KIND_MODULES = (labctl.plots.iv, labctl.plots.fd_scan, labctl.plots.training,
                labctl.plots.derivatives, labctl.plots.tune, labctl.plots.fidelity)
SMALL_TRAIN = ["--epochs", "2", "--folds", "2", "--hidden", "2", "--layers", "2",
               "--no-progress"]


def _only_new(root: Path, before: set[Path]) -> list[Path]:
    """In the order they were started: names made in one second differ by a random
    suffix, so their order says nothing."""
    return sorted(set(root.iterdir()) - before, key=lambda p: Session(p).start["time"])


def _run(root: Path, *argv: str, codes=(0,)) -> list[Path]:
    """Run a labctl command in-process; the session directories it made."""
    before = set(root.iterdir()) if root.exists() else set()
    code = main([*argv, "--sessions-dir", str(root)])
    assert code in codes, (argv, code)
    return _only_new(root, before)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> dict[str, Path]:
    """One small session of every kind (about 15 s together)."""
    root = tmp_path_factory.mktemp("plots") / "sessions"
    root.mkdir()
    out = {}
    [out["iv"]] = _run(root, "iv", "--pair", "1", "--points", "21")
    [out["fd-scan"]] = _run(root, "fd-scan", "--pair", "1", "--points", "7",
                            "--fine-points", "61", "--steps", "0.5e-6,1e-6,4e-6")
    # Exit 1 is fine (verification may miss by a hair): the plot is made either way.
    [out["tune"]] = _run(root, "tune", "--pair", "2", "--i-off", "60e-6", "--points", "48",
                         "--verify-points", "41", "--max-pulses", "8", codes=(0, 1))
    [out["train"]] = _run(root, "train", "iris", *SMALL_TRAIN)
    out["swap"], out["exact"] = _run(root, "train", "iris", "--backend", "model", "--grad",
                                     "fd-swap,exact", "--epochs", "3", "--folds", "2",
                                     "--hidden", "3", "--layers", "1", "--no-progress")
    out["hardware"] = _hardware_like(root.parent)
    return out


def _hardware_like(tmp: Path) -> Path:
    """A training on the built-in bench served over loopback: real instruments to the
    client, whose station file has no [simulation] (so no oracle)."""
    with served(BUILTIN_TEXT, tmp / "bench") as bench:
        root = tmp / "hardware"
        root.mkdir()
        [session] = _run(root, "train", "iris", "--station", str(bench.station), "--epochs",
                         "1", "--folds", "2", "--hidden", "2", "--layers", "2", "--no-progress")
    assert bench.proc.returncode == 0  # ended cleanly on SIGTERM
    return session


@pytest.fixture(scope="module")
def reports(sessions, tmp_path_factory) -> dict[str, tuple[Path, dict[str, object]]]:
    """``labctl report`` of every session: kind -> (its --out, file name -> Figure)."""
    caught: dict[str, dict[str, object]] = {}
    outs: dict[str, Path] = {}
    real = labctl.plots.figure.save
    with pytest.MonkeyPatch.context() as mp:
        for kind, session in sessions.items():
            def keep(fig, path, kind=kind):
                caught.setdefault(kind, {})[Path(path).name] = fig
                return real(fig, path)

            for module in KIND_MODULES:
                mp.setattr(module, "save", keep)
            outs[kind] = tmp_path_factory.mktemp(f"report-{kind}")
            compare = ["--compare", str(sessions["exact"])] if kind == "swap" else []
            assert main(["report", str(session), "--out", str(outs[kind]), *compare]) == 0
    return {kind: (outs[kind], caught[kind]) for kind in sessions}


@pytest.fixture(scope="module")
def figures(reports) -> dict[str, dict[str, object]]:
    return {kind: figs for kind, (_, figs) in reports.items()}


EXPECTED = {
    "iv": {"iv.png"},
    "fd-scan": {"fd_scan.png"},
    "tune": {"tune.png"},
    "train": {"training.png", "derivative.png", "fidelity.png"},
    "swap": {"training.png", "derivative.png", "fidelity.png", "training-comparison.png"},
    "exact": {"training.png", "derivative.png", "fidelity.png", "training-comparison.png"},
    "hardware": {"training.png", "derivative.png"},
}


def _pngs(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.glob("*.png")}


def test_the_command_report_and_replay_write_the_same_pngs(sessions, reports, tmp_path):
    for kind, session in sessions.items():
        made = _pngs(session)
        assert EXPECTED[kind] <= set(made), (kind, sorted(made))
        reported = _pngs(reports[kind][0])
        for name, data in reported.items():
            assert data == made[name], f"{kind}: report's {name} differs from the command's"
        assert set(made) - set(reported) <= {"training-comparison.png"}, kind
    # replay draws the training curves from its own re-run: equal only if it is faithful
    replay = tmp_path / "replay"
    assert main(["replay", str(sessions["train"]), "--out", str(replay)]) == 0
    assert _pngs(replay) == _pngs(reports["train"][0])
    assert _pngs(sessions["exact"])["training-comparison.png"] == _pngs(
        sessions["swap"])["training-comparison.png"]


def _line(ax, label: str):
    [line] = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return line


def test_iv_shows_both_devices_and_their_difference_in_mv(sessions, figures):
    session = sessions["iv"]
    with open(session / "iv.csv") as f:
        rows = list(csv.DictReader(f))
    i = np.array([float(r["current_a"]) for r in rows])
    v_a = np.array([float(r["v_a_v"]) for r in rows])
    v_b = np.array([float(r["v_b_v"]) for r in rows])
    fig = figures["iv"]["iv.png"]
    top, bottom = fig.axes[:2]
    np.testing.assert_allclose(_line(top, "device A (V_A)").get_xdata(), i * 1e6)
    np.testing.assert_allclose(_line(top, "device B (V_B)").get_ydata(), v_b, rtol=1e-8)
    diff = _line(bottom, "V_B - V_A (SMUs)").get_ydata()
    np.testing.assert_allclose(diff, (v_b - v_a) * 1e3, rtol=1e-6, atol=1e-9)
    assert np.ptp(diff) > 0.1  # the mismatch is visible on its own axis (mV)
    assert "(mV)" in bottom.get_ylabel() and "(uA)" in bottom.get_xlabel()
    assert "(V)" in top.get_ylabel()


def test_fd_scan_shows_error_against_di_per_mode_with_the_recommended_di(sessions, figures):
    session = Session(sessions["fd-scan"])
    rows = session.events("fd_scan")
    recommended = session.stop["labctl_summary"]["recommended_di_a"]
    assert recommended == min(rows, key=lambda r: r["swap"])["di_a"]
    [ax] = figures["fd-scan"]["fd_scan.png"].axes
    for key, label in labctl.plots.fd_scan.MODES.items():
        line = _line(ax, label)
        np.testing.assert_allclose(line.get_xdata(), [r["di_a"] * 1e6 for r in rows])
        np.testing.assert_allclose(line.get_ydata(), [r[key] * 100 for r in rows])
    mark = _line(ax, f"recommended dI = {recommended * 1e6:.3g} uA")
    assert list(mark.get_xdata()) == [recommended * 1e6] * 2
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "(uA)" in ax.get_xlabel() and "(%)" in ax.get_ylabel()


def test_training_shows_every_fold_the_mean_and_the_tanh_baseline(sessions, figures):
    session = Session(sessions["train"])
    epochs = session.events("epoch")
    folds = session.events("fold", fill=True)
    acc_ax, loss_ax = figures["train"]["training.png"].axes[:2]
    each = [ln for ln in acc_ax.get_lines() if ln.get_linewidth() < 1]
    assert len(each) == 2  # one thin line per fold
    for fold, line in enumerate(each):
        want = [e["val_acc"] * 100 for e in epochs if e["fold"] == fold]
        np.testing.assert_allclose(line.get_ydata(), want)
    mean = _line(acc_ax, "MTJ (fd-swap): mean of 2 folds")
    np.testing.assert_allclose(mean.get_ydata(), np.mean(
        [[e["val_acc"] * 100 for e in epochs if e["fold"] == f] for f in (0, 1)], axis=0))
    tanh = _line(acc_ax, "tanh baseline: mean of 2 folds")
    assert tanh.get_linestyle() == "--"
    # Its last point: the folds' recorded final tanh accuracy (no early stopping here).
    assert tanh.get_ydata()[-1] == pytest.approx(np.mean([f["tanh_val_acc"] for f in folds])
                                                 * 100)
    assert all(f["tanh_history"].shape == (4, 2) for f in folds)
    assert _line(loss_ax, "tanh baseline: mean of 2 folds").get_ydata()[0] > 0
    assert "(%)" in acc_ax.get_ylabel() and "nats" in loss_ax.get_ylabel()


def test_a_comparison_of_grads_shows_each_and_the_baseline_once(sessions, figures):
    fig = figures["swap"]["training-comparison.png"]
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    for grad in ("fd-swap", "exact"):
        assert f"MTJ ({grad}): mean of 2 folds" in labels
    assert labels.count("tanh baseline: mean of 2 folds") == 1
    assert any(sessions["exact"].name in t.get_text() for t in fig.texts)


def _recorded_last_epoch(session_dir: Path) -> np.ndarray:
    session = Session(session_dir)
    last = max(session.events("epoch"), key=lambda e: (e["fold"], e["epoch"]))
    return session.load_array(last["measurements"])


def test_derivatives_of_every_layer_against_the_oracle(sessions, figures):
    block = _recorded_last_epoch(sessions["train"])  # (layers, rows, neurons, 3)
    fig = figures["train"]["derivative.png"]
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert len(panels) == block.shape[0] == 2  # a panel per hidden layer
    errors = []
    for k, ax in enumerate(panels):
        dots = [ln for ln in ax.get_lines() if ln.get_linestyle() == "None"]
        curves = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
        assert len(dots) == len(curves) == block.shape[2]
        for j, (dot, curve) in enumerate(zip(dots, curves, strict=True)):
            np.testing.assert_allclose(dot.get_xdata(), block[k, :, j, 0] * 1e6)
            np.testing.assert_allclose(dot.get_ydata(), block[k, :, j, 2] / 1e3)
            # fd-swap measures what the oracle knows: near its curve (A/B mismatch aside).
            on_curve = np.interp(dot.get_xdata(), curve.get_xdata(), curve.get_ydata())
            errors.append(np.abs(dot.get_ydata() / on_curve - 1))
            assert np.median(errors[-1]) < 0.1, (k, j)
        assert "(uA)" in ax.get_xlabel() and "(kOhm)" in ax.get_ylabel()
    # The oracle rebuilt from the record is the one the live run compared with: the
    # derivative error the epoch recorded (against the live oracle) is the plot's.
    last = max(Session(sessions["train"]).events("epoch"), key=lambda e: (e["fold"], e["epoch"]))
    assert np.median(np.concatenate(errors)) == pytest.approx(last["dvdi_err_median"], rel=0.3)
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "fd-swap: measured" in legend and "oracle" in legend


def test_exact_is_not_called_measured_and_lies_on_the_oracle(figures):
    fig = figures["exact"]["derivative.png"]
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "not measured" in legend and "exact:" in legend
    assert "measured:" not in legend
    ax = fig.axes[0]
    dots = [ln for ln in ax.get_lines() if ln.get_linestyle() == "None"]
    curves = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    for dot, curve in zip(dots, curves, strict=True):
        on_curve = np.interp(dot.get_xdata(), curve.get_xdata(), curve.get_ydata())
        assert np.max(np.abs(dot.get_ydata() / on_curve - 1)) < 2e-3


def test_a_session_without_an_oracle_still_gets_its_derivative_plot(sessions, figures):
    start = Session(sessions["hardware"]).start
    assert start["config"]["station"]["simulation"] is None
    fig = figures["hardware"]["derivative.png"]
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert len(panels) == 2
    block = _recorded_last_epoch(sessions["hardware"])
    for k, ax in enumerate(panels):
        dots = [ln for ln in ax.get_lines()
                if ln.get_linestyle() == "None" and len(ln.get_xdata())]
        assert len(dots) == 2
        np.testing.assert_allclose(dots[1].get_ydata(), block[k, :, 1, 2] / 1e3)
        assert not [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "no oracle" in legend
    assert any("real instruments (no oracle)" in t.get_text() for t in fig.texts)


def test_tune_shows_every_iteration_against_the_target(sessions, figures):
    session = Session(sessions["tune"])
    rows = session.events("tuning")
    fig = figures["tune"]["tune.png"]
    ax = next(a for a in fig.axes if a.get_ylabel() == "I_off (uA)")
    for d in ("a", "b"):
        line = _line(ax, f"device {d.upper()}: estimate")
        np.testing.assert_allclose(line.get_ydata(), [r[f"i_off_{d}"] * 1e6 for r in rows])
    assert any(t.get_text().startswith("target 60 +- 2 uA") for t in ax.get_legend().get_texts())
    assert any(a.get_ylabel() == "pulse amplitude (V)" for a in fig.axes)


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_every_figure_names_its_run_labels_its_axes_and_keeps_legends_off_the_data(
        sessions, figures):
    for kind, made in figures.items():
        for name, fig in made.items():
            # Positions as the save laid them out (constrained layout ran then).
            renderer = FigureCanvasAgg(fig).get_renderer()
            title = " ".join(t.get_text() for t in fig.texts)
            if name != "training-comparison.png":
                assert sessions[kind].name in title, (kind, name, title)
            command = Session(sessions[kind]).start["plan_name"]
            assert title.startswith(command), (kind, name, title)
            if command == "train iris":
                assert "grad " in title or "comparison of" in title, (kind, name, title)
            panels = [ax for ax in fig.axes if ax.get_lines() or ax.patches]
            legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes
                                           if ax.get_legend() is not None]
            assert legends, (kind, name)
            for legend in legends:
                box = legend.get_window_extent(renderer)
                for ax in panels:
                    assert not _overlaps(box, ax.get_window_extent(renderer)), (kind, name)
            for ax in panels:  # an x axis shared with the panel below is labelled there
                assert any(a.get_xlabel() for a in ax.get_shared_x_axes().get_siblings(ax)), (
                    kind, name)
                assert "(" in ax.get_ylabel() or ax.get_ylabel().startswith("cos"), (
                    kind, name, ax.get_ylabel())


def test_a_session_recorded_without_the_tanh_curves_shows_the_baseline_level(
        sessions, tmp_path, monkeypatch):
    """Sessions from before the fold stream held the tanh curves: the baseline's recorded
    final accuracy is drawn as a level, said so in the legend."""
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(sessions["train"], old, ignore=shutil.ignore_patterns("*.png"))
    lines = []
    for raw in (old / "documents.jsonl").read_text().splitlines():
        entry = json.loads(raw)
        name, doc = entry if isinstance(entry, list) else (entry["name"], entry["doc"])
        doc.get("data_keys", {}).pop("tanh_history", None)
        doc.get("data", {}).pop("tanh_history", None)
        doc.get("timestamps", {}).pop("tanh_history", None)
        lines.append(json.dumps([name, doc]))
    (old / "documents.jsonl").write_text("\n".join(lines) + "\n")
    caught = {}
    real = labctl.plots.training.save
    monkeypatch.setattr(labctl.plots.training, "save",
                        lambda fig, path: caught.setdefault(Path(path).name, fig) and real(
                            fig, path))
    assert main(["report", str(old), "--out", str(tmp_path / "r")]) == 0
    ax = caught["training.png"].axes[0]
    level = _line(ax, "tanh baseline: final accuracy, mean (no curve recorded)")
    folds = Session(sessions["train"]).events("fold")
    assert level.get_ydata()[0] == pytest.approx(
        np.mean([f["tanh_val_acc"] for f in folds]) * 100)


def test_report_of_a_training_killed_in_its_preflight_check_says_nothing_to_plot(
        sessions, tmp_path, capsys):
    """Killed after the differential-path check and before its first epoch (its record
    ends there, no stop document): nothing to plot yet, exit 0, not an error."""
    import json
    import shutil

    killed = tmp_path / "killed"
    shutil.copytree(sessions["train"], killed, ignore=shutil.ignore_patterns("*.png", "report"))
    lines = (killed / "documents.jsonl").read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines)
               if json.loads(line)[0] == "descriptor"
               and json.loads(line)[1]["name"] != "differential_check")
    (killed / "documents.jsonl").write_text("".join(lines[:cut]))
    assert set(Session(killed).descriptors) == {"differential_check"}
    capsys.readouterr()
    assert main(["report", str(killed)]) == 0
    out = capsys.readouterr().out
    assert "nothing recorded to plot yet (session interrupted before its first plotted " \
           "result; streams: differential_check)" in out
