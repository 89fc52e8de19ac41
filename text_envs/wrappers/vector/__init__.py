"""Wrappers of the native vector env (:class:`text_envs.vector.TextGenerationVectorEnv`), as
``gymnasium.wrappers.vector``: :class:`SelfCriticalVectorReward` and the :class:`VectorBaseline` it batches."""

from __future__ import annotations

from text_envs.wrappers.vector.self_critical import SelfCriticalVectorReward, VectorBaseline

__all__ = ["SelfCriticalVectorReward", "VectorBaseline"]
