"""``text-envs frontier``: the reward/KL limit of a start model on an env, and where a trained model lies against it.

It samples ``M`` texts from the start model for each of the first ``N`` prompts of the evaluation split, scores
them with the env's reward, and writes (:mod:`text_envs.frontier` holds the estimators):

* the optimum of ``max E[r] - beta * KL`` at each beta: reward, KL (nats per text), ``J*`` and the effective
  sample size of the importance weights (a few samples: M is too small for that beta, the estimate is low);
* best-of-n for ``n = 1..32`` (``n <= M``): the unbiased order-statistic estimate and its KL bound.

The main job (``text-envs train``) and ``text-envs eval RUN`` call :func:`place_against_frontier` (on
:func:`start_frontier` and :func:`compare_to_frontier`) to put the optimum at the run's beta, best-of-n at the
trained model's KL and the share of the achievable gain in their tables. Guide: docs/guides/frontier.md.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError
from text_envs.frontier import (
    BestOfNPoint,
    OptimumPoint,
    achievable_share,
    best_of_n_at_kl,
    best_of_n_curve,
    optimum,
    optimum_curve,
)
from text_envs_app.evaluation import env_reward_name
from text_envs_app.text_kl import sequence_kls, token_kls

DEFAULT_BETAS = (2.0, 1.0, 0.5, 0.2, 0.1, 0.05)
"""The KL coefficients of ``text-envs frontier`` when ``--betas`` is not given."""
MAX_BEST_OF = 32
"""Best-of-n is reported for ``n = 1..min(MAX_BEST_OF, M)``."""
BATCH_TEXTS = 512
"""Texts sampled in one batch (prompts x samples); bounds memory, keeps batches large."""


def sample_texts(model: Any, env: Any, indices: Sequence[int], samples: int, temperature: float = 1.0,
                 top_k: int | None = None, seed: int = 0, progress: Callable[[int], None] | None = None,
                 reference: Any = None) -> list[dict[str, Any]]:
    """``samples`` texts sampled from ``model`` for each of the env's examples ``indices``, scored by its reward.

    Pure sampling from the distribution the policy samples (``lm_core.sampling.distribution_logits``: the logits
    over ``temperature``, the model's own top-k when given, tokens beyond the env's vocabulary never drawn); a text
    ends at EOS or at the env's token budget and is decoded as the env decodes it.

    :param model: a Hugging Face LM (seq2seq or causal), e.g. the start model.
    :param env: the unwrapped text env (its prompts, tokenizer, budget and reward).
    :param indices: example indices of the env's split.
    :param samples: M, texts per prompt.
    :param seed: seeds torch's generator for the call (the global random state is restored afterwards).
    :param progress: called with the number of texts finished after each batch.
    :param reference: a model (e.g. the start model) to measure each text's exact KL to: ``sum_t KL(pi(.|s_t) ||
        pi_ref(.|s_t))`` along the text, EOS included when written (:func:`text_envs_app.text_kl.sequence_kls`' value,
        ``pi`` the distribution sampled). An encoder-decoder's reference decodes beside the model, one cached step per
        token, so the model's forward is not run again; a causal model's texts are teacher-forced after sampling.
    :return: one dict per index: ``example_index``, ``prompt``, ``references``, ``texts`` (M), ``rewards`` (M),
        ``gen_len`` (M, tokens without EOS), ``token_ids`` (M lists of the sampled ids, EOS dropped), and with a
        ``reference`` ``kls`` (M, nats).
    """
    import torch as th

    if samples < 1:
        raise TextEnvsError(f"Expected at least 1 sample per prompt, got {samples}.")
    device = next(model.parameters()).device
    draw = _draw_seq2seq if getattr(model.config, "is_encoder_decoder", False) else _draw_causal
    prompts_per_batch = max(1, BATCH_TEXTS // samples)
    rows: list[dict[str, Any]] = []
    saved_rng, modes = th.get_rng_state(), [(m, m.training) for m in (model, reference) if m is not None]
    th.manual_seed(seed)
    for m, _ in modes:
        m.eval()  # no dropout: the distribution itself
    try:
        for at in range(0, len(indices), prompts_per_batch):
            batch = list(indices[at:at + prompts_per_batch])
            texts = [env.example_text(i) for i in batch]
            arrays = [env.encode_prompt(p) for p, _ in texts]
            ids = th.as_tensor(np.stack([a for a, _ in arrays]))  # (b, P) left-padded
            mask = th.as_tensor(np.stack([m for _, m in arrays]))
            used = mask.sum(0) > 0  # drop the columns that are padding in every row
            ids, mask = ids[:, used].to(device), mask[:, used].to(device)
            with th.no_grad():  # b * M token lists, EOS dropped
                generated, kls = draw(model, env, ids, mask, samples, temperature, top_k, reference)
            if reference is not None and kls is None:  # a causal model: teacher-forced along its texts
                kls = sequence_kls(model, reference, env, [p for p, _ in texts for _ in range(samples)], generated,
                                   temperature, (model, top_k, None) if top_k else None)
            for k, (index, (prompt, refs)) in enumerate(zip(batch, texts)):
                own = generated[k * samples:(k + 1) * samples]
                rows.append({"example_index": int(index), "prompt": prompt, "references": list(refs),
                             "texts": [env.decode(t) for t in own], "gen_len": [len(t) for t in own],
                             "token_ids": own})
                if kls is not None:
                    rows[-1]["kls"] = [float(v) for v in kls[k * samples:(k + 1) * samples]]
            if progress is not None:
                progress(len(batch) * samples)
    finally:
        th.set_rng_state(saved_rng)
        for m, was_training in modes:
            m.train(was_training)
    _score(env, rows)
    return rows


def _distribution(logits: Any, env: Any, temperature: float, top_k: int | None) -> Any:
    """The policy's distribution logits (B, V) from a model's logits (B, >= V): the action space, the temperature,
    the model's own top-k."""
    from lm_core.sampling import distribution_logits

    logits = logits[:, :len(env.tokenizer)]  # (B, V): the action space
    return distribution_logits(logits, temperature, mask_logits=logits if top_k else None, top_k=top_k)


