"""State error: against the step, per observation dimension, and the aggregate score."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from wmbench.report.figures.common import aggregate_axes, legend, panel_axes, save, slug
from wmbench.report.select import Selection, ordered_models
from wmbench.report.stats import INTERVAL, seeds_label, summarise
from wmbench.report.tables import ALIVE_WARNING


def plot_mse_vs_step(sel: Selection, colours: dict, path: Path) -> Path:
    """Top: the paper's error (every trajectory, past the simulator's terminations); below, where the
    store has them, the error over trajectories still alive in the simulator and the alive fraction."""
    panels = [("mse", "state MSE, all trajectories\n(the paper's; raw obs units²)", "log"),
              ("mse_alive", "state MSE, trajectories alive\nin the simulator", "log"),
              ("alive_fraction", "fraction of trajectories alive", "linear")]
    panels = [p for p in panels if not sel.metric(p[0]).empty]
    fig, axes = panel_axes(len(sel.panels), rows=len(panels), height=3.2, sharex="col")
    for row, (metric, ylabel, scale) in enumerate(panels):
        curves = summarise(sel.longest(metric).dropna(subset=["value"]), ["panel", "model", "step"])
        for ax, panel in zip(axes[row], sel.panels):
            for model in sel.models:
                c = curves[(curves["panel"] == panel) & (curves["model"] == model)].sort_values("step")
                if c.empty:
                    continue
                ax.plot(c["step"], c["mean"], color=colours[model], label=model, lw=1.8)
                ax.fill_between(c["step"], c["ci_low"], c["ci_high"], color=colours[model], alpha=0.2, lw=0)
            ax.set(yscale=scale, ylabel=ylabel if ax is axes[row][0] else None)
            if row == 0:
                ax.set_title(panel)
            if metric == "alive_fraction":
                ax.axhline(ALIVE_WARNING, color="grey", lw=0.8, ls=":")
                ax.set_ylim(0, 1.05)
    for ax in axes[-1]:
        ax.set_xlabel("step (transitions after the start state)")
    fig.suptitle(f"Open-loop state error of on-policy trajectories (mean over seeds, {INTERVAL}; "
                 f"{seeds_label(sel.longest('mse').groupby(['panel', 'model'])['seed'].nunique())})")
    legend(fig, axes)
    return save(fig, path)


def plot_aggregate(scores: pd.DataFrame, colours: dict, path: Path) -> Path:
    scores = scores[scores["metric"] == "mse"]
    axes_keys = aggregate_axes(scores)
    models = [m for m in ordered_models(scores["model"]) if m in set(scores["model"])]
    label_room = 0.08 * max(map(len, models)) / len(axes_keys)  # inches for the model names on the y axis
    fig, axes = panel_axes(len(axes_keys), height=0.45 * len(models) + 1.6, width=3.6 + label_room, sharey=True)
    for ax, (title, part) in zip(axes[0], axes_keys):
        part = part.set_index("model")
        for y, model in enumerate(models):
            if model not in part.index:
                continue
            r = part.loc[model]
            ax.errorbar(r["iqm"], y, xerr=[[r["iqm"] - r["ci_low"]], [r["ci_high"] - r["iqm"]]],
                        color=colours[model], marker="o", ms=7, capsize=3, ls="none")
        ax.axvline(1.0, color="grey", lw=1, ls="--", label="persistence floor")
        ax.set(xscale="log", title=title, xlabel="error at the last step /\npersistence's (IQM)")
        ax.set_yticks(range(len(models)), models)
        ax.invert_yaxis()
    fig.legend(handles=[plt.Line2D([], [], color="grey", ls="--", label="persistence floor")],
               loc="outside lower center", frameon=False)
    fig.suptitle("Aggregate score over envs and seeds: IQM, 95% stratified-bootstrap interval (lower is better)")
    return save(fig, path)


def plot_dim_error(dims: pd.DataFrame, colours: dict, out: Path) -> list[Path]:
    """One figure per panel and horizon: every model's error per obs dim at that step, on a log axis."""
    paths = []
    for (panel, horizon), rows in dims.groupby(["panel", "horizon"], sort=True):
        names = list(dict.fromkeys(rows.sort_values("dim_index")["dim"]))
        models = ordered_models(rows["model"].unique())
        fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(names) * max(len(models), 2) / 2 + 1.5))
        height = 0.8 / len(models)
        for k, model in enumerate(models):
            mine = rows[rows["model"] == model].set_index("dim").reindex(names)
            ax.barh(np.arange(len(names)) + (k - (len(models) - 1) / 2) * height, mine["mean"], height=height,
                    color=colours[model], label=f"{model} (n={int(mine['n_seeds'].max())})")
        ax.set_yticks(np.arange(len(names)), names)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel(f"squared error at step {horizon} (raw units; mean over seeds)")
        ax.set_title(f"{panel}: error per observation dimension at step {horizon}")
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12 * 12 / (len(names) + 4)),
                  ncol=min(len(models), 3), frameon=False)
        paths.append(save(fig, out / f"dim_error_{slug(panel)}_h{horizon}.png"))
    return paths
