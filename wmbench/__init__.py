"""wmbench: which world model generates the most accurate on-policy trajectories, at what cost?"""

from wmbench.data import OfflineData
from wmbench.models.base import (
    AutoregressiveWorldModel,
    FitReport,
    Trajectories,
    WorldModel,
    available_models,
    get_model_class,
    register_model,
)
from wmbench.policy import GaussianPolicy

__all__ = [
    "AutoregressiveWorldModel",
    "FitReport",
    "GaussianPolicy",
    "OfflineData",
    "Trajectories",
    "WorldModel",
    "available_models",
    "get_model_class",
    "register_model",
]
