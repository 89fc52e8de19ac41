"""The GPU check's algorithms step (benchmarks/gpu_algorithms.py) and its CPU fallback, at tiny sizes on CPU."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import gpu_algorithms  # noqa: E402
import gpu_check  # noqa: E402


def test_algorithms_rows_on_cpu(capsys):
    rows = gpu_algorithms.run(size="tiny", n_envs_list=(4,), methods=("ppo", "grpo", "dpo"), device="cpu", dtype=None,
                              P=32, T=4, group_size=2, minibatch=4, rounds=1)
    out = capsys.readouterr().out
    assert [(r["method"], r["n_envs"], r["group_size"]) for r in rows] == [("ppo", 4, 1), ("grpo", 4, 2), ("dpo", 4, 2)]
    for r in rows:
        assert r["rollout_s"] > 0 and r["update_s"] > 0 and r["tok_s"] > 0, r
        assert 0 < r["decode_s"] + r["env_s"] <= r["rollout_s"] * 1.05, r  # both parts happen inside the rollout
        # a decode step runs the model: many operator calls; the update of every method ran (DPO had unequal rewards)
        assert r["rollout_launches_per_step"] > 20 and r["update_launches_per_opt_step"] > 20, r
        assert math.isnan(r["rollout_busy_share"]) and r["rollout_verdict"] == "n/a (CPU)"
    assert "launch/step" in out and "grpo" in out


def test_verdict_threshold():
    assert gpu_algorithms.verdict(0.2) == "launch-bound"
    assert gpu_algorithms.verdict(0.9) == "device-bound"
    assert gpu_algorithms.verdict(float("nan")) == "n/a (CPU)"


def test_unknown_method_is_refused():
    with pytest.raises(Exception, match="method"):
        gpu_algorithms.build_method("ppo2", None, None, [], 4, 2, 32, 4, 4, "cpu", None)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_gpu_check_without_cuda_says_so(tmp_path, capsys):
    out_file = tmp_path / "gpu.json"
    res = gpu_check.main(["--steps", "trl", "--out", str(out_file)])
    out = capsys.readouterr().out
    assert "no CUDA device" in out and "nothing below measures a GPU" in out
    assert res["device"].startswith("CPU")
    assert json.loads(out_file.read_text())["device"] == res["device"]
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu_check.main(["--device", "cuda"])


def test_gpu_plan_covers_the_issue():
    """The GPU plan: the 0.5B causal model in bf16 at 64 and 256 envs, every method, TRL at the same counts."""
    plan = gpu_algorithms.GPU_PLAN
    assert (plan["size"], plan["dtype"], tuple(plan["n_envs_list"])) == ("0.5b", "bfloat16", (64, 256))
    assert gpu_check.TRL_COMPLETIONS == (64, 256)
    a = gpu_check.bench_trl.parse_args(gpu_check.trl_plan(256))
    assert (a.size, a.dtype, a.completions, a.trainer_list, a.reward) == ("0.5b", "bfloat16", 256, ["grpo"], "chrf")
    assert int(a.lengths) == plan["T"] and a.prompt_tokens == plan["P"]
