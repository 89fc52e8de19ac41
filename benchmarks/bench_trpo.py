"""TRPO through a language model: sb3-contrib's stock actor gradients against ``sb3_ext.TRPO``'s, side by side.

    python benchmarks/bench_trpo.py                 # the shipped T5, 4 envs x 16 tokens, 256-token prompts
    python benchmarks/bench_trpo.py --quick         # a smoke run (seconds)

Each variant runs one ``learn`` (one rollout, one TRPO update) from the same seed in a fresh process, so that
peak resident memory is its own. Printed: the update's wall time, the peak RSS growth during ``learn``, their
ratios, and how far apart the two updated models are (they compute the same gradients, summed in another
order, so only float rounding should separate them).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from collections.abc import Sequence
from typing import Any


def run_variant(variant: str, n_envs: int, n_steps: int, prompt: int, threads: int, seed: int) -> dict[str, Any]:
    """One rollout and one update with ``variant`` ("stock" or "sb3_ext"); runs in its own process."""
    import numpy as np
    import torch as th
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy

    th.set_num_threads(threads)
    if variant == "stock":
        from sb3_contrib import TRPO
    else:
        from sb3_ext import TRPO
    venv = make_vec_env("text_envs:TextSummarization-v0", n_envs=n_envs, seed=seed,
                        env_kwargs=dict(difficulty=3, max_prompt_tokens=prompt))
    model = TRPO(LLMPolicy, venv, n_steps=n_steps, batch_size=n_envs * n_steps, target_kl=0.01, seed=seed,
                 rollout_buffer_class=EpisodeRolloutBuffer, device="cpu",
                 policy_kwargs=dict(kl_coef=0.02, value_mode="detached"))
    n_tensors = sum(1 for name, _ in model.policy.named_parameters() if "value" not in name)
    seconds: list[float] = []
    train = model.train

    def timed_train() -> None:
        start = time.perf_counter()
        train()
        seconds.append(time.perf_counter() - start)

    model.train = timed_train  # type: ignore[method-assign]

    def flat() -> np.ndarray:
        return th.cat([p.detach().flatten() for p in model.policy.model.parameters()]).numpy().astype(np.float32)

    start = flat()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model.learn(n_envs * n_steps)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"update_s": seconds[0], "rss_mib": grown, "start": start, "params": flat(), "tensors": n_tensors}


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-envs", type=int, default=4)
    p.add_argument("--n-steps", type=int, default=16, help="tokens per env per rollout")
    p.add_argument("--prompt", type=int, default=256, help="max prompt tokens")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 envs x 4 tokens, 32-token prompts")
    a = p.parse_args(argv)
    if a.quick:
        a.n_envs, a.n_steps, a.prompt = 2, 4, 32
    if min(a.n_envs, a.n_steps, a.prompt, a.threads) < 1:
        raise SystemExit("--n-envs, --n-steps, --prompt and --threads must be >= 1")
    print(f"# bench_trpo: shipped T5, TextSummarization-v0 (difficulty 3), {a.n_envs} envs x {a.n_steps} tokens, "
          f"prompts <= {a.prompt} tokens, {a.threads} thread(s), seed {a.seed}; one rollout + one update each",
          flush=True)
    ctx = mp.get_context("spawn")  # a fresh process per variant: its own peak RSS
    results = {}
    for variant in ("stock", "sb3_ext"):
        with ctx.Pool(1) as pool:
            results[variant] = pool.apply(run_variant, (variant, a.n_envs, a.n_steps, a.prompt, a.threads, a.seed))
    stock, ours = results["stock"], results["sb3_ext"]
    diff = float(abs(stock["params"] - ours["params"]).max())
    moved = float(abs(stock["params"] - stock["start"]).max())
    print(f"actor parameter tensors: {stock['tensors']} (stock TRPO: one double-backward graph for each)")
    print(f"{'TRPO':<24}{'update s':>10}{'peak RSS growth MiB':>22}")
    for name, r in (("sb3_contrib.TRPO", stock), ("sb3_ext.TRPO", ours)):
        print(f"{name:<24}{r['update_s']:>10.1f}{r['rss_mib']:>22,.0f}")
    print(f"stock / sb3_ext: update time {stock['update_s'] / ours['update_s']:.1f}x, "
          f"peak RSS growth {stock['rss_mib'] / max(ours['rss_mib'], 1.0):.1f}x; "
          f"largest difference between the updated weights: {diff:.2e} (the update moved them by up to {moved:.2e})")
    return results


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"(total {time.perf_counter() - t0:.0f} s)")
