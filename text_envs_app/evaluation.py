"""Evaluating a policy on a held-out split and reporting it: the metric table (:func:`evaluate_policy_on_split`),
the sampled reward, the KL to the starting model and its perplexity of the texts, the Markdown table with its notes
(:func:`format_table`), the data's description (:func:`describe_data`) and ``samples.md`` (:func:`write_samples`)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from text_envs_app.config import FRONTIER_KEYS, HACKING_METRICS, TrainConfig, table_metrics

N_SAMPLES = 20  # texts shown in samples.md


def evaluate_policy_on_split(policy: Any, cfg: TrainConfig, reference: Any = None, progress: bool = False,
                             per_example_metrics: bool = False) -> tuple[dict[str, float], list]:
    """The policy's texts for the first ``eval_examples`` of the held-out split, decoded as ``cfg.eval_decoding``
    says (greedy, or one sampled text per prompt), the metric table and the mean KL (nats per text) of the policy to
    ``reference`` (the starting model) along those texts; then the other decoding's reward (and KL) as
    ``greedy_reward``/``greedy_kl`` or ``sampled_reward``/``sampled_kl``. ``progress`` draws a bar of finished
    texts; ``per_example_metrics`` scores each text on its own too. Sampling is seeded by ``cfg.seed`` and the
    random states are restored afterwards, so an evaluation does not change a training run."""
    main = cfg.decoding()
    other = "greedy" if main == "sampled" else "sampled"  # best-of-n: beside the single samples it picks from
    result = _decode(policy, cfg, main, table_metrics(cfg.env), progress, per_example_metrics)
    table = MetricTable(result.table)
    table.language = result.language
    table.decoding, table.seed, table.n, table.split = main, cfg.seed, cfg.best_of_n, cfg.eval_split
    table.tokenization = {k: m.group(1) for k, sig in result.signatures.items() if (m := _SIG_TOK.search(sig))}
    table.update(text_hacking_metrics(cfg, result.generations))  # diversity, validity, a second sentiment judge
    extra = _decode(policy, cfg, other, (), False, False)
    table[f"{other}_reward"] = float(extra.table["reward"])
    if reference is not None:
        table["kl"] = sequence_kl(policy, reference, cfg, result.generations)
        table[f"{other}_kl"] = sequence_kl(policy, reference, cfg, extra.generations)
        table["start_ppl"] = start_model_ppl(reference, cfg, result.generations)
    return table, result.generations


def check_eval_split(cfg: TrainConfig) -> None:
    """Build ``cfg``'s evaluation split once, right after :meth:`TrainConfig.validate`: a missing field, a malformed
    or too small file, an unreachable hub stop here, before an output folder is made or a model is loaded."""
    import gymnasium as gym

    gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs()).close()
    second = cfg.generalisation_split()
    if second is not None and second != cfg.eval_split:  # --ood-split: a wrong name stops the run here too
        gym.make(cfg.env, split=second, **cfg.env_kwargs()).close()


def second_split_config(cfg: TrainConfig) -> TrainConfig | None:
    """``cfg`` evaluating its second held-out split (:meth:`TrainConfig.generalisation_split`, TextContinuation-v0's
    ``"ood"`` openings by default) instead of ``eval_split``; None when there is none (or it is ``eval_split``)."""
    split = cfg.generalisation_split()
    if split is None or split == cfg.eval_split:
        return None
    return dataclasses.replace(cfg, eval_split=split)


def evaluate_start_on_second_split(cfg: TrainConfig, start_policy: Any, start_lm: Any,
                                   log: Callable[[str], None] = print,
                                   progress: bool = False) -> dict[str, float] | None:
    """The start model's table on the second held-out split (:func:`second_split_config`), as the start column of
    the main split is made (KL 0 to itself, ``start_ppl`` of its texts); None when there is no second split.

    :param start_policy: the policy before training (the run's own, evaluated before it learns).
    """
    other = second_split_config(cfg)
    if other is None:
        return None
    log(f"evaluating the starting model on {eval_count(other):,} {other.eval_split} examples"
        + (" (openings worded unlike the training prompts) ..." if other.eval_split == "ood" else " ..."))
    start, generations = evaluate_policy_on_split(start_policy, other, progress=progress)
    start["kl"] = start["greedy_kl" if other.decoding() == "sampled" else "sampled_kl"] = 0.0
    start["start_ppl"] = start_model_ppl(start_lm, other, generations)
    return dict(start)


def env_reward_name(cfg: TrainConfig) -> str | None:
    """The name of the reward ``cfg``'s env pays (``cfg.reward``, or the env's default); None for a per-token task."""
    import gymnasium as gym

    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs())
    try:
        reward = env.unwrapped.reward
        return reward.name if reward is not None else None
    finally:
        env.close()


def text_hacking_metrics(cfg: TrainConfig, generations: list[dict[str, Any]]) -> dict[str, float]:
    """:func:`text_envs.diversity.hacking_metrics` of the generated texts (distinct-n, self-BLEU, length,
    repeated n-grams; validity on the embedded tasks that have a check; AFINN's judgement for a VADER reward)."""
    from text_envs.diversity import hacking_metrics

    return hacking_metrics([g["prediction"] for g in generations], [g["prompt"] for g in generations], cfg.env,
                           env_reward_name(cfg))


def _decode(policy: Any, cfg: TrainConfig, decoding: str, metrics: Sequence[str], progress: bool,
            per_example_metrics: bool) -> Any:
    """``text_envs.evaluation.evaluate`` of the held-out split, greedy or sampled, random states kept."""
    import random

    import torch as th

    from text_envs.evaluation import evaluate

    states = random.getstate(), np.random.get_state(), th.get_rng_state()
    try:
        return evaluate(cfg.env, policy, split=cfg.eval_split, n_examples=cfg.eval_examples, decoding=decoding,
                        n=cfg.best_of_n if decoding == "best-of-n" else 1, metrics=metrics,
                        batch_size=min(32, cfg.eval_examples),
                        seed=cfg.seed, env_kwargs=cfg.env_kwargs(), progress=progress,
                        per_example_metrics=per_example_metrics)
    finally:  # sampling reseeds torch: the run goes on as if nothing had been evaluated
        random.setstate(states[0])
        np.random.set_state(states[1])
        th.set_rng_state(states[2])


def sampled_reward(policy: Any, cfg: TrainConfig) -> tuple[float, list[dict[str, Any]]]:
    """Mean env reward of one text sampled from the policy (its own distribution, the one RL maximizes) for each
    of the first ``eval_examples`` held-out prompts, seeded by ``cfg.seed``, and those generations; the random
    states are restored afterwards."""
    result = _decode(policy, cfg, "sampled", (), False, False)
    return float(result.table["reward"]), result.generations


def start_model_ppl(reference_lm: Any, cfg: TrainConfig, generations: list[dict[str, Any]]) -> float:
    """The starting model's perplexity of the generated texts given their prompts (a fluency figure: it
    rises when the policy drifts into text the start model finds unlikely; see ``sb3_ext.fluency``)."""
    import gymnasium as gym

    from lm_core.fluency import start_model_perplexity

    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs())
    return start_model_perplexity(reference_lm, env, generations)


