"""One battery for every registered env, plus the data paths and the errors users hit."""

from __future__ import annotations

import json
import math
import pickle
import time

import gymnasium as gym
import numpy as np
import pytest
from helpers import FEW, assert_clear_error
from hypothesis import given
from hypothesis import strategies as st

import text_envs
from text_envs.errors import DatasetFieldError, DatasetLoadError, EmptyDatasetError, TextEnvsError, UnknownNameError

ENV_IDS = sorted(text_envs.ENV_IDS)
OBS_KEYS = ("prompt_ids", "prompt_mask", "generated_ids", "generated_mask")


def small(env_id: str, **kwargs):
    """A registered env with short budgets so that the battery stays fast."""
    if env_id != "TextCopy-v0":
        kwargs.setdefault("max_new_tokens", 8)
    return gym.make(env_id, **kwargs)


def rollout(env, seed: int, n_steps: int):
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    trace = [(obs, 0.0, False, info)]
    for _ in range(n_steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert not truncated
        trace.append((obs, reward, terminated, info))
        if terminated:
            obs, info = env.reset()
            trace.append((obs, 0.0, False, info))
    return trace


def assert_same_trace(a, b):
    assert len(a) == len(b)
    for (obs_a, r_a, d_a, _), (obs_b, r_b, d_b, _) in zip(a, b):
        assert r_a == r_b and d_a == d_b
        for key in OBS_KEYS:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_env_checker(env_id):
    from gymnasium.utils.env_checker import check_env

    check_env(small(env_id).unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_env_checker(env_id):
    from stable_baselines3.common.env_checker import check_env

    check_env(small(env_id), warn=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_follow_the_contract(env_id):
    env = small(env_id)
    tok = env.unwrapped.tokenizer
    assert env.action_space == gym.spaces.Discrete(len(tok))
    assert set(env.observation_space.spaces) == set(OBS_KEYS)
    for key, space in env.observation_space.spaces.items():
        assert isinstance(space, gym.spaces.Box) and space.dtype == np.int64 and len(space.shape) == 1, key
    obs, _ = env.reset(seed=0)
    P = obs["prompt_ids"].shape[0]
    mask = obs["prompt_mask"]
    n = int(mask.sum())
    assert n > 0 and mask[P - n :].all() and not mask[: P - n].any(), "prompt must be left-padded"
    assert obs["generated_mask"].sum() == 0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeded_rollouts_are_deterministic(env_id):
    assert_same_trace(rollout(small(env_id), 3, 40), rollout(small(env_id), 3, 40))
    # a different seed gives a different episode sequence (prompts drawn with self.np_random)
    a = [t[0]["prompt_ids"].tobytes() for t in rollout(small(env_id), 3, 40)]
    b = [t[0]["prompt_ids"].tobytes() for t in rollout(small(env_id), 4, 40)]
    assert a != b


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pickle_round_trip(env_id):
    env = small(env_id)
    env.reset(seed=5)
    env.step(0 if env_id == "TextCopy-v0" else 5)
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(3):
        a = env.step(4)
        b = clone.step(4)
        for key in OBS_KEYS:
            np.testing.assert_array_equal(a[0][key], b[0][key])
        assert a[1:4] == b[1:4]
        if a[2]:
            break


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_episode_end_and_final_info(env_id):
    env = small(env_id, render_mode="ansi")
    obs, info = env.reset(seed=1)
    assert "example_index" in info
    eos = env.unwrapped.eos_token_id
    not_eos = 3 if eos != 3 else 4
    budget = env.unwrapped.max_new_tokens
    for t in range(budget):
        obs, reward, terminated, truncated, info = env.step(not_eos)
        assert obs["generated_mask"].sum() == t + 1 and obs["generated_ids"][t] == not_eos
        assert truncated is False
        if t < budget - 1:
            assert not terminated
    # the budget ends the text: terminated, not truncated (SB3 would bootstrap a truncated step)
    assert terminated and info["finish_reason"] == "budget_exhausted" and info["budget_exhausted"]
    for key in ("prompt_text", "generated_text", "references", "metrics"):
        assert key in info
    assert isinstance(env.render(), str) and "Prompt" in env.render()
    env.reset(seed=1)
    *_, terminated, truncated, info = env.step(eos)
    assert terminated and info["finish_reason"] == "eos" and info["generated_text"] == ""


def test_summarization_reward_is_rouge_of_decoded_text():
    env = gym.make("TextSummarization-v0", max_new_tokens=64)
    obs, info = env.reset(seed=0)
    prompt, refs = env.unwrapped.example_text(info["example_index"])
    ids = env.unwrapped.tokenizer(refs[0], add_special_tokens=False)["input_ids"][:63]
    for tok in ids:
        obs, reward, terminated, _, info = env.step(tok)
        assert reward == 0.0 and not terminated  # terminal reward only
    obs, reward, terminated, _, info = env.step(env.unwrapped.eos_token_id)
    assert terminated and info["generated_text"] == env.unwrapped.tokenizer.decode(ids, skip_special_tokens=True)
    assert reward == pytest.approx(info["metrics"]["rouge-l"]) and reward > 0.95
    assert info["metric/rouge-l"] == reward


def test_dense_shaping_telescopes_to_the_terminal_reward():
    kwargs = dict(max_new_tokens=12, dense_reward=True, shaping_gamma=1.0)
    env = gym.make("TextSummarization-v0", **kwargs)
    env.reset(seed=2)
    _, refs = env.unwrapped.example_text(env.unwrapped._example_index)
    ids = env.unwrapped.tokenizer(refs[0], add_special_tokens=False)["input_ids"][:12]
    total, rewards = 0.0, []
    for tok in ids:
        _, r, terminated, _, info = env.step(tok)
        rewards.append(r)
        total += r
        if terminated:
            break
    assert terminated
    assert total == pytest.approx(info["reward"], abs=1e-9)
    assert sum(r != 0 for r in rewards[:-1]) > 0  # paid along the way, not only at the end


def test_textcopy_perfect_policy_scores_one():
    env = gym.make("TextCopy-v0", reverse=True)
    assert env.spec.reward_threshold == 0.9
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        prompt = obs["prompt_ids"][obs["prompt_mask"] == 1]
        total = 0.0
        for tok in list(prompt[::-1]) + [env.unwrapped.eos_token_id]:
            obs, r, terminated, _, info = env.step(int(tok))
            total += r
        assert terminated and total == pytest.approx(1.0) and info["metrics"]["exact_match"] == 1.0


def test_local_xsum_file_end_to_end(xsum_sample):
    rows = [json.loads(line) for line in xsum_sample.read_text().splitlines()]
    env = gym.make("TextSummarization-v0", dataset=str(xsum_sample), max_prompt_tokens=64,
                   max_new_tokens=6, render_mode="ansi")
    assert env.unwrapped.num_examples == len(rows)
    obs, info = env.reset(seed=0)
    prompt, refs = env.unwrapped.example_text(info["example_index"])
    row = rows[info["example_index"]]
    assert prompt.startswith("summarize: ") and refs == [row["summary"].strip()]
    assert obs["prompt_mask"].sum() == 64  # real articles are longer than 64 tokens: truncated
    # truncation keeps the beginning of the document and the closing special token(s)
    tok = env.unwrapped.tokenizer
    kept = obs["prompt_ids"][obs["prompt_mask"] == 1]
    assert tok.decode(kept, skip_special_tokens=True) in prompt
    assert prompt.startswith(tok.decode(kept, skip_special_tokens=True)[:30])
    done = False
    while not done:
        *_, done, _, info = env.step(env.action_space.sample())
    text = env.render()
    assert "Reference : " + row["summary"].strip()[:20] in text and "rouge-l" in text


def test_local_wmt16_file_end_to_end(wmt16_sample):
    env = gym.make("MachineTranslation-v0", dataset=str(wmt16_sample), source_lang="en", target_lang="ro",
                   max_new_tokens=5, render_mode="ansi")
    obs, info = env.reset(seed=0)
    prompt, refs = env.unwrapped.example_text(info["example_index"])
    assert prompt.startswith("translate English to Romanian: ")
    row = json.loads(wmt16_sample.read_text().splitlines()[info["example_index"]])
    assert refs == [row["translation"]["ro"]] and row["translation"]["en"] in prompt
    done = False
    while not done:
        *_, done, _, info = env.step(env.action_space.sample())
    assert "chrf" in info["metrics"] and "Romanian" in env.render()


def test_dialogue_prompt_and_reference():
    env = gym.make("DialogueGeneration-v0")
    _, info = env.reset(seed=0)
    prompt, refs = env.unwrapped.example_text(info["example_index"])
    assert prompt.startswith("dialogue: A: ") and prompt.rstrip().endswith(":")
    assert len(refs) == 1 and refs[0] not in prompt


def test_dialogue_truncation_keeps_the_latest_turns():
    env = gym.make("DialogueGeneration-v0", max_prompt_tokens=12)
    _, info = env.reset(seed=0)
    prompt, _ = env.unwrapped.example_text(info["example_index"])
    obs = env.unwrapped._observation()
    kept = env.unwrapped.tokenizer.decode(obs["prompt_ids"][obs["prompt_mask"] == 1], skip_special_tokens=True)
    assert prompt.endswith(kept.strip()[-8:])


def test_datasets_object_and_dotted_fields():
    import datasets

    ds = datasets.Dataset.from_list([{"meta": {"src": f"hello number {i}", "refs": [f"hi {i}", f"hey {i}"]}}
                                     for i in range(5)])
    env = gym.make("TextSummarization-v0", dataset=ds, prompt_field="meta.src", reference_field="meta.refs",
                   prompt_template="tl;dr {text}")
    _, info = env.reset(seed=0)
    prompt, refs = env.unwrapped.example_text(info["example_index"])
    i = info["example_index"]
    assert prompt == f"tl;dr hello number {i}" and refs == [f"hi {i}", f"hey {i}"]


def test_vector_envs_share_no_dataset_copy():
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    vec = gym.make_vec("TextSummarization-v0", num_envs=2, max_new_tokens=4)
    obs, _ = vec.reset(seed=0)
    assert obs["prompt_ids"].shape[0] == 2
    for _ in range(6):
        obs, *_ = vec.step(vec.action_space.sample())
    vec.close()
    for cls in (DummyVecEnv, SubprocVecEnv):
        # "module:id" makes Gymnasium import text_envs in each fresh worker process (SubprocVecEnv's
        # forkserver/spawn workers do not inherit this process's registry)
        venv = make_vec_env("text_envs:TextCopy-v0", n_envs=2, vec_env_cls=cls, seed=0)
        assert venv.render_mode == "rgb_array"  # SB3 asks for frames by default; we draw the text
        venv.reset()
        for _ in range(10):
            venv.step(np.array([venv.action_space.sample() for _ in range(2)]))
        venv.close()
    # the embedded source computes rows from their index: nothing but a size and a function to pickle
    env = gym.make("TextSummarization-v0").unwrapped
    assert len(pickle.dumps(env.source)) < 2_000
    assert env.num_examples >= 1000


def test_subproc_vec_env_with_local_file(xsum_sample):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = make_vec_env("text_envs:TextSummarization-v0", n_envs=2, vec_env_cls=SubprocVecEnv, seed=0,
                        env_kwargs=dict(dataset=str(xsum_sample), max_new_tokens=3))
    venv.reset()
    infos_done = []
    for _ in range(4):
        _, _, dones, infos = venv.step(np.array([7, 8]))
        infos_done += [i for i, d in zip(infos, dones) if d]
    venv.close()
    assert infos_done and all("rouge-l" in i["metrics"] for i in infos_done)


# ---------------------------------------------------------------- bad input
def test_unknown_env_name_suggests_the_closest():
    with pytest.raises(gym.error.Error, match="TextSummarization"):
        gym.make("TextSumarization-v0")


def test_unknown_dataset_name_lists_choices():
    with pytest.raises(UnknownNameError, match="xsum"):
        gym.make("TextSummarization-v0", dataset="xsun")


def test_missing_fields_list_what_the_file_has(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"article": "a b c", "highlights": "a"}) + "\n")
    with pytest.raises(DatasetFieldError, match="article"):
        gym.make("TextSummarization-v0", dataset=str(path))
    env = gym.make("TextSummarization-v0", dataset=str(path), prompt_field="article", reference_field="highlights")
    assert env.unwrapped.num_examples == 1


def test_empty_documents_are_skipped_with_a_count(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{"document": "x y z", "summary": "x"}, {"document": "   ", "summary": "y"}, {"document": "a", "summary": ""}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.warns(UserWarning, match="Skipped 2 of 3"):
        env = gym.make("TextSummarization-v0", dataset=str(path))
    assert env.unwrapped.num_examples == 1
    path.write_text("\n".join(json.dumps(r) for r in rows[1:]))
    with pytest.raises(EmptyDatasetError):
        gym.make("TextSummarization-v0", dataset=str(path))


def test_missing_file_and_bad_format(tmp_path):
    with pytest.raises(DatasetLoadError, match="does not exist"):
        gym.make("TextSummarization-v0", dataset=str(tmp_path / "nope.jsonl"))
    with pytest.raises(DatasetLoadError, match="Unsupported"):
        gym.make("TextSummarization-v0", dataset=str(tmp_path / "rows.parquetx"))


def test_offline_hub_fails_fast_and_says_how_to_use_a_local_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DatasetLoadError, match="local file"):
        gym.make("TextSummarization-v0", dataset="xsum")
    assert time.perf_counter() - start < 30


def test_step_errors():
    env = gym.make("TextCopy-v0").unwrapped
    with pytest.raises(TextEnvsError, match="reset"):
        env.step(3)
    env.reset(seed=0)
    with pytest.raises(TextEnvsError, match="outside the vocabulary"):
        env.step(env.action_space.n)
    with pytest.raises(TextEnvsError, match="outside the vocabulary"):
        env.step(-1)
    env.step(env.eos_token_id)
    with pytest.raises(TextEnvsError, match="reset"):
        env.step(3)


def test_bad_arguments():
    with pytest.raises(UnknownNameError, match="validation"):
        gym.make("TextSummarization-v0", split="valid")
    with pytest.raises(TextEnvsError, match="max_new_tokens"):
        gym.make("TextSummarization-v0", max_new_tokens=0)
    with pytest.raises(TextEnvsError, match="target_lang"):
        gym.make("MachineTranslation-v0", source_lang="en", target_lang="de")


def test_tokenizer_without_eos_is_rejected():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    with pytest.raises(TextEnvsError, match="EOS"):
        gym.make("TextSummarization-v0", tokenizer=tok)


# ---------------------------------------------------------------- bad actions, tried systematically (hypothesis)
@pytest.fixture(scope="module")
def summarization_env():
    return gym.make("TextSummarization-v0", split="validation")


INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


def _valid_forms(data: st.DataObject, token: int):
    """The same token id as an int, a NumPy scalar of a dtype that holds it, 0-d/1-element arrays, an integral
    float: all are one token id."""
    fits = [d for d in INT_DTYPES if np.iinfo(d).min <= token <= np.iinfo(d).max]
    dtype = data.draw(st.sampled_from(fits))
    return data.draw(st.sampled_from([
        token, dtype(token), np.array(token, dtype=dtype), np.array([token], dtype=dtype), float(token),
        np.float32(token) if token < 2**24 else float(token),
    ]))


@FEW
@given(data=st.data())
def test_actions_in_any_integer_form_step_that_token(summarization_env, data):
    env = summarization_env
    base = env.unwrapped
    V = base.vocab_size
    token = data.draw(st.integers(0, V - 1).filter(lambda t: t != base.eos_token_id))
    action = _valid_forms(data, token)
    env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(action)
    assert obs["generated_ids"][0] == token and obs["generated_mask"].sum() == 1
    assert env.observation_space.contains(obs)
    assert not terminated and not truncated and math.isfinite(reward)


BAD_ACTIONS = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=10**6),  # far outside any vocabulary, up to unbounded ints
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not (math.isfinite(x) and x.is_integer()
                                                                        and 0 <= x < 10**6)),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(0, 5), min_size=2, max_size=4),
    st.lists(st.integers(0, 5), min_size=2, max_size=4).map(np.array),
    st.just(np.array([], dtype=np.int64)),
    st.integers(-(2**31), -1).map(np.int32),
    st.just(np.uint64(2**64 - 1)),
    st.floats(0.1, 100.0).map(np.float32).filter(lambda x: not float(x).is_integer()),  # after float32 rounding
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@FEW
@given(action=BAD_ACTIONS)
def test_bad_actions_are_refused_clearly_and_the_episode_goes_on(summarization_env, action):
    env = summarization_env
    env.reset(seed=0)
    with pytest.raises(Exception) as info:
        env.step(action)
    assert_clear_error(info.value)
    # nothing was written: the episode continues from where it was
    obs, _, _, _, _ = env.step(5)
    assert obs["generated_ids"][0] == 5 and obs["generated_mask"].sum() == 1
