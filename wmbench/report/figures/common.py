"""What every figure shares: panel grids, one legend under them, and atomic PNG writes."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from wmbench.paths import atomic_write_bytes
from wmbench.report.select import POOLED


def save(fig: plt.Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def panel_axes(n: int, rows: int = 1, height: float = 3.6, width: float = 4.4, **kwargs):
    fig, axes = plt.subplots(rows, n, figsize=(width * n, height * rows), squeeze=False, layout="constrained", **kwargs)
    return fig, axes


def aggregate_axes(scores: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """`(title, rows)` for each axis of an aggregate score's figure: one per horizon and pooled panel (a setting
    that splits the envs, `all envs · bc`, has its own axis: its runs never pool with another setting's)."""
    return [(f"h = {horizon}{panel.removeprefix(POOLED)}", part)
            for (horizon, panel), part in scores.groupby(["horizon", "panel"])]


def legend(fig: plt.Figure, axes) -> None:
    handles = {}
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(len(handles), 5),
                   frameon=False)


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")
