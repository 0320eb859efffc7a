"""Every config section, collected. Each is declared beside the code it configures (`data`,
`policy`, `evaluate`, `rl`, `imagination`, `ppo`, and each registered model's own); `config` imports
none of them, so whoever reads a profile or `--set` that may name any section (the commands, a
sweep's workers) imports this module first."""

from __future__ import annotations

import wmbench.evaluate  # noqa: F401 - data, policy, evaluate
import wmbench.rl  # noqa: F401 - rl, imagination, ppo
from wmbench.models.base import available_models

available_models()  # registers the built-in models and those of installed extension packages
