"""Language-model backends: loading, teacher-forced forwards and the cached incremental step.

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

:class:`DecodeState` keeps per-row KV caches across one-token-per-call rollouts (an engine's env steps): each
row's live cache entries are the right-most ``live[r]`` slots of one shared cache, every step appends one slot
for all rows, and a row whose episode restarts (or whose observation does not continue the cached one) is rebuilt
by a fresh prefill written into its last slots; columns dead for every row are cut from the left, so the
cache grows with episode length, not rollout length.  T5's relative position bias only depends on slot
differences and causal models get explicit positions, so holes in the cache are exact.
:class:`lm_core.static_cache.StaticDecodeState` is the same over preallocated buffers, with a step that
``torch.compile`` captures (``LLMPolicy(compile=...)``).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
from collections.abc import Iterator
from typing import Any

import torch as th
from torch import nn

from text_envs.errors import TextEnvsError

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
]


class ModelLoadError(TextEnvsError):
    """A model spec that cannot be turned into a Hugging Face language model."""


# --------------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------------
def tiny_t5_config(vocab_size: int, pad_token_id: int = 0, eos_token_id: int = 1, **overrides: Any):
    """A small T5 config sized to a vocabulary (the default model when no pretrained one fits).

    :param vocab_size: number of logits (the action space's ``n``)
    :param pad_token_id: pad id, also T5's decoder-start id
    :param eos_token_id: end-of-sequence id
    :param overrides: any ``T5Config`` field
    """
    from transformers import T5Config

    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=16, relative_attention_max_distance=64, dropout_rate=0.0,
        pad_token_id=pad_token_id, eos_token_id=eos_token_id, decoder_start_token_id=pad_token_id,
        tie_word_embeddings=False,
    )
    kwargs.update(overrides)
    return T5Config(**kwargs)


def _config_from_dict(d: dict[str, Any]):
    from transformers import AutoConfig

    d = dict(d)
    model_type = d.pop("model_type", None)
    if model_type is None:
        raise ModelLoadError(f"expected a model config dict with a 'model_type' key, got keys {sorted(d)[:8]}...")
    return AutoConfig.for_model(model_type, **d)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Switch transformers' progress bars off for the duration (its "Loading weights" bar on every
    ``from_pretrained``), and back to what they were after: a library call prints nothing of its own."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    if was_on:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def remote_code_refusal(name: str, detail: str = "") -> ModelLoadError:
    """The error for a model whose loading would run Python code shipped with it (``trust_remote_code``)."""
    return ModelLoadError(
        f"model {name!r} ships its own Python code{detail}, which transformers runs only when it is trusted, and "
        "text-envs never trusts it implicitly. Read that code first; if you trust it, pass --trust-remote-code "
        "(Python: trust_remote_code=True), or use a model whose architecture transformers has built in."
    )


def _auto_map(name: str) -> dict[str, Any] | None:
    """The ``auto_map`` of a local model folder's config.json (custom code), else None."""
    import json

    path = os.path.join(name, "config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None  # transformers says what is wrong with it
    return config.get("auto_map") if isinstance(config, dict) and config.get("auto_map") else None


def load_model(spec: Any, dtype: th.dtype | None = None, trust_remote_code: bool = False) -> nn.Module:
    """Build a Hugging Face LM from a model object, a config (object or dict), a local path or a hub name.

    :param spec: ``PreTrainedModel`` | ``PretrainedConfig`` | config dict (``config.to_dict()``) | str path/name
    :param dtype: optional parameter dtype (e.g. ``torch.bfloat16``). A checkpoint loaded from a path or name
        comes as float32 unless this says otherwise, whatever dtype it was stored in (transformers 5 would keep
        the stored dtype, and Adam steps on float16 weights are mostly rounded away or blow up)
    :param trust_remote_code: let transformers run the Python code a model folder ships (its config.json's
        ``auto_map``); False (the default, never changed implicitly): such a model is refused with a message
    :return: an ``AutoModelForSeq2SeqLM`` or ``AutoModelForCausalLM`` instance
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, PretrainedConfig, PreTrainedModel

    if isinstance(spec, nn.Module):
        model = spec
    else:
        if isinstance(spec, dict):
            spec = _config_from_dict(spec)
        if isinstance(spec, PretrainedConfig):
            cls = AutoModelForSeq2SeqLM if spec.is_encoder_decoder else AutoModelForCausalLM
            try:
                model = cls.from_config(spec)
            except ValueError as e:
                raise ModelLoadError(f"cannot build a language model from config {type(spec).__name__}: {e}") from e
        elif isinstance(spec, (str, os.PathLike)):
            name = os.fspath(spec)
            auto_map = _auto_map(name)
            if auto_map is not None and not trust_remote_code:
                raise remote_code_refusal(name, f" (config.json's auto_map: {auto_map})")
            trust = {"trust_remote_code": True} if trust_remote_code else {}
            try:
                config = AutoConfig.from_pretrained(name, **trust)
                cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
                with quiet_loading():  # no "Loading weights" progress bar in library use
                    model = cls.from_pretrained(name, dtype=dtype if dtype is not None else th.float32, **trust)
            except ValueError as e:
                if "trust_remote_code" in str(e):  # a hub model with custom code
                    raise remote_code_refusal(name) from e
                raise
            except OSError as e:
                raise ModelLoadError(
                    f"could not load model {name!r}: expected a local directory with config.json and weights, or a "
                    f"hub name reachable from this machine ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                    "Offline, pass a local path, a transformers config (e.g. T5Config(...)) or a model object."
                ) from e
        else:
            raise ModelLoadError(
                f"expected model to be a PreTrainedModel, a PretrainedConfig, a config dict, a path or a name, "
                f"got {type(spec).__name__}"
            )
    if not isinstance(model, PreTrainedModel) and not hasattr(model, "get_output_embeddings"):
        raise ModelLoadError(f"expected a Hugging Face language model with an LM head, got {type(model).__name__}")
    if dtype is not None:
        model = model.to(dtype)
    return model


def default_model(vocab_size: int, dtype: th.dtype | None = None) -> tuple[nn.Module, Any]:
    """The model a policy gets when none is named: the shipped tiny T5 (``text_envs/assets/model``) when the
    shipped tokenizer has exactly ``vocab_size`` tokens, else a random :func:`tiny_t5_config` model sized to it.

    The random model's logits are spread over tens of nats; its decoder's final layer norm is scaled by 0.02 so
    that it starts near-uniform and RL can explore. Seed torch first for the same weights in every process.

    :param vocab_size: the action space's ``V``
    :param dtype: optional parameter dtype
    :return: (model, the shipped tokenizer or ``None`` for the random model)
    """
    import text_envs

    asset = os.path.join(os.path.dirname(os.path.abspath(text_envs.__file__)), "assets", "model")
    if os.path.isfile(os.path.join(asset, "config.json")):
        try:
            from text_envs.tokenization import load_tokenizer

            tok = load_tokenizer()
        except Exception:  # the shipped tokenizer is optional here: fall back to the tiny model
            tok = None
        if tok is not None and len(tok) == vocab_size:
            return load_model(asset, dtype), tok
    model = load_model(tiny_t5_config(vocab_size), dtype)
    with th.no_grad():
        model.decoder.final_layer_norm.weight.mul_(0.02)
    return model, None


def _is_seq2seq(model: nn.Module) -> bool:
    return bool(getattr(model.config, "is_encoder_decoder", False))


def make_backend(model: nn.Module, vocab_size: int) -> LMBackend:
    """Wrap a model in the backend that matches its architecture."""
    return (Seq2SeqBackend if _is_seq2seq(model) else CausalBackend)(model, vocab_size)


# --------------------------------------------------------------------------------------------------------
# cache helpers (transformers >= 4.56 "layers" cache API)
# --------------------------------------------------------------------------------------------------------
def _cache_kwarg(model: nn.Module) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _out_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _self_layers(cache: Any) -> list:
    inner = getattr(cache, "self_attention_cache", cache)
    return list(inner.layers)


def _check_plain_layers(cache: Any) -> bool:
    from transformers.cache_utils import DynamicLayer

    try:
        layers = _self_layers(cache)
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


# --------------------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------------------
class LMBackend:
    """Common part of the two backends: the model, the LM-head hook and the vocabulary slice.

    :param model: a Hugging Face LM (possibly wrapped by peft)
    :param vocab_size: the action space's ``V``; logits beyond it are sliced off
    """

    kind = "base"

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
        self.cache_kw = _cache_kwarg(model)
        self.config = model.config

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

    def take_hidden(self) -> th.Tensor:
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
        """Run a fresh forward over prompt + ``prefix`` (all rows the same prefix length).

        :return: logits (k, V), hidden (k, H), the HF cache, extra (seq2seq: encoder output), next position (k,)
        """
        raise NotImplementedError

    def step(self, state: DecodeState, tokens: th.Tensor, mask: th.Tensor):
        """One cached step for all rows of ``state``: ``tokens`` (B,) appended at slot L."""
        raise NotImplementedError

    def _slice(self, logits: th.Tensor) -> th.Tensor:
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

    def encode(self, prompt_ids: th.Tensor, prompt_mask: th.Tensor) -> th.Tensor:
        encoder = self.model.get_encoder()
        return encoder(input_ids=prompt_ids, attention_mask=prompt_mask).last_hidden_state  # (E, P, H_enc)

    def _decoder_inputs(self, tokens: th.Tensor) -> th.Tensor:
        start = th.full_like(tokens[:, :1], self.decoder_start_token_id)
        return th.cat([start, tokens[:, :-1]], dim=1)  # (E, L): shift right

    def forward_sequences(self, prompt_ids, prompt_mask, tokens):
        from transformers.modeling_outputs import BaseModelOutput

        prompt_ids, prompt_mask = trim_left_padding(prompt_ids, prompt_mask)  # (E, P') with P' <= P
        enc = self.encode(prompt_ids, prompt_mask)
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=enc),
            attention_mask=prompt_mask,
            decoder_input_ids=self._decoder_inputs(tokens),
            use_cache=False,
        )
        return self._slice(out.logits), self.take_hidden()  # (E, L, V), (E, L, H); in outputs_at: (N, V), (N, H)

    def prefill(self, prompt_ids, prompt_mask, prefix):
        from transformers.modeling_outputs import BaseModelOutput

        k, t = prefix.shape
        enc = self.encode(prompt_ids, prompt_mask)  # (k, P, H)
        dec_in = th.cat([th.full_like(prompt_ids[:, :1], self.decoder_start_token_id), prefix], dim=1)  # (k, t+1)
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=enc),
            attention_mask=prompt_mask,
            decoder_input_ids=dec_in,
            use_cache=True,
        )
        hidden = self.take_hidden()[:, -1]
        next_pos = th.full((k,), t + 1, dtype=th.long, device=prefix.device)
        return self._slice(out.logits[:, -1]), hidden, _out_cache(out), enc, next_pos

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
        return self._slice(out.logits[:, -1]), self.take_hidden()[:, -1], _out_cache(out)


class CausalBackend(LMBackend):
    """Decoder-only backend (GPT-2, Llama, Qwen...): prompt and generated tokens in one sequence."""

    kind = "causal"

    def __init__(self, model: nn.Module, vocab_size: int):
        super().__init__(model, vocab_size)
        params = inspect.signature(model.forward).parameters
        self._keep_kw = "logits_to_keep" if "logits_to_keep" in params else None
        if self._keep_kw is None and "num_logits_to_keep" in params:
            self._keep_kw = "num_logits_to_keep"

    @staticmethod
    def positions(mask: th.Tensor) -> th.Tensor:
        return (mask.long().cumsum(-1) - 1).clamp(min=0)

    def _call(self, keep: int, **kw):
        if self._keep_kw is not None:
            kw[self._keep_kw] = keep
        out = self.model(**kw)
        logits, hidden = out.logits, self.take_hidden()
        if self._keep_kw is None:
            logits, hidden = logits[:, -keep:], hidden[:, -keep:]
        return out, self._slice(logits), hidden

    def forward_sequences(self, prompt_ids, prompt_mask, tokens):
        E, L = tokens.shape
        prompt_ids, prompt_mask = trim_left_padding(prompt_ids, prompt_mask)  # (E, P') with P' <= P
        ids = th.cat([prompt_ids, tokens[:, :-1]], dim=1)  # (E, P + L - 1)
        mask = th.cat([prompt_mask.long(), th.ones_like(tokens[:, :-1])], dim=1)
        select = self._select
        if select is not None and self._keep_kw is None:  # the head sees every position: select after it
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
        k, t = prefix.shape
        ids = th.cat([prompt_ids, prefix], dim=1)  # (k, P + t)
        mask = th.cat([prompt_mask.long(), th.ones_like(prefix)], dim=1)
        pos = self.positions(mask)
        out, logits, hidden = self._call(1, input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        return logits[:, -1], hidden[:, -1], _out_cache(out), None, pos[:, -1] + 1

    def step(self, state, tokens, mask):
        out, logits, hidden = self._call(
            1,
            input_ids=tokens[:, None],
            attention_mask=mask,
            position_ids=state.next_pos[:, None],
            use_cache=True,
            **{self.cache_kw: state.cache},
        )
        return logits[:, -1], hidden[:, -1], _out_cache(out)


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
        return _self_layers(self.cache)

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
        for layer, fresh in zip(self._layers(), _self_layers(cache)):
            layer.keys[rows, :, L - n0 :] = fresh.keys.to(layer.keys.dtype)
            layer.values[rows, :, L - n0 :] = fresh.values.to(layer.values.dtype)
        self.mask[rows] = 0
        self.mask[rows, L - n0 :] = new_mask
        if extra is not None:  # seq2seq: encoder output and cross-attention keys/values
            if self.extra is None:  # as wide as the cross-attention layers _empty_from made from this prefill
                self.extra = extra.new_zeros((self.B, *extra.shape[1:]))
            W = self._fit_encoder_width(max(extra.shape[1], self.extra.shape[1]))
            pad = W - extra.shape[1]  # a shorter prompt: zero columns on the left, masked out like its padding
            self.extra[rows, pad:] = extra
            self.extra[rows, :pad] = 0
            cross_shared = self.cache.cross_attention_cache.layers
            for layer, fresh in zip(cross_shared, cache.cross_attention_cache.layers):
                layer.keys[rows, :, pad:] = fresh.keys.to(layer.keys.dtype)
                layer.values[rows, :, pad:] = fresh.values.to(layer.values.dtype)
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
        dev = prompt_ids.device
        if self.cache is None or self.B != B or self.P != P or self.T != T:
            self._init(B, P, T, dev)
        # classify rows against the cache: one host sync for the whole batch
        same_prompt = (prompt_ids == self.prompt_ids).all(1) & (prompt_mask == self.prompt_mask).all(1)
        tpos = th.arange(T, device=dev)[None]
        prefix_ok = ((gen_ids == self.gen_ids) | (tpos >= self.consumed[:, None])).all(1)
        valid = self.valid & same_prompt & prefix_ok
        memo = valid & (gen_len == self.consumed)
        advance = valid & (gen_len == self.consumed + 1)
        kinds = th.stack([memo.long(), advance.long(), gen_len]).cpu()  # (3, B) sync
        memo_h, adv_h, len_h = kinds[0].bool(), kinds[1].bool(), kinds[2]
        if bool(memo_h.all()):
            return self.logits, self.hidden
        if adv_h.any() and memo_h.any() and self.backend.kind == "seq2seq":
            memo_h = th.zeros_like(memo_h)  # a hole would shift T5's relative positions: rebuild those rows
            memo = th.zeros_like(memo)
        reb_h = ~(memo_h | adv_h)

        # control flow reads the host copies (memo_h, adv_h); device work uses the device masks (memo, advance):
        # a boolean index or a host-to-device copy would make the GPU wait once more per step
        logits, hidden = self.logits, self.hidden
        if adv_h.any():
            last = gen_ids.gather(1, (gen_len - 1).clamp(min=0)[:, None]).squeeze(1)  # (B,)
            lg, hd = self._step(last, memo, bool(memo_h.any()))
            self.live += 1
            self.next_pos = self.next_pos + (~memo).long()
            if adv_h.all():
                logits, hidden = lg.to(logits.dtype), hd.to(hidden.dtype)
            else:
                logits = th.where(advance[:, None], lg.to(logits.dtype), logits)
                hidden = th.where(advance[:, None], hd.to(hidden.dtype), hidden)
        if reb_h.any():
            if logits is self.logits:  # written in place below: never into the tensors returned last step
                logits, hidden = logits.clone(), hidden.clone()
            groups: dict[int, list[int]] = {}
            for r in reb_h.nonzero().flatten().tolist():
                groups.setdefault(int(len_h[r]), []).append(r)
            for t, rows_list in groups.items():
                rows = th.tensor(rows_list, device=dev)
                p_ids, p_mask = prompt_ids[rows], prompt_mask[rows]
                if self.trims_prompts:  # no prefill work on columns that are padding in all of these rows
                    p_ids, p_mask = trim_left_padding(p_ids, p_mask)
                prefix = gen_ids[rows, :t]
                lg, hd, cache, extra, next_pos = self.backend.prefill(p_ids, p_mask, prefix)
                if self.backend.kind == "seq2seq":
                    new_mask = th.ones((len(rows_list), t + 1), dtype=self.mask.dtype, device=dev)
                else:
                    new_mask = th.cat([p_mask.long(), th.ones_like(prefix)], dim=1).to(self.mask.dtype)
                if self.cache is None:
                    self._empty_from(cache)
                self._write_rows(rows, cache, extra, new_mask)
                self.live[th.tensor(rows_list)] = new_mask.shape[1]
                self.next_pos[rows] = next_pos
                logits[rows] = lg.to(logits.dtype)
                hidden[rows] = hd.to(hidden.dtype)
        self.prompt_ids.copy_(prompt_ids)
        self.prompt_mask.copy_(prompt_mask)
        self.gen_ids.copy_(gen_ids)
        self.consumed.copy_(gen_len)
        self.valid.fill_(True)
        if reb_h.any() and self.trims_prompts and self.extra is not None:  # a long prompt may have left
            self._fit_encoder_width(max(int(prompt_mask.sum(1).max()), 1))  # host sync, after a rebuild only
        self.logits, self.hidden = logits, hidden
        self._compact()
        return logits, hidden

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
        if not _check_plain_layers(cache):
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


def greedy_baseline(model: nn.Module, eos_token_id: int, pad_token_id: int, max_new_tokens: int):
    """A ``baseline_fn`` for :class:`text_envs.wrappers.SelfCriticalReward`: the greedy decoding of a frozen
    Hugging Face LM (seq2seq or causal) for a batch of prompts (left-padded, as the env pads them), as
    generated token ids.

    :param model: the LM (usually the policy's frozen starting weights, ``policy.reference_model``)
    :param eos_token_id: ends a text (the env's)
    :param pad_token_id: the env's pad id
    :param max_new_tokens: the env's token budget

    Decoding is greedy whatever the model's own ``generation_config`` says (a hub checkpoint's beams, minimum
    length, repetition penalties or forced tokens): the baseline is the text the policy writes acting greedily.
    """
    from transformers import GenerationConfig

    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    device = next(model.parameters()).device
    start = getattr(model.config, "decoder_start_token_id", None)  # as Seq2SeqBackend starts a rollout
    greedy = GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, min_length=0, eos_token_id=eos_token_id,
        pad_token_id=pad_token_id, bos_token_id=getattr(model.config, "bos_token_id", None),
        decoder_start_token_id=(start if start is not None else model.config.pad_token_id) if seq2seq else None,
    )

    @th.no_grad()
    def baseline_fn(prompts: list[Any]) -> list[list[int]]:
        n = max(len(p) for p in prompts)
        ids = th.full((len(prompts), n), pad_token_id, dtype=th.long)
        mask = th.zeros((len(prompts), n), dtype=th.long)
        for row, p in enumerate(prompts):
            if len(p):
                ids[row, n - len(p):] = th.as_tensor(p, dtype=th.long)
                mask[row, n - len(p):] = 1
        # the model's generation_config is swapped, not overridden by arguments: generate() fills every setting
        # left unset from it, so a checkpoint's num_beams=4 or min_length=56 would survive any arguments
        # (on the Hugging Face model itself: a peft wrapper's generate() reads its base model's)
        holder = model.get_base_model() if hasattr(model, "get_base_model") else model
        saved = holder.generation_config
        holder.generation_config = greedy
        try:
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device))
        finally:
            holder.generation_config = saved
        # seq2seq outputs start with the decoder start token; causal outputs repeat the (padded) prompt
        return out[:, 1:].tolist() if seq2seq else out[:, n:].tolist()

    return baseline_fn
