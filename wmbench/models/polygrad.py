"""PolyGRAD: policy-guided trajectory diffusion (Rigter, Yamada and Posner, arXiv 2312.08533).

A denoiser is trained to predict whole trajectories `x = [s_t, r_t, term_t]` (t = 0 .. H) given
noised trajectories and the trajectory's actions. To generate, states and actions start as noise;
at each of the 128 diffusion steps the denoiser predicts the clean trajectory x0_hat, the states
take a DDPM step towards it, and the actions take a step along the policy's score
`grad_a log pi(a | s)` evaluated at the *denoised* states, plus noise of the states' posterior std.
The action step size delta is tuned so that the generated actions are distributed as the policy
says: the standardised actions `(a - mean_pi(s)) / std_pi(s)` should have unit std.

Every detail follows the authors' code (see POLYGRAD_NOTES and docs/FIDELITY.md): x0 prediction,
actions enter the denoiser as `sqrt(alpha_bar_t) a`, first-state inpainting on inputs and outputs,
the 3-std action clip, the 0.25 state-change clip in the last 11 steps, no guidance and no noise at
t = 0. One deliberate difference: the denoiser is given the action clipped to the action space (the
executed one, which is all the data holds), as every wmbench model is; the authors give it the
unclipped action.

Horizon convention: a model of horizon H diffuses H + 1 rows (s_0 .. s_H) so that it yields H
transitions like every other model; the action, reward and terminal of the last row are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import trange

from wmbench import tracking
from wmbench.config import param
from wmbench.data import Normaliser, OfflineData
from wmbench.models.base import FitReport, Trajectories, WorldModel, register_model
from wmbench.models.diffusion import (
    DenoiserLoss,
    DenoiserTraining,
    DiffusionConfig,
    DiffusionSchedule,
    ResidualMLPDenoiser,
    TrainsAsDenoiser,
    TransformerDenoiser,
)
from wmbench.models.training import random_index
from wmbench.policy import GaussianPolicy

GUIDANCE_MODES = ("gradient", "none", "sample")
GUIDE_ON = ("x0_hat", "posterior_mean")


@dataclass
class PolyGRADConfig(DiffusionConfig):
    width: int = param(1024, "residual MLP width (paper: 1024 for h = 10, 2048 for h = 50 and 200)", low=1)
    horizon: int = param(10, "transitions per trajectory (the model diffuses horizon + 1 rows)", low=1)
    denoiser: str = param("mlp", "mlp (residual MLP) or transformer", choices=("mlp", "transformer"))
    dim: int = param(312, "transformer width", low=1)
    layers: int = param(6, "transformer blocks", low=1)
    heads: int = param(4, "transformer attention heads", low=1)
    guidance: str = param("gradient", "action update: gradient (PolyGRAD), none (keep random actions), sample (a ~ pi)",
                          choices=("gradient", "none", "sample"))
    guide_on: str = param("x0_hat", "states the policy sees: x0_hat (denoised) or posterior_mean",
                          choices=("x0_hat", "posterior_mean"))
    action_clip_std: float = param(3.0, "clip actions to mean +- k std of the policy (0: off)", low=0)
    state_change_clip: float = param(0.25, "max state change per step in the last steps, normalised units (0: off)",
                                     low=0)
    state_clip_last: int = param(10, "the state-change clip applies for t <= this", low=0)
    delta_init: float = param(0.005, "initial action step size delta", above=0)
    delta_lr: float = param(3e-2, "SGD rate on log delta towards std(z) = 1", low=0)
    tune_iterations: int = param(50, "imagined batches of delta tuning after training", low=0)
    tune_batch_size: int = param(256, "trajectories per tuning batch", low=1)
    tune_every: int = param(0, "with fit(..., policy=pi): also tune delta every this many training steps (0: off)",
                            low=0)


@register_model("polygrad")
class PolyGRAD(TrainsAsDenoiser, WorldModel):
    """Policy-guided trajectory diffusion with a residual-MLP denoiser (the paper's method)."""

    Config = PolyGRADConfig
    fixed_horizon = True

    def __init__(self, obs_dim: int, act_dim: int, config: PolyGRADConfig | None = None):
        super().__init__(obs_dim, act_dim, config)
        c = self.config
        if c.guidance not in GUIDANCE_MODES:
            raise ValueError(f"guidance must be one of {GUIDANCE_MODES}, got {c.guidance!r}")
        if c.guide_on not in GUIDE_ON:
            raise ValueError(f"guide_on must be one of {GUIDE_ON}, got {c.guide_on!r}")
        self.rows, self.transition_dim = c.horizon + 1, obs_dim + 2
        if c.denoiser == "mlp":
            self.denoiser = ResidualMLPDenoiser(self.rows, self.transition_dim, act_dim, c.width, c.blocks)
        elif c.denoiser == "transformer":
            self.denoiser = TransformerDenoiser(self.rows, self.transition_dim, act_dim, c.dim, c.layers, c.heads)
        else:
            raise ValueError(f"denoiser must be mlp or transformer, got {c.denoiser!r}")
        self.schedule = DiffusionSchedule(c.diffusion_steps, c.tau)
        self.x_norm = Normaliser.identity(self.transition_dim)  # [s, r, term], each dim z-scored
        self.act_norm = Normaliser.identity(act_dim)
        self.register_buffer("log_delta", torch.tensor(math.log(c.delta_init)))
        self.delta_history: list[float] = []
        self.tuned_for = ""  # fingerprint of the policy delta was tuned for

    @property
    def delta(self) -> float:
        return float(self.log_delta.exp())

    def get_extra_state(self) -> dict:
        return {"delta_history": list(self.delta_history), "tuned_for": self.tuned_for}

    def set_extra_state(self, state: dict) -> None:
        self.delta_history, self.tuned_for = list(state["delta_history"]), state["tuned_for"]

    # ------------------------------------------------------------------ training

    def fit_normalisers(self, data: OfflineData) -> None:
        """z-scoring of `[s, r, term]` and of actions, over every step of the data a subset was drawn from."""
        data = data.normalising
        steps = np.concatenate([data.observations, data.rewards[:, None], data.terminals[:, None]], axis=1)
        self.x_norm = Normaliser.fit(steps).to(self.device)  # statistics over all valid steps, padding excluded
        self.act_norm = Normaliser.fit(data.actions).to(self.device)

    def _window_batches(
        self, data: OfflineData,
    ) -> tuple[int, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]:
        """`(n_windows, batch)`: `batch(window_ids)` gathers z-scored `x [B, rows, obs + 2]` and
        `actions [B, rows, act]` (windows are not materialised)."""
        index, padded = data.windows(self.rows)
        if len(index) == 0:
            raise ValueError(f"no episode of {data.dataset_id} is long enough for windows of {self.rows} steps")
        steps = np.concatenate([data.observations, data.rewards[:, None], data.terminals[:, None]], axis=1)
        # After a termination: the terminal state, reward 0, terminal 1.
        padding = np.concatenate([data.next_observations, np.zeros((data.n_transitions, 1)),
                                  np.ones((data.n_transitions, 1))], axis=1)
        device = self.device
        as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
        steps, padding = self.x_norm.normalise(as_tensor(steps)), self.x_norm.normalise(as_tensor(padding))
        actions = self.act_norm.normalise(as_tensor(data.actions))
        index, padded = torch.as_tensor(index, device=device), torch.as_tensor(padded, device=device)

        def batch(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            rows = index[ids]
            return torch.where(padded[ids][..., None], padding[rows], steps[rows]), actions[rows]

        return len(index), batch

    def loss_items(self, data: OfflineData) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
        loss = self.denoiser_loss(data)
        return loss.n_items, loss

    def denoiser_loss(self, data: OfflineData) -> DenoiserLoss:
        """x0-prediction L2 loss over windows of `data`, with uniform t and first-state inpainting."""
        n_windows, batch = self._window_batches(data)
        return DenoiserLoss(n_windows, batch, self.schedule.training_draws, self._loss)

    def _loss(self, denoiser: Callable | None, inputs: tuple[torch.Tensor, ...],
              draws: tuple[torch.Tensor, ...]) -> torch.Tensor:
        (x0, actions), (t, noise), obs = inputs, draws, self.obs_dim
        x_t = self.schedule.add_noise(x0, t, noise)
        x_t[:, 0, :obs] = x0[:, 0, :obs]
        scaled_actions = self.schedule.sqrt_alpha_bar[t].view(-1, 1, 1) * actions
        x0_hat = self._inpaint((denoiser or self.denoiser)(x_t, scaled_actions, t), x0[:, 0, :obs])
        return F.mse_loss(x0_hat, x0)

    def _inpaint(self, x: torch.Tensor, s0: torch.Tensor) -> torch.Tensor:
        """`x` with its first state replaced by `s0` (out of place, so autograd is unaffected)."""
        first = torch.cat([s0, x[:, 0, self.obs_dim:]], dim=-1)[:, None]
        return torch.cat([first, x[:, 1:]], dim=1)

    def denoiser_training(self, data: OfflineData) -> DenoiserTraining:
        self.fit_normalisers(data)
        loss = self.denoiser_loss(data)

        def finish(result) -> FitReport:
            self.eval()
            self.fit_report = FitReport(steps=self.config.train_steps, seconds=result.seconds, loss=result.loss,
                                        extra={"windows": loss.n_items, "resumed_from": result.resumed_from})
            return self.fit_report

        return DenoiserTraining(self, self.denoiser, loss, self.config, f"fit {self.name} (h={self.config.horizon})",
                                finish)

    def fit(self, data: OfflineData, *, generator=None, progress=True, state_path=None,
            policy: GaussianPolicy | None = None) -> FitReport:
        """Train the denoiser; given a `policy` and `tune_every`, delta is tuned as training goes
        (as in the paper's online runs) on batches imagined with the current weights."""
        c = self.config
        generator = generator or torch.Generator(self.device).manual_seed(0)
        training = self.denoiser_training(data)
        start_obs = torch.as_tensor(data.observations, device=self.device)
        resuming = state_path is not None and state_path.is_file()

        def tune(step: int) -> None:
            nonlocal resuming
            if policy is not None and c.tune_every and step % c.tune_every == 0:
                if resuming:  # the restored history says where the tuning log goes on
                    tracking.restart("tune", len(self.delta_history) + 1)
                    resuming = False
                self.tune_delta(policy, start_obs, 1, generator, progress=False)

        return training.run(generator=generator, progress=progress, state_path=state_path, after_step=tune)

    # ------------------------------------------------------------------ generation

    @torch.inference_mode()
    def rollout(self, init_obs: torch.Tensor, policy: GaussianPolicy, horizon: int, *,
                generator: torch.Generator) -> Trajectories:
        self.check_horizon(horizon)
        c, obs_dim, schedule = self.config, self.obs_dim, self.schedule
        batch, device = init_obs.shape[0], init_obs.device

        def noise(*shape):
            return torch.randn(shape, generator=generator, device=device)

        s0 = self.x_norm.normalise(torch.cat([init_obs, init_obs.new_zeros(batch, 2)], -1))[:, :obs_dim]
        x = noise(batch, self.rows, self.transition_dim)
        x[:, 0, :obs_dim] = s0
        a = noise(batch, self.rows, self.act_dim)
        delta = self.log_delta.exp()
        for t in reversed(range(schedule.steps)):
            steps = torch.full((batch,), t, device=device, dtype=torch.long)
            # the denoiser sees the action the simulator would execute (clipped to the action space),
            # as every wmbench model does; the guidance below moves the unclipped one
            executed = self.act_norm.normalise(policy.clip(self.act_norm.unnormalise(a)))
            x0_hat = self.denoiser(x, schedule.sqrt_alpha_bar[t] * executed, steps)
            x0_hat[:, 0, :obs_dim] = s0
            mu = schedule.posterior_c1[t] * x0_hat + schedule.posterior_c2[t] * x
            if c.state_change_clip and t <= c.state_clip_last:
                mu = x + (mu - x).clamp(-c.state_change_clip, c.state_change_clip)
            guide_states = x0_hat if c.guide_on == "x0_hat" else mu
            states = self.x_norm.unnormalise(guide_states)[..., :obs_dim]
            mean, std = policy.mean_std(states)
            a_raw = self.act_norm.unnormalise(a)
            if c.action_clip_std:
                a_raw = torch.clamp(a_raw, mean - c.action_clip_std * std, mean + c.action_clip_std * std)
            if t == 0:  # the last step: no guidance, no noise
                x, a = mu, self.act_norm.normalise(a_raw)
                break
            sigma = schedule.posterior_std[t]
            if c.guidance == "gradient":  # grad_a log N(a; mean, std) in closed form
                a_raw = a_raw - delta * (a_raw - mean) / std.square()
            elif c.guidance == "sample":
                a_raw = mean + std * noise(*a_raw.shape)
            if c.guidance != "none":
                a = self.act_norm.normalise(a_raw) + sigma * noise(*a.shape)
            x = mu + sigma * noise(*x.shape)
            x[:, 0, :obs_dim] = s0

        x = self.x_norm.unnormalise(x)
        observations = x[..., :obs_dim].clone()
        observations[:, 0] = init_obs  # exact, not a normalise/unnormalise round trip
        return Trajectories(
            observations=observations,
            actions=self.act_norm.unnormalise(a)[:, :horizon].contiguous(),
            rewards=x[:, :horizon, obs_dim].contiguous(),
            terminals=x[:, :horizon, obs_dim + 1] > 0.5,
        )

    # ------------------------------------------------------------------ delta tuning

    def tune_delta(self, policy: GaussianPolicy, start_obs: torch.Tensor, iterations: int,
                   generator: torch.Generator, progress: bool = True) -> list[float]:
        """`log delta += lr * (std(z) - 1)` once per imagined batch; returns the delta history.

        Delta is kept at most the smallest policy variance: a larger one moves a guided action past
        the policy mean, where the rule's sign inverts and tuning runs away (to inf with a nearly
        deterministic policy). Below that ceiling the paper's rule is unchanged."""
        c = self.config
        for i in trange(iterations, desc=f"tune {self.name} delta", disable=not progress, leave=False):
            obs = start_obs[random_index(len(start_obs), c.tune_batch_size, generator, start_obs.device)]
            self._delta_step(policy, self.rollout(obs, policy, c.horizon, generator=generator), c.delta_lr)
            tracking.progress("tune", i + 1, iterations)
        return self.delta_history

    @torch.no_grad()
    def _delta_step(self, policy: GaussianPolicy, traj: Trajectories, lr: float) -> None:
        z = policy.standardise(traj.observations[:, :-1], traj.actions)
        act_std = z.std(dim=(0, 1)).mean()
        ceiling = 2 * math.log(float(policy.mean_std(traj.observations[:, 0])[1].min()))
        self.log_delta.copy_((self.log_delta + lr * (act_std - 1.0)).clamp(max=ceiling))
        self.delta_history.append(self.delta)
        if tracking.logging("tune"):
            tracking.log("tune", {"delta": self.delta, "std_z": float(act_std)}, len(self.delta_history))

    def follow_policy(self, policy: GaussianPolicy, traj: Trajectories, rate: float) -> None:
        """The paper's online tuning: one step of the delta rule per imagined batch."""
        if self.config.guidance == "gradient":
            self._delta_step(policy, traj, rate)

    def prepare(self, policy: GaussianPolicy, data: OfflineData, *, generator: torch.Generator,
                progress: bool = True) -> bool:
        """Tune delta for this policy (once: the checkpoint remembers which policy it was tuned for)."""
        fingerprint = policy.fingerprint()
        if (self.tuned_for == fingerprint and math.isfinite(self.delta)) or self.config.guidance != "gradient":
            return False
        self.log_delta.fill_(math.log(self.config.delta_init))
        self.delta_history = []
        tracking.restart("tune", 1)  # tuning starts afresh: an interrupted one's log is stale
        start_obs = torch.as_tensor(data.observations, device=self.device)
        self.tune_delta(policy, start_obs, self.config.tune_iterations, generator, progress)
        self.tuned_for = fingerprint
        return True

    def diagnostics(self) -> dict[str, list[float]]:
        return {"delta": self.delta_history}


@dataclass
class PolyGRADTransformerConfig(PolyGRADConfig):
    denoiser: str = param("transformer", "mlp (residual MLP) or transformer", choices=("mlp", "transformer"))
    lr: float = param(1e-4, "Adam learning rate", above=0)


@register_model("polygrad-transformer")
class PolyGRADTransformer(PolyGRAD):
    """PolyGRAD with the causal-transformer denoiser."""

    Config = PolyGRADTransformerConfig