def sequence_kl(policy: Any, reference_lm: Any, cfg: TrainConfig, generations: list[dict[str, Any]]) -> float:
    """Mean over texts of sum_t KL(pi(.|s_t) || pi_ref(.|s_t)), exact over the vocabulary, along each text: the
    token ids the policy generated (``generation["generated_ids"]``; the text re-tokenized when absent), the
    trained distribution at the policy's temperature without a top-k/top-p support; batched teacher forcing
    (:func:`text_envs_app.text_kl.sequence_kls`)."""
    import gymnasium as gym

    from text_envs_app.text_kl import sequence_kls

    if not generations:
        return 0.0
    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs()).unwrapped
    tok = env.tokenizer
    token_lists = []
    for gen in generations:
        if gen.get("generated_ids"):  # the tokens the policy wrote (decoding then re-tokenizing may differ)
            tokens = [int(t) for t in gen["generated_ids"]]
        else:  # a generation without its ids: the text re-tokenized, then EOS
            tokens = tok(gen["prediction"], add_special_tokens=False)["input_ids"][: env.max_new_tokens - 1]
            tokens = list(tokens) + [env.eos_token_id]
        if tokens and tokens[-1] == env.eos_token_id:  # sequence_kls writes the EOS back (unless at the budget)
            tokens = tokens[:-1]
        token_lists.append(tokens)
    kls = sequence_kls(policy.model, reference_lm, env, [gen["prompt"] for gen in generations], token_lists,
                       temperature=policy.temperature)
    return float(kls.mean())


