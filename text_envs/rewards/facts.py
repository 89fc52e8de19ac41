"""Fact precision: the share of the facts (numbers, names, places) in a generated text that the prompt supports.

``make_reward("fact-precision")`` needs no model and no reference: it compares the prediction with its
prompt (the document being summarized), so it works on any data set, XSum included. It measures the
faithfulness that ROUGE against a reference cannot: a reference that adds a detail the document lacks
(as many XSum references do; Maynez et al. 2020) teaches a model trained to copy it to do the same.

How facts are found (:func:`extract_facts`), exactly:

* **Tokens.** A number token is a digit run with ``,`` thousands groups or ``.``/``:`` parts
  (``1,200``, ``3.5``, ``22:00``), optionally followed by letters (``14th``, ``1990s``, ``5m``: the letters
  are dropped). A word token is a letter followed by letters, digits, and ``'``/``’`` parts
  (``A40``, ``O'Neill``); a trailing possessive ``'s`` or ``'`` is dropped. Anything else separates tokens.
* **Numbers.** Every number token, normalised: thousands commas removed, trailing zeros of a decimal
  removed (``3.50`` -> ``3.5``). Also every run of English number words joined by spaces or hyphens
  (``two``, ``twenty-five``, ``two hundred and fifty``: ``and`` only after a multiplier, so ``two and
  three`` are two numbers, as are ``five six``), converted to its value (``250``); a lone
  ``one`` is not a number (too often a pronoun: "one of them"). ``million``/``billion``/``trillion`` after a
  number are read as a unit and do not multiply it, in digits or words (``5m`` = ``5 million`` =
  ``five million`` -> ``5``); ``hundred`` and ``thousand`` do multiply (``two thousand`` -> ``2000``).
* **Names and places.** A maximal run of capitalised word tokens (first character an upper-case letter)
  separated only by spaces or hyphens, with leading function words removed (``The``, ``A``, ``In``,
  ``On``...; see ``_FUNCTION_WORDS``) and titles (``Mr``, ``Mrs``, ``Dr``...). A sentence-initial word
  (the text's first word or one after ``.``, ``!``, ``?``, ``:`` or a line break; not after ``Mr.``-style
  abbreviations) is capitalised by grammar, not because it is a name, so a run counts only when at least
  one of its words is not sentence-initial, or is in the gazetteer: the capitalised words of the
  embedded data's name, place, day and month pools (``text_envs.data.generators``, ``...reviews``) plus
  the words passed as ``names=``. The pronoun ``I`` (and ``I'm``, ``I've``...) is never a name.

A number is **supported** when its normalised value is among the document's numbers; a name when each of
its words occurs in the document (case-insensitive, as a word token). The reward is
``supported / facts`` of the prediction; a prediction with **no facts** (an empty text included) scores
``no_facts`` (default 1.0: nothing it says is unsupported; combine with ROUGE, which pays for content,
so that saying nothing does not win).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from text_envs.rewards.base import Reward, RewardError

__all__ = ["Fact", "extract_facts", "unsupported_facts", "fact_precision", "FactPrecisionReward"]

_TOKEN_RE = re.compile(
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.:]\d+)*)(?P<suffix>[^\W\d_]*)"
    r"|(?P<word>[^\W\d_][^\W_]*(?:['’][^\W_]+)*(?:['’](?![^\W_]))?)"
)
_SENTENCE_END = re.compile(r"[.!?:\n]")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "prof", "sir", "rev", "gen", "capt", "lt", "sgt", "no",
                            "vs", "v", "jr", "sr", "inc", "ltd", "co"})
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "dame", "lord", "lady", "rev"})
_FUNCTION_WORDS = frozenset("""the a an this that these those in on at but and or after before when while as for from
by with of to it its he she they we you his her their our your my yesterday today tonight tomorrow last next
meanwhile however also some all many most every each there here then so if""".split())
_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
          "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
          "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_MULTIPLIERS = {"hundred": 100, "thousand": 1000}
_BIG = frozenset({"million", "billion", "trillion"})


@dataclass(frozen=True)
class Fact:
    """One fact found in a text: ``kind`` is ``"number"`` or ``"name"``; ``text`` as written; ``key`` the
    normalised form compared with the document (a number's value, or a name's lower-cased words)."""

    kind: str
    text: str
    key: tuple[str, ...]


@dataclass(frozen=True)
class _Token:
    text: str
    kind: str  # "num" or "word"
    value: str  # normalised number, or the word without its possessive
    start: int
    end: int
    initial: bool  # first token of a sentence
    joined: bool  # separated from the previous token by spaces/hyphens only


def _norm_number(digits: str) -> str:
    digits = digits.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", digits) else digits
    if ":" in digits or digits.count(".") > 1:
        return digits
    try:
        value = Decimal(digits)
    except InvalidOperation:  # pragma: no cover - the regex only matches digits
        return digits
    text = format(value.normalize(), "f")
    return text if text else "0"


def _strip_possessive(word: str) -> str:
    for suffix in ("'s", "’s"):
        if word.lower().endswith(suffix):
            return word[: -len(suffix)]
    return word.rstrip("'’")


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    prev_end, prev_word = 0, ""
    for m in _TOKEN_RE.finditer(text):
        gap = text[prev_end : m.start()]
        if not out:
            initial = True
        else:
            ends = _SENTENCE_END.search(gap)
            abbreviation = gap.startswith(".") and prev_word.lower() in _ABBREVIATIONS and "\n" not in gap
            initial = bool(ends) and not abbreviation
        joined = bool(out) and gap.strip(" -‐–") == "" and "\n" not in gap
        if m.group("num") is not None:
            out.append(_Token(m.group(0), "num", _norm_number(m.group("num")), m.start(), m.end(), initial, joined))
            prev_word = ""
        else:
            word = m.group("word")
            out.append(_Token(word, "word", _strip_possessive(word), m.start(), m.end(), initial, joined))
            prev_word = word
        prev_end = m.end()
    return out


def _number_word_runs(tokens: list[_Token]) -> Iterable[tuple[int, int, str]]:
    """(first index, last index, value) of each maximal run of number words."""
    i, n = 0, len(tokens)
    while i < n:
        w = tokens[i].value.lower()
        if tokens[i].kind != "word" or (w not in _UNITS and w not in _MULTIPLIERS):
            i += 1
            continue
        j, words, prev = i, [], None  # prev: the value of the previous word when it was below 100
        while j < n and tokens[j].kind == "word" and (j == i or tokens[j].joined):
            wj = tokens[j].value.lower()
            if wj in _UNITS:
                v = _UNITS[wj]
                if prev is not None and not (prev >= 20 and prev % 10 == 0 and 0 < v < 10):  # only "twenty five"
                    break
                words.append(wj)
                prev = v
            elif wj in _MULTIPLIERS or wj in _BIG:
                words.append(wj)
                prev = None
            elif (wj == "and" and words and (words[-1] in _MULTIPLIERS or words[-1] in _BIG) and j + 1 < n
                  and tokens[j + 1].joined and tokens[j + 1].value.lower() in _UNITS):
                pass  # "two hundred and fifty"
            else:
                break
            j += 1
        while words and words[-1] in _BIG:  # "five million" -> 5: a unit, as in "5m"
            words.pop()
        if words and not (words == ["one"]) and words[0] not in _MULTIPLIERS:
            total, group = 0, 0
            for wd in words:
                if wd in _UNITS:
                    group += _UNITS[wd]
                elif wd == "hundred":
                    group = max(group, 1) * 100
                elif wd in _MULTIPLIERS or wd in _BIG:
                    total += max(group, 1) * ({"thousand": 1000, "million": 10**6, "billion": 10**9,
                                               "trillion": 10**12}[wd])
                    group = 0
            yield i, j - 1, str(total + group)
        i = max(j, i + 1)


_GAZETTEER: frozenset[str] | None = None


def gazetteer() -> frozenset[str]:
    """Lower-cased capitalised words of the embedded data's names, places, days and months."""
    global _GAZETTEER
    if _GAZETTEER is None:
        from text_envs.data.generators import NAME_POOLS
        from text_envs.data.reviews import review_grammar

        review_names = review_grammar()["names"]
        pools = [*NAME_POOLS.values(), review_names["film"], review_names["restaurant"]]
        words = set()
        for pool in pools:
            for item in pool:
                for tok in _tokens(str(item)):
                    if tok.kind == "word" and tok.value[:1].isupper() and tok.value.lower() not in _FUNCTION_WORDS:
                        words.add(tok.value.lower())
        _GAZETTEER = frozenset(words)
    return _GAZETTEER


