"""Videos of a cell's trajectories: the simulator's replay and the model's generated states side by side.

Each row of the video is one trajectory of the cell (its first N, with the cell's start states,
policy and generator seeds): left the simulator replaying the generated actions, right the
model's generated observations put into the simulator's state and rendered. The observation
omits the x position, so the model's x is integrated from its generated forward velocity, from
the true start x; every other dim maps to the state exactly (`EnvSpec.state_from_obs`). A caption
gives the model, the step and that trajectory's state error at that step.

Rendering uses MuJoCo's offscreen renderer: on a machine without a display set `MUJOCO_GL=egl`
(or `osmesa`), with the EGL or OSMesa library installed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from wmbench.envs import EnvSpec, mujoco_model
from wmbench.errors import UsageError

PANEL = (240, 320)  # height, width of one view
FPS = 8  # one frame per env step, slowed down so that a 10-step rollout can be watched
CAMERA = {"halfcheetah": 4.0, "hopper": 3.0, "walker2d": 3.5}  # tracking distance, as gymnasium's defaults


class RenderError(UsageError):
    """No offscreen OpenGL backend works here."""


def model_states(env: EnvSpec, observations: np.ndarray, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(qpos, qvel)` of generated observations `[B, H+1, obs]`: exact for every observed dim; x
    starts at `x0 [B]` and is integrated with the generated forward velocity (x' = x + dt * vx')."""
    qpos, qvel = env.state_from_obs(np.asarray(observations, np.float64))
    steps = np.cumsum(env.dt * qvel[:, 1:, 0], axis=1)
    qpos[:, :, 0] = x0[:, None]
    qpos[:, 1:, 0] += steps
    return qpos, qvel


