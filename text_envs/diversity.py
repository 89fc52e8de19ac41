"""Diversity and degeneration of a corpus of generated texts: metrics that catch reward hacking.

A policy that games a reward (one phrase that the reward loves, repeated for every prompt; the same word
over and over) keeps a high reward while these move:

* ``distinct-1`` / ``distinct-2``: distinct unigrams (bigrams) over all unigrams (bigrams) of the corpus
  (Li et al. 2016); 1 when nothing repeats, near 0 when every text is the same phrase;
* ``self-bleu``: the mean over texts of sacrebleu's sentence BLEU of a text against all the others as
  references (Zhu et al. 2018, Texygen), on the 0..1 scale; 1 when every text is the same;
* ``mean_words``: the mean length in words (whitespace tokens);
* ``repeated_ngrams``: the mean over texts of the share of a text's n-grams (trigrams by default) that
  repeat an earlier n-gram of the same text (0 for fluent text, toward 1 for a loop).

Words are sacrebleu's ``13a`` tokens, lower-cased (punctuation split off), so "great." and "great" are one word.
No model. Self-BLEU is quadratic in the number of texts (each against all the others): it reads the first
``self_bleu_texts`` (100) texts, a fixed subset, about a second on a loaded CPU core; the rest take milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from text_envs.errors import TextEnvsError

__all__ = ["DIVERSITY_METRICS", "HACKING_METRICS", "hacking_metrics", "diversity_metrics", "distinct_n", "self_bleu",
           "repeated_ngram_share", "words"]

DIVERSITY_METRICS = ("distinct-1", "distinct-2", "self-bleu", "mean_words", "repeated_ngrams")
"""The names :func:`diversity_metrics` returns, in table order."""
HACKING_METRICS = DIVERSITY_METRICS + ("validity", "sentiment-judge", "judge_disagreement")
"""The names :func:`hacking_metrics` may return, in table order."""


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TextEnvsError("Expected a list of generated texts (str), got "
                            f"{type(texts).__name__ if isinstance(texts, str) else 'a list with non-str items'}.")
    return list(texts)


_TOKENIZE = None


def _tokenizer():
    global _TOKENIZE
    if _TOKENIZE is None:  # built once: sacrebleu compiles its regexes per instance
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

        _TOKENIZE = Tokenizer13a()
    return _TOKENIZE


def words(text: str) -> list[str]:
    """``text``'s words: sacrebleu's 13a tokenization (punctuation split off), lower-cased."""
    return _tokenizer()(text).lower().split()


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the corpus (0 when the texts hold no n-gram)."""
    texts = _check_texts(texts)
    grams = [g for t in texts for g in _ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def self_bleu(texts: Sequence[str], max_texts: int = 100) -> float:
    """Mean sentence BLEU (0..1) of each of the first ``max_texts`` texts against the other ones as references;
    0 for fewer than two texts."""
    from sacrebleu.metrics import BLEU

    texts = _check_texts(texts)[:max_texts]
    if len(texts) < 2:
        return 0.0
    bleu = BLEU(effective_order=True)  # sentence BLEU, as sacrebleu recommends for single sentences
    scores = [bleu.sentence_score(t, texts[:i] + texts[i + 1:]).score / 100.0 for i, t in enumerate(texts)]
    return float(min(1.0, np.mean(scores)))  # sacrebleu's 100.0 / 100 can round a hair above 1


def repeated_ngram_share(text: str, n: int = 3) -> float:
    """The share of ``text``'s n-grams that repeat an earlier one of the same text (0 when it has none)."""
    grams = _ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def diversity_metrics(texts: Sequence[str], self_bleu_texts: int = 100, repeat_n: int = 3) -> dict[str, float]:
    """``{name: value}`` for :data:`DIVERSITY_METRICS` (see the module docstring).

    :param texts: the generated texts (one per prompt: a corpus).
    :param self_bleu_texts: self-BLEU reads the first this many texts (it is quadratic in their number).
    :param repeat_n: the n of ``repeated_ngrams``.
    """
    texts = _check_texts(texts)
    if not texts:
        raise TextEnvsError("Expected at least one text to measure diversity on, got none.")
    tokens = [words(t) for t in texts]
    unigrams = [g for t in tokens for g in _ngrams(t, 1)]
    bigrams = [g for t in tokens for g in _ngrams(t, 2)]
    return {
        "distinct-1": len(set(unigrams)) / len(unigrams) if unigrams else 0.0,
        "distinct-2": len(set(bigrams)) / len(bigrams) if bigrams else 0.0,
        "self-bleu": self_bleu(texts, self_bleu_texts),
        "mean_words": float(np.mean([len(t) for t in tokens])),
        "repeated_ngrams": float(np.mean([repeated_ngram_share(t, repeat_n) for t in texts])),
    }


def hacking_metrics(texts: Sequence[str], prompts: Sequence[str] | None = None, env_id: str | None = None,
                    reward_name: str | None = None) -> dict[str, float]:
    """Every metric that catches reward hacking that applies: :func:`diversity_metrics`; ``validity`` (the share
    of texts the embedded generator could have written for their prompts, :mod:`text_envs.validity`) for an env
    with a check whose prompts it parses; ``sentiment-judge`` (AFINN, :mod:`text_envs.rewards.judge`) and
    ``judge_disagreement`` (the share of texts whose AFINN and VADER polarities differ) when the reward is VADER's
    ``sentiment``.

    :param texts: the generated texts, one per prompt.
    :param prompts: their prompts (for ``validity``).
    :param env_id: the env the texts were written for.
    :param reward_name: the name of the reward the model was trained for.
    """
    out = diversity_metrics(texts)
    from text_envs.validity import has_validity_check, validity_share

    if env_id is not None and prompts is not None and has_validity_check(env_id):
        share = validity_share(env_id, prompts, texts)
        if share is not None:
            out["validity"] = share
    if reward_name == "sentiment":
        from text_envs.rewards.judge import SentimentJudge, sentiment_disagreement

        judged = SentimentJudge()(list(texts), [[""]] * len(texts))
        out["sentiment-judge"] = float(np.mean(judged))
        out["judge_disagreement"] = sentiment_disagreement(texts)
    return out
