"""Token sampling and the trained distribution's logits (engine-neutral: the SB3 policy and the RLlib module share
these).

Shapes: ``B`` rows, ``V`` vocabulary.

* :func:`sample_tokens`: one draw per row from ``probs`` (the rollout's one token per env per step);
* :func:`support_mask`: the tokens a frozen "mask model" keeps by top-k / top-p (NLPO-style masking);
* :func:`distribution_logits`: the logits of the distribution actually trained and sampled: the model's logits over
  the temperature, with the tokens outside the frozen support set to the dtype's minimum (finite, so no NaN).
"""

from __future__ import annotations

from typing import Any

import torch as th

__all__ = ["LOG_ZERO", "sample_tokens", "support_mask", "distribution_logits", "taken_log_probs_and_entropy",
           "taken_log_probs_entropy_and_kl"]


def sample_tokens(probs: th.Tensor) -> th.Tensor:
    """Draw one token per row by inverse CDF: ``probs`` (B, V) -> (B,).

    ``torch.multinomial`` (what ``Categorical.sample`` calls) draws a random number per vocabulary entry on the
    CPU; one uniform per row and a ``searchsorted`` draw from the same distribution about 10x faster here
    (12% of a PPO run's time, benchmarks/RESULTS.md). ``right=True`` picks index j when cdf[j-1] <= u < cdf[j],
    so a zero-probability (masked) token is never drawn.
    """
    cdf = probs.cumsum(-1)  # (B, V)
    u = th.rand((*cdf.shape[:-1], 1), device=cdf.device, dtype=cdf.dtype) * cdf[..., -1:]  # (B, 1) in [0, total)
    return th.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)  # (B,)


