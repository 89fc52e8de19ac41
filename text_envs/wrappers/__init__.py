"""Gymnasium wrappers for the text envs, a module per concern (laid out as ``gymnasium.wrappers``).

================================  ===================================================================
module                            what it holds
================================  ===================================================================
:mod:`.self_critical`             :class:`SelfCriticalReward` (reward minus a per-prompt baseline's)
                                  and :class:`BaselinePool` (baseline decodings shared by envs)
:mod:`.baselines`                 :data:`BaselineFn` and the decoding cache and scoring both the
                                  single-env and the vector wrappers use
:mod:`text_envs.wrappers.vector`  wrappers of the native vector env (:class:`VectorBaseline`,
                                  :class:`SelfCriticalVectorReward`)
================================  ===================================================================
"""

from __future__ import annotations

from text_envs.deprecation import moved_names
from text_envs.wrappers.baselines import BaselineFn
from text_envs.wrappers.self_critical import BaselinePool, SelfCriticalReward

__all__ = ["SelfCriticalReward", "BaselinePool", "BaselineFn"]

# helpers that were private here before the split (text_envs 0.1): served with a FutureWarning
__getattr__ = moved_names(__name__, {
    "_prompt_key": "text_envs.wrappers.baselines:prompt_key",
    "_store_decodings": "text_envs.wrappers.baselines:store_decodings",
    "_score_baselines": "text_envs.wrappers.baselines:score_baselines",
})
