"""FD scan: the derivative's error against the finite-difference step dI, per mode, with
the command's recommendation marked."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from labctl.plots.figure import figure, figure_legend_below, save

#: Recorded column -> what it is, as the legend says it.
MODES = {
    "forward_raw": "forward (raw)",
    "forward_cal": "forward, dI = 0 offset subtracted",
    "swap": "swap (A and B exchanged)",
    "swap_vs_model": "swap, against the simulator's exact dV/dI",
}


def error_vs_step(path: Path, steps_a: np.ndarray, errors: dict[str, np.ndarray], title: str,
                  *, recommended_di_a: float | None = None,
                  theory_di_a: float | None = None) -> Path:
    """Median |relative error| of dV/dI against dI (both log; dI in uA), one line per mode
    (``errors``: a column of :data:`MODES` or any label -> one value per step); the
    recommended dI (A) is marked, the forward-difference optimum dotted if given."""
    steps_ua = np.asarray(steps_a, dtype=float) * 1e6
    fig = figure((7.5, 5.4))
    ax = fig.subplots()
    for key, e in errors.items():
        e = np.asarray(e, dtype=float)
        shown = np.isfinite(e) & (e > 0)  # a log axis cannot show 0; NaN: not measured
        if shown.any():
            ax.loglog(steps_ua[shown], e[shown] * 100, "o-", ms=4, label=MODES.get(key, key))
    if recommended_di_a is not None and math.isfinite(recommended_di_a):
        ax.axvline(recommended_di_a * 1e6, color="k", lw=1.2,
                   label=f"recommended dI = {recommended_di_a * 1e6:.3g} uA")
        if "swap" in errors:
            j = int(np.argmin(np.abs(np.asarray(steps_a, dtype=float) - recommended_di_a)))
            ax.plot(steps_ua[j], float(np.asarray(errors["swap"])[j]) * 100, "k*", ms=12)
    if theory_di_a is not None and math.isfinite(theory_di_a) and theory_di_a > 0:
        ax.axvline(theory_di_a * 1e6, color="0.4", lw=1, ls=":",
                   label=f"forward optimum 1.68 sqrt(sigma/|V''|) = {theory_di_a * 1e6:.3g} uA")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    # The steps tried as the ticks, in plain numbers (log-axis labels like 3x10^-1 collide).
    ax.set_xticks(steps_ua, [f"{s:g}" for s in steps_ua])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("finite-difference step dI (uA)")
    ax.set_ylabel("median |dV/dI error| (%)")
    ax.grid(alpha=0.3, which="both")
    figure_legend_below(fig, [ax], ncol=2)
    fig.suptitle(title, fontsize=9)
    return save(fig, path)
