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
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch as th
from torch.utils.checkpoint import checkpoint

from .backends import LMBackend

#: bytes of activations one teacher-forced forward with gradients may keep for the backward pass on a CPU
#: (estimated by :func:`episode_activation_bytes`) before :func:`teacher_forced_outputs` splits its episodes into
#: chunks that are recomputed in the backward pass (docs/guides/performance.md, "Memory"). The estimate is low
#: (the backward holds activation gradients beside them): 64 MiB peaked at 851 MB against 1,076 MB at 128 MiB and
#: 1,312 MB in one forward (16 envs x 32 steps of TextSummarization-v0, the shipped T5), for 1.6 s of update CPU
#: time against 1.7 s and 1.5 s (RESULTS.md section 11). On a GPU the default is one forward (fused attention
#: keeps no scores, and chunks cost kernel launches).
CPU_ACTIVATION_BUDGET = 64 * 2**20
#: with ``activation_budget="auto"``, a minibatch is chunked only when its one forward's estimate exceeds this
#: (:func:`chunk_trigger_bytes`; the environment variable :data:`CHUNK_TRIGGER_ENV` overrides it). One forward adds
#: 2-3x its estimate to the peak (shipped T5): at most ~1.0 GB of peak under this trigger, and no recomputation in
#: the main job (estimate 118 MiB), the card's minibatches or bench_trl's T5 row (at most 203 MiB); above it the
#: docs' 32-env example peaks at 0.96 GB chunked against 3.0 GB in one forward, and chunks sorted by prompt width
#: cost -20% to +12% of the run's CPU time there (padding saved pays for the recomputation; RESULTS.md section 15)
CPU_CHUNK_TRIGGER = 256 * 2**20
#: the environment variable that sets the trigger in MiB ("0": chunk every minibatch over the budget; "off": never)
CHUNK_TRIGGER_ENV = "TEXT_ENVS_CHUNK_TRIGGER_MIB"

