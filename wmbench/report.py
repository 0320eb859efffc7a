"""`wmbench report`: the paper's comparison figures and tables, drawn from the results store.

Seeds are the unit of replication: every number is a mean over seeds with a 95% percentile
bootstrap interval that resamples seeds. Each figure draws whatever models the store holds, and a
model has the same colour in every figure. A panel is one env (with the dataset, policy or precision
added to its name when the store holds several for that env).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from wmbench.aggregate import FLOOR, aggregate, normalised_scores  # noqa: E402
from wmbench.envs import observation_names  # noqa: E402
from wmbench.errors import UsageError  # noqa: E402
from wmbench.metrics import DIM_PREFIX, HIST_EDGES  # noqa: E402
from wmbench.paths import atomic_write_bytes  # noqa: E402
from wmbench.results import BENCH_DATASET, RL_DATASET, ResultsStore, markdown_table  # noqa: E402

MODEL_ORDER = ("polygrad", "polygrad-transformer", "ar-diffusion", "ar-diffusion-2row", "transformer", "mlp-ensemble",
               "linear", "persistence", "ppo")
TABLE_STEPS = (10, 50, 200)  # the paper's horizons
BOOTSTRAP_SAMPLES = 2000


def bootstrap_ci(values, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """`(mean, low, high)`: the percentile bootstrap interval of the mean over `values` (one per seed).
    One value gives a zero-width interval: with one seed there is nothing to resample."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    resampled = values[np.random.default_rng(seed).integers(0, len(values), (BOOTSTRAP_SAMPLES, len(values)))]
    low, high = np.quantile(resampled.mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return mean, float(low), float(high)


def summarise(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and bootstrap interval of `value` over seeds, per group of `by`."""
    rows = []
    for key, group in frame.groupby(by, sort=False):
        mean, low, high = bootstrap_ci(group["value"].to_numpy())
        rows.append((*key, mean, low, high, group["seed"].nunique()))
    return pd.DataFrame(rows, columns=[*by, "mean", "ci_low", "ci_high", "n_seeds"])


def model_colours(models) -> dict[str, tuple]:
    """Built-in models keep their colour whatever else is in the store; others follow, by name. The
    variants of one model (`polygrad (tau=0.1)`, see `label_variants`) share its hue, each lighter."""
    bases = {base_model(model) for model in models}
    order = list(MODEL_ORDER) + sorted(bases - set(MODEL_ORDER))
    palette = sns.color_palette("colorblind", max(10, len(order)))
    colours = {model: palette[i] for i, model in enumerate(order)} | {"ppo": (0.0, 0.0, 0.0)}  # no world model: black
    for base in bases:
        variants = sorted(model for model in models if model != base and base_model(model) == base)
        for i, variant in enumerate(variants):
            colours[variant] = tuple(c + (1 - c) * 0.6 * i / len(variants) for c in colours[base])
    return colours


def ordered_models(models) -> list[str]:
    """Built-in models in `MODEL_ORDER`, then the others by name; a model's variants where it would be."""
    def key(model: str):
        base = base_model(model)
        return MODEL_ORDER.index(base) if base in MODEL_ORDER else len(MODEL_ORDER), base, model
    return sorted(set(models), key=key)


def base_model(name: str) -> str:
    """The registered model of a name `label_variants` may have given: `polygrad (tau=0.1)` -> `polygrad`."""
    return name.split(" (")[0]


def label_variants(rows: pd.DataFrame) -> pd.DataFrame:
    """A model run with several configs in one panel becomes one model per config, named in every
    panel by the settings that differ (`polygrad (tau=0.1)`): pooling them as seeds would mix two
    experiments. Settings that differ only between panels (an env's own profile table) name nothing."""
    if "config" not in rows:
        return rows
    for model, runs in rows.groupby("model"):
        configs = {h: _flat_config(text, model) for h, text in runs.groupby("config_hash")["config"].first().items()}
        keys = set()
        for _, part in runs.groupby("panel"):
            inside = [configs[h] for h in part["config_hash"].unique()]
            keys |= {k for c in inside for k in c if len({str(o.get(k)) for o in inside}) > 1}
        if not keys:
            continue
        for h, config in configs.items():
            label = ", ".join(f"{k}={config.get(k, '–')}" for k in sorted(keys))
            rows.loc[(rows["model"] == model) & (rows["config_hash"] == h), "model"] = f"{model} ({label})"
    return rows


def _flat_config(text, model: str) -> dict:
    """A cell's resolved config as `field` (the model's own) and `section.field` (the shared ones)."""
    if not isinstance(text, str):
        return {}
    return {(key if section == model else f"{section}.{key}"): value
            for section, fields in json.loads(text).items() for key, value in fields.items()}


@dataclass
class Selection:
    """The rows one report is drawn from, with a `panel` column."""

    rows: pd.DataFrame
    profile: str

    @classmethod
    def from_store(cls, table: pd.DataFrame, profile: str | None = None) -> Selection:
        if table.empty:
            raise UsageError("the results store is empty: run `wmbench evaluate` or `wmbench sweep` first")
        profiles = sorted(table["profile"].unique())
        if profile is None:
            if len(profiles) > 1:
                raise UsageError(f"the store holds results of several profiles ({', '.join(profiles)}); "
                                 "pick one with --profile")
            profile = profiles[0]
        if profile not in profiles:
            raise UsageError(f"no results of profile {profile!r} in the store; it has: {', '.join(profiles)}")
        rows = table[table["profile"] == profile].copy()
        varies = [c for c in ("dataset", "policy", "precision") if rows.groupby("env")[c].nunique().max() > 1]
        rows["panel"] = rows[["env", *varies]].astype(str).agg(" · ".join, axis=1)
        return cls(label_variants(rows), profile)

    @property
    def panels(self) -> list[str]:
        return sorted(self.rows["panel"].unique())

    @property
    def models(self) -> list[str]:
        return ordered_models(self.rows["model"].unique())

    def metric(self, name: str) -> pd.DataFrame:
        return self.rows[self.rows["metric"] == name]

    def longest(self, name: str) -> pd.DataFrame:
        """A metric's rows from each (panel, model, seed)'s longest-horizon cell: one curve per seed."""
        return longest_horizon(self.metric(name))


def longest_horizon(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of each (panel, model, seed)'s longest-horizon cell."""
    return rows[rows["horizon"] == rows.groupby(["panel", "model", "seed"])["horizon"].transform("max")]


def _save(fig: plt.Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _panel_axes(n: int, rows: int = 1, height: float = 3.6, width: float = 4.4, **kwargs):
    fig, axes = plt.subplots(rows, n, figsize=(width * n, height * rows), squeeze=False, layout="constrained", **kwargs)
    return fig, axes


def _legend(fig: plt.Figure, axes) -> None:
    handles = {}
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(len(handles), 5),
                   frameon=False)


ALIVE_WARNING = 0.2  # tables mark errors averaged over fewer than this fraction of the trajectories


def plot_mse_vs_step(sel: Selection, colours: dict, path: Path) -> Path:
    """Top: the paper's error (every trajectory, past the simulator's terminations); below, where the
    store has them, the error over trajectories still alive in the simulator and the alive fraction."""
    panels = [("mse", "state MSE, all trajectories\n(the paper's; raw obs units²)", "log"),
              ("mse_alive", "state MSE, trajectories alive\nin the simulator", "log"),
              ("alive_fraction", "fraction of trajectories alive", "linear")]
    panels = [p for p in panels if not sel.metric(p[0]).empty]
    fig, axes = _panel_axes(len(sel.panels), rows=len(panels), height=3.2, sharex="col")
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
    fig.suptitle("Open-loop state error of on-policy trajectories (mean over seeds, 95% bootstrap CI)")
    _legend(fig, axes)
    return _save(fig, path)


def mse_table(sel: Selection, metric: str = "mse") -> pd.DataFrame:
    """Tidy error at the paper's horizons: `panel, model, step, mean, ci_low, ci_high, n_seeds`."""
    rows = sel.longest(metric).dropna(subset=["value"])
    rows = rows[rows["step"].isin(TABLE_STEPS)]
    return summarise(rows, ["panel", "model", "step"]).sort_values(["panel", "step", "model"]).reset_index(drop=True)


def mark_few_alive(wide: pd.DataFrame, sel: Selection, columns: list[tuple[str, int]]) -> pd.DataFrame:
    """Appends `†` (and the fraction) to cells averaged over fewer than `ALIVE_WARNING` of the trajectories."""
    alive = summarise(sel.longest("alive_fraction"), ["panel", "model", "step"]).set_index(["panel", "model", "step"])
    wide = wide.copy()
    for panel, step in columns:
        column = f"{panel} h={step}"
        for i, model in enumerate(wide["model"]):
            fraction = alive["mean"].get((panel, model, step))
            if fraction is not None and fraction < ALIVE_WARNING and wide.at[i, column] != "–":
                wide.at[i, column] = f"{wide.at[i, column]} † ({fraction:.0%} alive)"
    return wide


def present_columns(tidy: pd.DataFrame, panels: list[str], steps) -> list[tuple[str, int]]:
    """The (panel, step) columns of a wide table that hold at least one number."""
    return [(p, s) for p in panels for s in steps if ((tidy["panel"] == p) & (tidy["step"] == s)).any()]


def wide_table(tidy: pd.DataFrame, models: list[str], columns: list[tuple[str, int]], fmt: str = ".3g",
               distance: Callable[[pd.Series], pd.Series] = lambda mean: mean) -> pd.DataFrame:
    """Rows of models, one column per (panel, step): `mean [low, high]`, the model of the smallest
    `distance(mean)` per column in bold."""
    out = pd.DataFrame({"model": models})
    for panel, step in columns:
        col = tidy[(tidy["panel"] == panel) & (tidy["step"] == step)].set_index("model")
        best = distance(col["mean"]).idxmin() if len(col) else None
        cells = []
        for model in models:
            if model not in col.index:
                cells.append("–")
                continue
            r = col.loc[model]
            text = f"{r['mean']:{fmt}} [{r['ci_low']:{fmt}}, {r['ci_high']:{fmt}}]"
            cells.append(f"**{text}**" if model == best and len(col) > 1 else text)
        out[f"{panel} h={step}"] = cells
    return out


AGGREGATE_METRICS = {"mse": "all trajectories", "mse_alive": "alive in the simulator"}


def aggregate_scores(sel: Selection) -> pd.DataFrame:
    """`[metric, model, horizon, iqm, ci_low, ci_high, n_envs, n_runs]`, the aggregate score of every
    model over the selection's envs and seeds (empty without the `persistence` floor)."""
    frames = [aggregate(normalised_scores(sel.rows, metric)).assign(metric=metric)
              for metric in AGGREGATE_METRICS if not sel.metric(metric).empty]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    order = {m: i for i, m in enumerate(ordered_models(pd.concat(frames)["model"]))}
    return (pd.concat(frames, ignore_index=True)[["metric", "model", "horizon", "iqm", "ci_low", "ci_high", "n_envs",
                                                  "n_runs"]]
            .sort_values(["metric", "horizon", "model"], key=lambda c: c.map(order) if c.name == "model" else c)
            .reset_index(drop=True))


def aggregate_wide(scores: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    tidy = scores.rename(columns={"iqm": "mean", "horizon": "step", "metric": "panel"})
    columns = [(m, h) for h in sorted(tidy["step"].unique()) for m in AGGREGATE_METRICS
               if ((tidy["panel"] == m) & (tidy["step"] == h)).any()]
    wide = wide_table(tidy, [m for m in models if m in set(tidy["model"])], columns)
    wide.columns = ["model", *(f"h={h}, {AGGREGATE_METRICS[m]}" for m, h in columns)]
    # a score over fewer envs than the others' is not comparable with theirs: say over how many
    wide.insert(1, "envs", wide["model"].map(scores.groupby("model")["n_envs"].max()).astype(int))
    return wide


def plot_aggregate(scores: pd.DataFrame, colours: dict, path: Path) -> Path:
    horizons = sorted(scores["horizon"].unique())
    models = [m for m in ordered_models(scores["model"]) if m in set(scores["model"])]
    label_room = 0.08 * max(map(len, models)) / len(horizons)  # inches for the model names on the y axis
    fig, axes = _panel_axes(len(horizons), height=0.45 * len(models) + 1.6, width=3.6 + label_room, sharey=True)
    markers = {"mse": ("o", "full"), "mse_alive": ("D", "none")}
    for ax, horizon in zip(axes[0], horizons):
        for offset, metric in zip((-0.15, 0.15), AGGREGATE_METRICS):
            part = scores[(scores["horizon"] == horizon) & (scores["metric"] == metric)].set_index("model")
            for y, model in enumerate(models):
                if model not in part.index:
                    continue
                r = part.loc[model]
                marker, fill = markers[metric]
                ax.errorbar(r["iqm"], y + offset, xerr=[[r["iqm"] - r["ci_low"]], [r["ci_high"] - r["iqm"]]],
                            color=colours[model], marker=marker, fillstyle=fill, ms=7, capsize=3, ls="none")
        ax.axvline(1.0, color="grey", lw=1, ls="--")
        ax.set(xscale="log", title=f"h = {horizon}", xlabel="error at the last step /\npersistence's (IQM)")
        ax.set_yticks(range(len(models)), models)
        ax.invert_yaxis()
    handles = [plt.Line2D([], [], color="black", marker=m, fillstyle=f, ls="none", label=AGGREGATE_METRICS[k])
               for k, (m, f) in markers.items() if k in set(scores["metric"])]
    handles.append(plt.Line2D([], [], color="grey", ls="--", label="persistence floor"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    fig.suptitle("Aggregate score over envs and seeds: IQM, 95% stratified-bootstrap interval (lower is better)")
    return _save(fig, path)


def learning_curves(sel: Selection) -> pd.DataFrame:
    """Tidy learning curves: the error at the last step against training updates and FLOPs,
    `[metric, panel, model, horizon, train_step, train_flops, mean, ci_low, ci_high, n_seeds]`."""
    rows = sel.rows[sel.rows["metric"].isin(["curve_mse", "curve_mse_alive"])]
    rows = rows[(rows["step"] == rows["horizon"]) & rows["value"].notna()]
    if rows.empty:
        return pd.DataFrame()
    keys = ["metric", "panel", "model", "horizon", "train_step"]
    flops = rows.groupby(keys)["train_flops"].mean().rename("train_flops")
    return summarise(rows, keys).join(flops, on=keys).sort_values(keys).reset_index(drop=True)


def curve_table(curves: pd.DataFrame) -> pd.DataFrame:
    """The mean error at the last step per number of updates, one row per panel and trained model."""
    trained = curves[(curves["metric"] == "curve_mse") & (curves["train_step"] > 0)]
    wide = trained.pivot_table(index=["panel", "model", "horizon"], columns="train_step", values="mean")
    wide.columns = [f"{int(c):,} updates" for c in wide.columns]
    return wide.reset_index().astype(object).where(lambda f: f.notna(), "–")


def plot_learning_curves(curves: pd.DataFrame, colours: dict, path: Path) -> Path:
    panels = sorted(curves["panel"].unique())
    fig, axes = _panel_axes(len(panels), rows=2, height=3.2)
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
                        continue
                    ax.plot(c[x], c["mean"], style, color=colours[model], marker="o", ms=3, lw=1.6, label=label)
                    ax.fill_between(c[x], c["ci_low"], c["ci_high"], color=colours[model], alpha=0.15, lw=0)
            ax.set(xscale="log", yscale="log", ylabel=f"state MSE at step {horizon}",
                   xlabel="training updates" if x == "train_step" else "training FLOPs")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log axis overlap
            if row == 0:
                ax.set_title(panel)
    fig.suptitle("Learning curves: error at the last step over the training budget (solid: all trajectories; "
                 "dashed: alive in the simulator; horizontal: the floors)")
    _legend(fig, axes)
    return _save(fig, path)


def dim_error(sel: Selection) -> pd.DataFrame:
    """Tidy error per obs dim at the last step of each model's longest trajectories: `panel, model,
    horizon, dim, dim_index, mean, ci_low, ci_high, n_seeds` (dims in observation order)."""
    rows = sel.rows[sel.rows["metric"].str.startswith(DIM_PREFIX)]
    if rows.empty:  # stores older than the per-dim rows
        return pd.DataFrame()
    rows = longest_horizon(rows)
    rows = rows.assign(dim=rows["metric"].str[len(DIM_PREFIX):-1])
    order = {(env, name): k for env in rows["env"].unique() for k, name in enumerate(observation_names(env))}
    tidy = summarise(rows.assign(dim_index=[order.get(key, -1) for key in zip(rows["env"], rows["dim"])]),
                     ["panel", "model", "horizon", "dim", "dim_index"])
    return tidy.sort_values(["panel", "dim_index", "model"]).reset_index(drop=True)


def plot_dim_error(dims: pd.DataFrame, colours: dict, out: Path) -> list[Path]:
    """One figure per panel: every model's error per obs dim at its last step, on a log axis."""
    paths = []
    for panel, rows in dims.groupby("panel", sort=True):
        names = list(dict.fromkeys(rows.sort_values("dim_index")["dim"]))
        models = ordered_models(rows["model"].unique())
        fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(names) * max(len(models), 2) / 2 + 1.5))
        height = 0.8 / len(models)
        for k, model in enumerate(models):
            mine = rows[rows["model"] == model].set_index("dim").reindex(names)
            ax.barh(np.arange(len(names)) + (k - (len(models) - 1) / 2) * height, mine["mean"], height=height,
                    color=colours[model], label=f"{model} (h = {int(mine['horizon'].max())})")
        ax.set_yticks(np.arange(len(names)), names)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("squared error at the last step (raw units)")
        ax.set_title(f"{panel}: error per observation dimension")
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12 * 12 / (len(names) + 4)),
                  ncol=min(len(models), 3), frameon=False)
        paths.append(_save(fig, out / f"dim_error_{_slug(panel)}.png"))
    return paths


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")


def plot_generation_time(sel: Selection, colours: dict, path: Path) -> tuple[Path, pd.DataFrame]:
    rows = sel.metric("gen_time_s").assign(step=lambda f: f["horizon"])
    per_transition = rows.assign(value=rows["value"] / (rows["horizon"] * rows["n_trajectories"]) * 1e3)
    seconds = summarise(rows, ["panel", "model", "step"])
    ms = summarise(per_transition, ["panel", "model", "step"])
    fig, axes = _panel_axes(len(sel.panels), rows=2)
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
    fig.suptitle(f"Generation cost of {n} trajectories (wall clock, mean over seeds, 95% bootstrap CI)")
    _legend(fig, axes)
    return _save(fig, path), seconds


def plot_accuracy_vs_compute(sel: Selection, colours: dict, path: Path) -> Path:
    mse = sel.metric("mse")
    mse = mse[mse["step"] == mse["horizon"]]  # the error at the end of each cell's horizon
    points = summarise(mse, ["panel", "model", "horizon"]).merge(
        summarise(sel.metric("gen_time_s"), ["panel", "model", "horizon"]), on=["panel", "model", "horizon"],
        suffixes=("_mse", "_time"))
    horizons = sorted(points["horizon"].unique())
    markers = dict(zip(sel.panels, "osD^vP*X"))
    fig, axes = _panel_axes(max(len(horizons), 1))
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
    return _save(fig, path)


def plot_calibration(sel: Selection, colours: dict, path: Path) -> Path:
    hist = summarise(sel.longest("action_z_hist"), ["panel", "model", "step"])
    std = summarise(sel.longest("action_z_std"), ["panel", "model"]).set_index(["panel", "model"])
    centres, width = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2, np.diff(HIST_EDGES)
    grid = np.linspace(HIST_EDGES[0], HIST_EDGES[-1], 200)
    fig, axes = _panel_axes(len(sel.models), rows=len(sel.panels), height=2.6, width=3.2, sharex=True)
    for i, panel in enumerate(sel.panels):
        for j, model in enumerate(sel.models):
            ax = axes[i][j]
            h = hist[(hist["panel"] == panel) & (hist["model"] == model)].sort_values("step")
            if not h.empty:
                bins = h["step"].to_numpy()
                ax.bar(centres[bins], h["mean"], width=width[bins], color=colours[model], alpha=0.7)
                ax.text(0.03, 0.95, f"std(z) = {std.loc[(panel, model), 'mean']:.3f}", transform=ax.transAxes,
                        va="top", fontsize=8)
            else:
                ax.text(0.5, 0.5, "no results", transform=ax.transAxes, ha="center", color="grey")
            ax.plot(grid, np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi), color="black", lw=1, label="N(0, 1)")
            ax.set_title(f"{model} · {panel}".replace(" (", "\n(").replace(", ", ",\n"), fontsize=9)  # a variant's settings below
            ax.set_xlim(-4, 4)
            if i == len(sel.panels) - 1:
                ax.set_xlabel("z (standardised action)")
            if j == 0:
                ax.set_ylabel("density")
    fig.suptitle("Action calibration: generated actions as z = (a - μ(s)) / σ(s) under the policy, against N(0, 1)")
    return _save(fig, path)


def calibration_table(sel: Selection) -> pd.DataFrame:
    frames = [summarise(sel.longest(metric), ["panel", "model"]).assign(metric=metric)
              for metric in ("action_z_std", "action_z_mean", "action_ks")]
    return pd.concat(frames, ignore_index=True)[["panel", "model", "metric", "mean", "ci_low", "ci_high", "n_seeds"]]


def plot_delta(sel: Selection, colours: dict, path: Path) -> Path | None:
    rows = sel.longest("delta")
    if rows.empty:
        return None
    curves = summarise(rows, ["panel", "model", "step"])
    panels = sorted(curves["panel"].unique())
    fig, axes = _panel_axes(len(panels))
    for ax, panel in zip(axes[0], panels):
        for model in sel.models:
            c = curves[(curves["panel"] == panel) & (curves["model"] == model)].sort_values("step")
            if not c.empty:
                ax.plot(c["step"], c["mean"], color=colours[model], label=model, lw=1.8)
                ax.fill_between(c["step"], c["ci_low"], c["ci_high"], color=colours[model], alpha=0.2, lw=0)
        ax.set(yscale="log", title=panel, xlabel="tuning batch", ylabel="guidance scale δ")
    fig.suptitle("PolyGRAD's guidance scale δ while tuning towards std(z) = 1")
    _legend(fig, axes)
    return _save(fig, path)


def bench_table(rows: pd.DataFrame) -> pd.DataFrame:
    """`wmbench bench` rows, one line per model, precision and horizon (the latest run of each)."""
    columns = {"gen_time_s": "time (s)", "transitions_per_s": "transitions/s", "gflop": "GFLOP",
               "gflops_achieved": "GFLOP/s", "peak_fraction": "fraction of peak", "denoiser_peak_fraction": "denoiser pass, fraction of peak",
               "peak_gflops": "matmul peak (GFLOP/s)"}
    if rows.empty:
        return pd.DataFrame()
    wide = rows.pivot_table(index=["model", "precision", "env", "horizon", "device"], columns="metric",
                            values="value", aggfunc="last").reset_index()
    wide = wide[[c for c in ["model", "precision", "env", "horizon", "device", *columns] if c in wide]]
    wide = wide.rename(columns=columns)
    order = {m: i for i, m in enumerate(ordered_models(wide["model"]))}
    return wide.sort_values(["precision", "horizon", "model"], key=lambda c: c.map(order) if c.name == "model" else c)


# ----------------------------------------------------------------------------- RL in imagination (`wmbench rl`)

RL_STAGES = ("real_steps", "world_model", "imagination", "actor_critic", "ppo", "evaluation")


def rl_returns(sel: Selection) -> pd.DataFrame:
    """The real return of each model's policy at every evaluation: mean and interval over seeds."""
    return summarise(sel.metric("return"), ["panel", "model", "step"])


def rl_table(sel: Selection) -> pd.DataFrame:
    """Per panel and model: the return at the last evaluation, the real steps, and where the time went."""
    rows = []
    for (panel, model), runs in sel.rows.groupby(["panel", "model"], sort=False):
        last = runs.groupby("seed")["step"].transform("max") == runs["step"]
        final = runs[last]
        mean, low, high = bootstrap_ci(final.loc[final["metric"] == "return", "value"].to_numpy())
        seconds = final[final["metric"].str.startswith("wall_")].groupby("metric")["value"].mean()
        total = seconds.sum()
        split = ", ".join(f"{stage.replace('_', ' ')} {seconds[f'wall_{stage}_s'] / total:.0%}" for stage in RL_STAGES
                          if f"wall_{stage}_s" in seconds and total > 0)
        rows.append({"env": panel, "model": model, "real steps": int(final["step"].max()),
                     "return": f"{mean:.0f} [{low:.0f}, {high:.0f}]", "seeds": final["seed"].nunique(),
                     "wall time (min)": f"{total / 60:.1f}", "where the time went": split})
    order = {m: k for k, m in enumerate(ordered_models(sel.rows["model"].unique()))}
    return pd.DataFrame(rows).sort_values(["env", "model"], key=lambda c: c.map(order) if c.name == "model" else c)


def plot_rl_returns(returns: pd.DataFrame, colours: dict, path: Path) -> Path:
    panels = sorted(returns["panel"].unique())
    fig, axes = _panel_axes(len(panels))
    for ax, panel in zip(axes[0], panels):
        part = returns[returns["panel"] == panel]
        for model in ordered_models(part["model"]):
            c = part[part["model"] == model].sort_values("step")
            ax.plot(c["step"], c["mean"], "-", color=colours[model], marker="o", ms=3, lw=1.6, label=model)
            ax.fill_between(c["step"], c["ci_low"], c["ci_high"], color=colours[model], alpha=0.15, lw=0)
        ax.set(title=panel, xlabel="real environment steps", ylabel="return (mean action)")
    fig.suptitle("RL in imagination: real return of a policy trained only on a model's imagined trajectories\n"
                 "(PPO: model-free on the real steps); mean over seeds, 95% interval")
    _legend(fig, axes)
    return _save(fig, path)


def write_rl_report(sel: Selection, out: Path, colours: dict) -> tuple[list[Path], pd.DataFrame]:
    """The RL figure and table; `(files, wide table)`."""
    returns = rl_returns(sel)
    wide = rl_table(sel)
    files = [plot_rl_returns(returns, colours, out / "rl_return.png"), *_write_table(returns, wide, out / "rl_return")]
    return files, wide


def rl_section(wide: pd.DataFrame) -> list[str]:
    return ["## RL in imagination (`wmbench rl`)", "![return against real steps](rl_return.png)", "",
            "The paper's Algorithm 3 as a downstream score: an actor-critic trained only on a world model's imagined "
            "trajectories (the model trained online on the real steps so far), PPO trained on the real steps "
            "themselves. The return of each policy's mean action over real episodes at the last evaluation, "
            "mean over seeds with a 95% bootstrap interval (`rl_return.csv` has every evaluation):", "",
            markdown_table(wide), ""]


def provenance_table(sel: Selection) -> pd.DataFrame:
    r = sel.rows
    facts = {
        "profile": sel.profile,
        "cells": len(r.drop_duplicates(["model", "env", "dataset", "policy", "horizon", "seed"])),
        "models": ", ".join(sel.models),
        "datasets": ", ".join(sorted(r["dataset"].unique())),
        "policies": ", ".join(sorted(r["policy"].unique())),
        "horizons": ", ".join(map(str, sorted(r["horizon"].unique()))),
        "seeds": ", ".join(map(str, sorted(r["seed"].unique()))),
        "trajectories per cell": ", ".join(map(str, sorted(r["n_trajectories"].dropna().astype(int).unique())))
        if "n_trajectories" in r else "",
    }
    for column in ("git_commit", "device", "versions"):
        if column in r:
            facts[column.replace("_", " ")] = "; ".join(sorted(r[column].dropna().astype(str).unique()))
    if "created" in r and r["created"].notna().any():
        created = r["created"].dropna().astype(str)
        facts["created"] = f"{created.min()} to {created.max()}"
    return pd.DataFrame(list(facts.items()), columns=["", "value"])


def write_report(results: ResultsStore, out: Path, profile: str | None = None) -> list[Path]:
    """Every figure and table, and `README.md` that shows them; returns the files written."""
    table = results.read()
    is_bench, is_rl = table["dataset"] == BENCH_DATASET, table["dataset"] == RL_DATASET
    out = Path(out)
    sns.set_theme(style="whitegrid", context="notebook")
    written, sections = [], {}
    if is_rl.any():
        rl_sel = Selection.from_store(table[is_rl], profile)
        files, sections["rl"] = write_rl_report(rl_sel, out, model_colours(rl_sel.models))
        written += files
        if (~is_bench & ~is_rl).sum() == 0:  # RL runs only
            readme = "\n".join(["# wmbench report", "", f"Profile `{rl_sel.profile}`.", "", *rl_section(sections["rl"]),
                                 "## Provenance", "", markdown_table(provenance_table(rl_sel)), ""])
            atomic_write_bytes(out / "README.md", readme.encode())
            return written + [out / "README.md"]
    sel = Selection.from_store(table[~is_bench & ~is_rl], profile)
    colours = model_colours(sel.models)
    scores = aggregate_scores(sel)
    if not scores.empty:
        written.append(plot_aggregate(scores, colours, out / "aggregate.png"))
        sections["aggregate"] = aggregate_wide(scores, sel.models)
        written += _write_table(scores, sections["aggregate"], out / "aggregate_table")
    written.append(plot_mse_vs_step(sel, colours, out / "mse_vs_step.png"))

    for metric, stem in (("mse", "mse_table"), ("mse_alive", "mse_alive_table")):
        tidy = mse_table(sel, metric)
        if tidy.empty and metric != "mse":  # stores older than the alive error have none
            continue
        columns = present_columns(tidy, sel.panels, TABLE_STEPS)
        sections[metric] = mark_few_alive(wide_table(tidy, sel.models, columns), sel, columns)
        written += _write_table(tidy, sections[metric], out / stem)

    curves = learning_curves(sel)
    if not curves.empty:
        written.append(plot_learning_curves(curves, colours, out / "learning_curves.png"))
        sections["curves"] = curve_table(curves)
        written += _write_table(curves, sections["curves"], out / "learning_curves")

    dims = dim_error(sel)
    if not dims.empty:
        sections["dims"] = plot_dim_error(dims, colours, out)
        written += sections["dims"]
        atomic_write_bytes(out / "dim_error.csv", dims.to_csv(index=False).encode())
        written.append(out / "dim_error.csv")

    gen_path, gen = plot_generation_time(sel, colours, out / "generation_time.png")
    gen_wide = wide_table(gen, sel.models, present_columns(gen, sel.panels, sorted(gen["step"].unique())))
    written += [gen_path, *_write_table(gen, gen_wide, out / "generation_time")]
    written.append(plot_accuracy_vs_compute(sel, colours, out / "accuracy_vs_compute.png"))

    written.append(plot_calibration(sel, colours, out / "calibration.png"))
    calib = calibration_table(sel)
    z_std = calib[calib["metric"] == "action_z_std"].assign(step=0)
    calib_wide = wide_table(z_std, sel.models, [(p, 0) for p in sel.panels], fmt=".3f",
                            distance=lambda mean: (mean - 1).abs())
    calib_wide.columns = ["model", *(f"{p} std(z)" for p in sel.panels)]
    written += _write_table(calib, calib_wide, out / "calibration_table")

    delta_path = plot_delta(sel, colours, out / "delta.png")
    written += [delta_path] if delta_path else []
    bench = bench_table(table[is_bench & (table["profile"] == sel.profile)])
    if not bench.empty:
        written += _write_table(bench, bench.astype(object).where(bench.notna(), "–"), out / "bench_table")
    sections["videos"] = one_video_per_env(out / "videos", sel.rows["env"].unique())
    readme = _readme(sel, sections, gen_wide, calib_wide, bench, has_delta=delta_path is not None)
    atomic_write_bytes(out / "README.md", readme.encode())
    return written + [out / "README.md"]


def one_video_per_env(folder: Path, envs) -> list[Path]:
    """A GIF per env from `wmbench render` (named ENV-MODEL-hH-sS.gif), PolyGRAD's first."""
    videos = []
    for env in sorted(envs):
        gifs = sorted(folder.glob(f"{env}-*.gif"), key=lambda p: (not p.name.startswith(f"{env}-polygrad-"), p.name))
        videos += gifs[:1]
    return videos


def _write_table(tidy: pd.DataFrame, wide: pd.DataFrame, stem: Path) -> list[Path]:
    atomic_write_bytes(stem.with_suffix(".csv"), tidy.to_csv(index=False).encode())
    atomic_write_bytes(stem.with_suffix(".md"), (markdown_table(wide) + "\n").encode())
    return [stem.with_suffix(".csv"), stem.with_suffix(".md")]


def _readme(sel: Selection, sections: dict[str, pd.DataFrame], gen_wide, calib_wide, bench: pd.DataFrame,
            has_delta: bool) -> str:
    parts = [
        "# wmbench report",
        "",
        f"Profile `{sel.profile}`. Every number is a mean over seeds with a 95% bootstrap interval over seeds "
        "(`mean [low, high]`; one seed gives a zero-width interval); the best per column is bold. "
        "Regenerate with `make report`.",
        "",
    ]
    if "aggregate" in sections:
        parts += [
            "## Aggregate score",
            "![aggregate score](aggregate.png)",
            "",
            f"Each run's state error at its last step divided by that of the `{FLOOR}` floor (every future state "
            "is the start state) on the same env, horizon and seed: 1 is no better than predicting that nothing "
            "moves, 0 is exact. Runs are aggregated over envs and seeds as the interquartile mean with a 95% "
            "stratified-bootstrap interval (seeds resampled within each env; Agarwal et al. 2021). *All "
            "trajectories* is the paper's error; *alive* counts only trajectories that have not terminated in "
            "the simulator; `envs` says over how many envs a score is taken (compare rows with the same count; "
            "tidy numbers: `aggregate_table.csv`).",
            "",
            markdown_table(sections["aggregate"]),
            "",
        ]
    parts += [
        "## State error versus step",
        "![state MSE versus step](mse_vs_step.png)",
        "",
        "Each line is a model's open-loop state error against the simulator replay of its own actions; lower is "
        "better, and a line that rises faster compounds its errors faster. The paper's error (top) goes on "
        "past a termination in the simulator, where the replay is in states no model was trained on; the "
        "alive error (middle) averages only trajectories whose replay has not terminated before that step "
        "(the terminal state itself counts), and the bottom row says how many those are.",
        "",
        "## State MSE at the paper's horizons",
        "The error at step 10, 50 and 200 of each model's longest trajectories, over all trajectories as the "
        f"paper reports it (tidy numbers: `mse_table.csv`). † marks an error where fewer than "
        f"{ALIVE_WARNING:.0%} of the trajectories are still alive in the simulator.",
        "",
        markdown_table(sections["mse"]),
        "",
    ]
    if "mse_alive" in sections:
        parts += ["### Over the trajectories alive in the simulator",
                  "The same, averaged over the trajectories that have not terminated (`mse_alive_table.csv`).", "",
                  markdown_table(sections["mse_alive"]), ""]
    if "curves" in sections:
        parts += ["## Learning curves",
                  "![learning curves](learning_curves.png)", "",
                  "The error at the last step of models evaluated during training (`--eval-every`; the same starts "
                  "and policy as the final evaluation, PolyGRAD's δ retuned at each point), against training "
                  "updates and against training FLOPs. One budget is one point of these curves. Mean over seeds "
                  "at each number of updates (`learning_curves.csv` has the intervals and the alive error):", "",
                  markdown_table(sections["curves"]), ""]
    if sections.get("dims"):
        parts += ["## Error per observation dimension", "",
                  "Each model's squared error in every observation dimension at the last step of its longest "
                  "trajectories (mean over seeds, `dim_error.csv` with intervals): which part of the body a model "
                  "gets wrong.", ""]
        parts += [f"![error per dimension]({path.name})" for path in sections["dims"]] + [""]
    if sections.get("videos"):
        parts += ["## Trajectories", "",
                  "The simulator replaying a model's generated actions (left) and the model's generated states "
                  "(right), one trajectory per row (`wmbench render`; the MP4s lie beside the GIFs).", ""]
        parts += [f"![{path.stem}](videos/{path.name})" for path in sections["videos"]] + [""]
    parts += [
        "## Generation cost",
        "![generation time versus horizon](generation_time.png)",
        "",
        "Top: wall-clock time to generate the batch at each horizon; bottom: the same per generated transition. "
        "Autoregressive models pay per step; PolyGRAD pays per diffusion step over the whole trajectory. "
        "These times come from the evaluation cells and share the machine with whatever ran beside them (a "
        "sweep's other workers: the provenance's `device` gives each cell's threads); `wmbench bench` times "
        "models alone.",
        "",
        markdown_table(gen_wide),
        "",
        "## Accuracy against compute",
        "![accuracy against compute](accuracy_vs_compute.png)",
        "",
        "One point per model and env at each horizon: the further to the lower left, the more accurate for its cost.",
        "",
        "## Action calibration",
        "![action calibration histograms](calibration.png)",
        "",
        "Generated actions standardised by the evaluation policy should be N(0, 1): a narrow histogram "
        "(std(z) < 1) means the trajectories are less random than the policy, a wide one more; the std "
        "closest to 1 is bold.",
        "",
        markdown_table(calib_wide),
        "",
    ]
    if "rl" in sections:
        parts += rl_section(sections["rl"])
    if has_delta:
        parts += ["## PolyGRAD's guidance scale", "![delta over tuning](delta.png)", "",
                  "δ while it is tuned towards std(z) = 1 after training; a curve that has flattened has converged.", ""]
    if not bench.empty:
        parts += ["## Generation throughput against this machine's peak (`wmbench bench`)", "",
                  "Untrained models at the profile's sizes: time of one batch, FLOPs counted by PyTorch's "
                  "FlopCounterMode, and the fraction of a dense matmul's GFLOP/s measured in the same run.", "",
                  markdown_table(bench.astype(object).where(bench.notna(), "–")), ""]
    parts += ["## Provenance", "", markdown_table(provenance_table(sel)), ""]
    return "\n".join(parts)
