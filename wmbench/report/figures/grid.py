"""Error against a setting a sweep varied: per env and model, the aggregate, overfitting, and the
calibration of the generated actions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from wmbench.metrics import NORMAL_CLIP_FRACTION
from wmbench.report.figures.common import aggregate_axes, legend, panel_axes, save
from wmbench.report.grid import GRID_COLUMN, TRAIN_SIZE
from wmbench.report.select import ordered_models
from wmbench.report.stats import FLOOR, INTERVAL, seeds_label
from wmbench.report.tables import CALIBRATION_METRICS

SIZE_LABEL = "training transitions (whole episodes, about)"
# the calibration rows drawn, each with N(0, 1)'s value as a grey line: calibrated actions lie on it
NORMAL = {"action_z_std": 1.0, "action_ks": 0.0, "action_clip_fraction": NORMAL_CLIP_FRACTION}


def _axis(ax, key: str, values, label: bool = True) -> None:
    """A log axis where the values span a factor of 4 or more (sizes, doubling stds), ticks at the values."""
    values = sorted(set(values))
    if values and min(values) > 0 and max(values) / min(values) >= 4:
        ax.set_xscale("log")
    ax.set_xticks(values, [f"{v / 1000:.3g}k" if key == TRAIN_SIZE else f"{v:g}" for v in values])
    ax.minorticks_off()
    ax.set_xlabel((SIZE_LABEL if key == TRAIN_SIZE else key) if label else None)


def _line(ax, part: pd.DataFrame, colour, label: str, **style) -> None:
    """Means joined by a line, each with its interval as an error bar (none over one seed)."""
    part = part.sort_values(GRID_COLUMN)
    low = (part["mean"] - part["ci_low"]).fillna(0).to_numpy()
    high = (part["ci_high"] - part["mean"]).fillna(0).to_numpy()
    ax.errorbar(part[GRID_COLUMN], part["mean"], yerr=[low, high], color=colour, label=label, marker="o", ms=4,
                capsize=3, lw=1.6, **style)


def _lines_by_env(frame: pd.DataFrame, row_column: str, rows: list, colours: dict, key: str, height: float,
                  yscale: str = "linear"):
    """A panel per (value of `row_column` in `rows`, env): each model's line against the key; (fig, axes)."""
    panels = sorted(frame["panel"].unique())
    fig, axes = panel_axes(len(panels), rows=len(rows), height=height, sharex="col")
    for row, value in enumerate(rows):
        for ax, panel in zip(axes[row], panels):
            part = frame[(frame[row_column] == value) & (frame["panel"] == panel)]
            for model in ordered_models(part["model"]):
                _line(ax, part[part["model"] == model], colours[model], model)
            if row == 0:
                ax.set_title(panel)
            ax.set_yscale(yscale)  # before `_axis`, which turns the minor ticks off
            _axis(ax, key, frame.loc[frame["panel"] == panel, GRID_COLUMN], label=row == len(rows) - 1)
    return fig, axes


def plot_grid_errors(errors: pd.DataFrame, colours: dict, key: str, path: Path) -> Path:
    """Rows: the error at step 1, at step h, and the alive error at step h; columns: the envs."""
    measures = [m for m in ("mse, step 1", "mse, step h", "alive mse, step h") if (errors["measure"] == m).any()]
    fig, axes = _lines_by_env(errors, "measure", measures, colours, key, height=3.2, yscale="log")
    for row, measure in enumerate(measures):
        for ax in axes[row]:
            if not ax.has_data():  # the alive error of an env that never terminates is its error
                ax.text(0.5, 0.5, "no terminations:\nthe same as the row above", ha="center", va="center",
                        transform=ax.transAxes, color="grey")
            ax.set_ylabel(f"state {measure}" if ax is axes[row][0] else None)
    fig.suptitle(f"State error against {key} (mean over seeds, {INTERVAL}; "
                 f"{seeds_label(errors['n_seeds'])})")
    legend(fig, axes)
    return save(fig, path)


def plot_grid_aggregate(scores: pd.DataFrame, colours: dict, key: str, path: Path) -> Path:
    """The aggregate score (error over the persistence floor's, IQM over envs and seeds) against the key."""
    scores = scores[(scores["metric"] == "mse") & (scores["model"] != FLOOR)]  # (the floor is 1 by definition)
    axes_keys = aggregate_axes(scores)
    fig, axes = panel_axes(len(axes_keys), height=3.6, width=6.5)
    for ax, (title, part) in zip(axes[0], axes_keys):
        for model in ordered_models(part["model"]):
            _line(ax, part[part["model"] == model].rename(columns={"iqm": "mean"}), colours[model], model)
        ax.set(title=title, yscale="log", ylabel=f"error / {FLOOR}'s (IQM)" if ax is axes[0][0] else None)
        _axis(ax, key, scores[GRID_COLUMN])
    fig.suptitle(f"Aggregate score against {key}\n(IQM over envs and seeds, 95% stratified-bootstrap interval)")
    legend(fig, axes)
    return save(fig, path)


def plot_objective(objective: pd.DataFrame, colours: dict, key: str, path: Path) -> Path:
    """One panel per (env, model): the training objective on the data the model learnt from (dashed) and on
    held-out episodes (solid); a gap that opens as the data shrinks is overfitting."""
    panels, models = sorted(objective["panel"].unique()), ordered_models(objective["model"])
    fig, axes = panel_axes(len(models), rows=len(panels), height=2.6, width=3.2)
    for row, panel in enumerate(panels):
        for ax, model in zip(axes[row], models):
            part = objective[(objective["panel"] == panel) & (objective["model"] == model)]
            for split, style in (("held-out", "-"), ("train", "--")):
                _line(ax, part[part["split"] == split], colours[model], split, ls=style)
            ax.set_title(f"{panel} · {model}", fontsize=9)
            if not part.empty:  # one axis label, under the first panel of the last row: the panels are narrow
                _axis(ax, key, part[GRID_COLUMN], label=row == len(panels) - 1 and ax is axes[row][0])
    for ax in np.ravel(axes):
        if not ax.has_data():
            ax.set_visible(False)
    fig.suptitle(f"Training objective on the training data (dashed) and on held-out episodes (solid), "
                 f"each model in its own units (mean over seeds, {INTERVAL})")
    return save(fig, path)


def plot_grid_calibration(calib: pd.DataFrame, colours: dict, key: str, path: Path) -> Path:
    """Rows: std(z), the KS distance to N(0, 1) and the mass at |z| >= 3; columns: the envs; N(0, 1)'s value grey."""
    metrics = [m for m in NORMAL if (calib["metric"] == m).any()]
    fig, axes = _lines_by_env(calib, "metric", metrics, colours, key, height=2.8)
    for row, metric in enumerate(metrics):
        for ax in axes[row]:
            ax.axhline(NORMAL[metric], color="grey", ls="--", lw=1, label="N(0, 1)")
            ax.set_ylabel(CALIBRATION_METRICS[metric] if ax is axes[row][0] else None)
    fig.suptitle(f"Action calibration against {key}: z = (a - μ(s)) / σ(s) under the policy\n"
                 f"(mean over seeds, {INTERVAL}; {seeds_label(calib['n_seeds'])})")
    legend(fig, axes)
    return save(fig, path)
