"""The shipped default tokenizer, load_tokenizer() and the symbol tokenizer."""

from __future__ import annotations

import json
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from text_envs import tokenization
from text_envs.errors import TextEnvsError
from text_envs.tokenization import DEFAULT_TOKENIZER_DIR, TokenizerLoadError, load_tokenizer, make_symbol_tokenizer

ROOT = Path(__file__).resolve().parents[1]

TRICKY = [
    "Flooding closed 12 schools in Marlow on Tuesday, the council said.",
    "",
    " ",
    "   three leading spaces",
    "trailing spaces  ",
    "a  b   c\t\td",
    "line one\nline two\n\n\r\nwindows",
    "中文测试：你好，世界！",
    "日本語とカタカナ",
    "emoji 😀👍🏽🇷🇴 family 👨‍👩‍👧",
    "Ștefan și Țară, îți mulțumesc",  # Romanian comma-below diacritics
    "Ş ţ cedilla forms",
    "naïve café Å",
    "e\u0301 (decomposed) vs \u00e9 (composed)",  # no normalization: NFD stays NFD
    "zero\u200bwidth\u00a0nbsp",
    "\x00\x07 control bytes \x7f",
    "A: hi B: hello B:",
    "summarize: translate English to Syn: dialogue:",
    "Ωμέγα and Кириллица and עברית and العربية",
]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_special_and_byte_ids(tok):
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    assert tok.convert_ids_to_tokens(list(range(3, 259))) == [f"<0x{i:02X}>" for i in range(256)]
    assert 5500 <= len(tok) <= 6500  # scripts/build_tokenizer.py --vocab-size 6000 (English, French, Chinese, reviews)
    assert set(tok.all_special_ids) == {0, 1, 2}  # byte tokens are ordinary tokens, not special ones


def test_encoding_appends_eos(tok):
    ids = tok("Hello there.")["input_ids"]
    assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
    assert tok("Hello there.", add_special_tokens=False)["input_ids"] == ids[:-1]
    assert tok("")["input_ids"] == [tok.eos_token_id]


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip(tok, text):
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids  # byte fallback, never <unk>
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_decode_skips_specials_only(tok):
    ids = tok("Café 😀")["input_ids"]
    padded = ids + [tok.pad_token_id] * 3
    assert tok.decode(padded, skip_special_tokens=True) == "Café 😀"
    assert tok.decode(ids).endswith("</s>")
    assert tok.batch_decode([padded, tok("x")["input_ids"]], skip_special_tokens=True) == ["Café 😀", "x"]


def test_task_text_is_compact(tok):
    """Trained on the generators: prefixes are single tokens and task text needs ~1.3 tokens per word."""
    from text_envs.data.generators import dialogue_row, summarization_row, translation_row

    for prefix in ("summarize:", "dialogue:"):
        assert len(tok(prefix, add_special_tokens=False)["input_ids"]) == 1
    words = tokens = 0
    for i in range(100):
        texts = [summarization_row("validation", i, 2)["document"], " ".join(dialogue_row("validation", i, 2)["dialog"]),
                 *translation_row("validation", i, 2)["translation"].values()]
        for text in texts:
            words += len(text.split())
            tokens += len(tok(text, add_special_tokens=False)["input_ids"])
    assert tokens / words < 1.6, tokens / words


