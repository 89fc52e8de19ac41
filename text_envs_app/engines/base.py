"""The protocol between the one training skeleton (:func:`text_envs_app.train.train_unlocked`) and the engines that
train: :class:`Engine`, with what a run of either engine reports back (:class:`Learned`, :class:`Report`).

The skeleton owns what every run does the same way: the output folder (:class:`~text_envs_app.run_folder.RunFolder`),
``config.json`` and ``state.json``, the held-out evaluations before and after training, the results table,
``samples.md``, ``learning_curve.png``, ``results.json`` and the messages of a run stopped by Ctrl-C or SIGTERM
outside training. An engine owns the rest: how the model is built and trained, its checkpoints (their format, when
they are taken, how a resume restores them) and the interrupt handling during training. The skeleton calls, in
order::

    engine.find_checkpoint(log)              # --resume only: is there one to continue from?
    cfg = engine.open(cfg, log)              # seeds, threads, envs or a Ray connection
    engine.build() | engine.restore(log)     # a fresh model, or the newest checkpoint
    engine.policy_for_eval(), engine.start_model()    # the start model's evaluation (fresh runs)
    engine.learn(log)                        # until cfg.steps tokens, with checkpoints and learning curves
    engine.policy_for_eval(), engine.extra_columns(...), engine.save(out), engine.report()
    engine.close()                           # always, last
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from text_envs_app.config import TrainConfig

Log = Callable[[str], Any]
"""Where a run's messages go (``print`` by default)."""


class Checkpoints(Protocol):
    """The part of an engine's checkpoint store the skeleton reads (``engine.store``)."""

    def files(self) -> list[tuple[int, Path]]:
        """The complete checkpoints as ``(tokens, path)``, newest first."""

    def describe_latest(self) -> str:
        """A sentence naming the newest checkpoint (or saying there is none), for error messages."""

    def remove_all(self) -> None:
        """Delete every checkpoint: the run is finished and its resume state no longer needed."""


@dataclass
class Learned:
    """What :meth:`Engine.learn` did: the generated tokens trained on, the training wall time (over every resume
    of the run), and, when a signal stopped it, the result :func:`~text_envs_app.train.train_unlocked` returns
    (``{"interrupted": True, "signal": ..., "out": ..., "tokens": ...}``; the engine has said what was kept)."""

    tokens: int
    train_seconds: float
    stopped: dict[str, Any] | None = None


@dataclass
class Report:
    """What an engine adds to a finished run's outputs.

    :param column: the trained model's column in the results table (``"ppo"``, ``"ppo (rllib)"``).
    :param title: the title of ``learning_curve.png``.
    :param curves: the greedy/sampled reward and KL curves on fixed validation prompts, ``{name: [(tokens,
        value), ...]}`` (:class:`~text_envs_app.curves.GreedyCurve`'s names); empty without ``curve_points``.
    :param episodes: the mean training episode reward per rollout or iteration, ``[(tokens, value), ...]``.
    :param results: entries of ``results.json`` beside the skeleton's (``curve``, RLlib's ``iterations``).
    :param deliverables: the names of the model files :meth:`Engine.save` writes, for the closing message.
    """

    column: str
    title: str
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    episodes: list[tuple[int, float]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    deliverables: tuple[str, ...] = ("hf/",)


@runtime_checkable
class Engine(Protocol):
    """A training engine behind ``text-envs train`` (:class:`~text_envs_app.engines.sb3.SB3Engine`,
    :class:`~text_envs_app.engines.rllib.RLlibEngine`). Built with the run's
    :class:`~text_envs_app.run_folder.RunFolder` (``Engine(folder)``); it holds its checkpoint store and,
    once :meth:`build` or :meth:`restore` has run, its model."""

    name: str
    """The :attr:`TrainConfig.engine <text_envs_app.config.TrainConfig.engine>` value it runs (``"sb3"``)."""
    places_frontier: bool
    """Whether the final table places the trained model against the start model's reward/KL limit
    (:func:`text_envs_app.frontier.place_against_frontier`, ``cfg.frontier_samples`` texts per prompt)."""
    store: Checkpoints
    """The run's checkpoints (in ``<out>/checkpoints``)."""

    def find_checkpoint(self, log: Log) -> bool:
        """``--resume``: whether a checkpoint to continue from is there (one that does not read whole is named and
        set aside here or in :meth:`restore`). False: the run starts over."""

    def open(self, cfg: TrainConfig, log: Log) -> TrainConfig:
        """Get ready to build: seed, threads, the training envs or the Ray connection. Returns ``cfg`` as this
        engine runs it (a fresh SB3 run's ``steps`` rounded up to whole rollouts, said in ``log``)."""

    def build(self) -> None:
        """Build a fresh model of the config given to :meth:`open` (a fresh run, after ``config.json``)."""

    def restore(self, log: Log) -> str:
        """Build the model from the newest checkpoint that restores; returns the "resuming from ..." message."""

    def policy_for_eval(self) -> Any:
        """An :class:`sb3_ext.LLMPolicy` holding the current weights, for
        :func:`~text_envs_app.evaluation.evaluate_policy_on_split`; called any number of times, it returns the same
        policy (building one draws random numbers, which would change the training that follows)."""

    def start_model(self) -> Any:
        """The frozen start model (a Hugging Face model): the reference of the KL column and of ``start_ppl``."""

    def learn(self, log: Log) -> Learned:
        """Train until ``cfg.steps`` generated tokens (continuing a restored checkpoint's count), taking
        checkpoints and learning-curve points; the last checkpoint holds every trained token when it returns."""

    def extra_columns(self, train_seconds: float, log: Log) -> dict[str, dict[str, float]]:
        """More columns for the results table after the trained model's (``--compare-supervised``); ``{}``."""

    def save(self, out: Path) -> None:
        """Write the deliverable model to ``out`` (``hf/``, and SB3's ``model.zip``); may raise ``OSError``."""

    def report(self) -> Report:
        """The table column, the learning curves and the engine's entries of ``results.json``."""

    def close(self) -> None:
        """Release what :meth:`open` took (envs, Ray actors, a Ray started for the run); safe to call twice."""
