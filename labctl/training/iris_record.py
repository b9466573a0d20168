"""Iris runs as session records: the live sink, and sources that replay or resume.

Streams of a training session:

- ``epoch``: fold, epoch, train_loss, train_acc, val_loss, val_acc, lr, the gradient
  fidelity grad_cosine, dvdi_err_median, dvdi_err_p90 (NaN where it cannot be known; see
  :mod:`labctl.training.fidelity`; sessions recorded before it lack these keys and still
  read), and two arrays (resource/datum): ``weights`` (every weight, flattened in MLP
  order) and ``measurements`` (layers, rows, neurons, 3): what each hidden layer's neurons
  were asked (bias current, A) and answered (V, and dV/dI in Ohm, the derivative the
  trainer used) during the epoch.
- ``fold``: fold, val_acc, tanh_val_acc, epochs, best_epoch (-1: the last), and the
  fold's ``final_weights``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from labctl.records.session import RecordError, Session, SessionWriter, data_key, stream_name
from labctl.training.fidelity import FIDELITY_KEYS
from labctl.training.iris import FoldResult, IrisSettings
from labctl.training.neuron_record import EndOfRecord, ReplayNeurons
from labctl.training.neurons import NeuronArray, NeuronReadout

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
# What RecordedRun reads from each stream (Session.check_stream): data key -> dtype.
EPOCH_KEYS = {
    "fold": "integer",
    "epoch": "integer",
    **dict.fromkeys(METRICS, "number"),
    "weights": "external",
    "measurements": "external",
}
FOLD_KEYS = {
    "fold": "integer",
    "val_acc": "number",
    "tanh_val_acc": "number",
    "epochs": "integer",
    "best_epoch": "integer",
    "final_weights": "external",
}


def _key(dtype: str = "number", shape=(), external: bool = False) -> dict:
    return data_key("labctl.training.iris", dtype, shape=shape, external=external)


def flatten(weights: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in weights])


def unflatten(flat: np.ndarray, like: list[np.ndarray]) -> list[np.ndarray]:
    out, pos = [], 0
    for w in like:
        out.append(flat[pos : pos + w.size].reshape(w.shape))
        pos += w.size
    return out


class RecordSink:
    """Writes every epoch and fold to the session as it finishes (flushed per document)."""

    def __init__(
        self,
        writer: SessionWriter,
        recorded: set[tuple[int, int]] | None = None,
    ):
        self.writer = writer
        self.recorded = recorded or set()  # epochs a resumed session has already
        self.epoch_stream = writer.stream(
            "epoch",
            {
                "fold": _key("integer"),
                "epoch": _key("integer"),
                **{m: _key() for m in METRICS},
                **{k: _key() for k in FIDELITY_KEYS},
                "weights": _key("array", [None], external=True),
                "measurements": _key("array", [None, None, None, 3], external=True),
            },
            primary=True,
        )
        self.fold_stream = writer.stream(
            "fold",
            {
                "fold": _key("integer"),
                "val_acc": _key(),
                "tanh_val_acc": _key(),
                "epochs": _key("integer"),
                "best_epoch": _key("integer"),
                "final_weights": _key("array", [None], external=True),
                # The tanh baseline's curves (rows: train_loss, train_acc, val_loss,
                # val_acc; a column per epoch), so that plots draw it from the record.
                "tanh_history": _key("array", [4, None], external=True),
            },
        )

    def epoch(self, fold: int, row: dict, weights, measurements) -> None:
        if (fold, row["epoch"]) in self.recorded:
            return  # replayed while resuming: it is in the record already
        data = {"fold": fold, "epoch": int(row["epoch"]), **{m: float(row[m]) for m in METRICS}}
        data |= {k: float(row.get(k, float("nan"))) for k in FIDELITY_KEYS}
        data["weights"] = flatten(weights)
        data["measurements"] = np.stack(measurements) if measurements else np.zeros((0, 0, 0, 3))
        self.writer.event(self.epoch_stream, data)

    def fold(self, result: FoldResult) -> None:
        self.writer.event(
            self.fold_stream,
            {
                "fold": result.fold,
                "val_acc": result.val_acc,
                "tanh_val_acc": result.tanh_val_acc,
                "epochs": result.epochs,
                "best_epoch": -1 if result.best_epoch is None else result.best_epoch,
                "final_weights": flatten(result.weights),
                "tanh_history": np.array([result.tanh_history.get(k, []) for k in (
                    "train_loss", "train_acc", "val_loss", "val_acc")], dtype=np.float64),
            },
        )


class NullSink:
    """Keeps the rows (for comparing a replay with its record)."""

    def __init__(self):
        self.rows: dict[tuple[int, int], dict] = {}
        self.results: list[FoldResult] = []

    def epoch(self, fold, row, weights, measurements) -> None:
        self.rows[(fold, int(row["epoch"]))] = {m: row[m] for m in METRICS}

    def fold(self, result: FoldResult) -> None:
        self.results.append(result)


class RecordedRun:
    """A training session read back: settings, epochs (with their arrays) and folds."""

    def __init__(self, session: Session):
        self.session = session
        config = session.start.get("config", {})
        if "settings" not in config:
            raise RecordError(
                f"{session.path}: not an Iris training session (no settings in its start document)"
            )
        where = f"{session.file}, line 1: start document"
        if not isinstance(config.get("max_current_a"), int | float) or not (
            config["max_current_a"] > 0
        ):
            raise RecordError(f"{where}: key 'config.max_current_a' missing or not positive")
        self.max_current_a = float(config["max_current_a"])
        self.settings = _settings(config["settings"], self.max_current_a, where)
        for stream, keys in (("epoch", EPOCH_KEYS), ("fold", FOLD_KEYS)):
            session.check_stream(stream, keys)
        _check_optional(session, "epoch", FIDELITY_KEYS)

        def events(stream: str) -> list[dict]:  # a run killed early may lack a stream
            return session.events(stream) if stream in session.descriptors else []

        self.epochs = {(e["fold"], e["epoch"]): e for e in events("epoch")}
        self.folds = {e["fold"]: e for e in events("fold")}

    def measurements(self, fold: int, epoch: int) -> np.ndarray:
        """(layers, rows, hidden, 3) as recorded; RecordError if the file holds otherwise."""
        block = self.session.load_array(self.epochs[(fold, epoch)]["measurements"])
        s = self.settings
        if block.dtype.kind not in "fiu" or not (
            block.ndim == 4
            and block.shape[3] == 3
            and (block.size == 0 or block.shape[0] == s.layers and block.shape[2] == s.hidden)
        ):
            raise RecordError(
                f"{self.session.path}: fold {fold} epoch {epoch}: measurements of shape "
                f"{block.shape} ({block.dtype}), expected ({s.layers}, rows, {s.hidden}, 3)"
            )
        return block

    def fold_result(self, fold: int) -> FoldResult:
        f = self.folds[fold]
        weights = self.session.load_array(f["final_weights"])
        if weights.ndim != 1 or weights.dtype.kind not in "fiu":
            raise RecordError(
                f"{self.session.path}: fold {fold}: final weights of shape {weights.shape} "
                f"({weights.dtype}), expected a flat array of numbers"
            )
        return FoldResult(
            fold,
            f["val_acc"],
            f["tanh_val_acc"],
            f["epochs"],
            None if f["best_epoch"] < 0 else f["best_epoch"],
            weights=[weights],
            fidelity=self.fidelity(fold),
        )

    def fidelity(self, fold: int) -> dict[str, list[float]]:
        """FIDELITY_KEYS -> the fold's recorded value per epoch (NaN where not recorded)."""
        rows = [row for (f, _), row in sorted(self.epochs.items()) if f == fold]
        return {k: [float(r.get(k, float("nan"))) for r in rows] for k in FIDELITY_KEYS}


