"""MachineTranslation-v0: translate a sentence from a source into a target language."""

from __future__ import annotations

import dataclasses
import functools
import re
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
    # WMT19 too ("zh-en" serves zh -> en and en -> zh; cs, de, fi, gu, kk, lt, ru likewise). Its one held-out
    # set (newstest2018, "validation") is cut in two disjoint halves for our validation and test splits.
    "wmt19": HubDatasetSpec("wmt/wmt19", "translation.{src}", "translation.{tgt}", config="{other}-en",
                            default_langs=("en", "zh"),
                            hub_splits=(("validation", "validation[:50%]"), ("test", "validation[50%:]"))),
}
LANGUAGE_NAMES = {
    "en": "English", "syn": "Syn", "ro": "Romanian", "de": "German", "fr": "French", "zh": "Chinese",
    "cs": "Czech", "fi": "Finnish", "ru": "Russian", "tr": "Turkish", "it": "Italian", "nl": "Dutch",
    "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "es": "Spanish", "pt": "Portuguese", "gu": "Gujarati",
    "kk": "Kazakh", "lt": "Lithuanian", "et": "Estonian", "lv": "Latvian", "hi": "Hindi",
}
# The embedded data: (source, target) -> its default target when only source_lang is given.
_EMBEDDED_DEFAULT_TARGET = {"en": "syn", "syn": "en", "fr": "zh", "zh": "en"}
_LANG_CODE = re.compile(r"^[a-z]{2}([-_][A-Za-z]{2,4})?$")


def embedded_pairs() -> tuple[tuple[str, str], ...]:
    """Every ``(source_lang, target_lang)`` the embedded data offers without ``dataset=``."""
    from text_envs.data.translation_pairs import LANGUAGE_PAIRS

    return (("en", "syn"), ("syn", "en")) + LANGUAGE_PAIRS


def language_of_field(field: str | None) -> str | None:
    """The language code a dotted field names in its last part (``"translation.zh"`` -> ``"zh"``), else None.

    A last part counts when it is a two-letter code (optionally with a region, ``zh-CN``/``pt_BR``) or one of
    :data:`LANGUAGE_NAMES`; ``"document"`` or ``"pair.src"`` name no language."""
    if not field or "." not in field:
        return None
    last = field.rsplit(".", 1)[1]
    return last if last in LANGUAGE_NAMES or _LANG_CODE.match(last) else None


