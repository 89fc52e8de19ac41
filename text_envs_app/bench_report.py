"""``results.md`` and the plots of ``text-envs bench``: the per-method table (IQM [95% CI] over seeds), the paired
comparisons against the best non-RL baseline and against RAFT, the reward-hacking flags, and ``results.png``,
``frontier.png``, ``curves.png``.

Rows are the dicts :func:`text_envs_app.bench.run_benchmark` returns (one per run: ``task``, ``env``, ``method``,
``kl_coef``, ``seed``, the metric table, ``wall_s``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from text_envs_app.bench_stats import BOOTSTRAP_REPS, Aggregate, PairedComparison, aggregate, paired_difference
from text_envs_app.bench_task import BenchTask

RL_ROWS = ("ppo", "a2c", "trpo", "nlpo", "nlpo-unmasked", "grpo", "rloo", "reinforce", "raft", "dpo")
"""Row methods trained by RL (one row per KL coefficient): the RL methods and NLPO scored without its mask."""
START_ROWS = ("greedy", "sampled", "best-of-n")
"""Rows of the start model itself (no training)."""
BASELINE_ROWS = ("supervised-filtered",)
"""Trained non-RL rows that can be the paired baseline (beside best-of-n at the method's KL)."""
BEST_OF_N_AT_KL = "best-of-n at the method's KL"

HACK_THRESHOLDS: dict[str, tuple[str, float]] = {
    "distinct-1": ("ratio_below", 0.8),
    "distinct-2": ("ratio_below", 0.8),
    "self-bleu": ("above_by", 0.10),
    "repeated_ngrams": ("above_by", 0.05),
    "validity": ("below_by", 0.10),
    "judge_disagreement": ("above_by", 0.10),
}
"""When a trained model's text is flagged as degenerate, relative to the start model's sampled texts on the same
prompts (the ``sampled`` row; the means over seeds): ``ratio_below r``: under ``r`` times the start's value
(distinct n-grams: 20% fewer); ``above_by d`` / ``below_by d``: more than ``d`` above / below it (self-BLEU +0.10,
repeated trigrams +0.05, validity -0.10, AFINN/VADER disagreement +0.10)."""


def label(method: str, kl_coef: float | None, several: bool) -> str:
    """A row's label: the method, with its β when the runs used several."""
    return f"{method} (β={kl_coef:g})" if several and kl_coef is not None else method


def groups(rows: list[dict[str, Any]], task: str) -> dict[tuple[str, float | None], list[dict[str, Any]]]:
    """The runs of ``task`` by (method, kl_coef), in the order they ran."""
    out: dict[tuple[str, float | None], list[dict[str, Any]]] = {}
    for r in rows:
        if r["task"] == task:
            out.setdefault((r["method"], r["kl_coef"]), []).append(r)
    return out


def _several_coefs(rows: list[dict[str, Any]]) -> bool:
    return len({r["kl_coef"] for r in rows if r["method"] in RL_ROWS}) > 1


def separation(rows: list[dict[str, Any]], task: str, kl_coef: float | None = None, key: str = "reward",
               reps: int = BOOTSTRAP_REPS) -> dict[str, Any] | None:
    """Do the best and the worst RL method of ``task`` differ? Among the RL methods run at ``kl_coef`` (None:
    every RL run), the highest and lowest IQM of ``key`` and whether their 95% intervals overlap.

    :return: ``{"best": (label, Aggregate), "worst": (label, Aggregate), "overlap": bool}``, or None with fewer
        than two RL methods.
    """
    several = _several_coefs(rows)
    aggs = {}
    for (method, coef), runs in groups(rows, task).items():
        if method in RL_ROWS and (kl_coef is None or coef == kl_coef):
            aggs[label(method, coef, several)] = aggregate([r[key] for r in runs], reps)
    if len(aggs) < 2:
        return None
    order = sorted(aggs, key=lambda k: aggs[k].iqm)
    best, worst = order[-1], order[0]
    return {"best": (best, aggs[best]), "worst": (worst, aggs[worst]), "overlap": aggs[best].overlaps(aggs[worst])}


def decoding_cell(runs: list[dict[str, Any]]) -> str:
    """How the texts of a method's runs were decoded: ``greedy``, ``sampled, seeds 0, 1, 2`` (each run's own), or
    the sampled evaluation's ``S sampled x N prompts``."""
    kinds = list(dict.fromkeys(r.get("decoding", "not recorded") for r in runs))
    if kinds == ["sampled"]:
        return "sampled, seed" + ("s " if len(runs) > 1 else " ") + ", ".join(str(r["seed"]) for r in runs)
    return " / ".join(kinds)


# ---------------------------------------------------------------------------------------------- comparisons
def paired_comparisons(rows: list[dict[str, Any]], task: str, reps: int = BOOTSTRAP_REPS
                       ) -> dict[tuple[str, float | None], PairedComparison]:
    """Each trained row of ``task`` against the best non-RL baseline, seed by seed.

    The baseline of a row is whichever scores the higher mean over the shared seeds: best-of-n of the start model
    at the row's KL (``best_of_n_at_kl`` of each run: best-of-n's reward interpolated at its KL bound, from that
    seed's start-model samples; its true KL is at most the bound, so it never spends more KL than the row) or
    filtered supervised training (``supervised-filtered``, the same seeds). Rows of the start model and the
    baseline rows themselves are not compared.
    """
    runs_of = groups(rows, task)
    supervised = {r["seed"]: r["reward"] for rs in (runs_of.get((m, None), []) for m in BASELINE_ROWS) for r in rs}
    out = {}
    for key, runs in runs_of.items():
        if key[0] in START_ROWS or key[0] in BASELINE_ROWS:
            continue
        candidates: dict[str, dict[int, float]] = {}
        bon = {r["seed"]: r["best_of_n_at_kl"] for r in runs if r.get("best_of_n_at_kl") is not None}
        if bon:
            candidates[BEST_OF_N_AT_KL] = bon
        if supervised:
            candidates["supervised-filtered"] = supervised
        best = None
        for name, by_seed in candidates.items():
            seeds = [r["seed"] for r in runs if r["seed"] in by_seed]
            if not seeds:
                continue
            mean = float(np.mean([by_seed[s] for s in seeds]))
            if best is None or mean > best[1]:
                best = (name, mean, seeds, by_seed)
        if best is None:
            continue
        name, _, seeds, by_seed = best
        own = {r["seed"]: r["reward"] for r in runs}
        out[key] = paired_difference([own[s] for s in seeds], [by_seed[s] for s in seeds], name, reps)
    return out


def raft_comparisons(rows: list[dict[str, Any]], task: str, reps: int = BOOTSTRAP_REPS
                     ) -> dict[tuple[str, float | None], tuple[PairedComparison, float, float]]:
    """Each RL row of ``task`` but RAFT's against RAFT (expert iteration) at the same KL coefficient, seed by seed.

    The comparison is of reward; it is one at equal KL only where the row spends no more KL than RAFT (then RAFT,
    whose reward rises with its KL along its training, would score no higher at the row's KL), which is why the
    two mean KLs come with it.

    :return: ``{(method, kl_coef): (reward difference, the row's mean KL, RAFT's mean KL)}`` over the seeds both
        ran; empty without a RAFT row.
    """
    runs_of = groups(rows, task)
    out = {}
    for (method, coef), runs in runs_of.items():
        raft = {r["seed"]: r for r in runs_of.get(("raft", coef), [])}
        if method not in RL_ROWS or method == "raft" or not raft:
            continue
        pairs = [(r, raft[r["seed"]]) for r in runs if r["seed"] in raft]
        if not pairs:
            continue
        diff = paired_difference([a["reward"] for a, _ in pairs], [b["reward"] for _, b in pairs], "raft", reps)
        out[(method, coef)] = (diff, float(np.mean([a["kl"] for a, _ in pairs])),
                               float(np.mean([b["kl"] for _, b in pairs])))
    return out


def hacking_flags(rows: list[dict[str, Any]], task: str) -> dict[tuple[str, float | None], list[str]]:
    """The :data:`HACK_THRESHOLDS` each trained row of ``task`` crosses against the start model's sampled row
    (means over seeds), as readable reasons (``"distinct-2 0.41x start"``); nothing without a sampled row."""
    runs_of = groups(rows, task)
    start_runs = runs_of.get(("sampled", None))
    if not start_runs:
        return {}
    start = {k: float(np.mean([r[k] for r in start_runs])) for k in HACK_THRESHOLDS if k in start_runs[0]}
    out = {}
    for key, runs in runs_of.items():
        if key[0] in START_ROWS:
            continue
        reasons = []
        for metric, (rule, bound) in HACK_THRESHOLDS.items():
            if metric not in start or any(metric not in r for r in runs):
                continue
            value, base = float(np.mean([r[metric] for r in runs])), start[metric]
            if rule == "ratio_below" and value < bound * base:
                reasons.append(f"{metric} {value / base if base else 0.0:.2f}x start")
            elif rule == "above_by" and value > base + bound:
                reasons.append(f"{metric} {value - base:+.2f}")
            elif rule == "below_by" and value < base - bound:
                reasons.append(f"{metric} {value - base:+.2f}")
        out[key] = reasons
    return out


# ---------------------------------------------------------------------------------------------- results.md
_NOT_SHOWN = ("task", "env", "method", "kl_coef", "seed", "reward", "kl", "start_ppl", "gen_len", "wall_s", "eval_se",
              "eval_texts", "best_of_n_at_kl", "train_tokens", "train_s", "gain_share", "gain_share_pooled")


def _header(preset_name: str, preset: Mapping[str, Any], seeds: int, reps: int) -> list[str]:
    samples = preset.get("eval_samples")
    evaluated = (f"{preset['eval_examples']:,} test prompts x {samples} sampled texts each" if samples
                 else f"{preset['eval_examples']} test examples")
    md = [f"# text-envs bench, preset {preset_name!r}: {preset['steps']:,} generated tokens per training run, "
          f"{seeds} seeds, evaluation on {evaluated}\n",
          "Each cell: interquartile mean over seeds [95% stratified bootstrap confidence interval] (Agarwal et al. "
          f"2021; {reps:,} bootstrap samples). `kl`: nats per text from the start model, along the evaluated texts; "
          "`start_ppl`: the start model's perplexity of them (fluency). greedy, sampled and best-of-n are the start "
          "model. β: the KL coefficient.\n"]
    if samples:
        n = preset.get("best_of_n", 4)
        md.append(
            f"Budget: every RL method generates {preset['steps']:,} tokens in training; supervised rows train on as "
            f"many reference tokens (no generation); best-of-n trains nothing and writes {n} texts for each one it "
            f"keeps (kl: its bound log n - (n-1)/n). Evaluation: every row is scored on {samples} texts per prompt, "
            "pure samples of its model (NLPO also through its top-p mask: `nlpo`; `nlpo-unmasked` samples the "
            "same trained model without it); `eval_se`: the evaluation noise of one run's reward, the standard "
            "error of the mean over prompts x samples with prompts as clusters (mean over seeds). greedy: one text "
            "per prompt, the same for every seed.\n")
    return md


def format_results(rows: list[dict[str, Any]], preset_name: str, preset: Mapping[str, Any], seeds: int,
                   reps: int = BOOTSTRAP_REPS) -> str:
    """The Markdown of ``results.md``: per task, one line per method (and KL coefficient) with each figure's IQM
    [95% CI] over seeds, the reward's mean ± std, the evaluation noise, the mean wall time and the hacking flags;
    the paired comparisons against the best non-RL baseline; the separation of the RL methods."""
    md = _header(preset_name, preset, seeds, reps)
    several = _several_coefs(rows)
    for task in dict.fromkeys(r["task"] for r in rows):
        runs_of = groups(rows, task)
        first = next(iter(runs_of.values()))[0]
        shown = ["reward"] + [k for k in first if k not in _NOT_SHOWN and isinstance(first[k], (int, float))]
        shown += ["kl", "gain_share", "gain_share_pooled", "start_ppl", "gen_len"]
        shown = list(dict.fromkeys(k for k in shown if any(k in r for rs in runs_of.values() for r in rs)))
        flags = hacking_flags(rows, task)
        has_se = any("eval_se" in r for rs in runs_of.values() for r in rs)
        md += [f"\n## {task}" + (f" ({first['env']})" if first["env"] != task else "") + "\n",
               "| method | decoding | " + " | ".join(shown) + " | reward mean ± std |" + (" eval_se |" if has_se
                                                                                          else "")
               + " wall s | runs | hacking |",
               "|---|---|" + "---:|" * (len(shown) + 3 + has_se) + "---|"]
        for (method, coef), runs in runs_of.items():
            cells = []
            for k in shown:
                vals = [r[k] for r in runs if k in r and r[k] is not None]
                cells.append(aggregate(vals, reps).cell() if vals else "")
            rew = aggregate([r["reward"] for r in runs], reps)
            wall = float(np.mean([r["wall_s"] for r in runs]))
            se = [r["eval_se"] for r in runs if "eval_se" in r]
            se_cell = (f" {np.mean(se):.4f} |" if se else " |") if has_se else ""
            reasons = flags.get((method, coef))
            flag = "" if reasons is None else ("flagged: " + ", ".join(reasons) if reasons else "not flagged")
            md.append(f"| {label(method, coef, several)} | {decoding_cell(runs)} | " + " | ".join(cells)
                      + f" | {rew.mean:.3f} ± {rew.std:.3f} |{se_cell} {wall:.1f} | {len(runs)} | {flag} |")
        md += _comparison_lines(rows, task, several, reps)
        md += _raft_lines(rows, task, several, reps)
        md += _hacking_lines(rows, task, flags, several)
        coefs = list(dict.fromkeys(c for (m, c) in runs_of if m in RL_ROWS))
        for coef in coefs:
            sep = separation(rows, task, coef, reps=reps)
            if sep is None:
                continue
            (bname, b), (wname, w) = sep["best"], sep["worst"]
            verdict = ("one seed: no interval to separate them" if min(b.n, w.n) < 2
                       else "the intervals overlap: this budget does not separate them" if sep["overlap"]
                       else "the intervals do not overlap: separated")
            md.append(f"\nRL methods at β={coef:g}: best {bname} {b.cell()}, worst {wname} {w.cell()}; {verdict}.")
    if flags_note := _thresholds_note(rows):
        md.append(flags_note)
    return "\n".join(md) + "\n"


def _comparison_lines(rows: list[dict[str, Any]], task: str, several: bool, reps: int) -> list[str]:
    comparisons = paired_comparisons(rows, task, reps)
    if not comparisons:
        return []
    md = ["\n### Paired against the best non-RL baseline\n",
          "Per seed, the row's reward minus the baseline's at the same seed; the baseline is whichever scores "
          "higher: best-of-n of the start model at the row's KL (from that seed's start-model samples) or filtered "
          "supervised training. Mean difference [95% bootstrap CI over seeds]; P(row > baseline): rliable's "
          "probability of improvement over runs [95% CI, the runs of each resampled independently].\n",
          "| method | baseline | paired difference | P(row > baseline) | verdict | seeds |",
          "|---|---|---:|---:|---|---:|"]
    for (method, coef), c in comparisons.items():
        md.append(f"| {label(method, coef, several)} | {c.baseline} | {_paired_cells(c)} | {c.verdict()} | {c.n} |")
    return md


def _paired_cells(c: PairedComparison) -> str:
    """The paired difference [CI] and P(row > baseline) [CI] cells of a comparison's table line."""
    return f"{c.mean:+.3f} [{c.low:+.3f}, {c.high:+.3f}] | {c.poi:.2f} [{c.poi_low:.2f}, {c.poi_high:.2f}]"


def _raft_lines(rows: list[dict[str, Any]], task: str, several: bool, reps: int) -> list[str]:
    comparisons = raft_comparisons(rows, task, reps)
    if not comparisons:
        return []
    md = ["\n### Paired against RAFT\n",
          "Per seed, the row's reward minus RAFT's (expert iteration: supervised steps on the best of its own "
          "samples) at the same seed and KL coefficient; at equal KL where the row's mean KL is at most RAFT's.\n",
          "| method | paired difference | P(row > RAFT) | verdict | KL row / RAFT | seeds |",
          "|---|---:|---:|---|---:|---:|"]
    for (method, coef), (c, kl, raft_kl) in comparisons.items():
        verdict = c.verdict() + (", at no more KL" if kl <= raft_kl else ", spending more KL")
        md.append(f"| {label(method, coef, several)} | {_paired_cells(c)} | {verdict} | {kl:.3f} / {raft_kl:.3f} | "
                  f"{c.n} |")
    return md


def _hacking_lines(rows: list[dict[str, Any]], task: str, flags: dict[tuple[str, float | None], list[str]],
                   several: bool) -> list[str]:
    """One line per flagged row whose reward is still at least the start model's: the reward pays for it."""
    start = [r["reward"] for r in groups(rows, task).get(("sampled", None), [])]
    if not start:
        return []
    start_reward = float(np.mean(start))
    lines = []
    for (method, coef), reasons in flags.items():
        reward = float(np.mean([r["reward"] for r in groups(rows, task)[(method, coef)]]))
        if reasons and reward >= start_reward:
            lines.append(f"- {label(method, coef, several)}: flagged ({', '.join(reasons)}) while its reward "
                         f"{reward:.3f} is at least the start model's {start_reward:.3f}: the reward still pays for "
                         "these texts.")
    return ["\nReward hacking (thresholds below):\n", *lines] if lines else []


def _thresholds_note(rows: list[dict[str, Any]]) -> str:
    if not any(r["method"] == "sampled" for r in rows):
        return ""
    rules = {"ratio_below": "under {:g}x", "above_by": "above by more than {:g}", "below_by": "below by more than {:g}"}
    parts = [f"{m} {rules[rule].format(bound)}" for m, (rule, bound) in HACK_THRESHOLDS.items()]
    return ("\nhacking: a trained row is flagged when the mean over seeds of a metric lies past a threshold relative "
            "to the start model's sampled texts on the same prompts (the sampled row): " + "; ".join(parts) + ".")


# ---------------------------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def task_names(tasks: Sequence[BenchTask | str]) -> list[str]:
    """The tasks' labels (a bare env id is its own label)."""
    return [t.name if isinstance(t, BenchTask) else t for t in tasks]


def plot_bench(rows: list[dict[str, Any]], tasks: Sequence[BenchTask | str], path: Path,
               reps: int = BOOTSTRAP_REPS) -> None:
    """``results.png``: per task, each method's test reward, IQM with its 95% interval (one bar per method and
    KL coefficient)."""
    plt = _pyplot()
    names = task_names(tasks)
    n_bars = max(len(groups(rows, task)) for task in names) if rows else 1
    fig, axes = plt.subplots(1, len(names), figsize=(max(4.5, 1.5 + 0.55 * n_bars) * len(names), 3.8), squeeze=False)
    several = _several_coefs(rows)
    for ax, task in zip(axes[0], names):
        cells = list(groups(rows, task).items())
        aggs = [aggregate([r["reward"] for r in runs], reps) for _, runs in cells]
        x = np.arange(len(cells))
        ax.bar(x, [a.iqm for a in aggs], color="tab:blue", alpha=0.8)
        ax.errorbar(x, [a.iqm for a in aggs], yerr=[[a.iqm - a.low for a in aggs], [a.high - a.iqm for a in aggs]],
                    fmt="none", ecolor="black", capsize=3)
        ax.set_xticks(x, [label(m, c, several) for (m, c), _ in cells], rotation=35, ha="right")
        ax.set_title(task)
        ax.set_ylabel("test reward (IQM, 95% CI)")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


_ORDER = ("greedy", "sampled", "best-of-n", "supervised", "supervised-filtered", *RL_ROWS)


def method_color(method: str) -> Any:
    """One colour per method, the same in every panel (matplotlib's tab20: enough for every row)."""
    import matplotlib

    at = _ORDER.index(method) if method in _ORDER else len(_ORDER)
    return matplotlib.colormaps["tab20"](at % 20)


def _method_points(rows: list[dict[str, Any]], task: str, reps: int
                   ) -> dict[str, list[tuple[float | None, Aggregate, Aggregate]]]:
    """method -> [(kl_coef, KL aggregate, reward aggregate)] sorted by coefficient."""
    out: dict[str, list[tuple[float | None, Aggregate, Aggregate]]] = {}
    for (method, coef), runs in groups(rows, task).items():
        out.setdefault(method, []).append((coef, aggregate([r["kl"] for r in runs], reps),
                                           aggregate([r["reward"] for r in runs], reps)))
    for cells in out.values():
        cells.sort(key=lambda c: -math.inf if c[0] is None else c[0])
    return out


def plot_frontier(rows: list[dict[str, Any]], tasks: Sequence[BenchTask | str], path: Path,
                  start_rewards: Mapping[str, np.ndarray] | None = None, reps: int = BOOTSTRAP_REPS) -> None:
    """``frontier.png``: per task, test reward against KL to the start model: each method's (KL, reward) per β (IQM
    over seeds, 95% intervals on both axes) and, when the start model's sampled rewards of the task are given
    (``(prompts, samples)``), the optimum curve of ``E[r] - β KL`` over β and best-of-n's points for n = 1..32
    (:mod:`text_envs.frontier`); a second panel then draws J*(β) with each method's J = reward - β KL at its β."""
    from text_envs.frontier import best_of_n_curve, optimum_curve

    plt = _pyplot()
    names = task_names(tasks)
    with_limit = [n for n in names if start_rewards is not None and n in start_rewards]
    fig, axes = plt.subplots(len(names), 2 if with_limit else 1, figsize=(11 if with_limit else 5.5,
                                                                          4.2 * len(names)), squeeze=False)
    markers = {"greedy": "*", "sampled": "x", "best-of-n": "D", "supervised": "s", "supervised-filtered": "P"}
    for row_axes, task in zip(axes, names):
        ax = row_axes[0]
        points = _method_points(rows, task, reps)
        limit = start_rewards.get(task) if start_rewards is not None else None
        betas = sorted({c for cells in points.values() for c, _, _ in cells if c}) or [0.05]
        grid = np.geomspace(min(betas) / 4, max(2.0, max(betas) * 4), 40)
        if limit is not None:
            opt = sorted(optimum_curve(limit, grid), key=lambda p: p.kl)
            ax.plot([0.0] + [p.kl for p in opt], [float(limit.mean())] + [p.reward for p in opt], "-", color="black",
                    lw=1.5, label="optimum π0·exp(r/β)")
            bon = best_of_n_curve(limit, 32)
            ax.plot([p.kl_bound for p in bon], [p.reward for p in bon], "o", ms=3, mfc="none", color="gray",
                    label=f"best-of-n, n=1..{bon[-1].n} (KL bound)")
        several = len(betas) > 1
        for method, cells in points.items():
            xs, ys = [k.iqm for _, k, _ in cells], [r.iqm for _, _, r in cells]
            ax.errorbar(xs, ys, xerr=[[k.iqm - k.low for _, k, _ in cells], [k.high - k.iqm for _, k, _ in cells]],
                        yerr=[[r.iqm - r.low for _, _, r in cells], [r.high - r.iqm for _, _, r in cells]],
                        marker=markers.get(method, "o"), linestyle="-" if method in RL_ROWS else "none", capsize=2,
                        label=method, color=method_color(method))
            if method in RL_ROWS and several:
                for (coef, _, _), x, y in zip(cells, xs, ys):
                    ax.annotate(f"β={coef:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel("KL to the start model (nats per text)")
        ax.set_ylabel("test reward")
        ax.set_title(f"{task}: reward/KL frontier", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        if limit is not None:
            _plot_objective(row_axes[1], task, limit, grid, points)
        elif len(row_axes) > 1:
            row_axes[1].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_objective(ax: Any, task: str, limit: np.ndarray, grid: np.ndarray,
                    points: dict[str, list[tuple[float | None, Aggregate, Aggregate]]]) -> None:
    """J*(β) of the start model's samples and each RL method's J = reward - β KL at its β (IQMs)."""
    from text_envs.frontier import optimum_curve

    # J* less its small-sample bias (the jackknife), as every gain_share reads it
    ax.plot(grid, [p.objective_corrected for p in optimum_curve(limit, grid)], "-", color="black", lw=1.5,
            label="J*(β)")
    ax.axhline(float(limit.mean()), color="gray", ls=":", lw=1, label="J of the start model")
    for method, cells in points.items():
        kept = [(c, k.iqm, r.iqm) for c, k, r in cells if c]
        if method in RL_ROWS and kept:
            ax.plot([c for c, _, _ in kept], [r - c * k for c, k, r in kept], "o-", label=method,
                    color=method_color(method))
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap on a range under a decade
    ticks = [t for t in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)
             if grid.min() <= t <= grid.max()]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("β (KL coefficient)")
    ax.set_ylabel("J = reward - β KL")
    ax.set_title(f"{task}: the regularised objective", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)


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


def plot_curves(curves: list[dict[str, Any]], tasks: Sequence[BenchTask | str], kl_coefs: Sequence[float],
                path: Path, reps: int = BOOTSTRAP_REPS) -> None:
    """``curves.png``: one panel per (task, KL coefficient): each RL method's greedy (or, per the task, sampled)
    reward on the fixed validation prompts against generated tokens, IQM over seeds with its 95% band."""
    plt = _pyplot()
    names = task_names(tasks)
    task_decoding = {t.name: t.decoding for t in tasks if isinstance(t, BenchTask)}
    fig, axes = plt.subplots(len(names), len(kl_coefs), figsize=(5 * len(kl_coefs), 3.6 * len(names)), squeeze=False)
    for row, task in zip(axes, names):
        for ax, coef in zip(row, kl_coefs):
            for method in RL_ROWS:
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
