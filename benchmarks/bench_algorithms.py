"""Tokens per second of the group algorithms beside PPO, at equal settings, in one run.

    python benchmarks/bench_algorithms.py                  # TextContinuation-v0, the shipped T5, 16 envs
    python benchmarks/bench_algorithms.py --quick          # TextCopy-v0, a tiny T5 from a config (seconds)

Every method runs ``learn(tokens)`` from the same seed with the same env size (``n_envs``), rollout length
(``n_steps``: the env's token budget), one epoch and one minibatch per update (PPO: ``EpisodeRolloutBuffer``,
``batch_size = n_envs * n_steps``; the group methods: all the rollout's texts); the group methods write groups of
``--group-size`` texts per prompt, PPO and REINFORCE one. The methods are timed in rounds (PPO, GRPO, ..., PPO,
GRPO, ...) and each one's best round is kept, so that load on a shared machine hits them alike; printed: tokens/s
(env steps x envs per second of ``learn``, rollouts and updates) and the ratio to PPO's, the same per CPU second of
the process (a loaded machine's waits for a core are wall time, not CPU time: with one torch thread the CPU rate is
close to a quiet machine's wall rate), and whether each method is within 1.2x of PPO (issue 25's target: a ratio of
at least 1 / 1.2 = 0.83 on both measures).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

METHODS = ("ppo", "grpo", "rloo", "reinforce", "raft", "dpo")


def build(method: str, env_id: str, n_envs: int, group_size: int, seed: int, env_kwargs: dict[str, Any]) -> Any:
    """``method``'s model on a fresh env, at the settings of the module docstring."""
    from stable_baselines3 import PPO

    from sb3_ext import DPO, GRPO, RAFT, REINFORCE, RLOO, EpisodeRolloutBuffer, LLMPolicy, make_text_vec_env

    k = 1 if method in ("ppo", "reinforce") else group_size
    env = make_text_vec_env(env_id, n_envs, seed=seed, env_kwargs=env_kwargs, group_size=k)
    T = env.observation_space["generated_ids"].shape[0]
    if method == "ppo":
        return PPO(LLMPolicy, env, n_steps=T, batch_size=n_envs * T, n_epochs=1, learning_rate=1e-4, seed=seed,
                   rollout_buffer_class=EpisodeRolloutBuffer, device="cpu")
    cls = {"grpo": GRPO, "rloo": RLOO, "reinforce": REINFORCE, "raft": RAFT, "dpo": DPO}[method]
    extra = {"rloo": {"beta": 0.0}}.get(method, {})
    return cls(LLMPolicy, env, n_steps=T, learning_rate=1e-4, seed=seed, device="cpu", **extra)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    import torch as th

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="TextContinuation-v0")
    p.add_argument("--n-envs", type=int, default=16)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--tokens", type=int, default=2048, help="learn() budget per round (env steps x envs)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--quick", action="store_true", help="TextCopy-v0 (a tiny T5), 512 tokens, 1 round")
    a = p.parse_args(argv)
    env_kwargs: dict[str, Any] = {"max_new_tokens": a.max_new_tokens}
    if a.quick:
        a.env, a.tokens, a.rounds, env_kwargs = "TextCopy-v0", 512, 1, {}
    methods = [m for m in a.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or "ppo" not in methods:
        raise SystemExit(f"--methods: a comma list of {METHODS} including ppo, got {a.methods!r}")
    if a.n_envs % a.group_size:
        raise SystemExit(f"--n-envs {a.n_envs} must be a multiple of --group-size {a.group_size}")
    th.set_num_threads(a.threads)
    print(f"# bench_algorithms: {a.env} {env_kwargs}, {a.n_envs} envs (groups of {a.group_size}), {a.tokens} tokens "
          f"x {a.rounds} round(s), {a.threads} thread(s), seed {a.seed}; one epoch, one minibatch", flush=True)
    models = {m: build(m, a.env, a.n_envs, a.group_size, a.seed, env_kwargs) for m in methods}
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    for _ in range(a.rounds):
        for m, model in models.items():
            start, cpu = time.perf_counter(), time.process_time()
            model.learn(a.tokens, reset_num_timesteps=True)
            rate = a.tokens / (time.perf_counter() - start)
            best[m] = max(best.get(m, 0.0), rate)
            best_cpu[m] = max(best_cpu.get(m, 0.0), a.tokens / max(time.process_time() - cpu, 1e-9))
    print(f"{'method':<10} {'tokens/s':>9} {'x PPO':>6} {'tok/cpu-s':>10} {'x PPO':>6}  within 1.2x of PPO")
    for m in methods:
        x, xc = best[m] / best["ppo"], best_cpu[m] / best_cpu["ppo"]
        verdict = "yes" if min(x, xc) >= 1 / 1.2 else ("CPU only" if xc >= 1 / 1.2 else "no")
        print(f"{m:<10} {best[m]:>9.0f} {x:>6.2f} {best_cpu[m]:>10.0f} {xc:>6.2f}  {verdict}")
    print(f"(best of {a.rounds} round(s) each; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    return best


if __name__ == "__main__":
    main()
