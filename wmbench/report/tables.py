"""The report's tables: tidy numbers (CSV) and wide, readable ones (Markdown), each from the
statistics of `stats` over a `Selection`'s rows."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from wmbench.envs import observation_names
from wmbench.metrics import DIM_PREFIX
from wmbench.paths import atomic_write_bytes
from wmbench.report.select import POOLED, Selection, at_own_horizon, ordered_models, pooled_panel
from wmbench.report.stats import aggregate, interval_text, normalised_scores, seeds_label, summarise
from wmbench.results import markdown_table

TABLE_STEPS = (10, 50, 200)  # the paper's horizons
ALIVE_WARNING = 0.2  # tables mark errors averaged over fewer than this fraction of the trajectories
# Floats in a report's CSVs: another CPU sums in another order and moves the last digits (1e-15 relative); at
# 10 significant digits a redrawn report keeps its bytes but for a number on a rounding boundary (about 1 in 1e5).
# No statistic here is good to more than a few digits.
CSV_FLOAT = "%.10g"


def mse_table(sel: Selection, metric: str = "mse") -> pd.DataFrame:
    """Tidy error at the paper's horizons: `panel, model, step, mean, ci_low, ci_high, n_seeds` (a model
    trained for one horizon only at that horizon: its step 10 of an h = 50 rollout is not an h = 10 number)."""
    rows = at_own_horizon(sel.longest(metric).dropna(subset=["value"]))
    rows = rows[rows["step"].isin(TABLE_STEPS)]
    return summarise(rows, ["panel", "model", "step"]).sort_values(["panel", "step", "model"]).reset_index(drop=True)


def mark_few_alive(wide: pd.DataFrame, sel: Selection, columns: list[tuple[str, int]]) -> pd.DataFrame:
    """Appends `†` (and the fraction) to cells averaged over fewer than `ALIVE_WARNING` of the trajectories
    (`columns`: the (panel, step) of each of `wide`'s columns after the first)."""
    alive = summarise(sel.longest("alive_fraction"), ["panel", "model", "step"]).set_index(["panel", "model", "step"])
    wide = wide.copy()
    for column, (panel, step) in zip(wide.columns[1:], columns):
        for i, model in enumerate(wide["model"]):
            fraction = alive["mean"].get((panel, model, step))
            if fraction is not None and fraction < ALIVE_WARNING and wide.at[i, column] != "–":
                wide.at[i, column] = f"{wide.at[i, column]} † ({fraction:.0%} alive)"
    return wide


def present_columns(tidy: pd.DataFrame, panels: list[str], steps) -> list[tuple[str, int]]:
    """The (panel, step) columns of a wide table that hold at least one number."""
    return [(p, s) for p in panels for s in steps if ((tidy["panel"] == p) & (tidy["step"] == s)).any()]


def wide_table(tidy: pd.DataFrame, models: list[str], columns: list[tuple[str, int]], fmt: str = ".3g",
               distance: Callable[[pd.Series], pd.Series] = lambda mean: mean,
               title: Callable[[str, int], str] = lambda panel, step: f"{panel} h={step}",
               coverage: str = "n_seeds") -> pd.DataFrame:
    """Rows of models, one column per (panel, step): `mean [low, high]`. The header says over how many
    seeds (`n_seeds`, a cell with fewer marked `(n=1)`); the model of the smallest `distance(mean)` in a
    column is bold, chosen only among the models of the largest `coverage` there (seeds, or envs):
    a number over fewer seeds or envs is not comparable with the others'."""
    out = pd.DataFrame({"model": models})
    for panel, step in columns:
        col = tidy[(tidy["panel"] == panel) & (tidy["step"] == step)].set_index("model")
        full = col[col[coverage] == col[coverage].max()] if len(col) else col
        best = distance(full["mean"]).idxmin() if len(full) else None
        most = int(col["n_seeds"].max()) if "n_seeds" in col and len(col) else 0
        cells = []
        for model in models:
            if model not in col.index:
                cells.append("–")
                continue
            r = col.loc[model]
            text = interval_text(r["mean"], r["ci_low"], r["ci_high"], fmt)
            if "n_seeds" in col and int(r["n_seeds"]) < most:
                text += f" (n={int(r['n_seeds'])})"
            cells.append(f"**{text}**" if model == best and len(col) > 1 else text)
        header = title(panel, step)
        out[f"{header} ({seeds_label(col['n_seeds'])})" if "n_seeds" in col and len(col) else header] = cells
    return out


# The alive error is not aggregated: each model's is over the trajectories its own actions keep alive
# (on Hopper `persistence` keeps about 70%, the learned models about 93%), so its ratio to the floor's
# divides errors over different sets of trajectories.
AGGREGATE_METRICS = {"mse": "all trajectories"}


def aggregate_scores(sel: Selection) -> pd.DataFrame:
    """`[metric, panel, model, horizon, iqm, ci_low, ci_high, n_envs, n_runs]`, the aggregate score of every
    model over the selection's envs and seeds, one per setting that splits the envs into panels (`all envs`,
    or `all envs · bc` and so on: `select.pooled_panel`); empty without the `persistence` floor."""
    frames = []
    for metric in AGGREGATE_METRICS:
        scores = normalised_scores(sel.rows, metric)
        frames += [aggregate(part).assign(metric=metric, panel=pooled)
                   for pooled, part in scores.groupby(scores["panel"].map(pooled_panel))]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    order = {m: i for i, m in enumerate(ordered_models(pd.concat(frames)["model"]))}
    return (pd.concat(frames, ignore_index=True)[["metric", "panel", "model", "horizon", "iqm", "ci_low", "ci_high",
                                                  "n_envs", "n_runs"]]
            .sort_values(["metric", "panel", "horizon", "model"],
                         key=lambda c: c.map(order) if c.name == "model" else c)
            .reset_index(drop=True))


def aggregate_wide(scores: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """A column per horizon, metric and pooled panel (`h=10, all trajectories · bc` where a setting splits the envs)."""
    tidy = scores.rename(columns={"iqm": "mean", "horizon": "step"})
    tidy["panel"] = tidy["metric"].map(AGGREGATE_METRICS) + tidy["panel"].str.removeprefix(POOLED)
    columns = [(panel, h) for h in sorted(tidy["step"].unique())
               for panel in dict.fromkeys(tidy.loc[tidy["step"] == h, "panel"])]
    wide = wide_table(tidy, [m for m in models if m in set(tidy["model"])], columns, coverage="n_envs",
                      title=lambda panel, horizon: f"h={horizon}, {panel}")
    # a score over fewer envs than the others' is not comparable with theirs: say over how many
    wide.insert(1, "envs", wide["model"].map(scores.groupby("model")["n_envs"].max()).astype(int))
    return wide


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


def dim_error(sel: Selection) -> pd.DataFrame:
    """Tidy error per obs dim at the last step of each cell (its horizon): `panel, model, horizon, dim,
    dim_index, mean, ci_low, ci_high, n_seeds` (dims in observation order)."""
    rows = sel.rows[sel.rows["metric"].str.startswith(DIM_PREFIX)]
    if rows.empty:  # stores older than the per-dim rows
        return pd.DataFrame()
    rows = rows.assign(dim=rows["metric"].str[len(DIM_PREFIX):-1])
    order = {(env, name): k for env in rows["env"].unique() for k, name in enumerate(observation_names(env))}
    tidy = summarise(rows.assign(dim_index=[order.get(key, -1) for key in zip(rows["env"], rows["dim"])]),
                     ["panel", "model", "horizon", "dim", "dim_index"])
    return tidy.sort_values(["panel", "horizon", "dim_index", "model"]).reset_index(drop=True)


CALIBRATION_METRICS = {"action_z_std": "std(z)", "action_z_mean": "mean(z)", "action_ks": "KS",
                       "action_w1": "W1", "action_clip_fraction": "at the clip"}  # the last two: newer stores


def calibration_table(sel: Selection, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Each calibration metric's mean and t interval over seeds per panel and model (and the columns `by`)."""
    keys = ["panel", "model", *by]
    frames = [summarise(sel.longest(metric), keys).assign(metric=metric)
              for metric in CALIBRATION_METRICS if not sel.metric(metric).empty]
    columns = [*keys, "metric", "mean", "ci_low", "ci_high", "n_seeds"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def calibration_wide(calib: pd.DataFrame, models: list[str], by: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per panel and model (and value of the columns `by`), one column per calibration metric:
    `mean [low, high]`."""
    keys = ["panel", "model", *by]
    if calib.empty:
        return pd.DataFrame(columns=[*keys, "n"])
    order = {m: i for i, m in enumerate(models)}
    rows = []
    for group, part in calib.groupby(keys, sort=False):
        values = part.set_index("metric")
        rows.append({**dict(zip(keys, group)), "n": int(part["n_seeds"].max()),
                     **{name: (interval_text(*values.loc[metric, ["mean", "ci_low", "ci_high"]], ".3f")
                               if metric in values.index else "–")
                        for metric, name in CALIBRATION_METRICS.items() if metric in set(calib["metric"])}})
    return pd.DataFrame(rows).sort_values(keys, key=lambda c: c.map(order) if c.name == "model" else c)


def bench_table(rows: pd.DataFrame) -> pd.DataFrame:
    """`wmbench bench` rows, one line per model, precision and horizon (the latest run of each)."""
    columns = {"gen_time_s": "time (s)", "transitions_per_s": "transitions/s", "gflop": "GFLOP",
               "gflops_achieved": "GFLOP/s", "peak_fraction": "fraction of peak",
               "denoiser_peak_fraction": "denoiser pass, fraction of peak",
               "peak_gflops": "matmul peak (GFLOP/s)"}
    if rows.empty:
        return pd.DataFrame()
    wide = rows.pivot_table(index=["model", "precision", "env", "horizon", "device"], columns="metric",
                            values="value", aggfunc="last").reset_index()
    wide = wide[[c for c in ["model", "precision", "env", "horizon", "device", *columns] if c in wide]]
    wide = wide.rename(columns=columns)
    order = {m: i for i, m in enumerate(ordered_models(wide["model"]))}
    return wide.sort_values(["precision", "horizon", "model"], key=lambda c: c.map(order) if c.name == "model" else c)


def write_csv(tidy: pd.DataFrame, path: Path) -> Path:
    """`tidy` as a report's CSV at `path` (atomic, floats at `CSV_FLOAT`); returns `path`."""
    atomic_write_bytes(path, tidy.to_csv(index=False, float_format=CSV_FLOAT).encode())
    return path


def write_table(tidy: pd.DataFrame, wide: pd.DataFrame, stem: Path) -> list[Path]:
    atomic_write_bytes(stem.with_suffix(".md"), (markdown_table(wide) + "\n").encode())
    return [write_csv(tidy, stem.with_suffix(".csv")), stem.with_suffix(".md")]
