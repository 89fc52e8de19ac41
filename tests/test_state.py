"""State as an explicit protocol (text_envs.state.Stateful): each stateful piece's get_state/set_state, the
adapters of Gymnasium's and SB3's internals (text_envs.state, sb3_ext.state) and the run state a checkpoint
gathers through them (text_envs_app.run_state).

The exact-resume runs that rest on these are in tests/test_resume.py and tests/test_critic_free.py.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from text_envs.state import StateError, Stateful, is_stateful
from text_envs_app.config import TrainConfig
from text_envs_app.engines.sb3 import build_model, make_train_env
from text_envs_app.run_state import (
    EnvStateMismatch,
    ProcessRandomState,
    capture_state,
    env_pieces,
    env_states,
    restore_env_states,
    restore_state,
)
from text_envs_app.state_codec import dumps, encode, is_encodable, loads

SUMMARIZATION = dict(env="TextSummarization-v0", n_envs=3, baseline="greedy", max_new_tokens=4, difficulty=1, seed=5)


def as_stored(state: Any) -> Any:
    """``state`` written and read back as a checkpoint stores it (data only)."""
    return loads(dumps({"state": state}))["state"]


def assert_same_state(a: Any, b: Any) -> None:
    """Equal trees, arrays and tensors (compared as the codec stores them)."""
    tree_a, arrays_a, tensors_a = encode(a)
    tree_b, arrays_b, tensors_b = encode(b)
    assert tree_a == tree_b
    assert arrays_a.keys() == arrays_b.keys() and tensors_a.keys() == tensors_b.keys()
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
    for key in tensors_a:
        assert th.equal(tensors_a[key], tensors_b[key]), key


def prompt_baseline(calls: list[int]):
    """A baseline_fn whose text depends on the prompt (its first three ids), counting its calls."""
    def baseline_fn(prompts):
        calls.append(len(prompts))
        return [p[:3].tolist() for p in prompts]
    return baseline_fn


def without_times(infos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Infos without the wall-clock seconds of ``info["episode"]["t"]`` (the one value that may differ)."""
    out = []
    for info in infos:
        info = dict(info)
        if "episode" in info:
            info["episode"] = {k: v for k, v in info["episode"].items() if k != "t"}
        out.append(info)
    return out


def steps(venv: Any, rng: np.random.Generator, n: int) -> list[tuple]:
    """``n`` steps of random tokens, a quarter of them EOS (so the envs' episodes end at different steps)."""
    vocab, eos = venv.action_space.n, venv.get_attr("eos_token_id", [0])[0]
    out = []
    for _ in range(n):
        actions = np.where(rng.random(venv.num_envs) < 0.25, eos, rng.integers(vocab, size=venv.num_envs))
        obs, rewards, dones, infos = venv.step(actions)
        out.append((obs, rewards, dones, without_times(infos)))
    return out


# ---------------------------------------------------------------------------------------------- pieces
def test_a_single_env_restored_from_its_state_writes_on_exactly():
    env = gym.make("TextCopy-v0").unwrapped
    env.reset(seed=4)
    for token in (3, 4):
        env.step(token)
    state = as_stored(env.get_state())
    assert set(state) == set(env.STATE_ATTRIBUTES) and "_prompt_cache" not in state
    resumed = gym.make("TextCopy-v0").unwrapped
    resumed.set_state(state)
    rng = np.random.default_rng(0)
    for _ in range(40):  # through several episodes: the same draws, targets and rewards
        token = int(rng.integers(env.vocab_size))
        a, b = env.step(token), resumed.step(token)
        np.testing.assert_equal(a, b)
        if a[2]:
            np.testing.assert_equal(env.reset(), resumed.reset())


