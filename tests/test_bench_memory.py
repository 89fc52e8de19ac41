"""benchmarks/bench_memory.py: its points, its bad input, and one tiny point run in this process."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import bench_memory  # noqa: E402


def test_points_vary_one_factor_at_a_time_from_the_base():
    pts = bench_memory.points(["n_envs", "model"])
    assert pts[0] == bench_memory.BASE
    assert len(pts) == 1 + 2 + 2  # the base value of each factor is not repeated
    for p in pts[1:]:
        assert sum(p[k] != bench_memory.BASE[k] for k in p) == 1


def test_unknown_model_size_is_refused():
    with pytest.raises(SystemExit, match="expected 'shipped' or one of"):
        bench_memory.model_config("9b")


def test_a_tiny_point_reports_its_peak_and_speed():
    r = bench_memory.run_point(n_envs=2, prompt=64, model="shipped", n_steps=4, rollouts=1, chunked=True)
    assert r["tokens"] == 8 and r["tok_s"] > 0
    assert r["peak_mib"] >= r["rss_built_mib"] > 0  # VmHWM is the peak of VmRSS
    assert 2 < r["params_m"] < 3  # the shipped 2.5M-parameter T5
    assert r["estimate_mib"] > 0  # the update's one-forward estimate was recorded
    import lm_core.actor_critic
    from lm_core.episodes import teacher_forced_outputs
    assert lm_core.actor_critic.teacher_forced_outputs is teacher_forced_outputs  # and the recording undone


def test_unknown_run_and_bad_trigger_are_refused(capsys, monkeypatch):
    monkeypatch.setenv("TEXT_ENVS_CHUNK_TRIGGER_MIB", "")  # restored (removed) after the test: main() sets it
    with pytest.raises(SystemExit):
        bench_memory.main(["--factors", "none", "--runs", "main,readme"])
    assert "unknown run(s) ['readme']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_memory.main(["--factors", "none", "--trigger", "lots"])
    assert "TEXT_ENVS_CHUNK_TRIGGER_MIB" in capsys.readouterr().err
