"""The Stable-Baselines3 engine's pieces: the training VecEnv (:func:`make_train_env`) with its per-prompt baseline
(:func:`attach_baseline`), the algorithm and policy (:func:`build_model`), the frozen starting model
(:func:`starting_model`) and the callbacks of a run (:class:`CurveRecorder`, :class:`TokenProgressBar`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from text_envs_app.config import TrainConfig


def make_train_env(cfg: TrainConfig):
    """The training VecEnv. Unless ``baseline="none"``, each env that scores finished texts is wrapped in
    ``SelfCriticalReward`` outside its ``Monitor`` (so logs keep the task reward), all sharing one
    ``BaselinePool`` (one batched decoding serves every env); :func:`attach_baseline` then gives it the starting
    model's greedy decoding. ``vec_env="native"`` (the default) builds the same thing as one natively vectorized
    env (``sb3_ext.vec_env.TextVecEnv``: the same episodes, rewards and infos, stepped as arrays)."""
    if cfg.vec_env == "native":
        from sb3_ext.vec_env import make_text_vec_env
        from text_envs_app.algorithms import env_baseline, group_kwargs

        baseline = {"auto": "auto", "greedy": True, "none": False}[env_baseline(cfg)]  # as _baseline_wrapper decides
        return make_text_vec_env(cfg.env, cfg.n_envs, seed=cfg.seed, env_kwargs=cfg.env_kwargs(), baseline=baseline,
                                 info_keywords=("generated_length",), **group_kwargs(cfg))
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from text_envs.wrappers import BaselinePool
    from text_envs_app.algorithms import env_baseline

    return make_vec_env(
        f"text_envs:{cfg.env}",
        n_envs=cfg.n_envs,
        seed=cfg.seed,
        env_kwargs=cfg.env_kwargs(),
        monitor_kwargs={"info_keywords": ("generated_length",)},
        wrapper_class=_baseline_wrapper,
        wrapper_kwargs={"baseline": env_baseline(cfg), "pool": BaselinePool()},
        vec_env_cls=SubprocVecEnv if cfg.vec_env == "subproc" else DummyVecEnv,
    )


def _baseline_wrapper(env: Any, baseline: str, pool: Any) -> Any:
    from text_envs.wrappers import SelfCriticalReward

    if baseline == "none" or (baseline == "auto" and getattr(env.unwrapped, "reward", None) is None):
        return env  # "auto" on a per-token task (TextCopy-v0) has no text score to compare
    return SelfCriticalReward(env, pool=pool)


def attach_baseline(venv: Any, start_lm: Any) -> None:
    """Give the envs' ``SelfCriticalReward`` the frozen starting model's greedy decoding (no-op without one)."""
    from lm_core.backends import greedy_baseline
    from text_envs.wrappers import SelfCriticalReward

    if not any(venv.env_is_wrapped(SelfCriticalReward)):
        return

    base = venv.get_attr("unwrapped", [0])[0]
    venv.set_attr("baseline_fn", greedy_baseline(start_lm, base.eos_token_id, base.pad_token_id,
                                                 base.max_new_tokens))


def algorithm_class(algo: str) -> type:
    """The SB3 class of ``--algo`` (:func:`text_envs_app.algorithms.algorithm_class`)."""
    from text_envs_app import algorithms

    return algorithms.algorithm_class(algo)


def build_model(cfg: TrainConfig, venv: Any, tensorboard_log: str | None):
    """The SB3 algorithm of ``cfg.algo`` (:func:`text_envs_app.algorithms.algorithm_kwargs` adds its own settings)
    with an :class:`~sb3_ext.LLMPolicy` of ``cfg``'s model on ``venv``, logging to ``tensorboard_log``."""
    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy

    tokenizer = venv.get_attr("tokenizer", [0])[0]
    policy_kwargs: dict[str, Any] = dict(model=cfg.model, tokenizer=tokenizer, kl_coef=cfg.kl_coefficient(),
                                         kl_target=cfg.kl_target, temperature=cfg.temperature, top_k=cfg.top_k,
                                         value_mode=cfg.value_mode, value_lr_scale=cfg.value_lr_scale,
                                         trust_remote_code=cfg.trust_remote_code,
                                         save_reference=False)  # run folders rebuild it from the start model
    if cfg.algo == "nlpo":
        policy_kwargs.update(top_p=cfg.top_p, mask_source="policy_copy")
    common: dict[str, Any] = dict(
        policy=LLMPolicy, env=venv, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps, gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
        rollout_buffer_class=EpisodeRolloutBuffer, policy_kwargs=policy_kwargs, seed=cfg.seed,
        device=cfg.device, tensorboard_log=tensorboard_log, verbose=0,
    )
    from text_envs_app.algorithms import algorithm_kwargs  # each algorithm's own settings

    return algorithm_class(cfg.algo)(**algorithm_kwargs(cfg, common))


def starting_model(model: Any, cfg: TrainConfig):
    """The frozen starting weights (the policy's KL reference, or the model as given) for the KL column."""
    ref = getattr(model.policy, "reference_model", None)
    if ref is not None:
        return ref
    from lm_core.backends import default_model, load_model

    if cfg.model:
        return load_model(cfg.model, trust_remote_code=cfg.trust_remote_code)
    import torch as th

    with th.random.fork_rng():  # a random default model (TextCopy-v0's) is rebuilt as the algorithm seeded it
        th.manual_seed(cfg.seed)
        return default_model(model.policy.V, None)[0]  # what LLMPolicy builds when no model is named


class CurveRecorder:
    """An SB3 callback (built lazily) that records the mean episode reward of every rollout."""

    @staticmethod
    def make():
        from stable_baselines3.common.callbacks import BaseCallback

        class CurveRecorder(BaseCallback):
            def __init__(self):
                super().__init__()
                self.points: list[tuple[int, float]] = []

            def _on_step(self) -> bool:
                return True

            def _on_rollout_end(self) -> None:
                buf = self.model.ep_info_buffer
                if buf:
                    self.points.append((self.num_timesteps, float(np.mean([e["r"] for e in buf]))))

        return CurveRecorder()


class TokenProgressBar:
    """An SB3 callback (built lazily) drawing a tqdm bar of generated tokens whose rate is the run's average
    tokens per second so far (tqdm ``smoothing=0``), not a recent burst: rollouts alternate with updates that
    generate nothing, so an instantaneous rate overstates the run's speed."""

    @staticmethod
    def make():
        from stable_baselines3.common.callbacks import BaseCallback
        from tqdm import tqdm

        class TokenProgressBar(BaseCallback):
            def __init__(self):
                super().__init__()
                self.pbar = None

            def _on_training_start(self) -> None:
                # a resumed run starts at its checkpoint's tokens: the bar reads N/budget, never past it
                total, done = self.locals["total_timesteps"], self.model.num_timesteps
                self.pbar = tqdm(total=total, initial=done, smoothing=0, unit=" tokens", dynamic_ncols=True,
                                 mininterval=0.5,
                                 bar_format="training {percentage:3.0f}%|{bar}| {n:,}/{total:,} tokens "
                                            "[{elapsed}<{remaining}, {rate_noinv_fmt} average]")

            def _on_step(self) -> bool:
                self.pbar.update(self.training_env.num_envs)
                return True

            def _on_training_end(self) -> None:
                if self.pbar is not None:
                    self.pbar.refresh()
                    self.pbar.close()

        return TokenProgressBar()
