"""The statistics of ``text-envs bench``: aggregates over seeds, paired comparisons and the evaluation's own noise.

Definitions follow Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice", as its ``rliable``
package computes them; they are implemented with NumPy here because rliable 1.2.0 (the newest) cannot be imported
with the pandas that ``datasets`` installs: it pins ``arch < 8``, and arch 7.x fails at import under pandas 3
(``deprecate_kwarg``), while arch 8 rejects the ``random_state=None`` that rliable passes.

* :func:`iqm`: the interquartile mean (``rliable.metrics.aggregate_iqm``);
* :func:`stratified_bootstrap_ci`: the percentile interval of a statistic under the stratified bootstrap (runs
  resampled within each task: ``rliable.library.get_interval_estimates`` with ``StratifiedBootstrap``);
* :func:`probability_of_improvement`: ``P(X > Y)`` (``rliable.metrics.probability_of_improvement``: per task the
  Mann-Whitney U statistic of X's runs against Y's over ``n_x * n_y``, ties counting one half, averaged over
  tasks; 0.5 for identical scores), with :func:`probability_of_improvement_ci` (the two methods' runs resampled
  independently within each task: rliable's ``StratifiedIndependentBootstrap``);
* :func:`paired_difference` (not in rliable, which compares unpaired runs): the mean over seeds of
  ``x_seed - y_seed`` with the percentile bootstrap interval of that mean (seeds resampled with replacement), for
  two methods run with the same seeds, so the seed's share of the noise (the same evaluation prompts and sampling
  seed, the same start-model samples) cancels;
* :func:`clustered_standard_error`: the evaluation noise of a mean reward over ``prompts x samples`` texts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError

__all__ = ["BOOTSTRAP_REPS", "CONFIDENCE", "Aggregate", "PairedComparison", "aggregate", "clustered_standard_error",
           "iqm", "paired_difference", "probability_of_improvement", "probability_of_improvement_ci",
           "stratified_bootstrap_ci"]

BOOTSTRAP_REPS = 50_000  # rliable's get_interval_estimates default
CONFIDENCE = 0.95
_SAMPLE_CELLS = 2_000_000  # scores drawn per bootstrap batch: bounds the memory of one batch


def iqm(scores: Any, axis: int | None = None) -> Any:
    """Interquartile mean: the mean of the scores left after cutting ``floor(n / 4)`` from each end (scipy's
    ``trim_mean(scores, 0.25)``, rliable's ``aggregate_iqm``), over all scores (``axis=None``) or along ``axis``.

    Robust to one outlying seed (unlike the mean) and less coarse than the median. With fewer than 4 scores
    nothing is cut: the IQM is the mean.
    """
    a = np.asarray(scores, dtype=float)
    if axis is None:
        a, axis = a.ravel(), 0
    a = np.moveaxis(a, axis, -1)
    n = a.shape[-1]
    if n == 0:
        raise TextEnvsError("iqm: expected at least one score, got none.")
    cut = int(0.25 * n)
    return np.sort(a, axis=-1)[..., cut:n - cut].mean(axis=-1)


def _runs_by_tasks(scores: Any, what: str) -> np.ndarray:
    """``scores`` as a float ``(runs, tasks)`` array with at least one run and task, or a clear error."""
    a = np.asarray(scores, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise TextEnvsError(f"{what}: expected scores of shape (runs,) or (runs, tasks) with at least one run, got "
                            f"shape {np.shape(scores)}.")
    return a


def _check_interval(confidence: float, reps: int, what: str) -> None:
    if not 0.0 < confidence < 1.0:
        raise TextEnvsError(f"{what}: expected 0 < confidence < 1, got {confidence}.")
    if reps < 1:
        raise TextEnvsError(f"{what}: expected reps >= 1, got {reps}.")


def _percentiles(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return float(low), float(high)


def stratified_bootstrap_ci(scores: Any, statistic: Callable[..., Any] = iqm, reps: int = BOOTSTRAP_REPS,
                            confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """The percentile ``confidence`` interval of ``statistic`` under the stratified bootstrap of ``scores``.

    :param scores: shape ``(runs,)`` (one task) or ``(runs, tasks)``; each bootstrap sample draws ``runs`` runs
        with replacement within every task (the tasks themselves are kept: rliable's ``StratifiedBootstrap``).
    :param statistic: ``statistic(samples, axis=-1)`` over the flattened ``runs * tasks`` scores of each sample
        (:func:`iqm`, or ``np.mean``).
    :param reps: bootstrap samples.
    :param confidence: the interval's coverage, e.g. 0.95: the 2.5th and 97.5th percentiles.
    :param seed: seeds the resampling (the same scores give the same interval).
    :return: ``(low, high)``.
    """
    a = _runs_by_tasks(scores, "stratified_bootstrap_ci")
    _check_interval(confidence, reps, "stratified_bootstrap_ci")
    runs, tasks = a.shape
    rng = np.random.default_rng(seed)
    stats = np.empty(reps)
    chunk = max(1, _SAMPLE_CELLS // (runs * tasks))
    for start in range(0, reps, chunk):
        n = min(chunk, reps - start)
        idx = rng.integers(0, runs, size=(n, runs, tasks))
        stats[start:start + n] = statistic(a[idx, np.arange(tasks)].reshape(n, runs * tasks), axis=-1)
    return _percentiles(stats, confidence)


@dataclass(frozen=True)
class Aggregate:
    """One method's figure over its runs: the IQM with its stratified bootstrap interval, the mean and the
    population std (the old table's), and the number of runs."""

    iqm: float
    low: float
    high: float
    mean: float
    std: float
    n: int

    def overlaps(self, other: Aggregate) -> bool:
        """Whether the two confidence intervals share any value."""
        return self.low <= other.high and other.low <= self.high

    def cell(self, digits: int = 3) -> str:
        """``IQM [low, high]``, e.g. ``0.734 [0.701, 0.760]``."""
        return f"{self.iqm:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def aggregate(scores: Any, reps: int = BOOTSTRAP_REPS, confidence: float = CONFIDENCE, seed: int = 0) -> Aggregate:
    """:class:`Aggregate` of ``scores`` (``(runs,)`` or ``(runs, tasks)``): IQM, its stratified bootstrap interval,
    mean and std. Non-finite scores make every figure NaN (a failed run must not pass unseen)."""
    a = np.asarray(scores, dtype=float)
    if a.size == 0:
        raise TextEnvsError("aggregate: expected at least one score, got none.")
    if not np.all(np.isfinite(a)):
        nan = math.nan
        return Aggregate(nan, nan, nan, nan, nan, int(a.shape[0]))
    low, high = stratified_bootstrap_ci(a, iqm, reps, confidence, seed)
    return Aggregate(float(iqm(a)), low, high, float(a.mean()), float(a.std()), int(a.shape[0]))


# ---------------------------------------------------------------------------------------------- comparisons
def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) of runs ``x`` (..., n_x, tasks) against ``y`` (..., n_y, tasks), averaged over tasks: the
    Mann-Whitney U statistic over ``n_x * n_y``, a tie counting one half."""
    greater = (x[..., :, None, :] > y[..., None, :, :]).mean(axis=(-3, -2))  # (..., tasks)
    ties = (x[..., :, None, :] == y[..., None, :, :]).mean(axis=(-3, -2))
    return (greater + 0.5 * ties).mean(axis=-1)


def probability_of_improvement(x: Any, y: Any) -> float:
    """``P(X > Y)``: the probability that a run of method X scores higher than a run of method Y on a task,
    averaged over tasks (rliable's ``probability_of_improvement``; see the module docstring).

    :param x: X's scores, ``(runs_x,)`` or ``(runs_x, tasks)``.
    :param y: Y's scores, ``(runs_y,)`` or ``(runs_y, tasks)``, the same tasks.
    :return: in [0, 1]; 0.5 when the scores are identical, 1.0 when every run of X beats every run of Y.
    """
    a, b = _runs_by_tasks(x, "probability_of_improvement"), _runs_by_tasks(y, "probability_of_improvement")
    if a.shape[1] != b.shape[1]:
        raise TextEnvsError(f"probability_of_improvement: expected the same tasks for X and Y, got {a.shape[1]} and "
                            f"{b.shape[1]} task columns.")
    return float(_poi(a, b))


def probability_of_improvement_ci(x: Any, y: Any, reps: int = BOOTSTRAP_REPS, confidence: float = CONFIDENCE,
                                  seed: int = 0) -> tuple[float, float]:
    """The percentile interval of :func:`probability_of_improvement` when X's and Y's runs are resampled with
    replacement, independently, within each task (rliable's ``StratifiedIndependentBootstrap``)."""
    a, b = _runs_by_tasks(x, "probability_of_improvement_ci"), _runs_by_tasks(y, "probability_of_improvement_ci")
    if a.shape[1] != b.shape[1]:
        raise TextEnvsError(f"probability_of_improvement_ci: expected the same tasks for X and Y, got {a.shape[1]} "
                            f"and {b.shape[1]} task columns.")
    _check_interval(confidence, reps, "probability_of_improvement_ci")
    rng = np.random.default_rng(seed)
    tasks = a.shape[1]
    stats = np.empty(reps)
    chunk = max(1, _SAMPLE_CELLS // (a.shape[0] * b.shape[0] * tasks))
    for start in range(0, reps, chunk):
        n = min(chunk, reps - start)
        xs = a[rng.integers(0, a.shape[0], size=(n, a.shape[0], tasks)), np.arange(tasks)]  # (n, runs_x, tasks)
        ys = b[rng.integers(0, b.shape[0], size=(n, b.shape[0], tasks)), np.arange(tasks)]
        stats[start:start + n] = _poi(xs, ys)
    return _percentiles(stats, confidence)


@dataclass(frozen=True)
class PairedComparison:
    """A method against a baseline run with the same seeds.

    :param baseline: the baseline's label.
    :param mean: the mean over seeds of ``method - baseline``.
    :param low: the bootstrap interval of that mean (seeds resampled), low end.
    :param high: its high end.
    :param poi: ``P(method > baseline)`` over runs (:func:`probability_of_improvement`).
    :param poi_low: its interval's low end (:func:`probability_of_improvement_ci`).
    :param poi_high: its high end.
    :param n: the seeds both have.
    """

    baseline: str
    mean: float
    low: float
    high: float
    poi: float
    poi_low: float
    poi_high: float
    n: int

    def excludes_zero(self) -> bool:
        """Whether the difference's interval lies wholly above or wholly below 0 (never on one seed: see
        :meth:`verdict`)."""
        return self.n >= 2 and (self.low > 0.0 or self.high < 0.0)

    def verdict(self) -> str:
        """``better``, ``worse`` or ``not separated`` (the interval holds 0); ``one seed: no interval`` when there is
        a single seed (its bootstrap interval is the one difference itself, which says nothing about the spread)."""
        if self.n < 2:
            return "one seed: no interval"
        return "better" if self.low > 0.0 else "worse" if self.high < 0.0 else "not separated"


def paired_difference(x: Any, y: Any, baseline: str = "baseline", reps: int = BOOTSTRAP_REPS,
                      confidence: float = CONFIDENCE, seed: int = 0) -> PairedComparison:
    """Method X against baseline Y, seed by seed: the mean of ``x[s] - y[s]`` with its percentile bootstrap
    interval (the seeds resampled with replacement) and X's probability of improvement over Y.

    :param x: X's score per seed, ``(seeds,)``.
    :param y: Y's score at the same seeds, in the same order.
    :param baseline: Y's label (kept in the result).
    :raises TextEnvsError: on different lengths or non-finite scores.
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or a.size < 1:
        raise TextEnvsError(f"paired_difference: expected two score lists of the same length >= 1 (one score per seed "
                            f"each), got shapes {a.shape} and {b.shape}.")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise TextEnvsError("paired_difference: expected finite scores (a failed run must be rerun, not compared).")
    _check_interval(confidence, reps, "paired_difference")
    diff = a - b
    low, high = stratified_bootstrap_ci(diff, np.mean, reps, confidence, seed)
    poi_low, poi_high = probability_of_improvement_ci(a, b, reps, confidence, seed)
    return PairedComparison(baseline, float(diff.mean()), low, high, probability_of_improvement(a, b), poi_low,
                            poi_high, int(a.size))


def clustered_standard_error(rewards: Any) -> float:
    """The standard error of the mean reward of ``prompts x samples`` texts, prompts as clusters: the standard
    deviation of the per-prompt means (ddof 1) over ``sqrt(prompts)``.

    Texts of one prompt are correlated (an opening that invites praise), so this is at least the naive
    ``std / sqrt(prompts * samples)`` whenever they are; it is the evaluation noise of one run (NaN for one prompt).

    :param rewards: ``(prompts, samples)``.
    """
    r = np.asarray(rewards, dtype=float)
    if r.ndim != 2 or r.size == 0:
        raise TextEnvsError(f"clustered_standard_error: expected rewards of shape (prompts, samples), got shape "
                            f"{r.shape}.")
    if r.shape[0] < 2:
        return math.nan
    return float(r.mean(axis=1).std(ddof=1) / math.sqrt(r.shape[0]))
