"""The commands that read and show: report, models, results, profiles, and the `data` commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import pandas as pd
import typer
from rich.markup import escape

from wmbench.cli.app import Format, app, console, data_app, split
from wmbench.errors import UsageError


def existing_folder(results: Optional[Path]) -> None:
    """A `--results` folder that does not exist is refused in one line (the store would read as empty)."""
    if results is not None and not results.is_dir():
        raise UsageError(f"results folder {results} does not exist")


def listing(values) -> str:
    """Stored values for a message, a family of names like `mse_dim[torso angle]` as one `mse_dim[...]` entry."""
    names = set(map(str, values))
    indexed = {name for name in names if "[" in name and name.endswith("]")}
    return ", ".join(sorted((names - indexed) | {name.split("[")[0] + "[...]" for name in indexed}))


@app.command()
def report(
    results: Optional[Path] = typer.Option(None, help="Results store folder (default: the workspace's results/; the "
                                                      "committed reference run is reports/reference)."),
    out: Optional[Path] = typer.Option(None, help="Folder for the figures, tables and README.md (default: the "
                                                  "workspace's report/)."),
    profile: Optional[str] = typer.Option(None, help="Profile to report (default: the only one in the store)."),
    against: Optional[str] = typer.Option(None, help="Draw the error against a setting a sweep varied instead: "
                                                     "data.train_transitions, policy_std, or any SECTION.KEY."),
    other_recording: Optional[List[Path]] = typer.Option(
        None, help="A store of the same cells made on another recording of the datasets (repeat it for several): the "
                   "report adds how each comparison (with --against: each growth of error) moves between the "
                   "recordings, the spread a recording adds to a ratio beyond its seeds, and, where 3 or more "
                   "recordings have a comparison, its interval over the recordings."),
) -> None:
    """Draw the paper's comparison figures and tables (means with 95% Student-t intervals over seeds, paired
    comparisons and the findings they back) from the results store, with a README.md that shows them and
    their provenance. With --against KEY: the error, aggregate, comparisons and overfitting at each value
    of KEY (the data-size and policy-entropy studies). With --other-recording DIR (one or more): how each
    comparison moves on other recordings of the datasets, which a seed's interval does not cover."""
    import wmbench.sections  # noqa: F401 - every config section a grid key may name
    from wmbench.config import profile_label
    from wmbench.paths import workspace
    from wmbench.report import write_grid_report, write_report
    from wmbench.results import ResultsStore

    existing_folder(results)
    others = other_recording or []
    for folder in others:
        existing_folder(folder)
    out = out or workspace() / "report"
    store, profile = ResultsStore(results), profile and profile_label(profile)
    others = [ResultsStore(folder) for folder in others]
    written = write_grid_report(store, out, against, profile, others) if against else \
        write_report(store, out, profile, others)
    console.print(f"wrote {len(written)} files to {out}/ (open {Path(out) / 'README.md'})", highlight=False)


