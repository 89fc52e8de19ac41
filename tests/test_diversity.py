"""text_envs.diversity: distinct-n, self-BLEU, length and repetition on corpora whose values are known."""

from __future__ import annotations

import pytest

from text_envs.diversity import DIVERSITY_METRICS, distinct_n, diversity_metrics, repeated_ngram_share, self_bleu, words
from text_envs.errors import TextEnvsError


def test_distinct_counts():
    texts = ["the cat sat", "the dog sat"]  # unigrams: 6, distinct 4; bigrams: 4, distinct 4
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    assert distinct_n(texts, 2) == pytest.approx(1.0)
    assert distinct_n(["a"], 2) == 0.0
    assert words("Great. I loved it!") == ["great", ".", "i", "loved", "it", "!"]


def test_self_bleu_extremes():
    same = ["I would happily recommend it to anyone at all."] * 5
    assert self_bleu(same) == pytest.approx(1.0)
    different = ["alpha beta gamma delta", "one two three four", "red green blue yellow"]
    assert self_bleu(different) == pytest.approx(0.0, abs=1e-9)
    assert self_bleu(["only one"]) == 0.0


def test_repetition_and_corpus_metrics():
    assert repeated_ngram_share("a b c a b c") == pytest.approx(1 / 4)  # trigrams abc bca cab abc: one repeat
    assert repeated_ngram_share("great") == 0.0
    fluent = ["The acting was superb.", "We will go back to Luigi's.", "It broke after a week."]
    looping = ["great great great great great great"] * 3
    good, bad = diversity_metrics(fluent), diversity_metrics(looping)
    assert list(good) == list(DIVERSITY_METRICS)
    assert good["distinct-2"] > 0.9 > 0.2 > bad["distinct-2"]
    assert bad["self-bleu"] == pytest.approx(1.0) and good["self-bleu"] < 0.2
    assert bad["repeated_ngrams"] == pytest.approx(3 / 4) and good["repeated_ngrams"] == 0.0
    assert good["mean_words"] == pytest.approx((5 + 7 + 6) / 3)  # 13a keeps "luigi's" whole, splits "."


def test_bad_input():
    with pytest.raises(TextEnvsError, match="list of generated texts"):
        diversity_metrics("one text")
    with pytest.raises(TextEnvsError, match="at least one text"):
        diversity_metrics([])


def test_sentiment_judge_and_disagreement():
    from text_envs import make_reward
    from text_envs.rewards.judge import afinn_score, sentiment_disagreement

    judge = make_reward("sentiment-judge")
    scores = judge(["The acting was great.", "The food was awful.", ""], [[""]] * 3)
    assert scores[0] == pytest.approx((1 + __import__("math").tanh(3 / 5)) / 2)  # AFINN: great +3
    assert scores[1] < 0.5 == scores[2]
    assert afinn_score("The acting was great.") == 3.0
    # VADER reads "meh" as negative (compound -0.08), AFINN has no rating for it: one disagreement of two
    assert sentiment_disagreement(["The acting was great.", "meh"]) == pytest.approx(0.5)
    assert make_reward("sentiment-judge", target="negative")(["great"], [[""]])[0] < 0.5
