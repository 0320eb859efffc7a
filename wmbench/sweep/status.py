"""Where a sweep is: every cell's state (stored before it began, queued, running with its stage's
progress, done, failed with its error's line), the counts, and the time left estimated from the cells
done so far; drawn as one live table while it runs and once more when it ends or is interrupted."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text

from wmbench.results import Cell
from wmbench.sweep.grid import label

STATES = ("stored", "queued", "running", "done", "failed")
SHOWN_DONE = 5  # the latest done cells the table lists (all are counted)


@dataclass
class CellStatus:
    state: str = "queued"
    stage: str = ""  # of a running cell: train, tune, curve
    done: int = 0
    total: int = 0
    started: float = 0.0  # time.monotonic() when it began running
    seconds: float = 0.0  # of a finished cell
    error: str = ""
    finished: int = 0  # order of finishing, for the latest done


class SweepStatus:
    """The states of a sweep's cells, updated as the backend reports them; `workers` run at once."""

    def __init__(self, pending: list[Cell], stored: list[Cell], workers: int):
        self.cells = {cell: CellStatus("stored") for cell in stored} | {cell: CellStatus() for cell in pending}
        self.workers = max(1, workers)
        self._finished = 0

    def started(self, cell: Cell) -> None:
        self.cells[cell] = CellStatus("running", started=time.monotonic())

    def progress(self, cell: Cell, stage: str, done: int, total: int) -> None:
        """A report from the cell's worker (`wmbench.sweep.grid.Progress`)."""
        status = self.cells[cell]
        if stage in ("done", "failed"):  # its outcome (time, error) follows with its group's
            if status.state not in ("done", "failed"):
                self.finished(cell, "failed" if stage == "failed" else None, time.monotonic() - status.started)
            return
        if status.state == "queued":
            self.started(cell)
            status = self.cells[cell]
        status.stage, status.done, status.total = stage, done, total

    def finished(self, cell: Cell, error: str | None, seconds: float) -> None:
        """The cell's outcome (error: its traceback; None when done)."""
        self._finished += 1
        self.cells[cell] = CellStatus("failed" if error else "done", seconds=seconds, finished=self._finished,
                                      error=error.strip().splitlines()[-1] if error else "")

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for status in self.cells.values():
            counts[status.state] += 1
        return counts

    def seconds_left(self) -> float | None:
        """The work left (queued cells, the rest of running ones) at the mean time of the done cells of
        the same model (of all done cells for a model none of which is done), over the workers; None
        before any cell is done."""
        times: dict[str, list[float]] = {}
        for cell, status in self.cells.items():
            if status.state == "done":
                times.setdefault(cell.model, []).append(status.seconds)
        if not times:
            return None
        overall = sum(map(sum, times.values())) / sum(map(len, times.values()))
        now, left = time.monotonic(), 0.0
        for cell, status in self.cells.items():
            if status.state in ("queued", "running"):
                model_times = times.get(cell.model)
                expected = sum(model_times) / len(model_times) if model_times else overall
                left += max(0.0, expected - (now - status.started if status.state == "running" else 0.0))
        return left / self.workers

    def headline(self) -> str:
        counts = self.counts()
        line = ", ".join(f"{counts[state]} {state}" for state in STATES if counts[state] or state != "stored")
        left = self.seconds_left()
        return f"sweep: {line}" + ("" if left is None or not (counts["queued"] or counts["running"])
                                   else f" | about {_duration(left)} left")

    def render(self) -> Group:
        """The live view: the headline and a table of running, failed and the latest done cells."""
        table = Table(show_edge=False, pad_edge=False, box=None)
        for column in ("state", "cell", "progress", "time"):
            table.add_column(column, no_wrap=column != "cell")
        now = time.monotonic()
        rows = [(c, s) for c, s in self.cells.items() if s.state in ("running", "failed")]
        done = sorted(((c, s) for c, s in self.cells.items() if s.state == "done"), key=lambda cs: cs[1].finished)
        for cell, status in rows + done[-SHOWN_DONE:]:
            if status.state == "running":
                progress = f"{status.stage} {status.done}/{status.total}" if status.total else "starting"
                table.add_row("running", label(cell), progress, _duration(now - status.started))
            elif status.state == "failed":
                table.add_row(Text("FAILED", style="bold red"), label(cell), Text(status.error, style="red"),
                              _duration(status.seconds))
            else:
                table.add_row("done", label(cell), "", _duration(status.seconds))
        return Group(Text(self.headline()), table)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
