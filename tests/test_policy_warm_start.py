"""Supervised warm start on an env's references, then RL (the "supervised + RL" pipeline)."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import text_envs  # noqa: F401
from sb3_ext import EpisodeRolloutBuffer, LLMPolicy, warm_start
from text_envs.errors import TextEnvsError

th.set_num_threads(1)


def test_warm_start_solves_text_copy_and_resets_reference():
    env = make_vec_env("TextCopy-v0", n_envs=4, seed=0)
    model = PPO(LLMPolicy, env, n_steps=16, batch_size=64, seed=0, rollout_buffer_class=EpisodeRolloutBuffer,
                policy_kwargs=dict(kl_coef=0.05))
    before, _ = evaluate_policy(model, env, n_eval_episodes=32, deterministic=True)
    losses = warm_start(model.policy, env, epochs=80, batch_size=16, learning_rate=3e-3)
    assert losses[-1] < 0.5 * losses[0]
    after, _ = evaluate_policy(model, env, n_eval_episodes=64, deterministic=True)
    assert after >= gym.spec("TextCopy-v0").reward_threshold > before
    ref, pol = model.policy.reference_model.state_dict(), model.policy.model.state_dict()
    assert all(th.equal(ref[k], pol[k]) for k in ref)
    model.learn(256)  # RL continues from the warm-started weights with KL to them


def test_warm_start_rejects_envs_without_examples():
    from test_policy_fakes import FakeCopyEnv

    env = FakeCopyEnv()
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3)
    with pytest.raises(TextEnvsError, match="expected epochs >= 1"):
        warm_start(policy, env, epochs=0)
    with pytest.raises(TextEnvsError, match="num_examples"):
        warm_start(policy, gym.make("CartPole-v1"))
