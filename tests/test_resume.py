"""Checkpoints and exact resume of ``text-envs train`` (text_envs_app.checkpoint).

The central check: with one torch thread, a run stopped part-way (Ctrl-C in the middle of a rollout, SIGTERM,
kill -9) and resumed ends with the same weights, bit for bit, as the same run never stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch as th

from text_envs_app import train as train_job
from text_envs_app.checkpoint import CheckpointStore
from text_envs_app.cli import main
from text_envs_app.config import TrainConfig
from text_envs_app.engines.sb3 import build_model, make_train_env
from text_envs_app.train import train

ROOT = Path(__file__).resolve().parents[1]
# TextCopy-v0 on a tiny T5 built from a config: 4 envs x 8 steps = 32-token rollouts, 4 of them
COPY = dict(env="TextCopy-v0", steps=128, n_envs=4, n_steps=8, batch_size=16, n_epochs=2, eval_examples=8,
            checkpoint_every=64, seed=3)


pytestmark = pytest.mark.usefixtures("one_train_thread")  # tests/conftest.py: one torch thread, as resume needs


def quiet(*_: object) -> None:
    pass


def weights(path: Path) -> dict[str, th.Tensor]:
    from stable_baselines3 import PPO

    return PPO.load(path, device="cpu").policy.state_dict()


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if isinstance(wa[k], th.Tensor) and not th.equal(wa[k], wb[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


_STRAIGHT: dict[str, Path] = {}


def straight_run(tmp_path_factory, vec_env: str = "native") -> Path:
    """The uninterrupted TextCopy run that the resumed ones must reproduce (one per vector env kind)."""
    import unittest.mock

    if vec_env not in _STRAIGHT:
        out = tmp_path_factory.mktemp("straight") / vec_env
        with unittest.mock.patch("os.cpu_count", lambda: 1):
            result = train(TrainConfig(**COPY, out=str(out), vec_env=vec_env), log=quiet)
        th.set_num_threads(1)
        assert result["tokens"] == 128 and not (out / "checkpoints").exists()  # removed once results are written
        _STRAIGHT[vec_env] = out
    return _STRAIGHT[vec_env]


@pytest.fixture(scope="module")
def straight_copy(tmp_path_factory) -> Path:
    return straight_run(tmp_path_factory)


@pytest.mark.parametrize("vec_env", ["native", pytest.param("dummy", marks=pytest.mark.expensive)])
def test_ctrl_c_mid_rollout_then_resume_gives_the_same_weights(tmp_path_factory, tmp_path, interrupt_at_step,
                                                               vec_env):
    straight_copy = straight_run(tmp_path_factory, vec_env)
    out = tmp_path / "run"
    lines: list[str] = []
    stop = interrupt_at_step(8 + 8 + 3)  # rollouts 0 and 1 done (64 tokens): the 3rd step of rollout 2
    result = train(TrainConfig(**COPY, out=str(out), vec_env=vec_env), log=lines.append)
    assert result["interrupted"] and result["tokens"] == 64
    text = "\n".join(lines)
    assert "SIGINT: stopped at 64 of 128 tokens" in text and "the 8 tokens generated since are dropped" in text
    assert f"continue with: text-envs train --out {out} --resume" in text
    assert [t for t, _ in CheckpointStore(out / "checkpoints").files()] == [64, 0]
    stop()
    lines.clear()
    resumed = train(TrainConfig(out=str(out), resume=True), log=lines.append)
    assert any("resuming from" in line and "at 64 of 128 tokens" in line for line in lines)
    assert resumed["tokens"] == 128  # the budget, not past it
    expected = json.loads((straight_copy / "results.json").read_text())
    assert resumed["after"] == expected["after"]
    assert_same_weights(out / "model.zip", straight_copy / "model.zip")
    assert not (out / "checkpoints").exists()


@pytest.mark.expensive
def test_summarization_resume_is_exact_and_the_run_folder_is_small(tmp_path, interrupt_at_step):
    """Summarization on the shipped model: KL penalty to it, greedy per-prompt baseline (its caches go in the
    checkpoint), the reference rebuilt from the shipped model's path instead of stored."""
    cfg = dict(env="TextSummarization-v0", steps=96, n_envs=4, n_steps=8, batch_size=32, eval_examples=4,
               difficulty=2, checkpoint_every=32)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train(TrainConfig(**cfg, out=str(straight)), log=quiet)
    stop = interrupt_at_step(8 + 8 + 5)
    assert train(TrainConfig(**cfg, out=str(stopped)), log=quiet)["tokens"] == 64
    ckpt = CheckpointStore(stopped / "checkpoints").read(CheckpointStore(stopped / "checkpoints").files()[0][1])
    import io
    import zipfile

    saved = ckpt.parameters["policy"]
    assert not any(k.startswith("reference_model.") for k in saved)  # rebuilt from the shipped model's folder
    assert ckpt.state["envs"] is not None and ckpt.state["policy"]["kl_coef"] == 0.02
    stop()
    train(TrainConfig(out=str(stopped), resume=True), log=quiet)
    assert_same_weights(stopped / "model.zip", straight / "model.zip")
    a, b = (json.loads((p / "results.json").read_text()) for p in (straight, stopped))
    assert a["after"] == b["after"] and a["tokens"] == b["tokens"] == 96
    # the deliverable: the policy's own weights only (no optimizer moments, no second copy of the model)
    with zipfile.ZipFile(straight / "model.zip") as zf:
        policy = th.load(io.BytesIO(zf.read("policy.pth")), weights_only=False)
        optimizer = th.load(io.BytesIO(zf.read("policy.optimizer.pth")), weights_only=False)
    assert not any(k.startswith("reference_model.") for k in policy) and optimizer["state"] == {}
    n_params = sum(v.numel() for k, v in policy.items() if isinstance(v, th.Tensor))
    assert (straight / "model.zip").stat().st_size < 4.5 * n_params + 1_000_000  # one float32 copy, not three
    assert main(["eval", str(straight), "--examples", "4"]) == 0  # the deliverable loads and evaluates


