"""Episodes evaluated teacher-forced: the :class:`EpisodeBatch` container and the per-episode forwards on it.

An engine's learner does not have the rollout's per-row KV cache: it re-runs each episode (prompt + generated
tokens) through the model once, teacher-forced, and reads the outputs at the positions where actions were
taken. :class:`EpisodeBatch` names those sequences and positions; :func:`teacher_forced_outputs` gives the
logits and value-head inputs there, :func:`sequence_log_probs` a frozen model's log-probabilities of the taken
tokens (the KL reference), in chunks of episodes. Both equal the cached rollout's per-step outputs to float
error (``tests/test_buffers.py``, ``tests/test_kl.py``). No training engine is imported here: SB3's
``EpisodeRolloutBuffer`` (``sb3_ext.buffers``) builds these batches, and so can any other adapter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch as th

from .backends import LMBackend

__all__ = ["EpisodeBatch", "OBS_KEYS", "teacher_forced_outputs", "trimmed_tokens", "sequence_log_probs"]

#: the text_envs observation keys (the Dict space every text env has)
OBS_KEYS = ("prompt_ids", "prompt_mask", "generated_ids", "generated_mask")


@dataclass
class EpisodeBatch:
    """Episodes to evaluate teacher-forced; the outputs are the tokens selected by ``out_episode/out_pos``.

    :param prompt_ids: (E, P) left-padded prompts, one per episode segment
    :param prompt_mask: (E, P)
    :param tokens: (E, L) generated tokens (context prefix + the segment's actions), right-padded
    :param out_episode: (N,) episode index of each output token, in the order of the minibatch's actions
    :param out_pos: (N,) position t of each output token inside its episode
    :param actions: (N,) the token taken at each output (``-1`` where unknown), kept inside a top-k/top-p
        support by ``LLMPolicy``; ``None``: ``tokens[out_episode, out_pos]`` (what
        :class:`EpisodeRolloutBuffer` stores: each sequence is its prefix followed by the taken actions)
    """

    prompt_ids: th.Tensor
    prompt_mask: th.Tensor
    tokens: th.Tensor
    out_episode: th.Tensor
    out_pos: th.Tensor
    actions: th.Tensor | None = None

    def __len__(self) -> int:
        return int(self.out_pos.shape[0])

    def __getitem__(self, index: Any) -> EpisodeBatch:
        """Select output tokens (e.g. TRPO's ``observations[::k]``); the sequences stay whole as context."""
        actions = self.actions[index] if self.actions is not None else None
        return replace(self, out_episode=self.out_episode[index], out_pos=self.out_pos[index], actions=actions)

    def to(self, device: th.device | str) -> EpisodeBatch:
        return EpisodeBatch(*(None if getattr(self, f) is None else getattr(self, f).to(device)
                              for f in self.__dataclass_fields__))

    @property
    def num_episodes(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def taken_actions(self) -> th.Tensor:
        """(N,) the token taken at each output, ``-1`` where the batch does not know it."""
        if self.actions is not None:
            return self.actions.long()
        pos = self.out_pos.clamp(max=self.tokens.shape[1] - 1)
        known = self.out_pos < self.tokens.shape[1]
        return th.where(known, self.tokens[self.out_episode, pos], th.full_like(pos, -1))

    @classmethod
    def from_observations(
        cls,
        prompt_ids: th.Tensor,
        prompt_mask: th.Tensor,
        gen_ids: th.Tensor,
        gen_len: th.Tensor,
        actions: th.Tensor | None = None,
    ) -> EpisodeBatch:
        """Group observations (e.g. a shuffled minibatch of SB3's ``DictRolloutBuffer``) into prefix chains.

        Observations with the same prompt whose generated ids are prefixes of one another (the steps of one
        episode, in any order, or identical texts of different episodes) share one sequence: the longest of
        them. A causal teacher-forced forward over that sequence gives, at position ``t``, exactly the output
        of the observation with ``t`` generated tokens, so ``LLMPolicy`` runs one forward per chain instead of
        one per observation. Each observation is one output, in the given order.

        :param prompt_ids: (N, P) left-padded prompt ids (long)
        :param prompt_mask: (N, P)
        :param gen_ids: (N, T) generated ids, right-padded
        :param gen_len: (N,) number of generated tokens of each observation
        :param actions: (N,) the action taken at each observation, if known; otherwise an observation's action
            is read from the next token of its chain (``-1`` for the last observation of a chain)
        :return: a batch of E chains (E <= N); ``tokens`` is (E, max(gen_len) + 1), zero-padded
        """
        N, P = prompt_ids.shape
        T = gen_ids.shape[1]
        dev = gen_ids.device
        host = th.cat([prompt_ids, prompt_mask, gen_ids, gen_len[:, None]], 1).cpu().numpy()  # one sync
        lens = host[:, -1].astype(np.int64)
        cols = np.arange(T)[None]
        gen = np.where(cols < lens[:, None], host[:, 2 * P : 2 * P + T], -1)  # -1 past each row's length
        prompts = np.ascontiguousarray(host[:, : 2 * P])
        first: dict[bytes, int] = {}  # prompt (ids and mask) -> group number; a dict, not np.unique's row sort
        prompt_group = np.fromiter((first.setdefault(r.tobytes(), len(first)) for r in prompts), np.int64, N)
        order = np.lexsort((-lens, prompt_group))  # by prompt, longest first
        chain = np.empty(N, dtype=np.int64)
        heads: list[int] = []
        for rows in np.split(order, np.flatnonzero(np.diff(prompt_group[order])) + 1):
            while rows.size:  # the longest pending row heads a chain; rows it extends join it
                h = rows[0]
                joins = ((gen[rows] == gen[h]) | (cols >= lens[rows, None])).all(1)
                chain[rows[joins]] = len(heads)
                heads.append(int(h))
                rows = rows[~joins]
        head_idx = np.asarray(heads, dtype=np.int64)
        L = int(lens.max()) + 1
        tokens = np.zeros((len(heads), L), dtype=np.int64)
        width = min(L, T)
        tokens[:, :width] = np.maximum(gen[head_idx, :width], 0)
        if actions is None:
            head_len = lens[head_idx][chain]
            nxt = gen[head_idx[chain], np.minimum(lens, T - 1)]
            taken = th.as_tensor(np.where(lens < head_len, nxt, -1), device=dev)
        else:
            taken = actions.long().reshape(-1)
        rows_t = th.as_tensor(head_idx, device=dev)
        return cls(
            prompt_ids=prompt_ids[rows_t],
            prompt_mask=prompt_mask[rows_t],
            tokens=th.as_tensor(tokens, device=dev),
            out_episode=th.as_tensor(chain, device=dev),
            out_pos=th.as_tensor(lens, device=dev),
            actions=taken,
        )


def teacher_forced_outputs(
    backend: LMBackend, batch: EpisodeBatch, tokens: th.Tensor | None = None
) -> tuple[th.Tensor, th.Tensor]:
    """One teacher-forced forward per episode; the logits (N, V) and hidden states (N, H) at the batch's outputs.

    :param backend: the model's backend (:func:`lm_core.backends.make_backend`)
    :param batch: the episodes and the output positions
    :param tokens: the episodes' tokens already cut to the last output position (:func:`trimmed_tokens`); ``None``
        cuts ``batch.tokens`` here (one device sync)
    :return: ``logits[i]`` and ``hidden[i]`` are the model's outputs after ``out_pos[i]`` generated tokens of
        episode ``out_episode[i]``, i.e. the distribution of the token taken there
    """
    if tokens is None:
        tokens = trimmed_tokens(batch)
    with backend.outputs_at((batch.out_episode, batch.out_pos)):  # the LM head at the outputs only
        return backend.forward_sequences(batch.prompt_ids, batch.prompt_mask, tokens)  # (N, V), (N, H)


def trimmed_tokens(batch: EpisodeBatch) -> th.Tensor:
    """``batch.tokens`` cut after the last output position (E, L): the forward needs no later token."""
    L = int(batch.out_pos.max().item()) + 1  # sync
    return batch.tokens[:, :L]


@th.no_grad()
def sequence_log_probs(
    backend: LMBackend,
    batch: EpisodeBatch,
    actions: th.Tensor,
    temperature: float = 1.0,
    chunk_episodes: int = 32,
    context: Callable[[], Any] | None = None,
) -> th.Tensor:
    """log p(a) (N,) of a (frozen) model at the batch's outputs, teacher-forced, ``chunk_episodes`` at a time.

    :param backend: the model's backend (e.g. the KL reference's)
    :param batch: the episodes and output positions
    :param actions: (N,) the token taken at each output
    :param temperature: the logits are divided by it first (the policy's sampling temperature, so that a KL to
        the reference compares like with like)
    :param chunk_episodes: episodes per forward (bounds the (E, L, V) logits in memory)
    :param context: a callable returning a context manager entered around each forward (e.g. a LoRA model's
        ``disable_adapter`` to score with its base weights); ``None``: none
    """
    if chunk_episodes < 1:
        raise ValueError(f"expected chunk_episodes >= 1, got {chunk_episodes}")
    out = th.empty(len(batch), device=actions.device)
    episodes = batch.out_episode
    for lo in range(0, batch.num_episodes, chunk_episodes):
        hi = min(lo + chunk_episodes, batch.num_episodes)
        sel = ((episodes >= lo) & (episodes < hi)).nonzero().flatten()
        if sel.numel() == 0:
            continue
        pos = batch.out_pos[sel]
        L = int(pos.max().item()) + 1
        with (context() if context is not None else contextlib.nullcontext()):
            logits, _ = backend.forward_sequences(batch.prompt_ids[lo:hi], batch.prompt_mask[lo:hi],
                                                  batch.tokens[lo:hi, :L])
        lg = logits[episodes[sel] - lo, pos].float() / temperature  # (n, V)
        out[sel] = lg.log_softmax(-1).gather(-1, actions[sel].long()[:, None]).squeeze(-1)
    return out
