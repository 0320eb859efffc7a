"""`wmbench`: train world models on offline MuJoCo data and measure their on-policy trajectories."""

from __future__ import annotations

import json
import time
import os
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wmbench.errors import UsageError, WmbenchError

app = typer.Typer(
    help=__doc__ + "\n\nStart with `wmbench evaluate --model mlp-ensemble --env halfcheetah`.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Make, list and inspect Minari datasets (local only; nothing is downloaded).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=False)
SET_HELP = ("Override one config field: SECTION.KEY=VALUE, repeatable (e.g. --set polygrad.train_steps=20000 "
            "--set data.steps=50000); the value is a TOML literal. `wmbench models --config` lists the fields.")
EVAL_EVERY_HELP = ("Learning curve: also evaluate the model every N training updates (same starts and policy as the "
                   "final evaluation; stored as curve_* rows with the update and training FLOPs). Models trained by "
                   "the shared loop only; others get the final point. Default: the profile's (0, off).")


@app.callback()
def options(
    workspace: Optional[Path] = typer.Option(
        None, help="Folder for datasets/, models/cache/ and results/ (default: $WMBENCH_HOME, else the current "
                   "directory)."),
) -> None:
    """Options shared by every command."""
    if workspace is not None:
        workspace.mkdir(parents=True, exist_ok=True)
        os.environ["WMBENCH_HOME"] = str(workspace.resolve())  # worker processes inherit it


class Format(str, Enum):
    markdown = "markdown"
    csv = "csv"


def _print_steps(rows, step: str = "step") -> None:
    """A summary table whose first column is a step count (printed as an integer, named `step`)."""
    rich_table = Table()
    for column in rows.columns:
        rich_table.add_column(step if column == "step" else column, justify="right")
    for row in rows.itertuples(index=False):
        rich_table.add_row(str(int(row[0])), *(f"{v:.4g}" for v in row[1:]))
    console.print(rich_table)


@app.command()
def evaluate(
    model: str = typer.Option("mlp-ensemble", help="Registered model name (see `wmbench models`)."),
    env: str = typer.Option("halfcheetah", help="halfcheetah, hopper or walker2d."),
    horizon: int = typer.Option(10, help="Steps per generated trajectory."),
    seed: int = typer.Option(0, help="Seed of model training, start states and sampling."),
    profile: str = typer.Option("quick", help="Config profile: smoke (seconds), quick (minutes on a CPU), paper (GPU), "
                                              "or a path to a TOML file (see `wmbench profiles`)."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    n_trajectories: Optional[int] = typer.Option(None, help="Trajectories to generate (default: the profile's)."),
    eval_every: Optional[int] = typer.Option(None, help=EVAL_EVERY_HELP),
    dataset: Optional[str] = typer.Option(
        None, help="Minari dataset id (default: wmbench/ENV/sac-replay-v0 if made, else wmbench/ENV/random-v0)."),
    policy: str = typer.Option("bc", help="Evaluation policy: bc (behaviour cloning on the dataset) or behaviour "
                                          "(the SAC policy that made the dataset, with a fixed std)."),
    policy_std: Optional[float] = typer.Option(None, help="Std of the behaviour policy (default: 0.2): the policy-"
                                                          "entropy axis (the paper: guidance breaks down below 0.1)."),
    precision: str = typer.Option("fp32", help="Generation precision: fp32, or bf16 (autocast; its own cell)."),
    no_make: bool = typer.Option(False, "--no-make", help="Fail instead of making a missing default dataset."),
    force: bool = typer.Option(False, "--force", help="Recompute a cell that is already in the results store."),
) -> None:
    """Train (or load) a world model, generate on-policy trajectories, replay them in the simulator
    and store the errors. The dataset, policy and model are made on first use and cached."""
    from wmbench.evaluate import EvalRequest, summary
    from wmbench.evaluate import evaluate as run

    request = EvalRequest(model=model, env=env, horizon=horizon, seed=seed, profile=profile, overrides=tuple(set_),
                          dataset=dataset, n_trajectories=n_trajectories, eval_every=eval_every, device=device, policy=policy,
                          precision=precision, **({} if policy_std is None else {"policy_std": policy_std}))
    table = run(request, make_missing=not no_make, force=force)
    first = table.iloc[0]
    title = (f"{first['model']} on {first['dataset']} | policy {first['policy']} | h = {first['horizon']} | seed {first['seed']} | "
             f"{first['profile']} | {int(first['n_trajectories'])} trajectories")
    console.print(title, highlight=False, soft_wrap=True)
    _print_steps(summary(table))
    value = lambda metric: float(table.loc[table["metric"] == metric, "value"].iloc[0])  # noqa: E731
    console.print(f"generation: {value('gen_time_s'):.3f} s for the batch | fit: {value('fit_time_s'):.1f} s | "
                  f"commit {first['git_commit']} | {first['device']}", highlight=False, soft_wrap=True)


@app.command()
def rl(
    model: str = typer.Option(..., help="A registered world model (its imagination trains the policy), or ppo "
                                        "(model-free, stable-baselines3) for the baseline."),
    env: str = typer.Option("halfcheetah", help="halfcheetah, hopper or walker2d."),
    env_steps: Optional[int] = typer.Option(None, help="Real environment steps (default: the profile's)."),
    seed: int = typer.Option(0, help="Seed of the run (its real episodes, networks and imagination)."),
    profile: str = typer.Option("quick", help="smoke (seconds), quick (15k real steps: about 35 min for PolyGRAD "
                                              "on one CPU core, minutes for the others), paper (the paper's budget, "
                                              "for a GPU), or a path to a TOML file."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP + " Sections: rl, imagination, ppo and the model's."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    force: bool = typer.Option(False, "--force", help="Run again a run that is already in the results store."),
) -> None:
    """RL in imagination, the paper's Algorithm 3: collect real steps with the current policy, train the
    world model on them, and train an actor-critic only on trajectories the model imagines; PPO is
    the model-free baseline at the same real steps. Stores the real return of the mean action at
    every evaluation (`wmbench report` draws it against real steps); an interrupted run resumes
    from its last evaluation."""
    from wmbench.rl import RLRequest, summary
    from wmbench.rl import run as run_rl

    request = RLRequest(model=model, env=env, seed=seed, profile=profile, overrides=tuple(set_), env_steps=env_steps,
                        device=device)
    table = run_rl(request, force=force)
    first = table.iloc[0]
    console.print(f"{first['model']} on {first['env']} | seed {first['seed']} | {first['profile']}", highlight=False)
    _print_steps(summary(table), step="env step")
    last = table[table["step"] == table["step"].max()]
    walls = {m.removeprefix("wall_").removesuffix("_s"): v for m, v in zip(last["metric"], last["value"])
             if m.startswith("wall_")}
    console.print("wall time: " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in walls.items()) +
                  f" | commit {first['git_commit']} | {first['device']}", highlight=False, soft_wrap=True)


@app.command()
def render(
    model: str = typer.Option(..., help="Registered model name of an evaluated cell."),
    env: str = typer.Option(..., help="halfcheetah, hopper or walker2d."),
    horizon: int = typer.Option(10, help="Steps per trajectory (the cell's)."),
    n: int = typer.Option(4, help="Trajectories to show: the cell's first N, one row each."),
    seed: int = typer.Option(0, help="The cell's seed."),
    profile: str = typer.Option("quick", help="The cell's config profile."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    n_trajectories: Optional[int] = typer.Option(None, help="The cell's trajectories (default: the profile's)."),
    dataset: Optional[str] = typer.Option(None, help="The cell's Minari dataset id (default: as evaluate)."),
    policy: str = typer.Option("bc", help="The cell's evaluation policy: bc or behaviour."),
    policy_std: Optional[float] = typer.Option(None, help="Std of the behaviour policy (default: 0.2)."),
    out: Optional[Path] = typer.Option(None, help="Folder for the MP4 and GIF (default: WORKSPACE/report/videos, "
                                                  "where `wmbench report` shows the GIFs)."),
) -> None:
    """Video of an evaluated cell: the simulator replaying the generated actions (left) next to the
    model's generated states (right), one trajectory per row, with the error at each step. Needs
    the cell's cached model (run `wmbench evaluate` with the same options first) and MuJoCo's
    offscreen renderer (without a display: MUJOCO_GL=egl or osmesa)."""
    from wmbench.evaluate import EvalRequest
    from wmbench.paths import workspace
    from wmbench.render import render as run

    request = EvalRequest(model=model, env=env, horizon=horizon, seed=seed, profile=profile, overrides=tuple(set_),
                          dataset=dataset, n_trajectories=n_trajectories, device=device, policy=policy,
                          **({} if policy_std is None else {"policy_std": policy_std}))
    out = out or workspace() / "report" / "videos"
    start = time.perf_counter()
    mp4, gif, video = run(request, n, out, say=lambda m: console.print(m, highlight=False))
    console.print(f"wrote {mp4} ({mp4.stat().st_size / 1e3:.0f} kB) and {gif} ({gif.stat().st_size / 1e3:.0f} kB): "
                  f"{len(video.frames)} frames of {video.frames.shape[2]}x{video.frames.shape[1]} in "
                  f"{time.perf_counter() - start:.1f} s", highlight=False, soft_wrap=True)


def _split(value: str, kind: type = str, option: str = "") -> list:
    try:
        items = [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        items = []
    if not items:
        raise UsageError(f"{option} takes a comma-separated list, e.g. {'10,50' if kind is int else 'a,b'}; got {value!r}")
    return items


@app.command()
def sweep(
    models: str = typer.Option("mlp-ensemble,polygrad,ar-diffusion,transformer,linear,persistence",
                               help="Comma-separated model names (the floors linear and persistence train in seconds)."),
    envs: str = typer.Option("halfcheetah,hopper,walker2d", help="Comma-separated envs."),
    horizons: str = typer.Option("10", help="Comma-separated horizons, e.g. 10,50,200."),
    seeds: str = typer.Option("0,1", help="Comma-separated seeds (the unit of replication)."),
    profile: str = typer.Option("quick", help="Config profile: smoke, quick, paper or a TOML file."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    workers: int = typer.Option(1, help="Parallel worker processes (each gets cores / workers threads)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    n_trajectories: Optional[int] = typer.Option(None, help="Trajectories per cell (default: the profile's)."),
    eval_every: Optional[int] = typer.Option(None, help=EVAL_EVERY_HELP),
    policy: str = typer.Option("bc", help="Evaluation policy: bc or behaviour (see `wmbench evaluate --help`)."),
    policy_std: Optional[float] = typer.Option(None, help="Std of the behaviour policy (default: 0.2)."),
    backend: str = typer.Option("local", help="local (--workers processes on this machine) or ray (a Ray task per "
                                              "checkpoint group; pip install 'wmbench\\[ray]')."),
    address: Optional[str] = typer.Option(None, help="Ray: the cluster to join (auto: the running one; default: "
                                                     "start a local Ray instance)."),
    cpus_per_task: float = typer.Option(1, help="Ray: CPUs per task (also its torch threads)."),
    gpus_per_task: float = typer.Option(0, help="Ray: GPUs per task (with --device cuda)."),
) -> None:
    """Evaluate every (model, env, horizon, seed) cell that is not in the results store yet.

    Rerun the same command to resume an interrupted sweep. A failing cell is reported (its traceback
    beside where its results would be) and the others complete; the exit code is 1 if any failed.
    With --backend ray the cells run as Ray tasks that need no shared filesystem: results and
    trained checkpoints come back to this machine's workspace."""
    from wmbench.ray_backend import RayOptions
    from wmbench.sweep import grid, run_sweep

    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if backend not in ("local", "ray"):
        raise UsageError(f"--backend must be local or ray, got {backend!r}")
    if cpus_per_task <= 0 or gpus_per_task < 0:
        raise UsageError("--cpus-per-task must be positive and --gpus-per-task not negative")
    ray = RayOptions(address, cpus_per_task, gpus_per_task) if backend == "ray" else None
    requests = grid(_split(models, option="--models"), _split(envs, option="--envs"),
                    _split(horizons, int, "--horizons"), _split(seeds, int, "--seeds"),
                    profile=profile, overrides=tuple(set_), device=device, n_trajectories=n_trajectories,
                    eval_every=eval_every, policy=policy, **({} if policy_std is None else {"policy_std": policy_std}))
    outcome = run_sweep(requests, workers=workers, ray=ray)
    console.print(f"sweep: {len(outcome.done)} run, {len(outcome.skipped)} already stored, "
                  f"{len(outcome.failed)} failed", highlight=False)
    for cell, error in outcome.failed.items():
        console.print(f"  failed: {cell.model} {cell.env} h={cell.horizon} seed={cell.seed}: {escape(error)}",
                      highlight=False, soft_wrap=True)
    if outcome.failed:
        raise typer.Exit(1)


@app.command()
def bench(
    models: str = typer.Option("polygrad,ar-diffusion,mlp-ensemble,transformer", help="Comma-separated model names."),
    horizons: str = typer.Option("10,50", help="Comma-separated horizons."),
    batch: int = typer.Option(256, help="Trajectories per rollout."),
    profile: str = typer.Option("quick", help="Profile whose model sizes are timed (paper: on a GPU)."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    env: str = typer.Option("halfcheetah", help="Env whose observation and action sizes are used."),
    device: str = typer.Option("cpu", help="cpu or cuda (timings are synchronised)."),
    precision: str = typer.Option("fp32", help="fp32, or bf16 (autocast during generation)."),
    repeats: int = typer.Option(3, help="Timed rollouts per cell (the median is kept)."),
    train: bool = typer.Option(False, "--train", help="Time training updates instead of generation (at the "
                                                      "profile's batch and sizes; --precision bf16: autocast)."),
    updates: int = typer.Option(50, help="--train: timed updates per model (after 10 untimed ones)."),
) -> None:
    """Time generation per model (untrained weights: the cost does not depend on them), count its
    FLOPs and hold the achieved GFLOP/s against this machine's dense-matmul peak; stores the rows.
    With --train, the same for one training update of each model."""
    from wmbench.bench import matched, ratio_rows, run_bench, run_train_bench

    if batch < 1 or repeats < 1 or updates < 1:
        raise UsageError(f"--batch, --repeats and --updates must be positive, got {batch}, {repeats} and {updates}")
    names = _split(models, option="--models")
    if train:
        run_train_bench(names, _split(horizons, int, "--horizons"), env=env, profile=profile, overrides=tuple(set_),
                        device=device, precision=precision, updates=updates)
        return
    table = run_bench(names, _split(horizons, int, "--horizons"), env=env, batch=batch, profile=profile,
                      overrides=tuple(set_), device=device, precision=precision, repeats=repeats)
    ratios = ratio_rows(table)
    if ratios:
        match = "matched" if matched(profile) else "NOT matched"
        console.print(f"ar-diffusion / polygrad generation time ({match} width, blocks and diffusion steps): "
                      + ", ".join(f"h={h}: {r:.1f}x" for h, r in ratios.items()), highlight=False)


@app.command()
def report(
    results: Optional[Path] = typer.Option(None, help="Results store folder (default: the workspace's results/; the "
                                                      "committed reference run is reports/reference)."),
    out: Optional[Path] = typer.Option(None, help="Folder for the figures, tables and README.md (default: the "
                                                  "workspace's report/)."),
    profile: Optional[str] = typer.Option(None, help="Profile to report (default: the only one in the store)."),
) -> None:
    """Draw the paper's comparison figures and tables (mean and 95% bootstrap CI over seeds) from the
    results store, with a README.md that shows them and their provenance."""
    from wmbench.paths import workspace
    from wmbench.report import write_report
    from wmbench.results import ResultsStore

    if results is not None and not results.is_dir():
        raise UsageError(f"results folder {results} does not exist")
    out = out or workspace() / "report"
    written = write_report(ResultsStore(results), out, profile)
    console.print(f"wrote {len(written)} files to {out}/ (open {Path(out) / 'README.md'})", highlight=False)


@app.command()
def models(config: bool = typer.Option(False, "--config", help="Also show every config field with its default and doc.")) -> None:
    """List the registered world models (built-in and from installed extension packages)."""
    from wmbench.config import SECTIONS, field_docs, section_class
    from wmbench.models.base import available_models

    def show_fields(config_cls: type) -> None:
        for field, default, help_text in field_docs(config_cls):
            console.print(f"    {field} = {escape(repr(default))}  [dim]{escape(help_text)}[/dim]", highlight=False)

    for name, cls in available_models().items():
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        console.print(f"[bold]{name}[/bold]  {escape(doc)}", highlight=False)
        if config:
            show_fields(cls.Config)
    if config:
        section_class("data")  # declares the shared sections
        for name, config_cls in sorted(SECTIONS.items()):
            console.print(f"[bold]\\[{name}][/bold]  {escape(config_cls.__doc__ or '')}", highlight=False)
            show_fields(config_cls)


@app.command()
def results(
    model: Optional[str] = typer.Option(None, help="Only this model."),
    env: Optional[str] = typer.Option(None, help="Only this env."),
    metric: Optional[str] = typer.Option(None, help="Only this metric (mse, mse_norm, reward_mse, ...)."),
    profile: Optional[str] = typer.Option(None, help="Only this profile."),
    config_hash: Optional[str] = typer.Option(None, help="Only cells of this resolved config (the config_hash column)."),
    overrides: Optional[str] = typer.Option(None, help="Only cells whose --set overrides include this text "
                                                      "(e.g. polygrad.train_steps=20000; '' for none)."),
    results: Optional[Path] = typer.Option(None, help="Results store folder (default: the workspace's results/)."),
    format: Format = typer.Option(Format.markdown, help="Output format."),
) -> None:
    """Print stored results (tidy rows: one per model, env, ..., metric and step)."""
    from wmbench.results import ROW_COLUMNS, ResultsStore, markdown_table

    table = ResultsStore(results).read(model=model, env=env, metric=metric, profile=profile, config_hash=config_hash)
    if overrides is not None:
        stored = table["overrides"].fillna("") if "overrides" in table else ""
        table = table[stored == "" if overrides == "" else stored.str.contains(overrides, regex=False)]
    if format is Format.csv:
        table.to_csv(sys.stdout, index=False)
    else:
        print(markdown_table(table[ROW_COLUMNS]))


@app.command()
def profiles() -> None:
    """List the config profiles (built-in, and $WMBENCH_PROFILES) with where each comes from. A TOML
    file of your own works as --profile PATH and may start from another with `extends = "quick"`."""
    from wmbench.config import available_profiles, load_profile, profile_description, profile_path

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
    from wmbench.envs import get_env

    if policy not in ("random", "sac"):
        raise UsageError(f"unknown behaviour policy {policy!r}; choose one of: random, sac")
    if steps is not None and steps < 1:
        raise UsageError(f"--steps must be positive, got {steps}")
    spec = get_env(env)
    if policy == "random":
        made = [data.make_random_dataset(spec, steps or 100_000, seed=seed, overwrite=overwrite)]
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

    for dataset_id, steps in list_datasets():
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


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"wmbench: warning: {message}\n"


def main() -> None:
    warnings.formatwarning = _warning_line  # one readable line, not a source location
    try:
        app()
    except WmbenchError as err:
        print(f"wmbench: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("wmbench: interrupted; finished results and checkpoints are kept", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
