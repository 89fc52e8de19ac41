"""``evaluate``: generate for every example of a split with a policy or a generation function, then report
corpus-level metrics, the signature of each metric, and the generations.

Metric scales: everything is on the reward scale, 0..1 and higher is better (BLEU 0.273 = sacrebleu's 27.3),
except ``ter``, reported as the corpus TER fraction (lower is better), as TER is published. Corpus BLEU, chrF
and TER come from sacrebleu's corpus statistics with the references transposed into streams (a prediction
may have any number of references); ROUGE, METEOR, semantic similarity and other rewards are means of the
sentence scores. ``reward`` is the mean episode return (policy) or the mean of the env's reward (generate_fn),
``gen_len`` the mean number of generated tokens (EOS not counted).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError
from text_envs.rewards.base import Reward, RewardError, make_reward, validate_inputs

__all__ = ["evaluate", "EvaluationResult", "EvaluationError", "DEFAULT_METRICS", "DECODINGS", "corpus_metrics",
           "best_of_n_kl_bound"]

DEFAULT_METRICS = ("rouge-1", "rouge-2", "rouge-l", "bleu", "chrf", "meteor")
DECODINGS = ("greedy", "sampled", "best-of-n")
"""``evaluate(decoding=...)``: the most likely token each step, one sample per prompt, or the best of n samples."""


def best_of_n_kl_bound(n: int) -> float:
    """``log n - (n-1)/n``: the upper bound on KL(best-of-n || sampling policy) in nats (Beirami et al. 2024; the
    analytic figure RLHF papers plot best-of-n at). 0 for n = 1."""
    if n < 1:
        raise EvaluationError(f"best-of-n: expected n >= 1, got {n}.")
    return math.log(n) - (n - 1) / n


def _keep_best(best: list[dict[str, Any]], candidates: list[dict[str, Any]]) -> None:
    """Replace each of ``best``'s generations by the candidate for the same example when its reward is higher (a
    tie keeps the earlier draw); every draw's reward is appended to ``sample_rewards``."""
    by_index = {c["example_index"]: c for c in candidates}
    for i, g in enumerate(best):
        c = by_index[g["example_index"]]
        rewards = g["sample_rewards"] + [c["reward"]]
        if c["reward"] > g["reward"]:
            best[i] = g = c
        g["sample_rewards"] = rewards


class EvaluationError(TextEnvsError):
    """Bad arguments to :func:`evaluate` (no policy, wrong generate_fn output, empty split...)."""


@dataclass
class EvaluationResult:
    """What :func:`evaluate` returns.

    Attributes:
        table: ``{metric: value}``: corpus metrics, ``reward`` (mean) and ``gen_len`` (mean generated tokens).
        signatures: ``{metric: signature}``: tokenizer and settings each metric used (sacrebleu signatures).
        generations: one dict per example: ``example_index``, ``prompt``, ``prediction``, ``references``,
            ``reward``, ``metrics`` (the env's scores of the episode with a policy; with ``per_example_metrics``
            also each metric's sentence score) (and ``finish_reason`` and ``generated_ids``, the token ids the
            policy wrote, with a policy).
        split: the split evaluated (``None`` when unknown).
        seconds: wall time of generation + scoring.
    """

    table: dict[str, float]
    signatures: dict[str, str]
    generations: list[dict[str, Any]]
    split: str | None = None
    seconds: float = 0.0
    language: str | None = field(default=None)

    def to_markdown(self, n_samples: int = 3, digits: int = 4) -> str:
        """A Markdown report: the metric table with signatures, then ``n_samples`` sample generations."""
        head = f"Evaluation on {len(self.generations)} examples" + (f" of split '{self.split}'" if self.split else "")
        lines = [head, "", "| metric | value | signature |", "|---|---|---|"]
        for k, v in self.table.items():
            sig = self.signatures.get(k, "").replace("|", "\\|")
            lines.append(f"| {k} | {v:.{digits}f} | {sig} |")
        if n_samples > 0 and self.generations:
            lines += ["", "Samples:", "", samples_markdown(self.generations[:n_samples])]
        return "\n".join(lines)

    def __repr__(self) -> str:
        vals = ", ".join(f"{k}={v:.4f}" for k, v in self.table.items())
        return f"EvaluationResult(n={len(self.generations)}, {vals})"