__all__ = [
    "EpisodeBatch",
    "OBS_KEYS",
    "CPU_ACTIVATION_BUDGET",
    "CPU_CHUNK_TRIGGER",
    "CHUNK_TRIGGER_ENV",
    "chunk_trigger_bytes",
    "teacher_forced_outputs",
    "trimmed_tokens",
    "sequence_log_probs",
    "episode_activation_bytes",
    "activation_chunks",
]

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
    backend: LMBackend,
    batch: EpisodeBatch,
    tokens: th.Tensor | None = None,
    activation_budget: int | str | None = "auto",
) -> tuple[th.Tensor, th.Tensor]:
    """One teacher-forced forward per episode; the logits (N, V) and hidden states (N, H) at the batch's outputs.

    With gradients on and more estimated activations than ``activation_budget`` (:func:`episode_activation_bytes`),
    the episodes run in chunks under activation checkpointing (:func:`torch.utils.checkpoint.checkpoint`): the
    backward pass recomputes one chunk at a time, so at most about one chunk's activations are held instead of the
    whole minibatch's, for one more forward. Chunks group episodes of similar prompt width (less padding). The
    outputs and gradients are those of the single forward to float error.

    :param backend: the model's backend (:func:`lm_core.backends.make_backend`)
    :param batch: the episodes and the output positions
    :param tokens: the episodes' tokens already cut to the last output position (:func:`trimmed_tokens`); ``None``
        cuts ``batch.tokens`` here (one device sync)
    :param activation_budget: bytes; ``"auto"``: :data:`CPU_ACTIVATION_BUDGET` on a CPU when the one forward's
        estimate exceeds :data:`CPU_CHUNK_TRIGGER`, none on other devices; ``None``: always one forward
    :return: ``logits[i]`` and ``hidden[i]`` are the model's outputs after ``out_pos[i]`` generated tokens of
        episode ``out_episode[i]``, i.e. the distribution of the token taken there
    """
    if tokens is None:
        tokens = trimmed_tokens(batch)
    auto = activation_budget == "auto"
    if auto:
        activation_budget = CPU_ACTIVATION_BUDGET if tokens.device.type == "cpu" else None
    if activation_budget is not None and not isinstance(activation_budget, int):
        raise ValueError(f"expected activation_budget to be a number of bytes, 'auto' or None, got {activation_budget!r}")
    if activation_budget is None or not th.is_grad_enabled() or batch.num_episodes < 2:
        return _outputs_at(backend, batch.prompt_ids, batch.prompt_mask, tokens, batch.out_episode, batch.out_pos)
    widths = batch.prompt_mask.sum(1).cpu().numpy()  # sync: real prompt tokens per episode
    out_episode, out_pos = batch.out_episode.cpu().numpy(), batch.out_pos.cpu().numpy()
    last = np.full(batch.num_episodes, -1, dtype=np.int64)
    np.maximum.at(last, out_episode, out_pos)  # the last output position of each episode
    element_size = next(backend.model.parameters()).element_size()  # the activations' dtype is the model's
    chunks = activation_chunks(backend.config, widths, last + 1, activation_budget, element_size)
    one_forward = batch.num_episodes * episode_activation_bytes(  # padded to the widest prompt, longest text
        backend.config, int(widths.max()), int(last.max()) + 1, element_size)
    trigger = chunk_trigger_bytes() if auto else None
    if len(chunks) == 1 or (auto and (trigger is None or one_forward <= trigger)):
        return _outputs_at(backend, batch.prompt_ids, batch.prompt_mask, tokens, batch.out_episode, batch.out_pos)
    dev = tokens.device
    local = np.empty(batch.num_episodes, dtype=np.int64)  # an episode's row inside its chunk
    chunk_of = np.empty(batch.num_episodes, dtype=np.int64)
    for c, rows in enumerate(chunks):
        local[rows], chunk_of[rows] = np.arange(len(rows)), c
    kernels = _SameAttentionKernels()
    picked, logits, hidden = [], [], []
    for c, rows in enumerate(chunks):
        outputs = np.flatnonzero(chunk_of[out_episode] == c)
        if outputs.size == 0:
            continue
        r = th.as_tensor(rows, device=dev)
        length = int(out_pos[outputs].max()) + 1
        lg, h = checkpoint(
            _outputs_at, backend, batch.prompt_ids[r], batch.prompt_mask[r], tokens[r, :length],
            th.as_tensor(local[out_episode[outputs]], device=dev), th.as_tensor(out_pos[outputs], device=dev),
            use_reentrant=False, context_fn=lambda: (contextlib.nullcontext(), kernels),
        )
        picked.append(outputs)
        logits.append(lg)
        hidden.append(h)
    order = th.as_tensor(np.argsort(np.concatenate(picked)), device=dev)  # back to the batch's output order
    return th.cat(logits)[order], th.cat(hidden)[order]


def chunk_trigger_bytes() -> int | None:
    """The one-forward activation estimate above which ``activation_budget="auto"`` chunks a minibatch: the value of
    the environment variable :data:`CHUNK_TRIGGER_ENV` in MiB when set (``"off"``: never chunk), else
    :data:`CPU_CHUNK_TRIGGER`; ``None``: never. Read at each update, so a run's setting is the one its process has."""

    value = os.environ.get(CHUNK_TRIGGER_ENV, "").strip()
    if not value:
        return CPU_CHUNK_TRIGGER
    if value.lower() in ("off", "none"):
        return None
    try:
        mib = float(value)
    except ValueError:
        mib = -1.0
    if not mib >= 0:
        raise ValueError(f"expected {CHUNK_TRIGGER_ENV} to be a number of MiB >= 0 or 'off', got {value!r}: e.g. "
                         f"{CHUNK_TRIGGER_ENV}=512 chunks only minibatches estimated above 512 MiB of activations")
    return int(mib * 2**20)


def _outputs_at(
    backend: LMBackend, prompt_ids: th.Tensor, prompt_mask: th.Tensor, tokens: th.Tensor, out_episode: th.Tensor,
    out_pos: th.Tensor,
) -> tuple[th.Tensor, th.Tensor]:
    with backend.outputs_at((out_episode, out_pos)):  # the LM head at the outputs only
        return backend.forward_sequences(prompt_ids, prompt_mask, tokens)  # (N, V), (N, H)


