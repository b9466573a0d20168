"""``labctl simulate mnist``: four hidden MTJ layers on MNIST, every neuron a simulated pair.

The MTJ network (784 inputs, four hidden layers of simulated MTJ pairs, 10 outputs) and a
tanh network of the same shape train side by side, one epoch of each in turn so that
their epoch times are measured under the same machine load. Both start from the same
weights and see the same minibatches. With ``--distill`` a larger software tanh teacher
trains first, and then the MTJ network is trained once more on the teacher's softened
outputs; the plain MTJ run is its comparison (same devices, initial weights and batches).

Data: the IDX files in ``--data-dir``; 5,000 training images are held out for validation
(early stopping, learning curves) and the 10,000 test images give the reported accuracy.
Outputs: a summary on stdout (``--json`` for a machine-readable one), and with ``--out`` a
markdown table ``results.md`` and PNG learning curves.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

from labctl.commands.units import quantity
from labctl.progress import Progress, add_progress_argument, wanted
from labctl.training.mlp import MLP, HiddenLayer, History, TrainConfig, Trainer, evaluate, softmax
from labctl.training.mnist_data import DEFAULT_DATA_DIR, flatten, load_mnist
from labctl.training.neurons import GRAD_MODES, ModelNeurons, MTJActivation, TanhActivation
from simulators.mtj import PRESETS

DEFAULT_WIDTHS = "1024,1024,512,512"
DEFAULT_TEACHER_WIDTHS = "2048,2048"


def _widths(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"widths must be comma-separated integers: {text!r}"
        ) from None
    if not widths or any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"widths must be positive integers: {text!r}")
    return widths


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``labctl simulate mnist``."""
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                      help="directory of the MNIST IDX files (default: %(default)s)")
    data.add_argument("--subset", type=_positive_int, default=None, metavar="N",
                      help="train on N random training images (and test on at most N test "
                           "images): for quick checks")
    data.add_argument("--val-size", type=int, default=5000, metavar="N",
                      help="training images held out for validation (default: %(default)s; "
                           "at most a tenth of --subset)")
    net = parser.add_argument_group("network and devices")
    net.add_argument("--widths", type=_widths, default=_widths(DEFAULT_WIDTHS),
                     help="hidden-layer widths (default: %(default)s)")
    net.add_argument("--grad", choices=GRAD_MODES, default="fd-swap",
                     help="derivative of the MTJ activation (default: %(default)s)")
    net.add_argument("--di", type=quantity("A"), default=2e-6,
                     help="bias step of the derivative measurement, A (default: %(default)s)")
    net.add_argument("--variability", choices=sorted(PRESETS), default="nominal",
                     help="device spread, mismatch and read noise (default: %(default)s)")
    net.add_argument("--i-center", type=quantity("A"), default=0.0, metavar="A",
                     help="bias current at z = 0 (default: %(default)s A, where the MTJ curve "
                          "is steepest and the clip symmetric; MTJActivation's own default "
                          "of 40 uA = I_off saturates the deeper layers)")
    net.add_argument("--i-scale", type=quantity("A"), default=30e-6, metavar="A",
                     help="bias current per unit of z (default: %(default)s)")
    net.add_argument("--i-max", type=quantity("A"), default=100e-6, metavar="A",
                     help="bias current limit (default: %(default)s)")
    net.add_argument("--nplc", type=float, default=1.0,
                     help="SMU integration of the activation read, PLC (default: %(default)s)")
    net.add_argument("--adc-integration", type=quantity("s"), default=1e-3, metavar="S",
                     help="ADC integration of a differential read, s (default: %(default)s)")
    opt = parser.add_argument_group("training")
    opt.add_argument("--epochs", type=_positive_int, default=12, help="training epochs")
    opt.add_argument("--batch-size", type=_positive_int, default=128, help="minibatch size")
    opt.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                     help="weight update rule")
    opt.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    opt.add_argument("--schedule", choices=("constant", "step", "exponential", "cosine"),
                     default="cosine", help="learning-rate decay")
    opt.add_argument("--weight-decay", type=float, default=0.0,
                     help="decoupled weight decay (AdamW)")
    opt.add_argument("--patience", type=_positive_int, default=None,
                     help="early stopping after this many epochs without a better "
                          "validation loss (default: off; the best epoch is restored anyway)")
    opt.add_argument("--seed", type=int, default=0,
                     help="seeds data split, weights, batches, devices and noise")
    kd = parser.add_argument_group("distillation")
    kd.add_argument("--distill", action="store_true",
                    help="also train a tanh teacher and the MTJ network distilled from it")
    kd.add_argument("--teacher-widths", type=_widths, default=_widths(DEFAULT_TEACHER_WIDTHS),
                    help="hidden widths of the tanh teacher (default: %(default)s)")
    kd.add_argument("--teacher-epochs", type=_positive_int, default=None,
                    help="teacher epochs (default: --epochs)")
    kd.add_argument("--teacher-shift", type=int, default=2, metavar="PIXELS",
                    help="train the teacher on images shifted at random by up to this many "
                         "pixels (data augmentation; 0: off; default: %(default)s)")
    kd.add_argument("--temperature", type=float, default=4.0,
                    help="softmax temperature of the soft targets (default: %(default)s)")
    kd.add_argument("--alpha", type=float, default=0.5,
                    help="weight of the soft-target term, 0..1 (default: %(default)s)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    out.add_argument("--out", type=Path, default=None, metavar="DIR",
                     help="write results.md and PNG learning curves to DIR")
    add_progress_argument(out)
    out.add_argument("--sessions-dir", type=Path, default=None, metavar="DIR",
                     help="record the run as a session there (as `labctl sweep` does; "
                          "default: no session)")


