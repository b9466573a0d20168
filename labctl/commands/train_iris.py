"""`labctl train iris`: device-in-the-loop training with k-fold cross-validation.

Hidden neurons are MTJ pairs: on the probe station (``--backend station``, default;
with no station file the built-in simulated station) or the simulator's device physics
called in-process (``--backend model``). Every run is a session record; ``--resume``
continues an interrupted one from its last completed epoch.

``--task rings|spirals|xor`` trains a 2-D task instead of Iris (same command, sessions,
replay, resume and sweeps); ``--activation tanh|linear`` and the control derivative
sources ``--grad constant|shuffled|nominal-model`` are the controls that tell whether the
measured derivative matters.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labctl import plots
from labctl.commands.lifecycle import (
    add_station_arguments,
    instrument_session,
    record_differential_checks,
    resume_station,
    station_config,
)
from labctl.commands.units import quantity
from labctl.progress import Progress, add_progress_argument, wanted
from labctl.records.session import Session, find_session
from labctl.training.derivative_sources import (
    CONTROL_MODES,
    DERIVATIVE_SOURCES,
    ControlledNeurons,
    measured_mode,
)
from labctl.training.iris import BACKENDS, IrisSettings, summarise, train_folds
from labctl.training.iris_record import RecordedRun, RecordSink, ReplaySource
from labctl.training.model_backend import model_layers
from labctl.training.neurons import ACTIVATIONS, ModelNeurons
from labctl.training.station_neurons import StationNeurons
from labctl.training.tasks import TASKS
from labctl.wafer.measured_model import initial_weights
from labctl.wafer.selection import add_pair_arguments, resolve_training
from protocols.engine import Engine
from protocols.preflight import check_pairs, refuse_failed
from simulators.measured_devices import MeasuredDevices

DEFAULTS = IrisSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layers", type=int, default=DEFAULTS.layers, help="hidden layers: 1 or 2")
    parser.add_argument(
        "--hidden", type=int, default=DEFAULTS.hidden, help="neurons per hidden layer"
    )
    parser.add_argument("--folds", type=int, default=DEFAULTS.folds, help="cross-validation folds")
    parser.add_argument(
        "--grad",
        default=DEFAULTS.grad,
        help=f"derivative source: {', '.join(DERIVATIVE_SOURCES)} (the last three are "
        "controls: the batch's mean measured slope, the measured slopes permuted across "
        "samples and neurons, the nominal device model's slope); a comma-separated "
        "list runs each on the same seeds and prints a comparison",
    )
    parser.add_argument("--task", choices=TASKS, default=DEFAULTS.task,
                        help="what is learnt: iris, or a seeded 2-D task (two rings, two "
                             "spirals, XOR clusters; 200 points, see labctl.training.tasks)")
    parser.add_argument("--activation", choices=ACTIVATIONS, default=DEFAULTS.activation,
                        help="hidden nonlinearity of the network under training: mtj "
                             "neurons, or the software controls tanh and linear")
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULTS.backend,
                        help="station: the devices on the station; model: the simulator's "
                             "device model, offline")
    parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs,
                        help="most epochs per fold")
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr, help="learning rate")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default=DEFAULTS.optimizer,
                        help="weight update rule")
    parser.add_argument(
        "--schedule",
        choices=["constant", "step", "exponential", "cosine"],
        default=DEFAULTS.schedule,
        help="learning-rate decay",
    )
    parser.add_argument("--decay-factor", type=float, dest="decay_factor",
                        default=DEFAULTS.decay_factor,
                        help="learning-rate factor of the exponential (per epoch) and step "
                             "(per --step-size epochs) schedules, in (0, 1]")
    parser.add_argument("--step-size", type=int, dest="step_size", default=DEFAULTS.step_size,
                        help="epochs between the step schedule's decays")
    parser.add_argument(
        "--weight-decay",
        type=float,
        dest="weight_decay",
        default=DEFAULTS.weight_decay,
        help="decoupled weight decay (AdamW)",
    )
    parser.add_argument(
        "--batch-size", type=int, dest="batch_size", help="minibatch size (default: full batch)"
    )
    parser.add_argument(
        "--patience", type=int, help="early stopping on validation loss after this many epochs"
    )
    parser.add_argument("--di", type=quantity("A"), default=DEFAULTS.di,
                        help="finite-difference step (A; e.g. 1e-6 or 1uA)")
    parser.add_argument(
        "--i-center",
        type=quantity("A"),
        dest="i_center",
        help="bias current at zero pre-activation (A; default: 40 %% of the station's current "
        f"limit, {DEFAULTS.i_center:g} A on the model backend)",
    )
    parser.add_argument(
        "--i-scale",
        type=quantity("A"),
        dest="i_scale",
        help="bias current per unit pre-activation (A; default: 20 %% of the station's current "
        f"limit, {DEFAULTS.i_scale:g} A on the model backend)",
    )
    parser.add_argument("--nplc", type=float, default=DEFAULTS.nplc,
                        help="SMU integration time (power-line cycles)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary only")
    add_progress_argument(parser)
    parser.add_argument(
        "--resume",
        metavar="SESSION",
        type=Path,
        help="continue a session (its directory or its id) from its last completed epoch: "
        "one killed, interrupted or ended by a fault",
    )
    parser.add_argument(
        "--new-limits",
        action="store_true",
        help="with --resume: continue although the station file's wiring or limits changed "
        "since the session was recorded, using the new ones",
    )
    add_pair_arguments(parser)
    add_station_arguments(parser)
    parser.set_defaults(variability=None)


def operating_point(args: argparse.Namespace, wiring) -> tuple[float, float]:
    """Bias centre and scale (A): as given, else from the pairs' limits (station backend)."""
    if args.backend != "station":
        centre, scale = DEFAULTS.i_center, DEFAULTS.i_scale
    else:
        centre, scale = wiring.operating_point()
    return (
        args.i_center if args.i_center is not None else centre,
        args.i_scale if args.i_scale is not None else scale,
    )


