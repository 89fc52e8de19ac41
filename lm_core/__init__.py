"""lm_core: the engine-neutral language-model core under the training-engine adapters.

What every adapter (``sb3_ext`` for Stable-Baselines3, an RLlib one beside it) needs around a Hugging Face
language model used as a token-by-token policy, with no training engine imported (no stable_baselines3,
sb3_contrib or ray; ``tests/test_layout.py`` checks it):

* ``lm_core.actor_critic``: :class:`LMActorCritic`, the language model as an actor-critic over tokens that SB3's
  ``LLMPolicy`` and RLlib's ``LMRLModule`` share (next-token outputs through the decode cache, teacher-forced
  episode outputs, the value head, the frozen reference: :func:`frozen_copy`);
* ``lm_core.observations``: the observation contract (:func:`check_token_spaces`, :func:`check_observation`);
* ``lm_core.loading``: :func:`load_model`, :func:`tiny_t5_config`, :func:`default_model`, :func:`greedy_baseline`;
* ``lm_core.backends``: :func:`make_backend` (teacher-forced forwards and the incremental step);
  ``lm_core.decode_state``: the per-row decode cache :class:`~lm_core.decode_state.DecodeState`;
* ``lm_core.static_cache``: the preallocated, ``torch.compile``-able decode cache;
* ``lm_core.episodes``: :class:`EpisodeBatch` and the teacher-forced per-episode log-probs and outputs;
* ``lm_core.sampling``: :func:`sample_tokens`, :func:`distribution_logits` (temperature, frozen top-k/top-p
  support); ``lm_core.kl``: KL estimators and coefficient controllers;
* ``lm_core.lora``: a LoRA model's base as the frozen reference; ``lm_core.tokenizer``: a tokenizer as data;
* ``lm_core.fluency``: the start model's perplexity of generations; ``lm_core.warm_start``: supervised warm start
  (``from lm_core.warm_start import warm_start``: the package attribute ``warm_start`` is the module);
* ``lm_core.heap``: :func:`reused_heap_memory`, glibc's freed memory kept for reuse while training on CPU.

Layers: ``text_envs`` < ``lm_core`` < ``sb3_ext`` (and other adapters) < ``text_envs_app``.
Heavy dependencies (torch, transformers) load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "LMActorCritic",
    "frozen_copy",
    "check_token_spaces",
    "check_observation",
    "ObservationSpaceError",
    "sequence_kl",
    "load_model",
    "tiny_t5_config",
    "default_model",
    "make_backend",
    "ModelLoadError",
    "LMBackend",
    "DecodeState",
    "StaticDecodeState",
    "greedy_baseline",
    "EpisodeBatch",
    "teacher_forced_outputs",
    "sequence_log_probs",
    "sample_tokens",
    "support_mask",
    "distribution_logits",
    "kl_estimate",
    "FixedKLController",
    "AdaptiveKLController",
    "make_kl_controller",
    "LoraReference",
    "start_model_perplexity",
    "sequence_nll",
    "supervised_examples",
    "reused_heap_memory",
]

_WHERE = {
    "LMActorCritic": "actor_critic",
    "frozen_copy": "actor_critic",
    "check_token_spaces": "observations",
    "check_observation": "observations",
    "ObservationSpaceError": "observations",
    "sequence_kl": "kl",
    "load_model": "loading",
    "tiny_t5_config": "loading",
    "default_model": "loading",
    "make_backend": "backends",
    "ModelLoadError": "loading",
    "LMBackend": "backends",
    "DecodeState": "decode_state",
    "greedy_baseline": "loading",
    "StaticDecodeState": "static_cache",
    "EpisodeBatch": "episodes",
    "teacher_forced_outputs": "episodes",
    "sequence_log_probs": "episodes",
    "sample_tokens": "sampling",
    "support_mask": "sampling",
    "distribution_logits": "sampling",
    "kl_estimate": "kl",
    "FixedKLController": "kl",
    "AdaptiveKLController": "kl",
    "make_kl_controller": "kl",
    "LoraReference": "lora",
    "start_model_perplexity": "fluency",
    "sequence_nll": "fluency",
    "supervised_examples": "warm_start",
    "reused_heap_memory": "heap",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lm_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
