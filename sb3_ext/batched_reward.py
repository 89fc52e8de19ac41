"""SB3 counterpart of :class:`text_envs.rewards.BatchedRewardWrapper` (imports stable-baselines3)."""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from text_envs.rewards.base import make_reward
from text_envs.rewards.batched import check_reward_mode, score_final_infos

__all__ = ["BatchedRewardVecEnvWrapper"]


class BatchedRewardVecEnvWrapper(VecEnvWrapper):
    """Score the episodes that finished in a step of an SB3 ``VecEnv`` with ``reward``, in one batch, in the main
    process (never inside ``SubprocVecEnv`` workers). Wrap it *inside* ``VecNormalize`` so normalisation sees the
    final rewards.

    :param venv: the SB3 vector env (its envs run with a cheap reward or ``reward=None``).
    :param reward: a reward spec (built with :func:`text_envs.rewards.make_reward`).
    :param mode: ``"replace"`` the env's reward of finished episodes, or ``"add"`` to it.
    :param weight: multiplier of the batched reward.
    """

    def __init__(self, venv: VecEnv, reward: Any, mode: str = "replace", weight: float = 1.0) -> None:
        super().__init__(venv)
        check_reward_mode(mode)
        self.reward = make_reward(reward)
        self.mode, self.weight = mode, float(weight)

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        idx = np.flatnonzero(dones)
        if idx.size == 0:
            return obs, rewards, dones, infos
        scores = score_final_infos(self.reward, [infos[i] for i in idx])
        rewards = np.asarray(rewards, dtype=np.float32).copy()
        total = np.asarray(scores[self.reward.name], dtype=np.float64) * self.weight
        rewards[idx] = total if self.mode == "replace" else rewards[idx] + total
        for k, i in enumerate(idx):
            metrics = dict(infos[i].get("metrics") or {})
            for name, values in scores.items():
                metrics[name] = values[k]
                infos[i][f"metric/{name}"] = values[k]
            infos[i]["metrics"] = metrics
        return obs, rewards, dones, infos
