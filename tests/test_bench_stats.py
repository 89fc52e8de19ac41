"""The bench's statistics on toys with known answers (text_envs_app/bench_stats.py): the probability of improvement
(rliable's definition), paired differences with bootstrap intervals, the clustered evaluation noise; and the report's
baseline choice and hacking flags on hand-made rows (text_envs_app/bench_report.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from text_envs.errors import TextEnvsError
from text_envs_app import bench_report, bench_stats


# ---------------------------------------------------------------------------------------------- P(X > Y)
def test_probability_of_improvement_known_answers():
    x = np.array([0.1, 0.4, 0.2, 0.9])
    assert bench_stats.probability_of_improvement(x, x) == 0.5  # identical scores: exactly one half
    assert bench_stats.probability_of_improvement(x + 1.0, x) == 1.0  # every run of X beats every run of Y
    assert bench_stats.probability_of_improvement(x, x + 1.0) == 0.0
    # one tie among 2 x 2 pairs: (1 > 0) + (1 = 1) / 2 + (2 > 0) + (2 > 1) = 3.5 of 4
    assert bench_stats.probability_of_improvement([1.0, 2.0], [0.0, 1.0]) == pytest.approx(3.5 / 4)
    # two tasks: the mean of the per-task probabilities (1.0 on the first, 0.0 on the second)
    both = bench_stats.probability_of_improvement([[1.0, 0.0], [2.0, 0.0]], [[0.0, 1.0], [0.5, 2.0]])
    assert both == pytest.approx(0.5)
    with pytest.raises(TextEnvsError, match="same tasks"):
        bench_stats.probability_of_improvement(np.zeros((3, 2)), np.zeros((3, 1)))


def test_probability_of_improvement_is_rliables_mann_whitney_u():
    """rliable computes scipy's Mann-Whitney U (alternative 'greater') over n_x * n_y: the same number, ties and
    unequal run counts included."""
    rng = np.random.default_rng(1)
    for n_x, n_y in ((5, 5), (10, 7), (3, 12)):
        x = np.round(rng.normal(0.2, 1.0, n_x), 1)  # rounded: some ties
        y = np.round(rng.normal(0.0, 1.0, n_y), 1)
        u = scipy_stats.mannwhitneyu(x, y, alternative="greater").statistic
        assert bench_stats.probability_of_improvement(x, y) == pytest.approx(u / (n_x * n_y), abs=1e-12)


def test_probability_of_improvement_interval():
    rng = np.random.default_rng(2)
    same_x, same_y = rng.normal(size=10), rng.normal(size=10)
    low, high = bench_stats.probability_of_improvement_ci(same_x, same_y, reps=4000)
    assert low < 0.5 < high  # one distribution: the interval holds one half
    low, high = bench_stats.probability_of_improvement_ci(same_x + 100.0, same_y, reps=500)
    assert (low, high) == (1.0, 1.0)  # strictly dominating in every resample
    point = bench_stats.probability_of_improvement(same_x, same_y)
    low, high = bench_stats.probability_of_improvement_ci(same_x, same_y, reps=4000)
    assert low <= point <= high
    assert bench_stats.probability_of_improvement_ci(same_x, same_y, reps=300, seed=5) == \
        bench_stats.probability_of_improvement_ci(same_x, same_y, reps=300, seed=5)


# ---------------------------------------------------------------------------------------------- paired differences
def test_paired_difference_constant_shift_and_noise():
    base = np.array([0.50, 0.62, 0.55, 0.70, 0.58])
    c = bench_stats.paired_difference(base + 0.03, base, "b", reps=2000)
    # every seed gains exactly 0.03: the interval is that point, however different the seeds are from each other
    assert (c.mean, c.low, c.high) == pytest.approx((0.03, 0.03, 0.03), abs=1e-12)
    assert c.excludes_zero() and c.verdict() == "better" and c.baseline == "b" and c.n == 5
    # pairing removes the seed-to-seed spread (0.07 std) that an unpaired comparison would carry
    assert bench_stats.probability_of_improvement(base + 0.03, base) < 1.0 and c.poi < 1.0

    rng = np.random.default_rng(0)
    sigma, n = 0.02, 40
    d = 0.01 + sigma * rng.standard_normal(n)
    c = bench_stats.paired_difference(base.mean() + d, np.full(n, base.mean()), reps=20_000)
    assert c.low < d.mean() < c.high
    # the percentile interval of a mean: about +-1.96 standard errors (within Monte Carlo and skew)
    half = 1.96 * d.std(ddof=1) / math.sqrt(n)
    assert (c.high - c.low) / 2 == pytest.approx(half, rel=0.15)
    worse = bench_stats.paired_difference(base - 0.05, base, reps=500)
    assert worse.verdict() == "worse" and worse.poi < 0.5
    same = bench_stats.paired_difference(base, base, reps=500)
    assert same.verdict() == "not separated" and same.poi == 0.5 and (same.low, same.high) == (0.0, 0.0)
    # one seed: the "interval" is the one difference itself, which says nothing about seeds
    one = bench_stats.paired_difference(base[:1] - 0.05, base[:1], reps=500)
    assert one.low == one.high < 0 and one.verdict() == "one seed: no interval" and not one.excludes_zero()


def test_paired_difference_refuses_bad_input():
    with pytest.raises(TextEnvsError, match="same length"):
        bench_stats.paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(TextEnvsError, match="finite"):
        bench_stats.paired_difference([0.1, float("nan")], [0.1, 0.2])
    with pytest.raises(TextEnvsError, match="confidence"):
        bench_stats.paired_difference([0.1, 0.2], [0.1, 0.2], confidence=95)


def test_clustered_standard_error():
    # every text of a prompt scores the same: the per-prompt means carry all the noise
    per_prompt = np.array([0.0, 1.0, 0.0, 1.0])
    rewards = np.repeat(per_prompt[:, None], 4, axis=1)  # (4 prompts, 4 samples)
    assert bench_stats.clustered_standard_error(rewards) == pytest.approx(per_prompt.std(ddof=1) / 2)
    # independent texts: about the naive std / sqrt(N * S)
    r = np.random.default_rng(0).random((2000, 4))
    naive = r.std() / math.sqrt(r.size)
    assert bench_stats.clustered_standard_error(r) == pytest.approx(naive, rel=0.1)
    assert math.isnan(bench_stats.clustered_standard_error(np.ones((1, 4))))
    with pytest.raises(TextEnvsError, match="prompts, samples"):
        bench_stats.clustered_standard_error([0.1, 0.2])


# ---------------------------------------------------------------------------------------------- the report
def _row(method, seed, reward, kl_coef=None, **extra):
    return {"task": "t", "env": "E", "method": method, "kl_coef": kl_coef, "seed": seed, "reward": reward, "kl": 0.1,
            "wall_s": 1.0, **extra}


def test_baseline_is_the_better_of_best_of_n_at_kl_and_filtered_supervised():
    seeds = range(4)
    rows = [_row("sampled", s, 0.5, **{"distinct-2": 0.6, "self-bleu": 0.2, "validity": 0.95}) for s in seeds]
    rows += [_row("supervised-filtered", s, 0.60 + 0.01 * s) for s in seeds]
    # ppo: best-of-n at its KL scores 0.65..0.68 (above supervised's 0.615): that is its baseline, 0.05 below ppo
    rows += [_row("ppo", s, 0.70 + 0.01 * s, 0.05, best_of_n_at_kl=0.65 + 0.01 * s,
                  **{"distinct-2": 0.3, "self-bleu": 0.25, "validity": 0.95}) for s in seeds]
    # a2c spent almost no KL: best-of-n there scores 0.52, so filtered supervised is the stronger baseline
    rows += [_row("a2c", s, 0.55, 0.05, best_of_n_at_kl=0.52, **{"distinct-2": 0.59, "self-bleu": 0.2,
                                                                   "validity": 0.7}) for s in seeds]
    comparisons = bench_report.paired_comparisons(rows, "t", reps=2000)
    assert set(comparisons) == {("ppo", 0.05), ("a2c", 0.05)}  # the start model and baselines are not compared
    ppo, a2c = comparisons[("ppo", 0.05)], comparisons[("a2c", 0.05)]
    assert ppo.baseline == bench_report.BEST_OF_N_AT_KL and ppo.mean == pytest.approx(0.05)
    assert (ppo.low, ppo.high) == pytest.approx((0.05, 0.05)) and ppo.poi == 1.0
    assert a2c.baseline == "supervised-filtered" and a2c.mean == pytest.approx(0.55 - 0.615)
    assert a2c.verdict() == "worse" and a2c.poi == 0.0

    flags = bench_report.hacking_flags(rows, "t")
    assert flags[("ppo", 0.05)] == ["distinct-2 0.50x start"]  # 0.3 < 0.8 x 0.6
    assert flags[("a2c", 0.05)] == ["validity -0.25"]
    assert flags[("supervised-filtered", None)] == []  # metrics it lacks are not judged
    md = bench_report.format_results(rows, "toy", dict(steps=64, eval_examples=8, eval_samples=2), 4, reps=2000)
    assert "| ppo | best-of-n at the method's KL | +0.050 [+0.050, +0.050] | 1.00 [1.00, 1.00] | better | 4 |" in md
    assert "flagged: distinct-2 0.50x start" in md and "not flagged" in md
    # ppo is flagged and its reward 0.715 is above the start model's 0.5: the reward still pays for it
    assert "- ppo: flagged (distinct-2 0.50x start) while its reward 0.715" in md


def test_hacking_flags_catch_degenerate_texts_that_vader_still_rewards():
    """What the hack preset looks for, on corpora with a known answer: the review generator's own continuations
    stand for the start model's texts; a model that found VADER's favourite words repeats them. VADER pays the
    degenerate corpus more, and the real metrics (text_envs.diversity) cross the documented thresholds."""
    import gymnasium as gym

    from text_envs import make_reward
    from text_envs.diversity import hacking_metrics

    env = gym.make("TextContinuation-v0", split="test").unwrapped
    prompts, fluent = zip(*[(p, refs[0]) for p, refs in (env.example_text(i) for i in range(60))])
    env.close()
    loops = ["great love great love great love great love!", "wonderful great wonderful great wonderful great!",
             "love love love love great great great great!"]
    degenerate = [loops[i % 3] for i in range(60)]
    vader = make_reward("sentiment")

    def row(method, texts, seed, kl_coef=None):
        rewards = vader(list(texts), [[""]] * len(texts), list(prompts))
        metrics = hacking_metrics(list(texts), list(prompts), "TextContinuation-v0", "sentiment")
        return {"task": "t", "env": "E", "method": method, "kl_coef": kl_coef, "seed": seed,
                "reward": float(np.mean(rewards)), "kl": 0.0, "wall_s": 1.0, **metrics}

    rows = [row("sampled", fluent, s) for s in (0, 1)] + [row("ppo", degenerate, s, 0.0) for s in (0, 1)]
    rows += [row("a2c", fluent, s, 0.0) for s in (0, 1)]  # the start model's texts again: nothing to flag
    flags = bench_report.hacking_flags(rows, "t")
    flagged = {reason.split()[0] for reason in flags[("ppo", 0.0)]}
    assert {"distinct-1", "distinct-2", "self-bleu", "repeated_ngrams", "validity"} <= flagged
    assert flags[("a2c", 0.0)] == []
    assert rows[2]["reward"] > rows[0]["reward"]  # VADER still rewards the loops
    md = bench_report.format_results(rows, "hack", dict(steps=1, eval_examples=60, eval_samples=1), 2, reps=200)
    assert "- ppo (β=0): flagged (" in md or "- ppo: flagged (" in md
    assert "the reward still pays for these texts" in md and "| a2c | " in md and "not flagged |" in md


def test_rows_are_paired_against_raft_at_their_kl_coefficient():
    seeds = range(4)
    rows = [_row("raft", s, 0.58 + 0.01 * s, 0.5, kl=0.20) for s in seeds]
    rows += [_row("rloo", s, 0.70 + 0.01 * s, 0.5, kl=0.15) for s in seeds]  # more reward for less KL
    rows += [_row("grpo", s, 0.50 + 0.01 * s, 0.5, kl=0.30) for s in seeds]  # less reward for more KL
    rows += [_row("ppo", s, 0.90, 0.05, kl=0.9) for s in seeds]  # no RAFT run at its coefficient: not paired
    rows += [_row("sampled", s, 0.5) for s in seeds]
    comparisons = bench_report.raft_comparisons(rows, "t", reps=2000)
    assert set(comparisons) == {("rloo", 0.5), ("grpo", 0.5)}
    rloo, rloo_kl, raft_kl = comparisons[("rloo", 0.5)]
    assert rloo.baseline == "raft" and rloo.mean == pytest.approx(0.12) and rloo.verdict() == "better"
    assert (rloo_kl, raft_kl) == pytest.approx((0.15, 0.20)) and rloo.n == 4
    grpo = comparisons[("grpo", 0.5)][0]
    assert grpo.mean == pytest.approx(-0.08) and grpo.verdict() == "worse"
    md = bench_report.format_results(rows, "toy", dict(steps=64, eval_examples=8, eval_samples=2), 4, reps=2000)
    assert ("| rloo (β=0.5) | +0.120 [+0.120, +0.120] | 1.00 [1.00, 1.00] | better, at no more KL | 0.150 / 0.200 "
            "| 4 |") in md
    assert "| grpo (β=0.5) | -0.080 [-0.080, -0.080] | 0.00 [0.00, 0.00] | worse, spending more KL | 0.300 / 0.200 |" in md
