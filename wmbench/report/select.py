"""Which rows a report is drawn from and what they are called: the selection of one profile's
rows with a panel per env (and dataset, policy or precision where those vary), a model's variants
named apart, and the order and colour of every model."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import seaborn as sns

from wmbench.errors import UsageError

MODEL_ORDER = ("polygrad", "polygrad-transformer", "ar-diffusion", "ar-diffusion-2row", "transformer", "mlp-ensemble",
               "linear", "persistence", "ppo")

PANEL_SEPARATOR = " · "  # a panel's name: its env, then the policy, dataset or precision where those vary
POOLED = "all envs"  # the panel of several envs pooled
EMPTY_STORE = "the results store is empty: run `wmbench evaluate` or `wmbench sweep` first"


def pooled_panel(panel: str) -> str:
    """The panel that pools `panel` with the other envs' panels of its setting (`hopper · bc` -> `all envs · bc`):
    an env's own panels (policies, datasets or precisions) share its start states, and often the trained
    model, so they are never pooled as independent runs."""
    _, separator, setting = panel.partition(PANEL_SEPARATOR)
    return POOLED + separator + setting


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


DATASET_FACTS = ("dataset_steps", "dataset_episodes", "dataset_return_mean")  # tell a remade dataset apart


def check_one_version_per_dataset(rows: pd.DataFrame) -> None:
    """A dataset id whose cells were made from different recordings (a dataset remade, e.g. by another SAC
    run) cannot be compared across them: a cell's identity names the dataset, not its contents. One line."""
    facts = [c for c in DATASET_FACTS if c in rows]
    if not facts:
        return
    known = rows.dropna(subset=facts)
    for dataset, part in known.groupby("dataset"):
        versions = part[facts].drop_duplicates()
        if len(versions) > 1:
            episodes = " and ".join(f"{int(v)}" for v in versions["dataset_episodes"]) \
                if "dataset_episodes" in versions else f"{len(versions)} recordings"
            raise UsageError(f"the store holds cells of {dataset} made from {len(versions)} different recordings "
                             f"({episodes} episodes): their errors are not comparable; keep the cells of one "
                             "(the dataset_* columns tell them apart)")


def check_one_policy_per_label(rows: pd.DataFrame) -> None:
    """Cells of one dataset evaluated under one policy label and policy config, but by policies of other
    weights (a BC policy fitted again on another machine, say), did not see the same actions: their
    comparisons are not paired. One line. Cells stored before the fingerprint was recorded are not checked."""
    if "policy_fingerprint" not in rows:
        return
    known = rows.dropna(subset=["policy_fingerprint"]).assign(policy_settings="")
    if "config" in known:  # another policy config is another policy (a grid over policy.steps), not a conflict
        settings = {text: json.dumps(json.loads(text).get("policy"), sort_keys=True)
                    for text in known["config"].dropna().unique()}
        known["policy_settings"] = known["config"].map(settings).fillna("")
    for (dataset, policy, _), part in known.groupby(["dataset", "policy", "policy_settings"]):
        fingerprints = sorted(part["policy_fingerprint"].astype(str).unique())
        if len(fingerprints) > 1:
            raise UsageError(f"the store holds cells of {dataset} evaluated under {len(fingerprints)} different "
                             f"{policy} policies (policy_fingerprint {' and '.join(fingerprints)}): their errors are "
                             "not paired; keep the cells of one, or give every machine the same policy file "
                             "(datasets/<dataset>/wmbench/policy-*.pt in the workspace)")


@dataclass
class Selection:
    """The rows one report is drawn from, with a `panel` column."""

    rows: pd.DataFrame
    profile: str

    @classmethod
    def from_store(cls, table: pd.DataFrame, profile: str | None = None) -> Selection:
        if table.empty:
            raise UsageError(EMPTY_STORE)
        profiles = sorted(table["profile"].unique())
        if profile is None:
            if len(profiles) > 1:
                raise UsageError(f"the store holds results of several profiles ({', '.join(profiles)}); "
                                 "pick one with --profile")
            profile = profiles[0]
        if profile not in profiles:
            raise UsageError(f"no results of profile {profile!r} in the store; it has: {', '.join(profiles)}")
        rows = table[table["profile"] == profile].copy()
        check_one_version_per_dataset(rows)
        check_one_policy_per_label(rows)
        varies = [c for c in ("dataset", "policy", "precision") if rows.groupby("env")[c].nunique().max() > 1]
        rows["panel"] = rows[["env", *varies]].astype(str).agg(PANEL_SEPARATOR.join, axis=1)
        rows["per_horizon"] = _trained_per_horizon(rows)
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


def _trained_per_horizon(rows: pd.DataFrame) -> pd.Series:
    """Whether each row's model was trained for its horizon (its own config has one: PolyGRAD's
    trajectories), rather than shared across horizons (an autoregressive model)."""
    if "config" not in rows:
        return pd.Series(False, index=rows.index)
    own = {(model, text): isinstance(text, str) and "horizon" in json.loads(text).get(model, {})
           for model, text in rows[["model", "config"]].drop_duplicates().itertuples(index=False)}
    return pd.Series([own[key] for key in zip(rows["model"], rows["config"])], index=rows.index)


def at_own_horizon(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of a per-horizon model only at its horizon's step: it is compared at step h with the
    other models' step h, never at an earlier step of its longer rollout."""
    if "per_horizon" not in rows:
        return rows
    return rows[~rows["per_horizon"].astype(bool) | (rows["step"] == rows["horizon"])]


def longest_horizon(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of each (panel, model, seed)'s longest-horizon cell."""
    return rows[rows["horizon"] == rows.groupby(["panel", "model", "seed"])["horizon"].transform("max")]
