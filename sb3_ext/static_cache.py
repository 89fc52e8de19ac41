"""Moved to ``lm_core.static_cache`` (engine-neutral); this module re-exports it for old imports and saved models."""

from lm_core.static_cache import *  # noqa: F401,F403
from lm_core.static_cache import (  # noqa: F401  (explicit: the private names too)
    COMPILE_CHOICES,
    StaticDecodeState,
    check_compile_option,
    _Slots,
)

__all__ = ["COMPILE_CHOICES", "StaticDecodeState", "check_compile_option"]
