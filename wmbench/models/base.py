"""The world-model contract, the autoregressive rollout written once, and the model registry.

A world model turns start states and a policy into on-policy trajectories:

    model = get_model_class("mlp-ensemble")(obs_dim, act_dim, config)
    model.fit(train_data)
    traj = model.rollout(init_obs, policy, horizon, generator=torch.Generator().manual_seed(0))

The policy is an argument of `rollout` because some models (PolyGRAD) generate actions together
with states; every model is compared under the same policy from the same start states.

A new baseline subclasses `WorldModel` (or `AutoregressiveWorldModel`) and registers itself with
`@register_model("name")`, or is exposed by another installed package under the entry-point group
`wmbench.models`; the CLI then lists and runs it with no edit to wmbench.
"""

from __future__ import annotations

import abc
import dataclasses
import io
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch import nn

from wmbench.config import MODEL_SECTIONS
from wmbench.errors import CheckpointError, UsageError
from wmbench.paths import atomic_write_bytes

if TYPE_CHECKING:
    from wmbench.data import OfflineData
    from wmbench.policy import GaussianPolicy

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class Trajectories:
    """A batch of `B` generated trajectories of `H` steps (tensors on the model's device)."""

    observations: torch.Tensor  # [B, H+1, obs]  s_0 .. s_H
    actions: torch.Tensor  # [B, H, act]  as drawn from the policy (the env clips when executing)
    rewards: torch.Tensor  # [B, H]       r_t for taking a_t in s_t
    terminals: torch.Tensor  # [B, H] bool  s_{t+1} is terminal

    @property
    def batch(self) -> int:
        return self.actions.shape[0]

    @property
    def horizon(self) -> int:
        return self.actions.shape[1]

    def float(self) -> Trajectories:
        """The same trajectories with float32 observations, actions and rewards."""
        return Trajectories(self.observations.float(), self.actions.float(), self.rewards.float(), self.terminals)

    def validate(self, batch: int, horizon: int, obs_dim: int, act_dim: int) -> None:
        """Raise `ValueError` unless shapes and dtypes are those of the contract."""
        expected = {
            "observations": ((batch, horizon + 1, obs_dim), torch.float32),
            "actions": ((batch, horizon, act_dim), torch.float32),
            "rewards": ((batch, horizon), torch.float32),
            "terminals": ((batch, horizon), torch.bool),
        }
        for name, (shape, dtype) in expected.items():
            value = getattr(self, name)
            if tuple(value.shape) != shape or value.dtype != dtype:
                raise ValueError(f"Trajectories.{name}: expected {shape} {dtype}, "
                                 f"got {tuple(value.shape)} {value.dtype}")


@dataclass
class FitReport:
    """What fitting did: gradient steps, wall-clock seconds, final training loss, anything else."""

    steps: int = 0
    seconds: float = 0.0
    loss: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class NoConfig:
    """For models without settings."""


class WorldModel(nn.Module, abc.ABC):
    """Base class of every world model.

    Subclasses set `Config` (a dataclass of settings, filled from the profile), implement `fit` and
    `rollout`, and keep all learned state in parameters, buffers or `get_extra_state` so that the
    generic `save`/`load` round-trips it. Tensors in and out are float32 on the model's device.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig
    fixed_horizon: ClassVar[bool] = False
    """True for models that generate exactly `config.horizon` steps (trajectory-level models)."""
    online_budget: ClassVar[str | None] = "train_steps"
    """The config field that bounds `fit`'s gradient steps; `fit_online` sets it (None: no budget)."""

    def __init__(self, obs_dim: int, act_dim: int, config: Any = None):
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.config = config if config is not None else self.Config()
        self.fit_report = FitReport()

    @property
    def device(self) -> torch.device:
        tensor = next(self.parameters(), None)
        if tensor is None:
            tensor = next(self.buffers(), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    @abc.abstractmethod
    def fit(self, data: OfflineData, *, generator: torch.Generator | None = None, progress: bool = True,
            state_path: Path | None = None) -> FitReport:
        """Train on offline data (raw units; the model does its own normalisation).

        `generator` lives on the model's device. A model trained by the shared loop
        (`wmbench.models.training.train_steps`) writes a resumable training state to `state_path`
        as it goes and continues from one found there; others may ignore it."""

    @abc.abstractmethod
    def rollout(self, init_obs: torch.Tensor, policy: GaussianPolicy, horizon: int, *,
                generator: torch.Generator) -> Trajectories:
        """`init_obs [B, obs]` -> `Trajectories` of `horizon` steps under `policy`.

        The same generator state must give the same trajectories.
        """

    def prepare(self, policy: GaussianPolicy, data: OfflineData, *, generator: torch.Generator,
                progress: bool = True) -> bool:
        """Adapt to the evaluation policy before generating (PolyGRAD tunes its action step size).
        Returns True when the model's state changed (so the caller saves it again). Default: no-op."""
        return False

    def fit_online(self, data: OfflineData, updates: int, *, generator: torch.Generator) -> FitReport:
        """Train on the growing replay buffer of the online RL loop (`wmbench rl`): `fit` from the
        current weights with its budget (`online_budget`) cut to `updates` gradient steps, and no
        training state written (the loop saves its own). The normalisers follow the buffer, as the
        authors' online runs refresh theirs."""
        config = self.config
        if self.online_budget is not None:
            self.config = dataclasses.replace(config, **{self.online_budget: updates})
        try:
            return self.fit(data, generator=generator, progress=False)
        finally:
            self.config = config

    def follow_policy(self, policy: GaussianPolicy, traj: Trajectories, rate: float) -> None:
        """Online counterpart of `prepare`: the RL loop calls it with every batch the model imagined
        under a policy that keeps changing (PolyGRAD takes one step of its delta rule at `rate`).
        Default: no-op."""

    def loss_items(self, data: OfflineData) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]] | None:
        """`(n, loss)`: the data term of the model's training objective on `data` (with the normalisers
        it has), as `loss(item indices)` over `n` items (transitions or windows); None: no objective."""
        return None

    @torch.no_grad()
    def objective(self, data: OfflineData, *, items: int = 2048, batch: int = 256, seed: int = 0) -> float | None:
        """The mean of `loss_items` over `items` items of `data` drawn with `seed`, the objective's own noise
        (a diffusion model's t and noise) seeded too: the same number for the same model and data. On the
        training data against held-out data, it shows overfitting."""
        made = self.loss_items(data)
        if made is None:
            return None
        n, loss = made
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            ids = torch.randint(n, (items,), device=self.device)
            return float(sum(loss(part) * len(part) for part in ids.split(batch)) / items)

    def diagnostics(self) -> dict[str, list[float]]:
        """Named per-step series worth storing with the results (PolyGRAD: delta while tuning)."""
        return {}

    def check_horizon(self, horizon: int) -> None:
        """Raise `UsageError` if this model cannot generate `horizon` steps."""
        if horizon < 1:
            raise UsageError(f"horizon must be a positive number of steps, got {horizon}")
        trained = getattr(self.config, "horizon", None)
        if self.fixed_horizon and trained != horizon:
            raise UsageError(f"{self.name} generates trajectories of the length it was trained on "
                             f"(h = {trained}); train an h = {horizon} model with --horizon {horizon}")

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        """Write a self-describing checkpoint atomically."""
        buffer = io.BytesIO()
        torch.save({
            "format": CHECKPOINT_FORMAT,
            "model": self.name,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "config": dataclasses.asdict(self.config),
            "fit_report": dataclasses.asdict(self.fit_report),
            "state_dict": self.state_dict(),
        }, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> WorldModel:
        """Rebuild a saved model; `WorldModel.load` picks the class from the checkpoint."""
        try:
            payload = torch.load(path, map_location=device, weights_only=True)
            if payload.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"checkpoint format {payload.get('format')!r}")
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {path} does not exist") from None
        except Exception as err:
            raise CheckpointError(f"checkpoint {path} is corrupt or unreadable "
                                  f"({type(err).__name__}); delete it to retrain") from err
        model_cls = get_model_class(payload["model"])
        if not issubclass(model_cls, cls):
            raise CheckpointError(f"checkpoint {path} holds a {payload['model']} model, not {cls.__name__}")
        model = model_cls(payload["obs_dim"], payload["act_dim"], model_cls.Config(**payload["config"]))
        model.load_state_dict(payload["state_dict"])
        model.fit_report = FitReport(**payload["fit_report"])
        return model.to(device).eval()


