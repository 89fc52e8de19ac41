"""text_envs.frontier against closed forms: pi0 uniform over a few texts with known rewards."""

from __future__ import annotations

import math

import numpy as np
import pytest

from text_envs.errors import TextEnvsError
from text_envs.frontier import (
    achievable_share,
    best_of_n,
    best_of_n_at_kl,
    best_of_n_curve,
    best_of_n_kl_bound,
    optimum,
    optimum_curve,
)

TEXT_REWARDS = np.array([0.1, 0.3, 0.5, 0.9])  # pi0 uniform over four texts


def exact_optimum(beta: float) -> tuple[float, float, float]:
    """reward, KL, J* of pi* ∝ pi0 exp(r / beta) by the exact sum over the four texts."""
    p0 = np.full(len(TEXT_REWARDS), 1 / len(TEXT_REWARDS))
    star = p0 * np.exp(TEXT_REWARDS / beta)
    star /= star.sum()
    reward = float((star * TEXT_REWARDS).sum())
    kl = float((star * np.log(star / p0)).sum())
    return reward, kl, reward - beta * kl


def exact_best_of_n(n: int) -> float:
    """E[max of n iid uniform draws over the four texts]: P(max = r_(k)) = (k/K)^n - ((k-1)/K)^n."""
    r = np.sort(TEXT_REWARDS)
    k = np.arange(1, len(r) + 1) / len(r)
    return float((r * (k**n - (k - 1 / len(r)) ** n)).sum())


@pytest.mark.parametrize("beta", [0.05, 0.2, 1.0, 5.0])
def test_optimum_equals_exact_sum_when_samples_are_the_support(beta):
    # each text sampled once: the self-normalised weights are pi*'s exact probabilities
    rewards = np.tile(TEXT_REWARDS, (3, 1))  # three identical prompts
    point = optimum(rewards, beta)
    reward, kl, objective = exact_optimum(beta)
    assert point.reward == pytest.approx(reward, abs=1e-12)
    assert point.kl == pytest.approx(kl, abs=1e-12)
    assert point.objective == pytest.approx(objective, abs=1e-12)
    assert point.objective == pytest.approx(point.reward - beta * point.kl, abs=1e-12)
    assert 1.0 <= point.ess_min <= point.ess <= 4.0


def test_optimum_converges_from_random_samples():
    rng = np.random.default_rng(0)
    m = 40_000
    rewards = TEXT_REWARDS[rng.integers(0, len(TEXT_REWARDS), size=(2, m))]  # (2, M) draws from pi0
    reward, kl, objective = exact_optimum(0.2)
    point = optimum(rewards, 0.2)
    # Monte Carlo error of a self-normalised mean over 40,000 draws with ESS in the thousands: ~1e-3
    assert point.reward == pytest.approx(reward, abs=0.01)
    assert point.kl == pytest.approx(kl, abs=0.02)
    assert point.objective == pytest.approx(objective, abs=0.01)


def test_optimum_limits():
    rewards = np.array([[0.0, 1.0, 0.5, 0.25]])
    cold = optimum(rewards, 1e-4)  # beta -> 0: all weight on the best sample, KL -> log M
    assert cold.reward == pytest.approx(1.0, abs=1e-9) and cold.kl == pytest.approx(math.log(4), abs=1e-6)
    assert cold.ess == pytest.approx(1.0, abs=1e-9)
    hot = optimum(rewards, 1e6)  # beta -> inf: the start model itself
    assert hot.reward == pytest.approx(rewards.mean(), abs=1e-6) and hot.kl == pytest.approx(0.0, abs=1e-9)
    assert hot.ess == pytest.approx(4.0, abs=1e-6)
    assert [p.beta for p in optimum_curve(rewards, [1.0, 0.5])] == [1.0, 0.5]


