"""Paired comparisons of two models and the findings they back.

Two cells of one panel, horizon and seed share the start states and the policy, so the errors of
two models there are paired samples. A model trained for one horizon is compared at that horizon's
last step; by default every comparison is at step h, the error the paper reports. The report
compares PolyGRAD (the paper's method) with every other model and every learned model with the
`linear` floor; `wmbench compare` compares any two. The comparisons of one table are one family:
`p_holm` is each one's p-value adjusted for all of them (`stats.holm`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from wmbench.errors import UsageError
from wmbench.report.select import Selection, base_model, ordered_models, pooled_panel
from wmbench.report.stats import LEVEL, Comparison, compare, holm, interval_text

METHOD = "polygrad"  # the paper's method: the report compares it with every other model
LINEAR = "linear"  # the least a learned model should beat
FLOORS = ("linear", "persistence")
COLUMNS = ["metric", "panel", "horizon", "step", "a", "b", "n", "ratio", "ratio_low", "ratio_high", "p_improvement",
           "p_low", "p_high", "verdict", "p_value", "p_holm"]
FAMILY_ALPHA = 1 - LEVEL  # a verdict holds for its table when its Holm-adjusted p-value is below this


def paired(sel: Selection, a: str, b: str, metric: str = "mse", step: int | None = None) -> pd.DataFrame:
    """`[panel, horizon, seed, a, b]`: the two models' `metric` at `step` (default: each horizon's last)
    in every (panel, horizon, seed) both have."""
    rows = sel.metric(metric).dropna(subset=["value"])
    rows = rows[rows["step"] == (rows["horizon"] if step is None else step)]
    keys = ["panel", "horizon", "seed"]
    values = [rows[rows["model"] == m].groupby(keys)["value"].mean().rename(side) for m, side in ((a, "a"), (b, "b"))]
    return pd.concat(values, axis=1, join="inner").reset_index()


def comparison_rows(sel: Selection, a: str, b: str, metric: str = "mse", step: int | None = None,
                    aggregate: bool = True) -> pd.DataFrame:
    """One row per (panel, horizon) where both models have a seed (`COLUMNS`); with `aggregate`, also the
    envs pooled (`pooled_groups`; strata: the panels)."""
    pairs = paired(sel, a, b, metric, step)
    rows = []
    for (panel, horizon), part in pairs.groupby(["panel", "horizon"]):
        rows.append(_row(metric, panel, horizon, step, a, b, compare(part["a"], part["b"])))
    if aggregate:
        for panel, horizon, part in pooled_groups(pairs):
            rows.append(_row(metric, panel, horizon, step, a, b,
                             compare(part["a"], part["b"], strata=part["panel"].to_numpy())))
    return pd.DataFrame(rows, columns=COLUMNS)


def pooled_groups(pairs: pd.DataFrame) -> Iterator[tuple[str, int, pd.DataFrame]]:
    """`(label, horizon, rows)` for each pooled comparison of `pairs` (a `panel`, `horizon` and `seed` per row):
    the envs pooled per horizon and per setting that splits an env into panels (policy, dataset or
    precision: `hopper · bc`), so that no seed counts once per panel of one env (those share start
    states, and often the trained model: they are not independent runs); only where several envs pool."""
    for (horizon, pooled), part in pairs.groupby([pairs["horizon"], pairs["panel"].map(pooled_panel)]):
        if part["panel"].nunique() > 1:
            yield pooled, horizon, part


def _row(metric, panel, horizon, step, a, b, c: Comparison) -> list:
    return [metric, panel, int(horizon), int(horizon if step is None else step), a, b, c.n, c.ratio, c.low, c.high,
            c.p_improvement, c.p_low, c.p_high, c.verdict, c.p_value, np.nan]


def with_holm(comparisons: pd.DataFrame) -> pd.DataFrame:
    """The table with `p_holm`: every row's p-value adjusted over all of the table's rows, its family."""
    return comparisons.assign(p_holm=holm(comparisons["p_value"].to_numpy(dtype=np.float64)))


def not_after_holm(rows: pd.DataFrame) -> pd.Series:
    """Whether each row has a verdict (better or worse) that does not survive Holm's adjustment over its table."""
    return rows["verdict"].isin(["better", "worse"]) & ~(rows["p_holm"] < FAMILY_ALPHA)


