"""Learning curves recorded during training: a greedy evaluation on a fixed set of prompts, and the KL to the start.

The sampled episode reward of each rollout is noisy (temperature-1 samples, a different batch of prompts every
time); what a reader wants to see is how the *trained model* improves: the mean reward of its greedy texts on
the same validation prompts at evenly spaced token counts, and how far it has moved from the start model (the
exact KL along those texts, as in the results table). :class:`GreedyCurve` records both; ``text-envs train``
plots them in ``learning_curve.png`` and ``text-envs bench`` aggregates the reward curves over seeds.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError


def greedy_point(policy: Any, cfg: Any, examples: int, reference: Any = None,
                 split: str = "validation") -> tuple[float, float | None]:
    """(mean env reward, mean KL to ``reference`` in nats per text or None) of ``policy``'s greedy texts on the
    first ``examples`` of ``split`` of ``cfg``'s env."""
    from text_envs import evaluation
    from text_envs_app.evaluation import sequence_kl

    result = evaluation.evaluate(cfg.env, policy, split=split, n_examples=examples, deterministic=True,
                                 metrics=(), batch_size=min(32, examples), seed=0, env_kwargs=cfg.env_kwargs())
    kl = None
    if reference is not None:
        kl = sequence_kl(policy, reference, _with_eval_split(cfg, split), result.generations)
    return float(result.table["reward"]), kl


def sampled_point(policy: Any, cfg: Any, examples: int, reference: Any,
                  split: str = "validation") -> tuple[float, float]:
    """(mean env reward, mean exact KL to ``reference`` along the texts) of one text sampled by ``policy`` for each
    of the first ``examples`` of ``split``, always drawn with seed 0 (the same draw for the same weights)."""
    import dataclasses

    from text_envs_app.evaluation import sampled_reward, sequence_kl

    at = dataclasses.replace(cfg, eval_split=split, eval_examples=examples, seed=0)
    reward, generations = sampled_reward(policy, at)
    return reward, sequence_kl(policy, reference, at, generations)


def evaluate_point(policy: Any, cfg: Any, examples: int, reference: Any = None,
                   sampled: bool = False) -> dict[str, float | None]:
    """One point of the learning curves, the same for every engine: ``greedy`` (and ``kl`` with a ``reference``)
    from :func:`greedy_point`, and with ``sampled`` also ``sampled`` and ``sampled_kl`` from :func:`sampled_point`.
    The random states (Python, NumPy, torch) are restored and the policy's decode cache dropped afterwards, so a
    training run goes on as if nothing had been evaluated."""
    import torch as th

    states = random.getstate(), np.random.get_state(), th.get_rng_state()
    point: dict[str, float | None] = {}
    try:
        if sampled:
            point["sampled"], point["sampled_kl"] = sampled_point(policy, cfg, examples, reference)
        point["greedy"], point["kl"] = greedy_point(policy, cfg, examples, reference)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        th.set_rng_state(states[2])
        if hasattr(policy, "reset_cache"):
            policy.reset_cache()
    return point


def next_point(tokens: int, every: float) -> float:
    """The token count of the curve's next evaluation after one at ``tokens``: the next multiple of ``every``."""
    return (math.floor(tokens / every + 1e-9) + 1) * every


def _with_eval_split(cfg: Any, split: str) -> Any:
    """``cfg`` evaluated on ``split`` (``sequence_kl`` encodes the prompts of ``cfg.eval_split``)."""
    import dataclasses

    return dataclasses.replace(cfg, eval_split=split) if cfg.eval_split != split else cfg