def test_a_state_that_does_not_fit_is_refused_by_name():
    env = gym.make("TextCopy-v0").unwrapped
    state = env.get_state()
    del state["_index_draws"]
    with pytest.raises(StateError, match=r"TextCopyEnv lacks \['_index_draws'\]"):
        env.set_state(state)
    from text_envs.vector import make_vector_env

    four = make_vector_env("TextCopy-v0", 4, group_size=2)
    with pytest.raises(StateError, match="another num_envs or group_size"):
        make_vector_env("TextCopy-v0", 2, group_size=2).set_state(four.get_state())
    with pytest.raises(StateError, match="another num_envs or group_size"):
        make_vector_env("TextCopy-v0", 4, group_size=4).set_state(four.get_state())


def test_states_saved_before_the_protocol_restore():
    """Format /2 checkpoints written before get_state held every plain attribute: each piece takes its keys."""
    env = gym.make("TextCopy-v0").unwrapped
    env.reset(seed=1)
    old = {**env.get_state(), "max_new_tokens": 99, "vocab_size": 1, "_prompt_cache_size": 3}
    resumed = gym.make("TextCopy-v0").unwrapped
    resumed.set_state(old)
    assert resumed.max_new_tokens == env.max_new_tokens and resumed.vocab_size == env.vocab_size
    np.testing.assert_equal(resumed.step(3), env.step(3))
    # an env never reset (the native vector env's single env) had gymnasium's class default generator: not stored
    never_reset = {k: v for k, v in gym.make("TextCopy-v0").unwrapped.get_state().items() if k != "_np_random"}
    assert "_np_random_seed" in never_reset
    gym.make("TextCopy-v0").unwrapped.set_state({k: v for k, v in never_reset.items() if k != "_np_random_seed"})


def test_is_stateful_asks_the_class_not_a_forwarding_wrapper():
    """SB3's VecEnvWrapper answers unknown names with the wrapped env's: a wrapper without state must not pass
    for stateful, nor its inner env be found twice."""
    from sb3_ext import BatchedRewardVecEnvWrapper, make_text_vec_env

    inner = make_text_vec_env("TextSummarization-v0", 2, env_kwargs={"difficulty": 1})
    wrapper = BatchedRewardVecEnvWrapper(inner, "rouge-l")
    assert hasattr(wrapper, "get_state") and not is_stateful(wrapper)
    assert is_stateful(inner) and isinstance(inner, Stateful)
    pieces = list(env_pieces(wrapper))
    assert [path for path, _ in pieces] == ["", ".venv", ".venv.venv", ".venv.venv.single_env"]
    assert env_states(wrapper)[""] == ("BatchedRewardVecEnvWrapper", {})


def test_process_random_state_round_trip():
    saved = as_stored(ProcessRandomState().get_state())
    first = (random.random(), np.random.rand(), th.rand(2))
    ProcessRandomState().set_state(saved)
    second = (random.random(), np.random.rand(), th.rand(2))
    assert first[:2] == second[:2] and th.equal(first[2], second[2])


# ---------------------------------------------------------------------------------------------- env stacks
@pytest.mark.parametrize("vec_env", ["dummy", "native"])
def test_an_env_stack_restored_from_its_state_continues_exactly(vec_env):
    """The training VecEnv with its per-prompt baseline (SB3's DummyVecEnv, Monitor and Gymnasium's wrappers
    through their adapters; or TextVecEnv): a fresh stack given the state steps on with the same observations,
    rewards, dones, infos and baseline texts, and decodes no prompt again that the saved one had decoded (the
    baseline pool's decodings come back)."""
    cfg = TrainConfig(**SUMMARIZATION, vec_env=vec_env)

    def build(calls: list[int]):
        venv = make_train_env(cfg)
        venv.set_attr("baseline_fn", prompt_baseline(calls))
        return venv

    calls_a: list[int] = []
    original = build(calls_a)
    original.reset()
    rng = np.random.default_rng(0)
    (_, _, dones, _), = steps(original, rng, 1)
    assert dones.any() and not dones.all()  # the pool has decoded what the envs still writing have not scored yet
    state = env_states(original)
    assert is_encodable(state, tensors=False)
    kinds = {name for name, _ in state.values()}
    expected = ({"DummyVecEnv", "Monitor", "OrderEnforcing", "SelfCriticalReward", "BaselinePool",
                 "TextSummarizationEnv"} if vec_env == "dummy"
                else {"TextVecEnv", "VectorBaseline", "TextSummarizationVectorEnv", "TextSummarizationEnv"})
    assert expected <= kinds
    calls_b: list[int] = []
    resumed = build(calls_b)
    restore_env_states(resumed, as_stored(state))
    before = len(calls_a)
    rng_copy = copy.deepcopy(rng)
    for a, b in zip(steps(original, rng, 12), steps(resumed, rng_copy, 12)):
        np.testing.assert_equal(a, b)
    assert calls_b == calls_a[before:]  # the same new decodings only: the cache came back


