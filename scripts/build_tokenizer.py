"""Build the shipped default tokenizer, ``text_envs/assets/tokenizer/``.

Run from the repository root::

    python scripts/build_tokenizer.py                 # rebuild in place (about half a minute on 2 CPU cores)
    python scripts/build_tokenizer.py --out /tmp/tok  # somewhere else

What it builds: a BPE tokenizer trained with the ``tokenizers`` library on the TRAIN splits of the three
embedded generators (summarization, dialogue, translation, all three difficulties, the "syn" language
included), formatted the way the tasks prompt a model (T5-style prefixes ``"summarize: "``,
``"translate English to Syn: "``, ``"dialogue: "`` and the speaker tags ``"A:"``/``"B:"``).

Conventions (T5 / Llama style):

* ids ``0, 1, 2`` are ``<pad>``, ``</s>`` (EOS) and ``<unk>``; ids ``3 .. 258`` are the 256 byte tokens
  ``<0x00> .. <0xFF>``, so any character missing from the vocabulary falls back to its UTF-8 bytes and
  ``<unk>`` is never produced;
* Metaspace pre-tokenization (a space becomes ``"▁"``, one ``"▁"`` is always prepended to the text and the
  decoder strips exactly one leading space), no Unicode normalization: ``decode(encode(text)) == text`` for every Unicode string (newlines, repeated spaces, CJK,
  emoji, diacritics), except text that itself contains ``"▁"`` (U+2581, decoded as a space) or the literal
  special-token strings ``"<pad>"``, ``"</s>"``, ``"<unk>"``;
* the post-processor appends ``</s>`` (template ``"$A </s>"``), ``decode(..., skip_special_tokens=True)``
  drops it; the byte tokens are ordinary vocabulary entries (not special), so skipping specials keeps them.

Determinism: the generators are seeded by row index, the rows are read in a fixed order and BPE training is
deterministic, so two runs write identical files (the script prints the SHA-256 of ``tokenizer.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from text_envs.data.generators import dialogue_row, summarization_row, translation_row  # noqa: E402

SPECIALS = ["<pad>", "</s>", "<unk>"]
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]
PREFIXES = {"summarization": "summarize: ", "translation": "translate English to Syn: ", "dialogue": "dialogue: "}
DEFAULT_OUT = ROOT / "text_envs" / "assets" / "tokenizer"


def training_texts(rows_per_level: int) -> Iterator[str]:
    """Prompts and references of the first ``rows_per_level`` train rows of every task and difficulty."""
    for level in (1, 2, 3):
        for i in range(rows_per_level):
            row = summarization_row("train", i, level)
            yield PREFIXES["summarization"] + row["document"]
            yield row["summary"]
            turns = dialogue_row("train", i, level)["dialog"]  # the task's layout: "dialogue: A: .. B: .. B:"
            history = " ".join(f"{'AB'[t % 2]}: {turn}" for t, turn in enumerate(turns[:-1]))
            yield f"{PREFIXES['dialogue']}{history} {'AB'[(len(turns) - 1) % 2]}:"
            yield turns[-1]
            pair = translation_row("train", i, level)["translation"]
            yield PREFIXES["translation"] + pair["en"]
            yield pair["syn"]


def build(out: Path, vocab_size: int, rows_per_level: int) -> Path:
    """Train the tokenizer and write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Always prepend one "▁" (even before a leading space, so the decoder's strip of one space is exact),
    # then split into words before each "▁".
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    tok.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS + BYTE_TOKENS,  # ids 0..258 in this order
        min_frequency=2,
        limit_alphabet=200,
        show_progress=False,
    )
    tok.train_from_iterator(training_texts(rows_per_level), trainer=trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    # The trainer registered the byte tokens as special added tokens; they must be plain vocabulary entries
    # (a special token would vanish from decode(skip_special_tokens=True) and could be matched in raw text).
    spec = json.loads(tok.to_str())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] in SPECIALS]
    for i, name in enumerate(SPECIALS + BYTE_TOKENS):
        assert spec["model"]["vocab"][name] == i, (name, spec["model"]["vocab"][name])

    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False, separators=(",", ":")), "utf-8")
    special_map = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special_map,
        "model_max_length": 1024,
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,  # keep "a ." as "a ." so decode(encode(x)) == x
        "added_tokens_decoder": {
            str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                     "special": True}
            for i, s in enumerate(SPECIALS)
        },
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", "utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n", "utf-8")
    return out / "tokenizer.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the shipped one)")
    parser.add_argument("--vocab-size", type=int, default=4000, help="target vocabulary size (default 4000)")
    parser.add_argument("--rows", type=int, default=10_000,
                        help="train rows per task and difficulty used as training text (default 10000)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = build(args.out, args.vocab_size, args.rows)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    vocab = len(json.loads(path.read_text("utf-8"))["model"]["vocab"])
    print(f"wrote {args.out} (vocabulary {vocab}, tokenizer.json {path.stat().st_size / 1e3:.0f} kB, "
          f"sha256 {digest}) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
