"""SB3 PPO against Ray RLlib PPO and IMPALA on the same env, model and batch, side by side in one run.

    python benchmarks/bench_rllib.py                 # the main job's task and model: TextSummarization-v0, shipped T5
    python benchmarks/bench_rllib.py --quick         # a smoke run on TextCopy-v0 with a tiny T5 (about a minute)

Every engine trains from the same start model with the same settings that ``text-envs train`` gives it (the KL
penalty to the start model, the greedy per-prompt baseline where the task scores texts, one gradient step per
batch of ``--n-envs x --n-steps`` tokens): SB3 through ``text_envs_app.engines.sb3.build_model`` (what
``text-envs train`` runs), RLlib through ``text_envs_app.engines.rllib.rllib_config`` (what ``--engine rllib`` runs).
Printed:

1. **Whole-training throughput**: generated tokens per second over ``--iterations`` batches after one warm-up
   batch (sampling, the reward, the KL reference pass, the update and, for RLlib, shipping episodes to the
   learner and weights back to the runners: everything but building), for SB3 PPO and for RLlib PPO and IMPALA
   with each of ``--runners`` env runners, with the ratio to SB3 PPO, and where an iteration's time goes
   (RLlib's own timers: sampling, learner update, weight sync, and the runners' model forward and env step per
   token; SB3: rollout and update). IMPALA samples asynchronously: its "sampling" is the driver's wait for ready
   samples, not the runners' sampling time.
2. **Bytes per step**: what each engine stores per generated token (SB3's ``EpisodeRolloutBuffer`` arrays; RLlib's
   episodes as an env runner returns them: the raw arrays of each part), what the RLlib env runners **ship to the
   learner per generated token**: every batch of episodes a runner returned during the timed iterations, measured
   in the runner (an ``on_sample_end`` callback) as Ray serializes a return value: the pickle-5 stream plus its
   out-of-band array buffers, summed over the runners and divided by the env steps sampled; beside it the same
   episodes with the env's full observation at every step (what ``compact_episodes=False`` ships, rebuilt from a
   sample of the compact ones by :func:`rllib_ext.episodes.expand_episode`), and the weights each RLlib update
   broadcasts to the env runners (pickled bytes of the learner's inference-only module state, and the time of a
   blocking ``sync_weights`` to all runners).

The driver (SB3's single process, RLlib's learner) uses ``--threads`` torch threads (default: one per core, as
``text-envs train``); each RLlib env runner is a process with one torch thread. On a machine with fewer cores
than env runners + 1 the runners and the learner time-share the cores: read the runner sweep with the core count
and the load average printed.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import time
from collections.abc import Sequence
from typing import Any

import numpy as np


def _nbytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes held by the NumPy arrays and torch tensors reachable from ``obj`` (lists, tuples, dicts, objects)."""
    import torch as th

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, th.Tensor):
        return int(obj.numel() * obj.element_size())
    if isinstance(obj, dict):
        return sum(_nbytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v, seen) for v in obj)
    return 0


def serialized_bytes(obj: Any) -> int:
    """Bytes of ``obj`` as Ray ships a task's return value: the pickle-5 stream plus its out-of-band buffers (NumPy
    arrays). Self-contained: it runs inside the runner processes."""
    import pickle as _pickle

    buffers: list = []
    stream = _pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return len(stream) + sum(memoryview(b.raw()).nbytes for b in buffers)


def count_shipped(env_runner: Any = None, metrics_logger: Any = None, samples: Any = None, **kwargs: Any) -> None:
    """``on_sample_end`` callback: add the serialized bytes and env steps of each returned batch of episodes to the
    runner's metrics (``shipped_bytes`` / ``shipped_steps``, lifetime sums)."""
    if metrics_logger is None or not samples:
        return
    metrics_logger.log_value("shipped_bytes", serialized_bytes(samples), reduce="lifetime_sum")
    metrics_logger.log_value("shipped_steps", sum(len(e) for e in samples), reduce="lifetime_sum")


def base_config(args: argparse.Namespace) -> Any:
    from text_envs_app.config import TrainConfig

    cfg = TrainConfig(env=args.env, model=args.model, n_envs=args.n_envs, n_steps=args.n_steps, seed=0,
                      eval_examples=1, steps=args.n_envs * args.n_steps, learning_rate=args.learning_rate,
                      curve_points=0)
    if args.env == "TextCopy-v0":
        cfg.baseline = "none"
    return cfg


