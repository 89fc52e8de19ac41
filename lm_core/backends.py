"""Language-model backends: one interface to teacher-forced forwards and the cached incremental step.

Shapes: ``B`` rows (envs), ``E`` episodes, ``P`` prompt length, ``T`` generated length, ``L`` cache slots,
``V`` action-space vocabulary, ``H`` hidden size (the input of the LM head).

Two backends share one interface:

* :class:`Seq2SeqBackend` (T5 and any ``AutoModelForSeq2SeqLM``): the prompt goes to the encoder, the
  generated tokens to the decoder after the decoder-start token.
* :class:`CausalBackend` (GPT-2, Llama/Qwen-style, any ``AutoModelForCausalLM``): one sequence, the
  left-padded prompt followed by the generated tokens, with explicit ``position_ids`` (transformers 5 no
  longer derives GPT-2 positions from the attention mask).

The "hidden state" handed to the value head is the input of the LM head (captured by a forward pre-hook),
so it is the final hidden state of any architecture without ``output_hidden_states``.

Loading lives in :mod:`lm_core.loading` and the per-row rollout cache in :mod:`lm_core.decode_state`; their
public names are re-exported here, where they were first defined (``from lm_core.backends import load_model,
DecodeState`` keeps working).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch as th
from torch import nn

from .decode_state import DecodeState, cache_kwarg, has_plain_layers, output_cache, trim_left_padding, unique_rows
from .loading import (
    ModelLoadError,
    default_model,
    greedy_baseline,
    load_model,
    quiet_loading,
    remote_code_refusal,
    tiny_t5_config,
)

__all__ = [
    "LMBackend",
    "Seq2SeqBackend",
    "CausalBackend",
    "DecodeState",
    "ModelLoadError",
    "load_model",
    "make_backend",
    "quiet_loading",
    "trim_left_padding",
    "tiny_t5_config",
    "default_model",
    "greedy_baseline",
    "remote_code_refusal",
]


def _is_seq2seq(model: nn.Module) -> bool:
    return bool(getattr(model.config, "is_encoder_decoder", False))


def make_backend(model: nn.Module, vocab_size: int) -> LMBackend:
    """Wrap a model in the backend that matches its architecture."""
    return (Seq2SeqBackend if _is_seq2seq(model) else CausalBackend)(model, vocab_size)


# --------------------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------------------
class LMBackend:
    """Common part of the two backends: the model, the LM-head hook and the vocabulary slice.

    :param model: a Hugging Face LM (possibly wrapped by peft)
    :param vocab_size: the action space's ``V``; logits beyond it are sliced off
    """

    kind = "base"
    #: whether a decode state may fold a fresh row's prefill into its shared step (seq2seq: see Seq2SeqBackend)
    folds_starts = False
    #: whether rows at different lengths can share one decode cache (:class:`~lm_core.decode_state.DecodeState`)
    #: exactly: causal models get each row's positions from its mask, T5's decoder a relative position bias; a
    #: seq2seq decoder with absolute positions (BART, Marian, Pegasus) places every row at the cache's length
    shared_cache_exact = True

    def __init__(self, model: nn.Module, vocab_size: int):
        self.model = model
        self.vocab_size = int(vocab_size)
        self._hidden: th.Tensor | None = None
        self._select: tuple[th.Tensor, th.Tensor] | None = None  # (episode, position) rows the LM head runs on
        head = model.get_output_embeddings()
        if head is None:
            raise ModelLoadError(f"expected a model with an LM head (get_output_embeddings), got {type(model).__name__}")
        self.hidden_size = int(head.weight.shape[1])
        self.logits_width = int(head.weight.shape[0])
        self._hook = head.register_forward_pre_hook(self._capture)
        self.cache_kw = cache_kwarg(model)
        self.config = model.config
        self._plain_cache: bool | None = None  # whether the config's cache is all plain layers (first prefill)

    def fresh_cache(self) -> dict:
        """The cache keyword of a prefill: an empty cache made without the config when the config's own would be
        plain ``DynamicLayer`` s anyway (transformers' ``DynamicCache(config=...)`` deep-copies the config on every
        call: a quarter of a small model's prefill), else nothing (the model makes its own)."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        if self._plain_cache is None:
            self._plain_cache = has_plain_layers(DynamicCache(config=self.config))
        if not self._plain_cache:
            return {}
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache()) if self.kind == "seq2seq" else DynamicCache()
        return {self.cache_kw: cache}

    def _capture(self, module: nn.Module, args: tuple) -> tuple | None:
        h = args[0]
        if self._select is not None:  # (E, L, H) -> (N, H): the head runs on the positions the caller reads only
            h = h[self._select]
            self._hidden = h
            return (h, *args[1:])
        self._hidden = h
        return None

    @contextlib.contextmanager
    def outputs_at(self, outputs: tuple[th.Tensor, th.Tensor]) -> Iterator[None]:
        """Within this, :meth:`forward_sequences` returns only the rows ``outputs = (episode, position)`` (N,):
        logits (N, V) and hidden (N, H), with the LM head run on those rows only (the (E, L, V) logits and their
        gradient are most of an update's memory at a large vocabulary)."""
        self._select = outputs
        try:
            yield
        finally:
            self._select = None

    def remove_hook(self) -> None:
        """Take the backend's hook off the model's LM head, leaving the model as it was given (the backend cannot
        run forwards after this)."""
        self._hook.remove()

    def take_hidden(self) -> th.Tensor:
        """The LM head's input captured by the last forward (and forget it)."""
        h, self._hidden = self._hidden, None
        assert h is not None, "the LM head did not run"
        return h

    # full teacher-forced forward -------------------------------------------------------------------------
    def forward_sequences(
        self, prompt_ids: th.Tensor, prompt_mask: th.Tensor, tokens: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor]:
        """Next-token logits and hidden states at every generated position, teacher-forced.

        :param prompt_ids: (E, P) left-padded prompt ids
        :param prompt_mask: (E, P) 1 on real prompt tokens
        :param tokens: (E, L) generated tokens, right-padded (any id past an episode's end)
        :return: logits (E, L, V) where ``[:, t]`` is the distribution of ``tokens[:, t]`` given the prompt
            and ``tokens[:, :t]``, and hidden states (E, L, H) at the same positions; inside
            :meth:`outputs_at`, (N, V) and (N, H) at its rows
        """
        raise NotImplementedError

    def forward_next(self, prompt_ids: th.Tensor, prompt_mask: th.Tensor, gen_ids: th.Tensor, gen_len: th.Tensor):
        """Uncached next-token logits for observations (the naive path): one full forward per row.

        :param prompt_ids: (B, P)
        :param prompt_mask: (B, P)
        :param gen_ids: (B, T) generated ids, right-padded
        :param gen_len: (B,) number of generated tokens per row
        :return: logits (B, V), hidden (B, H)
        """
        B = gen_ids.shape[0]
        L = int(gen_len.max().item()) + 1  # sync: sizes the forward
        tokens = th.zeros((B, L), dtype=th.long, device=gen_ids.device)
        width = min(L, gen_ids.shape[1])
        tokens[:, :width] = gen_ids[:, :width]
        logits, hidden = self.forward_sequences(prompt_ids, prompt_mask, tokens)  # (B, L, V), (B, L, H)
        rows = th.arange(B, device=gen_ids.device)
        return logits[rows, gen_len], hidden[rows, gen_len]

    # incremental ----------------------------------------------------------------------------------------
    def prefill(self, prompt_ids: th.Tensor, prompt_mask: th.Tensor, prefix: th.Tensor):
        """Run a fresh forward over prompt + ``prefix`` (all rows the same prefix length; a causal model's rows of
        different lengths are one left-padded sequence each, with an empty prefix).

        :return: logits (k, V), hidden (k, H), the HF cache, extra (seq2seq: encoder output), next position (k,)
        """
        raise NotImplementedError

    def step(self, state: DecodeState, tokens: th.Tensor, mask: th.Tensor):
        """One cached step for all rows of ``state``: ``tokens`` (B,) appended at slot L."""
        raise NotImplementedError

    def vocab_slice(self, logits: th.Tensor) -> th.Tensor:
        """``logits[..., :V]``: the model's logits cut to the action space (a model may have padded rows)."""
        return logits[..., : self.vocab_size] if logits.shape[-1] != self.vocab_size else logits


