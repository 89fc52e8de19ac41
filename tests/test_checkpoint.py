"""Checkpoints under faults in the middle of a run (text_envs_app.checkpoint): each fault gets a clear message and
leaves the last checkpoint intact.

A reward that raises on the k-th episode, a SubprocVecEnv worker that dies, a full disk while saving, an unreadable
data file, an interrupted evaluation. (The checkpoints' exact resume: tests/test_resume.py; their safety as data:
tests/test_checkpoint_safety.py.)
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import gymnasium as gym
import pytest

import text_envs
from text_envs.errors import TextEnvsError
from text_envs_app import checkpoint as checkpoint_module
from text_envs_app import train as train_job
from text_envs_app.checkpoint import CheckpointError, CheckpointStore
from text_envs_app.config import TrainConfig
from text_envs_app.train import train

COPY = dict(env="TextCopy-v0", steps=64, n_envs=2, n_steps=8, batch_size=16, eval_examples=4, checkpoint_every=16,
            seed=1)
pytestmark = pytest.mark.usefixtures("one_train_thread")  # tests/conftest.py


def quiet(*_: object) -> None:
    pass


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.ckpt"))}


def assert_intact(out: Path, tokens: int) -> None:
    """The newest checkpoint holds ``tokens``, reads whole, and nothing half-written lies beside it."""
    store = CheckpointStore(out / "checkpoints")
    assert store.files()[0][0] == tokens
    assert store.read(store.files()[0][1]).tokens == tokens
    assert not list((out / "checkpoints").glob("*.tmp"))


# ---------------------------------------------------------------------------------------------- a reward fault
def test_a_reward_fault_mid_training_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """The reward breaks in the rollout after the 16-token checkpoint: the run stops with the example named,
    says which checkpoint is intact, and --resume (with the reward fixed) continues from it."""
    state = {"broken": False}

    def reward(predictions, references):
        if state["broken"]:
            raise RuntimeError("the scoring service is down")
        return [float(len(p) > 0) for p in predictions]

    text_envs.register_reward("test-faults-flaky", lambda **_: text_envs.make_reward(reward), overwrite=True)
    original_save = CheckpointStore.save

    def save_then_break(self, model, st):
        path = original_save(self, model, st)
        state["broken"] = st["num_timesteps"] >= 16
        return path

    monkeypatch.setattr(CheckpointStore, "save", save_then_break)
    out = tmp_path / "run"
    cfg = dict(steps=64, n_envs=2, n_steps=8, batch_size=16, eval_examples=2, difficulty=1, baseline="none",
               kl_coef=0.0, max_new_tokens=8, checkpoint_every=16, reward="test-faults-flaky")
    with pytest.raises(TextEnvsError) as info:
        train(TrainConfig(**cfg, out=str(out)), log=quiet)
    message = str(info.value)
    assert "RuntimeError: the scoring service is down" in message and "example" in message
    assert "training stopped after" in message and "(16 tokens), is intact" in message
    assert f"continue with: text-envs train --out {out} --resume" in message
    assert_intact(out, 16)
    state["broken"], before = False, digests(out / "checkpoints")
    monkeypatch.setattr(CheckpointStore, "save", original_save)
    assert before and train(TrainConfig(out=str(out), resume=True), log=quiet)["tokens"] == 64


# ---------------------------------------------------------------------------------------------- processes
@pytest.mark.expensive  # starts worker processes (forkserver, SB3's default), each importing the envs
@pytest.mark.timeout(900)  # closing a SubprocVecEnv that waits on a dead worker blocks forever: fail, do not hang
def test_a_dead_subprocess_worker_is_reported_and_the_checkpoint_kept(tmp_path, monkeypatch):
    """One SubprocVecEnv worker exits (as an out-of-memory kill would) in the rollout after a checkpoint."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import SubprocVecEnv

    def make(rank: int):
        def build():
            env = Monitor(gym.make("text_envs:TextCopy-v0"), info_keywords=("generated_length",))
            if rank == 1:
                class DiesAtStep(gym.Wrapper):
                    steps = 0

                    def step(self, action):
                        DiesAtStep.steps += 1
                        if DiesAtStep.steps == 12:  # rollout 1 (steps 9-16), after the 16-token checkpoint
                            os._exit(1)
                        return self.env.step(action)

                env = DiesAtStep(env)
            env.reset(seed=rank)
            return env

        return build

    def subproc_env(cfg):
        venv = SubprocVecEnv([make(i) for i in range(cfg.n_envs)], start_method="forkserver")  # SB3's default
        venv.seed(cfg.seed)
        return venv

    monkeypatch.setattr("text_envs_app.engines.sb3.make_train_env", subproc_env)
    out = tmp_path / "run"
    with pytest.raises(TextEnvsError) as info:
        train(TrainConfig(**COPY, out=str(out)), log=quiet)
    message = str(info.value)
    assert "an env worker process died (EOFError: its pipe closed)" in message and "after 22 tokens" in message
    assert "(16 tokens), is intact" in message and "--resume" in message
    assert_intact(out, 16)


