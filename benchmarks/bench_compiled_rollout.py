"""Rollout tokens/s: the compiled decode step vs the eager one vs Hugging Face ``generate``, side by side.

    python benchmarks/bench_compiled_rollout.py                  # shipped model, CPU, n_envs 8 64 256
    python benchmarks/bench_compiled_rollout.py --quick          # n_envs 2 4, short texts: a smoke run
    python benchmarks/bench_compiled_rollout.py --gpu            # issue 15 item 4: 220M T5 + 0.5B causal configs,
                                                                 # bf16 on CUDA, n_envs 32 256 1024
    python benchmarks/bench_compiled_rollout.py --gpu --small    # the same code path at tiny sizes on CPU (tests)

For each model and ``n_envs``, one run measures, interleaved and best of ``--repeats``:

* ``eager``: PPO's ``collect_rollouts`` with ``LLMPolicy`` (the default dynamic KV cache, eager step);
* ``static``: the same with ``compile="static"`` (static KV cache, eager step);
* ``compiled``: ``compile=True`` (static cache, ``torch.compile``-d step: inductor on CPU, CUDA graphs via
  ``mode="reduce-overhead"`` on GPU); the first rollout (untimed) pays the compilation, reported apart;
* ``generate``: ``model.generate`` sampling on the same model, batch and prompts (real tokens counted: up to
  and including each row's EOS).

Episodes end at the model's own EOS or at ``T`` tokens (what a user meets), so the rollouts refill rows
mid-rollout. All policies hold the same weights; each has its own envs (same seed). ``--ppo-step`` adds one
whole PPO step (rollout + one epoch of updates) per variant; ``--profile N`` prints a cProfile of one compiled
rollout at ``N`` envs instead of the table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_scaling as bs  # noqa: E402

VARIANTS = ("eager", "static", "compiled", "generate")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter  # set by main (--clock)
_COMPILE = {"eager": False, "static": "static", "compiled": True}


def shipped_model() -> Any:
    """The package's shipped model (T5, 4,000-token vocabulary), float32."""
    import text_envs
    from sb3_ext import load_model

    return load_model(os.path.join(os.path.dirname(os.path.abspath(text_envs.__file__)), "assets", "model")).eval()


def _make_ppo(venv: Any, lm: Any, tok: Any, n_steps: int, compile: bool | str, device: str, dtype: str | None,
              seed: int) -> Any:
    """Stock PPO with ``LLMPolicy(compile=...)`` and ``EpisodeRolloutBuffer``, one minibatch per epoch."""
    from stable_baselines3 import PPO

    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy

    kwargs: dict[str, Any] = dict(model=lm, tokenizer=tok, compile=compile)
    if dtype is not None:
        kwargs["dtype"] = dtype
    return PPO(LLMPolicy, venv, rollout_buffer_class=EpisodeRolloutBuffer, n_steps=n_steps,
               batch_size=n_steps * venv.num_envs, n_epochs=1, learning_rate=1e-5, gamma=1.0, seed=seed,
               device=device, verbose=0, policy_kwargs=kwargs)


def _collect(ppo: Any, sync: Any) -> float:
    """Seconds of one ``collect_rollouts`` of ``ppo.n_steps`` steps."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Nop(BaseCallback):
        def _on_step(self) -> bool:
            return True

    if not getattr(ppo, "_bench_ready", False):
        _, cb = ppo._setup_learn(10**9, Nop())
        cb.on_training_start(locals(), globals())
        ppo._bench_cb, ppo._bench_ready = cb, True
    if sync is not None:
        sync()
    start = _clock()
    ppo.collect_rollouts(ppo.env, ppo._bench_cb, ppo.rollout_buffer, ppo.n_steps)
    if sync is not None:
        sync()
    return _clock() - start


def _generate(lm: Any, ids: Any, mask: Any, T: int, eos: int, pad: int, sync: Any) -> tuple[float, int]:
    """(seconds, real tokens) of one sampling ``generate``: tokens up to and including each row's first EOS."""
    import torch as th

    if sync is not None:
        sync()
    start = _clock()
    with th.no_grad():
        out = lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=T, do_sample=True, top_k=0, top_p=1.0,
                          temperature=1.0, eos_token_id=eos, pad_token_id=pad)
    if sync is not None:
        sync()
    seconds = _clock() - start
    new = out[:, 1:] if lm.config.is_encoder_decoder else out[:, ids.shape[1]:]
    is_eos = (new == eos).long()
    ended = is_eos.cumsum(1) - is_eos  # EOS tokens seen before each position
    tokens = int((ended == 0).sum())
    return seconds, tokens


