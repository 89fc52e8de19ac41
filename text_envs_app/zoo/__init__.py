"""rl-zoo3 hyperparameters for every registered env, from the same settings ``text-envs train`` uses.

    pip install 'text-envs[zoo]'
    python -m rl_zoo3.train --algo ppo --env TextCopy-v0 --gym-packages text_envs --conf-file text_envs_app.zoo.ppo
    python -m rl_zoo3.enjoy --algo ppo --env TextCopy-v0 --gym-packages text_envs -f logs --no-render

rl-zoo3 imports a ``--conf-file`` that is neither ``.yml`` nor ``.py`` as a Python module and reads its
``hyperparams`` dict (env id -> the algorithm's constructor keywords plus ``n_envs``, ``n_timesteps``,
``env_kwargs``): :mod:`text_envs_app.zoo.ppo`, :mod:`~text_envs_app.zoo.a2c` and :mod:`~text_envs_app.zoo.trpo`
are those modules. Each entry is :func:`zoo_hyperparams`: ``policy="sb3_ext.LLMPolicy"``, the
``TrainConfig`` defaults with the env's and algorithm's (``text_envs_app.algorithms``), the KL penalty, and
``EpisodeRolloutBuffer`` (one teacher-forced forward per text in the update).

What rl-zoo3 does not give: the start model's greedy text as a per-prompt baseline (``text-envs train``'s
``SelfCriticalReward``; here the value head is the only baseline), the native vector env (rl-zoo3 builds
``DummyVecEnv``/``SubprocVecEnv`` over single envs: the same episodes, slower) and the before/after table.
"""

from __future__ import annotations

from typing import Any

__all__ = ["zoo_hyperparams", "ZOO_ALGORITHMS"]

ZOO_ALGORITHMS = ("ppo", "a2c", "trpo")
"""The rl-zoo3 algorithms with a shipped hyperparameter module (rl-zoo3's own TRPO is sb3-contrib's)."""


def zoo_hyperparams(algo: str, env_ids: Any = None) -> dict[str, dict[str, Any]]:
    """``{env_id: hyperparameters}`` of rl-zoo3 for ``algo`` on ``env_ids`` (default: every registered env).

    :param algo: ``"ppo"``, ``"a2c"`` or ``"trpo"``.
    :param env_ids: env ids; None: ``text_envs.ENV_IDS``.
    """
    import text_envs
    from sb3_ext import EpisodeRolloutBuffer
    from text_envs.errors import unknown_name
    from text_envs_app.algorithms import make_config

    if algo not in ZOO_ALGORITHMS:
        raise unknown_name("rl-zoo3 algorithm", algo, ZOO_ALGORITHMS)
    out: dict[str, dict[str, Any]] = {}
    for env_id in env_ids if env_ids is not None else sorted(text_envs.ENV_IDS):
        cfg = make_config(env=env_id, algo=algo, steps=4096 if env_id == "TextCopy-v0" else 32_768)
        params: dict[str, Any] = dict(
            policy="sb3_ext.LLMPolicy", n_timesteps=cfg.steps, n_envs=cfg.n_envs, n_steps=cfg.n_steps,
            learning_rate=cfg.learning_rate, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
            rollout_buffer_class=EpisodeRolloutBuffer, env_kwargs=cfg.env_kwargs(),
            policy_kwargs=dict(kl_coef=cfg.kl_coefficient(), value_mode=cfg.value_mode),
        )
        if algo == "ppo":
            params.update(batch_size=cfg.rollout_batch_size(), n_epochs=cfg.n_epochs, clip_range=cfg.clip_range,
                          ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm)
        elif algo == "a2c":  # Adam, as text-envs train (RMSprop's first steps knock the pretrained LM away)
            params.update(ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
                          use_rms_prop=False)
        else:
            params.update(batch_size=cfg.rollout_batch_size(), target_kl=0.01)
        out[env_id] = params
    return out
