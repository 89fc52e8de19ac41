"""``text-envs train``: one skeleton for every engine. Prepare the output folder, evaluate the starting model, learn
(the engine: checkpoints, learning curves, a progress bar), evaluate the trained model, write the results.

The engines fill in the steps behind one protocol (:class:`text_envs_app.engines.base.Engine`):
:class:`~text_envs_app.engines.sb3.SB3Engine` (Stable-Baselines3 in this process, the default) and
:class:`~text_envs_app.engines.rllib.RLlibEngine` (Ray RLlib, ``engine="rllib"``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from text_envs_app.config import TrainConfig
from text_envs_app.curves import plot_learning_curve
from text_envs_app.engines.base import Engine, Learned, Log
from text_envs_app.engines.sb3 import supervised_same_time
from text_envs_app.evaluation import (
    N_SAMPLES,
    check_eval_split,
    describe_data,
    eval_count,
    evaluate_policy_on_split,
    evaluate_start_on_second_split,
    format_table,
    start_model_ppl,
    write_samples,
)
from text_envs_app.generalisation import evaluate_generalisation
from text_envs_app.progress import has_progress_bar
from text_envs_app.run_folder import RunFolder, run_engine

__all__ = ["train", "train_unlocked", "make_engine", "supervised_same_time"]


def train(cfg: TrainConfig, log: Log = print) -> dict[str, Any]:
    """Run one training job end to end, holding the lock of ``cfg.out`` (:mod:`text_envs_app.run_lock`: a second
    train, ``--resume`` or bench on that folder is refused while this one writes it); see :func:`train_unlocked`."""
    from text_envs_app.run_lock import run_lock

    verb = "--resume" if cfg.resume else ""
    with run_lock(cfg.out, f"text-envs train --out {cfg.out} {verb}".strip(), log):
        return train_unlocked(cfg, log)


def make_engine(name: str, folder: RunFolder) -> Engine:
    """The engine called ``name`` (``TrainConfig.engine``) for the run in ``folder``; ``"rllib"`` first checks that
    Ray RLlib and the adapter import here, before any folder is made."""
    if name == "rllib":
        from text_envs_app.engines.rllib import RLlibEngine, require_rllib

        require_rllib()
        return RLlibEngine(folder)
    from text_envs_app.engines.sb3 import SB3Engine

    return SB3Engine(folder)


def train_unlocked(cfg: TrainConfig, log: Log = print) -> dict[str, Any]:
    """Run one training job end to end on its engine; returns the before/after tables and the output paths, or
    ``{"interrupted": True, "signal": ..., "out": ...}`` after Ctrl-C or SIGTERM.

    Checkpoints go to ``out/checkpoints`` (the engine's format: :mod:`text_envs_app.checkpoint` for SB3, RLlib's own
    folders for RLlib) and are removed once the results and the deliverable model (``hf/``, and SB3's
    ``model.zip``) are written. ``resume=True`` continues from the newest checkpoint that reads whole, on the
    engine of the run in ``out`` (its ``config.json``); the SB3 engine's resume is exact.
    """
    from text_envs_app.checkpoint import interrupt_guard

    cfg.validate()
    check_eval_split(cfg)
    folder = RunFolder(cfg.out)
    engine = make_engine(run_engine(cfg), folder)  # --resume continues on the run's own engine
    out = folder.prepare(cfg)  # before any note: a refused output folder is the first (and only) thing said
    resuming = False
    if cfg.resume:
        saved = folder.saved_config()
        # trusting a model's code is this command's decision, never the saved folder's
        cfg = TrainConfig(**{**saved, "resume": True, "out": cfg.out, "trust_remote_code": cfg.trust_remote_code})
        resuming = folder.state_path.is_file() and engine.find_checkpoint(log)
        if not resuming:  # stopped (kill -9, a crash) before its first checkpoint: nothing to keep
            folder.start_over(log)
            cfg = dataclasses.replace(cfg, resume=False)
    try:
        with interrupt_guard(None, log) as received:  # SIGTERM acts as Ctrl-C from here on
            try:
                cfg = engine.open(cfg, log)
                if resuming:
                    resumed_from = engine.restore(log)
                    state = json.loads(folder.state_path.read_text())
                    log(resumed_from)
                else:
                    state = _start(engine, cfg, folder, log)
            except KeyboardInterrupt:
                stopped_by = received["signal"] or "SIGINT"
                log(folder.stopped_while_resuming(stopped_by) if resuming else folder.abandon(stopped_by))
                return {"interrupted": True, "signal": stopped_by, "out": str(out)}
        learned = engine.learn(log)
        if learned.stopped is not None:
            return learned.stopped
        return _finish(engine, cfg, folder, state, learned, log)
    finally:
        engine.close()


def _start(engine: Engine, cfg: TrainConfig, folder: RunFolder, log: Log) -> dict[str, Any]:
    """A fresh run up to training: ``config.json``, the data described, the model built, the starting model
    evaluated; returns ``state.json``'s values (written last: a run without it has nothing to resume)."""
    from text_envs_app.algorithms import recorded_config

    out = folder.path
    (out / "config.json").write_text(json.dumps(recorded_config(cfg), indent=1))  # the values it runs with
    describe_data(cfg, log, out)
    engine.build()
    log(f"evaluating the starting model on {eval_count(cfg):,} {cfg.eval_split} examples ...")
    before, start_generations = evaluate_policy_on_split(engine.policy_for_eval(), cfg, progress=has_progress_bar())
    before["kl"] = before["greedy_kl" if cfg.decoding() == "sampled" else "sampled_kl"] = 0.0  # to itself
    before["start_ppl"] = start_model_ppl(engine.start_model(), cfg, start_generations)
    state = {"config": dataclasses.asdict(cfg), "before": before,
             "start_samples": [{"example_index": g["example_index"], "prediction": g["prediction"]}
                               for g in start_generations[:N_SAMPLES]]}
    before_second = evaluate_start_on_second_split(cfg, engine.policy_for_eval(), engine.start_model(), log,
                                                   progress=has_progress_bar())
    if before_second is not None:  # --ood-split: the start model on prompts worded unlike the training ones
        state["before_second_split"] = before_second
    folder.state_path.write_text(json.dumps(state, indent=1))
    return state


