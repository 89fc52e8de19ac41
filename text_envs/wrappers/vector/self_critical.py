"""Per-prompt baseline rewards for the native vector env, batched over its rows.

:class:`VectorBaseline` is the batched counterpart of :class:`text_envs.wrappers.SelfCriticalReward` (the same
texts and values), used by :class:`SelfCriticalVectorReward` and by the SB3 adapter (``sb3_ext.vec_env``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from text_envs.errors import TextEnvsError
from text_envs.state import attribute_state, set_attribute_state
from text_envs.vector.env import TextGenerationVectorEnv
from text_envs.wrappers.baselines import prompt_key, score_baselines, store_decodings

__all__ = ["VectorBaseline", "SelfCriticalVectorReward"]


class VectorBaseline:
    """Per-prompt baseline rewards for the episodes of a :class:`TextGenerationVectorEnv`, batched.

    The batched counterpart of :class:`text_envs.wrappers.SelfCriticalReward` (same texts and values for a
    ``baseline_fn`` that depends on the prompt only): when episodes end whose prompts have no baseline yet, one
    ``baseline_fn`` call decodes them, the prompts the other rows are writing for and the rows' next draws
    (round robin), up to ``batch_size``; the examples decoded are scored in one ``reward.compute`` call; texts and
    values are cached per example.

    :param venv: the native vector env (its task must have a reward).
    :param baseline_fn: see :data:`text_envs.wrappers.BaselineFn`; may be set later (``.baseline_fn = fn``).
    :param batch_size: the most prompts per ``baseline_fn`` call (at least the episodes that need one).
    :param cache_size: baselines kept.
    """

    def __init__(self, venv: TextGenerationVectorEnv, baseline_fn: Any = None, batch_size: int = 64,
                 cache_size: int = 100_000) -> None:
        if venv.single_env.reward is None:
            raise TextEnvsError(f"a per-prompt baseline needs a task with a text reward; "
                                f"{type(venv.single_env).__name__} has none.")
        if batch_size < 1 or cache_size < batch_size:
            raise TextEnvsError(f"expected 1 <= batch_size <= cache_size, got {batch_size} and {cache_size}")
        self.venv = venv
        self.batch_size, self.cache_size = int(batch_size), int(cache_size)
        self.calls = 0
        self._decoded: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._scored: OrderedDict[int, tuple[str, float]] = OrderedDict()
        self.baseline_fn = baseline_fn

    @property
    def baseline_fn(self) -> Any:
        """See :data:`text_envs.wrappers.BaselineFn`. Setting a function (again) drops every cached decoding and
        score, as :class:`text_envs.wrappers.BaselinePool` does: the new function (or the same one over a model that
        changed) decides the baselines from then on."""
        return self._baseline_fn

    @baseline_fn.setter
    def baseline_fn(self, fn: Any) -> None:
        if fn is not None and not callable(fn):
            raise TextEnvsError(f"expected baseline_fn to be a function prompts -> ids (or None), "
                                f"got {type(fn).__name__}")
        self._baseline_fn = fn
        if fn is not None:
            self._decoded.clear()
            self._scored.clear()

    #: what :meth:`get_state` saves: the decodings, their scores and the call count (not ``baseline_fn``)
    STATE_ATTRIBUTES = ("calls", "_decoded", "_scored")

    def get_state(self) -> dict[str, Any]:
        """The cached decodings and scores, as data (:class:`text_envs.state.Stateful`)."""
        return attribute_state(self, self.STATE_ATTRIBUTES)

    def set_state(self, state: dict[str, Any]) -> None:
        """Put back a state :meth:`get_state` returned (after ``baseline_fn`` is set: setting it empties the
        caches)."""
        set_attribute_state(self, self.STATE_ATTRIBUTES, state)

    def values(self, indices: Sequence[int]) -> tuple[list[str], np.ndarray]:
        """Baseline texts and rewards of examples ``indices`` (the episodes that just ended)."""
        missing = list(dict.fromkeys(i for i in indices if i not in self._scored))
        if missing:
            self._prepare(missing)
        texts, values = [], np.empty(len(indices), dtype=np.float64)
        for k, i in enumerate(indices):
            text, value = self._scored[i]
            self._scored.move_to_end(i)
            texts.append(text)
            values[k] = value
        return texts, values

    def _prepare(self, missing: list[int]) -> None:
        if self.baseline_fn is None:
            raise TextEnvsError("The per-prompt baseline has no baseline_fn: set it before the first step "
                                "(vec_env.set_attr('baseline_fn', fn), or .baseline_fn = fn).")
        venv = self.venv
        wanted: dict[bytes, np.ndarray] = {}
        to_score: dict[int, bytes] = {}

        def want(index: int, required: bool) -> bool:
            """Queue example ``index``; False once the batch is full (required ones always fit)."""
            if index in to_score or (not required and index in self._scored):
                return True
            prompt = venv.prompt(index)
            key = prompt_key(prompt)
            if key not in self._decoded and key not in wanted:
                if not required and len(wanted) >= self.batch_size:
                    return False
                wanted[key] = prompt
            to_score[index] = key
            return True

        for i in missing:
            want(i, True)
        full = False
        for i in venv.example_indices.tolist():  # then the texts being written now, then each row's next draws
            if i >= 0 and not want(i, False):
                full = True
                break
        if not full:
            upcoming = [venv.upcoming_examples(r, self.batch_size) for r in range(venv.num_envs)]
            for depth in range(max(map(len, upcoming), default=0)):
                if not all(want(u[depth], False) for u in upcoming if depth < len(u)):
                    break
        if wanted:
            outputs = list(self.baseline_fn(list(wanted.values())))
            self.calls += 1
            store_decodings(self._decoded, wanted, outputs, self.cache_size)
        decoded = {i: self._decoded[key] for i, key in to_score.items() if key in self._decoded}
        env = self.venv.single_env
        score_baselines(env, decoded, [env.source[i] for i in decoded], self._scored, self.cache_size)


class SelfCriticalVectorReward(gym.vector.VectorWrapper):
    """Gymnasium vector wrapper: subtract each finished text's per-prompt baseline reward (see
    :class:`VectorBaseline`) from its final reward, in either auto-reset mode. The final info gains
    ``baseline_text`` and ``baseline_reward`` (``info["reward"]`` keeps the task reward).

    :param env: a :class:`TextGenerationVectorEnv` (``gym.make_vec(..., vectorization_mode="vector_entry_point")``).
    :param baseline_fn: see :data:`text_envs.wrappers.BaselineFn`; may be set later (``wrapper.baseline_fn = fn``).
    :param batch_size: prompts per ``baseline_fn`` call.
    """

    def __init__(self, env: gym.vector.VectorEnv, baseline_fn: Any = None, batch_size: int = 64) -> None:
        super().__init__(env)
        if not isinstance(env.unwrapped, TextGenerationVectorEnv):
            raise TextEnvsError(f"SelfCriticalVectorReward wraps a native text vector env, "
                                f"got {type(env.unwrapped).__name__}.")
        self.baseline = VectorBaseline(env.unwrapped, baseline_fn, batch_size=batch_size)

    @property
    def baseline_fn(self) -> Any:
        """The baseline decoding function."""
        return self.baseline.baseline_fn

    @baseline_fn.setter
    def baseline_fn(self, fn: Any) -> None:
        self.baseline.baseline_fn = fn

    def step(self, actions: Any):
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        if not terminated.any():
            return obs, rewards, terminated, truncated, infos
        src = infos["final_info"] if "final_info" in infos else infos
        rows = np.flatnonzero(terminated)
        texts, values = self.baseline.values(src["example_index"][rows].tolist())
        rewards = np.asarray(rewards, dtype=np.float64).copy()
        rewards[rows] -= values
        n = self.num_envs
        src["baseline_text"] = np.full(n, None, dtype=object)
        src["baseline_reward"] = np.zeros(n, dtype=np.float64)
        src["baseline_text"][rows] = texts
        src["baseline_reward"][rows] = values
        src["_baseline_text"] = terminated.copy()
        src["_baseline_reward"] = terminated.copy()
        return obs, rewards, terminated, truncated, infos