class Seq2SeqBackend(LMBackend):
    """Encoder-decoder backend (T5, BART, Marian...)."""

    kind = "seq2seq"

    def __init__(self, model: nn.Module, vocab_size: int):
        super().__init__(model, vocab_size)
        start = getattr(model.config, "decoder_start_token_id", None)
        if start is None:
            start = getattr(model.config, "pad_token_id", None)
        if start is None:
            raise ModelLoadError("expected the seq2seq model config to define decoder_start_token_id or pad_token_id")
        self.decoder_start_token_id = int(start)
        self._cross_ok: bool | None = None  # cross_attention_kv checked against the model's own (first prefill)
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
        self.shared_cache_exact = not hasattr(decoder, "embed_positions")  # BART's family: learned/sinusoidal positions

    @property
    def folds_starts(self) -> bool:  # type: ignore[override]
        """Whether :meth:`cross_attention_kv` reproduced the model's own cross-attention keys/values at the first
        prefill: then a decode state folds a fresh row's prefill (its decoder-start token) into its shared step."""
        return bool(self._cross_ok)

    def _cross_attention_projections(self) -> list[tuple[nn.Module, nn.Module, int]] | None:
        """(key projection, value projection, head size) of each decoder layer's cross-attention, for the T5 family's
        layout (``decoder.block[i].layer[1].EncDecAttention``: T5, mT5, Flan-T5), whose relative position bias makes
        a fresh row's slot at the shared step's position exact; None for other models (they keep the prefill)."""
        blocks = getattr(self.model.get_decoder(), "block", None)
        if blocks is None:
            return None
        attn = [getattr(b.layer[1], "EncDecAttention", None) if len(b.layer) > 1 else None for b in blocks]
        if all(hasattr(a, "k") and hasattr(a, "v") and hasattr(a, "key_value_proj_dim") for a in attn):
            return [(a.k, a.v, int(a.key_value_proj_dim)) for a in attn]
        return None

    def cross_attention_kv(self, enc: th.Tensor) -> list[tuple[th.Tensor, th.Tensor]] | None:
        """The decoder's cross-attention keys and values of an encoder output, as the model's forward caches them.

        :param enc: (k, W, H_enc) encoder output
        :return: one (keys, values) pair per decoder layer, each (k, heads, W, d); None for an unknown layout
        """
        projections = self._cross_attention_projections()
        if projections is None:
            return None
        out = []
        for k_proj, v_proj, d in projections:
            shape = (*enc.shape[:2], -1, d)  # (k, W, heads, d)
            out.append((k_proj(enc).view(shape).transpose(1, 2), v_proj(enc).view(shape).transpose(1, 2)))
        return out

    def check_cross_attention(self, enc: th.Tensor, cache: object) -> bool:
        """Compare :meth:`cross_attention_kv` of a prefill's encoder output with the keys/values the prefill cached
        (once; the answer is kept): folding is only ever used where it reproduces the model's own forward."""
        if self._cross_ok is None:
            ours = self.cross_attention_kv(enc)
            theirs = getattr(getattr(cache, "cross_attention_cache", None), "layers", None)
            ok = ours is not None and theirs is not None and len(ours) == len(theirs)
            for (k, v), layer in zip(ours or [], theirs or []):
                for mine, ref in ((k, layer.keys), (v, layer.values)):
                    scale = float(ref.abs().max()) if ref.numel() else 1.0
                    ok = ok and mine.shape == ref.shape and bool(((mine - ref).abs() <= 1e-3 * scale + 1e-6).all())
            self._cross_ok = bool(ok)
        return self._cross_ok

    def encode(self, prompt_ids: th.Tensor, prompt_mask: th.Tensor) -> th.Tensor:
        encoder = self.model.get_encoder()
        return encoder(input_ids=prompt_ids, attention_mask=prompt_mask).last_hidden_state  # (E, P, H_enc)

    def encode_distinct(self, prompt_ids: th.Tensor, prompt_mask: th.Tensor) -> th.Tensor:
        """:meth:`encode`, running the encoder once per distinct prompt (the texts of a group, or the samples of one
        prompt, share it) and expanding; the gradient flows back through the expansion. With dropout active
        every row keeps its own encoder pass (its own dropout mask)."""
        if self.model.training and float(getattr(self.model.config, "dropout_rate", 0.0) or 0.0) > 0:
            return self.encode(prompt_ids, prompt_mask)
        same = unique_rows(prompt_ids, prompt_mask)
        if same is None:
            return self.encode(prompt_ids, prompt_mask)
        first, inverse = same
        return self.encode(prompt_ids[first], prompt_mask[first])[inverse]  # (E, P, H_enc)

    def _decoder_inputs(self, tokens: th.Tensor) -> th.Tensor:
        start = th.full_like(tokens[:, :1], self.decoder_start_token_id)
        return th.cat([start, tokens[:, :-1]], dim=1)  # (E, L): shift right

    def forward_sequences(self, prompt_ids, prompt_mask, tokens):
        from transformers.modeling_outputs import BaseModelOutput

        prompt_ids, prompt_mask = trim_left_padding(prompt_ids, prompt_mask)  # (E, P') with P' <= P
        enc = self.encode_distinct(prompt_ids, prompt_mask)
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=enc),
            attention_mask=prompt_mask,
            decoder_input_ids=self._decoder_inputs(tokens),
            use_cache=False,
        )
        return self.vocab_slice(out.logits), self.take_hidden()  # (E, L, V), (E, L, H); in outputs_at: (N, V), (N, H)

    def prefill(self, prompt_ids, prompt_mask, prefix, prefix_mask=None):
        """:meth:`LMBackend.prefill`, where rows may have prefixes of different lengths: ``prefix_mask`` (k, t) is 1
        on each row's real tokens, right-aligned (left-padded), and the decoder-start token goes right before each
        row's first token; the padding slots are a hole that the cache keeps masked (exact: T5's relative bias)."""
        from transformers.modeling_outputs import BaseModelOutput

        k, t = prefix.shape
        enc = self.encode(prompt_ids, prompt_mask)  # (k, P, H)
        start = th.full_like(prompt_ids[:, :1], self.decoder_start_token_id)
        dec_in = th.cat([start, prefix], dim=1)  # (k, t+1)
        dec_mask, lengths = None, th.full((k,), t, dtype=th.long, device=prefix.device)
        if prefix_mask is not None:  # left-padded prefixes: the start token right before each row's first token
            lengths = prefix_mask.long().sum(1)  # (k,)
            first = (t - lengths)[:, None]  # (k, 1): the start token's column
            dec_in = th.cat([th.zeros_like(start), prefix], dim=1).scatter(1, first, start)
            dec_mask = th.cat([th.zeros_like(start), prefix_mask.long()], dim=1).scatter(1, first, 1)
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=enc),
            attention_mask=prompt_mask,
            decoder_input_ids=dec_in,
            decoder_attention_mask=dec_mask,
            use_cache=True,
            **self.fresh_cache(),
        )
        hidden = self.take_hidden()[:, -1]
        return self.vocab_slice(out.logits[:, -1]), hidden, output_cache(out), enc, lengths + 1

    def step(self, state, tokens, mask):
        from transformers.modeling_outputs import BaseModelOutput

        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=state.extra),
            attention_mask=state.prompt_mask[:, -state.extra.shape[1]:],  # (B, W): the encoder output's columns
            decoder_input_ids=tokens[:, None],
            decoder_attention_mask=mask,
            use_cache=True,
            **{self.cache_kw: state.cache},
        )
        return self.vocab_slice(out.logits[:, -1]), self.take_hidden()[:, -1], output_cache(out)


