"""`wmbench sweep`: a grid of evaluations that resumes, runs in parallel and survives failing cells.

A cell already in the results store is skipped, so an interrupted sweep run again does only the
missing cells. The grid and its bookkeeping (`grid`: cells, checkpoint groups, failure files) lie
below the backends that execute the groups (`local`: processes of this machine; `ray_backend`:
Ray tasks with no shared filesystem); the driver (`run`) picks one.
"""

from wmbench.sweep.grid import SweepOutcome, failure_path, grid
from wmbench.sweep.ray_backend import RayOptions
from wmbench.sweep.run import run_sweep

__all__ = ["RayOptions", "SweepOutcome", "failure_path", "grid", "run_sweep"]