class Scene:
    """Renders simulator states of one env from a camera that tracks the torso."""

    def __init__(self, env: EnvSpec, height: int = PANEL[0], width: int = PANEL[1]):
        import mujoco

        self.mujoco, self.model = mujoco, mujoco_model(env.name)
        try:
            self.renderer = mujoco.Renderer(self.model, height, width)
        except Exception as err:  # noqa: BLE001 - every backend failure reads the same to a user
            gl = os.environ.get("MUJOCO_GL")
            backend = f"MUJOCO_GL={gl}" if gl is not None else "MUJOCO_GL unset (a display)"
            raise RenderError(
                f"MuJoCo cannot render offscreen here with {backend} ({type(err).__name__}); on a "
                "machine without a display install EGL (Debian: apt install libegl1 libgl1-mesa-dri) and set "
                "MUJOCO_GL=egl, or install OSMesa (libosmesa6) and set MUJOCO_GL=osmesa") from None
        self.data = mujoco.MjData(self.model)
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        self.camera.trackbodyid = 1  # the torso
        self.camera.distance, self.camera.elevation, self.camera.azimuth = CAMERA.get(env.name, 3.0), -20.0, 90.0

    def __call__(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """One RGB frame `[height, width, 3]` of the state `(qpos, qvel)`."""
        self.data.qpos[:], self.data.qvel[:] = qpos, qvel
        self.mujoco.mj_forward(self.model, self.data)
        self.renderer.update_scene(self.data, camera=self.camera)
        for flag in (self.mujoco.mjtRndFlag.mjRND_SHADOW, self.mujoco.mjtRndFlag.mjRND_REFLECTION):
            self.renderer.scene.flags[flag] = False  # 4x faster in software (Mesa) rendering, same poses
        return self.renderer.render().copy()

    def close(self) -> None:
        self.renderer.close()


@dataclass
class Video:
    frames: np.ndarray  # [H+1, height, width, 3] uint8
    errors: np.ndarray  # [N, H+1] state error of each trajectory at each step


def compose(env: EnvSpec, model_name: str, sim: tuple[np.ndarray, np.ndarray], gen: tuple[np.ndarray, np.ndarray],
            sim_obs: np.ndarray, gen_obs: np.ndarray, terminals: np.ndarray) -> Video:
    """Frames of N trajectories (rows), the simulator left and the model right, with captions."""
    from PIL import Image, ImageDraw

    errors = np.mean(np.square(gen_obs - sim_obs), axis=-1)
    ended = np.concatenate([np.zeros((len(terminals), 1), bool), np.cumsum(terminals, axis=1) > 0], axis=1)
    scene = Scene(env)
    try:
        frames = []
        for step in range(gen_obs.shape[1]):
            rows = []
            for i in range(len(gen_obs)):
                left = Image.fromarray(scene(sim[0][i, step], sim[1][i, step]))
                right = Image.fromarray(scene(gen[0][i, step], gen[1][i, step]))
                draw_left, draw_right = ImageDraw.Draw(left), ImageDraw.Draw(right)
                fell = " (terminated)" if ended[i, step] else ""
                draw_left.text((6, 4), f"simulator  step {step}{fell}", fill=(255, 255, 255))
                draw_right.text((6, 4), f"{model_name}  step {step}  error {errors[i, step]:.3g}",
                                fill=(255, 255, 255))
                rows.append(np.concatenate([np.asarray(left), np.asarray(right)], axis=1))
            frames.append(np.concatenate(rows, axis=0))
    finally:
        scene.close()
    return Video(np.stack(frames), errors)


def write_video(video: Video, mp4: Path, gif: Path, fps: int = FPS) -> None:
    """The MP4 (H.264 through imageio's ffmpeg) and a half-size GIF, each written atomically."""
    from PIL import Image

    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401 - imageio's MP4 writer
    except ImportError:
        raise UsageError("writing MP4 needs imageio and imageio-ffmpeg: pip install 'wmbench[render]'") from None

    mp4.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=mp4.parent) as folder:
        tmp_mp4, tmp_gif = Path(folder) / mp4.name, Path(folder) / gif.name
        with imageio.get_writer(tmp_mp4, fps=fps, codec="libx264", quality=5, macro_block_size=16) as writer:
            for frame in video.frames:
                writer.append_data(frame)
        height, width = video.frames.shape[1:3]
        images = [Image.fromarray(f).resize((width // 2, height // 2), Image.Resampling.LANCZOS) for f in video.frames]
        # one 64-colour palette for every frame and no dithering: half the size of per-frame palettes
        palette = images[0].quantize(colors=64, method=Image.Quantize.MEDIANCUT)
        images = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
        images[0].save(tmp_gif, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0,
                       optimize=True)
        os.replace(tmp_mp4, mp4)
        os.replace(tmp_gif, gif)


def render(request, n: int, out: Path, *, progress: bool = True,
           say: Callable[[str], None] = print) -> tuple[Path, Path, Video]:
    """Render the first `n` trajectories of an evaluated cell (its model must be cached: run
    `wmbench evaluate` with the same options first). Returns `(mp4, gif, video)`."""
    from wmbench.cells import cell_of, checkpoint_path, eval_config, resolve_device
    from wmbench.evaluate import Trial, adapt, prepare_inputs
    from wmbench.models.base import WorldModel, get_model_class
    from wmbench.timing import Stopwatch

    if n < 1:
        raise UsageError(f"--n must be at least 1 trajectory, got {n}")
    cell, config, device = cell_of(request), eval_config(request), resolve_device(request.device)
    if n > config.n_trajectories:
        raise UsageError(f"--n {n} is more than the cell's {config.n_trajectories} trajectories")
    path = checkpoint_path(get_model_class(request.model), cell, request.overrides, request.profile)
    if not path.is_file():
        raise UsageError(f"no trained {request.model} for this cell ({path} is missing); run `wmbench evaluate` with "
                         "the same --model, --env, --horizon, --seed, --profile and --set first")
    train, held_out, policy = prepare_inputs(cell.env, cell.dataset, request.profile, request.overrides, cell.policy,
                                             make_missing=False, progress=progress, say=say, seed=request.seed)
    policy = policy.to(device)
    model = WorldModel.load(path, device=device)
    adapt(model, path, policy, train, request.seed, device, progress, say)
    # the cell's whole batch is generated, so that its first n trajectories are the evaluated ones
    trial = Trial.of(request, cell, config, train, held_out, policy, device)
    traj, replay, _ = trial.run(model, say, Stopwatch(device))
    env = trial.env
    gen_obs = traj.observations[:n].cpu().numpy().astype(np.float64)
    gen = model_states(env, gen_obs, replay.qpos[:n, 0, 0])
    say(f"rendering {n} trajectories of {request.horizon} steps")
    video = compose(env, request.model, (replay.qpos[:n], replay.qvel[:n]), gen, replay.observations[:n], gen_obs,
                    replay.terminals[:n])
    stem = f"{cell.env}-{cell.model}-h{cell.horizon}-s{cell.seed}"
    mp4, gif = out / f"{stem}.mp4", out / f"{stem}.gif"
    write_video(video, mp4, gif)
    return mp4, gif, video