@app.command()
def compare(
    a: str = typer.Argument(..., help="Model A (a model's name stands for each of its variants), or several, "
                                      "comma-separated: each is compared with each B, Holm over every row."),
    b: str = typer.Argument(..., help="Model B, or several, comma-separated."),
    env: Optional[str] = typer.Option(None, help="Only this env (default: every env, and all of them pooled)."),
    horizon: Optional[int] = typer.Option(None, help="Only cells of this horizon (default: each horizon)."),
    step: Optional[int] = typer.Option(None, help="The step compared (default: each horizon's last)."),
    metric: str = typer.Option("mse", help="mse (the paper's), mse_alive, mse_norm, reward_mse, ..."),
    results: Optional[Path] = typer.Option(None, help="Results store folder (default: the workspace's results/)."),
    profile: Optional[str] = typer.Option(None, help="Profile to compare (default: the only one in the store)."),
    format: Format = typer.Option(Format.markdown, help="Output format (csv: with --other-recording, the table over "
                                                        "the recordings)."),
    other_recording: Optional[List[Path]] = typer.Option(
        None, help="A store of the same cells made on another recording of the datasets (repeat it for several): "
                   "also the spread a recording adds to a ratio beyond its seeds, each ratio here with an interval "
                   "that counts it, and, where 3 or more recordings have it, its interval over the recordings."),
) -> None:
    """Paired comparison of two models' errors over the seeds both have (same start states and policy): the
    ratio A/B with a 95% paired Student-t interval, the probability of improvement P(A < B) with Newcombe's
    score-type interval (inside [0, 1], short of certainty where the runs lie apart), a verdict (better, worse, or not
    distinguishable at this number of seeds), and the paired t-test's p-value adjusted (Holm) over the rows shown.
    A seed's interval does not cover the data (one recording of a dataset is one draw of it): --other-recording
    adds the comparison on other recordings, per env. Several models, comma-separated, as A or B: each A against
    each B, one Holm family."""
    from wmbench.config import profile_label
    from wmbench.report.comparisons import comparison_rows, comparison_wide, with_holm
    from wmbench.report.select import Selection
    from wmbench.results import BENCH_DATASET, RL_DATASET, ResultsStore, markdown_table

    existing_folder(results)
    for folder in other_recording or []:
        existing_folder(folder)
    store = ResultsStore(results)
    table = store.read(env=env, horizon=horizon)
    table = table[~table["dataset"].isin([BENCH_DATASET, RL_DATASET])]
    if table.empty:
        raise UsageError(f"no evaluation results in {store.root}" + (f" for env {env}" if env else "")
                         + (f" at horizon {horizon}" if horizon else "")
                         + ": run `wmbench evaluate` or `wmbench sweep` for both models first")
    sel = Selection.from_store(table, profile and profile_label(profile))
    if sel.metric(metric).empty:
        raise UsageError(f"no {metric!r} rows in the store; metrics: mse, mse_alive, mse_norm, reward_mse, ...")
    at = f"step {step}" if step else "each horizon's last step"
    pairs = [(x, y) for x in _models(sel, a, "A") for y in _models(sel, b, "B") if x != y]
    if not pairs:  # one model against its own variants, when it has several
        raise UsageError(f"the store has one {a}: compare two models, or {a}'s variants once it has several "
                         "(cells of it with different --set values)")
    frames = [comparison_rows(sel, x, y, metric, step) for x, y in pairs]
    frames = [f for f in frames if not f.empty]
    if not frames:
        steps = sel.metric(metric)["step"]
        if step and step > steps.max():
            raise UsageError(f"no {metric} at step {step}: the store's cells end at step {steps.max()} "
                             "(--step counts from 1 to the horizon)")
        raise UsageError(f"{a} and {b} share no (env, horizon, seed) cell with {metric} at {at}: evaluate both "
                         "with the same seeds")
    rows = with_holm(pd.concat(frames, ignore_index=True))  # the rows shown are one family
    spread = across = None
    if other_recording:  # read as the store here was: only the env and horizon compared
        from wmbench.report.recordings import compare_recordings

        others = {str(folder): ResultsStore(folder).read(env=env, horizon=horizon) for folder in other_recording}
        _, spread, across = compare_recordings(table, others, sel.profile, metric, pairs, step)
    if format is Format.csv:
        (rows if across is None else across).to_csv(sys.stdout, index=False)
        return
    console.print(f"{metric} at {at}, profile {sel.profile}", highlight=False)
    console.print(markdown_table(comparison_wide(rows)), highlight=False, soft_wrap=True)
    if across is not None:
        from wmbench.report.recordings import across_wide, spread_wide

        console.print(f"\nOn {len(other_recording) + 1} recordings: the ratio here with the recording counted (its "
                      "env's tau, below); over 3 or more recordings, the geometric mean of their ratios with a "
                      "Student-t interval over them (Holm over these rows)", highlight=False, soft_wrap=True)
        console.print(markdown_table(across_wide(across)), highlight=False, soft_wrap=True)
        console.print(markdown_table(spread_wide(spread)), highlight=False, soft_wrap=True)


