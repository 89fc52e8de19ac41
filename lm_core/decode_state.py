"""The per-row KV cache of token-by-token rollouts (:class:`DecodeState`) and the cache helpers it shares with
:mod:`lm_core.static_cache` and :mod:`lm_core.backends`.

Shapes: ``B`` rows (envs), ``P`` prompt length, ``T`` generated length, ``L`` cache slots, ``V`` action-space
vocabulary, ``H`` hidden size.

:class:`DecodeState` keeps per-row KV caches across one-token-per-call rollouts (an engine's env steps): each
row's live cache entries are the right-most ``live[r]`` slots of one shared cache, every step appends one slot
for all rows, and a row whose observation does not continue the cached one is rebuilt by a fresh prefill written
into its last slots (all such rows in one prefill, each distinct prompt and prefix once); columns dead for every
row are cut from the left, so the cache grows with episode length, not rollout length.  T5's relative position
bias only depends on slot differences and causal models get explicit positions, so holes in the cache are exact.

A seq2seq row whose text starts (no token generated yet) needs no prefill of its own: its prompt is encoded (each
distinct prompt once: the rows of a group start together), its encoder output and cross-attention keys/values are
written into its row, its old slots masked out, and it takes the shared step with the decoder-start token, at a
slot of its own: exactly its prefill (T5's relative bias). The backend's keys/values are checked against the
model's own at the first prefill (``Seq2SeqBackend.check_cross_attention``); other models keep the prefill.
:class:`lm_core.static_cache.StaticDecodeState` is the same over preallocated buffers, with a step that
``torch.compile`` captures (``LLMPolicy(compile=...)``).
"""

from __future__ import annotations

import copy
import inspect
from typing import TYPE_CHECKING, Any

import torch as th
from torch import nn

from .loading import ModelLoadError

if TYPE_CHECKING:
    from .backends import LMBackend

__all__ = [
    "DecodeState",
    "trim_left_padding",
    "cache_kwarg",
    "output_cache",
    "self_attention_layers",
    "has_plain_layers",
    "unique_rows",
    "right_align",
]


# --------------------------------------------------------------------------------------------------------
# cache helpers (transformers >= 4.56 "layers" cache API)
# --------------------------------------------------------------------------------------------------------
def cache_kwarg(model: nn.Module) -> str:
    """The name of the model's ``forward`` argument that takes a KV cache (``cache`` or ``past_key_values``)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out: Any) -> Any:
    """The KV cache a model's forward returned (``out.cache`` or ``out.past_key_values``), or None."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def self_attention_layers(cache: Any) -> list:
    """The self-attention layers of a transformers cache (the decoder's, for an encoder-decoder cache)."""
    inner = getattr(cache, "self_attention_cache", cache)
    return list(inner.layers)


def has_plain_layers(cache: Any) -> bool:
    """Whether every self-attention layer of ``cache`` is a plain ``DynamicLayer`` (no sliding window, not
    static): the layers :class:`DecodeState` can cut and grow."""
    from transformers.cache_utils import DynamicLayer

    try:
        layers = self_attention_layers(cache)
    except AttributeError:
        return False
    return all(type(layer) is DynamicLayer for layer in layers)


