"""The design card's `PPO(LLMPolicy, env)` at SB3's defaults: whole-episode minibatches chosen for it, the same
update as SB3's buffer path (one forward per observation) to float error, prompts trimmed exactly, no loading bar."""

from __future__ import annotations

import copy
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from helpers import FakeCopyEnv, collect, direct_token_outputs, make_model
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.env_util import make_vec_env

import text_envs  # noqa: F401  (registers TextSummarization-v0)
from lm_core.backends import trim_left_padding
from sb3_ext import EpisodeRolloutBuffer, LLMPolicy
from sb3_ext.policy import SPARSE_MINIBATCH_COST, sparse_minibatch_cost

th.set_num_threads(1)


@pytest.fixture(scope="module")
def env():
    # prompts of 1-8 symbols left-padded to P=12: every forward sees rows with different amounts of padding
    return make_vec_env(FakeCopyEnv, n_envs=3, seed=2, env_kwargs=dict(min_len=1, max_len=8, P=12, T=6))


def _no_sb3_ext_warnings():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("error", category=UserWarning)
    warnings.filterwarnings("ignore", message=".*batch_size.*factor", category=UserWarning)  # SB3's own notice
    return ctx


def test_the_card_selects_whole_episode_minibatches_silently(capfd):
    env = gym.make("TextSummarization-v0")
    ctx = _no_sb3_ext_warnings()
    try:
        model = PPO(LLMPolicy, env)  # the card's line: SB3's n_steps=2048, batch_size=64, n_epochs=10
    finally:
        ctx.__exit__(None, None, None)
    assert type(model.rollout_buffer) is EpisodeRolloutBuffer and model.rollout_buffer_class is EpisodeRolloutBuffer
    buf = model.rollout_buffer
    assert (buf.buffer_size, buf.n_envs, buf.gamma, buf.gae_lambda) == (2048, 1, model.gamma, model.gae_lambda)
    assert (model.n_steps, model.batch_size, model.n_epochs) == (2048, 64, 10)  # SB3's settings are kept
    assert model.rollout_buffer.policy is model.policy  # bound: the buffer can reach the policy
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err  # no transformers progress bar in library use


def test_a_buffer_the_user_named_is_kept_with_a_warning_of_its_cost(env):
    V = int(env.action_space.n)
    with pytest.warns(UserWarning, match=r"minibatches of 64 of 6144 stored steps from the DictRolloutBuffer you "
                                         r"chose.*up to \d+x the model forwards.*EpisodeRolloutBuffer"):
        model = PPO(LLMPolicy, env, rollout_buffer_class=DictRolloutBuffer, policy_kwargs=dict(model=make_model("t5", V)))
    assert type(model.rollout_buffer) is DictRolloutBuffer
    # left out, the same settings get whole episodes; named EpisodeRolloutBuffer: no warning either
    ctx = _no_sb3_ext_warnings()
    try:
        card = PPO(LLMPolicy, env, policy_kwargs=dict(model=make_model("t5", V)))
        assert type(card.rollout_buffer) is EpisodeRolloutBuffer
        PPO(LLMPolicy, env, rollout_buffer_class=EpisodeRolloutBuffer, policy_kwargs=dict(model=make_model("t5", V)))
    finally:
        ctx.__exit__(None, None, None)


def test_settings_where_sb3_minibatches_are_cheap_keep_sb3_buffer(env):
    V = int(env.action_space.n)
    ctx = _no_sb3_ext_warnings()
    try:
        # most of the rollout per minibatch: grouping finds the episodes, nothing to gain
        ppo = PPO(LLMPolicy, env, n_steps=12, batch_size=36, policy_kwargs=dict(model=make_model("t5", V)))
        a2c = A2C(LLMPolicy, env, policy_kwargs=dict(model=make_model("t5", V)))  # one batch of the whole rollout
    finally:
        ctx.__exit__(None, None, None)
    assert type(ppo.rollout_buffer) is DictRolloutBuffer and type(a2c.rollout_buffer) is DictRolloutBuffer
    # the estimate: T / (steps of an episode per minibatch), 1 for a minibatch of the whole rollout
    assert sparse_minibatch_cost(2048, 1, 64, 48) > 10 * SPARSE_MINIBATCH_COST / 4
    assert sparse_minibatch_cost(12, 3, 36, 6) == 1.0 and sparse_minibatch_cost(12, 3, None, 6) == 1.0


def test_a_saved_card_model_loads_with_its_episode_buffer(env, tmp_path):
    V = int(env.action_space.n)
    model = PPO(LLMPolicy, env, policy_kwargs=dict(model=make_model("t5", V)))
    model.save(tmp_path / "card.zip")
    ctx = _no_sb3_ext_warnings()
    try:
        loaded = PPO.load(tmp_path / "card.zip", env=env)
    finally:
        ctx.__exit__(None, None, None)
    assert type(loaded.rollout_buffer) is EpisodeRolloutBuffer


