"""Lexical rewards: ROUGE (rouge-score), BLEU / chrF / TER (sacrebleu), with language-aware tokenizers.

Every reward here is on a 0..1 scale, higher is better (TER is turned into ``1 - min(TER, 1)``), scored per
sentence against the best of its references. Each object builds its scorer once in ``__init__``, so a batch of
one (what the env sends per finished episode) costs tens of microseconds.

Tokenizer facts worth knowing:

* rouge-score's default tokenizer lowercases and keeps only ``[a-z0-9]`` runs: every non-ASCII letter is
  dropped, so two identical Chinese texts score 0. Use ``tokenizer="unicode"`` (words in any script, each CJK
  character its own token), ``"char"`` (every non-space character) or a callable / Hugging Face tokenizer.
  ``make_reward("rouge-l", language="zh")`` picks ``"unicode"``; a one-time warning fires when the default
  tokenizer reads a non-empty non-ASCII text as empty.
* sacrebleu's tokenizer should follow the *target* language: ``zh`` for Chinese, ``ja-mecab`` for Japanese
  (needs ``pip install sacrebleu[ja]``; without it this module falls back to ``char`` with a warning),
  ``ko-mecab`` for Korean (fallback ``13a``), ``13a`` otherwise.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from text_envs.rewards.base import Reward, RewardError

__all__ = [
    "RougeReward",
    "BleuReward",
    "ChrfReward",
    "TerReward",
    "sacrebleu_tokenizer_for",
    "reference_streams",
    "make_word_tokenizer",
    "WordTokenizer",
    "CJK_LANGUAGES",
    "split_cjk",
]

CJK_LANGUAGES = frozenset({"zh", "ja", "ko", "zh-cn", "zh-tw", "yue"})
_CJK_CHARS = ("\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf"
              "\u4e00-\u9fff\uf900-\ufaff")
_CJK_RE = re.compile(f"[{_CJK_CHARS}]")
_WORD_RE = re.compile(r"[^\W_]+")
_SENT_RE = re.compile(r"(?<=[.!?。！？])\s*")


def split_cjk(text: str) -> str:
    """Put spaces around every CJK character, so a whitespace tokenizer reads each as a word."""
    return " ".join(_CJK_RE.sub(r" \g<0> ", text).split())


def _base_lang(language: str | None) -> str | None:
    return None if language is None else str(language).lower().replace("_", "-").split("-")[0]


# ---------------------------------------------------------------------------------------------- tokenizers
class _FnTokenizer:
    """Adapter giving any ``str -> list[str]`` function rouge-score's ``tokenize`` interface."""

    def __init__(self, fn: Callable[[str], list[str]], name: str) -> None:
        self.fn = fn
        self.name = name

    def tokenize(self, text: str) -> list[str]:
        return list(self.fn(text))


