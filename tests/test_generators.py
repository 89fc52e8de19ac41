"""The embedded data generators: formats, determinism, disjoint splits, learnable and non-trivial references."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import generator_rows_digest

from text_envs.data import generators as g
from text_envs.errors import TextEnvsError

ROOT = Path(__file__).resolve().parents[1]
ROW_FNS = {"summarization": g.summarization_row, "dialogue": g.dialogue_row, "translation": g.translation_row}
LEVELS = (1, 2, 3)


def _check_format(task: str, row: dict) -> None:
    if task == "summarization":
        assert set(row) == {"document", "summary"}
        assert isinstance(row["document"], str) and isinstance(row["summary"], str)
    elif task == "dialogue":
        assert set(row) == {"dialog"}
        assert len(row["dialog"]) >= 3 and all(isinstance(t, str) and t for t in row["dialog"])
    else:
        assert set(row) == {"translation"} and set(row["translation"]) == set(g.TRANSLATION_LANGS)
        assert all(isinstance(v, str) and v for v in row["translation"].values())


@pytest.mark.parametrize("task", ROW_FNS)
@pytest.mark.parametrize("level", LEVELS)
def test_formats_and_split_sizes(task, level):
    fn = ROW_FNS[task]
    for split, size in g.SPLIT_SIZES.items():
        for i in (0, 1, size // 2, size - 1):
            _check_format(task, fn(split, i, level))
    assert fn("train", 3, level) == fn("train", np.int64(3), level)  # numpy indices work
    assert g.SPLIT_SIZES["train"] >= 10_000 and g.SPLIT_SIZES["validation"] >= 500


def test_same_rows_in_every_process():
    """Rows depend only on (task, split, index, difficulty): not on PYTHONHASHSEED or the process."""
    here = generator_rows_digest()
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); "
            "from helpers import generator_rows_digest; print(generator_rows_digest())")
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": ""}, cwd=ROOT)
        assert out.stdout.strip() == here


def test_rows_vary():
    for task, fn in ROW_FNS.items():
        for level in LEVELS:
            rows = [json.dumps(fn("train", i, level)) for i in range(500)]
            assert len(set(rows)) >= 490, (task, level)
        assert fn("train", 0, 1) != fn("train", 0, 2)  # the difficulty is part of the seed


def test_bad_arguments():
    with pytest.raises(TextEnvsError, match="Did you mean 'validation'") as err:
        g.summarization_row("valid", 0)
    assert "train" in str(err.value) and "test" in str(err.value)
    for bad in (-1, g.SPLIT_SIZES["validation"]):
        with pytest.raises(IndexError, match=r"expected 0 <= index < 1000"):
            g.dialogue_row("validation", bad)
    for bad in (0, 4, "2"):
        with pytest.raises(ValueError, match="expected difficulty 1, 2 or 3"):
            g.translation_row("train", 0, bad)
    with pytest.raises(TypeError, match="integer row index"):
        g.translation_row("train", 1.5)


@pytest.mark.parametrize("level", LEVELS)
def test_splits_are_disjoint(level):
    """No document, reply or source sentence of the first 2,000 train rows is in validation or test."""
    keys = {
        "summarization": lambda r: r["document"],
        "dialogue": lambda r: r["dialog"][-1],
        "translation": lambda r: r["translation"]["en"],
    }
    for task, fn in ROW_FNS.items():
        train = {keys[task](fn("train", i, level)) for i in range(2000)}
        for split in ("validation", "test"):
            held_out = {keys[task](fn(split, i, level)) for i in range(g.SPLIT_SIZES[split])}
            assert len(held_out) > 0.9 * g.SPLIT_SIZES[split], (task, split)  # and they are varied
            assert not train & held_out, (task, split, sorted(train & held_out)[:3])
    val = {g.translation_row("validation", i, level)["translation"]["en"] for i in range(1000)}
    test = {g.translation_row("test", i, level)["translation"]["en"] for i in range(1000)}
    assert not val & test


def _sentences(document: str) -> list[str]:
    return re.split(r"(?<=[.!?]) ", document)


@pytest.mark.parametrize("level", LEVELS)
def test_summaries_combine_facts_of_the_document(level):
    words, summary_words = [], []
    for i in range(300):
        row = g.summarization_row("train", i, level)
        doc, summary = row["document"], row["summary"]
        words.append(len(doc.split()))
        summary_words.append(len(summary.split()))
        for number in re.findall(r"\b\d+\b", summary):  # every number of the summary is stated in the document
            assert re.search(rf"\b{number}\b", doc), (number, row)
        capitalised = {w for w in re.findall(r"\b[A-Z][a-z]+\b", summary)} - {"The", "A", "Snow", "Police", "Plans",
                                                                               "Thieves", "Flooding", "Drivers"}
        assert all(w in doc for w in capitalised), (capitalised, row)  # names, towns, days
        assert summary not in _sentences(doc)  # never a copy of one sentence
    assert all(10 <= n <= 25 for n in summary_words)
    assert 40 <= min(words) and max(words) <= 220
    assert statistics.mean(words) > (55, 85, 125)[level - 1]  # longer documents at higher difficulty


def test_copying_one_sentence_scores_well_below_a_perfect_summary():
    """ROUGE-L F1 of the lead sentence and of the best single sentence (an oracle) stay under 0.5."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    for level in LEVELS:
        lead, best = [], []
        for i in range(150):
            row = g.summarization_row("validation", i, level)
            scores = [scorer.score(row["summary"], s)["rougeL"].fmeasure for s in _sentences(row["document"])]
            lead.append(scores[0])
            best.append(max(scores))
        assert statistics.mean(lead) < 0.45, (level, statistics.mean(lead))
        assert statistics.mean(best) < 0.5, (level, statistics.mean(best))
        assert scorer.score(row["summary"], row["summary"])["rougeL"].fmeasure == 1.0


