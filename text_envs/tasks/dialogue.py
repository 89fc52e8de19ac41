"""DialogueGeneration-v0: write the next reply of a multi-turn conversation."""

from __future__ import annotations

import functools
from typing import Any

from text_envs.core import TextGenerationEnv
from text_envs.data.sources import Example, HubDatasetSpec
from text_envs.errors import TextEnvsError
from text_envs.tasks.common import Template, as_references, build_source, render_template

HUB_DATASETS = {
    "daily_dialog": HubDatasetSpec("li2017dailydialog/daily_dialog", "dialog", None),
}
SPEAKERS = ("A", "B")


def _to_example(template: Template, turns: Any, reply: Any) -> Example:
    if isinstance(turns, str):  # a single history string (a local file's column)
        history_turns, refs = [turns], reply
    else:
        turns = [str(t).strip() for t in turns if t is not None and str(t).strip()]
        if reply is None:  # the conversation's last turn is the reply to write
            if len(turns) < 2:
                raise TextEnvsError(f"A dialogue needs at least two turns (history + reply), got {turns!r}.")
            history_turns, refs = turns[:-1], turns[-1]
        else:
            history_turns, refs = turns, reply
    history = " ".join(f"{SPEAKERS[i % 2]}: {turn}" for i, turn in enumerate(history_turns))
    speaker = SPEAKERS[len(history_turns) % 2]
    return Example(render_template(template, text=history, speaker=speaker), as_references(refs))


class DialogueGenerationEnv(TextGenerationEnv):
    """Write the next reply of a conversation; the reward scores it against the reply that was given.

    ## Data
    By default the embedded generator (:func:`text_envs.data.generators.dialogue_row`): seeded multi-turn
    conversations (shopping, travel, bookings, ...) in DailyDialog's row format ``{"dialog": [turns]}``;
    the last turn is the reference and the earlier turns, tagged ``A:``/``B:`` alternately, the history.
    ``dataset="daily_dialog"`` loads the hub set (network needed); local files and ``datasets.Dataset``
    objects work with ``prompt_field`` (a list of turns, or one history string) and optionally
    ``reference_field`` (then every turn of ``prompt_field`` is history).

    ## Spaces, rewards, episode end
    See :class:`text_envs.core.TextGenerationEnv`. Default reward ``"meteor"``. Long histories keep their most
    recent turns (``truncation_side="left"``): the oldest tokens, the template's prefix included, go first.

    ## Arguments
    :param prompt_template: format string with ``{text}`` (the tagged history) and ``{speaker}`` (the tag of
        the reply's speaker); default ``"dialogue: {text} {speaker}:"``.
    The others are those of :class:`text_envs.tasks.summarization.TextSummarizationEnv`.

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
        prompt_template: Template = "dialogue: {text} {speaker}:",
        tokenizer: Any = None,
        difficulty: int = 1,
        dataset_config: str | None = None,
        reward: Any = "meteor",
        max_prompt_tokens: int = 256,
        max_new_tokens: int = 32,
        truncation_side: str = "left",
        **kwargs: Any,
    ) -> None:
        from text_envs.data.generators import SPLIT_SIZES, dialogue_row
        from text_envs.tokenization import load_tokenizer

        source = build_source(
            dataset=dataset,
            split=split,
            embedded=dialogue_row,
            embedded_sizes=SPLIT_SIZES,
            difficulty=difficulty,
            hub_specs=HUB_DATASETS,
            hub_config=lambda spec: dataset_config or spec.config,
            default_fields=("dialog", None),
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
