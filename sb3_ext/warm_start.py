"""Supervised warm start for SB3: :func:`lm_core.warm_start.warm_start`, also taking an SB3 ``VecEnv``.

    from sb3_ext import warm_start
    model = PPO(LLMPolicy, env, ...)
    warm_start(model.policy, env, epochs=3)   # then model.learn(...)

The code lives in ``lm_core.warm_start`` (engine-neutral); this module reads a ``VecEnv``'s examples from its
first sub-env and keeps the old import path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from lm_core.warm_start import example_source
from lm_core.warm_start import supervised_examples as _supervised_examples
from lm_core.warm_start import warm_start as _warm_start

__all__ = ["warm_start", "supervised_examples", "example_source"]


class _VecEnvExamples:
    """The example-source interface of a VecEnv's first sub-env (through ``env_method``/``get_attr``)."""

    def __init__(self, venv: VecEnv) -> None:
        self._venv = venv

    @property
    def num_examples(self) -> int:
        return self._venv.get_attr("num_examples", indices=0)[0]

    @property
    def tokenizer(self) -> Any:
        return self._venv.get_attr("tokenizer", indices=0)[0]

    def example_text(self, i: int) -> tuple[str, list[str]]:
        return self._venv.env_method("example_text", i, indices=0)[0]

    def encode_prompt(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        return self._venv.env_method("encode_prompt", text, indices=0)[0]


def _source(env: Any) -> Any:
    return _VecEnvExamples(env) if isinstance(env, VecEnv) else env


def supervised_examples(
    policy: Any, env: Any, max_examples: int | None = None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`lm_core.warm_start.supervised_examples`; ``env`` may also be an SB3 ``VecEnv``."""
    return _supervised_examples(policy, _source(env), max_examples)


def warm_start(
    policy: Any,
    env: Any,
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    max_examples: int | None = None,
    update_reference: bool = True,
    seed: int = 0,
    verbose: int = 0,
    max_seconds: float | None = None,
) -> list[float]:
    """:func:`lm_core.warm_start.warm_start` (the same parameters); ``env`` may also be an SB3 ``VecEnv``.

    :return: mean token loss (nats) of each epoch (the last one may be partial)
    """
    return _warm_start(policy, _source(env), epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                       max_examples=max_examples, update_reference=update_reference, seed=seed, verbose=verbose,
                       max_seconds=max_seconds)
