"""The reward/KL limit of a start model: the optimum of ``max E[r] - beta * KL`` and best-of-n, from samples.

Pure NumPy; the rewards of ``M`` texts sampled from the start model ``pi0`` for each of ``N`` prompts are the
only input (shape ``(N, M)``). Letters: ``N`` prompts, ``M`` samples per prompt.

**The optimum.** For a prompt ``x`` the policy that maximises ``E_pi[r] - beta * KL(pi || pi0)`` is
``pi*(y|x) = pi0(y|x) exp(r(x, y) / beta) / Z(x)`` with ``Z(x) = E_pi0[exp(r / beta)]`` (Ziegler et al. 2019;
Rafailov et al. 2023, eq. 4). With ``y_1..y_M ~ pi0`` its expectations are estimated by self-normalised importance
weights ``w_j = exp(r_j / beta) / sum_k exp(r_k / beta)``:

* reward ``E_pi*[r] ~ sum_j w_j r_j``;
* ``KL(pi* || pi0) = E_pi*[r] / beta - log Z ~ sum_j w_j r_j / beta - log mean_j exp(r_j / beta)``;
* ``J* = E_pi*[r] - beta * KL = beta * log Z``;
* the effective sample size ``1 / sum_j w_j^2`` (between 1 and M): when it is a few samples, M is too small
  for that beta (the estimate then sits below the true optimum: a finite sample cannot show rewards it did
  not draw).

**The bias of J*.** ``log mean_j exp(r_j / beta)`` is a concave function of a sample mean, so its estimate is low
by about ``Var / (2 M mean^2)``: on the shipped model at beta 0.5, 16 samples per prompt read J* 0.0061 below 160
samples. ``objective_corrected`` removes that first-order term with the jackknife (Quenouille's,
``M J*(all) - (M-1) mean_i J*(all but i)``): 16 samples then read within 0.001 of 160. With very few samples at a
small beta (ESS of a few) it can overshoot; it is the estimate the share of achievable gain is read against.

**Best-of-n.** Draw ``n`` texts from ``pi0``, keep the one of highest reward. With the ``M`` rewards sorted
ascending, ``r_(1) <= ... <= r_(M)``, the unbiased estimate (a U-statistic) of its expected reward is
``sum_{k=n}^{M} C(k-1, n-1) / C(M, n) * r_(k)`` for ``n <= M``; its KL to ``pi0`` is at most
``log n - (n-1)/n`` nats (Stiennon et al. 2020; Beirami et al. 2024: equal when rewards do not tie).

Everything is averaged over prompts; KL is in nats per text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from text_envs.errors import TextEnvsError

__all__ = [
    "OptimumPoint",
    "BestOfNPoint",
    "optimum",
    "optimum_curve",
    "best_of_n",
    "best_of_n_curve",
    "best_of_n_kl_bound",
    "best_of_n_at_kl",
    "achievable_share",
]


@dataclass(frozen=True)
class OptimumPoint:
    """The regularised optimum ``pi* ∝ pi0 exp(r / beta)`` at one ``beta``, averaged over prompts.

    :param beta: the KL coefficient.
    :param reward: ``E_pi*[r]``.
    :param kl: ``KL(pi* || pi0)``, nats per text.
    :param objective: ``J* = reward - beta * kl`` (``= beta * mean log Z``).
    :param ess: mean over prompts of the weights' effective sample size (1..M).
    :param ess_min: the smallest per-prompt effective sample size.
    :param samples: M, the samples per prompt.
    :param objective_corrected: ``J*`` with the jackknife's bias correction (NaN for M = 1): the plug-in
        ``objective`` is low by O(1/M) (module docstring).
    """

    beta: float
    reward: float
    kl: float
    objective: float
    ess: float
    ess_min: float
    samples: int
    objective_corrected: float = float("nan")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class BestOfNPoint:
    """Best-of-n sampling of the start model: expected reward of the best of ``n`` draws and its KL bound."""

    n: int
    reward: float
    kl_bound: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _rewards_matrix(rewards: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """``rewards`` as a finite float64 ``(N, M)`` array, or a clear error."""
    try:
        array = np.asarray(rewards, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TextEnvsError("Expected rewards as an (N prompts, M samples) array of numbers with the same M for "
                            f"every prompt; could not read them as one ({exc}).") from None
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise TextEnvsError(f"Expected rewards of shape (N prompts, M samples) with N, M >= 1, got shape "
                            f"{array.shape}.")
    if not np.isfinite(array).all():
        raise TextEnvsError("Expected finite rewards; got NaN or infinite values.")
    return array


def _check_beta(beta: float) -> float:
    if not (isinstance(beta, (int, float, np.floating)) and math.isfinite(beta) and beta > 0):
        raise TextEnvsError(f"Expected beta > 0 (the KL coefficient; at beta 0 the optimum is the best sample), got "
                            f"{beta!r}.")
    return float(beta)


def optimum(rewards: Sequence[Sequence[float]] | np.ndarray, beta: float) -> OptimumPoint:
    """The optimum of ``E[r] - beta * KL`` to the sampling model, estimated from its samples' rewards.

    :param rewards: ``(N, M)``: the rewards of M texts sampled from the start model for each of N prompts.
    :param beta: the KL coefficient, > 0.
    :return: an :class:`OptimumPoint` (see the module docstring for the estimators).
    """
    r = _rewards_matrix(rewards)  # (N, M)
    beta = _check_beta(beta)
    scaled = r / beta  # (N, M)
    top = scaled.max(axis=1, keepdims=True)  # (N, 1): log-sum-exp without overflow
    unnorm = np.exp(scaled - top)  # (N, M)
    total = unnorm.sum(axis=1, keepdims=True)  # (N, 1)
    weights = unnorm / total  # (N, M)
    log_z = top[:, 0] + np.log(total[:, 0]) - math.log(r.shape[1])  # (N,) log mean exp(r / beta)
    reward = (weights * r).sum(axis=1)  # (N,)
    kl = np.maximum(reward / beta - log_z, 0.0)  # >= 0 by Jensen; the clip removes float rounding only
    ess = 1.0 / (weights**2).sum(axis=1)  # (N,)
    return OptimumPoint(beta=beta, reward=float(reward.mean()), kl=float(kl.mean()),
                        objective=float(beta * log_z.mean()), ess=float(ess.mean()), ess_min=float(ess.min()),
                        samples=int(r.shape[1]),
                        objective_corrected=_jackknife_objective(scaled, top, unnorm, total, log_z, beta))


def _jackknife_objective(scaled: np.ndarray, top: np.ndarray, unnorm: np.ndarray, total: np.ndarray,
                         log_z: np.ndarray, beta: float) -> float:
    """``beta * mean_x [M log Z(x) - (M-1) mean_i log Z_-i(x)]``, ``Z_-i`` the mean of ``exp(r / beta)`` without
    sample ``i``, from :func:`optimum`'s terms (``unnorm = exp(scaled - top)``, ``total`` its row sums). Each
    leave-one-out sum is the full sum less one term, except at a prompt's largest term, whose others are summed
    apart (subtracting the term that dominates a sum would cancel to 0)."""
    n, m = scaled.shape
    if m < 2:
        return float("nan")
    rows = np.arange(n)
    top_at = scaled.argmax(axis=1)  # (N,)
    with np.errstate(divide="ignore"):  # the argmax's entry may cancel to log(0); it is replaced below
        loo_log_sum = top + np.log(total - unnorm)  # (N, M)
    others = scaled.copy()
    others[rows, top_at] = -np.inf
    second = others.max(axis=1)  # (N,)
    loo_log_sum[rows, top_at] = second + np.log(np.exp(others - second[:, None]).sum(axis=1))
    loo_log_z = loo_log_sum - math.log(m - 1)  # (N, M)
    return float(beta * (m * log_z - (m - 1) * loo_log_z.mean(axis=1)).mean())


def optimum_curve(rewards: Sequence[Sequence[float]] | np.ndarray, betas: Sequence[float]) -> list[OptimumPoint]:
    """:func:`optimum` at each of ``betas``."""
    r = _rewards_matrix(rewards)
    return [optimum(r, b) for b in betas]


def best_of_n_kl_bound(n: int) -> float:
    """``log n - (n - 1) / n``: the KL (nats) of best-of-n sampling to the sampling model, at most."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise TextEnvsError(f"Expected n >= 1 (texts drawn per prompt), got {n!r}.")
    return math.log(n) - (n - 1) / n


