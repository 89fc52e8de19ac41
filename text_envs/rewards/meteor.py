"""METEOR (Banerjee & Lavie, 2005), implemented here: staged unigram alignment + fragmentation penalty.

Alignment runs in stages, each matching only the words left unmatched by the previous ones:

1. ``exact``: identical (lowercased) tokens;
2. ``stem``: identical Porter stems (nltk's ``PorterStemmer``, which needs no downloaded data);
3. ``synonym``: WordNet synonyms (shared synset lemma), only when NLTK's WordNet data is installed
   (``python -m nltk.downloader wordnet``). :attr:`MeteorReward.stages` says which stages run.

Within a stage the number of matches is maximal (for exact and stem matching the greedy choice is optimal);
among the candidate reference positions the one that extends a chunk is preferred, to keep the number of
chunks low. With ``m`` matches, hypothesis length ``h`` and reference length ``r``::

    P = m / h,  R = m / r,  Fmean = 10 P R / (R + 9 P)           # alpha = 0.9
    penalty = 0.5 * (chunks / m) ** 3                             # gamma = 0.5, beta = 3
    score = Fmean * (1 - penalty)

so identical text of ``n`` words scores ``1 - 0.5 / n**3`` and disjoint text scores 0. With several references
the best score counts. Tokens: lowercased letter/digit runs, each CJK character its own token (punctuation is
dropped); change with ``tokenizer=``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from text_envs.rewards.base import Reward, RewardError

__all__ = ["MeteorReward", "meteor_score", "wordnet_available", "align"]

_ALL_STAGES = ("exact", "stem", "synonym")


@lru_cache(maxsize=1)
def wordnet_available() -> bool:
    """``True`` when NLTK's WordNet corpus is installed (checked once per process, never downloads)."""
    try:
        import nltk

        for res in ("corpora/wordnet", "corpora/wordnet.zip", "corpora/wordnet31", "corpora/wordnet2022"):
            try:
                nltk.data.find(res)
                from nltk.corpus import wordnet

                wordnet.synsets("dog")
                return True
            except LookupError:
                continue
    except Exception:
        return False
    return False


@lru_cache(maxsize=1)
def _stemmer() -> Callable[[str], str]:
    from nltk.stem.porter import PorterStemmer

    return lru_cache(maxsize=65536)(PorterStemmer().stem)


@lru_cache(maxsize=65536)
def _synonyms(word: str) -> frozenset[str]:
    from nltk.corpus import wordnet

    out = {word}
    for syn in wordnet.synsets(word):
        out.update(lemma.name().lower() for lemma in syn.lemmas())
    return frozenset(out)


def align(
    hyp: Sequence[str], ref: Sequence[str], stages: Sequence[str] = ("exact", "stem")
) -> list[tuple[int, int]]:
    """Align hypothesis tokens to reference tokens stage by stage; return ``(hyp_index, ref_index)`` pairs sorted
    by hypothesis index.

    :param hyp: hypothesis tokens (already lowercased).
    :param ref: reference tokens.
    :param stages: subset of ``("exact", "stem", "synonym")``, in that order.
    """
    a = [-1] * len(hyp)  # hyp index -> ref index
    ref_used = [False] * len(ref)
    for stage in stages:
        if stage == "exact":
            hk, rk = list(hyp), list(ref)
        elif stage == "stem":
            stem = _stemmer()
            hk, rk = [stem(w) for w in hyp], [stem(w) for w in ref]
        elif stage == "synonym":
            hk, rk = [_synonyms(w) for w in hyp], list(ref)
        else:
            raise RewardError(f"Unknown METEOR stage {stage!r}; expected one of {_ALL_STAGES}.")

        def ok(i: int, j: int) -> bool:
            if ref_used[j]:
                return False
            return rk[j] in hk[i] if stage == "synonym" else hk[i] == rk[j]

        for i in range(len(hyp)):
            if a[i] >= 0:
                continue
            cands = [j for j in range(len(ref)) if ok(i, j)]
            if not cands:
                continue
            prev = a[i - 1] if i > 0 else -1
            nxt = a[i + 1] if i + 1 < len(hyp) else -1
            if prev >= 0 and prev + 1 in cands:
                j = prev + 1
            elif nxt > 0 and nxt - 1 in cands:
                j = nxt - 1
            else:
                # prefer a position that the next hypothesis word can continue, then the one nearest the
                # position expected from the previous match (or the relative position)
                expect = prev + 1 if prev >= 0 else i * len(ref) / max(len(hyp), 1)
                nxt_key = hk[i + 1] if i + 1 < len(hyp) and a[i + 1] < 0 else None

                def cont(j: int) -> bool:
                    if nxt_key is None or j + 1 >= len(ref) or ref_used[j + 1]:
                        return False
                    return rk[j + 1] in nxt_key if stage == "synonym" else nxt_key == rk[j + 1]

                j = min(cands, key=lambda j: (not cont(j), abs(j - expect), j))
            a[i] = j
            ref_used[j] = True
    return [(i, j) for i, j in enumerate(a) if j >= 0]


