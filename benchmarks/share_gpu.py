"""Cells sharing one device: the training throughput of K concurrent trainings against one alone.

    python benchmarks/share_gpu.py --device cuda --profile paper --workers 1,2,3

Each of K processes times `wmbench bench --train` of PolyGRAD (the profile's width and batch) at the same
time; the line per K gives the updates per second of each process and of all K together, and the ratio of
the total to K = 1: what `sweep --device cuda --workers K` gains when K cells train on one card. With
`--device cpu --profile smoke` it is a dry run of the plumbing (CPU cores are shared differently).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

RATE = re.compile(r"\(\s*([\d.]+) updates/s\)")


def rates(k: int, device: str, profile: str, updates: int, model: str) -> list[float]:
    """Updates per second of each of `k` concurrent trainings (each in its own workspace)."""
    command = [sys.executable, "-m", "wmbench", "bench", "--train", "--models", model, "--horizons", "10",
               "--device", device, "--profile", profile, "--updates", str(updates)]
    with tempfile.TemporaryDirectory() as root:
        procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "WMBENCH_HOME": os.path.join(root, str(i))}) for i in range(k)]
        outputs = [proc.communicate()[0] for proc in procs]
    found = [RATE.search(output) for output in outputs]
    if not all(found):
        raise SystemExit("a training printed no rate:\n" + "\n".join(outputs))
    return [float(match.group(1)) for match in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--workers", default="1,2,3", help="comma-separated K")
    # each process's timed window must overlap the others': at 300 updates (0.3 s on an H200) it did
    # not (3 processes "gave" 2.81x, one faster than a training alone); at 10,000, 0.99x
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--model", default="polygrad")
    args = parser.parse_args()
    alone = None
    for k in (int(k) for k in args.workers.split(",")):
        each = rates(k, args.device, args.profile, args.updates, args.model)
        total = sum(each)
        alone = alone or total / k
        print(f"share K={k}: {' + '.join(f'{r:.1f}' for r in each)} = {total:.1f} updates/s in all "
              f"({total / alone:.2f}x one alone)", flush=True)


if __name__ == "__main__":
    main()
