"""A cell's headline metrics, from its --json summary (or its session's stop summary).

``train iris``: MTJ and tanh test accuracy over the folds and their per-fold spread.
``simulate mnist``: test accuracy of each network it trained, the MTJ/tanh epoch-time
ratio. Any other command (an experiment to come): the numbers at the top level of its
summary. Accuracies are fractions (0..1), times in s.
"""

from __future__ import annotations

import math
from typing import Any


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _mnist(summary: dict) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, model in (summary.get("models") or {}).items():
        if isinstance(model, dict):
            out[f"{name}_test_acc"] = _number(model.get("test_acc"))
            out[f"{name}_best_val_acc"] = _number(model.get("best_val_acc"))
    out["epoch_time_ratio"] = _number(summary.get("epoch_time_ratio_mtj_over_tanh"))
    if "distillation_gain" in summary:
        out["distillation_gain"] = _number(summary["distillation_gain"])
    return out


def headline(command: str, summary: dict | None) -> dict[str, float | None]:
    """Metric name -> value (None where the summary has none)."""
    if not summary:
        return {}
    if command == "simulate mnist" and "models" in summary:  # else a session's headline
        values = _mnist(summary)
    else:
        values = {k: _number(v) for k, v in summary.items() if _number(v) is not None}
    return {k: (None if v is not None and math.isnan(v) else v) for k, v in values.items()}