def trim_left_padding(prompt_ids: th.Tensor, prompt_mask: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Cut the leading columns that are padding in every row of left-padded prompts (one host sync).

    A text env pads every prompt to ``P`` (256 for summarization) while most are far shorter; the cut columns
    are masked out of every attention, and T5's relative positions and a causal model's explicit positions
    (from the mask) do not change, so the forward is the same to float error at a fraction of the cost.

    :param prompt_ids: (E, P) left-padded ids
    :param prompt_mask: (E, P) 1 on real tokens
    :return: ``(prompt_ids[:, c:], prompt_mask[:, c:])`` with ``c`` the first column real in some row (at most
        ``P - 1``: one column is always kept)
    """
    P = prompt_mask.shape[1]
    live = prompt_mask.bool().any(0)  # (P,)
    first = int(live.int().argmax()) if bool(live.any()) else P - 1  # sync
    first = min(first, P - 1)
    return (prompt_ids[:, first:], prompt_mask[:, first:]) if first > 0 else (prompt_ids, prompt_mask)


def unique_rows(*columns: th.Tensor) -> tuple[th.Tensor, th.Tensor] | None:
    """The distinct rows of ``columns`` side by side: ``(first, inverse)`` with ``first`` (U,) the index of each
    distinct row's first occurrence and ``inverse`` (k,) the distinct row of each row, so that ``x[first][inverse]``
    equals ``x`` for any per-row function ``x`` of the columns; None when all k rows differ (one host sync).

    The rows of a group (``group_size``) share one prompt and start together: their prefill is computed once.

    :param columns: (k, *) tensors with the same first dimension
    """
    k = columns[0].shape[0]
    if k < 2:
        return None
    key = th.cat([c.reshape(k, -1).long() for c in columns], dim=1)  # (k, total width)
    _, inverse = th.unique(key, dim=0, return_inverse=True)  # (k,): sorted distinct rows
    n_unique = int(inverse.max()) + 1  # sync
    if n_unique == k:
        return None
    order = th.arange(k, device=key.device)
    first = th.full((n_unique,), k, dtype=th.long, device=key.device).scatter_reduce(0, inverse, order, "amin")
    return first, inverse


def right_align(ids: th.Tensor, mask: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Move every row's real tokens (mask 1) to the right end, in their order, padding in front: a sequence with
    holes becomes a left-padded one (``argsort`` is stable, so the order within each part is kept).

    :param ids: (k, n)
    :param mask: (k, n) 1 on real tokens
    """
    order = th.argsort(mask.long(), dim=1, stable=True)  # (k, n): padding columns first, then the real ones
    return ids.gather(1, order), mask.long().gather(1, order)


def _pick(t: th.Tensor | None, source: th.Tensor) -> th.Tensor | None:
    return None if t is None else t[source]


def _expand_cache(cache: Any, source: th.Tensor) -> None:
    """Give every layer of a prefill's cache (self- and cross-attention) the rows ``source`` of its own, in place
    (a prefill of distinct rows expanded back to all rows)."""
    inners = [cache]
    if hasattr(cache, "self_attention_cache"):  # encoder-decoder: the decoder's and the cross-attention layers
        inners = [cache.self_attention_cache, cache.cross_attention_cache]
    for inner in inners:
        for layer in inner.layers:
            layer.keys, layer.values = layer.keys[source], layer.values[source]


# --------------------------------------------------------------------------------------------------------
# cached rollout state
# --------------------------------------------------------------------------------------------------------
class DecodeState:
    """Per-row KV caches of one model across token-by-token rollout calls (see the module docstring).

    Every call receives full observations; each row is classified against what the cache holds:

    * same prompt and same generated tokens as already consumed: the memoised output is returned,
    * one more generated token: the row takes part in the shared one-token step,
    * anything else (a fresh episode, an auto-reset, an observation from elsewhere): the row is rebuilt
      with a prefill over its prompt and generated prefix.

    :param backend: the model's backend
    """

    #: prefills see prompts without the columns that are padding in all their rows; a seq2seq encoder output is
    #: kept as wide as the longest live prompt (subclasses with fixed-shape buffers set it False)
    trims_prompts = True
    #: a fresh seq2seq row joins the shared one-token step (its decoder-start token) instead of a prefill of its
    #: own, when the backend can compute its cross-attention keys/values (subclasses with fixed buffers set False)
    folds_starts = True

    def __init__(self, backend: LMBackend):
        self.backend = backend
        self.B = 0
        self.cache: Any = None

    def reset(self) -> None:
        """Drop every cached row (call after a parameter change)."""
        self.B = 0
        self.cache = None

    # slot manipulation ------------------------------------------------------------------------------------
    def _layers(self) -> list:
        return self_attention_layers(self.cache)

    def _grow_left(self, n: int) -> None:
        if n <= 0:
            return
        for layer in self._layers():
            k, v = layer.keys, layer.values
            pad = k.new_zeros((*k.shape[:2], n, k.shape[3]))
            layer.keys, layer.values = th.cat([pad, k], dim=2), th.cat([pad.clone(), v], dim=2)
        self.mask = th.cat([self.mask.new_zeros((self.B, n)), self.mask], dim=1)

    def _compact(self) -> None:
        L = self.mask.shape[1]
        keep = int(self.live.max())  # host tensor: no sync
        if keep >= L:
            return
        for layer in self._layers():
            layer.keys, layer.values = layer.keys[:, :, L - keep :], layer.values[:, :, L - keep :]
        self.mask = self.mask[:, L - keep :]

    def _write_rows(self, rows: th.Tensor, cache: Any, extra: th.Tensor | None, new_mask: th.Tensor) -> None:
        """Write a fresh prefill cache (rows, n0 slots) into the last n0 slots of the shared cache."""
        n0 = new_mask.shape[1]
        L = self.mask.shape[1]
        self._grow_left(n0 - L)
        L = self.mask.shape[1]
        for layer, fresh in zip(self._layers(), self_attention_layers(cache)):
            layer.keys[rows, :, L - n0 :] = fresh.keys.to(layer.keys.dtype)
            layer.values[rows, :, L - n0 :] = fresh.values.to(layer.values.dtype)
        self.mask[rows] = 0
        self.mask[rows, L - n0 :] = new_mask
        if extra is not None:  # seq2seq: encoder output and cross-attention keys/values
            cross = [(x.keys, x.values) for x in cache.cross_attention_cache.layers]
            self._write_encoder_rows(rows, extra, cross)

    def _write_encoder_rows(self, rows: th.Tensor, extra: th.Tensor, cross: list[tuple[th.Tensor, th.Tensor]]) -> None:
        """Write rows' encoder output (k, w, H) and cross-attention keys/values ((k, heads, w, d) per decoder layer)
        into the shared ones, right-aligned (a shorter prompt: zero columns on the left, masked out like padding)."""
        if self.extra is None:  # as wide as the cross-attention layers _empty_from made from this prefill
            self.extra = extra.new_zeros((self.B, *extra.shape[1:]))
        W = self._fit_encoder_width(max(extra.shape[1], self.extra.shape[1]))
        pad = W - extra.shape[1]
        self.extra[rows, pad:] = extra.to(self.extra.dtype)
        self.extra[rows, :pad] = 0
        for layer, (keys, values) in zip(self.cache.cross_attention_cache.layers, cross):
            layer.keys[rows, :, pad:] = keys.to(layer.keys.dtype)
            layer.values[rows, :, pad:] = values.to(layer.values.dtype)
            layer.keys[rows, :, :pad] = 0
            layer.values[rows, :, :pad] = 0

    def _fit_encoder_width(self, W: int) -> int:
        """Widen (zeros on the left) or narrow (drop left columns) the encoder output and the cross-attention
        keys/values of every row to W columns; returns W.

        Prompts are left-padded, so while W is at least the longest live prompt, the last W columns of
        ``prompt_mask`` hold every row's real tokens and the step's encoder mask is ``prompt_mask[:, -W:]``.
        """
        have = self.extra.shape[1]
        if W == have:
            return W
        layers = self.cache.cross_attention_cache.layers

        def fit(t: th.Tensor, dim: int) -> th.Tensor:
            if W < have:
                return t.narrow(dim, have - W, W).contiguous()
            shape = list(t.shape)
            shape[dim] = W - have
            return th.cat([t.new_zeros(shape), t], dim=dim)

        self.extra = fit(self.extra, 1)
        for layer in layers:
            layer.keys, layer.values = fit(layer.keys, 2), fit(layer.values, 2)
        return W

    # main entry -------------------------------------------------------------------------------------------
    def __call__(
        self, prompt_ids: th.Tensor, prompt_mask: th.Tensor, gen_ids: th.Tensor, gen_len: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor]:
        """Next-token logits (B, V) and hidden states (B, H) for a batch of observations, using the cache.

        :param prompt_ids: (B, P) left-padded prompt ids
        :param prompt_mask: (B, P)
        :param gen_ids: (B, T) generated ids, right-padded
        :param gen_len: (B,) generated count per row
        """
        B, P = prompt_ids.shape
        T = gen_ids.shape[1]
        if self.cache is None or self.B != B or self.P != P or self.T != T:
            self._init(B, P, T, prompt_ids.device)
        rows = self._classify(prompt_ids, prompt_mask, gen_ids, gen_len)
        if rows is None:  # every row memoised
            return self.logits, self.hidden
        # control flow reads the host copies (*_h); device work uses the device masks: a boolean index or a
        # host-to-device copy would make the GPU wait once more per step
        memo, advance, start, memo_h, adv_h, start_h, reb_h, len_h = rows
        logits, hidden = self.logits, self.hidden
        if adv_h.any() or start_h.any():
            if start_h.any():
                self._start_rows(start_h, start, prompt_ids, prompt_mask)
            last = gen_ids.gather(1, (gen_len - 1).clamp(min=0)[:, None]).squeeze(1)  # (B,)
            stepping = advance
            if start_h.any():  # fresh rows feed the decoder-start token: their prefill, folded into the step
                last = last.masked_fill(start, self.backend.decoder_start_token_id)
                stepping = advance | start
            lg, hd = self._step(last, memo, bool(memo_h.any()))
            self.live += 1
            self.next_pos = self.next_pos + (~memo).long()
            if bool((adv_h | start_h).all()):
                logits, hidden = lg.to(logits.dtype), hd.to(hidden.dtype)
            else:
                logits = th.where(stepping[:, None], lg.to(logits.dtype), logits)
                hidden = th.where(stepping[:, None], hd.to(hidden.dtype), hidden)
        if reb_h.any():
            if logits is self.logits:  # written in place below: never into the tensors returned last step
                logits, hidden = logits.clone(), hidden.clone()
            self._rebuild(reb_h, len_h, prompt_ids, prompt_mask, gen_ids, logits, hidden)
        self.prompt_ids.copy_(prompt_ids)
        self.prompt_mask.copy_(prompt_mask)
        self.gen_ids.copy_(gen_ids)
        self.consumed.copy_(gen_len)
        self.valid.fill_(True)
        if (reb_h.any() or start_h.any()) and self.trims_prompts and self.extra is not None:  # a long prompt left
            self._fit_encoder_width(max(int(prompt_mask.sum(1).max()), 1))  # host sync, after a new prompt only
        self.logits, self.hidden = logits, hidden
        self._compact()
        return logits, hidden

    def _classify(self, prompt_ids: th.Tensor, prompt_mask: th.Tensor, gen_ids: th.Tensor,
                  gen_len: th.Tensor) -> tuple | None:
        """Sort the rows against the cache (one host sync for the whole batch): memoised, advancing by one token,
        starting (a fresh episode whose prefill joins the shared step) or rebuilt by a prefill.

        :return: None when every row is memoised, else device masks ``(memo, advance, start)`` (B,), host masks
            ``(memo_h, adv_h, start_h, reb_h)`` (B,) and the host copy of ``gen_len``
        """
        T = gen_ids.shape[1]
        same_prompt = (prompt_ids == self.prompt_ids).all(1) & (prompt_mask == self.prompt_mask).all(1)
        tpos = th.arange(T, device=gen_ids.device)[None]
        prefix_ok = ((gen_ids == self.gen_ids) | (tpos >= self.consumed[:, None])).all(1)
        valid = self.valid & same_prompt & prefix_ok
        memo = valid & (gen_len == self.consumed)
        advance = valid & (gen_len == self.consumed + 1)
        kinds = th.stack([memo.long(), advance.long(), gen_len]).cpu()  # (3, B) sync
        memo_h, adv_h, len_h = kinds[0].bool(), kinds[1].bool(), kinds[2]
        if bool(memo_h.all()):
            return None
        folds = self._folds_starts()
        start_h = ~(memo_h | adv_h) & (len_h == 0) if folds else th.zeros_like(memo_h)
        if memo_h.any() and (adv_h.any() or start_h.any()) and self.backend.kind == "seq2seq":
            memo_h = th.zeros_like(memo_h)  # a hole would shift T5's relative positions: rebuild those rows
            memo = th.zeros_like(memo)
            start_h = ~adv_h & (len_h == 0) if folds else start_h
        start = ~(memo | advance) & (gen_len == 0) if folds else th.zeros_like(memo)
        reb_h = ~(memo_h | adv_h | start_h)
        return memo, advance, start, memo_h, adv_h, start_h, reb_h, len_h

    def _folds_starts(self) -> bool:
        """Whether fresh rows can join the shared step instead of a prefill of their own (a seq2seq model whose
        cross-attention keys/values the backend computes exactly, and a cache to join)."""
        return self.folds_starts and self.cache is not None and getattr(self.backend, "folds_starts", False)

    def _start_rows(self, start_h: th.Tensor, start: th.Tensor, prompt_ids: th.Tensor, prompt_mask: th.Tensor) -> None:
        """Prepare fresh seq2seq rows for the shared step: encode their prompts (each distinct prompt once), write
        the encoder output and cross-attention keys/values into their rows, and mask out their old slots, so that
        the step's one decoder token (the decoder-start token, at a slot of its own) is exactly their prefill."""
        rows_list = start_h.nonzero().flatten().tolist()
        rows = th.tensor(rows_list, device=prompt_ids.device)
        p_ids, p_mask = prompt_ids[rows], prompt_mask[rows]
        if self.trims_prompts:  # no encoder work on columns that are padding in all of these rows
            p_ids, p_mask = trim_left_padding(p_ids, p_mask)
        shared = unique_rows(p_ids, p_mask)
        if shared is not None:
            p_ids, p_mask = p_ids[shared[0]], p_mask[shared[0]]
        extra = self.backend.encode(p_ids, p_mask)  # (u, w, H)
        cross = self.backend.cross_attention_kv(extra)
        if shared is not None:
            extra, cross = extra[shared[1]], [(k[shared[1]], v[shared[1]]) for k, v in cross]
        self._write_encoder_rows(rows, extra, cross)
        self.mask[rows] = 0
        self.prompt_mask.copy_(prompt_mask)  # the step's cross-attention mask (the encoder output's columns)
        self.live[start_h] = 0
        self.next_pos = self.next_pos.masked_fill(start, 0)

    def _rebuild(self, reb_h: th.Tensor, len_h: th.Tensor, prompt_ids: th.Tensor, prompt_mask: th.Tensor,
                 gen_ids: th.Tensor, logits: th.Tensor, hidden: th.Tensor) -> None:
        """Prefill the rows of ``reb_h`` into the cache in one forward (each distinct row once; prefixes of different
        lengths left-padded), writing their outputs into ``logits`` and ``hidden`` in place."""
        dev = prompt_ids.device
        rows_list = reb_h.nonzero().flatten().tolist()
        rows = th.tensor(rows_list, device=dev)
        p_ids, p_mask = prompt_ids[rows], prompt_mask[rows]
        if self.trims_prompts:  # no prefill work on columns that are padding in all of these rows
            p_ids, p_mask = trim_left_padding(p_ids, p_mask)
        lengths_h = len_h[reb_h]
        t = int(lengths_h.max())
        prefix, prefix_mask = gen_ids[rows, :t], None
        if bool((lengths_h != t).any()):  # prefixes of different lengths, one forward: right-align them
            lengths = lengths_h.to(dev)
            column = th.arange(t, device=dev)[None] - (t - lengths)[:, None]  # (k, t): the prefix index, or < 0
            prefix_mask = (column >= 0).long()
            prefix = prefix.gather(1, column.clamp(min=0)) * prefix_mask
            if self.backend.kind != "seq2seq":  # one sequence per row: prompt and prefix, right-aligned together
                p_ids, p_mask = right_align(th.cat([p_ids, prefix], dim=1), th.cat([p_mask.long(), prefix_mask], dim=1))
                prefix, prefix_mask = prefix[:, :0], None
        shared = unique_rows(p_ids, p_mask, prefix)
        source = None
        if shared is not None:
            p_ids, p_mask, prefix = p_ids[shared[0]], p_mask[shared[0]], prefix[shared[0]]
            prefix_mask = None if prefix_mask is None else prefix_mask[shared[0]]
            source = shared[1]
        if prefix_mask is None:
            lg, hd, cache, extra, next_pos = self.backend.prefill(p_ids, p_mask, prefix)
        else:
            lg, hd, cache, extra, next_pos = self.backend.prefill(p_ids, p_mask, prefix, prefix_mask)
        real = th.ones_like(prefix) if prefix_mask is None else prefix_mask
        if self.backend.kind == "seq2seq":
            self.backend.check_cross_attention(extra, cache)
            # (k, t+1) decoder slots: slot j is live from j = t - length on (the start token, then the prefix),
            # which is the prefix's mask with one more live column at the end
            new_mask = th.cat([real, real.new_ones((real.shape[0], 1))], dim=1)
        else:
            new_mask = th.cat([p_mask.long(), real], dim=1)
        new_mask = new_mask.to(self.mask.dtype)
        if source is not None:  # back to one row per rebuilt row
            lg, hd, next_pos, new_mask = lg[source], hd[source], next_pos[source], new_mask[source]
            extra = _pick(extra, source)
            _expand_cache(cache, source)
        if self.cache is None:
            self._empty_from(cache)
        self._write_rows(rows, cache, extra, new_mask)
        self.live[th.tensor(rows_list)] = new_mask.shape[1]
        self.next_pos[rows] = next_pos
        logits[rows] = lg.to(logits.dtype)
        hidden[rows] = hd.to(hidden.dtype)

    def _step(self, last: th.Tensor, memo: th.Tensor, any_memo: bool) -> tuple[th.Tensor, th.Tensor]:
        """Append one slot for every row, feeding ``last`` (B,); memoised rows' new slot is masked out after.

        :return: logits (B, V), hidden (B, H) of the step (meaningful for the advancing rows)
        """
        step_mask = th.cat([self.mask, th.ones_like(self.mask[:, :1])], dim=1)  # (B, L+1)
        lg, hd, self.cache = self.backend.step(self, last, step_mask)
        if any_memo:  # causal only: the re-fed slot of memoised rows is masked out
            step_mask[:, -1] = (~memo).to(step_mask.dtype)
        self.mask = step_mask
        return lg, hd

    def _init(self, B: int, P: int, T: int, dev: th.device) -> None:
        self.B, self.P, self.T = B, P, T
        self.prompt_ids = th.zeros((B, P), dtype=th.long, device=dev)
        self.prompt_mask = th.zeros((B, P), dtype=th.long, device=dev)
        self.gen_ids = th.zeros((B, T), dtype=th.long, device=dev)
        self.consumed = th.zeros(B, dtype=th.long, device=dev)
        self.valid = th.zeros(B, dtype=th.bool, device=dev)
        self.live = th.zeros(B, dtype=th.long)  # host: span of each row's live slots
        self.next_pos = th.zeros(B, dtype=th.long, device=dev)
        self.mask = th.zeros((B, 0), dtype=th.long, device=dev)
        self.logits = th.zeros((B, self.backend.vocab_size), device=dev)
        self.hidden = th.zeros((B, self.backend.hidden_size), device=dev)
        self.cache = None
        self.extra = None

    def _empty_from(self, cache: Any) -> None:
        """Make an empty shared cache (B rows, 0 slots) with the structure of a prefill cache."""
        if not has_plain_layers(cache):
            raise ModelLoadError(
                "this model's KV cache is not a plain DynamicCache (sliding-window or static layers); "
                "pass use_cache=False to LLMPolicy to use the uncached path"
            )
        shared = copy.copy(cache)
        B = self.B
        if hasattr(cache, "self_attention_cache"):
            shared.self_attention_cache = copy.copy(cache.self_attention_cache)
            shared.cross_attention_cache = copy.copy(cache.cross_attention_cache)
            shared.is_updated = {i: True for i in range(len(cache.cross_attention_cache.layers))}
            shared.cross_attention_cache.layers = [copy.copy(x) for x in cache.cross_attention_cache.layers]
            for layer in shared.cross_attention_cache.layers:
                layer.keys = layer.keys.new_zeros((B, *layer.keys.shape[1:]))
                layer.values = layer.values.new_zeros((B, *layer.values.shape[1:]))
            inner = shared.self_attention_cache
            ref = cache.self_attention_cache
            self.extra = None
        else:
            inner, ref = shared, cache
        inner.layers = [copy.copy(x) for x in ref.layers]
        for layer in inner.layers:
            layer.keys = layer.keys.new_zeros((B, layer.keys.shape[1], 0, layer.keys.shape[3]))
            layer.values = layer.values.new_zeros((B, layer.values.shape[1], 0, layer.values.shape[3]))
        self.cache = shared
