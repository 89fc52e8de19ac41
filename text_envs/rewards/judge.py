"""An independent sentiment judge: AFINN's word list, which shares neither VADER's lexicon nor the review
generator's phrases, for checking what the ``sentiment`` (VADER) reward pays for.

``make_reward("sentiment-judge")`` scores each text with AFINN (Nielsen 2011: 3,382 English words rated
-5..+5 by one annotator, shipped in the ``afinn`` package: nothing is downloaded) and maps the sum of the
text's word ratings ``s`` to ``(1 + tanh(s / 5)) / 2`` in (0, 1): 0.5 for a text with no rated word, 0.77 for
one "great" (+3), toward 1 for many positive words. :func:`sentiment_disagreement` is the share of texts on
which AFINN's sign and VADER's polarity (compound >= 0.05 positive, <= -0.05 negative, else neutral: VADER's
own convention) differ: a policy that learns VADER's quirks rather than positive text raises it.

Not the shipped learned classifier (``sentiment-classifier``): that one is trained on the review generator's
own continuations (``scripts/train_sentiment_classifier.py``), so its agreement with a model trained on the
same data says little about texts the generator never writes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from text_envs.rewards.base import Reward, RewardError

__all__ = ["SentimentJudge", "afinn_score", "sentiment_disagreement", "VADER_NEUTRAL_BAND"]

VADER_NEUTRAL_BAND = 0.05
"""VADER's compound scores within +-this are neutral (Hutto & Gilbert's recommended threshold)."""

@functools.cache
def _afinn() -> Any:
    """AFINN's scorer, built once per process (it reads its word list: a few milliseconds)."""
    try:
        from afinn import Afinn
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RewardError("The 'sentiment-judge' reward needs the afinn package: pip install afinn") from exc
    return Afinn(language="en")


def afinn_score(text: str) -> float:
    """The sum of AFINN's ratings (-5..+5) of ``text``'s words (0 for a text with no rated word).

    :raises RewardError: if ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise RewardError(f"Expected a str to score, got {type(text).__name__} {text!r}.")
    return float(_afinn().score(text)) if text.strip() else 0.0


def sentiment_disagreement(texts: Sequence[str]) -> float:
    """The share of ``texts`` on which AFINN's polarity (the sign of its score) differs from VADER's
    (compound beyond +-:data:`VADER_NEUTRAL_BAND`, else neutral); 0 for no texts."""
    from text_envs.rewards.sentiment import vader_compound

    if not texts:
        return 0.0
    vader = np.array([vader_compound(t) for t in texts])
    vader_polarity = np.where(vader >= VADER_NEUTRAL_BAND, 1, np.where(vader <= -VADER_NEUTRAL_BAND, -1, 0))
    afinn_polarity = np.sign([afinn_score(t) for t in texts]).astype(int)
    return float((vader_polarity != afinn_polarity).mean())


class SentimentJudge(Reward):
    """AFINN's positive (or negative) sentiment of each prediction, ``(1 + tanh(sign * s / 5)) / 2``.

    :param target: ``"positive"`` (default) or ``"negative"``.
    :param name: the reward's name (``"sentiment-judge"``).
    """

    def __init__(self, target: str = "positive", name: str = "sentiment-judge") -> None:
        if target not in ("positive", "negative"):
            raise RewardError(f"Expected target 'positive' or 'negative', got {target!r}.")
        self.target, self.name = target, name
        _afinn()  # fail at construction, not in the middle of a rollout

    def _compute(self, predictions: list[str], references: list[list[str]], prompts: list[str] | None) -> list[float]:
        sign = 1.0 if self.target == "positive" else -1.0
        return [(1.0 + math.tanh(sign * afinn_score(p) / 5.0)) / 2.0 for p in predictions]
