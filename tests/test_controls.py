"""Training controls: the linear network, the control derivative sources (constant,
shuffled, nominal-model) and the learning-rate decay factor.

Unit tests check that each derivative source is what it says on real measurement arrays;
the runs go through ``labctl train iris`` (``labctl.cli.main`` in-process on the model
backend, to stay fast; real subprocesses for the station run and for the run killed with
SIGKILL), and each session is replayed bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from labctl.commands.replay import replay_training
from labctl.records.session import Session
from labctl.training.derivative_sources import (
    DERIVATIVE_SOURCES,
    ControlledNeurons,
    constant_dvdi,
    shuffled_dvdi,
)
from labctl.training.fidelity import FIDELITY_KEYS
from labctl.training.iris import IrisSettings
from labctl.training.iris_record import RecordedRun
from labctl.training.neurons import LinearActivation, ModelNeurons
from simulators.mtj import NOMINAL, dvdi

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
LIMIT_A = 100e-6


def labctl(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labctl.cli", *map(str, args)], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=timeout)


def cli(*args, capsys) -> tuple[int, str, str]:
    """``labctl ARGS`` in this process: (exit status, stdout, stderr)."""
    from labctl.cli import main

    status = main([str(a) for a in args])
    out = capsys.readouterr()
    return status, out.out, out.err


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def currents(batch: int = 40, n: int = 6, seed: int = 3) -> np.ndarray:
    """Bias currents (A) spread over the operating range."""
    return np.random.default_rng(seed).uniform(10e-6, 70e-6, (batch, n))


def twins(grad: str, n: int = 6) -> tuple[ModelNeurons, ControlledNeurons]:
    """A raw fd-swap array and a control over an identical one (same seed: same devices,
    same noise stream), so the control's input is known exactly."""
    raw = ModelNeurons(n, seed=11, di=1e-6, grad="fd-swap")
    return raw, ControlledNeurons(ModelNeurons(n, seed=11, di=1e-6, grad="fd-swap"), grad,
                                  seed=4)


# -- the derivative sources are what they say ------------------------------------------------


def test_constant_is_the_batch_mean_of_the_measured_slopes():
    raw, control = twins("constant")
    i = currents()
    measured = raw.measure(i)
    got = control.measure(i)
    np.testing.assert_array_equal(got.v, measured.v)  # the activation is the measured one
    assert np.ptp(measured.dvdi) > 100  # Ohm: the raw slopes do vary
    assert np.all(got.dvdi == got.dvdi.flat[0])
    assert got.dvdi.flat[0] == pytest.approx(measured.dvdi.mean(), rel=1e-12)
    assert constant_dvdi(np.array([[1.0, 2.0], [3.0, 6.0]])).tolist() == [[3.0, 3.0]] * 2


def test_shuffled_permutes_the_measured_slopes_across_samples_and_neurons():
    raw, control = twins("shuffled")
    i = currents()
    measured = raw.measure(i).dvdi
    control.before_epoch(0, 0)
    got = control.measure(i).dvdi
    np.testing.assert_array_equal(np.sort(got, axis=None), np.sort(measured, axis=None))
    assert np.mean(got != measured) > 0.9  # nearly every entry moved
    # Across neurons too, not only within a column: the column sums change.
    assert not np.allclose(got.sum(axis=0), measured.sum(axis=0))
    # Seeded by (seed, fold, epoch): the same permutation for the same epoch, another for
    # another epoch; calls within an epoch draw fresh ones.
    x = np.arange(240.0).reshape(40, 6)
    control.before_epoch(1, 7)
    first = shuffled_dvdi(x, control._rng)
    second = shuffled_dvdi(x, control._rng)
    control.before_epoch(1, 7)
    np.testing.assert_array_equal(shuffled_dvdi(x, control._rng), first)
    assert not np.array_equal(first, second)
    control.before_epoch(1, 8)
    assert not np.array_equal(shuffled_dvdi(x, control._rng), first)


def test_nominal_model_is_the_nominal_devices_slope_not_the_measured_one():
    raw, control = twins("nominal-model")
    i = currents()
    measured = raw.measure(i).dvdi
    got = control.measure(i).dvdi
    np.testing.assert_array_equal(got, dvdi(NOMINAL, i))
    assert np.max(np.abs(got - measured)) > 50  # Ohm: the real devices differ from nominal


