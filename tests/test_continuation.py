"""TextContinuation-v0, its embedded reviews, the "sentiment" reward, the shipped classifier and the fluency figure."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest

import text_envs  # noqa: F401  (registers the envs)
from text_envs.data.reviews import REVIEW_DOMAINS, review_row
from text_envs.errors import TextEnvsError
from text_envs.rewards import RewardError, make_reward
from text_envs.rewards.sentiment import SENTIMENT_CLASSIFIER_DIR, vader_compound

# VADER's own README gives these compound scores (vaderSentiment 3.3.2)
POSITIVE = "VADER is smart, handsome, and funny."
NEGATIVE = "VADER is not smart, handsome, nor funny."


# ---------------------------------------------------------------------------------------------- "sentiment"
def test_sentiment_reward_hand_checked_values():
    r = make_reward("sentiment")
    # (compound + 1) / 2 with the published compounds 0.8316 and -0.7424 (VADER rounds them to 4 digits)
    pos, neg = r([POSITIVE, NEGATIVE], [[""], [""]])
    assert pos == pytest.approx((0.8316 + 1) / 2, abs=5e-5)
    assert neg == pytest.approx((-0.7424 + 1) / 2, abs=5e-5)
    negative = make_reward({"name": "sentiment", "target": "negative"})
    assert negative([POSITIVE], [[""]])[0] == pytest.approx(1 - pos, abs=1e-12)


def test_sentiment_reward_bad_input():
    r = make_reward("sentiment")
    assert r([""], [[""]]) == [0.5]  # no sentiment words: neutral, documented
    assert r(["   \n"], [[""]]) == [0.5]
    with pytest.raises(RewardError, match="got None"):
        r([None], [[""]])
    with pytest.raises(RewardError, match="single str"):
        r(POSITIVE, [[""]])
    with pytest.raises(RewardError, match="target"):
        make_reward("sentiment", target="happy")
    with pytest.raises(RewardError, match="Expected a str"):
        vader_compound(None)


def test_sentiment_reward_batch_equals_single():
    r = make_reward("sentiment")
    texts = [POSITIVE, NEGATIVE, "", "The food was cold.", "A great evening, highly recommended."]
    batch = r(texts, [[""]] * len(texts))
    assert batch == [r([t], [[""]])[0] for t in texts]
    assert all(0.0 <= v <= 1.0 for v in batch)


# ---------------------------------------------------------------------------------------------- embedded reviews
def test_reviews_are_seeded_balanced_and_labelled_as_vader_reads_them():
    assert review_row("train", 7, 2) == review_row("train", 7, 2)
    rows = [review_row("test", i, 1) for i in range(1000)]
    labels = np.array([r["label"] for r in rows])
    # 1000 fair draws: the share of positives is 0.5 +- 0.016 (1 sd); 4 sd
    assert abs(labels.mean() - 0.5) < 0.064
    assert {r["domain"] for r in rows} == set(REVIEW_DOMAINS)
    for r in rows:
        assert r["text"] == f"{r['prompt']} {r['continuation']}"
        compound = vader_compound(r["continuation"])
        assert (compound > 0) == (r["label"] == 1) and compound != 0, r
    # the opening (prompt) carries no opinion: VADER reads most of them as neutral or close to it
    assert np.mean([abs(vader_compound(r["prompt"])) < 0.5 for r in rows]) > 0.9


def test_review_splits_have_disjoint_openings():
    train = {review_row("train", i, 1)["prompt"] for i in range(5000)}
    test = {review_row("test", i, 1)["prompt"] for i in range(1000)}
    validation = {review_row("validation", i, 1)["prompt"] for i in range(1000)}
    assert not train & test and not train & validation and not test & validation
    assert len(test) > 990  # openings rarely repeat within a split


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_review_difficulty_lengthens_texts(difficulty):
    rows = [review_row("validation", i, difficulty) for i in range(200)]
    n_sentences = {r["continuation"].count(".") for r in rows}
    assert n_sentences == {difficulty + 1}
    assert all(r["prompt"].count(".") == (1 if difficulty == 1 else 2) for r in rows)


# ---------------------------------------------------------------------------------------------- the env
def test_continuation_env_defaults():
    env = gym.make("TextContinuation-v0", split="test").unwrapped
    prompt, refs = env.example_text(0)
    row = review_row("test", 0, 1)
    assert prompt == "continue: " + row["prompt"] and refs == [row["continuation"]]
    assert env.reward.name == "sentiment" and env.num_examples == 1000
    env.reset(seed=0, options={"example_index": 0})
    *_, terminated, _, info = env.step(env.eos_token_id)
    assert terminated and info["generated_text"] == "" and info["reward"] == 0.5


def test_continuation_env_passes_both_checkers():
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    gym_check(gym.make("TextContinuation-v0", max_new_tokens=8).unwrapped, skip_render_check=True)
    sb3_check(gym.make("TextContinuation-v0", max_new_tokens=8, difficulty=3), warn=True)


def test_imdb_style_local_jsonl(tmp_path):
    rows = [
        {"text": "I rented this movie last night and<br /><br />honestly it was one of the best films of the year, "
                 "with a wonderful cast.", "label": 1},
        {"text": "Short review.", "label": 0},  # no longer than the prompt: no reference, still an example
        {"text": "   ", "label": 0},  # blank: skipped with a warning
    ]
    path = tmp_path / "imdb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.warns(UserWarning, match="Skipped 1 of 3 rows"):
        env = gym.make("TextContinuation-v0", dataset=str(path), prompt_words=8).unwrapped
    assert env.num_examples == 2
    prompt, refs = env.example_text(0)
    assert prompt == "continue: I rented this movie last night and honestly"
    assert refs == ["it was one of the best films of the year, with a wonderful cast."]
    assert env.example_text(1) == ("continue: Short review.", [""])
    env.reset(seed=0, options={"example_index": 1})
    for token in env.tokenizer("great", add_special_tokens=False)["input_ids"]:
        *_, info = env.step(token)
    *_, terminated, _, info = env.step(env.eos_token_id)
    assert terminated and info["generated_text"] == "great" and info["reward"] > 0.5

    # a prompt column and a continuation column
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("opening,rest\nThe film started slowly.,Then it got better.\n")
    env = gym.make("TextContinuation-v0", dataset=str(pairs), prompt_field="opening", reference_field="rest").unwrapped
    assert env.example_text(0) == ("continue: The film started slowly.", ["Then it got better."])


def test_continuation_env_argument_errors(tmp_path):
    with pytest.raises(TextEnvsError, match="prompt_words"):
        gym.make("TextContinuation-v0", prompt_words=0)
    path = tmp_path / "reviews.jsonl"
    path.write_text(json.dumps({"review": "fine"}) + "\n")
    with pytest.raises(TextEnvsError, match="Field 'text' not found"):
        gym.make("TextContinuation-v0", dataset=str(path))
    from text_envs.tasks.continuation import HUB_DATASETS

    assert HUB_DATASETS["imdb"].prompt_field == "text" and HUB_DATASETS["imdb"].reference_field is None


# ---------------------------------------------------------------------------------------------- learned reward
def test_shipped_sentiment_classifier_ranks_clear_reviews():
    size = sum(f.stat().st_size for f in SENTIMENT_CLASSIFIER_DIR.iterdir())
    assert size < 5e6
    report = json.loads((SENTIMENT_CLASSIFIER_DIR / "training.json").read_text())
    assert min(report["held_out_accuracy"].values()) >= 0.95
    r = make_reward("sentiment-classifier", device="cpu")
    positive = "What a wonderful evening: the food was delicious and the staff were lovely. I loved it."
    negative = "A dreadful evening: the food was cold and the staff were rude. I hated it."
    pos, neg = r([positive, negative], [[""], [""]])
    assert 0.0 <= neg < 0.5 < pos <= 1.0
    assert r([negative], [[""]])[0] == pytest.approx(neg, abs=1e-5)  # batch = single (float rounding of padding)
    env = gym.make("TextContinuation-v0", reward="sentiment-classifier", max_new_tokens=4).unwrapped
    assert env.reward.name == "sentiment-classifier"


# ---------------------------------------------------------------------------------------------- fluency
def test_start_model_perplexity_separates_fluent_from_degenerate_text():
    from lm_core.backends import load_model
    from lm_core.fluency import sequence_nll, start_model_perplexity

    model = load_model(str(SENTIMENT_CLASSIFIER_DIR.parent / "model"))  # the shipped start model
    env = gym.make("TextSummarization-v0", split="test")
    examples = [env.unwrapped.example_text(i) for i in range(6)]
    prompts, refs = [p for p, _ in examples], [r[0] for _, r in examples]
    fluent = start_model_perplexity(model, env, prompts=prompts, texts=refs)
    degenerate = start_model_perplexity(model, env, prompts=prompts, texts=["great great great great"] * 6)
    assert 1.0 <= fluent < 2.0 < 100.0 < degenerate  # the shipped model was trained to these summaries
    gens = [{"prompt": p, "prediction": t} for p, t in zip(prompts, refs)]
    assert start_model_perplexity(model, env, gens) == pytest.approx(fluent, rel=1e-6)
    one, n_one = sequence_nll(model, env, prompts, refs, batch_size=1)
    all_, n_all = sequence_nll(model, env, prompts, refs, batch_size=6)
    assert n_one == n_all and one == pytest.approx(all_, rel=1e-4)  # padding changes nothing but rounding
    assert math.isnan(start_model_perplexity(model, env, prompts=[], texts=[]))
    with pytest.raises(TextEnvsError, match="one prompt per text"):
        start_model_perplexity(model, env, prompts=prompts, texts=refs[:2])


def test_sentiment_reward_and_env_pickle_round_trip():
    import pickle

    reward = pickle.loads(pickle.dumps(make_reward("sentiment")))
    assert reward([POSITIVE], [[""]]) == make_reward("sentiment")([POSITIVE], [[""]])
    env = gym.make("TextContinuation-v0", max_new_tokens=4).unwrapped
    copy = pickle.loads(pickle.dumps(env))
    assert copy.example_text(5) == env.example_text(5) and copy.reward.name == "sentiment"


# ---------------------------------------------------------------------------------------------- RL raises sentiment
def _shipped_model_knows_reviews() -> bool:
    """The shipped model's training.json names the tasks it was warm-started on."""
    report = json.loads((SENTIMENT_CLASSIFIER_DIR.parent / "model" / "training.json").read_text())
    return any(key.startswith("TextContinuation-v0") for key in report.get("validation", {}))


