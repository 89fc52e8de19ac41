"""sb3_ext: the Stable-Baselines3 adapter of text-envs (a language model as an SB3 actor-critic).

Typical use with the stock algorithms::

    from stable_baselines3 import PPO
    from sb3_ext import LLMPolicy, EpisodeRolloutBuffer
    model = PPO(LLMPolicy, env, rollout_buffer_class=EpisodeRolloutBuffer, batch_size=512,
                policy_kwargs=dict(model=..., tokenizer=env.unwrapped.tokenizer, kl_coef=0.05))

The natively vectorized envs as an SB3 ``VecEnv`` (N episodes stepped as arrays, the same episodes as
``DummyVecEnv`` over single envs)::

    from sb3_ext import make_text_vec_env
    env = make_text_vec_env("TextSummarization-v0", n_envs=16, seed=0)

The engine-neutral language-model core (model loading, the decode caches, KL, fluency, warm start) lives in
``lm_core``; the names above are re-exported from there, and ``sb3_ext.backends``, ``sb3_ext.kl``,
``sb3_ext.static_cache`` and ``sb3_ext.fluency`` still resolve every name, with a ``FutureWarning`` (removed in 0.3.0).

Heavy dependencies (torch, transformers, stable-baselines3) load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "LLMPolicy",
    "ObservationSpaceError",
    "EpisodeRolloutBuffer",
    "EpisodeBatch",
    "FixedKLController",
    "AdaptiveKLController",
    "kl_estimate",
    "warm_start",
    "load_model",
    "tiny_t5_config",
    "ModelLoadError",
    "greedy_baseline",
    "TRPO",
    "GRPO",
    "RLOO",
    "REINFORCE",
    "RAFT",
    "DPO",
    "BatchedRewardVecEnvWrapper",
    "TextVecEnv",
    "make_text_vec_env",
    "start_model_perplexity",
    "sequence_nll",
]

# name -> module that defines it (the engine-neutral parts live in lm_core; sb3_ext re-exports them)
_WHERE = {
    "LLMPolicy": "sb3_ext.policy",
    "ObservationSpaceError": "sb3_ext.policy",
    "EpisodeRolloutBuffer": "sb3_ext.buffers",
    "EpisodeBatch": "lm_core.episodes",
    "FixedKLController": "lm_core.kl",
    "AdaptiveKLController": "lm_core.kl",
    "kl_estimate": "lm_core.kl",
    "warm_start": "sb3_ext.warm_start",  # lm_core's, also taking an SB3 VecEnv
    "load_model": "lm_core.backends",
    "tiny_t5_config": "lm_core.backends",
    "ModelLoadError": "lm_core.backends",
    "greedy_baseline": "lm_core.backends",
    "TRPO": "sb3_ext.trpo",
    "GRPO": "sb3_ext.algorithms",  # the group algorithms: docs/guides/algorithms.md
    "RLOO": "sb3_ext.algorithms",
    "REINFORCE": "sb3_ext.algorithms",
    "RAFT": "sb3_ext.algorithms",
    "DPO": "sb3_ext.algorithms",
    "BatchedRewardVecEnvWrapper": "sb3_ext.batched_reward",
    "TextVecEnv": "sb3_ext.vec_env",
    "make_text_vec_env": "sb3_ext.vec_env",
    "start_model_perplexity": "lm_core.fluency",
    "sequence_nll": "lm_core.fluency",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sb3_ext' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
