"""Smoke tests of the benchmark scripts at their ``--quick`` / ``--small`` sizes (about 30 s together).

They check that each script runs end to end and prints the table a reader relies on, with finite, positive
ratios; the figures themselves are the scripts' job (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_frontier_kl  # noqa: E402
import bench_scaling  # noqa: E402
import bench_trl  # noqa: E402
import bench_trpo  # noqa: E402
import gpu_check  # noqa: E402
import profile_rollout  # noqa: E402

from text_envs.errors import TextEnvsError  # noqa: E402

pytestmark = pytest.mark.usefixtures("restore_torch_threads")  # the scripts set torch to 1 thread (conftest.py)


def _finite_positive(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_bench_trl_quick_three_trainers_same_budget(capsys):
    pytest.importorskip("trl")
    rows = bench_trl.main(["--quick"])
    out = capsys.readouterr().out
    assert [r["trainer"] for r in rows] == list(bench_trl.LENGTHS_TRAINERS)
    budget = 2 * 8 * 16  # --quick: 2 updates of 8 completions of T=16
    for r in rows:
        assert r["error"] is None, r
        assert _finite_positive(r["tok_s"])
        # every trainer generated the matched budget (TRL stops a completion at EOS: allow a little less)
        assert 0.8 * budget <= r["tokens"][0] <= budget, r
        assert 0.0 <= r["reward_last"] <= 1.0
    ppo_parts = rows[0]["parts"][0]
    assert set(ppo_parts) == set(bench_trl.PART_NAMES) and all(v >= 0 for v in ppo_parts.values())
    header = next(line for line in out.splitlines() if line.startswith("trainer"))
    for col in ("tok/s", "x GRPO", "reward last 1/4", "rollout", "update", "sb3"):
        assert col in header
    grpo_line = next(line for line in out.splitlines() if line.startswith("grpo "))
    assert " 1.00 " in grpo_line  # the reference row of the ratio column


def test_bench_trl_reports_missing_trl_and_still_runs_ppo(monkeypatch, capsys):
    def missing():
        raise bench_trl.TRLUnavailableError("expected trl to be installed, got ImportError: test")

    monkeypatch.setattr(bench_trl, "_trl", missing)
    rows = bench_trl.main(["--quick", "--trainers", "ppo,grpo"])
    out = capsys.readouterr().out
    assert rows[0]["trainer"] == "ppo" and rows[0]["error"] is None and _finite_positive(rows[0]["tok_s"])
    assert "expected trl to be installed" in rows[1]["error"]
    assert re.search(r"^grpo\s+not run: expected trl", out, re.M)


def test_icdf_sampling_draws_from_the_distribution():
    import torch
    from stable_baselines3.common.distributions import CategoricalDistribution

    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    dist = CategoricalDistribution(6).proba_distribution(torch.log(probs).expand(40_000, 6))
    stock = CategoricalDistribution.sample
    torch.manual_seed(0)
    with bench_trl.icdf_sampling():
        assert CategoricalDistribution.sample is not stock
        draws = dist.sample()
    assert CategoricalDistribution.sample is stock  # restored
    assert draws.shape == (40_000,) and draws.dtype == torch.int64
    freq = torch.bincount(draws, minlength=6).float() / len(draws)
    assert freq[[0, 2, 5]].sum() == 0  # zero-probability tokens are never drawn
    assert torch.allclose(freq, probs, atol=0.01)


def test_bench_trl_rejects_bad_arguments():
    with pytest.raises(TextEnvsError, match="Did you mean 'grpo'"):
        bench_trl.main(["--quick", "--trainers", "ppo,gpro"])
    with pytest.raises(TextEnvsError, match="multiple of --generations"):
        bench_trl.main(["--quick", "--completions", "6", "--generations", "4"])


def test_bench_scaling_quick_tables(capsys):
    res = bench_scaling.main(["--quick", "--tables", "floor,envs,length,prompt"])
    out = capsys.readouterr().out
    assert [(r["arch"], r["size"]) for r in res["floor"]] == [("seq2seq", "tiny"), ("causal", "tiny")]
    for r in res["floor"]:
        assert _finite_positive(r["rollout_vs_generate"]) and _finite_positive(r["ppo_vs_supervised"])
    assert [r["n_envs"] for r in res["envs"]] == list(bench_scaling.QUICK.n_envs_list)
    assert [r["T"] for r in res["length"]] == list(bench_scaling.QUICK.lengths)
    assert [r["P"] for r in res["prompt"]] == list(bench_scaling.QUICK.prompts)
    for table in ("envs", "length", "prompt"):
        for r in res[table]:
            for key in ("rollout_tok_s", "generate_tok_s", "rollout_us_tok", "update_us_tok", "generate_us_tok"):
                assert _finite_positive(r[key]), (table, key, r)
            assert r["tokens"] >= bench_scaling.QUICK.min_tokens
    for title in ("the floor: rollout vs HF generate", "tokens/s vs n_envs", "cost per generated token vs T",
                  "cost per generated token vs P"):
        assert title in out
    assert "rollout/generate" in out and "load average" in out


def test_rollout_buffer_bytes_at_the_issue_size():
    b = bench_scaling.buffer_comparison(fill_steps=64)
    # P=1024, T=256, 32 envs, 2048 steps: SB3's Dict buffer holds every observation (int64) at every step, ~1.3 GB
    assert 1200 < b["stock_dict_mb"] < 1400
    # the episode buffer keeps one prompt per episode, never a per-step copy of it
    assert b["episode_mb"] < b["stock_dict_mb"] / 20


@pytest.mark.expensive  # two fresh interpreters (torch + transformers imports): 15-50 s on a loaded 2-core machine
def test_bench_scaling_memory_table(capsys):
    res = bench_scaling.main(["--quick", "--tables", "memory"])
    out = capsys.readouterr().out
    rows = res["memory"]["rows"]
    assert len(rows) >= 2 and {r["n_envs"] for r in rows} == {1, bench_scaling.QUICK.base_envs}
    for r in rows:
        assert r["peak_mb"] >= r["rss_before_learn_mb"] > 50  # torch alone is more than 50 MiB
        assert r["buffer_mb"] > 0
    assert res["memory"]["buffer"]["ratio"] > 20
    assert "DictRolloutBuffer" in out and "peak MiB" in out


def test_episode_buffer_bytes_do_not_scale_with_prompt_per_step():
    small = bench_scaling.buffer_comparison(P=64, T=64, n_envs=4, n_steps=256)
    large = bench_scaling.buffer_comparison(P=1024, T=64, n_envs=4, n_steps=256)
    # prompts are stored once per episode (256 steps / 64 tokens = 4 episodes per env), so 16x longer prompts
    # cost 16 * 4 * 4 episodes * P * 16 bytes more, not n_steps * n_envs * P more
    grow = (large["episode_mb"] - small["episode_mb"]) * 2**20
    per_step_copy = 256 * 4 * (1024 - 64) * 8
    assert grow < per_step_copy / 4
    assert large["stock_dict_mb"] / small["stock_dict_mb"] > 6  # the stock buffer pays the prompt per step


def test_bench_scaling_rejects_unknown_table():
    with pytest.raises(TextEnvsError, match="Did you mean 'length'"):
        bench_scaling.main(["--quick", "--tables", "lenght"])


def test_model_sizes_match_their_names():
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    expected = {"7m": 7e6, "60m": 60e6, "220m": 220e6, "0.5b": 0.5e9}
    for arch in bench_scaling.ARCHS:
        cls = AutoModelForSeq2SeqLM if arch == "seq2seq" else AutoModelForCausalLM
        for size, n in expected.items():
            if arch == "seq2seq" and size == "0.5b":
                continue
            with torch.device("meta"):  # no memory, no init: just the shapes
                model = cls.from_config(bench_scaling.model_config(size, arch, 4000))
            assert 0.85 * n < bench_scaling.n_params(model) < 1.15 * n, (arch, size, bench_scaling.n_params(model))


def test_gpu_check_small_on_cpu(tmp_path, capsys):
    out_file = tmp_path / "gpu.json"
    res = gpu_check.main(["--small", "--steps", "floors", "--out", str(out_file)])
    out = capsys.readouterr().out
    assert res["device"].startswith("CPU")
    assert [(r["arch"], r["size"]) for r in res["floors"]] == [(s[1], s[0]) for s in gpu_check.CPU_FLOORS]
    for r in res["floors"]:
        for key in ("rollout_vs_generate", "ppo_vs_supervised", "rollout_tok_s", "generate_tok_s"):
            assert _finite_positive(r[key]), (key, r)
    saved = json.loads(out_file.read_text())
    assert saved["floors"][0]["rollout_vs_generate"] == pytest.approx(res["floors"][0]["rollout_vs_generate"])
    assert "rollout/generate" in out and "PPO/supervised" in out


def test_gpu_check_plan_parses_for_trl():
    """The GPU step's bench_trl arguments are valid (they cannot be run without a GPU here)."""
    a = bench_trl.parse_args(gpu_check.GPU_TRL)
    assert (a.size, a.device, a.dtype, a.completions % a.generations) == ("0.5b", "cuda", "bfloat16", 0)
    assert a.warmup, "the first CUDA trainer must not pay for CUDA's start-up in the timed runs"


