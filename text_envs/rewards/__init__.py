"""Rewards for text envs: a registry of named metrics, weighted combinations, shaping helpers.

>>> from text_envs.rewards import make_reward, list_rewards
>>> r = make_reward({"rouge-l": 0.7, "meteor": 0.3})
>>> r(["the cat sat"], [["the cat sat"]])                    # doctest: +SKIP
>>> make_reward("bleu", language="zh")                      # sacrebleu's zh tokenizer

Registered names (``list_rewards()``):

========================  ==================================================================================
``rouge-1/-2/-l/-lsum``   ROUGE F1 (rouge-score); options ``use_stemmer``, ``tokenizer`` ("unicode"/"char"/...)
``bleu``                  sentence BLEU (sacrebleu, ``smooth_method="exp"``, ``tokenize`` or ``language``)
``chrf`` / ``chrf++``     sentence chrF / chrF++ (sacrebleu)
``ter``                   ``1 - min(TER, 1)`` (sacrebleu; ``form="negative"`` for ``-TER``)
``meteor``                METEOR (exact + stem, + WordNet synonyms when the data is installed)
``semantic``              cosine of sentence embeddings (``pip install text-envs[semantic]``); loads torch
``learned``               a Hugging Face sequence classifier (``model=`` name/path/object); loads torch
``length-penalty``        ``-|len - len(closest ref)| / len(ref)``, or vs ``max_length``/``min_length`` (<= 0)
``repetition-penalty``    ``-`` fraction of repeated n-grams (<= 0)
``sentiment``             VADER's positive sentiment of the prediction, ``(compound + 1) / 2`` in [0, 1]
                          (``target="negative"`` for the opposite); no model
``sentiment-judge``       AFINN's sentiment, ``(1 + tanh(score / 5)) / 2``: a second lexicon, independent of VADER
                          and of the review generator (``rewards/judge.py``); no model
``sentiment-classifier``  the shipped tiny sentiment classifier (``text_envs/assets/sentiment``; a ``learned``
                          reward: the probability of ``"positive"``); loads torch
``fact-precision``        share of the prediction's numbers and names that its prompt (the document) contains;
                          ``no_facts`` (default 1.0) when it has none; no model
========================  ==================================================================================

Importing this package imports neither torch nor transformers; ``semantic`` and ``learned`` load them when built.
"""

from __future__ import annotations

from typing import Any

from text_envs.rewards.base import (
    CallableReward,
    CombinedReward,
    Reward,
    RewardError,
    RewardSpec,
    list_rewards,
    make_reward,
    register_reward,
    validate_inputs,
)
from text_envs.rewards.facts import FactPrecisionReward, extract_facts, fact_precision
from text_envs.rewards.lexical import BleuReward, ChrfReward, RougeReward, TerReward, reference_streams
from text_envs.rewards.meteor import MeteorReward, meteor_score, wordnet_available
from text_envs.rewards.sentiment import SENTIMENT_CLASSIFIER_DIR, SentimentReward
from text_envs.rewards.shaping import (
    LengthPenalty,
    PrefixPotential,
    RepetitionPenalty,
    RunningRewardNormalizer,
    potential_shaping,
    shaped_rewards,
)

__all__ = [
    "Reward",
    "RewardError",
    "RewardSpec",
    "CallableReward",
    "CombinedReward",
    "make_reward",
    "list_rewards",
    "register_reward",
    "validate_inputs",
    "RougeReward",
    "BleuReward",
    "ChrfReward",
    "TerReward",
    "MeteorReward",
    "meteor_score",
    "wordnet_available",
    "reference_streams",
    "LengthPenalty",
    "RepetitionPenalty",
    "PrefixPotential",
    "RunningRewardNormalizer",
    "potential_shaping",
    "shaped_rewards",
    "SemanticSimilarityReward",
    "LearnedReward",
    "BatchedRewardWrapper",
    "MissingEOSPenalty",
    "SentimentReward",
    "SENTIMENT_CLASSIFIER_DIR",
    "SentimentJudge",
    "FactPrecisionReward",
    "fact_precision",
    "extract_facts",
]


def _rouge(variant: str):
    def factory(**options: Any) -> Reward:
        return RougeReward(variant, **options)

    factory.__name__ = f"make_{variant}"
    return factory


def _chrfpp(**options: Any) -> Reward:
    options.setdefault("word_order", 2)
    return ChrfReward(**options)


def _semantic(**options: Any) -> Reward:
    from text_envs.rewards.semantic import SemanticSimilarityReward

    return SemanticSimilarityReward(**options)


def _learned(**options: Any) -> Reward:
    from text_envs.rewards.learned import LearnedReward

    return LearnedReward(**options)


def _sentiment_judge(**options: Any) -> Reward:
    from text_envs.rewards.judge import SentimentJudge

    return SentimentJudge(**options)


def _sentiment_classifier(**options: Any) -> Reward:
    from text_envs.rewards.learned import LearnedReward

    options = {"label": "positive", "output": "prob", "name": "sentiment-classifier", **options}
    return LearnedReward(model=options.pop("model", str(SENTIMENT_CLASSIFIER_DIR)), **options)


for _v in ("rouge-1", "rouge-2", "rouge-l", "rouge-lsum"):
    register_reward(_v, _rouge(_v))
register_reward("bleu", BleuReward)
register_reward("chrf", ChrfReward)
register_reward("chrf++", _chrfpp)
register_reward("ter", TerReward)
register_reward("meteor", MeteorReward)
register_reward("semantic", _semantic)
register_reward("learned", _learned)
register_reward("length-penalty", LengthPenalty)
register_reward("repetition-penalty", RepetitionPenalty)
register_reward("sentiment", SentimentReward)
register_reward("sentiment-classifier", _sentiment_classifier)
register_reward("sentiment-judge", _sentiment_judge)
register_reward("fact-precision", FactPrecisionReward)

_LAZY = {
    "SentimentJudge": "text_envs.rewards.judge",
    "SemanticSimilarityReward": "text_envs.rewards.semantic",
    "LearnedReward": "text_envs.rewards.learned",
    "BatchedRewardWrapper": "text_envs.rewards.batched",
    "MissingEOSPenalty": "text_envs.rewards.batched",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
