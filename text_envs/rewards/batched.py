"""Score finished episodes of a vector env in one batch, in the main process; the missing-EOS penalty wrapper.

Model-based rewards (``"semantic"``, ``"learned"``) should not run inside the env: with ``SubprocVecEnv`` every
worker would load its own copy of the model, and each episode would be scored alone. Instead run the envs with a
cheap reward (or ``reward=None``, a 0.0 terminal reward) and wrap the *vector* env:

* :class:`BatchedRewardWrapper` for a ``gymnasium.vector.VectorEnv`` (``SyncVectorEnv``/``AsyncVectorEnv``);
* :class:`BatchedRewardVecEnvWrapper` for an SB3 ``VecEnv`` (``DummyVecEnv``/``SubprocVecEnv``), in
  :mod:`sb3_ext.batched_reward` (the SB3 adapter: ``text_envs`` imports no training engine).

What the wrappers need from the env: the final ``info`` of each episode holds ``generated_text`` (str),
``references`` (list of str) and ``prompt_text`` (str) -- the env contract in docs/ARCHITECTURE.md.
At every step where some envs finish, the wrapper scores those episodes with one ``reward.compute`` call and
sets their reward to ``weight * score`` (``mode="replace"``) or adds it (``mode="add"``); the scores are also
written to the final info as ``metrics[name]`` / ``metric/<name>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from text_envs.rewards.base import Reward, RewardError, make_reward

__all__ = ["BatchedRewardWrapper", "MissingEOSPenalty", "score_final_infos", "check_reward_mode"]

_NEEDED = ("generated_text", "references", "prompt_text")


def check_reward_mode(mode: str) -> None:
    """Refuse a batched reward ``mode`` other than ``"replace"`` and ``"add"`` (both wrappers' argument)."""
    if mode not in ("replace", "add"):
        raise RewardError(f"Expected mode 'replace' or 'add', got {mode!r}.")


def score_final_infos(reward: Reward, infos: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """Score the episodes whose final infos are ``infos`` with one ``reward.compute`` call."""
    for k in _NEEDED:
        for info in infos:
            if k not in info:
                raise RewardError(
                    f"Expected the final info of each episode to contain {_NEEDED}, but {k!r} is missing (keys: "
                    f"{sorted(info)}). Batched rewards need text-envs envs (or wrappers) that report the episode's "
                    "texts at episode end."
                )
    return reward.compute(
        [i["generated_text"] for i in infos], [i["references"] for i in infos], [i["prompt_text"] for i in infos]
    )


class BatchedRewardWrapper(gym.vector.VectorWrapper):
    """Score finished episodes of a Gymnasium vector env with ``reward`` in one batch (main process).

    Works with both autoreset modes: ``NEXT_STEP`` (the default; the finishing step's infos carry the final
    info) and ``SAME_STEP`` (``infos["final_info"]``).

    :param env: the vector env.
    :param reward: a reward spec (built with :func:`make_reward`).
    :param mode: ``"replace"`` the env's reward of finished episodes, or ``"add"`` to it.
    :param weight: multiplier of the batched reward.
    """

    def __init__(self, env: gym.vector.VectorEnv, reward: Any, mode: str = "replace", weight: float = 1.0) -> None:
        super().__init__(env)
        check_reward_mode(mode)
        self.reward = make_reward(reward)
        self.mode, self.weight = mode, float(weight)

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        done = np.logical_or(terminated, truncated)
        if not done.any():
            return obs, rewards, terminated, truncated, infos
        idx = np.flatnonzero(done)
        same_step = "final_info" in infos
        src = infos["final_info"] if same_step else infos
        finals = []
        for i in idx:
            finals.append({k: src[k][i] for k in _NEEDED if k in src and src.get("_" + k, np.ones(len(done), bool))[i]})
        scores = score_final_infos(self.reward, finals)
        rewards = np.asarray(rewards, dtype=np.float64).copy()
        total = np.asarray(scores[self.reward.name], dtype=np.float64) * self.weight
        rewards[idx] = total if self.mode == "replace" else rewards[idx] + total
        n = len(done)
        for name, values in scores.items():
            key = f"metric/{name}"
            arr = np.zeros(n, dtype=np.float64)
            arr[idx] = values
            mask = np.zeros(n, dtype=bool)
            mask[idx] = True
            src[key], src["_" + key] = arr, mask
        return obs, rewards, terminated, truncated, infos


class MissingEOSPenalty(gym.Wrapper):
    """Subtract ``penalty`` from the last reward of an episode that ended without EOS (the token budget ran out).

    Reads ``info["finish_reason"]`` (``"eos"`` or ``"budget_exhausted"``) of the env contract; the applied
    value is reported as ``info["missing_eos_penalty"]``.

    :param env: a text-envs env.
    :param penalty: the amount subtracted (>= 0).
    """

    def __init__(self, env: gym.Env, penalty: float = 1.0) -> None:
        super().__init__(env)
        if not np.isfinite(penalty) or penalty < 0:
            raise RewardError(f"Expected a finite penalty >= 0 (it is subtracted), got {penalty}.")
        self.penalty = float(penalty)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            reason = info.get("finish_reason")
            if reason is None:
                raise RewardError(
                    "MissingEOSPenalty expects info['finish_reason'] ('eos' or 'budget_exhausted') at episode end; "
                    f"the wrapped env did not report it (info keys: {sorted(info)})."
                )
            if reason != "eos":
                reward = float(reward) - self.penalty
                info["missing_eos_penalty"] = -self.penalty
        return obs, reward, terminated, truncated, info