def _draw_seq2seq(model: Any, env: Any, ids: Any, mask: Any, samples: int, temperature: float, top_k: int | None,
                  reference: Any = None) -> tuple[list[list[int]], Any]:
    """Sample ``samples`` texts for each prompt row of an encoder-decoder: the encoder once per prompt, then one
    cached decoder step per token for the texts still writing (a finished text leaves the batch and its cache: texts
    end at very different lengths, and the longest would otherwise set the cost of all). With a ``reference``, it
    steps beside the model on the same tokens and each text's KL to it adds up token by token
    (:func:`text_envs_app.text_kl.token_kls`).

    :return: the token lists (EOS dropped) and the (B,) KLs (None without a reference)."""
    import torch as th

    from lm_core.sampling import sample_tokens

    start = getattr(model.config, "decoder_start_token_id", None)
    start = start if start is not None else model.config.pad_token_id
    decoders = [_Decoder(m, ids, mask, samples) for m in (model, reference) if m is not None]
    B = ids.shape[0] * samples
    live = th.arange(B, device=ids.device)  # the original row of each row still writing
    tokens = th.full((B, env.max_new_tokens), -1, dtype=th.long, device=ids.device)  # (B, T); -1 after the end
    kls = th.zeros(B, device=ids.device) if reference is not None else None
    last = th.full((B, 1), int(start), dtype=th.long, device=ids.device)
    for t in range(env.max_new_tokens):
        scores = _distribution(decoders[0].step(last), env, temperature, top_k)
        token = sample_tokens(th.softmax(scores, -1))  # (b,)
        if kls is not None:
            kls[live] += token_kls(scores, decoders[1].step(last)[:, :len(env.tokenizer)], temperature)
        tokens[live, t] = token
        writing = token != env.eos_token_id
        if not bool(writing.all()):  # sync: drop the finished rows
            keep = writing.nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            for decoder in decoders:
                decoder.select(keep)
            live, token = live[keep], token[keep]
        last = token[:, None]
    return [[t for t in row if t >= 0 and t != env.eos_token_id] for row in tokens.tolist()], kls


