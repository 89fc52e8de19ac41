"""Bad input, tried systematically (property-based, with hypothesis): adversarial actions, arbitrary Unicode prompts
and references, malformed data files and malformed observations. Each is either handled correctly or refused with
a clear error (a TextEnvsError naming what was expected); none crashes deep inside a library or hangs.

Example counts are kept small (settings below) so the file runs in well under a minute.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import text_envs  # noqa: F401  (registers the envs)
from text_envs.errors import TextEnvsError

# database=None: no .hypothesis/ folder in the checkout; a failure prints its example (and @seed to replay it)
FEW = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def env():
    return gym.make("TextSummarization-v0", split="validation")


@pytest.fixture(scope="module")
def tokenizer(env):
    return env.unwrapped.tokenizer


def _clear(exc: BaseException) -> None:
    """A clear error: ours, and it says what was expected."""
    assert isinstance(exc, TextEnvsError), f"{type(exc).__name__}: {exc}"
    assert "expected" in str(exc).lower(), str(exc)


# --------------------------------------------------------------------------------------------- actions
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
def test_actions_in_any_integer_form_step_that_token(env, data):
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
def test_bad_actions_are_refused_clearly_and_the_episode_goes_on(env, action):
    env.reset(seed=0)
    with pytest.raises(Exception) as info:
        env.step(action)
    _clear(info.value)
    # nothing was written: the episode continues from where it was
    obs, _, _, _, _ = env.step(5)
    assert obs["generated_ids"][0] == 5 and obs["generated_mask"].sum() == 1


# --------------------------------------------------------------------------------------------- Unicode data
SPECIAL = list("中文字日本語한국어😀🎉👍🏽👨‍👩‍👧שלוםمرحبا") + ["\u200f", "\u202e", "\u200b", "\ufeff", "\x00", "\x07",
                                                          "\t", "\n", "\r", "\u0301", "\U0010fffd", "\x85"]
TEXT = st.text(alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(SPECIAL)), max_size=120)


@FEWER
@given(rows=st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=4))
def test_any_unicode_prompts_and_references(tokenizer, rows):
    """Documents and summaries of arbitrary Unicode (CJK, emoji, right-to-left, control characters, empty strings)
    from a ``datasets.Dataset``: rows with an empty or blank field are skipped (a warning); if none is left, a clear
    error; otherwise every example runs a whole episode with a finite reward."""
    from datasets import Dataset

    ds = Dataset.from_dict({"document": [d for d, _ in rows], "summary": [s for _, s in rows]})
    kept = [(d, s) for d, s in rows if d.strip() and s.strip()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not kept:
            with pytest.raises(TextEnvsError, match="empty or whitespace-only"):
                gym.make("TextSummarization-v0", dataset=ds, tokenizer=tokenizer, max_new_tokens=8)
            return
        env = gym.make("TextSummarization-v0", dataset=ds, tokenizer=tokenizer, max_new_tokens=8)
    base = env.unwrapped
    assert base.num_examples == len(kept)
    for i, (document, summary) in enumerate(kept):
        prompt, references = base.example_text(i)
        assert document.strip() in prompt or document in prompt
        assert references[0].strip() == summary.strip()
        obs, info = env.reset(options={"example_index": i})
        assert env.observation_space.contains(obs) and obs["prompt_mask"].sum() >= 1
        ids = base.tokenizer.encode(summary, add_special_tokens=False)[:4]  # write the reference's start
        done, reward, final = False, 0.0, {}
        for token in [*ids, base.eos_token_id]:
            obs, reward, done, _, final = env.step(token)
            if done:
                break
        assert done and math.isfinite(reward) and isinstance(final["generated_text"], str)
        assert 0.0 <= final["reward"] <= 1.0


def test_a_very_long_document_is_truncated_not_a_hang(tokenizer):
    """A 500 kB document (about 100k tokens) fits the prompt budget by truncation: no hang, no quadratic blow-up."""
    import time

    from datasets import Dataset

    document = ("Ünïcødé 中文 😀 שלום " * 30_000)[:500_000]
    ds = Dataset.from_dict({"document": [document], "summary": ["short"]})
    start = time.perf_counter()
    env = gym.make("TextSummarization-v0", dataset=ds, tokenizer=tokenizer, max_prompt_tokens=64)
    obs, _ = env.reset(seed=0)
    assert obs["prompt_mask"].sum() == 64
    # linear in the text: ~1 s here, ~10 s on a loaded 2-core machine; a quadratic cost would take hours
    assert time.perf_counter() - start < 120


# --------------------------------------------------------------------------------------------- data files
ROW = st.fixed_dictionaries({"document": TEXT.filter(lambda t: t.strip() != ""),
                             "summary": TEXT.filter(lambda t: t.strip() != "")})


def _make(path: Path, tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make("TextSummarization-v0", dataset=str(path), tokenizer=tokenizer)


@FEWER
@given(rows=st.lists(ROW, min_size=1, max_size=6), data=st.data())
def test_bad_json_on_line_n_names_the_file_and_the_line(tmp_path_factory, tokenizer, rows, data):
    path = tmp_path_factory.mktemp("bad") / "rows.jsonl"
    lines = [json.dumps(r, ensure_ascii=data.draw(st.booleans())) for r in rows]
    n = data.draw(st.integers(1, len(lines)))
    broken = data.draw(st.sampled_from(["cut", "trailing", "quote"]))
    line = lines[n - 1]
    lines[n - 1] = {"cut": line[: len(line) // 2], "trailing": line + " x", "quote": line.replace('"', "'", 1)}[broken]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(TextEnvsError) as info:
        _make(path, tokenizer)
    message = str(info.value)
    assert str(path) in message and f"line {n}" in message, message


@pytest.mark.parametrize("field", ["document", "summary"])
def test_a_missing_field_is_named(tmp_path, tokenizer, field):
    """A column missing from the file: the error names it and the fields the data has. A row lacking it (the
    others have it) is skipped like an empty one, with a warning, and the rest load."""
    rows = [{"document": f"text {i} 中文", "summary": f"sum {i} 😀"} for i in range(3)]
    path = tmp_path / "none.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != field}) + "\n" for r in rows))
    with pytest.raises(TextEnvsError, match=f"'{field}'") as info:
        _make(path, tokenizer)
    assert "fields" in str(info.value)
    path = tmp_path / "one.jsonl"
    rows[1].pop(field)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _make(path, tokenizer).unwrapped.num_examples == 2


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_an_empty_file_is_refused(tmp_path, tokenizer, content):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    with pytest.raises(TextEnvsError, match="empty") as info:
        _make(path, tokenizer)
    assert str(path) in str(info.value)


@FEWER
@given(rows=st.lists(ROW, min_size=1, max_size=4), data=st.data())
def test_non_utf8_bytes_name_the_line(tmp_path_factory, tokenizer, rows, data):
    path = tmp_path_factory.mktemp("latin") / "rows.jsonl"
    lines = [json.dumps(r, ensure_ascii=True).encode() for r in rows]
    n = data.draw(st.integers(1, len(lines)))
    bad = data.draw(st.sampled_from([b"\xff", b"\xe9", b"\xc3(", b"\x80", b"\xed\xa0\x80"]))  # not UTF-8
    lines[n - 1] = lines[n - 1].replace(b'": "', b'": "' + bad, 1)
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(TextEnvsError, match="not UTF-8") as info:
        _make(path, tokenizer)
    assert str(path) in str(info.value) and f"line {n}" in str(info.value)


# --------------------------------------------------------------------------------------------- observations
@pytest.fixture(scope="module")
def policy():
    from test_policy import make_model
    from test_policy_fakes import FakeCopyEnv

    from sb3_ext import LLMPolicy

    fake = FakeCopyEnv()
    return LLMPolicy(fake.observation_space, fake.action_space, lambda _: 0.0, model=make_model("t5", fake.V)), fake


def _good_obs(fake, batch: int | None) -> dict[str, np.ndarray]:
    fake.reset(seed=0)
    obs = fake._obs()
    return obs if batch is None else {k: np.stack([v] * batch) for k, v in obs.items()}


def test_good_observations_predict(policy):
    pol, fake = policy
    for batch in (None, 1, 3):
        actions, _ = pol.predict(_good_obs(fake, batch), deterministic=True)
        assert np.all((0 <= actions) & (actions < fake.V))
    floats = {k: v.astype(np.float32) for k, v in _good_obs(fake, 2).items()}  # integral floats are ids too
    assert pol.predict(floats, deterministic=True)[0].shape == (2,)


def _corrupt(data: st.DataObject, obs: dict[str, np.ndarray], V: int) -> dict[str, np.ndarray]:
    obs = dict(obs)
    key = data.draw(st.sampled_from(sorted(obs)))
    kind = data.draw(st.sampled_from(["drop", "shape", "rank", "batch", "dtype", "range", "type"]))
    arr = obs[key]
    if kind == "drop":
        del obs[key]
    elif kind == "shape":
        extra = data.draw(st.integers(1, 3))
        obs[key] = np.concatenate([arr, arr[..., :1].repeat(extra, -1)], -1) if data.draw(st.booleans()) \
            else arr[..., : arr.shape[-1] - extra]
    elif kind == "rank":
        obs[key] = arr[None, None]
    elif kind == "batch":
        obs[key] = np.concatenate([arr, arr[:1]], 0)
    elif kind == "dtype":
        obs[key] = arr.astype(np.float32) + data.draw(st.sampled_from([0.5, np.nan, np.inf]))
    elif kind == "range":
        value = data.draw(st.one_of(st.integers(-(2**40), -1), st.integers(V, 2**40)))
        if key.endswith("_mask"):
            value = data.draw(st.sampled_from([2, -1, 7]))
        arr = arr.copy()
        arr.flat[data.draw(st.integers(0, arr.size - 1))] = value
        obs[key] = arr
    elif kind == "type":
        obs[key] = data.draw(st.sampled_from(["abc", None, object()]))
    return obs


@FEW
@given(data=st.data())
def test_malformed_observations_get_a_clear_error(policy, data):
    pol, fake = policy
    obs = _corrupt(data, _good_obs(fake, 2), fake.V)
    with pytest.raises(Exception) as info:
        pol.predict(obs, deterministic=True)
    _clear(info.value)


@pytest.mark.parametrize("obs", [None, [1, 2, 3], np.zeros((2, 5)), "prompt"])
def test_an_observation_that_is_not_a_dict(policy, obs):
    pol, _ = policy
    with pytest.raises(TextEnvsError, match="expected an observation dict"):
        pol.predict(obs)


def test_line_numbers_count_only_newlines(tmp_path, tokenizer):
    """U+0085, U+2028 and form feeds inside JSON strings are not line breaks (hypothesis found the line number
    off by one for them): the bad line is still named right."""
    path = tmp_path / "rows.jsonl"
    rows = [{"document": "a\x85b\u2028c\x0cd", "summary": "e\u2029f"}, {"document": "g", "summary": "h"}]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows] + ['{"document": "i", "summary": ']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(TextEnvsError, match="line 3: "):
        _make(path, tokenizer)
