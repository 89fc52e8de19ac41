"""Env + SB3 bookkeeping per vector step: the native vector env (``sb3_ext.vec_env.TextVecEnv``) vs ``DummyVecEnv``.

    python benchmarks/bench_vec_env.py [--n-envs 16 256 1024] [--steps 96] [--env TextSummarization-v0]
    python benchmarks/bench_vec_env.py --profile 256      # where the native env's time goes, texts ending

What one step of SB3's ``collect_rollouts`` costs outside the model: ``venv.step(actions)`` (the envs, the
``Monitor`` records, the auto-resets, the decoding and scoring of the texts that ended) plus ``obs_as_tensor``.
Both vector envs are built as ``text-envs train`` builds them (``make_train_env`` with ``--vec-env native`` /
``--vec-env dummy``, no baseline: a baseline's greedy decoding is model time) and run side by side in one process
on the same seeds and the same actions, drawn by a fixed sampler from a seeded table of token ids of the data's
own words. Each configuration is timed in alternating blocks so that both see the same machine load (with a
``gc.collect()`` before each block, so that the garbage collector's pauses in a block are those of that env's own
allocations: ``DummyVecEnv`` deep-copies N info dicts a step); a figure is the median over blocks of the mean
time per step. The two envs are checked to return the same rewards.

Two regimes, each its own table:

* **per token**: no EOS, so every text runs to the token budget and all rows end together; the figure is the mean
  over the steps in which no text ends, the cost SB3's loop pays on every token.
* **texts ending**: EOS with probability ``--p-eos`` (1/16: texts of about 16 tokens, like the main job's), so
  every step ends and restarts a few texts: the per-text work (drawing and generating the example, tokenizing its
  prompt, decoding and scoring the text) is the same in both and is added to the per-token work.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import numpy as np
import torch as th
from stable_baselines3.common.utils import obs_as_tensor

from text_envs_app.config import TrainConfig
from text_envs_app.engines.sb3 import make_train_env


def word_tokens(venv, n: int = 64) -> np.ndarray:
    """Ids of real words of the data (the sampler writes them, so some texts score above 0)."""
    obs = venv.reset()
    ids = obs["prompt_ids"][obs["prompt_mask"] == 1]
    return np.unique(ids)[:n]


def time_blocks(venvs: dict[str, object], actions: np.ndarray, blocks: int) -> dict[str, list[tuple[float, float]]]:
    """Alternate blocks of ``len(actions) // blocks`` steps between the envs. For each env and block: (mean seconds
    per step, mean seconds per step over the steps in which no text ended)."""
    per_block = len(actions) // blocks
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in venvs}
    rewards: dict[str, list[np.ndarray]] = {name: [] for name in venvs}
    device = th.device("cpu")
    clock = time.perf_counter
    for b in range(blocks):
        chunk = actions[b * per_block: (b + 1) * per_block]
        for name, venv in venvs.items():
            times, quiet = [], []
            gc.collect()  # the garbage collector's pauses in a block are then those of this env's own allocations
            for a in chunk:
                start = clock()
                obs, r, dones, _ = venv.step(a)
                obs_as_tensor(obs, device)
                elapsed = clock() - start
                times.append(elapsed)
                if not dones.any():
                    quiet.append(elapsed)
                rewards[name].append(r)
            out[name].append((float(np.mean(times)), float(np.mean(quiet)) if quiet else float("nan")))
    first, *rest = rewards.values()
    for other in rest:
        if not all(np.array_equal(x, y) for x, y in zip(first, other)):
            raise SystemExit("the two vector envs returned different rewards: not the same episodes")
    return out


def run(venvs: dict[str, object], p_eos: float, steps: int, warmup: int, blocks: int) -> dict[str, float]:
    """Reseed and reset both vector envs, then time ``steps`` steps of the sampler with EOS probability ``p_eos``."""
    words = word_tokens(venvs["native"])
    eos = venvs["native"].get_attr("eos_token_id")[0]
    n = venvs["native"].num_envs
    rng = np.random.default_rng(0)
    total = warmup + steps
    actions = rng.choice(words, size=(total, n))
    actions[rng.random((total, n)) < p_eos] = eos
    for venv in venvs.values():
        venv.seed(0)
        venv.reset()
    time_blocks(venvs, actions[:warmup], 1)
    done_before = len(venvs["native"].episode_returns)
    times = time_blocks(venvs, actions[warmup:], blocks)
    out = {"texts": (len(venvs["native"].episode_returns) - done_before) / steps}
    for kind in venvs:
        out[kind] = statistics.median(t for t, _ in times[kind])
        out[kind + "_quiet"] = statistics.median(q for _, q in times[kind])
    return out


def profile_native(env_id: str, n: int, p_eos: float, steps: int, warmup: int) -> None:
    """cProfile of the native env alone with texts ending: where its time per step goes."""
    import cProfile
    import pstats

    venv = make_train_env(TrainConfig(env=env_id, n_envs=n, seed=0, baseline="none", vec_env="native"))
    words = word_tokens(venv)
    rng = np.random.default_rng(0)
    actions = rng.choice(words, size=(warmup + steps, n))
    actions[rng.random(actions.shape) < p_eos] = venv.get_attr("eos_token_id")[0]
    venv.seed(0)
    venv.reset()
    for a in actions[:warmup]:
        venv.step(a)
    texts = len(venv.episode_returns)
    profiler = cProfile.Profile()
    profiler.enable()
    for a in actions[warmup:]:
        obs, *_ = venv.step(a)
        obs_as_tensor(obs, th.device("cpu"))
    profiler.disable()
    print(f"native env, {n} envs, {steps} steps, {len(venv.episode_returns) - texts} texts ended:")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-envs", type=int, nargs="+", default=[16, 256, 1024])
    parser.add_argument("--steps", type=int, default=96, help="timed vector steps per env kind, size and regime")
    parser.add_argument("--warmup", type=int, default=16, help="untimed steps first")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--p-eos", type=float, default=1 / 16)
    parser.add_argument("--env", default="TextSummarization-v0")
    parser.add_argument("--profile", type=int, metavar="N", help="instead: cProfile the native env at N envs")
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.profile:
        profile_native(args.env, args.profile, args.p_eos, args.steps, args.warmup)
        return
    print(f"env {args.env} (text-envs train's settings), {args.steps} timed steps after {args.warmup} warm-up "
          f"steps, {args.blocks} alternating blocks; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    per_token, ending = {}, {}
    for n in args.n_envs:
        venvs = {kind: make_train_env(TrainConfig(env=args.env, n_envs=n, seed=0, baseline="none", vec_env=kind))
                 for kind in ("dummy", "native")}
        per_token[n] = run(venvs, 0.0, args.steps, args.warmup, args.blocks)
        ending[n] = run(venvs, args.p_eos, args.steps, args.warmup, args.blocks)
        for venv in venvs.values():
            venv.close()
    print("\nper token (no EOS; steps in which no text ends):")
    print(f"{'n_envs':>7}{'dummy ms/step':>15}{'native ms/step':>16}{'ratio':>8}{'dummy us/env':>14}"
          f"{'native us/env':>15}")
    for n, r in per_token.items():
        d, nat = r["dummy_quiet"] * 1e3, r["native_quiet"] * 1e3
        print(f"{n:>7}{d:>15.3f}{nat:>16.3f}{d / nat:>7.1f}x{d * 1e3 / n:>14.2f}{nat * 1e3 / n:>15.2f}")
    print(f"\ntexts ending (EOS probability {args.p_eos:.4f}; all steps):")
    print(f"{'n_envs':>7}{'dummy ms/step':>15}{'native ms/step':>16}{'ratio':>8}{'texts/step':>12}"
          f"{'native ms/text':>16}")  # ms/text: (all-in minus per-token time) / texts ended per step
    for n, r in ending.items():
        d, nat = r["dummy"] * 1e3, r["native"] * 1e3
        per_text = (r["native"] - per_token[n]["native_quiet"]) * 1e3 / max(r["texts"], 1e-9)
        print(f"{n:>7}{d:>15.3f}{nat:>16.3f}{d / nat:>7.1f}x{r['texts']:>12.1f}{per_text:>16.3f}")


if __name__ == "__main__":
    main()
