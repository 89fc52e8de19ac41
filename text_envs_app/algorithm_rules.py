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
ANCHOR_ALGORITHMS = ("grpo", "rloo", "reinforce")
"""The policy-gradient algorithms that take a KL anchor (``--kl-anchor``)."""
FREEZE_ALGORITHMS = ("grpo", "rloo", "reinforce", "raft", "dpo")
"""The algorithms that leave submodules untrained (``--freeze``: sb3_ext's group algorithms)."""


def frozen_modules(cfg: Any) -> tuple[str, ...]:
    """``--freeze``'s submodule names (empty when not given)."""
    return tuple(name.strip() for name in (cfg.freeze or "").split(",") if name.strip())
DEFAULT_GROUP_SIZE = 4
"""``--group-size`` of a group algorithm when not given (TRL's GRPO writes 8 per prompt; 4 keeps a rollout's
prompts varied with 32 envs)."""


def group_size(cfg: Any) -> int:
    """``cfg.group_size``, or when None :data:`DEFAULT_GROUP_SIZE` for a group algorithm and 1 for the others."""
    if cfg.group_size is not None:
        return int(cfg.group_size)
    return DEFAULT_GROUP_SIZE if cfg.algo in GROUP_ALGORITHMS else 1


KL_MODES = {"rloo": ("reward", "exact"), "grpo": ("loss", "reward")}
"""``--kl-mode`` values of the algorithms that take one (GRPO's "exact" needs unscaled advantages, which the
command line does not set)."""


def check_settings(cfg: Any) -> None:
    """Refuse settings ``cfg.algo`` does not take, with the fix: ``--group-size`` needs the native vector env and
    divides ``--n-envs``; ``--filter-reward`` is for ``supervised`` and ``raft``; LoRA's (:func:`check_lora`)."""
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
    if cfg.kl_anchor and (cfg.algo not in ANCHOR_ALGORITHMS or cfg.kl_anchor < 0):
        raise TextEnvsError(f"--kl-anchor is a coefficient >= 0 of --algo {', '.join(ANCHOR_ALGORITHMS)}, got "
                            f"{cfg.kl_anchor} with --algo {cfg.algo}: leave it out or change --algo.")
    if cfg.kl_mode is not None and cfg.kl_mode not in KL_MODES.get(cfg.algo, ()):
        raise TextEnvsError(f"--kl-mode {cfg.kl_mode} is not a setting of --algo {cfg.algo}: it takes "
                            + "; ".join(f"--algo {a}: {', '.join(m)}" for a, m in KL_MODES.items()) + ".")
    if cfg.freeze is not None and (cfg.algo not in FREEZE_ALGORITHMS or not frozen_modules(cfg)):
        raise TextEnvsError(f"--freeze names the model's submodules to leave untrained, comma separated (e.g. "
                            f"encoder,shared), for --algo {', '.join(FREEZE_ALGORITHMS)}; got {cfg.freeze!r} with "
                            f"--algo {cfg.algo}.")
    check_lora(cfg)
    if cfg.filter_reward is not None and cfg.algo not in ("supervised", "raft"):
        raise TextEnvsError(f"--filter-reward is a setting of --algo supervised (the train references whose reward "
                            f"is at least T) and --algo raft (samples kept above T), not of --algo {cfg.algo}.")


def check_lora(cfg: Any) -> None:
    """Refuse LoRA settings that cannot be met: a rank below 1, --lora-alpha or --lora-target-modules without
    --lora-r, and --freeze beside it (both choose what trains)."""
    if cfg.lora_r is None:
        given = [f"--{n.replace('_', '-')}" for n in ("lora_alpha", "lora_target_modules") if getattr(cfg, n) is not None]
        if given:
            raise TextEnvsError(f"{' and '.join(given)} shape LoRA adapters, which --lora-r turns on: add --lora-r R "
                                "(e.g. 8), or leave them out.")
        return
    if cfg.lora_r < 1 or (cfg.lora_alpha is not None and cfg.lora_alpha < 1):
        raise TextEnvsError(f"--lora-r and --lora-alpha must be at least 1, got {cfg.lora_r} and {cfg.lora_alpha}.")
    if cfg.lora_target_modules is not None and not cfg.lora_config().get("target_modules"):
        raise TextEnvsError(f"--lora-target-modules names linear layers, comma separated (e.g. q,v), got "
                            f"{cfg.lora_target_modules!r}.")
    if cfg.freeze is not None:
        raise TextEnvsError(f"--freeze {cfg.freeze} and --lora-r {cfg.lora_r} both choose what trains (LoRA trains "
                            "its adapters only, every weight of the model stays): leave one of them out.")
