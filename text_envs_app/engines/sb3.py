"""The Stable-Baselines3 engine: :class:`SB3Engine` (the :class:`~text_envs_app.engines.base.Engine` of
``text-envs train``) and its pieces, which ``text-envs bench`` and ``eval`` use too: the training VecEnv
(:func:`make_train_env`) with its per-prompt baseline (:func:`attach_baseline`), the algorithm and policy
(:func:`build_model`), the frozen starting model (:func:`starting_model`), the callbacks of a run
(:class:`CurveRecorder`, :class:`TokenProgressBar`) and the supervised comparison (:func:`supervised_same_time`)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from lm_core.heap import reused_heap_memory
from text_envs.errors import TextEnvsError
from text_envs_app.config import TrainConfig
from text_envs_app.engines.base import Learned, Log, Report
from text_envs_app.progress import has_progress_bar
from text_envs_app.run_folder import RunFolder


def make_train_env(cfg: TrainConfig):
    """The training VecEnv. Unless ``baseline="none"``, each env that scores finished texts is wrapped in
    ``SelfCriticalReward`` outside its ``Monitor`` (so logs keep the task reward), all sharing one
    ``BaselinePool`` (one batched decoding serves every env); :func:`attach_baseline` then gives it the starting
    model's greedy decoding. ``vec_env="native"`` (the default) builds the same thing as one natively vectorized
    env (``sb3_ext.vec_env.TextVecEnv``: the same episodes, rewards and infos, stepped as arrays)."""
    if cfg.vec_env == "native":
        from sb3_ext.vec_env import make_text_vec_env
        from text_envs_app.algorithms import env_baseline, group_kwargs

        baseline = {"auto": "auto", "greedy": True, "none": False}[env_baseline(cfg)]  # as _baseline_wrapper decides
        return make_text_vec_env(cfg.env, cfg.n_envs, seed=cfg.seed, env_kwargs=cfg.env_kwargs(), baseline=baseline,
                                 info_keywords=("generated_length",), **group_kwargs(cfg))
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from text_envs.wrappers import BaselinePool
    from text_envs_app.algorithms import env_baseline

    return make_vec_env(
        f"text_envs:{cfg.env}",
        n_envs=cfg.n_envs,
        seed=cfg.seed,
        env_kwargs=cfg.env_kwargs(),
        monitor_kwargs={"info_keywords": ("generated_length",)},
        wrapper_class=_baseline_wrapper,
        wrapper_kwargs={"baseline": env_baseline(cfg), "pool": BaselinePool()},
        vec_env_cls=SubprocVecEnv if cfg.vec_env == "subproc" else DummyVecEnv,
    )


def _baseline_wrapper(env: Any, baseline: str, pool: Any) -> Any:
    from text_envs.wrappers import SelfCriticalReward

    if baseline == "none" or (baseline == "auto" and getattr(env.unwrapped, "reward", None) is None):
        return env  # "auto" on a per-token task (TextCopy-v0) has no text score to compare
    return SelfCriticalReward(env, pool=pool)


def attach_baseline(venv: Any, start_lm: Any) -> None:
    """Give the envs' ``SelfCriticalReward`` the frozen starting model's greedy decoding (no-op without one)."""
    from lm_core.backends import greedy_baseline
    from text_envs.wrappers import SelfCriticalReward

    if not any(venv.env_is_wrapped(SelfCriticalReward)):
        return

    base = venv.get_attr("unwrapped", [0])[0]
    venv.set_attr("baseline_fn", greedy_baseline(start_lm, base.eos_token_id, base.pad_token_id,
                                                 base.max_new_tokens))


def algorithm_class(algo: str) -> type:
    """The SB3 class of ``--algo`` (:func:`text_envs_app.algorithms.algorithm_class`)."""
    from text_envs_app import algorithms

    return algorithms.algorithm_class(algo)


def build_model(cfg: TrainConfig, venv: Any, tensorboard_log: str | None):
    """The SB3 algorithm of ``cfg.algo`` (:func:`text_envs_app.algorithms.algorithm_kwargs` adds its own settings)
    with an :class:`~sb3_ext.LLMPolicy` of ``cfg``'s model on ``venv``, logging to ``tensorboard_log``."""
    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy

    tokenizer = venv.get_attr("tokenizer", [0])[0]
    policy_kwargs: dict[str, Any] = dict(model=cfg.model, tokenizer=tokenizer, kl_coef=cfg.kl_coefficient(),
                                         kl_target=cfg.kl_target, temperature=cfg.temperature, top_k=cfg.top_k,
                                         value_mode=cfg.value_mode, value_lr_scale=cfg.value_lr_scale,
                                         trust_remote_code=cfg.trust_remote_code,
                                         save_reference=False)  # run folders rebuild it from the start model
    lora = cfg.lora_config()
    if lora is not None:
        policy_kwargs["lora"] = lora
    if cfg.algo == "nlpo":
        policy_kwargs.update(top_p=cfg.top_p, mask_source="policy_copy")
    common: dict[str, Any] = dict(
        policy=LLMPolicy, env=venv, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps, gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
        rollout_buffer_class=EpisodeRolloutBuffer, policy_kwargs=policy_kwargs, seed=cfg.seed,
        device=cfg.device, tensorboard_log=tensorboard_log, verbose=0,
    )
    from text_envs_app.algorithms import algorithm_kwargs  # each algorithm's own settings

    return algorithm_class(cfg.algo)(**algorithm_kwargs(cfg, common))


