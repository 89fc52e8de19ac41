"""MachineTranslation-v0: translate a sentence from a source into a target language."""

from __future__ import annotations

import functools
from typing import Any

from text_envs.core import TextGenerationEnv
from text_envs.data.sources import Example, HubDatasetSpec
from text_envs.errors import TextEnvsError
from text_envs.tasks.common import Template, as_references, build_source, render_template

HUB_DATASETS = {
    # WMT16 configurations are spelled "<other>-en" whatever the direction (cs, de, fi, ro, ru, tr).
    "wmt16": HubDatasetSpec("wmt/wmt16", "translation.{src}", "translation.{tgt}", config="{other}-en",
                            default_langs=("en", "ro")),
    # IWSLT 2017 has one configuration per direction.
    "iwslt2017": HubDatasetSpec("IWSLT/iwslt2017", "translation.{src}", "translation.{tgt}",
                                config="iwslt2017-{src}-{tgt}", default_langs=("en", "de")),
}
LANGUAGE_NAMES = {
    "en": "English", "syn": "Syn", "ro": "Romanian", "de": "German", "fr": "French", "zh": "Chinese",
    "cs": "Czech", "fi": "Finnish", "ru": "Russian", "tr": "Turkish", "it": "Italian", "nl": "Dutch",
    "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "es": "Spanish", "pt": "Portuguese",
}


def _to_example(template: Template, source_lang: str, target_lang: str, text: Any, translation: Any) -> Example:
    prompt = render_template(
        template,
        text=str(text).strip(),
        source_lang=source_lang,
        target_lang=target_lang,
        source_name=LANGUAGE_NAMES.get(source_lang, source_lang),
        target_name=LANGUAGE_NAMES.get(target_lang, target_lang),
    )
    return Example(prompt, as_references(translation))


def _hub_config(spec: HubDatasetSpec, src: str, tgt: str, override: str | None) -> str | None:
    if override:
        return override
    other = tgt if src == "en" else src
    return spec.config.format(src=src, tgt=tgt, other=other) if spec.config else None


class MachineTranslationEnv(TextGenerationEnv):
    """Translate a sentence; the reward scores the translation against the reference translation(s).

    ## Data
    By default the embedded generator (:func:`text_envs.data.generators.translation_row`): seeded English
    sentences and their translation into "Syn", a synthetic language with a fixed lexicon and consistent
    word-order and morphology rules (``source_lang``/``target_lang`` ``"en"``/``"syn"``, either direction).
    ``dataset="wmt16"`` (pair e.g. ``source_lang="en", target_lang="ro"``) and ``"iwslt2017"`` load the hub
    sets (network needed). Local files and ``datasets.Dataset`` objects in WMT's row format
    ``{"translation": {"en": ..., "ro": ...}}`` work with just the language pair; other layouts name
    their columns with ``prompt_field``/``reference_field`` (dotted names reach into nested rows).

    ## Spaces, rewards, episode end
    See :class:`text_envs.core.TextGenerationEnv`. Default reward ``"chrf"`` (sentence chrF / 100).

    ## Arguments
    :param source_lang: the language code of the source text (default ``"en"``).
    :param target_lang: the language code to translate into (default ``"syn"``, or the hub set's default).
    :param prompt_template: format string with ``{text}``, ``{source_name}``, ``{target_name}``,
        ``{source_lang}``, ``{target_lang}``; default ``"translate {source_name} to {target_name}: {text}"``.
    The others are those of :class:`text_envs.tasks.summarization.TextSummarizationEnv`.

    ## Version History
    * v0: initial version.
    """

    def __init__(
        self,
        dataset: Any = None,
        split: str = "train",
        *,
        source_lang: str | None = None,
        target_lang: str | None = None,
        prompt_field: str | None = None,
        reference_field: str | None = None,
        prompt_template: Template = "translate {source_name} to {target_name}: {text}",
        tokenizer: Any = None,
        difficulty: int = 1,
        dataset_config: str | None = None,
        reward: Any = "chrf",
        max_prompt_tokens: int = 128,
        max_new_tokens: int = 64,
        truncation_side: str = "right",
        **kwargs: Any,
    ) -> None:
        from text_envs.data.generators import SPLIT_SIZES, TRANSLATION_LANGS, translation_row
        from text_envs.tokenization import load_tokenizer

        if dataset is None:
            default = TRANSLATION_LANGS
        elif isinstance(dataset, str) and dataset in HUB_DATASETS:
            default = HUB_DATASETS[dataset].default_langs
        else:
            default = ("en", None)
        src = source_lang or default[0]
        tgt = target_lang or default[1]
        if tgt is None:
            raise TextEnvsError("MachineTranslation-v0 needs target_lang=... (e.g. 'ro') for this data set.")
        if src == tgt:
            raise TextEnvsError(f"source_lang and target_lang must differ, got {src!r} for both.")
        if dataset is None and {src, tgt} != set(TRANSLATION_LANGS):
            raise TextEnvsError(
                f"The embedded translation data pairs {TRANSLATION_LANGS[0]!r} and {TRANSLATION_LANGS[1]!r}; "
                f"got source_lang={src!r}, target_lang={tgt!r}. Pass dataset=... for other languages."
            )
        self.source_lang, self.target_lang = src, tgt
        source = build_source(
            dataset=dataset,
            split=split,
            embedded=translation_row,
            embedded_sizes=SPLIT_SIZES,
            difficulty=difficulty,
            hub_specs={
                name: HubDatasetSpec(spec.path, spec.prompt_field.format(src=src), spec.reference_field.format(tgt=tgt),
                                     spec.config, spec.default_langs)
                for name, spec in HUB_DATASETS.items()
            },
            hub_config=lambda spec: _hub_config(spec, src, tgt, dataset_config),
            default_fields=(f"translation.{src}", f"translation.{tgt}"),
            prompt_field=prompt_field,
            reference_field=reference_field,
            to_example=functools.partial(_to_example, prompt_template, src, tgt),
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
