"""Sentiment reward: VADER's lexicon-and-rules sentiment of the generated text, on a 0..1 scale.

``make_reward("sentiment")`` scores each prediction with VADER (Hutto & Gilbert 2014; the ``vaderSentiment``
package, which ships its lexicon: nothing is downloaded) and maps its ``compound`` score, which lies in
[-1, 1], to ``(compound + 1) / 2`` in [0, 1]: 1 is as positive as VADER gets, 0 as negative, 0.5 neutral.
``target="negative"`` rewards the opposite, ``1 - (compound + 1) / 2``.

Only the prediction is scored (the continuation, not the prompt before it); references are ignored.
An empty or whitespace-only prediction has no sentiment words: compound 0, reward 0.5 (neutral).
No model, no torch: a batch of one costs tens of microseconds.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from text_envs.rewards.base import Reward, RewardError

__all__ = ["SentimentReward", "vader_compound", "SENTIMENT_CLASSIFIER_DIR"]

#: The shipped tiny sentiment classifier (``scripts/train_sentiment_classifier.py`` writes it), a Hugging Face
#: sequence classifier with labels ``negative``/``positive``: ``make_reward("sentiment-classifier")`` loads it.
SENTIMENT_CLASSIFIER_DIR = Path(__file__).resolve().parents[1] / "assets" / "sentiment"

@functools.cache
def _analyzer() -> Any:
    """VADER's analyzer, built once per process (it parses its lexicon file, a few milliseconds)."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RewardError(
            "The 'sentiment' reward needs the vaderSentiment package: pip install vaderSentiment"
        ) from exc
    return SentimentIntensityAnalyzer()


def vader_compound(text: str) -> float:
    """VADER's compound sentiment score of ``text``, in [-1, 1] (0 for a text with no sentiment words).

    :raises RewardError: if ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise RewardError(f"Expected a str to score, got {type(text).__name__} {text!r}.")
    if not text.strip():
        return 0.0
    return float(_analyzer().polarity_scores(text)["compound"])


class SentimentReward(Reward):
    """Positive (or negative) sentiment of each prediction by VADER, mapped to [0, 1].

    :param target: ``"positive"`` (default: ``(compound + 1) / 2``) or ``"negative"``
        (``(1 - compound) / 2``).
    :param name: the reward's name (``"sentiment"``).
    """

    def __init__(self, target: str = "positive", name: str = "sentiment") -> None:
        if target not in ("positive", "negative"):
            raise RewardError(f"Expected target 'positive' or 'negative', got {target!r}.")
        self.target, self.name = target, name
        _analyzer()  # fail at construction, not in the middle of a rollout

    def _compute(self, predictions: list[str], references: list[list[str]], prompts: list[str] | None) -> list[float]:
        sign = 1.0 if self.target == "positive" else -1.0
        return [(1.0 + sign * vader_compound(p)) / 2.0 for p in predictions]
