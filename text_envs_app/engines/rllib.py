"""The Ray RLlib engine of ``text-envs train --engine rllib`` (PPO, IMPALA or APPO): :class:`RLlibEngine`.

The same env by id, the same model, reward, KL penalty and per-prompt baseline as the SB3 run (they are built by
:func:`rllib_ext.algorithm_config`), and the same output folder, written by the one skeleton
(:func:`text_envs_app.train.train_unlocked`):

* ``config.json``: the run's :class:`~text_envs_app.config.TrainConfig` (``engine: "rllib"``).
* ``hf/``: the trained LM in Hugging Face format (:func:`rllib_ext.save_pretrained`).
* ``results.md`` and ``results.json``: the start-vs-trained table: greedy decoding of both models on the test
  split, scored by the same :func:`~text_envs_app.evaluation.evaluate_policy_on_split` as SB3 runs (metrics,
  reward, KL to the start model, the start model's perplexity).
* ``samples.md``: prompts with the start model's and the trained model's texts.
* ``learning_curve.png``: as the SB3 runs': the reward of greedy and sampled texts on fixed validation prompts and
  the KL to the start model at ``curve_points`` token counts, and the mean episode return (RLlib's window of the
  last 100 episodes; left out of the plot when a per-prompt baseline is subtracted, as RLlib's return is then the
  reward minus the baseline's).
* ``tb/``: TensorBoard scalars per training iteration (returns, losses, timers, tokens/s).
* ``checkpoints/``: while the run is unfinished: RLlib's own checkpoints (``Algorithm.save_to_path``),
  ``tokens-<N>/`` (the last two kept), and ``start/`` (the start weights, for the KL column, when the start model
  has no path of its own).

A checkpoint is written to ``tokens-<N>.tmp/`` and renamed (a ``kill -9`` leaves the previous one whole), at 0
tokens, every ``checkpoint_every`` tokens at an iteration boundary, on Ctrl-C/SIGTERM (after the iteration in
progress) and at the end. ``--resume`` restores the newest one with ``Algorithm.from_checkpoint``: weights,
optimizer, RLlib's counters (env steps sampled, training iteration), plus the learning curve and training time
stored beside it. Unlike the SB3 engine it is not bit-exact: the envs' episodes in progress and the samplers'
random streams are not part of an RLlib checkpoint, so a resumed run starts new episodes.

Ray: with ``RAY_ADDRESS`` set (``ray start`` on a cluster, see docs/guides/rllib.md), the run joins that cluster
and places its env runners and learners there; otherwise ``ray.init()`` finds a cluster started on this machine
with ``ray start``, or starts a local one. Evaluation, curves, TensorBoard and checkpoints stay in the driver.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from text_envs.errors import TextEnvsError
from text_envs_app.config import TrainConfig
from text_envs_app.engines.base import Learned, Log, Report
from text_envs_app.progress import has_progress_bar
from text_envs_app.run_folder import RunFolder

__all__ = ["RLlibEngine", "require_rllib", "RllibCheckpoints", "rllib_config", "Curves", "load_learner_weights",
           "STATE_FILE", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'text-envs[rllib]'"
_NAME = re.compile(r"^tokens-(\d+)$")
STATE_FILE = "text_envs_state.json"  # our counters beside RLlib's files in each checkpoint folder


def require_rllib() -> None:
    """Refuse ``--engine rllib`` clearly where Ray RLlib (or the adapter) cannot be imported."""
    try:
        import ray  # noqa: F401
        import ray.rllib  # noqa: F401
    except ImportError as e:
        raise TextEnvsError(f"--engine rllib needs Ray RLlib, which is not installed here ({e}): {INSTALL_HINT}") from e
    try:
        import rllib_ext  # noqa: F401
    except ImportError as e:
        raise TextEnvsError(f"--engine rllib: the RLlib adapter rllib_ext could not be imported ({e}); reinstall "
                            f"the package with its extra: {INSTALL_HINT}") from e


def rllib_config(cfg: Any) -> Any:
    """The RLlib ``AlgorithmConfig`` of a :class:`~text_envs_app.config.TrainConfig`: the env, model, KL
    penalty, baseline and sampling settings through :func:`rllib_ext.algorithm_config`, then the optimisation
    settings the SB3 run takes from the same fields.

    ``n_envs`` is the number of envs of the whole run, spread over the env runners (``ceil(n_envs / runners)``
    each); one training iteration is ``n_envs * n_steps`` generated tokens, the SB3 run's rollout.
    """
    import rllib_ext

    runners = max(1, cfg.num_env_runners)
    config = rllib_ext.algorithm_config(
        cfg.env, cfg.algo, model=cfg.model, env_kwargs=cfg.env_kwargs(), num_env_runners=cfg.num_env_runners,
        num_envs_per_env_runner=-(-cfg.n_envs // runners), num_learners=cfg.num_learners, device=cfg.device,
        kl_coef=cfg.kl_coefficient(), learning_rate=cfg.learning_rate, train_batch_size=cfg.n_envs * cfg.n_steps,
        seed=cfg.seed, temperature=cfg.temperature, top_k=cfg.top_k, baseline=cfg.baseline,
        value_mode=cfg.value_mode)
    training: dict[str, Any] = dict(gamma=cfg.gamma, entropy_coeff=cfg.ent_coef, vf_loss_coeff=cfg.vf_coef,
                                    grad_clip=cfg.max_grad_norm)
    if cfg.algo == "ppo":  # a minibatch is at most one learner's share of the batch
        per_learner = cfg.n_envs * cfg.n_steps // max(1, cfg.num_learners)
        training.update(lambda_=cfg.gae_lambda, clip_param=cfg.clip_range, num_epochs=cfg.n_epochs,
                        minibatch_size=min(cfg.rollout_batch_size(), per_learner))
    elif cfg.algo == "appo":
        training.update(lambda_=cfg.gae_lambda, clip_param=cfg.clip_range)
    return config.training(**training)


# ---------------------------------------------------------------------------------------------- checkpoints
class RllibCheckpoints:
    """RLlib checkpoints of a run in ``folder``: ``tokens-<N>/`` written by ``Algorithm.save_to_path`` into
    ``tokens-<N>.tmp/`` and renamed when whole (with :data:`STATE_FILE`: the token count, the learning curve,
    the training seconds); the newest ``keep`` are kept."""

    def __init__(self, folder: Path, resume_hint: str, keep: int = 2) -> None:
        self.folder, self.resume_hint, self.keep = Path(folder), resume_hint, keep

    def files(self) -> list[tuple[int, Path]]:
        """The complete checkpoints, newest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
        return sorted(found, reverse=True)

    def save(self, algo: Any, tokens: int, extras: dict[str, Any]) -> Path:
        """Save ``algo`` at ``tokens`` (atomically: a rename of a finished folder), then drop the oldest."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"tokens-{tokens}"
        tmp = self.folder / f"tokens-{tokens}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            algo.save_to_path(str(tmp.resolve()))
            (tmp / STATE_FILE).write_text(json.dumps({"tokens": tokens, **extras}))
            shutil.rmtree(final, ignore_errors=True)  # the same count saved again (an interrupt right after a save)
            os.replace(tmp, final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            full = "the disk is full" if e.errno == errno.ENOSPC else str(e)
            raise TextEnvsError(f"could not write checkpoint {final} at {tokens:,} tokens ({full}); "
                                f"{self.describe_latest()}. Free space, then continue with: {self.resume_hint}") from e
        for _, old in self.files()[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def describe_latest(self) -> str:
        files = self.files()
        if not files:
            return "no checkpoint was saved"
        return f"the last checkpoint, {files[0][1]} ({files[0][0]:,} tokens), is intact"

    def load_latest(self, log: Callable[[str], Any]) -> tuple[Any, dict[str, Any]] | None:
        """``(algorithm, state)`` from the newest checkpoint that restores; a broken one is named, renamed
        ``*.corrupt`` and the previous one tried. None when there is none."""
        from ray.rllib.algorithms.algorithm import Algorithm

        for tokens, path in self.files():
            try:
                state = json.loads((path / STATE_FILE).read_text())
                algo = Algorithm.from_checkpoint(str(path.resolve()))
            except Exception as e:  # a truncated or foreign folder: RLlib raises many kinds
                bad = path.with_name(path.name + ".corrupt")
                shutil.rmtree(bad, ignore_errors=True)
                os.replace(path, bad)
                reason = str(e).splitlines()[0][:200] if str(e) else ""
                log(f"error: checkpoint {path} does not restore ({type(e).__name__}: {reason}); moved it to "
                    f"{bad.name} and falling back to the previous checkpoint")
                continue
            return algo, state
        return None

    def remove_all(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def _iteration_guard(log: Callable[[str], Any]) -> Iterator[dict[str, Any]]:
    """SIGINT/SIGTERM during training: the first one lets the training iteration in progress (sampling + update)
    finish, so the checkpoint then saved holds a whole update; a second one stops at once (``KeyboardInterrupt``,
    keeping the last checkpoint). Yields ``{"signal": name or None}``."""
    info: dict[str, Any] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield info
        return

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if info["signal"] is not None:
            raise KeyboardInterrupt
        info["signal"] = name
        log(f"\n{name}: finishing this training iteration, then saving a checkpoint (again to stop at once, keeping "
            "the last checkpoint)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield info
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Curves:
    """The learning curves of a run, kept in each checkpoint, as the SB3 runs record them
    (:class:`text_envs_app.curves.GreedyCurve`): at ``cfg.curve_points`` evenly spaced token counts, the mean reward
    of the greedy texts (``greedy``) and of one sampled text per prompt (``sampled``) on the first
    ``cfg.curve_examples`` validation prompts, and the KL to the start model along each (``kl``, ``sampled_kl``,
    nats per text), evaluated in the driver on the learner's current weights; plus ``episodes``: RLlib's mean
    sampled episode return per iteration."""

    NAMES = ("greedy", "kl", "sampled", "sampled_kl")

    def __init__(self, cfg: Any, start: str, saved: dict[str, Any]) -> None:
        self.cfg, self.start = cfg, start
        self.episodes = [(int(t), float(v)) for t, v in saved.get("curve", [])]
        self.points = {name: [(int(t), float(v)) for t, v in saved.get(f"{name}_curve", [])] for name in self.NAMES}
        self.every = cfg.steps / (cfg.curve_points - 1) if cfg.curve_points >= 2 else None
        self._policy = self._reference = None

    def state(self) -> dict[str, Any]:
        return {"curve": [list(p) for p in self.episodes],
                **{f"{name}_curve": [list(p) for p in pts] for name, pts in self.points.items()}}

    def due(self, tokens: int, final: bool = False) -> bool:
        """Whether a point is due at ``tokens``: the start, then each ``steps / (curve_points - 1)``, the end."""
        greedy = self.points["greedy"]
        if self.every is None or (greedy and greedy[-1][0] == tokens):
            return False
        if not greedy or final:
            return True
        from text_envs_app.curves import next_point

        return tokens >= next_point(greedy[-1][0], self.every) - 1e-9

    def record(self, algo: Any, tokens: int) -> None:
        """Evaluate the learner's weights (random states restored after: training goes on unchanged)."""
        from lm_core.backends import load_model
        from text_envs_app.curves import evaluate_point

        if self._policy is None:
            self._policy, self._reference = _hf_policy(self.start, self.cfg), load_model(self.start)
        load_learner_weights(self._policy, algo)
        point = evaluate_point(self._policy, self.cfg, self.cfg.curve_examples, self._reference, sampled=True)
        for name in self.NAMES:
            self.points[name].append((tokens, float(point[name])))

    def result(self) -> dict[str, Any]:
        """The ``curve`` entry of results.json: the SB3 runs' keys, and RLlib's sampled episode returns."""
        return {"tokens": [t for t, _ in self.points["greedy"]],
                **{name: [v for _, v in pts] for name, pts in self.points.items()},
                "episode_tokens": [t for t, _ in self.episodes], "episode_return": [v for _, v in self.episodes]}