def _observations_of(batch, T: int) -> dict[str, th.Tensor]:
    """The observations SB3's DictRolloutBuffer stores for the output steps of an EpisodeBatch (float, as SB3's)."""
    e, t = batch.out_episode, batch.out_pos
    N = len(batch)
    gen = th.zeros((N, T), dtype=th.long)
    cols = th.arange(T)[None]
    width = min(T, batch.tokens.shape[1])
    gen[:, :width] = batch.tokens[e, :width]
    gen_mask = (cols < t[:, None]).long()
    return {"prompt_ids": batch.prompt_ids[e].float(), "prompt_mask": batch.prompt_mask[e].float(),
            "generated_ids": (gen * gen_mask).float(), "generated_mask": gen_mask.float()}


@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_an_episode_minibatch_update_equals_the_per_observation_reference(env, kind):
    """The loss and gradients of a whole-episode minibatch equal those of SB3's path on the same steps, each
    observation through its own full forward (``group_observations=False``: the reference computation)."""
    V = int(env.action_space.n)
    model = PPO(LLMPolicy, env, n_steps=16, batch_size=16, seed=0, rollout_buffer_class=EpisodeRolloutBuffer,
                policy_kwargs=dict(model=make_model(kind, V)))
    policy = model.policy
    with th.no_grad():
        policy.value_head.weight.normal_()  # a non-trivial value head
    buf = collect(model, rollouts=2)  # the second rollout starts inside episodes of the first
    reference = copy.deepcopy(policy)
    reference.group_observations = False
    policy.set_training_mode(True)
    reference.set_training_mode(True)
    checked = 0
    for data in buf.get(16):
        obs = _observations_of(data.observations, policy.T)

        def loss(p: LLMPolicy, observations) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
            values, log_prob, entropy = p.evaluate_actions(observations, data.actions)
            ratio = th.exp(log_prob - data.old_log_prob)
            # PPO's objective with SB3's coefficients
            policy_loss = -th.min(data.advantages * ratio, data.advantages * ratio.clamp(0.8, 1.2)).mean()
            total = policy_loss + 0.5 * ((data.returns - values.flatten()) ** 2).mean() - 0.01 * entropy.mean()
            return total, values, log_prob, entropy

        for p in (policy, reference):
            p.optimizer.zero_grad()
        ours, v, lp, ent = loss(policy, data.observations)
        ref, v0, lp0, ent0 = loss(reference, obs)
        ours.backward()
        ref.backward()
        # float32, a few ulps of summation order between one batched and many single forwards
        th.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
        for a, b in ((v, v0), (lp, lp0), (ent, ent0)):
            th.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        grads = dict(reference.named_parameters())
        for name, param in policy.named_parameters():
            if param.grad is not None or grads[name].grad is not None:
                ref_grad = grads[name].grad
                # summation order: relative to the tensor's largest entry (float32 through two small layers)
                th.testing.assert_close(param.grad, ref_grad, rtol=1e-4, atol=1e-4 * float(ref_grad.abs().max()))
        checked += len(data.actions)
    assert checked == 16 * env.num_envs


@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_trimmed_prompts_give_the_direct_forward(env, kind):
    """Prefills and teacher-forced forwards cut the prompt's all-padding columns: the outputs are still those of
    the model on the unpadded prompt, across auto-resets with prompts of different lengths."""
    V = int(env.action_space.n)
    lm = make_model(kind, V, seed=3)
    direct = copy.deepcopy(lm).eval()
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=lm)
    obs = env.reset()
    rng = np.random.default_rng(0)
    widths = set()
    with th.no_grad():
        for _ in range(14):
            o = policy.obs_to_tensor(obs)[0]
            logits = policy.get_distribution(o).distribution.logits  # the cached path
            for r in range(env.num_envs):
                t = int(obs["generated_mask"][r].sum())
                ref, _ = direct_token_outputs(direct, kind, obs["prompt_ids"][r], obs["prompt_mask"][r],
                                              obs["generated_ids"][r], t, V)
                th.testing.assert_close(logits[r].log_softmax(-1), ref, rtol=1e-4, atol=1e-4)
            ids, mask = trim_left_padding(o["prompt_ids"].long(), o["prompt_mask"].long())
            assert mask[:, 0].any() and mask.sum() == o["prompt_mask"].sum()  # only all-padding columns cut
            widths.add(ids.shape[1])
            obs, _, _, _ = env.step(rng.integers(3, V, size=env.num_envs))
    assert len(widths) > 1 and max(widths) < 12  # the trim mattered and changed over the episodes
