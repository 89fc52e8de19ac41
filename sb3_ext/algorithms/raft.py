"""RAFT / expert iteration: supervised steps on the best-rewarded of each prompt's own samples."""

from __future__ import annotations

from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError

from .base import Episode, GroupRolloutAlgorithm

__all__ = ["RAFT", "raft_selection"]


def raft_selection(rewards: np.ndarray, keep_top: int | None, reward_threshold: float | None) -> np.ndarray:
    """Which texts RAFT trains on (G, k) bool: the ``keep_top`` best of each group (ties: the earlier text first),
    and of those (or of all, with ``keep_top=None``) only the ones whose reward is at least ``reward_threshold``."""
    rewards = np.asarray(rewards, dtype=np.float64)
    keep = np.ones(rewards.shape, dtype=bool)
    if keep_top is not None:
        order = np.argsort(-rewards, axis=1, kind="stable")
        keep = np.zeros(rewards.shape, dtype=bool)
        np.put_along_axis(keep, order[:, :keep_top], True, axis=1)
    if reward_threshold is not None:
        keep &= rewards >= reward_threshold
    return keep


class RAFT(GroupRolloutAlgorithm):
    """Reward-rAnked FineTuning (Dong et al. 2023; also called expert iteration, rejection-sampling fine-tuning,
    ReST's improve step): sample ``k`` texts per prompt (the env's ``group_size``), keep the ``keep_top`` best by
    reward (and/or those with reward >= ``reward_threshold``), and take supervised steps on them (teacher-forced
    negative log-likelihood, the mean over the kept tokens), ``n_epochs`` passes in minibatches of ``batch_size``
    texts. The sampled tokens count against ``total_timesteps`` exactly as for the RL methods (every env step).

    :param policy: ``LLMPolicy``
    :param env: a :func:`sb3_ext.make_text_vec_env` env; ``group_size=k`` gives k samples per prompt (1 with a
        threshold: filtered sampling)
    :param keep_top: texts kept per prompt (``None``: no rank cut, the threshold alone)
    :param reward_threshold: minimum reward of a kept text (``None``: no threshold)
    :param learning_rate: 1e-5
    :param kwargs: see :class:`~sb3_ext.algorithms.base.GroupRolloutAlgorithm`
    """

    def __init__(self, policy: Any, env: Any, keep_top: int | None = 1, reward_threshold: float | None = None,
                 learning_rate: Any = 1e-5, **kwargs: Any) -> None:
        if keep_top is None and reward_threshold is None:
            raise TextEnvsError("RAFT needs keep_top (texts kept per prompt) or reward_threshold (or both)")
        if keep_top is not None and keep_top < 1:
            raise TextEnvsError(f"expected keep_top >= 1, got {keep_top}")
        self.keep_top, self.reward_threshold = keep_top, reward_threshold
        super().__init__(policy, env, learning_rate=learning_rate, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.env is not None and self.keep_top is not None and self.keep_top > self.group_size:
            raise TextEnvsError(f"keep_top={self.keep_top} of groups of {self.group_size}: build the env with "
                                f"make_text_vec_env(..., group_size=k), k > keep_top, or lower keep_top")

    def train_groups(self, groups: list[list[Episode]]) -> None:
        rewards = np.array([[ep["reward"] for ep in g] for g in groups], dtype=np.float64)
        keep = raft_selection(rewards, self.keep_top, self.reward_threshold)
        kept = [ep for g, row in zip(groups, keep) for ep, k in zip(g, row) if k]
        self.logger.record("train/kept_fraction", float(keep.mean()))
        if not kept:
            return
        self.logger.record("train/kept_reward_mean", float(rewards[keep].mean()))
        losses = []
        for _ in range(self.n_epochs):
            for mb in self.minibatches(len(kept)):
                log_prob, _, _ = self.episode_log_probs([kept[i] for i in mb])
                loss = -log_prob.mean()
                self.optimizer_step(loss)
                losses.append(float(loss.detach()))
        self.logger.record("train/nll", float(np.mean(losses)))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