def _models(sel, names: str, which: str) -> list[str]:
    """The store's models that `names` (comma-separated; each a model or all of its variants) stand for."""
    from wmbench.report.comparisons import named

    return [model for name in split(names, option=f"model {which}") for model in named(sel, name)]


@app.command()
def models(
    config: bool = typer.Option(False, "--config", help="Also show every config field with its default and doc."),
) -> None:
    """List the registered world models (built-in and from installed extension packages)."""
    import wmbench.sections  # noqa: F401 - every config section
    from wmbench.config import SECTIONS, field_docs
    from wmbench.models.base import available_models

    def show_fields(config_cls: type) -> None:
        for field, default, help_text in field_docs(config_cls):
            literal = json.dumps(default)  # as --set and a profile's TOML write it: false, "mlp", [1, 2]
            console.print(f"    {field} = {escape(literal)}  [dim]{escape(help_text)}[/dim]", highlight=False)

    for name, cls in available_models().items():
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        console.print(f"[bold]{name}[/bold]  {escape(doc)}", highlight=False)
        if config:
            show_fields(cls.Config)
    if config:
        for name, config_cls in sorted(SECTIONS.items()):
            console.print(f"[bold]\\[{name}][/bold]  {escape(config_cls.__doc__ or '')}", highlight=False)
            show_fields(config_cls)


@app.command()
def results(
    model: Optional[str] = typer.Option(None, help="Only this model."),
    env: Optional[str] = typer.Option(None, help="Only this env."),
    metric: Optional[str] = typer.Option(None, help="Only this metric (mse, mse_norm, reward_mse, ...)."),
    profile: Optional[str] = typer.Option(None, help="Only this profile."),
    config_hash: Optional[str] = typer.Option(None,
                                              help="Only cells of this resolved config (the config_hash column)."),
    overrides: Optional[str] = typer.Option(None, help="Only cells whose --set overrides include this text "
                                                      "(e.g. polygrad.train_steps=20000; '' for none)."),
    results: Optional[Path] = typer.Option(None, help="Results store folder (default: the workspace's results/)."),
    format: Format = typer.Option(Format.markdown, help="Output format."),
) -> None:
    """Print stored results (tidy rows: one per model, env, ..., metric and step)."""
    from wmbench.results import ROW_COLUMNS, ResultsStore, markdown_table

    existing_folder(results)
    store = ResultsStore(results)
    table = store.read()
    if table.empty:
        print(f"no results in {store.root} yet: `wmbench evaluate` and `wmbench sweep` store them there",
              file=sys.stderr)
        return
    asked = {"model": model, "env": env, "metric": metric, "profile": profile, "config_hash": config_hash}
    filters = {column: wanted for column, wanted in asked.items() if wanted is not None}
    for column, wanted in filters.items():
        if wanted not in set(table[column]):
            raise UsageError(f"no stored row has {column} {wanted!r}; the store's: {listing(set(table[column]))}")
    for column, wanted in filters.items():
        table = table[table[column] == wanted]
    if overrides is not None:
        stored = table["overrides"].fillna("") if "overrides" in table else ""
        table = table[stored == "" if overrides == "" else stored.str.contains(overrides, regex=False)]
    if table.empty:
        raise UsageError("no stored row matches these filters together")
    if format is Format.csv:
        table.to_csv(sys.stdout, index=False)
    else:
        print(markdown_table(table[ROW_COLUMNS]))


