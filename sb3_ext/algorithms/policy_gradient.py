"""The critic-free policy-gradient update shared by GRPO, RLOO and REINFORCE, and its pure maths.

Each text ``i`` gets a sequence advantage ``A_i`` (the subclass's baseline), each of its tokens ``t`` the advantage
``A_it`` (``A_i``, minus a KL-to-go under per-token shaping; plus the KL already paid before it under
``kl_mode="exact"``), and the loss is TRL's clipped surrogate::

    r_it = exp(log pi(a_it) - log pi_old(a_it))        pi_old: the policy that sampled the text
    l_it = -min(r_it * A_it, clip(r_it, 1 - epsilon, 1 + epsilon_high) * A_it)  (+ beta * k3_it as a loss term)
                                                     (kl_mode "exact": + beta * KL_t, exact over the vocabulary)

aggregated by ``loss_type``: ``"grpo"`` the mean over texts of each text's token mean; ``"dr_grpo"`` the sum over
tokens divided by ``texts * max_new_tokens`` (a constant normaliser: Dr. GRPO); ``"dapo"`` the mean over all the
minibatch's tokens (token-level, TRL's default). With one epoch and one minibatch ``r_it`` is 1 up to float error
(the rollout's cached log-probs against the update's teacher-forced ones) and the loss is REINFORCE's.
No value head is trained.

``kl_mode="exact"`` estimates the gradient of ``E[r] - beta * KL`` as ``"reward"`` does, with less noise: the
text's reward pays its KL (k1, from the sampled tokens) before the advantages, but each token ``t`` is credited only
with the KL of the tokens after it (the KL up to ``t`` is added back to its advantage: a token cannot change what
was sampled before it), and the KL at ``t`` itself enters the loss exactly, ``KL(pi(.|s_t) || ref(.|s_t))`` summed
over the vocabulary, with its gradient through the policy's distribution at ``s_t``. In expectation the gradient
is the same as ``"reward"``'s (the score-function term of the KL at ``t``, whose expectation is the exact term's
gradient, is replaced by that gradient); its noise is that of the rewards and of the later tokens' KL only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th

from lm_core.episodes import EpisodeBatch, trimmed_tokens
from lm_core.kl import kl_estimate
from text_envs.errors import TextEnvsError, unknown_name

from .base import Episode, GroupRolloutAlgorithm, episode_batch
from .kl_anchor import KLAnchor

__all__ = ["PolicyGradientAlgorithm", "LOSS_TYPES", "group_advantages", "leave_one_out_advantages",
           "clipped_surrogate", "aggregate_loss", "kl_to_go", "kl_shaping"]

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")
_STD_EPS = 1e-4  # TRL's: a group of equal rewards gets advantage 0, not 0/0
EXACT_REFERENCE_BUDGET = 256 * 2**20
"""Bytes of the start model's (N, V) log-probabilities that ``kl_mode="exact"`` keeps from the rollout's reference
forward for the update (the main job: about 2,000 tokens x 6,000 = 48 MiB); past it the update runs the reference
again for each minibatch."""


def group_advantages(rewards: np.ndarray, scale_rewards: str = "group") -> np.ndarray:
    """GRPO's advantages (G, k): each reward minus its group's mean, divided by the group's standard deviation
    (``"group"``), the whole batch's (``"batch"``) or nothing (``"none"``: Dr. GRPO); standard deviations are
    unbiased (Bessel), as ``torch.std`` in TRL."""
    if scale_rewards not in SCALE_REWARDS:
        raise unknown_name("scale_rewards", scale_rewards, SCALE_REWARDS)
    rewards = np.asarray(rewards, dtype=np.float64)
    centred = rewards - rewards.mean(axis=1, keepdims=True)
    if scale_rewards == "none":
        return centred
    if scale_rewards == "group":
        std = rewards.std(axis=1, ddof=1, keepdims=True) if rewards.shape[1] > 1 else np.zeros_like(centred[:, :1])
    else:
        std = np.full_like(centred[:, :1], rewards.std(ddof=1) if rewards.size > 1 else 0.0)
    return centred / (std + _STD_EPS)


def leave_one_out_advantages(rewards: np.ndarray) -> np.ndarray:
    """RLOO's advantages (G, k): each reward minus the mean of the other ``k - 1`` rewards of its group."""
    rewards = np.asarray(rewards, dtype=np.float64)
    k = rewards.shape[1]
    if k < 2:
        raise TextEnvsError("the leave-one-out baseline needs groups of at least 2 texts: build the env with "
                            "make_text_vec_env(..., group_size=2 or more)")
    return rewards - (rewards.sum(axis=1, keepdims=True) - rewards) / (k - 1)


