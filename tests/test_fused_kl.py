"""The exact-KL update's vocabulary-wide terms computed together (``lm_core.sampling.taken_log_probs_entropy_and_kl``):
the same values and gradients as torch's ``Categorical`` plus ``lm_core.kl.vocabulary_kl``, on masked supports too,
and the policy-gradient update's result unchanged by using it."""

from __future__ import annotations

import pytest
import torch as th
from torch.distributions import Categorical

from lm_core.kl import vocabulary_kl
from lm_core.sampling import taken_log_probs_entropy_and_kl

th.set_num_threads(1)


def _inputs(dtype: th.dtype = th.float64, masked: int = 0) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    g = th.Generator().manual_seed(0)
    logits = th.randn(9, 50, generator=g, dtype=dtype) * 3
    reference = th.log_softmax(th.randn(9, 50 + masked, generator=g, dtype=dtype) * 3, -1)
    actions = th.randint(0, 50, (9,), generator=g)
    weights = th.randn(3, 9, generator=g, dtype=dtype) * 5
    return logits, reference, actions, weights


def _apart(z: th.Tensor, actions: th.Tensor, reference: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    dist = Categorical(logits=z, validate_args=False)
    return dist.log_prob(actions), dist.entropy(), vocabulary_kl(z, reference)


def _loss(terms: tuple[th.Tensor, ...], weights: th.Tensor) -> th.Tensor:
    return sum((t * w).sum() for t, w in zip(terms, weights))


def test_values_and_gradient_equal_the_terms_computed_apart():
    logits, reference, actions, weights = _inputs()
    results = []
    for fn in (_apart, taken_log_probs_entropy_and_kl):
        z = logits.clone().requires_grad_(True)
        terms = fn(z, actions, reference)
        (grad,) = th.autograd.grad(_loss(terms, weights), z)
        results.append((*(t.detach() for t in terms), grad))
    for got, want in zip(results[1], results[0]):
        th.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert (results[1][2] > 0).all()  # a KL between different distributions


def test_kl_is_zero_with_zero_gradient_against_itself():
    logits, _, actions, _ = _inputs()
    z = logits.clone().requires_grad_(True)
    _, _, kl = taken_log_probs_entropy_and_kl(z, actions, th.log_softmax(logits, -1))
    (grad,) = th.autograd.grad(kl.sum(), z)
    th.testing.assert_close(kl, th.zeros_like(kl), rtol=0, atol=1e-12)
    th.testing.assert_close(grad, th.zeros_like(grad), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [th.float32, th.float64])
def test_masked_tokens_get_no_probability_and_no_gradient(dtype):
    """Tokens outside a top-k / top-p support hold the dtype's minimum (``distribution_logits``): the terms are the
    distribution's over the other tokens, the gradient finite, zero on the masked tokens."""
    logits, reference, actions, weights = _inputs(dtype, masked=20)
    kept = logits.clone().requires_grad_(True)
    z = th.cat([kept, th.full((9, 20), th.finfo(dtype).min, dtype=dtype)], 1)  # the last 20 masked
    for create_graph in (False, True):
        terms = taken_log_probs_entropy_and_kl(z, actions, reference)
        (grad,) = th.autograd.grad(_loss(terms, weights), z, create_graph=create_graph)
        # the same over the 50 kept tokens: the reference's mass on the masked ones enters the KL only through p = 0
        dist = Categorical(logits=kept, validate_args=False)
        p = th.softmax(kept, -1)
        want_terms = (dist.log_prob(actions), dist.entropy(),
                      (p * (th.log_softmax(kept, -1) - reference[:, :50])).sum(-1))
        (want,) = th.autograd.grad(_loss(want_terms, weights), kept)
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == th.float32 else dict(rtol=1e-12, atol=1e-12)
        for got, expected in zip(terms, want_terms):
            th.testing.assert_close(got, expected, **tol)
        assert th.isfinite(grad).all()
        th.testing.assert_close(grad[:, :50], want, **tol)
        assert th.equal(grad[:, 50:], th.zeros_like(grad[:, 50:]))


def test_second_derivative_equals_the_terms_computed_apart():
    logits, reference, actions, weights = _inputs()
    v = th.randn(9, 50, generator=th.Generator().manual_seed(3), dtype=th.float64)
    hvps = []
    for fn in (_apart, taken_log_probs_entropy_and_kl):
        z = logits.clone().requires_grad_(True)
        (grad,) = th.autograd.grad(_loss(fn(z, actions, reference), weights), z, create_graph=True)
        hvps.append(th.autograd.grad((grad * v).sum(), z)[0])
    th.testing.assert_close(hvps[1], hvps[0], rtol=1e-10, atol=1e-12)


def test_checks_shapes():
    with pytest.raises(ValueError, match=r"expected logits \(B, V\), actions \(B,\) and reference_log_p \(B, V\)"):
        taken_log_probs_entropy_and_kl(th.zeros(4, 5), th.zeros(4, dtype=th.long), th.zeros(4, 6))
