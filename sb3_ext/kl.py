"""Moved to ``lm_core.kl`` (engine-neutral); this module re-exports it for old imports and saved models."""

from lm_core.kl import *  # noqa: F401,F403
from lm_core.kl import (  # noqa: F401  (explicit: the private names too)
    DEFAULT_INIT_KL_COEF,
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    kl_estimate,
    make_kl_controller,
)

__all__ = [
    "DEFAULT_INIT_KL_COEF", "KL_ESTIMATORS", "AdaptiveKLController", "FixedKLController", "kl_estimate",
    "make_kl_controller",
]
