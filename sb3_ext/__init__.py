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
    "BatchedRewardVecEnvWrapper",
    "TextVecEnv",
    "make_text_vec_env",
    "start_model_perplexity",
    "sequence_nll",
]

_WHERE = {
    "LLMPolicy": "policy",
    "ObservationSpaceError": "policy",
    "EpisodeRolloutBuffer": "buffers",
    "EpisodeBatch": "buffers",
    "FixedKLController": "kl",
    "AdaptiveKLController": "kl",
    "kl_estimate": "kl",
    "warm_start": "warm_start",
    "load_model": "backends",
    "tiny_t5_config": "backends",
    "ModelLoadError": "backends",
    "greedy_baseline": "backends",
    "TRPO": "trpo",
    "BatchedRewardVecEnvWrapper": "batched_reward",
    "TextVecEnv": "vec_env",
    "make_text_vec_env": "vec_env",
    "start_model_perplexity": "fluency",
    "sequence_nll": "fluency",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sb3_ext' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
