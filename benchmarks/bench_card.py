"""The design card's literal lines, timed: ``PPO(LLMPolicy, env)`` at SB3's defaults, then ``learn(2048)``.

    python benchmarks/bench_card.py                       # the card as written, beside SB3's buffer (1 epoch,
                                                          # scaled to 10) in the same run
    python benchmarks/bench_card.py --rows card --threads 0   # the card alone at torch's default threads
    python benchmarks/bench_card.py --rows card,sb3-buffer --sb3-epochs 10   # the old path in full (minutes)

Rows, each in a fresh interpreter (its own peak RSS), one after the other:

* ``card``: the literal lines (``gym.make("TextSummarization-v0")``, ``PPO(LLMPolicy, env)``, ``learn(2048)``):
  SB3's ``n_steps=2048, batch_size=64, n_epochs=10``, whatever buffer LLMPolicy picks when none is named;
* ``sb3-buffer``: the same with ``rollout_buffer_class=DictRolloutBuffer`` named explicitly (the path every card
  run took before: SB3's shuffled 64-step minibatches, grouped per episode found in each). Its update is run
  for ``--sb3-epochs`` epochs (default 1, a tenth of the card's) and the update time is scaled to 10 epochs
  ("scaled" column) so that both rows fit in one run on a busy machine;
* ``episode-buffer``: the same with ``rollout_buffer_class=EpisodeRolloutBuffer`` named explicitly (minibatches of
  whole episodes): the card's row must match it;
* ``readme-sb3``: the docs' SB3 example (``docs/examples/sb3_train.py``: 32 envs, a greedy per-prompt baseline,
  KL to the shipped T5, ``n_steps=64, batch_size=2048, n_epochs=1``) for ``--steps`` tokens: its peak RSS.

``--pythonpath DIR`` runs the rows on another copy of the packages (the code before a change), so before and
after can be measured in one run on a busy machine.

Printed per row: seconds of ``learn`` (rollout and update apart), generated tokens per second, the buffer class
and the peak RSS of the process (``VmHWM``), plus the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

ROWS = ("card", "sb3-buffer", "episode-buffer", "readme-sb3")
CARD_EPOCHS = 10  # SB3's PPO default


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB: ``VmHWM`` (reset by ``exec``, unlike ``ru_maxrss``, which a
    child started by ``subprocess`` inherits from the parent's pre-``exec`` copy)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_card(row: str, steps: int, sb3_epochs: int, threads: int, seed: int | None) -> dict[str, Any]:
    """Run one row in this process and return its measurements (called in the child)."""
    import time
    import warnings

    import gymnasium as gym
    import torch as th

    import text_envs  # noqa: F401  (registers the envs; first, as in the card: before torch is imported)

    if threads > 0:
        th.set_num_threads(threads)
    from stable_baselines3 import PPO
    from stable_baselines3.common.buffers import DictRolloutBuffer

    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy

    started = time.perf_counter()
    if row == "readme-sb3":
        return run_readme_snippet(steps, seed, started)
    env = gym.make("TextSummarization-v0")
    extra: dict[str, Any] = {} if seed is None else {"seed": seed}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if row == "card":
            model = PPO(LLMPolicy, env, **extra)
        elif row == "episode-buffer":
            model = PPO(LLMPolicy, env, rollout_buffer_class=EpisodeRolloutBuffer, **extra)
        else:
            model = PPO(LLMPolicy, env, rollout_buffer_class=DictRolloutBuffer, n_epochs=sb3_epochs, **extra)
    construct_s = time.perf_counter() - started
    timers = time_phases(model)
    t0, cpu0 = time.perf_counter(), time.process_time()
    model.learn(steps)
    learn_s, learn_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    epochs = sb3_epochs if row == "sb3-buffer" else CARD_EPOCHS
    scaled = learn_s - timers["train"] + timers["train"] * CARD_EPOCHS / epochs
    return {
        "row": row, "buffer": type(model.rollout_buffer).__name__, "tokens": int(model.num_timesteps),
        "construct_s": construct_s, "learn_s": learn_s, "learn_cpu_s": learn_cpu_s,
        "rollout_s": timers["rollout"], "update_s": timers["train"],
        "epochs": epochs, "learn_s_at_10_epochs": scaled, "threads": th.get_num_threads(),
        "peak_rss_mb": peak_rss_mib(),
        "warnings": sorted({str(w.message)[:160] for w in caught}),
    }


def time_phases(model: Any) -> dict[str, float]:
    """Wrap the algorithm's ``collect_rollouts`` and ``train``: the returned dict sums their seconds."""
    import time

    timers = {"rollout": 0.0, "train": 0.0}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timers[name] += time.perf_counter() - t0
        return wrapper

    model.collect_rollouts = timed("rollout", model.collect_rollouts)
    model.train = timed("train", model.train)
    return timers


