"""KL penalty to a frozen reference model: estimators and coefficient controllers (Ziegler et al. 2019).

The per-token reward is ``r_t - beta * kl_t`` with ``kl_t`` an estimate of ``KL(pi || ref)`` from the sampled
token: ``k1 = log pi(a) - log ref(a)`` (unbiased, can be negative) or
``k3 = (ref(a)/pi(a) - 1) - log(ref(a)/pi(a))`` (unbiased, never negative; Schulman's "Approximating KL").

``beta`` is fixed (:class:`FixedKLController`) or adaptive (:class:`AdaptiveKLController`): after each rollout
``e = clip(KL / target - 1, -0.2, 0.2)`` and ``beta <- beta * (1 + e * n / horizon)`` where ``KL`` is the mean
per-episode KL of the rollout and ``n`` the number of episodes in it (Ziegler et al. 2019, eq. 2, as in TRL).
The update is multiplicative, so it never leaves 0: with a target and no starting beta (``kl_coef=0``),
:func:`make_kl_controller` starts at :data:`DEFAULT_INIT_KL_COEF` (TRL's ``init_kl_coef``).
"""

from __future__ import annotations

import numpy as np
import torch as th

from text_envs.errors import TextEnvsError, unknown_name

__all__ = [
    "kl_estimate", "vocabulary_kl", "sequence_kl", "FixedKLController", "AdaptiveKLController", "make_kl_controller",
    "KL_ESTIMATORS", "DEFAULT_INIT_KL_COEF",
]

KL_ESTIMATORS = ("k1", "k3")

#: starting beta of the adaptive controller when none is given (``kl_coef=0`` with a ``kl_target``): TRL's default
DEFAULT_INIT_KL_COEF = 0.2


def kl_estimate(log_prob: th.Tensor, ref_log_prob: th.Tensor, estimator: str = "k1") -> th.Tensor:
    """Per-token KL(pi || ref) estimate from the log-probabilities of the sampled tokens.

    :param log_prob: (N,) log pi(a_t) of the policy that sampled a_t
    :param ref_log_prob: (N,) log ref(a_t)
    :param estimator: ``"k1"`` or ``"k3"``
    :return: (N,) KL estimates
    """
    log_ratio = ref_log_prob - log_prob  # log(ref / pi)
    if estimator == "k1":
        return -log_ratio
    if estimator == "k3":
        return th.expm1(log_ratio) - log_ratio
    raise unknown_name("KL estimator", estimator, KL_ESTIMATORS)


def vocabulary_kl(logits: th.Tensor, reference_logits: th.Tensor) -> th.Tensor:
    """KL(pi || ref) at each position, exact over the vocabulary: ``sum_v pi(v) (log pi(v) - log ref(v))``.

    Differentiable in both arguments (a loss term that pulls ``pi`` back to ``ref`` where it is applied: it is 0,
    with a zero gradient, where the two distributions are equal).

    :param logits: (..., V) the policy's distribution logits (after its temperature)
    :param reference_logits: (..., V) the reference's, transformed the same way
    :return: (...) nats per position, never negative up to float error
    """
    if th.is_grad_enabled() and logits.requires_grad and not reference_logits.requires_grad:
        return _VocabularyKL.apply(logits, reference_logits)
    logp = th.log_softmax(logits, -1)
    logq = th.log_softmax(reference_logits, -1)
    return (logp.exp() * (logp - logq)).sum(-1)


class _VocabularyKL(th.autograd.Function):
    """:func:`vocabulary_kl` against a fixed reference, keeping only its two inputs for the backward.

    Autograd's own graph of ``p * (log p - log q)`` keeps four more ``(..., V)`` tensors until the backward: a loss
    term over every token of an update (RLOO's ``kl_mode="exact"``) would add hundreds of MB for the shipped model.
    The gradient is recomputed from the logits: ``d KL / d z_j = p_j (log p_j - log q_j - KL)``.
    """

    @staticmethod
    def forward(ctx, logits: th.Tensor, reference_logits: th.Tensor) -> th.Tensor:
        logp = th.log_softmax(logits, -1)
        logq = th.log_softmax(reference_logits, -1)
        ctx.save_for_backward(logits, reference_logits)
        return (logp.exp() * (logp - logq)).sum(-1)

    @staticmethod
    def backward(ctx, grad: th.Tensor) -> tuple[th.Tensor, None]:
        logits, reference_logits = ctx.saved_tensors
        logp = th.log_softmax(logits, -1)
        diff = logp - th.log_softmax(reference_logits, -1)
        p = logp.exp()
        kl = (p * diff).sum(-1, keepdim=True)
        return grad.unsqueeze(-1) * p * (diff - kl), None


def sequence_kl(logits: th.Tensor, reference_logits: th.Tensor) -> th.Tensor:
    """KL(pi || ref) of a text, exact over the vocabulary: ``sum_t sum_v pi(v|s_t) (log pi(v|s_t) - log ref(v|s_t))``
    along its positions (the sampled-token estimators above estimate each term from one token).

    :param logits: (L, V) (or (E, L, V): the sum runs over all) the policy's distribution logits at each position
        of the text (after its temperature)
    :param reference_logits: the reference's, transformed the same way
    :return: a scalar tensor (nats per text, or summed over the texts)
    """
    logp = th.log_softmax(logits, -1)
    logq = th.log_softmax(reference_logits, -1)
    return (logp.exp() * (logp - logq)).sum()


class FixedKLController:
    """A constant KL coefficient.

    :param kl_coef: beta
    """

    def __init__(self, kl_coef: float):
        if kl_coef < 0:
            raise TextEnvsError(f"expected kl_coef >= 0, got {kl_coef}")
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_episodes: int) -> float:
        """Fixed: ``beta`` does not change. :return: beta"""
        return self.value


class AdaptiveKLController:
    """Adaptive beta with a proportional controller on the log-space error (Ziegler et al. 2019).

    :param init_kl_coef: initial beta, > 0 (the multiplicative update would keep 0 forever)
    :param target: target KL per episode in nats (TRL's default is 6)
    :param horizon: number of episodes over which beta may change by the clip factor (e.g. 10000)
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if not (init_kl_coef > 0 and target > 0 and horizon > 0):
            raise TextEnvsError(
                f"expected init_kl_coef > 0, target > 0 and horizon > 0, got {init_kl_coef}, {target}, {horizon} "
                "(beta is updated multiplicatively: starting at 0 it would stay 0)"
            )
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_episodes: int) -> float:
        """Update beta from the rollout's mean per-episode KL and its episode count. :return: the new beta"""
        error = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + error * n_episodes / self.horizon
        return self.value


def make_kl_controller(
    kl_coef: float, kl_target: float | None = None, kl_horizon: int = 10_000
) -> FixedKLController | AdaptiveKLController:
    """Fixed controller when ``kl_target`` is None, adaptive otherwise.

    The adaptive controller starts at ``kl_coef``, or at :data:`DEFAULT_INIT_KL_COEF` when ``kl_coef`` is 0 (the
    policy's default): its multiplicative update could never move a beta of 0.
    """
    if kl_target is None:
        return FixedKLController(kl_coef)
    if kl_coef < 0:
        raise TextEnvsError(f"expected kl_coef >= 0, got {kl_coef}")
    return AdaptiveKLController(kl_coef if kl_coef > 0 else DEFAULT_INIT_KL_COEF, kl_target, kl_horizon)
