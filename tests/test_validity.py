"""text_envs.validity: the generator's own rows are valid; texts that break its grammar or names are not."""

from __future__ import annotations

import pytest

from text_envs.data.generators import dialogue_row
from text_envs.data.reviews import review_row
from text_envs.errors import TextEnvsError
from text_envs.validity import dialogue_validity, has_validity_check, review_validity, validity_share


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_every_generated_review_is_valid(difficulty):
    rows = [review_row("test", i, difficulty) for i in range(300)]
    assert all(review_validity("continue: " + r["prompt"], r["continuation"]) is True for r in rows)


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_every_generated_reply_is_valid(difficulty):
    for i in range(300):
        turns = dialogue_row("test", i, difficulty)["dialog"]
        history = " ".join(f"{'AB'[k % 2]}: {t}" for k, t in enumerate(turns[:-1]))
        assert dialogue_validity(f"dialogue: {history} B:", turns[-1]) is True, turns


PROMPT = "continue: I watched Night Train at the cinema in Hythe on Monday with my sister."


@pytest.mark.parametrize("text", [
    "The acting was great. I would happily recommend Night Train to anyone.",
    "In my view, the script was so dull. I would never watch Night Train again.",
])
def test_review_valid(text):
    assert review_validity(PROMPT, text) is True


@pytest.mark.parametrize("text, why", [
    ("The acting was great. I would happily recommend Paper Moon to anyone.", "another film's name"),
    ("The food was great. I would happily recommend Night Train to anyone.", "a restaurant's aspect"),
    ("The acting was great. I would never watch Night Train again.", "the verdict's polarity differs"),
    ("The acting was great.", "no verdict"),
    ("The acting was great. I would happily recommend Night Train to", "cut off"),
    ("great great great great great", "not a sentence of the grammar"),
    ("The acting was great. It is the best film I have seen this year. I would watch Night Train again "
     "tomorrow.", "a difficulty-2 sentence after a one-sentence opening"),
])
def test_review_invalid(text, why):
    assert review_validity(PROMPT, text) is False, why


def test_contrast_needs_another_aspect():
    prompt = PROMPT[:-1] + ". We had seats near the front."  # a detail: difficulty 2 or 3
    head, tail = "The acting was great. We laughed all the way through.", "I would watch Night Train again tomorrow."
    assert review_validity(prompt, f"{head} {tail}") is True
    assert review_validity(prompt, f"{head} The music was awful, but that hardly mattered. {tail}") is True
    assert review_validity(prompt, f"{head} The acting was awful, but that hardly mattered. {tail}") is False


def test_dialogue_facts_must_come_from_the_conversation():
    prompt = ("dialogue: A: Hi, I'd like to book a table for 4 at Sakura on Friday at 7 pm, please. B: Certainly. "
              "Can I take a name for the booking? A: Yes, it's Smith. B:")
    good = "No problem, Smith. Your table for 4 at Sakura is booked for 7 pm on Friday."
    assert dialogue_validity(prompt, good) is True
    assert dialogue_validity(prompt, good.replace("Friday", "Sunday")) is False
    assert dialogue_validity(prompt, "Sure, see you then.") is False


def test_unparsed_prompts_and_shares():
    assert review_validity("continue: My grandmother's recipe for soup", "It was great.") is None
    assert dialogue_validity("tell me a story", "Once upon a time.") is None
    prompts = [PROMPT, PROMPT, "continue: something else"]
    texts = ["The acting was great. I would happily recommend Night Train to anyone.", "great", "anything"]
    assert validity_share("TextContinuation-v0", prompts, texts) == pytest.approx(0.5)  # the third is left out
    assert validity_share("TextContinuation-v0", prompts[2:], texts[2:]) is None
    assert has_validity_check("TextContinuation-v0") and not has_validity_check("TextCopy-v0")
    with pytest.raises(TextEnvsError, match="No validity check"):
        validity_share("TextCopy-v0", [], [])
    with pytest.raises(TextEnvsError, match="one prompt per text"):
        validity_share("TextContinuation-v0", prompts, texts[:1])
