"""What every plot shares: an Agg figure without pyplot, the run's identity as a title,
legends placed outside the data, and a deterministic PNG writer."""

from __future__ import annotations

from pathlib import Path

DPI = 110
# No timestamp or software version in the PNG: the same data gives the same bytes, so the
# command's, report's and replay's files of one session can be compared byte for byte.
_PNG_METADATA = {"Software": None}


def figure(figsize: tuple[float, float]):
    """A figure drawn by the Agg backend, without pyplot (no global state, faster import);
    constrained layout keeps titles, axis labels and outside legends inside the canvas."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def legend_outside(ax, **kwargs) -> None:
    """The axes' legend to the right of the plot area, where it cannot hide data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  fontsize=kwargs.pop("fontsize", 7), **kwargs)


def figure_legend_below(fig, axes, ncol: int = 3) -> None:
    """One legend for the whole figure, below its panels (outside every plot area)."""
    handles, labels, seen = [], [], set()
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in seen:
                seen.add(label)
                handles.append(h)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=7)


def save(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (metadata-free, so reproducible) and return it."""
    fig.savefig(path, dpi=DPI, metadata=_PNG_METADATA)
    return path
