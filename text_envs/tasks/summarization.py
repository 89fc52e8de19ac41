"""TextSummarization-v0: write a one-sentence summary of a news-style report."""

from __future__ import annotations

import functools
from typing import Any

from text_envs.core import TextGenerationEnv
from text_envs.data.sources import Example, HubDatasetSpec
from text_envs.tasks.common import Template, as_references, build_source, render_template

HUB_DATASETS = {
    "xsum": HubDatasetSpec("EdinburghNLP/xsum", "document", "summary"),
    "cnn_dailymail": HubDatasetSpec("abisee/cnn_dailymail", "article", "highlights", config="3.0.0"),
    "samsum": HubDatasetSpec("Samsung/samsum", "dialogue", "summary"),
}


def _to_example(template: Template, document: Any, summary: Any) -> Example:
    return Example(render_template(template, text=str(document).strip()), as_references(summary))


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
        **kwargs: Any,
    ) -> None:
        from text_envs.data.generators import SPLIT_SIZES, summarization_row
        from text_envs.tokenization import load_tokenizer

        source = build_source(
            dataset=dataset,
            split=split,
            embedded=summarization_row,
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