@pytest.mark.parametrize("level", LEVELS)
def test_dialogue_reply_is_predictable_from_history(level):
    lengths = []
    for i in range(400):
        turns = g.dialogue_row("train", i, level)["dialog"]
        history, reply = " ".join(turns[:-1]), turns[-1]
        lengths.append(len(turns))
        assert len(turns) % 2 == 0  # the reply is spoken by the second speaker
        assert not any(re.match(r"^[AB]:", t) for t in turns)  # no speaker tags: the task adds them
        for number in re.findall(r"\d+(?::\d+)?", reply):  # times, prices, sizes, dates come from the history
            assert re.search(rf"\b{number}\b", history), (number, turns)
        assert reply not in turns[:-1]
    assert min(lengths) >= 4 and statistics.mean(lengths) > (3.9, 7, 9)[level - 1]


def test_dialogue_change_of_mind_is_followed():
    """At difficulty 3 a speaker may change the time; the reply confirms the new time, not the first one."""
    changed = 0
    for i in range(600):
        turns = g.dialogue_row("train", i, 3)["dialog"]
        m = re.search(r"(?:make it|come at) (\d+(?::\d+)? [ap]m) instead", turns[-2])
        if m:
            changed += 1
            assert m.group(1) in turns[-1], turns
    assert changed >= 10


def _syn_rules_hold(en: str, syn: str) -> None:
    lex = g.SYN_LEXICON
    en_words, syn_words = en.rstrip(".").lower().split(), syn.rstrip(".").lower().split()
    assert re.findall(r"\d+", en) == re.findall(r"\d+", syn)  # numbers kept as digits, same order
    assert not {w for w in syn_words if not w.isdigit()} & set(en_words)  # no word is copied
    for w in en_words:  # a consistent lexicon: every base form shows up as its syn word (maybe inflected)
        if w in lex:
            assert any(s.startswith(lex[w]) for s in syn_words), (w, en, syn)
    verbs = {lex[v[0]] for v in g._VERBS_THING + g._VERBS_BEING + g._VERBS_INTR}
    last = syn_words[-1]
    assert any(last in (v, v + g._SYN_PAST, v + g._SYN_FUTURE) for v in verbs), (en, syn)  # verb-final
    if "will" in en_words:  # English "will" has no word of its own: the verb takes the future suffix
        assert any(w.endswith(g._SYN_FUTURE) and w[: -len(g._SYN_FUTURE)] in verbs for w in syn_words)


@pytest.mark.parametrize("level", LEVELS)
def test_translation_follows_the_syn_rules(level):
    for i in range(400):
        pair = g.translation_row("train", i, level)["translation"]
        en, syn = pair["en"], pair["syn"]
        assert en != syn and en.endswith(".") and syn.endswith(".")
        assert (en[0].isupper() or en[0].isdigit()) and (syn[0].isupper() or syn[0].isdigit())
        _syn_rules_hold(en, syn)


def test_syn_morphology_examples():
    lex = g.SYN_LEXICON
    hits = {"plural": 0, "past": 0, "adj_after_noun": 0}
    for i in range(600):
        pair = g.translation_row("train", i, 2)["translation"]
        en, syn = pair["en"].rstrip(".").lower().split(), pair["syn"].rstrip(".").lower().split()
        if "dogs" in en:
            assert lex["dog"] + g._SYN_PLURAL in syn
            hits["plural"] += 1
        if "yesterday" in en:
            assert syn[-1].endswith(g._SYN_PAST)
            hits["past"] += 1
        for adj in ("red", "old", "happy"):
            if adj in en:
                j = en.index(adj)
                noun = en[j + 1]
                if noun in lex:  # singular noun right after the adjective in English: right before it in syn
                    assert syn[syn.index(lex[adj]) - 1] == lex[noun]
                    hits["adj_after_noun"] += 1
    assert all(n >= 3 for n in hits.values()), hits


def test_vocabulary_is_modest():
    vocab: set[str] = set()
    for i in range(1500):
        for level in LEVELS:
            row = g.summarization_row("train", i, level)
            vocab.update(re.findall(r"[a-z']+", (row["document"] + row["summary"]).lower()))
            vocab.update(re.findall(r"[a-z']+", " ".join(g.dialogue_row("train", i, level)["dialog"]).lower()))
            pair = g.translation_row("train", i, level)["translation"]
            vocab.update(re.findall(r"[a-z']+", " ".join(pair.values()).lower()))
    assert 1000 < len(vocab) < 5000, len(vocab)