def kl_to_go(token_kl: np.ndarray) -> np.ndarray:
    """Per-token KL shaping's cost of each token of one text: the KL summed from that token to the end (L,)."""
    return np.cumsum(np.asarray(token_kl, dtype=np.float64)[::-1])[::-1]


def kl_shaping(token_kl: np.ndarray, kl_mode: str) -> np.ndarray:
    """What ``kl_mode`` adds to each token's advantage per unit of ``beta`` (L,), from the sampled tokens' KL (L,):
    ``"token"``: minus the KL from the token to the end (:func:`kl_to_go`); ``"exact"``: the KL up to and including
    the token, which the text's reward paid but the token did not cause (its own KL enters the loss exactly)."""
    if kl_mode == "token":
        return -kl_to_go(token_kl)
    if kl_mode == "exact":
        return np.cumsum(np.asarray(token_kl, dtype=np.float64))
    raise unknown_name("kl_mode with per-token shaping", kl_mode, ("token", "exact"))


def clipped_surrogate(log_prob: th.Tensor, old_log_prob: th.Tensor, advantages: th.Tensor, epsilon: float,
                      epsilon_high: float) -> tuple[th.Tensor, th.Tensor]:
    """Per-token loss (N,) of the clipped ratio, and where the clip acted (N,) bool."""
    ratio = th.exp(log_prob - old_log_prob)
    clipped = th.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon_high)
    unclipped_term, clipped_term = ratio * advantages, clipped * advantages
    return -th.min(unclipped_term, clipped_term), clipped_term < unclipped_term


def aggregate_loss(per_token: th.Tensor, out_episode: th.Tensor, n_episodes: int, loss_type: str,
                   max_new_tokens: int) -> th.Tensor:
    """The minibatch loss from per-token losses (N,) of ``n_episodes`` texts (see the module docstring)."""
    if loss_type == "dapo":
        return per_token.mean()
    if loss_type == "dr_grpo":
        return per_token.sum() / (n_episodes * max_new_tokens)
    if loss_type == "grpo":
        sums = th.zeros(n_episodes, dtype=per_token.dtype, device=per_token.device).index_add_(0, out_episode, per_token)
        lengths = th.bincount(out_episode, minlength=n_episodes).to(per_token.dtype)
        return (sums / lengths).mean()
    raise unknown_name("loss_type", loss_type, LOSS_TYPES)