def settings_from(args: argparse.Namespace, grad: str, variability: str,
                  bias: tuple[float, float], temperature_k: float | None = None) -> IrisSettings:
    return IrisSettings(
        layers=args.layers,
        hidden=args.hidden,
        folds=args.folds,
        grad=grad,
        backend=args.backend,
        epochs=args.epochs,
        lr=args.lr,
        optimizer=args.optimizer,
        schedule=args.schedule,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        patience=args.patience,
        seed=args.seed if args.seed is not None else 0,
        di=args.di,
        i_center=bias[0],
        i_scale=bias[1],
        nplc=args.nplc,
        variability=variability,
        temperature_k=temperature_k,
        task=args.task,
        activation=args.activation,
        decay_factor=args.decay_factor,
        step_size=args.step_size,
    )


class LiveSource:
    """Hidden layers on the station (pairs 1.. in order) or in the device model; a control
    derivative source wraps each in :class:`ControlledNeurons`."""

    def __init__(self, settings: IrisSettings, engine: Engine | None = None,
                 measured: MeasuredDevices | None = None):
        """``measured``: the station file's measured devices (``[simulation] devices`` or
        ``iv_sessions``), which the model backend then runs on, layer after layer."""
        s = settings
        self.engine = engine
        mode = measured_mode(s.grad)
        if s.backend == "station":
            self.devices: list = [
                StationNeurons(
                    engine,
                    s.layer_pairs(i),
                    di=s.di,
                    grad=mode,
                )
                for i in range(s.layers)
            ]
        else:
            self.devices = model_layers(s, measured)
        self._layers = [
            ControlledNeurons(d, s.grad, seed=s.seed * 10 + i) if s.grad in CONTROL_MODES
            else d
            for i, d in enumerate(self.devices)
        ]

    def layers(self, fold: int):
        return self._layers

    def before_epoch(self, fold: int, epoch: int) -> None:
        for layer in self._layers:
            if isinstance(layer, ControlledNeurons):
                layer.before_epoch(fold, epoch)

    def exact_derivatives(self, fold: int):
        """Per layer, the exact dV/dI (Ohm) at bias currents (A): the device model's, or the
        simulated station's oracle; None on a station of real devices."""
        out = []
        for d in self.devices:
            if isinstance(d, ModelNeurons):
                out.append(d.exact_dvdi)
            elif self.engine is not None and self.engine.station.oracle is not None:
                oracle, pairs = self.engine.station.oracle, d.pairs
                out.append(lambda currents, oracle=oracle, pairs=pairs: oracle.dvdi(
                    pairs, currents))
            else:
                return None
        return out


