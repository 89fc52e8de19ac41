"""Review openings in other words than the training generator's: ``TextContinuation-v0``'s ``split="ood"``.

:mod:`text_envs.data.reviews` writes every opening of its train, validation and test splits from three templates
per domain ("Last {day} I went to see {name} in {town} with {companion}.") and fixed pools of names, companions,
weekdays and towns. A model trained on those openings can look well behaved there (reward up, KL to the start model
small) and drift on an opening worded any other way. This module writes :data:`OOD_SIZE` openings of the same three
domains (films, restaurants, products) that share **no template and no pool** with the training generator:

* other sentence templates (eight per domain: a booking, a recommendation, a sale, streaming at home...), none of
  which the training grammar parses (``text_envs.validity.review_validity`` returns None for every one);
* other film and restaurant names, other products, other companions and towns, and time expressions ("last
  weekend", "on our anniversary") instead of weekday names;
* at difficulty 2 and 3 a neutral second sentence from another pool of details.

The reference continuation (IMDB's column, for reference metrics only: the sentiment reward reads none) is half
positive, half negative, in held-out opinion words too. Rows are seeded per index (``"review-ood/<difficulty>/<i>"``),
so the split is the same on every machine; :func:`review_row_with_ood` serves it beside the generator's splits.
"""

from __future__ import annotations

import operator
import random

from text_envs.data.drawing import DIFFICULTIES, SPLIT_SIZES, GeneratorIndexError, upper_first
from text_envs.data.reviews import REVIEW_DOMAINS, review_row
from text_envs.errors import TextEnvsError, unknown_name

__all__ = ["OOD_SPLIT", "OOD_SIZE", "REVIEW_SPLIT_SIZES", "ood_review_row", "ood_review_grammar",
           "review_row_with_ood"]

OOD_SPLIT = "ood"
"""The split name of the differently worded openings."""
OOD_SIZE = 400
"""Rows of the ``ood`` split."""
REVIEW_SPLIT_SIZES: dict[str, int] = {**SPLIT_SIZES, OOD_SPLIT: OOD_SIZE}
"""Every split ``TextContinuation-v0``'s embedded data serves, with its row count."""

_FILMS = ("Harbour Lights", "The Salt Road", "Maple Street", "A Quiet Storm", "The Ninth Bridge", "Copper Kingdom",
          "The Orchard", "Midnight Ferry", "Sea of Lanterns", "The Painted Fox", "Echoes of June", "The Far Shore",
          "Velvet Rain", "The Tin Soldier", "Northern Crossing", "Lantern Bay")
_RESTAURANTS = ("Marco's Trattoria", "The Crooked Spoon", "Saffron Kitchen", "The Lighthouse Cafe",
                "Dim Sum Palace", "Harvest Table", "The Kings Arms", "El Toro", "Little Lisbon", "The Pepper Pot",
                "Mama Chen's", "Bistro Verde", "The Drover's Rest", "Thai Orchid", "The Harbour Fish Bar",
                "Kebab Corner")
_PRODUCTS = ("electric toothbrush", "air fryer", "standing desk", "smartwatch", "yoga mat", "food processor",
             "wireless speaker", "sleeping bag", "garden hose", "bread maker", "e-reader", "electric scooter",
             "baby monitor", "water bottle", "suitcase", "microwave")
_COMPANIONS = ("my flatmate", "my grandmother", "my girlfriend", "my boyfriend", "my neighbours", "my cousin",
               "my son", "my daughter", "my colleagues", "an old school friend", "my in-laws", "my book club")
_TOWNS = ("Brighton", "Leeds", "York", "Bath", "Norwich", "Exeter", "Chester", "Durham", "Cardiff", "Glasgow",
          "Dundee", "Bristol", "Oxford", "Harrogate", "Truro", "Lincoln")
_TIMES = ("last weekend", "over the Easter holidays", "yesterday evening", "on my birthday",
          "a couple of weeks ago", "on a rainy afternoon", "during the half-term break", "the night before last",
          "on our anniversary", "earlier this month")
_VENUES = ("multiplex", "old picture house", "arts centre", "community hall")

