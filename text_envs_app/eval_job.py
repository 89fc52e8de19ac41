"""``text-envs eval``: find the saved model a path names (:func:`find_saved_model`), load its policy as data (no
unpickling), evaluate it on a held-out split and write the results (:func:`evaluate_saved`)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from text_envs.errors import TextEnvsError
from text_envs_app.config import TrainConfig
from text_envs_app.engines.sb3 import build_model, make_train_env
from text_envs_app.evaluation import check_eval_split, describe_data, eval_count, evaluate_policy_on_split, format_table
from text_envs_app.progress import has_progress_bar
from text_envs_app.run_folder import prepare_out

RUN_DATA_KEYS = ("env", "dataset", "train_file", "validation_file", "test_file", "split_seed", "prompt_field",
                 "reference_field", "source_lang", "target_lang", "gym_kwargs", "difficulty", "reward",
                 "max_new_tokens")
"""The options of a training run that an evaluation of its model inherits (unless given again)."""
EVAL_KEYS = ("model", "eval_split", "eval_examples", "seed", "device")


def find_saved_model(model_path: str | None) -> dict[str, Any]:
    """What ``text-envs eval MODEL`` names: ``{"kind": "shipped" | "zip" | "hf", "path": ..., "run": the run's
    config.json values or {}}``. MODEL may be a ``text-envs train`` output folder, an SB3 ``.zip``, or a
    Hugging Face model folder (a run's ``hf/``, a ``save_pretrained`` folder) or hub name."""
    if model_path is None:
        return {"kind": "shipped", "path": None, "run": {}}
    path = Path(model_path).expanduser()

    def run_config(folder: Path) -> dict[str, Any]:
        for name in ("config.json", "state.json"):
            f = folder / name
            if f.is_file():
                values = json.loads(f.read_text())
                values = values.get("config", values) if name == "state.json" else values
                if isinstance(values, dict) and "env" in values and "algo" in values:
                    return values
        return {}

    if path.is_dir() and (path / "model.zip").is_file():
        return {"kind": "zip", "path": path / "model.zip", "run": run_config(path)}
    if path.is_dir() and (path / "hf" / "config.json").is_file() and run_config(path):  # an --engine rllib run
        return {"kind": "hf", "path": path / "hf", "run": run_config(path)}
    if path.is_file() and path.suffix == ".zip":
        return {"kind": "zip", "path": path, "run": run_config(path.parent)}
    if path.is_dir() and ((path / "config.json").is_file() and any(path.glob("*.safetensors"))
                          or any(path.glob("pytorch_model*.bin"))):
        return {"kind": "hf", "path": path, "run": run_config(path.parent)}
    if path.exists() or os.sep in model_path or model_path.endswith(".zip"):
        raise TextEnvsError(
            f"No saved model at {model_path!r}: expected a `text-envs train` output folder (with model.zip), an SB3 "
            ".zip, or a Hugging Face model folder (config.json + *.safetensors, such as a run's hf/)."
        )
    return {"kind": "hf", "path": model_path, "run": {}}  # a hub name: transformers says if it cannot load it


def _same_file(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def run_split_of_file(run: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The data keys that evaluate file ``path`` the way run ``run`` (its config.json values) split it, when the run
    was trained on ``path`` split by the seeded rule (``--dataset FILE``): its ``dataset`` and ``split_seed``, so
    that the test split is the run's own test rows. None for any other file."""
    from text_envs.data.sources import is_local_path

    dataset = run.get("dataset")
    if run.get("train_file") is None and dataset and is_local_path(dataset) and _same_file(dataset, path):
        return {"dataset": dataset, "split_seed": run.get("split_seed", 0)}
    return None


def trained_rows_note(run: dict[str, Any], cfg: TrainConfig) -> str:
    """A sentence saying which of the rows ``cfg`` evaluates the run (config.json values ``run``) was trained on,
    or ``""`` when it trained on none of them (or the run is unknown)."""
    from text_envs.data.sources import SplitFile

    if not run:
        return ""
    split, data = cfg.eval_split, cfg.data_spec()
    if isinstance(data, SplitFile) and run_split_of_file(run, data.path) is not None:
        if data.seed != run.get("split_seed", 0):
            return (f"Data: {data.path} split with --split-seed {data.seed}, not the run's {run.get('split_seed', 0)}: "
                    f"these {split} rows may include rows the run was trained on.")
        if split == "train":
            return f"Data: the run's own training rows of {data.path}: this measures fit, not generalization."
        return (f"Data: the run's own {split} rows of {data.path} (row numbers in the run's splits.json); its train "
                "rows, which it was trained on, are not evaluated.")
    evaluated = data.get(split) if isinstance(data, dict) else None
    if evaluated is not None and _same_file(evaluated, run.get("train_file")):
        return (f"Data: every row of {evaluated} was a training row of this run (its --train-file): this measures "
                "fit, not generalization" + (f"; its test rows are in {run['test_file']}." if run.get("test_file")
                                              else "."))
    if evaluated is not None and run_split_of_file(run, evaluated) is not None:
        return (f"Data: every row of {evaluated}, the file the run was split from: its train rows (row numbers in "
                f"the run's splits.json) were trained on. `text-envs eval RUN --dataset {evaluated}` scores its "
                "test rows only.")
    return ""


def _load_run_policy(found: dict[str, Any], cfg: TrainConfig) -> Any:
    """The policy of a run's SB3 zip, read as data: the policy built as the run built it (from its config.json),
    then the zip's ``policy.pth`` loaded with torch's ``weights_only``. The zip's ``data`` entries, which SB3's own
    ``load`` unpickles, are not read."""
    from text_envs_app.checkpoint import read_sb3_policy_weights

    path = found["path"]
    if not found["run"]:
        raise TextEnvsError(
            f"{str(path)!r} is an SB3 zip without its run's config.json beside it. SB3's own load rebuilds a policy "
            "from the zip's `data` entries, which are pickles (reading one can run any code), and text-envs does "
            "not unpickle the files it is given: evaluate the run folder the zip came from, or its hf/ folder "
            "(text-envs eval RUN/hf); if you trust the zip, load it in Python with PPO.load (docs/guides/safety.md).")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    run_cfg = TrainConfig(**{k: v for k, v in found["run"].items() if k in names})
    run_cfg = dataclasses.replace(run_cfg, **{k: getattr(cfg, k) for k in RUN_DATA_KEYS}, device=cfg.device,
                                  trust_remote_code=cfg.trust_remote_code)
    weights = read_sb3_policy_weights(path)
    venv = make_train_env(run_cfg)
    try:
        policy = build_model(run_cfg, venv, None).policy
    finally:
        venv.close()
    try:
        policy.load_state_dict(weights)
    except (RuntimeError, TextEnvsError) as e:
        raise TextEnvsError(f"{str(path)!r} does not hold the policy its run's config.json builds "
                            f"({str(e).splitlines()[0][:300]}): evaluate the zip in its own run folder.") from e
    return policy


def _load_policy(found: dict[str, Any], cfg: TrainConfig) -> Any:
    """The policy of a saved model, built for ``cfg``'s env."""
    import gymnasium as gym

    if found["kind"] == "zip":
        return _load_run_policy(found, cfg)
    from sb3_ext import LLMPolicy

    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs())
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 0.0, model=cfg.model,
                       tokenizer=env.unwrapped.tokenizer, trust_remote_code=cfg.trust_remote_code)
    env.close()
    return policy.to(cfg.device)


def evaluate_saved(model_path: str | None, cfg: TrainConfig, out: str | None = None, overwrite: bool = False,
                   log=print) -> dict[str, float]:
    """Evaluate a saved model greedily on ``cfg``'s evaluation split: print the metric table and a few samples;
    with ``out``, write ``results.md``, ``results.json`` and ``generations.jsonl`` (one line per text: prompt,
    generation, references, every metric) there.

    :param model_path: a ``text-envs train`` output folder, an SB3 ``.zip``, a Hugging Face model folder or hub
        name; None: the shipped model.
    :param cfg: the env, data and evaluation options (``eval_split``, ``eval_examples``, ``seed``, ``device``).
    """
    found = find_saved_model(model_path)
    if found["kind"] == "hf":
        cfg = dataclasses.replace(cfg, model=str(found["path"]))
    cfg.validate()
    check_eval_split(cfg)
    import torch

    torch.set_num_threads(cfg.threads or max(1, os.cpu_count() or 1))  # as train: one thread unless told
    out_dir = prepare_out(TrainConfig(out=out, overwrite=overwrite)) if out is not None else None
    describe_data(cfg, log)
    policy = _load_policy(found, cfg)
    n = eval_count(cfg)
    what = {"shipped": "the shipped model", "zip": str(found["path"]), "hf": str(found["path"])}[found["kind"]]
    how = f"best-of-{cfg.best_of_n}" if cfg.decoding() == "best-of-n" else cfg.decoding()
    data_note = trained_rows_note(found["run"], cfg)
    if data_note:
        log(data_note)
    log(f"evaluating {what} ({how} decoding) on {n:,} {cfg.eval_split} examples of {cfg.env} ...")
    start_lm = None
    if found["run"]:  # a training run: KL to its start model, and its place against that model's limit
        from text_envs_app.frontier import load_start_model, place_against_frontier

        start_lm = load_start_model(found["run"].get("model"), cfg)
    table, generations = evaluate_policy_on_split(policy, cfg, reference=start_lm, progress=has_progress_bar(),
                                                  per_example_metrics=True)
    if start_lm is not None:
        start: dict[str, float] = {}
        place_against_frontier(start_lm, dataclasses.replace(cfg, kl_coef=found["run"].get("kl_coef")),
                               {"start": start, cfg.eval_split: table}, log=log, progress=has_progress_bar(),
                               models={cfg.eval_split: policy.model} if hasattr(policy, "model") else None)
        table.update({k: v for k, v in start.items() if k.startswith("optimum_")})
        if "model_J" in start:  # absent when the frontier step was skipped (it returned None)
            table["start_J"] = start["model_J"]
    text = format_table({cfg.eval_split: table})
    log(text)
    for g in generations:  # a prompt-only file (TextContinuation-v0's "text" rows) has empty references
        g["references"] = [r for r in g.get("references") or [] if r.strip()]
    for g in generations[:3]:
        ref = f"\nreference: {g['references'][0]}" if g["references"] else ""
        log(f"\nprompt   : {g['prompt'][:200]}\ngenerated: {g['prediction']}{ref}")
    if out_dir is not None:
        (out_dir / "results.md").write_text(
            f"{what} on {n} {cfg.eval_split} examples of {cfg.env} ({how} decoding)\n\n"
            + (f"{data_note}\n\n" if data_note else "") + f"{text}\n")
        (out_dir / "results.json").write_text(json.dumps(
            {"model": what, "examples": n, "table": table,
             "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k in RUN_DATA_KEYS + EVAL_KEYS}},
            indent=1))
        with open(out_dir / "generations.jsonl", "w", encoding="utf-8") as f:
            for g in generations:
                row = {"example_index": g["example_index"], "prompt": g["prompt"], "generation": g["prediction"]}
                if g.get("references"):
                    row["reference"] = g["references"][0] if len(g["references"]) == 1 else g["references"]
                row.update({"reward": g.get("reward"), "gen_len": g.get("gen_len"),
                            "finish_reason": g.get("finish_reason"), **g.get("metrics", {})})
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        log(f"wrote {out_dir}: results.md, results.json, generations.jsonl")
    return table
