"""Exact validity of generated texts for the embedded tasks: is the text one the data generator could have
written for this prompt?

A reward can be gamed by text that is no longer the task's (a review that never names its restaurant, a
film review praising "the pasta", a loop of "great"). These checks parse a generated text with the embedded
generator's own grammar and compare its names with the prompt's:

* ``TextContinuation-v0`` (:func:`review_validity`, the grammar of :mod:`text_envs.data.reviews`): the prompt's
  opening gives the domain (film, restaurant, product), the name, companion and town; the text must be the
  generator's sentence sequence for that difficulty (an aspect sentence of the domain, then at difficulties 2-3
  a domain sentence, at difficulty 3 a contrasting aspect sentence on another aspect, then a verdict), every
  sentence from the domain's forms with the prompt's names, one polarity throughout (the contrast sentence the
  opposite one), the difficulty read from the prompt (a neutral second sentence: 2 or 3).
* ``DialogueGeneration-v0`` (:func:`dialogue_validity`, :func:`text_envs.data.generators.dialogue_row`): the
  reply must be one of the 14 reply forms of the 13 scenarios, and every name, number, time and place it fills
  in must occur in the conversation (a reply about another restaurant, day or price is invalid). Whether
  "take an umbrella" suits the forecast is not checked.

Each check returns ``None`` for a prompt that is not the generator's (a user's own data): validity is then
undefined, and :func:`validity_share` leaves such texts out. No model, no torch.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Sequence

from text_envs.data.drawing import upper_first  # the generators' own capitalisation
from text_envs.errors import TextEnvsError

__all__ = ["VALIDITY_CHECKS", "review_validity", "dialogue_validity", "validity_share", "has_validity_check"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _alternation(values: Sequence[str]) -> str:
    return "(?:" + "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)) + ")"


# ------------------------------------------------------------------------------------------------- reviews
@functools.lru_cache(maxsize=1)
def _review_prompt_patterns() -> list[tuple[str, re.Pattern]]:
    """(domain, opening regex with named groups) for every opening form of the generator."""
    from text_envs.data.reviews import review_grammar

    g = review_grammar()
    patterns = []
    for domain in g["domains"]:
        slots = {"name": g["names"][domain], "companion": g["companions"], "day": g["days"], "town": g["towns"]}
        for form in g["openings"][domain]:
            regex, seen = "", set()
            for literal, field, _, _ in string.Formatter().parse(upper_first(form)):
                regex += re.escape(literal)
                if field:
                    # a field used twice must repeat the same value
                    regex += f"(?P={field})" if field in seen else f"(?P<{field}>{_alternation(slots[field])})"
                    seen.add(field)
            patterns.append((domain, re.compile(regex)))
    return patterns


@functools.lru_cache(maxsize=8)
def _review_aspect_sentences(domain: str) -> dict[str, dict]:
    """The aspect and contrast sentences of a domain: ``{kind: {sentence: (polarity, aspect)}}``."""
    from text_envs.data.reviews import review_grammar

    g = review_grammar()
    aspect, contrast = {}, {}
    for label in (0, 1):
        for subject, be in g["aspects"][domain]:
            for form in g["aspect_forms"]:
                for adv in set(g["adverbs"]):
                    for adj in g["adjectives"][label]:
                        text = upper_first(form.format(Aspect=upper_first(subject), aspect=subject, be=be,
                                                       adv=adv, adj=adj))
                        aspect[text] = (label, subject)
            for adj in g["adjectives"][1 - label]:
                contrast[g["contrast"][label].format(Aspect=upper_first(subject), be=be, adj=adj)] = (label, subject)
    return {"aspect": aspect, "contrast": contrast}


def _review_sentences(domain: str, name: str, companion: str, town: str) -> dict[str, dict]:
    """The sentences the generator can write for one opening: ``{kind: {sentence: (polarity, aspect)}}``."""
    from text_envs.data.reviews import review_grammar

    g = review_grammar()
    fields = dict(name=name, companion=companion, town=town, product=name)
    extra, verdict = {}, {}
    for label in (0, 1):
        extra.update({upper_first(s.format(**fields)): (label, None) for s in g["extra"][(domain, label)]})
        verdict.update({upper_first(s.format(**fields)): (label, None) for s in g["verdict"][(domain, label)]})
    return {**_review_aspect_sentences(domain), "extra": extra, "verdict": verdict}


def review_validity(prompt: str, text: str) -> bool | None:
    """Whether ``text`` is a continuation the review generator could write for ``prompt`` (see the module
    docstring); ``None`` when ``prompt`` holds no opening of the generator."""
    from text_envs.data.reviews import review_grammar

    for domain, pattern in _review_prompt_patterns():
        found = pattern.search(prompt)
        if found is not None:
            break
    else:
        return None
    rest = prompt[found.end():].strip()
    if rest and rest not in review_grammar()["details"][domain]:
        return None  # something after the opening that the generator never writes
    kinds = (("aspect", "verdict"),) if not rest else (("aspect", "extra", "verdict"),
                                                       ("aspect", "extra", "contrast", "verdict"))
    sentences = _review_sentences(domain, found["name"], found["companion"], found["town"])
    parts = _SENTENCE_END.split(text.strip())
    for structure in kinds:
        if len(parts) != len(structure):
            continue
        parsed = [sentences[kind].get(part) for kind, part in zip(structure, parts)]
        if any(p is None for p in parsed) or len({label for label, _ in parsed}) != 1:
            continue  # a sentence of another form, domain or name; or polarities that disagree
        if "contrast" in structure and parsed[2][1] == parsed[0][1]:
            continue  # the contrast is about another aspect than the first sentence's
        return True
    return False


# ------------------------------------------------------------------------------------------------- dialogue
# the reply forms of text_envs.data.generators' 13 scenarios; {slot}s are filled from the conversation
_REPLY_FORMS = (
    "No problem, {name}. Your table for {party} at {rest} is booked for {time} on {day}.",
    "Done. Your {room} room at the {hotel} is booked for {nights} nights from {date} {month}.",
    "Here is your {kind} ticket to {dest}. That's {price} pounds, and the train leaves at {time} from platform "
    "{platform}.",
    "Great, you're booked in with {title} {doc} on {day} at {time}.",
    "Here you go, one {colour} {item}. That's {price} pounds, please.",
    "Yes, take an umbrella. It will be {cond} in {town} on {day}, with highs of {temp} degrees.",
    "No, you won't need one. It will be {cond} in {town} on {day}, with highs of {temp} degrees.",
    "Sure. Walk straight on for {minutes} minutes, then turn {side} at the {marker} and you'll see the {place}.",
    "That's {seats} ticket{s} for {film} at {time}. Enjoy the film!",
    "Good news, {owner}. A {colour} {item} found {where} was handed in, so you can collect it today.",
    "Perfect. Your {car} is reserved for {days} days from {date} {month}.",
    "All done. You're booked with {stylist} on {day} at {time}.",
    "Thanks. Order {order} for the {item} you ordered on {day} is on its way and will arrive tomorrow.",
    "You're signed up for {cls} at {time} on {day}.",
)
_FREE_SLOTS = {"s": "s?"}  # the plural of "ticket", not a fact


@functools.lru_cache(maxsize=1)
def _reply_patterns() -> list[re.Pattern]:
    patterns = []
    for form in _REPLY_FORMS:
        regex = ""
        for literal, field, _, _ in string.Formatter().parse(form):
            regex += re.escape(literal)
            if field:
                regex += f"(?P<{field}>{_FREE_SLOTS.get(field, '[^.,!?]+?')})"
        patterns.append(re.compile(regex))
    return patterns


def dialogue_validity(prompt: str, text: str) -> bool | None:
    """Whether ``text`` is a reply form of the dialogue generator whose facts all occur in the conversation
    ``prompt``; ``None`` when ``prompt`` is not a conversation tagged ``A:``/``B:`` as the task writes it."""
    if not re.search(r"\bA: .*\bB: ", prompt):
        return None
    for pattern in _reply_patterns():
        found = pattern.fullmatch(text.strip())
        if found is None:
            continue
        slots = {k: v for k, v in found.groupdict().items() if k not in _FREE_SLOTS}
        if all(re.search(r"(?<!\w)" + re.escape(v) + r"(?!\w)", prompt, flags=re.IGNORECASE) for v in slots.values()):
            return True
    return False


# ------------------------------------------------------------------------------------------------- corpus
VALIDITY_CHECKS: dict[str, Callable[[str, str], bool | None]] = {
    "TextContinuation-v0": review_validity,
    "DialogueGeneration-v0": dialogue_validity,
}
"""The env ids with an exact validity check: ``check(prompt, text) -> True | False | None``."""


def has_validity_check(env_id: str) -> bool:
    """Whether ``env_id``'s embedded data has a validity check (:data:`VALIDITY_CHECKS`)."""
    return env_id in VALIDITY_CHECKS


def validity_share(env_id: str, prompts: Sequence[str], texts: Sequence[str]) -> float | None:
    """The share of ``texts`` that are valid for their prompts, over the prompts the check can parse; ``None``
    when it parses none of them (a user's own data).

    :raises TextEnvsError: for an env without a check, or prompts and texts of different lengths.
    """
    if env_id not in VALIDITY_CHECKS:
        raise TextEnvsError(f"No validity check for {env_id}: the envs with one are {', '.join(VALIDITY_CHECKS)}.")
    if len(prompts) != len(texts):
        raise TextEnvsError(f"Expected one prompt per text, got {len(prompts)} prompts and {len(texts)} texts.")
    check = VALIDITY_CHECKS[env_id]
    verdicts = [v for v in (check(p, t) for p, t in zip(prompts, texts)) if v is not None]
    return sum(verdicts) / len(verdicts) if verdicts else None
