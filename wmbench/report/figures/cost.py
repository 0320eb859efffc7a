"""Generation cost: time against the horizon, and accuracy against that time."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import NullFormatter

from wmbench.report.figures.common import legend, panel_axes, save
from wmbench.report.select import Selection
from wmbench.report.stats import INTERVAL, seeds_label, summarise


def plot_generation_time(sel: Selection, colours: dict, path: Path) -> tuple[Path, pd.DataFrame]:
    rows = sel.metric("gen_time_s").assign(step=lambda f: f["horizon"])
    per_transition = rows.assign(value=rows["value"] / (rows["horizon"] * rows["n_trajectories"]) * 1e3)
    seconds = summarise(rows, ["panel", "model", "step"])
    ms = summarise(per_transition, ["panel", "model", "step"])
    fig, axes = panel_axes(len(sel.panels), rows=2)
    for col, panel in enumerate(sel.panels):
        for row, (frame, ylabel) in enumerate([(seconds, "time for the batch (s)"),
                                               (ms, "time per generated transition (ms)")]):
            ax = axes[row][col]
            for model in sel.models:
                c = frame[(frame["panel"] == panel) & (frame["model"] == model)].sort_values("step")
                if not c.empty:
                    ax.errorbar(c["step"], c["mean"], yerr=[c["mean"] - c["ci_low"], c["ci_high"] - c["mean"]],
                                color=colours[model], label=model, marker="o", lw=1.6, capsize=3)
            ax.set(xscale="log", yscale="log", xlabel="horizon (steps)", ylabel=ylabel, title=panel)
            # ticks at the measured horizons, written plainly (not 2x10^1)
            horizons = sorted(frame.loc[frame["panel"] == panel, "step"].unique())
            ax.set_xticks(horizons, [str(h) for h in horizons])
            ax.xaxis.set_minor_formatter(NullFormatter())
    n = int(rows["n_trajectories"].max()) if not rows.empty else 0
    fig.suptitle(f"Generation cost of {n} trajectories (wall clock, mean over seeds, {INTERVAL}; "
                 f"{seeds_label(seconds['n_seeds'])})")
    legend(fig, axes)
    return save(fig, path), seconds


def plot_accuracy_vs_compute(sel: Selection, colours: dict, path: Path) -> Path:
    mse = sel.metric("mse")
    mse = mse[mse["step"] == mse["horizon"]]  # the error at the end of each cell's horizon
    points = summarise(mse, ["panel", "model", "horizon"]).merge(
        summarise(sel.metric("gen_time_s"), ["panel", "model", "horizon"]), on=["panel", "model", "horizon"],
        suffixes=("_mse", "_time"))
    horizons = sorted(points["horizon"].unique())
    markers = dict(zip(sel.panels, "osD^vP*X"))
    fig, axes = panel_axes(max(len(horizons), 1))
    for ax, horizon in zip(axes[0], horizons):
        for p in points[points["horizon"] == horizon].itertuples(index=False):
            ax.errorbar(p.mean_time, p.mean_mse, yerr=[[p.mean_mse - p.ci_low_mse], [p.ci_high_mse - p.mean_mse]],
                        xerr=[[p.mean_time - p.ci_low_time], [p.ci_high_time - p.mean_time]], color=colours[p.model],
                        marker=markers.get(p.panel, "o"), ms=8, capsize=3, ls="none")
        ax.set(xscale="log", yscale="log", title=f"h = {horizon}", xlabel="generation time for the batch (s)",
               ylabel=f"state MSE at step {horizon}")
    handles = [plt.Line2D([], [], color=colours[m], marker="o", ls="none", label=m) for m in sel.models]
    handles += [plt.Line2D([], [], color="grey", marker=markers[p], ls="none", label=p) for p in sel.panels]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), frameon=False)
    fig.suptitle("Accuracy against compute (lower left is better)")
    return save(fig, path)
