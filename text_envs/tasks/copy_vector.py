"""``TextCopy-v0``'s native vector env: the copy task's per-token rewards and metrics as array operations."""

from __future__ import annotations

from typing import Any

import numpy as np

from text_envs.core import TextGenerationEnv
from text_envs.errors import TextEnvsError
from text_envs.tasks.copy import TextCopyEnv
from text_envs.vector.env import TextGenerationVectorEnv

__all__ = ["TextCopyVectorEnv"]


class TextCopyVectorEnv(TextGenerationVectorEnv):
    """``TextCopy-v0``'s vector entry point: its per-token rewards and metrics as array operations."""

    task_entry_point = "text_envs.tasks.copy:TextCopyEnv"
    #: :meth:`get_state` also saves each row's tokens written right so far
    STATE_ATTRIBUTES = TextGenerationVectorEnv.STATE_ATTRIBUTES + ("_correct",)

    def _check_supported(self, env: TextGenerationEnv) -> None:
        if type(env) is not TextCopyEnv:
            raise TextEnvsError(f"TextCopyVectorEnv batches TextCopyEnv, got {type(env).__name__}.")

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        self._correct = np.zeros(self.num_envs, dtype=np.int64)

    def _prompt_rows(self, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._row_examples_clear(rows)
        return self.single_env.prompt_rows(indices)

    def _row_examples_clear(self, rows: np.ndarray) -> None:
        for row in rows.tolist():
            if row >= 0:
                self._row_examples[row] = None

    def _on_reset_rows(self, rows: np.ndarray, indices: np.ndarray) -> None:
        self._correct[rows] = 0

    def _token_rewards(self, rows: np.ndarray, t: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        env = self.single_env
        L = env.length
        targets = env.targets[self._index[rows], np.minimum(t, L)]
        hit = (t <= L) & (tokens == targets)
        self._correct[rows] += hit
        return np.where(hit, 1.0 / (L + 1), 0.0)

    def _extra_metrics(self, rows: np.ndarray) -> list[dict[str, float]]:
        L = self.single_env.length
        return [{"token_accuracy": c / (L + 1), "exact_match": float(c == L + 1)} for c in self._correct[rows].tolist()]
