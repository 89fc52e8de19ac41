"""The main job's second table: the start and the trained model on a second held-out split, by default
TextContinuation-v0's ``"ood"`` openings (worded unlike the training generator's: :mod:`text_envs.data.reviews_ood`),
evaluated and placed against the start model's limit as the main split is (``TrainConfig.ood_split``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from text_envs_app.config import TrainConfig
from text_envs_app.evaluation import eval_count, evaluate_policy_on_split, format_table, second_split_config
from text_envs_app.frontier import place_against_frontier

__all__ = ["evaluate_generalisation"]


def evaluate_generalisation(cfg: TrainConfig, start: dict[str, float] | None, trained: dict[str, Any],
                            start_lm: Any, log: Callable[[str], None] = print, progress: bool = False,
                            frontier: bool = True) -> dict[str, Any] | None:
    """The trained policies on the second held-out split beside the start model's table there
    (:func:`text_envs_app.evaluation.evaluate_start_on_second_split`), evaluated as the main split is
    (:func:`~text_envs_app.evaluation.evaluate_policy_on_split`: reward, KL to the start model, start_ppl, the
    hacking metrics) and, with ``frontier``, placed against the start model's limit on those prompts
    (:func:`text_envs_app.frontier.place_against_frontier`: optimum_J, best-of-n at the model's KL, gain_share).

    :param start: the start model's table on the split (None: a run resumed from a version without it; the start
        column is then left out, the frontier rows are still computed from the start model's samples).
    :param trained: ``{column name: policy}`` of the trained models.
    :return: None when there is no second split; else ``split``, ``columns`` (the tables by column name, the start
        model's under ``"start"``), ``frontier`` (or None) and ``table`` (Markdown, headed by the split's name).
    """
    other = second_split_config(cfg)
    if other is None:
        return None
    log(f"evaluating the trained model on {eval_count(other):,} {other.eval_split} examples ...")
    columns: dict[str, dict[str, float]] = {"start": dict(start or {})}
    for name, policy in trained.items():
        columns[name] = evaluate_policy_on_split(policy, other, reference=start_lm, progress=progress)[0]
    placed = None
    if frontier:
        placed = place_against_frontier(start_lm, other, columns, log=log, progress=progress,
                                        models={name: policy.model for name, policy in trained.items()
                                                if hasattr(policy, "model")})
    if not columns["start"]:
        del columns["start"]
    table = (f"On the {eval_count(other):,} {other.eval_split} prompts (the same rows, decoded and placed the same "
             "way):\n\n" + format_table(columns, notes=False))
    return {"split": other.eval_split, "columns": columns, "frontier": placed, "table": table}