def step_seconds(state: Any, ids: Any, mask: Any, T: int, sync: Any) -> float:
    """Seconds per generated token of the cached decode path alone (``state``: a policy's ``DecodeState`` or
    ``StaticDecodeState``): every row advances one token per call, ``T - 1`` calls after an untimed prefill; the
    per-call row classification is included; env, sampling and SB3 are not (the tokens are drawn beforehand)."""
    import torch as th

    B = ids.shape[0]
    gen = th.zeros((B, T), dtype=th.long, device=ids.device)
    glen = th.zeros(B, dtype=th.long, device=ids.device)
    g = th.Generator().manual_seed(0)
    tokens = th.randint(3, state.backend.vocab_size, (T, B), generator=g).to(ids.device)
    with th.no_grad():
        state.reset()
        state(ids, mask, gen, glen)  # prefill of every row: not timed
        if sync is not None:
            sync()
        start = _clock()
        for t in range(T - 1):
            gen[:, t] = tokens[t]
            glen += 1
            state(ids, mask, gen, glen)
        if sync is not None:
            sync()
    return (_clock() - start) / (B * (T - 1))


def measure(lm: Any, tok: Any, n_envs: int, P: int, T: int, device: str, dtype: str | None, variants: Sequence[str],
            repeats: int, episodes: int, ppo_step: bool, seed: int = 0) -> dict[str, Any]:
    """One row: tokens/s of each variant at one ``n_envs`` (interleaved, best of ``repeats``)."""
    import torch as th

    sync = bs.cuda_sync(device)
    rows = bs.summary_rows(max(64, 4 * n_envs), tokenizer=tok, min_tokens=P if P > 128 else 0)
    n_steps = T * episodes
    ppos: dict[str, Any] = {}
    result: dict[str, Any] = {"n_envs": n_envs, "P": P, "T": T, "tokens": n_steps * n_envs}
    for name in variants:
        if name == "generate":
            continue
        venv = bs.make_vec_env(rows, tok, P, T, n_envs, seed)
        ppos[name] = ppo = _make_ppo(venv, copy.deepcopy(lm), tok, n_steps, _COMPILE[name], device, dtype, seed)
        t0 = time.perf_counter()
        _collect(ppo, sync)  # warm-up: first calls, and the compilation for "compiled"
        result[f"{name}_first_s"] = time.perf_counter() - t0  # wall seconds whatever the clock
    best: dict[str, float] = {}
    gen_tokens = 0
    if "generate" in variants:
        venv = next(iter(ppos.values())).env if ppos else bs.make_vec_env(rows, tok, P, T, n_envs, seed)
        ids, mask = bs.env_prompts(venv, n_envs)
        ids, mask = ids.to(device), mask.to(device)
        gen_lm = next(iter(ppos.values())).policy.model if ppos else lm.to(device)
        eos, pad = int(tok.eos_token_id), int(tok.pad_token_id or 0)
        _generate(gen_lm, ids, mask, T, eos, pad, sync)  # warm-up
    for _ in range(max(1, repeats)):
        for name in variants:
            if name == "generate":
                s = n = 0
                for _ in range(episodes):
                    s_i, n_i = _generate(gen_lm, ids, mask, T, eos, pad, sync)
                    s, n = s + s_i, n + n_i
                if s / max(n, 1) < best.get("generate", float("inf")):
                    best["generate"], gen_tokens = s / max(n, 1), n
            else:
                s = _collect(ppos[name], sync)
                best[name] = min(best.get(name, float("inf")), s / result["tokens"])
    if ppos:
        ids, mask = bs.env_prompts(next(iter(ppos.values())).env, n_envs)
        ids, mask = ids.to(device), mask.to(device)
        step_best: dict[str, float] = {}
        for _ in range(max(1, repeats)):
            for name, ppo in ppos.items():  # the same state objects (and compiled step) the rollouts used
                s = step_seconds(ppo.policy.decode_state("policy", ppo.policy.backend), ids, mask, T, sync)
                step_best[name] = min(step_best.get(name, float("inf")), s)
        for name, s in step_best.items():
            result[f"{name}_step_us"] = 1e6 * s
        if "compiled" in step_best and "eager" in step_best:
            result["step_compiled_vs_eager"] = step_best["eager"] / step_best["compiled"]
    for name, s_per_tok in best.items():
        result[f"{name}_tok_s"] = 1.0 / s_per_tok
    result["generate_tokens"] = gen_tokens
    if "compiled" in best and "eager" in best:
        result["compiled_vs_eager"] = best["eager"] / best["compiled"]
    if "compiled" in best and "generate" in best:
        result["compiled_vs_generate"] = best["generate"] / best["compiled"]
    if "eager" in best and "generate" in best:
        result["eager_vs_generate"] = best["generate"] / best["eager"]
    if ppo_step:
        for name, ppo in ppos.items():  # rollout + one epoch of updates (the first one warms the update path)
            ppo.learn(result["tokens"], reset_num_timesteps=False)
            if sync is not None:
                sync()
            start = _clock()
            ppo.learn(result["tokens"], reset_num_timesteps=False)
            if sync is not None:
                sync()
            result[f"{name}_ppo_step_tok_s"] = result["tokens"] / (_clock() - start)
    for ppo in ppos.values():
        ppo.env.close()
    del ppos
    if device.startswith("cuda"):
        th.cuda.empty_cache()
    return result