class _SameAttentionKernels:
    """A reusable context that re-enables the scaled-dot-product attention kernels enabled when it was made: a
    checkpointed chunk is recomputed in the backward pass (once per backward, twice in a double backward),
    outside the caller's ``sdpa_kernel`` context (e.g. the "math" kernel a double backward needs), and must run
    the same kernel again."""

    def __init__(self) -> None:
        from torch.nn.attention import SDPBackend

        flags = {
            SDPBackend.MATH: th.backends.cuda.math_sdp_enabled(),
            SDPBackend.FLASH_ATTENTION: th.backends.cuda.flash_sdp_enabled(),
            SDPBackend.EFFICIENT_ATTENTION: th.backends.cuda.mem_efficient_sdp_enabled(),
            SDPBackend.CUDNN_ATTENTION: th.backends.cuda.cudnn_sdp_enabled(),
        }
        self.enabled = [kernel for kernel, on in flags.items() if on]
        self._active: list[Any] = []

    def __enter__(self) -> None:
        from torch.nn.attention import sdpa_kernel

        self._active.append(sdpa_kernel(self.enabled))
        self._active[-1].__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._active.pop().__exit__(*exc)


def episode_activation_bytes(config: Any, prompt_width: int, length: int, element_size: int = 4) -> int:
    """A rough estimate of the activations a teacher-forced forward of one episode keeps for its backward pass.

    Per layer: the attention's scores, probabilities and their bias or gradient (``3 x heads x queries x keys``)
    and the feed-forward and projection activations (``(6 H + 2 FF)`` per token); a seq2seq model's encoder reads
    the prompt, its decoder the generated tokens (self- and cross-attention), a causal model both in one sequence.
    It sizes the chunks of :func:`teacher_forced_outputs` (a T5 at 190 prompt tokens is dominated by the
    quadratic attention term, which the token count alone would miss).

    :param config: the model's Hugging Face config
    :param prompt_width: real prompt tokens ``W``
    :param length: generated positions ``L`` run through the model
    :param element_size: bytes per activation (the model's dtype)
    """
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "d_model", 0) or 768)
    heads = int(getattr(config, "num_attention_heads", 0) or 1)
    ff = int(getattr(config, "intermediate_size", 0) or getattr(config, "d_ff", 0) or getattr(config, "n_inner", 0)
             or 4 * hidden)
    layers = int(getattr(config, "num_hidden_layers", 0) or 1)

    def attention(queries: int, keys: int) -> int:
        return 3 * heads * queries * keys

    def feed_forward(n: int) -> int:
        return n * (6 * hidden + 2 * ff)

    W, L = int(prompt_width), int(length)
    if getattr(config, "is_encoder_decoder", False):
        decoder_layers = int(getattr(config, "num_decoder_layers", 0) or getattr(config, "decoder_layers", 0) or layers)
        cells = layers * (attention(W, W) + feed_forward(W)) + decoder_layers * (
            attention(L, L) + attention(L, W) + feed_forward(L))
    else:
        cells = layers * (attention(W + L, W + L) + feed_forward(W + L))
    return cells * element_size


def activation_chunks(
    config: Any, widths: np.ndarray, lengths: np.ndarray, budget: int, element_size: int = 4
) -> list[np.ndarray]:
    """Episodes grouped into chunks of at most ``budget`` estimated activation bytes (at least one episode each).

    Episodes are sorted by prompt width first, so a chunk's episodes pad to similar widths.

    :param config: the model's Hugging Face config (:func:`episode_activation_bytes`)
    :param widths: (E,) real prompt tokens per episode
    :param lengths: (E,) generated positions each episode runs through the model
    :param budget: bytes per chunk
    :return: episode indices, one array per chunk, covering every episode once
    """
    if budget < 1:
        raise ValueError(f"expected an activation budget of at least 1 byte, got {budget}")
    order = np.argsort(widths, kind="stable")
    chunks: list[np.ndarray] = []
    start = 0
    while start < len(order):
        stop, longest = start + 1, int(lengths[order[start]])
        # a chunk pads to its widest prompt and longest text: n episodes cost n times one of that size
        while stop < len(order):
            longest_with = max(longest, int(lengths[order[stop]]))
            cost = (stop + 1 - start) * episode_activation_bytes(config, int(widths[order[stop]]), longest_with,
                                                                 element_size)
            if cost > budget:
                break
            stop, longest = stop + 1, longest_with
        chunks.append(order[start:stop])
        start = stop
    return chunks


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
