"""The group algorithms (GRPO, RLOO, REINFORCE, RAFT, DPO): their maths against hand computations, rollouts of
complete groups, learning on TextCopy-v0, save/load and an exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch as th
from helpers import groups_by_hand
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure

from sb3_ext import DPO, GRPO, RAFT, REINFORCE, RLOO, LLMPolicy, make_text_vec_env
from sb3_ext.algorithms.dpo import dpo_loss, preference_pairs
from sb3_ext.algorithms.policy_gradient import (
    aggregate_loss,
    clipped_surrogate,
    group_advantages,
    kl_to_go,
    leave_one_out_advantages,
)
from sb3_ext.algorithms.raft import raft_selection
from text_envs.errors import TextEnvsError

ALGOS = {"grpo": GRPO, "rloo": RLOO, "reinforce": REINFORCE, "raft": RAFT, "dpo": DPO}
# learning rates for the tiny T5 TextCopy-v0 builds from a config (TRL's defaults are for pretrained models)
KWARGS = {"grpo": dict(learning_rate=3e-3), "rloo": dict(learning_rate=3e-3, beta=0.0),
          "reinforce": dict(learning_rate=3e-3), "raft": dict(learning_rate=3e-3), "dpo": dict(learning_rate=1e-3)}


def copy_env(n: int = 16, group_size: int = 4, seed: int = 0):
    return make_text_vec_env("TextCopy-v0", n, seed=seed, group_size=group_size)


# ------------------------------------------------------------------------------------------------ maths
def test_group_advantages_by_hand() -> None:
    rewards = np.array([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    std = math.sqrt(4 * 0.25 / 3)  # unbiased, as torch.std
    np.testing.assert_allclose(group_advantages(rewards, "group")[0], np.array([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4))
    np.testing.assert_array_equal(group_advantages(rewards, "group")[1], np.zeros(4))
    np.testing.assert_array_equal(group_advantages(rewards, "none"), [[0.5, -0.5, -0.5, 0.5], [0, 0, 0, 0]])
    batch_std = np.std(rewards, ddof=1)
    np.testing.assert_allclose(group_advantages(rewards, "batch")[0], np.array([0.5, -0.5, -0.5, 0.5]) / (batch_std + 1e-4))
    with pytest.raises(TextEnvsError, match="scale_rewards"):
        group_advantages(rewards, "grouped")


def test_leave_one_out_and_kl_to_go_by_hand() -> None:
    np.testing.assert_allclose(leave_one_out_advantages(np.array([[1.0, 2.0, 3.0]])), [[-1.5, 0.0, 1.5]])
    with pytest.raises(TextEnvsError, match="at least 2"):
        leave_one_out_advantages(np.array([[1.0]]))
    np.testing.assert_array_equal(kl_to_go(np.array([1.0, 2.0, 3.0])), [6.0, 5.0, 3.0])


def test_clipped_surrogate_and_loss_types_by_hand() -> None:
    log_prob = th.tensor([math.log(1.5), math.log(1.5), 0.0])
    old = th.zeros(3)
    loss, clipped = clipped_surrogate(log_prob, old, th.tensor([1.0, -1.0, 2.0]), 0.2, 0.2)
    np.testing.assert_allclose(loss.numpy(), [-1.2, 1.5, -2.0], rtol=1e-6)  # min(1.5 A, 1.2 A)
    assert clipped.tolist() == [True, False, False]
    per_token = th.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    owner = th.tensor([0, 0, 1, 1, 1])
    assert float(aggregate_loss(per_token, owner, 2, "dapo", 4)) == pytest.approx(3.0)
    assert float(aggregate_loss(per_token, owner, 2, "grpo", 4)) == pytest.approx((1.5 + 4.0) / 2)
    assert float(aggregate_loss(per_token, owner, 2, "dr_grpo", 4)) == pytest.approx(15 / 8)


def test_raft_selection_and_dpo_pairs_by_hand() -> None:
    rewards = np.array([[0.1, 0.5, 0.5, 0.2]])
    assert raft_selection(rewards, 2, None).tolist() == [[False, True, True, False]]
    assert raft_selection(rewards, 1, None).tolist() == [[False, True, False, False]]  # ties: the first
    assert raft_selection(rewards, None, 0.3).tolist() == [[False, True, True, False]]
    assert not raft_selection(rewards, 1, 0.6).any()
    assert preference_pairs(np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 0.0, 1.0]])) == [
        (0, 1, 3), (2, 1, 2)]
    loss, margin = dpo_loss(th.tensor([-1.0]), th.tensor([-2.0]), th.tensor([-1.5]), th.tensor([-1.5]), 0.1)
    assert float(margin) == pytest.approx(0.1)
    assert float(loss) == pytest.approx(math.log1p(math.exp(-0.1)))


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_grpo_update_loss_by_hand(loss_type: str) -> None:
    """One update on hand-made groups: with ratio 1 (the behaviour log-probs are the policy's) the loss is
    -A averaged as loss_type says, A the group-normalised advantages."""
    model = GRPO(LLMPolicy, copy_env(8, 4), loss_type=loss_type, seed=0)
    model.set_logger(configure(None, []))
    rewards = np.array([[1.0, 0.0, 0.5, 0.0], [0.2, 0.2, 0.9, 0.1]])
    groups = groups_by_hand(model, rewards)
    model.train_groups(groups)
    adv = group_advantages(rewards, "group").reshape(-1)
    lengths = np.array([len(t["tokens"]) for g in groups for t in g])
    T = 4
    expected = {"dapo": -(adv * lengths).sum() / lengths.sum(), "grpo": -adv.mean(),
                "dr_grpo": -(adv * lengths).sum() / (len(adv) * T)}[loss_type]
    assert model.logger.name_to_value["train/loss"] == pytest.approx(expected, abs=1e-5)
    assert model.logger.name_to_value["train/clip_fraction"] == 0.0


def test_reinforce_and_rloo_advantages_by_hand() -> None:
    rewards = np.array([[1.0, 0.0], [0.5, 0.25]])
    groups = [[{"baseline": 0.5}, {"baseline": 0.5}], [{"baseline": 0.0}, {"baseline": 1.0}]]
    for baseline, expected in {"batch": rewards - 0.4375, "none": rewards,
                               "greedy": [[0.5, -0.5], [0.5, -0.75]]}.items():
        model = REINFORCE.__new__(REINFORCE)
        model.baseline, model.normalize_advantages = baseline, False
        np.testing.assert_allclose(model.sequence_advantages(rewards, groups), expected)
    model = RLOO.__new__(RLOO)
    model.normalize_advantages = False
    np.testing.assert_allclose(model.sequence_advantages(rewards, groups), [[1.0, -1.0], [0.25, -0.25]])


def test_reinforce_kl_shaping_by_hand() -> None:
    """beta > 0: each token's advantage is A minus beta times the KL (k1 against the start model) to the end."""
    model = REINFORCE(LLMPolicy, copy_env(4, 2), baseline="none", beta=0.5, seed=0)
    model.set_logger(configure(None, []))
    groups = groups_by_hand(model, np.array([[1.0, 0.0], [0.0, 0.0]]))
    # the policy is the start model: every KL is 0, so shaping must leave the loss at -mean of the rewards per token
    model.train_groups(groups)
    lengths = np.array([len(t["tokens"]) for g in groups for t in g])
    rewards = np.array([1.0, 0.0, 0.0, 0.0])
    assert model.logger.name_to_value["train/kl"] == pytest.approx(0.0, abs=1e-5)
    assert model.logger.name_to_value["train/loss"] == pytest.approx(-(rewards * lengths).sum() / lengths.sum(),
                                                                     abs=1e-5)


def test_reinforce_greedy_baseline_follows_the_weights() -> None:
    """baseline="greedy" (ReMax): each text's advantage is its reward minus the reward of the current policy's
    greedy text for its prompt, which the env's VectorBaseline decodes; the decoder is renewed after each update."""
    from sb3_ext import tiny_t5_config

    env = make_text_vec_env("TextSummarization-v0", 4, seed=0, env_kwargs=dict(max_new_tokens=5, difficulty=1),
                            baseline=True, baseline_batch_size=4)
    model = REINFORCE(LLMPolicy, env, baseline="greedy", seed=0, learning_rate=1e-3,
                      policy_kwargs=dict(model=tiny_t5_config(int(env.action_space.n))))
    seen: list[list[dict]] = []
    train_groups = model.train_groups

    def spy(groups):
        seen.extend(groups)
        train_groups(groups)

    model.train_groups = spy  # type: ignore[method-assign]
    first_fn = env.baseline.baseline_fn
    model.learn(4 * 5 * 3)
    assert seen and all(np.isfinite(t["baseline"]) for g in seen for t in g)
    assert env.baseline.baseline_fn is not first_fn  # renewed: the baseline is the updated policy's greedy text


# ------------------------------------------------------------------------------------------------ rollouts
def test_rollouts_hand_over_complete_groups_only() -> None:
    model = GRPO(LLMPolicy, copy_env(8, 4), n_steps=3, seed=0)  # 3 steps < a text's 4 tokens: groups span rollouts
    seen: list[list[dict]] = []
    model.train_groups = seen.extend  # type: ignore[method-assign]
    model.learn(8 * 3 * 6)
    assert seen, "complete groups should have reached train()"
    for group in seen:
        assert len(group) == 4
        for text in group:
            np.testing.assert_array_equal(text["prompt_ids"], group[0]["prompt_ids"])
            assert text["example"] == group[0]["example"]
            assert len(text["tokens"]) == len(text["log_probs"]) >= 1
    rewards = [t["reward"] for g in seen for t in g]
    assert model.ep_info_buffer and sorted(rewards)[-1] <= 1.0


def test_bad_settings_are_refused_with_the_fix() -> None:
    with pytest.raises(TextEnvsError, match="group_size"):
        GRPO(LLMPolicy, copy_env(4, 1))
    with pytest.raises(TextEnvsError, match="num_generations"):
        GRPO(LLMPolicy, copy_env(8, 4), num_generations=8)
    with pytest.raises(TextEnvsError, match="loss_type"):
        GRPO(LLMPolicy, copy_env(8, 4), loss_type="ppo")
    with pytest.raises(TextEnvsError, match="baseline=True"):
        REINFORCE(LLMPolicy, copy_env(4, 1), baseline="greedy")
    with pytest.raises(TextEnvsError, match="keep_top"):
        RAFT(LLMPolicy, copy_env(8, 2), keep_top=3)
    with pytest.raises(TextEnvsError, match="beta="):
        GRPO(LLMPolicy, copy_env(8, 4), policy_kwargs=dict(kl_coef=0.1))


# ------------------------------------------------------------------------------------------------ learning
@pytest.mark.parametrize("name", list(ALGOS))
def test_learns_text_copy(name: str) -> None:
    """2048 tokens on TextCopy-v0 with a tiny T5 raise the sampled reward (measured, seed 0: from 0.09 to
    0.17 (DPO) - 0.27; 5-6 s of training each on a loaded 2-core machine)."""
    th.manual_seed(0)
    model = ALGOS[name](LLMPolicy, copy_env(), seed=0, **KWARGS[name])
    evaluation = make_text_vec_env("TextCopy-v0", 8, seed=1)
    start, _ = evaluate_policy(model, evaluation, n_eval_episodes=64, deterministic=False)
    model.learn(2048)
    end, _ = evaluate_policy(model, evaluation, n_eval_episodes=64, deterministic=False)
    assert end > start + 0.05, (start, end)


@pytest.mark.parametrize("name", list(ALGOS))
def test_save_load_round_trip(name: str, tmp_path) -> None:
    cls = ALGOS[name]
    kwargs = dict(KWARGS[name], beta=0.05) if name in ("grpo", "rloo", "reinforce") else KWARGS[name]
    model = cls(LLMPolicy, copy_env(8, 4), seed=0, **kwargs)
    model.learn(64)
    model.save(tmp_path / "m.zip")
    loaded = cls.load(tmp_path / "m.zip", env=copy_env(8, 4))
    a, b = model.policy.state_dict(), loaded.policy.state_dict()
    assert a.keys() == b.keys() and all(th.equal(a[k], b[k]) for k in a if isinstance(a[k], th.Tensor))
    for attr in ("learning_rate", "n_steps", "batch_size", "n_epochs", "group_size", "beta", "loss_type",
                 "scale_rewards", "keep_top", "online"):
        assert getattr(loaded, attr, None) == getattr(model, attr, None), attr
    obs = loaded.env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(64)  # and it trains on
    offline = cls.load(tmp_path / "m.zip")  # no env: settings and weights; an env of its group size later
    assert offline.group_size == 4
    offline.set_env(copy_env(8, 4))
    offline.learn(64)
    with pytest.raises(TextEnvsError, match="group_size"):
        offline.set_env(copy_env(8, 2))


@pytest.mark.parametrize("name", list(ALGOS))
def test_exact_resume_with_one_thread(name: str, one_train_thread) -> None:
    """N tokens, checkpoint state (text_envs_app.checkpoint), a fresh model and env, N more tokens: the weights of
    2N straight, bit for bit. n_steps=3 < a text's 4 tokens, so texts and groups are open at every boundary."""
    from text_envs_app.checkpoint import capture_state, restore_state
    from text_envs_app.state_codec import dumps, loads

    kwargs = dict(KWARGS[name], n_steps=3, seed=0)
    if name == "dpo":
        kwargs["online"] = False  # the start weights swapped in for each rollout must not leak into the state

    def build():
        return ALGOS[name](LLMPolicy, copy_env(8, 4), **kwargs)

    straight = build()
    straight.learn(8 * 3 * 6)
    first = build()
    first.learn(8 * 3 * 3)
    saved = loads(dumps({"parameters": first.get_parameters(), "state": capture_state(first)}))  # as stored
    resumed = build()
    resumed.set_parameters(saved["parameters"], exact_match=True)
    restore_state(resumed, saved["state"], log=lambda *_: None)
    resumed.learn(8 * 3 * 3, reset_num_timesteps=False)
    assert resumed.num_timesteps == straight.num_timesteps
    a, b = straight.policy.state_dict(), resumed.policy.state_dict()
    differ = [k for k in a if isinstance(a[k], th.Tensor) and not th.equal(a[k], b[k])]
    assert not differ, differ[:3]


def test_guide_example_runs_as_written(tmp_path) -> None:
    """docs/examples/group_algorithms.py, the example of docs/guides/algorithms.md, in a fresh interpreter."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, str(root / "docs" / "examples" / "group_algorithms.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    examples = proc.stdout.splitlines()[0]
    assert examples.startswith("examples: [")
    indices = examples.split("[")[1].rstrip("]").split()
    assert len(set(indices[:4])) == 1 and len(set(indices[4:])) == 1
    before, after = map(float, proc.stdout.splitlines()[1].split("reward ")[1].split(" -> "))
    assert after > before
    assert (tmp_path / "grpo_copy.zip").is_file()


def test_bench_algorithms_quick(capsys) -> None:
    """benchmarks/bench_algorithms.py at its --quick size prints each method's tokens/s beside PPO's."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_algorithms.py"
    spec = importlib.util.spec_from_file_location("bench_algorithms", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rates = bench.main(["--quick", "--methods", "ppo,grpo,dpo"])
    assert set(rates) == {"ppo", "grpo", "dpo"} and all(r > 0 for r in rates.values())
    out = capsys.readouterr().out
    assert "x PPO" in out and "grpo" in out
    with pytest.raises(SystemExit, match="including ppo"):
        bench.main(["--quick", "--methods", "grpo"])
