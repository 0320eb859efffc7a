"""Pure metric functions on arrays: no environment, file or print in here.

Generated and true trajectories are numpy arrays: observations `[B, H+1, obs]`, rewards `[B, H]`,
terminals `[B, H]`. Per-step curves are indexed by step `k = 0 .. H` (observations) or by the
transition `t = 0 .. H-1` (rewards, terminals).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def state_mse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Mean over trajectories and obs dims of `(pred - true)^2` at each step: `[H+1]` (raw units,
    as the paper reports)."""
    return np.mean(np.square(np.asarray(pred, np.float64) - true), axis=(0, 2))


def state_mse_per_dim(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Mean over trajectories of `(pred - true)^2` per step and obs dim: `[H+1, obs]`; its mean over
    dims is `state_mse`."""
    return np.mean(np.square(np.asarray(pred, np.float64) - true), axis=0)


DIM_PREFIX = "mse_dim["  # `mse_dim[NAME]`: the error of one named obs dim at the last step


def dim_metric(name: str) -> str:
    return f"{DIM_PREFIX}{name}]"


def state_mse_normalised(pred: np.ndarray, true: np.ndarray, std: np.ndarray) -> np.ndarray:
    """`state_mse` with every obs dim divided by `std [obs]` (the dataset's), so that no dim
    dominates by its units: `[H+1]`."""
    std = np.asarray(std, np.float64)
    return state_mse(np.asarray(pred, np.float64) / std, np.asarray(true, np.float64) / std)


def alive_mask(terminals: np.ndarray) -> np.ndarray:
    """`[B, H+1]`: whether the simulator reached state k without terminating before it. The terminal
    state itself counts as alive (models are trained to predict it); every state after it does not,
    since no model saw a transition out of a terminal state."""
    terminals = np.asarray(terminals, bool)
    ended_before = np.cumsum(terminals, axis=1) > 0  # [B, H]: terminated at or before transition t
    return np.concatenate([np.ones((len(terminals), 2), bool), ~ended_before[:, :-1]], axis=1)


def alive_fraction(terminals: np.ndarray) -> np.ndarray:
    """Fraction of trajectories alive at each step (`alive_mask`): `[H+1]`."""
    return alive_mask(terminals).mean(axis=0)


def state_mse_alive(pred: np.ndarray, true: np.ndarray, terminals: np.ndarray) -> np.ndarray:
    """`state_mse` over the trajectories alive at each step (`alive_mask` of the simulator's
    `terminals [B, H]`): `[H+1]`, NaN where none is alive."""
    alive = alive_mask(terminals)
    sq = np.mean(np.square(np.asarray(pred, np.float64) - true), axis=2)  # [B, H+1]
    count = alive.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(alive, sq, 0.0).sum(axis=0) / count, np.nan)


def reward_mse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Mean over trajectories of `(pred - true)^2` per transition: `[H]`."""
    return np.mean(np.square(np.asarray(pred, np.float64) - true), axis=0)


def termination_disagreement(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Fraction of trajectories whose predicted termination flag differs from the simulator's: `[H]`."""
    return np.mean(np.asarray(pred, bool) != np.asarray(true, bool), axis=0)


HIST_EDGES = np.linspace(-5.0, 5.0, 41)
"""Bin edges of the stored histogram of standardised actions (values outside fall in the end bins)."""


def action_calibration(z: np.ndarray) -> dict[str, float]:
    """Calibration of standardised actions `z = (a - mean_pi(s)) / std_pi(s)`, `[..., act]`,
    which are N(0, 1) for actions truly drawn from the policy at the generated states.

    `std`: mean over action dims of the std over all other axes (PolyGRAD's tuning target, 1);
    `mean`: mean of all z (target 0); `ks`: Kolmogorov-Smirnov distance of all z to N(0, 1); `w1`:
    their Wasserstein-1 distance to N(0, 1) (`w1_to_normal`); `clip`: the fraction at or beyond
    `CLIP_Z` (N(0, 1): 0.0027), where PolyGRAD clips its actions: spread alone cannot show a shape.
    """
    z = np.asarray(z, np.float64)
    flat = np.sort(z.reshape(-1))
    n = len(flat)
    cdf = stats.norm.cdf(flat)
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    return {"std": float(z.reshape(-1, z.shape[-1]).std(axis=0).mean()), "mean": float(flat.mean()), "ks": float(ks),
            "w1": w1_to_normal(flat), "clip": float(np.mean(np.abs(flat) >= CLIP_Z - 1e-6))}


CLIP_Z = 3.0  # PolyGRAD clips generated actions to the policy's mean +- 3 std
NORMAL_CLIP_FRACTION = float(2 * stats.norm.sf(CLIP_Z))  # N(0, 1)'s mass at |z| >= CLIP_Z: 0.0027


def w1_to_normal(z: np.ndarray) -> float:
    """Wasserstein-1 distance between the empirical distribution of `z` and N(0, 1), exactly:
    `integral over u of |F_n^-1(u) - Phi^-1(u)|`, split where the normal quantile crosses each sample."""
    x = np.sort(np.asarray(z, np.float64).reshape(-1))
    u = np.arange(len(x) + 1) / len(x)
    density = stats.norm.pdf(stats.norm.ppf(u))  # phi(Phi^-1(u)); 0 at u = 0 and 1
    cross = np.clip(stats.norm.cdf(x), u[:-1], u[1:])  # where Phi^-1 passes x within each sample's slice
    at_cross = stats.norm.pdf(stats.norm.ppf(cross))
    # integral of Phi^-1 over [a, b] is phi(Phi^-1(a)) - phi(Phi^-1(b))
    below = x * (cross - u[:-1]) - (density[:-1] - at_cross)
    above = (at_cross - density[1:]) - x * (u[1:] - cross)
    return float(np.sum(below + above))


def action_histogram(z: np.ndarray) -> np.ndarray:
    """Density of all standardised actions over `HIST_EDGES` (clipped into the end bins)."""
    flat = np.clip(np.asarray(z, np.float64).reshape(-1), HIST_EDGES[0], HIST_EDGES[-1])
    density, _ = np.histogram(flat, bins=HIST_EDGES, density=True)
    return density
