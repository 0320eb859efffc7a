"""`wmbench reproduce`: rerun a stored cell from what its file records and say what differs.

A results file carries everything that shaped its numbers: the resolved config of every section,
the dataset's facts, the seed and the thread count (in `device`). The rerun pins every config
field to the recorded value (so an edited profile or a changed default cannot hide), trains in a
scratch workspace (its own model cache and results store; the datasets are this workspace's) with
the recorded number of torch threads, and compares every number except the times, which differ
on every run. On a CPU at the same thread count with the same code every number is identical.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from wmbench.cells import BEHAVIOUR_LABEL, EvalRequest
from wmbench.config import config_hash, parse_overrides
from wmbench.errors import UsageError
from wmbench.evaluate import evaluate
from wmbench.models.base import get_model_class
from wmbench.paths import datasets_root
from wmbench.provenance import git_commit
from wmbench.results import ResultsStore, read_rows

DATASET_FACTS = ("dataset_steps", "dataset_episodes", "dataset_seed", "dataset_return_mean")


def is_time(metric: str) -> bool:
    """Metrics in seconds (`gen_time_s`, `wall_model_s`, ...) differ on every run."""
    return metric.endswith("_s")


@dataclass
class Reproduction:
    stored: pd.DataFrame  # the file's rows
    rerun: pd.DataFrame  # the same cell computed again
    diff: pd.DataFrame  # [metric, step, stored, rerun, in (both, stored, rerun), abs_diff], all but the times
    problems: list[str]  # what makes the rerun not the same experiment (config, dataset, threads)

    @property
    def differing(self) -> pd.DataFrame:
        """Numbers of the stored cell that the rerun does not give again (a missing one included)."""
        same = (self.diff["stored"] == self.diff["rerun"]) | (self.diff["stored"].isna() & self.diff["rerun"].isna())
        return self.diff[(self.diff["in"] != "rerun") & ~same]

    @property
    def added(self) -> list[str]:
        """Metrics the rerun computes that the stored cell predates (not a difference)."""
        return sorted(set(self.diff.loc[self.diff["in"] == "rerun", "metric"]))

    @property
    def identical(self) -> bool:
        return not self.problems and self.differing.empty


def request_of(rows: pd.DataFrame, device: str = "cpu", profile: str | None = None) -> EvalRequest:
    """The request that makes the cell of `rows` again, every config field pinned to its stored value."""
    first = rows.iloc[0]
    if not isinstance(first.get("config"), str):
        raise UsageError("this results file records no config (written before configs were stored); "
                         "it cannot be reproduced from the file alone")
    config = json.loads(first["config"])
    model = str(first["model"])
    fixed_horizon = get_model_class(model).fixed_horizon
    # JSON and TOML agree on the literals of numbers, strings, booleans and arrays
    overrides = tuple(f"{section}.{key}={json.dumps(value)}" for section, fields in config.items()
                      for key, value in fields.items() if not (section == model and key == "horizon" and fixed_horizon))
    try:  # a key or bound that has changed since the cell was written is this file's, not a --set's
        parse_overrides(overrides, flag="the stored config")
    except UsageError as err:
        raise UsageError(f"{err}; the cell was written by wmbench at {first.get('git_commit', 'an unknown commit')}: "
                         "reproduce it from a checkout of that commit") from err
    label = str(first["policy"])
    policy, std = ("behaviour", float(label[len(BEHAVIOUR_LABEL):])) if label.startswith(BEHAVIOUR_LABEL) \
        else (label, None)
    return EvalRequest(model=model, env=str(first["env"]), horizon=int(first["horizon"]), seed=int(first["seed"]),
                       profile=profile or str(first["profile"]), overrides=overrides, dataset=str(first["dataset"]),
                       device=device, policy=policy, precision=str(first.get("precision", "fp32")),
                       **({} if std is None else {"policy_std": std}))


def recorded_threads(device: str) -> int | None:
    """The torch thread count of a CPU cell's `device` column (`x86_64 (1 threads)`)."""
    match = re.search(r"\((\d+) threads\)$", str(device))
    return int(match.group(1)) if match else None


