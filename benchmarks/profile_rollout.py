"""Where a rollout's time goes, beside Hugging Face ``generate`` at the same batch, under ``torch.profiler``.

    python benchmarks/profile_rollout.py                                   # CPU, tiny causal model
    python benchmarks/profile_rollout.py --size 0.5b --device cuda --dtype bfloat16 --n-envs 16 --T 128
    python benchmarks/profile_rollout.py --parts               # the card's plain PPO(LLMPolicy, env), CPU seconds
    python benchmarks/profile_rollout.py --parts --arch seq2seq --size shipped   # the same with the shipped T5

Prints (1) rollout and ``generate`` tokens/s measured alternately ``--repeats`` times (the spread between
repeats shows how noisy the machine is), (2) per generated token: host-to-device syncs, kernel launches and
operator calls of each, and (3) the operators with the most self time in one rollout and in one ``generate``.

``--parts`` instead runs the design card's plain path (``PPO(LLMPolicy, env, n_steps=T, batch_size=n_envs * T,
n_epochs=1)`` over SB3's ``DummyVecEnv``, no KL: issue 25's TRL setting) for ``--updates`` updates under cProfile
with CPU time as its clock, and prints the CPU seconds of each part of ``learn`` (SB3's ``collect_rollouts`` and its
own per-step work, ``obs_as_tensor``, the policy's forward, its sampling, the prefills of restarting rows, the
encoder of the fresh seq2seq rows that join the shared step, the cached decode steps, the env, the value bootstrap,
the update's forward, backward and Adam). cProfile adds a cost per Python call, so Python-heavy parts read high; the
shares say where to look, ``bench_trl.py`` measures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_scaling as bs  # noqa: E402

# operators that make the host wait for the device on CUDA: ``.item()``/``bool()`` of a tensor, boolean-mask
# indexing (``nonzero``: the result's size is data-dependent), and the explicit syncs and copies
SYNC_OPS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "aten::_local_scalar_dense", "aten::nonzero",
            "cudaMemcpyAsync")


def _counts(prof: Any) -> dict[str, int]:
    out = {"ops": 0, "kernels": 0, **{k: 0 for k in SYNC_OPS}}
    for e in prof.key_averages():
        if e.key in SYNC_OPS:
            out[e.key] += e.count
        if e.key.startswith("aten::"):
            out["ops"] += e.count
        if e.key == "cudaLaunchKernel" or e.key == "cuLaunchKernel" or e.key == "cudaLaunchKernelExC":
            out["kernels"] += e.count
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="tiny", choices=(*bs.SIZES, "shipped"),
                   help="model size; shipped: LLMPolicy's default model, the shipped T5 (--parts only)")
    p.add_argument("--arch", default="causal", choices=("causal", "seq2seq"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="e.g. bfloat16 (default: float32)")
    p.add_argument("--n-envs", type=int, default=16)
    p.add_argument("--P", type=int, default=128)
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--top", type=int, default=15, help="operators listed per table")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--parts", action="store_true", help="CPU seconds per part of the card's plain path (see above)")
    p.add_argument("--updates", type=int, default=4, help="--parts: PPO updates (rollouts) profiled")
    a = p.parse_args(argv)
    if a.parts:
        return plain_path_parts(a)
    import torch as th
    from torch.profiler import ProfilerActivity, profile

    th.set_num_threads(a.threads)
    from text_envs.tokenization import load_tokenizer

    tok = load_tokenizer()
    cuda = a.device.startswith("cuda")
    rows = bs.summary_rows(max(64, 4 * a.n_envs), tokenizer=tok, min_tokens=a.P if a.P > 128 else 0)
    model = bs.build_model(a.size, a.arch, tok, max_positions=max(2048, a.P + a.T + 8))
    venv = bs.make_vec_env(rows, tok, a.P, a.T, a.n_envs, 0)
    ppo = bs.make_ppo(venv, model, tok, a.T, None, kl_coef=0.0, seed=0, device=a.device, dtype=a.dtype)
    lm = ppo.policy.model
    timers = bs.instrument_ppo(ppo)
    ids, mask = bs.env_prompts(venv, a.n_envs)
    tokens = a.n_envs * a.T
    print(f"# profile_rollout: {a.arch} {a.size} ({bs.n_params(lm) / 1e6:.1f}M), n_envs={a.n_envs}, P={a.P}, T={a.T}, "
          f"{a.device} {a.dtype or 'float32'}, torch {th.__version__}; {bs._load()}", flush=True)
    ppo.learn(tokens)  # warm-up: first-call costs
    bs.generate_seconds(lm, ids, mask, a.T, a.device)
    roll, gen = [], []
    for _ in range(a.repeats):
        timers.reset()
        ppo.learn(tokens, reset_num_timesteps=False)
        roll.append(tokens / timers.collect.total)
        gen.append(tokens / bs.generate_seconds(lm, ids, mask, a.T, a.device))
    print("rollout tok/s : " + ", ".join(f"{x:,.0f}" for x in roll))
    print("generate tok/s: " + ", ".join(f"{x:,.0f}" for x in gen))
    print(f"rollout/generate (best of each): {max(roll) / max(gen):.2f}", flush=True)

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    callback = bs.episode_logger(timers)
    callback.init_callback(ppo)
    with profile(activities=acts) as prof_roll:
        ppo.collect_rollouts(ppo.env, callback, ppo.rollout_buffer, n_rollout_steps=a.T)
        if cuda:
            th.cuda.synchronize()
    with profile(activities=acts) as prof_gen:
        bs.generate_seconds(lm, ids, mask, a.T, a.device)
    c_roll, c_gen = _counts(prof_roll), _counts(prof_gen)
    print(f"\nper generated token (of {tokens}): {'':>14}{'rollout':>10}{'generate':>10}")
    for k in c_roll:
        print(f"  {k:<36}{c_roll[k] / tokens:>10.2f}{c_gen[k] / tokens:>10.2f}")
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    for name, prof in (("rollout", prof_roll), ("generate", prof_gen)):
        print(f"\n## {name}: top operators by self CPU time")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.top, max_name_column_width=48))
        if cuda:
            print(f"\n## {name}: top by self device time")
            print(prof.key_averages().table(sort_by=sort, row_limit=a.top, max_name_column_width=48))
    venv.close()
    return {"rollout_tok_s": roll, "generate_tok_s": gen, "counts_rollout": c_roll, "counts_generate": c_gen}


#: (label, a function-name pattern of pstats) of the plain path's parts; nested labels are shares of their parent
PARTS = (
    ("learn", r"on_policy_algorithm.py:\d+\(learn\)"),
    ("  collect_rollouts", r"on_policy_algorithm.py:\d+\(collect_rollouts\)"),
    ("    obs_as_tensor", r"common/utils.py:\d+\(obs_as_tensor\)"),
    ("    policy forward (rollout step)", r"sb3_ext/policy.py:\d+\(forward\)"),
    ("      prefills of restarting rows", r"backends.py:\d+\(prefill\)"),
    ("      encoder of rows starting in the step", r"decode_state.py:\d+\(_start_rows\)"),
    ("      cached decode steps", r"backends.py:\d+\(step\)"),
    ("      sampling (sample_tokens)", r"sampling.py:\d+\(sample_tokens\)"),
    ("    env step (DummyVecEnv, reward)", r"dummy_vec_env.py:\d+\(step_wait\)"),
    ("    buffer add", r"common/buffers.py:\d+\(add\)"),
    ("    value bootstrap (predict_values)", r"sb3_ext/policy.py:\d+\(predict_values\)"),
    ("    GAE (compute_returns_and_advantage)", r"buffers.py:\d+\(compute_returns_and_advantage\)"),
    ("  update (PPO.train)", r"ppo/ppo.py:\d+\(train\)"),
    ("    evaluate_actions (teacher-forced forward)", r"sb3_ext/policy.py:\d+\(evaluate_actions\)"),
    ("    Adam step", r"optimizer.py:\d+\(wrapper\)"),
    ("    backward and the rest", None),  # the update less its forward and Adam (cProfile double-counts backward)
)


def plain_path_parts(a: argparse.Namespace) -> dict[str, float]:
    """CPU seconds of each of :data:`PARTS` in ``--updates`` updates of the card's plain path (module docstring)."""
    import cProfile
    import pstats
    import re
    import warnings

    import torch as th
    from stable_baselines3 import PPO

    from sb3_ext import LLMPolicy
    from text_envs.tokenization import load_tokenizer

    th.set_num_threads(a.threads)
    tok = load_tokenizer()
    rows = bs.summary_rows(max(64, 4 * a.n_envs))
    model = None if a.size == "shipped" else bs.build_model(a.size, a.arch, tok, max_positions=a.P + a.T + 8)
    venv = bs.make_vec_env(rows, tok, a.P, a.T, a.n_envs, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ppo = PPO(LLMPolicy, venv, n_steps=a.T, batch_size=a.n_envs * a.T, n_epochs=1, seed=0, device=a.device,
                  policy_kwargs=dict(model=model, tokenizer=tok))
    ppo.learn(a.n_envs * a.T)  # first calls (lazy inits, allocator) outside the profile
    prof = cProfile.Profile(time.process_time)
    start = time.perf_counter()
    prof.runcall(ppo.learn, a.updates * a.n_envs * a.T, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    venv.close()
    stats = pstats.Stats(prof).stats  # {(file, line, name): (calls, primitive calls, tottime, cumtime, callers)}
    out: dict[str, float] = {}
    for label, pattern in PARTS:
        if pattern is None:
            continue
        rx = re.compile(pattern)
        hits = [(v[0], v[3]) for (f, line, name), v in stats.items() if rx.search(f"{f}:{line}({name})")]
        out[label.strip()] = sum(c for _, c in hits)
        out[label.strip() + " calls"] = sum(n for n, _ in hits)
    update = out["update (PPO.train)"] - out["evaluate_actions (teacher-forced forward)"] - out["Adam step"]
    out["backward and the rest"], out["backward and the rest calls"] = update, out["update (PPO.train) calls"]
    tokens = a.updates * a.n_envs * a.T
    print(f"# plain path PPO(LLMPolicy, env): {a.arch} {a.size}, {a.n_envs} envs, P={a.P}, T={a.T}, n_steps={a.T}, "
          f"batch_size={a.n_envs * a.T}, n_epochs=1, no KL; {a.updates} updates = {tokens} tokens under cProfile "
          f"(CPU clock): {wall:.1f} s wall; {bs._load()}")
    total = out["learn"] or float("nan")
    print(f"{'part':<48}{'CPU s':>8}{'share':>8}{'calls':>8}{'us/token':>10}")
    for label, _ in PARTS:
        key = label.strip()
        print(f"{label:<48}{out[key]:>8.2f}{out[key] / total:>8.0%}{out[key + ' calls']:>8}"
              f"{1e6 * out[key] / tokens:>10.0f}")
    return out


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"(total {time.perf_counter() - t0:.0f} s)")
