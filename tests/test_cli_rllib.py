"""``text-envs train --engine rllib``: the output folder, resume after an interruption, and bad flag combinations.

Tiny runs: TextCopy-v0 (4-token episodes) with the tiny T5 built from a config, 64 tokens per iteration.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys

import pytest

from text_envs_app.cli import main

pytestmark = pytest.mark.timeout(600)  # a hung Ray run fails the test instead of stalling the suite

TINY = ["--env", "TextCopy-v0", "--n-envs", "4", "--n-steps", "16", "--eval-examples", "8", "--seed", "0",
        "--checkpoint-every", "0", "--curve-points", "3", "--curve-examples", "4"]


# ---------------------------------------------------------------------------------------------- bad input (no Ray)
@pytest.mark.parametrize("args, expected", [
    (["--engine", "rllib", "--algo", "a2c"], "--engine rllib takes --algo ppo, impala, appo, got a2c"),
    (["--engine", "rllib", "--algo", "trpo"], "a2c, trpo, nlpo, grpo, rloo, reinforce, raft, dpo, supervised run on "
                                              "--engine sb3"),
    (["--algo", "impala"], "--algo impala runs on Ray RLlib: add --engine rllib"),
    (["--algo", "appo", "--engine", "sb3"], "--engine sb3 takes ppo, a2c, trpo, nlpo"),
    (["--engine", "rlib"], "Did you mean 'rllib'"),
    (["--engine", "rllib", "--algo", "impal"], "Did you mean 'impala'"),
    (["--engine", "rllib", "--num-env-runners", "-1"], "--num-env-runners must be at least 0, got -1"),
    (["--engine", "rllib", "--compare-supervised"], "--engine rllib does not take --compare-supervised"),
    (["--engine", "rllib", "--vec-env", "dummy", "--kl-target", "1"], "does not take --vec-env, --kl-target"),
])
def test_bad_engine_and_algorithm_combinations_are_refused_clearly(tmp_path, capsys, args, expected):
    out = tmp_path / "run"
    assert main(["train", "--env", "TextCopy-v0", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert not out.exists()  # refused before any folder is made


def test_a_missing_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError, as where it is not installed
    out = tmp_path / "run"
    assert main(["train", "--engine", "rllib", *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'text-envs[rllib]'" in err, err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- real runs
def _interrupt_on_iteration(monkeypatch, n: int) -> None:
    """Ctrl-C (SIGINT to this process) arriving during the n-th ``Algorithm.train`` call from now on."""
    from ray.rllib.algorithms.algorithm import Algorithm

    original, calls = Algorithm.train, [0]

    def train(self):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGINT)  # handled between bytecodes: inside this iteration
        return original(self)

    monkeypatch.setattr(Algorithm, "train", train)


def test_rllib_run_writes_the_sb3_runs_output_folder(tmp_path, capsys, one_train_thread):
    pytest.importorskip("ray.rllib")
    out = tmp_path / "copy"
    assert main(["train", "--engine", "rllib", "--algo", "ppo", "--num-env-runners", "1", *TINY, "--steps", "128",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| metric | start | ppo (rllib) |" in printed and "| reward |" in printed
    for name in ("config.json", "results.md", "results.json", "samples.md", "learning_curve.png"):
        assert (out / name).is_file(), name
    assert (out / "hf" / "config.json").is_file() and any((out / "hf").glob("*.safetensors"))
    assert any((out / "tb").glob("events.out.tfevents.*"))
    assert not (out / "checkpoints").exists()  # resume state removed once the run is finished
    result = json.loads((out / "results.json").read_text())
    assert result["engine"] == "rllib" and result["config"]["engine"] == "rllib"
    assert result["tokens"] >= 128 and result["iterations"] == 2  # about 64 tokens an iteration (whole vector steps)
    for column in ("before", "after"):
        assert {"reward", "kl", "start_ppl", "gen_len"} <= set(result[column]), result[column]
    assert result["before"]["kl"] == 0.0 and result["after"]["kl"] > 0.0  # trained weights moved from the start
    curve = result["curve"]
    assert len(curve["episode_tokens"]) == 2 and curve["episode_tokens"][-1] == result["tokens"]  # per iteration
    assert curve["tokens"] == [0, *curve["episode_tokens"]]  # the greedy and sampled curves
    assert abs(curve["kl"][0]) < 1e-6 and curve["kl"][-1] > 0 and len(curve["sampled"]) == 3

    from transformers import AutoModelForSeq2SeqLM

    AutoModelForSeq2SeqLM.from_pretrained(out / "hf")  # the deliverable loads with plain transformers
    assert main(["eval", str(out), "--examples", "4"]) == 0  # and `text-envs eval RUN` finds it
    assert "| reward |" in capsys.readouterr().out


def test_an_interrupted_rllib_run_resumes_and_continues_its_counters(tmp_path, capsys, monkeypatch,
                                                                      one_train_thread):
    pytest.importorskip("ray.rllib")
    out = tmp_path / "copy"
    _interrupt_on_iteration(monkeypatch, 2)
    assert main(["train", "--engine", "rllib", "--algo", "ppo", "--num-env-runners", "0", *TINY,
                 "--steps", "192", "--out", str(out)]) == 130
    printed = capsys.readouterr().out
    assert "SIGINT: finishing this training iteration, then saving a checkpoint" in printed
    assert f"continue with: text-envs train --out {out} --resume" in printed
    saved = sorted((int(p.name.split("-")[1]) for p in (out / "checkpoints").iterdir() if p.name.startswith("tokens-")))
    assert len(saved) == 2 and saved[0] == 0 and 128 <= saved[1] < 192, saved  # iteration 2 finished, then saved
    assert not (out / "results.json").exists()
    first = json.loads((out / "checkpoints" / f"tokens-{saved[1]}" / "text_envs_state.json").read_text())
    # a newer checkpoint that does not restore (its files damaged on disk): named, set aside, the previous one used
    broken = out / "checkpoints" / "tokens-9999"
    shutil.copytree(out / "checkpoints" / f"tokens-{saved[1]}", broken)
    (broken / "class_and_ctor_args.pkl").write_bytes(b"\x80")

    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--resume"]) == 0  # the engine comes from the run's config.json
    printed = capsys.readouterr().out
    assert f"error: checkpoint {broken} does not restore" in printed
    assert "moved it to tokens-9999.corrupt and falling back to the previous checkpoint" in printed
    assert f"resuming from {out / 'checkpoints' / f'tokens-{saved[1]}'} at {saved[1]} of 192 tokens (iteration 2)" \
        in printed
    result = json.loads((out / "results.json").read_text())
    # RLlib's own counters went on from the checkpoint: a third iteration, past 192 tokens in all
    assert result["iterations"] == 3 and 192 <= result["tokens"] < 192 + 64
    episodes = result["curve"]["episode_tokens"]
    assert [[t, v] for t, v in zip(episodes, result["curve"]["episode_return"])][:2] == first["curve"]
    assert episodes[1] == saved[1] and episodes[2] == result["tokens"]  # the curves kept their first part
    assert result["curve"]["tokens"] == [0, saved[1], result["tokens"]]


@pytest.mark.expensive
def test_bench_rllib_quick_prints_both_tables(capsys, restore_torch_threads):
    pytest.importorskip("ray.rllib")
    import math
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_rllib

    rows = bench_rllib.main(["--quick"])
    out = capsys.readouterr().out
    assert [(r["engine"], r["algo"], r["runners"]) for r in rows] == [
        ("sb3", "ppo", 0), ("rllib", "ppo", 1), ("rllib", "ppo", 2), ("rllib", "impala", 1), ("rllib", "impala", 2)]
    assert all(math.isfinite(r["tokens_per_s"]) and r["tokens_per_s"] > 0 for r in rows)
    assert "| / SB3 PPO |" in out and "| rllib | ppo | 2 |" in out and "| rllib | impala (x2) |" in out
    for r in rows[1:]:
        # the runner ships every observation array and the action's log-prob, never V floats per token
        assert r["shipped"]["raw"]["observations"] > 0 and r["weight_bytes"] > 0
        assert "action_dist_inputs" not in r["shipped"]["extra_keys"]
