"""Error against a setting a sweep varied (`--grid`, `--policy-std`): the data-size and the
policy-entropy studies. Each grid value is its own experiment: statistics and paired comparisons
are taken within a value, never pooled across values.

A cell's value of the key: the behaviour policy's std (`policy_std`) from its policy label; the
training size (`data.train_transitions`) as asked for (each seed's subset of whole episodes is
about that size; rows record the exact one as `train_transitions`), all the data (0) as the full
training split's size that the cells of its dataset record (`dataset_train_transitions`, also
for cells stored before that column); any other key from the cell's resolved config (its default
where the config leaves an added field out).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd

from wmbench.cells import BEHAVIOUR_LABEL
from wmbench.config import section_class
from wmbench.errors import UsageError
from wmbench.report.comparisons import METHOD, p_text, pooled_groups, report_comparisons, with_holm
from wmbench.report.recordings import HERE, across_wide, common_cells, recording_tables, shifts_wide, spread_wide
from wmbench.report.select import EMPTY_STORE, Selection, base_model
from wmbench.report.stats import FLOOR, compare, interval_text, summarise
from wmbench.report.tables import aggregate_scores, calibration_wide

POLICY_STD = "policy_std"
TRAIN_SIZE = "data.train_transitions"
GRID_COLUMN = "grid"


def trains_alike(key: str) -> bool:
    """Whether every value of the key evaluates the same trained models (the evaluation policy and the
    evaluation settings never enter a world model's training: its checkpoint does not depend on them)."""
    return key == POLICY_STD or key.partition(".")[0] in ("policy", "evaluate")


def grid_values(rows: pd.DataFrame, key: str) -> pd.Series:
    """Each row's value of `key` (NaN where the cell has none: a `bc` cell against `policy_std`)."""
    if key == POLICY_STD:
        labels = rows["policy"].astype(str)
        return pd.to_numeric(labels.str.removeprefix(BEHAVIOUR_LABEL).where(labels.str.startswith(BEHAVIOUR_LABEL)),
                             errors="coerce")
    if key == TRAIN_SIZE:  # the size asked for (a seed's subset differs from it by part of an episode)
        asked = rows["config"].map(lambda text: _config_value(text, "data", "train_transitions"))
        full = rows.get("dataset_train_transitions", pd.Series(np.nan, index=rows.index))
        full = full.groupby([rows["env"], rows["dataset"]]).transform("max")  # also for cells stored before it
        return pd.to_numeric(asked.where(asked != 0, full), errors="coerce")
    section, dot, name = key.partition(".")
    if not dot:
        raise UsageError(f"--against takes SECTION.KEY (e.g. {TRAIN_SIZE}) or {POLICY_STD}, got {key!r}")
    return pd.to_numeric(rows["config"].map(lambda text: _config_value(text, section, name)), errors="coerce")


def _config_value(text, section: str, name: str):
    """A field of a cell's config (`section`: a shared section or the cell's model), its declared default
    where the config leaves it out (an added field at its default); None where the cell has no such field."""
    config = json.loads(text) if isinstance(text, str) else {}
    if section not in config:
        return None
    if name in config[section]:
        return config[section][name]
    field = {f.name: f for f in dataclasses.fields(section_class(section))}.get(name)
    return None if field is None else field.default


def _without(text, key: str):
    """A cell's config without the grid key, so that its values are not named as variants of a model."""
    section, _, name = key.partition(".")
    if not isinstance(text, str):
        return text
    config = json.loads(text)
    config.get(section, {}).pop(name, None)
    return json.dumps(config, sort_keys=True)


def grid_selection(table: pd.DataFrame, key: str, profile: str | None) -> Selection:
    """The rows that have a value of `key` (column `grid`), as a selection whose models are not split by it."""
    if table.empty:
        raise UsageError(EMPTY_STORE)
    rows = table.assign(**{GRID_COLUMN: grid_values(table, key)})
    rows = rows[rows[GRID_COLUMN].notna()].copy()
    if rows.empty:
        raise UsageError(f"no cell in the store has a value of {key}; run a sweep with --grid {key}=V1,V2,... "
                         f"(or --policy-std S1,S2 for {POLICY_STD})")
    if rows.groupby("env")[GRID_COLUMN].nunique().max() < 2:
        raise UsageError(f"the store holds one value of {key} per env: there is nothing to draw against it; "
                         f"run a sweep with --grid {key}=V1,V2,...")
    rows["config"] = rows["config"].map(lambda text: _without(text, key))
    if key == POLICY_STD:
        rows["policy"] = "behaviour"  # one panel per env, the std on the x axis
    return Selection.from_store(rows, profile)


def at_value(sel: Selection, value: float) -> Selection:
    return Selection(sel.rows[sel.rows[GRID_COLUMN] == value], sel.profile)


def values(sel: Selection) -> list[float]:
    return sorted(sel.rows[GRID_COLUMN].unique())


def terminating_panels(sel: Selection) -> set[str]:
    """Panels where some trajectory ends in the simulator (the alive error differs from the error)."""
    alive = sel.metric("alive_fraction")
    return set(alive.loc[alive["value"] < 1, "panel"])


MEASURES = ("mse, step 1", "mse, step h", "alive mse, step h")


def grid_errors(sel: Selection) -> pd.DataFrame:
    """`[measure, panel, model, horizon, step, grid, mean, ci_low, ci_high, n_seeds]`: the error at step 1
    and at the horizon (`mse`), and the alive error at the horizon where the env terminates (`mse_alive`)."""
    rows = sel.rows[sel.rows["metric"].isin(["mse", "mse_alive"]) & sel.rows["value"].notna()]
    first = rows[(rows["metric"] == "mse") & (rows["step"] == 1)].assign(measure="mse, step 1")
    last = rows[(rows["metric"] == "mse") & (rows["step"] == rows["horizon"])].assign(measure="mse, step h")
    alive = rows[(rows["metric"] == "mse_alive") & (rows["step"] == rows["horizon"])
                 & rows["panel"].isin(terminating_panels(sel))].assign(measure="alive mse, step h")
    frame = pd.concat([first, last, alive], ignore_index=True)
    if frame.empty:
        return pd.DataFrame()
    return summarise(frame, ["measure", "panel", "model", "horizon", "step", GRID_COLUMN]).sort_values(
        ["measure", "panel", "model", GRID_COLUMN], key=lambda c: c.map(MEASURES.index) if c.name == "measure" else c
    ).reset_index(drop=True)


def grid_aggregate(sel: Selection, key: str) -> pd.DataFrame:
    """The aggregate score (`tables.aggregate_scores`) at each value of the key that every env has (an
    aggregate over envs needs all of them); with the training size, each env's full data is one value
    (the largest of the envs' full sizes), however many transitions its dataset holds."""
    rows = sel.rows
    if key == TRAIN_SIZE:
        largest = rows.groupby("panel")[GRID_COLUMN].transform("max")
        rows = rows.assign(**{GRID_COLUMN: rows[GRID_COLUMN].where(rows[GRID_COLUMN] != largest, largest.max())})
    common = set.intersection(*(set(part) for _, part in rows.groupby("panel")[GRID_COLUMN]))
    sel = Selection(rows[rows[GRID_COLUMN].isin(common)], sel.profile)
    frames = [aggregate_scores(at_value(sel, value)).assign(**{GRID_COLUMN: value}) for value in values(sel)]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def grid_comparisons(sel: Selection, metric: str = "mse") -> pd.DataFrame:
    """The report's paired comparisons (`comparisons.report_comparisons`) at each value of the key; each
    value's, its own experiment and table, are one family (`p_holm`)."""
    frames = [report_comparisons(at_value(sel, value), metric).assign(**{GRID_COLUMN: value})
              for value in values(sel)]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def objective_table(sel: Selection) -> pd.DataFrame:
    """`[panel, model, grid, split, mean, ci_low, ci_high, n_seeds]`: each model's training objective on the
    data it learnt from (`train`) and on the held-out episodes (`held-out`), and their paired gap per seed
    (`gap`, held-out minus train: above 0, the model fits its data better than data it has not seen)."""
    rows = sel.rows[sel.rows["metric"].isin(["train_loss", "held_out_loss"]) & sel.rows["value"].notna()]
    if rows.empty:
        return pd.DataFrame()
    keys = ["panel", "model", GRID_COLUMN, "seed"]
    wide = rows.pivot_table(index=keys, columns="metric", values="value").dropna().reset_index()
    long = pd.concat([wide.assign(split="train", value=wide["train_loss"]),
                      wide.assign(split="held-out", value=wide["held_out_loss"]),
                      wide.assign(split="gap", value=wide["held_out_loss"] - wide["train_loss"])], ignore_index=True)
    return summarise(long, ["panel", "model", GRID_COLUMN, "split"]).sort_values(
        ["panel", "model", GRID_COLUMN, "split"]).reset_index(drop=True)


def calibration_grid_wide(calib: pd.DataFrame, key: str, models: list[str]) -> pd.DataFrame:
    """`tables.calibration_wide` with a row per value of the key (named by the key, written as its values are)."""
    wide = calibration_wide(calib, models, by=(GRID_COLUMN,))
    return wide.assign(**{GRID_COLUMN: wide[GRID_COLUMN].map(lambda v: value_text(v, key))}).rename(
        columns={GRID_COLUMN: key}).reset_index(drop=True)


def value_text(value: float, key: str) -> str:
    return f"{value:,.0f}" if key == TRAIN_SIZE else f"{value:g}"


def grid_wide(errors: pd.DataFrame, key: str, measure: str, models: list[str]) -> pd.DataFrame:
    """Rows of models, a column per (panel, value): `mean [low, high] (n)` of one measure."""
    part = errors[errors["measure"] == measure]
    out = pd.DataFrame({"model": [m for m in models if m in set(part["model"])]})
    for (panel, value), column in part.groupby(["panel", GRID_COLUMN]):
        column = column.set_index("model")
        out[f"{panel} · {value_text(value, key)}"] = [
            f"{interval_text(*column.loc[m, ['mean', 'ci_low', 'ci_high']])} (n={int(column.loc[m, 'n_seeds'])})"
            if m in column.index else "–" for m in out["model"]]
    return out


ROBUSTNESS_COLUMNS = ["panel", "horizon", GRID_COLUMN, "reference", "a", "b", "n", "ratio", "ratio_low", "ratio_high",
                      "verdict", "p_value", "p_holm"]


def _last_errors(sel: Selection, metric: str) -> pd.DataFrame:
    """`[panel, horizon, seed] x (model, grid)`: each cell's `metric` at its horizon."""
    rows = sel.metric(metric).dropna(subset=["value"])
    rows = rows[rows["step"] == rows["horizon"]]
    return rows.pivot_table(index=["panel", "horizon", "seed"], columns=["model", GRID_COLUMN], values="value")


def _growths(sel: Selection, metric: str) -> tuple[list[tuple], pd.Series]:
    """`([(value, a, b, growth of a, growth of b or None)], each panel's largest value)`: each model's error at a
    value over its own at its panel's largest value, per `[panel, horizon, seed]`, and PolyGRAD's beside each other
    model's at the same value; the persistence floor, which learns nothing, is left out."""
    errors = _last_errors(sel, metric)
    reference = sel.rows.groupby("panel")[GRID_COLUMN].max()  # each env's full data (its sizes differ)
    if errors.empty:
        return [], reference
    row_reference = pd.Series(errors.index.get_level_values("panel").map(reference), index=errors.index)
    models = [m for m in sel.models if m != FLOOR and m in errors.columns.get_level_values("model")]
    growth = {}
    for model in models:
        own = errors[model]
        at_reference = pd.Series([own.at[row, ref] if ref in own.columns else np.nan
                                  for row, ref in row_reference.items()], index=errors.index)
        for value in own.columns:
            ratio = (own[value] / at_reference).where(row_reference != value)
            if ratio.notna().any():
                growth[model, value] = ratio
    pairs = []
    for (model, value), ratio in growth.items():
        pairs.append((value, model, "", ratio, None))
        if base_model(model) == METHOD:
            pairs += [(value, model, other, ratio, growth[other, value]) for other in models
                      if base_model(other) != METHOD and (other, value) in growth]
    return pairs, reference


def robustness(sel: Selection, metric: str = "mse") -> pd.DataFrame:
    """How much each model's error grows away from the largest value of the key in each env (all its data),
    and whether PolyGRAD's grows less than another model's: paired by seed (a seed's subsets are nested).

    Rows with `b` empty: model `a`'s error at the value over its own at the env's `reference` (its largest
    value), the geometric mean over seeds with a paired t interval. Rows with `b`: that growth of PolyGRAD
    over the growth of `b` (below 1: PolyGRAD loses less accuracy: more robust); the verdict as in
    `stats.compare`. Each env, and all envs pooled (reference NaN: each env's own); the persistence floor,
    which learns nothing, is left out. Each kind of row (a model's own growth; PolyGRAD's against another's),
    one table of the report, is one family (`p_holm`)."""
    pairs, reference = _growths(sel, metric)
    rows = [row for value, a, b, growth_a, growth_b in pairs
            for row in _compared(growth_a, growth_b, value, reference, a, b)]
    return holm_per_kind(pd.DataFrame(rows, columns=ROBUSTNESS_COLUMNS))


def holm_per_kind(rows: pd.DataFrame) -> pd.DataFrame:
    """`p_holm` within each kind of growth (`b` empty: a model's own; else PolyGRAD's over `b`'s), the families
    of the robustness table and of its tables over recordings."""
    families = [with_holm(part) for _, part in rows.groupby(rows["b"] == "", sort=False)]
    return pd.concat(families).sort_index() if families else rows


GROWTH = ["panel", "horizon", GRID_COLUMN, "a", "b"]  # what names a growth ratio (`recordings`' keys)


def growth_log_ratios(sel: Selection, metric: str = "mse") -> pd.DataFrame:
    """`[*GROWTH, seed, log_ratio]`: the log of each growth of `robustness` per panel and seed (`b` empty: a
    model's own growth; else PolyGRAD's growth over `b`'s)."""
    frames = []
    for value, a, b, growth_a, growth_b in _growths(sel, metric)[0]:
        ratio = growth_a if growth_b is None else growth_a / growth_b
        frame = np.log(ratio.dropna()).rename("log_ratio").reset_index()
        frames.append(frame.assign(**{GRID_COLUMN: value, "a": a, "b": b}))
    columns = [*GROWTH, "seed", "log_ratio"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def compare_grid_recordings(here: pd.DataFrame, others: dict[str, pd.DataFrame], key: str, profile: str,
                            metric: str = "mse") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """`recordings.recording_tables` of the robustness table's growths: on each of `others` (the same sweep on
    another recording of the datasets) each growth is taken against that recording's own largest value; Holm
    within each kind of growth, as in the robustness table."""
    frames = {HERE: growth_log_ratios(grid_selection(here, key, profile), metric)}
    for name, there in others.items():
        try:
            frames[name] = growth_log_ratios(grid_selection(common_cells(here, there, name), key, profile), metric)
        except UsageError as error:
            raise UsageError(f"{name}: {error}") from None
    return recording_tables(frames, GROWTH, metric, families=holm_per_kind)


def recording_wide(shifts: pd.DataFrame, spread: pd.DataFrame, across: pd.DataFrame,
                   key: str) -> dict[str, pd.DataFrame]:
    """`recordings`' readable tables of the growths: `A (own)` for a model's own growth, the key's value beside the
    panel, and the verdicts said of growths."""
    def relabel(wide: pd.DataFrame, tidy: pd.DataFrame) -> pd.DataFrame:
        names = np.where(tidy["b"] == "", tidy["a"] + " (own)", tidy["a"] + " vs " + tidy["b"])
        wide = wide.assign(**{"A vs B": names})
        wide.insert(3, key, [value_text(v, key) for v in tidy[GRID_COLUMN]])
        return wide

    across_text = relabel(across_wide(across), across)
    if "verdict" in across_text:
        across_text["verdict"] = growth_verdicts(across["verdict"], across["b"]).to_numpy()
    return {"shifts": relabel(shifts_wide(shifts), shifts), "spread": spread_wide(spread), "across": across_text}


def growth_verdicts(verdicts: pd.Series, b: pd.Series) -> pd.Series:
    """Verdicts said of a growth: a model's own error `grows` or `shrinks`; PolyGRAD `more robust` than `b` or
    `less robust`."""
    own = verdicts.str.replace("better", "shrinks").str.replace("worse", "grows")
    versus = verdicts.str.replace("better", "PolyGRAD more robust").str.replace("worse", "PolyGRAD less robust")
    return own.where(b == "", versus)


def _compared(a: pd.Series, b: pd.Series | None, value, reference: pd.Series, name_a: str, name_b: str) -> list[list]:
    """Rows of `ROBUSTNESS_COLUMNS` per (panel, horizon) and pooled over envs: `a` against `b`
    (against 1 when `b` is None), paired over the seeds both have; `reference`: each panel's."""
    pair = pd.concat([a.rename("a"), (a * 0 + 1 if b is None else b).rename("b")], axis=1).dropna().reset_index()
    rows = []
    groups = [(panel, horizon, part) for (panel, horizon), part in pair.groupby(["panel", "horizon"])]
    for panel, horizon, part in groups + list(pooled_groups(pair)):
        c = compare(part["a"], part["b"], strata=part["panel"].to_numpy())  # one panel: one stratum, no strata
        rows.append([panel, int(horizon), value, reference.get(panel, np.nan), name_a, name_b, c.n, c.ratio, c.low,
                     c.high, c.verdict, c.p_value, np.nan])
    return rows


def robustness_wide(robust: pd.DataFrame, key: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Readable: each model's growth of error (`model`, panel, value, n, growth [interval]), and PolyGRAD's
    growth over each other model's with the verdict (below 1: PolyGRAD is more robust)."""
    text = [interval_text(*r, fmt=".2f") for r in robust[["ratio", "ratio_low", "ratio_high"]].to_numpy()]
    robust = robust.assign(text=text, at=[value_text(v, key) for v in robust[GRID_COLUMN]],
                           of=[value_text(v, key) if np.isfinite(v) else "each env's" for v in robust["reference"]])
    own, against = robust[robust["b"] == ""], robust[robust["b"] != ""]
    growth = pd.DataFrame({"model": own["a"], "panel": own["panel"], key: own["at"], "largest": own["of"],
                           "n": own["n"], "error / error at the largest": own["text"],
                           "Holm p": [p_text(p) for p in own["p_holm"]]})
    verdicts = growth_verdicts(against["verdict"], against["b"])
    versus = pd.DataFrame({"A vs B": against["a"] + " vs " + against["b"], "panel": against["panel"],
                           key: against["at"], "n": against["n"], "growth of A / growth of B": against["text"],
                           "verdict": verdicts, "Holm p": [p_text(p) for p in against["p_holm"]]})
    return growth.reset_index(drop=True), versus.reset_index(drop=True)
