"""Diffusion machinery shared by PolyGRAD and the autoregressive diffusion baseline.

The network (a denoiser predicting x0) is separate from the sampler, so sampler settings change
without retraining: `schedule.py` (noise schedule and DDPM posterior), `denoisers.py` (residual
MLP and causal transformer), `fit.py` (the shared settings and training routine).
"""

from wmbench.models.diffusion.denoisers import ResidualMLPDenoiser, TransformerDenoiser
from wmbench.models.diffusion.fit import (
    DenoiserLoss,
    DenoiserTraining,
    DiffusionConfig,
    TrainsAsDenoiser,
    fit_denoiser,
)
from wmbench.models.diffusion.schedule import DiffusionSchedule

__all__ = ["DenoiserLoss", "DenoiserTraining", "DiffusionConfig", "DiffusionSchedule", "ResidualMLPDenoiser",
           "TrainsAsDenoiser", "TransformerDenoiser", "fit_denoiser"]
