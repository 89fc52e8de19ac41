"""The "fact-precision" reward and TextSummarization-v0's reference_noise."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import pytest

import text_envs  # noqa: F401  (registers the envs)
from text_envs.errors import TextEnvsError
from text_envs.rewards import RewardError, make_reward
from text_envs.rewards.facts import extract_facts, fact_precision, unsupported_facts
from text_envs.tasks.summarization import noisy_summarization_row

DOCUMENT = ("Thieves broke into a shop in Marlow on Monday night. Police said four bicycles and 1,200 pounds "
            "in cash had been taken. The owner, Sarah Smith, said the shop would open again soon.")


def facts(text: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(f.kind, f.key) for f in extract_facts(text)]


def test_one_unsupported_number_hand_checked():
    summary = "Thieves stole 5 bicycles and 1200 pounds from a shop in Marlow on Monday, police said."
    # facts: 5 (not in the document), 1200 (= 1,200), Marlow, Monday; "Thieves" is sentence-initial and not a
    # known name, "police" is lower-case: 3 of 4 supported
    assert facts(summary) == [("number", ("5",)), ("number", ("1200",)), ("name", ("marlow",)), ("name", ("monday",))]
    assert fact_precision(summary, DOCUMENT) == 0.75
    assert [f.text for f in unsupported_facts(summary, DOCUMENT)] == ["5"]
    reward = make_reward("fact-precision")
    assert reward([summary], [["unused reference"]], [DOCUMENT]) == [0.75]
    # number words and digits are the same fact; a name is supported when each of its words is in the document
    assert fact_precision("Sarah Smith said four bicycles were taken in Marlow.", DOCUMENT) == 1.0
    assert fact_precision("Sarah Jones said 4 bicycles were taken in Marlow.", DOCUMENT) == 2 / 3


def test_how_facts_are_found():
    assert facts("Mr. Smith paid 1,200 pounds; two hundred and fifty people came.") == [
        ("name", ("smith",)), ("number", ("1200",)), ("number", ("250",))]
    assert facts("It cost 5m, or five million, on the 14th of May 2014.") == [
        ("number", ("5",)), ("number", ("5",)), ("number", ("14",)), ("name", ("may",)), ("number", ("2014",))]
    assert facts("One of them said I'm fine. The Met Office warned Wales.") == [
        ("name", ("met", "office")), ("name", ("wales",))]
    assert facts("Sarah went home. Yesterday was dull.") == [("name", ("sarah",))]  # a known first name
    assert facts("Coalville was hit.") == []  # sentence-initial, not in the gazetteer
    assert [f.key for f in extract_facts("Coalville was hit.", names=["Coalville"])] == [("coalville",)]
    assert facts("the end of World War Two") == [("name", ("world", "war", "two"))]  # no separate number 2
    assert facts("two and three, five, six and twenty five") == [  # separate numbers; "twenty five" is one
        ("number", ("2",)), ("number", ("3",)), ("number", ("5",)), ("number", ("6",)), ("number", ("25",))]
    assert facts("three thousand and four hundred") == [("number", ("3400",))]
    assert facts("3.50 and 3.5 and 22:00") == [("number", ("3.5",)), ("number", ("3.5",)), ("number", ("22:00",))]


def test_no_facts_and_bad_input():
    reward = make_reward("fact-precision")
    assert reward(["", "the council said it was sorry"], [[""], [""]], [DOCUMENT, DOCUMENT]) == [1.0, 1.0]
    strict = make_reward({"name": "fact-precision", "no_facts": 0.0})
    assert strict([""], [[""]], [DOCUMENT]) == [0.0]
    assert reward(["Marlow"], [[""]], [""]) == [0.0]  # an empty document supports nothing
    with pytest.raises(RewardError, match="got None"):
        reward([None], [[""]], [DOCUMENT])
    with pytest.raises(RewardError, match="pass prompts"):
        reward(["Marlow"], [[""]])
    with pytest.raises(RewardError, match=r"prompts\[0\]"):
        reward(["Marlow"], [[""]], [None])
    with pytest.raises(RewardError, match="no_facts"):
        make_reward("fact-precision", no_facts=2)
    with pytest.raises(RewardError, match="Expected the document as a str"):
        fact_precision("Marlow", None)


def test_batch_equals_single(xsum_sample):
    rows = [json.loads(line) for line in xsum_sample.read_text().splitlines()]
    reward = make_reward("fact-precision")
    preds = [r["summary"] for r in rows] + ["", rows[0]["document"].split(".")[0] + "."]
    docs = [r["document"] for r in rows] + [rows[0]["document"], rows[0]["document"]]
    batch = reward(preds, [[""]] * len(preds), docs)
    assert batch == [reward([p], [[""]], [d])[0] for p, d in zip(preds, docs)]
    assert all(0.0 <= v <= 1.0 for v in batch)
    assert batch[-1] == 1.0  # a sentence copied from the document is fully supported
    # XSum references state facts their documents lack (Maynez et al. 2020): most of these score below 1
    assert sum(v < 1.0 for v in batch[: len(rows)]) >= len(rows) // 2


def test_fact_precision_in_an_env_mix():
    env = gym.make("TextSummarization-v0", reward="0.5*rouge-l+0.5*fact-precision", split="test").unwrapped
    prompt, refs = env.example_text(0)
    env.reset(seed=0, options={"example_index": 0})
    ids = env.tokenizer(refs[0], add_special_tokens=False)["input_ids"]
    for token in ids:
        *_, info = env.step(token)
    *_, terminated, _, info = env.step(env.eos_token_id)
    assert terminated and info["metrics"]["fact-precision"] == 1.0 and info["metrics"]["rouge-l"] == 1.0
    assert info["reward"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- reference_noise
@pytest.mark.parametrize("p", [0.0, 0.25])
def test_reference_noise_rate(p):
    n = 1500
    train = gym.make("TextSummarization-v0", reference_noise=p, difficulty=2).unwrapped
    rate = sum(fact_precision(train.example_text(i)[1][0], train.example_text(i)[0]) < 1.0 for i in range(n)) / n
    # n seeded Bernoulli(p) draws: sd sqrt(p(1-p)/n) = 0.011 at p = 0.25; 4 sd. Clean references score 1 exactly.
    assert abs(rate - p) <= 4 * math.sqrt(p * (1 - p) / n)
    test = gym.make("TextSummarization-v0", reference_noise=p, split="test").unwrapped
    assert all(fact_precision(test.example_text(i)[1][0], test.example_text(i)[0]) == 1.0 for i in range(300))


def test_noisy_reference_has_exactly_one_unsupported_detail():
    kinds = set()
    for i in range(300):
        row = noisy_summarization_row("train", i, 1, reference_noise=1.0)
        clean = noisy_summarization_row("train", i, 1)
        assert row["document"] == clean["document"] and clean["noise"] is None
        assert len(unsupported_facts(row["summary"], row["document"])) == 1, row
        assert len(row["summary"].split()) == len(clean["summary"].split())  # one word replaced
        kinds.add(row["noise"])
    assert kinds == {"number", "town", "day"}
    # nested: the rows noisy at p = 0.1 are noisy at p = 0.3 too
    low = {i for i in range(500) if noisy_summarization_row("train", i, 1, reference_noise=0.1)["noise"]}
    high = {i for i in range(500) if noisy_summarization_row("train", i, 1, reference_noise=0.3)["noise"]}
    assert low < high


def test_reference_noise_refuses_other_data(xsum_sample):
    with pytest.raises(TextEnvsError, match="embedded data only"):
        gym.make("TextSummarization-v0", dataset=str(xsum_sample), reference_noise=0.2)
    for bad in (-0.1, 1.5, float("nan"), True, "0.2"):
        with pytest.raises(TextEnvsError, match=r"reference_noise must be a number in \[0, 1\]"):
            gym.make("TextSummarization-v0", reference_noise=bad)
    env = gym.make("TextSummarization-v0", dataset=str(xsum_sample), reference_noise=0.0).unwrapped
    assert env.num_examples == 10


def test_reward_and_noisy_env_pickle_round_trip():
    """SubprocVecEnv workers receive the env, its reward and its row function by pickling."""
    import pickle

    reward = pickle.loads(pickle.dumps(make_reward("0.5*rouge-l+0.5*fact-precision")))
    assert reward.compute(["Marlow"], [["Marlow"]], [DOCUMENT])["fact-precision"] == [1.0]
    env = gym.make("TextSummarization-v0", reference_noise=1.0, max_new_tokens=4).unwrapped
    copy = pickle.loads(pickle.dumps(env))
    assert copy.example_text(3) == env.example_text(3) != gym.make("TextSummarization-v0").unwrapped.example_text(3)
