"""A task of ``text-envs bench``: :class:`BenchTask` (an env with its options and the metrics its table shows). Its
own module so that the preset modules (:mod:`text_envs_app.grue`) build tasks without importing :mod:`text_envs_app.bench`,
which imports them to register their presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LEGACY_METRICS = ("rouge-1", "rouge-2", "rouge-l", "bleu", "meteor")


@dataclass(frozen=True)
class BenchTask:
    """One task of a preset: an env with its options, and the metrics its table shows beside the reward.

    :param env: the registered env id.
    :param name: the task's label in tables, plots and ``results.csv``.
    :param reward: the reward spec (``text_envs.make_reward``: a name or ``"0.5*rouge-l+0.5*fact-precision"``);
        None: the env's default.
    :param env_kwargs: any other ``gym.make`` keywords (``reference_noise``, ``max_new_tokens``, ...).
    :param metrics: corpus metrics evaluated beside the reward (:func:`text_envs.evaluation.corpus_metrics`).
    :param decoding: how the trained models are evaluated and the curves drawn: ``"greedy"``, or ``"sampled"``
        (one text per prompt, seeded) where the start model's most likely text already scores well and what RL
        changes is its distribution (the ``greedy`` row stays greedy, the ``sampled`` row sampled).
    :param filter_reward: the ``supervised-filtered`` method trains on the train references whose reward is at
        least this (``--algo supervised --filter-reward``); None: the task has no such baseline.
    """

    env: str
    name: str
    reward: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = LEGACY_METRICS
    decoding: str = "greedy"
    filter_reward: float | None = None
