"""TextContinuation-v0's ``split="ood"``: review openings worded unlike the training generator's, and the main job's
second table on them (text_envs.data.reviews_ood, text_envs_app.evaluation.evaluate_generalisation)."""

from __future__ import annotations

import re

import gymnasium as gym
import pytest

import text_envs  # noqa: F401  (registers the envs)
from text_envs.data.reviews import review_grammar, review_row
from text_envs.data.reviews_ood import OOD_SIZE, ood_review_grammar, ood_review_row, review_row_with_ood
from text_envs.errors import TextEnvsError

WORD = re.compile(r"[A-Za-z']+")


def ood_prompts(difficulty: int = 1) -> list[str]:
    return [ood_review_row(i, difficulty)["prompt"] for i in range(OOD_SIZE)]


def literal_fragments(template: str) -> list[str]:
    """The fixed wording of a template: its text between placeholders, as lower-case word runs."""
    return [" ".join(WORD.findall(part.lower())) for part in re.split(r"\{[^}]*\}", template)]


def test_the_split_loads_with_references_and_both_labels():
    env = gym.make("TextContinuation-v0", split="ood").unwrapped
    assert env.num_examples == OOD_SIZE
    prompt, refs = env.example_text(7)
    assert prompt == "continue: " + ood_review_row(7)["prompt"] and list(refs) == [ood_review_row(7)["continuation"]]
    rows = [ood_review_row(i) for i in range(OOD_SIZE)]
    assert len({r["prompt"] for r in rows}) == OOD_SIZE  # no opening twice
    assert 0.4 < sum(r["label"] for r in rows) / OOD_SIZE < 0.6
    assert {r["domain"] for r in rows} == {"film", "restaurant", "product"}
    assert review_row_with_ood("ood", 3, 2) == ood_review_row(3, 2) != ood_review_row(3, 1)
    assert review_row_with_ood("test", 3) == review_row("test", 3)
    obs, _ = gym.make("TextContinuation-v0", split="ood").reset(seed=0)
    assert obs["prompt_mask"].sum() > 0


def test_bad_split_and_index_say_what_is_expected():
    with pytest.raises(TextEnvsError, match="ood"):
        gym.make("TextContinuation-v0", split="oood")
    with pytest.raises(IndexError, match="0 <= index < 400"):
        ood_review_row(OOD_SIZE)
    with pytest.raises(TextEnvsError, match="difficulty"):
        ood_review_row(0, 4)


def test_no_template_or_vocabulary_shared_with_the_training_generator():
    from text_envs.validity import review_validity

    train, ood = review_grammar(), ood_review_grammar()
    prompts = ood_prompts(1) + ood_prompts(3)
    # the training grammar parses none of the openings (it parses its own: see tests of text_envs.validity)
    assert all(review_validity(p, "The food was great.") is None for p in prompts)
    assert review_validity(review_row("train", 0)["prompt"], review_row("train", 0)["continuation"]) is not None
    # no fixed wording of three words or more of a training opening or detail appears in an ood opening
    lowered = [" ".join(WORD.findall(p.lower())) for p in prompts]
    train_templates = [t for ts in train["openings"].values() for t in ts] + \
                      [d for ds in train["details"].values() for d in ds]
    for template in train_templates:
        for fragment in literal_fragments(template):
            if len(fragment.split()) >= 3:
                assert not any(fragment in p for p in lowered), (template, fragment)
    # disjoint pools: names, companions, towns; no weekday names
    for domain, names in ood["names"].items():
        assert not set(names) & set(train["names"][domain]), domain
    assert not set(ood["companions"]) & set(train["companions"])
    assert not set(ood["towns"]) & set(train["towns"])
    words = {w for p in prompts for w in WORD.findall(p)}
    assert not words & set(train["days"])
    assert not {a for pool in ood["adjectives"].values() for a in pool} & \
        {a for pool in train["adjectives"].values() for a in pool}


def test_the_main_job_default_evaluates_the_ood_split_beside_test():
    from text_envs_app.config import TrainConfig

    assert TrainConfig().generalisation_split() == "ood"
    assert TrainConfig(ood_split="none").generalisation_split() is None
    assert TrainConfig(env="TextSummarization-v0").generalisation_split() is None
    assert TrainConfig(dataset="reviews.jsonl").generalisation_split() is None  # own data: no ood split of it
    with pytest.raises(TextEnvsError, match="--ood-split"):
        TrainConfig(ood_split=" ").validate()