def profile_rollout(lm: Any, tok: Any, n_envs: int, P: int, T: int, compile: bool | str, lines: int = 30) -> str:
    """cProfile (process CPU time) of one ``collect_rollouts`` after a warm-up one: where the rollout's time goes."""
    import cProfile
    import io
    import pstats

    rows = bs.summary_rows(max(64, 4 * n_envs), tokenizer=tok, min_tokens=P if P > 128 else 0)
    ppo = _make_ppo(bs.make_vec_env(rows, tok, P, T, n_envs), copy.deepcopy(lm), tok, T, compile, "cpu", None, 0)
    _collect(ppo, None)
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    _collect(ppo, None)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(lines)
    ppo.env.close()
    return buf.getvalue()


def _fmt(x: Any, spec: str = ",.0f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) else "-"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the comparison; returns (and with ``--out`` writes) the measured rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-envs", type=int, nargs="+", default=None)
    parser.add_argument("--P", type=int, default=None, help="max prompt tokens (default 128; --gpu 256)")
    parser.add_argument("--T", type=int, default=None, help="max new tokens (default 32; --gpu 64)")
    parser.add_argument("--episodes", type=int, default=1, help="rollout steps = T x this")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument("--quick", action="store_true", help="n_envs 2 4, P 32, T 8: a smoke run (seconds)")
    parser.add_argument("--gpu", action="store_true", help="item 4: 220m seq2seq + 0.5b causal configs, bf16 on CUDA")
    parser.add_argument("--small", action="store_true", help="with --gpu: tiny configs on CPU, float32")
    parser.add_argument("--ppo-step", action="store_true", help="also time one whole PPO step per variant")
    parser.add_argument("--deadline", type=float, default=450.0, help="seconds: later rows are skipped past it")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                        help="wall: elapsed seconds; cpu: this process's CPU seconds (steadier on a shared machine; "
                             "on CUDA use wall)")
    parser.add_argument("--profile", type=int, default=None, metavar="N_ENVS",
                        help="instead of the table: cProfile one compiled rollout of the shipped model at N_ENVS")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    a = parser.parse_args(argv)
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        from text_envs.errors import unknown_name

        raise unknown_name("variant", bad[0], VARIANTS)
    start = time.perf_counter()
    global _clock
    _clock = CLOCKS[a.clock]
    import torch as th

    bs_quiet()
    cuda = a.gpu and not a.small and th.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if not cuda:
        th.set_num_threads(a.threads)
    dtype = "bfloat16" if cuda else None
    from text_envs.tokenization import load_tokenizer

    tok = load_tokenizer()
    if a.gpu:
        models = [("220m" if not a.small else "tiny", "seq2seq"), ("0.5b" if not a.small else "tiny", "causal")]
        n_envs_list = a.n_envs or ([32, 256, 1024] if not a.small else [2, 4])
        P, T = a.P or (256 if not a.small else 32), a.T or (64 if not a.small else 8)
    else:
        models = [("shipped", "seq2seq")]
        n_envs_list = a.n_envs or ([2, 4] if a.quick else [8, 64, 256])
        P, T = a.P or (32 if a.quick else 128), a.T or (8 if a.quick else 32)
    if a.quick:
        a.repeats = min(a.repeats, 1)
    if a.profile:
        text = profile_rollout(shipped_model(), tok, a.profile, P, T, True)
        print(text)
        return {"profile": text}
    name = th.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores, {th.get_num_threads()} torch threads)"
    print(f"# compiled vs eager vs generate on {name}; torch {th.__version__}; {dtype or 'float32'}; P={P}, T={T}; "
          f"clock {a.clock}; {bs._load()}", flush=True)
    result: dict[str, Any] = {"device": name, "torch": th.__version__, "P": P, "T": T, "clock": a.clock, "rows": [],
                              "skipped": []}
    steps = [v for v in variants if v != "generate"]
    cols = [f"{v} tok/s" for v in variants] + ["compiled/eager", "compiled/generate", "eager/generate", "compile s"]
    cols += [f"step {v} us/tok" for v in steps]
    cols += ["step compiled/eager"] if {"eager", "compiled"} <= set(steps) else []
    if a.ppo_step:
        cols += [f"PPO step {v}" for v in variants if v != "generate"]
    print(f"{'model':>16}{'params M':>10}{'n_envs':>8}" + "".join(f"{c:>21}" for c in cols), flush=True)
    for size, arch in models:
        if size == "shipped":
            lm = shipped_model()
        else:
            lm = bs.build_model(size, arch, tok, max_positions=max(2048, P + T + 8))
        label = f"{arch} {size}"
        params = bs.n_params(lm) / 1e6
        for n_envs in n_envs_list:
            if time.perf_counter() - start > a.deadline:
                result["skipped"].append(f"{label} n_envs={n_envs}: deadline")
                print(f"{label:>16}{params:>10.1f}{n_envs:>8}  skipped: deadline", flush=True)
                continue
            try:
                r = measure(lm, tok, n_envs, P, T, device, dtype, variants, a.repeats, a.episodes, a.ppo_step)
            except Exception as e:  # one size failing (e.g. out of memory) must not lose the others' figures
                traceback.print_exc()
                result["skipped"].append(f"{label} n_envs={n_envs}: {type(e).__name__}: {e}")
                continue
            r.update(model=label, params_m=params)
            result["rows"].append(r)
            vals = [_fmt(r.get(f"{v}_tok_s")) for v in variants]
            vals += [_fmt(r.get("compiled_vs_eager"), ".2f"), _fmt(r.get("compiled_vs_generate"), ".2f"),
                     _fmt(r.get("eager_vs_generate"), ".2f"), _fmt(r.get("compiled_first_s"), ".1f")]
            vals += [_fmt(r.get(f"{v}_step_us"), ".1f") for v in steps]
            if {"eager", "compiled"} <= set(steps):
                vals.append(_fmt(r.get("step_compiled_vs_eager"), ".2f"))
            if a.ppo_step:
                vals += [_fmt(r.get(f"{v}_ppo_step_tok_s")) for v in variants if v != "generate"]
            print(f"{label:>16}{params:>10.1f}{n_envs:>8}" + "".join(f"{v:>21}" for v in vals), flush=True)
    result["wall_s"] = time.perf_counter() - start
    print(f"(compile s: wall seconds of the first, untimed rollout of the compiled policy, compilation included; total "
          f"{result['wall_s']:.0f} s; {bs._load()})", flush=True)
    out = a.out or (os.path.join(os.environ["OUT"], "bench_compiled_rollout.json") if os.environ.get("OUT") else None)
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return result


def bs_quiet() -> None:
    """Silence transformers' and torch's chatter (weight-loading bars, config warnings)."""
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)


if __name__ == "__main__":
    main()