def prepare_data(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Load, split (seeded) and standardise MNIST as float32 (n, 784) arrays."""
    data = load_mnist(args.data_dir)
    rng = np.random.default_rng([args.seed, 0x4D4E])
    n_train = len(data.train_labels)
    order = rng.permutation(n_train)
    if args.subset is not None:
        order = order[: min(args.subset, n_train)]
        val_size = min(args.val_size, len(order) // 10)
    else:
        val_size = args.val_size
    if not 0 <= val_size < len(order):
        raise ValueError(f"--val-size {args.val_size} leaves no training images")
    val_idx, train_idx = order[:val_size], order[val_size:]
    test_idx = np.arange(len(data.test_labels))
    if args.subset is not None and args.subset < len(test_idx):
        test_idx = np.sort(rng.choice(len(test_idx), args.subset, replace=False))
    x_all = flatten(data.train_images)
    x_train = x_all[train_idx]
    # One mean and spread for all pixels, from the training images only.
    mean, std = float(x_train.mean()), float(x_train.std())

    def norm(x: np.ndarray) -> np.ndarray:
        x -= mean
        x *= 1.0 / std
        return x

    return {
        "background": np.float32(-mean / std),  # a blank pixel, standardised
        "x_train": norm(x_train),
        "y_train": data.train_labels[train_idx].astype(np.intp),
        "x_val": norm(x_all[val_idx]),
        "y_val": data.train_labels[val_idx].astype(np.intp),
        "x_test": norm(flatten(data.test_images)[test_idx]),
        "y_test": data.test_labels[test_idx].astype(np.intp),
    }


def shift_images(
    x: np.ndarray, rng: np.random.Generator, max_shift: int, fill: float
) -> np.ndarray:
    """Each flattened 28x28 image moved by its own random whole-pixel offset of at most
    ``max_shift`` in x and y; uncovered pixels take ``fill`` (the background value)."""
    b, s = len(x), max_shift
    padded = np.full((b, 28 + 2 * s, 28 + 2 * s), fill, dtype=x.dtype)
    padded[:, s : s + 28, s : s + 28] = x.reshape(b, 28, 28)
    rows = rng.integers(0, 2 * s + 1, b)[:, None] + np.arange(28)
    cols = rng.integers(0, 2 * s + 1, b)[:, None] + np.arange(28)
    return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]].reshape(b, -1)


def layer_seeds(seed: int, n_layers: int) -> list[int]:
    """Distinct device seeds of the hidden layers, derived from the run's seed."""
    return [int(s) for s in np.random.SeedSequence([seed, 0x4D544A]).generate_state(n_layers)]


def build_tanh(widths: list[int], seed: int) -> MLP:
    """784 -> tanh layers -> 10."""
    return MLP(784, [HiddenLayer(w, TanhActivation()) for w in widths], 10, seed=seed)


def build_mtj(widths: list[int], args: argparse.Namespace) -> MLP:
    """784 -> MTJ layers (each neuron its own simulated pair) -> 10."""
    activation = MTJActivation(i_center=args.i_center, i_scale=args.i_scale, i_max=args.i_max)
    hidden = [
        HiddenLayer(
            w,
            activation,
            ModelNeurons(
                w,
                variability=args.variability,
                seed=s,
                di=args.di,
                grad=args.grad,
                nplc=args.nplc,
                adc_integration_s=args.adc_integration,
            ),
        )
        for w, s in zip(widths, layer_seeds(args.seed, len(widths)), strict=True)
    ]
    return MLP(784, hidden, 10, seed=args.seed)


def train_config(args: argparse.Namespace, epochs: int | None = None) -> TrainConfig:
    """The training settings shared by every network of the run."""
    return TrainConfig(
        epochs=epochs or args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        schedule=args.schedule,
        weight_decay=args.weight_decay,
        patience=args.patience,
        restore_best=True,
        seed=args.seed,
    )


def work_batches(args: argparse.Namespace, n_train: int) -> int:
    """Training batches of the whole run (the progress bar's total): epochs x batches of
    every network trained (the teacher with --distill, tanh, MTJ, the distilled MTJ)."""
    per_epoch = -(-n_train // (args.batch_size or n_train))
    epochs = args.epochs * (3 if args.distill else 2)
    if args.distill:
        epochs += args.teacher_epochs or args.epochs
    return epochs * per_epoch


def run_interleaved(trainers: dict[str, Trainer], bar: Progress | None = None) -> None:
    """Run one epoch of each unfinished trainer in turn until all are done.

    ``bar`` (counting the trainers' batches) names the network and epoch running now; a
    network that stops early counts its remaining epochs as done.
    """
    while not all(t.done for t in trainers.values()):
        for name, trainer in trainers.items():
            if trainer.done:
                continue
            if bar is not None:
                bar.set_description(f"{name} epoch {trainer.epoch + 1}/{trainer.config.epochs}")
            row = trainer.run_epoch()
            if bar is not None:
                bar.set_postfix(f"{name}: train loss {row['train_loss']:.4f}, val acc "
                                f"{row['val_acc']:.4f}, {row['epoch_time_s']:.1f} s/epoch")
                if trainer.done:
                    bar.update((trainer.config.epochs - trainer.epoch)
                               * trainer.batches_per_epoch())
    for trainer in trainers.values():
        trainer.finish()


def summarise_model(
    name: str, model: MLP, history: History, widths: list[int], kind: str,
    x_test: np.ndarray, y_test: np.ndarray,
) -> dict:
    """Test figures and timing of one trained network."""
    test_loss, test_acc = evaluate(model, x_test, y_test)
    times = np.asarray(history.epoch_time_s)
    best = history.best_epoch
    return {
        "name": name,
        "kind": kind,
        "widths": widths,
        "n_params": model.n_params,
        "test_acc": test_acc,
        "test_loss": test_loss,
        "best_epoch": best,
        "best_val_acc": history.val_acc[best] if best is not None else None,
        "epochs_run": len(history.epoch),
        "epoch_time_median_s": float(np.median(times)),
        "epoch_time_mean_s": float(np.mean(times)),
        "epoch_time_min_s": float(np.min(times)),
        "train_pass_median_s": float(np.median(history.train_time_s)),
        "train_time_s": float(np.sum(times)),
        "history": history.as_dict(),
    }


def run(args: argparse.Namespace) -> int:
    """Train and compare as the options say; returns the process exit status. With
    ``--sessions-dir`` the run is a session record: its options and seeds in the start
    document, the test accuracies in the stop document's summary."""
    if getattr(args, "sessions_dir", None) is None:
        return _run(args)
    from labctl.commands.signals import signals_as_interrupt
    from labctl.records.session import SessionWriter

    options = {k: _json(v) if isinstance(v, Path) else v for k, v in vars(args).items()
               if not k.startswith("_") and not callable(v) and k != "sessions_dir"}
    seeds = {"data": args.seed, "weights": args.seed,
             "devices": layer_seeds(args.seed, len(args.widths))}
    summary: dict = {}
    with signals_as_interrupt(), SessionWriter.create(
        args.sessions_dir, "simulate mnist", sys.argv[1:],
        {"command": "simulate mnist", "options": options}, seeds,
    ) as writer:
        status = _run(args, summary)
        headline = {f"{name}_test_acc": m["test_acc"] for name, m in
                    summary.get("models", {}).items()}
        writer.stop("success" if status == 0 else "fail",
                    "" if status == 0 else f"exit status {status}", summary=headline)
    return status


def _run(args: argparse.Namespace, out: dict | None = None) -> int:
    """The run itself; its summary also goes into ``out``."""
    t_start = time.perf_counter()
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
    if not args.temperature > 0:
        raise ValueError(f"--temperature must be positive, got {args.temperature}")
    try:
        data = prepare_data(args)
    except FileNotFoundError as exc:
        print(f"simulate mnist: {exc}", file=sys.stderr)
        return 2
    bar = Progress(work_batches(args, len(data["y_train"])), "simulate mnist", unit="batch",
                   enabled=wanted(args))
    progress = bar if bar.enabled else None
    x_train, y_train = data["x_train"], data["y_train"]
    val = {"x_val": data["x_val"], "y_val": data["y_val"]}

    def say(*text: str) -> None:
        bar.write(" ".join(text))  # on stderr, not tearing the bar

    say(f"MNIST: {len(y_train)} train, {len(data['y_val'])} validation, "
        f"{len(data['y_test'])} test images")

    results: dict[str, dict] = {}
    soft_targets = None
    if args.distill:
        teacher = build_tanh(args.teacher_widths, args.seed + 1)
        say(f"teacher: tanh {args.teacher_widths}, {teacher.n_params} parameters")
        augment = None
        if args.teacher_shift > 0:
            augment = functools.partial(shift_images, max_shift=args.teacher_shift,
                                        fill=float(data["background"]))
        trainer = Trainer(teacher, x_train, y_train, config=train_config(args, args.teacher_epochs),
                          **val, progress=progress, desc="teacher", augment=augment)
        run_interleaved({"teacher": trainer}, progress)
        results["teacher"] = summarise_model("teacher", teacher, trainer.history,
                                             args.teacher_widths, "tanh", data["x_test"],
                                             data["y_test"])
        soft_targets = softmax(teacher.predict_logits(x_train), args.temperature)

    tanh = build_tanh(args.widths, args.seed)
    mtj = build_mtj(args.widths, args)
    trainers = {
        "tanh": Trainer(tanh, x_train, y_train, config=train_config(args), **val,
                        progress=progress, desc="tanh"),
        "mtj": Trainer(mtj, x_train, y_train, config=train_config(args), **val,
                       progress=progress, desc="mtj"),
    }
    models = {"tanh": (tanh, "tanh"), "mtj": (mtj, f"mtj {args.grad}")}
    if args.distill:
        student = build_mtj(args.widths, args)
        trainers["mtj_distilled"] = Trainer(
            student, x_train, y_train, config=train_config(args), **val,
            soft_targets=soft_targets, temperature=args.temperature, alpha=args.alpha,
            progress=progress, desc="mtj distilled",
        )
        models["mtj_distilled"] = (student, f"mtj {args.grad}, distilled")
    say(f"networks: 784-{'-'.join(map(str, args.widths))}-10, {tanh.n_params} parameters; "
        f"MTJ: {args.grad}, dI {args.di:g} A, {args.variability} variability")
    run_interleaved(trainers, progress)
    bar.close()
    for name, (model, kind) in models.items():
        results[name] = summarise_model(name, model, trainers[name].history, args.widths, kind,
                                        data["x_test"], data["y_test"])

    mtj_t, tanh_t = results["mtj"], results["tanh"]
    ratio = mtj_t["epoch_time_median_s"] / tanh_t["epoch_time_median_s"]
    summary = {
        "command": "simulate mnist",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                   if not k.startswith("_") and not callable(v)},
        "device_seeds": layer_seeds(args.seed, len(args.widths)),
        "data": {k: int(len(v)) for k, v in data.items() if k.startswith("y_")},
        "models": results,
        "epoch_time_ratio_mtj_over_tanh": ratio,
        "epoch_time_ratio_of_minima": mtj_t["epoch_time_min_s"] / tanh_t["epoch_time_min_s"],
        "train_pass_ratio_mtj_over_tanh": (
            mtj_t["train_pass_median_s"] / tanh_t["train_pass_median_s"]
        ),
        "total_time_s": None,
    }
    if args.distill:
        gain = results["mtj_distilled"]["test_acc"] - results["mtj"]["test_acc"]
        summary["distillation_gain"] = gain
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        plot_learning_curves(results, args.out / "learning_curves.png")
        plot_neurons(mtj, args.out / "neurons.png")
    summary["total_time_s"] = time.perf_counter() - t_start
    if args.out is not None:
        (args.out / "results.md").write_text(results_markdown(summary))
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=_json))
    if args.json:
        print(json.dumps(summary, default=_json))
    else:
        print(results_markdown(summary, history=False))
    if out is not None:
        out.update(summary)
    return 0


