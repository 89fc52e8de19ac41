"""RLOO: REINFORCE with the leave-one-out baseline over each prompt's group of texts."""

from __future__ import annotations

from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError, unknown_name

from .base import Episode
from .policy_gradient import PolicyGradientAlgorithm, leave_one_out_advantages

__all__ = ["RLOO"]


class RLOO(PolicyGradientAlgorithm):
    """REINFORCE Leave-One-Out (Ahmadian et al. 2024) with the names and defaults of TRL's ``RLOOConfig``.

    A text's advantage is its reward minus the mean reward of the other ``k - 1`` texts of its prompt (``k``: the
    env's ``group_size``, TRL's ``num_generations``); the text's KL to the start model (``beta``, k1 summed over its
    tokens) is subtracted from its reward first, as TRL does (``kl_mode="reward"``). The loss is the clipped surrogate
    of :mod:`sb3_ext.algorithms.policy_gradient` (with one epoch, REINFORCE's). ``kl_mode="exact"`` estimates the same
    gradient with less noise: each token is credited with its text's reward minus the KL of the tokens after it, and
    the KL at the token enters the loss exactly over the vocabulary (on the main job, with ``n_epochs=2``, it took
    about 0.82 of the achievable objective gain over two seeds where ``"reward"`` with one epoch took 0.69:
    guides/main_job.md).

    :param policy: ``LLMPolicy``
    :param env: a :func:`sb3_ext.make_text_vec_env` env with ``group_size >= 2``
    :param learning_rate: TRL's default 1e-6
    :param num_generations: texts per prompt, checked against the env's ``group_size`` (``None``: the env's)
    :param beta: KL coefficient (TRL's RLOO default 0.05; 0: no reference model)
    :param normalize_advantages: divide the advantages by the batch's standard deviation (TRL's, off; not with
        ``kl_mode="exact"``, whose exact KL term is in reward units)
    :param kl_mode: ``"reward"`` (TRL's) or ``"exact"`` (see above and :mod:`sb3_ext.algorithms.policy_gradient`)
    :param epsilon: ratio clip
    :param loss_type: see :mod:`sb3_ext.algorithms.policy_gradient` (``"dapo"``)
    :param kwargs: see :class:`~sb3_ext.algorithms.base.GroupRolloutAlgorithm`
    """

    KL_MODES_RLOO = ("reward", "exact")

    def __init__(self, policy: Any, env: Any, learning_rate: Any = 1e-6, num_generations: int | None = None,
                 beta: float = 0.05, normalize_advantages: bool = False, epsilon: float = 0.2,
                 epsilon_high: float | None = None, loss_type: str = "dapo", kl_mode: str = "reward",
                 **kwargs: Any) -> None:
        if kl_mode not in self.KL_MODES_RLOO:
            raise unknown_name("RLOO kl_mode", kl_mode, self.KL_MODES_RLOO)
        if kl_mode == "exact" and normalize_advantages:
            raise TextEnvsError("RLOO(kl_mode='exact') adds the exact KL to the loss in reward units, which "
                                "normalize_advantages would put out of scale with the advantages: use one of them")
        self.normalize_advantages = bool(normalize_advantages)
        self.num_generations = num_generations
        super().__init__(policy, env, learning_rate=learning_rate, beta=beta, kl_mode=kl_mode, epsilon=epsilon,
                         epsilon_high=epsilon_high, loss_type=loss_type, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        self._require_groups(self.num_generations, "RLOO's baseline is the other texts of the prompt")

    def sequence_advantages(self, rewards: np.ndarray, groups: list[list[Episode]]) -> np.ndarray:
        advantages = leave_one_out_advantages(rewards)
        if self.normalize_advantages:
            advantages = advantages / (advantages.std() + 1e-4)
        return advantages