def _train_one(args, grad: str, out: dict, bar: Progress | None = None,
               label: str = "") -> dict:
    """One cross-validated run (a session); returns its summary."""
    config = station_config(args)
    # Real devices have no preset: record none rather than a default that would read as theirs.
    variability = args.variability or (
        config.simulation.variability if config.simulation
        else "nominal" if args.backend == "model" else None
    )
    # The model backend's devices are the station's at its temperature, as its preset is.
    temperature = (config.simulation.temperature_k
                   if config.simulation and args.backend == "model" else None)
    settings = settings_from(args, grad, variability, operating_point(args, config.wiring),
                             temperature)
    settings, pair_choice = resolve_training(args, config, settings)  # --pairs, --devices-from
    limit = config.wiring.max_current_a()
    settings.validate(limit, len(config.pairs) if settings.backend == "station" else None)
    seeds = {
        "split": settings.seed,
        "weights": settings.seed,
        "station": config.simulation.seed if config.simulation else None,
    }
    cfg = {"command": "train iris", "settings": settings.as_dict(), "max_current_a": limit}
    if pair_choice is not None:
        cfg["pair_selection"] = pair_choice
    on_station = settings.backend == "station"
    with instrument_session(
        args, "train iris", cfg, seeds, need_station=on_station, station_cfg=config,
        dimension="epoch",
    ) as run:
        engine = Engine(run.station, nplc=settings.nplc) if on_station else None
        if engine is not None:
            _preflight(engine, config.wiring, settings, run.writer)
        source = LiveSource(settings, engine, _measured(config, settings))
        sink = RecordSink(run.writer)
        results = train_folds(settings, limit, source, sink, progress=bar, label=label or grad,
                              initial_weights=initial_weights(settings))
        summary = summarise(results) | {"grad": grad, "session": run.writer.path.name}
        run.summary.update({k: v for k, v in summary.items() if k != "session"})
        run.headline = iris_headline(summary, settings)
    plots.session_plots(run.writer.path, run.writer.path)  # as `labctl report` draws them
    out[grad] = summary
    return summary


def _measured(config, settings: IrisSettings) -> MeasuredDevices | None:
    """The measured devices the model backend runs on: the station file's, if it has any."""
    if settings.backend != "model" or config.simulation is None:
        return None
    return config.simulation.measured_devices()


def _preflight(engine: Engine, wiring, settings: IrisSettings, writer) -> None:
    """Refuse to train on pairs whose ADC does not read V_B - V_A (recorded either way)."""
    pairs = [wiring.pair(k) for i in range(settings.layers) for k in settings.layer_pairs(i)]
    checks = check_pairs(engine, pairs, settings.di)
    record_differential_checks(writer, checks)
    refuse_failed(checks)


def _task_title(settings: IrisSettings) -> str:
    return "Iris" if settings.task == "iris" else settings.task


