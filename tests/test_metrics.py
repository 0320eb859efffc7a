import numpy as np
import pytest

from wmbench import metrics


def test_state_mse_by_hand():
    true = np.zeros((2, 3, 2))
    pred = np.zeros((2, 3, 2))
    pred[0, 1] = [1.0, 3.0]  # step 1, trajectory 0: squared errors 1 and 9
    pred[1, 2] = [2.0, 0.0]  # step 2, trajectory 1: squared errors 4 and 0
    np.testing.assert_allclose(metrics.state_mse(pred, true), [0.0, 10 / 4, 4 / 4])


def test_normalised_mse_divides_each_dim_by_its_std():
    true = np.zeros((1, 2, 2))
    pred = np.array([[[0.0, 0.0], [10.0, 1.0]]])
    np.testing.assert_allclose(metrics.state_mse_normalised(pred, true, std=np.array([10.0, 1.0])), [0.0, 1.0])


def test_reward_mse_and_termination_disagreement_by_hand():
    np.testing.assert_allclose(metrics.reward_mse(np.array([[1.0, 2.0], [3.0, 2.0]]), np.array([[0.0, 2.0], [0.0, 0.0]])),
                               [(1 + 9) / 2, (0 + 4) / 2])
    pred = np.array([[True, False], [False, False]])
    true = np.array([[True, True], [True, False]])
    np.testing.assert_allclose(metrics.termination_disagreement(pred, true), [0.5, 0.5])


def test_metrics_are_exact_zero_on_identical_inputs():
    x = np.random.default_rng(0).normal(size=(4, 6, 3))
    assert metrics.state_mse(x, x) == pytest.approx(np.zeros(6))
