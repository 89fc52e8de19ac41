"""``text-envs train`` on the Stable-Baselines3 engine, end to end: prepare the output folder, evaluate the starting
model, learn (with checkpoints, the learning curve and a progress bar), evaluate the trained model, write the results.
``engine="rllib"`` runs the same skeleton on Ray RLlib (:func:`text_envs_app.rllib_train.train_rllib`)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

from text_envs.errors import TextEnvsError
from text_envs_app.config import TrainConfig
from text_envs_app.curves import GreedyCurve, plot_learning_curve
from text_envs_app.engines.sb3 import (
    CurveRecorder,
    TokenProgressBar,
    attach_baseline,
    build_model,
    make_train_env,
    starting_model,
)
from text_envs_app.evaluation import (
    N_SAMPLES,
    check_eval_split,
    describe_data,
    eval_count,
    evaluate_policy_on_split,
    format_table,
    start_model_ppl,
    write_samples,
)
from text_envs_app.progress import has_progress_bar
from text_envs_app.run_folder import RunFolder, run_engine


def train(cfg: TrainConfig, log=print) -> dict[str, Any]:
    """Run one training job end to end, holding the lock of ``cfg.out`` (:mod:`text_envs_app.run_lock`: a second
    train, ``--resume`` or bench on that folder is refused while this one writes it); see :func:`train_unlocked`."""
    from text_envs_app.run_lock import run_lock

    verb = "--resume" if cfg.resume else ""
    with run_lock(cfg.out, f"text-envs train --out {cfg.out} {verb}".strip(), log):
        return train_unlocked(cfg, log)


def train_unlocked(cfg: TrainConfig, log=print) -> dict[str, Any]:
    """Run one training job end to end; returns the before/after tables and the output paths.

    Checkpoints (:mod:`text_envs_app.checkpoint`) go to ``out/checkpoints``: before training, every
    ``checkpoint_every`` tokens at a rollout boundary, on Ctrl-C or SIGTERM, and when training ends; they are
    removed once the results and the deliverable model (``model.zip``, ``hf/``) are written. ``resume=True``
    continues from the newest checkpoint that reads whole, exactly (see the README's "Reliability").
    ``engine="rllib"`` runs the job on Ray RLlib instead (:func:`text_envs_app.rllib_train.train_rllib`).
    """
    if run_engine(cfg) == "rllib":  # --resume continues on the run's own engine
        from text_envs_app.rllib_train import train_rllib

        return train_rllib(cfg, log)
    import torch as th
    from stable_baselines3.common.utils import set_random_seed

    from text_envs_app.checkpoint import (
        CheckpointCallback,
        CheckpointError,
        CheckpointStore,
        interrupt_guard,
        restore_state,
        save_model_file,
    )

    cfg.validate()
    check_eval_split(cfg)
    folder = RunFolder(cfg.out)
    out = folder.prepare(cfg)  # before any note: a refused output folder is the first (and only) thing said
    if not cfg.resume:
        cfg = _round_steps(cfg, log)
    hint = folder.resume_hint
    store = CheckpointStore(out / "checkpoints", resume_hint=hint)
    state_path = folder.state_path
    ckpt = None
    if cfg.resume:
        saved = folder.saved_config()
        # trusting a model's code is this command's decision, never the saved folder's
        cfg = TrainConfig(**{**saved, "resume": True, "out": cfg.out, "trust_remote_code": cfg.trust_remote_code})
        ckpt = store.load_latest(log) if state_path.is_file() else None
        if ckpt is None:  # stopped (kill -9, a crash) before its first checkpoint: nothing to keep
            folder.start_over(log)
            cfg = dataclasses.replace(cfg, resume=False)

    with interrupt_guard(None, log) as received:  # SIGTERM acts as Ctrl-C from here on
        try:
            set_random_seed(cfg.seed)
            th.set_num_threads(cfg.threads or max(1, os.cpu_count() or 1))
            venv = make_train_env(cfg)
            if ckpt is not None:
                # built from config.json as the run was, then the checkpoint's parameters: no SB3 zip (pickles)
                model = ckpt.load_into(build_model(cfg, venv, str(out / "tb")))
                state = json.loads(state_path.read_text())
                before = state["before"]
                log(f"resuming from {ckpt.path} at {ckpt.tokens:,} of {cfg.steps:,} tokens")
            else:
                from text_envs_app.algorithms import recorded_config

                (out / "config.json").write_text(json.dumps(recorded_config(cfg), indent=1))  # the values it runs
                describe_data(cfg, log, out)
                model = build_model(cfg, venv, str(out / "tb"))
                log(f"evaluating the starting model on {eval_count(cfg):,} {cfg.eval_split} examples ...")
                before, start_generations = evaluate_policy_on_split(model.policy, cfg, progress=has_progress_bar())
                before["kl"] = before["greedy_kl" if cfg.decoding() == "sampled" else "sampled_kl"] = 0.0
                before["start_ppl"] = start_model_ppl(starting_model(model, cfg), cfg, start_generations)
                state = {"config": dataclasses.asdict(cfg), "before": before,
                         "start_samples": [{"example_index": g["example_index"], "prediction": g["prediction"]}
                                           for g in start_generations[:N_SAMPLES]]}
                state_path.write_text(json.dumps(state, indent=1))
        except KeyboardInterrupt:
            stopped_by = received["signal"] or "SIGINT"
            log(folder.stopped_while_resuming(stopped_by) if ckpt is not None else folder.abandon(stopped_by))
            return {"interrupted": True, "signal": received["signal"] or "SIGINT", "out": str(out)}
        start_lm = starting_model(model, cfg)
        attach_baseline(venv, start_lm)

    curve = CurveRecorder.make()
    extra = ckpt.state.get("extra", {}) if ckpt is not None else {}
    curve.points = [tuple(p) for p in extra.get("curve", [])]
    greedy = None
    if cfg.curve_points >= 2:  # greedy reward and KL to the start on fixed validation prompts, against tokens
        greedy = GreedyCurve.make(cfg, cfg.steps, cfg.curve_points, cfg.curve_examples, reference=start_lm,
                                  sampled=True)
        if ckpt is not None:
            greedy.restore(extra.get("curves", {}), model.num_timesteps)
    seconds_before = float(extra.get("train_seconds", 0.0))
    t0 = time.time()
    checkpoints = CheckpointCallback(store, cfg.checkpoint_every, log, extras=lambda: {
        "curve": list(curve.points), "train_seconds": seconds_before + time.time() - t0,
        **({"curves": {k: list(v) for k, v in greedy.curves().items()}} if greedy is not None else {})})
    callbacks = [curve] + ([greedy] if greedy is not None else []) + [checkpoints]
    callbacks += [TokenProgressBar.make()] if has_progress_bar() else []
    interrupted = None
    with interrupt_guard(checkpoints, log) as received:
        try:
            if ckpt is not None:
                restore_state(model, ckpt.state, log)  # last before learn(): it sets the random states
                checkpoints.last_saved = ckpt.tokens
            else:
                checkpoints.save_now(model)  # at 0 tokens: a resume never redoes the first evaluation
            remaining = cfg.steps - model.num_timesteps
            if remaining > 0 and cfg.algo == "supervised":  # teacher forcing outside SB3's learn, the same budget
                from text_envs_app.algorithms import train_supervised

                done = train_supervised(model.policy, cfg, log)
                log(f"supervised: {done['tokens']:,} reference tokens, final loss {done['loss']:.3f} nats/token")
                model.num_timesteps = cfg.steps  # the budget is spent (an interrupt above keeps the 0-token one)
            elif remaining > 0:
                model.learn(remaining, callback=callbacks, reset_num_timesteps=ckpt is None, tb_log_name=cfg.algo)
            checkpoints.in_update = True  # from here a first Ctrl-C waits for the checkpoint below
            if model.num_timesteps > checkpoints.last_saved:
                checkpoints.save_now(model)  # training done: an interrupted evaluation loses no training
            if checkpoints.stop_requested:
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            interrupted = received["signal"] or checkpoints.stop_requested or "SIGINT"
        except (EOFError, BrokenPipeError, ConnectionResetError) as e:  # a SubprocVecEnv worker died
            raise TextEnvsError(
                f"an env worker process died ({type(e).__name__}: {str(e) or 'its pipe closed'}) after "
                f"{model.num_timesteps:,} tokens (killed, out of memory, or a crash in the env: a crash prints the "
                f"worker's traceback above); {store.describe_latest()}; continue with: {hint}"
            ) from e
        except CheckpointError:
            raise  # a full disk: the message names the checkpoint kept and how to continue
        except TextEnvsError as e:  # e.g. a reward that raised or returned NaN: the message names the example
            raise TextEnvsError(f"{e}\ntraining stopped after {model.num_timesteps:,} tokens; "
                                f"{store.describe_latest()}; after fixing it, continue with: {hint}") from e
        if interrupted:
            saved_path = checkpoints.save_interrupted()
            what = f"checkpoint saved to {saved_path}" if saved_path is not None else store.describe_latest()
            dropped = model.num_timesteps - checkpoints.last_saved
            if dropped > 0:  # an unfinished rollout (never trained on), or an update stopped half-way
                what += f"; the {dropped:,} tokens generated since are dropped"
            log(f"\n{interrupted}: stopped at {checkpoints.last_saved:,} of {cfg.steps:,} tokens: {what}; continue "
                f"with: {hint}")
            return {"interrupted": True, "signal": interrupted, "out": str(out), "tokens": checkpoints.last_saved}
    train_seconds = seconds_before + time.time() - t0

    with interrupt_guard(None, log) as received:
        try:
            log("evaluating the trained model ...")
            after, generations = evaluate_policy_on_split(model.policy, cfg, reference=start_lm,
                                                          progress=has_progress_bar())
            columns = {"start": before, cfg.algo: after}
            supervised = None
            if cfg.compare_supervised:
                log(f"supervised comparison: teacher forcing on {cfg.env} train references for the same "
                    f"{train_seconds:.0f} s ...")
                columns["supervised, same time"] = supervised = supervised_same_time(cfg, venv, train_seconds,
                                                                                     start_lm)
            from text_envs_app.frontier import place_against_frontier

            frontier = place_against_frontier(start_lm, cfg, columns, log=log, progress=has_progress_bar(),
                                              models={cfg.algo: model.policy.model})
            table = format_table(columns)
            log(table)
            result = {"before": before, "after": after, "train_seconds": train_seconds, "tokens": model.num_timesteps,
                      "config": dataclasses.asdict(cfg)}
            if frontier is not None:  # the optimum at the run's kl_coef, best-of-n at its KL, the share of the gain
                result["frontier"] = frontier
            if supervised is not None:
                result["supervised"] = supervised
            try:
                save_model_file(model, out / "model.zip")  # the deliverable: no optimizer moments or rebuildable reference
                model.policy.save_pretrained(out / "hf")
                plot_learning_curve(out / "learning_curve.png", f"{cfg.algo.upper()} on {cfg.env}",
                                    greedy.curves() if greedy else {}, curve.points,
                                    reward_name=cfg.reward or "reward", optimum=frontier)
                if greedy is not None:  # the curve's points, as plotted
                    result["curve"] = {"tokens": [t for t, _ in greedy.points],
                                       **{k: [v for _, v in pts] for k, pts in greedy.curves().items()}}
                write_samples(out / "samples.md", generations[:N_SAMPLES], state.get("start_samples", []), cfg.algo)
                (out / "results.md").write_text(table + "\n")
                (out / "results.json").write_text(json.dumps(result, indent=1))  # last: it marks the run finished
            except OSError as e:  # a full disk or a read-only folder
                raise folder.write_failed(e, f"the results in {out}", store.files()[0][1]) from e
        except KeyboardInterrupt:
            log(folder.stopped_in_final_evaluation(received["signal"] or "SIGINT", store.files()[0][1]))
            return {"interrupted": True, "signal": received["signal"] or "SIGINT", "out": str(out),
                    "tokens": model.num_timesteps}
        store.remove_all()  # the run is finished: its resume state is no longer needed
    (out / "checkpoint.zip").unlink(missing_ok=True)  # written by versions before checkpoints/
    log(f"wrote {out}: model.zip, hf/, results.md, samples.md, learning_curve.png, tb/")
    return result


def _round_steps(cfg: TrainConfig, log) -> TrainConfig:
    """``cfg`` with ``steps`` rounded up to whole rollouts, saying so when that changes it."""
    rounded = cfg.whole_rollout_steps()
    if rounded == cfg.steps:
        return cfg
    rollout = cfg.n_envs * cfg.n_steps
    log(f"--steps {cfg.steps:,} is not a whole number of rollouts ({cfg.n_envs} envs x {cfg.n_steps} steps = "
        f"{rollout:,} tokens each, and SB3 trains whole rollouts): training {rounded:,} tokens "
        f"({rounded // rollout} rollout{'s' if rounded // rollout > 1 else ''}); config.json records steps={rounded}")
    return dataclasses.replace(cfg, steps=rounded)


def supervised_same_time(cfg: TrainConfig, venv: Any, seconds: float, start_lm: Any) -> dict[str, float]:
    """The starting model trained by teacher forcing on the train split's references for ``seconds`` of wall
    time (the same optimizer budget as the RL run), evaluated like the RL model."""
    import gymnasium as gym

    from sb3_ext import warm_start

    fresh = build_model(cfg, venv, None)  # the same starting weights, a fresh optimizer
    env = gym.make(cfg.env, split="train", **cfg.env_kwargs()).unwrapped
    # ~30 references a second fit this CPU; encode enough for the budget without tokenizing all 50,000
    n = min(env.num_examples, max(512, int(60 * seconds)))
    warm_start(fresh.policy, env, epochs=10**6, batch_size=16, learning_rate=cfg.supervised_lr, max_examples=n,
               update_reference=False, seed=cfg.seed, max_seconds=seconds)
    table, _ = evaluate_policy_on_split(fresh.policy, cfg, reference=start_lm)
    return table
