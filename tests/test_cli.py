"""The command line: argument errors, output-folder safety, and a tiny end-to-end train/eval run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from text_envs_app.cli import main
from text_envs_app.config import load_config_file


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "text_envs", *args], capture_output=True, text=True, timeout=600)


def test_unknown_choices_fail_at_once_with_the_valid_ones(capsys):
    assert main(["train", "--algo", "ppp"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'ppo'" in err and "a2c, dpo, grpo, nlpo, ppo, raft, reinforce, rloo, supervised, trpo" in err
    assert main(["train", "--env", "TextSumarization-v0"]) == 2
    assert "TextSummarization-v0" in capsys.readouterr().err
    assert main(["train", "--reward", "rouge-k"]) == 2
    assert "rouge-l" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--no-such-flag"])


def test_config_file_and_flags(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"env": "TextCopy-v0", "steps": 64, "learning-rate": 1e-3}))
    assert load_config_file(path) == {"env": "TextCopy-v0", "steps": 64, "learning_rate": 1e-3}
    path.write_text(json.dumps({"stepz": 3}))
    with pytest.raises(Exception, match="steps"):
        load_config_file(path)


def test_existing_output_folder_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert main(["train", "--env", "TextCopy-v0", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and (out / "keep.txt").read_text() == "precious"
    assert main(["train", "--env", "TextCopy-v0", "--out", str(tmp_path / "none"), "--resume"]) == 2


def test_train_then_eval_end_to_end(tmp_path):
    out = tmp_path / "copy"
    proc = run_cli("train", "--env", "TextCopy-v0", "--steps", "128", "--n-envs", "4", "--n-steps", "16",
                   "--batch-size", "32", "--n-epochs", "2", "--eval-examples", "8", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| rouge-l |" in proc.stdout or "| reward |" in proc.stdout
    for name in ("model.zip", "results.md", "results.json", "samples.md", "learning_curve.png", "config.json"):
        assert (out / name).exists(), name
    assert (out / "hf" / "config.json").exists()
    result = json.loads((out / "results.json").read_text())
    assert result["tokens"] >= 128 and "kl" in result["after"]
    # the learning curve: greedy reward and KL on fixed validation prompts at the rollout boundaries that pass
    # each of 8 equal steps of the 128 tokens (two rollouts of 64: each boundary once)
    curve = result["curve"]
    assert curve["tokens"] == [0, 64, 128]
    assert len(curve["greedy"]) == len(curve["sampled"]) == 3
    for kl in (curve["kl"], curve["sampled_kl"]):  # the start model's KL to itself is 0
        assert len(kl) == 3 and abs(kl[0]) < 1e-5 and all(k >= -1e-5 for k in kl)
    proc = run_cli("eval", str(out), "--examples", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| reward |" in proc.stdout


def test_seeded_runs_repeat(tmp_path):
    args = ["--env", "TextCopy-v0", "--steps", "64", "--n-envs", "4", "--n-steps", "8", "--batch-size", "16",
            "--n-epochs", "2", "--eval-examples", "8", "--seed", "3"]
    tables = []
    for name in ("a", "b"):
        assert main(["train", *args, "--out", str(tmp_path / name)]) == 0  # in-process: no second torch import
        tables.append(json.loads((tmp_path / name / "results.json").read_text())["after"])
    assert tables[0] == tables[1]


def test_demo_runs_every_env(capsys):
    assert main(["demo", "--env", "TextCopy-v0", "--env", "MachineTranslation-v0"]) == 0
    out = capsys.readouterr().out
    assert "=== TextCopy-v0" in out and "shipped model (greedy)" in out and "reference policy: return 1.000" in out


def test_summarization_run_with_the_supervised_comparison(tmp_path):
    """The default task on the shipped model: start / PPO / supervised-for-the-same-time columns, the options
    reach the policy, and the saved policy trains in float32 although the shipped weights are stored in fp16."""
    out = tmp_path / "summ"
    args = ["train", "--env", "TextSummarization-v0", "--steps", "64", "--n-envs", "4", "--n-steps", "16",
            "--batch-size", "64", "--n-epochs", "1",
            "--eval-examples", "4", "--difficulty", "2", "--value-lr-scale", "10", "--compare-supervised",
            "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "results.json").read_text())
    for column in ("before", "after", "supervised"):
        assert 0.0 <= result[column]["rouge-l"] <= 1.0
    assert result["config"]["difficulty"] == 2
    assert "supervised, same time" in (out / "results.md").read_text()
    from stable_baselines3 import PPO

    policy = PPO.load(out / "model.zip").policy
    assert policy.value_lr_scale == 10.0
    assert {p.dtype for p in policy.parameters()} == {__import__("torch").float32}


def test_bench_runs_every_method_with_the_same_budget(tmp_path, monkeypatch):
    """`text-envs bench` on a tiny preset: one row per (method, seed), an IQM [95% CI] table that keeps the
    mean ± std, a CSV and a plot."""
    import csv

    from text_envs_app import bench

    monkeypatch.setitem(bench.BENCH_PRESETS, "tiny",
                        dict(envs=("TextCopy-v0",), steps=64, eval_examples=8, n_envs=4))
    rows = bench.run_benchmark("tiny", str(tmp_path / "bench"), seeds=2, log=lambda *a: None)
    assert [(r["method"], r["seed"]) for r in rows] == [(m, s) for m in bench.BENCH_METHODS for s in (0, 1)]
    for r in rows:
        assert 0.0 <= r["reward"] <= 1.0 and r["wall_s"] > 0 and r["kl"] >= -1e-6
    greedy = [r for r in rows if r["method"] == "greedy"]
    assert greedy[0]["reward"] == greedy[1]["reward"]  # no training, greedy decoding: seeds cannot differ
    with open(tmp_path / "bench" / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    md = (tmp_path / "bench" / "results.md").read_text()
    assert all(f"| {m} |" in md for m in bench.BENCH_METHODS) and " ± " in md
    from text_envs_app.bench import aggregate, decoding_cell

    ppo_runs = [r for r in rows if r["method"] == "ppo"]
    ppo = aggregate([r["reward"] for r in ppo_runs])
    # the decoding column, then the reward column: IQM [CI low, CI high]
    assert f"| ppo | {decoding_cell(ppo_runs)} | {ppo.cell()} |" in md
    assert (tmp_path / "bench" / "results.png").stat().st_size > 0


def test_bench_evaluates_every_method_on_the_same_data(monkeypatch):
    """Sampled and greedy decoding (and every trained method) are scored on the same split and difficulty."""
    from text_envs import evaluation
    from text_envs_app import bench
    from text_envs_app.config import TrainConfig

    class Stop(Exception):
        pass

    seen = []

    def fake_evaluate(env, policy=None, **kwargs):
        seen.append((env, kwargs["split"], kwargs["env_kwargs"], kwargs["deterministic"]))
        raise Stop

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    preset = dict(envs=("TextSummarization-v0",), steps=16, eval_examples=4, n_envs=2)
    for method in ("sampled", "greedy"):
        with pytest.raises(Stop):
            bench._bench_one(method, "TextSummarization-v0", 0, preset)
    (env_a, split_a, kw_a, det_a), (env_b, split_b, kw_b, det_b) = seen
    assert (env_a, split_a, kw_a) == (env_b, split_b, kw_b) and (det_a, det_b) == (False, True)
    assert kw_a["difficulty"] == TrainConfig(env="TextSummarization-v0").embedded_difficulty() == 3


def test_main_job_defaults_follow_the_env():
    """The main job is PPO on TextContinuation-v0: sampled evaluation, KL coefficient 0.5 and difficulty 1 (the warm
    start's own data); every other env keeps greedy evaluation, 0.02 and difficulty 3; explicit values win."""
    from text_envs_app.config import TrainConfig

    main_job = TrainConfig()
    assert main_job.env == "TextContinuation-v0"
    assert (main_job.decoding(), main_job.kl_coefficient(), main_job.embedded_difficulty()) == ("sampled", 0.5, 1)
    summ = TrainConfig(env="TextSummarization-v0")
    assert (summ.decoding(), summ.kl_coefficient(), summ.embedded_difficulty()) == ("greedy", 0.02, 3)
    own = TrainConfig(eval_decoding="greedy", kl_coef=0.0, difficulty=2)
    assert (own.decoding(), own.kl_coefficient(), own.embedded_difficulty()) == ("greedy", 0.0, 2)
    with pytest.raises(Exception, match="eval-decoding"):
        TrainConfig(eval_decoding="beam", eval_examples=4).validate()


def test_evaluation_reports_both_decodings_and_keeps_random_state():
    """The table has the other decoding's reward and KL, and evaluating (sampling reseeds torch) leaves the random
    states as they were, so an evaluation during training does not change the run."""
    import random

    import numpy as np
    import torch as th
    from stable_baselines3 import PPO

    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy
    from text_envs_app.config import TrainConfig
    from text_envs_app.engines.sb3 import make_train_env
    from text_envs_app.evaluation import evaluate_policy_on_split, format_table

    cfg = TrainConfig(env="TextCopy-v0", eval_examples=4, n_envs=2)
    model = PPO(LLMPolicy, make_train_env(cfg), n_steps=8, rollout_buffer_class=EpisodeRolloutBuffer, seed=0)
    th.manual_seed(123), np.random.seed(4), random.seed(5)
    states = th.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    table, _ = evaluate_policy_on_split(model.policy, cfg, reference=model.policy.model)  # KL to itself: 0
    assert th.equal(states[0], th.get_rng_state()) and (states[1] == np.random.get_state()[1]).all()
    assert states[2] == random.getstate()
    assert {"reward", "kl", "sampled_reward", "sampled_kl"} <= set(table)
    assert abs(table["kl"]) < 1e-5 and abs(table["sampled_kl"]) < 1e-5  # the policy is still the start model
    assert "sampled_reward and sampled_kl" in format_table({"start": table})


def test_python_m_text_envs_runs_the_command():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "text_envs", "--help"], capture_output=True, text=True,
                         cwd=root, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "bench" in out.stdout