def _base(code: str) -> str:
    return re.split("[-_]", code.lower())[0]


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

    ## Data: the language pairs
    Offline, without ``dataset=`` (embedded generators, 50,000 / 1,000 / 1,000 rows, ``difficulty`` 1-3,
    disjoint splits):

    ==========================  ==================================================================================
    ``source_lang/target_lang`` sentences
    ==========================  ==================================================================================
    ``en`` -> ``syn`` (default)  English into "Syn", a rule-based invented language no pretrained model knows
    ``syn`` -> ``en``            (:func:`text_envs.data.generators.translation_row`)
    ``en`` -> ``zh``             English into Chinese, the seed document's examples
    ``fr`` -> ``zh``             French into Chinese (:func:`text_envs.data.translation_pairs.translation_pair_row`:
    ``zh`` -> ``en`` / ``fr``    grammatical sentences from a lexicon and templates, with Chinese measure words and
    ``en`` <-> ``fr``            word order, French gender and number agreement)
    ==========================  ==================================================================================

    Only ``source_lang`` given: ``en`` -> ``syn``, ``syn`` -> ``en``, ``fr`` -> ``zh``, ``zh`` -> ``en``; only
    ``target_lang``: from ``en`` (from ``syn`` into ``en``).

    Hub sets (network needed): ``dataset="wmt16"`` (e.g. ``source_lang="en", target_lang="ro"``),
    ``"wmt19"`` (default ``en`` -> ``zh``; ``zh``/``en`` in either direction from the hub's ``zh-en``
    configuration, likewise cs, de, fi, gu, kk, lt, ru with en; its validation and test splits are the two
    halves of WMT19's one held-out set, newstest2018) and
    ``"iwslt2017"``. Local files and ``datasets.Dataset`` objects in WMT's row format
    ``{"translation": {"en": ..., "zh": ...}}`` work with just the language pair; other layouts name their
    columns with ``prompt_field``/``reference_field`` (dotted names reach into nested rows). A field whose last
    part is a language code names the language too: ``prompt_field="translation.en",
    reference_field="translation.ro"`` needs no ``source_lang``/``target_lang``.

    ## Spaces, rewards, episode end
    See :class:`text_envs.core.TextGenerationEnv`. Default reward ``"chrf"`` (sentence chrF / 100). Rewards are
    built for ``target_lang``: a Chinese target scores BLEU (and chrF++'s word n-grams) with sacrebleu's ``zh``
    tokenization, ROUGE per character, TER with Asian support, whatever the data (embedded, hub or file).
    The shipped tokenizer's pieces cover English and Syn; without Chinese pieces a Chinese character costs about
    three byte tokens, so Chinese targets at difficulty 3 need ``max_new_tokens`` of about 160.

    ## Arguments
    :param source_lang: the language code of the source text (default ``"en"``, or the hub set's default, or
        the language ``prompt_field`` names).
    :param target_lang: the language code to translate into (default ``"syn"``, the hub set's default, or the
        language ``reference_field`` names).
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
        from text_envs.data.generators import SPLIT_SIZES, translation_row
        from text_envs.data.translation_pairs import translation_pair_row
        from text_envs.tokenization import load_tokenizer

        src, tgt = _resolve_languages(dataset, source_lang, target_lang, prompt_field, reference_field)
        if dataset is None and (src, tgt) not in embedded_pairs():
            pairs = ", ".join(f"{s}->{t}" for s, t in embedded_pairs())
            raise TextEnvsError(
                f"The embedded translation data offers {pairs}; got source_lang={src!r}, target_lang={tgt!r}. "
                "Pass dataset=... (a hub name such as 'wmt16'/'wmt19', a local file or a datasets.Dataset) for "
                "other languages."
            )
        row_fn = translation_row if "syn" in (src, tgt) else translation_pair_row
        self.source_lang, self.target_lang = src, tgt
        source = build_source(
            dataset=dataset,
            split=split,
            embedded=row_fn,
            embedded_sizes=SPLIT_SIZES,
            difficulty=difficulty,
            hub_specs={
                name: dataclasses.replace(spec, prompt_field=spec.prompt_field.format(src=src),
                                          reference_field=spec.reference_field.format(tgt=tgt))
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


def _resolve_languages(dataset: Any, source_lang: str | None, target_lang: str | None, prompt_field: str | None,
                       reference_field: str | None) -> tuple[str, str]:
    """``(source, target)``: the arguments, else the languages the fields name, else the data's defaults."""
    for lang, field, which in ((source_lang, prompt_field, "source_lang"),
                               (target_lang, reference_field, "target_lang")):
        named = language_of_field(field)
        if lang is not None and named is not None and _base(lang) != _base(named):
            kind = "prompt_field" if which == "source_lang" else "reference_field"
            raise TextEnvsError(
                f"{which}={lang!r} but {kind}={field!r} reads {LANGUAGE_NAMES.get(named, named)} ({named!r}) text: "
                f"make them agree, or leave {which} out to take it from the field."
            )
    src = source_lang or language_of_field(prompt_field)
    tgt = target_lang or language_of_field(reference_field)
    if dataset is None:
        src = src or ("syn" if tgt == "en" else "en")
        tgt = tgt or _EMBEDDED_DEFAULT_TARGET.get(src)
    elif isinstance(dataset, str) and dataset in HUB_DATASETS:
        default = HUB_DATASETS[dataset].default_langs or ("en", None)
        if src is None and tgt is not None and tgt == default[0]:
            src = default[1]  # e.g. wmt19 with only target_lang="zh": the other direction of its default
        src = src or default[0]
        if tgt is None:
            tgt = default[1] if src != default[1] else default[0]
    else:
        src = src or "en"
    if tgt is None:
        raise TextEnvsError(
            "MachineTranslation-v0 needs target_lang=... (e.g. 'zh') for this data set, or a reference_field "
            "whose last part names it (e.g. reference_field='translation.zh')."
        )
    if src == tgt:
        raise TextEnvsError(f"source_lang and target_lang must differ, got {src!r} for both.")
    return src, tgt
