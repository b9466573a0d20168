"""The experiments of the reproduction table, each an ordinary sweep grid over seeds.

The reference figures are those the method's paper reports (arXiv 2603.03947): 93.3 % on
Iris with one hidden layer of measured MTJ pairs, 95 %+ on Iris and 97.9 % on MNIST with
four hidden layers in simulation, on a par with tanh, and knowledge distillation into
small MTJ networks. Ours come from labctl's own commands on the built-in simulated
station (``train iris``: the station backend drives the simulated instruments over their
wire protocols, the nearest thing here to the paper's hardware run) or on the device
model (``--backend model``, ``simulate mnist``). Every grid can be run by hand as well:
:func:`grid_text` is what ``labctl sweep`` is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Experiment:
    """One row of the table: a command's grid over seeds and the metric compared.

    ``metric``: the MTJ network's accuracy column of the sweep table (0..1);
    ``baseline``: the column it is compared with on the same seeds (the tanh network, or
    the network without distillation), or None; ``cell_s``: a cell's wall time (s) as
    measured on the 2-core reference machine with nothing else running, for the time
    estimate (None: not measured yet).
    """

    name: str
    title: str
    paper: str
    paper_value: float | None  # the paper's figure as a fraction, where it gives one
    command: str
    fixed: dict[str, Any]
    metric: str
    baseline: str | None
    baseline_label: str
    cell_s: float | None
    grid: dict[str, list[Any]] = field(default_factory=dict)

    def grid_text(self, seeds: int, overrides: dict[str, Any] | None = None) -> str:
        """The sweep grid (TOML) of this experiment over seeds 0..seeds-1, with the fixed
        options ``overrides`` (option name -> value) added or replaced."""
        fixed = {**self.fixed, **(overrides or {})}
        lines = [f"# labctl paper: {self.title}", f"command = {json.dumps(self.command)}",
                 f"name = {json.dumps('paper-' + self.name)}", "", "[fixed]"]
        lines += [f"{k} = {_toml(v)}" for k, v in fixed.items()]
        lines += ["", "[grid]", f'seed = "0:{seeds}"']
        lines += [f"{k} = [{', '.join(_toml(v) for v in levels)}]"
                  for k, levels in self.grid.items()]
        return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="iris-station",
        title="Iris, 1 hidden layer of 8 MTJ pairs, fd-swap, on the simulated station",
        paper="93.3 % (measured hardware)", paper_value=0.933,
        command="train iris", fixed={}, metric="accuracy", baseline="tanh_accuracy",
        baseline_label="tanh", cell_s=125.0,
    ),
    Experiment(
        name="iris-model",
        title="Iris, 1 hidden layer, fd-swap, on the device model",
        paper="95 %+ (simulation), on a par with tanh", paper_value=0.95,
        command="train iris", fixed={"backend": "model"}, metric="accuracy",
        baseline="tanh_accuracy", baseline_label="tanh", cell_s=3.6,
    ),
    Experiment(
        name="mnist",
        title="MNIST, 4 hidden MTJ layers 1024-1024-512-512, fd-swap, device model",
        paper="97.9 % (simulation), on a par with tanh", paper_value=0.979,
        command="simulate mnist", fixed={}, metric="mtj_test_acc",
        baseline="tanh_test_acc", baseline_label="tanh", cell_s=420.0,
    ),
    Experiment(
        name="mnist-kd",
        title="MNIST, a small MTJ network (2 x 128) distilled from a 2048-2048 tanh teacher",
        paper="knowledge distillation into small MTJ networks (no figure in our summary)",
        paper_value=None, command="simulate mnist",
        fixed={"widths": "128,128", "distill": True}, metric="mtj_distilled_test_acc",
        baseline="mtj_test_acc", baseline_label="same MTJ net without KD", cell_s=None,
    ),
)


def experiment(name: str) -> Experiment:
    """The experiment called ``name``; ValueError listing the known names."""
    for e in EXPERIMENTS:
        if e.name == name:
            return e
    raise ValueError(f"no experiment {name!r}; known: {', '.join(e.name for e in EXPERIMENTS)}")