def _is_capitalised(tok: _Token) -> bool:
    if tok.kind != "word" or not tok.value[:1].isupper():
        return False
    base = re.split(r"['’]", tok.value)[0]
    return base != "I"


def extract_facts(text: str, names: Iterable[str] = ()) -> list[Fact]:
    """The facts of ``text`` in order of appearance (see the module docstring for the exact rules).

    :param text: the text to read.
    :param names: extra words (any case) that count as names even at the start of a sentence.
    """
    if not isinstance(text, str):
        raise RewardError(f"Expected a str, got {type(text).__name__} {text!r}.")
    tokens = _tokens(text)
    known = gazetteer() | {n.lower() for n in names}
    facts: list[tuple[int, Fact]] = []
    in_number_words: set[int] = set()
    in_names: set[int] = set()
    for first, last, value in _number_word_runs(tokens):
        in_number_words.update(range(first, last + 1))
        facts.append((first, Fact("number", text[tokens[first].start : tokens[last].end], (value,))))
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "num":
            facts.append((i, Fact("number", tok.text, (tok.value,))))
            i += 1
            continue
        if not _is_capitalised(tok) or i in in_number_words:
            i += 1
            continue
        j = i + 1
        while j < len(tokens) and tokens[j].joined and not tokens[j].initial and _is_capitalised(tokens[j]):
            j += 1
        run = tokens[i:j]
        while run and (run[0].value.lower() in _FUNCTION_WORDS or run[0].value.lower().rstrip(".") in _TITLES):
            run = run[1:]
        if run and any(not t.initial or t.value.lower() in known for t in run):
            facts.append((i, Fact("name", text[run[0].start : run[-1].end], tuple(t.value.lower() for t in run))))
            in_names.update(range(j - len(run), j))
        i = j
    # a number word inside a name ("World War Two", "BBC One") is part of the name, not a number of its own
    facts = [(k, f) for k, f in facts if not (f.kind == "number" and k in in_number_words and k in in_names)]
    facts.sort(key=lambda f: f[0])
    return [f for _, f in facts]