def best_of_n(rewards: Sequence[Sequence[float]] | np.ndarray, n: int) -> float:
    """The unbiased estimate of best-of-n's expected reward from M >= n samples per prompt, averaged over prompts.

    :param rewards: ``(N, M)`` rewards of texts sampled from the start model.
    :param n: texts drawn per prompt, ``1 <= n <= M``.
    """
    r = np.sort(_rewards_matrix(rewards), axis=1)  # (N, M) ascending
    m = r.shape[1]
    best_of_n_kl_bound(n)  # checks n
    if n > m:
        raise TextEnvsError(f"best-of-{n} needs at least {n} samples per prompt, got {m}: sample more (--samples).")
    # P(the k-th smallest of M is the best of a random n-subset) = C(k-1, n-1) / C(M, n), k = n..M; exact
    # integer binomials (Python's int division rounds once), so no overflow for any M
    total = math.comb(m, n)
    weights = np.zeros(m)  # (M,), sums to 1
    weights[n - 1:] = [math.comb(k - 1, n - 1) / total for k in range(n, m + 1)]
    return float((r @ weights).mean())


def best_of_n_curve(rewards: Sequence[Sequence[float]] | np.ndarray, max_n: int = 32) -> list[BestOfNPoint]:
    """Best-of-n for ``n = 1..min(max_n, M)``: expected reward and KL bound."""
    r = _rewards_matrix(rewards)
    return [BestOfNPoint(n=n, reward=best_of_n(r, n), kl_bound=best_of_n_kl_bound(n))
            for n in range(1, min(max_n, r.shape[1]) + 1)]


def best_of_n_at_kl(curve: Sequence[BestOfNPoint], kl: float) -> float:
    """Best-of-n's reward at a KL budget: linear between the two ``n`` whose KL bounds bracket ``kl``.

    The interpolated point is achievable: drawing best-of-n or best-of-(n+1) at random per prompt has the
    interpolated reward and, KL being convex, a KL at most the interpolated bound. Past the curve's last
    ``n`` it is that ``n``'s reward (a lower bound on what more samples give).
    """
    if not curve:
        raise TextEnvsError("Expected a non-empty best-of-n curve (best_of_n_curve of the start model's samples).")
    kl = max(0.0, float(kl))
    points = sorted(curve, key=lambda p: p.n)
    bounds = np.array([p.kl_bound for p in points])
    values = np.array([p.reward for p in points])
    return float(np.interp(kl, bounds, values))


def achievable_share(model_objective: float, start_objective: float, optimum_objective: float) -> float:
    """``(J(model) - J(start)) / (J* - J(start))``: the share of the regularised objective's available gain a
    model takes (1 at the optimum, 0 at the start model, negative below it). NaN when ``J* <= J(start)``
    (nothing to gain: the reward is constant under the start model)."""
    gap = optimum_objective - start_objective
    if not gap > 1e-12:
        return float("nan")
    return float((model_objective - start_objective) / gap)
