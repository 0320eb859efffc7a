"""The results store: tidy rows, one gzipped CSV file per evaluated cell, each written atomically.

A cell is one (model, env, dataset, policy, profile, horizon, seed, precision, config) evaluation.
One file per cell means concurrent workers never write the same file, an interrupted run leaves
every finished cell readable, and "is this cell done?" is a file test, which is what lets sweeps
resume. A file that cannot be read (truncated, hand-edited) is named in a warning and skipped.
Every row repeats its cell's provenance (config, versions, dataset), so gzip makes a file about 50x
smaller (a committed store would otherwise outgrow what a GPU lease can carry); plain `.csv` files
of older stores are read as before.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import warnings
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from wmbench.paths import atomic_write_bytes, file_lock, results_root

BENCH_DATASET = "bench"  # the dataset of `wmbench bench` rows: untrained models, timings only
RL_DATASET = "online"  # the dataset of `wmbench rl` rows: online runs, no offline dataset
COUNT_COLUMN = "n_rows"  # every row of a file says how many it has: a file cut between rows is seen
SUFFIX, PLAIN_SUFFIX = ".csv.gz", ".csv"  # what the store writes; what older stores hold
GZIP_MAGIC = b"\x1f\x8b"
ROW_COLUMNS = ["model", "env", "dataset", "policy", "profile", "horizon", "seed", "precision", "config_hash",
               "metric", "step", "value"]


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
    config_hash: str = ""  # of the cell's resolved config (profile and --set overrides)

    def relative_path(self) -> Path:
        dataset = self.dataset.replace("/", ".")
        precision = "" if self.precision == "fp32" else f"__{self.precision}"
        config = f"__{self.config_hash}" if self.config_hash else ""
        return Path(self.env, self.model, f"{dataset}__{self.policy}__{self.profile}__h{self.horizon}"
                                          f"__s{self.seed}{precision}{config}{SUFFIX}")


def read_rows(path: Path) -> pd.DataFrame:
    """One results file; `ValueError` (saying why) if it is not a readable table of results."""
    try:
        raw = path.read_bytes()
        if raw[:2] == GZIP_MAGIC:  # by content, not name: a cell rewritten by hand as plain CSV is read too
            try:
                raw = gzip.decompress(raw)
            except EOFError as err:
                raise ValueError("truncated: the compressed data end early") from err
        if not raw.endswith(b"\n"):  # every file the store writes ends with one
            raise ValueError("truncated: no final newline")
        frame = pd.read_csv(io.BytesIO(raw))
    except (OSError, zlib.error, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__) from err
    missing = [c for c in ("model", "env", "metric", "step", "value") if c not in frame]
    if missing:
        raise ValueError(f"no {', '.join(missing)} column")
    if frame.empty:
        raise ValueError("no rows")
    if not pd.api.types.is_numeric_dtype(frame["value"]) or not pd.api.types.is_numeric_dtype(frame["step"]):
        raise ValueError("non-numeric step or value")
    if COUNT_COLUMN in frame and not (frame[COUNT_COLUMN] == len(frame)).all():  # cut at a line boundary
        raise ValueError(f"incomplete: {len(frame)} rows of {frame[COUNT_COLUMN].iloc[0]}")
    return frame


class ResultsStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else results_root()

    def path(self, cell: Cell) -> Path:
        """Where the cell is written (and read, unless an older store holds it as plain CSV)."""
        return self.root / cell.relative_path()

    def _plain(self, cell: Cell) -> Path:
        """Where an older version stored the cell, uncompressed."""
        path = self.path(cell)
        return path.with_name(path.name.removesuffix(SUFFIX) + PLAIN_SUFFIX)

    def _stored(self, cell: Cell) -> Path | None:
        return next((p for p in (self.path(cell), self._plain(cell)) if p.is_file()), None)

    def has(self, cell: Cell) -> bool:
        """Whether the cell is stored and readable (an unreadable file is named in a warning)."""
        return self.load(cell) is not None

    def load(self, cell: Cell) -> pd.DataFrame | None:
        """The cell's rows, or None when it is not stored or its file cannot be read."""
        path = self._stored(cell)
        if path is None:
            return None
        try:
            return read_rows(path)
        except ValueError as err:
            warnings.warn(f"skipping unreadable results file {path} ({err}); its cell will be recomputed",
                          stacklevel=2)
            return None

    @contextlib.contextmanager
    def lock(self, cell: Cell, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Exclusive hold on one cell, so that two processes never compute it at once."""
        path = self.path(cell)
        with file_lock(path.with_name(f".{path.name}.lock"), on_wait):
            yield

    def write(self, cell: Cell, rows: pd.DataFrame) -> Path:
        """Store a cell's rows (replacing any earlier ones); the cell's identity columns are set here."""
        rows = rows.assign(**asdict(cell), **{COUNT_COLUMN: len(rows)})
        ordered = ROW_COLUMNS + [c for c in rows.columns if c not in ROW_COLUMNS]
        buffer = io.StringIO()
        rows[ordered].to_csv(buffer, index=False)
        path = self.path(cell)
        atomic_write_bytes(path, gzip.compress(buffer.getvalue().encode(), mtime=0))  # mtime 0: same rows, same bytes
        self._plain(cell).unlink(missing_ok=True)  # an older store's file of the cell, replaced by this one
        return path

    def files(self) -> list[Path]:
        """Every cell's file (ENV/MODEL/CELL: a report written inside the store is not read); a cell
        stored both ways (a plain file left by an older version) counts once, as its gzipped file."""
        written = sorted(self.root.glob(f"*/*/*{SUFFIX}"))
        names = {p.with_name(p.name.removesuffix(SUFFIX)) for p in written}
        plain = [p for p in self.root.glob(f"*/*/*{PLAIN_SUFFIX}") if p.with_suffix("") not in names]
        return sorted(written + plain)

    def read(self, **filters: str | int | list) -> pd.DataFrame:
        """All stored rows, optionally filtered by column values (a value or a list of values).

        An unreadable file is skipped with a warning naming it; the rest is still returned.
        """
        frames = []
        for path in self.files():
            try:
                frames.append(read_rows(path))
            except ValueError as err:
                warnings.warn(f"skipping unreadable results file {path} ({err})", stacklevel=2)
        if not frames:
            return pd.DataFrame(columns=ROW_COLUMNS)
        table = pd.concat(frames, ignore_index=True)
        for column, default in (("precision", "fp32"), ("config_hash", "")):  # absent from older stores
            table[column] = table[column].astype(object).where(table[column].notna(), default) \
                if column in table else default
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