def test_linear_activation_is_the_identity():
    z = np.array([[-3.0, 0.0, 2.5]])
    a, dadz, cur, readout = LinearActivation().forward(z)
    assert a.tolist() == z.tolist() and dadz.tolist() == [[1.0, 1.0, 1.0]]
    assert cur is None and readout is None


@pytest.mark.parametrize(
    ("change", "option"),
    [
        ({"grad": "bogus"}, "--grad"),
        ({"activation": "relu"}, "--activation"),
        ({"task": "moons"}, "--task"),
        ({"decay_factor": 0.0}, "--decay-factor"),
        ({"decay_factor": 1.5}, "--decay-factor"),
        ({"step_size": 0}, "--step-size"),
        ({"task": "rings", "folds": 101}, "--folds"),
    ],
)
def test_bad_settings_are_refused_naming_the_option(change, option):
    with pytest.raises(ValueError, match=option):
        IrisSettings(**change).validate(LIMIT_A, None)


def test_the_decay_factor_and_step_size_set_the_schedules():
    exp = IrisSettings(schedule="exponential", decay_factor=0.9).train_config_kwargs(0)
    assert exp["gamma"] == 0.9
    from labctl.training.mlp import TrainConfig

    cfg = TrainConfig(**IrisSettings(schedule="step", decay_factor=0.8, step_size=3,
                                     lr=0.1).train_config_kwargs(0))
    assert [round(cfg.lr_at(e), 12) for e in (0, 2, 3, 6)] == [0.1, 0.1, 0.08, 0.064]
    default = TrainConfig(**IrisSettings(schedule="exponential").train_config_kwargs(0))
    assert default.gamma == 0.5 and default.step_size == 10  # defaults unchanged


# -- runs through the command, recorded and replayed -------------------------------------------


def _sessions(directory: Path) -> dict[str, Path]:
    """grad (or activation) -> session directory."""
    out = {}
    for path in directory.iterdir():
        s = Session.open(path).start["config"]["settings"]
        out[s["grad"] if s["activation"] == "mtj" else s["activation"]] = path
    return out


def _replays_bit_for_bit(path: Path) -> dict:
    r = replay_training(Session.open(path))
    assert r["metrics_identical"] and r["final_weights_identical"], r
    assert r["ended"] == "complete"
    return r


def test_every_control_runs_records_and_replays_on_the_model_backend(tmp_path, capsys):
    common = ("--backend", "model", "--task", "rings", "--epochs", 3, "--folds", 2, "--json",
              "--no-progress", "--sessions-dir", tmp_path / "s", "--seed", 2)
    status, _, err = cli("train", "iris", *common, "--grad", "constant,shuffled,nominal-model",
                         capsys=capsys)
    assert status == 0, err
    status, out, err = cli("train", "iris", *common, "--activation", "linear",
                           "--schedule", "exponential", "--decay-factor", 0.8, capsys=capsys)
    assert status == 0, err
    stop = Session.open(tmp_path / "s" / json.loads(out)["session"]).stop
    assert stop["labctl_headline"].startswith("linear ") and "rings" in stop["labctl_headline"]
    sessions = _sessions(tmp_path / "s")
    assert sorted(sessions) == ["constant", "linear", "nominal-model", "shuffled"]
    for name, path in sessions.items():
        run = RecordedRun(Session.open(path))
        assert run.settings.task == "rings" and run.settings.seed == 2
        assert len(run.epochs) == 6 and sorted(run.folds) == [0, 1]
        first = run.epochs[(0, 0)]
        fidelity = [first[k] for k in FIDELITY_KEYS]
        block = run.measurements(0, 0)
        if name == "linear":
            assert run.settings.activation == "linear" and run.settings.decay_factor == 0.8
            assert block.shape[1] == 0  # no neuron was asked anything
            assert all(np.isnan(fidelity))  # nothing to compare
            lrs = [run.epochs[(0, e)]["lr"] for e in range(3)]
            assert lrs == pytest.approx([0.05, 0.04, 0.032])
        else:
            assert run.settings.grad == name and block.shape[2] == 8
            assert np.isfinite(fidelity).all()
            d = block[..., 2]  # the derivative the trainer used, as recorded
            if name == "constant":  # one value per measurement call: train, validation
                assert np.all(d[:, :100] == d[0, 0]) and np.all(d[:, 100:] == d[0, 100])
        _replays_bit_for_bit(path)


