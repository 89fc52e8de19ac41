"""Fluency of generated text as the start model sees it: its perplexity of the generations given their prompts.

A policy trained on a reward alone can drift into text the reward likes and nobody reads ("great great
great"). The start (reference) model's perplexity of the generated text measures that drift on a scale a
reader knows: about the start model's own perplexity of its greedy outputs before training, growing as the
policy writes text the start model finds unlikely. It complements the KL to the start model, which is
measured under the policy's own distribution.

Definition (:func:`start_model_perplexity`): each text is tokenized without special tokens, cut to
``max_new_tokens - 1`` tokens and followed by EOS (the tokens an episode that ended by EOS generated; the
same convention as the app's KL), and scored teacher-forced after its prompt, encoded the way the env
encodes it. The result is ``exp(total negative log-likelihood / total tokens)`` over all the texts (a
corpus perplexity: every token weighs the same), with the model's full softmax over the env's vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th

from text_envs.errors import TextEnvsError

from .backends import make_backend

__all__ = ["start_model_perplexity", "sequence_nll"]


def sequence_nll(
    model: Any, env: Any, prompts: Sequence[str], texts: Sequence[str], batch_size: int = 16
) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of ``texts`` given ``prompts`` under ``model``, and the token count.

    :param model: a Hugging Face language model (seq2seq or causal) whose vocabulary covers the env's.
    :param env: a text env (``env.unwrapped`` is used): its tokenizer, prompt encoding and token budget.
    :param prompts: the prompt texts (as in ``info["prompt_text"]``), one per text.
    :param texts: the generated texts.
    :param batch_size: texts per forward pass.
    :return: ``(total_nll, n_tokens)``; EOS counts as one token of each text.
    """
    env = getattr(env, "unwrapped", env)
    if isinstance(prompts, str) or isinstance(texts, str):
        raise TextEnvsError("Expected lists of prompts and texts, got a single str; wrap it in a list.")
    prompts, texts = list(prompts), list(texts)
    if len(prompts) != len(texts):
        raise TextEnvsError(f"Expected one prompt per text, got {len(prompts)} prompts and {len(texts)} texts.")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not isinstance(prompts[i], str):
            raise TextEnvsError(f"Expected str prompts and texts, got {type(prompts[i]).__name__} and "
                                f"{type(t).__name__} at position {i}.")
    if batch_size < 1:
        raise TextEnvsError(f"Expected batch_size >= 1, got {batch_size}.")
    backend = make_backend(model, env.vocab_size)
    device = next(model.parameters()).device
    pad = env.pad_token_id
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with th.no_grad():
            for start in range(0, len(texts), batch_size):
                chunk = range(start, min(start + batch_size, len(texts)))
                encoded = [env.encode_prompt(prompts[i]) for i in chunk]
                token_lists = []
                for i in chunk:
                    ids = env.tokenizer(texts[i], add_special_tokens=False)["input_ids"][: env.max_new_tokens - 1]
                    token_lists.append(list(ids) + [env.eos_token_id])
                L = max(len(t) for t in token_lists)
                tokens = th.full((len(token_lists), L), pad, dtype=th.long)
                mask = th.zeros((len(token_lists), L), dtype=th.bool)
                for r, t in enumerate(token_lists):
                    tokens[r, : len(t)] = th.as_tensor(t)
                    mask[r, : len(t)] = True
                p_ids = th.as_tensor(np.stack([e[0] for e in encoded]), device=device)
                p_mask = th.as_tensor(np.stack([e[1] for e in encoded]), device=device)
                tokens, mask = tokens.to(device), mask.to(device)
                logits, _ = backend.forward_sequences(p_ids, p_mask, tokens)  # (B, L, V)
                logp = th.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
                total -= float(logp[mask].sum())
                count += int(mask.sum())
    finally:
        backend.remove_hook()  # the backend hooks the LM head; leave the model as it was given
        model.train(was_training)
    return total, count


def start_model_perplexity(
    model: Any, env: Any, generations: Sequence[dict[str, Any]] | None = None, *,
    prompts: Sequence[str] | None = None, texts: Sequence[str] | None = None, batch_size: int = 16,
) -> float:
    """The start model's corpus perplexity of generated texts given their prompts (see the module docstring).

    Pass either ``generations`` (dicts with ``"prompt"`` and ``"prediction"``, as
    :func:`text_envs.evaluate` returns them) or ``prompts`` and ``texts``.

    :param model: the start (reference) language model, a Hugging Face model.
    :param env: the text env the texts were generated in (or one of the same task and tokenizer).
    :return: ``exp(total NLL / total tokens)``; ``nan`` for no texts.
    """
    if generations is not None:
        if prompts is not None or texts is not None:
            raise TextEnvsError("Pass either generations or prompts and texts, not both.")
        prompts = [g["prompt"] for g in generations]
        texts = [g["prediction"] for g in generations]
    elif prompts is None or texts is None:
        raise TextEnvsError("Pass generations=[{'prompt': ..., 'prediction': ...}] or both prompts and texts.")
    total, count = sequence_nll(model, env, prompts, texts, batch_size)
    return math.exp(total / count) if count else float("nan")