class AutoregressiveWorldModel(WorldModel):
    """A one-step model rolled out step by step under the policy; `rollout` is written here once.

    Subclasses implement `step`. `context` bounds how many past steps `step` is given (None: all).
    """

    context: ClassVar[int | None] = None

    @abc.abstractmethod
    def step(self, obs_hist: torch.Tensor, act_hist: torch.Tensor, *,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`obs_hist [B, T, obs]`, `act_hist [B, T, act]` (last row: current state and the
        executed, clipped action) -> `(next_obs [B, obs], reward [B], terminal [B] bool)`."""

    @torch.inference_mode()
    def rollout(self, init_obs: torch.Tensor, policy: GaussianPolicy, horizon: int, *,
                generator: torch.Generator) -> Trajectories:
        self.check_horizon(horizon)
        batch = init_obs.shape[0]
        obs = init_obs.new_empty(batch, horizon + 1, self.obs_dim)
        actions = init_obs.new_empty(batch, horizon, self.act_dim)
        executed = torch.empty_like(actions)
        rewards = init_obs.new_empty(batch, horizon)
        terminals = torch.empty(batch, horizon, dtype=torch.bool, device=init_obs.device)
        obs[:, 0] = init_obs
        for t in range(horizon):
            actions[:, t] = policy.sample(obs[:, t], generator=generator)
            executed[:, t] = policy.clip(actions[:, t])
            first = 0 if self.context is None else max(0, t + 1 - self.context)
            next_obs, reward, terminal = self.step(
                obs[:, first : t + 1], executed[:, first : t + 1], generator=generator
            )
            obs[:, t + 1], rewards[:, t], terminals[:, t] = next_obs, reward, terminal
        return Trajectories(obs, actions, rewards, terminals)


# ----------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[WorldModel]] = {}
ENTRY_POINT_GROUP = "wmbench.models"


def register_model(name: str):
    """Class decorator: make a `WorldModel` subclass available under `name`."""

    def decorate(cls: type[WorldModel]) -> type[WorldModel]:
        if not (isinstance(cls, type) and issubclass(cls, WorldModel)):
            raise TypeError(f"register_model({name!r}) decorates WorldModel subclasses, not {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"model name {name!r} is already registered by {existing.__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        MODEL_SECTIONS[name] = cls.Config  # its `[name]` table of profiles and `--set name.KEY=...`
        return cls

    return decorate


def _load_entry_points() -> None:
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _REGISTRY:
            continue
        loaded = entry.load()  # importing a module registers what it decorates
        if isinstance(loaded, type) and issubclass(loaded, WorldModel) and entry.name not in _REGISTRY:
            register_model(entry.name)(loaded)


def available_models() -> dict[str, type[WorldModel]]:
    """Every registered model: wmbench's own and those of installed extension packages."""
    import wmbench.models  # noqa: F401  (registers the built-in models)

    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def get_model_class(name: str) -> type[WorldModel]:
    models = available_models()
    if name not in models:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(models)}")
    return models[name]
