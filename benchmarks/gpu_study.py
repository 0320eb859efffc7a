"""`make gpu-study`: the paper's central comparison, carried as far as one GPU lease allows.

PolyGRAD against the authors' two-row autoregressive diffusion (`ar-diffusion-2row`) on Hopper at
h = 10, 3 seeds, with the data, policy and sizes of `reports/curves-gpu/` (the `quick` profile's
random data, BC policy and widths; 256 held-out starts), each model's seeds trained as one network
(`sweep --batch-seeds`: 1.3-1.45x the throughput of one seed at a time on an H200, where separate
trainings sharing the card gained nothing), the EMA weights evaluated at five points along the way.
In one command, within `--budget` seconds:

1. the dataset is made on the CPU (the random data are the same on every machine) while the GPU
   runs the CUDA checks of what the study relies on (the `gpu` tests of seed batching, TF32 and the
   graph) and the issue's targets at the paper's sizes (width 1024, batch 256): one seed against 3
   seeds as one network, in fp32 and TF32 (`wmbench bench --train --seeds 3`);
2. the time per batched update of each model at the study's sizes is measured, and the number of
   updates set to what the time left can train and evaluate;
3. the study's sweep (`--precision tf32` trains in TF32; `--every N` evaluates every N updates, as
   many points as fit), while the floors (`linear`, `persistence`) are evaluated on the CPU beside it.

One lease trains both models to about 130k updates. `--models` gives a lease to one model (about
300k), and the other model's lease then evaluates under the same BC policy with `--policies`: the
policy files the first lease returned (`policies/` in its `results.tgz`), put in the workspace
before anything could fit another one (a policy fitted again on another machine has other weights,
and a report refuses to pair cells of two policies).

Logs and `summary.md` go to `--out` ($OUT), with the results store and the policy files as
`results.tgz` (unpack its `results/` into the study's store). Runs from a clean checkout with no
network, wheels in `.whl/` as for `make gpu-check`. `--device cpu --budget 300 --profile smoke
--rate-updates 50` is a dry run of the plumbing (`tests/test_gpu_study.py` runs both leases' shapes).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

from gpu_check import ROOT, WMBENCH, install_wheels, run_logged

MODELS = "polygrad,ar-diffusion-2row"
ENV = "hopper"
BATCHED = re.compile(r"^\s*(\S+) h=\d+ +\w+ training of \d+ seeds as one: +([\d.]+) ms/update", re.M)
EVAL_S = 20  # seconds per evaluation point: up to 6 cells (6 processes) evaluating their snapshot, and a margin
POINTS = 5  # evaluations along each training (the last the final model), unless --every says otherwise


def plan(seconds: float, per_update: float, every: int | None, max_updates: int) -> tuple[int, int]:
    """(updates per seed, evaluated every): as many updates as `seconds` can train (per_update: both
    models' batched updates; their snapshots' writes about 5% more) and evaluate, 20 s for the sweep to start."""
    if every is None:
        affordable = (seconds - POINTS * EVAL_S - 20) / (per_update * 1.05)
        every = max(int(min(affordable, max_updates) / POINTS) // 1000 * 1000, 1000)
        return every * POINTS, every
    points = int((seconds - 20) // (every * per_update * 1.05 + EVAL_S))
    return max(1, min(points, max_updates // every)) * every, every


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-study")))
    parser.add_argument("--budget", type=float, default=530, help="seconds for everything (default: 530)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profile", default="quick", help="the study's profile (smoke: a dry run)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default=MODELS, help=f"the study's models (default: {MODELS}); one model "
                                                          "trains about twice as far in the lease")
    parser.add_argument("--policies", type=Path, help="policy files of an earlier lease (the `policies/` folder "
                                                      "of its results.tgz), used instead of fitting the BC policy")
    parser.add_argument("--max-updates", type=int, default=1_000_000,
                        help="at most this many updates per seed (in whole thousands per point, at least 5,000)")
    parser.add_argument("--skip-checks", action="store_true", help="no CUDA checks (step 1)")
    parser.add_argument("--skip-targets", action="store_true", help="no targets at the paper's sizes (step 2)")
    parser.add_argument("--precision", choices=("fp32", "tf32"), default="fp32", help="the study's trainings")
    parser.add_argument("--rate-updates", type=int, default=1000,
                        help="updates timed to plan the study (default: 1000; fewer for a dry run on a CPU)")
    parser.add_argument("--every", type=int, help="evaluate every N updates, as many points as the time allows "
                                                  "(default: 5 points spread over it); the points of an earlier "
                                                  "run's --every pair with this run's")
    args = parser.parse_args()
    began = time.perf_counter()
    left = lambda: args.budget - (time.perf_counter() - began)  # noqa: E731
    args.out.mkdir(parents=True, exist_ok=True)
    workspace = Path(os.environ.get("WMBENCH_STUDY_HOME", "/tmp/wmbench-study"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1", "WMBENCH_HOME": str(workspace)}
    summary = [f"install: {install_wheels(env)}"]

    def step(name: str, command: list[str], limit: float) -> str:
        limit = int(min(limit, left() - 5))
        if limit < 10:
            summary.append(f"{name}: skipped (budget)")
            return ""
        start, log = time.perf_counter(), args.out / f"{name}.log"
        status = run_logged(command, log, env, limit)
        summary.append(f"{name}: {status} in {time.perf_counter() - start:.0f} s")
        print(summary[-1], flush=True)
        return log.read_text()

    def background(name: str, command: list[str]) -> subprocess.Popen:
        with open(args.out / f"{name}.log", "w") as log:  # the child keeps its own handle
            return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def finish(name: str, process: subprocess.Popen, started: float) -> None:
        try:
            code = process.wait(timeout=max(left() - 5, 1))
        except subprocess.TimeoutExpired:
            process.kill()
            code = "timeout"
        summary.append(f"{name}: exit {code}, done by {time.perf_counter() - started:.0f} s")
        print(summary[-1], flush=True)

    cuda = ["--device", args.device]
    models = args.models.split(",")
    common = [*cuda, "--profile", args.profile, "--envs", ENV, "--horizons", "10", "--seeds", args.seeds]
    steps = tomllib.loads((ROOT / "wmbench" / "profiles" / f"{args.profile}.toml").read_text())["data"]["steps"]
    made = (workspace / "datasets" / "wmbench" / ENV / "random-v0" / "data" / "metadata.json").is_file()
    started = time.perf_counter()
    making = background("data", [*WMBENCH, "data", "make", ENV, "--steps", str(steps)] if not made else ["true"])
    if not args.skip_checks:
        step("checks", [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                        "tests/test_gpu.py", "-k", "seeds or tf32 or graphed"], 100)
    if not args.skip_targets:
        for precision in ("fp32", "tf32"):
            text = step(f"targets-{precision}", [*WMBENCH, "bench", "--train", *cuda, "--profile", "paper",
                                                 "--models", args.models, "--horizons", "10", "--seeds", "3",
                                                 "--updates", "200", "--precision", precision], 60)
            summary += [line.strip() for line in text.splitlines() if "ms/update" in line]
    # the rate plans the lease: 1,000 timed updates by default (200 gave 3.13 ms for both models on the H200,
    # which then trained at 2.65 ms in the sweep)
    text = step("rate", [*WMBENCH, "bench", "--train", *cuda, "--profile", args.profile, "--env", ENV,
                         "--models", args.models, "--horizons", "10", "--seeds", "3",
                         "--updates", str(args.rate_updates), "--precision", args.precision], 60)
    per_update = sum(float(ms) for _, ms in BATCHED.findall(text)) / 1e3  # every model, one batched update each
    finish("data", making, started)
    if args.policies:  # before anything could fit a policy of its own
        shutil.copytree(args.policies, workspace / "datasets", dirs_exist_ok=True)
        summary.append(f"policies from {args.policies}: {len(list(args.policies.glob('**/*.pt')))} files")
    started = time.perf_counter()
    floors = background("floors", [*WMBENCH, "sweep", *common, "--models", "linear,persistence", "--workers", "3"])
    if not per_update:
        summary.append("study: no rate measured; see rate.log")
    else:
        updates, every = plan(left(), per_update, args.every, args.max_updates)
        summary.append(f"study ({args.precision}): {per_update * 1e3:.2f} ms per batched update of the models "
                       f"together -> {updates} updates per seed, evaluated every {every}")
        settings = [f"train_steps={updates}", "checkpoint_every=0"]
        settings += [f"precision='{args.precision}'"] if args.precision != "fp32" else []  # fp32: the hashes as before
        budget = [arg for model in models for setting in settings for arg in ("--set", f"{model}.{setting}")]
        workers = len(models) * len(args.seeds.split(","))
        step("study", [*WMBENCH, "sweep", *common, "--models", args.models, "--eval-every", str(every),
                       "--batch-seeds", "--workers", str(workers), *budget], left() - 10)
    finish("floors", floors, started)
    with tarfile.open(args.out / "results.tgz", "w:gz") as tar:
        if (workspace / "results").is_dir():
            no_locks = lambda f: None if f.name.endswith(".lock") else f  # noqa: E731
            tar.add(workspace / "results", arcname="results", filter=no_locks)
        for policy in sorted((workspace / "datasets").glob("**/wmbench/policy-*.pt")):
            tar.add(policy, arcname=f"policies/{policy.relative_to(workspace / 'datasets')}")
    (args.out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
