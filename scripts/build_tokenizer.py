"""Build the shipped default tokenizer, ``text_envs/assets/tokenizer/``.

Run from the repository root::

    python scripts/build_tokenizer.py                 # rebuild in place (about half a minute on 2 CPU cores)
    python scripts/build_tokenizer.py --out /tmp/tok  # somewhere else

What it builds: a BPE tokenizer trained with the ``tokenizers`` library on the TRAIN splits of the embedded
generators (summarization, dialogue, translation into the "syn" language, and the English / French / Chinese
sentence triples of :mod:`text_envs.data.translation_pairs`; all three difficulties), formatted the way the
tasks prompt a model (T5-style prefixes ``"summarize: "``, ``"translate English to Syn: "``,
``"translate English to Chinese: "``, ``"translate French to Chinese: "``, ``"dialogue: "`` and the speaker
tags ``"A:"``/``"B:"``). The triples come in with ``--with-zh-fr`` (not yet in the shipped build, see
``WITH_ZH_FR_DEFAULT``): then every character of the text is kept in the alphabet, so the Chinese characters
and accented French letters are real pieces, not byte fallbacks, and full-width Chinese punctuation is a piece
of its own. The script ends with a coverage report (tokens per Chinese character and per French word on the
test split of the triples, byte-fallback counts)::

    python scripts/build_tokenizer.py --with-zh-fr --vocab-size 6000 --out /tmp/tok
    python scripts/build_tokenizer.py --with-zh-fr --with-reviews --vocab-size 6000   # the next shipped build

Conventions (T5 / Llama style):

* ids ``0, 1, 2`` are ``<pad>``, ``</s>`` (EOS) and ``<unk>``; ids ``3 .. 258`` are the 256 byte tokens
  ``<0x00> .. <0xFF>``, so any character missing from the vocabulary falls back to its UTF-8 bytes and
  ``<unk>`` is never produced;
* Metaspace pre-tokenization (a space becomes ``"▁"``, one ``"▁"`` is always prepended to the text and the
  decoder strips exactly one leading space), with ``--with-zh-fr`` full-width CJK punctuation split into
  pieces of its own, no Unicode normalization: ``decode(encode(text)) == text`` for every Unicode string
  (newlines, repeated spaces, CJK, emoji, diacritics), except text that itself contains ``"▁"`` (U+2581,
  decoded as a space) or the literal special-token strings ``"<pad>"``, ``"</s>"``, ``"<unk>"``;
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
from text_envs.data.reviews import review_row  # noqa: E402
from text_envs.data.translation_pairs import lexicon_texts, translation_pair_row  # noqa: E402

SPECIALS = ["<pad>", "</s>", "<unk>"]
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]
PREFIXES = {"summarization": "summarize: ", "translation": "translate English to Syn: ", "dialogue": "dialogue: ",
            "en-zh": "translate English to Chinese: ", "fr-zh": "translate French to Chinese: ",
            "continuation": "continue: "}
DEFAULT_OUT = ROOT / "text_envs" / "assets" / "tokenizer"
CJK_PUNCTUATION = "[，。！？；：、（）「」《》]"
# The shipped tokenizer predates the English / French / Chinese triples (issue 17): the default build
# reproduces it. The next rebuild of the shipped tokenizer and model passes --with-zh-fr (and sets this True).
WITH_ZH_FR_DEFAULT = True
# Likewise the reviews of TextContinuation-v0 (issue 12): --with-reviews adds them as the task prompts them.
WITH_REVIEWS_DEFAULT = True


def training_texts(rows_per_level: int, with_zh_fr: bool = WITH_ZH_FR_DEFAULT,
                   with_reviews: bool = WITH_REVIEWS_DEFAULT) -> Iterator[str]:
    """Prompts and references of the first ``rows_per_level`` train rows of every task and difficulty
    (``with_zh_fr``: also the English / French / Chinese triples; ``with_reviews``: also the reviews)."""
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
            if with_reviews:
                review = review_row("train", i, level)
                yield PREFIXES["continuation"] + review["prompt"]
                yield review["continuation"]
            if not with_zh_fr:
                continue
            triple = translation_pair_row("train", i, level)["translation"]
            yield PREFIXES["en-zh"] + triple["en"]
            yield PREFIXES["fr-zh"] + triple["fr"]
            yield triple["zh"]
    if with_zh_fr:
        yield from lexicon_texts()  # every word form at least once (the rows above hold nearly all of them)


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def coverage(path: Path, rows: int = 1000) -> dict[str, float]:
    """How the tokenizer at ``path`` encodes the TEST split of the English / French / Chinese triples (all
    difficulties, ``rows`` each): tokens per Chinese character of the Chinese sentences, tokens per French
    word, the share of French words that are one piece, and how many tokens are byte fallbacks."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    n_bytes = 259  # ids below this are the specials and the byte tokens
    zh_tokens = zh_chars = fr_tokens = fr_words = fr_single = byte_tokens = total = 0
    for level in (1, 2, 3):
        for i in range(rows):
            triple = translation_pair_row("test", i, level)["translation"]
            zh_ids = tok.encode(triple["zh"], add_special_tokens=False).ids
            zh_tokens += len(zh_ids)
            zh_chars += sum(_is_cjk(c) for c in triple["zh"])
            for word in triple["fr"].split():
                ids = tok.encode(word, add_special_tokens=False).ids
                fr_tokens, fr_words, fr_single = fr_tokens + len(ids), fr_words + 1, fr_single + (len(ids) == 1)
                byte_tokens += sum(i < n_bytes for i in ids)
                total += len(ids)
            byte_tokens += sum(i < n_bytes for i in zh_ids)
            total += len(zh_ids)
    lexicon_bytes = sum(i < n_bytes for t in lexicon_texts() for i in tok.encode(t, add_special_tokens=False).ids)
    return {"zh_tokens_per_char": zh_tokens / zh_chars, "fr_tokens_per_word": fr_tokens / fr_words,
            "fr_single_piece_words": fr_single / fr_words, "byte_fallback_tokens": byte_tokens,
            "tokens": total, "lexicon_byte_fallback_tokens": lexicon_bytes}


