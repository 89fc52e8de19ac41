"""Best-of-n as a decoding: ``evaluate(..., decoding="best-of-n", n=k)`` and ``text-envs eval --decoding best-of-n``."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch as th
from helpers import t5_config

import text_envs  # noqa: F401  (registers the envs)
from sb3_ext import LLMPolicy
from text_envs.evaluation import EvaluationError, best_of_n_kl_bound, evaluate

th.set_num_threads(1)
N_EXAMPLES = 24


@pytest.fixture(scope="module")
def copy_policy():
    """A random tiny T5 over TextCopy-v0's 7 tokens: its samples score anything from 0 to 1."""
    env = gym.make("TextCopy-v0")
    th.manual_seed(0)
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 0.0,
                       model=t5_config(int(env.action_space.n), dropout_rate=0.0))
    env.close()
    return policy


def _run(policy, **kwargs):
    return evaluate("TextCopy-v0", policy, n_examples=N_EXAMPLES, metrics=(), batch_size=8, seed=3, **kwargs)


def test_best_of_n_beats_sampled_per_prompt_and_its_first_draw_is_sampled(copy_policy):
    sampled = _run(copy_policy, decoding="sampled")
    best = _run(copy_policy, decoding="best-of-n", n=4)
    assert [g["example_index"] for g in best.generations] == list(range(N_EXAMPLES))
    for s, b in zip(sampled.generations, best.generations):
        assert len(b["sample_rewards"]) == 4
        assert b["sample_rewards"][0] == s["reward"]  # draw 1 is the sampled decoding with the same seed
        assert b["reward"] == max(b["sample_rewards"]) >= s["reward"]
    assert best.table["reward"] >= sampled.table["reward"]
    # the four draws differ somewhere (else best-of-n would test nothing)
    assert any(len(set(b["sample_rewards"])) > 1 for b in best.generations)
    assert best.table["kl_bound"] == pytest.approx(math.log(4) - 3 / 4)
    assert "kl_bound" in best.signatures and "kl_bound" not in sampled.table


def test_best_of_one_is_the_sampled_decoding(copy_policy):
    sampled = _run(copy_policy, decoding="sampled")
    one = _run(copy_policy, decoding="best-of-n", n=1)
    assert [g["generated_ids"] for g in one.generations] == [g["generated_ids"] for g in sampled.generations]
    assert one.table["reward"] == sampled.table["reward"] and one.table["kl_bound"] == 0.0
    legacy = _run(copy_policy, deterministic=False)  # decoding=None keeps the old keyword's meaning
    assert legacy.table == sampled.table


def test_kl_bound_and_bad_arguments(copy_policy):
    assert best_of_n_kl_bound(1) == 0.0 and best_of_n_kl_bound(2) == pytest.approx(math.log(2) - 0.5)
    with pytest.raises(EvaluationError, match="n >= 1"):
        best_of_n_kl_bound(0)
    with pytest.raises(EvaluationError, match="decoding"):
        _run(copy_policy, decoding="beam")
    with pytest.raises(EvaluationError, match="only with decoding='best-of-n'"):
        _run(copy_policy, decoding="sampled", n=4)
    with pytest.raises(EvaluationError, match="no reward to rank"):  # TextCopy-v0 pays per token, not per text
        evaluate("TextCopy-v0", generate_fn=lambda prompts: ["a"] * len(prompts), n_examples=2, metrics=(),
                 decoding="best-of-n", n=2)


def test_eval_command_reports_the_kl_bound(tmp_path, capsys):
    from text_envs_app.cli import main

    assert main(["eval", "--env", "TextCopy-v0", "--decoding", "best-of-n", "--n", "3", "--examples", "8",
                 "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "best-of-3 decoding" in out
    bound = f"| kl_bound | {math.log(3) - 2 / 3:.4f} |"
    assert bound in out and bound in (tmp_path / "ev" / "results.md").read_text()
    assert main(["eval", "--env", "TextCopy-v0", "--decoding", "best-of-n", "--n", "0", "--examples", "2"]) == 2
