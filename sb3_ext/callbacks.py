"""``TextEvalCallback``: the text counterpart of SB3's ``EvalCallback``.

Every ``eval_freq`` calls it runs :func:`text_envs.evaluate` with the model being trained on a split of a
text env, records every metric as ``eval/<metric>`` in the SB3 logger (so TensorBoard, CSV, stdout get them)
and a Markdown table of a few sample generations as TensorBoard text ``eval/samples``, and optionally saves
the best model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from text_envs.evaluation import DEFAULT_METRICS, EvaluationError, EvaluationResult, evaluate, samples_markdown

__all__ = ["TextEvalCallback"]

_LOWER_IS_BETTER = {"ter"}


class TextEvalCallback(BaseCallback):
    """Evaluate the model on a split every ``eval_freq`` calls and log the metrics and sample generations.

    :param eval_env: an env id (built once as ``gym.make(eval_env, split=split, **env_kwargs)``, ``batch_size``
        copies run side by side), a Gymnasium env or a list of envs. Not a vector env: use the id.
    :param eval_freq: evaluate every this many callback calls (one call = one step of the training ``VecEnv``,
        i.e. ``n_envs`` env steps, as in SB3's ``EvalCallback``); ``<= 0`` disables periodic evaluation.
    :param n_examples: examples per evaluation (from index 0 of the split); ``None`` = the whole split.
    :param split: the split to build from an env id.
    :param log_samples: how many sample generations to log as TensorBoard text (0 = none).
    :param best_model_save_path: folder where ``best_model.zip`` is saved whenever ``best_metric`` improves.
    :param best_metric: the metric that decides "best"; default ``"reward"`` (mean episode return). ``"ter"`` is
        minimised, everything else maximised.
    :param metrics: metric specs passed to :func:`text_envs.evaluate`.
    :param deterministic: greedy (``True``) or sampled actions.
    :param batch_size: parallel episodes per evaluation.
    :param env_kwargs: extra ``gym.make`` arguments for an env id.
    :param seed: seed of each evaluation (the same examples, same seeds every time).
    :param verbose: 1 prints a line per evaluation.
    """

    def __init__(
        self,
        eval_env: Any,
        eval_freq: int = 10_000,
        n_examples: int | None = 64,
        split: str = "validation",
        log_samples: int = 3,
        best_model_save_path: str | None = None,
        best_metric: str = "reward",
        metrics: Sequence[Any] = DEFAULT_METRICS,
        deterministic: bool = True,
        batch_size: int = 16,
        env_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
        verbose: int = 1,
    ) -> None:
        super().__init__(verbose=verbose)
        if log_samples < 0:
            raise EvaluationError(f"Expected log_samples >= 0, got {log_samples}.")
        if batch_size < 1:
            raise EvaluationError(f"Expected batch_size >= 1, got {batch_size}.")
        if hasattr(eval_env, "num_envs") and not isinstance(eval_env, (str, list, tuple)):
            raise EvaluationError(
                "TextEvalCallback expects an env id, a Gymnasium env or a list of envs, got a vector env. Pass the "
                "env id and it builds `batch_size` envs itself."
            )
        self.eval_env = eval_env
        self.eval_freq, self.n_examples, self.split = int(eval_freq), n_examples, split
        self.log_samples, self.best_model_save_path, self.best_metric = log_samples, best_model_save_path, best_metric
        self.metrics, self.deterministic, self.batch_size = list(metrics), deterministic, batch_size
        self.env_kwargs, self.seed = dict(env_kwargs or {}), seed
        self._envs: list[Any] | None = None
        self.last_result: EvaluationResult | None = None
        self.best_value: float | None = None
        self.evaluations: list[tuple[int, dict[str, float]]] = []  # (num_timesteps, table)

    def _init_callback(self) -> None:
        if isinstance(self.eval_env, str):
            import gymnasium as gym

            n = self.batch_size if self.n_examples is None else max(1, min(self.batch_size, self.n_examples))
            self._envs = [gym.make(self.eval_env, split=self.split, **self.env_kwargs) for _ in range(n)]
        elif isinstance(self.eval_env, (list, tuple)):
            self._envs = list(self.eval_env)
        else:
            self._envs = [self.eval_env]
        if self.best_model_save_path is not None:
            os.makedirs(self.best_model_save_path, exist_ok=True)

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            self.run_evaluation()
        return True

    def run_evaluation(self) -> EvaluationResult:
        """Evaluate now, log to ``self.logger`` and dump it at the current timestep; return the result."""
        if self._envs is None:
            self._init_callback()
        result = evaluate(
            self._envs,
            self.model,
            n_examples=self.n_examples,
            deterministic=self.deterministic,
            metrics=self.metrics,
            batch_size=self.batch_size,
            seed=self.seed,
        )
        self.last_result = result
        self.evaluations.append((self.num_timesteps, dict(result.table)))
        for key, value in result.table.items():
            self.logger.record(f"eval/{key}", value)
        if self.log_samples > 0 and result.generations:
            # text goes to TensorBoard only (stdout/CSV/JSON would truncate or mangle a Markdown table)
            self.logger.record(
                "eval/samples", samples_markdown(result.generations[: self.log_samples]),
                exclude=("stdout", "log", "json", "csv"),
            )
        if self.verbose >= 1:
            vals = ", ".join(f"{k}={v:.4f}" for k, v in result.table.items())
            print(f"Eval num_timesteps={self.num_timesteps}: {vals}")
        self._maybe_save_best(result)
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.num_timesteps)
        return result

    def _maybe_save_best(self, result: EvaluationResult) -> None:
        if self.best_metric not in result.table:
            raise EvaluationError(
                f"best_metric {self.best_metric!r} is not among the evaluated metrics {sorted(result.table)}."
            )
        value = result.table[self.best_metric]
        sign = -1.0 if self.best_metric in _LOWER_IS_BETTER else 1.0
        if self.best_value is None or sign * value > sign * self.best_value:
            self.best_value = value
            self.logger.record("eval/best_" + self.best_metric, value)
            if self.best_model_save_path is not None:
                if self.verbose >= 1:
                    print(f"New best {self.best_metric}={value:.4f}; saving to {self.best_model_save_path}")
                self.model.save(os.path.join(self.best_model_save_path, "best_model"))

    def _on_training_end(self) -> None:
        if self._envs is not None and isinstance(self.eval_env, str):
            for e in self._envs:
                e.close()
            self._envs = None