def review_tokens_per_word(path: Path, rows: int = 1000) -> float:
    """Tokens per whitespace-separated word of the TEST split's reviews (all difficulties, ``rows`` each)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tokens = words = 0
    for level in (1, 2, 3):
        for i in range(rows):
            text = review_row("test", i, level)["text"]
            tokens += len(tok.encode(text, add_special_tokens=False).ids)
            words += len(text.split())
    return tokens / words


def build(out: Path, vocab_size: int, rows_per_level: int, with_zh_fr: bool = WITH_ZH_FR_DEFAULT,
          with_reviews: bool = WITH_REVIEWS_DEFAULT) -> Path:
    """Train the tokenizer and write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Always prepend one "▁" (even before a leading space, so the decoder's strip of one space is exact),
    # then split into words before each "▁".
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # Chinese has no spaces: full-width punctuation is split off so no piece spans a clause or sentence end
    # ("条。" and "条，" share "条"); the split only cuts, so decode(encode(text)) == text still holds.
    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        metaspace, pre_tokenizers.Split(Regex(CJK_PUNCTUATION), behavior="isolated"),
    ]) if with_zh_fr else metaspace
    tok.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS + BYTE_TOKENS,  # ids 0..258 in this order
        min_frequency=2,
        # with the triples: above the data's distinct characters (about 560), so none falls back to bytes
        limit_alphabet=1000 if with_zh_fr else 200,
        show_progress=False,
    )
    tok.train_from_iterator(training_texts(rows_per_level, with_zh_fr, with_reviews), trainer=trainer)
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
    parser.add_argument("--vocab-size", type=int, default=6000, help="target vocabulary size (default 6000)")
    parser.add_argument("--rows", type=int, default=10_000,
                        help="train rows per task and difficulty used as training text (default 10000)")
    parser.add_argument("--with-zh-fr", action=argparse.BooleanOptionalAction, default=WITH_ZH_FR_DEFAULT,
                        help="also train on the English / French / Chinese triples, keep every character as a "
                             "piece and split off Chinese punctuation (default: %(default)s, the shipped build)")
    parser.add_argument("--with-reviews", action=argparse.BooleanOptionalAction, default=WITH_REVIEWS_DEFAULT,
                        help="also train on the reviews of TextContinuation-v0 (default: %(default)s, the shipped "
                             "build)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = build(args.out, args.vocab_size, args.rows, args.with_zh_fr, args.with_reviews)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    vocab = len(json.loads(path.read_text("utf-8"))["model"]["vocab"])
    print(f"wrote {args.out} (vocabulary {vocab}, tokenizer.json {path.stat().st_size / 1e3:.0f} kB, "
          f"sha256 {digest}) in {seconds:.1f} s")
    cov = coverage(path)
    print(f"test split of the en/fr/zh triples: {cov['zh_tokens_per_char']:.3f} tokens per Chinese character, "
          f"{cov['fr_tokens_per_word']:.3f} tokens per French word ({cov['fr_single_piece_words']:.1%} one piece), "
          f"{cov['byte_fallback_tokens']} byte-fallback tokens of {cov['tokens']}; lexicon: "
          f"{cov['lexicon_byte_fallback_tokens']} byte-fallback tokens")
    print(f"test split of the reviews: {review_tokens_per_word(path):.3f} tokens per word")


if __name__ == "__main__":
    main()
