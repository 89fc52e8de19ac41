"""The exact-KL update's CPU cost: its vocabulary-wide terms computed together or apart, and glibc's heap kept or not.

    python benchmarks/bench_update.py                       # both parts
    python benchmarks/bench_update.py --part op             # the (N, V) terms alone
    python benchmarks/bench_update.py --part job --tokens 8192 --rounds 2

Part ``op``: at the main job's update shape (N = 2,048 tokens, the shipped vocabulary), float32, forward and backward
of a token's log-prob, entropy and exact KL to a fixed reference, computed "apart" (torch's ``Categorical``
``log_prob`` and ``entropy``, then :func:`lm_core.kl.vocabulary_kl`: what the update ran before) and "fused"
(:func:`lm_core.sampling.taken_log_probs_entropy_and_kl`), each with glibc's defaults and inside
:func:`lm_core.heap.reused_heap_memory`; the four alternate, ``--repeats`` calls each, CPU ms per call (median).

Part ``job``: the main job's model (``text-envs train``'s defaults on TextContinuation-v0: RLOO, exact KL, 2
epochs, frozen encoder; seed 0) built fresh and trained for ``--tokens`` tokens with glibc's defaults and inside
``reused_heap_memory`` (as ``text-envs train`` trains), alternating, ``--rounds`` times; CPU seconds of ``learn``
(``time.process_time``: the wait for a core on a busy machine does not count) and tokens per CPU second.

One torch thread. Ratios are printed last; the figures are in benchmarks/RESULTS.md (section 14f).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch as th
from torch.distributions import Categorical

from lm_core.heap import reused_heap_memory
from lm_core.kl import vocabulary_kl
from lm_core.sampling import taken_log_probs_entropy_and_kl


def _apart(z: th.Tensor, actions: th.Tensor, reference: th.Tensor) -> tuple[th.Tensor, ...]:
    dist = Categorical(logits=z, validate_args=False)
    return dist.log_prob(actions), dist.entropy(), vocabulary_kl(z, reference)


def _op_cpu_ms(fn: Callable[..., tuple[th.Tensor, ...]], logits: th.Tensor, actions: th.Tensor,
               reference: th.Tensor) -> float:
    z = logits.clone().requires_grad_(True)
    start = time.process_time()
    log_prob, entropy, kl = fn(z, actions, reference)
    (log_prob.sum() * 0.1 + entropy.sum() * 0.01 + kl.sum() * 0.5).backward()
    return (time.process_time() - start) * 1e3


def bench_op(tokens: int, repeats: int) -> dict[str, float]:
    from text_envs.tokenization import load_tokenizer

    vocab = len(load_tokenizer())  # the shipped tokenizer's: the action space of every env on the defaults
    g = th.Generator().manual_seed(0)
    logits = th.randn(tokens, vocab, generator=g) * 3
    reference = th.log_softmax(logits + th.randn(tokens, vocab, generator=g) * 0.1, -1)
    actions = th.randint(0, vocab, (tokens,), generator=g)
    cells = {(name, heap): [] for name in ("apart", "fused") for heap in (False, True)}
    print(f"op: forward + backward of log-prob, entropy and exact KL at ({tokens}, {vocab}) float32, "
          f"{repeats} calls each, alternating")
    for _ in range(repeats):
        for (name, heap), times in cells.items():
            fn = _apart if name == "apart" else taken_log_probs_entropy_and_kl
            with reused_heap_memory() if heap else nullcontext():
                times.append(_op_cpu_ms(fn, logits, actions, reference))
    medians = {f"{name}{', heap kept' if heap else ''}": statistics.median(t) for (name, heap), t in cells.items()}
    for label, ms in medians.items():
        print(f"  {label:20s} {ms:8.1f} CPU ms per call")
    return medians


def _main_job_model(tokens: int) -> Any:
    from text_envs_app.algorithms import make_config
    from text_envs_app.engines.sb3 import attach_baseline, build_model, make_train_env, starting_model

    cfg = make_config(threads=1, steps=tokens, seed=0)
    th.manual_seed(cfg.seed)
    venv = make_train_env(cfg)
    model = build_model(cfg, venv, None)
    attach_baseline(venv, starting_model(model, cfg))
    return model


def bench_job(tokens: int, rounds: int) -> dict[str, float]:
    results: dict[str, list[float]] = {"glibc defaults": [], "heap kept": []}
    print(f"job: the main job's model learns {tokens:,} tokens, {rounds} round(s), alternating")
    for r in range(rounds):
        for label in results:
            model = _main_job_model(tokens)
            start = time.process_time()
            with reused_heap_memory() if label == "heap kept" else nullcontext():
                model.learn(tokens)
            cpu = time.process_time() - start
            results[label].append(model.num_timesteps / cpu)
            print(f"  round {r + 1} {label:15s} {cpu:7.1f} CPU s  {model.num_timesteps / cpu:8.1f} tokens per CPU s")
            del model
    return {label: statistics.median(v) for label, v in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("op", "job", "both"), default="both")
    parser.add_argument("--tokens", type=int, default=8192, help="job: tokens per measurement (default 8192)")
    parser.add_argument("--rounds", type=int, default=2, help="job: measurements per condition (default 2)")
    parser.add_argument("--op-tokens", type=int, default=2048, help="op: N (default 2048, the main job's update)")
    parser.add_argument("--repeats", type=int, default=7, help="op: calls per condition (default 7)")
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    if args.part in ("op", "both"):
        op = bench_op(args.op_tokens, args.repeats)
        print(f"op ratios: fused {op['apart'] / op['fused']:.2f}x apart; heap kept "
              f"{op['fused'] / op['fused, heap kept']:.2f}x (fused); both {op['apart'] / op['fused, heap kept']:.2f}x "
              "apart with glibc's defaults")
    if args.part in ("job", "both"):
        job = bench_job(args.tokens, args.rounds)
        print(f"job ratio: heap kept {job['heap kept'] / job['glibc defaults']:.2f}x the tokens per CPU second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
