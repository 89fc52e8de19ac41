"""The group algorithms beside PPO at one model size: tokens/s, rollout vs update time, and which part is launch-bound.

Used by ``gpu_check.py`` (its first step); runnable alone::

    python benchmarks/gpu_algorithms.py                          # CUDA: 0.5B Qwen2-shaped causal LM, bf16, 64 and 256 envs
    python benchmarks/gpu_algorithms.py --quick --device cpu     # tiny GPT-2 config, float32, 4 and 8 envs (seconds)

Every method (``PPO`` + ``LLMPolicy`` + ``EpisodeRolloutBuffer``, and ``sb3_ext``'s ``GRPO``, ``RLOO``,
``REINFORCE``, ``RAFT``, ``DPO``) trains a copy of the same randomly initialised model (built from a config: no hub)
on ``TextSummarization-v0``'s embedded prompts with the chrF reward (not ROUGE-L: random weights write texts
that share no word with the reference, and DPO's pairs need unequal rewards), through ``sb3_ext.make_text_vec_env`` (the
group methods with ``group_size=k``; PPO and REINFORCE with 1), one epoch, minibatches of ``--minibatch`` texts
(PPO: that many texts' tokens). Per (method, n_envs):

1. on CUDA, one untimed rollout + update (CUDA start-up, kernel selection, allocator growth);
2. ``--rounds`` timed rollouts + updates: ``collect_rollouts`` and ``train`` wall times with the device synchronised
   at their ends, and inside the rollout the policy's decode steps apart from the env steps (reward included);
3. one more rollout + update under ``torch.profiler``: kernel launches per decode step and per optimizer step, and the
   device's busy time (the sum of its kernels' durations) as a share of the phase's wall time.

**Launch-bound** is what the profile says of a phase whose device is busy less than half of its wall time: the GPU
waits for the host to launch the next kernel (Python, SB3 and the env between kernels), so a faster GPU would not
make it faster; fewer, larger kernels (bigger batches, CUDA graphs: ``LLMPolicy(compile=...)``) would. On CPU there
are no kernel launches: the profile counts operator calls instead and gives no verdict.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_scaling as bs  # noqa: E402

METHODS = ("ppo", "grpo", "rloo", "reinforce", "raft", "dpo")
# a phase whose device is busy less than this share of its wall time is reported launch-bound
LAUNCH_BOUND_BUSY = 0.5
REWARD = "chrf"  # varies between random texts (ROUGE-L is 0 for nearly all), as DPO's pairs need
_LAUNCH_NAMES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cudaGraphLaunch")


def build_method(method: str, model: Any, tokenizer: Any, rows: list[dict], n_envs: int, group_size: int, P: int,
                 T: int, minibatch: int, device: str, dtype: str | None, seed: int = 0) -> Any:
    """``method``'s SB3 model over a fresh ``make_text_vec_env`` of the summarization prompts ``rows``.

    :param model: the LM to train (the caller passes a copy: the model is trained in place)
    :param minibatch: texts per optimizer step (PPO: ``minibatch * T`` tokens)
    """
    from stable_baselines3 import PPO

    from sb3_ext import DPO, GRPO, RAFT, REINFORCE, RLOO, EpisodeRolloutBuffer, LLMPolicy, make_text_vec_env
    from text_envs.errors import unknown_name

    if method not in METHODS:
        raise unknown_name("method", method, METHODS)
    k = 1 if method in ("ppo", "reinforce") else group_size
    env_kwargs = dict(dataset=rows, tokenizer=tokenizer, max_prompt_tokens=P, max_new_tokens=T, reward=REWARD)
    env = make_text_vec_env("TextSummarization-v0", n_envs, seed=seed, env_kwargs=env_kwargs, group_size=k)
    policy_kwargs: dict[str, Any] = dict(model=model, tokenizer=tokenizer)
    if dtype is not None:
        policy_kwargs["dtype"] = dtype
    if method == "ppo":
        return PPO(LLMPolicy, env, rollout_buffer_class=EpisodeRolloutBuffer, n_steps=T,
                   batch_size=min(minibatch, n_envs) * T, n_epochs=1, learning_rate=1e-6, gamma=1.0, seed=seed,
                   device=device, policy_kwargs=policy_kwargs)
    cls = {"grpo": GRPO, "rloo": RLOO, "reinforce": REINFORCE, "raft": RAFT, "dpo": DPO}[method]
    # DPO's batch counts pairs (one per group); the others' texts
    batch = max(1, minibatch // group_size) if method == "dpo" else minibatch
    return cls(LLMPolicy, env, n_steps=T, batch_size=batch, seed=seed, device=device, policy_kwargs=policy_kwargs)


class _Phase:
    """Wrap a bound method: add up its wall time (device synchronised at the end) and, while ``profile`` is set,
    run it under ``torch.profiler`` and keep the profile."""

    def __init__(self, fn: Callable, sync: Callable[[], None] | None, cuda: bool):
        self.fn, self.sync, self.cuda = fn, sync, cuda
        self.seconds, self.calls, self.profile, self.last_profile = 0.0, 0, False, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.profile:
            start = time.perf_counter()
            out = self.fn(*args, **kwargs)
            if self.sync is not None:
                self.sync()  # the device runs asynchronously: wait for it before reading the clock
            self.seconds += time.perf_counter() - start
            self.calls += 1
            return out
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        start = time.perf_counter()
        with profile(activities=activities) as prof:
            out = self.fn(*args, **kwargs)
            if self.sync is not None:
                self.sync()
        self.last_profile = (prof, time.perf_counter() - start)
        return out


def profile_counts(prof: Any, wall_s: float, cuda: bool) -> dict[str, float]:
    """Kernel launches (CUDA) or operator calls (CPU), and the device's busy seconds and share of ``wall_s``."""
    from torch.autograd import DeviceType

    launches = ops = 0
    busy_us = 0.0
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:
            busy_us += e.time_range.elapsed_us()
        elif e.name in _LAUNCH_NAMES:
            launches += 1
        elif e.name.startswith("aten::"):
            ops += 1
    return {"launches": launches if cuda else ops, "busy_s": busy_us / 1e6 if cuda else float("nan"),
            "busy_share": busy_us / 1e6 / wall_s if cuda and wall_s > 0 else float("nan"), "profiled_wall_s": wall_s}


