"""TextContinuation-v0: continue the opening of a text (a review); by default the reward is its positive sentiment."""

from __future__ import annotations

import functools
import re
from typing import Any

from text_envs.core import TextGenerationEnv
from text_envs.data.sources import Example, HubDatasetSpec
from text_envs.errors import TextEnvsError
from text_envs.tasks.common import Template, as_references, build_source, render_template

HUB_DATASETS = {
    # IMDB's rows are {"text": review, "label": 0/1}: the prompt is the review's first `prompt_words` words
    "imdb": HubDatasetSpec("stanfordnlp/imdb", "text", None),
}
EMBEDDED_FIELDS = ("prompt", "continuation")
FILE_FIELDS = ("text", None)
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def _clean(text: Any) -> str:
    """IMDB's reviews carry ``<br />`` line breaks; every text is stripped and its whitespace collapsed."""
    return " ".join(_HTML_BREAK.sub(" ", str(text)).split())


def _to_example(template: Template, prompt_words: int, text: Any, reference: Any) -> Example:
    if reference is None:  # one text column: its opening is the prompt, the rest the true continuation
        words = _clean(text).split(" ")
        prompt, rest = " ".join(words[:prompt_words]), " ".join(words[prompt_words:])
        refs: tuple[str, ...] = (rest,) if rest else ("",)  # a text no longer than the prompt: no reference
    else:
        prompt = _clean(text)
        refs = as_references(reference) or ("",)
    return Example(render_template(template, text=prompt), refs)


class TextContinuationEnv(TextGenerationEnv):
    """Continue the opening of a text; the default reward is the positive sentiment of the continuation.

    The classic preference task of RL for language models (Ziegler et al. 2019; RL4LMs' IMDB task; TRL's
    sentiment example): the references continue in either direction, half of them negatively, while the
    reward prefers positive text, so imitation of the references cannot reach what RL can. Pair it with the
    KL penalty to the start model and watch the start model's perplexity of the generations
    (``sb3_ext.fluency.start_model_perplexity``) so that "great great great" is seen for what it is.

    ## Data
    By default the embedded generator (:func:`text_envs.data.reviews.review_row`): seeded, procedurally
    generated film, restaurant and product reviews, half positive and half negative; the prompt is the
    review's opening (who went where, when: no opinion yet), the reference its true continuation.
    ``train``/``validation``/``test`` splits with disjoint openings, and ``difficulty`` 1-3 (longer openings
    and continuations; at 3 a contrasting sentence makes reviews mixed).
    ``dataset="imdb"`` loads the hub's IMDB reviews (network needed): the prompt is the first
    ``prompt_words`` words of ``text``, the reference the rest of it. A local ``.json``/``.jsonl``/``.csv``
    file, a ``datasets.Dataset`` or a list of rows work the same way with ``prompt_field`` (default
    ``"text"``); with ``reference_field`` as well, ``prompt_field`` is the whole prompt and
    ``reference_field`` its continuation.

    ## Spaces, rewards, episode end
    See :class:`text_envs.core.TextGenerationEnv`. Default reward ``"sentiment"`` (VADER's compound score of the
    generated continuation mapped to [0, 1]; no model). ``reward="sentiment-classifier"`` uses the shipped tiny
    classifier instead, or any ``{"name": "learned", "model": ...}``. The references only serve
    reference-based metrics and supervised warm starts. Long prompts keep their beginning
    (``truncation_side="right"``).

    ## Arguments
    :param dataset: None (embedded), ``"imdb"``, a ``datasets.Dataset``, rows, or a local file path.
    :param split: ``"train"``, ``"validation"`` or ``"test"`` (IMDB has ``train``/``test``/``unsupervised``; a
        local file is one split whatever this says); the embedded data also has ``"ood"``: 400 openings worded
        unlike the generator's, with held-out templates and vocabulary (:mod:`text_envs.data.reviews_ood`), to
        evaluate how a model trained on the generator's openings behaves on other wording.
    :param prompt_field: dotted column name of the text (of the prompt when ``reference_field`` is given).
    :param reference_field: dotted column name of the continuation; None: split ``prompt_field``'s text.
    :param prompt_words: the number of words of a text that form the prompt when it is split (default 16).
    :param prompt_template: format string with ``{text}`` (default ``"continue: {text}"``) or a callable.
    :param tokenizer: None (the shipped tokenizer), a Hugging Face tokenizer name/path, or a tokenizer.
    :param difficulty: embedded data only: 1, 2 or 3.
    :param dataset_config: the hub configuration, when not the registered default.
    :param varied_openings: embedded data only: the share (0-1) of the **train** split's openings written from a
        second family of templates and vocabulary (:mod:`text_envs.data.reviews_varied`), so that the KL penalty
        is paid on more than one way of writing an opening; disjoint from the ``"ood"`` openings, which stay
        unseen. The other splits are not changed (default 0: the generator's openings only).
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
        prompt_words: int = 16,
        prompt_template: Template = "continue: {text}",
        tokenizer: Any = None,
        difficulty: int = 1,
        dataset_config: str | None = None,
        varied_openings: float = 0.0,
        reward: Any = "sentiment",
        max_prompt_tokens: int = 64,
        max_new_tokens: int = 48,
        truncation_side: str = "right",
        **kwargs: Any,
    ) -> None:
        from text_envs.data.reviews_ood import REVIEW_SPLIT_SIZES, review_row_with_ood
        from text_envs.data.reviews_varied import check_varied_share, review_row_with_varied_train
        from text_envs.tokenization import load_tokenizer

        if isinstance(prompt_words, bool) or not isinstance(prompt_words, int) or prompt_words < 1:
            raise TextEnvsError(f"prompt_words must be a positive integer, got {prompt_words!r}.")
        if dataset is None and prompt_field is None and reference_field is None:
            fields: tuple[str, str | None] = EMBEDDED_FIELDS
        else:
            fields = FILE_FIELDS
        self.prompt_words = prompt_words
        self.varied_openings = check_varied_share(varied_openings)
        if self.varied_openings and (dataset is not None or fields is not EMBEDDED_FIELDS):
            raise TextEnvsError("varied_openings mixes openings into the embedded train split: leave it out (or 0) "
                                "with dataset=... or prompt_field/reference_field.")
        embedded = (functools.partial(review_row_with_varied_train, self.varied_openings) if self.varied_openings
                    else review_row_with_ood)
        source = build_source(
            dataset=dataset,
            split=split,
            embedded=embedded,
            embedded_sizes=REVIEW_SPLIT_SIZES,
            difficulty=difficulty,
            hub_specs=HUB_DATASETS,
            hub_config=lambda spec: dataset_config or spec.config,
            default_fields=fields,
            prompt_field=prompt_field,
            reference_field=reference_field,
            to_example=functools.partial(_to_example, prompt_template, prompt_words),
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
