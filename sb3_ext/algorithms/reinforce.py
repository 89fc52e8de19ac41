"""REINFORCE with a baseline: the greedy text's reward (ReMax / self-critical), the batch mean, or none."""

from __future__ import annotations

from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError, unknown_name

from .base import Episode, native_vec_env
from .policy_gradient import PolicyGradientAlgorithm

__all__ = ["REINFORCE", "BASELINES"]

BASELINES = ("greedy", "batch", "none")


class REINFORCE(PolicyGradientAlgorithm):
    """REINFORCE on whole texts: advantage = the text's reward minus a baseline, per-token KL shaping.

    Baselines: ``"greedy"``: the reward of the current policy's greedy text for the same prompt (ReMax, Li et al.
    2023; self-critical sequence training with the start model if you set the env's ``baseline_fn`` yourself and
    pass ``update_greedy=False``); needs ``make_text_vec_env(..., baseline=True)``, whose
    :class:`~text_envs.wrappers.vector.VectorBaseline` decodes and scores the greedy texts in batches, so a task with a text
    reward (not ``TextCopy-v0``, paid per token). ``"batch"``: the mean reward of the update's texts
    (REINFORCE++-baseline style). ``"none"``: the reward itself. With ``beta > 0`` each token's advantage also pays
    ``beta`` times the KL (k1) to the start model from that token to the text's end (REINFORCE++'s per-token KL in
    the reward, discount 1). No group is needed (``group_size`` 1 is fine; larger groups work too).

    :param policy: ``LLMPolicy``
    :param env: a :func:`sb3_ext.make_text_vec_env` env (``baseline=True`` for ``"greedy"``)
    :param baseline: ``"greedy"``, ``"batch"`` or ``"none"``
    :param beta: per-token KL shaping coefficient (0: none, no reference model)
    :param normalize_advantages: divide the advantages by the batch's standard deviation (REINFORCE++)
    :param update_greedy: ``"greedy"``: decode the baseline with the current weights, renewed after each update
        (ReMax); False: keep the env's own ``baseline_fn`` (e.g. the start model's: self-critical)
    :param learning_rate: 1e-5
    :param kwargs: see :class:`~sb3_ext.algorithms.policy_gradient.PolicyGradientAlgorithm`
    """

    def __init__(self, policy: Any, env: Any, baseline: str = "batch", beta: float = 0.0,
                 normalize_advantages: bool = False, update_greedy: bool = True, learning_rate: Any = 1e-5,
                 **kwargs: Any) -> None:
        if baseline not in BASELINES:
            raise unknown_name("baseline", baseline, BASELINES)
        self.baseline, self.normalize_advantages = baseline, bool(normalize_advantages)
        self.update_greedy = bool(update_greedy)
        kwargs.setdefault("loss_type", "dapo")
        super().__init__(policy, env, learning_rate=learning_rate, beta=beta, kl_mode="token", **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.env is not None and self.baseline == "greedy":
            native = native_vec_env(self.env)
            if native is None or native.baseline is None:
                raise TextEnvsError("REINFORCE(baseline='greedy') reads the greedy text's reward from the env: build "
                                    "it with make_text_vec_env(env_id, n_envs, baseline=True) (a task with a text "
                                    "reward), or use baseline='batch'")
            self._set_greedy_fn()

    def _set_greedy_fn(self) -> None:
        if not self.update_greedy:
            return
        from lm_core.backends import greedy_baseline

        native = native_vec_env(self.env)
        venv = native.venv
        # setting the function (again) drops the cached greedy texts: they follow the weights after each update
        native.baseline.baseline_fn = greedy_baseline(self.policy.model, venv.eos_token_id, venv.pad_token_id,
                                                      venv.max_new_tokens)

    def after_update(self) -> None:
        if self.baseline == "greedy" and self.env is not None:
            self._set_greedy_fn()

    def sequence_advantages(self, rewards: np.ndarray, groups: list[list[Episode]]) -> np.ndarray:
        if self.baseline == "greedy":
            base = np.array([[ep["baseline"] for ep in g] for g in groups], dtype=np.float64)
            if np.isnan(base).any():
                raise TextEnvsError("a finished text has no baseline reward: build the env with baseline=True")
            advantages = rewards - base
        elif self.baseline == "batch":
            advantages = rewards - rewards.mean()
        else:
            advantages = rewards.copy()
        if self.normalize_advantages:
            advantages = advantages / (advantages.std() + 1e-4)
        return advantages
