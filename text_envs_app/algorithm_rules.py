"""The algorithm names each engine runs and the rules a :class:`~text_envs_app.config.TrainConfig` checks against
them: the part of the registry (:mod:`text_envs_app.algorithms`) that the config needs, in a module that imports
neither, so that the config and the registry do not import each other."""

from __future__ import annotations

from typing import Any

from text_envs.errors import TextEnvsError

SB3_ALGORITHMS = ("ppo", "a2c", "trpo", "nlpo", "grpo", "rloo", "reinforce", "raft", "dpo", "supervised")
"""``--algo`` values of ``--engine sb3`` (the default engine)."""
RLLIB_ALGORITHMS = ("ppo", "impala", "appo")
"""``--algo`` values of ``--engine rllib``."""
ENGINE_ALGORITHMS = {"sb3": SB3_ALGORITHMS, "rllib": RLLIB_ALGORITHMS}
GROUP_ALGORITHMS = ("grpo", "rloo", "raft", "dpo")
"""Algorithms that compare the k texts of a group (``--group-size``: k envs write for the same prompt)."""
DEFAULT_GROUP_SIZE = 4
"""``--group-size`` of a group algorithm when not given (TRL's GRPO writes 8 per prompt; 4 keeps a rollout's
prompts varied with 32 envs)."""


def group_size(cfg: Any) -> int:
    """``cfg.group_size``, or when None :data:`DEFAULT_GROUP_SIZE` for a group algorithm and 1 for the others."""
    if cfg.group_size is not None:
        return int(cfg.group_size)
    return DEFAULT_GROUP_SIZE if cfg.algo in GROUP_ALGORITHMS else 1


def check_settings(cfg: Any) -> None:
    """Refuse settings ``cfg.algo`` does not take, with the fix: ``--group-size`` needs the native vector env and
    divides ``--n-envs``; ``--filter-reward`` is for ``supervised`` and ``raft``."""
    k = group_size(cfg)
    if k < 1:
        raise TextEnvsError(f"--group-size must be at least 1, got {k}.")
    if k > 1:
        if cfg.vec_env != "native":
            raise TextEnvsError(f"--group-size {k} needs the native vector env (--vec-env native, the default), got "
                                f"--vec-env {cfg.vec_env}.")
        if cfg.n_envs % k:
            raise TextEnvsError(f"--n-envs {cfg.n_envs} is not a multiple of --group-size {k}: use --n-envs "
                                f"{cfg.n_envs - cfg.n_envs % k or k}.")
        if cfg.algo == "supervised":
            raise TextEnvsError("--algo supervised samples nothing: leave out --group-size.")
    if cfg.filter_reward is not None and cfg.algo not in ("supervised", "raft"):
        raise TextEnvsError(f"--filter-reward is a setting of --algo supervised (the train references whose reward "
                            f"is at least T) and --algo raft (samples kept above T), not of --algo {cfg.algo}.")
