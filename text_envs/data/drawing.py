"""Seeded row drawing shared by the procedural data generators (:mod:`text_envs.data.generators`,
:mod:`text_envs.data.reviews`, :mod:`text_envs.data.translation_pairs`).

Each row has its own :class:`Draw`: a :class:`random.Random` seeded from ``"<task>/<split>/<difficulty>/<index>"``
whose *key* choices fold into an integer, closed by a *pivot* choice so that ``key % NUM_BUCKETS`` falls in the
split's buckets (train 0..17, validation 18, test 19). Identical key facts therefore always land in one split.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Sequence

from text_envs.errors import TextEnvsError, unknown_name

__all__ = [
    "SPLIT_SIZES",
    "DIFFICULTIES",
    "NUM_BUCKETS",
    "GeneratorIndexError",
    "check_row",
    "Draw",
    "upper_first",
]

SPLIT_SIZES: dict[str, int] = {"train": 50_000, "validation": 1_000, "test": 1_000}
"""Number of rows of each split (every split is indexable by ``range(SPLIT_SIZES[split])``)."""
DIFFICULTIES = (1, 2, 3)

#: The buckets a row's folded key falls in; each split owns some of them (see the module docstring).
NUM_BUCKETS = 20
_SPLIT_BUCKETS: dict[str, tuple[int, ...]] = {
    "train": tuple(range(18)),
    "validation": (18,),
    "test": (19,),
}
_KEY_MOD = (1 << 61) - 1  # a Mersenne prime: the rolling key of the facts stays a small int


class GeneratorIndexError(TextEnvsError, IndexError):
    """A row index outside ``range(SPLIT_SIZES[split])``."""


def check_row(split: str, index: int, difficulty: int) -> int:
    """Validate the arguments every row function takes; return ``index`` as an ``int``."""
    if split not in SPLIT_SIZES:
        raise unknown_name("split", split, SPLIT_SIZES)
    try:
        index = operator.index(index)
    except TypeError:
        raise TypeError(f"expected an integer row index, got {type(index).__name__} {index!r}") from None
    size = SPLIT_SIZES[split]
    if not 0 <= index < size:
        raise GeneratorIndexError(
            f"row index {index} is out of range for split {split!r}: expected 0 <= index < {size}."
        )
    if difficulty not in DIFFICULTIES:
        raise TextEnvsError(f"expected difficulty 1, 2 or 3, got {difficulty!r}.")
    return index


class Draw:
    """Random choices for one row; ``fact`` choices fold into the split key, ``pivot`` closes it."""

    __slots__ = ("rnd", "key", "buckets")

    def __init__(self, task: str, split: str, index: int, difficulty: int) -> None:
        self.rnd = random.Random(f"{task}/{split}/{difficulty}/{index}").random
        self.key = 0
        self.buckets = _SPLIT_BUCKETS[split]

    def free(self, pool: Sequence):
        """A choice that does not identify the row (it is not in the split key)."""
        return pool[int(self.rnd() * len(pool))]

    def int(self, n: int) -> int:
        """A free integer in ``range(n)``."""
        return int(self.rnd() * n)

    def fact_i(self, n: int) -> int:
        """A key choice in ``range(n)``: the row's text must spell it out."""
        i = int(self.rnd() * n)
        self.key = (self.key * 1_000_003 + i + 1) % _KEY_MOD
        return i

    def flag(self, p: float) -> bool:
        """A key yes/no choice, true with probability ``p`` (only the outcome enters the key)."""
        b = self.rnd() < p
        self.key = (self.key * 1_000_003 + 1 + b) % _KEY_MOD
        return b

    def fact(self, pool: Sequence):
        """A key choice from ``pool``."""
        return pool[self.fact_i(len(pool))]

    def pivot_i(self, n: int) -> int:
        """The last key choice, in ``range(n)`` (``n >= 20``): puts the row's key facts in the split's bucket."""
        assert n >= NUM_BUCKETS, f"a pivot pool needs >= {NUM_BUCKETS} values, got {n}"
        bucket = self.buckets[int(self.rnd() * len(self.buckets))]
        r = (bucket - self.key) % NUM_BUCKETS
        return r + NUM_BUCKETS * int(self.rnd() * ((n - 1 - r) // NUM_BUCKETS + 1))

    def pivot(self, pool: Sequence):
        """The last key choice, from ``pool`` (see :meth:`pivot_i`)."""
        return pool[self.pivot_i(len(pool))]

    def shuffle(self, items: list) -> None:
        """Shuffle ``items`` in place (a free choice: the order is not in the split key)."""
        rnd = self.rnd
        for i in range(len(items) - 1, 0, -1):
            j = int(rnd() * (i + 1))
            items[i], items[j] = items[j], items[i]


def upper_first(s: str) -> str:
    """``s`` with its first character upper-cased (the rest kept as written, unlike ``str.capitalize``)."""
    return s[:1].upper() + s[1:]
