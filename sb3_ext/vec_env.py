"""An SB3 ``VecEnv`` over the natively vectorized text env (:class:`text_envs.vector.TextGenerationVectorEnv`).

``TextVecEnv`` gives SB3 what ``make_vec_env(env_id, n_envs, ...)`` with ``DummyVecEnv`` gives it, from N episodes
stepped as arrays: auto-reset inside ``step_wait`` (the env runs in Gymnasium's ``SAME_STEP`` mode, which is SB3's
semantics), ``terminal_observation`` and ``TimeLimit.truncated`` in the infos, the ``Monitor`` episode record
(``info["episode"]`` with the task reward's return, length, time and ``info_keywords``), and, with
``baseline=True``, the per-prompt baseline of :class:`text_envs.wrappers.SelfCriticalReward` (outside the
monitor, as ``make_train_env`` stacks them) batched by :class:`text_envs.wrappers.vector.VectorBaseline`.
``tests/test_vector_env.py`` checks every array and info against ``DummyVecEnv`` over single envs.

Attributes: ``get_attr(name)`` returns, for every index, the attribute of the task's single env (tokenizer, token
ids, spaces, ``unwrapped``...: what every row shares) or ``baseline_fn``; ``set_attr("baseline_fn", fn)`` sets the
baseline's function; ``env_method(name, ...)`` calls a method of that single env (``example_text``,
``encode_prompt``, ``decode``...). Per-row episode state lives in the vector env's arrays (``.venv``), not in
per-row objects.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from text_envs.errors import TextEnvsError
from text_envs.state import attribute_state, set_attribute_state
from text_envs.vector import TextGenerationVectorEnv, make_vector_env
from text_envs.wrappers.vector import VectorBaseline

__all__ = ["TextVecEnv", "make_text_vec_env"]


class TextVecEnv(VecEnv):
    """SB3 ``VecEnv`` over a :class:`~text_envs.vector.TextGenerationVectorEnv` (see the module docstring).

    :param venv: the native vector env; it must use ``autoreset_mode=SAME_STEP`` (:func:`make_text_vec_env` builds
        one).
    :param baseline: subtract the per-prompt baseline reward from each finished text's reward (set
        ``baseline_fn`` with ``set_attr("baseline_fn", fn)`` before the first episode ends).
    :param info_keywords: final-info keys copied into ``info["episode"]``, as ``Monitor(info_keywords=...)``.
    :param baseline_batch_size: the most prompts per ``baseline_fn`` call.
    """

    def __init__(self, venv: TextGenerationVectorEnv, *, baseline: bool = False,
                 info_keywords: Sequence[str] = (), baseline_batch_size: int = 64) -> None:
        if not isinstance(venv, TextGenerationVectorEnv):
            raise TextEnvsError(f"TextVecEnv wraps a text_envs.vector.TextGenerationVectorEnv, "
                                f"got {type(venv).__name__}.")
        if venv.autoreset_mode != gym.vector.AutoresetMode.SAME_STEP:
            raise TextEnvsError(f"SB3 resets finished envs inside step(): build the vector env with autoreset_mode="
                                f"SAME_STEP, got {venv.autoreset_mode}.")
        self.venv = venv
        self.baseline = VectorBaseline(venv, batch_size=baseline_batch_size) if baseline else None
        self.info_keywords = tuple(info_keywords)
        n = venv.num_envs
        super().__init__(n, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._ep_return = np.zeros(n, dtype=np.float64)
        self._ep_len = np.zeros(n, dtype=np.int64)
        self._t_start = time.time()
        self.episode_returns: list[float] = []  # as Monitor.get_episode_rewards(), all envs together
        self.episode_lengths: list[int] = []

    @property
    def group_size(self) -> int:
        """``k``: envs ``[g*k, (g+1)*k)`` write for the same example (1: no groups)."""
        return self.venv.group_size

    @property
    def idle_rows(self) -> np.ndarray:
        """(N,) bool: the envs whose action the next step ignores (waiting for their group's others)."""
        return self.venv.idle_rows

    # ------------------------------------------------------------------ state (text_envs.state.Stateful)
    #: what :meth:`get_state` saves: the episode records (as ``Monitor``'s) and SB3's pending reset seeds and infos;
    #: the vector env and the baseline inside are separate pieces with their own state
    STATE_ATTRIBUTES = ("reset_infos", "_seeds", "_options", "_ep_return", "_ep_len", "_t_start", "episode_returns",
                        "episode_lengths")

    def get_state(self) -> dict[str, Any]:
        """The episode records and pending resets, as data."""
        return attribute_state(self, self.STATE_ATTRIBUTES)

    def set_state(self, state: dict[str, Any]) -> None:
        """Put back a state :meth:`get_state` returned."""
        set_attribute_state(self, self.STATE_ATTRIBUTES, state)

    # ------------------------------------------------------------------ stepping
    def reset(self) -> VecEnvObs:
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        if any(self._options):
            raise TextEnvsError(f"TextVecEnv takes no reset options, got {self._options}.")
        obs, info = self.venv.reset(seed=seeds)
        indices = info.get("example_index", np.full(self.num_envs, -1)).tolist()
        self.reset_infos = [{"example_index": i} for i in indices]
        self._ep_return[:] = 0.0
        self._ep_len[:] = 0
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        res = self.venv.step_arrays(self._actions)
        self._ep_return += res.rewards
        self._ep_len += 1
        rewards = res.rewards
        infos = [{"TimeLimit.truncated": False} for _ in range(self.num_envs)]
        rows = res.final_rows
        if len(rows):
            row_list = rows.tolist()
            returns, lengths = self._ep_return[rows].tolist(), self._ep_len[rows].tolist()
            elapsed = round(time.time() - self._t_start, 6)
            if self.baseline is not None:
                texts, values = self.baseline.values([info["example_index"] for info in res.final_infos])
                rewards = rewards.copy()
                rewards[rows] -= values
            for k, row in enumerate(row_list):
                info = res.final_infos[k]
                episode = {"r": round(returns[k], 6), "l": lengths[k], "t": elapsed}
                for key in self.info_keywords:
                    episode[key] = info[key]
                info["episode"] = episode
                if self.baseline is not None:
                    info["baseline_text"], info["baseline_reward"] = texts[k], float(values[k])
                info["TimeLimit.truncated"] = False
                info["terminal_observation"] = {key: value[k] for key, value in res.final_obs.items()}
                infos[row] = info
                self.reset_infos[row] = {"example_index": int(res.reset_indices[k])}
            self.episode_returns += returns
            self.episode_lengths += lengths
            self._ep_return[rows] = 0.0
            self._ep_len[rows] = 0
        return res.obs, rewards.astype(np.float32), res.terminated.copy(), infos

    def close(self) -> None:
        self.venv.close()

    # ------------------------------------------------------------------ attributes
    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "baseline_fn" and self.baseline is not None:
            value = self.baseline.baseline_fn
        elif attr_name == "render_mode":
            value = self.venv.render_mode
        else:
            value = getattr(self.venv.single_env, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if attr_name == "baseline_fn" and self.baseline is not None:
            self.baseline.baseline_fn = value
            return
        if self._indices(indices) != list(range(self.num_envs)):
            raise TextEnvsError(f"the native vector env shares {attr_name!r} between its rows: set it for all of them "
                                "(indices=None).")
        setattr(self.venv.single_env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        method = getattr(self.venv.single_env, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """True for ``Monitor`` (episode records are kept) and, with ``baseline=True``, ``SelfCriticalReward``."""
        from stable_baselines3.common.monitor import Monitor

        from text_envs.wrappers import SelfCriticalReward

        wrapped = issubclass(Monitor, wrapper_class) or (self.baseline is not None
                                                         and issubclass(SelfCriticalReward, wrapper_class))
        return [wrapped for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        raise NotImplementedError("the native text vector env renders text only (render_mode='ansi').")


def make_text_vec_env(env_id: str, n_envs: int, *, seed: int | None = None, env_kwargs: dict[str, Any] | None = None,
                      baseline: bool | str = False, info_keywords: Iterable[str] = ("generated_length",),
                      baseline_batch_size: int = 64, group_size: int = 1) -> TextVecEnv:
    """The native counterpart of ``make_vec_env(env_id, n_envs, seed=seed, env_kwargs=env_kwargs,
    monitor_kwargs={"info_keywords": info_keywords}, wrapper_class=SelfCriticalReward if baseline)``: the same
    episodes, rewards and infos, stepped as arrays. ``baseline="auto"``: a baseline if the task scores finished
    texts (all but ``TextCopy-v0``, paid per token). ``group_size=k``: envs ``[g*k, (g+1)*k)`` write for the same
    example in lockstep (group sampling for ``sb3_ext.GRPO`` and the other group algorithms; see
    :class:`text_envs.vector.TextGenerationVectorEnv`); ``n_envs`` must be a multiple of it."""
    venv = make_vector_env(env_id, n_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, group_size=group_size,
                           **(env_kwargs or {}))
    if baseline == "auto":
        baseline = venv.single_env.reward is not None
    elif not isinstance(baseline, bool):
        raise TextEnvsError(f"baseline must be True, False or 'auto', got {baseline!r}.")
    vec = TextVecEnv(venv, baseline=baseline, info_keywords=tuple(info_keywords),
                     baseline_batch_size=baseline_batch_size)
    vec.seed(seed)
    return vec
