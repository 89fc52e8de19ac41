"""Moved to ``lm_core.fluency`` (engine-neutral); this module re-exports it for old imports."""

from lm_core.fluency import *  # noqa: F401,F403
from lm_core.fluency import (  # noqa: F401  (explicit: the private names too)
    sequence_nll,
    start_model_perplexity,
)

__all__ = ["sequence_nll", "start_model_perplexity"]
