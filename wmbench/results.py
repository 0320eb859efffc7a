"""The results store: tidy rows, one CSV file per evaluated cell, each written atomically.

A cell is one (model, env, dataset, policy, profile, horizon, seed) evaluation. One file per cell
means concurrent workers never write the same file, an interrupted run leaves every finished cell
readable, and "is this cell done?" is a file test, which is what lets sweeps resume.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from wmbench.paths import atomic_write_bytes, results_root

BENCH_DATASET = "bench"  # the dataset of `wmbench bench` rows: untrained models, timings only
ROW_COLUMNS = ["model", "env", "dataset", "policy", "profile", "horizon", "seed", "precision", "metric", "step", "value"]


@dataclass(frozen=True)
class Cell:
    """The identity of one evaluation."""

    model: str
    env: str
    dataset: str
    policy: str
    profile: str
    horizon: int
    seed: int
    precision: str = "fp32"  # of generation: fp32, or bf16 autocast

    def relative_path(self) -> Path:
        dataset = self.dataset.replace("/", ".")
        precision = "" if self.precision == "fp32" else f"__{self.precision}"
        return Path(self.env, self.model,
                    f"{dataset}__{self.policy}__{self.profile}__h{self.horizon}__s{self.seed}{precision}.csv")


class ResultsStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else results_root()

    def path(self, cell: Cell) -> Path:
        return self.root / cell.relative_path()

    def has(self, cell: Cell) -> bool:
        return self.path(cell).is_file()

    def write(self, cell: Cell, rows: pd.DataFrame) -> Path:
        """Store a cell's rows (replacing any earlier ones); the cell's identity columns are set here."""
        rows = rows.assign(**asdict(cell))
        ordered = ROW_COLUMNS + [c for c in rows.columns if c not in ROW_COLUMNS]
        buffer = io.StringIO()
        rows[ordered].to_csv(buffer, index=False)
        path = self.path(cell)
        atomic_write_bytes(path, buffer.getvalue().encode())
        return path

    def read_cell(self, cell: Cell) -> pd.DataFrame:
        return pd.read_csv(self.path(cell))

    def read(self, **filters: str | int | list) -> pd.DataFrame:
        """All stored rows, optionally filtered by column values (a value or a list of values).

        An unreadable file is skipped with a warning naming it; the rest is still returned.
        """
        frames = []
        for path in sorted(self.root.glob("**/*.csv")):
            try:
                frames.append(pd.read_csv(path))
            except (OSError, ValueError, pd.errors.ParserError) as err:
                warnings.warn(f"skipping unreadable results file {path}: {err}", stacklevel=2)
        if not frames:
            return pd.DataFrame(columns=ROW_COLUMNS)
        table = pd.concat(frames, ignore_index=True)
        table["precision"] = table["precision"].fillna("fp32") if "precision" in table else "fp32"
        for column, wanted in filters.items():
            if wanted is None:
                continue
            wanted = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
            table = table[table[column].isin(list(wanted))]
        return table.reset_index(drop=True)


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table (pandas' own needs the optional `tabulate`)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return format(value, floatfmt)
        return str(value)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])
