"""GRPO: group-normalised advantages with TRL's losses (``loss_type`` "dapo", "grpo", "dr_grpo")."""

from __future__ import annotations

from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError

from .base import Episode
from .policy_gradient import PolicyGradientAlgorithm, group_advantages

__all__ = ["GRPO"]


class GRPO(PolicyGradientAlgorithm):
    """Group Relative Policy Optimization on text envs, with the names and defaults of TRL's ``GRPOConfig``.

    Each prompt is written ``k`` times (the env's ``group_size``: ``make_text_vec_env(..., group_size=k)``, TRL's
    ``num_generations``); a text's advantage is its reward minus its group's mean, scaled by ``scale_rewards``; the
    loss is the clipped surrogate of :mod:`sb3_ext.algorithms.policy_gradient`. No value head, no critic.

    :param policy: ``LLMPolicy``
    :param env: a :func:`sb3_ext.make_text_vec_env` env with ``group_size >= 2``
    :param learning_rate: TRL's default 1e-6 (a tiny model from a config wants ~1e-3)
    :param num_generations: texts per prompt, checked against the env's ``group_size`` (``None``: the env's)
    :param scale_rewards: ``"group"`` (divide by the group's std, GRPO), ``"batch"`` (the batch's std) or ``"none"``
        (Dr. GRPO)
    :param loss_type: ``"dapo"`` (token-level mean, TRL's default), ``"grpo"`` (per-text mean) or ``"dr_grpo"``
        (constant normaliser ``texts * max_new_tokens``)
    :param beta: KL coefficient to the start model (TRL's default 0.0: no reference model)
    :param kl_mode: ``"loss"`` (``beta * k3`` in the loss, TRL's), ``"reward"`` (the text's KL off its reward) or
        ``"exact"`` (as ``"reward"`` with less noise, :mod:`sb3_ext.algorithms.policy_gradient`; with
        ``scale_rewards="none"``)
    :param epsilon: ratio clip (0.2); ``epsilon_high`` the upper one (DAPO: 0.28)
    :param n_epochs: TRL's ``num_iterations`` (1)
    :param kwargs: see :class:`~sb3_ext.algorithms.policy_gradient.PolicyGradientAlgorithm` and
        :class:`~sb3_ext.algorithms.base.GroupRolloutAlgorithm`
    """

    def __init__(self, policy: Any, env: Any, learning_rate: Any = 1e-6, num_generations: int | None = None,
                 scale_rewards: str = "group", loss_type: str = "dapo", beta: float = 0.0, kl_mode: str = "loss",
                 epsilon: float = 0.2, epsilon_high: float | None = None, **kwargs: Any) -> None:
        if kl_mode == "token":
            raise TextEnvsError("GRPO's kl_mode is 'loss', 'reward' or 'exact' (per-token shaping is REINFORCE's)")
        if kl_mode == "exact" and scale_rewards != "none":
            raise TextEnvsError(f"GRPO(kl_mode='exact') adds the exact KL to the loss in reward units: it needs "
                                f"unscaled advantages, scale_rewards='none' (got {scale_rewards!r})")
        group_advantages(np.zeros((1, 2)), scale_rewards)  # validates the name before the model is built
        self.scale_rewards = scale_rewards
        self.num_generations = num_generations
        super().__init__(policy, env, learning_rate=learning_rate, beta=beta, kl_mode=kl_mode, epsilon=epsilon,
                         epsilon_high=epsilon_high, loss_type=loss_type, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        self._require_groups(self.num_generations, "GRPO compares the texts of a prompt")

    def sequence_advantages(self, rewards: np.ndarray, groups: list[list[Episode]]) -> np.ndarray:
        return group_advantages(rewards, self.scale_rewards)