def report_comparisons(sel: Selection, metric: str = "mse") -> pd.DataFrame:
    """The report's comparisons at each horizon's last step: PolyGRAD against every other model, and
    every other learned model against `linear` (each panel, and the aggregate over panels)."""
    frames = [comparison_rows(sel, a, b, metric) for a, b in report_pairs(sel.models)]
    frames = [f for f in frames if not f.empty]
    return with_holm(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame(columns=COLUMNS)


def report_pairs(models: list[str]) -> list[tuple[str, str]]:
    """The report's pairs `(A, B)`: each of PolyGRAD's variants (one per horizon) against every other model,
    and every other learned model against `linear`."""
    methods = [m for m in models if base_model(m) == METHOD]
    pairs = [(a, b) for a in methods for b in models if base_model(b) != METHOD]
    return pairs + [(m, LINEAR) for m in models if base_model(m) not in (METHOD, *FLOORS) and LINEAR in models]


def comparison_wide(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Readable: `A vs B`, panel, h, n, the ratio and P(A < B) with their intervals, the verdict, and the
    Holm-adjusted p-value (the verdict holds for the whole table where it is below 0.05)."""
    return pd.DataFrame({
        "A vs B": comparisons["a"] + " vs " + comparisons["b"],
        "panel": comparisons["panel"],
        "h": comparisons["horizon"],
        "n": comparisons["n"],
        "error ratio A/B": [interval_text(*r, ".2f") for r in comparisons[["ratio", "ratio_low", "ratio_high"]].values],
        "P(A < B)": [interval_text(*r, ".2f") for r in comparisons[["p_improvement", "p_low", "p_high"]].values],
        "verdict": verdict_text(comparisons["verdict"]),
        "Holm p": [p_text(p) for p in comparisons["p_holm"]],
    })


def verdict_text(verdicts: pd.Series) -> pd.Series:
    """A table's verdicts said of A: `A better`, `A worse`, or that the replicates cannot tell."""
    return verdicts.str.replace("better", "A better").str.replace("worse", "A worse")


def p_text(p: float) -> str:
    """A p-value in two significant figures (`<0.001` below that; empty for none)."""
    return "" if np.isnan(p) else "<0.001" if p < 0.001 else f"{p:.2g}"


def findings(comparisons: pd.DataFrame) -> list[str]:
    """One Markdown bullet per compared pair and horizon, written from the comparisons alone: where A is
    better, where worse, and where the seeds cannot tell (each with its ratio, interval and n; a verdict
    that does not survive Holm's adjustment over the table says `not after Holm`)."""
    lines = []
    order = {m: i for i, m in enumerate(ordered_models(pd.concat([comparisons["a"], comparisons["b"]])))}
    ranked = comparisons.assign(_a=comparisons["a"].map(order), _b=comparisons["b"].map(order))
    for (_, _, horizon, a, b), part in ranked.groupby(["_a", "_b", "horizon", "a", "b"], sort=True):
        said = []
        for verdict, words in (("better", "more accurate"), ("worse", "less accurate")):
            hits = part[part["verdict"] == verdict]
            if len(hits):
                said.append(f"{words} on {_where(hits)}")
        unclear = part[~part["verdict"].isin(["better", "worse"])]
        if len(unclear):
            said.append(f"not distinguishable on {_where(unclear)}")
        lines.append(f"- `{a}` against `{b}` at h = {horizon}: " + "; ".join(said) + ".")
    return lines


def _where(rows: pd.DataFrame) -> str:
    """`hopper (0.85 [0.70, 1.03], n=3), all envs (...)`: where, with the ratio and its interval."""
    def one(r, chance: bool) -> str:
        interval = "" if np.isnan(r.ratio_low) else f" [{r.ratio_low:.2f}, {r.ratio_high:.2f}]"
        return f"{r.panel} ({r.ratio:.2f}x{interval}, n={r.n}{'; not after Holm' if chance else ''})"
    return ", ".join(one(r, chance) for r, chance in zip(rows.itertuples(), not_after_holm(rows)))


def named(sel: Selection, name: str) -> list[str]:
    """The models a user's name stands for: itself, or each of its variants (`polygrad` ->
    `polygrad (horizon=10)`, `polygrad (horizon=50)`); one line naming the store's models if none."""
    if name in sel.models:
        return [name]
    variants = [m for m in sel.models if base_model(m) == name]
    if not variants:
        raise UsageError(f"no results of model {name!r} in the store; it has: {', '.join(sel.models)}")
    return variants
