"""The one prepared GPU check: floor ratios and the TRL comparison at GPU sizes, in under 8 minutes.

    python benchmarks/gpu_check.py                 # CUDA: t5-base-sized seq2seq + 0.5B causal, bf16
    python benchmarks/gpu_check.py --small         # CPU (or no CUDA): the same steps at the tiny size
    python benchmarks/gpu_check.py --out result.json

Steps (each prints its table as soon as it is measured; a step that would pass the deadline is skipped
and says so, so the script always ends in time and always prints what it has):

1. floor ratios (``bench_scaling.floor_ratios``): rollout tokens/s ÷ ``generate`` tokens/s and one PPO epoch
   ÷ one supervised epoch over the same episodes, for a t5-base-shaped T5 of 220M parameters and a
   Qwen2-shaped 0.5B causal config (both at the shipped 4,000-token vocabulary), bf16, with the GPU's peak memory;
2. the TRL comparison (``bench_trl``) with the 0.5B causal model: PPO + LLMPolicy, GRPO and RLOO, T = 32
   and 128, one seed, 6 updates each after an untimed warm-up of every trainer (the first CUDA run pays
   for start-up and kernel selection).

Without CUDA (or with ``--small``) the same code runs on CPU with the tiny configs, float32: that is how the
test suite checks this script.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_scaling as bs  # noqa: E402
import bench_trl  # noqa: E402

# (size, arch, n_envs, P, T, episodes per env)
GPU_FLOORS = [("220m", "seq2seq", 32, 256, 64, 1), ("0.5b", "causal", 32, 256, 64, 1)]
CPU_FLOORS = [("tiny", "seq2seq", 4, 64, 16, 1), ("tiny", "causal", 4, 64, 16, 1)]
GPU_TRL = ["--size", "0.5b", "--device", "cuda", "--dtype", "bfloat16", "--lengths", "32,128", "--seeds", "0",
           "--trainers", "ppo,grpo,rloo", "--updates", "6", "--completions", "16", "--generations", "4", "--threads", "8"]
CPU_TRL = ["--size", "tiny", "--lengths", "16", "--seeds", "0", "--updates", "2", "--completions", "8",
           "--generations", "4"]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the check; returns (and with ``--out`` writes) the measured rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="tiny configs on CPU even when CUDA is present")
    parser.add_argument("--deadline", type=float, default=450.0, help="seconds: later steps are skipped past it")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--out", default=None, help="write the results as JSON here (default: $OUT/gpu_check.json)")
    a = parser.parse_args(argv)
    start = time.perf_counter()
    import torch as th

    cuda = th.cuda.is_available() and not a.small
    device = "cuda" if cuda else "cpu"
    if not cuda:
        th.set_num_threads(1)
    bench_trl._quiet()
    from text_envs.tokenization import load_tokenizer

    tok = load_tokenizer()
    name = th.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores, {th.get_num_threads()} torch threads)"
    result: dict[str, Any] = {"device": name, "torch": th.__version__, "floors": [], "trl": [], "skipped": []}
    print(f"# gpu_check on {name}; torch {th.__version__}; {'bf16' if cuda else 'float32'}; {bs._load()}", flush=True)

    def left() -> float:
        return a.deadline - (time.perf_counter() - start)

    print("\n## floor ratios (rollout/generate: 1 = as fast as HF generate; PPO/supervised: 1 = same cost)")
    print(f"{'arch':>8}{'size':>6}{'params M':>10}{'n_envs':>8}{'P':>6}{'T':>5}{'rollout tok/s':>15}"
          f"{'generate tok/s':>16}{'rollout/generate':>18}{'PPO/supervised':>16}{'peak GiB':>10}", flush=True)
    for size, arch, n_envs, P, T, eps in GPU_FLOORS if cuda else CPU_FLOORS:
        if left() < 60:
            result["skipped"].append(f"floor {arch} {size}: deadline")
            print(f"{arch:>8}{size:>6}  skipped: deadline", flush=True)
            continue
        if cuda:
            th.cuda.reset_peak_memory_stats()
        try:
            r = bs.floor_ratios(size, arch, tok, n_envs=n_envs, P=P, T=T, episodes_per_env=eps, device=device,
                                dtype="bfloat16" if cuda else None)
        except Exception as e:  # one size failing (e.g. out of memory) must not lose the others' figures
            traceback.print_exc()
            result["skipped"].append(f"floor {arch} {size}: {type(e).__name__}: {e}")
            continue
        peak = th.cuda.max_memory_allocated() / 2**30 if cuda else bs.peak_rss_mb() / 1024
        r.update(size=size, arch=arch, n_envs=n_envs, P=P, T=T, peak_gib=peak)
        result["floors"].append(r)
        print(f"{arch:>8}{size:>6}{r['params_m']:>10.1f}{n_envs:>8}{P:>6}{T:>5}{r['rollout_tok_s']:>15,.0f}"
              f"{r['generate_tok_s']:>16,.0f}{r['rollout_vs_generate']:>18.2f}{r['ppo_vs_supervised']:>16.2f}"
              f"{peak:>10.2f}", flush=True)
        if cuda:
            th.cuda.empty_cache()
    if a.skip_trl:
        result["skipped"].append("trl: --skip-trl")
    elif left() < 120:
        result["skipped"].append("trl: deadline")
        print("\n(TRL comparison skipped: deadline)")
    else:
        try:
            result["trl"] = bench_trl.main(GPU_TRL if cuda else CPU_TRL)
        except Exception as e:
            traceback.print_exc()
            result["skipped"].append(f"trl: {type(e).__name__}: {e}")
    result["wall_s"] = time.perf_counter() - start
    print(f"\n(gpu_check total {result['wall_s']:.0f} s; {bs._load()})", flush=True)
    out = a.out or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return result


if __name__ == "__main__":
    main()
