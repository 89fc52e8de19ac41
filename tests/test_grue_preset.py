"""The grue-imdb bench preset (text_envs_app/grue.py), run whole on tiny offline stand-ins of its three hub names:
a tiny GPT-2 and a tiny DistilBERT classifier built from configs and saved with save_pretrained, and a local
IMDB-format file."""

from __future__ import annotations

import csv
import json
import math

import pytest

from text_envs.errors import TextEnvsError
from text_envs_app import grue
from text_envs_app.bench import BENCH_PRESETS, run_benchmark


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """(policy folder, reward-model folder, IMDB-format .jsonl) built offline."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    from text_envs.data.reviews import review_row
    from text_envs.tokenization import load_tokenizer

    root = tmp_path_factory.mktemp("grue")
    tok = load_tokenizer()
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=128,
                                        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                        bos_token_id=tok.eos_token_id))
    policy.save_pretrained(root / "gpt2-imdb")
    tok.save_pretrained(root / "gpt2-imdb")
    classifier = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(tok), dim=32, n_layers=1, n_heads=2, hidden_dim=64, num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1}, pad_token_id=tok.pad_token_id))
    classifier.save_pretrained(root / "distilbert-imdb")
    tok.save_pretrained(root / "distilbert-imdb")
    data = root / "imdb.jsonl"
    with open(data, "w") as f:  # IMDB's format: {"text", "label"}, <br /> line breaks included
        for i in range(40):
            row = review_row("train", i, 2)
            f.write(json.dumps({"text": row["prompt"] + "<br /><br />" + row["continuation"], "label": row["label"]}) + "\n")
    return root / "gpt2-imdb", root / "distilbert-imdb", data


def test_preset_names_and_targets():
    preset = BENCH_PRESETS["grue-imdb"]
    assert (preset["model"], preset["dataset"]) == ("lvwerra/gpt2-imdb", "imdb")
    (task,) = preset["envs"]
    assert task.env_kwargs["reward"]["model"] == "lvwerra/distilbert-imdb"
    assert (task.env_kwargs["max_prompt_tokens"], task.env_kwargs["max_new_tokens"]) == (64, 48)
    assert grue.PUBLISHED["PPO (RL4LMs)"] == {"sentiment": 0.605, "perplexity": 33.5}
    assert "| NLPO (RL4LMs) | 0.637 | 32.7 |" in grue.targets_markdown()


def test_overrides_are_checked():
    preset = BENCH_PRESETS["grue-imdb"]
    assert grue.override_preset(preset, {"model": None}) == preset  # None: the preset's own
    with pytest.raises(TextEnvsError, match="unknown preset override"):
        grue.override_preset(preset, {"modle": "x"})
    with pytest.raises(TextEnvsError, match="positive integer"):
        grue.override_preset(preset, {"steps": 0})
    with pytest.raises(TextEnvsError, match="has none"):  # the embedded presets keep the shipped model
        grue.override_preset(BENCH_PRESETS["rl-small"], {"model": "some/model"})
    with pytest.raises(TextEnvsError, match="learned reward"):
        grue.override_preset(BENCH_PRESETS["rl-small"], {"reward_model": "some/classifier"})
    new = grue.override_preset(preset, {"reward_model": "/tmp/clf"})
    assert new["envs"][0].env_kwargs["reward"]["model"] == "/tmp/clf"
    assert preset["envs"][0].env_kwargs["reward"]["model"] == grue.REWARD_MODEL  # the registered preset is untouched


def test_cli_passes_the_overrides(monkeypatch):
    import text_envs_app.bench as bench
    from text_envs_app.cli import main

    seen = {}
    monkeypatch.setattr(bench, "run_benchmark", lambda *a, **k: seen.update(args=a, **k))
    assert main(["bench", "--preset", "grue-imdb", "--model", "m", "--reward-model", "r", "--dataset", "d.jsonl",
                 "--out", "unused"]) == 0
    assert seen["args"][0] == "grue-imdb"
    assert seen["overrides"] == {"model": "m", "reward_model": "r", "dataset": "d.jsonl"}


def test_preset_runs_offline_on_stand_ins(stand_ins, tmp_path):
    policy, classifier, data = stand_ins
    out = tmp_path / "bench"
    rows = run_benchmark("grue-imdb", str(out), seeds=1, reps=200, log=lambda _: None, overrides=dict(
        model=str(policy), reward_model=str(classifier), dataset=str(data), steps=64, n_envs=4, n_steps=8,
        eval_examples=4))
    assert [r["method"] for r in rows] == ["sampled", "ppo", "nlpo"]
    assert [r["kl_coef"] for r in rows] == [None, 0.1, 0.1]
    for r in rows:
        assert 0.0 <= r["reward"] <= 1.0, r  # P(positive) of the stand-in classifier
        assert math.isfinite(r["start_ppl"]) and r["start_ppl"] > 1.0, r
        assert r["decoding"] == "sampled"
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # the start model itself
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    assert "grue-imdb" in (out / "results.md").read_text()