def _finish(engine: Engine, cfg: TrainConfig, folder: RunFolder, state: dict[str, Any], learned: Learned,
            log: Log) -> dict[str, Any]:
    """After training: evaluate the trained model against the start, write the model and the results (results.json
    last: it marks the run finished), then drop the checkpoints."""
    from text_envs_app.checkpoint import interrupt_guard
    from text_envs_app.frontier import place_against_frontier

    out = folder.path
    with interrupt_guard(None, log) as received:
        try:
            log("evaluating the trained model ...")
            start_lm = engine.start_model()
            policy = engine.policy_for_eval()
            after, generations = evaluate_policy_on_split(policy, cfg, reference=start_lm, progress=has_progress_bar())
            extra_columns = engine.extra_columns(learned.train_seconds, log)
            report = engine.report()
            columns = {"start": state["before"], report.column: after, **extra_columns}
            frontier = None
            if engine.places_frontier:  # the optimum at the run's kl_coef, best-of-n at its KL, the share of the gain
                frontier = place_against_frontier(start_lm, cfg, columns, log=log, progress=has_progress_bar(),
                                                  models={report.column: policy.model})
            table = format_table(columns)
            log(table)
            result = {"before": state["before"], "after": after, "train_seconds": learned.train_seconds,
                      "tokens": learned.tokens, **report.results, "config": dataclasses.asdict(cfg)}
            if frontier is not None:
                result["frontier"] = frontier
            second = evaluate_generalisation(cfg, state.get("before_second_split"), {report.column: policy}, start_lm,
                                             log, progress=has_progress_bar(), frontier=engine.places_frontier)
            if second is not None:  # the same figures on prompts worded unlike the training ones (--ood-split)
                log(second["table"])
                table += "\n\n" + second["table"]
                result["generalisation"] = {k: second[k] for k in ("split", "columns", "frontier")}
            try:
                engine.save(out)
                plot_learning_curve(out / "learning_curve.png", report.title, report.curves, report.episodes,
                                    reward_name=cfg.reward or "reward", optimum=frontier)
                write_samples(out / "samples.md", generations[:N_SAMPLES], state.get("start_samples", []), cfg.algo)
                (out / "results.md").write_text(table + "\n")
                (out / "results.json").write_text(json.dumps(result, indent=1))  # last: it marks the run finished
            except OSError as e:  # a full disk or a read-only folder
                raise folder.write_failed(e, f"the results in {out}", engine.store.files()[0][1]) from e
        except KeyboardInterrupt:
            log(folder.stopped_in_final_evaluation(received["signal"] or "SIGINT", engine.store.files()[0][1]))
            return {"interrupted": True, "signal": received["signal"] or "SIGINT", "out": str(out),
                    "tokens": learned.tokens}
        engine.store.remove_all()  # the run is finished: its resume state is no longer needed
    (out / "checkpoint.zip").unlink(missing_ok=True)  # written by versions before checkpoints/
    log(f"wrote {out}: {', '.join(report.deliverables)}, results.md, results.json, samples.md, learning_curve.png, "
        "tb/")
    return result