def test_profile_rollout_counts_operators_per_token(capsys):
    res = profile_rollout.main(["--n-envs", "2", "--T", "8", "--P", "64", "--repeats", "1", "--top", "3"])
    out = capsys.readouterr().out
    assert all(_finite_positive(x) for x in res["rollout_tok_s"] + res["generate_tok_s"])
    # both sides run the model once per token at least: several aten ops per generated token
    assert res["counts_rollout"]["ops"] > 2 * 2 * 8 and res["counts_generate"]["ops"] > 2 * 2 * 8
    assert "rollout/generate" in out and "top operators by self CPU time" in out


@pytest.mark.expensive  # two fresh interpreters and a stock TRPO update: 40 s alone, 90 s on a loaded 2-core machine
def test_bench_trpo_quick_same_update(capsys):
    """Stock sb3-contrib TRPO and sb3_ext.TRPO make the same update from the same seed (their time and memory
    are the script's figures, benchmarks/RESULTS.md section 7: at this size peak RSS may not grow at all)."""
    res = bench_trpo.main(["--quick"])
    out = capsys.readouterr().out
    stock, ours = res["stock"], res["sb3_ext"]
    assert stock["tensors"] == ours["tensors"] > 20
    step = (stock["params"] - stock["start"]).astype(np.float64)
    assert abs(step).max() > 1e-4  # the update did something...
    # ...and the same thing in both, up to float32 rounding. The two compute the same sums in another order (and
    # MKL's float32 reductions also vary with memory alignment, i.e. from run to run on a loaded machine), so:
    # * the gradient and each conjugate-gradient Hessian-vector product differ by about sqrt(m) * eps32 relative,
    #   m the longest reduction in them (d_ff = 512 of the shipped T5);
    # * the CG solve of (F + damping I) x = g amplifies a relative perturbation by at most the condition number
    #   kappa = lambda_max / damping: the damped Fisher's largest eigenvalue is 204 at this size (power iteration
    #   on TRPO's own hessian_vector_product, seed 0; its smallest is >= damping = 0.1), so kappa <= 2.04e3;
    # * storing start + step in float32 rounds each weight again: at most one ulp of each weight apart.
    # A real difference (a missing or rescaled gradient) moves the step by O(1) of its size, far above this.
    # (The former check, 1e-3 of the largest step, was one run's margin: a loaded machine measured 2.1e-3.)
    eps32, m, kappa = float(np.finfo(np.float32).eps), 512, 204 / 0.1
    rounding = kappa * np.sqrt(m) * eps32 * np.linalg.norm(step)  # ~5.5e-3 of the step
    storage = np.linalg.norm(np.spacing(np.abs(stock["params"])).astype(np.float64))
    assert np.linalg.norm(stock["params"].astype(np.float64) - ours["params"]) <= rounding + storage
    assert _finite_positive(stock["update_s"]) and _finite_positive(ours["update_s"])
    assert "stock / sb3_ext" in out


def test_bench_frontier_kl_small_three_ways_agree(capsys):
    rows = bench_frontier_kl.main(["--splits", "ood", "--prompts", "3", "--samples", "4"])
    assert [r["way"] for r in rows] == ["before", "sorted KL", "while sampling"]
    assert all(_finite_positive(r["seconds"]) and _finite_positive(r["speedup"]) for r in rows)
    assert all(r["max_kl_difference"] < 1e-4 and r["mean_kl"] > 0 for r in rows)  # the same KLs, float rounding
    assert "| ood | while sampling |" in capsys.readouterr().out
