"""How the report's paired comparisons move between recordings of the same datasets.

A seed's interval covers a model's training and the evaluation's draws, not the data: one SAC run's
buffer is one draw of the dataset, with its own BC policy and held-out start states. Given stores of the
same cells (model, env, dataset id, policy, profile, horizon and config) made on other recordings, each of
the report's paired ratios A/B is measured on every recording that has both models:
- its shift on each other recording (there / here) has a Welch t interval on the two recordings' per-seed
  log ratios (independent samples: the recordings share no start state), with Holm's adjustment over the
  table (`recording_shifts`);
- the spread tau a recording adds to a log ratio is estimated per panel by moments
  (`stats.between_spread`), the same for every comparison of the panel (`recording_spread`): an interval on
  one recording that also counted it would be sqrt(1 + tau^2 / se^2) times as wide, se being the seeds'
  standard error of a log ratio there;
- each ratio here gets that interval (`counted_low`, `counted_high`: the seeds' Student-t quantile on the seeds'
  variance plus tau^2, tau taken as known: never narrower than the seeds' own interval, and if anything too
  narrow where tau dominates), which says whether its verdict is about the kind of data or only about this
  recording; and where three or more recordings have it, the recording is the unit of replication: the
  geometric mean of the recordings' ratios with a Student-t interval over them, which covers the seeds' and
  the recording's spread together, and that comparison's own tau (`recording_comparisons`).
The same tables hold any log ratio named by other keys (`recording_tables`): the data-size report's growths of
error (`grid.compare_grid_recordings`), each taken against its own recording's full data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from wmbench.errors import UsageError
from wmbench.report.comparisons import p_text, paired, report_pairs, verdict_text, with_holm
from wmbench.report.select import POOLED, Selection
from wmbench.report.stats import (
    LEVEL,
    between_spread,
    interval_text,
    mean_interval,
    paired_t_p_value,
    verdict,
    welch_interval,
)

CELL = ["model", "env", "dataset", "policy", "profile", "horizon", "config_hash"]  # two stores' cells alike
HERE = "here"  # the report's own store, among the recordings
COMPARISON = ["panel", "horizon", "a", "b"]  # what names a ratio (the first key is its panel)
MIN_UNITS = 3  # recordings for an interval over them: a t interval over two reaches 12.7 standard errors each side
SHIFT_COLUMNS = ["other", "n_here", "ratio_here", "n_there", "ratio_there", "shift", "shift_low", "shift_high",
                 "p_value", "p_holm", "var_here", "var_there"]  # after `metric` and the comparison's keys
ACROSS_COLUMNS = ["n_here", "ratio_here", "counted_low", "counted_high", "recordings", "seeds", "ratio", "ratio_low",
                  "ratio_high", "verdict", "p_value", "p_holm", "tau"]


def common_cells(here: pd.DataFrame, there: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of `there`'s cells (the store `name`) that `here` also has (the same `CELL` keys, any seeds)."""
    keys = [c for c in CELL if c in here and c in there]
    shared = there.merge(here[keys].drop_duplicates())
    if shared.empty:
        raise UsageError(f"{name} shares no cell with the report's store (the same model, env, dataset, policy, "
                         "profile, horizon and config): --other-recording takes a store of the same sweep on another "
                         "recording of the data")
    return shared


