"""``text-envs bench-merge``: join the parts of a bench that ran apart into one bench folder.

A bench's seeds are independent: ``text-envs bench --first-seed K --seeds N`` runs seeds ``K..K+N-1`` only, so a
bench can be split over processes (one per core) or machines, each part writing its own folder. Joining the parts
gives the folder one process running every seed would have written: the rows in the order the bench writes them,
the start model's samples of every seed side by side, ``gain_share_pooled`` read against that pooled limit (a part
only knew its own seeds' samples) and the report, statistics and plots over all seeds (:func:`bench.write_report`).
The parts must agree on everything but their seeds, and their seeds must not overlap.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError
from text_envs_app.bench import (
    BENCH_PRESETS,
    BOOTSTRAP_REPS,
    SETTINGS_FILE,
    UNMASKED,
    gain_shares,
    preset_tasks,
    start_rewards_key,
    write_report,
)
from text_envs_app.grue import override_preset
from text_envs_app.run_lock import holds_run_lock

SHARED_SETTINGS = ("preset", "overrides", "methods", "kl_coefs")
"""What the parts of one bench must agree on (the device may differ: a seed's figures do not depend on it beyond
float noise)."""


def read_part(folder: str | Path) -> dict[str, Any]:
    """One finished part: its settings (``bench.json``), rows (``runs.jsonl``), curve points (``curves.csv``) and
    the start model's rewards per task (``start_rewards.npz``, when the preset samples)."""
    folder = Path(folder)
    settings_path = folder / SETTINGS_FILE
    if not settings_path.is_file():
        raise TextEnvsError(f"{folder}: no {SETTINGS_FILE}; expected the --out folder of a text-envs bench run "
                            "(one that records its settings: rerun that part with this version).")
    if not (folder / "results.md").is_file():
        raise TextEnvsError(f"{folder}: the bench has not finished (no results.md); wait for it, or rerun that part "
                            f"with --overwrite.")
    settings = json.loads(settings_path.read_text())
    with open(folder / "runs.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    with open(folder / "curves.csv", newline="") as f:
        curves = [{"task": c["task"], "method": c["method"], "kl_coef": float(c["kl_coef"]) if c["kl_coef"] else None,
                   "seed": int(c["seed"]), "tokens": int(c["tokens"]), "reward": float(c["reward"])}
                  for c in csv.DictReader(f)]
    start = folder / "start_rewards.npz"
    start_rewards = dict(np.load(start)) if start.is_file() else {}
    return {"folder": folder, "settings": settings, "rows": rows, "curves": curves, "start_rewards": start_rewards}


def _check_parts(parts: Sequence[dict[str, Any]]) -> list[int]:
    """Refuse parts that are not one bench; return the joined seeds, sorted."""
    first = parts[0]
    for part in parts[1:]:
        for key in SHARED_SETTINGS:
            if part["settings"].get(key) != first["settings"].get(key):
                raise TextEnvsError(f"{part['folder']} and {first['folder']} are not parts of one bench: their "
                                    f"{key} differ ({part['settings'].get(key)!r} vs {first['settings'].get(key)!r}).")
    seen: dict[int, Path] = {}
    for part in parts:
        for seed in part["settings"]["seeds"]:
            if seed in seen:
                raise TextEnvsError(f"seed {seed} is in both {seen[seed]} and {part['folder']}: each part must run "
                                    "its own seeds (text-envs bench --first-seed K --seeds N).")
            seen[seed] = part["folder"]
    return sorted(seen)


def _start_rewards_by_seed(parts: Sequence[dict[str, Any]]) -> dict[str, dict[int, np.ndarray]]:
    """task key -> seed -> ``(prompts, start_samples)``: each part's pooled array cut back into its seeds."""
    by_task: dict[str, dict[int, np.ndarray]] = {}
    for part in parts:
        seeds = part["settings"]["seeds"]
        for key, pooled in part["start_rewards"].items():
            for seed, block in zip(seeds, np.split(pooled, len(seeds), axis=1)):
                by_task.setdefault(key, {})[seed] = block
    return by_task


def _bench_order(tasks: Sequence[str], methods: Sequence[str], kl_coefs: Sequence[float]
                 ) -> Callable[[dict[str, Any]], tuple[int, int, int, int]]:
    """The sort key of a row or curve point in the order :func:`bench.run_benchmark` writes them: by task, method,
    KL coefficient (as given), seed."""
    def key(r: dict[str, Any]) -> tuple[int, int, int, int]:
        method = "nlpo" if r["method"] == UNMASKED else r["method"]
        coef = -1 if r["kl_coef"] is None else list(kl_coefs).index(r["kl_coef"])
        return tasks.index(r["task"]), list(methods).index(method), coef, r["seed"]

    return key


@holds_run_lock("text-envs bench-merge --out")
def merge_benchmarks(parts: Sequence[str | Path], out: str, overwrite: bool = False, reps: int = BOOTSTRAP_REPS,
                     log: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """Join the folders of a bench run in parts (``text-envs bench --first-seed``) into ``out``.

    :param parts: two or more finished bench folders of the same preset, methods, KL coefficients and overrides,
        with disjoint seeds.
    :param out: the joined folder (refused if it exists and is not empty, unless ``overwrite``); it gets the files a
        single bench over every seed writes.
    :return: the joined rows, in the order one bench over every seed would have written them.
    """
    from text_envs_app.config import TrainConfig
    from text_envs_app.run_folder import prepare_out

    if len(parts) < 2:
        raise TextEnvsError(f"bench-merge: expected two or more bench folders to join, got {len(parts)}.")
    resolved_out = Path(out).resolve()
    if any(Path(p).resolve() == resolved_out for p in parts):
        raise TextEnvsError(f"bench-merge: --out {out} is one of the parts; write the joined bench to a new folder.")
    read = [read_part(p) for p in parts]
    seeds = _check_parts(read)
    settings = dict(read[0]["settings"], seeds=seeds, parts=[str(p["folder"]) for p in read])
    name = settings["preset"]
    if name not in BENCH_PRESETS:
        raise TextEnvsError(f"bench-merge: preset {name!r} of {read[0]['folder']} is not one of this version's "
                            f"({', '.join(BENCH_PRESETS)}).")
    preset = dict(override_preset(BENCH_PRESETS[name], settings["overrides"]), device=settings["device"])
    tasks = preset_tasks(preset)

    by_seed = _start_rewards_by_seed(read)
    start_rewards = {t.name: np.concatenate([by_seed[key][s] for s in seeds], axis=1)
                     for t in tasks if (key := start_rewards_key(t.name)) in by_seed}
    rows = [row for part in read for row in part["rows"]]
    for row in rows:  # a part's pooled share knew only its own seeds' samples
        if "gain_share_pooled" in row and row["task"] in start_rewards:
            seed_rewards = by_seed[start_rewards_key(row["task"])][row["seed"]]
            row.update(gain_shares(row["reward"], row["kl"], row["kl_coef"], seed_rewards, start_rewards[row["task"]]))
    order = _bench_order([t.name for t in tasks], settings["methods"], settings["kl_coefs"])
    rows.sort(key=lambda r: (*order(r), r["method"] == UNMASKED))  # the unmasked NLPO row follows its seed's NLPO row
    curves = sorted((c for part in read for c in part["curves"]), key=lambda c: (*order(c), c["tokens"]))

    out_dir = prepare_out(TrainConfig(out=out, overwrite=overwrite))
    (out_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=1))
    with open(out_dir / "runs.jsonl", "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    log(f"joined {len(read)} parts: seeds {', '.join(map(str, seeds))}, {len(rows)} rows")
    write_report(out_dir, rows, curves, start_rewards, name, preset, tasks, settings["kl_coefs"], len(seeds), reps,
                 log)
    return rows
