"""The commands that compute: evaluate, rl, render, sweep and bench. Each parses its options, calls
one pipeline and prints what it got (every config section is declared first: `wmbench.sections`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from wmbench.cli.app import ALLOW_DIRTY_HELP, EVAL_EVERY_HELP, LOG_HELP, SET_HELP, app, console, print_steps, split
from wmbench.errors import UsageError

# what `wmbench sweep` evaluates by default: the reference's models (the paper's method, the authors' baseline,
# the other learned models and the two floors)
REFERENCE_MODELS = "polygrad,ar-diffusion-2row,ar-diffusion,mlp-ensemble,transformer,linear,persistence"


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
    log: Optional[str] = typer.Option(None, help=LOG_HELP),
    allow_dirty: bool = typer.Option(False, "--allow-dirty", help=ALLOW_DIRTY_HELP),
) -> None:
    """Train (or load) a world model, generate on-policy trajectories, replay them in the simulator
    and store the errors. The dataset, policy and model are made on first use and cached."""
    import wmbench.sections  # noqa: F401 - every config section a profile or --set may name
    from wmbench.cells import EvalRequest
    from wmbench.evaluate import evaluate as run
    from wmbench.evaluate import summary
    from wmbench.paths import results_root
    from wmbench.provenance import check_clean_tree

    request = EvalRequest(model=model, env=env, horizon=horizon, seed=seed, profile=profile, overrides=tuple(set_),
                          dataset=dataset, n_trajectories=n_trajectories, eval_every=eval_every, device=device,
                          policy=policy, precision=precision, log=log,
                          **({} if policy_std is None else {"policy_std": policy_std}))
    check_clean_tree(results_root(), allow_dirty)
    table = run(request, make_missing=not no_make, force=force)
    first = table.iloc[0]
    title = (f"{first['model']} on {first['dataset']} | policy {first['policy']} | h = {first['horizon']} | "
             f"seed {first['seed']} | {first['profile']} | {int(first['n_trajectories'])} trajectories")
    console.print(title, highlight=False, soft_wrap=True)
    print_steps(summary(table))
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
    log: Optional[str] = typer.Option(None, help=LOG_HELP.replace("under", "(each evaluation's return, model error, "
                                                                           "imagined return and wall times) under")),
    allow_dirty: bool = typer.Option(False, "--allow-dirty", help=ALLOW_DIRTY_HELP),
) -> None:
    """RL in imagination, the paper's Algorithm 3: collect real steps with the current policy, train the
    world model on them, and train an actor-critic only on trajectories the model imagines; PPO is
    the model-free baseline at the same real steps. Stores the real return of the mean action at
    every evaluation (`wmbench report` draws it against real steps); an interrupted run resumes
    from its last evaluation."""
    import wmbench.sections  # noqa: F401 - every config section a profile or --set may name
    from wmbench.paths import results_root
    from wmbench.provenance import check_clean_tree
    from wmbench.rl import RLRequest, summary
    from wmbench.rl import run as run_rl

    request = RLRequest(model=model, env=env, seed=seed, profile=profile, overrides=tuple(set_), env_steps=env_steps,
                        device=device, log=log)
    check_clean_tree(results_root(), allow_dirty)
    table = run_rl(request, force=force)
    first = table.iloc[0]
    console.print(f"{first['model']} on {first['env']} | seed {first['seed']} | {first['profile']}", highlight=False)
    print_steps(summary(table), step="env step")
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
    import wmbench.sections  # noqa: F401 - every config section a profile or --set may name
    from wmbench.cells import EvalRequest
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


@app.command()
def sweep(
    models: str = typer.Option(REFERENCE_MODELS, show_default=False,
                               help="Comma-separated model names (default: the reference's seven, "
                                    f"{REFERENCE_MODELS.replace(',', ', ')}; the floors linear and persistence "
                                    "train in seconds)."),
    envs: str = typer.Option("halfcheetah,hopper,walker2d", help="Comma-separated envs."),
    horizons: str = typer.Option("10", help="Comma-separated horizons, e.g. 10,50,200."),
    seeds: str = typer.Option("0,1,2", help="Comma-separated seeds (the unit of replication; with 2 seeds a 95% t "
                                            "interval is 3.6x as wide as with 3)."),
    profile: str = typer.Option("quick", help="Config profile: smoke, quick, paper or a TOML file."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    workers: int = typer.Option(1, help="Parallel worker processes (each gets cores / workers threads)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    n_trajectories: Optional[int] = typer.Option(None, help="Trajectories per cell (default: the profile's)."),
    eval_every: Optional[int] = typer.Option(None, help=EVAL_EVERY_HELP),
    policy: str = typer.Option("bc", help="Evaluation policy: bc or behaviour (see `wmbench evaluate --help`)."),
    policy_std: Optional[str] = typer.Option(None, help="Comma-separated stds of the behaviour policy, each its own "
                                                        "cell (default: 0.2): the policy-entropy axis."),
    grid_: List[str] = typer.Option([], "--grid", help="SECTION.KEY=V1,V2,...: also vary a setting (any key --set "
                                                       "takes, e.g. data.train_transitions=5000,20000); repeatable, "
                                                       "the cartesian product with the other axes, each value its "
                                                       "own cell."),
    backend: str = typer.Option("local", help="local (--workers processes on this machine) or ray (a Ray task per "
                                              "checkpoint group; pip install 'wmbench\\[ray]')."),
    address: Optional[str] = typer.Option(None, help="Ray: the cluster to join (auto: the running one; default: "
                                                     "start a local Ray instance)."),
    cpus_per_task: float = typer.Option(1, help="Ray: CPUs per task (also its torch threads)."),
    gpus_per_task: float = typer.Option(0, help="Ray: GPUs per task (with --device cuda)."),
    log: Optional[str] = typer.Option(None, help=LOG_HELP + " One run per cell."),
    allow_dirty: bool = typer.Option(False, "--allow-dirty", help=ALLOW_DIRTY_HELP),
    batch_seeds: Optional[bool] = typer.Option(None, "--batch-seeds/--no-batch-seeds",
                                               help="Train the seeds of each diffusion model (same settings) as one "
                                                    "batched network before the cells are evaluated; each seed's model "
                                                    "equals its own training's to float rounding (default: on with "
                                                    "--device cuda, where 3 seeds gave 1.34x the throughput of one at "
                                                    "a time on an H200; off on a CPU; local backend only)."),
) -> None:
    """Evaluate every (model, env, horizon, seed, and --grid setting) cell that is not in the results store yet.

    Rerun the same command to resume an interrupted sweep. A failing cell is reported (its traceback
    beside where its results would be) and the others complete; the exit code is 1 if any failed.
    With --backend ray the cells run as Ray tasks that need no shared filesystem: results and
    trained checkpoints come back to this machine's workspace."""
    import wmbench.sections  # noqa: F401 - every config section a profile or --set may name
    from wmbench.paths import results_root
    from wmbench.provenance import check_clean_tree
    from wmbench.sweep import RayOptions, grid, run_sweep

    if not 1 <= workers <= 256:
        raise UsageError(f"--workers must be from 1 to 256, got {workers}")
    if backend not in ("local", "ray"):
        raise UsageError(f"--backend must be local or ray, got {backend!r}")
    if batch_seeds and backend == "ray":
        raise UsageError("--batch-seeds trains on this machine before the cells run; with --backend ray, leave it out")
    if not (0 < cpus_per_task <= 1024 and 0 <= gpus_per_task <= 64):  # NaN fails both
        raise UsageError(f"--cpus-per-task must be from 0 to 1024 (above 0) and --gpus-per-task from 0 to 64, "
                         f"got {cpus_per_task} and {gpus_per_task}")
    ray = RayOptions(address, cpus_per_task, gpus_per_task) if backend == "ray" else None
    requests = grid(split(models, option="--models"), split(envs, option="--envs"),
                    split(horizons, int, "--horizons"), split(seeds, int, "--seeds"),
                    axes=grid_, policy_stds=[] if policy_std is None else split(policy_std, float, "--policy-std"),
                    profile=profile, overrides=tuple(set_), device=device, n_trajectories=n_trajectories,
                    eval_every=eval_every, policy=policy, log=log)
    check_clean_tree(results_root(), allow_dirty)
    outcome = run_sweep(requests, workers=workers, ray=ray, batch_seeds=batch_seeds)
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
    precision: str = typer.Option("fp32", help="fp32, or bf16 (autocast); with --train also tf32 (CUDA: "
                                                "TensorFloat-32 matmuls)."),
    repeats: int = typer.Option(3, help="Timed rollouts per cell (the median is kept)."),
    train: bool = typer.Option(False, "--train", help="Time training updates instead of generation (at the "
                                                      "profile's batch and sizes; --precision bf16: autocast)."),
    updates: int = typer.Option(50, help="--train: timed updates per model (after 10 untimed ones)."),
    seeds: int = typer.Option(1, help="--train: also time this many seeds of each diffusion model trained as one "
                                      "network (`sweep --batch-seeds`), against one seed at a time."),
) -> None:
    """Time generation per model (untrained weights: the cost does not depend on them), count its
    FLOPs and hold the achieved GFLOP/s against this machine's dense-matmul peak; stores the rows.
    With --train, the same for one training update of each model."""
    import wmbench.sections  # noqa: F401 - every config section a profile or --set may name
    from wmbench.bench import matched, ratio_rows, run_bench, run_train_bench

    if not (1 <= batch <= 1_000_000 and 1 <= repeats <= 1000 and 1 <= updates <= 1_000_000 and 1 <= seeds <= 64):
        raise UsageError(f"--batch (1 to 1,000,000), --repeats (1 to 1,000), --updates (1 to 1,000,000) and --seeds "
                         f"(1 to 64) must be in range, got {batch}, {repeats}, {updates} and {seeds}")
    names = split(models, option="--models")
    if train:
        run_train_bench(names, split(horizons, int, "--horizons"), env=env, profile=profile, overrides=tuple(set_),
                        device=device, precision=precision, updates=updates, seeds=seeds)
        return
    table = run_bench(names, split(horizons, int, "--horizons"), env=env, batch=batch, profile=profile,
                      overrides=tuple(set_), device=device, precision=precision, repeats=repeats)
    ratios = ratio_rows(table)
    if ratios:
        match = "matched" if matched(profile) else "NOT matched"
        console.print(f"ar-diffusion / polygrad generation time ({match} width, blocks and diffusion steps): "
                      + ", ".join(f"h={h}: {r:.1f}x" for h, r in ratios.items()), highlight=False)


