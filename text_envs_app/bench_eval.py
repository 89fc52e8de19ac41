"""The bench's evaluation on many sampled texts: ``S`` texts per prompt on ``N`` test prompts, and the start model's
own samples (the ``sampled`` and ``best-of-n`` rows, and best-of-n at a trained model's KL).

Used by the presets that set ``eval_samples`` (``rl-small``, ``rl-full``, ``hack``); the others keep one text per
prompt (:func:`text_envs_app.bench.evaluate_run`). Every row is scored on ``N x S`` texts so that its mean reward
has an evaluation noise (:func:`text_envs_app.bench_stats.clustered_standard_error`, ``eval_se``) well below the
differences between methods, and its corpus metrics (distinct-n, self-BLEU) are read over corpora of the same size.

Texts are pure samples of each model's distribution (:func:`text_envs_app.frontier.sample_texts`: the logits
over the temperature, tokens beyond the env's vocabulary never drawn): for NLPO this is the trained model without
its top-p mask; :func:`policy_masked_samples` samples through the policy itself (the mask applied) for NLPO's
masked row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError
from text_envs_app.bench_stats import clustered_standard_error
from text_envs_app.text_kl import sequence_kls

SEED_STRIDE = 1_000  # seeds of a run's k-th sampled pass: seed + k * SEED_STRIDE (distinct for up to 1,000 seeds)


def eval_env(cfg: Any) -> Any:
    """The unwrapped env of ``cfg``'s evaluation split (its prompts, tokenizer, budget and reward), refused for a
    task without a text reward."""
    import gymnasium as gym

    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs()).unwrapped
    if env.reward is None:
        env.close()
        raise TextEnvsError(f"the bench's sampled evaluation (a preset with eval_samples) scores whole texts, but "
                            f"{cfg.env} pays its reward per token: use a preset without eval_samples (small, full) "
                            "for it.")
    return env


def sample_rows(model: Any, cfg: Any, env: Any, samples: int, seed: int) -> list[dict[str, Any]]:
    """``samples`` texts of ``model`` for each of the first ``cfg.eval_examples`` prompts of ``env``, scored by its
    reward (:func:`text_envs_app.frontier.sample_texts`, seeded by ``seed``)."""
    from text_envs_app.frontier import sample_texts

    n = min(int(env.num_examples), int(cfg.eval_examples))
    return sample_texts(model, env, range(n), samples, cfg.temperature, cfg.top_k, seed)


def policy_masked_samples(policy: Any, cfg: Any, env: Any, samples: int, seed: int) -> list[dict[str, Any]]:
    """``samples`` texts per prompt sampled through ``policy.predict`` (NLPO's top-p mask applied), in the rows'
    format of :func:`sample_rows`; pass ``k`` is seeded ``seed + k * SEED_STRIDE``."""
    from text_envs.evaluation import evaluate

    passes = [evaluate(cfg.env, policy, split=cfg.eval_split, n_examples=cfg.eval_examples, decoding="sampled",
                       metrics=(), batch_size=min(64, cfg.eval_examples), seed=seed + k * SEED_STRIDE,
                       env_kwargs=cfg.env_kwargs()).generations for k in range(samples)]
    rows = []
    for at, first in enumerate(passes[0]):
        gens = [p[at] for p in passes]
        rows.append({"example_index": first["example_index"], "prompt": first["prompt"],
                     "references": first["references"], "texts": [g["prediction"] for g in gens],
                     "rewards": [float(g["reward"]) for g in gens], "gen_len": [int(g["gen_len"]) for g in gens],
                     "token_ids": [[t for t in g["generated_ids"] if t != env.eos_token_id] for g in gens]})
    return rows


def sampled_table(rows: list[dict[str, Any]], cfg: Any, env: Any, metrics: Sequence[str], start_lm: Any,
                  model: Any | None = None, samples: int | None = None,
                  mask: tuple[Any, int | None, float | None] | None = None) -> dict[str, float]:
    """The metric table of the first ``samples`` texts per prompt of ``rows``.

    :param rows: :func:`sample_rows`'s (or :func:`policy_masked_samples`'s) rows.
    :param metrics: corpus metrics beside the reward (:func:`text_envs.evaluation.corpus_metrics`).
    :param start_lm: the start model: its perplexity of the first text per prompt (``start_ppl``).
    :param model: the model that wrote the texts, for the KL to ``start_lm`` along them; None: the start model
        itself (KL 0).
    :param mask: the texts were sampled through a top-k / top-p mask (:func:`sequence_kls`).
    :return: ``reward`` (mean over prompts x samples), ``eval_se`` (its clustered standard error), ``kl`` (nats
        per text), ``start_ppl``, ``gen_len``, the corpus metrics, the hacking metrics, ``eval_texts``.
    """
    from lm_core.fluency import start_model_perplexity
    from text_envs.diversity import hacking_metrics
    from text_envs.evaluation import corpus_metrics

    S = samples or min(len(r["texts"]) for r in rows)
    if any(len(r["texts"]) < S for r in rows):
        raise TextEnvsError(f"sampled_table: expected at least {S} texts per prompt.")
    rewards = np.array([r["rewards"][:S] for r in rows])  # (N, S)
    # sample-major order: the first texts (self-BLEU reads the first 100) come from 100 different prompts
    texts = [r["texts"][k] for k in range(S) for r in rows]
    prompts = [r["prompt"] for _ in range(S) for r in rows]
    refs = [list(r["references"]) or [""] for _ in range(S) for r in rows]
    table: dict[str, float] = {"reward": float(rewards.mean()), "eval_se": clustered_standard_error(rewards)}
    if metrics:
        table.update(corpus_metrics(texts, refs, list(metrics), prompts)[0])
    if model is None:
        table["kl"] = 0.0
    else:
        # prompt-major: the S texts of a prompt share its encoder pass in sequence_kls' batches
        ids = [r["token_ids"][k] for r in rows for k in range(S)]
        by_prompt = [r["prompt"] for r in rows for _ in range(S)]
        table["kl"] = float(sequence_kls(model, start_lm, env, by_prompt, ids, cfg.temperature, mask).mean())
    firsts = [{"prompt": r["prompt"], "prediction": r["texts"][0]} for r in rows]
    table["start_ppl"] = float(start_model_perplexity(start_lm, env, firsts))
    table["gen_len"] = float(np.mean([r["gen_len"][k] for r in rows for k in range(S)]))
    table.update(hacking_metrics(texts, prompts, cfg.env, env.reward.name))
    table["eval_texts"] = float(rewards.size)
    return table


def best_of_n_rows(rows: list[dict[str, Any]], n: int, samples: int) -> list[dict[str, Any]]:
    """Best-of-``n`` texts from a start model's rows: for each prompt, ``samples`` disjoint groups of ``n`` of its
    texts, the highest-reward text of each group (the earliest on a tie), in :func:`sample_rows`'s format.

    :raises TextEnvsError: when a prompt has fewer than ``n * samples`` texts.
    """
    if n < 1 or samples < 1:
        raise TextEnvsError(f"best_of_n_rows: expected n >= 1 and samples >= 1, got n={n}, samples={samples}.")
    out = []
    for r in rows:
        if len(r["rewards"]) < n * samples:
            raise TextEnvsError(f"best-of-{n} with {samples} texts per prompt needs {n * samples} start-model samples "
                                f"per prompt, got {len(r['rewards'])}: raise the preset's start_samples.")
        picks = [g * n + int(np.argmax(r["rewards"][g * n:(g + 1) * n])) for g in range(samples)]
        out.append({**r, **{k: [r[k][i] for i in picks] for k in ("texts", "rewards", "gen_len", "token_ids")}})
    return out
