"""The one prepared GPU check: the training algorithms, TRL's GRPO and the floor ratios at GPU sizes, in under 8 minutes.

    python benchmarks/gpu_check.py                       # CUDA: 0.5B Qwen2-shaped causal LM (and a 220M T5), bf16
    python benchmarks/gpu_check.py --quick --device cpu  # tiny configs on CPU, float32: under a minute
    python benchmarks/gpu_check.py --out result.json     # also write the rows as JSON (default: $OUT/gpu_check.json)
    python benchmarks/gpu_check.py --steps algorithms    # one step only

Steps, in this order (each prints its table as soon as it is measured; a step that would pass ``--deadline`` is
skipped and says so, so the script always ends in time and always prints what it has):

1. ``algorithms`` (``gpu_algorithms.py``): PPO + ``LLMPolicy`` beside ``sb3_ext``'s GRPO, RLOO, REINFORCE, RAFT and
   DPO on a Qwen2-0.5B-shaped causal model with random weights (built from a config: no hub), bf16, at 64 and
   256 envs (groups of 4 via ``make_text_vec_env(..., group_size=4)``), P = 128, T = 32: tokens/s, rollout vs
   update seconds (device synchronised), and from one profiled rollout + update: kernel launches per decode step
   and per optimizer step and the device's busy share, hence which phase is **launch-bound** (busy < 50%);
2. ``trl``: TRL's ``GRPOTrainer`` (``bench_trl``) on the same model, prompts, reward (chrF) and T with 64 and 256
   completions per update (groups of 4), 3 updates after an untimed warm-up (needs ``pip install -e .[bench]``;
   without trl the step says so and is skipped);
3. ``floors`` (``bench_scaling.floor_ratios``): rollout tokens/s ÷ ``generate`` tokens/s and one PPO epoch ÷ one
   supervised epoch over the same episodes, for a t5-base-shaped T5 of 220M parameters and the 0.5B causal model,
   with the GPU's peak memory.

Without CUDA the script says so and runs the tiny CPU plan (``--quick``): the same code, tiny configs, float32, a
45-second deadline. ``--small`` keeps the full step list at the tiny sizes (no deadline change).
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
import gpu_algorithms  # noqa: E402

STEPS = ("algorithms", "trl", "floors")
# (size, arch, n_envs, P, T, episodes per env)
GPU_FLOORS = [("220m", "seq2seq", 32, 256, 64, 1), ("0.5b", "causal", 32, 256, 64, 1)]
CPU_FLOORS = [("tiny", "seq2seq", 4, 64, 16, 1), ("tiny", "causal", 4, 64, 16, 1)]
TRL_COMPLETIONS = (64, 256)  # completions per update, as the algorithms step's n_envs
CPU_TRL_COMPLETIONS = (8,)


def trl_plan(completions: int, cuda: bool = True) -> list[str]:
    """``bench_trl``'s arguments for TRL's GRPO with ``completions`` per update (groups of 4), at the algorithms
    step's model, P and T (CPU: the tiny model and T = 8)."""
    if not cuda:
        return ["--size", "tiny", "--lengths", "8", "--seeds", "0", "--updates", "2", "--completions",
                str(completions), "--generations", "4", "--trainers", "grpo", "--prompt-tokens", "128",
                "--reward", gpu_algorithms.REWARD]
    return ["--size", "0.5b", "--device", "cuda", "--dtype", "bfloat16", "--lengths", "32", "--seeds", "0",
            "--trainers", "grpo", "--updates", "3", "--completions", str(completions), "--generations", "4",
            "--prompt-tokens", "128", "--reward", gpu_algorithms.REWARD, "--threads", "8"]


GPU_TRL = trl_plan(TRL_COMPLETIONS[0])