def test_evaluation_on_the_ood_split_runs_and_places_the_model():
    import copy

    import torch as th

    from sb3_ext import LLMPolicy
    from text_envs_app.config import TrainConfig
    from text_envs_app.evaluation import check_eval_split, evaluate_start_on_second_split
    from text_envs_app.generalisation import evaluate_generalisation

    th.set_num_threads(1)
    cfg = TrainConfig(eval_examples=3, frontier_samples=3, max_new_tokens=8, kl_coef=0.5)
    check_eval_split(cfg)
    env = gym.make(cfg.env, split="ood", **cfg.env_kwargs())
    start = LLMPolicy(env.observation_space, env.action_space, lambda _: 0.0, tokenizer=env.unwrapped.tokenizer)
    trained = copy.deepcopy(start)
    th.manual_seed(0)
    with th.no_grad():  # a policy that differs from the start: its KL on the ood prompts is positive
        for p in trained.model.parameters():
            p.add_(0.05 * th.randn_like(p))
    logged: list[str] = []
    start_table = evaluate_start_on_second_split(cfg, start, start.model, log=logged.append)
    assert start_table["kl"] == 0 and start_table["start_ppl"] > 1
    out = evaluate_generalisation(cfg, start_table, {"ppo": trained}, start.model, log=logged.append)
    assert out["split"] == "ood" and set(out["columns"]) == {"start", "ppo"}
    ppo = out["columns"]["ppo"]
    assert ppo["kl"] > 0 and out["columns"]["start"]["kl"] == 0
    assert all(k in ppo for k in ("reward", "gain_share", "model_J", "best_of_n_at_kl", "distinct-2"))
    assert out["frontier"]["prompts"] == 3 and out["frontier"]["samples"] == 3
    assert "3 ood prompts" in out["table"] and all(f"| {k} |" in out["table"] for k in ("reward", "kl", "gain_share"))
    assert sum("ood" in line for line in logged) >= 2
    none = TrainConfig(ood_split="none")
    assert evaluate_start_on_second_split(none, start, start.model) is None
    assert evaluate_generalisation(none, None, {"ppo": trained}, start.model) is None
    with pytest.raises(TextEnvsError):  # a split the env does not have stops before any model is loaded
        check_eval_split(TrainConfig(ood_split="elsewhere"))


@pytest.mark.expensive
def test_train_reports_the_ood_split_beside_test(tmp_path):
    """A tiny ``text-envs train``: results.md has the second table, results.json its columns and frontier."""
    import json

    from text_envs_app.cli import main

    out = tmp_path / "run"
    assert main(["train", "--steps", "64", "--n-envs", "8", "--n-steps", "8", "--eval-examples", "3",
                 "--frontier-samples", "2", "--curve-points", "0", "--max-new-tokens", "8", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    second = result["generalisation"]
    assert second["split"] == "ood" and set(second["columns"]) == {"start", "rloo"}  # the main job's default
    assert second["frontier"]["prompts"] == 3 and "gain_share" in second["columns"]["rloo"]
    assert "3 ood prompts" in (out / "results.md").read_text()


def test_the_guide_example_opens_the_ood_split(tmp_path):
    """docs/examples/ood_split.py, the example of docs/guides/main_job.md, in a fresh interpreter."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "docs" / "examples" / "ood_split.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("400 ("), proc.stdout[:200]


def word_trigrams(text: str) -> set[tuple[str, ...]]:
    words = WORD.findall(text.lower())
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def test_the_varied_training_openings_share_nothing_with_ood():
    """TextContinuation-v0's varied_openings (text_envs.data.reviews_varied) trains on a second family of openings:
    the ood split stays unseen, with no template, no run of three words and no pool entry in common."""
    from text_envs.data.reviews_varied import varied_review_grammar, varied_review_row

    ood, varied = ood_review_grammar(), varied_review_grammar()
    ood_texts = [p for d in (1, 2, 3) for p in ood_prompts(d)]
    varied_texts = [varied_review_row(i, d)["prompt"] for d in (1, 2, 3) for i in range(3000)]
    ood_trigrams = set().union(*map(word_trigrams, ood_texts))
    shared = ood_trigrams & set().union(*map(word_trigrams, varied_texts))
    assert not shared, sorted(shared)[:10]

    def entries(grammar: dict) -> set[str]:
        pools = [*grammar["names"].values(), grammar["companions"], grammar["towns"], grammar["times"],
                 *grammar["details"].values()]
        return {e.lower() for pool in pools for e in pool}

    ood_entries, varied_entries = entries(ood), entries(varied)
    assert not ood_entries & varied_entries
    lowered_varied, lowered_ood = [p.lower() for p in varied_texts], [p.lower() for p in ood_texts]
    for entry in ood_entries:
        assert not any(entry in p for p in lowered_varied), entry
    for entry in varied_entries:
        assert not any(entry in p for p in lowered_ood), entry
    # the training generator's own openings are not among the family's (it is another wording of reviews)
    assert not any(varied_review_row(i)["prompt"] == review_row("train", i)["prompt"] for i in range(500))