@pytest.mark.expensive
@pytest.mark.skipif(not _shipped_model_knows_reviews(),
                    reason="the shipped model is not yet warm-started on TextContinuation-v0 (issue 12 item 3): "
                           "it cannot continue reviews, so a short PPO run has nothing to improve")
def test_short_ppo_run_raises_greedy_sentiment():
    """Seeded PPO from the shipped model, with the KL penalty, raises the greedy sentiment of a fixed prompt set.
    The full claim (seeds, confidence intervals, the supervised comparison) lives in benchmarks/."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy
    from text_envs.evaluation import evaluate

    def greedy_sentiment(policy) -> float:
        result = evaluate("TextContinuation-v0", policy, split="test", n_examples=32, metrics=["sentiment"],
                          batch_size=16, seed=0)
        return result.table["sentiment"]

    env = make_vec_env("TextContinuation-v0", n_envs=8, seed=0)
    model = PPO(LLMPolicy, env, n_steps=48, batch_size=384, n_epochs=4, learning_rate=1e-4, gamma=1.0, seed=0,
                rollout_buffer_class=EpisodeRolloutBuffer, policy_kwargs=dict(kl_coef=0.05))
    before = greedy_sentiment(model.policy)
    model.learn(8 * 48 * 12)
    after = greedy_sentiment(model.policy)
    assert after > before + 0.05, (before, after)
