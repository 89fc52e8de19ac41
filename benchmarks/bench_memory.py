"""Peak memory of a training run beside its tokens/s, and how it grows with n_envs, prompt length and model size.

    python benchmarks/bench_memory.py                            # the base point and 2 more values of each factor
    python benchmarks/bench_memory.py --factors n_envs           # one factor only
    python benchmarks/bench_memory.py --compare                  # each point also with one teacher-forced forward
                                                                 # per minibatch (no chunking), side by side
    python benchmarks/bench_memory.py --factors none --cli       # only `text-envs train --steps 2048` (the main job)
    python benchmarks/bench_memory.py --factors none --runs main,card,docs   # the shipped model's three runs: the
                                                                 # main job as `text-envs train` runs it, the card,
                                                                 # the docs' 32-env SB3 example
    python benchmarks/bench_memory.py --factors none --runs card,docs --trigger off   # the same without chunks

Each point is a fresh interpreter (its own peak): ``PPO(LLMPolicy, env)`` on ``TextSummarization-v0`` at difficulty 3
(prompts of ~70-190 real tokens), ``EpisodeRolloutBuffer``, KL to the start model (``kl_coef=0.02``: the frozen
reference copy is in memory), ``n_steps`` steps per env, one minibatch of the whole rollout and one epoch (the docs'
SB3 example's shape: the update's activations are largest when one minibatch holds the whole rollout), one thread,
``learn`` of two rollouts. The base point is 16 envs, ``max_prompt_tokens=256``, the shipped 2.5M-parameter T5; each
factor is varied alone:

* ``n_envs``: 8, 16, 32 (the rollout, and the minibatch, grow with it);
* ``prompt``: ``max_prompt_tokens`` 64, 128, 256 (prompts are cut to it: the encoder's width);
* ``model``: T5s of 2.5M (shipped), 7M and 60M parameters (the shipped vocabulary; random weights from a config).

Printed per point: RSS after imports, model and envs (``VmRSS`` before ``learn``), the peak (``VmHWM``, reset by
``exec``), their difference (what training adds), seconds of ``learn``, generated tokens/s, and the same per CPU
second of the process (on a shared machine a process waits for a core; CPU time does not count the wait), and the
largest one-forward activation estimate of its updates (``lm_core.episodes.episode_activation_bytes``: what the
chunking rule compares with its trigger; the ``trigger`` column: ``auto`` the default rule, or ``--trigger``'s value).
``--compare`` adds a row per point with ``lm_core.episodes.CPU_ACTIVATION_BUDGET = None`` (the update in one
forward, as before the chunked, recomputed forwards of docs/guides/performance.md "Memory"). ``--cli`` runs
``text-envs train --steps 2048 --threads 1 --curve-points 0`` (the main job) and prints its peak (``ru_maxrss`` of
the child from ``wait4``). ``--runs`` measures the shipped model's runs that the memory target is about, each in a
fresh process: ``main`` (``text-envs train`` with its defaults, the evaluations and the out-of-distribution table
included; ``--main-steps`` to shorten it), ``card`` and ``docs`` (``bench_card.py --rows card,readme-sb3``: the
card's ``PPO(LLMPolicy, env)`` with ``learn(2048)`` and the docs' 32-env SB3 example); ``--trigger`` sets
``TEXT_ENVS_CHUNK_TRIGGER_MIB`` in every child (``off``: no checkpointed chunks; docs/guides/performance.md "Memory").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import text_envs  # noqa: F401  (registers the envs; no torch at import)

BASE = {"n_envs": 16, "prompt": 256, "model": "shipped"}
FACTORS = {"n_envs": (8, 16, 32), "prompt": (64, 128, 256), "model": ("shipped", "7m", "60m")}
#: T5 sizes beside the shipped model (its vocabulary and special ids, these dimensions)
T5_SIZES = {
    "7m": dict(d_model=256, d_kv=64, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=4),
    "60m": dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8),
}


def proc_status_mib(key: str) -> float:
    """A ``/proc/self/status`` memory line in MiB (``VmRSS``: now, ``VmHWM``: the peak since ``exec``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status (this benchmark reads Linux's process status)")


def model_config(size: str) -> Any:
    """The shipped T5's config (``size="shipped"``: its weights are loaded instead) or a bigger T5's."""
    if size == "shipped":
        return None
    if size not in T5_SIZES:
        raise SystemExit(f"unknown model size {size!r}: expected 'shipped' or one of {sorted(T5_SIZES)}")
    from transformers import T5Config

    from lm_core.backends import default_model
    from text_envs.tokenization import load_tokenizer

    shipped, _ = default_model(len(load_tokenizer()))
    return T5Config(**{**shipped.config.to_dict(), **T5_SIZES[size]})


def run_point(n_envs: int, prompt: int, model: str, n_steps: int, rollouts: int, chunked: bool) -> dict[str, Any]:
    """One point, in this (fresh) process: build, ``learn``, and read the peak."""
    import torch as th  # after text_envs (module top): OpenMP's passive wait is set before torch loads

    th.set_num_threads(1)
    from stable_baselines3 import PPO

    import lm_core.episodes
    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy, make_text_vec_env

    if not chunked:
        lm_core.episodes.CPU_ACTIVATION_BUDGET = None  # type: ignore[assignment]  # one forward per minibatch
    env = make_text_vec_env("TextSummarization-v0", n_envs=n_envs, seed=0,
                            env_kwargs=dict(difficulty=3, max_prompt_tokens=prompt))
    policy_kwargs: dict[str, Any] = dict(kl_coef=0.02, value_mode="detached")
    config = model_config(model)
    if config is not None:
        policy_kwargs["model"] = config
    algo = PPO(LLMPolicy, env, rollout_buffer_class=EpisodeRolloutBuffer, n_steps=n_steps,
               batch_size=n_steps * n_envs, n_epochs=1, learning_rate=1e-4, gamma=1.0, gae_lambda=1.0, seed=0,
               policy_kwargs=policy_kwargs)
    params = sum(p.numel() for p in algo.policy.model.parameters())
    rss_built = proc_status_mib("VmRSS")
    with record_estimates(algo.policy.model.config) as estimates:
        t0, cpu0 = time.perf_counter(), time.process_time()
        algo.learn(n_steps * n_envs * rollouts)
        learn_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    return {"n_envs": n_envs, "prompt": prompt, "model": model, "params_m": params / 1e6, "chunked": chunked,
            "tokens": int(algo.num_timesteps), "learn_s": learn_s, "tok_s": algo.num_timesteps / learn_s,
            "cpu_s": cpu_s, "tok_per_cpu_s": algo.num_timesteps / cpu_s,
            "rss_built_mib": rss_built, "peak_mib": proc_status_mib("VmHWM"),
            "estimate_mib": max(estimates, default=0) / 2**20}


@contextlib.contextmanager
def record_estimates(config: Any) -> Iterator[list[int]]:
    """Inside it, the update's teacher-forced forward (``lm_core.actor_critic``'s) records each minibatch's
    one-forward activation estimate (``lm_core.episodes.episode_activation_bytes``, what the chunking rule compares)
    in the list it gives."""
    import torch as th

    import lm_core.actor_critic
    from lm_core.episodes import episode_activation_bytes

    estimates: list[int] = []
    forward = lm_core.actor_critic.teacher_forced_outputs

    def recording(backend: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
        if th.is_grad_enabled():
            width, length = int(batch.prompt_mask.sum(1).max()), int(batch.out_pos.max()) + 1
            estimates.append(batch.num_episodes * episode_activation_bytes(config, width, length))
        return forward(backend, batch, *args, **kwargs)

    lm_core.actor_critic.teacher_forced_outputs = recording
    try:
        yield estimates
    finally:
        lm_core.actor_critic.teacher_forced_outputs = forward


def run_cli(steps: int | None, flags: Sequence[str] = ("--threads", "1", "--curve-points", "0")) -> dict[str, Any]:
    """``text-envs train`` with ``flags`` (``--steps N`` unless ``steps`` is None: the default budget) in a child: its
    peak RSS, training tokens/s (wall, from ``results.json``) and the CPU seconds of the whole job."""
    with tempfile.TemporaryDirectory() as tmp, open(os.path.join(tmp, "stderr"), "w+") as err:
        cmd = [sys.executable, "-m", "text_envs", "train", *(("--steps", str(steps)) if steps else ()), *flags,
               "--out", os.path.join(tmp, "run")]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        # reaped here with wait4: ru_maxrss of this child alone (its peak after exec, or this small torch-free
        # process's size before it), where RUSAGE_CHILDREN would be the largest of all children so far
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read()[-2000:]}")
        with open(os.path.join(tmp, "run", "results.json")) as f:
            result = json.load(f)
    return {"steps": result["tokens"], "wall_s": wall, "tok_s": result["tokens"] / result["train_seconds"],
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}


def run_card_rows(rows: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``bench_card.py --rows ROWS`` (one fresh interpreter per row, its ``VmHWM``): the card and the docs' example."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "card.json")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_card.py")
        proc = subprocess.run([sys.executable, script, "--rows", ",".join(rows), "--json", out], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise SystemExit(f"bench_card.py --rows {','.join(rows)} failed ({proc.returncode}):\n"
                             f"{proc.stderr[-2000:]}")
        with open(out) as f:
            return json.load(f)


#: ``--runs`` names: the main job, and bench_card.py's rows for the card and the docs' SB3 example
RUNS = {"main": None, "card": "card", "docs": "readme-sb3"}


def headline_runs(runs: Sequence[str], main_steps: int | None) -> list[dict[str, Any]]:
    """Peak memory beside tokens/s (wall and per CPU second) of the shipped model's runs named in ``runs``."""
    rows = []
    if "main" in runs:
        r = run_cli(main_steps, flags=())
        rows.append({"run": "main job (`text-envs train`)", "tokens": r["steps"], "peak_mib": r["peak_mib"],
                     "tok_s": r["tok_s"], "cpu_s": r["cpu_s"], "note": f"{r['wall_s']:.0f} s in all, CPU s of the "
                                                                       "whole job"})
    card_rows = [RUNS[r] for r in runs if RUNS[r] is not None]
    for name, r in (run_card_rows(card_rows) if card_rows else {}).items():
        rows.append({"run": {"card": "the card, learn(2048)", "readme-sb3": "docs' 32-env SB3 example"}[name],
                     "tokens": r["tokens"], "peak_mib": r["peak_rss_mb"], "tok_s": r["tokens"] / r["learn_s"],
                     "cpu_s": r["learn_cpu_s"], "note": f"learn: rollout {r['rollout_s']:.1f} s, update "
                                                        f"{r['update_s']:.1f} s"})
    for r in rows:
        print(f"{r['run']:<30}{r['tokens']:>8}{r['peak_mib']:>10.0f}{r['peak_mib'] * 2**20 / 1e9:>9.2f}"
              f"{r['tok_s']:>10.1f}{r['tokens'] / r['cpu_s']:>14.1f}  {r['note']}", flush=True)
    return rows


def points(factors: Sequence[str]) -> list[dict[str, Any]]:
    """The base point first, then each factor's other values (the base point is not repeated)."""
    out = [dict(BASE)]
    for factor in factors:
        for value in FACTORS[factor]:
            point = {**BASE, factor: value}
            if point not in out:
                out.append(point)
    return out


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--factors", default="n_envs,prompt,model",
                   help=f"comma list of {sorted(FACTORS)} to vary from the base point {BASE}; 'none': no points")
    p.add_argument("--n-steps", type=int, default=32, help="steps per env per rollout (one minibatch: all of them)")
    p.add_argument("--rollouts", type=int, default=2, help="rollouts (and updates) per point")
    p.add_argument("--compare", action="store_true", help="each point also without chunked forwards")
    p.add_argument("--cli", action="store_true", help="also the main job: text-envs train --steps 2048")
    p.add_argument("--runs", default="", help=f"comma list of {sorted(RUNS)}: the shipped model's runs' peaks")
    p.add_argument("--main-steps", type=int, default=None, help="--steps of the main job in --runs (default: its own)")
    p.add_argument("--trigger", default=None,
                   help="TEXT_ENVS_CHUNK_TRIGGER_MIB for every child: MiB of estimated activations above which an "
                        "update runs in checkpointed chunks, or 'off'")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.trigger is not None:  # the children inherit it (lm_core.episodes.chunk_trigger_bytes reads it)
        os.environ["TEXT_ENVS_CHUNK_TRIGGER_MIB"] = a.trigger
        from lm_core.episodes import chunk_trigger_bytes

        try:
            chunk_trigger_bytes()
        except ValueError as e:
            p.error(str(e))
    if a.child:
        print("RESULT " + json.dumps(run_point(**json.loads(a.child))))
        return []
    factors = [] if a.factors == "none" else [f.strip() for f in a.factors.split(",") if f.strip()]
    unknown = [f for f in factors if f not in FACTORS]
    if unknown:
        p.error(f"unknown factor(s) {unknown}: expected some of {sorted(FACTORS)} or 'none'")
    print(f"# bench_memory: TextSummarization-v0 difficulty 3, n_steps {a.n_steps}, one minibatch, {a.rollouts} "
          f"rollout(s), one thread; {_load()}")
    print(f"{'n_envs':>7}{'prompt':>7}{'model':>8}{'params M':>9}{'trigger':>8}{'estimate MiB':>13}{'RSS built MiB':>14}"
          f"{'peak MiB':>9}{'added MiB':>10}{'learn s':>8}{'tokens/s':>9}{'CPU s':>7}{'tokens/CPU s':>13}")
    rows = []
    for point in points(factors) if factors else []:
        for chunked in (True, False) if a.compare else (True,):
            spec = {**point, "n_steps": a.n_steps, "rollouts": a.rollouts, "chunked": chunked}
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                                  capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                raise SystemExit(f"point {spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            r = json.loads(lines[-1][len("RESULT "):])
            rows.append(r)
            rule = os.environ.get("TEXT_ENVS_CHUNK_TRIGGER_MIB", "auto") if chunked else "none"
            print(f"{r['n_envs']:>7}{r['prompt']:>7}{r['model']:>8}{r['params_m']:>9.1f}{rule:>8}"
                  f"{r['estimate_mib']:>13.0f}{r['rss_built_mib']:>14.0f}{r['peak_mib']:>9.0f}"
                  f"{r['peak_mib'] - r['rss_built_mib']:>10.0f}{r['learn_s']:>8.1f}{r['tok_s']:>9.1f}{r['cpu_s']:>7.1f}"
                  f"{r['tok_per_cpu_s']:>13.1f}", flush=True)
    runs = [r.strip() for r in a.runs.split(",") if r.strip()]
    if any(r not in RUNS for r in runs):
        p.error(f"unknown run(s) {[r for r in runs if r not in RUNS]}: expected some of {sorted(RUNS)}")
    if runs:
        print(f"# the shipped model's runs ({_load()}; trigger {a.trigger or 'default'})")
        print(f"{'run':<30}{'tokens':>8}{'peak MiB':>10}{'peak GB':>9}{'tokens/s':>10}{'tokens/CPU s':>14}")
        rows += headline_runs(runs, a.main_steps)
    if a.cli:
        r = run_cli(2048)
        rows.append({"cli": True, **r})
        print(f"text-envs train --steps 2048 --threads 1 --curve-points 0: peak {r['peak_mib']:.0f} MiB, "
              f"{r['tok_s']:.0f} tokens/s in training, {r['wall_s']:.0f} s in all", flush=True)
    print(f"# {_load()}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
