"""Reward shaping: length and repetition penalties, potential-based dense shaping, running normalisation.

* :class:`LengthPenalty` and :class:`RepetitionPenalty` are rewards with values <= 0 (``is_penalty=True``), meant
  to be combined with a metric: ``make_reward({"rouge-l": 1.0, "length-penalty": 0.5})``. The missing-EOS
  penalty needs the episode's ``finish_reason``, so it is an env wrapper:
  :class:`text_envs.rewards.MissingEOSPenalty`.
* Potential-based shaping (Ng, Harada & Russell 1999): with a potential ``phi`` (here a metric of the decoded
  prefix), the shaping term ``F_t = gamma * phi(s_{t+1}) - phi(s_t)`` with ``phi(terminal) = 0`` leaves the
  optimal policy unchanged, because the discounted sum telescopes to ``-phi(s_0)`` (a constant of the prompt).
  :func:`shaped_rewards` computes the terms of a whole episode, :func:`potential_shaping` one step, and
  :class:`PrefixPotential` tracks ``phi`` of the growing prefix inside an env (the env's dense mode).
* :class:`RunningRewardNormalizer`: divide rewards by the running std of the discounted return (what SB3's
  ``VecNormalize(norm_reward=True)`` does), usable outside SB3 too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from text_envs.rewards.base import Reward, RewardError, make_reward

__all__ = [
    "LengthPenalty",
    "RepetitionPenalty",
    "potential_shaping",
    "shaped_rewards",
    "PrefixPotential",
    "RunningRewardNormalizer",
]


def _tokenizer(spec: str | Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    from text_envs.rewards.lexical import make_word_tokenizer

    return make_word_tokenizer(spec) if isinstance(spec, str) else spec


class LengthPenalty(Reward):
    """Penalty (<= 0) for texts longer than ``max_length``, shorter than ``min_length`` or away from
    ``target_length``, measured in words (or characters / any tokenizer), relative to that length:
    ``-coef * excess / bound``. With none of the three (``make_reward({"rouge-l": 1, "length-penalty": 0.1})``)
    the target is the length of the closest reference: ``-coef * |len - len(ref)| / len(ref)``.

    :param max_length: penalise each unit above this length.
    :param min_length: penalise each unit below this length.
    :param target_length: penalise the distance to this length (both directions).
    :param coef: scale of the penalty.
    :param unit: ``"words"``, ``"chars"`` or a ``str -> list`` tokenizer.
    """

    is_penalty = True

    def __init__(
        self,
        max_length: int | None = None,
        min_length: int | None = None,
        target_length: int | None = None,
        coef: float = 1.0,
        unit: str | Callable[[str], list[str]] = "words",
    ) -> None:
        self.relative_to_reference = max_length is None and min_length is None and target_length is None
        for k, v in (("max_length", max_length), ("min_length", min_length), ("target_length", target_length)):
            if v is not None and (not isinstance(v, (int, np.integer)) or v <= 0):
                raise RewardError(f"Expected {k} to be a positive int, got {v!r}.")
        if min_length is not None and max_length is not None and min_length > max_length:
            raise RewardError(f"Expected min_length <= max_length, got {min_length} > {max_length}.")
        if not coef >= 0:
            raise RewardError(f"Expected coef >= 0 (the penalty is already negative), got {coef}.")
        self.name = "length-penalty"
        self.max_length, self.min_length, self.target_length, self.coef = max_length, min_length, target_length, coef
        if unit not in ("words", "chars") and not callable(unit):
            raise RewardError(f"Expected unit 'words', 'chars' or a tokenizer callable, got {unit!r}.")
        self.unit = unit

    def _len(self, text: str) -> int:
        if self.unit == "words":
            return len(text.split())
        if self.unit == "chars":
            return len(text)
        return len(self.unit(text))  # type: ignore[operator]

    def penalty(self, length: int) -> float:
        """The penalty of a text of ``length`` units."""
        p = 0.0
        if self.max_length is not None and length > self.max_length:
            p += (length - self.max_length) / self.max_length
        if self.min_length is not None and length < self.min_length:
            p += (self.min_length - length) / self.min_length
        if self.target_length is not None:
            p += abs(length - self.target_length) / self.target_length
        return -self.coef * p

    def _compute(self, predictions, references, prompts):
        if not self.relative_to_reference:
            return [self.penalty(self._len(p)) for p in predictions]
        out = []
        for p, refs in zip(predictions, references):
            n = self._len(p)
            ref_len = max(1, min((self._len(r) for r in refs), key=lambda m: (abs(m - n), m)))
            out.append(-self.coef * abs(n - ref_len) / ref_len)
        return out


class RepetitionPenalty(Reward):
    """Penalty (<= 0): ``-coef * (1 - distinct n-grams / n-grams)`` of the prediction (0 when nothing repeats).

    :param n: n-gram order (2 = repeated bigrams).
    :param coef: scale of the penalty.
    :param tokenizer: ``"unicode"`` (default), ``"char"``, ``"whitespace"`` or a callable.
    """

    is_penalty = True

    def __init__(self, n: int = 2, coef: float = 1.0, tokenizer: str | Callable[[str], list[str]] = "unicode") -> None:
        if not isinstance(n, int) or n < 1:
            raise RewardError(f"Expected n >= 1 (n-gram order), got {n!r}.")
        if not coef >= 0:
            raise RewardError(f"Expected coef >= 0 (the penalty is already negative), got {coef}.")
        self.name = "repetition-penalty"
        self.n, self.coef = n, coef
        self._tok = _tokenizer(tokenizer)

    def _compute(self, predictions, references, prompts):
        out = []
        n = self.n
        for p in predictions:
            toks = self._tok(p)
            grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
            out.append(0.0 - self.coef * (1.0 - len(set(grams)) / len(grams)) if grams else 0.0)  # no -0.0
        return out


# ---------------------------------------------------------------------------------------------- potentials
def potential_shaping(phi: float, phi_next: float, gamma: float = 1.0, terminal: bool = False) -> float:
    """One shaping term ``gamma * phi(s') - phi(s)``, with ``phi(s') = 0`` when ``s'`` is terminal.

    :param phi: potential of the state before the action.
    :param phi_next: potential of the state after it (ignored when ``terminal``).
    :param gamma: the discount factor of the learner (use the algorithm's ``gamma``).
    :param terminal: whether ``s'`` ends the episode.
    """
    return gamma * (0.0 if terminal else phi_next) - phi


def shaped_rewards(potentials: Sequence[float] | np.ndarray, gamma: float = 1.0, terminal: bool = True) -> np.ndarray:
    """Shaping terms of a whole episode from the potentials of its states ``phi(s_0), ..., phi(s_T)``.

    Returns ``F`` of shape ``(T,)`` with ``F_t = gamma * phi(s_{t+1}) - phi(s_t)``, ``phi(s_T)`` taken as 0 when the
    episode terminated (``terminal=True``), so that
    ``sum_t gamma**t F_t == gamma**T * phi(s_T) * (not terminal) - phi(s_0)`` (the telescoping identity).

    :param potentials: ``T + 1`` potentials.
    :param gamma: discount factor.
    :param terminal: the last state is terminal (EOS or token budget).
    """
    phi = np.asarray(potentials, dtype=np.float64)
    if phi.ndim != 1 or phi.size < 1:
        raise RewardError(f"Expected a 1-D sequence of T+1 potentials, got shape {phi.shape}.")
    if not np.all(np.isfinite(phi)):
        raise RewardError("Expected finite potentials, got NaN/inf; check the potential function.")
    nxt = phi[1:].copy()  # (T,)
    if terminal and nxt.size:
        nxt[-1] = 0.0
    return gamma * nxt - phi[:-1]


class PrefixPotential:
    """Track ``phi(prefix) = scale * reward(prefix)`` along an episode and emit the shaping terms.

    The env's dense mode: ``reset(references, prompt)`` at episode start, then ``step(prefix_text, terminal)``
    after each token returns ``gamma * phi(new prefix) - phi(old prefix)`` (``phi = 0`` at the terminal state);
    add it to the env's reward. Cost: one reward call on the decoded prefix per step.

    :param reward: a reward spec (``"rouge-l"``...) used as the potential.
    :param gamma: the learner's discount factor.
    :param scale: multiplier of the potential.
    """

    def __init__(self, reward: object, gamma: float = 1.0, scale: float = 1.0) -> None:
        self.reward = make_reward(reward)  # type: ignore[arg-type]
        if not 0.0 <= gamma <= 1.0:
            raise RewardError(f"Expected 0 <= gamma <= 1, got {gamma}.")
        self.gamma, self.scale = gamma, scale
        self._refs: list[str] = [""]
        self._prompt: str | None = None
        self.phi = 0.0

    def potential(self, text: str) -> float:
        """``phi`` of a (prefix) text for the current references."""
        prompts = None if self._prompt is None else [self._prompt]
        return self.scale * self.reward([text], [self._refs], prompts)[0]

    def reset(self, references: Sequence[str], prompt: str | None = None, prefix: str = "") -> float:
        """Start an episode; return ``phi(s_0)``."""
        self._refs = [references] if isinstance(references, str) else list(references)
        self._prompt = prompt
        self.phi = self.potential(prefix)
        return self.phi

    def step(self, prefix_text: str, terminal: bool = False) -> float:
        """The shaping term for the transition to ``prefix_text``."""
        phi_next = 0.0 if terminal else self.potential(prefix_text)
        f = potential_shaping(self.phi, phi_next, self.gamma, terminal)
        self.phi = phi_next
        return f


# ---------------------------------------------------------------------------------------------- normalisation
class RunningRewardNormalizer:
    """Scale rewards by the running std of the discounted return, like SB3's ``VecNormalize(norm_reward=True)``.

    ``normalizer(rewards, dones)`` updates the statistics with a batch (one value per env) and returns the
    normalised rewards; :meth:`normalize` alone does not update. With ``gamma=None`` the statistics are those
    of the raw rewards, and ``center=True`` also subtracts their running mean.

    :param n_envs: number of parallel envs (length of each batch).
    :param gamma: discount of the tracked return (use the algorithm's), or ``None`` for raw rewards.
    :param epsilon: added to the variance.
    :param clip: clip normalised rewards to ``[-clip, clip]``.
    :param center: subtract the running mean (only with ``gamma=None``; SB3 never centres rewards).
    """

    def __init__(
        self, n_envs: int = 1, gamma: float | None = 0.99, epsilon: float = 1e-8, clip: float = 10.0, center: bool = False
    ) -> None:
        if center and gamma is not None:
            raise RewardError("center=True only makes sense with gamma=None (statistics of the raw rewards).")
        self.n_envs, self.gamma, self.epsilon, self.clip, self.center = n_envs, gamma, epsilon, clip, center
        self.mean, self.var, self.count = 0.0, 1.0, epsilon
        self.returns = np.zeros(n_envs, dtype=np.float64)

    def _update_stats(self, x: np.ndarray) -> None:
        b_mean, b_var, b_count = float(x.mean()), float(x.var()), x.size
        delta = b_mean - self.mean
        tot = self.count + b_count
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / tot
        self.mean, self.var, self.count = self.mean + delta * b_count / tot, m2 / tot, tot

    def update(self, rewards: Sequence[float] | np.ndarray, dones: Sequence[bool] | np.ndarray | None = None) -> None:
        """Add a batch of rewards (one per env) to the statistics."""
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(r)):
            raise RewardError(f"Expected finite rewards, got {r.tolist()}.")
        if self.gamma is None:
            self._update_stats(r)
            return
        if r.shape != self.returns.shape:
            raise RewardError(f"Expected {self.n_envs} rewards (n_envs), got {r.size}.")
        self.returns = self.returns * self.gamma + r
        self._update_stats(self.returns)
        if dones is not None:
            self.returns[np.asarray(dones, dtype=bool).reshape(-1)] = 0.0

    def normalize(self, rewards: Sequence[float] | np.ndarray) -> np.ndarray:
        """Normalise without updating the statistics."""
        r = np.asarray(rewards, dtype=np.float64)
        if self.center:
            r = r - self.mean
        return np.clip(r / np.sqrt(self.var + self.epsilon), -self.clip, self.clip)

    def __call__(
        self, rewards: Sequence[float] | np.ndarray, dones: Sequence[bool] | np.ndarray | None = None
    ) -> np.ndarray:
        self.update(rewards, dones)
        return self.normalize(rewards)
