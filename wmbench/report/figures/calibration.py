"""Action calibration (histograms of z against N(0, 1)) and PolyGRAD's guidance scale while tuned."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wmbench.metrics import HIST_EDGES
from wmbench.report.figures.common import legend, panel_axes, save
from wmbench.report.select import Selection
from wmbench.report.stats import summarise

SHOWN = {"action_z_std": "std(z)", "action_ks": "KS", "action_w1": "W1", "action_clip_fraction": "|z|>=3"}


def plot_calibration(sel: Selection, colours: dict, path: Path) -> Path:
    hist = summarise(sel.longest("action_z_hist"), ["panel", "model", "step"])
    shape = {metric: summarise(sel.longest(metric), ["panel", "model"]).set_index(["panel", "model"])["mean"]
             for metric in SHOWN if not sel.metric(metric).empty}
    centres, width = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2, np.diff(HIST_EDGES)
    grid = np.linspace(HIST_EDGES[0], HIST_EDGES[-1], 200)
    fig, axes = panel_axes(len(sel.models), rows=len(sel.panels), height=2.6, width=3.2, sharex=True)
    for i, panel in enumerate(sel.panels):
        for j, model in enumerate(sel.models):
            ax = axes[i][j]
            h = hist[(hist["panel"] == panel) & (hist["model"] == model)].sort_values("step")
            if not h.empty:
                bins = h["step"].to_numpy()
                ax.bar(centres[bins], h["mean"], width=width[bins], color=colours[model], alpha=0.7)
                text = "\n".join(f"{name} = {shape[metric][(panel, model)]:.3f}" for metric, name in SHOWN.items()
                                 if metric in shape and (panel, model) in shape[metric].index)
                ax.text(0.03, 0.95, text, transform=ax.transAxes, va="top", fontsize=7)
            else:
                ax.text(0.5, 0.5, "no results", transform=ax.transAxes, ha="center", color="grey")
            ax.plot(grid, np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi), color="black", lw=1, label="N(0, 1)")
            # a variant's settings on lines of their own
            ax.set_title(f"{model} · {panel}".replace(" (", "\n(").replace(", ", ",\n"), fontsize=9)
            ax.set_xlim(-4, 4)
            if i == len(sel.panels) - 1:
                ax.set_xlabel("z (standardised action)")
            if j == 0:
                ax.set_ylabel("density")
    fig.suptitle("Action calibration: generated actions as z = (a - μ(s)) / σ(s) under the policy, against N(0, 1)")
    return save(fig, path)


def plot_delta(sel: Selection, colours: dict, path: Path) -> Path | None:
    rows = sel.longest("delta")
    if rows.empty:
        return None
    curves = summarise(rows, ["panel", "model", "step"])
    panels = sorted(curves["panel"].unique())
    fig, axes = panel_axes(len(panels))
    for ax, panel in zip(axes[0], panels):
        for model in sel.models:
            c = curves[(curves["panel"] == panel) & (curves["model"] == model)].sort_values("step")
            if not c.empty:
                ax.plot(c["step"], c["mean"], color=colours[model], label=model, lw=1.8)
                ax.fill_between(c["step"], c["ci_low"], c["ci_high"], color=colours[model], alpha=0.2, lw=0)
        ax.set(yscale="log", title=panel, xlabel="tuning batch", ylabel="guidance scale δ")
    fig.suptitle("PolyGRAD's guidance scale δ while tuning towards std(z) = 1")
    legend(fig, axes)
    return save(fig, path)
