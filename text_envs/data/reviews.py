"""Seeded procedural reviews (films, restaurants, products) for ``TextContinuation-v0``, in an IMDB-like format.

:func:`review_row` computes row ``index`` of a split on demand, like the generators of
:mod:`text_envs.data.generators` (same split sizes, same per-row seeding from a string such as
``"review/train/1/42"``, same disjoint-split construction).

A review is an **opening** (the prompt: who went where, with whom, when; no opinion yet) and a
**continuation** (the reference: opinions on a few aspects and a verdict). Half the reviews are positive
and half negative (``label`` 1 / 0, an independent fair draw per row), so supervised learning on the
references learns to continue in either direction at about the same rate, while a sentiment reward
prefers one. The opinion words are common English words in the VADER lexicon ("great", "lovely",
"awful", "boring"...), so the ``"sentiment"`` reward reads them; :func:`review_row`'s docstring gives the
VADER agreement measured on the test split.

**Difficulty** 1: a one-sentence opening, a two-sentence continuation (one aspect, a verdict).
2: a two-sentence opening (a neutral detail added), three sentences (two aspects, a verdict).
3: as 2, plus a *contrasting* sentence (one aspect of the opposite polarity, "..., but that hardly
mattered"): the review is mixed, its label is that of the overall verdict.

**Disjoint splits.** The opening's choices (domain, film/restaurant/product, companion, day, wording,
town) are the key facts; the town is the pivot that puts them in the split's buckets, so no opening
(prompt) of one split appears in another. The continuation's choices are free: short continuations
built from small pools do repeat across splits, as any review phrase does.

The words were chosen to be plain English that a small model can learn to continue; the shipped
tokenizer was built on the other tasks' data, so it splits some review words into pieces until it is
rebuilt with these rows in its corpus.
"""

from __future__ import annotations

from collections.abc import Sequence

from text_envs.data.drawing import SPLIT_SIZES, Draw, check_row, upper_first
from text_envs.data.generators import DAYS, TOWNS

__all__ = ["REVIEW_DOMAINS", "SPLIT_SIZES", "review_row", "review_grammar"]

REVIEW_DOMAINS = ("film", "restaurant", "product")

_FILMS = ("The Silver River", "Night Train", "The Last Garden", "Storm Island", "Paper Moon", "The Quiet Hour",
          "Red Horizon", "City of Glass", "The Long Road", "Blue Summer", "The Lost Key", "Winter Lights",
          "Ocean Heart", "The Clockmaker", "Wild Hills", "The Secret Door", "Golden Days", "Iron Sky",
          "The Hidden Valley", "Small Wonders", "The Bright Side", "Falling Stars", "The Glass House",
          "North Star")
_RESTAURANTS = ("Luigi's", "The Golden Dragon", "The Red Lion", "Casa Maria", "The Olive Tree", "Spice Garden",
                "The Blue Anchor", "Le Petit Bistro", "The Royal Oak", "Sakura", "The Green Man", "Bella Napoli",
                "The Curry House", "The Riverside Grill", "Taverna Athena", "The Old Mill", "The Swan",
                "Noodle Bar", "The Fish Kitchen", "Pizza Express")
_PRODUCTS = ("kettle", "lamp", "toaster", "backpack", "blender", "umbrella", "jacket", "coffee machine",
             "desk chair", "camera", "tent", "bike light", "hair dryer", "rice cooker", "pair of headphones",
             "laptop bag", "pair of boots", "vacuum cleaner", "phone", "teapot")
_COMPANIONS = ("my sister", "my brother", "my wife", "my husband", "a friend", "my parents", "the kids",
               "two friends", "my partner", "my mum", "my dad", "some people from work")

# (subject, verb) per domain; the predicates below fit every aspect
_ASPECTS = {
    "film": (("the acting", "was"), ("the story", "was"), ("the music", "was"), ("the ending", "was"),
             ("the pace", "was"), ("the main character", "was"), ("the costumes", "were"),
             ("the script", "was")),
    "restaurant": (("the food", "was"), ("the service", "was"), ("the staff", "were"), ("the dessert", "was"),
                   ("the pasta", "was"), ("the atmosphere", "was"), ("the portions", "were"),
                   ("the wine", "was")),
    "product": (("the build quality", "was"), ("the design", "was"), ("the price", "was"),
                ("the delivery", "was"), ("the instructions", "were"), ("the finish", "was"),
                ("the handle", "was"), ("the packaging", "was")),
}
_POS_ADJ = ("great", "excellent", "wonderful", "brilliant", "lovely", "superb", "perfect", "fantastic",
            "amazing", "good")
