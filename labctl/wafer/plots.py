"""Wafer-report PNGs: parameter histograms, wafer maps, pair mismatch (matplotlib Agg, no
pyplot, as :mod:`labctl.plots`). Units: Ohm, V, A (shown in uA), TMR0 a ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(figsize: tuple[float, float]):
    """A figure drawn by the Agg backend, without pyplot (no global state, faster import)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)

LABELS = {"r_p": "R_P (Ohm)", "tmr0": "TMR0", "v_h": "V_h (V)", "i_off": "I_off (uA)",
          "i_w": "I_w (uA)", "residual_rms_v": "fit residual (uV rms)"}
_DISPLAY = {"i_off": 1e6, "i_w": 1e6, "residual_rms_v": 1e6}


def _shown(name: str, values) -> np.ndarray:
    return np.asarray(values, dtype=float) * _DISPLAY.get(name, 1.0)


def histograms(path: Path, rows: list[dict], names: tuple[str, ...], title: str) -> Path:
    """One histogram per parameter of the fitted devices, ok devices and the others
    stacked in different colours."""
    fig = _figure((4.0 * min(len(names), 3), 3.3 * ((len(names) + 2) // 3)))
    axes = np.atleast_1d(fig.subplots((len(names) + 2) // 3, min(len(names), 3))).ravel()
    for ax, name in zip(axes, names, strict=False):
        ok = _shown(name, [r[name] for r in rows if r["status"] == "ok"])
        other = _shown(name, [r[name] for r in rows if r["status"] != "ok" and r["fitted"]])
        both = np.concatenate([ok, other])
        both = both[np.isfinite(both)]
        if both.size:
            bins = np.histogram_bin_edges(both, bins=30)
            ax.hist([ok[np.isfinite(ok)], other[np.isfinite(other)]], bins=bins, stacked=True,
                    label=["ok", "not ok"], color=["tab:blue", "tab:red"])
        ax.set_xlabel(LABELS.get(name, name))
        ax.set_ylabel("devices")
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _grid(values: dict[tuple[int, int], float]) -> tuple[np.ndarray, list[int], list[int]]:
    cols = sorted({d[0] for d in values})
    rows = sorted({d[1] for d in values})
    grid = np.full((len(rows), len(cols)), np.nan)
    for (c, r), v in values.items():
        grid[rows.index(r), cols.index(c)] = v
    return grid, cols, rows


def wafer_maps(path: Path, maps: dict[str, dict[tuple[int, int], float]], title: str) -> Path:
    """One map per entry of ``maps`` (label -> die (col, row) -> value): per-die medians of
    the parameters and the yield, each die a cell labelled with its value."""
    n = len(maps)
    fig = _figure((3.6 * min(n, 3), 3.2 * ((n + 2) // 3)))
    axes = np.atleast_1d(fig.subplots((n + 2) // 3, min(n, 3))).ravel()
    for ax, (label, values) in zip(axes, maps.items(), strict=False):
        grid, cols, rows = _grid({d: _shown(label, v).item() for d, v in values.items()})
        im = ax.imshow(grid, origin="lower", cmap="viridis",
                       extent=(cols[0] - 0.5, cols[-1] + 0.5, rows[0] - 0.5, rows[-1] + 0.5))
        for (c, r), v in values.items():
            shown = _shown(label, v).item()
            ax.text(c, r, "" if not np.isfinite(shown) else f"{shown:.3g}", ha="center",
                    va="center", fontsize=6, color="w")
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_title(LABELS.get(label, label), fontsize=9)
        ax.set_xlabel("die column")
        ax.set_ylabel("die row")
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def pair_mismatch(path: Path, di_over_iw: np.ndarray, rp_dev: np.ndarray,
                  limits: tuple[float, float], title: str) -> Path:
    """Histograms of |dI_off| / I_w and |R_P,B / R_P,A - 1| of the pairs with both devices
    fitted, their thresholds dashed, and one against the other."""
    fig = _figure((12, 3.6))
    ax_i, ax_r, ax_s = fig.subplots(1, 3)
    for ax, x, lim, label in ((ax_i, di_over_iw, limits[0], "|dI_off| / I_w"),
                              (ax_r, rp_dev, limits[1], "|R_P,B / R_P,A - 1|")):
        x = x[np.isfinite(x)]
        if x.size:
            ax.hist(x, bins=30, color="tab:blue")
        ax.axvline(lim, color="k", ls="--", lw=1, label=f"threshold {lim:g}")
        ax.set_xlabel(label)
        ax.set_ylabel("pairs")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    ax_s.plot(di_over_iw, rp_dev, ".", ms=3)
    ax_s.axvline(limits[0], color="k", ls="--", lw=1)
    ax_s.axhline(limits[1], color="k", ls="--", lw=1)
    ax_s.set_xlabel("|dI_off| / I_w")
    ax_s.set_ylabel("|R_P,B / R_P,A - 1|")
    ax_s.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
