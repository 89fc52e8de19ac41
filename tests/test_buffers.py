"""EpisodeRolloutBuffer: whole episodes per minibatch, prompts stored once, exact bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from helpers import FakeCopyEnv, collect, make_model
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_ext import EpisodeBatch, EpisodeRolloutBuffer, LLMPolicy
from text_envs.errors import TextEnvsError

th.set_num_threads(1)


@pytest.fixture(scope="module")
def rollout():
    env = make_vec_env(FakeCopyEnv, n_envs=4, seed=3, env_kwargs=dict(min_len=1, max_len=4))
    model = PPO(LLMPolicy, env, n_steps=24, batch_size=20, seed=0, rollout_buffer_class=EpisodeRolloutBuffer,
                policy_kwargs=dict(model=make_model("t5", int(env.action_space.n))))
    buf = collect(model, rollouts=2)
    return model, buf


def test_minibatches_are_whole_episodes_covering_every_token_once(rollout):
    _, buf = rollout
    seen = []
    sizes = []
    for data in buf.get(20):
        batch = data.observations
        assert isinstance(batch, EpisodeBatch)
        n = len(batch)
        assert data.actions.shape == (n, 1) and data.advantages.shape == (n,)
        sizes.append(n)
        ep = batch.out_episode.numpy()
        pos = batch.out_pos.numpy()
        for e in np.unique(ep):
            p = pos[ep == e]
            assert np.array_equal(p, np.arange(p[0], p[0] + len(p)))  # whole segment, in order
            # the segment's actions are the tokens at those positions
            acts = data.actions[th.as_tensor(ep == e)].flatten().long()
            assert th.equal(batch.tokens[e, p[0] : p[-1] + 1], acts)
        seen.append(n)
    assert sum(seen) == buf.buffer_size * buf.n_envs
    # about batch_size tokens: each minibatch reaches 20 tokens except possibly the last, and overshoots by < T
    assert all(20 <= s < 20 + buf.T for s in sizes[:-1])


def test_prompt_stored_once_per_segment(rollout):
    _, buf = rollout
    n_starts = int(buf.episode_starts.sum()) + buf.n_envs  # new episodes + the segments open at step 0
    assert buf.num_segments <= n_starts + buf.n_envs
    assert len(buf.seg_prompt_ids) == buf.num_segments
    assert not hasattr(buf, "observations")
    # segments continued from the previous rollout carry their generated prefix
    assert any(t0 > 0 and len(prefix) == t0 for t0, prefix in zip(buf.seg_t0, buf.seg_prefix))


def test_get_none_and_subsampling(rollout):
    model, buf = rollout
    (data,) = list(buf.get(None))
    assert len(data.observations) == buf.buffer_size * buf.n_envs
    sub = data.observations[::3]  # TRPO's sub_sampling_factor
    with th.no_grad():
        _, lp_all, _ = model.policy.evaluate_actions(data.observations, data.actions)
        _, lp_sub, _ = model.policy.evaluate_actions(sub, data.actions[::3])
    assert th.allclose(lp_sub, lp_all[::3], atol=1e-5)


def test_bad_space_and_empty_get():
    from gymnasium import spaces

    with pytest.raises(TextEnvsError, match="expected a Dict observation space"):
        EpisodeRolloutBuffer(8, spaces.Box(0, 1, (3,)), spaces.Discrete(3))
    env = FakeCopyEnv()
    buf = EpisodeRolloutBuffer(8, env.observation_space, env.action_space)
    with pytest.raises(TextEnvsError, match="empty buffer"):
        next(buf.get(4))