class CausalBackend(LMBackend):
    """Decoder-only backend (GPT-2, Llama, Qwen...): prompt and generated tokens in one sequence."""

    kind = "causal"

    def __init__(self, model: nn.Module, vocab_size: int):
        super().__init__(model, vocab_size)
        params = inspect.signature(model.forward).parameters
        #: the forward argument that limits the LM head to the last positions (None: the model has none)
        self.keep_logits_kw: str | None = "logits_to_keep" if "logits_to_keep" in params else None
        if self.keep_logits_kw is None and "num_logits_to_keep" in params:
            self.keep_logits_kw = "num_logits_to_keep"

    @staticmethod
    def positions(mask: th.Tensor) -> th.Tensor:
        return (mask.long().cumsum(-1) - 1).clamp(min=0)

    def _call(self, keep: int, **kw):
        if self.keep_logits_kw is not None:
            kw[self.keep_logits_kw] = keep
        out = self.model(**kw)
        logits, hidden = out.logits, self.take_hidden()
        if self.keep_logits_kw is None:
            logits, hidden = logits[:, -keep:], hidden[:, -keep:]
        return out, self.vocab_slice(logits), hidden

    def forward_sequences(self, prompt_ids, prompt_mask, tokens):
        E, L = tokens.shape
        prompt_ids, prompt_mask = trim_left_padding(prompt_ids, prompt_mask)  # (E, P') with P' <= P
        ids = th.cat([prompt_ids, tokens[:, :-1]], dim=1)  # (E, P + L - 1)
        mask = th.cat([prompt_mask.long(), th.ones_like(tokens[:, :-1])], dim=1)
        select = self._select
        if select is not None and self.keep_logits_kw is None:  # the head sees every position: select after it
            self._select = None
            try:
                _, logits, hidden = self._call(
                    L, input_ids=ids, attention_mask=mask, position_ids=self.positions(mask), use_cache=False
                )
            finally:
                self._select = select
            return logits[select], hidden[select]  # (N, V), (N, H)
        _, logits, hidden = self._call(
            L, input_ids=ids, attention_mask=mask, position_ids=self.positions(mask), use_cache=False
        )
        return logits, hidden  # (E, L, V), (E, L, H): positions P-1 .. P+L-2; in outputs_at: (N, V), (N, H)

    def prefill(self, prompt_ids, prompt_mask, prefix):
        ids = th.cat([prompt_ids, prefix], dim=1)  # (k, P + t)
        mask = th.cat([prompt_mask.long(), th.ones_like(prefix)], dim=1)
        pos = self.positions(mask)
        out, logits, hidden = self._call(1, input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                                         **self.fresh_cache())
        return logits[:, -1], hidden[:, -1], output_cache(out), None, pos[:, -1] + 1

    def step(self, state, tokens, mask):
        out, logits, hidden = self._call(
            1,
            input_ids=tokens[:, None],
            attention_mask=mask,
            position_ids=state.next_pos[:, None],
            use_cache=True,
            **{self.cache_kw: state.cache},
        )
        return logits[:, -1], hidden[:, -1], output_cache(out)
