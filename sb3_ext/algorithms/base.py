"""The skeleton shared by the group algorithms: rollouts of complete texts, gathered into complete groups.

SB3's ``OnPolicyAlgorithm`` drives ``learn``: :meth:`GroupRolloutAlgorithm.collect_rollouts` steps the envs for
``n_steps`` steps with the policy's cached decoding (as PPO does), keeps each env's tokens and the log-probabilities
they were sampled with, and when an env's text ends stores it as an *episode*: its prompt, its tokens, their
behaviour log-probs and its reward (the task reward's return, ``info["episode"]["r"]``). Episodes wait until every
text of their group (``env.group_size`` consecutive envs writing for the same prompt, see
:func:`sb3_ext.make_text_vec_env`) has ended; only complete groups are handed to :meth:`train`, so a rollout boundary
never cuts a group's statistics. A group still being written at the boundary is carried to the next rollout with its
tokens' behaviour log-probs (the clipped ratio of the policy-gradient losses corrects for the update between).

Subclasses implement :meth:`GroupRolloutAlgorithm.train_groups` (the update on complete groups); the per-episode
teacher-forced forward is :meth:`GroupRolloutAlgorithm.episode_log_probs` (one forward per text, as
``EpisodeRolloutBuffer`` evaluates PPO's minibatches).

Budget: ``num_timesteps`` counts env steps times ``n_envs`` exactly as for SB3's PPO (a step of an env that waits
for its group counts too: the policy ran for it).

Shapes: ``E`` episodes, ``G`` groups of ``k`` texts, ``N`` generated tokens of a batch, ``P`` prompt length.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from lm_core.episodes import EpisodeBatch
from text_envs.errors import TextEnvsError

__all__ = ["GroupRolloutAlgorithm", "Episode", "episode_batch", "native_vec_env"]

SelfGroupRolloutAlgorithm = TypeVar("SelfGroupRolloutAlgorithm", bound="GroupRolloutAlgorithm")

#: one finished text: ``prompt_ids``/``prompt_mask`` (P,), ``tokens`` (L,) int64, ``log_probs`` (L,) float32 (of
#: the policy that sampled them), ``reward`` (the task return), ``baseline`` (the env's per-prompt baseline reward,
#: NaN without one), ``example`` (the example index, -1 if unknown)
Episode = dict[str, Any]


def native_vec_env(env: Any) -> Any:
    """The :class:`sb3_ext.TextVecEnv` under ``env``'s VecEnv wrappers (``None`` for other VecEnvs)."""
    while env is not None:
        if hasattr(env, "idle_rows") and hasattr(env, "group_size"):
            return env
        env = getattr(env, "venv", None)
    return None


def episode_batch(episodes: Sequence[Episode], device: th.device | str) -> EpisodeBatch:
    """The :class:`~lm_core.episodes.EpisodeBatch` of whole texts: every generated token is an output, episode by
    episode, in order (so ``N = sum of the lengths``)."""
    lengths = [len(ep["tokens"]) for ep in episodes]
    tokens = np.zeros((len(episodes), max(lengths)), dtype=np.int64)  # (E, L)
    for i, ep in enumerate(episodes):
        tokens[i, : lengths[i]] = ep["tokens"]
    return EpisodeBatch(
        prompt_ids=th.as_tensor(np.stack([ep["prompt_ids"] for ep in episodes]), device=device),
        prompt_mask=th.as_tensor(np.stack([ep["prompt_mask"] for ep in episodes]), device=device),
        tokens=th.as_tensor(tokens, device=device),
        out_episode=th.as_tensor(np.repeat(np.arange(len(episodes)), lengths), device=device),
        out_pos=th.as_tensor(np.concatenate([np.arange(n) for n in lengths]), device=device),
    )


