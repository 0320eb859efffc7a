"""Pure metric functions on arrays: no environment, file or print in here.

Generated and true trajectories are numpy arrays: observations `[B, H+1, obs]`, rewards `[B, H]`,
terminals `[B, H]`. Per-step curves are indexed by step `k = 0 .. H` (observations) or by the
transition `t = 0 .. H-1` (rewards, terminals).
"""

from __future__ import annotations

import numpy as np


def state_mse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Mean over trajectories and obs dims of `(pred - true)^2` at each step: `[H+1]` (raw units,
    as the paper reports)."""
    return np.mean(np.square(np.asarray(pred, np.float64) - true), axis=(0, 2))


def state_mse_normalised(pred: np.ndarray, true: np.ndarray, std: np.ndarray) -> np.ndarray:
    """`state_mse` with every obs dim divided by `std [obs]` (the dataset's), so that no dim
    dominates by its units: `[H+1]`."""
    std = np.asarray(std, np.float64)
    return state_mse(np.asarray(pred, np.float64) / std, np.asarray(true, np.float64) / std)


def reward_mse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Mean over trajectories of `(pred - true)^2` per transition: `[H]`."""
    return np.mean(np.square(np.asarray(pred, np.float64) - true), axis=0)


def termination_disagreement(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Fraction of trajectories whose predicted termination flag differs from the simulator's: `[H]`."""
    return np.mean(np.asarray(pred, bool) != np.asarray(true, bool), axis=0)
