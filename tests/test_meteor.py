"""METEOR against hand-computed values of Banerjee & Lavie (2005):
Fmean = 10PR/(R+9P), penalty = 0.5 (chunks/matches)^3, score = Fmean (1 - penalty)."""

from __future__ import annotations

import pytest

from text_envs.rewards import MeteorReward, RewardError, make_reward, meteor_score, wordnet_available
from text_envs.rewards.meteor import align


@pytest.fixture(scope="module")
def meteor() -> MeteorReward:
    return MeteorReward(stages=("exact", "stem"))


@pytest.mark.parametrize("n", [1, 2, 3, 6, 10])
def test_identical_text_scores_one_minus_half_over_n_cubed(meteor, n):
    text = " ".join(f"w{i}" for i in range(n))
    assert meteor([text], [[text]])[0] == pytest.approx(1 - 0.5 / n**3, abs=1e-12)


def test_disjoint_text_scores_zero(meteor):
    assert meteor(["alpha beta gamma"], [["delta epsilon zeta"]]) == [0.0]


def test_empty_prediction_scores_zero(meteor):
    assert meteor([""], [["the cat"]]) == [0.0]


def test_stem_only_matches_score_above_zero_and_exact_stage_alone_gives_zero():
    pred, ref = ["running dogs"], [["run dog"]]
    exact_only = MeteorReward(stages=("exact",))
    with_stem = MeteorReward(stages=("exact", "stem"))
    assert exact_only(pred, ref) == [0.0]
    # both words match by stem, one chunk of 2: 1 - 0.5 / 2^3
    assert with_stem(pred, ref)[0] == pytest.approx(1 - 0.5 / 8)


def test_partial_match_hand_computed(meteor):
    # hyp 7 words, ref 6 words; exact matches the, cat, on, the, mat (m=5), "sitting"/"sat" differ in stem.
    # P = 5/7, R = 5/6, Fmean = 10PR/(R+9P) = 250/305; chunks: "the cat" + "on the mat" = 2
    # penalty = 0.5 * (2/5)^3 = 0.032
    got = meteor(["the cat was sitting on the mat"], [["the cat sat on the mat"]])[0]
    assert got == pytest.approx((250 / 305) * (1 - 0.032), abs=1e-12)


def test_fragmentation_penalty_counts_chunks(meteor):
    # all 6 words match, in two chunks ("the cat sat" | "on the mat"): 1 - 0.5 * (2/6)^3
    got = meteor(["the cat sat on the mat"], [["on the mat the cat sat"]])[0]
    assert got == pytest.approx(1 - 0.5 * (2 / 6) ** 3, abs=1e-12)
    pairs = align("the cat sat on the mat".split(), "on the mat the cat sat".split())
    assert pairs == [(0, 3), (1, 4), (2, 5), (3, 0), (4, 1), (5, 2)]


def test_word_order_matters(meteor):
    in_order = meteor(["a b c d e f"], [["a b c d e f"]])[0]
    shuffled = meteor(["f e d c b a"], [["a b c d e f"]])[0]  # 6 chunks of 1: penalty 0.5
    assert shuffled == pytest.approx(0.5, abs=1e-12)
    assert in_order > shuffled


def test_precision_weighs_less_than_recall(meteor):
    # Fmean = 10PR/(R+9P) favours recall: a short prediction is hit harder than a long one with the same matches
    short = meteor(["the cat"], [["the cat sat on the mat"]])[0]  # P=1, R=1/3
    long = meteor(["the cat sat on the mat and more words here"], [["the cat sat on the mat"]])[0]  # P=6/10, R=1
    p, r = 1.0, 2 / 6
    assert short == pytest.approx(10 * p * r / (r + 9 * p) * (1 - 0.5 * (1 / 2) ** 3))
    assert long > short


def test_multiple_references_take_the_best(meteor):
    pred = ["the cat sat on the mat"]
    best = meteor(pred, [["the cat sat on the mat"]])[0]
    assert meteor(pred, [["nothing in common", "the cat sat on the mat"]])[0] == pytest.approx(best)
    assert meteor(pred, [["the cat sat on the mat", "nothing in common"]])[0] == pytest.approx(best)


def test_case_and_punctuation_are_ignored(meteor):
    assert meteor(["The Cat, sat."], [["the cat sat"]])[0] == pytest.approx(1 - 0.5 / 27)


def test_chinese_characters_are_tokens(meteor):
    assert meteor(["我爱北京"], [["我爱北京"]])[0] == pytest.approx(1 - 0.5 / 4**3)
    assert 0 < meteor(["我爱上海"], [["我爱北京"]])[0] < 1


def test_stages_report_what_ran():
    auto = make_reward("meteor")
    expected = ("exact", "stem", "synonym") if wordnet_available() else ("exact", "stem")
    assert auto.stages == expected
    assert "stages:" + "+".join(expected) in auto.signature


@pytest.mark.skipif(wordnet_available(), reason="WordNet data is installed here")
def test_synonym_stage_without_wordnet_data_says_how_to_install():
    with pytest.raises(RewardError, match="nltk.downloader wordnet"):
        MeteorReward(stages=("exact", "stem", "synonym"))


@pytest.mark.skipif(not wordnet_available(), reason="needs NLTK WordNet data")
def test_synonym_stage_matches_synonyms():  # pragma: no cover - depends on local data
    with_syn = MeteorReward(stages=("exact", "stem", "synonym"))
    assert with_syn(["big house"], [["large house"]])[0] > MeteorReward(stages=("exact", "stem"))(
        ["big house"], [["large house"]]
    )[0]


def test_bad_stage_and_parameters():
    with pytest.raises(RewardError, match="stages"):
        MeteorReward(stages=("exact", "paraphrase"))
    with pytest.raises(RewardError, match="alpha"):
        MeteorReward(alpha=1.5)


def test_meteor_score_function_matches_reward():
    h, r = "a quick brown fox".split(), "the quick brown fox".split()
    # m=3, P=R=3/4, one chunk: Fmean=0.75, penalty 0.5/27
    assert meteor_score(h, r) == pytest.approx(0.75 * (1 - 0.5 / 27))
