"""A bench run in parts (`text-envs bench --first-seed K`) and joined (`text-envs bench-merge`) is the bench that
one process over every seed writes: the same rows, start-model samples and pooled shares; parts that are not one
bench are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from text_envs.errors import TextEnvsError
from text_envs_app import bench
from text_envs_app.bench_merge import merge_benchmarks
from text_envs_app.cli import main

TIMINGS = ("wall_s", "train_s")  # the only fields that differ between two runs of the same seed

PARTS = dict(envs=(bench.CONTINUATION,), steps=32, n_envs=4, n_steps=8, eval_examples=6, eval_samples=2,
             start_samples=4, best_of_n=2, seeds=2, kl_coefs=(0.05,), curve_points=0, curve_examples=4,
             methods=("sampled", "best-of-n", "nlpo"))


def _without_timings(rows):
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


def test_parts_joined_are_the_bench_over_every_seed(tmp_path, monkeypatch):
    monkeypatch.setitem(bench.BENCH_PRESETS, "tiny-parts", PARTS)
    quiet = dict(reps=200, log=lambda *_: None)
    whole = bench.run_benchmark("tiny-parts", str(tmp_path / "whole"), **quiet)
    # the parts in the opposite order, as two machines may finish
    bench.run_benchmark("tiny-parts", str(tmp_path / "p1"), seeds=1, first_seed=1, **quiet)
    bench.run_benchmark("tiny-parts", str(tmp_path / "p0"), seeds=1, first_seed=0, **quiet)
    assert json.loads((tmp_path / "p1" / "bench.json").read_text())["seeds"] == [1]
    joined = merge_benchmarks([tmp_path / "p1", tmp_path / "p0"], str(tmp_path / "j"), **quiet)

    assert _without_timings(joined) == _without_timings(whole)
    # a part's own pooled share saw only its seed's samples; the joined one is read against both seeds'
    part_row = next(json.loads(line) for line in open(tmp_path / "p0" / "runs.jsonl")
                    if '"nlpo"' in line)
    assert part_row["gain_share_pooled"] != next(r for r in joined if r["method"] == "nlpo")["gain_share_pooled"]
    key = "continuation__sentiment"
    np.testing.assert_array_equal(np.load(tmp_path / "j" / "start_rewards.npz")[key],
                                  np.load(tmp_path / "whole" / "start_rewards.npz")[key])
    md = (tmp_path / "j" / "results.md").read_text()
    assert "2 seeds" in md and "| nlpo-unmasked | " in md
    assert json.loads((tmp_path / "j" / "bench.json").read_text())["seeds"] == [0, 1]
    for name in ("results.csv", "curves.csv", "runs.jsonl", "frontier.png", "results.png", "curves.png"):
        assert (tmp_path / "j" / name).stat().st_size > 0

    # refused: overlapping seeds, parts of different benches, an unfinished part, the output being a part, one part
    with pytest.raises(TextEnvsError, match="seed 0 is in both"):
        merge_benchmarks([tmp_path / "p0", tmp_path / "whole"], str(tmp_path / "x"), **quiet)
    other = json.loads((tmp_path / "p1" / "bench.json").read_text())
    (tmp_path / "p1" / "bench.json").write_text(json.dumps(dict(other, methods=["sampled"])))
    with pytest.raises(TextEnvsError, match="not parts of one bench: their methods differ"):
        merge_benchmarks([tmp_path / "p0", tmp_path / "p1"], str(tmp_path / "x"), **quiet)
    (tmp_path / "p1" / "results.md").unlink()
    with pytest.raises(TextEnvsError, match="has not finished"):
        merge_benchmarks([tmp_path / "p0", tmp_path / "p1"], str(tmp_path / "x"), **quiet)
    with pytest.raises(TextEnvsError, match="is one of the parts"):
        merge_benchmarks([tmp_path / "p0", tmp_path / "j"], str(tmp_path / "j"), **quiet)
    with pytest.raises(TextEnvsError, match="two or more"):
        merge_benchmarks([tmp_path / "p0"], str(tmp_path / "x"), **quiet)
    with pytest.raises(TextEnvsError, match="no bench.json"):
        merge_benchmarks([tmp_path / "p0", tmp_path], str(tmp_path / "x"), **quiet)


def test_first_seed_is_checked_and_on_the_command_line(tmp_path, capsys):
    with pytest.raises(TextEnvsError, match="--first-seed must be at least 0"):
        bench.run_benchmark("small", str(tmp_path / "x"), first_seed=-1)
    with pytest.raises(SystemExit):
        main(["bench-merge", "--help"])
    assert "--first-seed" in capsys.readouterr().out