def test_a_control_on_a_task_runs_on_the_simulated_station(tmp_path):
    proc = ok(labctl("train", "iris", "--task", "xor", "--grad", "shuffled", "--epochs", 2,
                     "--folds", 2, "--json", "--no-progress", "--sessions-dir", tmp_path / "s",
                     cwd=tmp_path))
    summary = json.loads(proc.stdout)
    path = tmp_path / "s" / summary["session"]
    run = RecordedRun(Session.open(path))
    assert run.settings.backend == "station" and run.settings.task == "xor"
    assert 0 < summary["grad_cosine"] < 0.99  # from the simulator's oracle; shuffled: off
    _replays_bit_for_bit(path)


def test_bad_values_are_refused_by_the_command_before_any_session(tmp_path, capsys):
    for args, option in (
        (("--decay-factor", "0"), "--decay-factor"),
        (("--step-size", "-2"), "--step-size"),
        (("--grad", "fd,bogus"), "--grad"),
        (("--task", "rings", "--folds", "120"), "--folds"),
    ):
        status, _, err = cli("train", "iris", "--backend", "model", *args, "--sessions-dir",
                             tmp_path / "s", capsys=capsys)
        assert status == 2, (args, err)
        assert err.startswith("labctl: error: ") and option in err, err
    for args in (("--task", "moons"), ("--activation", "relu")):  # argparse choices
        with pytest.raises(SystemExit) as exc:
            cli("train", "iris", *args, capsys=capsys)
        assert exc.value.code == 2
        assert args[0] in capsys.readouterr().err
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_a_killed_control_run_on_a_task_resumes_and_replays(tmp_path, capsys):
    sessions = tmp_path / "s"
    args = ["train", "iris", "--backend", "model", "--task", "spirals", "--grad", "shuffled",
            "--activation", "mtj", "--schedule", "step", "--decay-factor", "0.7",
            "--step-size", "4", "--epochs", "150", "--folds", "2", "--no-progress",
            "--sessions-dir", str(sessions)]
    proc = subprocess.Popen([sys.executable, "-m", "labctl.cli", *args], cwd=tmp_path, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    path = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            docs = list(sessions.glob("*/documents.jsonl")) if sessions.is_dir() else []
            if docs and '"epoch":2,' in docs[0].read_text():
                path = docs[0].parent
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert path is not None
    before = len(Session.open(path).events("epoch"))
    assert 0 < before < 300
    status, out, err = cli("train", "iris", "--resume", path.name, "--sessions-dir", sessions,
                           "--json", "--no-progress", capsys=capsys)
    assert status == 0, err
    assert json.loads(out)["folds"] == 2
    session = Session.open(path)
    assert session.stop["exit_status"] == "success"  # one run, continued (no new session)
    run = RecordedRun(session)
    s = run.settings
    assert (s.task, s.grad, s.schedule, s.decay_factor, s.step_size) == (
        "spirals", "shuffled", "step", 0.7, 4)
    assert sorted(run.epochs) == [(f, e) for f in range(2) for e in range(150)]
    assert run.epochs[(1, 8)]["lr"] == pytest.approx(0.05 * 0.7**2)
    assert np.isfinite(run.epochs[(1, 149)]["grad_cosine"])  # the live part records it too
    _replays_bit_for_bit(path)


def test_every_source_is_offered_by_the_command():
    from labctl.cli import build_parser

    text = build_parser().parse_args(["train", "iris"])
    assert text.grad == "fd-swap" and text.task == "iris" and text.activation == "mtj"
    assert text.decay_factor == 0.5 and text.step_size == 10
    assert set(DERIVATIVE_SOURCES) == {"fd-swap", "fd", "exact", "constant", "shuffled",
                                      "nominal-model"}
