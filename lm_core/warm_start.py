"""Supervised warm start: teacher forcing on an env's references before RL (RL4LMs's "supervised + RL").

    from lm_core.warm_start import warm_start     # or sb3_ext.warm_start, which also takes an SB3 VecEnv
    warm_start(policy, env, epochs=3)             # then train with RL

The examples come from a text env (a gymnasium env; its ``unwrapped`` is used) or any object with
``num_examples``, ``example_text(i) -> (prompt_text, references)``, ``encode_prompt(text) -> (ids, mask)`` (the
same arrays as the observation) and ``tokenizer``; the target is the first reference tokenized by that tokenizer
without special tokens (no BOS), then EOS, cut to the token budget ``T``.

The policy is any module with the language-model policy's teacher-forced interface (an
:class:`lm_core.actor_critic.LMActorCritic` such as ``sb3_ext.LLMPolicy`` has
it): ``T``, ``device``, ``named_parameters()``, ``set_training_mode(bool)``, ``attention_context()``,
``episode_outputs(EpisodeBatch) -> (logits, hidden, mask_logits)``, ``distribution_logits(logits)``,
``reset_cache()`` and ``update_reference()``. No training engine is imported here.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch as th

from text_envs.errors import TextEnvsError

from .episodes import EpisodeBatch

__all__ = ["warm_start", "supervised_examples", "example_source"]

_SOURCE_API = ("num_examples", "example_text", "encode_prompt", "tokenizer")


def example_source(env: Any) -> Any:
    """The object whose ``num_examples``/``example_text``/``encode_prompt``/``tokenizer`` the warm start reads:
    ``env`` itself when it has them all, else ``env.unwrapped`` (a wrapped gymnasium env)."""
    if all(hasattr(env, name) for name in _SOURCE_API):
        return env
    base = getattr(env, "unwrapped", None)
    if base is not None and all(hasattr(base, name) for name in _SOURCE_API):
        return base
    raise TextEnvsError(
        "warm_start expected a text_envs env exposing num_examples, example_text(i), encode_prompt(text) and "
        f"tokenizer, got {type(env).__name__} (missing "
        f"{[n for n in _SOURCE_API if not hasattr(base if base is not None else env, n)]}); "
        "an SB3 VecEnv goes through sb3_ext.warm_start"
    )


def supervised_examples(
    policy: Any, env: Any, max_examples: int | None = None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Encode the env's examples as (prompt_ids (P,), prompt_mask (P,), target_ids (<=T,)) triples.

    :param policy: gives the token budget ``policy.T``
    :param env: a text env or an example source (see the module docstring)
    :param max_examples: only the first examples (``None``: all)
    """
    source = example_source(env)
    n = int(source.num_examples)
    tokenizer = source.tokenizer
    if max_examples is not None:
        n = min(n, int(max_examples))
    if n <= 0:
        raise TextEnvsError(f"warm_start expected an env with at least one example, got num_examples={n}")
    eos = tokenizer.eos_token_id
    out = []
    for i in range(n):
        prompt_text, references = source.example_text(i)
        if not references:
            continue
        ids, mask = source.encode_prompt(prompt_text)
        # no special tokens: a Llama/Mistral-style tokenizer would start the target with its BOS, which the env's
        # policy never writes (its generated ids hold the text's tokens, then EOS)
        target = list(tokenizer(references[0], add_special_tokens=False)["input_ids"])
        if eos is not None and (not target or target[-1] != eos):
            target.append(eos)
        target = target[: policy.T]
        if target:
            out.append((np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=np.int64), np.asarray(target)))
    if not out:
        raise TextEnvsError("warm_start found no example with a non-empty reference")
    return out


def warm_start(
    policy: Any,
    env: Any,
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    max_examples: int | None = None,
    update_reference: bool = True,
    seed: int = 0,
    verbose: int = 0,
    max_seconds: float | None = None,
) -> list[float]:
    """Teacher-forced cross-entropy on the env's references, through the policy's own distribution.

    :param policy: an ``LLMPolicy`` (e.g. ``model.policy``) or a module with its interface (module docstring)
    :param env: the env (a text env or an example source, see the module docstring) whose examples to imitate
    :param epochs: passes over the examples
    :param batch_size: episodes per step
    :param learning_rate: Adam learning rate (a fresh optimizer; the policy's own is left untouched)
    :param max_examples: use only the first examples (``None``: all)
    :param update_reference: make the warm-started weights the KL reference and mask model
    :param seed: shuffling seed
    :param verbose: 1 prints the mean loss of each epoch
    :param max_seconds: stop after this much wall time (checked after each batch; ``None``: run every epoch),
        e.g. to compare with an RL run of the same wall time
    :return: mean token loss (nats) of each epoch (the last one may be partial)
    """
    if epochs < 1 or batch_size < 1:
        raise TextEnvsError(f"expected epochs >= 1 and batch_size >= 1, got {epochs} and {batch_size}")
    data = supervised_examples(policy, env, max_examples)
    device = policy.device
    optimizer = th.optim.Adam([p for n, p in policy.named_parameters() if "value" not in n], lr=learning_rate)
    rng = np.random.default_rng(seed)
    policy.set_training_mode(True)
    losses = []
    start = time.perf_counter()
    out_of_time = False
    for epoch in range(epochs):
        order = rng.permutation(len(data))
        total, count = 0.0, 0
        for lo in range(0, len(order), batch_size):
            if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                out_of_time = True
                break
            items = [data[i] for i in order[lo : lo + batch_size]]
            L = max(len(t) for _, _, t in items)
            tokens = np.zeros((len(items), L), dtype=np.int64)
            for j, (_, _, t) in enumerate(items):
                tokens[j, : len(t)] = t
            lens = [len(t) for _, _, t in items]
            batch = EpisodeBatch(
                prompt_ids=th.as_tensor(np.stack([p for p, _, _ in items]), device=device),
                prompt_mask=th.as_tensor(np.stack([m for _, m, _ in items]), device=device),
                tokens=th.as_tensor(tokens, device=device),
                out_episode=th.as_tensor(np.repeat(np.arange(len(items)), lens), device=device),
                out_pos=th.as_tensor(np.concatenate([np.arange(n) for n in lens]), device=device),
            )
            targets = batch.tokens[batch.out_episode, batch.out_pos]
            with policy.attention_context():
                logits, _, _ = policy.episode_outputs(batch)  # (N, V)
            log_probs = policy.distribution_logits(logits).log_softmax(-1)
            loss = -log_probs.gather(-1, targets[:, None]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(targets)
            count += len(targets)
        if count:
            losses.append(total / count)
            if verbose:
                print(f"warm_start epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}")
        if out_of_time:
            break
    policy.set_training_mode(False)
    policy.reset_cache()
    if update_reference:
        policy.update_reference()
    return losses
