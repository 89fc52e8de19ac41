"""TextSummarization-v0: write a one-sentence summary of a news-style report."""

from __future__ import annotations

import functools
import math
import random
import re
from typing import Any

from text_envs.core import TextGenerationEnv
from text_envs.data.sources import Example, HubDatasetSpec
from text_envs.errors import TextEnvsError
from text_envs.tasks.common import Template, as_references, build_source, render_template

HUB_DATASETS = {
    "xsum": HubDatasetSpec("EdinburghNLP/xsum", "document", "summary"),
    "cnn_dailymail": HubDatasetSpec("abisee/cnn_dailymail", "article", "highlights", config="3.0.0"),
    "samsum": HubDatasetSpec("Samsung/samsum", "dialogue", "summary"),
}


def _to_example(template: Template, document: Any, summary: Any) -> Example:
    return Example(render_template(template, text=str(document).strip()), as_references(summary))


_NOISE_KINDS = ("number", "town", "day")


def _unsupported_edit(kind: str, summary: str, document: str, rnd: random.Random) -> str | None:
    """``summary`` with one detail of ``kind`` replaced by a value the document does not contain, or None."""
    from text_envs.data.generators import DAYS, TOWNS

    doc_words = set(re.findall(r"[^\W\d_]+", document))
    if kind == "number":
        m = re.search(r"\b\d+\b", summary)
        if m is None:
            return None
        n, doc_numbers = int(m.group()), set(re.findall(r"\d+", document))
        scale = 10 ** max(0, len(m.group()) - 2)  # 7 -> 5..9 and 1500 -> 1200..1800: plausible, not absurd
        candidates = (n + k * scale for k in (-3, -2, -1, 1, 2, 3))
        options = [v for v in candidates if v > 0 and str(v) not in doc_numbers]
        new = str(options[int(rnd.random() * len(options))]) if options else None
    else:
        pool = TOWNS if kind == "town" else DAYS
        m = next((m for m in re.finditer(r"[^\W\d_]+", summary) if m.group() in pool), None)
        if m is None:
            return None
        options = [x for x in pool if x not in doc_words and x not in summary]
        new = options[int(rnd.random() * len(options))] if options else None
    if new is None:
        return None
    return summary[: m.start()] + new + summary[m.end() :]


def noisy_summarization_row(split: str, index: int, difficulty: int = 1, *, reference_noise: float = 0.0) -> dict:
    """:func:`text_envs.data.generators.summarization_row` whose TRAIN reference, for a seeded share
    ``reference_noise`` of the rows, states one detail that the document does not support.

    The detail is the summary's number, town or day replaced by a value absent from the document (the kind
    drawn at random among those the summary has; the number stays close to the true one). Whether a row is
    noisy depends only on ``(difficulty, index)`` and a uniform draw compared with ``reference_noise``, so the
    noisy rows at ``p = 0.1`` are a subset of those at ``p = 0.2``. Validation and test rows are never noisy.

    :return: ``{"document": str, "summary": str, "noise": None | "number" | "town" | "day"}``.
    """
    from text_envs.data.generators import summarization_row

    row = dict(summarization_row(split, index, difficulty), noise=None)
    if split != "train" or reference_noise <= 0.0:
        return row
    rnd = random.Random(f"summarization-noise/{difficulty}/{index}")
    if rnd.random() >= reference_noise:
        return row
    start = int(rnd.random() * len(_NOISE_KINDS))
    for k in range(len(_NOISE_KINDS)):  # the drawn kind first, then the others
        kind = _NOISE_KINDS[(start + k) % len(_NOISE_KINDS)]
        edited = _unsupported_edit(kind, row["summary"], row["document"], rnd)
        if edited is not None:
            return dict(row, summary=edited, noise=kind)
    # every embedded summary has a number and a town, and 80 towns cannot all be in one document
    raise AssertionError(f"no unsupported edit for summarization row {split}/{difficulty}/{index}")  # pragma: no cover