@app.command()
def profiles() -> None:
    """List the config profiles (built-in, and $WMBENCH_PROFILES) with where each comes from. A TOML
    file of your own works as --profile PATH and may start from another with `extends = "quick"`."""
    from wmbench.config import (
        available_profiles,
        load_profile,
        profile_description,
        profile_path,
    )

    for name in available_profiles():
        sections = ", ".join(load_profile(name))
        console.print(f"[bold]{name}[/bold]  {escape(profile_description(name))}\n    {profile_path(name)}\n"
                      f"    [dim]sections: {escape(sections)}[/dim]", highlight=False, soft_wrap=True)


@data_app.command("make")
def data_make(
    env: str = typer.Argument(..., help="halfcheetah, hopper or walker2d."),
    policy: str = typer.Option("random", help="Behaviour policy: random (uniform actions: random-v0) or sac (one "
                                              "Soft Actor-Critic run: sac-replay-v0 and sac-final-v0)."),
    steps: Optional[int] = typer.Option(None, help="Environment steps (default: 100000 random; 75000 SAC, about "
                                                   "15 minutes on 2 CPU cores; the paper: 1000000)."),
    final_episodes: int = typer.Option(20, help="SAC: episodes of the final policy in sac-final-v0."),
    seed: int = typer.Option(0, help="Seed of the env resets and the behaviour policy."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset."),
) -> None:
    """Record Minari datasets wmbench/ENV/... with the simulator state of every observation."""
    from wmbench import data
    from wmbench.cells import MAX_SEED
    from wmbench.envs import get_env
    from wmbench.recording import MAX_DATASET_STEPS, make_random_dataset

    if policy not in ("random", "sac"):
        raise UsageError(f"unknown behaviour policy {policy!r}; choose one of: random, sac")
    if steps is not None and not 2 <= steps <= MAX_DATASET_STEPS:
        raise UsageError(f"--steps must be from 2 to {MAX_DATASET_STEPS:,}, got {steps}")
    if not 1 <= final_episodes <= 100_000:
        raise UsageError(f"--final-episodes must be from 1 to 100,000, got {final_episodes}")
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be from 0 to {MAX_SEED}, got {seed}")
    spec = get_env(env)
    if policy == "random":
        made = [make_random_dataset(spec, steps or 100_000, seed=seed, overwrite=overwrite)]
    else:
        from wmbench.sac import DEFAULT_STEPS, make_sac_datasets

        made = make_sac_datasets(spec, steps or DEFAULT_STEPS, seed=seed, final_episodes=final_episodes,
                                 overwrite=overwrite)
    for dataset_id in made:
        card = data.read_card(dataset_id)
        console.print(f"wrote {dataset_id} to {data.dataset_dir(dataset_id)}: {card['steps']} steps, "
                      f"{card['episodes']} episodes, return mean {card['return_mean']:.1f} "
                      f"(min {card['return_min']:.1f}, max {card['return_max']:.1f})", highlight=False, soft_wrap=True)


@data_app.command("list")
def data_list() -> None:
    """One local dataset per line, with its number of steps."""
    from wmbench.data import list_datasets
    from wmbench.paths import datasets_root

    found = list_datasets()
    if not found:
        print(f"no datasets in {datasets_root()} yet: `wmbench data make ENV` records one (`wmbench evaluate` "
              "makes the random one it needs)", file=sys.stderr)
    for dataset_id, steps in found:
        print(f"{dataset_id}\t{steps} steps")


@data_app.command("show")
def data_show(dataset_id: str = typer.Argument(..., help="A local Minari dataset id.")) -> None:
    """Episodes, steps, returns and provenance of a local dataset."""
    from wmbench.data import load_dataset, read_card

    offline = load_dataset(dataset_id)
    returns = offline.episode_returns()
    facts = {
        "dataset": dataset_id, "env": offline.env, "episodes": offline.n_episodes,
        "steps": offline.n_transitions, "return_mean": round(float(returns.mean()), 3),
        "return_min": round(float(returns.min()), 3), "return_max": round(float(returns.max()), 3),
        "exact_simulator_states": offline.exact_states,
    }
    card = read_card(dataset_id)
    print(json.dumps({**facts, "card": card}, indent=2))
