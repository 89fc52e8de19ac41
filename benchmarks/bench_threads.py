"""torch threads and OpenMP's wait policy for `text-envs train`, with and without a background load.

    python benchmarks/bench_threads.py                          # TextCopy-v0, 4096 tokens, threads 1 and 2,
                                                                # OMP_WAIT_POLICY unset and PASSIVE, load 0 and 2
    python benchmarks/bench_threads.py --threads 1,2 --load 0 --repeats 2
    python benchmarks/bench_threads.py --model 60m              # a 60M-parameter T5 (random weights) instead of
                                                                # the shipped model

Each row runs the issue's command ``text-envs train --env TextCopy-v0 --steps 4096 --threads N`` (plus
``--model`` for a bigger model) in a fresh process with ``OMP_WAIT_POLICY`` as given ("unset": OpenMP's own
default, passed as an empty value, since ``text-envs`` sets PASSIVE when the variable is missing), while
``--load`` background processes each keep one core busy (a one-thread NumPy matmul loop, as another job on a shared
machine). Printed: tokens/s of the training phase
(``results.json``: ``tokens / train_seconds``) and the wall time of the whole command; the machine's load
average before and after is printed too: other work on it counts as load.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

BURN = "import numpy as np\na = np.random.rand(256, 256)\nwhile True:\n    a = (a @ a) / 256.0\n"


def start_load(n: int) -> list[subprocess.Popen]:
    """Start ``n`` background processes that each keep one core busy (one BLAS thread)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-c", BURN], env=env) for _ in range(n)]


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def model_folder(size: str, folder: str) -> str | None:
    """``None`` for the shipped model; else a saved T5 of that size with random weights (the shipped vocabulary)."""
    if size == "shipped":
        return None
    from transformers import AutoModelForSeq2SeqLM, T5Config

    from lm_core.backends import default_model
    from text_envs.tokenization import load_tokenizer

    tok = load_tokenizer()
    shipped, _ = default_model(len(tok))
    sizes = {"60m": dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8)}
    if size not in sizes:
        raise SystemExit(f"unknown --model {size!r}: expected 'shipped' or one of {sorted(sizes)}")
    cfg = T5Config(**{**shipped.config.to_dict(), **sizes[size]})
    path = os.path.join(folder, f"t5-{size}")
    AutoModelForSeq2SeqLM.from_config(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def run(threads: int, wait: str, steps: int, model: str | None, out: str) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if wait == "unset":
        # text-envs sets PASSIVE when the variable is unset; an empty value is kept by its setdefault and read by
        # libgomp (torch's OpenMP) as invalid, so OpenMP's own default applies (libgomp prints one warning line)
        env["OMP_WAIT_POLICY"] = ""
    else:
        env["OMP_WAIT_POLICY"] = wait
    cmd = ["text-envs", "train", "--env", "TextCopy-v0", "--steps", str(steps), "--threads", str(threads),
           "--out", out]
    if model is not None:
        cmd += ["--model", model]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    with open(os.path.join(out, "results.json")) as f:
        result = json.load(f)
    return {"tok_s": result["tokens"] / result["train_seconds"], "train_s": result["train_seconds"], "wall_s": wall}


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    p.add_argument("--wait", default="unset,PASSIVE", help="comma-separated OMP_WAIT_POLICY values ('unset': none)")
    p.add_argument("--load", default="0,2", help="comma-separated numbers of busy background processes")
    p.add_argument("--steps", type=int, default=4096, help="--steps of text-envs train")
    p.add_argument("--model", default="shipped", help="'shipped' or '60m' (a T5 of 60M parameters, random weights)")
    p.add_argument("--repeats", type=int, default=1, help="runs per row (rotating order), median printed")
    a = p.parse_args(argv)
    rows = list(itertools.product([int(x) for x in a.load.split(",")], [int(x) for x in a.threads.split(",")],
                                  a.wait.split(",")))
    print(f"# bench_threads: text-envs train --env TextCopy-v0 --steps {a.steps}, model {a.model}; {_load()}")
    results: dict[tuple, list[dict[str, Any]]] = {r: [] for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        model = model_folder(a.model, tmp)
        for rep in range(a.repeats):
            for load in sorted({r[0] for r in rows}):
                procs = start_load(load)
                try:
                    todo = [r for r in rows if r[0] == load]
                    todo = todo[rep % len(todo):] + todo[: rep % len(todo)]
                    for row in todo:
                        out = os.path.join(tmp, f"run-{len(os.listdir(tmp))}")
                        results[row].append(run(row[1], row[2], a.steps, model, out))
                finally:
                    stop_load(procs)
    print(f"{'background load':>16}{'threads':>8}{'OMP_WAIT_POLICY':>17}{'tokens/s':>10}{'train s':>9}{'wall s':>8}")
    summary = []
    for row in rows:
        runs = sorted(results[row], key=lambda r: r["tok_s"])
        mid = runs[len(runs) // 2]
        summary.append({"load": row[0], "threads": row[1], "wait": row[2], **mid,
                        "all_tok_s": [r["tok_s"] for r in results[row]]})
        print(f"{row[0]:>16}{row[1]:>8}{row[2]:>17}{mid['tok_s']:>10.0f}{mid['train_s']:>9.1f}{mid['wall_s']:>8.1f}"
              + (f"   (runs: {', '.join(f'{r:.0f}' for r in summary[-1]['all_tok_s'])})" if a.repeats > 1 else ""))
    print(f"# {_load()}")
    return summary


if __name__ == "__main__":
    main()