def _md_escape(text: str, limit: int = 500) -> str:
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text.replace("|", "\\|").replace("\n", " ")


def samples_markdown(generations: Sequence[dict[str, Any]]) -> str:
    """Format generations as a Markdown table (prompt, prediction, first reference, reward)."""
    lines = ["| # | prompt | prediction | reference | reward |", "|---|---|---|---|---|"]
    for g in generations:
        ref = g["references"][0] if g.get("references") else ""
        r = g.get("reward")
        lines.append(
            f"| {g.get('example_index', '')} | {_md_escape(g['prompt'])} | {_md_escape(g['prediction'])} | "
            f"{_md_escape(ref)} | {'' if r is None else f'{r:.4f}'} |"
        )
    return "\n".join(lines)


def corpus_metrics(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    metrics: Sequence[Any] = DEFAULT_METRICS,
    prompts: Sequence[str] | None = None,
    language: str | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Corpus-level ``(table, signatures)`` of ``predictions`` against ``references`` (see module docstring).

    :param predictions: generated texts.
    :param references: one non-empty list of references per prediction (ragged allowed).
    :param metrics: reward specs (names, dicts, objects); each is built with ``make_reward(spec, language=...)``.
    :param prompts: prompts, for rewards that use them.
    :param language: target-language code for the tokenizers (``"zh"`` -> sacrebleu ``zh``, character ROUGE).
    """
    predictions, references, prompts = validate_inputs(predictions, references, prompts)
    table: dict[str, float] = {}
    signatures: dict[str, str] = {}
    for spec in metrics:
        reward = make_reward(spec, language=language)
        if hasattr(reward, "corpus_score"):
            if getattr(reward, "needs_prompts", False):
                value = reward.corpus_score(predictions, references, prompts)
            else:
                value = reward.corpus_score(predictions, references)
        else:
            values = reward(predictions, references, prompts)
            value = float(np.mean(values)) if values else 0.0
        if not math.isfinite(value):
            raise RewardError(f"Metric {reward.name!r} returned {value} on the corpus; expected a finite number.")
        table[reward.name] = float(value)
        signatures[reward.name] = str(getattr(reward, "signature", reward.name))
    return table, signatures


def _as_env_list(env: Any, split: str, env_kwargs: dict[str, Any], n_parallel: int) -> tuple[list[Any], bool]:
    """Return ``(envs, owned)``: the envs to generate with and whether evaluate() built (and must close) them."""
    if isinstance(env, str):
        import gymnasium as gym

        return [gym.make(env, split=split, **env_kwargs) for _ in range(max(1, n_parallel))], True
    if isinstance(env, (list, tuple)):
        if not env:
            raise EvaluationError("Expected at least one env in the list given to evaluate().")
        return list(env), False
    if not hasattr(env, "reset") or not hasattr(env, "unwrapped"):
        raise EvaluationError(
            f"Expected an env id (str), a Gymnasium env or a list of envs, got {type(env).__name__}. "
            "Vector envs are not accepted: pass the id and evaluate() builds batch_size envs."
        )
    return [env], False


def _check_generations(out: Any, n: int) -> list[str]:
    if isinstance(out, str) or not hasattr(out, "__len__"):
        raise EvaluationError(f"generate_fn must return a list of {n} strings, got {type(out).__name__}.")
    out = list(out)
    if len(out) != n:
        raise EvaluationError(f"generate_fn returned {len(out)} texts for {n} prompts; expected one per prompt.")
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise EvaluationError(f"generate_fn returned {type(t).__name__} at position {i}; expected str.")
    return out


def _count_tokens(tokenizer: Any, text: str) -> int:
    if tokenizer is None:
        return len(text.split())
    return len(tokenizer.encode(text, add_special_tokens=False))


def _run_generate_fn(base: Any, generate_fn: Callable, n: int, batch_size: int,
                     on_done: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    gens: list[dict[str, Any]] = []
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        texts = [base.example_text(i) for i in idx]
        prompts = [p for p, _ in texts]
        preds = _check_generations(generate_fn(prompts), len(idx))
        for i, (p, refs), pred in zip(idx, texts, preds):
            gens.append({"example_index": i, "prompt": p, "prediction": pred, "references": list(refs),
                         "metrics": {}})
        if on_done is not None:
            on_done(len(idx))
    reward = getattr(base, "reward", None)
    if reward is not None and gens:
        values = reward([g["prediction"] for g in gens], [g["references"] for g in gens], [g["prompt"] for g in gens])
        for g, v in zip(gens, values):
            g["reward"] = v
    tok = getattr(base, "tokenizer", None)
    for g in gens:
        g["gen_len"] = _count_tokens(tok, g["prediction"])
    return gens


def _run_policy(envs: list[Any], policy: Any, n: int, deterministic: bool, seed: int,
                on_done: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Drive ``len(envs)`` envs in lock step, one batched ``policy.predict`` per step, until ``n`` episodes
    (examples ``0..n-1``, each exactly once) are done; ``on_done(k)`` is called as ``k`` more finish."""
    gens: list[dict[str, Any] | None] = [None] * n
    state: dict[int, dict[str, Any]] = {}  # slot -> {"index", "obs", "ret", "steps"}
    next_index = 0
    seeded = set()

    def start(slot: int) -> None:
        nonlocal next_index
        kwargs: dict[str, Any] = {"options": {"example_index": next_index}}
        if slot not in seeded:
            kwargs["seed"] = seed + slot
            seeded.add(slot)
        obs, _ = envs[slot].reset(**kwargs)
        state[slot] = {"index": next_index, "obs": obs, "ret": 0.0, "steps": 0, "ids": []}
        next_index += 1

    for slot in range(min(len(envs), n)):
        start(slot)
    while state:
        slots = sorted(state)
        keys = state[slots[0]]["obs"].keys()
        batch = {k: np.stack([state[s]["obs"][k] for s in slots]) for k in keys}  # (B, P) / (B, T)
        actions, _ = policy.predict(batch, deterministic=deterministic)
        actions = np.asarray(actions).reshape(len(slots), -1)[:, 0]  # (B,)
        for s, a in zip(slots, actions):
            st = state[s]
            obs, r, terminated, truncated, info = envs[s].step(int(a))
            st["obs"], st["ret"], st["steps"] = obs, st["ret"] + float(r), st["steps"] + 1
            st["ids"].append(int(a))
            if terminated or truncated:
                if "generated_text" not in info:
                    raise EvaluationError(
                        "The env's final info lacks 'generated_text' / 'references' / 'prompt_text'; evaluate() "
                        f"needs text-envs envs (info keys: {sorted(info)})."
                    )
                gens[st["index"]] = {
                    "example_index": st["index"],
                    "prompt": info["prompt_text"],
                    "prediction": info["generated_text"],
                    "references": list(info["references"]),
                    "reward": st["ret"],
                    "gen_len": st["steps"] - (info.get("finish_reason") == "eos"),  # tokens, EOS not counted
                    "finish_reason": info.get("finish_reason"),
                    "metrics": dict(info.get("metrics") or {}),
                    "generated_ids": st["ids"],  # the actions taken, EOS included when written
                }
                if on_done is not None:
                    on_done(1)
                del state[s]
                if next_index < n:
                    start(s)
    return [g for g in gens if g is not None]


def evaluate(
    env: Any,
    policy: Any = None,
    *,
    generate_fn: Callable[[list[str]], list[str]] | None = None,
    split: str = "test",
    n_examples: int | None = None,
    deterministic: bool = True,
    metrics: Sequence[Any] = DEFAULT_METRICS,
    batch_size: int = 16,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    language: str | None = None,
    progress: bool | Callable[[int], None] = False,
    per_example_metrics: bool = False,
    decoding: str | None = None,
    n: int = 1,
) -> EvaluationResult:
    """Generate for the first ``n_examples`` examples of a split and report corpus metrics.

    :param env: an env id (built as ``gym.make(env, split=split, **env_kwargs)``, ``batch_size`` copies for a
        policy), a Gymnasium env, or a list of envs of the same task and split (episodes run side by side).
    :param policy: anything with SB3's ``predict(obs, deterministic=...)`` (an SB3 model or policy); observations
        of the envs are stacked into a batch each step.
    :param generate_fn: alternatively ``generate_fn(prompts: list[str]) -> list[str]`` (model-free).
    :param split: the split to build from an env id (ignored for env objects, which already have one).
    :param n_examples: how many examples (from index 0); ``None`` = the whole split.
    :param deterministic: greedy (``True``) or sampled actions.
    :param metrics: metric/reward specs: names (``"bleu"``), ``{"name": ..., **options}`` dicts or objects.
    :param batch_size: prompts per ``generate_fn`` call, and parallel envs when ``env`` is an id.
    :param seed: seeds the envs (and torch when sampling).
    :param env_kwargs: extra ``gym.make`` arguments for an env id.
    :param language: target language for the metric tokenizers; default the env's ``target_lang`` (if any).
    :param progress: ``True`` draws a tqdm bar of finished texts on stderr; a callable is called with the number
        of texts that just finished (policy) or were generated (generate_fn).
    :param per_example_metrics: also score every generation on its own with each of ``metrics`` (sentence
        scores) into ``generation["metrics"]``, beside the env's own metrics of the episode.
    :param decoding: ``"greedy"``, ``"sampled"`` or ``"best-of-n"`` (replaces ``deterministic``; None: as
        ``deterministic`` says). Best-of-n draws ``n`` texts per prompt (the first draw is exactly what
        ``"sampled"`` writes with this seed, the next ones continue its random stream), keeps the one with the
        highest reward (ties: the earliest) and lists every draw's reward in ``generation["sample_rewards"]``; the
        table adds ``kl_bound``, :func:`best_of_n_kl_bound` (its KL to the sampling policy is at most that).
        With ``generate_fn``, best-of-n calls it ``n`` times (it must sample to gain anything).
    :param n: samples per prompt of ``decoding="best-of-n"``.
    :returns: an :class:`EvaluationResult` (``.table``, ``.signatures``, ``.generations``, ``.to_markdown()``).
    """
    if (policy is None) == (generate_fn is None):
        raise EvaluationError("Pass exactly one of `policy` (an SB3 model/policy) or `generate_fn` (prompts -> texts).")
    if policy is not None and not hasattr(policy, "predict"):
        raise EvaluationError(
            f"Expected a policy with SB3's .predict(obs, deterministic=...), got {type(policy).__name__}. "
            "For a plain function use generate_fn=lambda prompts: [...]."
        )
    if generate_fn is not None and not callable(generate_fn):
        raise EvaluationError(f"Expected generate_fn to be callable, got {type(generate_fn).__name__}.")
    if batch_size < 1:
        raise EvaluationError(f"Expected batch_size >= 1, got {batch_size}.")
    if n_examples is not None and (not isinstance(n_examples, (int, np.integer)) or n_examples < 1):
        raise EvaluationError(f"Expected n_examples to be None (whole split) or an int >= 1, got {n_examples!r}.")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if decoding is not None and decoding not in DECODINGS:
        raise EvaluationError(f"Expected decoding to be one of {', '.join(DECODINGS)}, got {decoding!r}.")
    if not isinstance(n, (int, np.integer)) or n < 1 or (n != 1 and decoding != "best-of-n"):
        raise EvaluationError(f"Expected n >= 1, and n > 1 only with decoding='best-of-n'; got n={n!r}, "
                              f"decoding={decoding!r}.")
    if decoding is not None:
        deterministic = decoding == "greedy"
    draws = int(n) if decoding == "best-of-n" else 1

    t0 = time.perf_counter()
    n_parallel = batch_size if policy is not None else 1
    envs, owned = _as_env_list(env, split, dict(env_kwargs or {}), n_parallel)
    try:
        base = envs[0].unwrapped
        total = int(base.num_examples)
        if total < 1:
            raise EvaluationError(f"The env's split has no examples (num_examples={total}).")
        n_total = total if n_examples is None else min(int(n_examples), total)
        envs_used = envs[:n_total] if n_total < len(envs) else envs
        if language is None:
            language = getattr(base, "target_lang", None) or getattr(base, "language", None)
        bar = None
        if progress is True:
            from tqdm import tqdm

            bar = tqdm(total=n_total * draws, unit=" texts", smoothing=0, dynamic_ncols=True, mininterval=0.5,
                       bar_format="evaluating {percentage:3.0f}%|{bar}| {n:,}/{total:,} texts "
                                  "[{elapsed}<{remaining}, {rate_noinv_fmt}]")
            on_done: Callable[[int], None] | None = bar.update
        else:
            on_done = progress or None
        if policy is not None:
            if not deterministic and "torch" in sys.modules:
                sys.modules["torch"].manual_seed(seed)  # once: best-of-n's later draws continue the stream
            run = lambda: _run_policy(envs_used, policy, n_total, deterministic, seed, on_done)  # noqa: E731
        else:
            run = lambda: _run_generate_fn(base, generate_fn, n_total, batch_size, on_done)  # noqa: E731
        gens = run()
        if decoding == "best-of-n":
            if any(g.get("reward") is None for g in gens):
                raise EvaluationError("decoding='best-of-n' keeps the highest-reward sample, but this env has no "
                                      "reward to rank them by.")
            for g in gens:
                g["sample_rewards"] = [g["reward"]]
            for _ in range(draws - 1):
                _keep_best(gens, run())
        env_split = getattr(base, "split", None)
    finally:
        if bar is not None:
            bar.close()
        if owned:
            for e in envs:
                e.close()

    preds = [g["prediction"] for g in gens]
    refs = [g["references"] for g in gens]
    prompts = [g["prompt"] for g in gens]
    table, signatures = corpus_metrics(preds, refs, metrics, prompts, language)
    if per_example_metrics and gens:
        for spec in metrics:
            reward = make_reward(spec, language=language)
            for g, value in zip(gens, reward(preds, refs, prompts)):
                g.setdefault("metrics", {})[reward.name] = float(value)
    rewards = [g["reward"] for g in gens if g.get("reward") is not None]
    if rewards:
        table["reward"] = float(np.mean(rewards))
        reward_obj: Reward | None = getattr(base, "reward", None)
        signatures["reward"] = "episode return" if policy is not None else "env reward"
        if reward_obj is not None:
            signatures["reward"] += f" ({reward_obj.name})"
    table["gen_len"] = float(np.mean([g["gen_len"] for g in gens])) if gens else 0.0
    signatures["gen_len"] = "tokens (env tokenizer)" if getattr(base, "tokenizer", None) is not None else "words"
    if decoding == "best-of-n":
        table["kl_bound"] = best_of_n_kl_bound(draws)
        signatures["kl_bound"] = f"best-of-{draws}: KL to the sampling policy <= log n - (n-1)/n (nats per text)"
        if "reward" in signatures:
            signatures["reward"] += f", best of {draws} samples"
    return EvaluationResult(
        table=table,
        signatures=signatures,
        generations=gens,
        split=env_split if isinstance(env_split, str) else (split if isinstance(env, str) else None),
        seconds=time.perf_counter() - t0,
        language=language,
    )