def _chunks(pairs: list[tuple[int, int]]) -> int:
    chunks = 0
    prev_i = prev_j = -2
    for i, j in pairs:
        if not (i == prev_i + 1 and j == prev_j + 1):
            chunks += 1
        prev_i, prev_j = i, j
    return chunks


def meteor_score(
    hyp: Sequence[str],
    ref: Sequence[str],
    stages: Sequence[str] = ("exact", "stem"),
    alpha: float = 0.9,
    beta: float = 3.0,
    gamma: float = 0.5,
) -> float:
    """METEOR of one tokenised hypothesis against one tokenised reference (see the module docstring).

    :param hyp: hypothesis tokens.
    :param ref: reference tokens.
    :param stages: alignment stages to run.
    :param alpha: weight of precision in the harmonic mean (0.9 gives Fmean = 10PR/(R+9P)).
    :param beta: exponent of the fragmentation penalty (3).
    :param gamma: maximum penalty (0.5).
    """
    if not hyp or not ref:
        return 0.0
    pairs = align(hyp, ref, stages)
    m = len(pairs)
    if m == 0:
        return 0.0
    p, r = m / len(hyp), m / len(ref)
    fmean = p * r / (alpha * p + (1 - alpha) * r)
    penalty = gamma * (_chunks(pairs) / m) ** beta
    return fmean * (1.0 - penalty)


class MeteorReward(Reward):
    """METEOR as a reward in [0, 1): exact + stem (+ WordNet synonym) matching, fragmentation penalty, best of
    the references.

    :param stages: ``None`` = ``("exact", "stem")`` plus ``"synonym"`` when WordNet data is installed; or an
        explicit tuple (asking for ``"synonym"`` without the data raises, with the download command).
    :param tokenizer: ``"unicode"`` (default), ``"char"``, ``"whitespace"`` or a ``str -> list[str]`` callable.
    :param alpha: see :func:`meteor_score`.
    :param beta: see :func:`meteor_score`.
    :param gamma: see :func:`meteor_score`.
    """

    name = "meteor"

    def __init__(
        self,
        stages: Sequence[str] | None = None,
        tokenizer: str | Callable[[str], list[str]] = "unicode",
        alpha: float = 0.9,
        beta: float = 3.0,
        gamma: float = 0.5,
    ) -> None:
        from text_envs.rewards.lexical import make_word_tokenizer

        if stages is None:
            stages = ("exact", "stem", "synonym") if wordnet_available() else ("exact", "stem")
        else:
            stages = tuple(stages)
            bad = [s for s in stages if s not in _ALL_STAGES]
            if bad or not stages:
                raise RewardError(f"Expected METEOR stages from {_ALL_STAGES}, got {stages!r}.")
            stages = tuple(s for s in _ALL_STAGES if s in stages)  # canonical order
            if "synonym" in stages and not wordnet_available():
                raise RewardError(
                    "METEOR stage 'synonym' needs NLTK's WordNet data, which is not installed. Install it with "
                    "`python -m nltk.downloader wordnet`, or use stages=('exact', 'stem')."
                )
        if not 0 < alpha < 1 or beta <= 0 or not 0 <= gamma <= 1:
            raise RewardError(f"Expected 0 < alpha < 1, beta > 0, 0 <= gamma <= 1, got {alpha}, {beta}, {gamma}.")
        self.stages: tuple[str, ...] = stages
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.tokenizer_name = tokenizer if isinstance(tokenizer, str) else getattr(tokenizer, "__name__", "callable")
        self._tok = make_word_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer

    @property
    def signature(self) -> str:
        return f"meteor|stages:{'+'.join(self.stages)}|tok:{self.tokenizer_name}|a:{self.alpha}|b:{self.beta}|g:{self.gamma}"

    def _compute(self, predictions, references, prompts):
        tok = self._tok
        out = []
        for pred, refs in zip(predictions, references):
            h = tok(pred)
            out.append(max(meteor_score(h, tok(r), self.stages, self.alpha, self.beta, self.gamma) for r in refs))
        return out

    def corpus_score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        """Mean sentence METEOR over the corpus."""
        values = self(predictions, references)
        return sum(values) / len(values) if values else 0.0