def _json(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def results_markdown(summary: dict, *, history: bool = True) -> str:
    """The results table (and per-epoch tables if ``history``) as markdown."""
    cfg = summary["config"]
    lines = [
        "# MNIST, simulated MTJ network",
        "",
        f"Widths {cfg['widths']}, grad `{cfg['grad']}`, dI {cfg['di']:g} A, variability "
        f"`{cfg['variability']}`, {cfg['epochs']} epochs, batch {cfg['batch_size']}, "
        f"{cfg['optimizer']} lr {cfg['lr']:g} ({cfg['schedule']}), seed {cfg['seed']}; "
        f"{summary['data']['y_train']} train / {summary['data']['y_val']} validation / "
        f"{summary['data']['y_test']} test images.",
        "",
        "| network | widths | parameters | test acc (%) | test loss | best val acc (%) "
        "| epochs | median epoch (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary["models"].values():
        best = r["best_val_acc"]
        lines.append(
            f"| {r['name']} ({r['kind']}) | {','.join(map(str, r['widths']))} | {r['n_params']} "
            f"| {100 * r['test_acc']:.2f} | {r['test_loss']:.4f} "
            f"| {'-' if best is None else f'{100 * best:.2f}'} | {r['epochs_run']} "
            f"| {r['epoch_time_median_s']:.2f} |"
        )
    lines += [
        "",
        f"- MTJ / tanh epoch time (training pass and validation; medians, same run, epochs "
        f"interleaved): **{summary['epoch_time_ratio_mtj_over_tanh']:.2f}x**; "
        f"ratio of the fastest epochs {summary['epoch_time_ratio_of_minima']:.2f}x, of the "
        f"training passes alone {summary['train_pass_ratio_mtj_over_tanh']:.2f}x",
        f"- MTJ test accuracy {100 * summary['models']['mtj']['test_acc']:.2f} %",
    ]
    if "distillation_gain" in summary:
        lines.append(
            f"- distillation: {100 * summary['distillation_gain']:+.2f} percentage points "
            f"of test accuracy over the same MTJ network trained on labels only "
            f"(T = {cfg['temperature']:g}, alpha = {cfg['alpha']:g})"
        )
    if summary.get("total_time_s") is not None:
        lines.append(f"- total run time {summary['total_time_s']:.0f} s")
    if history:
        for r in summary["models"].values():
            h = r["history"]
            lines += [
                "", f"## {r['name']} per epoch", "",
                "| epoch | lr | train loss | train acc (%) | val loss | val acc (%) | time (s) |",
                "|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for i in range(len(h["epoch"])):
                lines.append(
                    f"| {h['epoch'][i]} | {h['lr'][i]:.2e} | {h['train_loss'][i]:.4f} "
                    f"| {100 * h['train_acc'][i]:.2f} | {h['val_loss'][i]:.4f} "
                    f"| {100 * h['val_acc'][i]:.2f} | {h['epoch_time_s'][i]:.2f} |"
                )
    return "\n".join(lines) + "\n"


def plot_learning_curves(results: dict[str, dict], path: Path) -> None:
    """Validation accuracy and training loss per epoch of every network, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, r in results.items():
        h = r["history"]
        epochs = np.asarray(h["epoch"]) + 1
        label = f"{name} ({100 * r['test_acc']:.2f} % test)"
        (line,) = ax_acc.plot(epochs, 100 * np.asarray(h["val_acc"]), marker="o", ms=3,
                              label=label)
        ax_loss.plot(epochs, h["train_loss"], marker="o", ms=3, color=line.get_color(),
                     label=f"{name} train")
        ax_loss.plot(epochs, h["val_loss"], ls="--", color=line.get_color(),
                     label=f"{name} validation")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title="MNIST validation accuracy")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy (nats)", yscale="log",
                title="loss (solid: training, dashed: validation)")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_neurons(model: MLP, path: Path, n_show: int = 6) -> None:
    """V_A(I) and the measured vs analytic dV/dI of a few first-layer neurons, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layer = model.hidden[0]
    neurons, act = layer.neurons, layer.activation
    if not isinstance(neurons, ModelNeurons) or not isinstance(act, MTJActivation):
        return
    n_show = min(n_show, neurons.n)
    currents = np.linspace(-act.i_max, act.i_max, 201)
    grid = np.zeros((len(currents), neurons.n))
    grid[:] = currents[:, None]
    readout = neurons.measure(grid)
    exact = neurons.exact_dvdi(grid)
    fig, (ax_v, ax_d) = plt.subplots(1, 2, figsize=(11, 4.2))
    for j in range(n_show):
        (line,) = ax_v.plot(1e6 * currents, readout.v[:, j], lw=1)
        ax_d.plot(1e6 * currents, 1e-3 * readout.dvdi[:, j], lw=1, color=line.get_color(),
                  label=f"neuron {j} ({neurons.grad})" if j < 3 else None)
        ax_d.plot(1e6 * currents, 1e-3 * exact[:, j], lw=1, ls=":", color=line.get_color(),
                  label=f"neuron {j} (analytic)" if j < 3 else None)
    for ax in (ax_v, ax_d):
        ax.axvspan(1e6 * (act.i_center - act.i_scale), 1e6 * (act.i_center + act.i_scale),
                   color="0.9", zorder=0)
        ax.grid(alpha=0.3)
        ax.set_xlabel("bias current (uA)")
    ax_v.set(ylabel="V_A (V)", title="activation voltage, first hidden layer")
    ax_d.set(ylabel="dV/dI (kOhm)", title=f"derivative: {neurons.grad} vs analytic")
    ax_d.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``python -m labctl.commands.simulate_mnist``: the same command outside the labctl CLI."""
    parser = argparse.ArgumentParser(prog="labctl simulate mnist", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as exc:
        print(f"simulate mnist: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
