"""A static (preallocated) KV cache per env row and a decode step that ``torch.compile`` can capture.

:class:`StaticDecodeState` is a drop-in replacement for :class:`~lm_core.decode_state.DecodeState` (same call, same
row classification, same per-row refill on an auto-reset) whose tensors never change shape or address:

* the self-attention cache of every layer is a transformers ``StaticLayer`` of ``S = span + slack`` slots,
  ``span`` the longest a row can need (``T + 1`` decoder slots for T5, ``P + T`` for causal models);
* all rows share one write pointer ``L`` (the layers' ``cumulative_length``): a step writes slot ``L`` for every
  row and advances it; a row refilled by a prefill (fresh episode, auto-reset, foreign observation) gets its
  prefill keys/values copied into slots ``[L - n0, L)``, the rest of its row masked out. So each row's live
  slots are contiguous and end at ``L``, as in ``DecodeState``: T5's relative position bias (query at ``L``)
  and the causal models' explicit ``position_ids`` stay exact;
* when ``L`` reaches ``S`` the last ``span`` slots are copied to the front (once every ``slack`` steps, outside
  the compiled step), so the buffers never grow;
* seq2seq: the encoder output and the cross-attention keys/values (``P`` slots) are static per row too.

The step (one token for all rows through the model's own forward, with the static cache) is what
``torch.compile`` captures: inductor on CPU, CUDA graphs (``mode="reduce-overhead"``) on GPU. Prefills stay
eager (their shapes vary). Everything is float-exact with the dynamic path up to summation order: masked slots
add exact zeros to the attention, so the two agree to float rounding (``tests/test_compiled_decode.py``).

Chosen by ``LLMPolicy(compile=...)``: ``False`` (default) keeps ``DecodeState``; ``"static"`` uses this state
with an eager step; ``True`` compiles the step (``"reduce-overhead"`` on CUDA, inductor's default on CPU); any
other string is passed to ``torch.compile`` as its ``mode``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch as th

from text_envs.errors import TextEnvsError

from .backends import LMBackend
from .decode_state import DecodeState, has_plain_layers, self_attention_layers
from .loading import ModelLoadError

__all__ = ["StaticDecodeState", "COMPILE_CHOICES", "check_compile_option"]

COMPILE_CHOICES = (False, True, "static", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_option(value: Any) -> bool | str:
    """Validate ``LLMPolicy(compile=...)``: ``False``, ``True``, ``"static"`` or a ``torch.compile`` mode."""
    if value is None:
        return False
    if isinstance(value, bool) or value in COMPILE_CHOICES:
        return value
    raise TextEnvsError(
        f"expected compile to be one of {list(COMPILE_CHOICES)} (False: dynamic KV cache, eager; 'static': static "
        f"KV cache, eager; True or a torch.compile mode: static KV cache, compiled step), got {value!r}"
    )


class _Slots:
    """The preallocated buffers of one (B, P, T, device) shape and the step compiled for them."""

    def __init__(self, cache: Any, mask: th.Tensor, extra: th.Tensor | None, span: int, S: int):
        self.cache, self.mask, self.extra, self.span, self.S = cache, mask, extra, span, S
        self.L = span  # the write pointer (host copy of the layers' cumulative_length)
        self.step_fn: Callable | None = None


class StaticDecodeState(DecodeState):
    """:class:`~lm_core.decode_state.DecodeState` over a static KV cache, with an optionally compiled step.

    :param backend: the model's backend
    :param compile: ``False``/``"static"``: eager step; ``True``: ``torch.compile`` (``"reduce-overhead"`` on
        CUDA, ``"default"`` on CPU); another string: that ``torch.compile`` mode
    :param slack: slots beyond the longest row span (``None``: the span itself); the cache is compacted once every
        ``slack`` steps
    :param attention: the attention implementation of the step (``"eager"``, ``"sdpa"``...; ``None``: ``"eager"``
        for a compiled step on CPU, where inductor fuses its matmuls and softmax and the single-query SDPA kernel
        costs more than the arithmetic, else the model's own). Prefills always use the model's own
    """

    trims_prompts = False  # the static buffers keep the full prompt width P
    folds_starts = False  # fresh rows take a prefill: the compiled step's inputs keep one shape and meaning

    def __init__(self, backend: LMBackend, compile: bool | str = True, slack: int | None = None,
                 attention: str | None = None):
        super().__init__(backend)
        self.compile = check_compile_option(compile)
        self.slack = slack
        self.attention = attention
        self._configs = list({id(m.config): m.config for m in backend.model.modules()
                              if hasattr(getattr(m, "config", None), "_attn_implementation_internal")}.values())
        self._slots: dict[tuple, _Slots] = {}
        self._cur: _Slots | None = None

    # state ------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every row (all are refilled at the next call); the buffers and the compiled step are kept."""
        if self.B and self._cur is not None:
            self.valid.fill_(False)
        else:
            super().reset()

    def _span(self, P: int, T: int) -> int:
        return T + 1 if self.backend.kind == "seq2seq" else P + T

    def _init(self, B: int, P: int, T: int, dev: th.device) -> None:
        super()._init(B, P, T, dev)
        self._key = (B, P, T, str(dev))
        self._cur = self._slots.get(self._key)
        if self._cur is not None:
            self.cache, self.mask, self.extra = self._cur.cache, self._cur.mask, self._cur.extra
            self.mask.zero_()

    def _empty_from(self, cache: Any) -> None:
        """Allocate the static buffers for the current shape from the structure of a prefill cache."""
        from transformers.cache_utils import Cache, EncoderDecoderCache, StaticLayer

        if not has_plain_layers(cache):
            raise ModelLoadError(
                "this model's KV cache is not a plain DynamicCache (sliding-window or static layers): the static "
                "cache cannot hold it; use compile=False (or use_cache=False)"
            )
        span = self._span(self.P, self.T)
        S = span + (self.slack if self.slack is not None else span)
        B = self.B

        def static_layers(ref_layers: list, n: int) -> list:
            out = []
            for ref in ref_layers:
                layer = StaticLayer(max_cache_len=n)
                k, v = ref.keys, ref.values  # (k, heads, t, d)
                layer.lazy_initialization(k.new_zeros((B, k.shape[1], 1, k.shape[3])),
                                          v.new_zeros((B, v.shape[1], 1, v.shape[3])))
                layer.cumulative_length.fill_(span)
                out.append(layer)
            return out

        self_layers = static_layers(self_attention_layers(cache), S)
        if hasattr(cache, "self_attention_cache"):
            cross_ref = cache.cross_attention_cache.layers
            cross = static_layers(cross_ref, int(cross_ref[0].keys.shape[2]))
            shared: Any = EncoderDecoderCache(Cache(layers=self_layers), Cache(layers=cross))
            shared.is_updated = {i: True for i in range(len(cross))}
        else:
            shared = Cache(layers=self_layers)
        mask = th.zeros((B, S), dtype=self.mask.dtype, device=self.mask.device)
        if self.mask.device.type == "cuda":
            th._dynamo.mark_static_address(mask)
        self._cur = self._slots[self._key] = _Slots(shared, mask, None, span, S)
        self.cache, self.mask, self.extra = shared, mask, None

    def _set_pointer(self, L: int) -> None:
        self._cur.L = L
        for layer in self_attention_layers(self.cache):
            layer.cumulative_length.fill_(L)

    def _write_rows(self, rows: th.Tensor, cache: Any, extra: th.Tensor | None, new_mask: th.Tensor) -> None:
        """Copy a prefill cache (rows, n0 slots) into slots [L - n0, L) of those rows; mask out the rest."""
        n0 = new_mask.shape[1]
        L = self._cur.L
        if n0 > L:  # cannot happen: L >= span >= any prefill
            raise AssertionError(f"static cache: a prefill of {n0} slots does not fit before the pointer {L}")
        for layer, fresh in zip(self_attention_layers(self.cache), self_attention_layers(cache)):
            layer.keys[rows, :, L - n0 : L] = fresh.keys.to(layer.keys.dtype)
            layer.values[rows, :, L - n0 : L] = fresh.values.to(layer.values.dtype)
        self.mask[rows] = 0
        self.mask[rows, L - n0 : L] = new_mask
        if extra is not None:  # seq2seq: the encoder output, one static (B, P, H) buffer allocated at first use
            if self.extra is None:
                self.extra = self._cur.extra = extra.new_zeros((self.B, *extra.shape[1:]))
                if self.extra.device.type == "cuda":
                    th._dynamo.mark_static_address(self.extra)
            self.extra[rows] = extra.to(self.extra.dtype)
            for layer, fresh in zip(self.cache.cross_attention_cache.layers, cache.cross_attention_cache.layers):
                layer.keys[rows] = fresh.keys.to(layer.keys.dtype)
                layer.values[rows] = fresh.values.to(layer.values.dtype)

    def _compact(self) -> None:
        """When the pointer reaches the end, move the last ``span`` slots to the front (in place)."""
        cur = self._cur
        if cur is None or cur.L < cur.S:
            return
        span, L = cur.span, cur.L
        for layer in self_attention_layers(self.cache):
            layer.keys[:, :, :span] = layer.keys[:, :, L - span : L].clone()
            layer.values[:, :, :span] = layer.values[:, :, L - span : L].clone()
        self.mask[:, :span] = self.mask[:, L - span : L].clone()
        self.mask[:, span:] = 0
        self._set_pointer(span)

    # the step ---------------------------------------------------------------------------------------------
    def _raw_step(self, tokens: th.Tensor, mask: th.Tensor, prompt_mask: th.Tensor,
                  next_pos: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """One token for all rows through the model with the static cache: logits (B, V), hidden (B, H)."""
        backend = self.backend
        if backend.kind == "seq2seq":
            from transformers.modeling_outputs import BaseModelOutput

            out = backend.model(
                encoder_outputs=BaseModelOutput(last_hidden_state=self.extra), attention_mask=prompt_mask,
                decoder_input_ids=tokens[:, None], decoder_attention_mask=mask, use_cache=True,
                **{backend.cache_kw: self.cache},
            )
            logits, hidden = out.logits, backend.take_hidden()
        else:
            kw: dict[str, Any] = dict(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                                      use_cache=True, **{backend.cache_kw: self.cache})
            if backend.keep_logits_kw is not None:
                kw[backend.keep_logits_kw] = 1
            out = backend.model(**kw)
            logits, hidden = out.logits, backend.take_hidden()
        return backend.vocab_slice(logits[:, -1]), hidden[:, -1]

    def _compiled(self) -> Callable:
        cur = self._cur
        if cur.step_fn is None:
            if self.compile in (False, "static"):
                cur.step_fn = self._raw_step
            else:
                mode = self.compile if isinstance(self.compile, str) else (
                    "reduce-overhead" if self.mask.device.type == "cuda" else "default")
                # one graph per (state, shape): every policy, value or mask state and every batch size (rollout
                # n_envs, a predict on one observation) is an entry of the same code object; dynamo's default of
                # 8 would silently fall back to eager after the 8th
                dynamo_config = th._dynamo.config  # torch loads its _dynamo package on first access
                if dynamo_config.recompile_limit < 64:
                    dynamo_config.recompile_limit = 64
                cur.step_fn = th.compile(self._raw_step, mode=mode, dynamic=False)
        return cur.step_fn

    def _step(self, last: th.Tensor, memo: th.Tensor, any_memo: bool) -> tuple[th.Tensor, th.Tensor]:
        cur = self._cur
        if cur.L >= cur.S:
            self._compact()
        col = cur.L
        self.mask[:, col] = 1
        fn = self._compiled()
        compiled = fn is not self._raw_step
        cuda_graphs = compiled and self.mask.device.type == "cuda"
        if cuda_graphs:
            th.compiler.cudagraph_mark_step_begin()
        impl = self.attention or ("eager" if compiled and not cuda_graphs and self.mask.device.type == "cpu" else None)
        if impl is None:
            lg, hd = fn(last, self.mask, self.prompt_mask, self.next_pos)
        else:  # the step's attention only: set on the model's configs around the call (a guard of the graph)
            saved = [c._attn_implementation_internal for c in self._configs]
            for c in self._configs:
                c._attn_implementation_internal = impl
            try:
                lg, hd = fn(last, self.mask, self.prompt_mask, self.next_pos)
            finally:
                for c, v in zip(self._configs, saved):
                    c._attn_implementation_internal = v
        if cuda_graphs:  # CUDA graph outputs are overwritten by the next replay
            lg, hd = lg.clone(), hd.clone()
        if any_memo:
            self.mask[:, col] = (~memo).to(self.mask.dtype)
        cur.L = col + 1  # the layers advanced their own cumulative_length inside the step
        return lg, hd
