"""`make gpu-check`: check a machine with one GPU in a few minutes and print one summary table.

Runs from a clean checkout with no network: wmbench is used from the checkout (PYTHONPATH), and
packages the machine lacks (MuJoCo, Gymnasium, Minari) are installed from wheels in `.whl/` if
that folder exists. Each step runs under its own time limit and logs to `OUT/<step>.log`; the
summary (also `OUT/summary.md`) gives each step's status, time and headline figures. Steps, most
important first, within a default budget under 5 minutes: the `gpu` tests; one training update of
every model at paper sizes (CUDA graph, TF32, then eager for the ratio); generation at the paper's sizes
(1024 trajectories, h = 10 and 50); the paper profile end to end at h = 10 for every model, with
data and training budgets cut to fit; K = 1 and 3 concurrent PolyGRAD trainings on the card
(`benchmarks/share_gpu.py`; `--only share-gpu` runs it alone). With `--budget 480`, also: training-state writes every
1,000 updates, bf16 training, and h = 50 at width 2048. MUJOCO_GL is left alone (EGL may be
absent). `--device cpu --profile smoke` is a dry run of the plumbing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = "polygrad,ar-diffusion,transformer,mlp-ensemble"
WMBENCH = [sys.executable, "-m", "wmbench"]
FIGURE = re.compile(r"(\S+ +h=\d+ +\w+ training: +[\d.]+ ms/update|rollout +[\d.]+ s|generation time .*|"
                    r"generation: [\d.]+ s.*?\||"
                    r"\d+ passed.*|\d+ failed.*|matmul peak.*|share K=.*)")


def steps(workspace: Path, device: str, profile: str) -> list[tuple[str, list[str], int]]:
    paper = ["--device", device, "--profile", profile]
    train = [*WMBENCH, "bench", "--train", *paper, "--horizons", "10", "--updates", "300"]
    # the paper profile end to end at h = 10, every model, with budgets cut to fit this check
    # (rates per update are measured by the training steps above; the README projects 1M updates)
    budgets = {"data.steps": 50_000, "policy.steps": 2000, "polygrad.train_steps": 10_000,
               "polygrad.tune_iterations": 50, "ar-diffusion.train_steps": 10_000,
               "ar-diffusion-2row.train_steps": 10_000, "transformer.train_steps": 500, "mlp-ensemble.max_steps": 2000}
    if device == "cpu":  # a dry run of the plumbing
        budgets = {key: 3000 if key == "data.steps" else 20 for key in budgets}
    cut = [arg for key, value in budgets.items() for arg in ("--set", f"{key}={value}")]
    return [  # most important first: a step gets at most what is left of --budget
        ("gpu-tests", [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                       "tests/test_gpu.py"], 150),
        ("train-fp32", [*train, "--models", f"{MODELS},ar-diffusion-2row"], 60),
        ("train-tf32", [*train, "--models", "polygrad,ar-diffusion-2row", "--precision", "tf32"], 40),
        ("train-eager", [*train, "--models", "polygrad,ar-diffusion", "--set", "polygrad.cuda_graph=false",
                         "--set", "ar-diffusion.cuda_graph=false"], 30),
        ("generation", [*WMBENCH, "bench", *paper, "--horizons", "10,50", "--batch", "1024",
                        "--models", "polygrad,ar-diffusion"], 60),
        ("paper-end-to-end", [*WMBENCH, "--workspace", str(workspace), "sweep", *paper, "--envs", "hopper",
                              "--horizons", "10", "--seeds", "0", "--models",
                              "linear,mlp-ensemble,polygrad,ar-diffusion,ar-diffusion-2row,transformer", *cut], 120),
        # cells sharing the card: K concurrent PolyGRAD trainings against one (sweep --device cuda --workers K)
        ("share-gpu", [sys.executable, "benchmarks/share_gpu.py", "--device", device, "--profile", profile,
                       "--workers", "1,3"], 90),
        # beyond the default budget: --budget 480 runs these too
        ("train-checkpointed", [*WMBENCH, "bench", "--train", *paper, "--horizons", "10", "--updates", "3000",
                                "--models", "polygrad", "--set", "polygrad.checkpoint_every=1000"], 40),
        ("train-bf16", [*train, "--models", "polygrad,ar-diffusion,transformer", "--precision", "bf16"], 60),
        ("train-h50", [*WMBENCH, "bench", "--train", *paper, "--horizons", "50", "--updates", "300",
                       "--models", "polygrad,ar-diffusion", "--set", "ar-diffusion.width=2048"], 60),
    ]


def install_wheels(env: dict) -> str:
    import importlib.util

    missing = [m for m in ("mujoco", "gymnasium", "minari") if importlib.util.find_spec(m) is None]
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if not missing or not wheels:
        return "using installed packages" + (f" (missing: {', '.join(missing)}; no .whl/)" if missing else "")
    target = Path("/tmp/wmbench-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--upgrade", "--target", str(target), *map(str, wheels)], check=True, timeout=300)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env["PYTHONPATH"]])
    return f"installed {len(wheels)} wheels into {target}"


def run_logged(command: list[str], log: Path, env: dict, limit: int) -> str:
    """Run `command` from the checkout with its output in `log`, for at most `limit` seconds: `ok`,
    `exit N` or `timeout (N s)`."""
    with open(log, "w") as handle:
        try:
            code = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                  timeout=limit).returncode
        except subprocess.TimeoutExpired:
            return f"timeout ({limit} s)"
    return "ok" if code == 0 else f"exit {code}"


def cell_table(results: Path) -> list[str]:
    """One line per evaluated cell of the end-to-end step: where its time went, and its error."""
    import pandas as pd

    files = sorted(results.glob("**/*.csv.gz"))
    if not files:
        return []
    cells = pd.concat([pd.read_csv(f) for f in files])
    cells = cells[cells["dataset"] != "bench"]  # the bench steps store their rows here too
    times = ["wall_data_s", "fit_time_s", "wall_model_s", "gen_time_s", "wall_rollout_s", "wall_oracle_s"]
    lines = [f"| model | {' | '.join(times)} | mse@last |", "|---|" + "---|" * (len(times) + 1)]
    for model, rows in cells.groupby("model", sort=False):
        value = rows.groupby("metric")["value"]
        figures = [f"{value.get_group(m).iloc[0]:.1f}" if m in value.groups else "" for m in times]
        mse = rows[rows["metric"] == "mse"].sort_values("step")["value"]
        lines.append(f"| {model} | {' | '.join(figures)} | {mse.iloc[-1]:.4g} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check")),
                        help="folder for the logs and summary.md (default: $OUT, else gpu-check/)")
    parser.add_argument("--only", default="", help="comma-separated step names to run (default: all)")
    parser.add_argument("--budget", type=float, default=290,
                        help="seconds for all steps together (default: under 5 minutes; 480 runs every step)")
    parser.add_argument("--device", default="cuda", help="device of every step (cpu: a dry run of the plumbing)")
    parser.add_argument("--profile", default="paper", help="profile of every step (smoke: a dry run)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1", "WMBENCH_HOME": str(args.out / "workspace")}
    began = time.perf_counter()
    rows = [("install", "ok", 0.0, install_wheels(env))]
    wanted = set(filter(None, args.only.split(",")))
    for name, command, limit in steps(args.out / "workspace", args.device, args.profile):
        if wanted and name not in wanted:
            continue
        limit = int(min(limit, args.budget - (time.perf_counter() - began)))
        if limit < 10:
            rows.append((name, "skipped (budget)", 0.0, ""))
            continue
        log, start = args.out / f"{name}.log", time.perf_counter()
        status = run_logged(command, log, env, limit)
        seconds = time.perf_counter() - start
        figures = "; ".join(m.group(0).strip() for m in FIGURE.finditer(log.read_text()))
        rows.append((name, status, seconds, figures))
        print(f"{name}: {status} in {seconds:.0f} s", flush=True)
    table = ["| step | status | seconds | figures |", "|---|---|---|---|"]
    table += [f"| {n} | {s} | {t:.0f} | {f} |" for n, s, t, f in rows]
    table += ["", *cell_table(args.out / "workspace" / "results")]
    (args.out / "summary.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0 if all(status == "ok" or status.startswith("skipped") for _, status, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
