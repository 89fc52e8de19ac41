"""rl-zoo3 trains and replays TextCopy-v0 with the shipped hyperparameters (text_envs_app.zoo), as a user runs it:
`python -m rl_zoo3.train --algo ppo --env TextCopy-v0 --gym-packages text_envs --conf-file text_envs_app.zoo.ppo`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import text_envs
from text_envs_app.zoo import ZOO_ALGORITHMS, zoo_hyperparams


def test_every_algorithm_has_hyperparameters_for_every_env():
    import importlib

    for algo in ZOO_ALGORITHMS:
        params = importlib.import_module(f"text_envs_app.zoo.{algo}").hyperparams
        assert set(params) == set(text_envs.ENV_IDS)
        for env_id, p in params.items():
            assert p["policy"] == "sb3_ext.LLMPolicy" and p["n_timesteps"] > 0 and p["n_envs"] >= 1
    copy = zoo_hyperparams("ppo", ["TextCopy-v0"])["TextCopy-v0"]
    assert (copy["n_steps"], copy["n_epochs"], copy["learning_rate"]) == (8, 4, 1e-3)  # the registry's


@pytest.mark.expensive
def test_rl_zoo_trains_and_enjoys_text_copy(tmp_path):
    pytest.importorskip("rl_zoo3")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--algo", "ppo", "--env", "TextCopy-v0", "--gym-packages", "text_envs", "-f", str(tmp_path / "logs")]
    train = subprocess.run([sys.executable, "-m", "rl_zoo3.train", *common, "--conf-file", "text_envs_app.zoo.ppo",
                            "-n", "512", "--seed", "0", "--eval-freq", "-1"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert train.returncode == 0, train.stderr[-2000:]
    assert (tmp_path / "logs" / "ppo" / "TextCopy-v0_1" / "TextCopy-v0.zip").is_file()
    enjoy = subprocess.run([sys.executable, "-m", "rl_zoo3.enjoy", *common, "-n", "64", "--no-render",
                            "--deterministic"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert enjoy.returncode == 0, enjoy.stderr[-2000:]
    assert "Mean reward:" in enjoy.stdout and "Mean episode length: 4.00" in enjoy.stdout
