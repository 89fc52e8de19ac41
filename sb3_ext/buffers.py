"""EpisodeRolloutBuffer: an SB3 rollout buffer that stores episodes, not copies of observations.

Use it with the stock algorithms::

    PPO(LLMPolicy, env, rollout_buffer_class=EpisodeRolloutBuffer, batch_size=512)

* ``add`` stores each episode segment's prompt once (the stock ``DictRolloutBuffer`` stores the prompt and
  the generated prefix at every step), plus per-step action, reward, value and log-prob arrays with the
  usual names (``rewards``, ``values``, ``returns``...: SB3 reads ``values`` and ``returns`` for logging).
* ``compute_returns_and_advantage`` first applies the policy's KL penalty to a frozen reference, when the
  policy has one (``kl_coef > 0``): the reference runs once, teacher-forced, over every episode segment of the
  rollout, and ``rewards[t] -= beta * kl_t`` before GAE; beta is then updated and logged with the KL.
* ``get(batch_size)`` shuffles whole episode segments and yields minibatches of about ``batch_size`` tokens
  (never fewer than one segment); ``get(None)`` yields everything at once (A2C, TRPO).  The minibatch's
  ``observations`` is an :class:`EpisodeBatch`, which ``LLMPolicy`` evaluates with one forward per segment.

A segment is the part of one env's episode inside this rollout: episodes cut by the rollout boundary keep
their generated prefix from the previous rollout as context.
"""

from __future__ import annotations

import weakref
from collections.abc import Generator
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.type_aliases import RolloutBufferSamples

from lm_core.episodes import EpisodeBatch
from lm_core.observations import check_token_spaces
from text_envs.errors import TextEnvsError
from text_envs.state import attribute_state, set_attribute_state

__all__ = ["EpisodeRolloutBuffer", "EpisodeBatch"]  # EpisodeBatch lives in lm_core.episodes (re-exported here)