_SIG_TOK = re.compile(r"(?:^|\|)tok:([^|]+)")


class MetricTable(dict):
    """A metric table ``{metric: value}`` that also remembers the target language and the tokenization each
    metric ran with (``{"bleu": "zh", "rouge-l": "unicode"}``, from the metrics' signatures); a plain dict
    for everything else (JSON, comparisons)."""

    language: str | None = None
    tokenization: dict[str, str] = {}
    decoding: str = "greedy"
    seed: int = 0  # of the sampled decodings
    n: int = 1  # of best-of-n
    split: str = "test"


def tokenization_note(rows: dict[str, dict[str, float]]) -> str:
    """One line naming the tokenization the table's metrics ran with (from any :class:`MetricTable` column),
    e.g. ``Tokenization (target language zh): bleu zh; rouge-1, rouge-2, rouge-l, meteor unicode.``"""
    table = next((r for r in rows.values() if getattr(r, "tokenization", None)), None)
    if table is None:
        return ""
    groups: dict[str, list[str]] = {}
    for metric, tok in table.tokenization.items():
        groups.setdefault(tok, []).append(metric)
    where = f" (target language {table.language})" if table.language else ""
    return f"Tokenization{where}: " + "; ".join(f"{', '.join(ms)} {tok}" for tok, ms in groups.items()) + "."


def format_table(rows: dict[str, dict[str, float]], digits: int = 4, notes: bool = True) -> str:
    """A Markdown table with one column per row name (e.g. before / after), then (``notes``) the lines saying how
    the texts were decoded, the tokenization the metrics ran with (:func:`tokenization_note`) and what the
    frontier rows are, when the columns carry them."""
    names = list(rows)
    keys = [k for k in ("rouge-1", "rouge-2", "rouge-l", "bleu", "meteor", "sentiment-classifier", "reward", "kl",
                        "kl_bound", "start_ppl", "gen_len", "greedy_reward", "greedy_kl", "sampled_reward",
                        "sampled_kl", *HACKING_METRICS, *FRONTIER_KEYS)
            if any(k in r for r in rows.values())]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key in keys:
        cells = [f"{rows[n][key]:.{digits}f}" if key in rows[n] else "" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    if not notes:
        return "\n".join(lines)
    notes = [n for n in (decoding_note(rows), tokenization_note(rows), frontier_note(rows)) if n]
    return "\n".join(lines) + "".join(f"\n\n{n}" for n in notes)


def frontier_note(rows: dict[str, dict[str, float]]) -> str:
    """One line saying what the frontier rows are, when the table has them (text_envs_app.frontier)."""
    if not any("gain_share" in r or "optimum_J" in r for r in rows.values()):
        return ""
    return ("Frontier rows (sampled texts, J = reward - kl_coef * KL): optimum_* is the optimum of J over policies "
            "near the start model (pi0 exp(r / kl_coef), from the start model's samples on the same prompts); the "
            "start column's model_J is its mean reward over those samples; model_reward: the trained model's mean "
            "reward over as many samples per prompt and model_kl its mean exact KL along them (both in its J); "
            "best_of_n_at_kl is best-of-n's reward at the model's KL; gain_share = (J(model) - J(start)) / "
            "(J* - J(start)) with J* = optimum_J_corrected (optimum_J less its small-sample bias, by the "
            "jackknife). `text-envs frontier` gives the whole curve.")


def decoding_note(rows: dict[str, dict[str, float]]) -> str:
    """One line saying how the texts of each of the table's rows were decoded (greedy; sampled with its seed;
    best-of-n with its n), naming only rows the table has."""
    table = next((r for r in rows.values() if isinstance(r, MetricTable)), None)
    if table is None:
        return ""
    has = [k for k in ("kl", "start_ppl", "kl_bound", "greedy_reward", "greedy_kl", "sampled_reward", "sampled_kl",
                       *FRONTIER_KEYS) if any(k in r for r in rows.values())]
    seed, prompt = f"seed {table.seed}", f"{table.split} prompt"
    main = {"greedy": "greedy",
            "sampled": f"one sampled per {prompt} ({seed})",
            "best-of-n": f"best-of-n, the highest-reward of n={table.n} samples per {prompt} ({seed})"}[table.decoding]
    along = ", ".join(["the metrics"] + [k for k in ("kl", "start_ppl") if k in has])
    parts = [f"Texts: {main}; {along} along them"]
    if "kl_bound" in has:
        parts.append(f"kl_bound: log n - (n-1)/n with n={table.n}, the bound on best-of-n's KL to the policy it "
                     "samples")
    for other, what in (("greedy", "the greedy texts"),
                        ("sampled", f"one text sampled per {prompt} ({seed}"
                                    + (", the first of the n)" if table.decoding == "best-of-n" else ")"))):
        keys = [k for k in (f"{other}_reward", f"{other}_kl") if k in has]
        if keys:
            parts.append(f"{' and '.join(keys)}: {what}")
    frontier = [k for k in FRONTIER_KEYS if k in has]
    if frontier:
        parts.append(f"{', '.join(frontier)}: against texts the start model sampled per prompt (results.json "
                     "\"frontier\")")
    return "; ".join(parts) + "."


def eval_count(cfg: TrainConfig) -> int:
    """How many examples an evaluation of ``cfg`` scores: ``eval_examples``, or fewer when the split is smaller."""
    import gymnasium as gym

    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs())
    n = int(env.unwrapped.num_examples)
    env.close()
    return min(n, cfg.eval_examples)