def _trl_installed() -> bool:
    try:
        import trl  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the check; returns (and with ``--out`` writes) the measured rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="the tiny CPU plan: tiny configs, 4 and 8 envs, a 45 s deadline (what runs without CUDA)")
    parser.add_argument("--device", default=None, choices=("cuda", "cpu"), help="default: cuda when available")
    parser.add_argument("--small", action="store_true", help="tiny configs on CPU even when CUDA is present")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"a comma list of {STEPS}, run in that order")
    parser.add_argument("--methods", default=",".join(gpu_algorithms.METHODS),
                        help="the algorithms step's methods (a comma list)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds: later steps are skipped past it (default 420; --quick 45)")
    parser.add_argument("--skip-trl", action="store_true", help="the same as leaving trl out of --steps")
    parser.add_argument("--out", default=None, help="write the results as JSON here (default: $OUT/gpu_check.json)")
    a = parser.parse_args(argv)
    start = time.perf_counter()
    import torch as th

    steps = [s.strip() for s in a.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise SystemExit(f"--steps: a comma list of {STEPS}, got {a.steps!r}")
    if a.device == "cuda" and not th.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here. Run `python benchmarks/gpu_check.py --quick "
                         "--device cpu` for the CPU check, or run this on a machine with a GPU.")
    cuda = th.cuda.is_available() and a.device != "cpu" and not (a.small or a.quick)
    if not cuda and not (a.small or a.quick):
        print("# no CUDA device: running the tiny CPU plan (--quick). The GPU figures (0.5B, bf16, 64 and 256 envs) "
              "need a CUDA device; nothing below measures a GPU.", flush=True)
        a.quick = True
    deadline = a.deadline if a.deadline is not None else (45.0 if a.quick else 420.0)
    device = "cuda" if cuda else "cpu"
    if not cuda:
        th.set_num_threads(1)
    bench_trl._quiet()
    name = th.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores, {th.get_num_threads()} torch threads)"
    result: dict[str, Any] = {"device": name, "torch": th.__version__, "algorithms": [], "trl": [], "floors": [],
                              "skipped": []}
    print(f"# gpu_check on {name}; torch {th.__version__}; {'bf16' if cuda else 'float32'}; steps {steps}; "
          f"deadline {deadline:.0f} s; {bs._load()}", flush=True)

    def left() -> float:
        return deadline - (time.perf_counter() - start)

    for step in steps:
        if step == "algorithms":
            plan = dict(gpu_algorithms.GPU_PLAN if cuda else gpu_algorithms.QUICK_PLAN)
            plan["device"] = device
            print("\n## the training algorithms (rollout vs update; which part is launch-bound)", flush=True)
            result["algorithms"] = gpu_algorithms.run(
                methods=[m for m in a.methods.split(",") if m], time_left=left, min_seconds=40 if cuda else 5,
                skipped=result["skipped"], **plan)
        elif step == "trl":
            trl_step(result, cuda, left, a.skip_trl)
        elif step == "floors":
            floors(result, cuda, device, left)
    result["wall_s"] = time.perf_counter() - start
    print(f"\n(gpu_check total {result['wall_s']:.0f} s; {bs._load()})", flush=True)
    out = a.out or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return result


def trl_step(result: dict[str, Any], cuda: bool, left: Any, skip: bool) -> None:
    """TRL's GRPO at each completion count: appends to ``result["trl"]`` (and ``result["skipped"]``)."""
    print("\n## TRL's GRPO at the same model, prompts, reward and T", flush=True)
    if skip:
        result["skipped"].append("trl: --skip-trl")
        print("(skipped: --skip-trl)", flush=True)
        return
    if not _trl_installed():
        result["skipped"].append("trl: not installed")
        print("(skipped: trl is not installed; pip install -e '.[bench]')", flush=True)
        return
    for completions in TRL_COMPLETIONS if cuda else CPU_TRL_COMPLETIONS:
        if left() < (90 if cuda else 15):
            result["skipped"].append(f"trl {completions} completions: deadline")
            print(f"(TRL GRPO with {completions} completions skipped: deadline)", flush=True)
            continue
        try:
            rows = bench_trl.main(trl_plan(completions, cuda))
            result["trl"] += [{**r, "completions": completions} for r in rows]
        except Exception as e:  # e.g. out of memory at 256 completions: keep the other figures
            traceback.print_exc()
            result["skipped"].append(f"trl {completions} completions: {type(e).__name__}: {e}")


def floors(result: dict[str, Any], cuda: bool, device: str, left: Any) -> None:
    """The floor-ratio step: appends to ``result["floors"]`` (and ``result["skipped"]``)."""
    import torch as th

    from text_envs.tokenization import load_tokenizer

    tok = load_tokenizer()
    print("\n## floor ratios (rollout/generate: 1 = as fast as HF generate; PPO/supervised: 1 = same cost)")
    print(f"{'arch':>8}{'size':>6}{'params M':>10}{'n_envs':>8}{'P':>6}{'T':>5}{'rollout tok/s':>15}"
          f"{'generate tok/s':>16}{'rollout/generate':>18}{'PPO/supervised':>16}{'peak GiB':>10}", flush=True)
    for size, arch, n_envs, P, T, eps in GPU_FLOORS if cuda else CPU_FLOORS:
        if left() < (100 if cuda else 10):
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


if __name__ == "__main__":
    main()
