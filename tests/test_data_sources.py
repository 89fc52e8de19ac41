"""Data files and datasets as env data (text_envs.data.sources), tried systematically (property-based, with
hypothesis): arbitrary Unicode prompts and references, very long documents, malformed files (bad JSON on line N, a
missing field, an empty file, bytes that are not UTF-8). Each is either handled correctly or refused with a clear
error (a TextEnvsError naming the file, the line and what was expected); none crashes deep inside a library or hangs.

Example counts are kept small (helpers.FEWER) so the file runs in well under a minute.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
from helpers import FEWER
from hypothesis import given
from hypothesis import strategies as st

import text_envs  # noqa: F401  (registers the envs)
from text_envs.errors import TextEnvsError


@pytest.fixture(scope="module")
def tokenizer():
    return gym.make("TextSummarization-v0", split="validation").unwrapped.tokenizer


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


# ---------------------------------------------------------------------------------------------- data files
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


def test_line_numbers_count_only_newlines(tmp_path, tokenizer):
    """U+0085, U+2028 and form feeds inside JSON strings are not line breaks (hypothesis found the line number
    off by one for them): the bad line is still named right."""
    path = tmp_path / "rows.jsonl"
    rows = [{"document": "a\x85b\u2028c\x0cd", "summary": "e\u2029f"}, {"document": "g", "summary": "h"}]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows] + ['{"document": "i", "summary": ']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(TextEnvsError, match="line 3: "):
        _make(path, tokenizer)
