"""The speed benchmarks of issue 25 at toy sizes: ``bench_trl``'s settings and trainers (the card's plain
``PPO(LLMPolicy, env)``, ``sb3_ext.GRPO``), its wall, steady and CPU rates, and ``bench_algorithms``' CPU column.

The figures are the scripts' job (benchmarks/RESULTS.md); these check that each row runs the budget it claims and
reports finite rates.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_algorithms  # noqa: E402
import bench_trl  # noqa: E402

from text_envs.errors import TextEnvsError  # noqa: E402

pytestmark = pytest.mark.usefixtures("restore_torch_threads")  # the scripts set torch to 1 thread (conftest.py)


def test_parse_settings_reads_causal_and_t5_groups():
    settings = bench_trl.parse_settings("16x32, 64x64,t5:16x32")
    assert settings == [bench_trl.Setting("causal", 16, 32), bench_trl.Setting("causal", 64, 64),
                        bench_trl.Setting("t5", 16, 32)]
    assert [s.label for s in settings] == ["16x32", "64x64", "t5:16x32"]
    for bad in ("16", "t6:16x32", "0x8", "16x", ""):
        with pytest.raises(TextEnvsError, match="setting"):
            bench_trl.parse_settings(bad)


def test_bench_trl_settings_and_lengths_are_exclusive_and_kl_defaults():
    with pytest.raises(TextEnvsError, match="--settings or --lengths"):
        bench_trl.parse_args(["--settings", "8x8", "--lengths", "8"])
    with pytest.raises(TextEnvsError, match="multiple of --generations"):
        bench_trl.parse_args(["--settings", "6x8"])
    assert bench_trl.parse_args([]).kl == 0.0  # issue 25's measurement: no KL
    assert bench_trl.parse_args(["--lengths", "32"]).kl == 0.05  # the older tables' setting
    a = bench_trl.parse_args([])
    assert [s.label for s in a.setting_list] == bench_trl.DEFAULT_SETTINGS.split(",")
    assert a.trainer_list == list(bench_trl.DEFAULT_TRAINERS)
    assert bench_trl.parse_args(["--lengths", "32"]).trainer_list == list(bench_trl.LENGTHS_TRAINERS)


def test_bench_trl_plain_and_sb3_grpo_rows_run_the_budget(capsys):
    rows = bench_trl.main(["--settings", "8x8", "--trainers", "plain,sb3-grpo", "--seeds", "0", "--updates", "2"])
    out = capsys.readouterr().out
    assert [r["trainer"] for r in rows] == ["plain", "sb3-grpo"]
    for r in rows:
        assert r["error"] is None and r["setting"] == "8x8"
        assert r["tokens"] == [2 * 8 * 8]  # both count env steps x envs, as SB3 does
        assert math.isfinite(r["tok_s"]) and r["tok_s"] > 0
        assert math.isnan(r["x_grpo"])  # no TRL row in this run: no ratio
    header = next(line for line in out.splitlines() if line.startswith("trainer"))
    for col in ("tok/s", "steady", "tok/cpu-s", "x GRPO"):
        assert col in header
    assert "## 8x8 (tiny causal)" in out


def test_run_result_rates():
    r = bench_trl.RunResult("plain", 8, 0, wall_s=2.0, tokens=400, rewards=[], cpu_s=1.0,
                            update_ends=[10.0, 10.5, 11.0, 11.5])
    assert r.tok_s == 200 and r.cpu_tok_s == 400
    assert r.steady_tok_s == pytest.approx(400 * 3 / 4 / 1.5)  # updates 2..4 over the time after the first
    assert math.isnan(bench_trl.RunResult("x", 8, 0, 1.0, 8, [], update_ends=[1.0]).steady_tok_s)


def test_bench_trl_t5_setting_uses_the_shipped_model(capsys):
    rows = bench_trl.main(["--settings", "t5:4x8", "--trainers", "plain", "--seeds", "0", "--updates", "1"])
    out = capsys.readouterr().out
    assert rows[0]["setting"] == "t5:4x8" and rows[0]["error"] is None and rows[0]["tokens"] == [32]
    assert "ours: the shipped T5; TRL: GPT-2 n_embd 128/n_layer 6/n_head 4" in out


def test_t5_matched_causal_has_the_t5_width_and_depth():
    from text_envs.tokenization import load_tokenizer

    tok = load_tokenizer()
    model = bench_trl.t5_matched_causal(tok, 64, seed=0)
    assert model.config.n_embd == 128 and model.config.n_layer == 6 and model.config.vocab_size == len(tok)
    params = sum(p.numel() for p in model.parameters())
    assert 1.5e6 < params < 2.6e6  # the shipped T5 has 2.5M


def test_bench_algorithms_prints_cpu_rates_and_the_target(capsys):
    rates = bench_algorithms.main(["--quick", "--methods", "ppo,reinforce"])
    out = capsys.readouterr().out
    assert set(rates) == {"ppo", "reinforce"}
    header = next(line for line in out.splitlines() if line.startswith("method"))
    assert "tok/cpu-s" in header and "within 1.2x of PPO" in header
    reinforce = next(line for line in out.splitlines() if line.startswith("reinforce"))
    assert reinforce.split()[-1] in ("yes", "no", "only")  # "CPU only" ends in "only"


def test_profile_rollout_parts_of_the_plain_path(capsys):
    import profile_rollout

    parts = profile_rollout.main(["--parts", "--n-envs", "4", "--T", "8", "--P", "64", "--updates", "1"])
    out = capsys.readouterr().out
    assert parts["learn"] > 0 and parts["learn calls"] == 1
    assert parts["collect_rollouts"] + parts["update (PPO.train)"] <= parts["learn"] * 1.001
    assert parts["policy forward (rollout step) calls"] == 8  # one per env step of the profiled rollout
    for label in ("prefills of restarting rows", "cached decode steps", "value bootstrap (predict_values)"):
        assert label in out