def starting_model(model: Any, cfg: TrainConfig):
    """The frozen starting weights (the policy's KL reference, or the model as given) for the KL column."""
    ref = getattr(model.policy, "reference_model", None)
    if ref is not None and getattr(model.policy, "lora", None) is None:
        return ref
    # a LoRA policy's reference is its own base with the adapters off: the evaluation reads the start model as a
    # model of its own (loaded again), beside the policy it is compared with
    from lm_core.backends import default_model, load_model

    if cfg.model:
        return load_model(cfg.model, trust_remote_code=cfg.trust_remote_code)
    import torch as th

    with th.random.fork_rng():  # a random default model (TextCopy-v0's) is rebuilt as the algorithm seeded it
        th.manual_seed(cfg.seed)
        return default_model(model.policy.V, None)[0]  # what LLMPolicy builds when no model is named


class CurveRecorder:
    """An SB3 callback (built lazily) that records the mean episode reward of every rollout."""

    @staticmethod
    def make():
        from stable_baselines3.common.callbacks import BaseCallback

        class CurveRecorder(BaseCallback):
            def __init__(self):
                super().__init__()
                self.points: list[tuple[int, float]] = []

            def _on_step(self) -> bool:
                return True

            def _on_rollout_end(self) -> None:
                buf = self.model.ep_info_buffer
                if buf:
                    self.points.append((self.num_timesteps, float(np.mean([e["r"] for e in buf]))))

        return CurveRecorder()


class TokenProgressBar:
    """An SB3 callback (built lazily) drawing a tqdm bar of generated tokens whose rate is the run's average
    tokens per second so far (tqdm ``smoothing=0``), not a recent burst: rollouts alternate with updates that
    generate nothing, so an instantaneous rate overstates the run's speed."""

    @staticmethod
    def make():
        from stable_baselines3.common.callbacks import BaseCallback
        from tqdm import tqdm

        class TokenProgressBar(BaseCallback):
            def __init__(self):
                super().__init__()
                self.pbar = None

            def _on_training_start(self) -> None:
                # a resumed run starts at its checkpoint's tokens: the bar reads N/budget, never past it
                total, done = self.locals["total_timesteps"], self.model.num_timesteps
                self.pbar = tqdm(total=total, initial=done, smoothing=0, unit=" tokens", dynamic_ncols=True,
                                 mininterval=0.5,
                                 bar_format="training {percentage:3.0f}%|{bar}| {n:,}/{total:,} tokens "
                                            "[{elapsed}<{remaining}, {rate_noinv_fmt} average]")

            def _on_step(self) -> bool:
                self.pbar.update(self.training_env.num_envs)
                return True

            def _on_training_end(self) -> None:
                if self.pbar is not None:
                    self.pbar.refresh()
                    self.pbar.close()

        return TokenProgressBar()