class _Decoder:
    """An encoder-decoder's incremental decoding of a batch: the encoder output, the cache, the rows kept."""

    def __init__(self, model: Any, ids: Any, mask: Any, samples: int):
        """``ids`` / ``mask`` (b, P): the prompts, each encoded once and its output repeated for its ``samples``
        texts (B = b * samples rows)."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        self.model, self.mask = model, mask.repeat_interleave(samples, 0)
        encoded = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state  # (b, P, H)
        self.encoded = encoded.repeat_interleave(samples, 0)  # (B, P, H)
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())  # filled in place by each forward
        self.cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def step(self, last: Any) -> Any:
        """The next-token logits (b, >= V) after feeding ``last`` (b, 1)."""
        from transformers.modeling_outputs import BaseModelOutput

        out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=self.encoded), attention_mask=self.mask,
                         decoder_input_ids=last, use_cache=True, **{self.cache_kw: self.cache})
        return out.logits[:, -1]

    def select(self, keep: Any) -> None:
        """Keep only the rows ``keep`` (indices into the current rows)."""
        self.cache.batch_select_indices(keep)
        self.encoded, self.mask = self.encoded[keep], self.mask[keep]


def _draw_causal(model: Any, env: Any, ids: Any, mask: Any, samples: int, temperature: float, top_k: int | None,
                 reference: Any = None) -> tuple[list[list[int]], None]:
    """Sample ``samples`` texts for each prompt row of a decoder-only model with ``generate`` (its own sampler, the
    same distribution: temperature, top-k, and no token beyond the env's vocabulary). No KLs here (None): the caller
    teacher-forces them."""
    from transformers import GenerationConfig

    V, width = len(env.tokenizer), int(model.get_output_embeddings().weight.shape[0])
    config = GenerationConfig(
        do_sample=True, num_beams=1, temperature=float(temperature), top_k=int(top_k) if top_k else 0, top_p=1.0,
        max_new_tokens=env.max_new_tokens, min_length=0, eos_token_id=env.eos_token_id,
        pad_token_id=env.pad_token_id, suppress_tokens=list(range(V, width)) or None)
    holder = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = holder.generation_config
    holder.generation_config = config  # swapped, not overridden: generate() fills unset settings from it
    try:
        out = model.generate(input_ids=ids.repeat_interleave(samples, 0),
                             attention_mask=mask.repeat_interleave(samples, 0))
    finally:
        holder.generation_config = saved
    texts = []
    for row in out[:, ids.shape[1]:].tolist():
        texts.append(row[:row.index(env.eos_token_id)] if env.eos_token_id in row else row[:env.max_new_tokens])
    return texts, None


def _score(env: Any, rows: list[dict[str, Any]]) -> None:
    """Each row's ``rewards``: the env's reward of every text, in one call."""
    if env.reward is None:
        raise TextEnvsError(f"{env.spec.id if env.spec else type(env).__name__} pays a reward per token, not per "
                            "text: its frontier is not defined by text rewards (use a text task).")
    texts = [t for r in rows for t in r["texts"]]
    refs = [r["references"] for r in rows for _ in r["texts"]]
    prompts = [r["prompt"] for r in rows for _ in r["texts"]]
    values = env.reward(texts, refs, prompts)
    at = 0
    for r in rows:
        r["rewards"] = [float(v) for v in values[at:at + len(r["texts"])]]
        at += len(r["texts"])


def frontier_summary(rewards: np.ndarray, betas: Sequence[float], max_n: int = MAX_BEST_OF) -> dict[str, Any]:
    """The start model's reward, the optimum at each beta and the best-of-n curve, as plain data (JSON).

    :param rewards: ``(N, M)`` rewards of the start model's samples.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    return {"prompts": int(rewards.shape[0]), "samples": int(rewards.shape[1]),
            "start_reward": float(rewards.mean()),
            "start_reward_se": float(rewards.mean(axis=1).std(ddof=1) / math.sqrt(rewards.shape[0]))
            if rewards.shape[0] > 1 else float("nan"),
            "optimum": [p.to_dict() for p in optimum_curve(rewards, betas)],
            "best_of_n": [p.to_dict() for p in best_of_n_curve(rewards, max_n)]}


