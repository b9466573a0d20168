"""Source ramps: the levels an SMU steps through on its way from one level to another."""

from __future__ import annotations

import math


def ramp_levels(start: float, step: float, target: float = 0.0) -> list[float]:
    """Levels from ``start`` to exactly ``target`` (default 0), each at most ``step`` from
    the previous one (``start`` itself not included); A or V, as the source is."""
    if not step > 0:
        raise ValueError(f"ramp step must be > 0, got {step!r}")
    n = math.ceil(abs(start - target) / step - 1e-9)
    # "+ 0.0" turns a negative start's final -0.0 into 0.0.
    return [target + (start - target) * (n - k) / n + 0.0 for k in range(1, n + 1)]