def supervised_same_time(cfg: TrainConfig, venv: Any, seconds: float, start_lm: Any) -> dict[str, float]:
    """The starting model trained by teacher forcing on the train split's references for ``seconds`` of wall
    time (the same optimizer budget as the RL run), evaluated like the RL model."""
    import gymnasium as gym

    from sb3_ext import warm_start
    from text_envs_app.evaluation import evaluate_policy_on_split

    fresh = build_model(cfg, venv, None)  # the same starting weights, a fresh optimizer
    env = gym.make(cfg.env, split="train", **cfg.env_kwargs()).unwrapped
    # ~30 references a second fit this CPU; encode enough for the budget without tokenizing all 50,000
    n = min(env.num_examples, max(512, int(60 * seconds)))
    warm_start(fresh.policy, env, epochs=10**6, batch_size=16, learning_rate=cfg.supervised_lr, max_examples=n,
               update_reference=False, seed=cfg.seed, max_seconds=seconds)
    table, _ = evaluate_policy_on_split(fresh.policy, cfg, reference=start_lm)
    return table


def round_steps(cfg: TrainConfig, log: Log) -> TrainConfig:
    """``cfg`` with ``steps`` rounded up to whole rollouts (SB3 trains whole rollouts), saying so when that changes
    it."""
    import dataclasses

    rounded = cfg.whole_rollout_steps()
    if rounded == cfg.steps:
        return cfg
    rollout = cfg.n_envs * cfg.n_steps
    log(f"--steps {cfg.steps:,} is not a whole number of rollouts ({cfg.n_envs} envs x {cfg.n_steps} steps = "
        f"{rollout:,} tokens each, and SB3 trains whole rollouts): training {rounded:,} tokens "
        f"({rounded // rollout} rollout{'s' if rounded // rollout > 1 else ''}); config.json records steps={rounded}")
    return dataclasses.replace(cfg, steps=rounded)


