"""A second family of training openings for ``TextContinuation-v0``: its ``varied_openings`` option.

:mod:`text_envs.data.reviews` writes every opening from three templates per domain and fixed pools, so a model
trained on them is held by the KL penalty only on openings worded that way; on other wording its KL to the start
model grows several times (benchmarks/RESULTS.md, the main job's generalisation table). This module writes openings
of the same three domains from **another family**: eight templates per domain (renting at home, a market stall, a
wish list...), its own films, restaurants, products, companions, towns and time expressions, and its own neutral
details at difficulty 2-3. Mixed into the train split (``gym.make("TextContinuation-v0", varied_openings=0.5)``),
the KL penalty is paid on more than one way of writing an opening.

The family shares **nothing** with the evaluation set of other wording, :mod:`text_envs.data.reviews_ood` (no
template, no three-word run of words, no pool entry; ``tests/test_ood_split.py`` checks it), so that set stays
unseen. Its reference continuations use the training generator's opinion words.

Rows are seeded per index (``"review-varied/<difficulty>/<i>"``); which train rows are replaced is seeded per index
too (:func:`is_varied_row`), so a share of 0.5 replaces about half the rows, the same ones on every machine.
"""

from __future__ import annotations

import random

from text_envs.data.drawing import DIFFICULTIES, upper_first
from text_envs.data.reviews import REVIEW_DOMAINS, review_grammar
from text_envs.errors import TextEnvsError

__all__ = ["varied_review_row", "varied_review_grammar", "is_varied_row", "review_row_with_varied_train",
           "check_varied_share"]

_FILMS = ("Distant Thunder", "The Amber Coast", "Shadow Play", "The Seventh Wave", "Crimson Meadow", "Paper Kites",
          "The Iron Gate", "Summer of Ashes", "The Long Winter", "Broken Compass", "The Marble Hall",
          "Wandering Souls")
_RESTAURANTS = ("The Hungry Heron", "Osteria Rosa", "The Spice Route", "Pho Saigon", "The Granary", "Casa Lola",
                "The Blue Door", "Ristorante Vito", "The Plough", "Tandoori Nights", "The Corner Deli", "Sushi Zen")
_PRODUCTS = ("slow cooker", "steam iron", "fitness tracker", "robot vacuum", "tablet", "dehumidifier",
             "pressure cooker", "bluetooth keyboard", "dash cam", "hiking rucksack", "sandwich press",
             "heated blanket")
_COMPANIONS = ("my uncle", "my aunt", "my nephew", "my niece", "my best mate", "my housemate", "my twin",
               "my godmother", "my stepdad", "my team", "my landlady", "my workmates")
_TOWNS = ("Ipswich", "Swansea", "Perth", "Inverness", "Carlisle", "Hull", "Derby", "Salisbury", "Stirling",
          "Lancaster", "Worcester", "Aberdeen")
_TIMES = ("at the start of the summer", "one evening in March", "just before Christmas", "over the bank holiday",
          "the other day", "after work one day", "in the middle of winter", "in the spring",
          "at the end of term", "one cold morning in January", "before the school run")

# placeholders: {name} {Name} {companion} {Companion} {town} {time} {Time}
_OPENINGS = {
    "film": ("{Time} I rented {name} to view on the sofa with {companion}.",
             "{Companion} and I queued for {name} at a cinema in {town} {time}.",
             "{Name} was what {companion} picked for a night out in {town} {time}.",
             "I caught {name} {time} on a big screen in {town}, sitting next to {companion}.",
             "{Time}, {companion} bought two seats for {name} at a cinema in {town}.",
             "Everyone was talking about {name}, so {companion} and I viewed it in {town} {time}.",
             "{Name} came out {time}, and I went off to watch it in {town} with {companion}.",
             "Together with {companion}, I spent an evening {time} on {name} in {town}."),
    "restaurant": ("{Time} {companion} and I had a meal at {name} in {town}.",
                   "For a change, we tried {name} in {town} {time} with {companion}.",
                   "{Companion} reserved us a spot at {name}, just off the main square in {town}, {time}.",
                   "I invited {companion} out to {name} in {town} {time} as a treat.",
                   "{Name} in {town} was busy when {companion} and I arrived for dinner {time}.",
                   "We met up with {companion} at {name} in {town} {time}.",
                   "{Time}, {companion} and I grabbed lunch at {name} near the river in {town}.",
                   "Our dinner at {name} in {town} was planned for {time}, and {companion} came too."),
    "product": ("{Time} I bought a {name} for {companion} from a website.",
                "{Companion} gave me a {name} {time}, so this is how it went.",
                "We needed a {name}, and {companion} chose a model from a catalogue {time}.",
                "The {name} we paid for {time} was delivered to our flat in {town}.",
                "{Time}, I treated myself to a {name} from a market stall in {town}.",
                "{Companion} and I shared the cost of a {name} {time}.",
                "I swapped my previous {name} for this model {time} on the advice of {companion}.",
                "A {name} was on my wish list, and {companion} found me one in {town} {time}."),
}
_DETAILS = {  # a neutral second sentence (difficulty >= 2)
    "film": ("It had been out for a month already.", "We sat in the back row.",
             "The screen was one of the smaller ones.", "Neither of us knew the director."),
    "restaurant": ("They only take cash.", "The kitchen is open until ten.", "It sits above a bakery.",
                   "We shared a jug of water."),
    "product": ("It came with a spare battery.", "Delivery took four days.", "It weighs about two kilos.",
                "The manual is in six languages."),
}
_NAMES = {"film": _FILMS, "restaurant": _RESTAURANTS, "product": _PRODUCTS}
_THING = {"film": "the film", "restaurant": "the food", "product": "the {name}"}
_REFERENCE = ("In short, {thing} was {adj}.", "To sum up, {thing} was {adj} and {companion} said so too.")