def _check_optional(session: Session, stream: str, keys) -> None:
    """Keys a stream gained later: absent is fine, present must be a plain number."""
    # Every run segment's descriptor: a resumed old session mixes both kinds.
    for uid, desc in session._descriptors_by_uid.items():
        if stream_name(desc) != stream:
            continue
        for key in keys:
            spec = desc["data_keys"].get(key)
            if spec is not None and (spec.get("external") or spec["dtype"] not in (
                    "number", "integer")):
                raise RecordError(
                    f"{session.file}: stream {stream!r} (descriptor {uid}): data key "
                    f"{key!r} is {spec['dtype']}, expected number"
                )


_ANNOTATION_KINDS = {"int": "integer", "float": "number", "str": "string", "bool": "boolean",
                     "None": "null"}


def _fits(value, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean" or isinstance(value, bool):
        return kind == "boolean" and isinstance(value, bool)
    return isinstance(value, {"integer": int, "number": int | float, "string": str}[kind])


def _settings(raw: dict, max_current_a: float, where: str) -> IrisSettings:
    """IrisSettings from a start document, every field type-checked (against the field's
    annotation) and validated as a live run validates them."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(IrisSettings)}
    for name, value in raw.items():
        label = f"{where}: key 'config.settings.{name}'"
        if name not in fields:
            raise RecordError(f"{label} is not an Iris setting of this labctl")
        kinds = [_ANNOTATION_KINDS.get(t.strip()) for t in fields[name].split("|")]
        if None in kinds:  # an annotation this check does not know: validate() judges
            continue
        if not any(_fits(value, kind) for kind in kinds):
            raise RecordError(f"{label} is {value!r}, expected {' or '.join(kinds)}")
    settings = IrisSettings(**raw)
    try:
        if settings.seed < 0:
            raise ValueError(f"seed must not be negative, got {settings.seed}")
        settings.validate(max_current_a, None)
        from simulators.mtj import variability_preset

        if settings.variability is not None:
            variability_preset(settings.variability)
    except ValueError as err:
        raise RecordError(f"{where}: config.settings: {err}") from None
    return settings


class ReplaySource:
    """Hidden layers that answer from the record; ``live`` takes over past its end (resume)."""

    def __init__(self, run: RecordedRun, live=None):
        self.run = run
        self.live = live
        n = run.settings.hidden
        self.replay = [ReplayNeurons(n, f"layer {i + 1}") for i in range(run.settings.layers)]
        self.switch = [_Switch(r) for r in self.replay]

    def layers(self, fold: int) -> list[NeuronArray]:
        if self.live is not None:
            for s, live in zip(self.switch, self.live.layers(fold), strict=True):
                s.live = live
        return self.switch

    def exact_derivatives(self, fold: int):
        """The live source's exact dV/dI per layer (resume), else None: a plain replay
        compares only what was recorded."""
        exact = getattr(self.live, "exact_derivatives", None)
        return exact(fold) if exact is not None else None

    def before_epoch(self, fold: int, epoch: int) -> None:
        if (fold, epoch) in self.run.epochs:
            block = self.run.measurements(fold, epoch)
            for layer, s in enumerate(self.switch):
                s.replay.load(block[layer], f"fold {fold} epoch {epoch}")
                s.use_live = False
            return
        if self.live is None:
            raise EndOfRecord(f"the record ends before epoch {epoch} of fold {fold}")
        for s in self.switch:
            s.replay.finish()
            s.use_live = True
        self.live.before_epoch(fold, epoch)


class _Switch:
    def __init__(self, replay: ReplayNeurons):
        self.replay, self.live, self.use_live = replay, None, False
        self.n = replay.n

    def measure(self, currents: np.ndarray) -> NeuronReadout:
        return (self.live if self.use_live else self.replay).measure(currents)