def support_mask(
    mask_logits: th.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> th.Tensor:
    """(B, V) bool: the tokens kept by top-k / top-p of a frozen mask model's logits at the policy's temperature.

    :param mask_logits: (B, V) the mask model's logits
    :param temperature: the policy's sampling temperature (top-p mass is measured at it)
    :param top_k: keep the k most likely tokens (ties at the k-th score kept); ``None``: no top-k
    :param top_p: keep the smallest set of most likely tokens whose mass reaches p (the most likely always kept);
        ``None``: no top-p
    """
    scores = mask_logits.float() / temperature
    keep = th.ones_like(scores, dtype=th.bool)
    if top_k is not None and top_k < scores.shape[-1]:
        kth = scores.topk(top_k, dim=-1).values[:, -1:]
        keep &= scores >= kth
    if top_p is not None and top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        probs = sorted_scores.softmax(-1)
        mass_before = probs.cumsum(-1) - probs
        keep_sorted = mass_before < top_p  # the most likely token is always kept
        keep &= th.zeros_like(keep).scatter(-1, order, keep_sorted)
    return keep


def distribution_logits(
    logits: th.Tensor,
    temperature: float = 1.0,
    mask_logits: th.Tensor | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    taken: th.Tensor | None = None,
) -> th.Tensor:
    """The trained distribution's logits (B, V), float32: temperature, then the frozen top-k/top-p support if any.

    :param logits: (B, V) the policy model's logits
    :param temperature: logits are divided by it
    :param mask_logits: (B, V) the frozen mask model's logits; ``None``: no support mask
    :param top_k: see :func:`support_mask`
    :param top_p: see :func:`support_mask`
    :param taken: (B,) actions already sampled, always kept in the support (``-1``: unknown, nothing added). The
        mask model's logits differ by float rounding between a cached rollout and a teacher-forced update (~1e-2 at
        worst), so a token at the top-k / top-p boundary can flip out; without this its stored action would get
        log-prob -inf and an importance ratio would explode
    """
    logits = logits.float()
    if temperature != 1.0:  # a division by 1 would still be a pass over (B, V) and a fresh tensor, with its backward
        logits = logits / temperature
    if mask_logits is not None:
        support = support_mask(mask_logits, temperature, top_k, top_p)
        if taken is not None:
            taken = taken.long().reshape(-1, 1)
            index = taken.clamp(min=0)
            support = support.scatter(-1, index, support.gather(-1, index) | (taken >= 0))
        logits = logits.masked_fill(~support, th.finfo(logits.dtype).min)
    return logits


def taken_log_probs_and_entropy(logits: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """``log p(actions)`` (B,) and the entropy (B,) of the categorical distributions ``softmax(logits)`` (B, V).

    The values of ``Categorical(logits=logits).log_prob(actions)`` and ``.entropy()``, for a fraction of the
    memory: autograd keeps ``logits`` alone (torch's chain keeps four more (B, V) tensors: the normalised logits, the
    probabilities, the clamped logits and their product) and the backward pass recomputes the probabilities. At an
    update of 2,048 tokens over a 6,000-token vocabulary each (B, V) float32 tensor is 49 MB. Differentiable twice
    (the backward pass is itself made of differentiable operations when ``create_graph=True``).

    :param logits: (B, V) float logits; masked tokens may hold the dtype's minimum (finite), as
        :func:`distribution_logits` makes them
    :param actions: (B,) token ids, each in ``[0, V)``
    """
    if logits.dim() != 2 or actions.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (B, V) and actions (B,), got {tuple(logits.shape)} and "
                         f"{tuple(actions.shape)}")
    return _TakenLogProbsAndEntropy.apply(logits, actions.long())


def _log_softmax_parts(logits: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """``log p`` (B, V), ``log p(actions)`` (B,) and the entropy (B,), with ``0 * log 0`` taken as 0."""
    log_p = logits - logits.logsumexp(-1, keepdim=True)  # (B, V)
    entropy = -(log_p.exp() * log_p.clamp(min=th.finfo(log_p.dtype).min)).sum(-1)  # (B,)
    return log_p, log_p.gather(-1, actions[:, None]).squeeze(-1), entropy


class _TakenLogProbsAndEntropy(th.autograd.Function):
    """:func:`taken_log_probs_and_entropy`: saves the logits (and the (B,) entropies); the backward pass recomputes
    ``p``.

    With ``l = log p(a)`` and ``H = -sum p log p``: ``dl/dz = onehot(a) - p`` and ``dH/dz = -p (log p + H)``.
    """

    @staticmethod
    def forward(ctx: Any, logits: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        log_p = logits - logits.logsumexp(-1, keepdim=True)  # (B, V)
        log_prob = log_p.gather(-1, actions[:, None]).squeeze(-1)  # (B,)
        log_p.clamp_(min=th.finfo(log_p.dtype).min)  # 0 * log 0 = 0 (a -inf logit), as Categorical.entropy
        entropy = -(log_p.exp().mul_(log_p)).sum(-1)  # (B,)
        ctx.save_for_backward(logits, actions, entropy)
        return log_prob, entropy

    @staticmethod
    def backward(ctx: Any, grad_log_prob: th.Tensor, grad_entropy: th.Tensor) -> tuple[th.Tensor, None]:
        logits, actions, entropy = ctx.saved_tensors
        if th.is_grad_enabled():  # create_graph: out-of-place, so that this backward can be differentiated too
            log_p, _, entropy = _log_softmax_parts(logits, actions)
            p = log_p.exp()
            # p * (log p + H) first: a masked token's log p is the dtype's minimum, times p = 0 it is 0 (not inf)
            grad = -(p * (log_p + entropy[:, None])) * grad_entropy[:, None] - p * grad_log_prob[:, None]
            return grad.scatter_add(-1, actions[:, None], grad_log_prob[:, None]), None
        log_p = logits - logits.logsumexp(-1, keepdim=True)  # (B, V)
        log_p.clamp_(min=th.finfo(log_p.dtype).min)
        p = log_p.exp()
        grad = log_p.add_(entropy[:, None]).mul_(p).mul_(grad_entropy[:, None])  # p first, as above
        grad.add_(p.mul_(grad_log_prob[:, None])).neg_()  # two (B, V) tensors at most
        del p
        return grad.scatter_add_(-1, actions[:, None], grad_log_prob[:, None]), None


def taken_log_probs_entropy_and_kl(logits: th.Tensor, actions: th.Tensor,
                                   reference_log_p: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """:func:`taken_log_probs_and_entropy` and ``KL(p || q)`` (B,), exact over the vocabulary, against a fixed
    reference's log-probabilities ``log q`` (B, V) (normalised: a ``log_softmax``), in one pass over the logits.

    The KL's value and gradient are those of :func:`lm_core.kl.vocabulary_kl`; computed together the three terms share
    one ``log_softmax`` and one ``exp`` forward and backward, in place where they can: about a third of the
    vocabulary-wide passes of the three computed apart (each a fresh (B, V) tensor, which on CPU costs more than the
    arithmetic). Autograd keeps ``logits`` and ``reference_log_p`` (the caller's) only. Differentiable in ``logits``
    (once); the reference gets no gradient.

    :param logits: (B, V) float logits (masked tokens may hold the dtype's minimum)
    :param actions: (B,) token ids
    :param reference_log_p: (B, V) the reference's log-probabilities at the same states, same dtype, finite (a
        ``log_softmax`` of finite logits)
    :return: log-probs (B,), entropies (B,), KL (B,) in nats
    """
    if logits.dim() != 2 or actions.shape != logits.shape[:1] or reference_log_p.shape != logits.shape:
        raise ValueError(f"expected logits (B, V), actions (B,) and reference_log_p (B, V), got "
                         f"{tuple(logits.shape)}, {tuple(actions.shape)} and {tuple(reference_log_p.shape)}")
    return _TakenLogProbsEntropyAndKL.apply(logits, actions.long(), reference_log_p.detach())


LOG_ZERO = -1e4
"""Where :func:`taken_log_probs_entropy_and_kl` (and the evaluation's KL, ``text_envs_app.text_kl``) clamps ``log p``:
any lower value has ``p = exp(log p) = 0`` exactly in float32 and float64 alike (below about -104 and -745), so
nothing changes but a masked token's log p, kept finite and small enough that the backward pass's products with the
gradient's coefficients cannot overflow."""


class _TakenLogProbsEntropyAndKL(th.autograd.Function):
    """:func:`taken_log_probs_entropy_and_kl`. With ``l = log p(a)``, ``H = -sum p log p`` and
    ``K = sum p (log p - log q)``: ``dl/dz = onehot(a) - p``, ``dH/dz = -p (log p + H)``, ``dK/dz = p (log p - log q - K)``,
    so the gradient is ``onehot(a) g_l + p (log p (g_K - g_H) - g_K log q - g_l - g_H H - g_K K)``."""

    @staticmethod
    def forward(ctx: Any, logits: th.Tensor, actions: th.Tensor,
                reference_log_p: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        log_p = th.log_softmax(logits, -1)  # (B, V)
        log_prob = log_p.gather(-1, actions[:, None]).squeeze(-1)  # (B,)
        log_p.clamp_(min=LOG_ZERO)  # 0 * log 0 = 0 (a masked or -inf logit), as Categorical.entropy
        p = th.exp(log_p)
        neg_entropy = th.einsum("bv,bv->b", p, log_p)  # row dot products: no (B, V) temporary
        kl = th.einsum("bv,bv->b", p, log_p.sub_(reference_log_p))  # log_p is not needed after: in place
        ctx.save_for_backward(logits, actions, reference_log_p, -neg_entropy, kl)
        return log_prob, -neg_entropy, kl

    @staticmethod
    def backward(ctx: Any, grad_log_prob: th.Tensor, grad_entropy: th.Tensor,
                 grad_kl: th.Tensor) -> tuple[th.Tensor, None, None]:
        logits, actions, reference_log_p, entropy, kl = ctx.saved_tensors
        if th.is_grad_enabled():  # create_graph: out of place, and H and K recomputed, so that this backward can be
            log_p = th.log_softmax(logits, -1).clamp(min=LOG_ZERO)  # differentiated too
            p = log_p.exp()
            entropy, kl = -(p * log_p).sum(-1), (p * (log_p - reference_log_p)).sum(-1)
            constant = -grad_log_prob - grad_entropy * entropy - grad_kl * kl  # (B,)
            inner = log_p * (grad_kl - grad_entropy)[:, None] - reference_log_p * grad_kl[:, None] + constant[:, None]
            return (p * inner).scatter_add(-1, actions[:, None], grad_log_prob[:, None]), None, None
        constant = -grad_log_prob - grad_entropy * entropy - grad_kl * kl  # (B,)
        log_p = th.log_softmax(logits, -1).clamp_(min=LOG_ZERO)
        p = th.exp(log_p)
        grad = log_p.mul_((grad_kl - grad_entropy)[:, None])  # log_p's buffer becomes the gradient
        grad.addcmul_(reference_log_p, -grad_kl[:, None])
        grad.add_(constant[:, None]).mul_(p)
        del p
        return grad.scatter_add_(-1, actions[:, None], grad_log_prob[:, None]), None, None
