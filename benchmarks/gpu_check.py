"""`make gpu-check`: check a machine with one GPU in a few minutes and print one summary table.

Runs from a clean checkout with no network: wmbench is used from the checkout (PYTHONPATH), and
packages the machine lacks (MuJoCo, Gymnasium, Minari) are installed from wheels in `.whl/` if
that folder exists. Each step runs under its own time limit and logs to `OUT/<step>.log`; the
summary (also `OUT/summary.md`) gives each step's status, time and headline figures. Steps:
the `gpu` tests; generation at the paper's sizes (1024 trajectories, h = 10 and 50); one training
update of every model at paper sizes in fp32 and bf16, and with torch.compile; and a short PolyGRAD
evaluation at paper width on locally made data. MUJOCO_GL is left alone (EGL may be absent).
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
FIGURE = re.compile(r"(ms/update.*?updates/s\)|rollout +[\d.]+ s|generation time .*|generation: [\d.]+ s.*?\||"
                    r"\d+ passed.*|\d+ failed.*|matmul peak.*)")


def steps(workspace: Path) -> list[tuple[str, list[str], int]]:
    paper = ["--device", "cuda", "--profile", "paper"]
    train = [*WMBENCH, "bench", "--train", *paper, "--horizons", "10", "--updates", "300", "--models", MODELS]
    short = ["--set", "data.steps=20000", "--set", "policy.steps=2000", "--set", "polygrad.train_steps=5000",
             "--set", "polygrad.tune_iterations=100"]
    return [  # most important first: a step gets at most what is left of --budget
        ("gpu-tests", [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                       "tests/test_gpu.py"], 150),
        ("train-fp32", train, 60),
        ("generation", [*WMBENCH, "bench", *paper, "--horizons", "10,50", "--batch", "1024",
                        "--models", "polygrad,ar-diffusion,transformer,mlp-ensemble,polygrad-transformer"], 100),
        ("polygrad-evaluate", [*WMBENCH, "--workspace", str(workspace), "evaluate", "--model", "polygrad", "--env",
                               "hopper", *paper, *short], 120),
        ("train-bf16", [*train, "--precision", "bf16"], 60),
        ("train-h50-w2048", [*WMBENCH, "bench", "--train", *paper, "--horizons", "50", "--updates", "300",
                             "--models", "polygrad,ar-diffusion", "--set", "polygrad.width=2048",
                             "--set", "ar-diffusion.width=2048"], 60),
        ("train-compiled", [*WMBENCH, "bench", "--train", *paper, "--horizons", "10", "--updates", "300",
                            "--models", "polygrad", "--set", "polygrad.compile=true"], 120),
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check")),
                        help="folder for the logs and summary.md (default: $OUT, else gpu-check/)")
    parser.add_argument("--only", default="", help="comma-separated step names to run (default: all)")
    parser.add_argument("--budget", type=float, default=540, help="seconds for all steps together")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1", "WMBENCH_HOME": str(args.out / "workspace")}
    began = time.perf_counter()
    rows = [("install", "ok", 0.0, install_wheels(env))]
    wanted = set(filter(None, args.only.split(",")))
    for name, command, limit in steps(args.out / "workspace"):
        if wanted and name not in wanted:
            continue
        limit = int(min(limit, args.budget - (time.perf_counter() - began)))
        if limit < 10:
            rows.append((name, "skipped (budget)", 0.0, ""))
            continue
        log, start = args.out / f"{name}.log", time.perf_counter()
        with open(log, "w") as handle:
            try:
                code = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                      timeout=limit).returncode
                status = "ok" if code == 0 else f"exit {code}"
            except subprocess.TimeoutExpired:
                status = f"timeout ({limit} s)"
        seconds = time.perf_counter() - start
        figures = "; ".join(m.group(0).strip() for m in FIGURE.finditer(log.read_text()))
        rows.append((name, status, seconds, figures))
        print(f"{name}: {status} in {seconds:.0f} s", flush=True)
    table = ["| step | status | seconds | figures |", "|---|---|---|---|"]
    table += [f"| {n} | {s} | {t:.0f} | {f} |" for n, s, t, f in rows]
    (args.out / "summary.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0 if all(status == "ok" for _, status, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