def test_a_corrupt_checkpoint_is_named_and_the_previous_one_is_used(straight_copy, tmp_path, interrupt_at_step):
    out = tmp_path / "run"
    stop = interrupt_at_step(8 * 3 + 1)  # after the 64-token checkpoint and one more rollout: 96 tokens
    assert train(TrainConfig(**{**COPY, "checkpoint_every": 32}, out=str(out)), log=quiet)["tokens"] == 96
    store = CheckpointStore(out / "checkpoints")
    assert [t for t, _ in store.files()] == [96, 64]  # the last two are kept
    newest = store.files()[0][1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated (a disk fault, a bad copy)
    stop()
    lines: list[str] = []
    result = train(TrainConfig(out=str(out), resume=True), log=lines.append)
    text = "\n".join(lines)
    assert f"checkpoint {newest} is truncated or corrupt" in text and "falling back to the previous checkpoint" in text
    assert "at 64 of 128 tokens" in text  # one interval lost, nothing else
    assert (out / "checkpoints").exists() is False and Path(str(newest) + ".corrupt").exists() is False  # run done
    assert result["after"] == json.loads((straight_copy / "results.json").read_text())["after"]
    assert_same_weights(out / "model.zip", straight_copy / "model.zip")


def test_resume_messages(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--out", str(empty), "--resume"]) == 2
    assert "is empty, so there is no run to resume" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "does not exist" in capsys.readouterr().err
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "config.json").write_text("{}")
    (finished / "results.json").write_text("{}")
    assert main(["train", "--out", str(finished), "--resume"]) == 2
    assert "is finished" in capsys.readouterr().err


def test_ctrl_c_in_the_first_evaluation_leaves_nothing_behind(tmp_path, monkeypatch):
    out = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(train_job, "evaluate_policy_on_split", interrupted)
        lines: list[str] = []
        result = train(TrainConfig(**COPY, out=str(out)), log=lines.append)
    assert result["interrupted"] and not out.exists()
    assert "stopped before training began: nothing saved" in "\n".join(lines)
    # a run killed there (kill -9: the folder stays, with its config and no checkpoint): --resume starts it over
    out.mkdir()
    (out / "config.json").write_text(json.dumps({**COPY, "steps": 32}))
    lines.clear()
    result = train(TrainConfig(out=str(out), resume=True), log=lines.append)
    assert "has no checkpoint yet" in "\n".join(lines) and result["tokens"] == 32


def _cli_args(out: Path) -> list[str]:
    """The command line of the in-process straight run: COPY, and TrainConfig's value of every field where the
    command line's per-env defaults (text_envs_app.algorithms.make_config) would differ."""
    import dataclasses

    from text_envs_app.algorithms import make_config

    wanted, cli = dataclasses.asdict(TrainConfig(**COPY)), dataclasses.asdict(make_config(**COPY))
    args = ["train", "--out", str(out)]
    for key, value in {**COPY, **{k: v for k, v in wanted.items() if cli[k] != v}}.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path, tokens: int, timeout: float = 300) -> None:
    store = CheckpointStore(out / "checkpoints")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(t >= tokens for t, _ in store.files()):
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no checkpoint appeared")


