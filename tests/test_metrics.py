import numpy as np
import pytest
from scipy import stats

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
    true, generated = np.array([[1.0, 2.0], [3.0, 2.0]]), np.array([[0.0, 2.0], [0.0, 0.0]])
    np.testing.assert_allclose(metrics.reward_mse(true, generated), [(1 + 9) / 2, (0 + 4) / 2])
    pred = np.array([[True, False], [False, False]])
    true = np.array([[True, True], [True, False]])
    np.testing.assert_allclose(metrics.termination_disagreement(pred, true), [0.5, 0.5])


def test_metrics_are_exact_zero_on_identical_inputs():
    x = np.random.default_rng(0).normal(size=(4, 6, 3))
    assert metrics.state_mse(x, x) == pytest.approx(np.zeros(6))


def test_action_calibration_of_exact_draws():
    z = np.random.default_rng(0).normal(size=(4000, 5, 3))
    calibration = metrics.action_calibration(z)
    assert calibration["std"] == pytest.approx(1.0, abs=0.02)
    assert calibration["mean"] == pytest.approx(0.0, abs=0.02)
    assert calibration["ks"] < 0.01


def test_action_calibration_detects_scale_and_shift():
    rng = np.random.default_rng(1)
    assert metrics.action_calibration(2.0 * rng.normal(size=(5000, 2)))["std"] == pytest.approx(2.0, rel=0.03)
    shifted = metrics.action_calibration(rng.normal(0.5, 1.0, size=(20000, 1)))
    # KS distance between N(0.5, 1) and N(0, 1): 2 * Phi(0.25) - 1.
    assert shifted["ks"] == pytest.approx(2 * 0.5987063256829237 - 1, abs=0.01)
    assert shifted["mean"] == pytest.approx(0.5, abs=0.02)


def test_ks_by_hand_on_two_points():
    # Samples {0, 0}: the empirical CDF jumps from 0 to 1 at 0 where Phi = 0.5.
    assert metrics.action_calibration(np.zeros((2, 1)))["ks"] == pytest.approx(0.5)


def test_action_histogram_is_a_density_over_fixed_bins():
    z = np.random.default_rng(2).normal(size=(10000, 2))
    density = metrics.action_histogram(z)
    widths = np.diff(metrics.HIST_EDGES)
    assert len(density) == len(metrics.HIST_EDGES) - 1
    assert np.sum(density * widths) == pytest.approx(1.0)
    centre = np.argmin(np.abs((metrics.HIST_EDGES[:-1] + metrics.HIST_EDGES[1:]) / 2))
    assert density[centre] == pytest.approx(1 / np.sqrt(2 * np.pi), abs=0.03)


def test_alive_mask_keeps_the_terminal_state_and_drops_what_follows():
    # trajectory 0 terminates on transition 1 (s_2 is terminal), trajectory 1 never, 2 on transition 0
    terminals = np.array([[False, True, False], [False, False, False], [True, False, False]])
    expected = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], bool)
    np.testing.assert_array_equal(metrics.alive_mask(terminals), expected)
    np.testing.assert_allclose(metrics.alive_fraction(terminals), [1, 1, 2 / 3, 1 / 3])


def test_mse_alive_averages_only_alive_trajectories_by_hand():
    true = np.zeros((3, 4, 1))
    pred = np.array([[0.0, 1, 2, 3], [0, 1, 1, 1], [0, 5, 7, 9]])[..., None]
    terminals = np.array([[False, True, False], [False, False, False], [True, False, False]])
    alive = metrics.state_mse_alive(pred, true, terminals)
    np.testing.assert_allclose(alive, [0.0, (1 + 1 + 25) / 3, (4 + 1) / 2, 1.0])
    # the unmasked error counts the runaway trajectory after its termination
    assert metrics.state_mse(pred, true)[3] == pytest.approx((9 + 1 + 81) / 3)


def test_mse_alive_is_nan_where_every_trajectory_has_terminated():
    terminals = np.array([[True, False]])
    alive = metrics.state_mse_alive(np.ones((1, 3, 2)), np.zeros((1, 3, 2)), terminals)
    assert alive[1] == 1.0 and np.isnan(alive[2])


def test_w1_to_the_normal_against_known_answers():
    assert metrics.w1_to_normal(np.zeros(10)) == pytest.approx(np.sqrt(2 / np.pi))  # E|Z| for a point mass at 0
    assert metrics.w1_to_normal(np.full(7, 2.0)) == pytest.approx(  # E|Z - 2| = 2(2 Phi(2) - 1) + 2 phi(2)
        2 * (2 * stats.norm.cdf(2.0) - 1) + 2 * stats.norm.pdf(2.0))
    assert metrics.w1_to_normal(np.random.default_rng(0).normal(size=200_000)) < 0.01
    shifted = np.random.default_rng(1).normal(0.5, 1.0, size=200_000)  # a shift moves every unit of mass by 0.5
    assert metrics.w1_to_normal(shifted) == pytest.approx(0.5, abs=0.01)


def test_the_fraction_at_the_clip_counts_actions_at_3_std_either_side():
    z = np.clip(np.array([-5.0, -3.0, -2.9, 0.0, 2.99, 3.0, 4.0, 1.0]), -3.0, 3.0)
    assert metrics.action_calibration(z[:, None])["clip"] == pytest.approx(4 / 8)
    assert metrics.action_calibration(np.random.default_rng(0).normal(size=(400_000, 1)))["clip"] == pytest.approx(
        2 * stats.norm.sf(3.0), abs=4e-4)
