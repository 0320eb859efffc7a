"""SAC datasets, as in the paper: the replay buffer of one Soft Actor-Critic run and its final policy.

One stable-baselines3 SAC run (its default hyperparameters; `LEARNING_STARTS` uniform random steps
first, as MBPO and the paper) writes:

- `wmbench/ENV/sac-replay-v0`: every transition of the run, episodes in order, with the simulator
  state of every observation (recorded by a wrapper under SAC's own env wrappers);
- `wmbench/ENV/sac-final-v0`: episodes of the final stochastic SAC policy (D4RL "medium/expert" style);
- the final SAC model in each dataset's `wmbench/` folder, for `--policy behaviour`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from wmbench.data import dataset_dir, default_dataset_id
from wmbench.envs import EnvSpec
from wmbench.errors import DatasetError, UsageError
from wmbench.policy import GaussianPolicy
from wmbench.recording import EpisodeRecorder, collect_episodes, make_card, write_dataset

SAC_POLICY_FILE = "sac-policy.zip"
LEARNING_STARTS = 5000
DEFAULT_STEPS = 75_000  # about 15 minutes per env on 2 CPU cores
DEFAULT_FINAL_EPISODES = 20


def _progress_callback(total: int, recorder: EpisodeRecorder, desc: str, progress: bool):
    """A stable-baselines3 callback: a bar over environment steps with the latest episode returns."""
    from stable_baselines3.common.callbacks import BaseCallback

    class ProgressBar(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False)

        def _on_step(self) -> bool:
            self.bar.update(1)
            if self.n_calls % 1000 == 0 and recorder.episodes:
                recent = [ep["rewards"].sum() for ep in recorder.episodes[-10:]]
                self.bar.set_postfix(episode_return=f"{np.mean(recent):.0f}")
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return ProgressBar()


def make_sac_datasets(env: EnvSpec, steps: int = DEFAULT_STEPS, seed: int = 0,
                      final_episodes: int = DEFAULT_FINAL_EPISODES, *, progress: bool = True,
                      overwrite: bool = False, learning_starts: int = LEARNING_STARTS) -> tuple[str, str]:
    """Train SAC for `steps` env steps and write the replay and final-policy datasets; their ids."""
    from stable_baselines3 import SAC

    if steps < 2 or final_episodes < 1:
        raise UsageError(f"--steps must be at least 2 and --final-episodes positive, got {steps} and {final_episodes}")
    replay_id, final_id = default_dataset_id(env.name, "sac-replay"), default_dataset_id(env.name, "sac-final")
    for dataset_id in (replay_id, final_id):  # here, not after the training run `write_dataset` would check
        if dataset_dir(dataset_id).exists() and not overwrite:
            raise DatasetError(f"dataset {dataset_id} already exists at {dataset_dir(dataset_id)}; "
                               "pass --overwrite to replace it")
    recorder = EpisodeRecorder(env.make())
    starts = min(learning_starts, steps // 2)
    torch.manual_seed(seed)
    agent = SAC("MlpPolicy", recorder, seed=seed, learning_starts=starts, buffer_size=max(steps, 1),
                device="cpu", verbose=0)
    agent.learn(total_timesteps=steps, callback=_progress_callback(steps, recorder, f"SAC {env.name}", progress))
    replay = recorder.finish()

    hyper = {"algorithm": "stable-baselines3 SAC (defaults)", "learning_starts": starts,
             "learning_rate": agent.learning_rate, "batch_size": agent.batch_size, "gamma": agent.gamma,
             "tau": agent.tau, "net_arch": str(agent.policy_kwargs.get("net_arch", "default [256, 256]"))}
    card = make_card(env, "sac-replay", sum(len(ep["actions"]) for ep in replay), seed, replay, sac=hyper,
                     description=f"replay buffer of one SAC run of {steps} steps in {env.gym_id} "
                                 f"({starts} uniform random steps first)")
    write_dataset(replay_id, env, replay, card, algorithm_name="sac-replay", overwrite=overwrite)
    _save_agent(agent, replay_id)

    final = collect_episodes(env, lambda obs: agent.predict(obs, deterministic=False)[0], steps=10 ** 9,
                             seed=seed + 10_000, progress=progress, max_episodes=final_episodes)
    card = make_card(env, "sac-final", sum(len(ep["actions"]) for ep in final), seed, final, sac=hyper,
                     description=f"{final_episodes} episodes of the final stochastic SAC policy of "
                                 f"{replay_id} in {env.gym_id}")
    write_dataset(final_id, env, final, card, algorithm_name="sac-final", overwrite=overwrite)
    _save_agent(agent, final_id)
    return replay_id, final_id


def _save_agent(agent, dataset_id: str) -> None:
    path = sac_policy_path(dataset_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.zip")  # stable-baselines3 keeps a .zip name as given
    agent.save(tmp)
    tmp.replace(path)


def sac_policy_path(dataset_id: str) -> Path:
    return dataset_dir(dataset_id) / "wmbench" / SAC_POLICY_FILE


def behaviour_policy(dataset_id: str, std: float) -> GaussianPolicy:
    """`Normal(tanh(mean of the SAC actor), std)`: the final SAC policy of the run that made the
    dataset, in the paper's policy family, with a fixed std (the policy-entropy axis).

    Only the actor's weights are read, as data (`policy.pth` in stable-baselines3's zip, loaded with
    `weights_only=True`): `SAC.load` would unpickle the zip's other entries, which can run any code."""
    path = sac_policy_path(dataset_id)
    if not path.is_file():
        raise DatasetError(f"dataset {dataset_id} has no SAC behaviour policy ({path}); --policy behaviour "
                           "needs a dataset made by `wmbench data make ENV --policy sac` (or use --policy bc)")
    if std <= 0:
        raise UsageError(f"--policy-std must be positive, got {std}")
    try:
        with zipfile.ZipFile(path) as archive:
            weights = torch.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu", weights_only=True)
        net = actor_mean(weights)
    except Exception as err:  # noqa: BLE001 - zip, unpickling, key and shape errors all mean the file is unusable
        raise DatasetError(f"SAC policy {path} is corrupt, unreadable or not a stable-baselines3 SAC actor "
                           f"({type(err).__name__}); remake the dataset with `wmbench data make ENV --policy sac "
                           "--overwrite`") from err
    policy = GaussianPolicy(net[0].in_features, net[-1].out_features)
    policy.net = net
    return policy.with_std(std).eval().requires_grad_(False)


def actor_mean(weights: dict) -> nn.Sequential:
    """The mean action before tanh, `mu(latent_pi(s))`, of a stable-baselines3 SAC actor's state dict:
    `latent_pi` is Linear and ReLU layers (SB3's default activation, which `data make` uses), `mu` one
    Linear. SAC squashes into [-1, 1], the action space of every wmbench env."""
    hidden = sorted({int(key.split(".")[2]) for key in weights if key.startswith("actor.latent_pi.")})
    layers = []
    for index in hidden:
        layers += [_linear(weights, f"actor.latent_pi.{index}"), nn.ReLU()]
    return nn.Sequential(*layers, _linear(weights, "actor.mu"))


def _linear(weights: dict, prefix: str) -> nn.Linear:
    weight, bias = weights[f"{prefix}.weight"], weights[f"{prefix}.bias"]
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    layer.load_state_dict({"weight": weight, "bias": bias})
    return layer