class EpisodeRolloutBuffer(RolloutBuffer):
    """Rollout buffer of whole episodes for ``LLMPolicy`` (see the module docstring).

    :param buffer_size: steps per env (``n_steps``)
    :param observation_space: the text env's Dict space
    :param action_space: ``Discrete(V)``
    :param device: torch device of the yielded tensors
    :param gae_lambda: GAE lambda
    :param gamma: discount
    :param n_envs: number of envs
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
    ):
        self.P, self.T, _ = check_token_spaces(observation_space, None, "EpisodeRolloutBuffer")
        self._policy_ref: Any = None
        self._algo_ref: Any = None
        self.kl_stats: dict[str, float] = {}
        # KL summed over the tokens an env's open episode generated in earlier rollouts, and the position t its
        # next segment must start at for that sum to be its own (else it is dropped): a rollout's per-episode KL
        # then covers whole episodes, not only the part inside the rollout
        self._kl_carry = np.zeros(n_envs, dtype=np.float64)
        self._kl_carry_t = np.full(n_envs, -1, dtype=np.int64)
        super().__init__(buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs)

    # binding ------------------------------------------------------------------------------------------------
    def bind(self, policy: Any, algorithm: Any = None) -> None:
        """Attach the policy (for the KL penalty) and optionally the algorithm (for its logger).

        ``LLMPolicy`` does this itself when an SB3 algorithm builds both; call it when you build them yourself.
        """
        self._policy_ref = weakref.ref(policy)
        self._algo_ref = weakref.ref(algorithm) if algorithm is not None else None

    @property
    def policy(self) -> Any:
        return self._policy_ref() if self._policy_ref is not None else None

    # state ---------------------------------------------------------------------------------------------------
    #: what :meth:`get_state` saves: what outlives a rollout (the per-step storage is empty at a rollout boundary)
    STATE_ATTRIBUTES = ("kl_stats", "_kl_carry", "_kl_carry_t")

    def get_state(self) -> dict[str, Any]:
        """The KL carried by episodes still open and the last KL statistics (:class:`text_envs.state.Stateful`)."""
        return attribute_state(self, self.STATE_ATTRIBUTES)

    def set_state(self, state: dict[str, Any]) -> None:
        """Put back a state :meth:`get_state` returned (at a rollout boundary)."""
        set_attribute_state(self, self.STATE_ATTRIBUTES, state)

    # storage ------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        n, m = self.buffer_size, self.n_envs
        self.actions = np.zeros((n, m, 1), dtype=np.int64)
        self.rewards = np.zeros((n, m), dtype=np.float32)
        self.returns = np.zeros((n, m), dtype=np.float32)
        self.episode_starts = np.zeros((n, m), dtype=np.float32)
        self.values = np.zeros((n, m), dtype=np.float32)
        self.log_probs = np.zeros((n, m), dtype=np.float32)
        self.advantages = np.zeros((n, m), dtype=np.float32)
        self.positions = np.zeros((n, m), dtype=np.int64)  # generated count t at each step
        self.segment_of = np.zeros((n, m), dtype=np.int64)
        # per segment (episode piece of one env in this rollout)
        self.seg_env: list[int] = []
        self.seg_start_step: list[int] = []
        self.seg_t0: list[int] = []
        self.seg_len: list[int] = []
        self.seg_prompt_ids: list[np.ndarray] = []
        self.seg_prompt_mask: list[np.ndarray] = []
        self.seg_prefix: list[np.ndarray] = []
        self._open = [-1] * m  # current segment of each env
        self.generator_ready = False
        self.pos = 0
        self.full = False

    def add(  # type: ignore[override]
        self,
        obs: dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        episode_start: np.ndarray,
        value: th.Tensor,
        log_prob: th.Tensor,
    ) -> None:
        """Store one step of all envs; the prompt is stored once per segment."""
        if self.pos >= self.buffer_size:
            raise TextEnvsError(f"EpisodeRolloutBuffer is full ({self.buffer_size} steps): call reset() first")
        gen_mask = np.asarray(obs["generated_mask"])
        t = gen_mask.reshape(self.n_envs, -1).sum(1).astype(np.int64)  # (n_envs,)
        for e in range(self.n_envs):
            s = self._open[e]
            if s < 0 or t[e] != self.seg_t0[s] + self.seg_len[s]:  # a new episode, or the rollout's first step
                s = len(self.seg_env)
                self._open[e] = s
                self.seg_env.append(e)
                self.seg_start_step.append(self.pos)
                self.seg_t0.append(int(t[e]))
                self.seg_len.append(0)
                self.seg_prompt_ids.append(np.asarray(obs["prompt_ids"][e], dtype=np.int64).copy())
                self.seg_prompt_mask.append(np.asarray(obs["prompt_mask"][e], dtype=np.int64).copy())
                self.seg_prefix.append(np.asarray(obs["generated_ids"][e][: t[e]], dtype=np.int64).copy())
            self.seg_len[s] += 1
            self.segment_of[self.pos, e] = s
        self.positions[self.pos] = t
        self.actions[self.pos] = np.asarray(action).reshape(self.n_envs, 1)
        self.rewards[self.pos] = np.asarray(reward)
        self.episode_starts[self.pos] = np.asarray(episode_start)
        self.values[self.pos] = value.clone().cpu().numpy().flatten()
        self.log_probs[self.pos] = log_prob.clone().cpu().numpy()
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True

    # episodes -----------------------------------------------------------------------------------------------
    def _segment_tokens(self, s: int) -> np.ndarray:
        """Prefix + actions of segment ``s`` (the full generated sequence up to its last action)."""
        e, start, n = self.seg_env[s], self.seg_start_step[s], self.seg_len[s]
        acts = self.actions[start : start + n, e, 0]
        return np.concatenate([self.seg_prefix[s], acts])

    def episode_batch(self, segments: np.ndarray | list[int]) -> tuple[EpisodeBatch, np.ndarray]:
        """Build the :class:`EpisodeBatch` of some segments and the (step, env) flat index of each output token.

        :return: the batch (on ``self.device``) and ``flat`` (N,) indices into ``array.reshape(-1)`` of the
            (n_steps, n_envs) arrays, in output order
        """
        E = len(segments)
        lens = [self.seg_t0[s] + self.seg_len[s] for s in segments]
        L = max(lens)
        tokens = np.zeros((E, L), dtype=np.int64)
        out_ep, out_pos, flat = [], [], []
        for i, s in enumerate(segments):
            seq = self._segment_tokens(s)
            tokens[i, : len(seq)] = seq
            t0, n, start, e = self.seg_t0[s], self.seg_len[s], self.seg_start_step[s], self.seg_env[s]
            out_ep.append(np.full(n, i))
            out_pos.append(np.arange(t0, t0 + n))
            flat.append(np.arange(start, start + n) * self.n_envs + e)
        batch = EpisodeBatch(
            prompt_ids=th.as_tensor(np.stack([self.seg_prompt_ids[s] for s in segments]), device=self.device),
            prompt_mask=th.as_tensor(np.stack([self.seg_prompt_mask[s] for s in segments]), device=self.device),
            tokens=th.as_tensor(tokens, device=self.device),
            out_episode=th.as_tensor(np.concatenate(out_ep), device=self.device),
            out_pos=th.as_tensor(np.concatenate(out_pos), device=self.device),
        )
        return batch, np.concatenate(flat)

    @property
    def num_segments(self) -> int:
        return len(self.seg_env)

    def segment_finished(self, dones: np.ndarray | None = None) -> np.ndarray:
        """(num_segments,) bool: the segment's episode ended inside this rollout."""
        finished = np.zeros(self.num_segments, dtype=bool)
        for s in range(self.num_segments):
            e, end = self.seg_env[s], self.seg_start_step[s] + self.seg_len[s]
            if end < self.pos:
                finished[s] = bool(self.episode_starts[end, e])
            elif dones is not None:
                finished[s] = bool(dones[e])
        return finished

    # returns ------------------------------------------------------------------------------------------------
    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: np.ndarray) -> None:
        """Apply the policy's KL penalty (if any) to the rewards, then GAE as in SB3."""
        policy = self.policy
        finished = self.segment_finished(dones)
        gen_lengths = [self.seg_t0[s] + self.seg_len[s] for s in np.flatnonzero(finished)]
        self.kl_stats = {"mean_generated_length": float(np.mean(gen_lengths)) if gen_lengths else float("nan")}
        if policy is not None and getattr(policy, "kl_enabled", False) and self.num_segments > 0:
            self._apply_kl(policy, finished)
        self._log()
        super().compute_returns_and_advantage(last_values, dones)

    def _apply_kl(self, policy: Any, finished: np.ndarray) -> None:
        segments = np.arange(self.num_segments)
        batch, flat = self.episode_batch(segments)
        actions = th.as_tensor(self.actions.reshape(-1)[flat], device=self.device)
        old_log_prob = th.as_tensor(self.log_probs.reshape(-1)[flat], device=self.device)
        kl = policy.token_kl(batch, actions, old_log_prob).cpu().numpy()  # (N,)
        beta = policy.kl_controller.value
        rewards = self.rewards.reshape(-1)  # view
        rewards[flat] -= beta * kl
        # per-episode KL (summed over tokens) over finished episodes only, for the controller and the logs
        per_seg = np.zeros(self.num_segments)
        np.add.at(per_seg, batch.out_episode.cpu().numpy(), kl)
        for s in range(self.num_segments):  # episodes begun in the previous rollout: add their tokens there
            e = self.seg_env[s]
            if self.seg_t0[s] > 0 and self._kl_carry_t[e] == self.seg_t0[s]:
                per_seg[s] += self._kl_carry[e]
        self._kl_carry[:] = 0.0
        self._kl_carry_t[:] = -1
        for e, s in enumerate(self._open):  # each env's last segment, if its episode goes on
            if s >= 0 and not finished[s]:
                self._kl_carry[e] = per_seg[s]
                self._kl_carry_t[e] = self.seg_t0[s] + self.seg_len[s]
        done_kl = per_seg[finished] if finished.any() else per_seg
        mean_kl = float(done_kl.mean())
        new_beta = policy.kl_controller.update(mean_kl, int(len(done_kl)))
        self.kl_stats.update(kl=mean_kl, kl_per_token=float(kl.mean()), kl_coef=beta, kl_coef_next=new_beta)

    def _log(self) -> None:
        algo = self._algo_ref() if self._algo_ref is not None else None
        logger = getattr(algo, "_logger", None) if algo is not None else None
        if logger is None:
            return
        names = {
            "kl": "rollout/kl",
            "kl_per_token": "rollout/kl_per_token",
            "kl_coef": "rollout/kl_coef",
            "mean_generated_length": "rollout/mean_generated_length",
        }
        for key, name in names.items():
            if key in self.kl_stats and np.isfinite(self.kl_stats[key]):
                logger.record(name, self.kl_stats[key])

    # sampling -----------------------------------------------------------------------------------------------
    def minibatch_groups(self, batch_size: int | None, order: np.ndarray) -> list[list[int]]:
        """Split segments, taken in ``order``, into groups of about ``batch_size`` tokens (``None``: one group)."""
        if batch_size is None:
            return [list(order)]
        groups, current, count = [], [], 0
        for s in order:
            current.append(int(s))
            count += self.seg_len[s]
            if count >= batch_size:
                groups.append(current)
                current, count = [], 0
        if current:
            groups.append(current)
        return groups

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples, None, None]:  # type: ignore[override]
        """Yield minibatches of whole segments, about ``batch_size`` tokens each (``None``: everything)."""
        if self.pos == 0:
            raise TextEnvsError("EpisodeRolloutBuffer.get() called on an empty buffer: collect a rollout first")
        groups = self.minibatch_groups(batch_size, np.random.permutation(self.num_segments))
        for segs in groups:
            yield self._samples(np.asarray(segs))

    def _samples(self, segments: np.ndarray) -> RolloutBufferSamples:
        batch, flat = self.episode_batch(segments)

        def pick(arr: np.ndarray) -> th.Tensor:
            return self.to_torch(arr.reshape(-1)[flat].astype(np.float32))

        return RolloutBufferSamples(
            observations=batch,  # type: ignore[arg-type]
            actions=pick(self.actions)[:, None],  # (N, 1)
            old_values=pick(self.values),
            old_log_prob=pick(self.log_probs),
            advantages=pick(self.advantages),
            returns=pick(self.returns),
        )