class GroupRolloutAlgorithm(OnPolicyAlgorithm):
    """SB3 on-policy skeleton for ``LLMPolicy`` whose updates use complete texts and groups (see the module docstring).

    :param policy: ``LLMPolicy`` (or its name registered by a subclass)
    :param env: the text env: a :func:`sb3_ext.make_text_vec_env` VecEnv (with ``group_size`` for the group methods)
        or any SB3 VecEnv whose infos carry ``Monitor``'s ``episode`` record (then one text per group)
    :param learning_rate: Adam's learning rate (or a schedule of the remaining progress)
    :param n_steps: env steps per rollout; ``None``: the env's token budget ``max_new_tokens`` (about one text per env)
    :param batch_size: texts per minibatch (an optimizer step each); ``None``: all the rollout's texts in one
    :param n_epochs: passes over the rollout's texts per update
    :param max_grad_norm: gradient clipping norm
    :param frozen_modules: names of the LM's submodules (``model.get_submodule(name)``) whose weights training leaves
        as they are, e.g. ``("encoder", "shared")`` for a T5: its encoder and token embedding (the tied LM head
        too), so the prompts' representations stay the start model's (on prompts worded unlike the training ones
        too: guides/main_job.md, generalisation); empty: every weight is trained
    :param reference: the algorithm needs the frozen start model (its ``beta`` > 0, or DPO): the policy is built
        with it (``policy_kwargs["kl_coef"]`` is set to ``reference_coef`` for that; the policy applies no penalty
        of its own here, only PPO's ``EpisodeRolloutBuffer`` would)
    :param reference_coef: the value given to the policy's ``kl_coef`` when ``reference`` is set
    :param stats_window_size: episodes averaged in ``rollout/ep_rew_mean``
    :param tensorboard_log: SB3's TensorBoard folder
    :param policy_kwargs: ``LLMPolicy``'s arguments (``model``, ``tokenizer``, ``temperature``, ``lora``...)
    :param verbose: SB3's verbosity
    :param seed: random seed
    :param device: torch device
    :param _init_setup_model: build the policy now (SB3's ``load`` passes False)
    """

    def __init__(
        self,
        policy: Any,
        env: Any,
        learning_rate: float | Any = 1e-5,
        n_steps: int | None = None,
        batch_size: int | None = None,
        n_epochs: int = 1,
        max_grad_norm: float = 1.0,
        frozen_modules: Sequence[str] = (),
        reference: bool = False,
        reference_coef: float = 1.0,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        policy_kwargs = dict(policy_kwargs or {})
        for key in ("kl_coef", "kl_target"):
            if policy_kwargs.get(key):
                raise TextEnvsError(
                    f"{type(self).__name__} takes the KL coefficient itself (beta=...), not policy_kwargs[{key!r}] "
                    f"(LLMPolicy's kl_coef is PPO's reward penalty): pass beta to {type(self).__name__}.")
        if reference:
            policy_kwargs["kl_coef"] = float(reference_coef)
        super().__init__(
            policy, env, learning_rate=learning_rate, n_steps=n_steps or 1, gamma=1.0, gae_lambda=1.0, ent_coef=0.0,
            vf_coef=0.0, max_grad_norm=max_grad_norm, use_sde=False, sde_sample_freq=-1,
            stats_window_size=stats_window_size, tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs,
            verbose=verbose, seed=seed, device=device, _init_setup_model=False,
            supported_action_spaces=(spaces.Discrete,),
        )
        if batch_size is not None and batch_size < 1:
            raise TextEnvsError(f"expected batch_size >= 1 texts per minibatch (or None: all), got {batch_size}")
        if n_epochs < 1:
            raise TextEnvsError(f"expected n_epochs >= 1, got {n_epochs}")
        self.batch_size, self.n_epochs = batch_size, int(n_epochs)
        if isinstance(frozen_modules, str):
            raise TextEnvsError(f"expected frozen_modules as a sequence of submodule names, e.g. ({frozen_modules!r},), "
                                f"got the string {frozen_modules!r}")
        self.frozen_modules = tuple(frozen_modules)
        if n_steps is None and self.env is not None:
            n_steps = int(self.observation_space["generated_ids"].shape[0])  # type: ignore[index]
        if n_steps is not None and n_steps < 1:
            raise TextEnvsError(f"expected n_steps >= 1 env steps per rollout, got {n_steps}")
        self.n_steps = int(n_steps or 1)
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------------------------------------- setup
    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.rollout_buffer = None  # texts are kept as episodes (below), not per step
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs)
        self.policy = self.policy.to(self.device)
        self._freeze_modules()
        self.group_size = getattr(self, "group_size", 1)  # SB3's load without an env: the saved one
        if self.env is not None:
            native = native_vec_env(self.env)
            self.group_size = int(native.group_size) if native is not None else 1
            if self.n_envs % self.group_size:
                raise TextEnvsError(f"n_envs={self.n_envs} is not a multiple of group_size={self.group_size}")
        self._clear_episodes()

    def _freeze_modules(self) -> None:
        """Take the weights of ``frozen_modules`` out of training: no gradient, so Adam leaves them alone. A name with
        ``*`` is a pattern (``fnmatch``) over the model's dotted submodule names, e.g. ``decoder.block.*.layer.0``
        (every decoder block's self-attention, at any depth of model); it must match at least one."""
        lm = self.policy.model
        for name in getattr(self, "frozen_modules", ()):  # models saved before the option have none
            if "*" in name:
                modules = [m for n, m in lm.named_modules() if n and fnmatch.fnmatchcase(n, name)]
                if not modules:
                    raise TextEnvsError(f"frozen_modules: no submodule of the model matches {name!r} (dotted names as "
                                        "in model.named_modules(), '*' for any part, e.g. 'decoder.block.*.layer.0')")
            else:
                try:
                    modules = [lm.get_submodule(name)]
                except AttributeError:
                    children = [n for n, _ in lm.named_children()]
                    raise TextEnvsError(f"frozen_modules: the model has no submodule {name!r}; its top-level "
                                        f"submodules are {children} (dotted names reach deeper, e.g. "
                                        "'decoder.block.0'; '*' matches any part, e.g. 'decoder.block.*.layer.0')"
                                        ) from None
            for module in modules:
                for parameter in module.parameters():
                    parameter.requires_grad_(False)

    def _require_groups(self, num_generations: int | None, why: str) -> None:
        """Refuse an env whose groups cannot serve a method that compares the texts of a prompt (``why`` says
        what it compares), and a ``num_generations`` other than the env's ``group_size``."""
        if self.env is None:
            return
        if num_generations is not None and num_generations != self.group_size:
            raise TextEnvsError(f"num_generations={num_generations} but the env writes groups of {self.group_size}: "
                                f"build it with make_text_vec_env(..., group_size={num_generations})")
        if self.group_size < 2:
            raise TextEnvsError(f"{why}: build the env with make_text_vec_env(env_id, n_envs, group_size=k), "
                                "k >= 2 dividing n_envs")

    def _clear_episodes(self) -> None:
        n = getattr(self, "n_envs", None) or 0
        self._row_tokens: list[list[int]] = [[] for _ in range(n)]
        self._row_log_probs: list[list[float]] = [[] for _ in range(n)]
        self._pending: dict[int, list[Episode | None]] = {}  # group -> its ended texts, until all k have ended
        self._ready: list[list[Episode]] = []  # complete groups of this rollout

    def _excluded_save_params(self) -> list[str]:
        # episodes in progress are resume state (get_state), not settings
        return [*super()._excluded_save_params(), "_row_tokens", "_row_log_probs", "_pending", "_ready"]

    def set_env(self, env: Any, force_reset: bool = True) -> None:
        """SB3's ``set_env``; the new env must write groups of this model's ``group_size``."""
        native = native_vec_env(env)
        group_size = int(native.group_size) if native is not None else 1
        if group_size != getattr(self, "group_size", group_size):
            raise TextEnvsError(f"the new env has group_size={group_size}, this model was built for "
                                f"{self.group_size}: build the env with make_text_vec_env(..., group_size="
                                f"{self.group_size})")
        super().set_env(env, force_reset)
        self.group_size = group_size
        if force_reset or len(self._row_tokens) != self.n_envs:
            self._clear_episodes()

    # ------------------------------------------------------------------------------------------------- state
    def get_state(self) -> dict[str, Any]:
        """The texts in progress and the ended texts of unfinished groups, as plain data (for an exact resume:
        ``text_envs_app.checkpoint`` stores it at a rollout boundary; :meth:`set_state` puts it back)."""
        return {
            "row_tokens": [np.asarray(t, dtype=np.int64) for t in self._row_tokens],
            "row_log_probs": [np.asarray(t, dtype=np.float32) for t in self._row_log_probs],
            "pending": [[g, [None if ep is None else dict(ep) for ep in eps]] for g, eps in sorted(self._pending.items())],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned (on a model built like the saved one)."""
        if len(state["row_tokens"]) != self.n_envs:
            raise TextEnvsError(f"the saved state is for {len(state['row_tokens'])} envs, this model has {self.n_envs}")
        self._row_tokens = [list(map(int, t)) for t in state["row_tokens"]]
        self._row_log_probs = [list(map(float, t)) for t in state["row_log_probs"]]
        self._pending = {int(g): [None if ep is None else dict(ep) for ep in eps] for g, eps in state["pending"]}
        self._ready = []

    # ------------------------------------------------------------------------------------------------- rollouts
    def collect_rollouts(self, env: VecEnv, callback: BaseCallback, rollout_buffer: Any, n_rollout_steps: int) -> bool:
        """Step the envs ``n_rollout_steps`` times; the groups whose texts all ended go to :meth:`train`."""
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        native = native_vec_env(env)
        callback.on_rollout_start()
        self.on_rollout_start()
        n_steps = 0
        while n_steps < n_rollout_steps:
            idle = native.idle_rows.copy() if native is not None else np.zeros(env.num_envs, dtype=bool)
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                actions, _, log_probs = self.sampling_forward(obs_tensor)
            actions = actions.cpu().numpy()
            log_probs = log_probs.float().cpu().numpy()
            new_obs, rewards, dones, infos = env.step(actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            self._record_step(actions, log_probs, idle, dones, infos)
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def on_rollout_start(self) -> None:
        """Hook before a rollout's first step (e.g. DPO's offline mode swaps in the start weights)."""

    def sampling_forward(self, obs: Any) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The rollout's policy step: actions (B,), values (B, 1), log-probs (B,)."""
        return self.policy(obs)

    def _record_step(self, actions: np.ndarray, log_probs: np.ndarray, idle: np.ndarray, dones: np.ndarray,
                     infos: list[dict[str, Any]]) -> None:
        for row in np.flatnonzero(~idle).tolist():
            self._row_tokens[row].append(int(actions[row]))
            self._row_log_probs[row].append(float(log_probs[row]))
        k = self.group_size
        for row in np.flatnonzero(dones).tolist():
            info = infos[row]
            if "episode" not in info or "terminal_observation" not in info:
                raise TextEnvsError(
                    f"{type(self).__name__} reads each finished text's reward from Monitor's info['episode'] and its "
                    "prompt from info['terminal_observation']: build the env with sb3_ext.make_text_vec_env (or "
                    "SB3's make_vec_env, which wraps each env in Monitor).")
            last = info["terminal_observation"]
            n = int(np.asarray(last["generated_mask"]).sum())
            tokens = self._row_tokens[row]
            if len(tokens) != n:  # the text began before this model saw the env (e.g. a new env): not ours whole
                tokens = None
            episode: Episode | None = None
            if tokens is not None:
                episode = {
                    "prompt_ids": np.asarray(last["prompt_ids"], dtype=np.int64),
                    "prompt_mask": np.asarray(last["prompt_mask"], dtype=np.int64),
                    "tokens": np.asarray(tokens, dtype=np.int64),
                    "log_probs": np.asarray(self._row_log_probs[row], dtype=np.float32),
                    "reward": float(info["episode"]["r"]),
                    "baseline": float(info.get("baseline_reward", np.nan)),
                    "example": int(info.get("example_index", -1)),
                }
            group = row // k
            members = self._pending.setdefault(group, [])
            members.append(episode)  # None: a text we did not see whole; its group is not scored
            if len(members) == k:
                done = self._pending.pop(group)
                if all(ep is not None for ep in done):
                    self._ready.append(done)
            self._row_tokens[row] = []
            self._row_log_probs[row] = []

    # ------------------------------------------------------------------------------------------------- update
    def train(self) -> None:
        """Update on the complete groups of the last rollout (none: no update, logged as ``train/groups`` 0)."""
        groups, self._ready = self._ready, []
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        self.logger.record("train/groups", len(groups))
        if groups:
            rewards = np.array([[ep["reward"] for ep in g] for g in groups], dtype=np.float64)  # (G, k)
            self.logger.record("rollout/group_reward_mean", float(rewards.mean()))
            self.logger.record("rollout/group_reward_std", float(rewards.std(axis=1).mean()))
            self.logger.record("rollout/text_length", float(np.mean([len(ep["tokens"]) for g in groups for ep in g])))
            self.train_groups(groups)
        self.policy.set_training_mode(False)
        self.after_update()

    def train_groups(self, groups: list[list[Episode]]) -> None:
        """The update on complete groups (each a list of ``group_size`` episodes, in env order)."""
        raise NotImplementedError

    def after_update(self) -> None:
        """Hook after each update (e.g. REINFORCE's greedy baseline follows the new weights)."""

    def minibatches(self, n: int) -> list[np.ndarray]:
        """Indices of ``n`` items shuffled (NumPy's global generator, as SB3's buffers), cut in ``batch_size``."""
        order = np.random.permutation(n)
        size = n if self.batch_size is None else self.batch_size
        return [order[i: i + size] for i in range(0, n, size)]

    def episode_log_probs(self, episodes: Sequence[Episode]) -> tuple[th.Tensor, th.Tensor, EpisodeBatch]:
        """The policy's log-probs (N,) and entropies (N,) of every token of ``episodes``, teacher-forced (one forward
        per text, with gradients), and the batch."""
        batch = episode_batch(episodes, self.device)
        actions = batch.taken_actions
        _, log_prob, entropy = self.policy.evaluate_actions(batch, actions)
        return log_prob, entropy, batch

    @th.no_grad()
    def reference_log_probs(self, episodes: Sequence[Episode]) -> th.Tensor:
        """The frozen start model's log-probs (N,) of every token of ``episodes`` (needs ``reference=True``)."""
        batch = episode_batch(episodes, self.device)
        return self.policy.reference_log_probs(batch, batch.taken_actions)

    def optimizer_step(self, loss: th.Tensor) -> float:
        """Backward, clip, step; returns the gradient norm before clipping."""
        self.policy.optimizer.zero_grad()
        loss.backward()
        norm = th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self.policy.optimizer.step()
        self._n_updates += 1
        return float(norm)

    def learn(self: SelfGroupRolloutAlgorithm, total_timesteps: int, callback: Any = None, log_interval: int = 1,
              tb_log_name: str | None = None, reset_num_timesteps: bool = True,
              progress_bar: bool = False) -> SelfGroupRolloutAlgorithm:
        """SB3's ``learn``: rollouts of ``n_steps`` steps and updates until ``total_timesteps`` env steps."""
        return super().learn(total_timesteps=total_timesteps, callback=callback, log_interval=log_interval,
                             tb_log_name=tb_log_name or type(self).__name__, reset_num_timesteps=reset_num_timesteps,
                             progress_bar=progress_bar)
