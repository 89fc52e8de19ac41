"""The plain path `PPO(LLMPolicy, env)` against `rollout_buffer_class=EpisodeRolloutBuffer`, side by side in one run.

    python benchmarks/bench_plain_path.py                     # the issue's setting: 16 envs, T=32, n_steps=32,
                                                              # batch_size=512, n_epochs=1, 3 updates each
    python benchmarks/bench_plain_path.py --quick             # 4 envs, T=16, 1 update: seconds
    python benchmarks/bench_plain_path.py --preset sb3-default --n-envs 1 --updates 1
                                                              # SB3's PPO defaults: n_steps=2048, batch 64, 10 epochs
    python benchmarks/bench_plain_path.py --trpo-memory       # peak memory of one TRPO update, shipped model

Rows (every one from the same initial weights, prompts, reward and seed; one torch thread by default):

* ``plain/per-obs``: stock ``DictRolloutBuffer``, ``LLMPolicy(group_observations=False)``: one full forward per
  stored step in ``evaluate_actions`` (the plain path before grouping);
* ``plain/grouped``: stock ``DictRolloutBuffer``, the default policy: each minibatch's observations grouped into
  episodes (prefix chains), one teacher-forced forward per episode;
* ``episode-buffer``: ``rollout_buffer_class=EpisodeRolloutBuffer`` (minibatches of whole episodes);
* ``trl-grpo``: TRL's GRPO on the same model and prompts (``benchmarks/bench_trl.py``), only if ``trl`` is
  installed.

Reported: generated tokens per second of the whole ``learn`` (rollout + update), the update's seconds, and the
ratio of each row's tokens/s to the episode-buffer row's. Runs are repeated ``--repeats`` times in rotating
order; the median is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_scaling as bs  # noqa: E402  (the shared helpers)

ROWS = ("plain/per-obs", "plain/grouped", "episode-buffer")
PRESETS = {
    "issue": dict(n_envs=16, T=32, n_steps=32, batch_size=512, n_epochs=1),
    "sb3-default": dict(n_envs=16, T=32, n_steps=2048, batch_size=64, n_epochs=10),
}


def make_ppo(row: str, venv: Any, model: Any, tokenizer: Any, a: argparse.Namespace) -> Any:
    from stable_baselines3 import PPO

    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy

    kwargs: dict[str, Any] = dict(model=model, tokenizer=tokenizer, kl_coef=a.kl)
    extra: dict[str, Any] = {}
    if row == "plain/per-obs":
        kwargs["group_observations"] = False
    if row == "episode-buffer":
        extra["rollout_buffer_class"] = EpisodeRolloutBuffer
    return PPO(LLMPolicy, venv, n_steps=a.n_steps, batch_size=a.batch_size, n_epochs=a.n_epochs,
               learning_rate=a.lr, gamma=1.0, gae_lambda=0.95, max_grad_norm=0.5, seed=a.seed, device="cpu",
               verbose=0, policy_kwargs=kwargs, **extra)


def run_row(row: str, model: Any, tokenizer: Any, rows: list[dict], a: argparse.Namespace) -> dict[str, float]:
    import copy
    import warnings

    import torch as th

    venv = bs.make_vec_env(rows, tokenizer, a.prompt_tokens, a.T, a.n_envs, a.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3's "batch_size is not a factor" and similar
        ppo = make_ppo(row, venv, copy.deepcopy(model), tokenizer, a)
    timers = bs.instrument_ppo(ppo)
    th.manual_seed(a.seed)
    start = time.perf_counter()
    ppo.learn(a.updates * a.n_steps * a.n_envs)
    wall = time.perf_counter() - start
    venv.close()
    return {"tok_s": ppo.num_timesteps / wall, "wall_s": wall, "update_s": timers.train.total,
            "rollout_s": timers.collect.total, "tokens": ppo.num_timesteps}


def run_grpo(model: Any, tokenizer: Any, a: argparse.Namespace) -> dict[str, float] | str:
    try:
        import trl  # noqa: F401
    except ImportError:
        return "skipped: trl is not installed (pip install -e '.[bench]')"
    import shutil
    import tempfile

    import bench_trl as bt

    # GRPO's batch (one completion per env, as PPO's rollout has one text per env) must hold whole groups
    groups = [g for g in (4, 2) if a.n_envs % g == 0]
    if not groups:
        return f"skipped: GRPO needs n_envs divisible by 2 or 4 (its group size), got {a.n_envs}"

    n_prompts = max(64, a.updates * a.n_envs)
    _, prompts, refs = bt.task_data(tokenizer, n_prompts, a.prompt_tokens, a.T)
    tmp = tempfile.mkdtemp(prefix="bench_plain_")
    try:
        model_dir = os.path.join(tmp, "model")
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        ta = argparse.Namespace(device="cpu", dtype="float32", lr=a.lr, updates=a.updates, completions=a.n_envs,
                                generations=groups[0], kl=a.kl)
        r = bt.run_trl("grpo", model_dir, tokenizer, prompts, refs, ta, a.T, a.seed, tmp)
    except bt.TRLUnavailableError as e:
        return f"skipped: {e}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"tok_s": r.tok_s, "wall_s": r.wall_s, "update_s": r.parts.get("update", float("nan")),
            "rollout_s": r.parts.get("rollout_forward", float("nan")), "tokens": r.tokens}


def throughput(a: argparse.Namespace) -> dict[str, Any]:
    from text_envs.tokenization import load_tokenizer

    tok = load_tokenizer()
    rows = bs.summary_rows(max(64, a.updates * a.n_envs * 2))
    model = bs.build_model(a.size, "causal", tok, max_positions=a.prompt_tokens + a.T + 8, seed=a.seed)
    print(f"# plain path vs EpisodeRolloutBuffer: {a.size} GPT-2 ({bs.n_params(model) / 1e6:.2f}M params, random, "
          f"float32 CPU, {a.threads} thread), {a.n_envs} envs, P={a.prompt_tokens}, T={a.T}, n_steps={a.n_steps}, "
          f"batch_size={a.batch_size}, n_epochs={a.n_epochs}, kl={a.kl}, {a.updates} update(s) per run, "
          f"{a.repeats} repeat(s); {bs._load()}", flush=True)
    results: dict[str, list[dict[str, float]]] = {r: [] for r in a.rows}
    for rep in range(a.repeats):
        order = list(a.rows[rep % len(a.rows):]) + list(a.rows[: rep % len(a.rows)])
        for row in order:
            results[row].append(run_row(row, model, tok, rows, a))
            print(f"  [{rep}] {row:<15} {results[row][-1]['tok_s']:8.1f} tok/s", flush=True)
    summary: dict[str, Any] = {}
    for row, runs in results.items():
        summary[row] = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    if a.grpo:
        summary["trl-grpo"] = run_grpo(model, tok, a)
    ref = summary.get("episode-buffer")
    base = ref["tok_s"] if isinstance(ref, dict) else float("nan")
    print(f"\n{'row':<16}{'tok/s':>9}{'x episode-buffer':>18}{'update s':>10}{'rollout s':>11}{'tokens':>8}")
    for row, r in summary.items():
        if isinstance(r, str):
            print(f"{row:<16}{r}")
            continue
        print(f"{row:<16}{r['tok_s']:9.1f}{r['tok_s'] / base:18.2f}{r['update_s']:10.2f}{r['rollout_s']:11.2f}"
              f"{int(r['tokens']):8d}")
    if "plain/per-obs" in summary and "plain/grouped" in summary:
        print(f"grouped / per-obs: {summary['plain/grouped']['tok_s'] / summary['plain/per-obs']['tok_s']:.2f}x; "
              f"episode-buffer / grouped: {base / summary['plain/grouped']['tok_s']:.2f}x")
    return summary


# --------------------------------------------------------------------------------------------------------
# TRPO memory (issue 14): one update of sb3_ext.TRPO with the shipped model, in a fresh process per row
# --------------------------------------------------------------------------------------------------------
def trpo_memory_child(row: str, n_envs: int, n_steps: int) -> dict[str, float]:
    import resource
    import warnings

    import torch as th
    from stable_baselines3.common.env_util import make_vec_env

    import sb3_ext
    import text_envs  # noqa: F401

    th.set_num_threads(1)
    venv = make_vec_env("TextSummarization-v0", n_envs=n_envs, seed=0)
    kwargs: dict[str, Any] = {"group_observations": row != "plain/per-obs"}
    extra = {"rollout_buffer_class": sb3_ext.EpisodeRolloutBuffer} if row == "episode-buffer" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        algo = sb3_ext.TRPO(sb3_ext.LLMPolicy, venv, n_steps=n_steps, batch_size=n_steps * n_envs, seed=0,
                            policy_kwargs=kwargs, **extra)
    n = sum(p.numel() for p in algo.policy.model.parameters())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    algo.learn(n_steps * n_envs)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"params_m": n / 1e6, "rss_before_mb": before, "peak_rss_mb": peak, "learn_s": wall}


def trpo_memory(a: argparse.Namespace) -> dict[str, Any]:
    print(f"# one sb3_ext.TRPO update (rollout + update), shipped model, {a.trpo_envs} envs x {a.trpo_steps} steps, "
          f"default env settings, peak RSS of a fresh process per row; {bs._load()}", flush=True)
    out: dict[str, Any] = {}
    for row in a.rows:
        cmd = [sys.executable, os.path.abspath(__file__), "--_trpo-child", row, "--trpo-envs", str(a.trpo_envs),
               "--trpo-steps", str(a.trpo_steps)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            out[row] = f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
        else:
            out[row] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = out[row]
        if isinstance(r, str):
            print(f"{row:<16}{r}")
        else:
            print(f"{row:<16}peak RSS {r['peak_rss_mb']:8.0f} MB (model built: {r['rss_before_mb']:.0f} MB), "
                  f"learn {r['learn_s']:.1f} s, {r['params_m']:.1f}M params", flush=True)
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="issue", help="n_envs/T/n_steps/batch/epochs")
    p.add_argument("--quick", action="store_true", help="4 envs, T=16, n_steps=16, batch 64, 1 update, 1 repeat")
    for name in ("n_envs", "T", "n_steps", "batch_size", "n_epochs"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, default=None, help="overrides the preset")
    p.add_argument("--updates", type=int, default=3, help="PPO updates (rollouts) per run")
    p.add_argument("--repeats", type=int, default=1, help="runs per row, in rotating order; medians are printed")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    p.add_argument("--grpo", action=argparse.BooleanOptionalAction, default=True, help="TRL GRPO row (if installed)")
    p.add_argument("--kl", type=float, default=0.0, help="kl_coef of every row (plain rows then switch buffer)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--prompt-tokens", type=int, default=128, help="P")
    p.add_argument("--size", default="tiny", choices=bs.SIZES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--trpo-memory", action="store_true", help="peak memory of one TRPO update instead")
    p.add_argument("--trpo-envs", type=int, default=4)
    p.add_argument("--trpo-steps", type=int, default=32)
    p.add_argument("--_trpo-child", dest="trpo_child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    preset = dict(PRESETS[a.preset])
    if a.quick:
        preset.update(n_envs=4, T=16, n_steps=16, batch_size=64, n_epochs=1)
        a.updates, a.repeats = 1, 1
    for k, v in preset.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.rows = [r for r in a.rows.split(",") if r]
    unknown = [r for r in a.rows if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}: expected some of {list(ROWS)}")
    return a


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    a = parse_args(argv)
    import torch as th

    th.set_num_threads(a.threads)
    if a.trpo_child is not None:
        result = trpo_memory_child(a.trpo_child, a.trpo_envs, a.trpo_steps)
        print(json.dumps(result))
        return result
    if a.trpo_memory:
        return trpo_memory(a)
    return throughput(a)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