@pytest.mark.expensive
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_sigterm_and_kill_9_then_resume(straight_copy, tmp_path, how):
    """A real process stopped from outside once its 64-token checkpoint exists: SIGTERM saves and says how to
    resume (exit code 130); kill -9 saves nothing, and resume continues from the last checkpoint. Either way the
    resumed run ends with the uninterrupted run's weights."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "import os, sys; os.cpu_count = lambda: 1; from text_envs_app.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *_cli_args(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    _wait_for_checkpoint(proc, out, 64)
    proc.send_signal(getattr(signal, how))
    stdout, stderr = proc.communicate(timeout=300)
    if how == "SIGTERM":
        assert proc.returncode == 130, stderr[-2000:]
        assert "SIGTERM" in stdout and f"text-envs train --out {out} --resume" in stdout
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not list((out / "checkpoints").glob("*.tmp")) or how == "SIGKILL"  # a kill -9 may leave a partial .tmp
    assert CheckpointStore(out / "checkpoints").files()[0][0] >= 64
    result = train(TrainConfig(out=str(out), resume=True), log=quiet)
    assert result["tokens"] == 128 and not (out / "checkpoints").exists()
    assert result["after"] == json.loads((straight_copy / "results.json").read_text())["after"]
    assert_same_weights(out / "model.zip", straight_copy / "model.zip")


def test_capture_leaves_out_per_rollout_storage_and_caches():
    """What a checkpoint's state holds for the default vector env: small, and the RNG and draw positions."""
    import pickle

    cfg = TrainConfig(**COPY)
    venv = make_train_env(cfg)
    model = build_model(cfg, venv, None)
    from text_envs_app.checkpoint import capture_state

    model.learn(32)
    state = capture_state(model)
    assert len(pickle.dumps(state)) < 200_000
    envs = state["envs"]
    vec = next(attrs for name, attrs in envs.values() if name.endswith("VectorEnv"))
    assert {"_rngs", "_draws", "_draw_pos", "_gen_ids", "_t"} <= set(vec) and "_prompt_cache" not in vec
    assert isinstance(vec["_rngs"][0], np.random.Generator)
    assert state["algo"]["num_timesteps"] == 32 and state["algo"]["_last_obs"] is not None


def test_a_policy_saved_without_its_reference_rebuilds_it_from_the_start_model(tmp_path):
    """LLMPolicy(save_reference=False), as `text-envs train` builds it: the frozen reference is left out of the
    state and rebuilt from the start model's folder on load; a different model there is refused, not used."""
    import shutil

    import gymnasium as gym

    from lm_core.backends import load_model
    from sb3_ext import LLMPolicy

    env = gym.make("TextSummarization-v0", difficulty=1)
    src = tmp_path / "start"
    load_model(LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3,
                         tokenizer=env.unwrapped.tokenizer).model).save_pretrained(src)
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=str(src),
                       tokenizer=env.unwrapped.tokenizer, kl_coef=0.1, save_reference=False)
    assert policy.reference_source == str(src)
    with th.no_grad():
        next(policy.model.parameters()).add_(1.0)  # "trained": the policy moved away from its reference
    state = policy.state_dict()
    assert not any(k.startswith("reference_model.") for k in state) and any(k.startswith("model.") for k in state)
    policy.save(tmp_path / "policy.pt")
    loaded = LLMPolicy.load(tmp_path / "policy.pt")
    for (k, a), b in zip(policy.reference_model.state_dict().items(), loaded.reference_model.state_dict().values()):
        assert th.equal(a, b), k
    assert th.equal(next(loaded.model.parameters()), next(policy.model.parameters()))
    # another model at that path: the weight digest tells, and loading says what to do
    other = load_model(str(src))
    with th.no_grad():
        next(other.parameters()).mul_(2.0)
    shutil.rmtree(src)
    other.save_pretrained(src)
    with pytest.raises(Exception, match="is not the model this policy was trained against"):
        LLMPolicy.load(tmp_path / "policy.pt")
    shutil.rmtree(src)
    with pytest.raises(Exception, match="Put the start model back there"):
        LLMPolicy.load(tmp_path / "policy.pt")
    # update_reference(): the reference is no longer the start model, so it is saved again
    policy.update_reference()
    assert policy.reference_source is None and any(k.startswith("reference_model.") for k in policy.state_dict())


def test_an_interrupt_during_an_update_waits_for_its_end_and_a_second_one_stops_at_once():
    """SIGTERM/Ctrl-C while the weights change is deferred to the next rollout boundary (where the state is
    consistent); a second one stops at once; outside an update it stops at once."""
    from text_envs_app.checkpoint import CheckpointCallback, interrupt_guard

    callback = CheckpointCallback(CheckpointStore("/nonexistent"), every=0, log=quiet)
    callback.model = object()  # what init_callback sets
    callback.in_update = True
    with interrupt_guard(callback, log=quiet) as received:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs at the next bytecode boundary
        assert callback.stop_requested == "SIGTERM" and received["signal"] == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the previous handlers are back
    callback = CheckpointCallback(CheckpointStore("/nonexistent"), every=0, log=quiet)
    with interrupt_guard(callback, log=quiet) as received, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
    assert received["signal"] == "SIGTERM"