def describe_data(cfg: TrainConfig, log, out: Path | None = None) -> dict[str, Any] | None:
    """Say where the train and evaluation rows come from; for a single local file split by the seeded rule,
    print each split's size and write which rows went where to ``out/splits.json`` (1-based row numbers in
    file order). Warns loudly when the evaluation split is small."""
    from text_envs.data.sources import SplitFile

    data = cfg.data_spec()
    info: dict[str, Any] | None = None
    if isinstance(data, SplitFile):
        n_rows, parts = data.split_rows()
        info = {"file": data.path, "rows": n_rows, "seed": data.seed,
                "rule": "rows shuffled by numpy.random.default_rng(seed).permutation(rows); the first "
                        "round(0.1 * rows) (at least 1) are test, the next round(0.1 * rows) (at least 1) "
                        "validation, the rest train; each split keeps the file's order",
                **{name: [int(i) + 1 for i in parts[name]] for name in ("train", "validation", "test")}}
        where = f"; the row numbers of each are in {out / 'splits.json'}" if out is not None else ""
        log(f"data: {data.path}: {n_rows:,} rows, split by a seeded rule (--split-seed {data.seed}) into train "
            f"{len(parts['train']):,}, validation {len(parts['validation']):,} and test {len(parts['test']):,} "
            f"rows{where}")
        if out is not None:
            (out / "splits.json").write_text(  # one line per key: the row lists stay readable
                "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in info.items()) + "\n}\n")
    elif isinstance(data, dict) and len(set(data.values())) == 1:
        log(f"data: every row of {next(iter(data.values()))}")
    elif isinstance(data, dict):
        log("data: " + ", ".join(f"{split} rows from {path}" for split, path in data.items()))
    n_eval = eval_count(cfg)
    if n_eval < cfg.eval_examples:
        log(f"note: the {cfg.eval_split} split has only {n_eval:,} examples, fewer than the {cfg.eval_examples:,} "
            f"asked: evaluating all {n_eval:,}")
    if n_eval < 20:
        log(f"WARNING: metrics on {n_eval} {cfg.eval_split} example{'s' if n_eval > 1 else ''} are noisy: a "
            "difference between two models may be chance")
    return info


def write_samples(path: Path, generations: list[dict[str, Any]], start_samples: list[dict[str, Any]],
                  name: str) -> None:
    """samples.md: for each prompt, the starting model's text, the trained model's text and the reference."""
    start = {s["example_index"]: s["prediction"] for s in start_samples}
    with open(path, "w") as f:
        for g in generations:
            f.write(f"**prompt**: {g['prompt']}\n\n")
            if g.get("example_index") in start:
                f.write(f"**start model**: {start[g['example_index']]}\n\n")
            f.write(f"**{name}**: {g['prediction']}\n\n")
            if g.get("references"):
                f.write(f"**reference**: {g['references'][0]}\n\n")
            f.write("---\n\n")
