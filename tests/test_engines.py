"""The one training skeleton (:func:`text_envs_app.train.train_unlocked`) and the engine protocol
(:class:`text_envs_app.engines.base.Engine`).

The skeleton is driven with a recording fake engine and a fake evaluation (no model is built): the order of the
engine's steps, the files the skeleton writes, what it returns when the engine stops or fails, a resume, and a
Ctrl-C before training. The real engines (SB3, RLlib) run end to end in tests/test_cli*.py, test_resume.py,
test_checkpoint.py and test_cli_rllib.py.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from text_envs.errors import TextEnvsError
from text_envs_app import train as train_job
from text_envs_app.config import TrainConfig
from text_envs_app.engines.base import Engine, Learned, Report
from text_envs_app.run_folder import RunFolder

SMALL = dict(env="TextCopy-v0", steps=64, n_envs=2, n_steps=8, eval_examples=4, seed=3)
GENERATIONS = [{"example_index": 0, "prompt": "a b", "prediction": "a b", "references": ["a b"]}]


class FakeStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.removed = False

    def files(self) -> list[tuple[int, Path]]:
        return [(16, self.folder / "tokens-16")]

    def describe_latest(self) -> str:
        return "the last checkpoint is intact"

    def remove_all(self) -> None:
        self.removed = True


class FakeEngine:
    """Records each call; ``fail`` names a step that raises (``KeyboardInterrupt`` or :class:`TextEnvsError`),
    ``stop`` makes ``learn`` report a signal."""

    name = "fake"
    places_frontier = False

    def __init__(self, folder: RunFolder, calls: list[str], fail: dict[str, BaseException] | None = None,
                 stop: bool = False, has_checkpoint: bool = True) -> None:
        self.folder, self.calls, self.fail, self.stop = folder, calls, fail or {}, stop
        self.has_checkpoint = has_checkpoint
        self.store = FakeStore(folder.path / "checkpoints")
        self.cfg: TrainConfig | None = None

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail[name]

    def find_checkpoint(self, log) -> bool:
        self._step("find_checkpoint")
        return self.has_checkpoint

    def open(self, cfg: TrainConfig, log) -> TrainConfig:
        self._step("open")
        self.cfg = cfg
        return cfg

    def build(self) -> None:
        self._step("build")

    def restore(self, log) -> str:
        self._step("restore")
        return "resuming from the fake checkpoint"

    def policy_for_eval(self) -> Any:
        self._step("policy_for_eval")
        return "policy"

    def start_model(self) -> Any:
        self._step("start_model")
        return "start model"

    def learn(self, log) -> Learned:
        self._step("learn")
        if self.stop:
            return Learned(16, 0.0, {"interrupted": True, "signal": "SIGTERM", "out": str(self.folder.path),
                                     "tokens": 16})
        return Learned(64, 1.5)

    def extra_columns(self, train_seconds: float, log) -> dict[str, dict[str, float]]:
        self._step("extra_columns")
        return {}

    def save(self, out: Path) -> None:
        self._step("save")
        (out / "fake-model.bin").write_bytes(b"weights")

    def report(self) -> Report:
        self._step("report")
        return Report(column="fake", title="FAKE", episodes=[(32, 0.1), (64, 0.2)], results={"iterations": 2},
                      deliverables=("fake-model.bin",))

    def close(self) -> None:
        self.calls.append("close")


def _steps(calls: list[str]) -> list[str]:
    """The engine's calls less the accessors (``policy_for_eval``, ``start_model``), which any step may call."""
    return [c for c in calls if c not in ("policy_for_eval", "start_model")]


@pytest.fixture
def fake(monkeypatch):
    """Run the skeleton on a :class:`FakeEngine` with a fake evaluation; yields the options of the next engine and
    the records: ``calls`` (the engine's), ``evaluations`` (the ``reference`` of each)."""
    records: dict[str, Any] = {"calls": [], "evaluations": [], "options": {}}

    def make_engine(name: str, folder: RunFolder) -> FakeEngine:
        return FakeEngine(folder, records["calls"], **records["options"])

    def evaluate(policy, cfg, reference=None, progress=False):
        records["evaluations"].append(reference)
        table = {"reward": 0.5 if reference is not None else 0.25, "sampled_reward": 0.5, "gen_len": 4.0}
        if reference is not None:
            table.update(kl=0.1, sampled_kl=0.2, start_ppl=2.0)
        return table, list(GENERATIONS)

    monkeypatch.setattr(train_job, "make_engine", make_engine)
    monkeypatch.setattr(train_job, "evaluate_policy_on_split", evaluate)
    monkeypatch.setattr(train_job, "start_model_ppl", lambda lm, cfg, generations: 3.0)
    return records


def test_the_skeleton_runs_the_engine_steps_in_order_and_writes_the_run_folder(tmp_path, fake):
    out = tmp_path / "run"
    lines: list[str] = []
    result = train_job.train_unlocked(TrainConfig(**SMALL, out=str(out)), log=lines.append)
    assert _steps(fake["calls"]) == ["open", "build", "learn", "extra_columns", "report", "save", "close"]
    learn = fake["calls"].index("learn")
    assert "policy_for_eval" in fake["calls"][:learn] and "policy_for_eval" in fake["calls"][learn:]
    assert fake["evaluations"][0] is None and fake["evaluations"][-1] == "start model"  # start, then trained vs it
    saved = json.loads((out / "results.json").read_text())
    assert saved == result
    assert saved["before"] == {"reward": 0.25, "sampled_reward": 0.5, "gen_len": 4.0, "kl": 0.0, "sampled_kl": 0.0,
                               "start_ppl": 3.0}
    assert saved["after"]["kl"] == 0.1 and saved["tokens"] == 64 and saved["train_seconds"] == 1.5
    assert saved["iterations"] == 2 and saved["config"]["steps"] == 64  # the engine's entries, the config
    for name in ("config.json", "state.json", "results.md", "samples.md", "learning_curve.png", "fake-model.bin"):
        assert (out / name).is_file(), name
    assert "| metric | start | fake |" in (out / "results.md").read_text()
    assert json.loads((out / "state.json").read_text())["start_samples"] == [{"example_index": 0,
                                                                              "prediction": "a b"}]
    assert lines[-1] == (f"wrote {out}: fake-model.bin, results.md, results.json, samples.md, learning_curve.png, "
                         "tb/")


