"""Diffusion machinery shared by PolyGRAD and the autoregressive diffusion baseline.

The network (a denoiser predicting x0) is separate from the sampler, so sampler settings change
without retraining: `schedule.py` (noise schedule and DDPM posterior), `denoisers.py` (residual
MLP and causal transformer), `ema.py` (weight averaging used for generation), `fit.py` (the shared
settings and training routine).
"""

from wmbench.models.diffusion.denoisers import ResidualMLPDenoiser, TransformerDenoiser
from wmbench.models.diffusion.ema import EMA
from wmbench.models.diffusion.fit import DiffusionConfig, fit_denoiser
from wmbench.models.diffusion.schedule import DiffusionSchedule

__all__ = ["DiffusionConfig", "DiffusionSchedule", "EMA", "ResidualMLPDenoiser", "TransformerDenoiser",
           "fit_denoiser"]