_NEG_ADJ = ("awful", "terrible", "poor", "dreadful", "disappointing", "bad", "horrible", "dull", "useless",
            "boring")
_ADVERBS = ("", "", "really ", "very ", "so ")
_ASPECT_FORMS = ("{Aspect} {be} {adv}{adj}.", "I thought {aspect} {be} {adv}{adj}.",
                 "{Aspect} {be} {adv}{adj} from start to finish.", "In my view, {aspect} {be} {adv}{adj}.")
_EXTRA = {  # a domain sentence for each polarity (difficulty >= 2)
    ("film", 1): ("I enjoyed every minute of it.", "We laughed all the way through.",
                  "It is the best film I have seen this year.", "I loved it and so did {companion}."),
    ("film", 0): ("I nearly fell asleep halfway through.", "We were bored the whole time.",
                  "It is the worst film I have seen this year.", "I hated it and so did {companion}."),
    ("restaurant", 1): ("Everything we ordered was delicious.", "The staff were friendly and helpful.",
                        "It is the best meal I have had in {town}.", "We loved it and so did {companion}."),
    ("restaurant", 0): ("Everything we ordered was cold.", "The staff were rude and slow.",
                        "It is the worst meal I have had in {town}.", "We hated it and so did {companion}."),
    ("product", 1): ("It does the job perfectly.", "I have used it every day and I love it.",
                     "It is the best {product} I have ever owned.", "It works well and looks beautiful."),
    ("product", 0): ("It broke after a week.", "I have used it twice and I hate it.",
                     "It is the worst {product} I have ever owned.", "It does not work and looks ugly."),
}
_VERDICT = {
    ("film", 1): ("I would happily recommend {name} to anyone.", "A great film, well worth seeing.",
                  "I would watch {name} again tomorrow."),
    ("film", 0): ("I would not recommend {name} to anyone.", "A bad film, not worth seeing.",
                  "I would never watch {name} again."),
    ("restaurant", 1): ("We will definitely go back to {name}.", "A lovely evening, highly recommended.",
                        "I would happily recommend {name} to anyone."),
    ("restaurant", 0): ("We will not be going back to {name}.", "A terrible evening, avoid it.",
                        "I would not recommend {name} to anyone."),
    ("product", 1): ("I would happily buy it again.", "Great value, highly recommended.",
                     "I am very happy with it."),
    ("product", 0): ("I regret buying it.", "What a waste of money.", "I am very sad I bought it."),
}
_CONTRAST = {1: "{Aspect} {be} {adj}, but that hardly mattered.", 0: "{Aspect} {be} {adj}, but that could not save it."}
# openings: {name} {companion} {day} {town}; the second sentence (difficulty >= 2) is a neutral detail
_OPENINGS = {
    "film": ("I watched {name} at the cinema in {town} on {day} with {companion}.",
             "Last {day} I went to see {name} in {town} with {companion}.",
             "On {day}, {companion} and I saw {name} at a small cinema in {town}."),
    "restaurant": ("We had dinner at {name} in {town} on {day} with {companion}.",
                   "Last {day} I took {companion} to {name}, the new place in {town}.",
                   "On {day}, {companion} and I tried {name} in {town} for lunch."),
    "product": ("I bought a {name} from a shop in {town} on {day} for {companion}.",
                "Last {day} I ordered a new {name} from a shop in {town}, a present for {companion}.",
                "On {day}, {companion} and I picked up a {name} from a shop in {town}."),
}
_DETAILS = {
    "film": ("It runs for about two hours.", "The cinema was almost full.", "We had seats near the front.",
             "It was our first trip to the cinema this year."),
    "restaurant": ("We had booked a table for seven o'clock.", "The place was about half full.",
                   "It was our first visit.", "We sat by the window."),
    "product": ("It arrived two days later.", "It came in a plain brown box.", "I had read about it online.",
                "It was the only one left in the shop."),
}
_NAMES = {"film": _FILMS, "restaurant": _RESTAURANTS, "product": _PRODUCTS}