@app.command()
def reproduce(
    cell: Path = typer.Argument(..., help="A stored cell's results file (RESULTS/ENV/MODEL/....csv.gz)."),
    device: str = typer.Option("cpu", help="cpu or cuda (a CPU cell reruns with its recorded thread count)."),
    profile: Optional[str] = typer.Option(None, help="The profile file, where the cell's was a TOML file not on "
                                                     "WMBENCH_PROFILES (every config field is pinned anyway)."),
    show: int = typer.Option(10, help="Differing numbers to print (the largest differences)."),
) -> None:
    """Rerun a stored cell from what its file records (every config field, dataset, seed, policy, thread
    count) in a scratch workspace, and print how every number differs (times excepted). Exit 0 when all
    are identical, 1 when any differs. The dataset must be in this workspace (`wmbench data make`)."""
    import wmbench.sections  # noqa: F401 - every config section a profile or --set may name
    from wmbench.reproduce import commit_note

    if show < 0:
        raise UsageError(f"--show must be a number of rows (0 or more), got {show}")
    from wmbench.reproduce import reproduce as run

    start = time.perf_counter()
    result = run(cell, device=device, profile=profile)
    differing, compared = result.differing, int((result.diff["in"] != "rerun").sum())
    console.print(f"{cell.name}: {compared - len(differing)} of {compared} numbers identical "
                  f"({commit_note(result.stored)}; {time.perf_counter() - start:.0f} s)", highlight=False,
                  soft_wrap=True)
    if result.added:
        console.print(f"  not compared (the stored cell predates them): {', '.join(result.added)}", highlight=False)
    for problem in result.problems:
        console.print(f"  {escape(problem)}", highlight=False, soft_wrap=True)
    if not differing.empty:
        console.print(f"  max |difference| {differing['abs_diff'].max():.3g}; the largest:", highlight=False)
        console.print(differing.sort_values("abs_diff", ascending=False).head(show).to_string(index=False),
                      highlight=False, soft_wrap=True)
    if not result.identical:
        raise typer.Exit(1)