def reproduce(path: Path, *, device: str = "cpu", profile: str | None = None, scratch: Path | None = None,
              progress: bool = True) -> Reproduction:
    """Recompute the cell stored in `path` in a scratch workspace and compare its numbers."""
    try:
        stored = read_rows(Path(path))
    except ValueError as err:
        raise UsageError(f"{path} is not a readable results file ({err})") from err
    if stored["model"].nunique() != 1 or stored["seed"].nunique() != 1:
        raise UsageError(f"{path} holds several cells; pass one cell's file (ENV/MODEL/....csv.gz in a results store)")
    request = request_of(stored, device, profile)
    first = stored.iloc[0]
    problems = []
    if "config_hash" in stored and config_hash(json.loads(first["config"])) != str(first["config_hash"]):
        problems.append(f"the recorded config does not hash to the file's config_hash {first['config_hash']} "
                        "(the file was edited, or its config has changed since)")
    threads = recorded_threads(first.get("device", ""))
    with tempfile.TemporaryDirectory(prefix="wmbench-reproduce-", dir=scratch) as folder, \
            _scratch_workspace(Path(folder)), _torch_threads(threads if device == "cpu" else None):
        rerun = evaluate(request, store=ResultsStore(Path(folder) / "results"), make_missing=False, progress=progress)
    for column in DATASET_FACTS:
        if column in stored and column in rerun and not _same(first[column], rerun.iloc[0][column]):
            problems.append(f"the dataset differs: {column} {first[column]} stored, {rerun.iloc[0][column]} here "
                            f"(remake {first['dataset']} as the stored cell's dataset was made)")
    if "policy_fingerprint" in stored and not _same(first["policy_fingerprint"], rerun.iloc[0]["policy_fingerprint"]):
        problems.append(f"the evaluation policy differs: policy_fingerprint {first['policy_fingerprint']} stored, "
                        f"{rerun.iloc[0]['policy_fingerprint']} here (fitted again elsewhere: copy the stored cell's "
                        "policy file into this workspace's dataset)")
    if threads is None or "threads" not in str(rerun.iloc[0].get("device", "")):
        problems.append(f"stored on {first.get('device')}, rerun on {rerun.iloc[0].get('device')}: "
                        "other hardware sums in another order")
    return Reproduction(stored, rerun, _diff(stored, rerun), problems)


def _diff(stored: pd.DataFrame, rerun: pd.DataFrame) -> pd.DataFrame:
    keys = ["metric", "step"]

    def numbers(rows: pd.DataFrame) -> pd.DataFrame:  # every stored number but the timings
        return rows[~rows["metric"].map(is_time)][[*keys, "value"]]

    joined = numbers(stored).merge(numbers(rerun), on=keys, how="outer", suffixes=("_stored", "_rerun"), indicator="in")
    joined = joined.rename(columns={"value_stored": "stored", "value_rerun": "rerun"})
    joined["in"] = joined["in"].map({"both": "both", "left_only": "stored", "right_only": "rerun"})
    joined["abs_diff"] = (joined["stored"] - joined["rerun"]).abs()
    return joined.reset_index(drop=True)


def _same(a, b) -> bool:
    return bool(a == b or (pd.isna(a) and pd.isna(b)))


@contextlib.contextmanager
def _scratch_workspace(folder: Path) -> Iterator[None]:
    """The model cache and results store in `folder` for the block; datasets stay where they are."""
    values = {"WMBENCH_CACHE": str(folder / "cache"), "WMBENCH_RESULTS": str(folder / "results"),
              "MINARI_DATASETS_PATH": str(datasets_root())}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def commit_note(stored: pd.DataFrame) -> str:
    """Which code made the stored cell, and which reran it."""
    made = str(stored.iloc[0].get("git_commit", "unknown"))
    return f"stored by {made}, rerun by {git_commit()}"