def _aspect_sentence(d: Draw, aspect: tuple[str, str], adjectives: Sequence[str]) -> str:
    subject, be = aspect
    form = d.free(_ASPECT_FORMS)
    return upper_first(form.format(Aspect=upper_first(subject), aspect=subject, be=be, adv=d.free(_ADVERBS),
                                   adj=d.free(adjectives)))


def review_row(split: str, index: int, difficulty: int = 1) -> dict:
    """Row ``index`` of the embedded review data.

    :param split: ``"train"``, ``"validation"`` or ``"test"`` (disjoint openings by construction).
    :param index: the row, ``0 <= index < SPLIT_SIZES[split]``.
    :param difficulty: 1 (a one-sentence opening of about 15 words, a two-sentence continuation of about
        14 words), 2 (a two-sentence opening of about 21 words, a three-sentence continuation of about 21
        words) or 3 (as 2 with a contrasting fourth sentence: about 30 words).
    :return: ``{"text": str, "prompt": str, "continuation": str, "label": int, "domain": str}``:
        ``text`` is ``prompt + " " + continuation`` (IMDB's column), ``label`` 1 for a positive review and 0
        for a negative one, ``domain`` one of :data:`REVIEW_DOMAINS`.

    VADER's compound score of the continuation has the label's sign on every one of the first 1000 rows
    of the test split at each difficulty (``tests/test_continuation.py`` checks difficulty 1); at
    difficulty 3 the contrast sentence can tip a rare review the other way for a lexicon (1 of the first
    1000 train rows), as real mixed reviews do.
    """
    index = check_row(split, index, difficulty)
    d = Draw("review", split, index, difficulty)
    domain = d.fact(REVIEW_DOMAINS)
    name = d.fact(_NAMES[domain])
    companion = d.fact(_COMPANIONS)
    day = d.fact(DAYS)
    opening = d.fact(_OPENINGS[domain])
    town = d.pivot(TOWNS)
    fields = dict(name=name, companion=companion, day=day, town=town, product=name)
    prompt_sentences = [upper_first(opening.format(**fields))]
    if difficulty >= 2:
        prompt_sentences.append(d.free(_DETAILS[domain]))

    label = d.int(2)
    adjectives, opposite = (_POS_ADJ, _NEG_ADJ) if label == 1 else (_NEG_ADJ, _POS_ADJ)
    aspects = list(_ASPECTS[domain])
    d.shuffle(aspects)
    sentences = [_aspect_sentence(d, aspects[0], adjectives)]
    if difficulty >= 2:
        second = d.free(_EXTRA[(domain, label)]).format(**fields)
        sentences.append(upper_first(second))
    if difficulty == 3:
        subject, be = aspects[1]
        sentences.append(_CONTRAST[label].format(Aspect=upper_first(subject), be=be, adj=d.free(opposite)))
    sentences.append(upper_first(d.free(_VERDICT[(domain, label)]).format(**fields)))
    prompt, continuation = " ".join(prompt_sentences), " ".join(sentences)
    return {"text": f"{prompt} {continuation}", "prompt": prompt, "continuation": continuation, "label": label,
            "domain": domain}


def review_grammar() -> dict:
    """The generator's pools and sentence forms, as :func:`review_row` uses them (read them, do not change them):
    :mod:`text_envs.validity` checks with them that a text is one the generator could write for a prompt.

    :return: ``{"domains", "names", "companions", "days", "towns", "openings", "details", "aspects", "adjectives"
        ({1: positive, 0: negative}), "adverbs", "aspect_forms", "extra", "contrast", "verdict"}``.
    """
    return {"domains": REVIEW_DOMAINS, "names": _NAMES, "companions": _COMPANIONS, "days": DAYS, "towns": TOWNS,
            "openings": _OPENINGS, "details": _DETAILS, "aspects": _ASPECTS, "adjectives": {1: _POS_ADJ, 0: _NEG_ADJ},
            "adverbs": _ADVERBS, "aspect_forms": _ASPECT_FORMS, "extra": _EXTRA, "contrast": _CONTRAST,
            "verdict": _VERDICT}
