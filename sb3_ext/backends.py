"""Moved to ``lm_core.backends`` (engine-neutral); this module re-exports it for old imports and saved models."""

from lm_core.backends import *  # noqa: F401,F403
from lm_core.backends import (  # noqa: F401  (explicit: the private names too)
    CausalBackend,
    DecodeState,
    LMBackend,
    ModelLoadError,
    Seq2SeqBackend,
    greedy_baseline,
    load_model,
    make_backend,
    tiny_t5_config,
    _cache_kwarg,
    _check_plain_layers,
    _config_from_dict,
    _is_seq2seq,
    _out_cache,
    _self_layers,
)

__all__ = [
    "CausalBackend", "DecodeState", "LMBackend", "ModelLoadError", "Seq2SeqBackend", "greedy_baseline",
    "load_model", "make_backend", "tiny_t5_config",
]
