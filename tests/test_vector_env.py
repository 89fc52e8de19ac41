"""The natively vectorized env against N single envs: every array and info, step by step, on the same seeds."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from helpers import flaky_reward

import text_envs  # noqa: F401  (registers the ids)
from text_envs.errors import TextEnvsError
from text_envs.vector import TextGenerationVectorEnv, make_vector_env
from text_envs.wrappers import BaselinePool, SelfCriticalReward
from text_envs.wrappers.vector import SelfCriticalVectorReward

TASKS = {  # small budgets so that budget ends, EOS ends and auto-resets all happen within a few hundred steps
    "TextSummarization-v0": dict(max_new_tokens=6, difficulty=1),
    "DialogueGeneration-v0": dict(max_new_tokens=5, difficulty=2),
    "MachineTranslation-v0": dict(max_new_tokens=7, difficulty=1),
}
FINAL_KEYS = ("prompt_text", "generated_text", "references", "finish_reason", "budget_exhausted", "generated_length",
              "example_index", "reward", "metrics", "baseline_text", "baseline_reward", "TimeLimit.truncated")


def fake_baseline(eos: int, start: int = 1):
    """A deterministic baseline decoding that depends on the prompt only: a few of its own tokens, then EOS and
    junk after it (which the baseline must drop)."""

    def fn(prompts: list[np.ndarray]) -> list[list[int]]:
        return [p[start: start + 1 + len(p) % 5].tolist() + [eos, 7, 7] for p in prompts]

    return fn


class Sampler:
    """Random actions that write real words (tokens of the prompt, so rewards are often non-zero), junk, and
    EOS often enough that both EOS ends and budget ends happen."""

    def __init__(self, seed: int, eos: int, vocab: int, p_eos: float = 0.15) -> None:
        self.rng, self.eos, self.vocab, self.p_eos = np.random.default_rng(seed), eos, vocab, p_eos

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        n, P = obs["prompt_ids"].shape
        cols = P - 1 - self.rng.integers(0, np.maximum(obs["prompt_mask"].sum(1), 1))
        actions = obs["prompt_ids"][np.arange(n), cols]
        junk = self.rng.random(n) < 0.2
        actions[junk] = self.rng.integers(0, self.vocab, size=junk.sum())
        actions[self.rng.random(n) < self.p_eos] = self.eos
        return actions.astype(np.int64)


def assert_same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a!r} != {b!r}"
        if a.dtype == object:
            for k, (x, y) in enumerate(zip(a, b)):
                assert_same(x, y, f"{where}[{k}]")
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def sb3_pair(env_id: str, n: int, seed: int, baseline: bool, kwargs: dict[str, Any]):
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_ext.vec_env import make_text_vec_env

    dummy = make_vec_env(
        f"text_envs:{env_id}", n_envs=n, seed=seed, env_kwargs=kwargs,
        monitor_kwargs={"info_keywords": ("generated_length",)},
        wrapper_class=(lambda env, pool: SelfCriticalReward(env, pool=pool)) if baseline else None,
        wrapper_kwargs={"pool": BaselinePool()} if baseline else None,
    )
    native = make_text_vec_env(env_id, n, seed=seed, env_kwargs=kwargs, baseline=baseline)
    return dummy, native


@pytest.mark.parametrize("baseline", [False, True], ids=["reward", "baseline"])
@pytest.mark.parametrize("env_id", list(TASKS))
def test_sb3_native_matches_dummy_vec_env(env_id: str, baseline: bool) -> None:
    n, steps = 5, 240
    dummy, native = sb3_pair(env_id, n, seed=3, baseline=baseline, kwargs=TASKS[env_id])
    base = dummy.get_attr("unwrapped", [0])[0]
    assert dummy.env_is_wrapped(SelfCriticalReward) == native.env_is_wrapped(SelfCriticalReward) == [baseline] * n
    if baseline:
        for venv in (dummy, native):
            venv.set_attr("baseline_fn", fake_baseline(base.eos_token_id))
    assert native.get_attr("tokenizer", [0])[0] is not None
    assert native.observation_space == dummy.observation_space and native.action_space == dummy.action_space
    o1, o2 = dummy.reset(), native.reset()
    assert_same(o1, o2, "reset obs")
    assert_same(dummy.reset_infos, native.reset_infos, "reset infos")
    sample = Sampler(0, base.eos_token_id, base.vocab_size)
    ended = {"eos": 0, "budget_exhausted": 0}
    nonzero = 0
    for step in range(steps):
        if baseline and step == steps // 2:  # a new baseline function: both drop their cached baselines
            for venv in (dummy, native):
                venv.set_attr("baseline_fn", fake_baseline(base.eos_token_id, start=3))
        actions = sample(o1)
        o1, r1, d1, i1 = dummy.step(actions)
        o2, r2, d2, i2 = native.step(actions)
        assert_same(o1, o2, f"step {step} obs")
        assert r1.dtype == r2.dtype == np.float32 and d1.dtype == d2.dtype
        np.testing.assert_array_equal(r1, r2, err_msg=f"step {step} rewards")
        np.testing.assert_array_equal(d1, d2, err_msg=f"step {step} dones")
        assert_same(dummy.reset_infos, native.reset_infos, f"step {step} reset infos")
        for e, (a, b) in enumerate(zip(i1, i2)):
            assert set(a) == set(b), f"step {step} env {e}: info keys {sorted(a)} != {sorted(b)}"
            for key in FINAL_KEYS:
                if key in a:
                    assert_same(a[key], b[key], f"step {step} env {e} info[{key!r}]")
            if d1[e]:
                assert_same(a["terminal_observation"], b["terminal_observation"], f"step {step} env {e} final obs")
                ea, eb = dict(a["episode"]), dict(b["episode"])
                ea.pop("t"), eb.pop("t")
                assert_same(ea, eb, f"step {step} env {e} episode")
                ended[a["finish_reason"]] += 1
                nonzero += a["reward"] != 0
    assert min(ended.values()) >= 10, ended  # both kinds of episode end, many auto-resets
    assert nonzero >= 5  # rewards that are not all zero were compared
    if baseline:
        assert native.baseline.calls >= 1
    dummy.close(), native.close()


def test_sb3_native_copy_task_per_token_rewards() -> None:
    dummy, native = sb3_pair("TextCopy-v0", 4, seed=0, baseline=False, kwargs={"length": 3})
    o1, o2 = dummy.reset(), native.reset()
    rng = np.random.default_rng(1)
    total = 0.0
    for step in range(200):
        actions = rng.integers(0, 7, size=4)
        o1, r1, d1, i1 = dummy.step(actions)
        o2, r2, d2, i2 = native.step(actions)
        assert_same(o1, o2, f"step {step}")
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(d1, d2)
        for a, b in zip(i1, i2):
            for key in ("metrics", "reward", "generated_text", "finish_reason"):
                if key in a:
                    assert_same(a[key], b[key], key)
        total += float(r1.sum())
    assert total > 0


def compare_gym(env_id: str, mode: AutoresetMode, kwargs: dict[str, Any], baseline: bool = False, steps: int = 150):
    n = 4
    fn = None
    sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode},
                        **kwargs)
    native = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", autoreset_mode=mode, **kwargs)
    assert isinstance(native, TextGenerationVectorEnv) and native.metadata["autoreset_mode"] == mode
    if baseline:
        fn = fake_baseline(native.eos_token_id)
        sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode},
                            wrappers=[lambda e: SelfCriticalReward(e, baseline_fn=fn)], **kwargs)
        native = SelfCriticalVectorReward(native, baseline_fn=fn)
    (o1, i1), (o2, i2) = sync.reset(seed=11), native.reset(seed=11)
    assert_same(o1, o2, "reset obs")
    assert_same(i1, i2, "reset info")
    sample = Sampler(5, native.unwrapped.eos_token_id, native.unwrapped.vocab_size, p_eos=0.2)
    ends = 0
    for step in range(steps):
        actions = sample(o1)
        o1, r1, t1, u1, i1 = sync.step(actions)
        o2, r2, t2, u2, i2 = native.step(actions)
        for what, a, b in (("obs", o1, o2), ("rewards", r1, r2), ("terminated", t1, t2), ("truncated", u1, u2),
                           ("infos", i1, i2)):
            assert_same(a, b, f"{mode} step {step} {what}")
        ends += int(t1.sum())
    assert ends >= 20


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_gym_make_vec_native_matches_sync_vector_env(mode: AutoresetMode) -> None:
    compare_gym("TextSummarization-v0", mode, TASKS["TextSummarization-v0"])
    compare_gym("TextCopy-v0", mode, {"length": 2})


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_gym_self_critical_vector_reward_matches_wrapped_single_envs(mode: AutoresetMode) -> None:
    compare_gym("MachineTranslation-v0", mode, TASKS["MachineTranslation-v0"], baseline=True)


def test_dense_reward_shaping_matches_single_envs() -> None:
    # every step scores each row's prefix: the native env does it in one batch per step
    compare_gym("DialogueGeneration-v0", AutoresetMode.SAME_STEP,
                {**TASKS["DialogueGeneration-v0"], "dense_reward": True, "shaping_gamma": 0.9}, steps=80)


def test_make_vec_defaults_to_the_native_env_and_checks_its_inputs() -> None:
    venv = gym.make_vec("TextSummarization-v0", num_envs=3, max_new_tokens=4)  # the vector entry point by default
    assert type(venv).__name__ == "TextSummarizationVectorEnv"
    with pytest.raises(TextEnvsError, match="before reset"):
        venv.step(np.zeros(3, dtype=np.int64))
    obs, info = venv.reset(seed=0)
    assert obs["prompt_ids"].shape == (3, 256) and info["_example_index"].all()
    with pytest.raises(TextEnvsError, match=r"shape \(3,\)"):
        venv.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(TextEnvsError, match="outside the vocabulary"):
        venv.step(np.full(3, 10**9))

    # DISABLED: the caller resets the finished rows
    venv = make_vector_env("TextSummarization-v0", 2, autoreset_mode="Disabled", max_new_tokens=2)
    venv.reset(seed=1)
    eos = venv.eos_token_id
    _, _, terminated, _, _ = venv.step(np.array([eos, 5]))
    assert terminated.tolist() == [True, False]
    with pytest.raises(TextEnvsError, match="reset_mask"):
        venv.step(np.array([5, 5]))
    obs, info = venv.reset(options={"reset_mask": terminated})
    assert info["_example_index"].tolist() == [True, False] and obs["generated_mask"].sum(1).tolist() == [0, 1]
    venv.step(np.array([5, 5]))


def test_render_ansi_shows_each_row() -> None:
    venv = gym.make_vec("TextCopy-v0", num_envs=2, render_mode="ansi")
    venv.reset(seed=0)
    venv.step(np.array([3, 4]))
    frames = venv.render()
    assert len(frames) == 2 and all(f.startswith("Prompt    : ") and "Generated : " in f for f in frames)
    with pytest.raises(TextEnvsError, match="renders text only"):
        gym.make_vec("TextCopy-v0", num_envs=2, vectorization_mode="vector_entry_point", render_mode="rgb_array")


def test_native_env_refuses_tasks_it_cannot_batch() -> None:
    from text_envs.tasks.summarization import TextSummarizationEnv

    class PerToken(TextSummarizationEnv):
        def token_reward(self, t: int, token: int) -> float:
            return 0.1

    with pytest.raises(TextEnvsError, match="token_reward"):
        make_vector_env(PerToken(max_new_tokens=4), 2)


def test_text_vec_env_needs_a_baseline_fn_and_same_step_mode() -> None:
    from sb3_ext.vec_env import TextVecEnv, make_text_vec_env

    with pytest.raises(TextEnvsError, match="SAME_STEP"):
        TextVecEnv(make_vector_env("TextSummarization-v0", 2))
    venv = make_text_vec_env("TextSummarization-v0", 2, seed=0, env_kwargs={"max_new_tokens": 2}, baseline=True)
    venv.reset()
    eos = venv.get_attr("eos_token_id")[0]
    with pytest.raises(TextEnvsError, match="baseline_fn"):
        venv.step(np.array([eos, eos]))


def test_train_env_is_native_by_default_with_a_dummy_fallback() -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_ext.vec_env import TextVecEnv
    from text_envs_app.config import TrainConfig
    from text_envs_app.engines.sb3 import make_train_env

    cfg = TrainConfig(n_envs=3, max_new_tokens=4)
    assert cfg.vec_env == "native"
    native = make_train_env(cfg)
    dummy = make_train_env(TrainConfig(n_envs=3, max_new_tokens=4, vec_env="dummy"))
    assert isinstance(native, TextVecEnv) and isinstance(dummy, DummyVecEnv)
    assert native.env_is_wrapped(SelfCriticalReward) == dummy.env_is_wrapped(SelfCriticalReward) == [True] * 3
    assert_same(native.reset(), dummy.reset(), "first observation")  # the same seeds, the same prompts
    copy = make_train_env(TrainConfig(env="TextCopy-v0", n_envs=2))  # baseline "auto": none on a per-token task
    assert copy.env_is_wrapped(SelfCriticalReward) == [False, False]
    with pytest.raises(TextEnvsError, match="vec env"):
        TrainConfig(vec_env="ray").validate()


def test_the_native_vector_env_names_the_examples_of_a_failing_reward():
    venv = make_vector_env("TextSummarization-v0", 2, difficulty=1, max_new_tokens=2, reward=flaky_reward(2))
    venv.reset(seed=0)
    with pytest.raises(TextEnvsError) as info:
        for _ in range(6):
            venv.step(np.array([5, 5]))
    message = str(info.value)
    assert "ZeroDivisionError: division by zero" in message
    assert str([int(i) for i in venv.unwrapped._index]) in message or "example(s) [" in message
