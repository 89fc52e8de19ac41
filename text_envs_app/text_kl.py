"""The exact KL of texts to a reference model, by batched teacher forcing: what the evaluation's ``kl`` column, the
frontier's ``model_kl`` and the bench read (one module both :mod:`text_envs_app.evaluation` and
:mod:`text_envs_app.frontier` import, so neither imports the other for it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["KL_BATCH", "KL_WINDOW", "tokens_with_eos", "token_kls", "sequence_kls", "length_sorted_batches"]

KL_BATCH = 64
"""Texts per teacher-forced forward of :func:`sequence_kls`."""
KL_WINDOW = 4 * KL_BATCH
"""Consecutive texts that :func:`sequence_kls` sorts by length before cutting them into forwards of ``KL_BATCH``:
a batch is padded to its longest text, and a window of consecutive texts shares few prompts (their encoder runs
once each)."""


def tokens_with_eos(ids: Sequence[int], env: Any) -> list[int]:
    """A sampled text's ids as the episode wrote them: EOS appended unless the budget ended it."""
    ids = [int(t) for t in ids]
    return ids + [env.eos_token_id] if len(ids) < env.max_new_tokens else ids


def length_sorted_batches(lengths: Sequence[int], batch: int = KL_BATCH, window: int = KL_WINDOW) -> list[list[int]]:
    """Indices of ``lengths`` cut into batches of at most ``batch``, sorted by length within each ``window`` of
    consecutive items: every index once. A forward costs its rows times its longest text; one text at the token
    budget among short ones made the KL of texts worded unlike the training prompts cost 2.5x the texts' tokens."""
    batches: list[list[int]] = []
    for at in range(0, len(lengths), window):
        ordered = sorted(range(at, min(at + window, len(lengths))), key=lambda i: lengths[i])
        batches += [ordered[k:k + batch] for k in range(0, len(ordered), batch)]
    return batches


def token_kls(scores: Any, reference_logits: Any, temperature: float = 1.0) -> Any:
    """``KL(pi(.|s) || pi_ref(.|s))`` of each row, exact over the vocabulary: what :func:`sequence_kls` sums along a
    text and what sampling with a reference sums token by token (:func:`text_envs_app.frontier.sample_texts`).

    :param scores: (B, V) the policy's distribution logits (:func:`lm_core.sampling.distribution_logits`: at the
        temperature, -inf-like outside a mask's support).
    :param reference_logits: (B, V) the reference model's raw logits, cut to the env's vocabulary.
    :return: (B,) nats.
    """
    import torch as th

    from lm_core.sampling import LOG_ZERO

    logp = th.log_softmax(scores, -1)  # -inf outside a mask's support
    logq = th.log_softmax(reference_logits.float() / temperature, -1)
    p = logp.clamp_(min=LOG_ZERO).exp()  # exp(LOG_ZERO) = 0: outside the support p (log p - log q) = 0
    return logp.sub_(logq).mul_(p).sum(-1)  # in place: no more (B, V) tensors


def sequence_kls(model: Any, reference: Any, env: Any, prompts: Sequence[str], token_lists: Sequence[Sequence[int]],
                 temperature: float = 1.0, mask: tuple[Any, int | None, float | None] | None = None) -> np.ndarray:
    """Per text, ``sum_t KL(pi(.|s_t) || pi_ref(.|s_t))`` exact over the env's vocabulary along the text's tokens
    (EOS included when written), both distributions at ``temperature``; batched teacher forcing.

    :param model: the trained Hugging Face model (``pi``).
    :param reference: the start model (``pi_ref``).
    :param token_lists: the sampled ids of each text, EOS dropped (as :func:`sample_texts` gives them).
    :param mask: ``(mask_model, top_k, top_p)``: ``pi`` restricted to the mask model's top-k / top-p support and
        renormalised (NLPO's policy, :func:`lm_core.sampling.distribution_logits`); None: ``pi`` unmasked.
    :return: ``(texts,)`` nats per text.
    """
    import torch as th

    from lm_core.backends import make_backend
    from lm_core.sampling import distribution_logits

    V = len(env.tokenizer)
    policy_backend, ref_backend = make_backend(model, V), make_backend(reference, V)
    mask_backend = make_backend(mask[0], V) if mask is not None else None
    top_k, top_p = (mask[1], mask[2]) if mask is not None else (None, None)
    device = next(model.parameters()).device
    out = np.zeros(len(token_lists))
    modes = model.training, reference.training
    model.eval()
    reference.eval()
    try:
        with th.no_grad():
            for chunk in length_sorted_batches([len(t) for t in token_lists]):
                encoded = [env.encode_prompt(prompts[i]) for i in chunk]
                tokens_of = [tokens_with_eos(token_lists[i], env) for i in chunk]
                L = max(1, max(len(t) for t in tokens_of))
                tokens = th.full((len(tokens_of), L), env.pad_token_id, dtype=th.long)
                mask = th.zeros((len(tokens_of), L), dtype=th.bool)
                for r, t in enumerate(tokens_of):
                    tokens[r, :len(t)] = th.as_tensor(t, dtype=th.long)
                    mask[r, :len(t)] = True
                p_ids = th.as_tensor(np.stack([e[0] for e in encoded]), device=device)  # (b, P)
                p_mask = th.as_tensor(np.stack([e[1] for e in encoded]), device=device)
                tokens, mask = tokens.to(device), mask.to(device)
                logits = policy_backend.forward_sequences(p_ids, p_mask, tokens)[0]  # (b, L, V)
                mask_logits = None
                if mask_backend is not None:
                    mask_logits = mask_backend.forward_sequences(p_ids, p_mask, tokens)[0].flatten(0, 1)
                b = logits.shape[0]
                scores = distribution_logits(logits.flatten(0, 1), temperature, mask_logits, top_k, top_p)
                reference_logits = ref_backend.forward_sequences(p_ids, p_mask, tokens)[0].flatten(0, 1)
                per_token = token_kls(scores, reference_logits, temperature).view(b, L)
                out[chunk] = (per_token * mask).sum(-1).cpu().numpy()
    finally:
        for backend in (policy_backend, ref_backend, mask_backend):
            if backend is not None:
                backend.remove_hook()  # each backend hooks its LM head; leave the models as they were given
        model.train(modes[0])
        reference.train(modes[1])
    return out
