"""The README's headline: the main job (`text-envs train`) over several seeds, beside supervised training continued
for the same wall time, with the claim checked.

    python benchmarks/bench_headline.py [--seeds 0,1,2] [--out runs/headline] [--keep] [-- any text-envs train flags]
    python benchmarks/bench_headline.py -- --threads 1     # the README's table

Each seed runs ``text-envs train --compare-supervised --seed S`` (the main job's defaults: RLOO on
TextContinuation-v0, ``-- --algo ppo`` for the earlier PPO; the shipped model, VADER's positive sentiment as the
reward, the KL penalty to the start model), one after the other (with the main job's thread count unless ``--
--threads N``), and prints per metric the start, the trained and the supervised run as mean ± sample standard
deviation over seeds. Then the claim, for the task reward (greedy and sampled): RL's gain over the start is at
least 5 seed standard deviations and larger than the supervised run's gain, at a KL to the start no larger than
the supervised run's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROWS = ("reward", "sentiment-classifier", "rouge-l", "kl", "start_ppl", "gen_len", "greedy_reward", "greedy_kl",
        "sampled_reward", "sampled_kl")


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="runs/headline")
    parser.add_argument("--keep", action="store_true",
                        help="reuse a seed's finished run in --out (its results.json) instead of training it again")
    args, train_flags = parser.parse_known_args()
    train_flags = [f for f in train_flags if f != "--"]

    from text_envs_app.cli import main as cli_main

    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    for seed in seeds:
        out = Path(args.out) / f"seed{seed}"
        if args.keep and (out / "results.json").is_file():
            results.append(json.loads((out / "results.json").read_text()))
            print(f"seed {seed}: reusing {out}", flush=True)
            continue
        t0 = time.time()
        code = cli_main(["train", "--compare-supervised", "--seed", str(seed), "--out", str(out), "--overwrite",
                         *train_flags])
        if code != 0:
            sys.exit(f"seed {seed}: text-envs train exited with {code}")
        result = json.loads((out / "results.json").read_text())
        results.append(result)
        print(f"seed {seed}: {time.time() - t0:.0f} s, {result['config']['algo']} training "
              f"{result['train_seconds']:.0f} s, {result['tokens']:,} tokens", flush=True)

    from text_envs_app.config import TrainConfig

    cfg = results[0]["config"]
    decoding = TrainConfig(**cfg).decoding()
    print(f"\n{cfg['algo'].upper()} on {cfg['env']}, {len(seeds)} seeds ({args.seeds}), "
          f"{cfg['eval_examples']} {cfg['eval_split']} examples, reward/kl/metrics on the {decoding} texts; "
          f"mean ± sample standard deviation over seeds\n")
    print(f"| metric | start | {cfg['algo']} | supervised, same wall time |")
    print("|---|---:|---:|---:|")
    for key in ROWS:
        if key not in results[0]["after"]:
            continue
        # the start's greedy figures are the same in every seed; its sampled ones are drawn with the seed
        start, rl, sup = (mean_std([r[col][key] for r in results]) for col in ("before", "after", "supervised"))
        print(f"| {key} | {start[0]:.4f} ± {start[1]:.4f} | {rl[0]:.4f} ± {rl[1]:.4f} | {sup[0]:.4f} ± {sup[1]:.4f} |")
    print()
    for key, kl_key in (("reward", "kl"), ("greedy_reward", "greedy_kl"), ("sampled_reward", "sampled_kl")):
        if key not in results[0]["after"] or kl_key not in results[0]["after"]:
            continue
        kl_rl = mean_std([r["after"][kl_key] for r in results])
        kl_sup = mean_std([r["supervised"][kl_key] for r in results])
        starts = [r["before"][key] for r in results]
        gains = [r["after"][key] - s for r, s in zip(results, starts)]
        sup_gains = [r["supervised"][key] - s for r, s in zip(results, starts)]
        gain, std = mean_std(gains)
        sup_gain = statistics.fmean(sup_gains)
        ok = gain >= 5 * std and gain > sup_gain and kl_rl[0] <= kl_sup[0]
        name = f"{key} ({decoding} texts)" if key == "reward" else key
        print(f"{name}: RL gain {gain:+.4f} = {gain / std if std else float('inf'):.1f} seed std ({std:.4f}); "
              f"supervised gain {sup_gain:+.4f}; KL RL {kl_rl[0]:.3f} vs supervised {kl_sup[0]:.3f} nats/text: "
              f"claim {'holds' if ok else 'does NOT hold'}")


if __name__ == "__main__":
    main()