def run_readme_snippet(steps: int, seed: int | None, started: float) -> dict[str, Any]:
    """The SB3 example of the docs (``docs/examples/sb3_train.py``: 32 envs of TextSummarization-v0 at
    difficulty 3, a per-prompt greedy baseline, KL to the shipped T5, one 2,048-token minibatch per rollout)."""
    import time

    import torch as th
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy, greedy_baseline
    from text_envs.wrappers import BaselinePool, SelfCriticalReward

    env = make_vec_env("text_envs:TextSummarization-v0", n_envs=32, env_kwargs=dict(difficulty=3),
                       wrapper_class=SelfCriticalReward, wrapper_kwargs=dict(pool=BaselinePool()))
    model = PPO(LLMPolicy, env, rollout_buffer_class=EpisodeRolloutBuffer, n_steps=64, batch_size=2048, n_epochs=1,
                learning_rate=2e-4, gamma=1.0, gae_lambda=1.0, seed=seed,
                policy_kwargs=dict(kl_coef=0.02, value_mode="detached"))
    base = env.get_attr("unwrapped", [0])[0]
    env.set_attr("baseline_fn", greedy_baseline(model.policy.reference_model, base.eos_token_id, base.pad_token_id,
                                                base.max_new_tokens))
    construct_s = time.perf_counter() - started
    rss_built = current_rss_mib()
    timers = time_phases(model)
    t0, cpu0 = time.perf_counter(), time.process_time()
    model.learn(steps)
    learn_s, learn_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    return {"row": "readme-sb3", "buffer": type(model.rollout_buffer).__name__, "tokens": int(model.num_timesteps),
            "construct_s": construct_s, "learn_s": learn_s, "learn_cpu_s": learn_cpu_s, "rollout_s": timers["rollout"],
            "update_s": timers["train"], "epochs": 1, "learn_s_at_10_epochs": learn_s, "threads": th.get_num_threads(),
            "rss_before_learn_mb": rss_built, "peak_rss_mb": peak_rss_mib(), "warnings": []}


def current_rss_mib() -> float:
    """Resident memory of this process now, in MiB (``VmRSS``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="card,sb3-buffer", help=f"comma-separated rows of {ROWS}")
    p.add_argument("--steps", type=int, default=2048, help="learn(steps); the card's is 2048")
    p.add_argument("--sb3-epochs", type=int, default=1, help="epochs of the sb3-buffer row (its update is scaled to 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads in each row; 0: torch's default")
    p.add_argument("--seed", type=int, default=0, help="algorithm seed; -1: none, as in the card")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--pythonpath", default=None,
                   help="run the rows on another copy of the packages (e.g. `git archive HEAD lm_core sb3_ext "
                        "text_envs | tar -x -C /tmp/old`, then /tmp/old): the code before a change, side by side")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    seed = None if a.seed < 0 else a.seed
    if a.child:
        print("RESULT " + json.dumps(run_card(a.child, a.steps, a.sb3_epochs, a.threads, seed)))
        return {}
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        p.error(f"unknown row(s) {unknown}: expected some of {list(ROWS)}")
    print(f"# bench_card: learn({a.steps}), threads={a.threads or 'torch default'}; {_load()}")
    results: dict[str, dict[str, Any]] = {}
    for row in rows:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", row, "--steps", str(a.steps),
               "--sb3-epochs", str(a.sb3_epochs), "--threads", str(a.threads), "--seed", str(a.seed)]
        env = dict(os.environ)
        if a.pythonpath:
            env["PYTHONPATH"] = os.path.abspath(a.pythonpath) + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"row {row} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        results[row] = json.loads(lines[-1][len("RESULT "):])
        results[row]["stderr_lines"] = len(proc.stderr.splitlines())
    print(f"{'row':<15}{'buffer':>21}{'epochs':>7}{'learn s':>9}{'CPU s':>7}{'rollout s':>10}{'update s':>9}"
          f"{'learn s @10 ep':>15}{'tokens/s':>9}{'peak RSS MB':>12}")
    for row, r in results.items():
        print(f"{row:<15}{r['buffer']:>21}{r['epochs']:>7}{r['learn_s']:>9.1f}{r['learn_cpu_s']:>7.1f}{r['rollout_s']:>10.1f}"
              f"{r['update_s']:>9.1f}{r['learn_s_at_10_epochs']:>15.1f}{r['tokens'] / r['learn_s_at_10_epochs']:>9.0f}"
              f"{r['peak_rss_mb']:>12.0f}")
    for row, r in results.items():
        if "rss_before_learn_mb" in r:
            print(f"  {row}: RSS {r['rss_before_learn_mb']:.0f} MB before learn (imports, model, envs)")
        for w in r["warnings"]:
            print(f"  {row} warned: {w}")
        print(f"  {row}: {r['stderr_lines']} line(s) on stderr")
    if "card" in results and "sb3-buffer" in results:
        ratio = results["sb3-buffer"]["learn_s_at_10_epochs"] / results["card"]["learn_s_at_10_epochs"]
        print(f"card speed-up over SB3's buffer (10 epochs): {ratio:.1f}x")
    print(f"# {_load()}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
