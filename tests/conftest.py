"""Shared fixtures: the real-format sample rows in ../shared/data, and a quiet, reproducible torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def xsum_sample() -> Path:
    path = SHARED_DATA / "xsum_sample.jsonl"
    if not path.exists():
        pytest.fail(f"missing test data {path}: the project expects ../shared/data beside its root")
    return path


@pytest.fixture(scope="session")
def wmt16_sample() -> Path:
    path = SHARED_DATA / "wmt16_en_ro_sample.jsonl"
    if not path.exists():
        pytest.fail(f"missing test data {path}: the project expects ../shared/data beside its root")
    return path


@pytest.fixture(autouse=True, scope="session")
def _sb3_log_folder(tmp_path_factory):
    # every SB3 model makes a log folder, by default a new /tmp/SB3-<time> each: keep them in pytest's own
    # temporary directory, which pytest prunes
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3-logs"))


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    # one thread per test process: pytest-xdist runs two of them on the two cores, and oversubscribed
    # threads made a tiny TRPO update 27x slower here
    torch.set_num_threads(1)


@pytest.fixture
def restore_torch_threads():
    """Give torch's thread count back after a test whose code (a benchmark script, train()) sets its own."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def one_train_thread(monkeypatch):
    """``text_envs_app.train.train`` sets torch's threads to the core count: make that one (the setting resume
    is bit-exact for), and leave one thread set afterwards."""
    monkeypatch.setattr("os.cpu_count", lambda: 1)  # the SB3 engine sets torch's threads from it
    yield
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def interrupt_at_step(monkeypatch):
    """``stop = interrupt_at_step(n)``: Ctrl-C (``KeyboardInterrupt``) arriving inside the n-th ``VecEnv.step`` of
    the process from then on (in the middle of a rollout); ``stop()`` steps normally again."""
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv

    def arm(n: int):
        original, calls = VecEnv.step, [0]

        def step(self, actions):
            calls[0] += 1
            if calls[0] == n:
                raise KeyboardInterrupt
            return original(self, actions)

        monkeypatch.setattr(VecEnv, "step", step)
        return lambda: monkeypatch.setattr(VecEnv, "step", original)

    return arm


@pytest.fixture(scope="session")
def train_finished_run(tmp_path_factory):
    """Train a tiny run to its end and return its folder: ``train_finished_run(name, **train_config)``.

    The run restores torch's thread count after it, so a one-thread run does not change the tests that follow.
    """

    def make(name: str, **config) -> Path:
        import torch as th

        from text_envs_app.config import TrainConfig
        from text_envs_app.train import train

        out = tmp_path_factory.mktemp(name) / "run"
        threads = th.get_num_threads()
        try:
            train(TrainConfig(**config, out=str(out)), log=lambda *_: None)
        finally:
            th.set_num_threads(threads)
        return out

    return make
