"""A world model as an extension package would define it (loaded through an entry point in tests)."""

import torch

from wmbench import AutoregressiveWorldModel, FitReport


class PersistenceModel(AutoregressiveWorldModel):
    """Predicts that nothing changes: s' = s, r = 0, never terminal."""

    def __init__(self, obs_dim, act_dim, config=None):
        super().__init__(obs_dim, act_dim, config)
        self.register_buffer("fitted", torch.zeros(()))

    def fit(self, data, *, generator=None, progress=True, state_path=None):
        self.fitted.fill_(1.0)
        return FitReport(steps=0)

    def step(self, obs_hist, act_hist, *, generator):
        obs = obs_hist[:, -1]
        return obs.clone(), obs.new_zeros(len(obs)), torch.zeros(len(obs), dtype=torch.bool)