def log_ratios(sel: Selection, metric: str = "mse", pairs: list[tuple[str, str]] | None = None,
               step: int | None = None) -> pd.DataFrame:
    """`[panel, horizon, a, b, seed, log_ratio]`: each pair A/B (default: the report's) per seed, at `step`
    (default: each horizon's last)."""
    pairs = report_pairs(sel.models) if pairs is None else pairs
    frames = [paired(sel, a, b, metric, step).rename(columns={"a": "value_a", "b": "value_b"}).assign(a=a, b=b)
              for a, b in pairs]
    frames = [f.assign(log_ratio=np.log(f["value_a"] / f["value_b"])) for f in frames if not f.empty]
    columns = [*COMPARISON, "seed", "log_ratio"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def compare_recordings(here: pd.DataFrame, others: dict[str, pd.DataFrame], profile: str, metric: str = "mse",
                       pairs: list[tuple[str, str]] | None = None,
                       step: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """`(shifts, spread, across)` of the comparisons `pairs` (default: the report's) between the store rows `here`
    and each of `others` (named by their stores; one profile): `recording_tables` of `log_ratios`."""
    here = here[here["profile"] == profile]
    frames = {HERE: log_ratios(Selection.from_store(here, profile), metric, pairs, step)}
    for name, there in others.items():
        frames[name] = log_ratios(Selection.from_store(common_cells(here, there, name), profile), metric, pairs, step)
    return recording_tables(frames, COMPARISON, metric)


def recording_tables(frames: dict[str, pd.DataFrame], keys: list[str], metric: str,
                     families: Callable[[pd.DataFrame], pd.DataFrame] = with_holm,
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """`(shifts, spread, across)`: `recording_shifts`, `recording_spread` and `across_recordings` of per-seed log
    ratios (`[*keys, seed, log_ratio]`) on each recording (`frames`, the report's own store as `HERE`); `families`
    gives the shifts and the table over recordings their `p_holm` (default: each table one family)."""
    ratios = pd.concat([f.assign(recording=name) for name, f in frames.items()], ignore_index=True)
    means = recording_means(ratios, keys)
    shifts = recording_shifts(means, ratios, metric, keys)
    if shifts.empty:
        raise UsageError("the stores share no comparison asked for (two models, or a model at two values, on "
                         "the same cells): --other-recording takes a store of the same sweep on another recording of "
                         "the data")
    spread = recording_spread(means, keys)
    return families(shifts), spread, families(across_recordings(means, spread, metric, keys))


def recording_means(ratios: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`[*keys, recording, n, mean, var]`: each recording's mean log ratio over its seeds and the seeds' variance
    of that mean (NaN with one seed); only comparisons that the report's own store has."""
    grouped = ratios.groupby([*keys, "recording"], sort=False)["log_ratio"]
    means = grouped.agg(n="count", mean="mean", var=lambda x: x.var(ddof=1) / len(x)).reset_index()
    ours = means.loc[means["recording"] == HERE, keys]
    return means.merge(ours)


def recording_shifts(means: pd.DataFrame, ratios: pd.DataFrame, metric: str, keys: list[str]) -> pd.DataFrame:
    """`[metric, *keys, *SHIFT_COLUMNS]`: each comparison's ratio on each other recording over its ratio here, the
    shift's Welch interval (`p_holm` left to `recording_tables`)."""
    seeds = {key: part["log_ratio"].to_numpy() for key, part in ratios.groupby([*keys, "recording"])}
    here = means[means["recording"] == HERE].set_index(keys)
    rows = []
    for r in means[means["recording"] != HERE].to_dict("records"):
        key = tuple(r[k] for k in keys)
        mine, theirs = here.loc[key], seeds[(*key, r["recording"])]
        shift, low, high, p = welch_interval(seeds[(*key, HERE)], theirs)
        rows.append([metric, *key, r["recording"], int(mine["n"]), np.exp(mine["mean"]), int(r["n"]),
                     np.exp(r["mean"]), np.exp(shift), np.exp(low), np.exp(high), p, np.nan, mine["var"], r["var"]])
    return _keyed(pd.DataFrame(rows, columns=["metric", *keys, *SHIFT_COLUMNS]))


def _keyed(table: pd.DataFrame) -> pd.DataFrame:
    """Horizons as integers (a group key comes back as whatever the groupby held)."""
    return table.astype({"horizon": int}) if len(table) else table


def recording_spread(means: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`[panel, comparisons, recordings, tau, se, widening]` per panel and over all of them (`POOLED`): the spread
    tau a recording adds to a log ratio, the seeds' root-mean-square standard error of a log ratio here, and how
    many times wider an interval here would be if it counted the recording too. Comparisons with one seed on
    some recording have no variance there and are left out."""
    estimated = [(key, part) for key, part in means.groupby(keys, sort=False)
                 if len(part) > 1 and part["var"].notna().all()]  # on 2+ recordings, each with a seeds' variance
    panels = {}
    for key, part in estimated:
        panels.setdefault(key[0], []).append(part)
    groups = list(panels.items()) + [(POOLED, [p for _, p in estimated])] * (len(panels) > 1)
    rows = []
    for panel, parts in groups:
        tau = between_spread([p["mean"] for p in parts], [p["var"] for p in parts])
        se = float(np.sqrt(np.mean([p.loc[p["recording"] == HERE, "var"].iloc[0] for p in parts])))
        recordings = len(set().union(*(p["recording"] for p in parts)))
        rows.append((panel, len(parts), recordings, tau, se, float(np.sqrt(1 + tau ** 2 / se ** 2)) if se > 0
                     else np.nan))
    return pd.DataFrame(rows, columns=["panel", "comparisons", "recordings", "tau", "se", "widening"])


def across_recordings(means: pd.DataFrame, spread: pd.DataFrame, metric: str, keys: list[str]) -> pd.DataFrame:
    """`[metric, *keys, *ACROSS_COLUMNS]`, one row per comparison here that another recording also has: its ratio
    here with an interval that counts its panel's tau (`counted_*`), and where `MIN_UNITS` or more recordings have
    it, the recordings as the unit (`ratio`: the geometric mean of their ratios, a Student-t interval over them,
    its verdict and p-value; `p_holm` left to `recording_tables`) with its own `tau` (NaN with fewer recordings,
    or a recording of one seed)."""
    tau = spread.set_index("panel")["tau"]
    rows = []
    for key, part in means.groupby(keys, sort=False):
        if len(part) < 2:  # here only: nothing to say about recordings
            continue
        mine = part[part["recording"] == HERE].iloc[0]
        quantile = stats.t.ppf((1 + LEVEL) / 2, mine["n"] - 1)  # the seeds' own: a tau of 0 gives their interval
        half = quantile * np.sqrt(mine["var"] + tau.get(key[0], np.nan) ** 2)
        ratio_here = np.exp(mine["mean"])
        row = [metric, *key, int(mine["n"]), ratio_here, ratio_here / np.exp(half), ratio_here * np.exp(half),
               len(part), int(part["n"].sum())]
        if len(part) >= MIN_UNITS:
            centre, low, high = np.exp(mean_interval(part["mean"].to_numpy()))
            spread_here = between_spread([part["mean"]], [part["var"]]) if part["var"].notna().all() else np.nan
            row += [centre, low, high, verdict(low, high, f"{len(part)} recordings"), paired_t_p_value(part["mean"]),
                    np.nan, spread_here]
        else:
            row += [np.nan] * 3 + ["", np.nan, np.nan, np.nan]
        rows.append(row)
    return _keyed(pd.DataFrame(rows, columns=["metric", *keys, *ACROSS_COLUMNS]))


def shifts_wide(shifts: pd.DataFrame) -> pd.DataFrame:
    """Readable: `A vs B`, panel, h, the other recording (where there are several), each recording's ratio and
    seeds, the shift with its interval, `Holm p`."""
    wide = pd.DataFrame({
        "A vs B": shifts["a"] + " vs " + shifts["b"],
        "panel": shifts["panel"],
        "h": shifts["horizon"],
        "other recording": shifts["other"],
        "ratio here": [f"{r:.2f} (n={n})" for r, n in zip(shifts["ratio_here"], shifts["n_here"])],
        "ratio there": [f"{r:.2f} (n={n})" for r, n in zip(shifts["ratio_there"], shifts["n_there"])],
        "shift there / here": [interval_text(*r, ".2f") for r in shifts[["shift", "shift_low", "shift_high"]].values],
        "Holm p": [p_text(p) for p in shifts["p_holm"]],
    })
    return wide if shifts["other"].nunique() > 1 else wide.drop(columns="other recording")


def across_wide(across: pd.DataFrame) -> pd.DataFrame:
    """Readable: `A vs B`, panel, h, the ratio here with the recording counted, and over the recordings (where
    there are enough) the ratio with its interval, the verdict, `Holm p` and the comparison's own tau."""
    wide = pd.DataFrame({
        "A vs B": across["a"] + " vs " + across["b"],
        "panel": across["panel"],
        "h": across["horizon"],
        "ratio here, recording counted": [f"{interval_text(*r, '.2f')} (n={n})" for r, n in zip(
            across[["ratio_here", "counted_low", "counted_high"]].values, across["n_here"])],
        "recordings (seeds)": [f"{k} ({s})" for k, s in zip(across["recordings"], across["seeds"])],
        "ratio over recordings": [interval_text(*r, ".2f") if not np.isnan(r[0]) else "" for r in
                                  across[["ratio", "ratio_low", "ratio_high"]].values],
        "verdict": verdict_text(across["verdict"]),
        "Holm p": [p_text(p) for p in across["p_holm"]],
        "tau": ["" if np.isnan(t) else f"{t:.3f}" for t in across["tau"]],
    })
    return wide if across["ratio"].notna().any() else wide.drop(
        columns=["ratio over recordings", "verdict", "Holm p", "tau"])


def spread_wide(spread: pd.DataFrame) -> pd.DataFrame:
    """Readable: per panel, tau and the seeds' standard error of a log ratio, and the interval widening."""
    return pd.DataFrame({
        "panel": spread["panel"],
        "comparisons": spread["comparisons"],
        "recordings": spread["recordings"],
        "recording's SD of a log ratio (tau)": spread["tau"].map("{:.3f}".format),
        "seeds' SE of a log ratio here": spread["se"].map("{:.3f}".format),
        "interval widening": spread["widening"].map("{:.1f}x".format),
    })
