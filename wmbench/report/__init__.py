"""`wmbench report`: the paper's comparison figures and tables, drawn from the results store.

Seeds are the unit of replication: every number is a mean over seeds with a 95% Student-t
interval (`stats`), and says over how many seeds. Each figure draws whatever models the store holds, and a
model has the same colour in every figure. A panel is one env (with the dataset, policy or precision
added to its name when the store holds several for that env).

Which rows and their names: `select`; every statistic: `stats`; tables: `tables`; figures, one
module per family: `figures`; RL in imagination: `rl`; other recordings of the data: `recordings`; the
README: `readme`. `write_report` below lists what a report draws: a new figure is one function in
`figures` and one line here.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display; before anything imports pyplot

from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from wmbench.paths import atomic_write_bytes  # noqa: E402
from wmbench.report.comparisons import comparison_wide, report_comparisons  # noqa: E402
from wmbench.report.figures.calibration import plot_calibration, plot_delta  # noqa: E402
from wmbench.report.figures.cost import plot_accuracy_vs_compute, plot_generation_time  # noqa: E402
from wmbench.report.figures.curves import plot_learning_curves  # noqa: E402
from wmbench.report.figures.errors import (  # noqa: E402
    plot_aggregate,
    plot_dim_error,
    plot_mse_vs_step,
)
from wmbench.report.figures.grid import (  # noqa: E402
    plot_grid_aggregate,
    plot_grid_calibration,
    plot_grid_errors,
    plot_objective,
)
from wmbench.report.grid import (  # noqa: E402
    GRID_COLUMN,
    calibration_grid_wide,
    compare_grid_recordings,
    grid_aggregate,
    grid_comparisons,
    grid_errors,
    grid_selection,
    grid_wide,
    objective_table,
    recording_wide,
    robustness,
    robustness_wide,
    trains_alike,
    value_text,
)
from wmbench.report.readme import grid_readme_text, one_video_per_env, provenance_table, readme_text  # noqa: E402
from wmbench.report.recordings import across_wide, compare_recordings, shifts_wide, spread_wide  # noqa: E402
from wmbench.report.rl import rl_section, write_rl_report  # noqa: E402
from wmbench.report.select import Selection, model_colours  # noqa: E402
from wmbench.report.stats import interval_text  # noqa: E402
from wmbench.report.tables import (  # noqa: E402
    TABLE_STEPS,
    aggregate_scores,
    aggregate_wide,
    bench_table,
    calibration_table,
    calibration_wide,
    curve_table,
    dim_error,
    learning_curves,
    mark_few_alive,
    mse_table,
    present_columns,
    wide_table,
    write_csv,
    write_table,
)
from wmbench.results import BENCH_DATASET, RL_DATASET, ResultsStore, markdown_table  # noqa: E402

__all__ = ["write_grid_report", "write_report"]


RECORDING_TABLES = {"shifts": "recording_shifts", "spread": "recording_spread", "across": "recording_comparisons"}


def _write_recording_tables(tables: dict[str, pd.DataFrame], wide: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    """The three tables on other recordings (`recordings`), tidy (CSV) and readable (Markdown)."""
    return [path for name, stem in RECORDING_TABLES.items()
            for path in write_table(tables[name], wide[name], out / stem)]


def write_report(results: ResultsStore, out: Path, profile: str | None = None,
                 other_recordings: Sequence[ResultsStore] = ()) -> list[Path]:
    """Every figure and table, and `README.md` that shows them; returns the files written. With
    `other_recordings` (stores of the same cells, each on another recording of the datasets), also how each
    comparison moves between the recordings (`recordings`)."""
    table = results.read()
    is_bench, is_rl = table["dataset"] == BENCH_DATASET, table["dataset"] == RL_DATASET
    out = Path(out)
    sns.set_theme(style="whitegrid", context="notebook")
    written, sections = [], {}
    if is_rl.any():
        rl_sel = Selection.from_store(table[is_rl], profile)
        files, sections["rl"] = write_rl_report(rl_sel, out, model_colours(rl_sel.models))
        written += files
        if (~is_bench & ~is_rl).sum() == 0:  # RL runs only
            text = "\n".join(["# wmbench report", "", f"Profile `{rl_sel.profile}`.", "", *rl_section(sections["rl"]),
                              "## Provenance", "", markdown_table(provenance_table(rl_sel)), ""])
            atomic_write_bytes(out / "README.md", text.encode())
            return written + [out / "README.md"]
    sel = Selection.from_store(table[~is_bench & ~is_rl], profile)
    colours = model_colours(sel.models)
    scores = aggregate_scores(sel)
    if not scores.empty:
        written.append(plot_aggregate(scores, colours, out / "aggregate.png"))
        sections["aggregate"] = aggregate_wide(scores, sel.models)
        written += write_table(scores, sections["aggregate"], out / "aggregate_table")
    written.append(plot_mse_vs_step(sel, colours, out / "mse_vs_step.png"))
    comparisons = report_comparisons(sel)
    if not comparisons.empty:
        sections["comparisons"] = comparisons
        written += write_table(comparisons, comparison_wide(comparisons), out / "comparisons")
    if other_recordings:
        others = {str(store.root): store.read() for store in other_recordings}
        tables = dict(zip(RECORDING_TABLES, compare_recordings(table[~is_bench & ~is_rl], others, sel.profile)))
        wide = {"shifts": shifts_wide(tables["shifts"]), "spread": spread_wide(tables["spread"]),
                "across": across_wide(tables["across"])}
        sections["recording"] = (list(others), wide)
        written += _write_recording_tables(tables, wide, out)

    for metric, stem in (("mse", "mse_table"), ("mse_alive", "mse_alive_table")):
        tidy = mse_table(sel, metric)
        if tidy.empty and metric != "mse":  # stores older than the alive error have none
            continue
        columns = present_columns(tidy, sel.panels, TABLE_STEPS)
        sections[metric] = mark_few_alive(wide_table(tidy, sel.models, columns), sel, columns)
        written += write_table(tidy, sections[metric], out / stem)

    curves = learning_curves(sel)
    if not curves.empty:
        written.append(plot_learning_curves(curves, colours, out / "learning_curves.png"))
        sections["curves"] = curve_table(curves)
        written += write_table(curves, sections["curves"], out / "learning_curves")

    dims = dim_error(sel)
    if not dims.empty:
        sections["dims"] = plot_dim_error(dims, colours, out)
        written += sections["dims"]
        written.append(write_csv(dims, out / "dim_error.csv"))

    gen_path, gen = plot_generation_time(sel, colours, out / "generation_time.png")
    gen_wide = wide_table(gen, sel.models, present_columns(gen, sel.panels, sorted(gen["step"].unique())))
    written += [gen_path, *write_table(gen, gen_wide, out / "generation_time")]
    written.append(plot_accuracy_vs_compute(sel, colours, out / "accuracy_vs_compute.png"))

    written.append(plot_calibration(sel, colours, out / "calibration.png"))
    calib = calibration_table(sel)
    calib_wide = calibration_wide(calib, sel.models)
    written += write_table(calib, calib_wide, out / "calibration_table")

    delta_path = plot_delta(sel, colours, out / "delta.png")
    written += [delta_path] if delta_path else []
    bench = bench_table(table[is_bench & (table["profile"] == sel.profile)])
    if not bench.empty:
        written += write_table(bench, bench.astype(object).where(bench.notna(), "–"), out / "bench_table")
    sections["videos"] = one_video_per_env(out / "videos", sel.rows["env"].unique())
    text = readme_text(sel, sections, gen_wide, calib_wide, bench, has_delta=delta_path is not None)
    atomic_write_bytes(out / "README.md", text.encode())
    return written + [out / "README.md"]


def write_grid_report(results: ResultsStore, out: Path, key: str, profile: str | None = None,
                      other_recordings: Sequence[ResultsStore] = ()) -> list[Path]:
    """The report against a grid key (`report.grid`): figures, tables and a README; returns the files written.
    With `other_recordings`, also how each growth of the robustness table moves between recordings
    (`recordings`)."""
    table = results.read()
    table = table[~table["dataset"].isin([BENCH_DATASET, RL_DATASET])]
    sel = grid_selection(table, key, profile)
    colours = model_colours(sel.models)
    out = Path(out)
    sns.set_theme(style="whitegrid", context="notebook")
    errors = grid_errors(sel)
    written = [plot_grid_errors(errors, colours, key, out / "grid_errors.png")]
    measures = errors["measure"].unique()
    sections = {"errors": {measure: grid_wide(errors, key, measure, sel.models) for measure in measures}}
    written.append(write_csv(errors, out / "grid_errors.csv"))
    scores = grid_aggregate(sel, key)
    if not scores.empty:
        written.append(plot_grid_aggregate(scores, colours, key, out / "grid_aggregate.png"))
        written.append(write_csv(scores, out / "grid_aggregate.csv"))
        sections["aggregate"] = scores
    comparisons = grid_comparisons(sel)
    if not comparisons.empty:
        written.append(write_csv(comparisons, out / "grid_comparisons.csv"))
        sections["comparisons"] = comparisons
    robust = robustness(sel)
    if not robust.empty:
        written.append(write_csv(robust, out / "grid_robustness.csv"))
        sections["robustness"] = robustness_wide(robust, key)
    if other_recordings:
        others = {str(store.root): store.read() for store in other_recordings}
        tables = dict(zip(RECORDING_TABLES, compare_grid_recordings(table, others, key, sel.profile)))
        wide = recording_wide(**tables, key=key)
        sections["recording"] = (list(others), wide)
        written += _write_recording_tables(tables, wide, out)
    calibration = calibration_table(sel, by=(GRID_COLUMN,))
    if not calibration.empty:
        written.append(plot_grid_calibration(calibration, colours, key, out / "grid_calibration.png"))
        written.append(write_csv(calibration, out / "grid_calibration.csv"))
        sections["calibration"] = calibration_grid_wide(calibration, key, sel.models)
    objective = objective_table(sel)
    if not objective.empty and not trains_alike(key):  # else the same trained models at every value
        written.append(plot_objective(objective, colours, key, out / "grid_objective.png"))
        written.append(write_csv(objective, out / "grid_objective.csv"))
        sections["objective"] = objective_wide(objective, key)
    atomic_write_bytes(out / "README.md", grid_readme_text(sel, key, sections).encode())
    return written + [out / "README.md"]


def objective_wide(objective, key: str):
    """Rows of (env, model, value): the objective on training and held-out data and their gap."""
    wide = objective.assign(text=[interval_text(*r) for r in objective[["mean", "ci_low", "ci_high"]].to_numpy()])
    wide = wide.pivot_table(index=["panel", "model", GRID_COLUMN], columns="split", values="text", aggfunc="first")
    wide = wide.reset_index()
    wide[GRID_COLUMN] = wide[GRID_COLUMN].map(lambda v: value_text(v, key))
    return wide.rename(columns={GRID_COLUMN: key})[["panel", "model", key, "train", "held-out", "gap"]]
