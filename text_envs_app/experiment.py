"""Deprecated: the old home of the main job, kept so that old imports keep working until version 0.3.0.

Its names now live in smaller modules; each one read from here still works but raises a ``FutureWarning`` naming
its new home and the version that removes this module (:data:`text_envs.deprecation.REMOVED_IN`):

=========================================  =====================================================================
:mod:`text_envs_app.config`                ``TrainConfig``, its per-env defaults, ``field_docs``, ``load_config_file``
:mod:`text_envs_app.evaluation`            ``evaluate_policy_on_split``, KL, perplexity, ``format_table``, samples
:mod:`text_envs_app.engines.sb3`           ``make_train_env``, ``build_model``, ``attach_baseline``, the callbacks
:mod:`text_envs_app.run_folder`            ``prepare_out``, ``empty_folder``, ``RunFolder``
:mod:`text_envs_app.train`                 ``train``, ``train_unlocked``, ``supervised_same_time``
:mod:`text_envs_app.eval_job`              ``evaluate_saved``, ``find_saved_model``, ``RUN_DATA_KEYS``
:mod:`text_envs_app.bench`                 ``run_benchmark``, ``BENCH_PRESETS``, ``BENCH_METHODS``
=========================================  =====================================================================
"""

from __future__ import annotations

from text_envs.deprecation import REMOVED_IN, moved_names

__all__ = ["REMOVED_IN", "MOVED"]

_CONFIG = ("ENGINES", "BASELINES", "VEC_ENVS", "TABLE_METRICS", "DEFAULT_KL_COEF", "DEFAULT_DECODING",
           "DEFAULT_DIFFICULTY", "HACKING_METRICS", "FRONTIER_KEYS", "TABLE_METRICS_BY_ENV", "table_metrics",
           "TrainConfig", "env_options", "field_docs", "load_config_file", "ALGORITHMS", "RLLIB_ALGORITHMS")
_EVALUATION = ("evaluate_policy_on_split", "text_hacking_metrics", "sampled_reward", "start_model_ppl", "sequence_kl",
               "MetricTable", "tokenization_note", "format_table", "frontier_note", "decoding_note", "N_SAMPLES",
               "eval_count", "describe_data", "write_samples")
_SB3 = ("make_train_env", "attach_baseline", "algorithm_class", "build_model", "starting_model", "CurveRecorder",
        "TokenProgressBar")
_TRAIN = ("train", "train_unlocked", "supervised_same_time")
_EVAL_JOB = ("RUN_DATA_KEYS", "EVAL_KEYS", "find_saved_model", "run_split_of_file", "trained_rows_note",
             "evaluate_saved")
_BENCH = ("BENCH_METHODS", "BENCH_PRESETS", "run_benchmark", "_bench_one")

MOVED: dict[str, str] = {
    **{name: f"text_envs_app.config:{name}" for name in _CONFIG},
    **{name: f"text_envs_app.evaluation:{name}" for name in _EVALUATION},
    **{name: f"text_envs_app.engines.sb3:{name}" for name in _SB3},
    **{name: f"text_envs_app.train:{name}" for name in _TRAIN},
    **{name: f"text_envs_app.eval_job:{name}" for name in _EVAL_JOB},
    **{name: f"text_envs_app.bench:{name}" for name in _BENCH},
    "GreedyCurve": "text_envs_app.curves:GreedyCurve",
    "plot_learning_curve": "text_envs_app.curves:plot_learning_curve",
    # private names other modules used to import from here, now public in their new homes
    "_prepare_out": "text_envs_app.run_folder:prepare_out",
    "_empty_folder": "text_envs_app.run_folder:empty_folder",
    "_has_progress_bar": "text_envs_app.progress:has_progress_bar",
    "_starting_model": "text_envs_app.engines.sb3:starting_model",
    "_CurveRecorder": "text_envs_app.engines.sb3:CurveRecorder",
    "_TokenProgressBar": "text_envs_app.engines.sb3:TokenProgressBar",
    "_plot_bench": "text_envs_app.bench_report:plot_bench",
}
"""Each old name of this module: its new home, as ``"module:name"``."""

__getattr__ = moved_names(__name__, MOVED)


def __dir__() -> list[str]:
    return sorted([*globals(), *MOVED])
