"""`wmbench render`: the observation -> simulator-state mapping, and videos of a smoke cell."""

import os
import subprocess
import sys
import textwrap

import mujoco
import numpy as np
import pytest
from test_cli import run_main

from wmbench.envs import ENVS, get_env, mujoco_model
from wmbench.oracle import Oracle
from wmbench.render import PANEL, model_states


@pytest.mark.parametrize("name", sorted(ENVS))
def test_a_generated_state_in_the_simulator_reproduces_the_generated_observation(name):
    env = get_env(name)
    rng = np.random.default_rng(0)
    model = mujoco_model(name)
    qpos = model.qpos0 + rng.normal(0, 0.05, (8, env.nq))
    replay = Oracle(env).replay(qpos, rng.normal(0, 0.5, (8, env.nv)), rng.uniform(-1, 1, (8, 5, env.act_dim)))
    x0 = replay.qpos[:, 0, 0]
    gen_qpos, gen_qvel = model_states(env, replay.observations, x0)
    data = mujoco.MjData(model)
    for b in range(8):
        for t in range(6):
            data.qpos[:], data.qvel[:] = gen_qpos[b, t], gen_qvel[b, t]
            mujoco.mj_forward(model, data)  # the simulator keeps the state it is given
            np.testing.assert_allclose(env.observe(data.qpos.copy(), data.qvel.copy()), replay.observations[b, t],
                                       rtol=0, atol=1e-12)
    # x is not observed: it starts where the simulator's does and follows the generated forward velocity
    np.testing.assert_array_equal(gen_qpos[:, 0, 0], x0)
    np.testing.assert_allclose(np.diff(gen_qpos[..., 0], axis=1), env.dt * gen_qvel[:, 1:, 0])


RENDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    from wmbench.evaluate import EvalRequest
    from wmbench.render import render
    request = EvalRequest(model="mlp-ensemble", env="hopper", horizon=6, seed=0, profile="smoke")
    mp4, gif, video = render(request, 2, Path(sys.argv[1]), progress=False, say=lambda m: None)
    np.save(Path(sys.argv[1]) / "frames.npy", video.frames)
""")


def differing_pixels(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of pixels whose colour differs by more than antialiasing does."""
    return float((np.abs(a.astype(int) - b) > 16).any(axis=-1).mean())


def test_render_writes_videos_whose_first_frame_is_the_same_on_both_sides(hopper_dataset, tmp_path, monkeypatch,
                                                                          capsys):
    import imageio.v3 as iio

    code, _, err = run_main(monkeypatch, capsys, "evaluate", "--model", "mlp-ensemble", "--env", "hopper",
                            "--profile", "smoke", "--horizon", "6")
    assert code == 0, err
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}  # no display here
    done = subprocess.run([sys.executable, "-c", RENDER, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    frames = np.load(tmp_path / "frames.npy")
    height, width = PANEL
    assert frames.shape == (7, 2 * height, 2 * width, 3)  # steps 0..6; two trajectories of two views
    below_caption = frames[0, :, :, :][np.r_[16:height, height + 16:2 * height]]
    # the model's start state is the simulator's in float32: a few edge pixels may round differently
    assert differing_pixels(below_caption[:, :width], below_caption[:, width:]) < 0.002
    assert differing_pixels(frames[-1, 16:height, :width], frames[-1, 16:height, width:]) > 0.01, \
        "the smoke model's last state should not look like the simulator's"
    mp4 = iio.imread(tmp_path / "hopper-mlp-ensemble-h6-s0.mp4")
    gif = iio.imread(tmp_path / "hopper-mlp-ensemble-h6-s0.gif")
    assert mp4.shape == frames.shape and gif.shape[:3] == (7, height, width)


def test_render_without_an_evaluated_cell_says_what_to_run(hopper_dataset, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "render", "--model", "polygrad", "--env", "hopper",
                            "--profile", "smoke")
    assert code == 2 and "run `wmbench evaluate` with the same" in err
    assert len(err.strip().splitlines()) == 1, err
