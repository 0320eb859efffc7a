"""Draw a logged run's TensorBoard scalars as one figure (the README's picture of a PolyGRAD training).

    python docs/run_figure.py runs/hopper/polygrad/CELL docs/img/tensorboard_polygrad_hopper.png

Reads the event files with TensorBoard's own reader (what `tensorboard --logdir runs` shows, purged
steps hidden), one panel per scalar of the `train`, `tune`, `curve` and `eval` groups that the run has.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

PANELS = [("train", "loss", "training loss", "update"), ("train", "updates_per_s", "updates per second", "update"),
          ("train", "grad_norm", "gradient norm", "update"), ("train", "ema_gap", "EMA gap (relative)", "update"),
          ("tune", "delta", "delta (tuning)", "tuning step"), ("tune", "std_z", "std(z) (tuning; 1 = on-policy)",
                                                               "tuning step"),
          ("curve", "mse_10", "snapshot MSE at step 10", "update"), ("eval", "mse", "final MSE against the step",
                                                                      "rollout step")]


def main(run: Path, out: Path) -> None:
    panels = []
    for group, name, title, xlabel in PANELS:
        events = EventAccumulator(str(run / group))
        events.Reload()
        if f"{group}/{name}" in events.Tags()["scalars"]:
            points = events.Scalars(f"{group}/{name}")
            panels.append(([p.step for p in points], [p.value for p in points], title, xlabel))
    fig, axes = plt.subplots(2, (len(panels) + 1) // 2, figsize=(4 * ((len(panels) + 1) // 2), 6.5), squeeze=False)
    for ax, (steps, values, title, xlabel) in zip(axes.flat, panels):
        ax.plot(steps, values, marker="." if len(steps) < 60 else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"TensorBoard scalars of {run.name}", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