def verdict(busy_share: float) -> str:
    """``launch-bound`` / ``device-bound`` from the device's busy share of a phase (``n/a`` without a device)."""
    if busy_share != busy_share:  # NaN: CPU
        return "n/a (CPU)"
    return "launch-bound" if busy_share < LAUNCH_BOUND_BUSY else "device-bound"


def measure(method: str, base_model: Any, tokenizer: Any, rows: list[dict], n_envs: int, group_size: int, P: int,
            T: int, minibatch: int, device: str, dtype: str | None, rounds: int = 2, seed: int = 0) -> dict[str, Any]:
    """Time one (method, n_envs): see the module docstring. Returns one row of the table."""
    import torch as th

    cuda = device.startswith("cuda")
    sync = bs.cuda_sync(device)
    algo = build_method(method, copy.deepcopy(base_model), tokenizer, rows, n_envs, group_size, P, T, minibatch,
                        device, dtype, seed)
    rollout = _Phase(algo.collect_rollouts, sync, cuda)
    update = _Phase(algo.train, sync, cuda)
    decode = _Phase(algo.policy.forward, sync, False)  # policy steps inside the rollout (never profiled alone)
    env_step = _Phase(algo.env.step_wait, None, False)
    algo.collect_rollouts, algo.train, algo.policy.forward, algo.env.step_wait = rollout, update, decode, env_step
    per_round = n_envs * T
    if cuda:
        algo.learn(per_round)  # warm-up, untimed: CUDA start-up and kernel selection
    for phase in (rollout, update, decode, env_step):
        phase.seconds, phase.calls = 0.0, 0
    for i in range(rounds):
        algo.learn(per_round, reset_num_timesteps=not cuda and i == 0)
    timed = {name: p.seconds / max(p.calls, 1) for name, p in
             (("rollout", rollout), ("update", update))}
    decode_s, env_s = decode.seconds / max(rollout.calls, 1), env_step.seconds / max(rollout.calls, 1)
    rollout.profile = update.profile = True
    algo.learn(per_round, reset_num_timesteps=False)
    prof_rollout = profile_counts(*rollout.last_profile, cuda)
    prof_update = profile_counts(*update.last_profile, cuda)
    optimizer_steps = max(1, -(-n_envs // minibatch)) if method != "dpo" else max(1, -(-n_envs // group_size // max(
        1, minibatch // group_size)))
    row = {
        "method": method, "n_envs": n_envs, "group_size": 1 if method in ("ppo", "reinforce") else group_size,
        "tok_s": per_round / (timed["rollout"] + timed["update"]),
        "rollout_s": timed["rollout"], "update_s": timed["update"], "decode_s": decode_s, "env_s": env_s,
        "rollout_share": timed["rollout"] / (timed["rollout"] + timed["update"]),
        "rollout_launches_per_step": prof_rollout["launches"] / T,
        "rollout_busy_share": prof_rollout["busy_share"],
        "update_launches_per_opt_step": prof_update["launches"] / optimizer_steps,
        "update_busy_share": prof_update["busy_share"],
        "rollout_verdict": verdict(prof_rollout["busy_share"]), "update_verdict": verdict(prof_update["busy_share"]),
    }
    if cuda:
        row["peak_gib"] = th.cuda.max_memory_allocated() / 2**30
    algo.env.close()
    del algo
    return row


HEADER = (f"{'method':<10}{'n_envs':>7}{'k':>3}{'tok/s':>9}{'rollout s':>10}{'decode s':>9}{'env s':>7}{'update s':>9}"
          f"{'rollout %':>10}{'launch/step':>12}{'busy':>6}{'rollout is':>14}{'launch/opt':>11}{'busy':>6}"
          f"{'update is':>14}{'peak GiB':>9}")


def format_row(r: dict[str, Any]) -> str:
    """One printed line of :data:`HEADER`."""
    def pct(x: float) -> str:
        return "-" if x != x else f"{x:.0%}"

    return (f"{r['method']:<10}{r['n_envs']:>7}{r['group_size']:>3}{r['tok_s']:>9,.0f}{r['rollout_s']:>10.2f}"
            f"{r['decode_s']:>9.2f}{r['env_s']:>7.2f}{r['update_s']:>9.2f}{r['rollout_share']:>10.0%}"
            f"{r['rollout_launches_per_step']:>12,.0f}{pct(r['rollout_busy_share']):>6}{r['rollout_verdict']:>14}"
            f"{r['update_launches_per_opt_step']:>11,.0f}{pct(r['update_busy_share']):>6}{r['update_verdict']:>14}"
            f"{r['peak_gib'] if 'peak_gib' in r else float('nan'):>9.1f}".replace("nan", "  -"))


def run(size: str, n_envs_list: Sequence[int], methods: Sequence[str], device: str, dtype: str | None, P: int, T: int,
        group_size: int, minibatch: int, rounds: int = 2, seed: int = 0,
        time_left: Callable[[], float] | None = None, min_seconds: float = 0.0,
        skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """Every (n_envs, method) of the plan, printing each row as it is measured. With ``time_left``, a row is skipped
    (and named in ``skipped``) once fewer than ``min_seconds`` are left, so that a caller's deadline holds."""
    import torch as th

    from text_envs.tokenization import load_tokenizer

    for n in n_envs_list:
        if n % group_size:
            raise SystemExit(f"n_envs {n} must be a multiple of the group size {group_size}")
    tok = load_tokenizer()
    rows = bs.summary_rows(max(256, 2 * max(n_envs_list)))
    model = bs.build_model(size, "causal", tok, max_positions=P + T + 8, seed=seed,
                           dtype=None if dtype in (None, "float32") else getattr(th, dtype)).to(device)
    print(f"{size} causal model: {bs.n_params(model) / 1e6:.1f}M parameters, {dtype or 'float32'} on {device}; "
          f"P={P}, T={T}, groups of {group_size}, minibatches of {minibatch} texts, {rounds} timed round(s)", flush=True)
    print(HEADER, flush=True)
    out: list[dict[str, Any]] = []
    for n in n_envs_list:
        for method in methods:
            if time_left is not None and time_left() < min_seconds:
                if skipped is not None:
                    skipped.append(f"algorithms {method} n_envs={n}: deadline")
                print(f"{method:<10}{n:>7}  skipped: deadline", flush=True)
                continue
            if device.startswith("cuda"):
                th.cuda.reset_peak_memory_stats()
            try:
                r = measure(method, model, tok, rows, n, group_size, P, T, minibatch, device, dtype, rounds, seed)
            except Exception as e:  # one method failing (e.g. out of memory) must not lose the others' figures
                import traceback

                traceback.print_exc()
                if skipped is not None:
                    skipped.append(f"algorithms {method} n_envs={n}: {type(e).__name__}: {e}")
                print(f"{method:<10}{n:>7}  failed: {type(e).__name__}: {e}", flush=True)
                continue
            out.append(r)
            print(format_row(r), flush=True)
            if device.startswith("cuda"):
                th.cuda.empty_cache()
    print("(tok/s: generated tokens / (rollout + update) seconds; decode/env: the rollout's policy steps and env steps "
          "(reward included); launch/step: kernel launches per decode step (CPU: operator calls); launch/opt: per "
          f"optimizer step; busy: the device's kernel time / the phase's wall time; below {LAUNCH_BOUND_BUSY:.0%}: "
          "launch-bound; peak GiB: the GPU's peak allocated memory in the row)", flush=True)
    return out


GPU_PLAN = dict(size="0.5b", n_envs_list=(64, 256), device="cuda", dtype="bfloat16", P=128, T=32, group_size=4,
                minibatch=64, rounds=2)
QUICK_PLAN = dict(size="tiny", n_envs_list=(4, 8), device="cpu", dtype=None, P=64, T=8, group_size=4, minibatch=4,
                  rounds=1)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny GPT-2 config, 4 and 8 envs, T=8 (seconds on CPU)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"a comma list of {METHODS}")
    a = p.parse_args(argv)
    import torch as th

    plan = dict(QUICK_PLAN if a.quick else GPU_PLAN)
    device = a.device or ("cuda" if th.cuda.is_available() else "cpu")
    if device == "cuda" and not th.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here; run with --quick --device cpu")
    if device == "cpu" and not a.quick:
        print("no CUDA device: running the tiny CPU plan (--quick); the 0.5B figures need a GPU", flush=True)
        plan = dict(QUICK_PLAN)
    plan["device"] = device
    if device == "cpu":
        plan["dtype"] = None
        th.set_num_threads(1)
    methods = [m for m in a.methods.split(",") if m]
    return run(methods=methods, **plan)


if __name__ == "__main__":
    main()
