"""`make gpu-study`: the paper's central comparison, carried as far as one GPU lease allows.

PolyGRAD against the authors' two-row autoregressive diffusion (`ar-diffusion-2row`) on Hopper at
h = 10, 3 seeds, with the data, policy and sizes of `reports/curves-gpu/` (the `quick` profile's
random data, BC policy and widths; 256 held-out starts), each model's seeds trained as one network
(`sweep --batch-seeds`: 1.3-1.45x the throughput of one seed at a time on an H200, where separate
trainings sharing the card gained nothing), the EMA weights evaluated at five points along the way.
In one command, within `--budget` seconds:

1. the CUDA checks of what the study relies on (the `gpu` tests of seed batching, TF32 and the graph);
2. the issue's targets at the paper's sizes (width 1024, batch 256): one seed against 3 seeds as
   one network, in fp32 and TF32 (`wmbench bench --train --seeds 3`);
3. the floors (`linear`, `persistence`), which also make the dataset and the policy (on the CPU,
   while steps 1 and 2 run);
4. the study: the time per batched update of each model at the study's sizes is measured, the
   number of updates set to what the time left can train and evaluate, and the sweep run
   (`--precision tf32` trains in TF32; `--every N` evaluates every N updates, as many points as fit).

Logs and `summary.md` go to `--out` ($OUT), with the results store as `results.tgz` (unpack it into
`reports/curves-gpu-long/`). Runs from a clean checkout with no network, wheels in `.whl/` as for
`make gpu-check`. `--device cpu --budget 300 --profile smoke` is a dry run of the plumbing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from gpu_check import ROOT, WMBENCH, install_wheels, run_logged

MODELS = ("polygrad", "ar-diffusion-2row")
BATCHED = re.compile(r"^\s*(\S+) h=\d+ +\w+ training of \d+ seeds as one: +([\d.]+) ms/update", re.M)
EVAL_S = 20  # seconds per evaluation point: 6 cells (6 processes) evaluating their snapshot, and a margin
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
    parser.add_argument("--max-updates", type=int, default=1_000_000,
                        help="at most this many updates per seed (in whole thousands per point, at least 5,000)")
    parser.add_argument("--skip-checks", action="store_true", help="no CUDA checks (step 1)")
    parser.add_argument("--skip-targets", action="store_true", help="no targets at the paper's sizes (step 2)")
    parser.add_argument("--precision", choices=("fp32", "tf32"), default="fp32", help="the study's trainings")
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

    cuda = ["--device", args.device]
    common = [*cuda, "--profile", args.profile, "--envs", "hopper", "--horizons", "10", "--seeds", args.seeds]
    started, floors_log = time.perf_counter(), open(args.out / "floors.log", "w")
    floors = subprocess.Popen([*WMBENCH, "sweep", *common, "--models", "linear,persistence", "--workers", "3"],
                              cwd=ROOT, env=env, stdout=floors_log, stderr=subprocess.STDOUT)
    if not args.skip_checks:
        step("checks", [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                        "tests/test_gpu.py", "-k", "seeds or tf32 or graphed"], 100)
    if not args.skip_targets:
        for precision in ("fp32", "tf32"):
            text = step(f"targets-{precision}", [*WMBENCH, "bench", "--train", *cuda, "--profile", "paper",
                                                 "--models", ",".join(MODELS), "--horizons", "10", "--seeds", "3",
                                                 "--updates", "200", "--precision", precision], 60)
            summary += [line.strip() for line in text.splitlines() if "ms/update" in line]
    try:
        code = floors.wait(timeout=max(left() - 200, 10))
    except subprocess.TimeoutExpired:
        floors.kill()
        code = "timeout"
    floors_log.close()
    summary.append(f"floors (data, policy): exit {code} after {time.perf_counter() - started:.0f} s")
    text = step("rate", [*WMBENCH, "bench", "--train", *cuda, "--profile", args.profile, "--env", "hopper",
                         "--models", ",".join(MODELS), "--horizons", "10", "--seeds", "3", "--updates", "200",
                         "--precision", args.precision], 60)
    per_update = sum(float(ms) for _, ms in BATCHED.findall(text)) / 1e3  # both models, one batched update each
    if not per_update:
        summary.append("study: no rate measured; see rate.log")
    else:
        updates, every = plan(left(), per_update, args.every, args.max_updates)
        summary.append(f"study ({args.precision}): {per_update * 1e3:.2f} ms per update of both models -> "
                       f"{updates} updates per seed, evaluated every {every}")
        settings = [f"train_steps={updates}", "checkpoint_every=0"]
        settings += [f"precision='{args.precision}'"] if args.precision != "fp32" else []  # fp32: the hashes as before
        budget = [arg for model in MODELS for setting in settings for arg in ("--set", f"{model}.{setting}")]
        step("study", [*WMBENCH, "sweep", *common, "--models", ",".join(MODELS), "--eval-every", str(every),
                       "--batch-seeds", "--workers", "6", *budget], left() - 10)
    results = workspace / "results"
    if results.is_dir():
        with tarfile.open(args.out / "results.tgz", "w:gz") as tar:
            tar.add(results, arcname="results")
    (args.out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
