"""The `wmbench` typer app, its shared options and helpers, and `main` (errors as one line, exit 2)."""

from __future__ import annotations

import errno
import os
import re
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Optional

import click
import typer
import typer.exceptions
from rich.console import Console
from rich.table import Table

from wmbench.errors import UsageError, WmbenchError

app = typer.Typer(
    help="Train world models on offline MuJoCo data and measure their on-policy trajectories."
         "\n\nStart with `wmbench evaluate --model mlp-ensemble --env halfcheetah`.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Make, list and inspect Minari datasets (local only; nothing is downloaded).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=False)
SET_HELP = ("Override one config field: SECTION.KEY=VALUE, repeatable (e.g. --set polygrad.train_steps=20000 "
            "--set data.steps=50000); the value is a TOML literal. `wmbench models --config` lists the fields.")
ALLOW_DIRTY_HELP = ("Write into a store inside wmbench's checkout (a committed one, e.g. reports/reference/) although "
                    "the tree has uncommitted changes; the cells are marked +dirty.")
LOG_HELP = ("Log the run as it happens to tensorboard, wandb (offline) or mlflow, under WORKSPACE/runs/ENV/MODEL/CELL "
            "(`tensorboard --logdir runs`); none: no logs. Default: the profile's \\[log] backend (none).")
EVAL_EVERY_HELP = ("Learning curve: also evaluate the model every N training updates (same starts and policy as the "
                   "final evaluation; stored as curve_* rows with the update and training FLOPs). Models trained by "
                   "the shared loop only; others get the final point. Default: the profile's (0, off).")


@app.callback()
def options(
    workspace: Optional[Path] = typer.Option(
        None, help="Folder for datasets/, models/cache/ and results/ (default: $WMBENCH_HOME, else the current "
                   "directory)."),
) -> None:
    """Options shared by every command."""
    if workspace is not None:
        workspace.mkdir(parents=True, exist_ok=True)
        os.environ["WMBENCH_HOME"] = str(workspace.resolve())  # worker processes inherit it


def summarise_commands() -> None:
    """In `wmbench --help`'s list, each command's first sentence as one line (its docstring's own line
    breaks would show there); `wmbench COMMAND --help` keeps the whole text."""
    for info in [*app.registered_commands, *data_app.registered_commands]:
        text = " ".join((info.callback.__doc__ or "").split())
        info.short_help = info.short_help or re.split(r"(?<=[.!?])\s+(?=[A-Z`])", text, maxsplit=1)[0]


class Format(str, Enum):
    markdown = "markdown"
    csv = "csv"


def print_steps(rows, step: str = "step") -> None:
    """A summary table whose first column is a step count (printed as an integer, named `step`)."""
    rich_table = Table()
    for column in rows.columns:
        rich_table.add_column(step if column == "step" else column, justify="right")
    for row in rows.itertuples(index=False):
        rich_table.add_row(str(int(row[0])), *(f"{v:.4g}" for v in row[1:]))
    console.print(rich_table)


def split(value: str, kind: type = str, option: str = "") -> list:
    """A comma-separated option's items in order; an item given twice is refused (as `--grid` refuses it)."""
    try:
        items = [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        items = []
    if not items:
        example = "10,50" if kind is int else "a,b"
        raise UsageError(f"{option} takes a comma-separated list, e.g. {example}; got {value!r}")
    twice = sorted({str(item) for item in items if items.count(item) > 1})
    if twice:
        raise UsageError(f"{option} {value}: {', '.join(twice)} given twice")
    return items


# click's usage errors: typer before 0.2x raises click's own, newer typer a vendored click's (a TyperException)
PARSER_ERRORS = tuple({click.ClickException, getattr(typer.exceptions, "TyperException", click.ClickException)})
# a file where a folder should be, a folder that cannot be written, a full disk: the user's to fix
WORKSPACE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENOSPC}


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"wmbench: warning: {message}\n"


def main() -> None:
    warnings.formatwarning = _warning_line  # one readable line, not a source location
    try:
        code = app(standalone_mode=False)  # the parser's usage errors come here too, to be one line
    except PARSER_ERRORS as err:  # an unknown option, a value of the wrong type, a missing argument
        if type(err).__name__ == "NoArgsIsHelpError":  # bare `wmbench` or `wmbench data`: the help
            print(err.format_message())
            sys.exit(0)
        context = getattr(err, "ctx", None)
        message = " ".join(err.format_message().split())
        print(f"wmbench: error: {message} (see `{context.command_path if context else 'wmbench'} --help`)",
              file=sys.stderr)
        sys.exit(err.exit_code)
    except WmbenchError as err:
        print(f"wmbench: error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        if err.errno not in WORKSPACE_ERRORS:
            raise
        print(f"wmbench: error: cannot use {err.filename or 'a workspace path'} ({err.strerror}): check the "
              "workspace (--workspace, WMBENCH_HOME, WMBENCH_CACHE, WMBENCH_RESULTS, MINARI_DATASETS_PATH): "
              "folders that can be written, not files", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort, click.Abort):
        print("wmbench: interrupted; finished results and checkpoints are kept", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)  # `typer.Exit(1)` returns its code here


if __name__ == "__main__":
    main()
