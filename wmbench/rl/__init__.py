"""`wmbench rl`: reinforcement learning in a world model's imagination (the paper's Algorithm 3) as a
downstream score of every world model, next to model-free PPO at the same number of real steps.

`run` (a run end to end) uses the online loop (`loop`), whose actor-critic learns only on imagined
trajectories (`learner`), or the PPO baseline (`ppo`); both evaluate and store rows the same way
(`evaluation`) and resume from the state they write at each evaluation (`state`).
"""

from wmbench.rl.evaluation import RLConfig, episode_returns, eval_seed
from wmbench.rl.learner import ActorCritic, ActorCriticConfig
from wmbench.rl.loop import Collector, ImaginationConfig, concatenate, run_imagination
from wmbench.rl.ppo import PPO, PPOConfig, run_ppo
from wmbench.rl.run import RLRequest, cell_of, rl_state_path, run, run_configs, summary

__all__ = ["PPO", "ActorCritic", "ActorCriticConfig", "Collector", "ImaginationConfig", "PPOConfig", "RLConfig",
           "RLRequest", "cell_of", "concatenate", "episode_returns", "eval_seed", "rl_state_path", "run",
           "run_configs", "run_imagination", "run_ppo", "summary"]
