"""PNG plots (matplotlib, Agg backend, imported only when a plot is made): one function per
plot kind, and :func:`session_plots`, which makes every plot a recorded session allows.

Kinds: :func:`iv_curves` (both devices and V_B - V_A), :func:`error_vs_step` (fd-scan),
:func:`training_curves`, :func:`derivative_scatter` (every hidden layer),
:func:`gradient_fidelity`, :func:`tune_progress`, :func:`metric_vs_factor` (sweeps).
"""

from __future__ import annotations

from labctl.plots.derivatives import LayerDerivatives, derivative_scatter
from labctl.plots.fd_scan import error_vs_step
from labctl.plots.fidelity import gradient_fidelity
from labctl.plots.iv import iv_curves
from labctl.plots.sweep import metric_vs_factor
from labctl.plots.training import TrainingRun, training_curves
from labctl.plots.tune import tune_progress

__all__ = [
    "LayerDerivatives", "TrainingRun", "comparison_plot", "derivative_scatter",
    "error_vs_step", "gradient_fidelity", "iv_curves", "metric_vs_factor", "session_plots",
    "training_curves", "tune_progress",
]


def session_plots(*args, **kwargs):
    """See :func:`labctl.plots.session.session_plots` (imported lazily: it reads records)."""
    from labctl.plots.session import session_plots as make

    return make(*args, **kwargs)


def comparison_plot(*args, **kwargs):
    """See :func:`labctl.plots.session.comparison_plot`."""
    from labctl.plots.session import comparison_plot as make

    return make(*args, **kwargs)
