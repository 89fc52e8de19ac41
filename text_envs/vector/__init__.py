"""Natively vectorized text envs: N episodes of one task stepped with NumPy arrays.

``gym.make_vec("TextSummarization-v0", num_envs=N)`` returns the task's :class:`TextGenerationVectorEnv` (see
:mod:`text_envs.vector.env` for its semantics: same episodes as N single envs, Gymnasium's auto-reset modes, group
sampling). :func:`make_vector_env` builds one from an env id or a built single env.

================================  ========================================================================
module                            what it holds
================================  ========================================================================
:mod:`text_envs.vector.env`       :class:`TextGenerationVectorEnv` and :class:`StepResult`
:mod:`text_envs.vector.tasks`     the tasks' vector entry points and :func:`make_vector_env`
================================  ========================================================================

The copy task's vector env is :class:`text_envs.tasks.copy_vector.TextCopyVectorEnv`; the per-prompt baseline
wrappers are in :mod:`text_envs.wrappers.vector`.
"""

from __future__ import annotations

from text_envs.deprecation import moved_names
from text_envs.vector.env import StepResult, TextGenerationVectorEnv
from text_envs.vector.tasks import (
    DialogueGenerationVectorEnv,
    MachineTranslationVectorEnv,
    TextContinuationVectorEnv,
    TextSummarizationVectorEnv,
    make_vector_env,
)

__all__ = [
    "TextGenerationVectorEnv",
    "TextSummarizationVectorEnv",
    "DialogueGenerationVectorEnv",
    "MachineTranslationVectorEnv",
    "TextContinuationVectorEnv",
    "StepResult",
    "make_vector_env",
]

# names that lived here in text_envs 0.1 and moved beside what they belong to: served with a FutureWarning
__getattr__ = moved_names(__name__, {
    "TextCopyVectorEnv": "text_envs.tasks.copy_vector:TextCopyVectorEnv",
    "VectorBaseline": "text_envs.wrappers.vector:VectorBaseline",
    "SelfCriticalVectorReward": "text_envs.wrappers.vector:SelfCriticalVectorReward",
})
