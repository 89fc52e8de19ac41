"""Stable-Baselines3's internals as state: the one place that reads and writes them for an exact resume.

SB3 keeps a run's step state in private attributes of its algorithm (``_last_obs``, ``_n_updates``...) and of its
``Monitor`` and ``DummyVecEnv``, with no method to save it apart from the algorithm's zip (whose copy may be taken
in the middle of a rollout, and whose ``data`` entries are pickles). This module names those attributes, with
why each is needed, and gives them :class:`text_envs.state.Stateful`'s two methods:

* :class:`AlgorithmStepState`: an algorithm's counters, last observation and episode-info windows
  (:data:`ALGORITHM_STEP_ATTRIBUTES`) and the random generators of its spaces;
* :func:`sb3_adapters`: the state of SB3's env-side classes (``Monitor``, ``DummyVecEnv``).

Our own pieces (``LLMPolicy``, ``EpisodeRolloutBuffer``, ``TextVecEnv``, the group algorithms) define
``get_state`` / ``set_state`` themselves. If SB3 renames one of these attributes, this module is what changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from text_envs.state import AttributeAdapter, attribute_state, set_attribute_state

__all__ = ["ALGORITHM_STEP_ATTRIBUTES", "AlgorithmStepState", "sb3_adapters"]

#: the algorithm's attributes that change while it steps (SB3's ``BaseAlgorithm``/``OnPolicyAlgorithm``), taken at
#: a rollout boundary; left out of the deliverable SB3 zip (``text_envs_app.checkpoint.save_model_file``)
ALGORITHM_STEP_ATTRIBUTES = (
    "num_timesteps",  # tokens so far: the budget and the schedules count from it
    "_episode_num",
    "_n_updates",  # gradient steps so far (logged as train/n_updates)
    "_last_obs",  # the envs' current observation: without it ``learn`` resets the envs, starting new episodes
    "_last_episode_starts",  # which envs start an episode at the next step (GAE and the buffers read it)
    "_last_original_obs",  # VecNormalize's unnormalized observation (None without it)
    "ep_info_buffer",  # the window of finished episodes logged as rollout/ep_rew_mean
    "ep_success_buffer",
    "_current_progress_remaining",  # the learning-rate and clip-range schedules' position
    "_num_timesteps_at_start",
)
#: the spaces whose random generator ``sample()`` draws from (SB3 seeds them; a sample would differ otherwise)
SPACES = ("action_space", "observation_space")


class AlgorithmStepState:
    """An SB3 algorithm's step state as a :class:`text_envs.state.Stateful`.

    ``get_state()`` returns ``{"algo": {name: value}, "spaces": {name: generator or None}}`` (the layout of a
    checkpoint's state); ``set_state`` puts it back into an algorithm built as the saved one was, before
    ``learn(..., reset_num_timesteps=False)``.

    :param model: the SB3 algorithm (``PPO``, ``sb3_ext.GRPO``...).
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def get_state(self) -> dict[str, Any]:
        return {
            "algo": attribute_state(self.model, ALGORITHM_STEP_ATTRIBUTES),
            # gymnasium's Space keeps its generator in _np_random (None until seeded or sampled); the np_random
            # property would create one
            "spaces": {name: attribute_state(getattr(self.model, name), ("_np_random",))["_np_random"]
                       for name in SPACES},
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        set_attribute_state(self.model, ALGORITHM_STEP_ATTRIBUTES, state["algo"])
        for name in SPACES:
            generator = state["spaces"].get(name)
            if generator is not None:
                set_attribute_state(getattr(self.model, name), ("_np_random",), {"_np_random": generator})


def sb3_adapters() -> dict[type, AttributeAdapter]:
    """The state of SB3's env-side classes that a training VecEnv stacks (their attributes: neither has
    ``get_state``). ``Monitor``: its episode records (``rollout/ep_rew_mean`` and the ``info["episode"]`` of
    the episodes in progress); ``DummyVecEnv``: the reset seeds, options and infos it holds for its next reset
    (its step buffers are overwritten at every step)."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    return {
        Monitor: AttributeAdapter(("t_start", "rewards", "needs_reset", "episode_returns", "episode_lengths",
                                   "episode_times", "total_steps", "current_reset_info")),
        DummyVecEnv: AttributeAdapter(("reset_infos", "_seeds", "_options")),
    }
