"""``text-envs bench``: every method on the same tasks, seeds and token budget, aggregated as RL benchmarks are.

Each run (task, method, KL coefficient, seed) trains the shipped model with the preset's budget in generated
tokens (the RL algorithms through SB3; ``supervised`` by teacher forcing on as many train references as fit in
the same budget; ``greedy``/``sampled`` are the start model itself), then evaluates it on the task's test split
and records the task reward, its metrics, the KL to the start model and the start model's perplexity of the
generations (the fluency figure: ``start_model_perplexity``).

Aggregation (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice"): per method the
**interquartile mean** over seeds (the mean of the middle 50% of runs: :func:`iqm`) with a 95% **stratified
bootstrap** confidence interval (:func:`stratified_bootstrap_ci`: runs resampled with replacement within each
task, the percentile interval of the bootstrap IQMs). This is what the ``rliable`` package computes
(``rliable.library.get_interval_estimates`` with ``metrics.aggregate_iqm``, percentile method); it is
implemented here with NumPy because rliable 1.2.0 (the newest) cannot be imported with the pandas that
``datasets`` installs: it pins ``arch < 8``, and arch 7.x fails at import under pandas 3 (``deprecate_kwarg``),
while arch 8 rejects the ``random_state=None`` that rliable passes. Cross-checked against rliable under
pandas 2.2 (see ``tests/test_bench_presets.py``).

Plots: ``frontier.png`` (reward against KL to the start, each RL method at every ``--kl-coefs`` coefficient),
``curves.png`` (a greedy evaluation, or a seeded sampled one for a task whose ``decoding`` is ``"sampled"``, on a
fixed set of validation prompts against generated tokens, recorded by
an SB3 callback during training: IQM over seeds with its 95% band) and ``results.png`` (reward per method).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError, unknown_name
from text_envs_app.bench_task import LEGACY_METRICS, BenchTask  # noqa: F401  (bench.LEGACY_METRICS kept)
from text_envs_app.curves import GreedyCurve
from text_envs_app.run_lock import holds_run_lock

BENCH_METHODS = ("greedy", "sampled", "supervised", "ppo", "a2c", "trpo", "nlpo", "grpo", "rloo", "reinforce", "raft",
                 "dpo")
"""Every method a bench can run: the start model greedy and sampled, supervised teacher forcing, the RL algorithms
(``text_envs_app.algorithms``; each with its env's defaults)."""
RL_METHODS = ("ppo", "a2c", "trpo", "nlpo", "grpo", "rloo", "reinforce", "raft", "dpo")
"""The methods trained by an SB3-style algorithm: one run per KL coefficient, and a learning curve each."""
CLASSIC_METHODS = ("greedy", "sampled", "supervised", "ppo", "a2c", "nlpo")
"""The presets' methods before the critic-free and preference algorithms came (their run times are measured);
``--methods`` adds the others."""

CONTINUATION = BenchTask(
    "TextContinuation-v0", "continuation/sentiment", reward="sentiment", metrics=("sentiment-classifier",),
    decoding="sampled",
)
"""Continue a review; reward: VADER's positive sentiment in [0, 1]. Half the references continue negatively, so
imitation cannot reach what RL can (the preference task of RL4LMs' IMDB and TRL's sentiment example)."""
FAITHFUL_SUMMARIZATION = BenchTask(
    "TextSummarization-v0", "summarization/faithful", reward="0.5*rouge-l+0.5*fact-precision",
    env_kwargs={"reference_noise": 0.5}, metrics=("rouge-l", "fact-precision"),
)
"""Summaries whose train references state an unsupported detail half the time (test references are clean);
reward: ROUGE-L and the share of the summary's facts found in the document, half each."""

BENCH_PRESETS: dict[str, dict[str, Any]] = {
    # the new tasks, where a reward measures what the references do not have: 5 seeds, one KL coefficient; meant
    # to finish in under 30 minutes on 2 CPU cores (one seed of these six methods: 257 s). Every method but TRPO:
    # its 8,192-token run took 333 s here (10 critic passes, 15 conjugate-gradient steps and a line search through
    # the LM per update) against PPO's 66 s, and 5 seeds of it alone take 28 minutes; --methods adds it (rl-full
    # has it). benchmarks/RESULTS.md section 9.
    "rl-small": dict(envs=(CONTINUATION,), steps=8_192, n_envs=16, n_steps=64, eval_examples=64, seeds=5,
                     kl_coefs=(0.05,), curve_points=5, curve_examples=32,
                     methods=CLASSIC_METHODS),
    # both new tasks, 10 seeds, three KL coefficients (the reward/KL frontier), 4x the budget: a GPU or a long run
    "rl-full": dict(envs=(CONTINUATION, FAITHFUL_SUMMARIZATION), steps=32_768, n_envs=32, n_steps=64,
                    eval_examples=200, seeds=10, kl_coefs=(0.01, 0.05, 0.2), curve_points=6, curve_examples=64,
                    methods=BENCH_METHODS),
    # the first presets (README's measured table): summarization against the embedded references, 3 seeds. TRPO is
    # left out for time: its cell took 291 s and 8.0 GB on 2 cores (256-token prompts), against about 30 s for PPO
    "small": dict(envs=("TextSummarization-v0",), steps=2_048, eval_examples=100, n_envs=16, seeds=3,
                  methods=CLASSIC_METHODS),
    "full": dict(envs=("TextSummarization-v0", "DialogueGeneration-v0", "MachineTranslation-v0"), steps=8_192,
                 eval_examples=200, n_envs=16, seeds=3, methods=CLASSIC_METHODS),
}
"""Preset name -> settings: ``envs`` (:class:`BenchTask` or env ids), ``steps`` (generated tokens per training
run), ``n_envs``, ``n_steps`` (tokens per env per rollout), ``eval_examples`` (test examples evaluated),
``seeds`` (default number of seeds), ``kl_coefs`` (the RL methods' KL coefficients), ``curve_points`` (greedy
evaluations on the curve, the start and the end included; 0: no curves), ``curve_examples`` (validation prompts
of each), ``methods``; ``model`` and ``dataset`` (a preset that trains another model on other data: grue-imdb)."""
from text_envs_app.grue import grue_presets, override_preset  # noqa: E402  (beside the presets it adds to)

BENCH_PRESETS.update(grue_presets())
DEFAULT_KL_COEF = 0.02  # TrainConfig's: presets without kl_coefs
BOOTSTRAP_REPS = 50_000  # rliable's get_interval_estimates default
CONFIDENCE = 0.95


# ---------------------------------------------------------------------------------------------- aggregation
def iqm(scores: Any, axis: int | None = None) -> Any:
    """Interquartile mean: the mean of the scores left after cutting ``floor(n / 4)`` from each end (scipy's
    ``trim_mean(scores, 0.25)``, rliable's ``aggregate_iqm``), over all scores (``axis=None``) or along ``axis``.

    Robust to one outlying seed (unlike the mean) and less coarse than the median. With fewer than 4 scores
    nothing is cut: the IQM is the mean.
    """
    a = np.asarray(scores, dtype=float)
    if axis is None:
        a, axis = a.ravel(), 0
    a = np.moveaxis(a, axis, -1)
    n = a.shape[-1]
    if n == 0:
        raise TextEnvsError("iqm: expected at least one score, got none.")
    cut = int(0.25 * n)
    return np.sort(a, axis=-1)[..., cut:n - cut].mean(axis=-1)


def stratified_bootstrap_ci(scores: Any, statistic: Callable[..., Any] = iqm, reps: int = BOOTSTRAP_REPS,
                            confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """The percentile ``confidence`` interval of ``statistic`` under the stratified bootstrap of ``scores``.

    :param scores: shape ``(runs,)`` (one task) or ``(runs, tasks)``; each bootstrap sample draws ``runs`` runs
        with replacement within every task (the tasks themselves are kept: rliable's ``StratifiedBootstrap``).
    :param statistic: ``statistic(samples, axis=-1)`` over the flattened ``runs * tasks`` scores of each sample
        (:func:`iqm`, or ``np.mean``).
    :param reps: bootstrap samples.
    :param confidence: the interval's coverage, e.g. 0.95: the 2.5th and 97.5th percentiles.
    :param seed: seeds the resampling (the same scores give the same interval).
    :return: ``(low, high)``.
    """
    a = np.asarray(scores, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise TextEnvsError(f"stratified_bootstrap_ci: expected scores of shape (runs,) or (runs, tasks) with at "
                            f"least one run, got shape {np.shape(scores)}.")
    if not 0.0 < confidence < 1.0:
        raise TextEnvsError(f"stratified_bootstrap_ci: expected 0 < confidence < 1, got {confidence}.")
    if reps < 1:
        raise TextEnvsError(f"stratified_bootstrap_ci: expected reps >= 1, got {reps}.")
    runs, tasks = a.shape
    rng = np.random.default_rng(seed)
    stats = np.empty(reps)
    chunk = max(1, 2_000_000 // (runs * tasks))  # bound the memory of one batch of samples
    for start in range(0, reps, chunk):
        n = min(chunk, reps - start)
        idx = rng.integers(0, runs, size=(n, runs, tasks))
        stats[start:start + n] = statistic(a[idx, np.arange(tasks)].reshape(n, runs * tasks), axis=-1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Aggregate:
    """One method's figure over its runs: the IQM with its stratified bootstrap interval, the mean and the
    population std (the old table's), and the number of runs."""

    iqm: float
    low: float
    high: float
    mean: float
    std: float
    n: int

    def overlaps(self, other: Aggregate) -> bool:
        """Whether the two confidence intervals share any value."""
        return self.low <= other.high and other.low <= self.high

    def cell(self, digits: int = 3) -> str:
        """``IQM [low, high]``, e.g. ``0.734 [0.701, 0.760]``."""
        return f"{self.iqm:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def aggregate(scores: Any, reps: int = BOOTSTRAP_REPS, confidence: float = CONFIDENCE, seed: int = 0) -> Aggregate:
    """:class:`Aggregate` of ``scores`` (``(runs,)`` or ``(runs, tasks)``): IQM, its stratified bootstrap interval,
    mean and std. Non-finite scores make every figure NaN (a failed run must not pass unseen)."""
    a = np.asarray(scores, dtype=float)
    if a.size == 0:
        raise TextEnvsError("aggregate: expected at least one score, got none.")
    if not np.all(np.isfinite(a)):
        nan = math.nan
        return Aggregate(nan, nan, nan, nan, nan, int(a.shape[0]))
    low, high = stratified_bootstrap_ci(a, iqm, reps, confidence, seed)
    return Aggregate(float(iqm(a)), low, high, float(a.mean()), float(a.std()), int(a.shape[0]))


# ---------------------------------------------------------------------------------------------- one run
def _as_task(task: BenchTask | str) -> BenchTask:
    return task if isinstance(task, BenchTask) else BenchTask(task, task)


def _config(method: str, task: BenchTask, seed: int, preset: dict[str, Any], kl_coef: float | None):
    from text_envs_app.algorithms import SB3_ALGORITHMS, defaults
    from text_envs_app.config import TrainConfig

    algo = method if method in SB3_ALGORITHMS else "ppo"
    extra: dict[str, Any] = defaults(task.env, algo)  # the env's and algorithm's (a preset's own settings win)
    extra.update({} if kl_coef is None else {"kl_coef": kl_coef})
    if "n_steps" in preset:
        extra["n_steps"] = preset["n_steps"]
    cfg = TrainConfig(env=task.env, algo=algo, steps=preset["steps"],
                      seed=seed, n_envs=preset["n_envs"], eval_examples=preset["eval_examples"],
                      reward=task.reward, gym_kwargs=dict(task.env_kwargs) or None,
                      device=preset.get("device", "cpu"), model=preset.get("model"), dataset=preset.get("dataset"),
                      **extra)
    cfg.check_device()  # "auto" becomes the device used; "cuda" without one is refused
    return cfg


def _evaluate(method: str, policy: Any, start_lm: Any, cfg: Any, task: BenchTask, seed: int) -> dict[str, float]:
    """The run's test table: the task metrics and reward of the texts (greedy or sampled as ``task.decoding`` says;
    the ``greedy`` and ``sampled`` rows decode as they are named), the KL to the start model along those texts and
    the start model's perplexity of them."""
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


def _supervised(policy: Any, cfg: Any, seed: int) -> None:
    """Teacher forcing on as many train references (EOS included) as fit in ``cfg.steps`` tokens."""
    import gymnasium as gym

    from sb3_ext import warm_start

    env = gym.make(cfg.env, split="train", **cfg.env_kwargs()).unwrapped
    n_examples, used = 0, 0
    while n_examples < env.num_examples:
        n_tokens = len(env.tokenizer(env.example_text(n_examples)[1][0], add_special_tokens=False)["input_ids"])
        if used + n_tokens + 1 > cfg.steps:
            break
        used += n_tokens + 1
        n_examples += 1
    warm_start(policy, env, epochs=1, max_examples=max(1, n_examples), learning_rate=cfg.supervised_lr,
               update_reference=False, seed=seed)
    env.close()


def _bench_one(method: str, task: BenchTask | str, seed: int, preset: dict[str, Any], kl_coef: float | None = None,
               curve: list[tuple[int, float]] | None = None, start_value: float | None = None) -> dict[str, float]:
    """One run: train ``method`` from the shipped model with the preset's token budget (if it trains), then
    evaluate it on the test split.

    :param task: a :class:`BenchTask` or an env id.
    :param kl_coef: the RL methods' KL coefficient (None: TrainConfig's).
    :param curve: for an RL method, a list that receives the greedy curve's ``(tokens, reward)`` points
        (``preset["curve_points"]`` evaluations on ``preset["curve_examples"]`` validation prompts).
    :param start_value: the curve's value at 0 tokens, when known.
    :return: the metric table (``reward``, the task's metrics, ``kl``, ``start_ppl``, ``gen_len``) and ``wall_s``.
    """
    import torch as th
    from stable_baselines3.common.utils import set_random_seed

    from text_envs_app.engines.sb3 import attach_baseline, build_model, make_train_env, starting_model

    task = _as_task(task)
    if method not in BENCH_METHODS:
        raise unknown_name("method", method, BENCH_METHODS)
    cfg = _config(method, task, seed, preset, kl_coef if method in RL_METHODS else None)
    threads = th.get_num_threads()  # kept: a library call may change it, and every run must get the same
    set_random_seed(seed)
    t0 = time.time()
    venv = make_train_env(cfg)
    try:
        model = build_model(cfg, venv, None)
        start_lm = starting_model(model, cfg)
        attach_baseline(venv, start_lm)
        if method in RL_METHODS:
            callbacks = []
            if curve is not None and preset.get("curve_points", 0) >= 2:
                sampled = task.decoding == "sampled"  # then the curve is the sampled texts' reward
                recorder = GreedyCurve.make(cfg, cfg.whole_rollout_steps(), preset["curve_points"],
                                            preset.get("curve_examples", 32), None if sampled else start_value,
                                            reference=start_lm if sampled else None, sampled=sampled)
                callbacks.append(recorder)
            model.learn(cfg.steps, callback=callbacks)
            if callbacks:
                curve.extend(recorder.sampled_points if sampled else recorder.points)
        elif method == "supervised":
            _supervised(model.policy, cfg, seed)
        table = _evaluate(method, model.policy, start_lm, cfg, task, seed)
    finally:
        venv.close()
    table["wall_s"] = time.time() - t0
    del model
    th.set_num_threads(threads)
    return table


# ---------------------------------------------------------------------------------------------- the bench
def _label(method: str, kl_coef: float | None, several: bool) -> str:
    return f"{method} (β={kl_coef:g})" if several and kl_coef is not None else method


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


@holds_run_lock("text-envs bench --out")  # one writer per output folder (text_envs_app.run_lock)
def run_benchmark(preset_name: str, out: str, seeds: int | None = None, overwrite: bool = False,
                  methods: Sequence[str] | None = None, kl_coefs: Sequence[float] | None = None,
                  reps: int = BOOTSTRAP_REPS, device: str = "cpu", overrides: dict[str, Any] | None = None,
                  log: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """Every method on every task of a preset, with the same seeds and the same budget in generated tokens.

    :param preset_name: a key of :data:`BENCH_PRESETS`.
    :param out: the output folder (refused if it exists and is not empty, unless ``overwrite``).
    :param seeds: seeds 0..seeds-1 (None: the preset's, at least 5 for the ``rl-*`` presets).
    :param methods: a subset of :data:`BENCH_METHODS`; None: the preset's.
    :param kl_coefs: the RL methods' KL coefficients, one run each (None: the preset's); two or more draw the
        reward/KL frontier.
    :param reps: bootstrap samples of each confidence interval.
    :param device: the torch device of every run: cpu, cuda or auto.
    :param overrides: replace the preset's ``model``, ``reward_model``, ``dataset``, ``steps``, ``n_envs``,
        ``n_steps`` or ``eval_examples`` (:func:`text_envs_app.grue.override_preset`; None values are ignored).
    :return: one dict per run: ``task``, ``env``, ``method``, ``kl_coef`` (None for methods that do not train by
        RL), ``seed``, the metric table and ``wall_s``.

    Writes to ``out``: ``results.md`` (per task, each method's IQM [95% CI] over seeds, the mean ± std too, and
    whether the best and worst RL methods' intervals overlap), ``results.csv`` (one row per run; ``runs.jsonl``
    gets each row as it finishes), ``curves.csv`` (the greedy curves' points), ``results.png``, ``frontier.png``
    and ``curves.png``.
    """
    from text_envs_app.config import TrainConfig
    from text_envs_app.run_folder import prepare_out

    if preset_name not in BENCH_PRESETS:
        raise unknown_name("preset", preset_name, BENCH_PRESETS)
    preset = dict(override_preset(BENCH_PRESETS[preset_name], overrides), device=device)
    TrainConfig(device=device).check_device()
    tasks = tuple(_as_task(t) for t in preset["envs"])
    seeds = int(preset.get("seeds", 5) if seeds is None else seeds)
    if seeds < 1:
        raise TextEnvsError(f"--seeds must be at least 1, got {seeds}.")
    methods = tuple(methods if methods is not None else preset.get("methods", BENCH_METHODS))
    if not methods:
        raise TextEnvsError(f"--methods: expected at least one of {', '.join(BENCH_METHODS)}, got none.")
    for m in methods:
        if m not in BENCH_METHODS:
            raise unknown_name("method", m, BENCH_METHODS)
    coefs = _check_kl_coefs(kl_coefs if kl_coefs is not None else preset.get("kl_coefs", (DEFAULT_KL_COEF,)))
    out_dir = prepare_out(TrainConfig(out=out, overwrite=overwrite))
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    with open(out_dir / "runs.jsonl", "w") as progress:
        for task in tasks:
            start_value = None  # the start model's greedy curve value, the same for every RL run of the task
            for method in methods:
                for coef in coefs if method in RL_METHODS else (None,):
                    for seed in range(seeds):
                        points: list[tuple[int, float]] = []
                        table = _bench_one(method, task, seed, preset, kl_coef=coef, curve=points,
                                           start_value=start_value)
                        if points and points[0][0] == 0:
                            start_value = points[0][1]
                        row = {"task": task.name, "env": task.env, "method": method, "kl_coef": coef, "seed": seed,
                               **table}
                        rows.append(row)
                        curves += [{"task": task.name, "method": method, "kl_coef": coef, "seed": seed,
                                    "tokens": t, "reward": r} for t, r in points]
                        progress.write(json.dumps(row) + "\n")
                        progress.flush()
                        log(f"{task.name} {_label(method, coef, True):<16} seed {seed}: " + ", ".join(
                            f"{k}={v:.4f}" for k, v in table.items()
                            if k in ("reward", "rouge-l", "fact-precision", "kl", "start_ppl", "wall_s")))
    _write_csv(out_dir / "results.csv", rows, ["task", "env", "method", "kl_coef", "seed"])
    _write_csv(out_dir / "curves.csv", curves, ["task", "method", "kl_coef", "seed", "tokens", "reward"])
    md = format_results(rows, preset_name, preset, seeds, reps)
    (out_dir / "results.md").write_text(md)
    _plot_bench(rows, tasks, methods, out_dir / "results.png", reps=reps)
    _plot_frontier(rows, tasks, out_dir / "frontier.png", reps=reps)
    _plot_curves(curves, tasks, coefs, out_dir / "curves.png", reps=reps)
    log(md)
    log(f"wrote {out_dir}: results.md, results.csv, curves.csv, runs.jsonl, results.png, frontier.png, curves.png")
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]], first: list[str]) -> None:
    keys = sorted({k for r in rows for k in r} - set(first))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*first, *keys])
        writer.writeheader()
        writer.writerows(rows)


def _groups(rows: list[dict[str, Any]], task: str) -> dict[tuple[str, float | None], list[dict[str, Any]]]:
    """The runs of ``task`` by (method, kl_coef), in the order they ran."""
    groups: dict[tuple[str, float | None], list[dict[str, Any]]] = {}
    for r in rows:
        if r["task"] == task:
            groups.setdefault((r["method"], r["kl_coef"]), []).append(r)
    return groups


def separation(rows: list[dict[str, Any]], task: str, kl_coef: float | None = None, key: str = "reward",
               reps: int = BOOTSTRAP_REPS) -> dict[str, Any] | None:
    """Do the best and the worst RL method of ``task`` differ? Among the RL methods run at ``kl_coef`` (None:
    every RL run), the highest and lowest IQM of ``key`` and whether their 95% intervals overlap.

    :return: ``{"best": (label, Aggregate), "worst": (label, Aggregate), "overlap": bool}``, or None with fewer
        than two RL methods.
    """
    several = len({r["kl_coef"] for r in rows if r["method"] in RL_METHODS}) > 1
    aggs = {}
    for (method, coef), runs in _groups(rows, task).items():
        if method in RL_METHODS and (kl_coef is None or coef == kl_coef):
            aggs[_label(method, coef, several)] = aggregate([r[key] for r in runs], reps)
    if len(aggs) < 2:
        return None
    order = sorted(aggs, key=lambda k: aggs[k].iqm)
    best, worst = order[-1], order[0]
    return {"best": (best, aggs[best]), "worst": (worst, aggs[worst]), "overlap": aggs[best].overlaps(aggs[worst])}


def decoding_cell(runs: list[dict[str, Any]]) -> str:
    """How the texts of a method's runs were decoded: ``greedy``, or ``sampled, seeds 0, 1, 2`` (each run's own)."""
    kinds = list(dict.fromkeys(r.get("decoding", "not recorded") for r in runs))
    if kinds == ["sampled"]:
        return "sampled, seed" + ("s " if len(runs) > 1 else " ") + ", ".join(str(r["seed"]) for r in runs)
    return " / ".join(kinds)


def format_results(rows: list[dict[str, Any]], preset_name: str, preset: dict[str, Any], seeds: int,
                   reps: int = BOOTSTRAP_REPS) -> str:
    """The Markdown of ``results.md``: per task, one line per method (and KL coefficient) with each figure's IQM
    [95% stratified bootstrap CI] over seeds, the reward's mean ± std, the mean wall time; then the separation
    of the RL methods (:func:`separation`) at each KL coefficient."""
    md = [f"# text-envs bench, preset {preset_name!r}: {preset['steps']:,} generated tokens per training run, "
          f"{seeds} seeds, evaluation on {preset['eval_examples']} test examples\n",
          "Each cell: interquartile mean over seeds [95% stratified bootstrap confidence interval] (Agarwal et al. "
          f"2021; {reps:,} bootstrap samples). `kl`: nats per text from the start model, along the evaluated texts; "
          "`start_ppl`: the start model's perplexity of them (fluency). greedy and sampled are the start model. "
          "`decoding`: how each row's texts were decoded: greedy, or sampled (one text per test prompt, sampled with "
          "each run's seed, listed). β: the KL coefficient.\n"]
    several = len({r["kl_coef"] for r in rows if r["method"] in RL_METHODS}) > 1
    for task in dict.fromkeys(r["task"] for r in rows):
        runs_of = _groups(rows, task)
        first = next(iter(runs_of.values()))[0]
        shown = ["reward"] + [k for k in first if k not in ("task", "env", "method", "kl_coef", "seed", "reward",
                                                           "kl", "start_ppl", "gen_len", "wall_s")
                              and isinstance(first[k], (int, float))] + ["kl", "start_ppl", "gen_len"]
        shown = [k for k in shown if any(k in r for rs in runs_of.values() for r in rs)]
        md += [f"\n## {task}" + (f" ({first['env']})" if first["env"] != task else "") + "\n",
               "| method | decoding | " + " | ".join(shown) + " | reward mean ± std | wall s | runs |",
               "|---|---|" + "---:|" * (len(shown) + 3)]
        for (method, coef), runs in runs_of.items():
            cells = []
            for k in shown:
                vals = [r[k] for r in runs if k in r]
                cells.append(aggregate(vals, reps).cell() if vals else "")
            rew = aggregate([r["reward"] for r in runs], reps)
            wall = float(np.mean([r["wall_s"] for r in runs]))
            md.append(f"| {_label(method, coef, several)} | {decoding_cell(runs)} | " + " | ".join(cells)
                      + f" | {rew.mean:.3f} ± {rew.std:.3f} | {wall:.1f} | {len(runs)} |")
        coefs = list(dict.fromkeys(c for (m, c) in runs_of if m in RL_METHODS))
        for coef in coefs:
            sep = separation(rows, task, coef, reps=reps)
            if sep is None:
                continue
            (bname, b), (wname, w) = sep["best"], sep["worst"]
            verdict = ("the intervals overlap: this budget does not separate them" if sep["overlap"]
                       else "the intervals do not overlap: separated")
            md.append(f"\nRL methods at β={coef:g}: best {bname} {b.cell()}, worst {wname} {w.cell()}; {verdict}.")
    return "\n".join(md) + "\n"


# ---------------------------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _task_names(tasks: Sequence[BenchTask | str]) -> list[str]:
    return [_as_task(t).name for t in tasks]


def _plot_bench(rows: list[dict[str, Any]], envs: Sequence[BenchTask | str], methods: Sequence[str], path: Path,
                reps: int = BOOTSTRAP_REPS) -> None:
    """``results.png``: per task, each method's test reward, IQM with its 95% interval (one bar per method and
    KL coefficient)."""
    plt = _pyplot()
    names = _task_names(envs)
    n_bars = max(len(_groups(rows, task)) for task in names) if rows else 1
    fig, axes = plt.subplots(1, len(names), figsize=(max(4.5, 1.5 + 0.55 * n_bars) * len(names), 3.8), squeeze=False)
    several = len({r["kl_coef"] for r in rows if r["method"] in RL_METHODS}) > 1
    for ax, task in zip(axes[0], names):
        groups = [(k, v) for k, v in _groups(rows, task).items() if k[0] in methods]
        aggs = [aggregate([r["reward"] for r in runs], reps) for _, runs in groups]
        x = np.arange(len(groups))
        ax.bar(x, [a.iqm for a in aggs], color="tab:blue", alpha=0.8)
        ax.errorbar(x, [a.iqm for a in aggs], yerr=[[a.iqm - a.low for a in aggs], [a.high - a.iqm for a in aggs]],
                    fmt="none", ecolor="black", capsize=3)
        ax.set_xticks(x, [_label(m, c, several) for (m, c), _ in groups], rotation=35, ha="right")
        ax.set_title(task)
        ax.set_ylabel("test reward (IQM, 95% CI)")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_frontier(rows: list[dict[str, Any]], envs: Sequence[BenchTask | str], path: Path,
                   reps: int = BOOTSTRAP_REPS) -> None:
    """``frontier.png``: per task, test reward against KL to the start model (IQM over seeds, 95% intervals on
    both axes); each RL method a line through its KL coefficients, the start and supervised as points."""
    plt = _pyplot()
    names = _task_names(envs)
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    markers = {"greedy": "*", "sampled": "x", "supervised": "s"}
    for ax, task in zip(axes[0], names):
        groups = _groups(rows, task)
        for method in dict.fromkeys(m for m, _ in groups):
            cells = [(c, runs) for (m, c), runs in groups.items() if m == method]
            cells.sort(key=lambda cr: -math.inf if cr[0] is None else cr[0])
            kl = [aggregate([r["kl"] for r in runs], reps) for _, runs in cells]
            rw = [aggregate([r["reward"] for r in runs], reps) for _, runs in cells]
            xs, ys = [a.iqm for a in kl], [a.iqm for a in rw]
            style = dict(marker=markers.get(method, "o"), linestyle="-" if method in RL_METHODS else "none",
                         capsize=2, label=method)
            ax.errorbar(xs, ys, xerr=[[a.iqm - a.low for a in kl], [a.high - a.iqm for a in kl]],
                        yerr=[[a.iqm - a.low for a in rw], [a.high - a.iqm for a in rw]], **style)
            if method in RL_METHODS:
                for (coef, _), x, y in zip(cells, xs, ys):
                    ax.annotate(f"β={coef:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel("KL to the start model (nats per text)")
        ax.set_ylabel("test reward")
        ax.set_title(f"{task}: reward/KL frontier")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def curve_bands(curves: list[dict[str, Any]], task: str, method: str, kl_coef: float | None,
                reps: int = BOOTSTRAP_REPS) -> list[tuple[int, Aggregate]]:
    """The learning curve of one (task, method, KL coefficient): at each token count that every seed recorded,
    the IQM over seeds of the greedy reward with its 95% stratified bootstrap interval."""
    by_seed: dict[int, dict[int, float]] = {}
    for c in curves:
        if c["task"] == task and c["method"] == method and c["kl_coef"] == kl_coef:
            by_seed.setdefault(c["seed"], {})[int(c["tokens"])] = float(c["reward"])
    if not by_seed:
        return []
    common = sorted(set.intersection(*(set(p) for p in by_seed.values())))
    return [(t, aggregate([p[t] for p in by_seed.values()], reps)) for t in common]


def _plot_curves(curves: list[dict[str, Any]], envs: Sequence[BenchTask | str], kl_coefs: Sequence[float],
                 path: Path, reps: int = BOOTSTRAP_REPS) -> None:
    """``curves.png``: one panel per (task, KL coefficient): each RL method's greedy (or, per the task, sampled)
    reward on the fixed validation prompts against generated tokens, IQM over seeds with its 95% band."""
    plt = _pyplot()
    names = _task_names(envs)
    task_decoding = {t.name: t.decoding for t in map(_as_task, envs)}
    fig, axes = plt.subplots(len(names), len(kl_coefs), figsize=(5 * len(kl_coefs), 3.6 * len(names)), squeeze=False)
    for row, task in zip(axes, names):
        for ax, coef in zip(row, kl_coefs):
            for method in RL_METHODS:
                band = curve_bands(curves, task, method, coef, reps)
                if not band:
                    continue
                x = [t for t, _ in band]
                (line,) = ax.plot(x, [a.iqm for _, a in band], marker=".", label=method)
                ax.fill_between(x, [a.low for _, a in band], [a.high for _, a in band], color=line.get_color(),
                                alpha=0.2)
            ax.set_xlabel("generated tokens (env steps)")
            ax.set_ylabel(f"{task_decoding.get(task, 'greedy')} reward, validation prompts")
            ax.set_title(f"{task}, β={coef:g}")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
