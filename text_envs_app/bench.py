"""``text-envs bench``: every method on the same tasks, seeds and token budget, aggregated as RL benchmarks are.

Each run (task, method, KL coefficient, seed) trains the shipped model with the preset's budget in generated
tokens (the RL algorithms through SB3; ``supervised`` / ``supervised-filtered`` by teacher forcing on as many
train reference tokens, all references or those whose reward is at least the task's ``filter_reward``; ``greedy``,
``sampled`` and ``best-of-n`` are the start model itself), then evaluates it on the task's test split and records
the task reward, its metrics, the KL to the start model, the start model's perplexity of the generations and the
metrics that catch reward hacking (:func:`text_envs.diversity.hacking_metrics`).

Two evaluations. The presets with ``eval_samples`` (``rl-small``, ``rl-full``, ``hack``) score every row on
``eval_samples`` pure samples per prompt for ``eval_examples`` prompts (:mod:`text_envs_app.bench_eval`), NLPO
both through its top-p mask (``nlpo``) and without it (``nlpo-unmasked``); per seed they first sample
``start_samples`` texts per prompt from the start model, which give the ``sampled`` and ``best-of-n`` rows,
best-of-n at each trained row's KL (its paired baseline) and, pooled over seeds, the optimum curve of
``frontier.png``. The other presets (``small``, ``full``, ``grue-imdb``, tasks that pay per token) score one text
per prompt, greedy or sampled as the task says.

Aggregation (:mod:`text_envs_app.bench_stats`): per method the interquartile mean over seeds with a 95%
stratified bootstrap interval; per trained method the paired difference against the best non-RL baseline with its
bootstrap interval and the probability of improvement (rliable's definitions). Report and plots:
:mod:`text_envs_app.bench_report`.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError, unknown_name
from text_envs_app.algorithms import MAIN_JOB_FREEZE, MAIN_JOB_STEPS
from text_envs_app.bench_report import (  # noqa: F401  (the bench's public names, kept here)
    HACK_THRESHOLDS,
    RL_ROWS,
    curve_bands,
    decoding_cell,
    format_results,
    hacking_flags,
    paired_comparisons,
    plot_bench,
    plot_curves,
    plot_frontier,
    separation,
)
from text_envs_app.bench_stats import (  # noqa: F401
    BOOTSTRAP_REPS,
    CONFIDENCE,
    Aggregate,
    aggregate,
    iqm,
    stratified_bootstrap_ci,
)
from text_envs_app.bench_task import LEGACY_METRICS, BenchTask  # noqa: F401  (bench.LEGACY_METRICS kept)
from text_envs_app.curves import GreedyCurve
from text_envs_app.run_lock import holds_run_lock

BENCH_METHODS = ("greedy", "sampled", "supervised", "ppo", "a2c", "trpo", "nlpo", "grpo", "rloo", "reinforce", "raft",
                 "dpo")
"""The methods a bench can run on any task: the start model greedy and sampled, supervised teacher forcing, the RL
algorithms (``text_envs_app.algorithms``; each with its env's defaults)."""
TEXT_REWARD_METHODS = ("best-of-n", "supervised-filtered")
"""Methods that rank texts by the task's reward, so only for a task with a text reward: best-of-n of the start
model (``best_of_n`` texts, the best kept) and supervised training on the references whose reward is at least the
task's ``filter_reward``."""
ALL_METHODS = BENCH_METHODS + TEXT_REWARD_METHODS
RL_METHODS = ("ppo", "a2c", "trpo", "nlpo", "grpo", "rloo", "reinforce", "raft", "dpo")
"""The methods trained by an SB3-style algorithm: one run per KL coefficient, and a learning curve each."""
CLASSIC_METHODS = ("greedy", "sampled", "supervised", "ppo", "a2c", "nlpo")
"""The first rl-small's methods (``small`` and ``full`` keep them)."""
COMPARED_METHODS = ("greedy", "sampled", "best-of-n", "supervised-filtered", "raft", "dpo", "grpo", "rloo",
                    "reinforce", "ppo", "a2c", "nlpo")
"""``rl-small``'s methods: the start model, the two non-RL baselines and every RL method but TRPO (its 8,192-token
run took 333 s against PPO's 66 s on 2 CPU cores; ``rl-full`` and ``--methods`` add it)."""
UNMASKED = "nlpo-unmasked"
"""The row of NLPO's trained model sampled without its top-p mask (beside ``nlpo``, sampled through it)."""

SETTINGS_FILE = "bench.json"
"""The file in a bench's folder that records its preset, overrides, seeds, methods and KL coefficients."""

RAFT_LR = 7e-5
"""RAFT's learning rate in the ``main-job`` preset (the main job's layer trained, 8 samples per prompt, 73,728 tokens):
the lowest of those tried that spends more KL than the main job's RLOO (seed 0, KL / reward: 5e-5 0.14 / 0.575,
7e-5 0.27 / 0.582, 1e-4 0.49 / 0.603, 2e-4 1.67 / 0.676; RLOO 0.17 / 0.739), so RLOO is compared with RAFT at no
more KL (``benchmarks/RESULTS.md`` section 19)."""

CONTINUATION = BenchTask(
    "TextContinuation-v0", "continuation/sentiment", reward="sentiment", metrics=("sentiment-classifier",),
    decoding="sampled", filter_reward=0.5,
)
"""Continue a review; reward: VADER's positive sentiment in [0, 1]. Half the references continue negatively, so
imitating all of them cannot raise the reward; ``supervised-filtered`` imitates the positive half (reward >= 0.5,
RL4LMs' supervised baseline for IMDB)."""
FAITHFUL_SUMMARIZATION = BenchTask(
    "TextSummarization-v0", "summarization/faithful", reward="0.5*rouge-l+0.5*fact-precision",
    env_kwargs={"reference_noise": 0.5}, metrics=("rouge-l", "fact-precision"), filter_reward=0.99,
)
"""Summaries whose train references state an unsupported detail half the time (test references are clean);
reward: ROUGE-L and the share of the summary's facts found in the document, half each; ``supervised-filtered``
imitates the references that score at least 0.99 against themselves (those without an unsupported detail)."""

BENCH_PRESETS: dict[str, dict[str, Any]] = {
    # every method at equal generated tokens, 10 seeds, 1,000 test prompts x 8 samples: the evaluation noise of a
    # row is 0.0044 (VADER's reward varies within a prompt: 4 samples gave 0.0061, above the 0.005 aimed at). 1 h 40 min
    # on 2 CPU cores run in two parts of 5 seeds (--first-seed, bench-merge; benchmarks/RESULTS.md section 22)
    "rl-small": dict(envs=(CONTINUATION,), steps=8_192, n_envs=16, n_steps=64, eval_examples=1_000, eval_samples=8,
                     start_samples=32, best_of_n=4, seeds=10, kl_coefs=(0.05,), curve_points=5, curve_examples=32,
                     methods=COMPARED_METHODS),
    # the main job's recipe (text-envs train's default on this task: RLOO, beta 0.5, 122,880 tokens, one layer trained)
    # against the start model, best-of-n at its KL and RAFT at the same tokens, 10 seeds, 1,000 test prompts x 8
    # samples: issue 23's headline comparison, about 40 minutes on 2 CPU cores in two parts. RAFT samples as many texts per
    # prompt (8), trains the same layer and keeps the best text of each group (its own rule); its learning rate is
    # the lowest of RESULTS.md section 19's that spends more KL than RLOO (RAFT_LR)
    "main-job": dict(envs=(CONTINUATION,), steps=MAIN_JOB_STEPS, n_envs=32, n_steps=64, eval_examples=1_000, eval_samples=8,
                     start_samples=16, best_of_n=2, seeds=10, kl_coefs=(0.5,), curve_points=0,
                     methods=("sampled", "best-of-n", "raft", "rloo"),
                     method_settings={"raft": dict(group_size=8, freeze=MAIN_JOB_FREEZE, learning_rate=RAFT_LR)}),
    # both new tasks, 10 seeds, three KL coefficients (the reward/KL frontier), 4x the budget: a GPU or a long run
    "rl-full": dict(envs=(CONTINUATION, FAITHFUL_SUMMARIZATION), steps=32_768, n_envs=32, n_steps=64,
                    eval_examples=1_000, eval_samples=8, start_samples=32, best_of_n=4, seeds=10,
                    kl_coefs=(0.01, 0.05, 0.2), curve_points=6, curve_examples=64, methods=ALL_METHODS),
    # reward hacking on purpose: no or almost no KL penalty for 10x rl-small's tokens; the hacking metrics must flag
    # the degenerate texts VADER still pays for (results.md's hacking column)
    "hack": dict(envs=(CONTINUATION,), steps=81_920, n_envs=16, n_steps=64, eval_examples=200, eval_samples=4,
                 start_samples=16, best_of_n=4, seeds=3, kl_coefs=(0.0, 0.01), curve_points=5, curve_examples=32,
                 methods=("greedy", "sampled", "best-of-n", "ppo", "reinforce")),
    # the first presets (README's measured table): summarization against the embedded references, 3 seeds. TRPO is
    # left out for time: its cell took 291 s and 8.0 GB on 2 cores (256-token prompts), against about 30 s for PPO
    "small": dict(envs=("TextSummarization-v0",), steps=2_048, eval_examples=100, n_envs=16, seeds=3,
                  methods=CLASSIC_METHODS),
    "full": dict(envs=("TextSummarization-v0", "DialogueGeneration-v0", "MachineTranslation-v0"), steps=8_192,
                 eval_examples=200, n_envs=16, seeds=3, methods=CLASSIC_METHODS),
}
"""Preset name -> settings: ``envs`` (:class:`BenchTask` or env ids), ``steps`` (generated tokens per training
run), ``n_envs``, ``n_steps`` (tokens per env per rollout), ``eval_examples`` (test prompts evaluated),
``eval_samples`` (texts sampled per prompt for every row; absent: one text per prompt), ``start_samples`` (the
start model's samples per prompt and seed: at least ``eval_samples * best_of_n``), ``best_of_n`` (the best-of-n
row's n), ``seeds`` (default number of seeds), ``kl_coefs`` (the RL methods' KL coefficients), ``curve_points``
(evaluations on the curve, the start and the end included; 0: no curves), ``curve_examples`` (validation prompts
of each), ``methods``; ``method_settings`` (``{method: TrainConfig settings}`` of one method, over the registry's);
``model`` and ``dataset`` (a preset that trains another model on other data: grue-imdb)."""
from text_envs_app.grue import grue_presets, override_preset  # noqa: E402  (beside the presets it adds to)

BENCH_PRESETS.update(grue_presets())
DEFAULT_KL_COEF = 0.02  # TrainConfig's: presets without kl_coefs


# ---------------------------------------------------------------------------------------------- one run
def _as_task(task: BenchTask | str) -> BenchTask:
    return task if isinstance(task, BenchTask) else BenchTask(task, task)


def start_rewards_key(task_name: str) -> str:
    """A task's array name in ``start_rewards.npz`` (``continuation/sentiment`` -> ``continuation__sentiment``)."""
    return task_name.replace("/", "__")


def preset_tasks(preset: dict[str, Any]) -> tuple[BenchTask, ...]:
    """A preset's ``envs`` as :class:`BenchTask` objects (an env id: a task of that env, named by it)."""
    return tuple(_as_task(t) for t in preset["envs"])


def _config(method: str, task: BenchTask, seed: int, preset: dict[str, Any], kl_coef: float | None):
    from text_envs_app.algorithms import SB3_ALGORITHMS, defaults
    from text_envs_app.config import TrainConfig

    algo = "supervised" if method.startswith("supervised") else method if method in SB3_ALGORITHMS else "ppo"
    values: dict[str, Any] = defaults(task.env, algo)  # the env's and algorithm's; the preset's own settings win
    values.update(env=task.env, algo=algo, steps=preset["steps"], seed=seed, n_envs=preset["n_envs"],
                  eval_examples=preset["eval_examples"], reward=task.reward,
                  gym_kwargs=dict(task.env_kwargs) or None, device=preset.get("device", "cpu"),
                  model=preset.get("model"), dataset=preset.get("dataset"))
    values.update(preset.get("method_settings", {}).get(method, {}))  # a preset's settings of one method
    values.update({} if kl_coef is None else {"kl_coef": kl_coef})
    if "n_steps" in preset:
        values["n_steps"] = preset["n_steps"]
    if values.get("group_size") and values["n_envs"] % values["group_size"]:  # a registry group the preset's
        values["group_size"] = math.gcd(values["n_envs"], values["group_size"])  # envs cannot hold: the largest that fits
    if method == "supervised-filtered":
        values["filter_reward"] = task.filter_reward
    cfg = TrainConfig(**values)
    cfg.check_device()  # "auto" becomes the device used; "cuda" without one is refused
    return cfg


def evaluate_run(method: str, policy: Any, start_lm: Any, cfg: Any, task: BenchTask, seed: int) -> dict[str, float]:
    """One text per test prompt (the presets without ``eval_samples``): the task metrics and reward of the texts
    (greedy or sampled as ``task.decoding`` says; the ``greedy`` and ``sampled`` rows decode as they are named), the
    KL to the start model along them, the start model's perplexity of them and the hacking metrics."""
    from text_envs import evaluation
    from text_envs_app.evaluation import sequence_kl, start_model_ppl, text_hacking_metrics

    greedy = method == "greedy" or (method != "sampled" and task.decoding == "greedy")
    result = evaluation.evaluate(cfg.env, policy, split=cfg.eval_split, n_examples=cfg.eval_examples,
                                 deterministic=greedy, metrics=task.metrics, batch_size=32, seed=seed,
                                 env_kwargs=cfg.env_kwargs())
    table: dict[str, Any] = dict(result.table)
    table["decoding"] = "greedy" if greedy else "sampled"  # seeded by the run's seed
    table["kl"] = sequence_kl(policy, start_lm, cfg, result.generations)
    table["start_ppl"] = start_model_ppl(start_lm, cfg, result.generations)
    table.update(text_hacking_metrics(cfg, result.generations))  # distinct-n, self-BLEU, validity, AFINN judge
    return table


def _evaluate_sampled(method: str, policy: Any, start_lm: Any, cfg: Any, task: BenchTask, seed: int,
                      preset: dict[str, Any], start_curve: Any) -> dict[str, Any]:
    """``eval_samples`` pure samples per prompt of the trained model (:mod:`text_envs_app.bench_eval`), and best-of-n
    of the start model at its KL; NLPO's table is the masked one, with the unmasked one under ``UNMASKED``."""
    from text_envs.frontier import best_of_n_at_kl
    from text_envs_app.bench_eval import eval_env, policy_masked_samples, sample_rows, sampled_table

    samples = int(preset["eval_samples"])
    what = f"{samples} sampled x {cfg.eval_examples} prompts"
    env = eval_env(cfg)
    try:
        plain = sampled_table(sample_rows(policy.model, cfg, env, samples, seed), cfg, env, task.metrics, start_lm,
                              policy.model)
        plain["decoding"] = what + (", no mask" if method == "nlpo" else "")
        table = plain
        if method == "nlpo":  # the policy as trained: sampled through its frozen copy's top-p support
            mask = (policy.mask_model, policy.top_k, policy.top_p)
            table = sampled_table(policy_masked_samples(policy, cfg, env, samples, seed), cfg, env, task.metrics,
                                  start_lm, policy.model, mask=mask)
            table["decoding"] = what + f", top-p {policy.top_p:g} mask"
            table[UNMASKED] = plain
    finally:
        env.close()
    for t in (table, table.get(UNMASKED)):
        if t is not None and start_curve:
            t["best_of_n_at_kl"] = best_of_n_at_kl(start_curve, t["kl"])
    return table


def _bench_one(method: str, task: BenchTask | str, seed: int, preset: dict[str, Any], kl_coef: float | None = None,
               curve: list[tuple[int, float]] | None = None, start_value: float | None = None,
               start_curve: Any = None) -> dict[str, Any]:
    """One run: train ``method`` from the shipped model with the preset's token budget (if it trains), then
    evaluate it on the test split.

    :param task: a :class:`BenchTask` or an env id.
    :param kl_coef: the RL methods' KL coefficient (None: TrainConfig's).
    :param curve: for an RL method, a list that receives the greedy curve's ``(tokens, reward)`` points
        (``preset["curve_points"]`` evaluations on ``preset["curve_examples"]`` validation prompts).
    :param start_value: the curve's value at 0 tokens, when known.
    :param start_curve: the best-of-n curve of this seed's start-model samples (``best_of_n_at_kl`` of the row).
    :return: the metric table (``reward``, the task's metrics, ``kl``, ``start_ppl``, ``gen_len``, the hacking
        metrics; with ``eval_samples`` also ``eval_se`` and, for NLPO, the unmasked table under ``UNMASKED``),
        ``train_tokens``, ``train_s`` (building and training) and ``wall_s`` (training and evaluation).
    """
    import torch as th
    from stable_baselines3.common.utils import set_random_seed

    from text_envs_app.engines.sb3 import attach_baseline, build_model, make_train_env, starting_model

    task = _as_task(task)
    if method not in ALL_METHODS or method == "best-of-n":  # best-of-n trains nothing: _start_phase scores it
        raise unknown_name("method", method, tuple(m for m in ALL_METHODS if m != "best-of-n"))
    cfg = _config(method, task, seed, preset, kl_coef if method in RL_METHODS else None)
    threads = th.get_num_threads()  # kept: a library call may change it, and every run must get the same
    set_random_seed(seed)
    t0 = time.time()
    venv = make_train_env(cfg)
    try:
        model = build_model(cfg, venv, None)
        start_lm = starting_model(model, cfg)
        attach_baseline(venv, start_lm)
        train_tokens = 0
        if method in RL_METHODS:
            callbacks = []
            if curve is not None and preset.get("curve_points", 0) >= 2:
                sampled = task.decoding == "sampled"  # then the curve is the sampled texts' reward
                recorder = GreedyCurve.make(cfg, cfg.whole_rollout_steps(), preset["curve_points"],
                                            preset.get("curve_examples", 32), None if sampled else start_value,
                                            reference=start_lm if sampled else None, sampled=sampled)
                callbacks.append(recorder)
            model.learn(cfg.steps, callback=callbacks)
            train_tokens = int(model.num_timesteps)
            if callbacks:
                curve.extend(recorder.sampled_points if sampled else recorder.points)
        elif method.startswith("supervised"):
            from text_envs_app.algorithms import train_supervised

            train_tokens = int(train_supervised(model.policy, cfg, log=lambda *_: None)["tokens"])
        train_s = time.time() - t0  # building the model and training, without the evaluation
        if preset.get("eval_samples") and method not in ("greedy", "sampled"):
            table = _evaluate_sampled(method, model.policy, start_lm, cfg, task, seed, preset, start_curve)
        else:
            table = evaluate_run(method, model.policy, start_lm, cfg, task, seed)
    finally:
        venv.close()
    table.update(train_tokens=train_tokens, train_s=train_s, wall_s=time.time() - t0)
    if UNMASKED in table:
        table[UNMASKED].update(train_tokens=train_tokens, train_s=train_s, wall_s=table["wall_s"])
    del model
    th.set_num_threads(threads)
    return table


class StartSamples:
    """The start model's samples of one task: per seed, ``start_samples`` texts for each of the first
    ``eval_examples`` test prompts (seeded by the seed), their rewards, the best-of-n curve of each seed and the
    ``sampled`` / ``best-of-n`` rows (:func:`start_phase`)."""

    def __init__(self) -> None:
        self.curves: dict[int, list[Any]] = {}
        self.rewards: dict[int, np.ndarray] = {}  # seed -> (N, M)
        self.tables: dict[tuple[str, int], dict[str, Any]] = {}

    def pooled(self) -> np.ndarray:
        """``(N, seeds * M)``: every seed's samples side by side in seed order (the frontier's estimate)."""
        return np.concatenate([self.rewards[s] for s in sorted(self.rewards)], axis=1)


def start_phase(task: BenchTask, seeds: Sequence[int], preset: dict[str, Any], methods: Sequence[str],
                log: Callable[[str], Any] = print) -> StartSamples:
    """Sample the start model for every seed (:class:`StartSamples`); the ``sampled`` row scores the first
    ``eval_samples`` texts per prompt, the ``best-of-n`` row the best of each of ``eval_samples`` disjoint groups of
    ``best_of_n`` (KL: the bound log n - (n-1)/n)."""
    from text_envs.frontier import best_of_n_curve, best_of_n_kl_bound
    from text_envs_app.bench_eval import best_of_n_rows, eval_env, sample_rows, sampled_table
    from text_envs_app.frontier import load_start_model

    cfg = _config("sampled", task, 0, preset, None)
    S, M, n = int(preset["eval_samples"]), int(preset["start_samples"]), int(preset.get("best_of_n", 4))
    start_lm = load_start_model(preset.get("model"), cfg)
    env = eval_env(cfg)
    out = StartSamples()
    what = f"{S} sampled x {min(env.num_examples, cfg.eval_examples)} prompts"
    try:
        for seed in seeds:
            t0 = time.time()
            rows = sample_rows(start_lm, cfg, env, M, seed)
            rewards = np.array([r["rewards"] for r in rows])  # (N, M)
            out.rewards[seed] = rewards
            out.curves[seed] = best_of_n_curve(rewards, M)
            sampled_s = time.time() - t0
            if "sampled" in methods:
                table = sampled_table(rows, cfg, env, task.metrics, start_lm, None, samples=S)
                out.tables[("sampled", seed)] = dict(table, decoding=what, train_tokens=0, wall_s=time.time() - t0)
            if "best-of-n" in methods:
                t1 = time.time()
                table = sampled_table(best_of_n_rows(rows, n, S), cfg, env, task.metrics, start_lm, None, samples=S)
                table["kl"] = best_of_n_kl_bound(n)  # at most this; the texts' own KL is not computable
                out.tables[("best-of-n", seed)] = dict(table, decoding=f"best of {n}, {what}", train_tokens=0,
                                                       wall_s=sampled_s + time.time() - t1)
            log(f"{task.name} start model seed {seed}: {M} samples x {rewards.shape[0]} prompts, mean reward "
                f"{rewards.mean():.4f}, best-of-{n} {out.curves[seed][n - 1].reward:.4f} ({time.time() - t0:.0f} s)")
    finally:
        env.close()
    return out


# ---------------------------------------------------------------------------------------------- the bench
def _check_kl_coefs(kl_coefs: Sequence[float]) -> tuple[float, ...]:
    coefs = tuple(float(k) for k in kl_coefs)
    if not coefs:
        raise TextEnvsError("--kl-coefs: expected at least one KL coefficient, got none.")
    bad = [k for k in coefs if not (math.isfinite(k) and k >= 0.0)]
    if bad:
        raise TextEnvsError(f"--kl-coefs: expected finite coefficients >= 0, got {', '.join(map(str, bad))}.")
    if len(set(coefs)) != len(coefs):
        raise TextEnvsError(f"--kl-coefs: expected distinct coefficients, got {', '.join(f'{k:g}' for k in coefs)}.")
    return coefs


def _check_methods(methods: Sequence[str], preset: dict[str, Any], tasks: Sequence[BenchTask]) -> None:
    """Refuse a method the preset or a task cannot run, with the fix."""
    if not methods:
        raise TextEnvsError(f"--methods: expected at least one of {', '.join(ALL_METHODS)}, got none.")
    for m in methods:
        if m not in ALL_METHODS:
            raise unknown_name("method", m, ALL_METHODS)
    samples = preset.get("eval_samples")
    if "best-of-n" in methods:
        if not samples:
            raise TextEnvsError("--methods best-of-n needs a preset with eval_samples (rl-small, rl-full, hack): it "
                                "scores the start model's sampled texts.")
        need = int(samples) * int(preset.get("best_of_n", 4))
        if int(preset.get("start_samples", 0)) < need:
            raise TextEnvsError(f"best-of-{preset.get('best_of_n', 4)} with {samples} texts per prompt needs "
                                f"start_samples >= {need}, got {preset.get('start_samples')}.")
    if samples and int(preset.get("start_samples", 0)) < 2:
        raise TextEnvsError(f"a preset with eval_samples needs start_samples >= 2 (the start model's texts per "
                            f"prompt), got {preset.get('start_samples')}.")
    if "supervised-filtered" in methods:
        bare = [t.name for t in tasks if t.filter_reward is None]
        if bare:
            raise TextEnvsError(f"--methods supervised-filtered needs a task with a filter_reward threshold; "
                                f"{', '.join(bare)} has none: leave it out for this preset.")


@holds_run_lock("text-envs bench --out")  # one writer per output folder (text_envs_app.run_lock)
def run_benchmark(preset_name: str, out: str, seeds: int | None = None, overwrite: bool = False,
                  methods: Sequence[str] | None = None, kl_coefs: Sequence[float] | None = None,
                  reps: int = BOOTSTRAP_REPS, device: str = "cpu", overrides: dict[str, Any] | None = None,
                  log: Callable[[str], Any] = print, first_seed: int = 0) -> list[dict[str, Any]]:
    """Every method on every task of a preset, with the same seeds and the same budget in generated tokens.

    :param preset_name: a key of :data:`BENCH_PRESETS`.
    :param out: the output folder (refused if it exists and is not empty, unless ``overwrite``).
    :param seeds: how many seeds: ``first_seed .. first_seed + seeds - 1`` (None: the preset's number).
    :param methods: a subset of :data:`ALL_METHODS`; None: the preset's.
    :param kl_coefs: the RL methods' KL coefficients, one run each (None: the preset's); two or more draw the
        reward/KL frontier.
    :param reps: bootstrap samples of each confidence interval.
    :param device: the torch device of every run: cpu, cuda or auto.
    :param first_seed: the first seed; a bench split into parts (``--first-seed``, each part its own folder) is
        joined by :func:`text_envs_app.bench_merge.merge_benchmarks`.
    :param overrides: replace the preset's ``model``, ``reward_model``, ``dataset``, ``steps``, ``n_envs``,
        ``n_steps`` or ``eval_examples`` (:func:`text_envs_app.grue.override_preset`; None values are ignored).
    :return: one dict per run: ``task``, ``env``, ``method``, ``kl_coef`` (None for methods that do not train by
        RL), ``seed``, the metric table, ``train_tokens`` and ``wall_s``.

    Writes to ``out``: ``results.md`` (per task, each method's IQM [95% CI] over seeds, the paired comparisons, the
    hacking flags), ``results.csv`` (one row per run; ``runs.jsonl`` gets each row as it finishes), ``curves.csv``,
    ``results.png``, ``frontier.png`` and ``curves.png``; with ``eval_samples`` also ``start_rewards.npz`` (the
    start model's sampled rewards per task, ``(prompts, seeds * start_samples)``).
    """
    from text_envs_app.config import TrainConfig
    from text_envs_app.run_folder import prepare_out

    if preset_name not in BENCH_PRESETS:
        raise unknown_name("preset", preset_name, BENCH_PRESETS)
    preset = dict(override_preset(BENCH_PRESETS[preset_name], overrides), device=device)
    TrainConfig(device=device).check_device()
    tasks = preset_tasks(preset)
    n_seeds = int(preset.get("seeds", 5) if seeds is None else seeds)
    if n_seeds < 1:
        raise TextEnvsError(f"--seeds must be at least 1, got {n_seeds}.")
    if first_seed < 0:
        raise TextEnvsError(f"--first-seed must be at least 0, got {first_seed}.")
    seed_ids = tuple(range(first_seed, first_seed + n_seeds))
    methods = tuple(methods if methods is not None else preset.get("methods", BENCH_METHODS))
    _check_methods(methods, preset, tasks)
    coefs = _check_kl_coefs(kl_coefs if kl_coefs is not None else preset.get("kl_coefs", (DEFAULT_KL_COEF,)))
    if preset.get("eval_samples"):
        from text_envs_app.bench_eval import eval_env

        for task in tasks:  # a task that pays per token is refused before the output folder is made
            eval_env(_config("sampled", task, 0, preset, None)).close()
    out_dir = prepare_out(TrainConfig(out=out, overwrite=overwrite))
    # what the bench ran, so that parts of it run apart can be checked and joined (text_envs_app.bench_merge)
    (out_dir / SETTINGS_FILE).write_text(json.dumps(
        {"preset": preset_name, "overrides": {k: v for k, v in (overrides or {}).items() if v is not None},
         "seeds": list(seed_ids), "methods": list(methods), "kl_coefs": list(coefs), "device": device}, indent=1))
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    start_rewards: dict[str, np.ndarray] = {}
    with open(out_dir / "runs.jsonl", "w") as progress:
        def record(task: BenchTask, method: str, coef: float | None, seed: int, table: dict[str, Any]) -> None:
            row = {"task": task.name, "env": task.env, "method": method, "kl_coef": coef, "seed": seed, **table}
            rows.append(row)
            progress.write(json.dumps(row) + "\n")
            progress.flush()
            log(f"{task.name} {format_label(method, coef):<16} seed {seed}: " + ", ".join(
                f"{k}={v:.4f}" for k, v in table.items()
                if k in ("reward", "eval_se", "rouge-l", "fact-precision", "kl", "distinct-2", "best_of_n_at_kl",
                         "wall_s")))

        for task in tasks:
            pooled = _run_task(task, methods, coefs, seed_ids, preset, record, curves, log)
            if pooled is not None:
                start_rewards[task.name] = pooled
    write_report(out_dir, rows, curves, start_rewards, preset_name, preset, tasks, coefs, len(seed_ids), reps, log)
    return rows


def write_report(out_dir: Path, rows: list[dict[str, Any]], curves: list[dict[str, Any]],
                 start_rewards: dict[str, np.ndarray], preset_name: str, preset: dict[str, Any],
                 tasks: Sequence[BenchTask], coefs: Sequence[float], seeds: int, reps: int = BOOTSTRAP_REPS,
                 log: Callable[[str], Any] = print) -> None:
    """Write a bench's ``results.csv``, ``curves.csv``, ``start_rewards.npz``, ``results.md`` and plots from its
    rows (:func:`run_benchmark`'s return), curve points and the start model's pooled rewards per task."""
    _write_csv(out_dir / "results.csv", rows, ["task", "env", "method", "kl_coef", "seed"])
    _write_csv(out_dir / "curves.csv", curves, ["task", "method", "kl_coef", "seed", "tokens", "reward"])
    if start_rewards:
        np.savez_compressed(out_dir / "start_rewards.npz", **{start_rewards_key(name): r
                                                              for name, r in start_rewards.items()})
    md = format_results(rows, preset_name, preset, seeds, reps)
    (out_dir / "results.md").write_text(md)
    plot_bench(rows, tasks, out_dir / "results.png", reps=reps)
    plot_frontier(rows, tasks, out_dir / "frontier.png", start_rewards or None, reps=reps)
    plot_curves(curves, tasks, coefs, out_dir / "curves.png", reps=reps)
    log(md)
    written = "results.md, results.csv, curves.csv, runs.jsonl, bench.json, results.png, frontier.png, curves.png"
    log(f"wrote {out_dir}: {written}" + (", start_rewards.npz" if start_rewards else ""))


def _run_task(task: BenchTask, methods: Sequence[str], coefs: Sequence[float], seeds: Sequence[int],
              preset: dict[str, Any],
              record: Callable[..., None], curves: list[dict[str, Any]], log: Callable[[str], Any]
              ) -> np.ndarray | None:
    """Every run of one task, each row passed to ``record(task, method, kl_coef, seed, table)`` as it finishes
    and each curve point appended to ``curves``; returns the start model's pooled sampled rewards (None without
    ``eval_samples``)."""
    start = start_phase(task, seeds, preset, methods, log) if preset.get("eval_samples") else None
    pooled = start.pooled() if start is not None else None
    start_value = None  # the start model's greedy curve value, the same for every RL run of the task
    for method in methods:
        if start is not None and method in ("sampled", "best-of-n"):
            for seed in seeds:
                record(task, method, None, seed, start.tables[(method, seed)])
            continue
        if start is not None and method == "greedy":  # deterministic: one evaluation serves every seed
            table = _bench_one("greedy", task, 0, preset)
            table["decoding"] = "greedy, the same texts for every seed"
            for seed in seeds:
                record(task, method, None, seed, dict(table))
            continue
        for coef in coefs if method in RL_METHODS else (None,):
            for seed in seeds:
                points: list[tuple[int, float]] = []
                table = _bench_one(method, task, seed, preset, kl_coef=coef, curve=points, start_value=start_value,
                                   start_curve=start.curves[seed] if start is not None else None)
                if points and points[0][0] == 0:
                    start_value = points[0][1]
                unmasked = table.pop(UNMASKED, None)
                for t in (table, unmasked):
                    if t is not None and start is not None and coef:
                        t.update(gain_shares(t["reward"], t["kl"], coef, start.rewards[seed], pooled))
                record(task, method, coef, seed, table)
                if unmasked is not None:
                    record(task, UNMASKED, coef, seed, unmasked)
                curves += [{"task": task.name, "method": method, "kl_coef": coef, "seed": seed, "tokens": t,
                            "reward": r} for t, r in points]
    return pooled


def gain_shares(reward: float, kl: float, kl_coef: float, seed_rewards: np.ndarray, pooled_rewards: np.ndarray
                ) -> dict[str, float]:
    """A trained row's share of the gain in ``J = reward - kl_coef * KL`` that its start model leaves to take
    (:func:`text_envs_app.frontier.compare_to_frontier`): ``gain_share`` against the limit estimated from its
    seed's start-model samples (as ``text-envs train`` estimates it), ``gain_share_pooled`` from every seed's samples
    of the same prompts. The limit's estimate (a log-mean-exp over the samples of a prompt) is low with few samples,
    so the first share reads higher; the pooled one, on seeds x as many samples, is the closer reading."""
    from text_envs_app.frontier import compare_to_frontier

    return {"gain_share": compare_to_frontier(seed_rewards, kl_coef, reward, kl)["gain_share"],
            "gain_share_pooled": compare_to_frontier(pooled_rewards, kl_coef, reward, kl)["gain_share"]}


def format_label(method: str, kl_coef: float | None) -> str:
    """A log line's label of a run: the method with its β when it has one."""
    return method if kl_coef is None else f"{method} (β={kl_coef:g})"


def _write_csv(path: Path, rows: list[dict[str, Any]], first: list[str]) -> None:
    keys = sorted({k for r in rows for k in r} - set(first))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*first, *keys])
        writer.writeheader()
        writer.writerows(rows)
