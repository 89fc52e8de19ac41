"""`text-envs train --algo X`: the registry of algorithms, engines and per-env defaults (text_envs_app.algorithms),
`--algo supervised --filter-reward`, and the TextCopy-v0 defaults that make every method learn."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import text_envs  # noqa: F401  (registers the envs)
from text_envs.errors import TextEnvsError
from text_envs_app import algorithms
from text_envs_app.config import TrainConfig


def test_engine_algorithm_combinations_are_checked_with_what_works():
    for algo in algorithms.SB3_ALGORITHMS:
        algorithms.check_combination("sb3", algo)
    with pytest.raises(TextEnvsError, match=r"--engine rllib does not run --algo raft: it runs ppo, impala, appo\. "
                                            r"--algo raft runs on --engine sb3"):
        algorithms.check_combination("rllib", "raft")
    with pytest.raises(TextEnvsError, match="--algo impala runs on --engine rllib"):
        algorithms.check_combination("sb3", "impala")
    with pytest.raises(TextEnvsError, match="grpo"):  # an unknown name lists the known ones
        algorithms.check_combination("sb3", "grop")
    with pytest.raises(TextEnvsError, match="--engine rllib takes --algo ppo, impala, appo, got raft"):
        TrainConfig(engine="rllib", algo="raft").check_engine()


def test_defaults_lie_under_the_given_values():
    copy = algorithms.make_config(env="TextCopy-v0", algo="ppo")
    assert (copy.n_steps, copy.n_epochs, copy.batch_size, copy.learning_rate) == (8, 4, 64, 1e-3)
    assert algorithms.make_config(env="TextCopy-v0", algo="ppo", n_steps=16).n_steps == 16
    assert algorithms.make_config(env="TextCopy-v0", algo="grpo").group_size == algorithms.DEFAULT_GROUP_SIZE
    assert algorithms.group_size(TrainConfig(algo="rloo")) == 4 and algorithms.group_size(TrainConfig()) == 1
    assert algorithms.make_config(algo="ppo") == TrainConfig()  # PPO on the main job: TrainConfig's own settings
    main = algorithms.make_config()  # the main job's default algorithm (config.DEFAULT_ALGO) with its settings
    assert (main.algo, main.group_size, main.kl_coef, main.steps) == ("rloo", 8, 0.5, 122_880)
    assert algorithms.make_config(env="TextSummarization-v0").algo == "ppo"
    rllib = algorithms.make_config(env="TextCopy-v0", engine="rllib")  # RLlib runs take no SB3 defaults
    assert rllib.n_steps == TrainConfig().n_steps


def test_settings_an_algorithm_does_not_take_are_refused():
    with pytest.raises(TextEnvsError, match="not a multiple of --group-size 3"):
        algorithms.check_settings(TrainConfig(algo="grpo", n_envs=8, group_size=3))
    with pytest.raises(TextEnvsError, match="--vec-env native"):
        algorithms.check_settings(TrainConfig(algo="grpo", group_size=4, vec_env="dummy"))
    with pytest.raises(TextEnvsError, match="--filter-reward is a setting of --algo supervised"):
        algorithms.check_settings(TrainConfig(algo="ppo", filter_reward=0.5))


def test_library_algorithms_get_their_own_keywords():
    from sb3_ext import make_text_vec_env

    venv = make_text_vec_env("TextCopy-v0", 4, seed=0, group_size=2)
    common = dict(policy=None, env=venv, learning_rate=1e-3, n_steps=8, gamma=1.0, gae_lambda=1.0, vf_coef=0.5,
                  max_grad_norm=0.5, rollout_buffer_class=None, policy_kwargs={"kl_coef": 0.02}, seed=0)
    grpo = algorithms.algorithm_kwargs(TrainConfig(env="TextCopy-v0", algo="grpo", batch_size=16), common)
    assert "gamma" not in grpo and "rollout_buffer_class" not in grpo and "kl_coef" not in grpo["policy_kwargs"]
    assert grpo["batch_size"] == 4 and "beta" not in grpo  # 16 tokens = 4 texts of 4; beta: GRPO's default
    assert algorithms.algorithm_kwargs(TrainConfig(algo="rloo", kl_coef=0.1), common)["beta"] == 0.1
    raft = algorithms.algorithm_kwargs(TrainConfig(algo="raft", filter_reward=0.7), common)
    assert raft["reward_threshold"] == 0.7 and "epsilon" not in raft
    assert algorithms.algorithm_kwargs(TrainConfig(algo="reinforce", baseline="greedy"), common)["baseline"] == "greedy"
    assert algorithms.env_baseline(TrainConfig(algo="grpo")) == "none"
    assert algorithms.env_baseline(TrainConfig(algo="ppo")) == "auto"
    venv.close()


def test_filtered_references_are_the_positive_half():
    env = gym.make("TextContinuation-v0", split="train").unwrapped
    kept, scored = algorithms.filtered_references(env, 0.5, limit=40)
    assert len(kept) == 40 and scored >= 40
    scores = env.reward([env.example_text(i)[1][0] for i in range(scored)],
                        [list(env.example_text(i)[1]) for i in range(scored)],
                        [env.example_text(i)[0] for i in range(scored)])
    assert [i for i in range(scored) if scores[i] >= 0.5][:40] == kept
    assert 0.3 < len([s for s in scores if s >= 0.5]) / scored < 0.7  # half the reviews continue positively
    with pytest.raises(TextEnvsError, match="per token"):
        algorithms.filtered_references(gym.make("TextCopy-v0").unwrapped, 0.5)


def test_train_supervised_with_a_reward_filter(tmp_path):
    from text_envs_app.cli import main

    out = tmp_path / "sup"
    assert main(["train", "--algo", "supervised", "--filter-reward", "0.5", "--steps", "256", "--n-envs", "4",
                 "--eval-examples", "4", "--curve-points", "0", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["tokens"] == 256 and result["config"]["filter_reward"] == 0.5
    assert result["after"]["kl"] > 0  # teacher forcing moved the model
    assert "| supervised |" in (out / "results.md").read_text().replace("| start | supervised |", "| supervised |")


@pytest.mark.expensive
def test_ppo_at_the_cli_defaults_learns_text_copy(tmp_path):
    """`text-envs train --env TextCopy-v0 --algo ppo --steps 4096`: before the per-env defaults 0.000 greedy and
    0.117 sampled, before and after (2 Adam steps); now both rise."""
    from text_envs_app.cli import main

    out = tmp_path / "copy"
    assert main(["train", "--env", "TextCopy-v0", "--algo", "ppo", "--steps", "4096", "--threads", "1",
                 "--curve-points", "0", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    before, after = result["before"], result["after"]
    assert after["reward"] >= before["reward"] + 0.2
    assert after["sampled_reward"] >= before["sampled_reward"] + 0.1


@pytest.mark.parametrize("algo", ["grpo", pytest.param("dpo", marks=pytest.mark.expensive)])
def test_a_group_algorithm_resumes_exactly_through_the_app(tmp_path, interrupt_at_step, one_train_thread, algo):
    """Ctrl-C in the middle of a rollout, then --resume: the same weights and results as the run never stopped
    (the texts of unfinished groups go through the algorithm's get_state/set_state)."""
    import torch as th

    from text_envs_app.train import train

    run = dict(env="TextCopy-v0", algo=algo, group_size=2, steps=128, n_envs=4, n_steps=8, n_epochs=2,
               eval_examples=8, checkpoint_every=32, curve_points=0, seed=3)
    straight = train(algorithms.make_config(**run, out=str(tmp_path / "straight")), log=lambda *_: None)
    stop = interrupt_at_step(8 + 8 + 3)  # two rollouts done (64 tokens), then the 3rd step of the next
    stopped = train(algorithms.make_config(**run, out=str(tmp_path / "run")), log=lambda *_: None)
    assert stopped["interrupted"] and stopped["tokens"] == 64
    stop()
    resumed = train(TrainConfig(out=str(tmp_path / "run"), resume=True), log=lambda *_: None)
    assert resumed["tokens"] == 128 and resumed["after"] == straight["after"]
    cls = algorithms.algorithm_class(algo)
    a = cls.load(tmp_path / "straight" / "model.zip", device="cpu").policy.state_dict()
    b = cls.load(tmp_path / "run" / "model.zip", device="cpu").policy.state_dict()
    assert a.keys() == b.keys()
    assert all(th.equal(a[k], b[k]) if isinstance(a[k], th.Tensor) else a[k] == b[k] for k in a)


def test_bench_runs_the_new_methods_by_name(tmp_path, monkeypatch):
    from text_envs_app import bench

    monkeypatch.setitem(bench.BENCH_PRESETS, "tiny", dict(envs=("TextCopy-v0",), steps=64, eval_examples=8,
                                                          n_envs=4))
    methods = ("grpo", "rloo", "reinforce", "raft", "dpo")
    rows = bench.run_benchmark("tiny", str(tmp_path / "bench"), seeds=1, methods=methods, log=lambda *a: None)
    assert [r["method"] for r in rows] == list(methods)
    assert all(0.0 <= r["reward"] <= 1.0 and r["kl"] >= -1e-6 for r in rows)
    md = (tmp_path / "bench" / "results.md").read_text()
    assert all(f"| {m} |" in md for m in methods)
    with pytest.raises(TextEnvsError, match="grpo"):
        bench.run_benchmark("tiny", str(tmp_path / "b2"), seeds=1, methods=("grop",), log=lambda *a: None)


def test_the_frontier_is_placed_at_the_beta_the_run_trains_with():
    """Without --kl-coef, GRPO trains at its own beta 0 and RLOO at 0.05: the limit must be computed there too."""
    from text_envs_app.algorithms import training_kl_coef
    from text_envs_app.config import TrainConfig

    assert training_kl_coef(TrainConfig(env="TextContinuation-v0", algo="ppo")) == 0.5
    assert training_kl_coef(TrainConfig(env="TextContinuation-v0", algo="grpo")) == 0.0
    assert training_kl_coef(TrainConfig(env="TextContinuation-v0", algo="rloo")) == 0.05
    assert training_kl_coef(TrainConfig(env="TextContinuation-v0", algo="rloo", kl_coef=0.5)) == 0.5