def test_a_stopped_engine_returns_its_result_and_the_engine_is_closed(tmp_path, fake):
    fake["options"] = {"stop": True}
    out = tmp_path / "run"
    result = train_job.train_unlocked(TrainConfig(**SMALL, out=str(out)), log=lambda _: None)
    assert result == {"interrupted": True, "signal": "SIGTERM", "out": str(out), "tokens": 16}
    assert fake["calls"][-2:] == ["learn", "close"]
    assert (out / "state.json").is_file() and not (out / "results.json").exists()


def test_an_engine_error_propagates_after_the_engine_is_closed(tmp_path, fake):
    fake["options"] = {"fail": {"learn": TextEnvsError("a reward returned NaN")}}
    with pytest.raises(TextEnvsError, match="a reward returned NaN"):
        train_job.train_unlocked(TrainConfig(**SMALL, out=str(tmp_path / "run")), log=lambda _: None)
    assert fake["calls"][-2:] == ["learn", "close"]


def test_ctrl_c_while_building_removes_the_new_folder(tmp_path, fake):
    fake["options"] = {"fail": {"build": KeyboardInterrupt()}}
    out = tmp_path / "run"
    lines: list[str] = []
    result = train_job.train_unlocked(TrainConfig(**SMALL, out=str(out)), log=lines.append)
    assert result == {"interrupted": True, "signal": "SIGINT", "out": str(out)}
    assert "SIGINT: stopped before training began: nothing saved (removed" in lines[-1]
    assert not out.exists() and fake["calls"] == ["open", "build", "close"]


def test_a_resume_restores_instead_of_building_and_keeps_the_first_evaluation(tmp_path, fake):
    out = tmp_path / "run"
    fake["options"] = {"stop": True}
    train_job.train_unlocked(TrainConfig(**SMALL, out=str(out)), log=lambda _: None)
    fake["calls"].clear()
    fake["evaluations"].clear()
    fake["options"] = {}
    lines: list[str] = []
    result = train_job.train_unlocked(TrainConfig(out=str(out), resume=True), log=lines.append)
    assert _steps(fake["calls"]) == ["find_checkpoint", "open", "restore", "learn", "extra_columns", "report",
                                     "save", "close"]
    assert "resuming from the fake checkpoint" in lines
    assert None not in fake["evaluations"]  # only the trained model's: the start model's is in state.json
    assert result["before"]["start_ppl"] == 3.0 and result["config"]["resume"] is True
    assert result["config"]["env"] == "TextCopy-v0"  # the run's saved settings, not the resume command's defaults


def test_a_resume_without_a_checkpoint_starts_over_with_the_saved_settings(tmp_path, fake):
    out = tmp_path / "run"
    fake["options"] = {"stop": True}
    train_job.train_unlocked(TrainConfig(**SMALL, out=str(out)), log=lambda _: None)
    fake["calls"].clear()
    fake["options"] = {"has_checkpoint": False}
    lines: list[str] = []
    result = train_job.train_unlocked(TrainConfig(out=str(out), resume=True), log=lines.append)
    assert lines[0].startswith(f"--resume: {out} has no checkpoint yet")
    assert _steps(fake["calls"])[:3] == ["find_checkpoint", "open", "build"]
    assert result["config"]["resume"] is False and result["config"]["env"] == "TextCopy-v0"


# ---------------------------------------------------------------------------------------------- the protocol
def _protocol_methods() -> list[str]:
    return [name for name, value in vars(Engine).items() if inspect.isfunction(value) and not name.startswith("_")]


@pytest.mark.parametrize("engine", ["sb3", "rllib"])
def test_each_engine_implements_the_protocol_with_its_signatures(tmp_path, engine):
    from text_envs_app.engines.rllib import RLlibEngine
    from text_envs_app.engines.sb3 import SB3Engine

    cls = {"sb3": SB3Engine, "rllib": RLlibEngine}[engine]
    instance = cls(RunFolder(tmp_path / "run"))  # stores only: nothing is made on disk
    assert isinstance(instance, Engine) and instance.name == engine and not (tmp_path / "run").exists()
    assert {"find_checkpoint", "open", "build", "restore", "learn", "save", "close"} <= set(_protocol_methods())
    for name in _protocol_methods():
        expected = list(inspect.signature(getattr(Engine, name)).parameters)
        assert list(inspect.signature(getattr(cls, name)).parameters) == expected, name


def test_the_old_rllib_module_warns_and_serves_the_new_objects():
    from text_envs_app import rllib_train
    from text_envs_app.engines import rllib

    with pytest.warns(FutureWarning, match=r"rllib_train\.rllib_config moved to text_envs_app\.engines\.rllib"):
        assert rllib_train.rllib_config is rllib.rllib_config
    with pytest.warns(FutureWarning, match=r"rllib_train\.train_rllib moved to text_envs_app\.train\.train_unlocked"):
        assert rllib_train.train_rllib is train_job.train_unlocked