# ---------------------------------------------------------------------------------------------- helpers
def load_learner_weights(policy: Any, algo: Any) -> Any:
    """Load the learner's current LM weights (its module's ``model.*``) into ``policy`` (an
    :class:`sb3_ext.LLMPolicy` of the same model); returns ``policy``."""
    import torch as th
    from ray.rllib.core import DEFAULT_MODULE_ID

    weights = algo.learner_group.get_weights(module_ids=[DEFAULT_MODULE_ID])[DEFAULT_MODULE_ID]
    policy.model.load_state_dict({k[len("model."):]: th.as_tensor(v) for k, v in weights.items()
                                  if k.startswith("model.")})
    return policy


def _connect_ray(log: Callable[[str], Any]) -> bool:
    """Join the cluster of ``RAY_ADDRESS`` (or one started here with ``ray start``), else start a local Ray;
    True when this call started it (and :func:`train_rllib` shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # the command's output stays its own lines: RLlib's notes on its API stack and its own deprecations (in the
    # driver, and through the job's logging config in every actor) are advice for RLlib's developers
    for name in ("ray.rllib", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=True,
             logging_config=ray.LoggingConfig(log_level="ERROR"))
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = ray.cluster_resources().get("CPU", 0)
    gpus = ray.cluster_resources().get("GPU", 0)
    where = f"the Ray cluster at {os.environ['RAY_ADDRESS']}" if os.environ.get("RAY_ADDRESS") else "Ray"
    log(f"{where}: {len(nodes)} node{'s' if len(nodes) != 1 else ''}, {cpus:g} CPUs"
        + (f", {gpus:g} GPUs" if gpus else ""))
    return True


def _metric(result: dict[str, Any], *path: str) -> float | None:
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _tokens(result: dict[str, Any]) -> int:
    """Generated tokens so far (RLlib's lifetime count of sampled env steps, restored with a checkpoint)."""
    value = _metric(result, "num_env_steps_sampled_lifetime")
    if value is None:
        value = _metric(result, "env_runners", "num_env_steps_sampled_lifetime")
    return int(value or 0)


def _scalars(result: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars of one training iteration."""
    picks = {
        "rollout/ep_rew_mean": ("env_runners", "episode_return_mean"),
        "rollout/ep_len_mean": ("env_runners", "episode_len_mean"),
        "time/iteration_s": ("time_this_iter_s",),
        "time/sampling_s": ("timers", "env_runner_sampling_timer"),
        "time/learner_update_s": ("timers", "learner_update_timer"),
        "time/sync_weights_s": ("timers", "synch_weights"),
    }
    out = {name: v for name, path in picks.items() if (v := _metric(result, *path)) is not None}
    for key, value in (result.get("learners", {}).get("default_policy", {}) or {}).items():
        if key in ("policy_loss", "vf_loss", "entropy", "mean_kl_loss", "total_loss", "vf_explained_var",
                   "default_optimizer_learning_rate") or "kl" in key:
            v = _metric({"v": value}, "v")
            if v is not None:
                out[f"train/{key}"] = v
    return out


def _uses_baseline(cfg: Any) -> bool:
    """Whether the run's episodes get the greedy per-prompt baseline (RLlib's episode return is then the reward
    minus the baseline's): "greedy", or "auto" on a task that scores finished texts (the SB3 runs' rule too)."""
    import gymnasium as gym

    env = gym.make(cfg.env, **cfg.env_kwargs())
    try:
        scores_texts = getattr(env.unwrapped, "reward", None) is not None
        return cfg.baseline == "greedy" or (cfg.baseline == "auto" and scores_texts)
    finally:
        env.close()


def _build(cfg: Any) -> Any:
    """``rllib_config(cfg).build_algo()``; when an actor fails to start (a model that does not fit the env's
    tokenizer, a missing file on a node), RLlib's own error is an IndexError of its space probe: name the cause."""
    config = rllib_config(cfg)
    try:
        return config.build_algo()
    except TextEnvsError:
        raise
    except Exception as e:
        reason = str(e).splitlines()[0][:300] if str(e) else ""
        raise TextEnvsError(
            f"RLlib could not build {cfg.algo} ({type(e).__name__}: {reason}): an env runner or learner failed to "
            "start; its own error is printed above (on a cluster: are the package, the model and the data on every "
            "node?)") from e


def _hf_policy(model: str, cfg: Any) -> Any:
    """An ``LLMPolicy`` over a Hugging Face model folder for the greedy evaluation (the SB3 runs' evaluation:
    the same decoding, metrics, KL and perplexity code)."""
    import gymnasium as gym

    from sb3_ext import LLMPolicy

    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs())
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 0.0, model=model,
                       tokenizer=env.unwrapped.tokenizer, kl_coef=0.0, temperature=cfg.temperature)
    env.close()
    return policy.to(cfg.device)