class GreedyCurve:
    """An SB3 callback (built by :meth:`make`) that evaluates the policy greedily on a fixed set of prompts at
    evenly spaced token counts during training: the first ``examples`` of the task's validation split (the test
    split is the final evaluation's), at 0 tokens and then each time training passes the next of
    ``points - 1`` equal steps up to ``steps``, checked at rollout boundaries, and at the end.

    ``callback.points`` holds ``(tokens, mean greedy reward)`` and, with a ``reference`` model,
    ``callback.kl_points`` ``(tokens, mean KL to it in nats per text)``. The random states (Python, NumPy,
    torch) are restored and the policy's decode cache dropped after each evaluation, so recording a curve does
    not change the training run.
    """

    @staticmethod
    def make(cfg: Any, steps: int, points: int, examples: int, start_value: float | None = None,
             reference: Any = None, sampled: bool = False):
        """:param cfg: the run's TrainConfig (env and env options). :param steps: the run's token budget.
        :param points: evaluations, the start and the end included (>= 2). :param examples: prompts of each.
        :param start_value: the reward at 0 tokens when already known (the start model's greedy decoding does not
            depend on the run), else it is evaluated.
        :param reference: the start model: when given, the KL to it is recorded too.
        :param sampled: also record the mean reward and KL of one sampled text per prompt (``sampled_points``,
            ``sampled_kl_points``; needs ``reference``): on a preference task the start model's greedy text can
            already score well while its samples do not, and the samples are what RL changes first."""
        from stable_baselines3.common.callbacks import BaseCallback

        if points < 2:
            raise TextEnvsError(f"a learning curve needs at least 2 points (start and end), got curve_points={points}.")

        class GreedyCurveCallback(BaseCallback):
            def __init__(self):
                super().__init__()
                self.points: list[tuple[int, float]] = []
                self.kl_points: list[tuple[int, float]] = []
                self.sampled_points: list[tuple[int, float]] = []
                self.sampled_kl_points: list[tuple[int, float]] = []
                self.every = steps / (points - 1)
                self.next_at = self.every
                self.start_value = start_value

            def curves(self) -> dict[str, list[tuple[int, float]]]:
                return {"greedy": self.points, "kl": self.kl_points, "sampled": self.sampled_points,
                        "sampled_kl": self.sampled_kl_points}

            def restore(self, saved: dict[str, list], tokens: int) -> None:
                """Continue a resumed run's curve: its points so far (:meth:`curves`), the next evaluation after
                ``tokens``."""
                for name, target in self.curves().items():
                    target[:] = [(int(t), float(v)) for t, v in saved.get(name, [])]
                self.next_at = next_point(tokens, self.every)

            def evaluate_now(self) -> tuple[float, float | None]:
                point = evaluate_point(self.model.policy, cfg, examples, reference, sampled)
                if sampled:
                    tokens = int(self.num_timesteps)
                    self.sampled_points.append((tokens, point["sampled"]))
                    self.sampled_kl_points.append((tokens, point["sampled_kl"]))
                return point["greedy"], point["kl"]

            def _record(self) -> None:
                tokens = int(self.num_timesteps)
                if self.points and self.points[-1][0] == tokens:
                    return
                if tokens == 0 and self.start_value is not None and not sampled:  # the start: KL 0 to itself
                    value, kl = self.start_value, (0.0 if reference is not None else None)
                else:
                    value, kl = self.evaluate_now()
                self.points.append((tokens, value))
                if kl is not None:
                    self.kl_points.append((tokens, kl))

            def _on_training_start(self) -> None:
                if not self.points:
                    self._record()

            def _on_rollout_start(self) -> None:
                if self.num_timesteps >= self.next_at - 1e-9:
                    self._record()
                    self.next_at = next_point(self.num_timesteps, self.every)

            def _on_step(self) -> bool:
                return True

            def _on_training_end(self) -> None:
                self._record()

        return GreedyCurveCallback()


def plot_learning_curve(path: Path, title: str, curves: dict[str, list[tuple[int, float]]],
                        episodes: list[tuple[int, float]] = (), reward_name: str = "reward",
                        optimum: dict[str, Any] | None = None) -> None:
    """``learning_curve.png``: left, the reward of the greedy texts (and of one sampled text per prompt) on the
    fixed validation prompts, and, lighter, the mean reward of the rollouts' episodes, against generated tokens;
    right, the KL to the start model along those texts (nats per text) against generated tokens.
    ``curves``: :meth:`GreedyCurve.curves` (``greedy``, ``kl``, ``sampled``, ``sampled_kl``; any may be empty).
    ``optimum``: the start model's limit at the run's KL coefficient (``optimum_reward``, ``optimum_kl``, ``beta``:
    :func:`text_envs_app.frontier.place_against_frontier`), drawn as a dashed line on each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_kl) = plt.subplots(1, 2, figsize=(10, 3.6))
    if episodes:
        x, y = zip(*episodes)
        ax.plot(x, y, color="tab:gray", alpha=0.5, lw=1, label="sampled episodes (rollout mean)")
    for name, color, label in (("greedy", "tab:blue", "greedy, fixed validation prompts"),
                               ("sampled", "tab:green", "sampled, the same prompts")):
        if curves.get(name):
            x, y = zip(*curves[name])
            ax.plot(x, y, marker="o", color=color, label=label)
    if optimum is not None:  # what the sampled texts' reward and KL would be at the regularised optimum
        ax.axhline(optimum["optimum_reward"], color="tab:red", ls="--", lw=1,
                   label=f"optimum at kl_coef {optimum['beta']:g} (test prompts)")
        ax_kl.axhline(optimum["optimum_kl"], color="tab:red", ls="--", lw=1, label="the optimum's KL")
    ax.set_xlabel("generated tokens (env steps)")
    ax.set_ylabel(reward_name)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for name, color, label in (("kl", "tab:blue", "along the greedy texts"),
                               ("sampled_kl", "tab:green", "along the sampled texts")):
        if curves.get(name):
            x, y = zip(*curves[name])
            ax_kl.plot(x, y, marker="o", color=color, label=label)
    ax_kl.set_xlabel("generated tokens (env steps)")
    ax_kl.set_ylabel("KL to the start model (nats/text)")
    ax_kl.set_title("KL to the start model")
    if any(curves.get(k) for k in ("kl", "sampled_kl")) or optimum is not None:
        ax_kl.legend(fontsize=8)
    ax_kl.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