class WordTokenizer:
    """A picklable ``str -> list[str]`` tokenizer (lowercased), also usable as a rouge-score tokenizer.

    :param kind: ``"unicode"`` (letter/digit runs in any script, each CJK character a separate token),
        ``"char"`` (every non-whitespace character), or ``"whitespace"`` (``str.split``).
    :param use_stemmer: Porter-stem ASCII words longer than 3 characters (rouge-score's rule).
    """

    def __init__(self, kind: str = "unicode", use_stemmer: bool = False) -> None:
        if kind not in ("unicode", "char", "whitespace"):
            raise RewardError(f"Expected tokenizer kind 'unicode', 'char' or 'whitespace', got {kind!r}.")
        self.kind, self.use_stemmer, self.name = kind, use_stemmer, kind
        self._stem: Callable[[str], str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_stem": None}  # the stemmer's cache is rebuilt after unpickling

    def __call__(self, text: str) -> list[str]:
        if self.kind == "unicode":
            toks = _WORD_RE.findall(_CJK_RE.sub(r" \g<0> ", text.lower()))
        elif self.kind == "char":
            toks = [c for c in text.lower() if not c.isspace()]
        else:
            toks = text.lower().split()
        if not self.use_stemmer:
            return toks
        if self._stem is None:
            from functools import lru_cache

            from nltk.stem import porter

            self._stem = lru_cache(maxsize=65536)(porter.PorterStemmer().stem)
        stem = self._stem
        return [stem(w) if len(w) > 3 and w.isascii() else w for w in toks]

    tokenize = __call__


def make_word_tokenizer(kind: str = "unicode", use_stemmer: bool = False) -> WordTokenizer:
    """Return a picklable ``str -> list[str]`` tokenizer (lowercased) usable by ROUGE and METEOR; see
    :class:`WordTokenizer`."""
    return WordTokenizer(kind, use_stemmer)


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Transpose per-prediction reference lists into sacrebleu's reference *streams*.

    ``[[a1, a2], [b1]]`` becomes ``[[a1, b1], [a2, None]]``: stream ``k`` holds the ``k``-th reference of every
    prediction, ``None`` where a prediction has fewer references (sacrebleu skips those).
    """
    n_streams = max((len(r) for r in references), default=0)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(n_streams)]


_MISSING_TOKENIZERS: set[str] = set()


def _tokenizer_available(name: str) -> bool:
    try:
        from sacrebleu.metrics.bleu import _get_tokenizer

        _get_tokenizer(name)()
        return True
    except Exception:  # sacrebleu raises RuntimeError (or ImportError) when the mecab extras are missing
        return False


_FALLBACK = {"ja-mecab": "char", "ko-mecab": "13a"}


def sacrebleu_tokenizer_for(language: str | None = None, tokenize: str | None = None) -> str:
    """Return the sacrebleu tokenizer to use: ``tokenize`` if given, else the one for ``language``.

    A mecab tokenizer whose extra is not installed falls back (``ja-mecab`` -> ``char``, ``ko-mecab`` -> ``13a``)
    with a one-time warning naming the fix.
    """
    if tokenize is None:
        lang = _base_lang(language)
        tokenize = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}.get(lang or "", "13a")
    if tokenize in _FALLBACK:
        if tokenize in _MISSING_TOKENIZERS or not _tokenizer_available(tokenize):
            fallback = _FALLBACK[tokenize]
            if tokenize not in _MISSING_TOKENIZERS:
                extra = "ja" if tokenize.startswith("ja") else "ko"
                warnings.warn(
                    f"sacrebleu tokenizer {tokenize!r} needs `pip install sacrebleu[{extra}]`, which is not installed; "
                    f"falling back to {fallback!r}. Scores are not comparable with published {tokenize} scores.",
                    UserWarning,
                    stacklevel=3,
                )
                _MISSING_TOKENIZERS.add(tokenize)
            tokenize = fallback
    return tokenize


# ---------------------------------------------------------------------------------------------- ROUGE
_ROUGE_TYPES = {"rouge-1": "rouge1", "rouge-2": "rouge2", "rouge-l": "rougeL", "rouge-lsum": "rougeLsum"}


class RougeReward(Reward):
    """ROUGE-1/2/L/Lsum through ``rouge-score``, the best score over the references.

    :param variant: ``"rouge-1"``, ``"rouge-2"``, ``"rouge-l"`` or ``"rouge-lsum"`` (sentences separated by
        newlines, or split on ``. ! ? 。！？`` with ``split_summaries=True``).
    :param use_stemmer: Porter-stem English words (rouge-score's option; applied by our tokenizers too).
    :param tokenizer: ``None``/``"default"`` (rouge-score's: ASCII only), ``"unicode"``, ``"char"``,
        ``"whitespace"``, a ``str -> list[str]`` callable, or any object with ``.tokenize(text)`` such as a
        Hugging Face tokenizer.
    :param measure: ``"fmeasure"`` (default), ``"precision"`` or ``"recall"``.
    :param split_summaries: for ``rouge-lsum``, split sentences on punctuation instead of newlines.
    """

    def __init__(
        self,
        variant: str = "rouge-l",
        use_stemmer: bool = False,
        tokenizer: str | Callable[[str], list[str]] | Any | None = None,
        measure: str = "fmeasure",
        split_summaries: bool = False,
    ) -> None:
        from rouge_score import rouge_scorer

        if variant not in _ROUGE_TYPES:
            from text_envs.errors import unknown_name

            raise unknown_name("ROUGE variant", variant, _ROUGE_TYPES)
        if measure not in ("fmeasure", "precision", "recall"):
            raise RewardError(f"Expected measure 'fmeasure', 'precision' or 'recall', got {measure!r}.")
        self.name = variant
        self.variant = variant
        self.use_stemmer = bool(use_stemmer)
        self.measure = measure
        self.split_summaries = bool(split_summaries)
        self._tokenizer_spec = tokenizer
        self._explicit_tokenizer = tokenizer not in (None, "default")
        tok_obj: Any = None
        if tokenizer in (None, "default"):
            self.tokenizer_name = "rouge-score-default"
        elif isinstance(tokenizer, str):
            tok_obj = WordTokenizer(tokenizer, self.use_stemmer)
            self.tokenizer_name = tokenizer
        elif hasattr(tokenizer, "tokenize"):
            tok_obj = tokenizer
            self.tokenizer_name = type(tokenizer).__name__
        elif callable(tokenizer):
            tok_obj = _FnTokenizer(tokenizer, getattr(tokenizer, "__name__", "callable"))
            self.tokenizer_name = tok_obj.name
        else:
            raise RewardError(
                f"Expected tokenizer None, 'default', 'unicode', 'char', 'whitespace', a callable or an object with "
                f".tokenize(), got {type(tokenizer).__name__}."
            )
        self._key = _ROUGE_TYPES[variant]
        self._scorer = rouge_scorer.RougeScorer([self._key], use_stemmer=self.use_stemmer, tokenizer=tok_obj)
        self._warned_empty = False

    @property
    def signature(self) -> str:
        return f"{self.variant}|{self.measure}|tok:{self.tokenizer_name}|stem:{'yes' if self.use_stemmer else 'no'}"

    def for_language(self, language: str | None) -> Reward:
        if self._explicit_tokenizer or _base_lang(language) not in CJK_LANGUAGES:
            return self
        return RougeReward(self.variant, self.use_stemmer, "unicode", self.measure, self.split_summaries)

    def _prep(self, text: str) -> str:
        if self.split_summaries and self._key == "rougeLsum":
            return "\n".join(s for s in _SENT_RE.split(text) if s)
        return text

    def _score_one(self, prediction: str, refs: list[str]) -> float:
        score = self._scorer.score
        key, measure = self._key, self.measure
        pred = self._prep(prediction)
        if len(refs) == 1:
            return getattr(score(self._prep(refs[0]), pred)[key], measure)
        # best reference by F1 (rouge-score's score_multi rule), report the chosen measure
        best = max((score(self._prep(r), pred)[key] for r in refs), key=lambda s: s.fmeasure)
        return getattr(best, measure)

    def _compute(self, predictions, references, prompts):
        values = [self._score_one(p, r) for p, r in zip(predictions, references)]
        if not self._warned_empty and self.tokenizer_name == "rouge-score-default":
            for v, p, refs in zip(values, predictions, references):
                if v == 0.0 and (not p.isascii() or not all(r.isascii() for r in refs)):
                    self._check_dropped(p, refs)
                    break
        return values

    def _check_dropped(self, prediction: str, refs: list[str]) -> None:
        tok = self._scorer._tokenizer.tokenize
        for text in (prediction, *refs):
            if text.strip() and not tok(text):
                self._warned_empty = True
                warnings.warn(
                    f"{self.name}: rouge-score's default tokenizer keeps only ASCII letters and digits, so the "
                    f"non-empty text {text[:30]!r} has no tokens and scores 0. For Chinese/Japanese or other "
                    f"non-Latin text use make_reward({self.name!r}, tokenizer='unicode') (or 'char', or "
                    "language='zh').",
                    UserWarning,
                    stacklevel=4,
                )
                return

    def corpus_score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        """Mean sentence-level score (how ROUGE is reported for a corpus)."""
        values = self(predictions, references)
        return sum(values) / len(values) if values else 0.0


# ---------------------------------------------------------------------------------------------- sacrebleu
class _SacreReward(Reward):
    """Shared plumbing of the sacrebleu rewards: a metric object built once, sentence and corpus scores."""

    _metric: Any
    _pre: Callable[[str], str] | None = None  # applied to both texts before sacrebleu sees them

    def _sentence(self, prediction: str, refs: list[str]) -> float:
        pre = self._pre
        if pre is not None:
            prediction, refs = pre(prediction), [pre(r) for r in refs]
        return self._metric.sentence_score(prediction, refs).score

    def _compute(self, predictions, references, prompts):
        return [self._transform(self._sentence(p, r)) for p, r in zip(predictions, references)]

    def _transform(self, score: float) -> float:
        return min(score / 100.0, 1.0)  # sacrebleu's exp/log round trip can give 100.00000000000004

    @property
    def signature(self) -> str:
        """sacrebleu's signature (``nrefs:var`` until a score was computed, then the last call's count)."""
        m = self._metric
        args = m.__dict__ if "num_refs" in m.__dict__ else {**m.__dict__, "num_refs": -1}
        return str(m._SIGNATURE_TYPE(args).format())

    def corpus_score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        """Corpus-level score on a 0..1 scale from sacrebleu (statistics summed over the corpus, not a mean
        of sentence scores); references are transposed into streams, ragged counts allowed."""
        from text_envs.rewards.base import validate_inputs

        predictions, references, _ = validate_inputs(predictions, references)
        if not predictions:
            return 0.0
        pre = self._pre
        if pre is not None:
            predictions, references = [pre(p) for p in predictions], [[pre(r) for r in refs] for refs in references]
        return min(self._metric.corpus_score(predictions, reference_streams(references)).score / 100.0, 1.0)


class BleuReward(_SacreReward):
    """Sentence BLEU (sacrebleu) on a 0..1 scale, with smoothing and effective order for short texts.

    :param tokenize: a sacrebleu tokenizer (``"13a"``, ``"zh"``, ``"intl"``, ``"char"``, ``"ja-mecab"``...);
        ``None`` picks it from ``language`` (``13a`` when that is also ``None``).
    :param language: target language ISO code, used when ``tokenize`` is ``None``.
    :param smooth_method: ``"exp"`` (default), ``"floor"``, ``"add-k"`` or ``"none"``.
    :param smooth_value: the value for ``floor`` (default 0.1) / ``add-k`` (default 1).
    :param lowercase: case-insensitive matching.
    :param max_ngram_order: highest n-gram order (4).
    """

    def __init__(
        self,
        tokenize: str | None = None,
        language: str | None = None,
        smooth_method: str = "exp",
        smooth_value: float | None = None,
        lowercase: bool = False,
        max_ngram_order: int = 4,
    ) -> None:
        from sacrebleu.metrics import BLEU

        if smooth_method not in BLEU.SMOOTH_DEFAULTS:
            from text_envs.errors import unknown_name

            raise unknown_name("BLEU smoothing method", smooth_method, BLEU.SMOOTH_DEFAULTS)
        self.name = "bleu"
        self._explicit = tokenize is not None
        self._args = dict(smooth_method=smooth_method, smooth_value=smooth_value, lowercase=lowercase,
                          max_ngram_order=max_ngram_order)
        self.language = language
        self.tokenize = sacrebleu_tokenizer_for(language, tokenize)
        try:
            self._metric = BLEU(tokenize=self.tokenize, effective_order=True, **self._args)
        except Exception as exc:
            from sacrebleu.metrics.bleu import _TOKENIZERS

            raise RewardError(
                f"sacrebleu rejected tokenize={self.tokenize!r}: {exc}. Valid tokenizers: {', '.join(_TOKENIZERS)}."
            ) from exc

    def for_language(self, language: str | None) -> Reward:
        if self._explicit or language is None:
            return self
        return BleuReward(None, language, **self._args)


class ChrfReward(_SacreReward):
    """Sentence chrF (or chrF++ with ``word_order=2``) from sacrebleu on a 0..1 scale.

    Character n-grams make it language independent: chrF drops whitespace before counting them, so Chinese
    needs no word segmentation. chrF++'s *word* n-grams, however, split on whitespace, which makes an unspaced
    Chinese sentence a single "word"; ``tokenize`` (chosen from ``language`` like BLEU's: ``zh`` for Chinese)
    first runs a sacrebleu tokenizer over both texts, so Chinese words are characters. Tokenizing only inserts
    spaces, so plain chrF (``word_order=0``, ``whitespace=False``) scores the same either way; the signature
    says ``tok:<name>`` whenever a tokenizer ran.

    :param char_order: character n-gram order (6).
    :param word_order: word n-gram order (0 = chrF, 2 = chrF++).
    :param beta: recall weight (2).
    :param lowercase: case-insensitive matching.
    :param whitespace: include whitespace in character n-grams.
    :param eps_smoothing: the epsilon smoothing of chrF++.py / NLTK / Moses instead of sacrebleu's.
    :param tokenize: a sacrebleu tokenizer name applied before scoring (``"zh"``, ``"13a"``...), or None: none
        unless ``language`` asks for one (CJK targets).
    :param language: target language ISO code, used when ``tokenize`` is None (``"zh"`` -> ``"zh"``).
    """

    def __init__(
        self,
        char_order: int = 6,
        word_order: int = 0,
        beta: int = 2,
        lowercase: bool = False,
        whitespace: bool = False,
        eps_smoothing: bool = False,
        tokenize: str | None = None,
        language: str | None = None,
    ) -> None:
        from sacrebleu.metrics import CHRF

        self.name = "chrf++" if word_order == 2 and char_order == 6 and beta == 2 else "chrf"
        self._args = dict(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase,
                          whitespace=whitespace, eps_smoothing=eps_smoothing)
        self._explicit = tokenize is not None
        self.language = language
        if tokenize is None and _base_lang(language) in CJK_LANGUAGES:
            tokenize = sacrebleu_tokenizer_for(language)
        self.tokenize = tokenize
        if tokenize not in (None, "none"):
            from sacrebleu.metrics.bleu import _TOKENIZERS, _get_tokenizer

            try:
                self._pre = _get_tokenizer(tokenize)()
            except Exception as exc:
                raise RewardError(
                    f"sacrebleu rejected tokenize={tokenize!r}: {exc}. Valid tokenizers: {', '.join(_TOKENIZERS)}."
                ) from exc
        self._metric = CHRF(**self._args)

    @property
    def signature(self) -> str:
        sig = super().signature
        return sig if self._pre is None else f"{sig}|tok:{self.tokenize}"

    def for_language(self, language: str | None) -> Reward:
        if self._explicit or language is None:
            return self
        return ChrfReward(**self._args, language=language)


class TerReward(_SacreReward):
    """Translation Edit Rate (sacrebleu) turned into a reward where higher is better.

    ``form="bounded"`` (default): ``1 - min(TER, 1)`` in [0, 1] (1 = no edits needed, 0 = at least as many
    edits as reference words). ``form="negative"``: ``-TER`` (unbounded below). ``corpus_score`` returns the
    plain corpus TER as a fraction (lower is better), as TER is reported.

    :param form: ``"bounded"`` or ``"negative"``.
    :param normalized: sacrebleu's ``normalized`` (general Tercom normalisation).
    :param no_punct: remove punctuation.
    :param asian_support: split CJK characters into words (set automatically by ``for_language("zh"|"ja"|"ko")``;
        sacrebleu itself does it only with ``normalized=True``, so without it this class splits them).
    :param case_sensitive: case-sensitive matching (TER is case-insensitive by default).
    """

    def __init__(
        self,
        form: str = "bounded",
        normalized: bool = False,
        no_punct: bool = False,
        asian_support: bool | None = None,
        case_sensitive: bool = False,
    ) -> None:
        from sacrebleu.metrics import TER

        if form not in ("bounded", "negative"):
            raise RewardError(f"Expected TER form 'bounded' (1 - min(TER,1)) or 'negative' (-TER), got {form!r}.")
        self.name = "ter"
        self.form = form
        self._explicit = asian_support is not None
        self._args = dict(normalized=normalized, no_punct=no_punct, case_sensitive=case_sensitive)
        self._metric = TER(asian_support=bool(asian_support), **self._args)
        if asian_support and not normalized:
            # sacrebleu applies asian_support only inside its `normalized` step: split CJK characters here
            self._pre = split_cjk

    def _transform(self, score: float) -> float:
        ter = score / 100.0
        return 1.0 - min(ter, 1.0) if self.form == "bounded" else -ter

    def for_language(self, language: str | None) -> Reward:
        if self._explicit or _base_lang(language) not in CJK_LANGUAGES:
            return self
        return TerReward(self.form, asian_support=True, **self._args)
