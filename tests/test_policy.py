"""LLMPolicy correctness: exact log-probs/values vs a direct HF forward, cache exactness, construction checks,
and malformed observations refused with a clear error."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from helpers import (
    EOS,
    FEW,
    FakeCopyEnv,
    assert_clear_error,
    collect,
    direct_token_outputs,
    make_model,
    make_tokenizer,
    t5_config,
)
from hypothesis import given
from hypothesis import strategies as st
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_ext import EpisodeRolloutBuffer, LLMPolicy
from sb3_ext.policy import ObservationSpaceError
from text_envs.errors import TextEnvsError, TokenizerMismatchError

th.set_num_threads(1)  # tiny models: extra threads only contend on the 2-core test machine


@pytest.fixture(scope="module")
def env():
    return make_vec_env(FakeCopyEnv, n_envs=3, seed=1, env_kwargs=dict(min_len=1, max_len=4))


@pytest.mark.parametrize("kind", ["t5", "gpt2", "llama"])
def test_evaluate_actions_matches_direct_forward(env, kind):
    V = int(env.action_space.n)
    lm = make_model(kind, V)
    reference = copy.deepcopy(lm).eval()
    model = PPO(LLMPolicy, env, n_steps=13, batch_size=16, seed=0, rollout_buffer_class=EpisodeRolloutBuffer,
                policy_kwargs=dict(model=lm))
    with th.no_grad():
        model.policy.value_head.weight.normal_()  # a non-trivial value head
    # episodes cut by the rollout boundary start with a prefix: the second rollout has some
    buf = collect(model, rollouts=2)
    assert any(t0 > 0 for t0 in buf.seg_t0)
    checked = 0
    with th.no_grad():
        for k, data in enumerate(buf.get(16)):
            values, log_prob, entropy = model.policy.evaluate_actions(data.observations, data.actions)
            # the rollout's cached log-probs and values agree with the teacher-forced ones
            assert th.allclose(log_prob, data.old_log_prob, atol=1e-4)
            assert th.allclose(values.flatten(), data.old_values, atol=1e-4)
            batch = data.observations
            for i in range(len(batch) if k < 2 else 0):  # direct per-token forwards on two minibatches
                e, t = int(batch.out_episode[i]), int(batch.out_pos[i])
                logp, h = direct_token_outputs(
                    reference, kind, batch.prompt_ids[e].numpy(), batch.prompt_mask[e].numpy(),
                    batch.tokens[e].numpy(), t, V,
                )
                a = int(data.actions[i])
                assert abs(float(logp[a]) - float(log_prob[i])) < 1e-4
                assert abs(float(model.policy.value_head(h)) - float(values[i])) < 1e-4
                checked += 1
            # negative control: one position off breaks the equality
            shifted = copy.copy(batch)
            shifted.out_pos = (batch.out_pos + 1).clamp(max=batch.tokens.shape[1] - 1)
            _, lp_shift, _ = model.policy.evaluate_actions(shifted, data.actions)
            assert (lp_shift - log_prob).abs().max() > 1e-2
    assert checked >= 32


@pytest.mark.parametrize("kind", ["t5", "gpt2", "llama"])
def test_cached_equals_uncached_across_auto_resets(env, kind):
    V = int(env.action_space.n)
    lm = make_model(kind, V, seed=1)
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=lm)
    naive = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=copy.deepcopy(lm), use_cache=False)
    naive.value_head.load_state_dict(policy.value_head.state_dict())
    obs = env.reset()
    rng = np.random.default_rng(0)
    resets = 0
    with th.no_grad():
        for _ in range(30):
            o = policy.obs_to_tensor(obs)[0]
            d_cached = policy.get_distribution(o).distribution.logits
            d_naive = naive.get_distribution(o).distribution.logits
            assert (d_cached - d_naive).abs().max() < 1e-4
            obs, _, dones, _ = env.step(rng.integers(3, V, size=env.num_envs))  # never EOS: budget ends
            resets += int(dones.sum())
    assert resets >= 3


def test_stale_cache_breaks_equality_and_policy_invalidates(env):
    V = int(env.action_space.n)
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=make_model("t5", V))
    obs = env.reset()
    o = policy.obs_to_tensor(obs)[0]
    with th.no_grad():
        policy.get_distribution(o)  # fills the cache
        state = policy._states["policy"]
        stale_logits = state.logits.log_softmax(-1)
        for p in policy.model.parameters():
            p.add_(0.05 * th.randn_like(p))
        fresh = policy.backend.forward_next(*policy._obs_parts(o))[0].log_softmax(-1)
        # negative control: what the stale cache holds no longer matches the model
        assert (stale_logits - fresh).abs().max() > 1e-2
        # the production path notices the parameter change and recomputes
        assert (policy.get_distribution(o).distribution.logits - fresh.log_softmax(-1)).abs().max() < 1e-4


def test_pretrained_weights_untouched_and_dropout_off(env):
    V = int(env.action_space.n)
    lm = make_model("t5", V)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    model = PPO(LLMPolicy, env, n_steps=8, batch_size=8, seed=0, policy_kwargs=dict(model=lm))
    after = model.policy.model.state_dict()
    assert all(th.equal(before[k], after[k]) for k in before)
    policy = model.policy
    policy.set_training_mode(True)
    assert policy.training and not policy.model.training
    obs = policy.obs_to_tensor(env.reset())[0]
    acts = th.zeros(env.num_envs, dtype=th.long)
    v1, lp1, _ = policy.evaluate_actions(obs, acts)
    v2, lp2, _ = policy.evaluate_actions(obs, acts)
    assert th.equal(lp1, lp2) and th.equal(v1, v2)  # config has dropout_rate=0.1: it must be off


def test_frozen_models_are_not_parameters(env):
    V = int(env.action_space.n)
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=make_model("t5", V),
                       kl_coef=0.1, top_k=3, mask_source="policy_copy")
    names = [n for n, _ in policy.named_parameters()]
    assert names and not any(n.startswith(("reference_model", "mask_model")) for n in names)
    assert all(p.requires_grad for p in policy.parameters())
    assert any(k.startswith("reference_model.") for k in policy.state_dict())
    assert any("value" in n for n in names)


def test_construction_errors(env):
    V = int(env.action_space.n)
    with pytest.raises(TokenizerMismatchError, match=f"{V - 2} logits.*V={V}"):
        LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=t5_config(V - 2))
    with pytest.raises(TokenizerMismatchError, match="eos_token_id=1.*eos_token_id=5"):
        LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=t5_config(V, eos_token_id=5),
                  tokenizer=make_tokenizer())
    with pytest.raises(TokenizerMismatchError, match="tokenizer has 8 tokens.*V=12"):
        LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=t5_config(V),
                  tokenizer=make_tokenizer(5))
    box = spaces.Box(0, V, shape=(4,), dtype=np.int64)
    with pytest.raises(ObservationSpaceError, match="expected a Dict observation space"):
        LLMPolicy(box, env.action_space, lambda _: 1e-3, model=t5_config(V))
    bad = spaces.Dict({"prompt_ids": box, "prompt_mask": box, "generated_ids": box})
    with pytest.raises(ObservationSpaceError, match="missing \\['generated_mask'\\]"):
        LLMPolicy(bad, env.action_space, lambda _: 1e-3, model=t5_config(V))
    with pytest.raises(ValueError, match="Did you mean 'shared'"):
        LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=t5_config(V), value_mode="share")


def test_default_model_is_sized_to_the_spaces(env):
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3)
    assert policy.backend.kind == "seq2seq" and policy.backend.logits_width >= env.action_space.n


def test_top_k_support_is_frozen_and_temperature_trained(env):
    V = int(env.action_space.n)
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=make_model("t5", V),
                       top_k=3, temperature=0.7)
    o = policy.obs_to_tensor(env.reset())[0]
    with th.no_grad():
        logits = policy.get_distribution(o).distribution.logits
        assert int((logits > -1e30).sum(-1).max()) == 3
        raw = policy.backend.forward_next(*policy._obs_parts(o))[0]
        support = raw.topk(3, -1).indices
        expected = (raw / 0.7).gather(-1, support).log_softmax(-1)
        assert th.allclose(logits.gather(-1, support), expected, atol=1e-5)
        # a gradient step moves the policy but not the support (it comes from the frozen reference)
        for p in policy.model.parameters():
            p.add_(0.5 * th.randn_like(p))
        moved = policy.get_distribution(o).distribution.logits
        assert th.equal(moved > -1e30, logits > -1e30)


def test_eos_is_in_vocab_and_predict_greedy(env):
    V = int(env.action_space.n)
    model = PPO(LLMPolicy, env, n_steps=8, batch_size=8, seed=0, policy_kwargs=dict(model=make_model("gpt2", V)))
    obs = env.reset()
    a1, _ = model.predict(obs, deterministic=True)
    a2, _ = model.predict(obs, deterministic=True)
    assert a1.shape == (env.num_envs,) and np.array_equal(a1, a2) and EOS < V


def test_default_model_uses_the_shipped_checkpoint_when_the_tokenizer_matches():
    import os

    from safetensors.torch import load_file

    import text_envs

    asset = os.path.join(os.path.dirname(text_envs.__file__), "assets", "model")
    if not os.path.isfile(os.path.join(asset, "model.safetensors")):
        pytest.skip("no shipped model in text_envs/assets/model")
    env = make_vec_env("TextSummarization-v0", n_envs=1, env_kwargs=dict(max_prompt_tokens=16, max_new_tokens=4))
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3)
    shipped = load_file(os.path.join(asset, "model.safetensors"))
    assert {v.dtype for v in shipped.values()} == {th.float16}  # stored in half precision to stay small...
    mine = policy.model.state_dict()
    # ...but trained in float32: Adam steps of 1e-5 on float16 weights of size ~0.5 round to nothing or jump
    assert {p.dtype for p in policy.parameters()} == {th.float32}
    assert all(th.equal(mine[k], v.float()) for k, v in shipped.items() if k in mine)
    assert policy.tokenizer is not None and len(policy.tokenizer) == env.action_space.n


def test_inverse_cdf_sampling_draws_the_distribution_and_never_a_masked_token():
    from sb3_ext.policy import sample_tokens

    th.manual_seed(0)
    probs = th.tensor([[0.5, 0.0, 0.3, 0.2, 0.0]]).repeat(20_000, 1)
    draws = sample_tokens(probs)
    freq = th.bincount(draws, minlength=5).float() / len(draws)
    assert freq[1] == 0 and freq[4] == 0
    assert th.allclose(freq, probs[0], atol=0.015)


def test_a_taken_action_at_the_mask_boundary_keeps_a_finite_log_prob():
    """Cached and teacher-forced mask logits differ by rounding: a sampled token that falls just outside the
    update-time top-k must not get log-prob -inf (an exploding PPO ratio)."""
    from gymnasium import spaces as sp

    from sb3_ext import LLMPolicy

    V = 12
    obs_space = sp.Dict({k: sp.Box(0, V - 1, (n,), np.int64) for k, n in
                         (("prompt_ids", 4), ("prompt_mask", 4), ("generated_ids", 3), ("generated_mask", 3))})
    policy = LLMPolicy(obs_space, sp.Discrete(V), lambda _: 1e-3, top_k=2)
    logits = th.zeros(1, V)
    mask_logits = th.tensor([[3.0, 2.0, 1.999] + [0.0] * (V - 3)])  # token 2 just outside the top 2
    dist = policy._distribution(logits, mask_logits, taken=th.tensor([2]))
    assert dist.log_prob(th.tensor([2])).item() > -10  # kept: an ordinary log-prob
    # without the taken action, the same token is masked out (the rollout-time support decides sampling)
    assert policy._distribution(logits, mask_logits).log_prob(th.tensor([2])).item() < -1e30


# ---------------------------------------------------------------------------------------------- bad observations
# tried systematically (property-based, with hypothesis): a clear error, never an index error inside the model
@pytest.fixture(scope="module")
def fake_policy():
    fake = FakeCopyEnv()
    return LLMPolicy(fake.observation_space, fake.action_space, lambda _: 0.0, model=make_model("t5", fake.V)), fake


def _good_obs(fake, batch: int | None) -> dict[str, np.ndarray]:
    fake.reset(seed=0)
    obs = fake._obs()
    return obs if batch is None else {k: np.stack([v] * batch) for k, v in obs.items()}


def test_good_observations_predict(fake_policy):
    pol, fake = fake_policy
    for batch in (None, 1, 3):
        actions, _ = pol.predict(_good_obs(fake, batch), deterministic=True)
        assert np.all((0 <= actions) & (actions < fake.V))
    floats = {k: v.astype(np.float32) for k, v in _good_obs(fake, 2).items()}  # integral floats are ids too
    assert pol.predict(floats, deterministic=True)[0].shape == (2,)


def _corrupt(data: st.DataObject, obs: dict[str, np.ndarray], V: int) -> dict[str, np.ndarray]:
    obs = dict(obs)
    key = data.draw(st.sampled_from(sorted(obs)))
    kind = data.draw(st.sampled_from(["drop", "shape", "rank", "batch", "dtype", "range", "type"]))
    arr = obs[key]
    if kind == "drop":
        del obs[key]
    elif kind == "shape":
        extra = data.draw(st.integers(1, 3))
        obs[key] = np.concatenate([arr, arr[..., :1].repeat(extra, -1)], -1) if data.draw(st.booleans()) \
            else arr[..., : arr.shape[-1] - extra]
    elif kind == "rank":
        obs[key] = arr[None, None]
    elif kind == "batch":
        obs[key] = np.concatenate([arr, arr[:1]], 0)
    elif kind == "dtype":
        obs[key] = arr.astype(np.float32) + data.draw(st.sampled_from([0.5, np.nan, np.inf]))
    elif kind == "range":
        value = data.draw(st.one_of(st.integers(-(2**40), -1), st.integers(V, 2**40)))
        if key.endswith("_mask"):
            value = data.draw(st.sampled_from([2, -1, 7]))
        arr = arr.copy()
        arr.flat[data.draw(st.integers(0, arr.size - 1))] = value
        obs[key] = arr
    elif kind == "type":
        obs[key] = data.draw(st.sampled_from(["abc", None, object()]))
    return obs


@FEW
@given(data=st.data())
def test_malformed_observations_get_a_clear_error(fake_policy, data):
    pol, fake = fake_policy
    obs = _corrupt(data, _good_obs(fake, 2), fake.V)
    with pytest.raises(Exception) as info:
        pol.predict(obs, deterministic=True)
    assert_clear_error(info.value)


@pytest.mark.parametrize("obs", [None, [1, 2, 3], np.zeros((2, 5)), "prompt"])
def test_an_observation_that_is_not_a_dict(fake_policy, obs):
    pol, _ = fake_policy
    with pytest.raises(TextEnvsError, match="expected an observation dict"):
        pol.predict(obs)
