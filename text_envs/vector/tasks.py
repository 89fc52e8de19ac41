"""The vector entry points of the text tasks (``gym.make_vec(id, num_envs=N)``) and :func:`make_vector_env`.

Each class names the single-env task it batches; :class:`text_envs.tasks.copy_vector.TextCopyVectorEnv`, which
computes the copy task's per-token rewards as arrays, lives beside its task.
"""

from __future__ import annotations

from typing import Any

from gymnasium.vector import AutoresetMode

from text_envs.core import TextGenerationEnv
from text_envs.vector.env import TextGenerationVectorEnv, load_entry_point

__all__ = [
    "TextSummarizationVectorEnv",
    "DialogueGenerationVectorEnv",
    "MachineTranslationVectorEnv",
    "TextContinuationVectorEnv",
    "make_vector_env",
]


class TextSummarizationVectorEnv(TextGenerationVectorEnv):
    """``TextSummarization-v0``'s vector entry point (see :class:`TextGenerationVectorEnv`)."""

    task_entry_point = "text_envs.tasks.summarization:TextSummarizationEnv"


class DialogueGenerationVectorEnv(TextGenerationVectorEnv):
    """``DialogueGeneration-v0``'s vector entry point (see :class:`TextGenerationVectorEnv`)."""

    task_entry_point = "text_envs.tasks.dialogue:DialogueGenerationEnv"


class MachineTranslationVectorEnv(TextGenerationVectorEnv):
    """``MachineTranslation-v0``'s vector entry point (see :class:`TextGenerationVectorEnv`)."""

    task_entry_point = "text_envs.tasks.translation:MachineTranslationEnv"


class TextContinuationVectorEnv(TextGenerationVectorEnv):
    """``TextContinuation-v0``'s vector entry point (see :class:`TextGenerationVectorEnv`)."""

    task_entry_point = "text_envs.tasks.continuation:TextContinuationEnv"


def make_vector_env(env: str | TextGenerationEnv, num_envs: int,
                    autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, group_size: int = 1,
                    **task_kwargs: Any) -> TextGenerationVectorEnv:
    """The native vector env of a registered env id (``task_kwargs`` as for ``gym.make``) or of a built single env
    (its data, tokenizer and reward are shared); ``group_size``: see :class:`TextGenerationVectorEnv`."""
    if isinstance(env, str):
        env_id = env.split(":")[-1]
        from text_envs import VECTOR_ENTRY_POINTS
        from text_envs.errors import unknown_name

        if env_id not in VECTOR_ENTRY_POINTS:
            raise unknown_name("env id with a native vector env", env_id, VECTOR_ENTRY_POINTS)
        return load_entry_point(VECTOR_ENTRY_POINTS[env_id])(num_envs, autoreset_mode=autoreset_mode,
                                                             group_size=group_size, **task_kwargs)
    from text_envs.tasks.copy import TextCopyEnv
    from text_envs.tasks.copy_vector import TextCopyVectorEnv

    cls = TextCopyVectorEnv if isinstance(env.unwrapped, TextCopyEnv) else TextGenerationVectorEnv
    return cls(num_envs, autoreset_mode=autoreset_mode, env=env, group_size=group_size, **task_kwargs)
