"""How the report's paired comparisons move between two recordings of the same datasets.

A seed's interval covers a model's training and the evaluation's draws, not the data: one SAC run's
buffer is one draw of the dataset, with its own BC policy and held-out start states. Given a second
store of the same cells (model, env, dataset id, policy, profile, horizon and config) made on another
recording, each of the report's paired ratios A/B is measured on both. Its shift (there / here) has a
Welch t interval on the two recordings' per-seed log ratios (independent samples: the recordings share
no start state), and Holm's adjustment over the table says which shifts exceed what the seeds allow.

Over a panel's comparisons, the spread a recording adds to a log ratio is estimated by moments
(`stats.between_spread`): tau, the same for every comparison of the panel, a rough average from one
pair of recordings. An interval on one recording that also counted the recording would be
sqrt(1 + tau^2 / se^2) times as wide, se being the seeds' standard error of a log ratio there; each
ratio here gets that interval (`counted_low`, `counted_high`: normal, tau taken as known, so if anything
too narrow), which says whether its verdict is about the kind of data or only about this recording.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from wmbench.errors import UsageError
from wmbench.report.comparisons import p_text, paired, report_pairs
from wmbench.report.select import POOLED, Selection
from wmbench.report.stats import LEVEL, between_spread, holm, interval_text, welch_interval

CELL = ["model", "env", "dataset", "policy", "profile", "horizon", "config_hash"]  # two stores' cells alike
Z = float(stats.norm.ppf((1 + LEVEL) / 2))
SHIFT_COLUMNS = ["metric", "panel", "horizon", "a", "b", "n_here", "ratio_here", "n_there", "ratio_there", "shift",
                 "shift_low", "shift_high", "p_value", "p_holm", "var_here", "var_there"]


def common_cells(here: pd.DataFrame, there: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of each store's cells that the other store also has (the same `CELL` keys, any seeds)."""
    keys = [c for c in CELL if c in here and c in there]
    shared = here[keys].drop_duplicates().merge(there[keys].drop_duplicates())
    if shared.empty:
        raise UsageError("the two stores share no cell (the same model, env, dataset, policy, profile, horizon and "
                         "config): --other-recording takes a store of the same sweep on another recording of the data")
    return here.merge(shared), there.merge(shared)


def compare_recordings(here: pd.DataFrame, there: pd.DataFrame, profile: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`(shifts, spread)` of the report's comparisons between the store rows `here` and `there` (one profile):
    `recording_shifts` with each ratio here's interval counting the recording (`counted_low`, `counted_high`),
    and `recording_spread`."""
    mine, theirs = common_cells(here[here["profile"] == profile], there)
    shifts = recording_shifts(Selection.from_store(mine, profile), Selection.from_store(theirs, profile))
    if shifts.empty:
        raise UsageError("the two stores share no cells of two models the report compares: --other-recording "
                         "takes a store of the same sweep on another recording of the data")
    spread = recording_spread(shifts)
    tau = spread.set_index("panel")["tau"]  # each ratio here, with its panel's recording spread counted
    widen = np.exp(Z * np.sqrt(shifts["var_here"] + shifts["panel"].map(tau) ** 2))
    return shifts.assign(counted_low=shifts["ratio_here"] / widen, counted_high=shifts["ratio_here"] * widen), spread


def recording_shifts(here: Selection, there: Selection, metric: str = "mse") -> pd.DataFrame:
    """`SHIFT_COLUMNS`: each of the report's ratios A/B (per panel, at each horizon's last step) on both
    recordings, the shift there / here with its Welch interval and `p_holm` over the table. `var_*` are the
    seeds' variances of each recording's mean log ratio."""
    rows = []
    for a, b in report_pairs([m for m in here.models if m in there.models]):
        mine, theirs = paired(here, a, b, metric), paired(there, a, b, metric)
        for (panel, horizon), x in mine.groupby(["panel", "horizon"]):
            y = theirs[(theirs["panel"] == panel) & (theirs["horizon"] == horizon)]
            if y.empty:
                continue
            log_x, log_y = np.log(x["a"] / x["b"]).to_numpy(), np.log(y["a"] / y["b"]).to_numpy()
            shift, low, high, p = welch_interval(log_x, log_y)
            rows.append([metric, panel, int(horizon), a, b, len(log_x), np.exp(log_x.mean()), len(log_y),
                         np.exp(log_y.mean()), np.exp(shift), np.exp(low), np.exp(high), p, np.nan,
                         _mean_variance(log_x), _mean_variance(log_y)])
    table = pd.DataFrame(rows, columns=SHIFT_COLUMNS)
    return table.assign(p_holm=holm(table["p_value"].to_numpy(np.float64)))


def _mean_variance(values: np.ndarray) -> float:
    return float(values.var(ddof=1) / len(values)) if len(values) > 1 else float("nan")


def recording_spread(shifts: pd.DataFrame) -> pd.DataFrame:
    """`[panel, comparisons, tau, se, widening]` per panel and over all of them (`POOLED`): the spread tau
    a recording adds to a log ratio, the seeds' root-mean-square standard error of a log ratio here, and how
    many times wider an interval here would be if it counted the recording too. Comparisons with one seed
    on either side have no variance and are left out."""
    known = shifts.dropna(subset=["var_here", "var_there"])
    groups = list(known.groupby("panel")) + [(POOLED, known)] * (known["panel"].nunique() > 1)
    rows = []
    for panel, part in groups:
        tau = between_spread(np.log(part["shift"]), part["var_here"] + part["var_there"])
        se = float(np.sqrt(part["var_here"].mean()))
        rows.append((panel, len(part), tau, se, float(np.sqrt(1 + tau ** 2 / se ** 2)) if se > 0 else np.nan))
    return pd.DataFrame(rows, columns=["panel", "comparisons", "tau", "se", "widening"])


def shifts_wide(shifts: pd.DataFrame) -> pd.DataFrame:
    """Readable: `A vs B`, panel, h, each recording's ratio and seeds, the shift with its interval, `Holm p`."""
    return pd.DataFrame({
        "A vs B": shifts["a"] + " vs " + shifts["b"],
        "panel": shifts["panel"],
        "h": shifts["horizon"],
        "ratio here": [f"{r:.2f} (n={n})" for r, n in zip(shifts["ratio_here"], shifts["n_here"])],
        "ratio there": [f"{r:.2f} (n={n})" for r, n in zip(shifts["ratio_there"], shifts["n_there"])],
        "shift there / here": [interval_text(*r, ".2f") for r in shifts[["shift", "shift_low", "shift_high"]].values],
        "Holm p": [p_text(p) for p in shifts["p_holm"]],
        "ratio here, recording counted": [interval_text(*r, ".2f") for r in
                                          shifts[["ratio_here", "counted_low", "counted_high"]].values],
    })


def spread_wide(spread: pd.DataFrame) -> pd.DataFrame:
    """Readable: per panel, tau and the seeds' standard error of a log ratio, and the interval widening."""
    return pd.DataFrame({
        "panel": spread["panel"],
        "comparisons": spread["comparisons"],
        "recording's SD of a log ratio (tau)": spread["tau"].map("{:.3f}".format),
        "seeds' SE of a log ratio here": spread["se"].map("{:.3f}".format),
        "interval widening": spread["widening"].map("{:.1f}x".format),
    })