def test_shipped_folder_loads_with_transformers():
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    auto = AutoTokenizer.from_pretrained(DEFAULT_TOKENIZER_DIR)
    fast = PreTrainedTokenizerFast(tokenizer_file=str(DEFAULT_TOKENIZER_DIR / "tokenizer.json"))
    text = "Snow left 650 homes in Nantwich without power."
    assert auto(text)["input_ids"] == fast(text)["input_ids"] == load_tokenizer("default")(text)["input_ids"]
    assert auto.eos_token == "</s>" and auto.pad_token == "<pad>"
    files = {p.name: p.stat().st_size for p in DEFAULT_TOKENIZER_DIR.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= set(files)
    assert sum(files.values()) < 1_000_000


def test_build_script_reproduces_the_shipped_tokenizer(tmp_path):
    """The shipped files are what `python scripts/build_tokenizer.py` writes (rebuild after changing generators)."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_tokenizer.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    fresh = json.loads((tmp_path / "tokenizer.json").read_text("utf-8"))
    shipped = json.loads((DEFAULT_TOKENIZER_DIR / "tokenizer.json").read_text("utf-8"))
    assert fresh["model"]["vocab"] == shipped["model"]["vocab"], "stale shipped tokenizer: run scripts/build_tokenizer.py"
    assert fresh["model"]["merges"] == shipped["model"]["merges"]


def test_load_local_folder_and_file(tmp_path, tok):
    tok.save_pretrained(tmp_path / "saved")
    again = load_tokenizer(tmp_path / "saved")  # a PathLike
    assert again("a b c")["input_ids"] == tok("a b c")["input_ids"]
    assert load_tokenizer(str(DEFAULT_TOKENIZER_DIR / "tokenizer.json")).eos_token_id == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerLoadError, match="could not load"):
        load_tokenizer(tmp_path / "empty")
    with pytest.raises(TokenizerLoadError, match="neither an existing local path nor a hub name"):
        load_tokenizer(str(tmp_path / "missing"))
    with pytest.raises(TokenizerLoadError, match="expected None, 'default'"):
        load_tokenizer(42)


def test_tokenizer_object_is_returned_as_is_and_pad_defaults_to_eos():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"<|endoftext|>": 0, "hi": 1, "[UNK]": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    causal = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")  # GPT-2 style: no pad
    assert causal.pad_token_id is None
    assert load_tokenizer(causal) is causal
    assert causal.pad_token_id == causal.eos_token_id == 0
    no_eos = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"hi": 0, "[UNK]": 1}, unk_token="[UNK]")))
    with pytest.raises(TokenizerLoadError, match="no EOS token"):
        load_tokenizer(no_eos)


def _online(monkeypatch):
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_unknown_hub_name_fails_fast(monkeypatch):
    _online(monkeypatch)  # the slow path: not offline, so the hub is probed (or asked) for real
    start = time.perf_counter()
    with pytest.raises(TokenizerLoadError, match="local folder") as err:
        load_tokenizer("no-such-org-x7/no-such-tokenizer-x7")
    assert time.perf_counter() - start < 10
    assert "no-such-org-x7/no-such-tokenizer-x7" in str(err.value)


def test_offline_hub_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(TokenizerLoadError, match="HF_HUB_OFFLINE"):
        load_tokenizer("t5-small-not-cached-x7")
    assert time.perf_counter() - start < 5


def test_a_hanging_network_is_cut_short(monkeypatch):
    """A connection that never answers (DNS or TCP) costs the probe time-out, not a network time-out."""
    _online(monkeypatch)
    monkeypatch.setattr(tokenization, "_HUB_PROBE_TIMEOUT_S", 0.5)

    def hang(*args, **kwargs):
        time.sleep(30)
        raise OSError("simulated hung connection")  # what the probe thread sees once it wakes

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    with pytest.raises(TokenizerLoadError, match=r"within 0 s|within 1 s|cannot be reached"):
        load_tokenizer("some-org/hanging")
    assert time.perf_counter() - start < 5


def test_pickle_round_trip(tok):
    for t in (tok, make_symbol_tokenizer(["x", "y"])):
        clone = pickle.loads(pickle.dumps(t))
        ids = t("x y Ünïcode")["input_ids"]
        assert clone("x y Ünïcode")["input_ids"] == ids
        assert clone.decode(ids, skip_special_tokens=True) == t.decode(ids, skip_special_tokens=True)
        assert (clone.pad_token_id, clone.eos_token_id) == (t.pad_token_id, t.eos_token_id)


def test_symbol_tokenizer():
    sym = make_symbol_tokenizer(["a", "b", "c", "10"])
    assert len(sym) == 7
    assert (sym.pad_token_id, sym.eos_token_id, sym.unk_token_id) == (0, 1, 2)
    assert sym("c a b 10")["input_ids"] == [5, 3, 4, 6]  # no EOS appended
    assert sym("a  zz\nb")["input_ids"] == [3, 2, 4]  # any whitespace separates; unknown -> <unk>
    assert sym.decode([5, 3, 1, 0, 0], skip_special_tokens=True) == "c a"
    assert sym.decode([5, 3, 1]) == "c a </s>"
    batch = sym(["a b c", "a"], padding=True)
    assert batch["input_ids"] == [[3, 4, 5], [3, 0, 0]] and batch["attention_mask"][1] == [1, 0, 0]
    assert load_tokenizer(sym) is sym


@pytest.mark.parametrize("bad, match", [
    ([], "at least one symbol"),
    (["a", "a"], "distinct"),
    (["a b"], "without whitespace"),
    ([""], "non-empty"),
    (["</s>"], "reserved"),
    ("abc", "sequence of symbols"),
    ([1, 2], "non-empty symbols"),
])
def test_symbol_tokenizer_rejects_bad_symbols(bad, match):
    with pytest.raises(TextEnvsError, match=match):
        make_symbol_tokenizer(bad)

