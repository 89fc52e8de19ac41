"""The main job's costliest evaluation step, side by side: a trained model's M texts per prompt and their exact KL
to the start model (``model_reward`` / ``model_kl`` of the frontier rows), three ways on the same draws.

    python benchmarks/bench_frontier_kl.py                          # the shipped model against a moved copy
    python benchmarks/bench_frontier_kl.py --model runs/train/hf    # a trained model (text-envs train's hf/)
    python benchmarks/bench_frontier_kl.py --splits test --prompts 50 --samples 8

Rows, per split (one thread, the same seeded draws in each):

* ``before``: :func:`text_envs_app.frontier.sample_texts` without a reference, then
  :func:`text_envs_app.text_kl.sequence_kls` over each 64 consecutive texts (each batch padded to its longest text,
  as before this release);
* ``sorted KL``: the same, ``sequence_kls`` cutting each window of 256 texts into batches by length (the default);
* ``while sampling``: ``sample_texts(reference=start)``, the start model decoding beside the sampler (one cached
  step per token, no second pass of the trained model).

Every row samples with this release's sampler (each prompt encoded once for its M texts, not M times: its own
saving is not in these rows; benchmarks/RESULTS.md section 23e has the main job's timings before and after).

Printed: seconds of each, the speed-up against ``before``, the largest difference of a text's KL from
``before``'s (float rounding: batches of other shapes) and the texts' mean / max length.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run the comparison; returns one dict per printed row (``split``, ``way``, ``seconds``, ``speedup``,
    ``max_kl_difference``, ``mean_kl``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="the trained model (a folder); default: the shipped model "
                        "with its last decoder feed-forward layer moved by noise")
    parser.add_argument("--splits", default="test,ood", help="TextContinuation-v0 splits, comma-separated")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args(argv)

    import gymnasium as gym
    import torch as th
    from transformers import AutoModelForSeq2SeqLM

    import text_envs  # noqa: F401  (registers the envs)
    from lm_core.backends import default_model
    from text_envs_app import text_kl
    from text_envs_app.frontier import sample_texts

    th.set_num_threads(1)
    print(f"# bench_frontier_kl: {args.prompts} prompts x {args.samples} texts, torch {th.__version__}, 1 thread")
    print("| split | way | seconds | speed-up | max KL difference | mean KL | text length mean / max |")
    print("|---|---|---:|---:|---:|---:|---|")
    table = []
    for split in args.splits.split(","):
        env = gym.make("TextContinuation-v0", split=split).unwrapped
        start = default_model(len(env.tokenizer))[0].eval()
        if args.model:
            model = AutoModelForSeq2SeqLM.from_pretrained(args.model).eval()
        else:
            model = default_model(len(env.tokenizer))[0].eval()
            th.manual_seed(0)
            with th.no_grad():
                for name, p in model.named_parameters():
                    if name.startswith("decoder.block.2.layer.2"):
                        p.add_(0.1 * th.randn_like(p) * p.abs().mean())
        indices = range(args.prompts)

        def teacher_forced(by_length: bool) -> tuple[float, np.ndarray, list]:
            began = time.perf_counter()
            rows = sample_texts(model, env, indices, args.samples, seed=0)
            prompts = [r["prompt"] for r in rows for _ in r["token_ids"]]
            ids = [t for r in rows for t in r["token_ids"]]
            if by_length:
                kls = text_kl.sequence_kls(model, start, env, prompts, ids)
            else:  # one call per 64 consecutive texts: each batch padded to its own longest text, as before
                step = text_kl.KL_BATCH
                kls = np.concatenate([text_kl.sequence_kls(model, start, env, prompts[k:k + step], ids[k:k + step])
                                      for k in range(0, len(ids), step)])
            return time.perf_counter() - began, kls, ids

        before_s, before, ids = teacher_forced(False)
        sorted_s, by_length, _ = teacher_forced(True)
        began = time.perf_counter()
        rows = sample_texts(model, env, indices, args.samples, seed=0, reference=start)
        beside_s = time.perf_counter() - began
        beside = np.array([k for r in rows for k in r["kls"]])
        if [t for r in rows for t in r["token_ids"]] != ids:
            raise SystemExit("the draws differ between the ways: the comparison is void")
        lengths = np.array([len(t) for t in ids])
        for way, seconds, kls in (("before", before_s, before), ("sorted KL", sorted_s, by_length),
                                  ("while sampling", beside_s, beside)):
            table.append({"split": split, "way": way, "seconds": seconds, "speedup": before_s / seconds,
                          "max_kl_difference": float(np.abs(kls - before).max()), "mean_kl": float(kls.mean())})
            print(f"| {split} | {way} | {seconds:.1f} | {before_s / seconds:.2f}x | {np.abs(kls - before).max():.1e} | "
                  f"{kls.mean():.4f} | {lengths.mean():.1f} / {lengths.max()} |")
        env.close()
    return table


if __name__ == "__main__":
    main()
