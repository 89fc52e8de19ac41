"""Group sampling in the native vector env: k rows per example, in lockstep, seeded, the same in every mode."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import text_envs  # noqa: F401  (registers the ids)
from text_envs.errors import TextEnvsError
from text_envs.vector import make_vector_env

ENV_ID = "TextSummarization-v0"
KWARGS = dict(max_new_tokens=6, difficulty=1)
N, K = 8, 4


def random_actions(rng: np.random.Generator, venv, p_eos: float = 0.3) -> np.ndarray:
    actions = rng.integers(5, venv.vocab_size, size=venv.num_envs)
    actions[rng.random(venv.num_envs) < p_eos] = venv.eos_token_id
    return actions


def run(mode: AutoresetMode, seed: int = 3, steps: int = 60, n: int = N, k: int = K):
    """Step a grouped env with seeded random actions; return each row's (example, generated text) sequence and
    check the lockstep invariants at every step."""
    venv = make_vector_env(ENV_ID, n, autoreset_mode=mode, group_size=k, **KWARGS)
    obs, info = venv.reset(seed=seed)
    rng = np.random.default_rng(0)
    episodes: list[list[tuple[int, str]]] = [[] for _ in range(n)]
    ended = np.zeros(n, dtype=bool)  # DISABLED mode: rows to reset by hand
    finished = np.zeros(n, dtype=bool)  # NEXT_STEP / DISABLED: rows that still show their final observation
    for _ in range(steps):
        idle = venv.idle_rows.copy()
        for g in range(n // k):
            rows = slice(g * k, (g + 1) * k)
            for shown in (~idle[rows] & ~finished[rows], idle[rows] & ~finished[rows]):  # writing; waiting
                index = venv.example_indices[rows][shown]
                assert (index == index[:1]).all(), f"group {g} shows examples {index}"
                prompts = obs["prompt_ids"][rows][shown]
                np.testing.assert_array_equal(prompts, np.repeat(prompts[:1], len(prompts), 0))
            writing = ~idle[rows] & ~finished[rows]  # rows that started together and advance together
            lengths = obs["generated_mask"][rows][writing].sum(1)
            assert (lengths == lengths[:1]).all(), f"group {g}'s writing rows are at lengths {lengths}"
        if ended.any():
            obs, _ = venv.reset(options={"reset_mask": ended})
            ended = np.zeros(n, dtype=bool)
            finished[:] = False
            continue
        obs, rewards, terminated, _, infos = venv.step(random_actions(rng, venv))
        assert not (terminated & idle).any(), "a waiting row ended an episode"
        assert (rewards[idle] == 0).all()
        if mode == AutoresetMode.DISABLED:
            ended = terminated.copy()
        finished = terminated & (mode != AutoresetMode.SAME_STEP)
        finals = infos.get("final_info", infos)
        for row in np.flatnonzero(terminated).tolist():
            episodes[row].append((int(finals["example_index"][row]), finals["generated_text"][row]))
    return episodes


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_groups_share_examples_in_lockstep(mode: AutoresetMode) -> None:
    episodes = run(mode)
    for g in range(N // K):
        rows = episodes[g * K:(g + 1) * K]
        done = min(len(r) for r in rows)
        assert done >= 3, "the run should finish several group episodes"
        assert max(len(r) for r in rows) - done <= 1, "a row got more than one episode ahead of its group"
        for j in range(done):
            assert len({r[j][0] for r in rows}) == 1, f"group {g}, episode {j}: different examples"
        texts = {r[j][1] for r in rows for j in range(done)}
        assert len(texts) > done, "the rows of a group should write independent samples"
    first = [[e[0] for e in episodes[g * K]] for g in range(N // K)]
    assert first[0][:3] != first[1][:3], "groups should draw different examples"


def test_same_examples_in_every_mode_and_for_a_seed() -> None:
    def examples(mode):
        return [[e[0] for e in row] for row in run(mode)]

    same_step = examples(AutoresetMode.SAME_STEP)
    assert examples(AutoresetMode.SAME_STEP) == same_step
    for mode in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
        other = examples(mode)
        for a, b in zip(same_step, other):
            m = min(len(a), len(b))
            assert a[:m] == b[:m]
    assert [[e[0] for e in row] for row in run(AutoresetMode.SAME_STEP, seed=4)] != same_step


def test_group_size_one_is_the_plain_env() -> None:
    plain = make_vector_env(ENV_ID, 4, autoreset_mode=AutoresetMode.SAME_STEP, **KWARGS)
    grouped = make_vector_env(ENV_ID, 4, autoreset_mode=AutoresetMode.SAME_STEP, group_size=1, **KWARGS)
    obs_a, _ = plain.reset(seed=1)
    obs_b, _ = grouped.reset(seed=1)
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(40):
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        obs_a, r_a, t_a, _, _ = plain.step(random_actions(rng_a, plain))
        obs_b, r_b, t_b, _, _ = grouped.step(random_actions(rng_b, grouped))
        np.testing.assert_array_equal(r_a, r_b)
        np.testing.assert_array_equal(t_a, t_b)
        assert not grouped.idle_rows.any()


def test_group_leader_draws_what_a_plain_row_draws() -> None:
    """Group g draws the examples that row g*k of an ungrouped env with the same seed draws."""
    grouped = make_vector_env(ENV_ID, 4, autoreset_mode=AutoresetMode.SAME_STEP, group_size=2, **KWARGS)
    plain = make_vector_env(ENV_ID, 4, autoreset_mode=AutoresetMode.SAME_STEP, **KWARGS)
    grouped.reset(seed=9)
    plain.reset(seed=9)
    assert grouped.example_indices.tolist() == [plain.example_indices[0]] * 2 + [plain.example_indices[2]] * 2


def test_make_vec_and_sb3_env_take_group_size() -> None:
    from sb3_ext import make_text_vec_env

    venv = gym.make_vec(ENV_ID, num_envs=6, group_size=3, **KWARGS)
    assert venv.unwrapped.group_size == 3
    venv.reset(seed=0)
    idx = venv.unwrapped.example_indices
    assert idx[0] == idx[1] == idx[2] and idx[3] == idx[4] == idx[5]
    vec = make_text_vec_env(ENV_ID, 4, seed=0, env_kwargs=KWARGS, group_size=2)
    obs = vec.reset()
    assert vec.group_size == 2
    np.testing.assert_array_equal(obs["prompt_ids"][0], obs["prompt_ids"][1])
    with pytest.raises(TextEnvsError, match="divides num_envs"):
        gym.make_vec(ENV_ID, num_envs=6, group_size=4, **KWARGS)
    with pytest.raises(TextEnvsError, match="divides num_envs"):
        make_text_vec_env(ENV_ID, 4, env_kwargs=KWARGS, group_size=0)


def test_resume_from_the_plain_state_continues_exactly() -> None:
    """The vector env's group state is in its get_state() (what text_envs_app.checkpoint stores, as data): a
    fresh env given it with set_state continues with the same examples, texts and waits as the original."""
    from text_envs_app.state_codec import dumps, loads

    def build():
        return make_vector_env(ENV_ID, N, autoreset_mode=AutoresetMode.SAME_STEP, group_size=K, **KWARGS)

    def steps(venv, rng, n):
        out = []
        for _ in range(n):
            obs, rewards, terminated, _, _ = venv.step(random_actions(rng, venv))
            out.append((obs["prompt_ids"].copy(), obs["generated_ids"].copy(), rewards, terminated,
                        venv.idle_rows.copy()))
        return out

    original = build()
    original.reset(seed=2)
    rng = np.random.default_rng(1)
    for _ in range(50):  # stop where some rows wait for their group: the state that matters
        steps(original, rng, 1)
        if original.idle_rows.any():
            break
    assert original.idle_rows.any()
    state = original.get_state()
    assert {"_waiting", "_group_next"} <= set(state) and "_prompt_cache" not in state
    resumed = build()
    resumed.set_state(loads(dumps(state)))
    rng_copy = copy.deepcopy(rng)
    for a, b in zip(steps(original, rng, 40), steps(resumed, rng_copy, 40)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
