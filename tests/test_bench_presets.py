"""`text-envs bench` as a benchmark that separates algorithms: IQM and stratified bootstrap intervals, the table,
CSV and plots, the reward/KL frontier over KL coefficients, and the greedy learning curve recorded during training.

The aggregation tests use known numbers; the runs use TextCopy-v0 with tiny budgets (a few seconds each)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from text_envs.errors import TextEnvsError
from text_envs_app import bench, curves


# ---------------------------------------------------------------------------------------------- aggregation
def test_iqm_of_known_numbers():
    # 8 scores: the 2 lowest (-100, 1) and the 2 highest (6, 100) are cut, the IQM is the mean of 2, 3, 4, 5
    assert bench.iqm([100, 1, 2, 3, 4, 5, 6, -100]) == pytest.approx(3.5)
    # 5 scores: floor(5 / 4) = 1 cut from each end (scipy's trim_mean(x, 0.25), rliable's aggregate_iqm)
    assert bench.iqm([0.0, 10.0, 2.0, 3.0, 4.0]) == pytest.approx(3.0)
    assert bench.iqm([1.0, 2.0, 9.0]) == pytest.approx(4.0)  # fewer than 4 scores: nothing cut, the mean
    # (runs, tasks): the IQM is over all scores of all tasks
    assert bench.iqm(np.array([[1, 10], [2, 20], [3, 30], [4, 40]])) == pytest.approx(np.mean([3, 4, 10, 20]))
    np.testing.assert_allclose(bench.iqm(np.array([[1, 2, 3, 4], [5, 5, 5, 50]]), axis=-1), [2.5, 5.0])
    with pytest.raises(TextEnvsError, match="at least one score"):
        bench.iqm([])


def test_bootstrap_interval_contains_the_iqm_and_is_seeded():
    scores = np.array([0.61, 0.58, 0.66, 0.63, 0.70, 0.59, 0.64])
    agg = bench.aggregate(scores, reps=5000)
    assert agg.low <= agg.iqm <= agg.high and agg.low < agg.high
    # the interval lies within the range of the scores (every bootstrap IQM is a mean of observed scores)
    assert scores.min() <= agg.low and agg.high <= scores.max()
    assert agg.mean == pytest.approx(scores.mean()) and agg.std == pytest.approx(scores.std()) and agg.n == 7
    assert bench.stratified_bootstrap_ci(scores, reps=5000) == bench.stratified_bootstrap_ci(scores, reps=5000)
    # identical runs: a zero-width interval at the value
    flat = bench.aggregate([0.5] * 5, reps=500)
    assert (flat.low, flat.iqm, flat.high) == (0.5, 0.5, 0.5)
    # a wider coverage never gives a narrower interval
    lo90, hi90 = bench.stratified_bootstrap_ci(scores, reps=5000, confidence=0.90)
    assert agg.low <= lo90 and hi90 <= agg.high
    assert "0.6" in agg.cell() and agg.cell().count("[") == 1
    assert np.isnan(bench.aggregate([0.1, float("nan"), 0.3]).iqm)  # a failed run is not averaged away


def test_bootstrap_is_stratified_by_task():
    # task 0 scores about 0, task 1 about 100: a stratified sample always keeps 3 runs of each task, so every
    # bootstrap IQM averages the middle of 3 + 3 scores; an unstratified one would sometimes draw 6 of one task
    runs = np.array([[0.0, 100.0], [1.0, 101.0], [2.0, 102.0]])
    low, high = bench.stratified_bootstrap_ci(runs, reps=5000)
    assert 1.0 <= low and high <= 101.0 and low < bench.iqm(runs) < high
    means_lo, means_hi = bench.stratified_bootstrap_ci(runs, statistic=np.mean, reps=5000)
    assert 50.0 <= means_lo <= 51.0 <= means_hi <= 52.0  # the task means never change, only the runs within
    with pytest.raises(TextEnvsError, match="shape"):
        bench.stratified_bootstrap_ci(np.zeros((2, 2, 2)))
    with pytest.raises(TextEnvsError, match="confidence"):
        bench.stratified_bootstrap_ci([1.0, 2.0], confidence=95)


def test_separated_and_overlapping_methods():
    rng = np.random.default_rng(0)
    a = 0.80 + 0.01 * rng.standard_normal(5)
    b = 0.60 + 0.01 * rng.standard_normal(5)  # 20 seed stds below: the intervals cannot meet
    c = 0.805 + 0.05 * rng.standard_normal(5)  # about a's value, 5x noisier: they must meet
    A, B, C = (bench.aggregate(x, reps=5000) for x in (a, b, c))
    assert not A.overlaps(B) and not B.overlaps(A)
    assert A.overlaps(C) and C.overlaps(A)

    rows = [{"task": "t", "env": "E", "method": m, "kl_coef": 0.1, "seed": s, "reward": float(x[s])}
            for m, x in (("ppo", a), ("a2c", b), ("nlpo", c)) for s in range(5)]
    rows += [{"task": "t", "env": "E", "method": "greedy", "kl_coef": None, "seed": s, "reward": 0.0} for s in range(5)]
    sep = bench.separation(rows, "t", 0.1, reps=5000)
    assert sep["best"][0] in ("ppo", "nlpo") and sep["worst"][0] == "a2c" and sep["overlap"] is False
    two = [r for r in rows if r["method"] in ("ppo", "nlpo")]
    assert bench.separation(two, "t", 0.1, reps=5000)["overlap"] is True
    assert bench.separation([r for r in rows if r["method"] == "ppo"], "t", 0.1) is None  # one RL method

    md = bench.format_results([{**r, "kl": 0.0, "wall_s": 1.0} for r in rows], "demo",
                              dict(steps=64, eval_examples=4), 5, reps=2000)
    assert "| ppo | " in md and "| greedy | " in md and "±" in md
    assert "best" in md and "worst a2c" in md and "do not overlap" in md
    one_seed = bench.format_results([{**r, "kl": 0.0, "wall_s": 1.0} for r in rows if r["seed"] == 0], "demo",
                                    dict(steps=64, eval_examples=4), 1, reps=2000)
    assert "one seed: no interval to separate them" in one_seed and "do not overlap" not in one_seed


@pytest.mark.skipif("not _rliable_works()", reason="rliable does not import here (it pins arch < 8, and arch 7 fails "
                                                  "under pandas 3); the numbers were cross-checked under pandas 2.2")
def test_matches_rliable_when_it_imports():
    from rliable import library as rly
    from rliable import metrics

    scores = np.random.default_rng(3).normal(size=(6, 2))
    assert bench.iqm(scores) == pytest.approx(metrics.aggregate_iqm(scores))
    np.random.seed(0)
    _, ci = rly.get_interval_estimates({"m": scores}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=50_000)
    ours = bench.stratified_bootstrap_ci(scores, reps=50_000)
    # two Monte Carlo estimates of the same percentiles: agree to a small fraction of the scores' spread
    np.testing.assert_allclose(ours, np.ravel(ci["m"]), atol=0.03 * scores.std())


def _rliable_works() -> bool:
    try:
        from rliable import library  # noqa: F401
    except Exception:  # ImportError, or arch's TypeError under pandas 3
        return False
    return True


# ---------------------------------------------------------------------------------------------- runs
TINY = dict(envs=("TextCopy-v0",), steps=64, n_envs=4, n_steps=8, eval_examples=4, seeds=2, kl_coefs=(0.0, 0.5),
            curve_points=3, curve_examples=4, methods=("greedy", "supervised", "ppo", "a2c"))


def test_bench_writes_iqm_table_csv_frontier_and_curves(tmp_path, monkeypatch):
    """Two KL coefficients: one run per (RL method, coefficient, seed), one per (other method, seed); the table
    shows IQM [CI] per row, the CSV one row per run, the curves 3 points per RL run, and every plot is written."""
    monkeypatch.setitem(bench.BENCH_PRESETS, "tiny-rl", TINY)
    logged: list[str] = []
    rows = bench.run_benchmark("tiny-rl", str(tmp_path / "b"), reps=2000, log=logged.append)
    cells = [(r["method"], r["kl_coef"], r["seed"]) for r in rows]
    assert cells == [("greedy", None, 0), ("greedy", None, 1), ("supervised", None, 0), ("supervised", None, 1),
                     *[(m, k, s) for m in ("ppo", "a2c") for k in (0.0, 0.5) for s in (0, 1)]]
    for r in rows:
        assert 0.0 <= r["reward"] <= 1.0 and r["kl"] >= -1e-6 and r["start_ppl"] >= 1.0 and r["wall_s"] > 0
    assert all(r["kl"] == pytest.approx(0.0, abs=1e-6) for r in rows if r["method"] == "greedy")
    out = tmp_path / "b"
    with open(out / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(rows) and {"task", "method", "kl_coef", "seed", "reward", "kl", "start_ppl"} <= set(
        csv_rows[0])
    assert len((out / "runs.jsonl").read_text().splitlines()) == len(rows)

    md = (out / "results.md").read_text()
    for label in ("greedy", "supervised", "ppo (β=0)", "ppo (β=0.5)", "a2c (β=0)", "a2c (β=0.5)"):
        assert f"| {label} | " in md
    assert "interquartile mean" in md and "RL methods at β=0.5" in md
    ppo = [r["reward"] for r in rows if r["method"] == "ppo" and r["kl_coef"] == 0.5]
    assert bench.aggregate(ppo, reps=2000).cell() in md  # the table shows the IQM [CI] of the runs
    assert md in "\n".join(logged)

    with open(out / "curves.csv") as f:
        curve = list(csv.DictReader(f))
    for m in ("ppo", "a2c"):
        for k in ("0.0", "0.5"):
            for s in ("0", "1"):
                tokens = [int(c["tokens"]) for c in curve if (c["method"], c["kl_coef"], c["seed"]) == (m, k, s)]
                assert tokens == [0, 32, 64]  # start, middle, end of a 64-token run (rollouts of 4 x 8 tokens)
    starts = {c["reward"] for c in curve if c["tokens"] == "0"}
    assert len(starts) == 1  # every run starts from the same model: one greedy value at 0 tokens
    band = bench.curve_bands([{**c, "kl_coef": float(c["kl_coef"]), "seed": int(c["seed"])} for c in curve],
                             "TextCopy-v0", "ppo", 0.5, reps=500)
    assert [t for t, _ in band] == [0, 32, 64] and all(a.low <= a.iqm <= a.high for _, a in band)
    for name in ("results.png", "frontier.png", "curves.png"):
        assert (out / name).stat().st_size > 5000, name


def test_greedy_curve_records_evaluations_without_changing_training(monkeypatch):
    """The callback evaluates at 0 tokens, when training passes each equal step and at the end, and restores the
    random states, so a run with a curve trains the same weights as one without."""
    import torch as th

    preset = dict(TINY, steps=96, curve_points=4)
    calls: list[int] = []
    real = curves.greedy_point

    def counting(policy, cfg, examples, reference=None, split="validation"):
        calls.append(examples)
        th.rand(3)  # consume random numbers, as a sampled evaluation would
        np.random.rand(3)
        return real(policy, cfg, examples, reference, split)

    monkeypatch.setattr(curves, "greedy_point", counting)
    points: list[tuple[int, float]] = []
    with_curve = bench._bench_one("ppo", "TextCopy-v0", 0, preset, kl_coef=0.0, curve=points)
    assert [t for t, _ in points] == [0, 32, 64, 96] and calls == [4, 4, 4, 4]
    assert all(0.0 <= v <= 1.0 for _, v in points)
    again: list[tuple[int, float]] = []
    bench._bench_one("ppo", "TextCopy-v0", 0, preset, kl_coef=0.0, curve=again, start_value=0.123)
    assert again[0] == (0, 0.123) and len(calls) == 7  # a known start value is not evaluated again
    without = bench._bench_one("ppo", "TextCopy-v0", 0, dict(preset, curve_points=0), kl_coef=0.0, curve=[])
    assert without["reward"] == with_curve["reward"] and without["kl"] == pytest.approx(with_curve["kl"], abs=1e-5)


def test_presets_and_bad_arguments(tmp_path):
    from text_envs_app.cli import main
    from text_envs_app.evaluation import check_eval_split

    for name in ("rl-small", "rl-full"):
        p = bench.BENCH_PRESETS[name]
        assert p["seeds"] >= 10 and bench.CONTINUATION in p["envs"] and p["curve_points"] >= 3
        # issue 23: >= 1,000 prompts x >= 4 samples per row, enough start samples for best-of-n's row
        assert p["eval_examples"] >= 1000 and p["eval_samples"] >= 4
        assert p["start_samples"] >= p["eval_samples"] * p["best_of_n"]
    assert set(bench.BENCH_PRESETS["rl-full"]["methods"]) == set(bench.ALL_METHODS)
    # every method of the algorithms issue but TRPO (time: see COMPARED_METHODS), and the start model
    assert set(bench.BENCH_PRESETS["rl-small"]["methods"]) == set(bench.ALL_METHODS) - {"trpo", "supervised"}
    hack = bench.BENCH_PRESETS["hack"]
    assert hack["kl_coefs"] == (0.0, 0.01) and hack["steps"] == 10 * bench.BENCH_PRESETS["rl-small"]["steps"]
    assert "sampled" in hack["methods"]  # the flags are relative to the start model's sampled texts
    assert len(bench.BENCH_PRESETS["rl-full"]["kl_coefs"]) >= 3 and bench.FAITHFUL_SUMMARIZATION in (
        bench.BENCH_PRESETS["rl-full"]["envs"])
    # the tasks' env options and rewards are accepted by the envs they name
    for task in (bench.CONTINUATION, bench.FAITHFUL_SUMMARIZATION):
        cfg = bench._config("ppo", task, 0, bench.BENCH_PRESETS["rl-full"], 0.05)
        cfg.validate()
        check_eval_split(cfg)  # the env builds with them
        assert cfg.kl_coef == 0.05 and cfg.env_kwargs()["reward"] == task.reward

    with pytest.raises(TextEnvsError, match="rl-small"):
        bench.run_benchmark("rl-smal", str(tmp_path / "x"))
    with pytest.raises(TextEnvsError, match="distinct"):
        bench.run_benchmark("rl-small", str(tmp_path / "x"), kl_coefs=[0.1, 0.1])
    with pytest.raises(TextEnvsError, match="nlpo"):
        bench.run_benchmark("rl-small", str(tmp_path / "x"), methods=["nlp"])
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(TextEnvsError, match="no CUDA device"):
            bench.run_benchmark("rl-small", str(tmp_path / "x"), device="cuda")
    assert not (tmp_path / "x").exists()  # bad arguments stop before the output folder is made
    with pytest.raises(SystemExit):
        main(["bench", "--kl-coefs", "0.1,abc"])
    with pytest.raises(SystemExit):
        main(["bench", "--kl-coefs", "-0.1"])


def test_main_job_preset_runs_the_main_jobs_recipe_against_best_of_n_and_raft():
    from text_envs_app.algorithms import MAIN_JOB_FREEZE, make_config

    preset = bench.BENCH_PRESETS["main-job"]
    assert preset["seeds"] >= 10 and preset["eval_examples"] >= 1000 and preset["eval_samples"] >= 4
    assert {"sampled", "best-of-n", "raft", "rloo"} <= set(preset["methods"])
    rloo = bench._config("rloo", bench.CONTINUATION, 3, preset, 0.5)
    main = make_config(env="TextContinuation-v0", seed=3)  # text-envs train's default job
    for name in ("algo", "steps", "n_envs", "n_steps", "kl_coef", "kl_mode", "group_size", "learning_rate",
                 "n_epochs", "freeze", "seed"):
        assert getattr(rloo, name) == getattr(main, name), name
    raft = bench._config("raft", bench.CONTINUATION, 3, preset, 0.5)
    raft.validate()
    assert (raft.algo, raft.steps, raft.group_size, raft.freeze) == ("raft", main.steps, 8, MAIN_JOB_FREEZE)
    assert raft.learning_rate == bench.RAFT_LR
    # the preset's RAFT settings are its own: another preset's RAFT keeps the registry's
    assert bench._config("raft", bench.CONTINUATION, 0, bench.BENCH_PRESETS["rl-small"], 0.05).freeze != MAIN_JOB_FREEZE


# ---------------------------------------------------------------------------------------------- sampled evaluation
SAMPLED = dict(envs=(bench.CONTINUATION,), steps=32, n_envs=4, n_steps=8, eval_examples=6, eval_samples=2,
               start_samples=4, best_of_n=2, seeds=2, kl_coefs=(0.05,), curve_points=0, curve_examples=4,
               methods=("sampled", "best-of-n", "supervised-filtered", "nlpo"))


def test_sampled_preset_writes_paired_table_poi_unmasked_nlpo_and_frontier(tmp_path, monkeypatch):
    """A preset with eval_samples: every row scored on prompts x samples with its evaluation noise; NLPO with and
    without its mask; the paired comparison against the best non-RL baseline with P(X > Y); the start model's
    rewards and frontier.png with the optimum curve."""
    monkeypatch.setitem(bench.BENCH_PRESETS, "tiny-sampled", SAMPLED)
    rows = bench.run_benchmark("tiny-sampled", str(tmp_path / "s"), reps=500, log=lambda *_: None)
    assert [(r["method"], r["seed"]) for r in rows] == [
        ("sampled", 0), ("sampled", 1), ("best-of-n", 0), ("best-of-n", 1), ("supervised-filtered", 0),
        ("supervised-filtered", 1), ("nlpo", 0), ("nlpo-unmasked", 0), ("nlpo", 1), ("nlpo-unmasked", 1)]
    for r in rows:
        assert r["eval_texts"] == 6 * 2 and r["eval_se"] > 0 and 0.0 <= r["reward"] <= 1.0
        assert {"distinct-2", "self-bleu", "repeated_ngrams", "validity", "judge_disagreement"} <= set(r)
    by = {(r["method"], r["seed"]): r for r in rows}
    assert by[("sampled", 0)]["kl"] == 0.0 and by[("best-of-n", 0)]["kl"] == pytest.approx(math.log(2) - 0.5)
    assert by[("best-of-n", 0)]["reward"] >= by[("sampled", 0)]["reward"]  # the best of 2 of the same draws
    assert by[("supervised-filtered", 0)]["train_tokens"] <= 32 and by[("nlpo", 0)]["train_tokens"] >= 32
    for seed in (0, 1):  # the same trained model, two ways of sampling it
        masked, plain = by[("nlpo", seed)], by[("nlpo-unmasked", seed)]
        assert "top-p" in masked["decoding"] and "no mask" in plain["decoding"] and masked["kl"] != plain["kl"]
        assert plain["kl"] >= 0.0 and "best_of_n_at_kl" in plain
    out = tmp_path / "s"
    md = (out / "results.md").read_text()
    for label in ("sampled", "best-of-n", "supervised-filtered", "nlpo", "nlpo-unmasked"):
        assert f"| {label} | " in md
    assert "Paired against the best non-RL baseline" in md and "P(row > baseline)" in md
    assert md.count("| nlpo") >= 4  # the main table and the paired table, masked and unmasked
    assert "eval_se" in md and "hacking" in md
    pooled = np.load(out / "start_rewards.npz")["continuation__sentiment"]
    assert pooled.shape == (6, 2 * 4)  # prompts x (seeds x start samples)
    # the trained rows' share of J's available gain at their beta: against their seed's start samples and all seeds'
    from text_envs.frontier import achievable_share, optimum

    for (method, seed), r in by.items():
        if method not in ("nlpo", "nlpo-unmasked"):
            assert "gain_share" not in r
            continue
        j = r["reward"] - 0.05 * r["kl"]
        own = pooled[:, 4 * seed:4 * seed + 4]
        assert r["gain_share"] == pytest.approx(achievable_share(j, own.mean(),
                                                                 optimum(own, 0.05).objective_corrected))
        assert r["gain_share_pooled"] == pytest.approx(achievable_share(j, pooled.mean(),
                                                                        optimum(pooled, 0.05).objective_corrected))
    assert "gain_share_pooled" in md
    assert (out / "frontier.png").stat().st_size > 20_000


def test_sampled_preset_refuses_what_it_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setitem(bench.BENCH_PRESETS, "tiny-sampled", dict(SAMPLED, start_samples=3))
    with pytest.raises(TextEnvsError, match="start_samples >= 4"):
        bench.run_benchmark("tiny-sampled", str(tmp_path / "a"))
    with pytest.raises(TextEnvsError, match="eval_samples"):
        bench.run_benchmark("small", str(tmp_path / "a"), methods=["best-of-n"])
    with pytest.raises(TextEnvsError, match="filter_reward"):
        bench.run_benchmark("small", str(tmp_path / "a"), methods=["supervised-filtered"])
    monkeypatch.setitem(bench.BENCH_PRESETS, "copy-sampled", dict(SAMPLED, envs=("TextCopy-v0",),
                                                                   methods=("sampled",)))
    with pytest.raises(TextEnvsError, match="per token"):
        bench.run_benchmark("copy-sampled", str(tmp_path / "b"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.expensive
def test_rl_small_with_every_method_on_a_tiny_budget(tmp_path):
    """rl-small itself with tiny overrides: every method of the issue gets a row and a paired comparison."""
    rows = bench.run_benchmark("rl-small", str(tmp_path / "r"), seeds=2, reps=500, log=lambda *_: None,
                               overrides=dict(steps=64, n_envs=4, n_steps=8, eval_examples=6))
    methods = {r["method"] for r in rows}
    assert methods == set(bench.COMPARED_METHODS) | {"nlpo-unmasked"}
    md = (tmp_path / "r" / "results.md").read_text()
    for m in ("raft", "dpo", "grpo", "rloo", "reinforce", "ppo", "a2c", "nlpo", "nlpo-unmasked"):
        assert f"| {m} | best-of-n at the method's KL |" in md or f"| {m} | supervised-filtered |" in md


def test_batched_kl_is_the_one_text_kl_and_zero_to_itself():
    """bench_eval.sequence_kls pads texts of different lengths into one forward: each text's KL equals the KL
    computed for that text alone, the start model's KL to itself is 0, and a top-p mask of 1 changes nothing."""
    import copy

    import torch

    from lm_core.backends import default_model
    from text_envs_app.bench_eval import eval_env, sample_rows, sequence_kls
    from text_envs_app.config import TrainConfig

    cfg = TrainConfig(env="TextContinuation-v0", reward="sentiment", eval_examples=3)
    env = eval_env(cfg)
    start = default_model(len(env.tokenizer))[0].eval()
    moved = copy.deepcopy(start)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in moved.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    rows = sample_rows(moved, cfg, env, 2, seed=0)
    prompts = [r["prompt"] for r in rows for _ in range(2)]
    ids = [t for r in rows for t in r["token_ids"]]
    assert len({len(t) for t in ids}) > 1  # texts of different lengths share a padded batch
    together = sequence_kls(moved, start, env, prompts, ids)
    alone = [sequence_kls(moved, start, env, [p], [t])[0] for p, t in zip(prompts, ids)]
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
    assert np.all(together > 0)
    np.testing.assert_allclose(sequence_kls(start, start, env, prompts, ids), 0.0, atol=1e-5)
    no_mask = sequence_kls(moved, start, env, prompts, ids, mask=(moved, None, 1.0))
    np.testing.assert_allclose(no_mask, together, rtol=1e-4, atol=1e-5)
    # the models are left as they were given: no hook of the KL's backends stays on an LM head
    assert not moved.get_output_embeddings()._forward_pre_hooks
    assert not start.get_output_embeddings()._forward_pre_hooks
    env.close()