def test_a_stack_built_otherwise_is_refused():
    saved = env_states(make_train_env(TrainConfig(**SUMMARIZATION, vec_env="dummy")))
    other = make_train_env(TrainConfig(**{**SUMMARIZATION, "n_envs": 2}, vec_env="dummy"))
    with pytest.raises(EnvStateMismatch, match="not built like these"):
        restore_env_states(other, saved)


# ---------------------------------------------------------------------------------------------- the run state
@pytest.mark.parametrize("vec_env, algo", [("dummy", "ppo"), ("native", "grpo")])
def test_capture_of_a_restored_run_is_the_capture_it_was_restored_from(vec_env, algo):
    """restore_state then capture_state gives back the same state, every piece of it: the SB3 step state and
    spaces (sb3_ext.state), the policy, the buffer or the group algorithm's open groups, the envs, the RNGs."""
    cfg = TrainConfig(env="TextCopy-v0", n_envs=4, n_steps=3, batch_size=12, n_epochs=1, seed=2, vec_env=vec_env,
                      algo=algo)
    model = build_model(cfg, make_train_env(cfg), None)
    model.learn(24)
    state = as_stored(capture_state(model))
    assert state["algo"]["num_timesteps"] == 24 and state["algo"]["_last_obs"] is not None
    assert (state["algorithm"] is not None) == (algo == "grpo") and (state["buffer"] != {}) == (algo == "ppo")
    resumed = build_model(cfg, make_train_env(cfg), None)
    restore_state(resumed, state, log=lambda *_: None)
    assert_same_state(capture_state(resumed), state)
    if vec_env == "dummy":  # a run resumed with other settings: refused as a checkpoint error, nothing changed
        from text_envs_app import checkpoint

        other_cfg = dataclasses.replace(cfg, n_envs=2, batch_size=6)
        other = build_model(other_cfg, make_train_env(other_cfg), None)
        with pytest.raises(checkpoint.CheckpointError, match="not built like these.*own settings"):
            checkpoint.restore_state(other, state)
        assert other.num_timesteps == 0 and other._last_obs is None


def test_the_policy_state_round_trip():
    cfg = TrainConfig(env="TextCopy-v0", n_envs=2, n_steps=4, batch_size=8, seed=0, algo="nlpo")
    policy = build_model(cfg, make_train_env(cfg), None).policy
    policy.set_state({"kl_coef": 0.25, "updates_since_mask_sync": 3, "mask_sync_due": True})
    state = as_stored(policy.get_state())
    assert state == {"kl_coef": 0.25, "updates_since_mask_sync": 3, "mask_sync_due": True}
    fresh = build_model(cfg, make_train_env(cfg), None).policy
    assert fresh.get_state() != state
    fresh.set_state(state)
    assert fresh.get_state() == state and fresh.kl_controller.value == 0.25


def test_the_guide_example_runs_as_written(tmp_path):
    """docs/examples/env_state.py, the example of docs/guides/checkpoints.md, in a fresh interpreter."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, str(root / "docs" / "examples" / "env_state.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "True"  # the restored env wrote on as the saved one did