# ---------------------------------------------------------------------------------------------- the engine
class RLlibEngine:
    """The :class:`~text_envs_app.engines.base.Engine` that trains on Ray RLlib: ``algo.train()`` in the driver
    until ``steps`` tokens are sampled (RLlib's ``num_env_steps_sampled_lifetime``), env runners and learners as
    Ray actors. The trained weights are evaluated as the SB3 runs' are: loaded into an :class:`sb3_ext.LLMPolicy`
    over the start model (:meth:`policy_for_eval`). A first Ctrl-C/SIGTERM during training lets the iteration in
    progress end, then saves; a second stops at once."""

    name = "rllib"
    places_frontier = False  # the start model's reward/KL limit is placed for SB3 runs only

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self.store = RllibCheckpoints(folder.path / "checkpoints", resume_hint=folder.resume_hint)
        self.cfg: TrainConfig | None = None
        self.algo: Any = None
        self.started_ray = False
        self.tokens = 0
        self.train_seconds = 0.0
        self.saved_state: dict[str, Any] = {}  # a restored checkpoint's STATE_FILE
        self.curves: Curves | None = None
        self._policy: Any = None  # policy_for_eval's
        self._start_lm: Any = None

    @property
    def start(self) -> str:
        """The start weights: the ``--model`` path, or their copy in ``checkpoints/start/`` when it has none."""
        return str(self.store.folder / "start") if self.cfg.model is None else self.cfg.model

    def find_checkpoint(self, log: Log) -> bool:
        return bool(self.store.files())  # restored (or found broken) by restore(), once Ray runs

    def open(self, cfg: TrainConfig, log: Log) -> TrainConfig:
        """Seed torch and join Ray (the cluster of ``RAY_ADDRESS``, one started here, or a new local one)."""
        import torch as th

        self.cfg = cfg
        th.manual_seed(cfg.seed)
        self.started_ray = _connect_ray(log)
        return cfg

    def build(self) -> None:
        import rllib_ext

        self.algo = _build(self.cfg)
        if self.cfg.model is None:  # the start weights have no path of their own (e.g. a fresh tiny model)
            rllib_ext.save_pretrained(self.algo, self.start)

    def restore(self, log: Log) -> str:
        restored = self.store.load_latest(log)
        if restored is None:
            raise TextEnvsError(f"--resume: no checkpoint in {self.store.folder} restores; start the run again with "
                                "--overwrite")
        self.algo, self.saved_state = restored
        self.tokens = int(self.saved_state["tokens"])
        return (f"resuming from {self.store.files()[0][1]} at {self.tokens:,} of {self.cfg.steps:,} tokens "
                f"(iteration {self.algo.iteration})")

    def policy_for_eval(self) -> Any:
        """One :class:`sb3_ext.LLMPolicy` over the start model (built on the first call: building it draws from
        torch's generator, which a local env runner samples from), loaded with the learner's current weights."""
        if self._policy is None:
            self._policy = _hf_policy(self.start, self.cfg)
        return load_learner_weights(self._policy, self.algo)

    def start_model(self) -> Any:
        from lm_core.backends import load_model

        if self._start_lm is None:
            self._start_lm = load_model(self.start)
        return self._start_lm

    def learn(self, log: Log) -> Learned:
        """``algo.train()`` until ``cfg.steps`` tokens are sampled: a curve point, TensorBoard scalars and a progress
        bar per iteration, a checkpoint at 0 tokens, every ``cfg.checkpoint_every`` tokens and at the end."""
        from torch.utils.tensorboard import SummaryWriter

        cfg, algo, store = self.cfg, self.algo, self.store
        self.curves = curves = Curves(cfg, self.start, self.saved_state)
        seconds_before = float(self.saved_state.get("train_seconds", 0.0))
        writer = SummaryWriter(str(self.folder.path / "tb"))
        bar = _token_bar(cfg.steps, self.tokens) if has_progress_bar() else None
        t0 = time.time()
        last_saved = self.tokens

        def extras() -> dict[str, Any]:
            return {**curves.state(), "train_seconds": seconds_before + time.time() - t0,
                    "iteration": int(algo.iteration)}

        try:
            with _iteration_guard(log) as received:
                try:
                    if not store.files():  # at 0 tokens: a resume never redoes the first evaluation
                        store.save(algo, 0, {"train_seconds": 0.0, "iteration": 0})
                    if curves.due(self.tokens) and self.tokens == 0:  # the start model's greedy point
                        curves.record(algo, self.tokens)
                    while self.tokens < cfg.steps and received["signal"] is None:
                        self._iteration(writer, bar, lambda: seconds_before + time.time() - t0)
                        if cfg.checkpoint_every and self.tokens - last_saved >= cfg.checkpoint_every \
                                and self.tokens < cfg.steps:
                            store.save(algo, self.tokens, extras())
                            last_saved = self.tokens
                    interrupted = received["signal"]
                except KeyboardInterrupt:  # a second signal: stop at once, keep the last checkpoint
                    if bar is not None:
                        bar.close()
                        bar = None
                    signal_name = received["signal"] or "SIGINT"
                    log(f"\n{signal_name}: stopped at once: {store.describe_latest()}; continue with: "
                        f"{self.folder.resume_hint}")
                    kept = store.files()[0][0] if store.files() else 0
                    return Learned(kept, 0.0, {"interrupted": True, "signal": signal_name,
                                               "out": str(self.folder.path), "tokens": kept})
                # training done or interrupted after a whole iteration: save it (a later evaluation loses no training)
                if self.tokens > last_saved or not store.files():
                    store.save(algo, self.tokens, extras())
        finally:
            if bar is not None:
                bar.refresh()
                bar.close()
            writer.close()
        if interrupted:
            log(f"\n{interrupted}: stopped at {self.tokens:,} of {cfg.steps:,} tokens: checkpoint saved to "
                f"{store.files()[0][1]}; continue with: {self.folder.resume_hint}")
            return Learned(self.tokens, 0.0, {"interrupted": True, "signal": interrupted,
                                              "out": str(self.folder.path), "tokens": self.tokens})
        self.train_seconds = seconds_before + time.time() - t0
        return Learned(self.tokens, self.train_seconds)

    def _iteration(self, writer: Any, bar: Any, elapsed: Callable[[], float]) -> None:
        """One ``algo.train()``: the token count, the episode return, a curve point when due, TensorBoard scalars
        (``elapsed``: the run's training seconds so far, for its tokens per second)."""
        cfg, curves = self.cfg, self.curves
        result = self.algo.train()
        new_tokens = _tokens(result)
        if bar is not None:
            bar.update(max(0, min(new_tokens, cfg.steps) - min(self.tokens, cfg.steps)))
        self.tokens = tokens = new_tokens
        scalars = _scalars(result)
        if "rollout/ep_rew_mean" in scalars:
            curves.episodes.append((tokens, scalars["rollout/ep_rew_mean"]))
        if curves.due(tokens, final=tokens >= cfg.steps):
            curves.record(self.algo, tokens)
            scalars.update({f"eval/{name}": pts[-1][1] for name, pts in curves.points.items()})
        scalars["time/tokens_per_second"] = tokens / max(elapsed(), 1e-9)
        for name, value in scalars.items():
            writer.add_scalar(name, value, tokens)

    def extra_columns(self, train_seconds: float, log: Log) -> dict[str, dict[str, float]]:
        return {}  # --compare-supervised is an SB3 setting (TrainConfig refuses it here)

    def save(self, out: Path) -> None:
        import rllib_ext

        rllib_ext.save_pretrained(self.algo, out / "hf")

    def report(self) -> Report:
        cfg, curves = self.cfg, self.curves
        return Report(
            column=f"{cfg.algo} (rllib)", title=f"{cfg.algo.upper()} (RLlib) on {cfg.env}", curves=curves.points,
            episodes=[] if _uses_baseline(cfg) else curves.episodes, deliverables=("hf/",),
            results={"iterations": int(self.algo.iteration),
                     "tokens_per_second": self.tokens / max(self.train_seconds, 1e-9), "engine": "rllib",
                     "curve": curves.result()})

    def close(self) -> None:
        """Stop the algorithm's actors, and Ray when this run started it."""
        if self.algo is not None:
            with contextlib.suppress(Exception):
                self.algo.stop()
            self.algo = None
        if self.started_ray:
            import ray

            ray.shutdown()
            self.started_ray = False


def _token_bar(steps: int, tokens: int) -> Any:
    """A tqdm bar of sampled tokens whose rate is the run's average so far (as the SB3 runs' bar)."""
    from tqdm import tqdm

    return tqdm(total=steps, initial=min(tokens, steps), smoothing=0, unit=" tokens", dynamic_ncols=True,
                mininterval=0.5, bar_format="training {percentage:3.0f}%|{bar}| {n:,}/{total:,} tokens "
                                            "[{elapsed}<{remaining}, {rate_noinv_fmt} average]")
