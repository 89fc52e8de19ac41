"""KL penalty: estimators and controllers against closed forms, and the production path through the buffer."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
from helpers import FakeCopyEnv, make_model
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from lm_core.kl import DEFAULT_INIT_KL_COEF, make_kl_controller
from sb3_ext import AdaptiveKLController, EpisodeBatch, EpisodeRolloutBuffer, FixedKLController, LLMPolicy, kl_estimate

th.set_num_threads(1)


def test_estimators_closed_form_and_unbiased():
    g = th.Generator().manual_seed(0)
    p = th.softmax(th.randn(6, generator=g) * 2, 0)
    q = th.softmax(th.randn(6, generator=g) * 2, 0)
    exact = float((p * (p.log() - q.log())).sum())
    a = th.multinomial(p, 400_000, replacement=True, generator=g)
    lp, lq = p.log()[a], q.log()[a]
    k1, k3 = kl_estimate(lp, lq, "k1"), kl_estimate(lp, lq, "k3")
    assert th.allclose(k1, lp - lq)
    assert th.allclose(k3, (lq - lp).exp() - 1 - (lq - lp))
    assert (k3 >= 0).all()
    assert abs(float(k1.mean()) - exact) < 0.02 and abs(float(k3.mean()) - exact) < 0.02
    with pytest.raises(ValueError, match="Did you mean 'k3'"):
        kl_estimate(lp, lq, "k4")


def test_adaptive_controller_formula():
    c = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    assert c.update(12.0, 100) == pytest.approx(0.1 * (1 + 0.2 * 100 / 10_000))  # error clipped at +0.2
    v = c.value
    assert c.update(3.0, 50) == pytest.approx(v * (1 - 0.2 * 50 / 10_000))  # clipped at -0.2
    v = c.value
    assert c.update(6.6, 10) == pytest.approx(v * (1 + 0.1 * 10 / 10_000))
    f = FixedKLController(0.3)
    assert f.update(100.0, 10) == 0.3
    with pytest.raises(ValueError, match="expected init_kl_coef > 0, target > 0"):
        AdaptiveKLController(0.1, target=0.0, horizon=10)
    with pytest.raises(ValueError, match="starting at 0 it would stay 0"):
        AdaptiveKLController(0.0, target=1.0, horizon=10)


def test_kl_target_with_the_default_kl_coef_moves_beta():
    # kl_coef defaults to 0: a multiplicative update of 0 stays 0, so the target would never be enforced
    c = make_kl_controller(0.0, kl_target=1.0, kl_horizon=10)
    assert c.value == DEFAULT_INIT_KL_COEF > 0
    assert c.update(5.0, 10) > DEFAULT_INIT_KL_COEF  # KL above target: beta grows
    env = FakeCopyEnv()
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3,
                       model=make_model("t5", env.V), kl_target=2.0)
    assert policy.kl_enabled and policy.kl_controller.value == DEFAULT_INIT_KL_COEF
    with pytest.raises(ValueError, match="expected kl_coef >= 0"):
        make_kl_controller(-0.1, kl_target=1.0)


class RecordRewards(BaseCallback):
    def __init__(self):
        super().__init__()
        self.rewards = []

    def _on_step(self) -> bool:
        self.rewards.append(np.array(self.locals["rewards"], dtype=np.float32).copy())
        return True


def _rollout(kl_kwargs, perturb=0.0, rollouts=2):
    env = make_vec_env(FakeCopyEnv, n_envs=3, seed=5, env_kwargs=dict(min_len=1, max_len=4))
    model = PPO(LLMPolicy, env, n_steps=10, batch_size=16, seed=0, rollout_buffer_class=EpisodeRolloutBuffer,
                policy_kwargs=dict(model=make_model("t5", int(env.action_space.n)), **kl_kwargs))
    if perturb:
        with th.no_grad():
            for p in model.policy.model.parameters():
                p.add_(perturb * th.randn_like(p))
    rec = RecordRewards()
    _, cb = model._setup_learn(10**6, rec)
    cb.on_training_start(locals(), globals())
    for _ in range(rollouts):
        rec.rewards.clear()
        model.collect_rollouts(model.env, cb, model.rollout_buffer, model.n_steps)
    return model, np.stack(rec.rewards)


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_reference_equal_to_policy_gives_zero_kl(estimator):
    model, raw = _rollout(dict(kl_coef=0.5, kl_estimator=estimator))
    buf = model.rollout_buffer
    batch, flat = buf.episode_batch(range(buf.num_segments))
    acts = th.as_tensor(buf.actions.reshape(-1)[flat])
    kl = model.policy.token_kl(batch, acts, th.as_tensor(buf.log_probs.reshape(-1)[flat]))
    assert kl.abs().max() < 1e-5
    assert np.abs(buf.rewards - raw).max() < 1e-5
    assert model.logger.name_to_value["rollout/kl_coef"] == 0.5


def test_penalty_applied_before_advantages_and_adaptive_beta():
    model, raw = _rollout(dict(kl_coef=0.2, kl_target=1.0, kl_horizon=100), perturb=0.3)
    buf = model.rollout_buffer
    batch, flat = buf.episode_batch(range(buf.num_segments))
    acts = th.as_tensor(buf.actions.reshape(-1)[flat])
    # the reference is the starting weights: the perturbation made a real KL
    ref_lp = model.policy.reference_log_probs(batch, acts)
    kl = (th.as_tensor(buf.log_probs.reshape(-1)[flat]) - ref_lp).numpy()
    assert np.abs(kl).max() > 1e-2
    beta = buf.kl_stats["kl_coef"]
    expected = raw.reshape(-1).copy()
    expected[flat] -= beta * kl
    assert np.allclose(buf.rewards.reshape(-1), expected, atol=1e-5)
    # GAE saw the penalised rewards: advantages + values == returns computed from them
    assert np.allclose(buf.returns, buf.advantages + buf.values)
    # adaptive beta followed its formula with the rollout's mean per-episode KL
    err = np.clip(buf.kl_stats["kl"] / 1.0 - 1, -0.2, 0.2)
    finished = buf.segment_finished(model._last_episode_starts)
    n_done = int(finished.sum()) or buf.num_segments
    assert model.policy.kl_controller.value == pytest.approx(beta * (1 + err * n_done / 100), rel=1e-6)
    assert "rollout/kl" in model.logger.name_to_value


def test_reference_survives_training_and_is_frozen():
    model, _ = _rollout(dict(kl_coef=0.1), rollouts=1)
    ref_before = copy.deepcopy(model.policy.reference_model.state_dict())
    model.train()
    ref_after = model.policy.reference_model.state_dict()
    assert all(th.equal(ref_before[k], ref_after[k]) for k in ref_before)
    assert any(not th.equal(ref_before[k], v) for k, v in model.policy.model.state_dict().items())


def test_per_episode_kl_counts_the_tokens_of_the_previous_rollout():
    # n_steps=10 with episodes of up to 5 tokens: the rollout boundary cuts episodes, whose first tokens were
    # generated (and penalised) in the previous rollout; rollout/kl and the controller see the whole episode
    model, _ = _rollout(dict(kl_coef=0.2, kl_target=1.0, kl_horizon=100), perturb=0.3)
    buf, policy = model.rollout_buffer, model.policy
    finished = buf.segment_finished(model._last_episode_starts)
    assert finished.any()
    carried = [s for s in np.flatnonzero(finished) if buf.seg_t0[s] > 0]
    assert carried, "expected an episode begun in the previous rollout and finished in this one"
    # each finished episode's KL from scratch: teacher-forced over all its tokens (no update between the rollouts,
    # so the policy that sampled them is the current one)
    segs = np.flatnonzero(finished)
    seqs = [buf._segment_tokens(s) for s in segs]
    tokens = np.zeros((len(segs), max(len(q) for q in seqs)), dtype=np.int64)
    for i, q in enumerate(seqs):
        tokens[i, : len(q)] = q
    batch = EpisodeBatch(
        prompt_ids=th.as_tensor(np.stack([buf.seg_prompt_ids[s] for s in segs])),
        prompt_mask=th.as_tensor(np.stack([buf.seg_prompt_mask[s] for s in segs])),
        tokens=th.as_tensor(tokens),
        out_episode=th.as_tensor(np.concatenate([np.full(len(q), i) for i, q in enumerate(seqs)])),
        out_pos=th.as_tensor(np.concatenate([np.arange(len(q)) for q in seqs])),
    )
    actions = batch.tokens[batch.out_episode, batch.out_pos]
    with th.no_grad():
        _, log_prob, _ = policy.evaluate_actions(batch, actions)
    token_kl = (log_prob - policy.reference_log_probs(batch, actions)).numpy()
    per_episode = np.bincount(batch.out_episode.numpy(), weights=token_kl, minlength=len(segs))
    # float32 log-probs of a few tokens per episode: 1e-4 is ~100x their rounding
    assert buf.kl_stats["kl"] == pytest.approx(per_episode.mean(), abs=1e-4)
    assert model.logger.name_to_value["rollout/kl"] == pytest.approx(per_episode.mean(), abs=1e-4)


def test_evaluation_kl_column_uses_the_generated_ids():
    """The eval table's ``kl`` is the KL along the tokens the policy wrote, not along its decoded text
    re-tokenized (which can split words differently and, at the budget, gains an EOS never written)."""
    import gymnasium as gym

    import text_envs  # noqa: F401
    from text_envs.evaluation import evaluate
    from text_envs_app.config import TrainConfig
    from text_envs_app.evaluation import sequence_kl

    cfg = TrainConfig(env="TextSummarization-v0", eval_split="validation", max_new_tokens=6, eval_examples=4)
    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs())
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 0.0, tokenizer=env.unwrapped.tokenizer)
    reference = copy.deepcopy(policy.model)
    th.manual_seed(0)
    with th.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * th.randn_like(p))
    th.manual_seed(1)
    result = evaluate(cfg.env, policy, split=cfg.eval_split, n_examples=4, deterministic=False, batch_size=4,
                      env_kwargs=cfg.env_kwargs(), metrics=["bleu"])
    gens = result.generations
    base = env.unwrapped
    retokenized = [base.tokenizer(g["prediction"], add_special_tokens=False)["input_ids"] + [base.eos_token_id]
                   for g in gens]
    assert any(r != g["generated_ids"] for r, g in zip(retokenized, gens))  # so this test could fail
    expected = []
    with th.no_grad():
        for g in gens:
            ids, mask = base.encode_prompt(g["prompt"])
            args = (th.as_tensor(ids[None]), th.as_tensor(mask[None]), th.as_tensor([g["generated_ids"]]))
            logp = policy.backend.forward_sequences(*args)[0].float().log_softmax(-1)
            logq = policy.backend.__class__(reference, policy.V).forward_sequences(*args)[0].float().log_softmax(-1)
            expected.append(float((logp.exp() * (logp - logq)).sum()))
    # float32 sums over a few tokens of a 2.3M-parameter model: 1e-4 is far above their rounding
    assert sequence_kl(policy, reference, cfg, gens) == pytest.approx(np.mean(expected), abs=1e-4)


def test_vocabulary_kl_against_a_fixed_reference_keeps_only_its_inputs():
    """The exact KL of an update's every token (RLOO's kl_mode="exact") has the gradient of autograd's own graph of
    p * (log p - log q), in float64 to float error, while the backward keeps just the logits and the reference."""
    import torch as th

    from lm_core.kl import vocabulary_kl

    gen = th.Generator().manual_seed(0)
    logits = th.randn(4, 6, 50, dtype=th.float64, generator=gen, requires_grad=True)
    reference = th.randn(4, 6, 50, dtype=th.float64, generator=gen)
    weights = th.randn(4, 6, dtype=th.float64, generator=gen)
    kept: list[th.Tensor] = []
    with th.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        lean = vocabulary_kl(logits, reference)
    assert len(kept) == 2 and all(t.shape == logits.shape for t in kept)
    (lean * weights).sum().backward()
    lean_grad, logits.grad = logits.grad.clone(), None
    logp, logq = th.log_softmax(logits, -1), th.log_softmax(reference, -1)
    plain = (logp.exp() * (logp - logq)).sum(-1)
    (plain * weights).sum().backward()
    th.testing.assert_close(lean, plain, rtol=0, atol=1e-14)
    th.testing.assert_close(lean_grad, logits.grad, rtol=0, atol=1e-14)
