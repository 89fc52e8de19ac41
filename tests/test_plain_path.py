"""The plain path `PPO(LLMPolicy, env)` (SB3's stock DictRolloutBuffer): grouped evaluation is exact, the KL
penalty is applied or refused, and taken actions stay inside a top-k support in `get_distribution` too."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch as th
from helpers import FakeCopyEnv, collect, make_model
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.env_util import make_vec_env

import sb3_ext
from sb3_ext import EpisodeRolloutBuffer, LLMPolicy
from sb3_ext.buffers import EpisodeBatch
from sb3_ext.policy import TAKEN_ACTIONS_KEY
from text_envs.errors import TextEnvsError

th.set_num_threads(1)


@pytest.fixture(scope="module")
def env():
    # 4 envs, texts of 1-4 tokens, T=5: a 13-step rollout holds several episodes per env, some cut by its ends
    return make_vec_env(FakeCopyEnv, n_envs=4, seed=3, env_kwargs=dict(min_len=1, max_len=4))


def _forward_rows(policy: LLMPolicy) -> list[int]:
    """Spy on the policy LM's teacher-forced forwards: the number of sequences of each call."""
    rows: list[int] = []
    original = policy.backend.forward_sequences

    def spy(prompt_ids, prompt_mask, tokens):
        rows.append(int(tokens.shape[0]))
        return original(prompt_ids, prompt_mask, tokens)

    policy.backend.forward_sequences = spy  # type: ignore[method-assign]
    return rows


def _close(a: th.Tensor, b: th.Tensor) -> None:
    # float32: the grouped and per-observation forwards differ only in batch shape (summation order), a few ulps
    # of O(1) activations through a 2-layer model
    th.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_from_observations_groups_the_steps_of_each_episode():
    T = 4
    prompt_a, prompt_b = [0, 5, 6], [7, 8, 9]
    text_a, text_a2, text_b = [3, 4, 5], [3, 9, 2], [4, 4, 4, 4]
    obs = []  # (prompt, generated prefix, action)
    for prompt, text in ((prompt_a, text_a), (prompt_a, text_a2), (prompt_b, text_b)):
        for t in range(len(text)):
            obs.append((prompt, text[:t], text[t]))
    obs.append((prompt_a, [3], 4))  # a second episode of prompt a with text_a's first token: same chain as text_a
    order = np.random.default_rng(0).permutation(len(obs))
    obs = [obs[i] for i in order]
    prompt_ids = th.tensor([o[0] for o in obs])
    prompt_mask = (prompt_ids != 0).long()
    gen = th.zeros((len(obs), T), dtype=th.long)
    for i, (_, prefix, _) in enumerate(obs):
        gen[i, : len(prefix)] = th.tensor(prefix, dtype=th.long)
    gen_len = th.tensor([len(o[1]) for o in obs])
    batch = EpisodeBatch.from_observations(prompt_ids, prompt_mask, gen, gen_len)
    # chains: text_a (its 3 steps, the extra episode's step and text_a2's first two, whose prefixes [] and [3]
    # are text_a's too), text_a2's last step (prefix [3, 9] diverges), text_b
    assert batch.num_episodes == 3 and len(batch) == len(obs)
    for i, (prompt, prefix, action) in enumerate(obs):
        e, t = int(batch.out_episode[i]), int(batch.out_pos[i])
        assert t == len(prefix) and batch.prompt_ids[e].tolist() == prompt
        assert batch.tokens[e, :t].tolist() == prefix
    taken = batch.taken_actions.tolist()
    for i, (_, prefix, action) in enumerate(obs):
        e = int(batch.out_episode[i])
        head = int(batch.tokens[e].ne(0).sum())  # these texts have no token 0
        assert taken[i] == (int(batch.tokens[e, len(prefix)]) if len(prefix) < head else -1)
    # known actions are passed through unchanged
    actions = th.tensor([o[2] for o in obs])
    known = EpisodeBatch.from_observations(prompt_ids, prompt_mask, gen, gen_len, actions)
    assert th.equal(known.taken_actions, actions)