class PolicyGradientAlgorithm(GroupRolloutAlgorithm):
    """Clipped-ratio policy gradient on complete groups with a subclass's advantages (see the module docstring).

    :param beta: KL coefficient to the frozen start model (0: none, and no reference model is built)
    :param kl_mode: where the KL acts: ``"loss"`` (``beta * k3`` per token in the loss, GRPO's), ``"reward"``
        (``beta * KL`` of the whole text subtracted from its reward before the advantages, RLOO's) or ``"token"``
        (per-token shaping: each token's advantage minus ``beta`` times the KL from it to the end, REINFORCE's)
        or ``"exact"`` (as ``"reward"``, with the KL at each token exact over the vocabulary in the loss and only
        the later tokens' KL in its advantage: the same gradient in expectation with less noise; see the module
        docstring; the advantages must be in reward units, not scaled)
    :param epsilon: the ratio's lower clip ``1 - epsilon`` (and upper, unless ``epsilon_high``)
    :param epsilon_high: the ratio's upper clip ``1 + epsilon_high`` (DAPO's "clip-higher"); ``None``: ``epsilon``
    :param loss_type: ``"grpo"``, ``"dr_grpo"`` or ``"dapo"`` (see the module docstring)
    :param ent_coef: entropy bonus coefficient
    :param kl_anchor: a :class:`~sb3_ext.algorithms.kl_anchor.KLAnchor`: at every optimizer step, its coefficient
        times the exact KL to the start model of a few texts on its own prompts (prompts beyond the training env's,
        where the KL in the reward does not act) is added to the loss; None: none
    :param kwargs: :class:`~sb3_ext.algorithms.base.GroupRolloutAlgorithm`'s (``learning_rate``, ``n_steps``,
        ``batch_size`` texts per minibatch, ``n_epochs``, ``policy_kwargs``, ``seed``...)
    """

    KL_MODES = ("loss", "reward", "token", "exact")

    def __init__(self, policy: Any, env: Any, beta: float = 0.0, kl_mode: str = "loss", epsilon: float = 0.2,
                 epsilon_high: float | None = None, loss_type: str = "dapo", ent_coef: float = 0.0,
                 kl_anchor: KLAnchor | None = None, **kwargs: Any) -> None:
        if kl_mode not in self.KL_MODES:
            raise unknown_name("kl_mode", kl_mode, self.KL_MODES)
        if loss_type not in LOSS_TYPES:
            raise unknown_name("loss_type", loss_type, LOSS_TYPES)
        if beta < 0 or epsilon <= 0 or (epsilon_high is not None and epsilon_high <= 0):
            raise TextEnvsError(f"expected beta >= 0, epsilon > 0, epsilon_high > 0 or None; got {beta}, {epsilon}, "
                                f"{epsilon_high}")
        self.beta, self.kl_mode, self.loss_type = float(beta), kl_mode, loss_type
        self.epsilon = float(epsilon)
        self.epsilon_high = float(epsilon_high if epsilon_high is not None else epsilon)
        if kl_anchor is not None and not isinstance(kl_anchor, KLAnchor):
            raise TextEnvsError(f"expected kl_anchor=KLAnchor(...) or None, got {type(kl_anchor).__name__}")
        self.kl_anchor = kl_anchor
        # the anchor compares with the start model too; the policy's own coefficient is unused here (see the base)
        super().__init__(policy, env, reference=self.beta > 0 or kl_anchor is not None,
                         reference_coef=self.beta or (kl_anchor.coef if kl_anchor is not None else 0.0), **kwargs)
        self.ent_coef = float(ent_coef)  # the entropy bonus, under SB3's attribute name

    @th.no_grad()
    def reference_log_softmax(self, episodes: list[Episode]) -> th.Tensor:
        """The frozen start model's log-probabilities over the vocabulary (N, V) at every token of ``episodes``
        (teacher-forced, the policy's temperature), float32."""
        batch = episode_batch(episodes, self.device)
        logits = self.policy.reference_logits(batch, trimmed_tokens(batch))  # a LoRA model's base included
        return th.log_softmax(self.policy.distribution_logits(logits).float(), -1)

    def episode_log_probs_and_kl(self, episodes: list[Episode], exact_kl: bool,
                                 reference: th.Tensor | None = None
                                 ) -> tuple[th.Tensor, th.Tensor, EpisodeBatch, th.Tensor | None]:
        """:meth:`episode_log_probs` (log-probs (N,), entropies (N,), the batch) and, with ``exact_kl``, the KL to the
        frozen start model at every token's state (N,), exact over the vocabulary and differentiable in the policy
        (one forward of the policy; the reference's :meth:`reference_log_softmax` of these tokens, (N, V), when
        given, else one forward of the reference); else None."""
        if not exact_kl:
            return (*self.episode_log_probs(episodes), None)
        batch = episode_batch(episodes, self.device)
        if reference is None:
            reference = self.reference_log_softmax(episodes)
        # one teacher-forced forward, with gradients; the three vocabulary-wide terms in one pass
        log_prob, entropy, token_kl = self.policy.log_probs_entropy_and_kl(batch, batch.taken_actions, reference)
        return log_prob, entropy, batch, token_kl

    def rollout_reference(self, episodes: list[Episode]) -> tuple[np.ndarray, th.Tensor | None]:
        """The start model's log-probs of the sampled tokens (N,) and, under ``kl_mode="exact"`` when its
        (N, V) log-probabilities fit in :data:`EXACT_REFERENCE_BUDGET` bytes, those too (kept for the update's
        exact KL: one reference forward per rollout instead of one per minibatch and epoch; else None)."""
        n_tokens = sum(len(ep["tokens"]) for ep in episodes)
        if self.kl_mode != "exact" or n_tokens * self.action_space.n * 4 > EXACT_REFERENCE_BUDGET:
            return self.reference_log_probs(episodes).cpu().numpy(), None
        full = self.reference_log_softmax(episodes)  # (N, V)
        actions = episode_batch(episodes, self.device).taken_actions
        return full.gather(1, actions[:, None])[:, 0].cpu().numpy(), full

    def sequence_advantages(self, rewards: np.ndarray, groups: list[list[Episode]]) -> np.ndarray:
        """The advantage of each text (G, k) from the rewards (G, k) (after any sequence-level KL)."""
        raise NotImplementedError

    def train_groups(self, groups: list[list[Episode]]) -> None:
        episodes = [ep for g in groups for ep in g]
        lengths = np.array([len(ep["tokens"]) for ep in episodes])
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        rewards = np.array([[ep["reward"] for ep in g] for g in groups], dtype=np.float64)  # (G, k)
        ref_log_probs = ref_full = None
        if self.beta > 0:
            ref_log_probs, ref_full = self.rollout_reference(episodes)  # (N,), (N, V) or None
            old = np.concatenate([ep["log_probs"] for ep in episodes])
            token_kl = old - ref_log_probs  # k1 of the sampling policy, as the reward shaping's
            seq_kl = np.add.reduceat(token_kl, bounds[:-1])
            self.logger.record("train/kl", float(seq_kl.mean()))
            if self.kl_mode in ("reward", "exact"):
                rewards = rewards - self.beta * seq_kl.reshape(rewards.shape)
        advantages = self.sequence_advantages(rewards, groups).reshape(-1)  # (E,)
        token_adv = [np.full(n, a) for n, a in zip(lengths, advantages)]
        if self.beta > 0 and self.kl_mode in ("token", "exact"):
            token_adv = [adv + self.beta * kl_shaping(token_kl[lo:hi], self.kl_mode)
                         for adv, lo, hi in zip(token_adv, bounds[:-1], bounds[1:])]
        self.logger.record("train/advantage_mean", float(advantages.mean()))
        self.logger.record("train/advantage_std", float(advantages.std()))

        T = int(self.observation_space["generated_ids"].shape[0])  # type: ignore[index]
        anchor_texts = self.kl_anchor.sample(self.policy, self._n_updates) if self.kl_anchor is not None else None
        losses, clip_fractions, approx_kl, entropies, anchor_kl = [], [], [], [], []
        for _ in range(self.n_epochs):
            for mb in self.minibatches(len(episodes)):
                chosen = [episodes[i] for i in mb]
                exact = self.beta > 0 and self.kl_mode == "exact"
                rows = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in mb])
                reference = ref_full[th.as_tensor(rows, device=self.device)] if ref_full is not None else None
                log_prob, entropy, batch, token_kl_exact = self.episode_log_probs_and_kl(chosen, exact, reference)
                old = th.as_tensor(np.concatenate([ep["log_probs"] for ep in chosen]), device=self.device)
                adv = th.as_tensor(np.concatenate([token_adv[i] for i in mb]), dtype=log_prob.dtype,
                                   device=self.device)
                per_token, clipped = clipped_surrogate(log_prob, old, adv, self.epsilon, self.epsilon_high)
                if self.beta > 0 and self.kl_mode == "loss":
                    ref = th.as_tensor(np.concatenate([ref_log_probs[bounds[i]:bounds[i + 1]] for i in mb]),
                                       device=self.device)
                    per_token = per_token + self.beta * kl_estimate(log_prob, ref, "k3")
                if exact:
                    per_token = per_token + self.beta * token_kl_exact
                if self.ent_coef:
                    per_token = per_token - self.ent_coef * entropy
                loss = aggregate_loss(per_token, batch.out_episode, len(chosen), self.loss_type, T)
                if anchor_texts is not None:
                    anchor_loss = self.kl_anchor.loss(self.policy, anchor_texts)
                    anchor_kl.append(float(anchor_loss.detach()) / self.kl_anchor.coef)
                    loss = loss + anchor_loss
                self.optimizer_step(loss)
                with th.no_grad():
                    losses.append(float(loss))
                    clip_fractions.append(float(clipped.float().mean()))
                    log_ratio = log_prob - old
                    approx_kl.append(float(((th.exp(log_ratio) - 1) - log_ratio).mean()))
                    entropies.append(float(entropy.mean()))
        self.logger.record("train/loss", float(np.mean(losses)))
        self.logger.record("train/clip_fraction", float(np.mean(clip_fractions)))
        self.logger.record("train/approx_kl", float(np.mean(approx_kl)))
        self.logger.record("train/entropy", float(np.mean(entropies)))
        if anchor_kl:
            self.logger.record("train/anchor_kl", float(np.mean(anchor_kl)))  # nats per anchor text, before the step
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
