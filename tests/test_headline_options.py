"""The main job's options beyond TRL's: RLOO's ``kl_mode="exact"`` (the KL at each token exact over the vocabulary in
the loss, the later tokens' KL in its advantage) against the hand computation, the identity it rests on, and its
flag (``--kl-mode``)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
from helpers import groups_by_hand
from stable_baselines3.common.logger import configure

from sb3_ext import GRPO, RLOO, LLMPolicy, make_text_vec_env
from sb3_ext.algorithms.policy_gradient import kl_shaping, kl_to_go
from text_envs.errors import TextEnvsError
from text_envs_app import algorithms
from text_envs_app.config import TrainConfig


def copy_env(n: int = 8, group_size: int = 4, seed: int = 0):
    return make_text_vec_env("TextCopy-v0", n, seed=seed, group_size=group_size)


def rloo(kl_mode: str, **kwargs) -> RLOO:
    model = RLOO(LLMPolicy, copy_env(), learning_rate=1e-3, beta=0.5, kl_mode=kl_mode, seed=0, **kwargs)
    model.set_logger(configure(None, []))
    return model


def perturb(model: RLOO, scale: float = 0.05) -> None:
    """Move the trained weights away from the frozen start model (seeded), so that the KL is not 0."""
    gen = th.Generator().manual_seed(1)
    with th.no_grad():
        for p in model.policy.parameters():
            p.add_(scale * th.randn(p.shape, generator=gen))
    model.policy.reset_cache()


def test_kl_shaping_by_hand() -> None:
    kl = np.array([0.5, -0.25, 1.0])
    np.testing.assert_allclose(kl_shaping(kl, "token"), -kl_to_go(kl))
    np.testing.assert_allclose(kl_shaping(kl, "token"), [-1.25, -0.75, -1.0])
    np.testing.assert_allclose(kl_shaping(kl, "exact"), [0.5, 0.25, 1.25])  # what the text paid up to each token
    with pytest.raises(TextEnvsError, match="exact"):
        kl_shaping(kl, "reward")


def test_exact_kl_is_the_expected_score_function_gradient() -> None:
    """The identity kl_mode="exact" rests on: at a state s, KL(pi(.|s) || ref(.|s)) and its gradient equal the
    expectation over the next token y ~ pi of log(pi(y)/ref(y)) and of grad log pi(y) * log(pi(y)/ref(y)) (what
    kl_mode="reward" samples). Checked by enumerating every one-token text of one prompt, with the policy moved away
    from its reference; a wrong reference, temperature or KL direction would break it."""
    model = rloo("exact")
    perturb(model)
    obs = model.env.reset()
    V = model.action_space.n
    texts = [{"prompt_ids": obs["prompt_ids"][0], "prompt_mask": obs["prompt_mask"][0], "tokens": np.array([y])}
             for y in range(V)]
    log_prob, _, _, exact = model.episode_log_probs_and_kl(texts, True)  # (V,) each
    ref = model.reference_log_probs(texts)  # (V,)
    assert th.allclose(exact, exact[0].expand(V), atol=1e-6)  # one state: the same KL for every text
    assert float(exact[0].detach()) > 1e-3  # the perturbation moved the policy
    weights = log_prob.detach().exp()
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-5)
    log_ratio = (log_prob - ref).detach()
    assert float(exact[0].detach()) == pytest.approx(float((weights * log_ratio).sum()), rel=1e-4)
    params = list(model.policy.parameters())
    exact_grad = th.autograd.grad(exact[0], params, retain_graph=True, allow_unused=True)
    score_grad = th.autograd.grad((weights * log_prob * log_ratio).sum(), params, allow_unused=True)
    compared = 0
    for a, b in zip(exact_grad, score_grad):
        if a is None or b is None:
            assert a is None and b is None or float((a if a is not None else b).abs().max()) < 1e-8
            continue
        assert th.allclose(a, b, atol=1e-6, rtol=1e-3), float((a - b).abs().max())
        compared += int(a.abs().max() > 0)
    assert compared > 0


def test_exact_update_at_the_start_model_is_the_reward_update() -> None:
    """At the start model every KL is 0 and so is the exact term's gradient: one update of kl_mode="exact" moves the
    weights exactly as kl_mode="reward" does (same loss, same step)."""
    rewards = np.array([[1.0, 0.0, 0.5, 0.25], [0.2, 0.2, 0.9, 0.1]])
    weights = {}
    for mode in ("reward", "exact"):
        model = rloo(mode)
        groups = groups_by_hand(model, rewards)
        model.train_groups(groups)
        lengths = np.array([len(t["tokens"]) for g in groups for t in g])
        adv = (rewards - (rewards.sum(1, keepdims=True) - rewards) / 3).reshape(-1)
        assert model.logger.name_to_value["train/kl"] == pytest.approx(0.0, abs=1e-5)
        assert model.logger.name_to_value["train/loss"] == pytest.approx(-(adv * lengths).sum() / lengths.sum(),
                                                                         abs=1e-5)
        weights[mode] = [p.detach().clone() for p in model.policy.parameters()]
    for a, b in zip(weights["reward"], weights["exact"]):
        assert th.allclose(a, b, atol=1e-6)


def test_exact_update_away_from_the_start_pays_the_kl() -> None:
    """Away from the start model, with equal rewards: the loss is the mean over tokens of minus the advantage (the
    leave-one-out advantage of reward - beta * the text's sampled KL, plus beta * the sampled KL up to the token)
    plus beta * the exact KL at the token, computed by hand from the same log-probs."""
    model = rloo("exact")
    perturb(model, 0.1)
    rewards = np.full((2, 4), 0.5)
    groups = groups_by_hand(model, rewards)
    flat = [t for g in groups for t in g]
    with th.no_grad():
        _, _, _, before = model.episode_log_probs_and_kl(flat, True)
        ref = model.reference_log_probs(flat).numpy()
    old = np.concatenate([t["log_probs"] for t in flat])
    bounds = np.cumsum([0] + [len(t["tokens"]) for t in flat])
    k1 = old - ref
    seq = np.add.reduceat(k1, bounds[:-1]).reshape(rewards.shape)
    j = rewards - 0.5 * seq
    adv = (j - (j.sum(1, keepdims=True) - j) / 3).reshape(-1)
    token_adv = np.concatenate([a + 0.5 * np.cumsum(k1[lo:hi]) for a, lo, hi in zip(adv, bounds[:-1], bounds[1:])])
    expected = float(np.mean(-token_adv + 0.5 * before.numpy()))
    model.train_groups(groups)
    assert float(before.min()) > 1e-3  # the perturbation moved the policy: the exact term is not 0
    assert model.logger.name_to_value["train/loss"] == pytest.approx(expected, abs=1e-5)


def test_exact_learns_with_epochs_and_minibatches() -> None:
    """The option through SB3's learn (2 epochs of 2 minibatches): weights move, the logged KL is finite."""
    model = RLOO(LLMPolicy, copy_env(), learning_rate=3e-3, beta=0.5, kl_mode="exact", n_epochs=2, batch_size=4,
                 seed=0)
    start = copy.deepcopy([p.detach().clone() for p in model.policy.parameters()])
    model.learn(256)
    assert any(not th.equal(a, p) for a, p in zip(start, model.policy.parameters()))
    assert np.isfinite(model.logger.name_to_value["train/kl"])


def test_bad_kl_modes_are_refused_with_the_fix() -> None:
    with pytest.raises(TextEnvsError, match="exact"):
        RLOO(LLMPolicy, copy_env(), kl_mode="token")
    with pytest.raises(TextEnvsError, match="normalize_advantages"):
        RLOO(LLMPolicy, copy_env(), kl_mode="exact", normalize_advantages=True)
    with pytest.raises(TextEnvsError, match="scale_rewards='none'"):
        GRPO(LLMPolicy, copy_env(), kl_mode="exact")
    GRPO(LLMPolicy, copy_env(), kl_mode="exact", scale_rewards="none", beta=0.1)  # unscaled: taken


def test_kl_mode_flag_reaches_the_class_and_is_checked() -> None:
    venv = copy_env(4, 2)
    common = dict(policy=None, env=venv, learning_rate=1e-3, n_steps=8, gamma=1.0, gae_lambda=1.0, vf_coef=0.5,
                  max_grad_norm=0.5, rollout_buffer_class=None, policy_kwargs={}, seed=0)
    assert algorithms.algorithm_kwargs(TrainConfig(algo="rloo", kl_mode="exact"), common)["kl_mode"] == "exact"
    assert "kl_mode" not in algorithms.algorithm_kwargs(TrainConfig(algo="rloo"), common)  # the class's own
    assert algorithms.make_config(algo="rloo", kl_mode="exact").kl_mode == "exact"
    with pytest.raises(TextEnvsError, match="--algo rloo: reward, exact"):
        TrainConfig(algo="ppo", kl_mode="exact").validate()
    with pytest.raises(TextEnvsError, match="--kl-mode exact is not a setting of --algo grpo"):
        TrainConfig(algo="grpo", kl_mode="exact").validate()
    venv.close()


def test_kept_reference_and_a_fresh_one_give_the_same_update(monkeypatch) -> None:
    """kl_mode="exact" keeps the rollout's reference distributions for the update when they fit its budget, else
    runs the reference again per minibatch: the same step either way (2 minibatches, away from the start model)."""
    import sb3_ext.algorithms.policy_gradient as pg

    rewards = np.array([[1.0, 0.0, 0.5, 0.25], [0.2, 0.2, 0.9, 0.1]])
    weights = []
    for budget in (pg.EXACT_REFERENCE_BUDGET, 0):
        monkeypatch.setattr(pg, "EXACT_REFERENCE_BUDGET", budget)
        model = rloo("exact", batch_size=4)
        perturb(model)
        np.random.seed(0)  # the minibatches' shuffle
        model.train_groups(groups_by_hand(model, rewards))
        weights.append([p.detach().clone() for p in model.policy.parameters()])
    for a, b in zip(*weights):
        assert th.allclose(a, b, atol=1e-6)


def test_exact_kl_of_a_lora_model_is_to_its_base() -> None:
    """A LoRA policy's reference is its base (the adapters disabled, no copy): kl_mode="exact" takes the base's full
    distribution at every token, so the exact KL term is the KL to the weights before the adapters moved, and an
    update trains the adapters only."""
    pytest.importorskip("peft")
    from lm_core.episodes import teacher_forced_outputs
    from lm_core.kl import vocabulary_kl

    model = RLOO(LLMPolicy, copy_env(), learning_rate=3e-3, beta=0.5, kl_mode="exact", n_epochs=2, batch_size=4,
                 seed=0, policy_kwargs=dict(lora=dict(r=4, lora_alpha=8, target_modules=["q", "v"])))
    model.set_logger(configure(None, []))
    flat = [t for g in groups_by_hand(model, np.full((2, 4), 0.5)) for t in g]
    with th.no_grad():
        base = model.reference_log_softmax(flat)  # the adapters start at zero: the base and the policy agree
        _, _, batch, kl_at_start = model.episode_log_probs_and_kl(flat, True)
    assert float(kl_at_start.abs().max()) < 1e-6
    gen = th.Generator().manual_seed(1)
    with th.no_grad():  # move the adapters only
        for name, p in model.policy.named_parameters():
            if "lora_" in name:
                p.add_(0.5 * th.randn(p.shape, generator=gen))
    model.policy.reset_cache()
    with th.no_grad():
        th.testing.assert_close(model.reference_log_softmax(flat), base)  # still the base's, not the policy's
        _, _, batch, token_kl = model.episode_log_probs_and_kl(flat, True)
        own, _ = teacher_forced_outputs(model.policy.backend, batch)
    assert float(token_kl.min()) > 1e-4  # the adapters moved the policy away from its base
    th.testing.assert_close(token_kl, vocabulary_kl(model.policy.distribution_logits(own).float(), base))
    names = {n for n, _ in model.policy.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.policy.named_parameters()}
    model.learn(128)
    moved = {n for n, p in model.policy.named_parameters() if not th.equal(before[n], p)}
    assert moved and all("lora_" in n for n in moved) and moved <= names
    assert np.isfinite(model.logger.name_to_value["train/kl"])