@pytest.mark.parametrize("kind, kwargs", [("t5", {}), ("gpt2", dict(top_k=4)), ("llama", dict(value_mode="separate"))])
def test_grouped_plain_path_equals_per_observation_path(env, kind, kwargs):
    V = int(env.action_space.n)
    model = PPO(LLMPolicy, env, n_steps=12, batch_size=16, seed=0,
                policy_kwargs=dict(model=make_model(kind, V), **kwargs))
    assert type(model.rollout_buffer) is DictRolloutBuffer
    policy = model.policy
    with th.no_grad():
        policy.value_head.weight.normal_()  # a non-trivial value head
    buf = collect(model, rollouts=2)  # the second rollout starts inside episodes of the first
    assert (buf.observations["generated_mask"][0].sum(-1) > 0).any()
    rows = _forward_rows(policy)
    policy.set_training_mode(True)
    grouped_any = False
    for batch_size in (16, None):  # SB3's shuffled minibatches (episodes cut between them), and everything
        for data in buf.get(batch_size):
            n = len(data.actions)
            policy.group_observations = True
            rows.clear()
            v, lp, ent = policy.evaluate_actions(data.observations, data.actions)
            assert sum(rows) <= n
            grouped_any |= sum(rows) < n
            dist = policy.get_distribution(data.observations)
            values = policy.predict_values(data.observations)
            policy.group_observations = False
            v0, lp0, ent0 = policy.evaluate_actions(data.observations, data.actions)
            dist0 = policy.get_distribution(data.observations)
            _close(v, v0)
            _close(lp, lp0)
            _close(ent, ent0)
            _close(values, v0)
            _close(dist.distribution.logits, dist0.distribution.logits)
            # the rollout's own log-probs (cached path) agree as well: the grouped path evaluates the right tokens
            _close(lp.detach(), data.old_log_prob)
            # gradients flow through the grouped forward
            policy.group_observations = True
            policy.optimizer.zero_grad()
            _, lp, _ = policy.evaluate_actions(data.observations, data.actions)
            lp.sum().backward()
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.model.parameters())
    assert grouped_any, "no minibatch held two steps of one episode: the test does not test grouping"


def test_grouped_path_runs_one_forward_per_episode_segment(env):
    V = int(env.action_space.n)
    model = PPO(LLMPolicy, env, n_steps=13, batch_size=52, seed=0, policy_kwargs=dict(model=make_model("gpt2", V)))
    buf = collect(model, rollouts=2)
    # the episode segments EpisodeRolloutBuffer would store (one per env and episode inside the rollout)
    gen_len = buf.observations["generated_mask"].sum(-1)  # (n_steps, n_envs), before get() flattens it
    segments = int((gen_len == 0).sum()) + int((gen_len[0] > 0).sum())
    rows = _forward_rows(model.policy)
    data = next(buf.get(None))
    model.policy.evaluate_actions(data.observations, data.actions)
    assert len(rows) == 1 and rows[0] <= segments  # (episodes with the same prompt and text share one)
    assert rows[0] < len(data.actions) / 2


def test_kl_coef_with_the_default_buffer_is_applied():
    env = make_vec_env(FakeCopyEnv, n_envs=2, seed=0, env_kwargs=dict(min_len=1, max_len=4))
    V = int(env.action_space.n)
    with pytest.warns(UserWarning, match="replaced PPO's DictRolloutBuffer by one"):
        model = PPO(LLMPolicy, env, n_steps=8, batch_size=16, seed=0,
                    policy_kwargs=dict(model=make_model("t5", V), kl_coef=0.5))
    assert isinstance(model.rollout_buffer, EpisodeRolloutBuffer)
    with th.no_grad():  # move the policy away from its reference: a non-zero KL
        for p in model.policy.model.parameters():
            p.add_(0.3 * th.randn_like(p))
    buf = collect(model)
    assert buf.kl_stats.get("kl_per_token", 0.0) != 0.0  # the penalty ran on this rollout
    with warnings.catch_warnings():  # the buffer named explicitly: no warning
        warnings.filterwarnings("error", message=".*replaced")
        PPO(LLMPolicy, env, n_steps=8, batch_size=16, seed=0, rollout_buffer_class=EpisodeRolloutBuffer,
            policy_kwargs=dict(model=make_model("t5", V), kl_coef=0.5))


def test_kl_coef_with_another_buffer_is_refused():
    env = make_vec_env(FakeCopyEnv, n_envs=2, seed=0)
    V = int(env.action_space.n)

    class MyBuffer(DictRolloutBuffer):
        pass

    with pytest.raises(TextEnvsError, match="needs sb3_ext.EpisodeRolloutBuffer.*got MyBuffer"):
        PPO(LLMPolicy, env, n_steps=8, batch_size=16, seed=0, rollout_buffer_class=MyBuffer,
            policy_kwargs=dict(model=make_model("t5", V), kl_target=1.0))
    # a buffer swapped in after construction is caught at the first update, before any step
    model = PPO(LLMPolicy, env, n_steps=8, batch_size=16, seed=0,
                rollout_buffer_class=EpisodeRolloutBuffer, policy_kwargs=dict(model=make_model("t5", V), kl_coef=0.1))
    model.rollout_buffer = DictRolloutBuffer(8, env.observation_space, env.action_space, n_envs=2)
    with pytest.raises(TextEnvsError, match="got DictRolloutBuffer"):
        model.learn(16)


def _perturb_mask_model(policy: LLMPolicy) -> None:
    """Move the frozen top-k model so that the update-time support excludes most tokens sampled in the rollout
    (an exaggerated version of the rounding difference between the cached and the teacher-forced logits)."""
    th.manual_seed(1)
    with th.no_grad():
        for p in policy.reference_model.parameters():
            p.add_(2.0 * th.randn_like(p))
    policy._states.pop("mask", None)


