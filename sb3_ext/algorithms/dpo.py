"""DPO on pairs ranked by the env's reward: the best and the worst of each prompt's samples."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F

from text_envs.errors import TextEnvsError

from .base import Episode, GroupRolloutAlgorithm

__all__ = ["DPO", "preference_pairs", "dpo_loss"]


def preference_pairs(rewards: np.ndarray) -> list[tuple[int, int, int]]:
    """(group, chosen, rejected) of each group whose rewards differ: its best text (the first of equals) and its
    worst (the last of equals); a group of equal rewards states no preference and gives no pair."""
    pairs = []
    for g, row in enumerate(np.asarray(rewards, dtype=np.float64)):
        best = int(np.argmax(row))
        worst = len(row) - 1 - int(np.argmin(row[::-1]))
        if row[best] > row[worst]:
            pairs.append((g, best, worst))
    return pairs


def dpo_loss(chosen: th.Tensor, rejected: th.Tensor, ref_chosen: th.Tensor, ref_rejected: th.Tensor,
             beta: float) -> tuple[th.Tensor, th.Tensor]:
    """DPO's sigmoid loss (the mean over pairs) and each pair's implicit reward margin, from the texts' summed
    log-probs under the policy and the reference (each (M,))."""
    margin = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
    return -F.logsigmoid(margin).mean(), margin


class DPO(GroupRolloutAlgorithm):
    """Direct Preference Optimization (Rafailov et al. 2023) with pairs the env's reward ranks.

    Each prompt is sampled ``k`` times (the env's ``group_size``, k >= 2); its best and worst texts by reward are a
    (chosen, rejected) pair (no pair when all rewards are equal). The reference is the frozen start model; the loss
    is TRL's ``"sigmoid"`` one with ``beta``. ``online=True`` samples the pairs from the current policy each rollout
    (online DPO); ``online=False`` samples them from the start model every rollout (offline DPO: the data never
    depends on the trained weights; the start weights are swapped in for the rollout). Generated tokens count
    against ``total_timesteps`` as for the RL methods.

    :param policy: ``LLMPolicy`` (not LoRA with ``online=False``)
    :param env: a :func:`sb3_ext.make_text_vec_env` env with ``group_size >= 2``
    :param beta: DPO's temperature (TRL's 0.1)
    :param online: sample pairs from the current policy (True) or from the start model (False)
    :param learning_rate: TRL's 1e-6
    :param kwargs: see :class:`~sb3_ext.algorithms.base.GroupRolloutAlgorithm` (``batch_size`` counts pairs)
    """

    def __init__(self, policy: Any, env: Any, beta: float = 0.1, online: bool = True, learning_rate: Any = 1e-6,
                 **kwargs: Any) -> None:
        if not beta > 0:
            raise TextEnvsError(f"expected beta > 0, got {beta}")
        self.beta, self.online = float(beta), bool(online)
        super().__init__(policy, env, learning_rate=learning_rate, reference=True, reference_coef=self.beta, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.env is not None and self.group_size < 2:
            raise TextEnvsError("DPO pairs texts of one prompt: build the env with make_text_vec_env(env_id, n_envs, "
                                "group_size=k), k >= 2 dividing n_envs")
        if not self.online and self.policy.lora is not None:
            raise TextEnvsError("DPO(online=False) swaps the start weights in for sampling, which a LoRA policy "
                                "does not hold as a copy: use online=True with LoRA")
        self._trained_weights: dict[str, th.Tensor] | None = None

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_trained_weights"]

    def on_rollout_start(self) -> None:
        if not self.online:  # after the checkpoint callback: a checkpoint holds the trained weights, never these
            model = self.policy.model
            self._trained_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(self.policy.reference_model.state_dict())

    def collect_rollouts(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return super().collect_rollouts(*args, **kwargs)
        finally:  # also on an interrupt mid-rollout: the trained weights are what gets saved
            if self._trained_weights is not None:
                self.policy.model.load_state_dict(self._trained_weights)
                self._trained_weights = None

    def train_groups(self, groups: list[list[Episode]]) -> None:
        rewards = np.array([[ep["reward"] for ep in g] for g in groups], dtype=np.float64)
        pairs = preference_pairs(rewards)
        self.logger.record("train/pairs", len(pairs))
        if not pairs:
            return
        chosen = [groups[g][c] for g, c, _ in pairs]
        rejected = [groups[g][r] for g, _, r in pairs]
        M = len(pairs)
        ref = self._sequence_sums(self.reference_log_probs(chosen + rejected), chosen + rejected)  # (2M,)
        losses, margins = [], []
        for _ in range(self.n_epochs):
            for mb in self.minibatches(M):
                texts = [chosen[i] for i in mb] + [rejected[i] for i in mb]
                log_prob, _, batch = self.episode_log_probs(texts)
                seq = th.zeros(len(texts), dtype=log_prob.dtype, device=self.device).index_add_(
                    0, batch.out_episode, log_prob)
                idx = th.as_tensor(mb, device=self.device)
                loss, margin = dpo_loss(seq[: len(mb)], seq[len(mb):], ref[idx], ref[M + idx], self.beta)
                self.optimizer_step(loss)
                losses.append(float(loss.detach()))
                margins.append(margin.detach())
        margin = th.cat(margins)
        self.logger.record("train/loss", float(np.mean(losses)))
        self.logger.record("train/reward_margin", float(margin.mean()))
        self.logger.record("train/accuracy", float((margin > 0).float().mean()))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _sequence_sums(self, token_values: th.Tensor, episodes: list[Episode]) -> th.Tensor:
        lengths = th.as_tensor([len(ep["tokens"]) for ep in episodes], device=token_values.device)
        owner = th.repeat_interleave(th.arange(len(episodes), device=token_values.device), lengths)
        return th.zeros(len(episodes), dtype=token_values.dtype, device=token_values.device).index_add_(
            0, owner, token_values)