# ---------------------------------------------------------------------------------------------- disk
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    original = zipfile.ZipFile.writestr
    written = {"manifests": 0}

    def writestr(self, name, data, *args, **kwargs):
        if name == "state.json" and written["manifests"] >= 2:  # the third checkpoint (32 tokens) fails
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if name == "manifest.json":
            written["manifests"] += 1
        return original(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", writestr)
    out = tmp_path / "run"
    with pytest.raises(CheckpointError) as info:
        train(TrainConfig(**COPY, out=str(out)), log=quiet)
    message = str(info.value)
    assert "could not write checkpoint" in message
    assert "tokens-000000000032.ckpt at 32 tokens (the disk is full)" in message
    assert "(16 tokens), is intact" in message and "Free space, then continue with: text-envs train" in message
    assert_intact(out, 16)
    monkeypatch.setattr(zipfile.ZipFile, "writestr", original)
    # the disk fills up again while the finished run writes its model: training is kept, and --resume writes it
    real_write = checkpoint_module.atomic_write

    def full_for_the_model(path, write):
        if path.name == "model.zip":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, write)

    monkeypatch.setattr(checkpoint_module, "atomic_write", full_for_the_model)
    with pytest.raises(TextEnvsError, match=r"could not write the results .* \(the disk is full\): training is "
                                            r"complete and saved in .*tokens-000000000064.ckpt"):
        train(TrainConfig(out=str(out), resume=True), log=quiet)
    assert_intact(out, 64)
    monkeypatch.setattr(checkpoint_module, "atomic_write", real_write)
    assert train(TrainConfig(out=str(out), resume=True), log=quiet)["tokens"] == 64
    assert (out / "model.zip").exists() and not (out / "checkpoints").exists()


# ---------------------------------------------------------------------------------------------- data
def test_an_unreadable_data_file_at_resume_is_named_and_the_checkpoint_kept(tmp_path, interrupt_at_step,
                                                                            xsum_sample):
    data = tmp_path / "news.jsonl"
    shutil.copy(xsum_sample, data)
    out = tmp_path / "run"
    cfg = dict(env="TextSummarization-v0", dataset=str(data), steps=48, n_envs=2, n_steps=8, batch_size=16,
               eval_examples=1, baseline="none", max_new_tokens=8, checkpoint_every=16)
    stop = interrupt_at_step(11)  # Ctrl-C in the rollout after the 16-token checkpoint
    assert train(TrainConfig(**cfg, out=str(out)), log=quiet)["tokens"] == 16
    stop()
    before = digests(out / "checkpoints")
    good = data.read_bytes()
    data.write_bytes(b"\xff\xfe" + good[:100])  # overwritten by another program: not UTF-8 any more
    with pytest.raises(TextEnvsError) as info:
        train(TrainConfig(out=str(out), resume=True), log=quiet)
    assert str(data) in str(info.value) and "UTF-8" in str(info.value)
    assert digests(out / "checkpoints") == before
    data.write_bytes(good)
    assert train(TrainConfig(out=str(out), resume=True), log=quiet)["tokens"] == 48


# ---------------------------------------------------------------------------------------------- evaluation
def test_an_interrupted_final_evaluation_loses_no_training(tmp_path, monkeypatch):
    real, calls = train_job.evaluate_policy_on_split, [0]

    def evaluate(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:  # the trained model's evaluation
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_job, "evaluate_policy_on_split", evaluate)
    out = tmp_path / "run"
    lines: list[str] = []
    result = train(TrainConfig(**COPY, out=str(out)), log=lines.append)
    assert result["interrupted"] and result["tokens"] == 64
    text = "\n".join(lines)
    assert "SIGINT during the final evaluation: training is complete and saved in" in text
    assert f"run text-envs train --out {out} --resume to evaluate it" in text
    assert_intact(out, 64)
    lines.clear()
    result = train(TrainConfig(out=str(out), resume=True), log=lines.append)
    assert result["tokens"] == 64 and (out / "results.json").exists()
    assert not any(line.startswith("training") for line in lines)  # nothing trained again
    assert json.loads((out / "results.json").read_text())["tokens"] == 64