# ---------------------------------------------------------------------------------------------- SB3
def run_sb3(args: argparse.Namespace) -> dict[str, Any]:
    """SB3 PPO as ``text-envs train`` builds it: tokens/s over ``args.iterations`` rollouts after a warm-up."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.utils import set_random_seed

    from text_envs_app.engines.sb3 import attach_baseline, build_model, make_train_env, starting_model

    cfg = base_config(args)
    set_random_seed(cfg.seed)
    venv = make_train_env(cfg)
    model = build_model(cfg, venv, None)
    attach_baseline(venv, starting_model(model, cfg))
    rollout = cfg.n_envs * cfg.n_steps

    class Timer(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.rollout_s = 0.0
            self._t = 0.0

        def _on_rollout_start(self) -> None:
            self._t = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.rollout_s += time.perf_counter() - self._t

        def _on_step(self) -> bool:
            return True

    model.learn(rollout)  # warm-up: first allocations, the baseline's first decodings
    stored = _nbytes(vars(model.rollout_buffer)) / rollout
    obs_bytes = sum(_nbytes(v) for k, v in vars(model.rollout_buffer).items() if "prompt" in k or "prefix" in k)
    timer = Timer()
    start = time.perf_counter()
    model.learn(args.iterations * rollout, callback=timer, reset_num_timesteps=False)
    seconds = time.perf_counter() - start
    venv.close()
    return {"engine": "sb3", "algo": "ppo", "runners": 0, "tokens": args.iterations * rollout, "seconds": seconds,
            "tokens_per_s": args.iterations * rollout / seconds,
            "parts": {"rollout": timer.rollout_s / args.iterations,
                      "update": (seconds - timer.rollout_s) / args.iterations},
            "stored_per_step": stored, "stored_obs_per_step": obs_bytes / rollout}


# ---------------------------------------------------------------------------------------------- RLlib
def episode_bytes(episodes: list) -> dict[str, Any]:
    """Bytes per step of an env runner's sampled episodes: ``per_step`` pickled (what the runner ships to the
    learner), and the raw array bytes of each part (``observations``, ``extra_model_outputs``: what the module
    stored beside the action, ...). Self-contained: it runs inside the runner processes."""
    import pickle as _pickle

    import numpy as _np

    def raw(obj: Any) -> int:
        if isinstance(obj, _np.ndarray):
            return int(obj.nbytes)
        if isinstance(obj, dict):
            return sum(raw(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(raw(v) for v in obj)
        if hasattr(obj, "get_state") and not isinstance(obj, type):
            return raw(obj.get_state())
        return 0

    import copy as _copy

    from rllib_ext.episodes import expand_episode

    steps = max(1, sum(len(e) for e in episodes))
    full = _copy.deepcopy(episodes)  # as compact_episodes=False would have stored them
    for episode in full:
        expand_episode(episode)
        if hasattr(episode, "_last_added_observation"):  # RLlib keeps the newest full observation there too
            episode._last_added_observation = episode.get_observations(-1)
    states = [e.get_state() for e in episodes]
    parts = {key: sum(raw(st[key]) for st in states) / steps
             for key in ("observations", "actions", "rewards", "extra_model_outputs", "infos", "custom_data")}
    buffers: list = []
    stream = _pickle.dumps(full, protocol=5, buffer_callback=buffers.append)
    return {"per_step_full": (len(stream) + sum(memoryview(b.raw()).nbytes for b in buffers)) / steps, "raw": parts,
            "extra_keys": sorted(states[0]["extra_model_outputs"]) if states else []}


def run_rllib(args: argparse.Namespace, algo_name: str, runners: int) -> dict[str, Any]:
    """RLlib ``algo_name`` with ``runners`` env runners, as ``--engine rllib`` builds it."""
    import dataclasses

    import ray
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE

    from text_envs_app.engines.rllib import rllib_config

    cfg = dataclasses.replace(base_config(args), engine="rllib", algo=algo_name, num_env_runners=runners)
    rollout = cfg.n_envs * cfg.n_steps
    algo = rllib_config(cfg).callbacks(on_sample_end=count_shipped).build_algo()
    try:
        def counts(result: dict[str, Any]) -> tuple[float, float]:
            return float(result["num_env_steps_sampled_lifetime"]), 0.0

        def shipped(result: dict[str, Any]) -> tuple[float, float]:
            runner_metrics = result.get("env_runners", {})
            return float(runner_metrics.get("shipped_bytes", 0)), float(runner_metrics.get("shipped_steps", 0))

        warm = algo.train()  # warm-up: actor start-up is done, first decodings and allocations happen here
        s0, _ = counts(warm)
        bytes0, steps0 = shipped(warm)
        timers: dict[str, list[float]] = {}
        start = time.perf_counter()
        result, iterations = warm, 0
        while counts(result)[0] - s0 < args.iterations * rollout:
            result = algo.train()
            iterations += 1
            found = dict(result.get("timers", {}))
            for key in ("rlmodule_inference_timer", "env_step_timer", "sample"):  # the runners' own, per call
                found[f"runner_{key}"] = result.get("env_runners", {}).get(key, float("nan"))
            for key, value in found.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    timers.setdefault(key, []).append(float(value))
        seconds = time.perf_counter() - start
        s1, _ = counts(result)
        bytes1, steps1 = shipped(result)

        def remote_episodes(runner: Any) -> dict[str, Any]:  # runs in the runner process
            return episode_bytes(runner.sample(num_timesteps=max(1, rollout // max(1, runners)),
                                               random_actions=False))

        if runners:
            stored = algo.env_runner_group.foreach_env_runner(remote_episodes, local_env_runner=False)[0]
        else:
            stored = episode_bytes(algo.env_runner.sample(num_timesteps=rollout, random_actions=False))
        stored["per_step"] = (bytes1 - bytes0) / max(steps1 - steps0, 1.0)  # what the runners shipped in training
        stored["shipped_steps"] = steps1 - steps0

        # the weights one update broadcasts: the learner's inference-only module state, as sync_weights gets it
        state = algo.learner_group.get_state(components=[f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}"],
                                             inference_only=True)
        weight_bytes = len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        sync_s = float("nan")
        if runners:
            repeats = 3
            t = time.perf_counter()
            for _ in range(repeats):
                algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group,
                                                   inference_only=True, timeout_seconds=120.0)
            sync_s = (time.perf_counter() - t) / repeats
        parts = {name: float(np.mean(values)) for name, values in timers.items()}
        return {"engine": "rllib", "algo": algo_name, "runners": runners, "tokens": s1 - s0, "seconds": seconds,
                "tokens_per_s": (s1 - s0) / seconds, "iterations": iterations,
                "envs_per_runner": -(-cfg.n_envs // max(1, runners)),
                "parts": parts, "shipped": stored, "weight_bytes": weight_bytes, "sync_s": sync_s,
                "nodes": len([n for n in ray.nodes() if n["Alive"]])}
    finally:
        algo.stop()


# ---------------------------------------------------------------------------------------------- report
PARTS = (("sampling", ("env_runner_sampling_timer", "rollout", "sample")),
         ("update", ("learner_update_timer", "update")), ("weight sync", ("synch_weights",)))


def _part(row: dict[str, Any], names: Sequence[str]) -> str:
    for name in names:
        if name in row["parts"]:
            return f"{row['parts'][name]:.2f}"
    return "-"


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The two tables (Markdown)."""
    sb3 = next((r for r in rows if r["engine"] == "sb3"), None)
    lines = [f"env {args.env}, batch {args.n_envs} envs x {args.n_steps} tokens = {args.n_envs * args.n_steps} "
             f"tokens per update, {args.iterations} updates timed after 1 warm-up; {os.cpu_count()} CPU cores, "
             f"driver torch threads {args.threads}, 1-min load average {getattr(args, 'load_start', float('nan')):.2f} "
             f"at the start, {os.getloadavg()[0]:.2f} at the end", "",
             "| engine | algo | env runners | tokens/s | / SB3 PPO | s per iteration: sampling | update | weight sync "
             "| runner µs per token: model | env step |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def per_token(r: dict[str, Any], key: str) -> str:
        value = r["parts"].get(key)
        return f"{1e6 * value / r['envs_per_runner']:.0f}" if value is not None else "-"

    for r in rows:
        ratio = f"{r['tokens_per_s'] / sb3['tokens_per_s']:.2f}" if sb3 else "-"
        cells = [_part(r, names) for _, names in PARTS]
        runner = [per_token(r, "runner_rlmodule_inference_timer"), per_token(r, "runner_env_step_timer")] \
            if r["engine"] == "rllib" else ["-", "-"]
        lines.append(f"| {r['engine']} | {r['algo']} | {r['runners'] if r['engine'] == 'rllib' else '-'} | "
                     f"{r['tokens_per_s']:.0f} | {ratio} | {' | '.join(cells)} | {' | '.join(runner)} |")
    lines += ["", "| engine | algo | stored per token, B | of which observations | + prompt once per chunk | "
              "actions + rewards | model outputs (keys) | shipped to the learner per token, B | with the prompt at "
              "every step, B | weights per update, MB | broadcast to all runners, ms |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if sb3:
        lines.append(f"| sb3 | ppo | {sb3['stored_per_step']:.0f} | {sb3['stored_obs_per_step']:.0f} | - | - | - | "
                     "0 (one process) | - | 0 | 0 |")
    seen = set()
    for r in rows:
        if r["engine"] != "rllib" or (r["algo"], r["runners"]) in seen:
            continue
        seen.add((r["algo"], r["runners"]))
        sh, raw = r["shipped"], r["shipped"]["raw"]
        stored = sum(raw.values())
        sync = f"{1000 * r['sync_s']:.0f} ({r['runners']} runners)" if math.isfinite(r["sync_s"]) else "-"
        lines.append(f"| rllib | {r['algo']} (x{r['runners']}) | {stored:.0f} | {raw['observations']:.0f} | "
                     f"{raw['custom_data']:.0f} | {raw['actions'] + raw['rewards']:.0f} | "
                     f"{raw['extra_model_outputs']:.0f} ({', '.join(sh['extra_keys'])}) | {sh['per_step']:.0f} | "
                     f"{sh['per_step_full']:.0f} | {r['weight_bytes'] / 2**20:.2f} | {sync} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="TextSummarization-v0")
    parser.add_argument("--model", default=None, help="a model folder or hub name (default: the shipped model)")
    parser.add_argument("--n-envs", type=int, default=32)
    parser.add_argument("--n-steps", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=4, help="timed updates after one warm-up (default: 4)")
    parser.add_argument("--runners", default="1,2,4", help="env-runner counts of the RLlib sweep (default: 1,2,4)")
    parser.add_argument("--algos", default="ppo,impala", help="RLlib algorithms, each at every --runners count")
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads of the driver (SB3's process, RLlib's local learner); default: all cores, "
                             "as text-envs train; 1 on a machine busy with other jobs")
    parser.add_argument("--quick", action="store_true", help="TextCopy-v0, 8 envs x 8 tokens, 2 iterations, 1 thread")
    args = parser.parse_args(argv)
    if args.quick:
        args.env, args.n_envs, args.n_steps, args.iterations, args.runners = "TextCopy-v0", 8, 8, 2, "1,2"
        args.threads = 1
    runner_counts = [int(n) for n in args.runners.split(",") if n.strip()]
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import sys

    import ray
    import torch as th
    from ray import cloudpickle

    if __name__ != "__main__":  # imported (a test): ship this module's functions to the runners by value
        cloudpickle.register_pickle_by_value(sys.modules[__name__])

    th.set_num_threads(max(1, args.threads))  # the driver's threads (text-envs train takes one per core)
    args.load_start = os.getloadavg()[0]
    rows = [run_sb3(args)]
    print(f"sb3 ppo: {rows[-1]['tokens_per_s']:.0f} tokens/s", flush=True)
    # logical CPU slots for every runner (Ray's scheduler would otherwise queue runners beyond the core count)
    ray.init(num_cpus=max(runner_counts + [2]) + 1, include_dashboard=False, logging_level="ERROR")
    try:
        plan = [(a, n) for a in algos for n in runner_counts]
        for algo_name, n in plan:
            rows.append(run_rllib(args, algo_name, n))
            print(f"rllib {algo_name} x{n}: {rows[-1]['tokens_per_s']:.0f} tokens/s", flush=True)
    finally:
        ray.shutdown()
    print(report(rows, args))
    return rows


if __name__ == "__main__":
    main()