def check_varied_share(share: float) -> float:
    """``share`` as a float in [0, 1], or a :class:`TextEnvsError` saying what is expected."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
        raise TextEnvsError(f"varied_openings must be a share of the train openings between 0 and 1 (e.g. 0.5), "
                            f"got {share!r}.")
    return float(share)


def is_varied_row(index: int, share: float) -> bool:
    """Whether train row ``index`` is replaced by :func:`varied_review_row` at ``share`` (a seeded draw per index:
    the rows replaced at a share are among those replaced at any larger share)."""
    return random.Random(f"review-varied-pick/{index}").random() < share


def varied_review_row(index: int, difficulty: int = 1) -> dict:
    """Row ``index`` of the second family of training openings (any ``index >= 0``).

    :param index: the row.
    :param difficulty: 1 (one sentence) or 2-3 (a neutral detail added).
    :return: ``{"text", "prompt", "continuation", "label", "domain"}`` as :func:`text_envs.data.reviews.review_row`.
    """
    if difficulty not in DIFFICULTIES:
        raise TextEnvsError(f"expected difficulty 1, 2 or 3, got {difficulty!r}.")
    rnd = random.Random(f"review-varied/{difficulty}/{index}")

    def pick(pool):
        return pool[int(rnd.random() * len(pool))]

    domain = REVIEW_DOMAINS[int(rnd.random() * len(REVIEW_DOMAINS))]
    name, companion, town, time = pick(_NAMES[domain]), pick(_COMPANIONS), pick(_TOWNS), pick(_TIMES)
    opening = pick(_OPENINGS[domain]).format(name=name, Name=upper_first(name), companion=companion,
                                             Companion=upper_first(companion), town=town, time=time,
                                             Time=upper_first(time))
    sentences = [upper_first(opening)]
    if difficulty >= 2:
        sentences.append(pick(_DETAILS[domain]))
    label = int(rnd.random() * 2)
    adjectives = review_grammar()["adjectives"][label]  # the training generator's opinion words
    thing = _THING[domain].format(name=name)
    continuation = upper_first(pick(_REFERENCE).format(thing=thing, adj=pick(adjectives), companion=companion))
    prompt = " ".join(sentences)
    return {"text": f"{prompt} {continuation}", "prompt": prompt, "continuation": continuation, "label": label,
            "domain": domain}


def review_row_with_varied_train(share: float, split: str, index: int, difficulty: int = 1) -> dict:
    """Row ``index`` of ``split`` with a ``share`` of the **train** rows from :func:`varied_review_row` (the
    others, and every row of the other splits, as
    :func:`text_envs.data.reviews_ood.review_row_with_ood` serves them). Picklable through ``functools.partial``."""
    from text_envs.data.reviews_ood import review_row_with_ood

    if split == "train" and share > 0 and is_varied_row(index, share):
        return varied_review_row(index, difficulty)
    return review_row_with_ood(split, index, difficulty)


def varied_review_grammar() -> dict:
    """The family's pools and templates (for checks that they share nothing with the ``ood`` split): ``names`` by
    domain, ``companions``, ``towns``, ``times``, ``openings`` by domain, ``details`` by domain."""
    return {"names": _NAMES, "companions": _COMPANIONS, "towns": _TOWNS, "times": _TIMES, "openings": _OPENINGS,
            "details": _DETAILS}
