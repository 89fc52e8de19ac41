"""Env steps per second without any model: random actions, terminal reward and end-of-episode decode included.

    python benchmarks/bench_envs.py [--steps 200000]

Targets on a 2-core CPU, one env: >= 100,000 steps/s for TextCopy-v0 and >= 30,000 for
TextSummarization-v0 with its ROUGE-L reward. Each row times the raw env (``env.unwrapped``) and the
``gym.make`` env (with Gymnasium's order-enforcing wrapper), so the wrapper's share is visible.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import text_envs  # noqa: F401  (registers the envs)


def steps_per_second(env, n_steps: int, seed: int = 0) -> tuple[float, int]:
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, env.action_space.n, size=n_steps)
    env.reset(seed=seed)
    episodes = 0
    step, reset = env.step, env.reset
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            reset()
            episodes += 1
    return n_steps / (time.perf_counter() - start), episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200_000)
    args = parser.parse_args()
    cases = [
        ("TextCopy-v0", {}, 100_000),
        ("TextSummarization-v0", {}, 30_000),
        ("TextSummarization-v0", {"dense_reward": True}, None),
        ("DialogueGeneration-v0", {}, None),
        ("MachineTranslation-v0", {}, None),
    ]
    print(f"{'env':<24}{'kwargs':<22}{'raw steps/s':>13}{'gym.make steps/s':>18}{'episodes':>10}{'target':>9}")
    for env_id, kwargs, target in cases:
        n = args.steps if not kwargs.get("dense_reward") else max(args.steps // 20, 1000)
        env = gym.make(env_id, **kwargs)
        raw, episodes = steps_per_second(env.unwrapped, n)
        wrapped, _ = steps_per_second(env, n)
        ok = "" if target is None else ("ok" if raw >= target else "MISS")
        print(f"{env_id:<24}{str(kwargs or ''):<22}{raw:>13,.0f}{wrapped:>18,.0f}{episodes:>10}{ok:>9}")


if __name__ == "__main__":
    main()