def compare_to_frontier(rewards: np.ndarray, beta: float, model_reward: float, model_kl: float) -> dict[str, float]:
    """Where a trained model lies against its start model's limit at the run's ``beta``.

    :param rewards: ``(N, M)`` rewards of the start model's samples on the evaluation prompts.
    :param beta: the run's KL coefficient (> 0).
    :param model_reward: the trained model's mean reward (sampled texts) on the same prompts.
    :param model_kl: its KL to the start model, nats per text.
    :return: ``optimum_reward``, ``optimum_kl``, ``optimum_J`` (J* = reward - beta KL, the plug-in estimate),
        ``optimum_J_corrected`` (J* less the plug-in's small-sample bias: the jackknife's, or the plug-in with one
        sample per prompt), ``optimum_ess``, ``best_of_n_at_kl`` (best-of-n's reward at the model's KL), ``start_J``
        (the start model's mean sampled reward: J at KL 0), ``model_J`` and ``gain_share`` = (J(model) - J(start))
        / (J*_corrected - J(start)).
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    point: OptimumPoint = optimum(rewards, beta)
    curve: list[BestOfNPoint] = best_of_n_curve(rewards, MAX_BEST_OF)
    start_j = float(rewards.mean())
    model_j = float(model_reward) - beta * float(model_kl)
    # the plug-in J* is low by O(1/M) (16 samples: 0.006 on the shipped model), which would raise every share
    limit = point.objective_corrected if math.isfinite(point.objective_corrected) else point.objective
    return {"beta": float(beta), "optimum_reward": point.reward, "optimum_kl": point.kl, "optimum_J": point.objective,
            "optimum_J_corrected": limit, "optimum_ess": point.ess, "samples": point.samples,
            "best_of_n_at_kl": best_of_n_at_kl(curve, model_kl), "start_J": start_j, "model_J": model_j,
            "gain_share": achievable_share(model_j, start_j, limit)}


def load_start_model(model: str | None, cfg: Any) -> Any:
    """The frozen start model of a run: ``model`` (its --model: a path or hub name) or, when None, the shipped
    model sized to ``cfg``'s env tokenizer; on ``cfg.device``, in eval mode."""
    import gymnasium as gym

    from lm_core.backends import default_model, load_model

    if model:
        lm = load_model(model)
    else:
        env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs())
        lm = default_model(len(env.unwrapped.tokenizer))[0]
        env.close()
    return lm.to(cfg.device).eval()


def start_frontier(model: Any, cfg: Any, samples: int, progress: bool = False) -> np.ndarray:
    """``(N, M)`` rewards of ``samples`` texts of ``model`` (the start model) for each of ``cfg``'s evaluation
    prompts (the first ``eval_examples`` of ``eval_split``), sampled at ``cfg.temperature`` / ``cfg.top_k``,
    seeded by ``cfg.seed``."""
    return sampled_rewards_and_kls(model, cfg, samples, progress=progress)[0]


