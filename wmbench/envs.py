"""The MuJoCo environments wmbench benchmarks on, as gymnasium v5 defines them.

`EnvSpec` carries what the oracle needs to turn simulator states into what `env.step` returns:
the observation map, the reward and the health (termination) test, all vectorised over leading
batch dimensions. The constants are gymnasium v5's defaults; `tests/test_oracle.py` checks them
against a real `env.step` loop.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from wmbench.errors import UsageError


def _mujoco_warning(message: str) -> None:
    # gymnasium's v5 XMLs use `settotalmass`, which MuJoCo 4 deprecates on every compile; that
    # note is not actionable here. Other MuJoCo warnings become Python warnings (MuJoCo's default
    # prints them and writes MUJOCO_LOG.TXT into the working directory).
    if "settotalmass" not in message:
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


mujoco.set_mju_user_warning(_mujoco_warning)


@dataclass(frozen=True)
class EnvSpec:
    """One benchmark environment (gymnasium v5, MuJoCo)."""

    name: str
    gym_id: str
    obs_dim: int
    act_dim: int
    nq: int
    nv: int
    frame_skip: int
    timestep: float
    ctrl_cost_weight: float
    healthy_reward: float = 0.0
    terminates: bool = False
    clips_velocity: bool = False
    """Hopper and Walker2d observe `clip(qvel, -10, 10)`."""
    healthy_z: tuple[float, float] = (-np.inf, np.inf)
    healthy_angle: tuple[float, float] = (-np.inf, np.inf)
    healthy_state: tuple[float, float] | None = None
    """Hopper also requires every entry of `[qpos, qvel][2:]` inside this open interval."""

    @property
    def dt(self) -> float:
        """Seconds of simulated time per environment step."""
        return self.timestep * self.frame_skip

    def make(self, **kwargs) -> gym.Env:
        return gym.make(self.gym_id, **kwargs)

    def observe(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Observation of simulator states: `[..., nq], [..., nv] -> [..., obs]` (x excluded)."""
        if self.clips_velocity:
            qvel = np.clip(qvel, -10.0, 10.0)
        return np.concatenate([qpos[..., 1:], qvel], axis=-1)

    def state_from_obs(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rebuild `(qpos, qvel)` from observations with x = 0 (exact up to the velocity clip)."""
        qpos = np.concatenate([np.zeros(obs.shape[:-1] + (1,)), obs[..., : self.nq - 1]], axis=-1)
        return qpos, obs[..., self.nq - 1 :].copy()

    def is_healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Gymnasium's `is_healthy` on a batch of states; always True for envs that never end."""
        if not self.terminates:
            return np.ones(qpos.shape[:-1], dtype=bool)
        z, angle = qpos[..., 1], qpos[..., 2]
        healthy = (self.healthy_z[0] < z) & (z < self.healthy_z[1])
        healthy &= (self.healthy_angle[0] < angle) & (angle < self.healthy_angle[1])
        if self.healthy_state is not None:
            state = np.concatenate([qpos, qvel], axis=-1)[..., 2:]
            lo, hi = self.healthy_state
            healthy &= np.all((lo < state) & (state < hi), axis=-1)
        return healthy

    def reward(
        self, x_before: np.ndarray, x_after: np.ndarray, action: np.ndarray, healthy: np.ndarray
    ) -> np.ndarray:
        """Gymnasium's reward: forward velocity + healthy bonus - control cost."""
        forward = (x_after - x_before) / self.dt
        ctrl_cost = self.ctrl_cost_weight * np.sum(np.square(action), axis=-1)
        return forward + self.healthy_reward * healthy - ctrl_cost


ENVS: dict[str, EnvSpec] = {
    "halfcheetah": EnvSpec(
        name="halfcheetah", gym_id="HalfCheetah-v5", obs_dim=17, act_dim=6, nq=9, nv=9,
        frame_skip=5, timestep=0.01, ctrl_cost_weight=0.1,
    ),
    "hopper": EnvSpec(
        name="hopper", gym_id="Hopper-v5", obs_dim=11, act_dim=3, nq=6, nv=6,
        frame_skip=4, timestep=0.002, ctrl_cost_weight=1e-3, healthy_reward=1.0,
        terminates=True, clips_velocity=True, healthy_z=(0.7, np.inf),
        healthy_angle=(-0.2, 0.2), healthy_state=(-100.0, 100.0),
    ),
    "walker2d": EnvSpec(
        name="walker2d", gym_id="Walker2d-v5", obs_dim=17, act_dim=6, nq=9, nv=9,
        frame_skip=4, timestep=0.002, ctrl_cost_weight=1e-3, healthy_reward=1.0,
        terminates=True, clips_velocity=True, healthy_z=(0.8, 2.0), healthy_angle=(-1.0, 1.0),
    ),
}


def get_env(name: str) -> EnvSpec:
    """The spec of a benchmark env by short name (`halfcheetah`) or gymnasium id (`Hopper-v5`)."""
    key = name.lower()
    if key in ENVS:
        return ENVS[key]
    for spec in ENVS.values():
        if spec.gym_id.lower() == key or spec.gym_id.split("-")[0].lower() == key:
            return spec
    raise UsageError(f"unknown env {name!r}; choose one of: {', '.join(ENVS)}")


ROOT_POSITIONS = {"rootx": "torso x", "rootz": "torso height", "rooty": "torso angle"}
ROOT_VELOCITIES = {"rootx": "torso x velocity", "rootz": "torso z velocity", "rooty": "torso angular velocity"}


@functools.cache
def observation_names(name: str) -> tuple[str, ...]:
    """Readable names of an env's observation dims, from its MuJoCo joints (every joint of these
    envs has one degree of freedom): the position of every joint but x, then every velocity."""
    import mujoco

    model = mujoco_model(name)
    joints = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(model.njnt)]
    limb = {j: j.removesuffix("_joint").replace("_", " ") for j in joints}
    positions = [ROOT_POSITIONS.get(j, f"{limb[j]} angle") for j in joints]
    velocities = [ROOT_VELOCITIES.get(j, f"{limb[j]} angular velocity") for j in joints]
    return tuple(positions[1:] + velocities)


@functools.cache
def mujoco_model(name: str):
    """The compiled MjModel of an env (cached: compiling the XML takes tens of milliseconds)."""
    env = get_env(name).make()
    return env.unwrapped.model