# placeholders: {name} {companion} {town} {time} {Time} (capitalised) {venue}
_OPENINGS = {
    "film": ("{Time}, {companion} talked me into seeing {name} at the {venue} in {town}.",
             "We caught the late showing of {name} in {town} {time}, {companion} and me.",
             "I finally got round to watching {name} {time}, streaming it at home with {companion}.",
             "{Companion} had been wanting to see {name} for ages, so {time} we went to the {venue} in {town}.",
             "Here is my review of {name}, which I saw {time} with {companion} in {town}.",
             "So {time} {companion} and I settled into the {venue} in {town} to watch {name}.",
             "Having heard a lot about {name}, I took {companion} to see it in {town} {time}.",
             "{Name} was showing at the {venue} in {town}, and {time} {companion} and I bought tickets."),
    "restaurant": ("{Time} we booked a table at {name} in {town} to celebrate with {companion}.",
                   "{Companion} suggested {name}, a family-run spot in {town}, so we went {time}.",
                   "We ended up at {name} on the high street in {town} {time}, {companion} and I.",
                   "After a long walk around {town}, {companion} and I stopped at {name} for a bite {time}.",
                   "I had heard mixed things about {name} in {town}, but {time} I gave it a go with {companion}.",
                   "Here is my take on {name} in {town}, where {companion} and I ate {time}.",
                   "{Name} opened near the station in {town} recently, and {time} we went along with {companion}.",
                   "Looking for somewhere new in {town}, {companion} and I walked into {name} {time}."),
    "product": ("I ordered the {name} online {time} after {companion} recommended it.",
                "{Time} I finally replaced our old {name} with a new one from a store in {town}.",
                "The {name} arrived {time}; I bought it as a gift for {companion}.",
                "I picked up this {name} in a sale in {town} {time}, mostly for {companion} to use.",
                "After weeks of comparing models, I settled on this {name} {time}.",
                "My new {name} came {time}, and {companion} and I unboxed it straight away.",
                "Here are my thoughts on the {name} I got {time} for {companion}.",
                "A shop assistant in {town} talked me into buying this {name} {time}."),
}
_DETAILS = {  # a neutral second sentence (difficulty >= 2)
    "film": ("The trailer had given away very little.", "Tickets cost more than I expected.",
             "We got there just as the adverts were starting.", "It is based on a novel I have not read."),
    "restaurant": ("There was a short wait for a table.", "The menu changes every week.",
                   "We parked around the corner.", "It used to be a bank, apparently."),
    "product": ("It took about ten minutes to set up.", "It comes in three colours.",
                "The box was bigger than I expected.", "I have had it for about a month now."),
}
_NAMES = {"film": _FILMS, "restaurant": _RESTAURANTS, "product": _PRODUCTS}
_THING = {"film": "the film", "restaurant": "the meal", "product": "it"}
_POS = ("delightful", "terrific", "outstanding", "charming", "marvellous", "enjoyable", "impressive", "pleasant")
_NEG = ("mediocre", "bland", "clumsy", "tedious", "flimsy", "miserable", "unpleasant", "frustrating")
_REFERENCE = {1: ("Honestly, {thing} was {adj} and I would gladly repeat the experience.",
                  "All in all, {thing} was {adj}, and {companion} agreed."),
              0: ("Honestly, {thing} was {adj} and I would not repeat the experience.",
                  "All in all, {thing} was {adj}, and {companion} agreed.")}


def _check_index(index: int, difficulty: int) -> int:
    try:
        index = operator.index(index)
    except TypeError:
        raise TypeError(f"expected an integer row index, got {type(index).__name__} {index!r}") from None
    if not 0 <= index < OOD_SIZE:
        raise GeneratorIndexError(f"row index {index} is out of range for split {OOD_SPLIT!r}: expected "
                                  f"0 <= index < {OOD_SIZE}.")
    if difficulty not in DIFFICULTIES:
        raise TextEnvsError(f"expected difficulty 1, 2 or 3, got {difficulty!r}.")
    return index


def ood_review_row(index: int, difficulty: int = 1) -> dict:
    """Row ``index`` of the ``ood`` split: a review opening worded unlike the training generator's.

    :param index: the row, ``0 <= index < OOD_SIZE``.
    :param difficulty: 1 (a one-sentence opening) or 2-3 (a neutral second sentence added); the continuation is
        one or two sentences at every difficulty.
    :return: ``{"text", "prompt", "continuation", "label", "domain"}`` as :func:`text_envs.data.reviews.review_row`.
    """
    index = _check_index(index, difficulty)
    rnd = random.Random(f"review-ood/{difficulty}/{index}")

    def pick(pool):
        return pool[int(rnd.random() * len(pool))]

    domain = REVIEW_DOMAINS[index % len(REVIEW_DOMAINS)]  # a third of each domain
    name, companion, town, time = pick(_NAMES[domain]), pick(_COMPANIONS), pick(_TOWNS), pick(_TIMES)
    template = pick(_OPENINGS[domain])
    sentences = [upper_first(template.format(name=name, Name=upper_first(name), companion=companion,
                                             Companion=upper_first(companion), town=town, time=time,
                                             Time=upper_first(time), venue=pick(_VENUES)))]
    if difficulty >= 2:
        sentences.append(pick(_DETAILS[domain]))
    label = int(rnd.random() * 2)
    adjectives = _POS if label == 1 else _NEG
    continuation = upper_first(pick(_REFERENCE[label]).format(thing=_THING[domain], adj=pick(adjectives),
                                                              companion=companion))
    prompt = " ".join(sentences)
    return {"text": f"{prompt} {continuation}", "prompt": prompt, "continuation": continuation, "label": label,
            "domain": domain}


def review_row_with_ood(split: str, index: int, difficulty: int = 1) -> dict:
    """Row ``index`` of any split of ``TextContinuation-v0``'s embedded data: ``"ood"`` from
    :func:`ood_review_row`, ``"train"``/``"validation"``/``"test"`` from :func:`text_envs.data.reviews.review_row`."""
    if split == OOD_SPLIT:
        return ood_review_row(index, difficulty)
    if split not in SPLIT_SIZES:
        raise unknown_name("split", split, REVIEW_SPLIT_SIZES)
    return review_row(split, index, difficulty)


def ood_review_grammar() -> dict:
    """The ``ood`` split's pools and templates (for tests and checks that they share nothing with
    :func:`text_envs.data.reviews.review_grammar`): ``names`` by domain, ``companions``, ``towns``, ``times``,
    ``openings`` by domain, ``details`` by domain, ``adjectives`` ({1: positive, 0: negative})."""
    return {"names": _NAMES, "companions": _COMPANIONS, "towns": _TOWNS, "times": _TIMES, "openings": _OPENINGS,
            "details": _DETAILS, "adjectives": {1: _POS, 0: _NEG}}
