"""text-envs: Gymnasium environments in which writing text is a reinforcement-learning problem.

``import text_envs`` registers the environments below and imports no torch, transformers or datasets;
the heavy modules load on ``gym.make``.

>>> import gymnasium as gym, text_envs
>>> env = gym.make("TextSummarization-v0")
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

if "torch" not in sys.modules:
    # torch's OpenMP threads spin while they wait: beside any other work on the cores a run falls 5-80x behind
    # (docs/guides/performance.md). Read once, when torch loads; a value already set is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

#: Every env id this package registers, with its entry point.
ENV_IDS: dict[str, str] = {
    "TextSummarization-v0": "text_envs.tasks.summarization:TextSummarizationEnv",
    "DialogueGeneration-v0": "text_envs.tasks.dialogue:DialogueGenerationEnv",
    "MachineTranslation-v0": "text_envs.tasks.translation:MachineTranslationEnv",
    "TextCopy-v0": "text_envs.tasks.copy:TextCopyEnv",
    "TextContinuation-v0": "text_envs.tasks.continuation:TextContinuationEnv",
}

#: The natively vectorized env of each id (``gym.make_vec(id, num_envs=N)``: N episodes stepped as arrays).
VECTOR_ENTRY_POINTS: dict[str, str] = {
    "TextSummarization-v0": "text_envs.vector.tasks:TextSummarizationVectorEnv",
    "DialogueGeneration-v0": "text_envs.vector.tasks:DialogueGenerationVectorEnv",
    "MachineTranslation-v0": "text_envs.vector.tasks:MachineTranslationVectorEnv",
    "TextCopy-v0": "text_envs.tasks.copy_vector:TextCopyVectorEnv",
    "TextContinuation-v0": "text_envs.vector.tasks:TextContinuationVectorEnv",
}

for _env_id, _entry_point in ENV_IDS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point=_entry_point,
            vector_entry_point=VECTOR_ENTRY_POINTS.get(_env_id),
            # One episode is one text: its own token budget ends it (terminated), so no TimeLimit here.
            reward_threshold=0.9 if _env_id == "TextCopy-v0" else None,
        )

# Public names served lazily so that `import text_envs` stays light.
_LAZY = {
    "TextGenerationEnv": "text_envs.core",
    "TextGenerationVectorEnv": "text_envs.vector",
    "make_vector_env": "text_envs.vector",
    "make_reward": "text_envs.rewards",
    "list_rewards": "text_envs.rewards",
    "register_reward": "text_envs.rewards",
    "Reward": "text_envs.rewards",
    "RewardError": "text_envs.rewards",
    "evaluate": "text_envs.evaluation",
    "EvaluationResult": "text_envs.evaluation",
    "load_tokenizer": "text_envs.tokenization",
}

__all__ = ["ENV_IDS", "VECTOR_ENTRY_POINTS", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'text_envs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