class TextSummarizationEnv(TextGenerationEnv):
    """Summarize a document; the reward scores the summary against the reference(s).

    ## Data
    By default the embedded generator (:func:`text_envs.data.generators.summarization_row`): seeded,
    procedurally generated news-style reports with reference summaries, ``train``/``validation``/``test``
    splits that do not overlap, and a ``difficulty`` knob (1-3: more distractor sentences, longer reports).
    ``dataset="xsum"``, ``"cnn_dailymail"`` or ``"samsum"`` load the hub sets (network needed),
    a ``datasets.Dataset``/``DatasetDict``, a list of dict rows, or a local ``.json``/``.jsonl``/``.csv``
    file whose columns ``prompt_field`` (default ``"document"``) and ``reference_field`` (default
    ``"summary"``; a list of texts gives several references) name.

    ## Spaces, rewards, episode end
    See :class:`text_envs.core.TextGenerationEnv`. Default reward: ``"rouge-l"`` (ROUGE-L F1).
    Prompts longer than ``max_prompt_tokens`` keep their beginning (``truncation_side="right"``).

    ## Arguments
    :param dataset: None (embedded), a hub name, a ``datasets.Dataset``, rows, or a local file path.
    :param split: ``"train"``, ``"validation"`` or ``"test"`` (a local file is one split whatever this says).
    :param prompt_field: dotted column name of the document.
    :param reference_field: dotted column name of the summary (or list of summaries).
    :param prompt_template: format string with ``{text}`` (default ``"summarize: {text}"``, T5's prefix) or
        a callable ``template(text=...) -> str``.
    :param tokenizer: None (the shipped tokenizer), a Hugging Face tokenizer name/path, or a tokenizer.
    :param difficulty: embedded data only: 1, 2 or 3.
    :param dataset_config: the hub configuration, when not the registered default.
    :param reference_noise: embedded data only: the share ``p`` (0..1) of TRAIN references that state one
        detail (a number, town or day) the document does not support, as real references such as XSum's
        often do (Maynez et al. 2020); see :func:`noisy_summarization_row`. Supervised learning copies
        that rate; the ``"fact-precision"`` reward measures it. Validation and test references stay clean.
    Other keywords (``reward``, ``max_prompt_tokens``, ``max_new_tokens``, ``truncation_side``,
    ``dense_reward``, ``shaping_gamma``, ``render_mode``) are those of :class:`TextGenerationEnv`.

    ## Version History
    * v0: initial version.
    """

    def __init__(
        self,
        dataset: Any = None,
        split: str = "train",
        *,
        prompt_field: str | None = None,
        reference_field: str | None = None,
        prompt_template: Template = "summarize: {text}",
        tokenizer: Any = None,
        difficulty: int = 1,
        dataset_config: str | None = None,
        reward: Any = "rouge-l",
        max_prompt_tokens: int = 256,
        max_new_tokens: int = 48,
        truncation_side: str = "right",
        reference_noise: float = 0.0,
        **kwargs: Any,
    ) -> None:
        from text_envs.data.generators import SPLIT_SIZES, summarization_row
        from text_envs.tokenization import load_tokenizer

        if isinstance(reference_noise, bool) or not isinstance(reference_noise, (int, float)) or not (
            math.isfinite(reference_noise) and 0.0 <= reference_noise <= 1.0
        ):
            raise TextEnvsError(f"reference_noise must be a number in [0, 1], got {reference_noise!r}.")
        if reference_noise and dataset is not None:
            raise TextEnvsError(
                f"reference_noise={reference_noise} applies to the embedded data only (it edits the generated "
                f"references, whose facts it knows); got dataset={dataset!r}. Drop reference_noise, or use "
                "dataset=None. Real references (e.g. XSum's) carry their own unsupported details: measure them "
                "with reward='fact-precision'."
            )
        self.reference_noise = float(reference_noise)
        embedded = (functools.partial(noisy_summarization_row, reference_noise=self.reference_noise)
                    if self.reference_noise else summarization_row)
        source = build_source(
            dataset=dataset,
            split=split,
            embedded=embedded,
            embedded_sizes=SPLIT_SIZES,
            difficulty=difficulty,
            hub_specs=HUB_DATASETS,
            hub_config=lambda spec: dataset_config or spec.config,
            default_fields=("document", "summary"),
            prompt_field=prompt_field,
            reference_field=reference_field,
            to_example=functools.partial(_to_example, prompt_template),
        )
        super().__init__(
            source,
            load_tokenizer(tokenizer),
            reward=reward,
            max_prompt_tokens=max_prompt_tokens,
            max_new_tokens=max_new_tokens,
            truncation_side=truncation_side,
            **kwargs,
        )
