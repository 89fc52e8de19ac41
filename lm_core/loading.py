"""Loading Hugging Face language models: from an object, a config, a local path or a hub name; the default model
when none is named; the greedy decoding of a frozen model as a self-critical baseline.

Nothing here imports a training engine; :mod:`lm_core.backends` wraps the loaded models for the engines.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch as th
from torch import nn

from text_envs.errors import TextEnvsError

__all__ = [
    "ModelLoadError",
    "load_model",
    "quiet_loading",
    "fuse_tanh_gelu",
    "remote_code_refusal",
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
    if not isinstance(spec, nn.Module):  # a model the caller built keeps its own modules
        fuse_tanh_gelu(model)
    if dtype is not None:
        model = model.to(dtype)
    return model


def fuse_tanh_gelu(model: nn.Module) -> int:
    """Swap transformers' ``NewGELUActivation`` (T5's ``gelu_new``: the tanh GELU written as six tensor ops, each kept
    for the backward) for ``GELUTanh``, torch's fused kernel of the same function; returns the number swapped.

    The same values to float rounding, one saved tensor instead of about eight per call: the shipped model's update
    peaks about 95 MB lower and its job runs about 12% faster on a CPU (benchmarks/RESULTS.md 15c). The saved
    ``hf/`` folder is unchanged (its config still names ``gelu_new``).
    """
    from transformers.activations import GELUTanh, NewGELUActivation

    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is NewGELUActivation:
                setattr(module, name, GELUTanh())
                swapped += 1
    return swapped


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