class _Support:
    """The document's number values and lower-cased words."""

    def __init__(self, document: str) -> None:
        tokens = _tokens(document)
        self.numbers = {t.value for t in tokens if t.kind == "num"} | {v for _, _, v in _number_word_runs(tokens)}
        self.words = {t.value.lower() for t in tokens if t.kind == "word"}

    def supports(self, fact: Fact) -> bool:
        if fact.kind == "number":
            return fact.key[0] in self.numbers
        return all(w in self.words for w in fact.key)


def unsupported_facts(text: str, document: str, names: Iterable[str] = ()) -> list[Fact]:
    """The facts of ``text`` that ``document`` does not support (for inspecting a reward)."""
    support = _Support(document)
    return [f for f in extract_facts(text, names) if not support.supports(f)]


def fact_precision(text: str, document: str, names: Iterable[str] = (), no_facts: float = 1.0) -> float:
    """Share of the facts of ``text`` supported by ``document``; ``no_facts`` when ``text`` has none.

    :raises RewardError: if either argument is not a string.
    """
    if not isinstance(document, str):
        raise RewardError(f"Expected the document as a str, got {type(document).__name__} {document!r}.")
    facts = extract_facts(text, names)
    if not facts:
        return float(no_facts)
    support = _Support(document)
    return sum(support.supports(f) for f in facts) / len(facts)


class FactPrecisionReward(Reward):
    """Fact precision of each prediction against its prompt (the document); references are ignored.

    :param no_facts: the value of a prediction with no facts, empty ones included (default 1.0).
    :param names: extra words that count as names at the start of a sentence (e.g. your data's place names).
    :param name: the reward's name (``"fact-precision"``).
    """

    needs_prompts = True

    def __init__(self, no_facts: float = 1.0, names: Iterable[str] = (), name: str = "fact-precision") -> None:
        if isinstance(no_facts, bool) or not isinstance(no_facts, (int, float)) or not 0.0 <= no_facts <= 1.0:
            raise RewardError(f"Expected no_facts to be a number in [0, 1], got {no_facts!r}.")
        if isinstance(names, str):
            raise RewardError(f"Expected names to be a list of words, got the single str {names!r}.")
        self.no_facts, self.names, self.name = float(no_facts), tuple(names), name

    def _compute(self, predictions: list[str], references: list[list[str]], prompts: list[str] | None) -> list[float]:
        if prompts is None:
            raise RewardError(
                f"Reward {self.name!r} compares each prediction with its prompt (the document): pass "
                "prompts=[...], one per prediction (envs pass them)."
            )
        return [fact_precision(p, d, self.names, self.no_facts) for p, d in zip(predictions, prompts)]
