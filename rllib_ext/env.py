"""The text envs as RLlib env runners see them: an env class over the native vector env.

RLlib's ``SingleAgentEnvRunner`` builds ``config.env(env_context)`` in every runner process. With
``gym_env_vectorize_mode=VECTOR_ENTRY_POINT`` (set by :func:`rllib_ext.algorithm_config`) it asks for all
``num_envs_per_env_runner`` envs at once, and :class:`TextVectorEnv` is the task's native vector env
(:func:`text_envs.make_vector_env`: the episodes of ``gym.make`` stepped as arrays, Gymnasium's ``NEXT_STEP``
auto-reset that RLlib expects). With a per-prompt baseline it is wrapped in
:class:`text_envs.wrappers.vector.SelfCriticalVectorReward` whose ``baseline_fn`` is the frozen start model's greedy decoding
(:func:`lm_core.backends.greedy_baseline`), built in the runner process (the same start weights as the module's,
see :func:`start_model`): the SB3 runs' ``attach_baseline``, per runner.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch as th
from torch import nn

from lm_core.backends import default_model, load_model
from text_envs.errors import TextEnvsError, unknown_name

__all__ = ["TextVectorEnv", "env_config", "BASELINES", "check_env_id", "start_model", "uses_baseline"]

BASELINES = ("auto", "greedy", "none")


def check_env_id(env_id: str) -> str:
    """The registered text env id (``"TextCopy-v0"``; ``"text_envs:TextCopy-v0"`` accepted), or an error naming
    the accepted ids."""
    from text_envs import ENV_IDS

    if not isinstance(env_id, str):
        raise TextEnvsError(f"expected a text env id (a string, one of {sorted(ENV_IDS)}), got {type(env_id).__name__}")
    name = env_id.split(":", 1)[1] if env_id.startswith("text_envs:") else env_id
    if name not in ENV_IDS:
        raise unknown_name("text env id", env_id, ENV_IDS)
    return name


def start_model(model: Any, vocab_size: int, seed: int = 0) -> tuple[nn.Module, Any]:
    """The start model of a run, the same weights in every process: ``model=None`` is
    :func:`lm_core.backends.default_model`, anything else goes to :func:`lm_core.backends.load_model`; weights
    initialised at random (a config, the tiny default) are drawn from a generator seeded with ``seed``.

    :return: (model in eval mode, its tokenizer when known, else ``None``)
    """
    with th.random.fork_rng(devices=[]):
        th.manual_seed(int(seed))
        lm, tokenizer = default_model(vocab_size) if model is None else (load_model(model), None)
    return lm.eval(), tokenizer


def env_config(env_id: str, env_kwargs: dict[str, Any] | None = None, baseline: str = "auto", model: Any = None,
               model_seed: int = 0) -> dict[str, Any]:
    """The ``config.env_config`` of :class:`TextVectorEnv`, checked (see its parameters)."""
    if baseline not in BASELINES:
        raise unknown_name("baseline", baseline, BASELINES)
    return {"env_id": check_env_id(env_id), "env_kwargs": dict(env_kwargs or {}), "baseline": baseline,
            "model": model, "model_seed": int(model_seed)}


def uses_baseline(env: Any, baseline: str) -> bool:
    """Whether episodes of ``env`` (a single text env) get the greedy per-prompt baseline under ``baseline``."""
    has_text_reward = getattr(env.unwrapped, "reward", None) is not None
    if baseline == "greedy" and not has_text_reward:
        raise TextEnvsError(
            f"baseline='greedy' needs a task that scores finished texts; {env.spec.id if env.spec else env} has "
            "per-token rewards only. Use baseline='auto' or 'none'.")
    return baseline == "greedy" or (baseline == "auto" and has_text_reward)


class TextVectorEnv(gym.vector.VectorWrapper):
    """``config.env`` of an RLlib run on a text env: the task's native vector env, built from ``config.env_config``
    in every env-runner process (RLlib calls the class with an ``EnvContext``; a class, not a registered name, so a
    checkpoint restores in a fresh process without registering anything).

    ``env_config`` keys (:func:`env_config` builds them):

    * ``env_id``: a registered text env id; ``env_kwargs``: the task's keyword arguments (``gym.make(env_id, **kw)``);
    * ``baseline``: ``"auto"`` (a greedy per-prompt baseline when the task scores finished texts, none on per-token
      tasks such as TextCopy-v0), ``"greedy"`` (always; an error on a task without a text reward) or ``"none"``;
    * ``model``, ``model_seed``: the start model (as :func:`start_model`), whose greedy decoding is the baseline;
    * ``num_envs``: rows (RLlib adds it: ``num_envs_per_env_runner``; 1 when absent).
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        from text_envs import make_vector_env

        cfg = dict(config or {})
        if "env_id" not in cfg:
            raise TextEnvsError("TextVectorEnv needs env_config={'env_id': ...}: build the config with "
                                "rllib_ext.algorithm_config")
        env_id = check_env_id(cfg["env_id"])
        venv: Any = make_vector_env(env_id, int(cfg.get("num_envs") or 1), **dict(cfg.get("env_kwargs") or {}))
        single = venv.single_env
        if uses_baseline(single, cfg.get("baseline", "auto")):
            from lm_core.backends import greedy_baseline
            from text_envs.wrappers.vector import SelfCriticalVectorReward

            lm, _ = start_model(cfg.get("model"), int(venv.single_action_space.n), int(cfg.get("model_seed", 0)))
            venv = SelfCriticalVectorReward(venv, baseline_fn=greedy_baseline(
                lm, single.eos_token_id, single.pad_token_id, single.max_new_tokens))
        super().__init__(venv)

    @property
    def tokenizer(self) -> Any:
        """The env's tokenizer."""
        return self.env.unwrapped.single_env.tokenizer