def sampled_rewards_and_kls(model: Any, cfg: Any, samples: int, reference: Any = None, progress: bool = False
                            ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(N, M)`` rewards of ``samples`` texts of ``model`` per evaluation prompt (as :func:`start_frontier`) and,
    with a ``reference``, the ``(N, M)`` exact KLs of those texts to it (measured while sampling, see
    :func:`sample_texts`; None without one).

    A model's J = E[reward] - beta * E[KL] measured on the same texts: one text per prompt leaves a KL whose noise on
    200 prompts moves the gain share by about 0.05."""
    import gymnasium as gym

    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs()).unwrapped
    n = min(int(env.num_examples), int(cfg.eval_examples))
    bar = _bar(n * samples, "sampling") if progress else None
    try:
        rows = sample_texts(model, env, range(n), samples, cfg.temperature, cfg.top_k, cfg.seed,
                            bar.update if bar is not None else None, reference=reference)
        kls = np.array([r["kls"] for r in rows]) if reference is not None else None
    finally:
        if bar is not None:
            bar.close()
        env.close()
    return np.array([r["rewards"] for r in rows]), kls


def place_against_frontier(start_lm: Any, cfg: Any, columns: dict[str, dict[str, float]], start: str = "start",
                           log: Callable[[str], None] = print, progress: bool = False,
                           models: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Sample ``cfg.frontier_samples`` texts of the start model per evaluation prompt and add, in place, the optimum
    at ``cfg``'s KL coefficient to the ``start`` column (``optimum_reward``, ``optimum_kl``, ``optimum_J``,
    ``optimum_J_corrected``,
    ``model_J`` = the start model's mean sampled reward) and, to every other column, ``model_J`` (its sampled reward
    - beta * its KL), ``best_of_n_at_kl`` and ``gain_share``.

    A column's reward is one sampled text per prompt unless ``models`` has its Hugging Face model: that model then
    writes ``frontier_samples`` texts per prompt too (``model_reward``, their mean: the share's noise from one text
    per prompt is about as large as the share itself on 200 prompts) and its KL is the mean exact KL along those
    same texts (``model_kl``; the column's ``kl`` follows one text per prompt, whose noise moves the share by about
    0.05), unless the run samples through a top-k / top-p mask (then the column's ``kl``). Returns what results.json keeps;
    None when skipped (``frontier_samples`` 0, a KL coefficient of 0 or a per-token task).
    """
    from text_envs_app.algorithms import training_kl_coef  # the beta the run trains with, not the env's default

    beta = training_kl_coef(cfg)
    if not cfg.frontier_samples or beta <= 0 or env_reward_name(cfg) is None:
        return None
    log(f"the start model's limit at kl_coef {beta:g}: {cfg.frontier_samples} sampled texts per "
        f"{cfg.eval_split} prompt ...")
    began = time.perf_counter()
    rewards = start_frontier(start_lm, cfg, cfg.frontier_samples, progress=progress)
    log(f"sampled {rewards.size:,} texts of the start model in {time.perf_counter() - began:.0f} s")
    sampled = cfg.decoding() == "sampled"  # greedy (or best-of-n) tables carry sampled_reward / sampled_kl
    kept: dict[str, Any] = {}
    point = compare_to_frontier(rewards, beta, float(rewards.mean()), 0.0)
    columns[start].update({k: point[k] for k in ("optimum_reward", "optimum_kl", "optimum_J", "optimum_J_corrected")},
                          model_J=point["start_J"])
    for name, column in columns.items():
        if name == start:
            continue
        reward, kl = (column.get("reward"), column.get("kl")) if sampled else (column.get("sampled_reward"),
                                                                               column.get("sampled_kl"))
        if kl is None:
            continue
        if name in (models or {}):
            began = time.perf_counter()
            exact_kl = cfg.top_k is None and cfg.algo != "nlpo"  # no top-k / top-p mask: pi is the model's own
            own, kls = sampled_rewards_and_kls(models[name], cfg, cfg.frontier_samples,
                                               reference=start_lm if exact_kl else None)
            reward = column["model_reward"] = float(own.mean())
            if kls is not None:
                kl = column["model_kl"] = float(kls.mean())
            log(f"sampled {rewards.size:,} texts of {name} in {time.perf_counter() - began:.0f} s")
        if reward is None:
            continue
        placed = compare_to_frontier(rewards, beta, reward, kl)
        column.update({k: placed[k] for k in ("model_J", "best_of_n_at_kl", "gain_share")})
        own_samples = cfg.frontier_samples if name in (models or {}) else 1
        kept[name] = {"reward": reward, "kl": kl, "reward_samples": own_samples,
                      "kl_samples": own_samples if "model_kl" in column else 1,
                      **{k: placed[k] for k in ("model_J", "best_of_n_at_kl", "gain_share")}}
    return {"beta": beta, "samples": int(rewards.shape[1]), "prompts": int(rewards.shape[0]),
            "start_J": point["start_J"], "optimum_reward": point["optimum_reward"], "optimum_kl": point["optimum_kl"],
            "optimum_J": point["optimum_J"], "optimum_J_corrected": point["optimum_J_corrected"],
            "optimum_ess": point["optimum_ess"], "models": kept,
            "best_of_n": [p.to_dict() for p in best_of_n_curve(rewards, MAX_BEST_OF)]}


def _bar(total: int, what: str):
    from tqdm import tqdm

    return tqdm(total=total, unit=" texts", smoothing=0, dynamic_ncols=True, mininterval=0.5,
                bar_format=what + " {percentage:3.0f}%|{bar}| {n:,}/{total:,} texts [{elapsed}<{remaining}]")


def format_frontier(summary: dict[str, Any], env_id: str, reward_name: str) -> str:
    """Markdown: the optimum per beta, then best-of-n, with how they were estimated."""
    lines = [f"Start model on {summary['prompts']} prompts of {env_id}, {summary['samples']} sampled texts each "
             f"(reward {reward_name}): mean reward {summary['start_reward']:.4f} "
             f"(standard error {summary['start_reward_se']:.4f} over prompts).", "",
             "Optimum of E[r] - beta KL (pi* ∝ pi0 exp(r / beta), self-normalised importance weights over the "
             "samples; KL in nats per text):", "",
             "| beta | reward | KL | J* | J* corrected | ESS (mean) | ESS (min) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for p in summary["optimum"]:
        lines.append(f"| {p['beta']:g} | {p['reward']:.4f} | {p['kl']:.4f} | {p['objective']:.4f} | "
                     f"{p['objective_corrected']:.4f} | {p['ess']:.1f} | {p['ess_min']:.1f} |")
    lines += ["", "J* corrected: J* less the estimate's small-sample bias (log of a sample mean reads low by O(1/M); "
                  "the jackknife removes the first-order term). The share of achievable gain is read against it."]
    low = [p["beta"] for p in summary["optimum"] if p["ess"] < 0.1 * summary["samples"]]
    if low:
        lines += ["", f"At beta {', '.join(f'{b:g}' for b in low)} the weights' effective sample size is under a tenth "
                      "of the samples: the estimate there is low (a finite sample cannot show the rewards it did not "
                      "draw); sample more (--samples)."]
    lines += ["", "Best-of-n (the unbiased order-statistic estimate; KL at most log n - (n-1)/n):", "",
              "| n | reward | KL bound |", "|---:|---:|---:|"]
    lines += [f"| {p['n']} | {p['reward']:.4f} | {p['kl_bound']:.4f} |" for p in summary["best_of_n"]]
    return "\n".join(lines)


def plot_frontier(path: Path, summary: dict[str, Any], title: str,
                  models: dict[str, tuple[float, float]] | None = None) -> None:
    """frontier.png: reward against KL: the optimum curve (one point per beta), best-of-n's points, and
    ``models`` (name -> (kl, reward))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    opt = sorted(summary["optimum"], key=lambda p: p["kl"])
    ax.plot([0.0] + [p["kl"] for p in opt], [summary["start_reward"]] + [p["reward"] for p in opt], "-o",
            color="tab:blue", label="optimum pi0·exp(r/beta)")
    for p in opt:
        ax.annotate(f"β={p['beta']:g}", (p["kl"], p["reward"]), fontsize=7, xytext=(3, -9),
                    textcoords="offset points")
    bon = summary["best_of_n"]
    ax.plot([p["kl_bound"] for p in bon], [p["reward"] for p in bon], "s", ms=3, color="tab:orange",
            label="best-of-n (KL bound)")
    for name, (kl, reward) in (models or {}).items():
        ax.plot([kl], [reward], "*", ms=10, label=name)
    ax.set_xlabel("KL to the start model (nats per text)")
    ax.set_ylabel("reward")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_frontier(cfg: Any, samples: int = 64, betas: Sequence[float] = DEFAULT_BETAS, out: str | None = None,
                 overwrite: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """``text-envs frontier``: sample, estimate, print and (with ``out``) write frontier.md, frontier.json (the
    summary and every text's reward) and frontier.png.

    :param cfg: a :class:`text_envs_app.config.TrainConfig`: env, data, model, ``eval_split``,
        ``eval_examples`` (N prompts), ``seed``, ``temperature``, ``top_k``, ``device``, ``threads``.
    :param samples: M, texts per prompt (>= 2).
    :param betas: KL coefficients, each > 0.
    """
    import gymnasium as gym
    import torch as th

    from text_envs_app.evaluation import check_eval_split, describe_data

    if samples < 2:
        raise TextEnvsError(f"--samples must be at least 2 (texts per prompt), got {samples}.")
    betas = [float(b) for b in betas]
    if not betas or any(not (b > 0 and math.isfinite(b)) for b in betas):
        raise TextEnvsError(f"--betas must be one or more finite numbers > 0, got {betas}.")
    cfg.validate()
    check_eval_split(cfg)
    out_dir = _output_folder(out, overwrite) if out is not None else None
    if cfg.threads:
        th.set_num_threads(cfg.threads)
    describe_data(cfg, log)
    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs()).unwrapped
    model = load_start_model(cfg.model, cfg)
    n = min(int(env.num_examples), int(cfg.eval_examples))
    reward_name = env.reward.name if env.reward is not None else "reward"
    log(f"sampling {samples} texts for each of {n} {cfg.eval_split} prompts of {cfg.env} from "
        f"{cfg.model or 'the shipped model'} ({n * samples:,} texts) ...")
    bar = _bar(n * samples, "sampling")
    try:
        rows = sample_texts(model, env, range(n), samples, cfg.temperature, cfg.top_k, cfg.seed, bar.update)
    finally:
        bar.close()
    rewards = np.array([r["rewards"] for r in rows])  # (N, M)
    summary = frontier_summary(rewards, betas)
    text = format_frontier(summary, cfg.env, reward_name)
    log(text)
    if out_dir is not None:
        (out_dir / "frontier.md").write_text(text + "\n")
        (out_dir / "frontier.json").write_text(json.dumps(
            {**summary, "env": cfg.env, "reward": reward_name, "model": cfg.model or "shipped",
             "split": cfg.eval_split, "seed": cfg.seed, "temperature": cfg.temperature, "top_k": cfg.top_k,
             "rewards": {str(r["example_index"]): r["rewards"] for r in rows}}, indent=1))
        with open(out_dir / "samples.jsonl", "w", encoding="utf-8") as f:  # the texts behind every number
            for r in rows:
                f.write(json.dumps({k: r[k] for k in ("example_index", "prompt", "texts", "rewards")},
                                   ensure_ascii=False) + "\n")
        plot_frontier(out_dir / "frontier.png", summary, f"{cfg.env}: start model's limit ({reward_name})")
        log(f"wrote {out_dir}: frontier.md, frontier.json, samples.jsonl, frontier.png")
    return summary


def _output_folder(out: str, overwrite: bool) -> Path:
    """``out``, made (emptied with ``overwrite``); refused when it holds files and ``overwrite`` is off."""
    import shutil

    path = Path(out)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise TextEnvsError(f"Output folder {str(path)!r} exists and is not empty: choose another --out, or "
                                "--overwrite to replace it.")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _betas(text: str) -> list[float]:
    """argparse type of --betas: comma-separated numbers > 0."""
    try:
        values = [float(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 1,0.5,0.2, got {text!r}") from None
    if not values or any(not (b > 0 and math.isfinite(b)) for b in values):
        raise argparse.ArgumentTypeError(f"expected one or more finite numbers > 0 such as 1,0.5,0.2, got {text!r}")
    return values


FRONTIER_FIELDS = ("env", "model", "dataset", "prompt_field", "reference_field", "source_lang", "target_lang",
                   "gym_kwargs", "reward", "difficulty", "max_new_tokens", "temperature", "top_k", "seed", "device",
                   "threads")


def add_frontier_command(sub: Any, add_config_flags: Callable[..., None],
                         config_values: Callable[[argparse.Namespace], dict]) -> None:
    """Add ``frontier`` to the ``text-envs`` subcommands (``cli.build_parser`` passes its flag helpers)."""

    def command(args: argparse.Namespace) -> int:
        from text_envs.data.sources import is_local_path
        from text_envs_app.config import TrainConfig

        values = config_values(args)
        if values.get("model") and (Path(values["model"]) / "hf" / "config.json").is_file():
            values["model"] = str(Path(values["model"]) / "hf")  # a `text-envs train` folder: its trained model
        if values.get("dataset") and is_local_path(values["dataset"]):  # a user's file: all of its rows, as eval does
            path = values.pop("dataset")
            values.update(train_file=path, validation_file=path, test_file=path)
        run_frontier(TrainConfig(**values), samples=args.samples, betas=args.betas, out=args.out,
                     overwrite=args.overwrite)
        return 0

    parser = sub.add_parser(
        "frontier", help="the reward/KL limit of a model: the optimum of E[r] - beta KL and best-of-n",
        description="Sample --samples texts from the model for each of the first --examples prompts of the split, "
                    "score them with the env's reward, and report the optimum of E[r] - beta*KL to the model "
                    "(pi* ∝ pi0 exp(r/beta), estimated with self-normalised importance weights; reward, KL, J* and "
                    "the effective sample size per beta) and best-of-n for n = 1..32 with its KL bound. --out DIR "
                    "writes frontier.md, frontier.json, samples.jsonl and frontier.png.")
    add_config_flags(parser, only=FRONTIER_FIELDS, helps={
        "dataset": "the prompts: a local .jsonl/.json/.csv file (its rows, in order; --examples caps them) or a hub "
                   "name; default: the embedded data"})
    parser.add_argument("--samples", type=int, default=64, metavar="M", help="texts per prompt (default: 64)")
    parser.add_argument("--betas", type=_betas, default=list(DEFAULT_BETAS), metavar="B1,B2,...",
                        help=f"KL coefficients (default: {','.join(f'{b:g}' for b in DEFAULT_BETAS)})")
    parser.add_argument("--split", dest="eval_split", choices=("train", "validation", "test", "ood"),
                        default=argparse.SUPPRESS, help="the split whose prompts are sampled; ood: TextContinuation-v0's "
                        "openings worded unlike the training generator's (default: test)")
    parser.add_argument("--examples", dest="eval_examples", type=int, default=argparse.SUPPRESS, metavar="N",
                        help="the first N prompts of the split (default: 200)")
    parser.add_argument("--out", default=None, metavar="DIR", help="write the results to DIR (refused if it exists)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.set_defaults(func=command)