def _resume(args) -> int:
    """Continue a session: replay its recorded epochs, then train live to the end.

    A session killed, interrupted or ended by a fault resumes; its arrays are verified
    first, the station file is re-read (see :func:`resume_station`) and the differential
    path is checked again before any training.
    """
    args.resume = find_session(args.resume, args.sessions_dir)
    session = Session.open(args.resume)
    if not session.resumable:
        raise ValueError(
            f"{args.resume}: session already finished ({session.stop['exit_status']}); "
            "nothing to resume"
        )
    session.verify_arrays()
    recorded = RecordedRun(session)
    settings = recorded.settings
    config = resume_station(args, session)
    on_station = settings.backend == "station"
    limit = config.wiring.max_current_a() if on_station else recorded.max_current_a
    if on_station:
        settings.validate(limit, len(config.pairs))
    with instrument_session(args, "train iris", {}, {}, need_station=on_station,
                            station_cfg=config, resume=session) as run:
        engine = Engine(run.station, nplc=settings.nplc) if on_station else None
        if engine is not None:
            _preflight(engine, config.wiring, settings, run.writer)
        live = LiveSource(settings, engine, _measured(config, settings))
        source = ReplaySource(recorded, live=live)
        sink = RecordSink(run.writer, recorded=set(recorded.epochs))
        done = sorted(recorded.folds)
        todo = [f for f in range(settings.folds) if f not in recorded.folds]
        results = [recorded.fold_result(f) for f in done]
        with Progress(len(todo) * settings.epochs, f"train iris {settings.grad}",
                      unit="epoch", enabled=wanted(args)) as bar:
            results += train_folds(settings, recorded.max_current_a, source, sink, folds=todo,
                                   progress=bar, label=settings.grad, live_max_current_a=limit,
                                   recorded=set(recorded.epochs),
                                   initial_weights=initial_weights(settings))
        summary = summarise(sorted(results, key=lambda r: r.fold)) | {"grad": settings.grad}
        run.summary.update(summary)
        run.headline = iris_headline(summary, settings)
    plots.session_plots(args.resume, args.resume)  # the whole session, both segments
    _print_summary(args, {settings.grad: summary | {"session": args.resume.name}})
    return 0


def iris_headline(summary: dict, settings) -> str:
    """One line of a training's result: MTJ (or the control network's) and tanh accuracy
    over the folds."""
    activation = getattr(settings, "activation", "mtj")
    kind = "MTJ" if activation == "mtj" else activation
    task = getattr(settings, "task", "iris")
    return (f"{kind} {summary['accuracy']:.2%} +- {summary['accuracy_std']:.2%}, tanh "
            f"{summary['tanh_accuracy']:.2%} ({settings.folds} folds, {summary['grad']}, "
            f"{settings.backend}{'' if task == 'iris' else ', ' + task})")


def _print_summary(args, summaries: dict) -> None:
    if args.json:
        print(
            json.dumps(
                summaries if len(summaries) > 1 else next(iter(summaries.values())), indent=2
            )
        )
        return
    w = max(8, *map(len, summaries))  # "nominal-model" is wider than the old modes
    print(f"{'grad':<{w}} {'MTJ accuracy':>14} {'tanh accuracy':>14}  session")
    for grad, s in summaries.items():
        print(
            f"{grad:<{w}} {s['accuracy']:>8.2%} +- {s['accuracy_std']:.1%} "
            f"{s['tanh_accuracy']:>7.2%} +- {s['tanh_accuracy_std']:.1%}  {s['session']}"
        )


def run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        return _resume(args)
    grads = [g.strip() for g in args.grad.split(",") if g.strip()]
    bad = [g for g in grads if g not in DERIVATIVE_SOURCES]
    if bad or not grads:
        raise ValueError(
            f"--grad must be among {', '.join(DERIVATIVE_SOURCES)}, got {args.grad!r}"
        )
    summaries: dict[str, dict] = {}
    # One bar over every epoch of every fold of every grad compared (the tanh baselines
    # train in software in a fraction of that time and are not counted).
    with Progress(args.folds * args.epochs * len(grads), f"train iris {grads[0]}",
                  unit="epoch", enabled=wanted(args)) as bar:
        for k, grad in enumerate(grads):
            label = grad if len(grads) == 1 else f"{grad} (grad {k + 1}/{len(grads)})"
            _train_one(args, grad, summaries, bar, label)
    if len(grads) > 1:  # each session of the comparison shows all of them
        dirs = [Path(args.sessions_dir) / s["session"] for s in summaries.values()]
        for d in dirs:
            plots.comparison_plot(dirs, d / "training-comparison.png")
    _print_summary(args, summaries)
    return 0
