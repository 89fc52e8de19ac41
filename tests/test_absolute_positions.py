"""A seq2seq decoder with absolute positions (BART, Marian, Pegasus) cannot share the rollout's decode cache exactly:
a row that restarts while others continue would be placed at the cache's length, not at its own. Such a model's
rollout takes the full forward (``backend.shared_cache_exact`` is False) and matches it; T5 keeps the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from helpers import EOS, FakeCopyEnv, make_model
from stable_baselines3.common.env_util import make_vec_env

from lm_core.backends import DecodeState, make_backend
from lm_core.observations import observation_parts
from sb3_ext import LLMPolicy

th.set_num_threads(1)


@pytest.fixture(scope="module")
def env():
    return make_vec_env(FakeCopyEnv, n_envs=3, seed=1, env_kwargs=dict(min_len=1, max_len=4))


def _ragged_steps(env, policy, naive, steps: int = 30) -> tuple[float, int]:
    """The largest logit gap of the policy's rollout path to the uncached one while rows end at different steps
    (an EOS now and then), and how many texts ended."""
    obs, rng, worst, ended = env.reset(), np.random.default_rng(0), 0.0, 0
    V = int(env.action_space.n)
    with th.no_grad():
        for _ in range(steps):
            o = policy.obs_to_tensor(obs)[0]
            cached = policy.get_distribution(o).distribution.logits
            worst = max(worst, float((cached - naive.get_distribution(o).distribution.logits).abs().max()))
            actions = rng.integers(3, V, size=env.num_envs)
            actions[rng.random(env.num_envs) < 0.25] = EOS  # texts of different lengths: rows restart apart
            obs, _, dones, _ = env.step(actions)
            ended += int(dones.sum())
    return worst, ended


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_rollout_matches_the_full_forward_when_rows_restart_apart(env, kind):
    V = int(env.action_space.n)
    lm = make_model(kind, V, seed=1).eval()
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=lm)
    naive = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=lm, use_cache=False)
    worst, ended = _ragged_steps(env, policy, naive)
    assert ended >= 6
    assert worst < 1e-4
    assert policy.backend.shared_cache_exact == (kind == "t5")
    assert ("policy" in policy._states) == (kind == "t5")  # T5 through its decode cache, BART without one


def test_the_shared_cache_is_what_would_be_wrong_for_bart(env):
    """Negative control: BART through a shared DecodeState, rows restarting apart, is off by far more than float
    error (what the fallback avoids)."""
    V = int(env.action_space.n)
    backend = make_backend(make_model("bart", V, seed=1).eval(), V)
    state, reference = DecodeState(backend), make_backend(backend.model, V)
    obs, rng, worst = env.reset(), np.random.default_rng(0), 0.0
    with th.no_grad():
        for _ in range(30):
            parts = observation_parts(obs)
            cached, _ = state(*parts)
            direct, _ = reference.forward_next(*parts)
            worst = max(worst, float((cached.log_softmax(-1) - direct.log_softmax(-1)).abs().max()))
            actions = rng.integers(3, V, size=env.num_envs)
            actions[rng.random(env.num_envs) < 0.25] = EOS
            obs, _, _, _ = env.step(actions)
    assert worst > 1e-2