class SB3Engine:
    """The :class:`~text_envs_app.engines.base.Engine` that trains in this process with Stable-Baselines3 (or
    ``sb3_ext``'s algorithms) on an :class:`sb3_ext.LLMPolicy`.

    Checkpoints (:mod:`text_envs_app.checkpoint`) are zips of data in ``<out>/checkpoints``: at 0 tokens, every
    ``checkpoint_every`` tokens at a rollout boundary, on Ctrl-C or SIGTERM, and when training ends. A resume is
    exact: the algorithm is rebuilt from ``config.json``, the checkpoint's parameters and state (random states,
    envs, counters) loaded into it. A first Ctrl-C during a rollout stops at once (its tokens dropped); during an
    update it lets the update finish and saves."""

    name = "sb3"
    places_frontier = True

    def __init__(self, folder: RunFolder) -> None:
        from text_envs_app.checkpoint import CheckpointStore

        self.folder = folder
        self.store = CheckpointStore(folder.path / "checkpoints", resume_hint=folder.resume_hint)
        self.cfg: TrainConfig | None = None
        self.venv: Any = None
        self.model: Any = None
        self.ckpt: Any = None  # the checkpoint a resume continues from
        self.start_lm: Any = None
        self.curve: Any = None  # CurveRecorder: the mean episode reward per rollout
        self.greedy: Any = None  # GreedyCurve, with curve_points
        self.supervised: dict[str, float] | None = None  # the --compare-supervised column

    def find_checkpoint(self, log: Log) -> bool:
        """Read the newest checkpoint that is whole (a damaged one is named and renamed ``*.corrupt``)."""
        self.ckpt = self.store.load_latest(log)
        return self.ckpt is not None

    def open(self, cfg: TrainConfig, log: Log) -> TrainConfig:
        """Seed every generator, set torch's threads (``cfg.threads``, else the core count) and build the training
        VecEnv; a fresh run's ``steps`` are rounded up to whole rollouts."""
        import torch as th
        from stable_baselines3.common.utils import set_random_seed

        if not cfg.resume:
            cfg = round_steps(cfg, log)
        self.cfg = cfg
        set_random_seed(cfg.seed)
        th.set_num_threads(cfg.threads or max(1, os.cpu_count() or 1))
        self.venv = make_train_env(cfg)
        return cfg

    def build(self) -> None:
        self.model = build_model(self.cfg, self.venv, str(self.folder.path / "tb"))
        self._attach_start_model()

    def restore(self, log: Log) -> str:
        # built from config.json as the run was, then the checkpoint's parameters: no SB3 zip (pickles)
        self.model = self.ckpt.load_into(build_model(self.cfg, self.venv, str(self.folder.path / "tb")))
        self._attach_start_model()
        return f"resuming from {self.ckpt.path} at {self.ckpt.tokens:,} of {self.cfg.steps:,} tokens"

    def _attach_start_model(self) -> None:
        self.start_lm = starting_model(self.model, self.cfg)
        attach_baseline(self.venv, self.start_lm)

    def policy_for_eval(self) -> Any:
        return self.model.policy

    def start_model(self) -> Any:
        return self.start_lm

    def learn(self, log: Log) -> Learned:
        """SB3's ``learn`` (``supervised``: teacher forcing, outside it) with the learning curves, the checkpoints
        and a progress bar as callbacks; the random states are restored from a checkpoint last, right before it."""
        from text_envs_app.checkpoint import CheckpointCallback, CheckpointError, interrupt_guard, restore_state
        from text_envs_app.curves import GreedyCurve

        cfg, model, ckpt = self.cfg, self.model, self.ckpt
        self.curve = CurveRecorder.make()
        extra = ckpt.state.get("extra", {}) if ckpt is not None else {}
        self.curve.points = [tuple(p) for p in extra.get("curve", [])]
        if cfg.curve_points >= 2:  # greedy reward and KL to the start on fixed validation prompts, against tokens
            self.greedy = GreedyCurve.make(cfg, cfg.steps, cfg.curve_points, cfg.curve_examples,
                                           reference=self.start_lm, sampled=True)
            if ckpt is not None:
                self.greedy.restore(extra.get("curves", {}), model.num_timesteps)
        greedy = self.greedy
        seconds_before = float(extra.get("train_seconds", 0.0))
        t0 = time.time()
        checkpoints = CheckpointCallback(self.store, cfg.checkpoint_every, log, extras=lambda: {
            "curve": list(self.curve.points), "train_seconds": seconds_before + time.time() - t0,
            **({"curves": {k: list(v) for k, v in greedy.curves().items()}} if greedy is not None else {})})
        callbacks = [self.curve] + ([greedy] if greedy is not None else []) + [checkpoints]
        callbacks += [TokenProgressBar.make()] if has_progress_bar() else []
        with interrupt_guard(checkpoints, log) as received:
            try:
                if ckpt is not None:
                    restore_state(model, ckpt.state, log)  # last before learn(): it sets the random states
                    checkpoints.last_saved = ckpt.tokens
                else:
                    checkpoints.save_now(model)  # at 0 tokens: a resume never redoes the first evaluation
                self._train(callbacks, log)
                checkpoints.in_update = True  # from here a first Ctrl-C waits for the checkpoint below
                if model.num_timesteps > checkpoints.last_saved:
                    checkpoints.save_now(model)  # training done: an interrupted evaluation loses no training
                if checkpoints.stop_requested:
                    raise KeyboardInterrupt
            except KeyboardInterrupt:
                return self._stopped(received["signal"] or checkpoints.stop_requested or "SIGINT", checkpoints, log)
            except (EOFError, BrokenPipeError, ConnectionResetError) as e:  # a SubprocVecEnv worker died
                raise TextEnvsError(
                    f"an env worker process died ({type(e).__name__}: {str(e) or 'its pipe closed'}) after "
                    f"{model.num_timesteps:,} tokens (killed, out of memory, or a crash in the env: a crash prints "
                    f"the worker's traceback above); {self.store.describe_latest()}; continue with: "
                    f"{self.folder.resume_hint}"
                ) from e
            except CheckpointError:
                raise  # a full disk: the message names the checkpoint kept and how to continue
            except TextEnvsError as e:  # e.g. a reward that raised or returned NaN: the message names the example
                raise TextEnvsError(f"{e}\ntraining stopped after {model.num_timesteps:,} tokens; "
                                    f"{self.store.describe_latest()}; after fixing it, continue with: "
                                    f"{self.folder.resume_hint}") from e
        return Learned(model.num_timesteps, seconds_before + time.time() - t0)

    def _train(self, callbacks: list[Any], log: Log) -> None:
        cfg, model = self.cfg, self.model
        remaining = cfg.steps - model.num_timesteps
        if remaining > 0 and cfg.algo == "supervised":  # teacher forcing outside SB3's learn, the same budget
            from text_envs_app.algorithms import train_supervised

            done = train_supervised(model.policy, cfg, log)
            log(f"supervised: {done['tokens']:,} reference tokens, final loss {done['loss']:.3f} nats/token")
            model.num_timesteps = cfg.steps  # the budget is spent (an interrupt above keeps the 0-token one)
        elif remaining > 0:
            with reused_heap_memory():  # the update's (N, V) tensors on mapped pages (lm_core/heap.py)
                model.learn(remaining, callback=callbacks, reset_num_timesteps=self.ckpt is None,
                            tb_log_name=cfg.algo)

    def _stopped(self, signal: str, checkpoints: Any, log: Log) -> Learned:
        """Save what a Ctrl-C/SIGTERM during training leaves, and say what was kept."""
        saved_path = checkpoints.save_interrupted()
        what = f"checkpoint saved to {saved_path}" if saved_path is not None else self.store.describe_latest()
        dropped = self.model.num_timesteps - checkpoints.last_saved
        if dropped > 0:  # an unfinished rollout (never trained on), or an update stopped half-way
            what += f"; the {dropped:,} tokens generated since are dropped"
        log(f"\n{signal}: stopped at {checkpoints.last_saved:,} of {self.cfg.steps:,} tokens: {what}; continue "
            f"with: {self.folder.resume_hint}")
        stopped = {"interrupted": True, "signal": signal, "out": str(self.folder.path),
                   "tokens": checkpoints.last_saved}
        return Learned(checkpoints.last_saved, 0.0, stopped)

    def extra_columns(self, train_seconds: float, log: Log) -> dict[str, dict[str, float]]:
        """``--compare-supervised``: the start model taught by teacher forcing for the RL run's training time."""
        if not self.cfg.compare_supervised:
            return {}
        log(f"supervised comparison: teacher forcing on {self.cfg.env} train references for the same "
            f"{train_seconds:.0f} s ...")
        self.supervised = supervised_same_time(self.cfg, self.venv, train_seconds, self.start_lm)
        return {"supervised, same time": self.supervised}

    def save(self, out: Path) -> None:
        """``model.zip`` (no optimizer moments or rebuildable reference) and ``hf/``."""
        from text_envs_app.checkpoint import save_model_file

        save_model_file(self.model, out / "model.zip")
        self.model.policy.save_pretrained(out / "hf")

    def report(self) -> Report:
        cfg, greedy = self.cfg, self.greedy
        results: dict[str, Any] = {}
        if greedy is not None:  # the curve's points, as plotted
            results["curve"] = {"tokens": [t for t, _ in greedy.points],
                                **{k: [v for _, v in pts] for k, pts in greedy.curves().items()}}
        if self.supervised is not None:
            results["supervised"] = self.supervised
        return Report(column=cfg.algo, title=f"{cfg.algo.upper()} on {cfg.env}",
                      curves=greedy.curves() if greedy is not None else {},
                      episodes=list(self.curve.points) if self.curve is not None else [], results=results,
                      deliverables=("model.zip", "hf/"))

    def close(self) -> None:
        """Close the training envs, unless a step is still in flight (a ``SubprocVecEnv`` whose worker died
        mid-step: closing would wait for the live workers' answers, already read); its worker processes are
        daemons, ended with this process."""
        if self.venv is not None and not getattr(self.venv, "waiting", False):
            with contextlib.suppress(Exception):  # a dead worker's pipe is broken
                self.venv.close()
        self.venv = None