@pytest.mark.parametrize("beta", [1e-4, 0.05, 0.5, 5.0])
def test_corrected_objective_is_the_jackknife_of_the_plug_in(beta):
    # M J*(all) - (M-1) mean_i J*(all but i), by deleting each sample in turn; at beta 1e-4 the leave-one-out sums
    # without a prompt's best sample underflow unless summed apart, and ties at the maximum are kept
    rng = np.random.default_rng(1)
    rewards = np.vstack([rng.random((5, 6)), [[0.9, 0.9, 0.1, 0.2, 0.3, 0.4]], [[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]])
    m = rewards.shape[1]
    loo = np.mean([optimum(np.delete(rewards, i, axis=1), beta).objective for i in range(m)])
    expected = m * optimum(rewards, beta).objective - (m - 1) * loo
    assert optimum(rewards, beta).objective_corrected == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert math.isnan(optimum(rewards[:, :1], beta).objective_corrected)  # one sample: nothing to leave out


def _plug_in_and_corrected_errors(beta: float, m: int) -> tuple[float, float, float]:
    """Mean errors against the exact J* of the plug-in and the jackknife estimate, and the latter's standard error:
    m samples per prompt from pi0 uniform over the four texts, 20 seeded blocks of 1,000 prompts."""
    rng = np.random.default_rng(0)
    objective = exact_optimum(beta)[2]
    blocks = [optimum(TEXT_REWARDS[rng.integers(0, len(TEXT_REWARDS), size=(1_000, m))], beta) for _ in range(20)]
    corrected = np.array([p.objective_corrected for p in blocks])
    return (float(np.mean([p.objective for p in blocks])) - objective, float(corrected.mean()) - objective,
            float(corrected.std(ddof=1) / math.sqrt(len(blocks))))


def test_corrected_objective_removes_the_small_sample_bias():
    # the main job's setting (beta 0.5, 16 samples): the plug-in is low by many standard errors, the jackknife not
    plug_in, corrected, se = _plug_in_and_corrected_errors(0.5, 16)
    assert plug_in < -8 * se and abs(corrected) < 4 * se
    # a harder beta: what the jackknife leaves is second order, under a quarter of the plug-in's bias and falling
    # faster with m (1/m^2 against 1/m)
    errors = [_plug_in_and_corrected_errors(0.2, m)[:2] for m in (8, 16, 32)]
    assert all(abs(c) < abs(p) / 4 for p, c in errors)
    assert abs(errors[2][1]) < abs(errors[0][1]) / 8 and abs(errors[2][0]) > abs(errors[0][0]) / 8


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_best_of_n_unbiased_on_average(n):
    # the order-statistic estimate averaged over every 6-sample draw pattern equals E[max of n]; enumerate
    # many random 6-sample sets instead: its mean converges to the closed form
    rng = np.random.default_rng(n)
    rewards = TEXT_REWARDS[rng.integers(0, len(TEXT_REWARDS), size=(20_000, 6))]  # 20,000 prompts x 6 samples
    assert best_of_n(rewards, n) == pytest.approx(exact_best_of_n(n), abs=0.006)  # ~4 standard errors


def test_best_of_n_edges_and_curve():
    rewards = np.array([[0.3, 0.1, 0.9, 0.5], [1.0, 0.0, 0.0, 0.0]])
    assert best_of_n(rewards, 1) == pytest.approx(rewards.mean(), abs=1e-12)
    assert best_of_n(rewards, 4) == pytest.approx(rewards.max(axis=1).mean(), abs=1e-12)
    # best of 2 of [0.1, 0.3, 0.5, 0.9]: the 6 pairs' maxima 0.3, 0.5, 0.9, 0.5, 0.9, 0.9 -> 4.0 / 6
    assert best_of_n(rewards[:1], 2) == pytest.approx(4.0 / 6, abs=1e-12)
    curve = best_of_n_curve(rewards, max_n=32)
    assert [p.n for p in curve] == [1, 2, 3, 4]
    assert curve[1].kl_bound == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl_bound(1) == 0.0
    assert best_of_n_at_kl(curve, 0.0) == pytest.approx(curve[0].reward)
    mid = (curve[1].kl_bound + curve[2].kl_bound) / 2
    assert best_of_n_at_kl(curve, mid) == pytest.approx((curve[1].reward + curve[2].reward) / 2)
    assert best_of_n_at_kl(curve, 99.0) == pytest.approx(curve[-1].reward)


def test_share_and_bad_input():
    assert achievable_share(0.6, 0.5, 0.7) == pytest.approx(0.5)
    assert math.isnan(achievable_share(0.5, 0.5, 0.5))
    with pytest.raises(TextEnvsError, match="beta > 0"):
        optimum([[0.1, 0.2]], 0.0)
    with pytest.raises(TextEnvsError, match="shape"):
        optimum([0.1, 0.2], 1.0)
    with pytest.raises(TextEnvsError, match="finite"):
        optimum([[0.1, float("nan")]], 1.0)
    with pytest.raises(TextEnvsError, match="at least 3 samples"):
        best_of_n([[0.1, 0.2]], 3)


# ------------------------------------------------------------------------------------------------- the app
def test_sample_texts_scores_with_the_env_reward():
    import gymnasium as gym
    import torch as th

    import text_envs  # noqa: F401  (registers the envs)
    from lm_core.backends import default_model
    from text_envs_app.frontier import sample_texts

    th.set_num_threads(1)
    env = gym.make("TextContinuation-v0", split="test", difficulty=1).unwrapped
    model = default_model(len(env.tokenizer))[0].eval()
    rows = sample_texts(model, env, [0, 1], samples=3, seed=5)
    assert [r["example_index"] for r in rows] == [0, 1]
    assert all(len(r["texts"]) == len(r["rewards"]) == len(r["gen_len"]) == 3 for r in rows)
    for r in rows:
        assert r["rewards"] == pytest.approx(env.reward(r["texts"], [r["references"]] * 3, [r["prompt"]] * 3))
        assert all(n <= env.max_new_tokens for n in r["gen_len"])
    assert [r["texts"] for r in sample_texts(model, env, [0, 1], samples=3, seed=5)] == [r["texts"] for r in rows]


def test_sampling_with_top_k_1_is_the_greedy_decoding():
    # the sampler's cached decoding, with finished rows leaving the batch, against generate()'s greedy texts
    import gymnasium as gym
    import torch as th

    import text_envs  # noqa: F401
    from lm_core.backends import default_model, greedy_baseline
    from text_envs_app.frontier import sample_texts

    th.set_num_threads(1)
    env = gym.make("TextContinuation-v0", split="test", difficulty=1).unwrapped
    model = default_model(len(env.tokenizer))[0].eval()
    rows = sample_texts(model, env, range(12), samples=2, top_k=1)
    prompts = [[int(t) for t, m in zip(*env.encode_prompt(env.example_text(i)[0])) if m] for i in range(12)]
    greedy = greedy_baseline(model, env.eos_token_id, env.pad_token_id, env.max_new_tokens)(prompts)
    for row, ids in zip(rows, greedy):
        ids = ids[:ids.index(env.eos_token_id)] if env.eos_token_id in ids else ids[:env.max_new_tokens]
        assert row["texts"] == [env.decode(ids)] * 2


def test_frontier_command_writes_a_consistent_report(tmp_path):
    import json

    from text_envs_app.cli import main

    out = tmp_path / "frontier"
    assert main(["frontier", "--examples", "3", "--samples", "4", "--betas", "1,0.5", "--threads", "1",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "frontier.json").read_text())
    assert (summary["prompts"], summary["samples"]) == (3, 4)
    rewards = np.array(list(summary["rewards"].values()))  # (3, 4), as sampled
    assert summary["best_of_n"][0]["reward"] == pytest.approx(rewards.mean())
    assert summary["optimum"][1] == pytest.approx(optimum(rewards, 0.5).to_dict())
    assert (out / "frontier.png").stat().st_size > 0 and (out / "frontier.md").is_file()
    assert main(["frontier", "--examples", "1", "--samples", "4", "--out", str(out)]) == 2  # exists: refused
    assert main(["frontier", "--samples", "1", "--out", str(tmp_path / "x")]) == 2


def test_place_against_frontier_adds_rows():
    from text_envs_app.config import TrainConfig
    from text_envs_app.frontier import compare_to_frontier

    rewards = np.tile(TEXT_REWARDS, (2, 1))
    placed = compare_to_frontier(rewards, 0.5, model_reward=0.6, model_kl=0.1)
    reward, kl, objective = exact_optimum(0.5)
    assert placed["optimum_J"] == pytest.approx(objective) and placed["optimum_kl"] == pytest.approx(kl)
    # the share is read against J* less the plug-in's small-sample bias (4 samples per prompt: the jackknife)
    limit = optimum(rewards, 0.5).objective_corrected
    assert placed["optimum_J_corrected"] == limit and limit > objective
    assert placed["gain_share"] == pytest.approx((0.6 - 0.05 - TEXT_REWARDS.mean()) / (limit - TEXT_REWARDS.mean()))
    one = compare_to_frontier(rewards[:, :1], 0.5, model_reward=0.6, model_kl=0.1)  # one sample: the plug-in
    assert one["optimum_J_corrected"] == one["optimum_J"]
    with pytest.raises(TextEnvsError, match="frontier-samples"):
        TrainConfig(frontier_samples=1).validate()


def test_main_job_rows_against_the_start_models_samples():
    import torch as th

    from lm_core.backends import default_model
    from text_envs_app.config import FRONTIER_KEYS, TrainConfig
    from text_envs_app.evaluation import format_table
    from text_envs_app.frontier import place_against_frontier

    th.set_num_threads(1)
    cfg = TrainConfig(eval_examples=3, frontier_samples=4, kl_coef=0.5)
    start_lm = default_model(6000)[0].eval()
    columns = {"start": {"reward": 0.5}, "ppo": {"reward": 0.7, "kl": 0.2}}
    kept = place_against_frontier(start_lm, cfg, columns, log=lambda _: None)
    assert (kept["samples"], kept["prompts"], kept["beta"]) == (4, 3, 0.5)
    ppo = columns["ppo"]
    assert ppo["model_J"] == pytest.approx(0.7 - 0.5 * 0.2)
    assert ppo["gain_share"] == pytest.approx(achievable_share(ppo["model_J"], kept["start_J"],
                                                               kept["optimum_J_corrected"]))
    assert columns["start"]["optimum_J"] == kept["optimum_J"] and columns["start"]["model_J"] == kept["start_J"]
    assert columns["start"]["optimum_J_corrected"] == kept["optimum_J_corrected"]
    assert kept["models"]["ppo"]["best_of_n_at_kl"] == ppo["best_of_n_at_kl"]
    table = format_table(columns)
    assert all(f"| {k} |" in table for k in FRONTIER_KEYS if k not in ("start_J", "model_reward", "model_kl"))
    assert "gain_share = (J(model)" in table
    again = {"start": {}, "ppo": {"reward": 0.7, "kl": 0.2}}  # the trained model's reward from its own samples
    kept = place_against_frontier(start_lm, cfg, again, log=lambda _: None, models={"ppo": start_lm})
    assert again["ppo"]["model_reward"] == pytest.approx(kept["start_J"], abs=0.3)  # the same model, other draws
    # ... and its KL along those same texts (the start model itself: 0), not the column's one-text KL
    assert again["ppo"]["model_kl"] == pytest.approx(0.0, abs=1e-5)
    assert again["ppo"]["model_J"] == pytest.approx(again["ppo"]["model_reward"], abs=1e-5)
    assert kept["models"]["ppo"]["reward_samples"] == kept["models"]["ppo"]["kl_samples"] == 4
    greedy_cfg = TrainConfig(eval_examples=3, frontier_samples=0)
    assert place_against_frontier(start_lm, greedy_cfg, {"start": {}}, log=lambda _: None) is None


def test_a_models_kl_is_measured_along_its_own_samples():
    """sampled_rewards_and_kls: the (N, M) KLs are each text's exact KL to the reference (sequence_kls), positive for
    a moved model, and the rewards are those of the same draws as without a reference."""
    import gymnasium as gym
    import torch as th

    from lm_core.backends import default_model
    from text_envs_app.config import TrainConfig
    from text_envs_app.frontier import sample_texts, sampled_rewards_and_kls, sequence_kls

    th.set_num_threads(1)
    cfg = TrainConfig(eval_examples=3, frontier_samples=4, kl_coef=0.5)
    start_lm = default_model(6000)[0].eval()
    moved = default_model(6000)[0].eval()
    with th.no_grad():
        for p in moved.parameters():
            p.add_(0.05 * th.randn_like(p))
    rewards, kls = sampled_rewards_and_kls(moved, cfg, 4, reference=start_lm)
    alone, none = sampled_rewards_and_kls(moved, cfg, 4)
    assert none is None and kls.shape == rewards.shape == (3, 4)
    np.testing.assert_array_equal(rewards, alone)
    assert (kls > 0).all()
    env = gym.make(cfg.env, split=cfg.eval_split).unwrapped
    rows = sample_texts(moved, env, range(3), 4, seed=cfg.seed)
    expected = sequence_kls(moved, start_lm, env, [r["prompt"] for r in rows for _ in range(4)],
                            [t for r in rows for t in r["token_ids"]])
    np.testing.assert_allclose(kls.ravel(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind, top_k", [("shipped", 5), ("gpt2", None), ("gpt2", 5)])
def test_kls_summed_while_sampling_equal_the_teacher_forced_kls(kind, top_k):
    """sample_texts(reference=...): each text's KL, summed token by token beside the sampler (an encoder-decoder,
    its finished rows leaving both caches) or teacher-forced after it (a causal model), is sequence_kls' along the
    same ids, a top-k sampler's renormalised distribution included; the texts are the draws made without it."""
    import gymnasium as gym
    import torch as th
    from helpers import gpt2_config
    from transformers import AutoModelForCausalLM

    import text_envs  # noqa: F401
    from lm_core.backends import default_model
    from text_envs_app.frontier import sample_texts, sequence_kls

    th.set_num_threads(1)
    env = gym.make("TextContinuation-v0", split="ood", difficulty=1).unwrapped  # prompts of different widths
    V = len(env.tokenizer)
    if kind == "shipped":
        model, reference = default_model(V)[0], default_model(V)[0]
    else:  # prompt and text fit its positions
        th.manual_seed(0)
        model, reference = (AutoModelForCausalLM.from_config(gpt2_config(V, n_positions=128)) for _ in range(2))
    with th.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * th.randn_like(p))
    model.eval(), reference.eval()
    rows = sample_texts(model, env, range(6), samples=3, top_k=top_k, seed=2, reference=reference)
    alone = sample_texts(model, env, range(6), samples=3, top_k=top_k, seed=2)
    assert [r["token_ids"] for r in rows] == [r["token_ids"] for r in alone]
    if kind == "shipped":  # texts of different lengths: rows left the batch at different steps
        assert len({len(t) for r in rows for t in r["token_ids"]}) > 3
    kls = np.array([k for r in rows for k in r["kls"]])
    expected = sequence_kls(model, reference, env, [r["prompt"] for r in rows for _ in range(3)],
                            [t for r in rows for t in r["token_ids"]], mask=(model, top_k, None) if top_k else None)
    assert (kls > 0).all()
    np.testing.assert_allclose(kls, expected, rtol=1e-5, atol=1e-6)


def test_length_sorted_batches_cover_every_text_once():
    from text_envs_app.text_kl import length_sorted_batches

    lengths = [5, 1, 48, 3, 3, 9, 2, 48, 7, 1]
    batches = length_sorted_batches(lengths, batch=3, window=6)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 3 for b in batches)
    assert batches[:2] == [[1, 3, 4], [0, 5, 2]]  # the first window of six, shortest first (stable on ties)
    assert [lengths[i] for i in batches[2]] == [1, 2, 7] and batches[3] == [7]
