"""`wmbench`: train world models on offline MuJoCo data and measure their on-policy trajectories.

The typer app and `main` live in `app`; importing this package registers every command (`run`: the
commands that compute, `show`: those that read and show)."""

from wmbench.cli import run, show  # noqa: F401 - registers the commands
from wmbench.cli.app import app, main, summarise_commands

summarise_commands()

__all__ = ["app", "main"]
