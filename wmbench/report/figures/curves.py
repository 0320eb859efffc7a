"""Learning curves: the error at the last step over the training budget."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.ticker import NullFormatter

from wmbench.report.figures.common import legend, panel_axes, save
from wmbench.report.select import ordered_models


def plot_learning_curves(curves: pd.DataFrame, colours: dict, path: Path) -> Path:
    panels = sorted(curves["panel"].unique())
    fig, axes = panel_axes(len(panels), rows=2, height=3.2)
    floors = False
    for col, panel in enumerate(panels):
        part = curves[curves["panel"] == panel]
        horizon = int(part["horizon"].min())  # one horizon per panel: the shortest with a curve
        part = part[part["horizon"] == horizon]
        for row, x in enumerate(("train_step", "train_flops")):
            ax = axes[row][col]
            for model in ordered_models(part["model"]):
                for metric, style in (("curve_mse", "-"), ("curve_mse_alive", "--")):
                    c = part[(part["model"] == model) & (part["metric"] == metric)].sort_values("train_step")
                    label = model if metric == "curve_mse" else None
                    if c.empty:
                        continue
                    if (c["train_step"] == 0).all():  # a floor, trained without updates: a level to beat
                        ax.axhline(c["mean"].iloc[0], color=colours[model], ls=style, lw=1.2, label=label)
                        floors = True
                        continue
                    ax.plot(c[x], c["mean"], style, color=colours[model], marker="o", ms=3, lw=1.6, label=label)
                    ax.fill_between(c[x], c["ci_low"], c["ci_high"], color=colours[model], alpha=0.15, lw=0)
            ax.set(xscale="log", yscale="log", ylabel=f"state MSE at step {horizon}",
                   xlabel="training updates" if x == "train_step" else "training FLOPs")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log axis overlap
            _label_short_axis(ax, part.loc[part["train_step"] > 0, x], x == "train_step")
            if row == 0:
                ax.set_title(panel)
    fig.suptitle("Learning curves: error at the last step over the training budget (solid: all trajectories; "
                 f"dashed: alive in the simulator{'; horizontal: the floors' if floors else ''})")
    legend(fig, axes)
    return save(fig, path)


def _label_short_axis(ax, values: pd.Series, updates: bool) -> None:
    """A log axis spanning less than a decade has no labelled tick: label some of the points' own
    positions instead (at most 6 step counts, or 3 FLOP counts, whose labels are wider)."""
    points = sorted(set(values[values > 0]))
    if len(points) < 2 or points[-1] / points[0] >= 10:
        return
    points = points[:: -(-len(points) // (6 if updates else 3))]
    ax.set_xticks(points, [f"{p / 1000:g}k" if updates else f"{p:.2g}" for p in points])