def test_get_distribution_keeps_taken_actions_in_the_support_of_an_episode_batch(env):
    V = int(env.action_space.n)
    model = PPO(LLMPolicy, env, n_steps=13, batch_size=52, seed=0, rollout_buffer_class=EpisodeRolloutBuffer,
                policy_kwargs=dict(model=make_model("t5", V), top_k=1))
    buf = collect(model, rollouts=2)
    _perturb_mask_model(model.policy)
    data = next(buf.get(None))
    actions = data.actions.long().flatten()
    with th.no_grad():
        _, lp_eval, _ = model.policy.evaluate_actions(data.observations, actions)
        lp_dist = model.policy.get_distribution(data.observations).log_prob(actions)
        # negative control: without the taken actions most samples fall outside the top-1 support
        logits, _, mask_logits = model.policy.episode_outputs(data.observations)
        lp_bare = model.policy._distribution(logits, mask_logits).log_prob(actions)
    assert (lp_bare < -1e30).float().mean() > 0.3
    assert lp_dist.min() > -1e30
    _close(lp_dist, lp_eval)
    # TRPO's sub-sampling keeps it
    _close(model.policy.get_distribution(data.observations[::2]).log_prob(actions[::2]).detach(), lp_eval[::2])


def test_sb3_ext_trpo_keeps_taken_actions_in_the_support_with_the_default_buffer(env):
    V = int(env.action_space.n)
    model = sb3_ext.TRPO(LLMPolicy, env, n_steps=8, batch_size=32, seed=0, n_critic_updates=1, cg_max_steps=2,
                         policy_kwargs=dict(model=make_model("t5", V), top_k=1))
    assert type(model.rollout_buffer) is DictRolloutBuffer
    policy = model.policy
    collect(model)
    _perturb_mask_model(policy)
    seen: list[tuple[th.Tensor, th.Tensor]] = []
    original = policy.get_distribution

    def spy(obs):
        dist = original(obs)
        actions = obs[TAKEN_ACTIONS_KEY]
        seen.append((dist.log_prob(actions).detach(), actions))
        return dist

    policy.get_distribution = spy  # type: ignore[method-assign]
    model.train()
    assert len(seen) >= 2
    for lp, _ in seen:
        assert lp.min() > -1e30  # every sample takes part in the surrogate objective
    assert "get" not in vars(model.rollout_buffer)  # the stock method is back
    # the per-observation path agrees
    data = next(model.rollout_buffer.get(None))
    obs = dict(data.observations)
    obs[TAKEN_ACTIONS_KEY] = data.actions.long().flatten()
    with th.no_grad():
        grouped = original(obs).log_prob(obs[TAKEN_ACTIONS_KEY])
        policy.group_observations = False
        single = original(obs).log_prob(obs[TAKEN_ACTIONS_KEY])
    _close(grouped, single)


def test_trpo_with_the_default_buffer_forwards_episodes_not_observations(env):
    """The cause of TRPO's memory with SB3's default buffer: its single minibatch of n_steps x n_envs
    observations ran one full forward (with a double-backward graph) per observation."""
    V = int(env.action_space.n)
    model = sb3_ext.TRPO(LLMPolicy, env, n_steps=16, batch_size=64, seed=0, n_critic_updates=1, cg_max_steps=2,
                         policy_kwargs=dict(model=make_model("t5", V)))
    rows = _forward_rows(model.policy)
    before = copy.deepcopy(dict(model.policy.named_parameters()))
    model.learn(64)
    assert rows and max(rows) < 64 / 2  # one rollout of 64 steps: episodes of 1-5 tokens
    assert any(not th.equal(before[n], p) for n, p in model.policy.named_parameters())


def test_sb3_default_minibatches_get_a_warning_that_says_what_they_cost(env):
    V = int(env.action_space.n)
    with pytest.warns(UserWarning, match="minibatches of 64 of 8192 stored steps.*EpisodeRolloutBuffer"):
        # SB3's n_steps=2048, batch_size=64 with SB3's buffer named (left out, LLMPolicy picks whole episodes)
        PPO(LLMPolicy, env, rollout_buffer_class=DictRolloutBuffer, policy_kwargs=dict(model=make_model("t5", V)))
    with warnings.catch_warnings():  # most of a rollout per minibatch: grouping works, no warning
        warnings.filterwarnings("error", message=".*stored steps")
        PPO(LLMPolicy, env, n_steps=12, batch_size=16, policy_kwargs=dict(model=make_model("t5", V)))


def test_bench_plain_path_runs_every_row_side_by_side(capsys):
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import bench_plain_path

    summary = bench_plain_path.main(["--quick", "--n-envs", "2", "--T", "8", "--n-steps", "8", "--batch-size", "16",
                                     "--prompt-tokens", "128"])
    out = capsys.readouterr().out
    assert set(bench_plain_path.ROWS) <= set(summary)
    for row in bench_plain_path.ROWS:
        assert summary[row]["tokens"] == 16 and summary[row]["tok_s"] > 0
    assert "grouped / per-obs" in out and "x episode-buffer" in out
    assert isinstance(summary["trl-grpo"], (dict, str))  # a row, or why it was skipped
    with pytest.raises(SystemExit):
        bench_plain_path.main(["--rows", "plain/nope"])
