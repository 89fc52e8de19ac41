"""LLMPolicy: a Hugging Face language model as an SB3 actor-critic (one action = one token).

Shapes: ``B`` envs, ``E`` episodes, ``N`` tokens, ``P`` prompt length, ``T`` generated length,
``V`` vocabulary (``action_space.n``), ``H`` hidden size.

How SB3 drives it (PPO / A2C / sb3-contrib TRPO, stock classes):

* ``forward(obs)`` once per token during rollouts: the cached path (:class:`~lm_core.backends.DecodeState`)
  keeps encoder outputs and KV caches per env row, so a step costs one decoder token, like ``generate``.
* ``evaluate_actions`` / ``get_distribution`` / ``predict_values`` on an :class:`~lm_core.episodes.EpisodeBatch`
  (from :class:`~sb3_ext.buffers.EpisodeRolloutBuffer`) run one teacher-forced forward per episode. On plain
  observations (a shuffled minibatch of the stock ``DictRolloutBuffer``) they first group the observations into
  prefix chains (:meth:`~lm_core.episodes.EpisodeBatch.from_observations`: same prompt, generated ids that are
  prefixes of one another, i.e. the steps of one episode) and run one teacher-forced forward per chain: the same
  outputs as one forward per observation (``group_observations=False``, the path before) to float error.
* Which of the two: when SB3's shuffled minibatches would hold few steps of each episode (SB3's defaults,
  ``PPO(LLMPolicy, env)``: 64 of 2048 steps) and the user named no buffer, the policy swaps the algorithm's
  ``DictRolloutBuffer`` for an :class:`~sb3_ext.buffers.EpisodeRolloutBuffer`; a ``DictRolloutBuffer`` the user
  named stays, with a warning that says what it costs (:meth:`LLMPolicy._choose_minibatches`,
  docs/guides/performance.md).
* ``kl_coef > 0`` (or ``kl_target``) needs :class:`~sb3_ext.buffers.EpisodeRolloutBuffer`, which applies the
  penalty: when the algorithm building the policy has SB3's default ``DictRolloutBuffer`` the policy replaces it
  by one (with a warning); any other buffer is refused with an error.

Parameters that are frozen (reference model, NLPO mask model, a LoRA base) stay in ``state_dict`` but are not
returned by ``parameters()``: the optimizer, gradient clipping and TRPO's per-parameter gradients only see
trainable tensors.  Value parameters have "value" in their names, as TRPO expects.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch.distributions import Categorical

from lm_core.backends import DecodeState, LMBackend, default_model, load_model, make_backend
from lm_core.episodes import OBS_KEYS, EpisodeBatch, sequence_log_probs, teacher_forced_outputs, trimmed_tokens
from lm_core.kl import KL_ESTIMATORS, kl_estimate, make_kl_controller
from lm_core.lora import LoraReference, merge_lora_adapters
from lm_core.sampling import distribution_logits, sample_tokens, support_mask
from lm_core.static_cache import StaticDecodeState, check_compile_option
from lm_core.tokenizer import deserialize_tokenizer, serialize_tokenizer
from text_envs.errors import TextEnvsError, TokenizerMismatchError, unknown_name

from .buffers import EpisodeRolloutBuffer

__all__ = ["LLMPolicy", "ObservationSpaceError", "VALUE_MODES", "MASK_SOURCES", "TAKEN_ACTIONS_KEY"]

# engine-neutral pieces now in lm_core, kept importable here under their old names
_serialize_tokenizer, _deserialize_tokenizer = serialize_tokenizer, deserialize_tokenizer
_merge_lora_adapters = merge_lora_adapters

#: optional observation key: the actions taken at a minibatch's observations (``sb3_ext.TRPO`` adds it), so that
#: ``get_distribution`` keeps each taken token inside the top-k/top-p support as ``evaluate_actions`` does
TAKEN_ACTIONS_KEY = "taken_actions"

VALUE_MODES = ("shared", "detached", "separate")
MASK_SOURCES = ("reference", "policy_copy")
_DTYPES = {"float32": th.float32, "bfloat16": th.bfloat16, "float16": th.float16}


class ObservationSpaceError(TextEnvsError):
    """An observation or action space that LLMPolicy cannot read."""


def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> tuple[int, int, int]:
    fix = "LLMPolicy reads text_envs observations (docs/ARCHITECTURE.md): make the env with text_envs"
    if not isinstance(observation_space, spaces.Dict):
        raise ObservationSpaceError(
            f"expected a Dict observation space with keys {list(OBS_KEYS)}, got {type(observation_space).__name__}. {fix}"
        )
    missing = [k for k in OBS_KEYS if k not in observation_space.spaces]
    if missing:
        raise ObservationSpaceError(
            f"expected observation keys {list(OBS_KEYS)}, got {list(observation_space.spaces)} "
            f"(missing {missing}). {fix}"
        )
    for key in OBS_KEYS:
        sp = observation_space[key]
        if not isinstance(sp, spaces.Box) or len(sp.shape) != 1 or not np.issubdtype(sp.dtype, np.integer):
            raise ObservationSpaceError(
                f"expected observation {key!r} to be a 1-D integer Box, got {sp}. {fix}"
            )
    P, T = observation_space["prompt_ids"].shape[0], observation_space["generated_ids"].shape[0]
    if observation_space["prompt_mask"].shape != (P,) or observation_space["generated_mask"].shape != (T,):
        raise ObservationSpaceError(
            f"expected prompt_mask of shape ({P},) and generated_mask of shape ({T},), got "
            f"{observation_space['prompt_mask'].shape} and {observation_space['generated_mask'].shape}. {fix}"
        )
    if not isinstance(action_space, spaces.Discrete):
        raise ObservationSpaceError(f"expected a Discrete(V) action space (one token per step), got {action_space}")
    return P, T, int(action_space.n)


def _find_algorithm() -> Any:
    """The SB3 algorithm whose ``_setup_model`` is constructing this policy, if any (looked up the stack).

    SB3 saves the algorithm's ``policy_kwargs`` in its zip and rebuilds the policy from them at ``load``: the
    policy records its model config there so that ``PPO.load`` rebuilds offline, without a hub name.
    """
    from stable_baselines3.common.base_class import BaseAlgorithm

    frame = inspect.currentframe()
    try:
        frame = frame.f_back if frame is not None else None
        for _ in range(8):
            if frame is None:
                return None
            obj = frame.f_locals.get("self")
            if isinstance(obj, BaseAlgorithm):
                return obj
            frame = frame.f_back
        return None
    finally:
        del frame


#: :func:`_named_buffer_class` when no constructor of the algorithm is on the stack (``PPO.load``, a hand-made
#: ``_setup_model`` call): whatever buffer it holds counts as chosen
UNKNOWN_CHOICE = object()


def _named_buffer_class(algo: Any) -> Any:
    """The ``rollout_buffer_class`` argument the algorithm's constructor received: a class, ``None`` (left out:
    SB3 then falls back to its ``DictRolloutBuffer``, so the attribute alone cannot tell) or ``UNKNOWN_CHOICE``."""
    frame = inspect.currentframe()
    try:
        frame = frame.f_back if frame is not None else None
        for _ in range(16):
            if frame is None:
                break
            if (frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is algo
                    and "rollout_buffer_class" in frame.f_locals):
                return frame.f_locals["rollout_buffer_class"]
            frame = frame.f_back
        return UNKNOWN_CHOICE
    finally:
        del frame


#: SB3's shuffled minibatches are replaced by whole-episode ones (or, for a buffer the user named, a warning
#: says what they cost) when they would make LLMPolicy run at least this many times the teacher-forced
#: forwards of EpisodeRolloutBuffer's minibatches (docs/guides/performance.md)
SPARSE_MINIBATCH_COST = 4.0


def sparse_minibatch_cost(n_steps: int, n_envs: int, batch_size: int | None, max_new_tokens: int) -> float:
    """Estimated forwards of SB3's shuffled minibatches over those of whole-episode minibatches (>= 1).

    A minibatch of ``b`` of ``R = n_steps * n_envs`` stored steps holds about
    ``k = 1 + (b - 1)(T - 1)/(R - 1)`` steps of an episode of ``T`` steps, so the grouped evaluation runs about
    ``b / k`` teacher-forced forwards where whole episodes need ``b / T``: a ratio of ``T / k``.

    :param n_steps: steps per env and rollout
    :param n_envs: envs
    :param batch_size: minibatch size (``None``: the whole rollout, ratio 1)
    :param max_new_tokens: ``T``, the longest episode (an upper bound on the ratio for shorter ones)
    """
    rows = n_steps * n_envs
    if not batch_size or batch_size >= rows:
        return 1.0
    per_episode = 1 + (batch_size - 1) * (max_new_tokens - 1) / max(rows - 1, 1)
    return max(1.0, min(max_new_tokens, batch_size) / per_episode)


class LLMPolicy(BasePolicy):
    """Actor-critic over a Hugging Face language model, trained by stock SB3 algorithms.

    :param observation_space: text_envs Dict space (``prompt_ids``, ``prompt_mask``, ``generated_ids``,
        ``generated_mask``)
    :param action_space: ``Discrete(V)`` with ``V = len(tokenizer)``
    :param lr_schedule: learning-rate schedule (given by the algorithm)
    :param model: a ``PreTrainedModel``, a transformers config, a local path or a hub name; ``None`` uses the
        package's default model when the action space matches the shipped tokenizer, else a tiny T5 sized to
        ``V``
    :param tokenizer: the env's tokenizer (object or spec): used for the special-id checks and for
        ``save_pretrained``; it is stored in the policy's state, so ``load`` needs nothing else
    :param model_config: a config dict (``config.to_dict()``) to build the model from with random weights; what
        ``save``/``PPO.save`` record so loading works offline (weights come from the state dict)
    :param temperature: logits are divided by it; part of the trained distribution (rollout = update)
    :param value_mode: ``"shared"`` (value head on the LM's final hidden state, trained through the trunk),
        ``"detached"`` (same head, trunk not trained by the value loss) or ``"separate"`` (a copy of the LM
        as value model)
    :param value_lr_scale: the value head's output is multiplied by this, which under Adam multiplies the head's
        effective learning rate (SB3 sets one learning rate for every parameter group). A language model's small
        learning rate would leave a fresh value head near zero for hundreds of updates; e.g. 100 lets it follow
        the returns within a few
    :param top_k: keep only the k most likely tokens of the mask model (NLPO-style); ``None``: no mask
    :param top_p: keep the nucleus of mass p of the mask model; ``None``: no mask
    :param mask_source: ``"reference"`` (the frozen starting weights) or ``"policy_copy"`` (NLPO: a frozen
        copy of the policy synced every ``mask_update_interval`` updates, at the next rollout)
    :param mask_update_interval: updates between syncs of the ``"policy_copy"`` mask model
    :param kl_coef: initial KL coefficient beta; ``0`` disables the KL penalty (no reference model is built).
        The penalty is applied by :class:`~sb3_ext.buffers.EpisodeRolloutBuffer`:
        ``PPO(LLMPolicy, env, rollout_buffer_class=EpisodeRolloutBuffer, policy_kwargs=dict(kl_coef=0.05))``
    :param kl_target: target KL per episode (nats) for the adaptive controller; ``None``: fixed beta. The adaptive
        beta starts at ``kl_coef``, or at ``lm_core.kl.DEFAULT_INIT_KL_COEF`` (0.2) when ``kl_coef`` is 0
    :param kl_horizon: horizon (episodes) of the adaptive controller
    :param kl_estimator: ``"k1"`` or ``"k3"``
    :param use_cache: use the cached rollout path (``False``: one full forward per observation, the naive path)
    :param compile: the cached rollout's KV cache and step (:mod:`sb3_ext.static_cache`): ``False`` (default) a
        dynamic cache, eager; ``"static"`` a static (preallocated) cache, eager; ``True`` a static cache and a
        ``torch.compile``-d decode step (CUDA graphs via ``"reduce-overhead"`` on GPU, inductor on CPU); another
        string: that ``torch.compile`` mode. Off by default: on this project's 2-core CPU the compiled step is
        1.4-1.9x cheaper but a rollout of the shipped model only 1.0-1.2x faster, its time being mostly prefills,
        env and SB3 (benchmarks/RESULTS.md, "Compiled decode step"); not yet measured on a GPU
    :param group_observations: evaluate a minibatch of plain observations (SB3's stock ``DictRolloutBuffer``) with
        one teacher-forced forward per episode found in it (``True``), or one forward per observation (``False``,
        the slower path before; kept for benchmarks and checks)
    :param save_reference: ``False``: leave the frozen KL reference out of ``state_dict`` (and so of every saved
        zip) while it is the start model as loaded from a path or hub name (``reference_source``), and rebuild it
        from there when loading (one copy of the model fewer per file; loading then needs that path). A reference
        that cannot be rebuilt (a model object or config, or after ``update_reference()``) is saved anyway
    :param reference_source: where a saved policy's reference is rebuilt from (recorded by ``save``; set by hand
        only to point at a moved start model)
    :param dropout: keep the LM's dropout active in training mode (off by default: it corrupts the PPO ratio)
    :param lora: a ``peft.LoraConfig`` or its kwargs as a dict: train LoRA adapters only (needs ``peft``)
    :param dtype: parameter dtype of the LM (``"float32"``, ``"bfloat16"``, ``"float16"``); logits are float32
    :param trust_remote_code: let transformers run the Python code a model folder ships (its config.json's
        ``auto_map``); False: such a model is refused with a message (``lm_core.backends.load_model``)
    :param double_backward: run the teacher-forced forwards with the "math" attention kernel, whose graph can be
        differentiated twice (TRPO's Hessian-vector products need it; the fused kernels cannot); ``None``: on
        when the algorithm building the policy is sb3-contrib's TRPO
    :param optimizer_class: optimizer class
    :param optimizer_kwargs: optimizer kwargs (Adam ``eps`` defaults to 1e-5, as in SB3)
    :param use_sde: must be False (given by SB3)
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        model: Any = None,
        tokenizer: Any = None,
        model_config: dict[str, Any] | None = None,
        temperature: float = 1.0,
        value_mode: str = "shared",
        value_lr_scale: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        mask_source: str = "reference",
        mask_update_interval: int = 5,
        kl_coef: float = 0.0,
        kl_target: float | None = None,
        kl_horizon: int = 10_000,
        kl_estimator: str = "k1",
        use_cache: bool = True,
        compile: bool | str = False,
        group_observations: bool = True,
        save_reference: bool = True,
        reference_source: str | None = None,
        dropout: bool = False,
        lora: Any = None,
        dtype: str | th.dtype | None = None,
        trust_remote_code: bool = False,
        double_backward: bool | None = None,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        use_sde: bool = False,
    ):
        if optimizer_kwargs is None:
            optimizer_kwargs = {"eps": 1e-5} if optimizer_class is th.optim.Adam else {}
        super().__init__(observation_space, action_space, optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kwargs)
        if use_sde:
            raise TextEnvsError("expected use_sde=False: gSDE is for continuous actions, LLMPolicy acts on tokens")
        self.P, self.T, self.V = _check_spaces(observation_space, action_space)
        if value_mode not in VALUE_MODES:
            raise unknown_name("value_mode", value_mode, VALUE_MODES)
        if mask_source not in MASK_SOURCES:
            raise unknown_name("mask_source", mask_source, MASK_SOURCES)
        if kl_estimator not in KL_ESTIMATORS:
            raise unknown_name("KL estimator", kl_estimator, KL_ESTIMATORS)
        if not temperature > 0:
            raise TextEnvsError(f"expected temperature > 0, got {temperature}")
        if not value_lr_scale > 0:
            raise TextEnvsError(f"expected value_lr_scale > 0, got {value_lr_scale}")
        if top_k is not None and not (isinstance(top_k, int) and top_k >= 1):
            raise TextEnvsError(f"expected top_k to be None or an int >= 1, got {top_k!r}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise TextEnvsError(f"expected top_p in (0, 1], got {top_p}")
        if isinstance(dtype, str):
            if dtype not in _DTYPES:
                raise unknown_name("dtype", dtype, _DTYPES)
            dtype = _DTYPES[dtype]
        self.temperature = float(temperature)
        self.value_mode = value_mode
        self.value_lr_scale = float(value_lr_scale)
        self.top_k, self.top_p = top_k, top_p
        self.mask_source = mask_source
        self.mask_update_interval = int(mask_update_interval)
        self.kl_coef, self.kl_target, self.kl_horizon = float(kl_coef), kl_target, int(kl_horizon)
        self.kl_estimator = kl_estimator
        self.use_cache = bool(use_cache)
        self.compile = check_compile_option(compile)
        self.group_observations = bool(group_observations)
        self.dropout = bool(dropout)
        self.lora = lora
        self.dtype = dtype
        self.trust_remote_code = bool(trust_remote_code)

        # ---- model and tokenizer ---------------------------------------------------------------------------
        if model_config is not None and model is None:
            lm = load_model(dict(model_config), dtype)
        elif model is None:
            lm, default_tok = self._default_model(dtype)
            tokenizer = tokenizer if tokenizer is not None else default_tok
        else:
            lm = load_model(model, dtype, trust_remote_code=self.trust_remote_code)
            if tokenizer is None and isinstance(model, (str, os.PathLike)) and os.path.isdir(model):
                tokenizer = self._try_tokenizer(model)
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = self._load_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self._check_model(lm, tokenizer)
        self.model_config = {k: v for k, v in lm.config.to_dict().items() if k not in ("_name_or_path",)}

        # frozen copies are made before any hook is registered on the model
        self.kl_enabled = self.kl_coef > 0 or kl_target is not None
        needs_mask = top_k is not None or top_p is not None
        if self.lora is not None:
            lm = self._apply_lora(lm, self.lora)
        ref_needed = (self.kl_enabled or (needs_mask and mask_source == "reference")) and self.lora is None
        self.save_reference = bool(save_reference)
        if reference_source is None and not self.save_reference and ref_needed:
            if isinstance(model, (str, os.PathLike)):
                reference_source = os.path.abspath(model) if os.path.isdir(model) else os.fspath(model)
            elif model is None and model_config is None:  # the shipped model, when _default_model loaded it
                reference_source = getattr(lm.config, "_name_or_path", None) or None
        self.reference_source = reference_source if ref_needed and not self.save_reference else None
        if self.reference_source is not None and model is None and model_config is not None:  # loading a save
            try:
                self.reference_model = self._frozen_copy(load_model(self.reference_source, dtype,
                                                                    trust_remote_code=self.trust_remote_code))
            except Exception as e:
                raise TextEnvsError(
                    f"this policy was saved without its frozen KL reference, which is rebuilt from "
                    f"{self.reference_source!r}, and that could not be loaded ({e}). Put the start model back there, "
                    "or load with custom_objects={'policy_kwargs': {..., 'reference_source': NEW_PATH}}."
                ) from e
        else:
            self.reference_model = self._frozen_copy(lm) if ref_needed else None
        self.mask_model = self._frozen_copy(lm) if needs_mask and mask_source == "policy_copy" else None
        self.value_model = copy.deepcopy(lm) if value_mode == "separate" else None
        self.model = lm

        self.backend: LMBackend = make_backend(self.model, self.V)
        self.value_backend = make_backend(self.value_model, self.V) if self.value_model is not None else None
        self.reference_backend = make_backend(self.reference_model, self.V) if self.reference_model is not None else None
        self.mask_backend = make_backend(self.mask_model, self.V) if self.mask_model is not None else None
        if needs_mask and self.mask_backend is None:
            self.mask_backend = self.reference_backend if self.reference_backend is not None else self.backend
        if self.lora is not None:  # the reference is the base model with the adapters disabled: no copy to make
            self.reference_model = LoraReference(self.model)
        self.value_head = nn.Linear(self.backend.hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

        self.action_dist = CategoricalDistribution(self.V)
        self.kl_controller = make_kl_controller(self.kl_coef, kl_target, self.kl_horizon) if self.kl_enabled else None
        self._states: dict[str, DecodeState] = {}
        self._fingerprint: tuple | None = None
        self._trainable: list[nn.Parameter] | None = None
        self._updates_since_mask_sync = 0
        self._mask_sync_due = False
        self.train(False)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

        algo = _find_algorithm()
        if double_backward is None:
            double_backward = algo is not None and type(algo).__name__ == "TRPO"
        self.double_backward = bool(double_backward)
        if algo is not None:
            # recorded in the algorithm's saved policy_kwargs: PPO.load rebuilds from config + state dict, offline
            kwargs = dict(algo.policy_kwargs)
            kwargs.update(model=None, tokenizer=None, model_config=self.model_config,
                          reference_source=self.reference_source)
            algo.policy_kwargs = kwargs
            if self.kl_enabled:
                self._ensure_kl_buffer(algo)
            else:
                self._choose_minibatches(algo)
            if isinstance(getattr(algo, "rollout_buffer", None), EpisodeRolloutBuffer):
                algo.rollout_buffer.bind(self, algo)

    # ------------------------------------------------------------------------------------------------------
    # construction helpers
    # ------------------------------------------------------------------------------------------------------
    def _choose_minibatches(self, algo: Any) -> None:
        """Whole-episode minibatches whenever SB3's shuffled ones would cost many forwards and no buffer was named.

        The one place that decides (docs/guides/performance.md): with SB3's stock ``DictRolloutBuffer`` a minibatch
        of ``batch_size`` shuffled steps holds few steps of each episode, and each episode found costs one
        teacher-forced forward; :class:`EpisodeRolloutBuffer` yields minibatches of about ``batch_size`` tokens of
        whole episodes, one forward per episode. When the estimated ratio (:func:`sparse_minibatch_cost`) reaches
        ``SPARSE_MINIBATCH_COST``: a buffer left out of the algorithm's arguments becomes an EpisodeRolloutBuffer
        (SB3's ``PPO(LLMPolicy, env)`` at its defaults: 2048 steps, minibatches of 64, 10 epochs); a
        ``DictRolloutBuffer`` named by the user stays, with a warning that says what it costs.
        """
        buffer = getattr(algo, "rollout_buffer", None)
        batch_size = getattr(algo, "batch_size", None)  # PPO's and TRPO's minibatches; A2C takes the whole rollout
        if type(buffer) is not DictRolloutBuffer or not batch_size:
            return
        cost = sparse_minibatch_cost(buffer.buffer_size, buffer.n_envs, batch_size, self.T)
        if cost < SPARSE_MINIBATCH_COST:
            return
        named = _named_buffer_class(algo)
        if named is None and not getattr(algo, "rollout_buffer_kwargs", None):
            self._swap_in_episode_buffer(algo)
            return
        rows = buffer.buffer_size * buffer.n_envs
        per_episode = 1 + (min(batch_size, rows) - 1) * (self.T - 1) / max(rows - 1, 1)
        warnings.warn(
            f"{type(algo).__name__} draws minibatches of {batch_size} of {rows} stored steps from the "
            f"{type(buffer).__name__} you chose: about {per_episode:.1f} step(s) of an episode per minibatch, so "
            f"LLMPolicy runs up to {cost:.0f}x the model forwards of whole-episode minibatches (each episode found "
            f"costs one forward over its prompt and up to {self.T} tokens; the design card's PPO(LLMPolicy, env) "
            "took 360 s for learn(2048) this way). Leave rollout_buffer_class out, or pass "
            "rollout_buffer_class=EpisodeRolloutBuffer (minibatches of whole episodes), or use a batch_size closer "
            "to n_steps * n_envs.",
            stacklevel=6,  # the line that built the algorithm (PPO.__init__ > _setup_model > here)
        )

    @staticmethod
    def _swap_in_episode_buffer(algo: Any) -> None:
        """Replace the algorithm's ``DictRolloutBuffer`` by an :class:`EpisodeRolloutBuffer` of the same size."""
        buffer = algo.rollout_buffer
        algo.rollout_buffer = EpisodeRolloutBuffer(
            buffer.buffer_size, buffer.observation_space, buffer.action_space, device=buffer.device,
            gae_lambda=buffer.gae_lambda, gamma=buffer.gamma, n_envs=buffer.n_envs,
        )
        algo.rollout_buffer_class = EpisodeRolloutBuffer  # what SB3 saves, so PPO.load builds the same

    def _ensure_kl_buffer(self, algo: Any) -> None:
        """The KL penalty is applied by EpisodeRolloutBuffer: swap SB3's default buffer for one, refuse others."""
        buffer = getattr(algo, "rollout_buffer", None)
        if buffer is None or isinstance(buffer, EpisodeRolloutBuffer):
            return
        if type(buffer) is DictRolloutBuffer and not getattr(algo, "rollout_buffer_kwargs", None):
            self._swap_in_episode_buffer(algo)
            warnings.warn(
                f"kl_coef={self.kl_coef}, kl_target={self.kl_target}: the KL penalty is applied by "
                f"EpisodeRolloutBuffer, so LLMPolicy replaced {type(algo).__name__}'s DictRolloutBuffer by one. "
                "Pass rollout_buffer_class=EpisodeRolloutBuffer to say so (and silence this warning).",
                stacklevel=4,
            )
            return
        raise TextEnvsError(
            f"kl_coef={self.kl_coef}, kl_target={self.kl_target} needs sb3_ext.EpisodeRolloutBuffer, which applies "
            f"the KL penalty to the rewards, got {type(buffer).__name__}, which would silently ignore it. Pass "
            "rollout_buffer_class=EpisodeRolloutBuffer, or kl_coef=0 and kl_target=None for no penalty."
        )

    def _default_model(self, dtype: th.dtype | None) -> tuple[nn.Module, Any]:
        return default_model(self.V, dtype)

    @staticmethod
    def _try_tokenizer(path: Any) -> Any:
        try:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(os.fspath(path))
        except Exception:
            return None

    @staticmethod
    def _load_tokenizer(spec: Any) -> Any:
        try:
            from text_envs.tokenization import load_tokenizer

            return load_tokenizer(spec)
        except ImportError:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(os.fspath(spec))

    def _check_model(self, lm: nn.Module, tokenizer: Any) -> None:
        head = lm.get_output_embeddings()
        width = int(head.weight.shape[0]) if head is not None else int(lm.config.vocab_size)
        if width < self.V:
            raise TokenizerMismatchError(
                f"the model has {width} logits but the action space has V={self.V} tokens: expected at least V "
                "logits. Use the model that goes with the env's tokenizer, or resize its embeddings "
                "(model.resize_token_embeddings(V))."
            )
        if tokenizer is None:
            return
        if len(tokenizer) != self.V:
            raise TokenizerMismatchError(
                f"the tokenizer has {len(tokenizer)} tokens but the action space has V={self.V}: pass the env's "
                "tokenizer (env.unwrapped.tokenizer)"
            )
        cfg = lm.config
        checks = [("eos_token_id", tokenizer.eos_token_id, getattr(cfg, "eos_token_id", None))]
        if getattr(cfg, "is_encoder_decoder", False):
            checks.append(("pad_token_id", tokenizer.pad_token_id, getattr(cfg, "pad_token_id", None)))
            start = getattr(cfg, "decoder_start_token_id", None)
            if start is not None and not 0 <= start < self.V:
                raise TokenizerMismatchError(
                    f"the model's decoder_start_token_id={start} is outside the action space [0, {self.V})"
                )
        for name, tok_id, model_id in checks:
            if isinstance(model_id, list):
                ok = tok_id is None or tok_id in model_id
            else:
                ok = tok_id is None or model_id is None or tok_id == model_id
            if not ok:
                raise TokenizerMismatchError(
                    f"special id mismatch: tokenizer {name}={tok_id} but model config {name}={model_id}. Use the "
                    "tokenizer the model was trained with, or set model.config."
                    f"{name} to the tokenizer's id if that is intended."
                )

    @staticmethod
    def _frozen_copy(lm: nn.Module) -> nn.Module:
        frozen = copy.deepcopy(lm)
        frozen.requires_grad_(False)
        frozen.eval()
        return frozen

    @staticmethod
    def _apply_lora(lm: nn.Module, lora: Any) -> nn.Module:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as e:  # pragma: no cover - peft is installed here
            raise TextEnvsError("lora=... needs peft: pip install peft") from e
        config = lora if isinstance(lora, LoraConfig) else LoraConfig(**dict(lora))
        return get_peft_model(lm, config)

    # ------------------------------------------------------------------------------------------------------
    # nn.Module / SB3 plumbing
    # ------------------------------------------------------------------------------------------------------
    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True) -> Iterator:
        """Trainable parameters only: frozen models stay in ``state_dict`` but not in the optimizer or TRPO."""
        for name, param in super().named_parameters(prefix, recurse, remove_duplicate):
            if param.requires_grad:
                yield name, param

    def train(self, mode: bool = True) -> LLMPolicy:
        """Train/eval mode; the LMs keep dropout off unless ``dropout=True``, frozen models stay in eval."""
        super().train(mode)
        if not self.dropout:
            self.model.eval()
            if self.value_model is not None:
                self.value_model.eval()
        for frozen in (self.reference_model, self.mask_model):
            if frozen is not None:
                frozen.eval()
        return self

    def set_training_mode(self, mode: bool) -> None:
        """SB3 calls this with True at the start of each update: drop the rollout caches (weights will change)."""
        self.train(mode)
        if mode:
            if self.kl_enabled:  # a rollout buffer swapped in after construction would silently skip the penalty
                algo = _find_algorithm()
                buffer = getattr(algo, "rollout_buffer", None)
                if buffer is not None and not isinstance(buffer, EpisodeRolloutBuffer):
                    raise TextEnvsError(
                        f"kl_coef={self.kl_coef}, kl_target={self.kl_target} needs sb3_ext.EpisodeRolloutBuffer (it "
                        f"applies the KL penalty), got {type(buffer).__name__}: the rollout just collected has no "
                        "penalty. Pass rollout_buffer_class=EpisodeRolloutBuffer to the algorithm."
                    )
            self.reset_cache()
            self._updates_since_mask_sync += 1
            if self.mask_model is not None and self._updates_since_mask_sync >= self.mask_update_interval:
                self._mask_sync_due = True

    def reset_cache(self) -> None:
        """Drop every cached rollout row (done automatically when the parameters change)."""
        for state in self._states.values():
            state.reset()
        self._fingerprint = None

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> LLMPolicy:
        self._states = {}
        return super()._apply(fn, *args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            lr_schedule=self._dummy_schedule,
            model=None,
            tokenizer=None,
            model_config=self.model_config,
            temperature=self.temperature,
            value_mode=self.value_mode,
            value_lr_scale=self.value_lr_scale,
            top_k=self.top_k,
            top_p=self.top_p,
            mask_source=self.mask_source,
            mask_update_interval=self.mask_update_interval,
            kl_coef=self.kl_coef,
            kl_target=self.kl_target,
            kl_horizon=self.kl_horizon,
            kl_estimator=self.kl_estimator,
            use_cache=self.use_cache,
            compile=self.compile,
            group_observations=self.group_observations,
            save_reference=self.save_reference,
            reference_source=self.reference_source,
            dropout=self.dropout,
            lora=self.lora,
            dtype=self.dtype,
            trust_remote_code=self.trust_remote_code,
            double_backward=self.double_backward,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
        )
        data.pop("normalize_images", None)
        return data

    def get_extra_state(self) -> dict[str, Any]:
        """Tokenizer, KL coefficient and mask-sync counter: saved in ``state_dict`` (SB3 zips included)."""
        return {
            "tokenizer": serialize_tokenizer(self.tokenizer) if self.tokenizer is not None else None,
            "kl_coef": self.kl_controller.value if self.kl_controller is not None else None,
            "updates_since_mask_sync": self._updates_since_mask_sync,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("tokenizer") is not None and self.tokenizer is None:
            self.tokenizer = deserialize_tokenizer(state["tokenizer"])
        if state.get("kl_coef") is not None and self.kl_controller is not None:
            self.kl_controller.value = float(state["kl_coef"])
        self._updates_since_mask_sync = int(state.get("updates_since_mask_sync", 0))
        self.reset_cache()

    # the reference left out of saves (save_reference=False) -------------------------------------------------
    def _reference_digest(self) -> list[float]:
        """Float64 sums of the reference's weights and of their magnitudes: tell a rebuilt reference from the one
        trained against (compared to 1e-9 of the magnitudes, which covers summation order, e.g. thread counts)."""
        if getattr(self, "_ref_digest", None) is None:
            with th.no_grad():
                tensors = [t.double() for t in self.reference_model.state_dict().values() if t.is_floating_point()]
                self._ref_digest = [float(sum(float(t.sum()) for t in tensors)),
                                    float(sum(float(t.abs().sum()) for t in tensors))]
        return self._ref_digest

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The module's state; without ``reference_model.*`` while the reference is rebuilt from
        ``reference_source`` (``save_reference=False``), with that reference's digest in the extra state."""
        state = super().state_dict(*args, **kwargs)
        if getattr(self, "reference_source", None) is not None:
            prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
            for key in [k for k in state if k.startswith(prefix + "reference_model.")]:
                del state[key]
            extra = state.get(prefix + "_extra_state")
            if isinstance(extra, dict):
                state[prefix + "_extra_state"] = {**extra, "reference_digest": self._reference_digest()}
        return state

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load a state; one saved without its reference keeps the reference rebuilt from ``reference_source``
        (after checking it is the one the state was trained against)."""
        has_ref = any(k.startswith("reference_model.") for k in state_dict)
        if self.reference_model is not None and not isinstance(self.reference_model, LoraReference) and not has_ref:
            saved = (state_dict.get("_extra_state") or {}).get("reference_digest")
            if self.reference_source is None or saved is None:
                if strict:
                    raise TextEnvsError(
                        "the state has no reference_model weights and this policy cannot rebuild its KL reference: "
                        "expected a state saved with its reference, or one saved with save_reference=False"
                    )
            elif any(abs(a - b) > 1e-9 * max(1.0, saved[1]) for a, b in zip(saved, self._reference_digest())):
                raise TextEnvsError(
                    f"the KL reference rebuilt from {self.reference_source!r} is not the model this policy was "
                    f"trained against (weight sums {self._reference_digest()}, saved {saved}): point "
                    "reference_source at the original start model"
                )
            state_dict = {**state_dict, **{f"reference_model.{k}": v for k, v in self.reference_model.state_dict().items()}}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the LM (LoRA merged) and the tokenizer as a normal Hugging Face checkpoint.

        :param directory: output directory (``AutoModelForSeq2SeqLM/AutoModelForCausalLM.from_pretrained`` reads it)
        """
        model = self.model
        if self.lora is not None:
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(os.fspath(directory))
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(os.fspath(directory))
        else:
            warnings.warn("LLMPolicy has no tokenizer: saved the model only (pass tokenizer=... to the policy)")

    # ------------------------------------------------------------------------------------------------------
    # core computations
    # ------------------------------------------------------------------------------------------------------
    @staticmethod
    def _obs_parts(obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        prompt_ids = obs["prompt_ids"].long()  # type: ignore[index]
        prompt_mask = obs["prompt_mask"].long()  # type: ignore[index]
        gen_ids = obs["generated_ids"].long()  # type: ignore[index]
        gen_len = obs["generated_mask"].long().sum(-1)  # type: ignore[index]
        return prompt_ids, prompt_mask, gen_ids, gen_len

    def _trainable_fingerprint(self) -> tuple:
        # (storage, in-place version) of every trainable tensor: optimizer steps bump versions, TRPO's
        # ``param.data = ...`` and ``.to()`` change storages; the Parameter objects themselves never change
        if self._trainable is None:
            self._trainable = list(self.parameters())
        return tuple((p.data_ptr(), p._version) for p in self._trainable)

    def _state(self, name: str, backend: LMBackend) -> DecodeState:
        if name not in self._states:
            self._states[name] = StaticDecodeState(backend, self.compile) if self.compile else DecodeState(backend)
        return self._states[name]

    def _maybe_sync_mask_model(self) -> None:
        if self._mask_sync_due and self.mask_model is not None:
            self.mask_model.load_state_dict(self.model.state_dict())
            self._mask_sync_due = False
            self._updates_since_mask_sync = 0
            if "mask" in self._states:
                self._states["mask"].reset()

    def _next_outputs(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Logits (B, V), value-head input (B, H) and mask-model logits (or None) for observations."""
        parts = self._obs_parts(obs)
        cached = self.use_cache and not th.is_grad_enabled()
        if cached:
            fp = self._trainable_fingerprint()
            if fp != self._fingerprint:  # parameters changed since the cache was filled: drop it
                for key in ("policy", "value"):
                    if key in self._states:
                        self._states[key].reset()
                self._fingerprint = fp

        def run(name: str, backend: LMBackend) -> tuple[th.Tensor, th.Tensor]:
            if cached:
                return self._state(name, backend)(*parts)
            return backend.forward_next(*parts)

        logits, hidden = run("policy", self.backend)
        if self.value_backend is not None:
            _, hidden = run("value", self.value_backend)
        mask_logits = None
        if self.mask_backend is not None:
            if self.mask_backend is self.backend:  # LoRA: the base model with the adapters disabled
                with self.model.disable_adapter(), th.no_grad():
                    mask_logits, _ = self.backend.forward_next(*parts)
            else:
                with th.no_grad():
                    mask_logits, _ = run("mask", self.mask_backend)
        return logits, hidden, mask_logits

    def _episode_outputs(self, batch: EpisodeBatch, need_logits: bool = True):
        """Teacher-forced outputs at the batch's output tokens: logits (N, V), hidden (N, H), mask logits."""
        tokens = trimmed_tokens(batch)  # one sync: the sequences cut to the selected positions
        logits, hidden = teacher_forced_outputs(self.backend, batch, tokens)  # (N, V), (N, H)
        if self.value_backend is not None:
            _, hidden = teacher_forced_outputs(self.value_backend, batch, tokens)
        mask_logits = None
        if self.mask_backend is not None:
            with th.no_grad():
                if self.mask_backend is self.backend:
                    with self.model.disable_adapter():
                        mask_logits, _ = teacher_forced_outputs(self.backend, batch, tokens)
                else:
                    mask_logits, _ = teacher_forced_outputs(self.mask_backend, batch, tokens)
        return logits, hidden, mask_logits

    def _outputs(self, obs: Any, actions: th.Tensor | None = None):
        """Logits (N, V), value-head input (N, H), mask logits (or None) and the taken action of each output to keep
        in a top-k/top-p support (N,) (``-1`` where unknown; or None) of an EpisodeBatch or observations."""
        with self._attention_context():
            if isinstance(obs, EpisodeBatch):
                batch = obs
            elif not self.group_observations:
                taken = actions if actions is not None else obs.get(TAKEN_ACTIONS_KEY)  # type: ignore[union-attr]
                return (*self._next_outputs(obs), taken)
            else:
                if actions is None:
                    actions = obs.get(TAKEN_ACTIONS_KEY)  # type: ignore[union-attr]
                batch = EpisodeBatch.from_observations(*self._obs_parts(obs), actions=actions)
                if self.use_cache and not th.is_grad_enabled() and batch.num_episodes == len(batch):
                    # one observation per episode (e.g. the rollout's last step): the rollout cache is cheaper
                    return (*self._next_outputs(obs), batch.taken_actions)
            logits, hidden, mask_logits = self._episode_outputs(batch)
            taken = actions if actions is not None else batch.taken_actions
            return logits, hidden, mask_logits, taken

    def _attention_context(self) -> Any:
        if self.double_backward and th.is_grad_enabled():
            from torch.nn.attention import SDPBackend, sdpa_kernel

            return sdpa_kernel(SDPBackend.MATH)
        return contextlib.nullcontext()

    def _value(self, hidden: th.Tensor) -> th.Tensor:
        if self.value_mode == "detached":
            hidden = hidden.detach()
        return self.value_head(hidden.to(self.value_head.weight.dtype)) * self.value_lr_scale  # (N, 1)

    def _support(self, mask_logits: th.Tensor) -> th.Tensor:
        """(N, V) bool: tokens kept by top-k / top-p of the frozen mask model (at the policy's temperature)."""
        return support_mask(mask_logits, self.temperature, self.top_k, self.top_p)

    def distribution_logits(
        self, logits: th.Tensor, mask_logits: th.Tensor | None = None, taken: th.Tensor | None = None
    ) -> th.Tensor:
        """The trained distribution's logits: temperature, then the frozen top-k/top-p support if any.

        ``taken`` (N,): actions already sampled, always kept in the support. The mask model's logits differ by
        float rounding between the cached rollout and the teacher-forced update (~1e-2 at worst), so a token at
        the top-k / top-p boundary can flip out; without this its stored action would get log-prob -inf and
        the PPO ratio would explode.
        """
        return distribution_logits(logits, self.temperature, mask_logits, self.top_k, self.top_p, taken)

    def _distribution(
        self, logits: th.Tensor, mask_logits: th.Tensor | None, taken: th.Tensor | None = None
    ) -> CategoricalDistribution:
        # what SB3's proba_distribution does, without torch's argument checks: each is a device sync per step, and
        # the logits are finite by construction (masked tokens get the dtype's min, not -inf)
        self.action_dist.distribution = Categorical(logits=self.distribution_logits(logits, mask_logits, taken),
                                                    validate_args=False)
        return self.action_dist

    # ------------------------------------------------------------------------------------------------------
    # SB3 API
    # ------------------------------------------------------------------------------------------------------
    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """One rollout step for every env: actions (B,), values (B, 1), log-probs (B,)."""
        self._maybe_sync_mask_model()
        logits, hidden, mask_logits = self._next_outputs(obs)
        dist = self._distribution(logits, mask_logits)
        actions = dist.get_actions(deterministic=True) if deterministic else sample_tokens(dist.distribution.probs)
        return actions, self._value(hidden), dist.log_prob(actions)

    def evaluate_actions(self, obs: Any, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Values (N, 1), log-probs (N,) and entropies (N,) of taken actions (EpisodeBatch or observations)."""
        actions = actions.long().flatten()
        logits, hidden, mask_logits, _ = self._outputs(obs, actions)
        dist = self._distribution(logits, mask_logits, taken=actions)
        return self._value(hidden), dist.log_prob(actions), dist.entropy()

    def get_distribution(self, obs: Any) -> CategoricalDistribution:
        """The action distribution at each observation or each output token of an EpisodeBatch.

        With a top-k/top-p mask, the token taken at each output is kept in the support, as in
        ``evaluate_actions``, when the batch knows it: an EpisodeBatch does (its tokens are the actions), and so do
        observations carrying ``TAKEN_ACTIONS_KEY`` (``sb3_ext.TRPO`` adds it) or followed by a later step of the
        same episode in the batch.
        """
        logits, _, mask_logits, taken = self._outputs(obs)
        return self._distribution(logits, mask_logits, taken=taken if mask_logits is not None else None)

    def predict_values(self, obs: Any) -> th.Tensor:
        """Values (N, 1)."""
        _, hidden, _, _ = self._outputs(obs)
        return self._value(hidden)

    def check_observation(self, observation: Any) -> None:
        """Raise :class:`ObservationSpaceError` naming what was expected unless ``observation`` is one text env
        observation or a batch of them: a dict of integer arrays ``prompt_ids``/``prompt_mask`` ``(P,)`` or
        ``(B, P)`` and ``generated_ids``/``generated_mask`` ``(T,)`` or ``(B, T)``, ids in ``[0, V)``, masks 0/1."""
        fix = "pass the env's observation as it is (a dict of int64 arrays, batched on a first axis)"
        if not isinstance(observation, dict):
            raise ObservationSpaceError(
                f"expected an observation dict with keys {list(OBS_KEYS)}, got {type(observation).__name__}: {fix}")
        missing = [k for k in OBS_KEYS if k not in observation]
        if missing:
            raise ObservationSpaceError(f"expected observation keys {list(OBS_KEYS)}, missing {missing}: {fix}")
        widths = {"prompt_ids": self.P, "prompt_mask": self.P, "generated_ids": self.T, "generated_mask": self.T}
        batch: int | None = None
        for key in OBS_KEYS:
            arr = observation[key]
            arr = arr.detach().cpu().numpy() if isinstance(arr, th.Tensor) else np.asarray(arr)
            n = widths[key]
            if arr.ndim not in (1, 2) or arr.shape[-1] != n:
                raise ObservationSpaceError(f"expected observation {key!r} of shape ({n},) or (B, {n}), "
                                            f"got {arr.shape}: {fix}")
            rows = 1 if arr.ndim == 1 else arr.shape[0]
            if batch is not None and rows != batch:
                raise ObservationSpaceError(
                    f"expected every observation key to hold the same batch of {batch}, got {rows} rows in {key!r}")
            batch = rows
            if arr.dtype.kind not in "iub" and not (arr.dtype.kind == "f" and np.isfinite(arr).all()
                                                     and (arr == np.round(arr)).all()):
                raise ObservationSpaceError(f"expected integer token ids in observation {key!r}, "
                                            f"got dtype {arr.dtype}: {fix}")
            if arr.size and key.endswith("_mask") and not np.isin(arr, (0, 1)).all():
                raise ObservationSpaceError(f"expected observation {key!r} to hold only 0 and 1: {fix}")
            if arr.size and key.endswith("_ids") and not (arr.min() >= 0 and arr.max() < self.V):
                raise ObservationSpaceError(
                    f"expected token ids in [0, {self.V}) in observation {key!r}, got values in [{arr.min()}, {arr.max()}] "
                    "(the model's vocabulary is the env's tokenizer's)")

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """SB3's ``predict``, after :meth:`check_observation` (a wrong observation gets a clear error, not an
        index error deep inside the model)."""
        self.check_observation(observation)
        return super().predict(observation, state, episode_start, deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        with self._attention_context():
            logits, _, mask_logits = self._next_outputs(observation)  # the cached path: predict is a rollout
        dist = self._distribution(logits, mask_logits)
        return dist.get_actions(deterministic=True) if deterministic else sample_tokens(dist.distribution.probs)

    # ------------------------------------------------------------------------------------------------------
    # KL penalty
    # ------------------------------------------------------------------------------------------------------
    @th.no_grad()
    def reference_log_probs(self, batch: EpisodeBatch, actions: th.Tensor, chunk_episodes: int = 32) -> th.Tensor:
        """log ref(a_t) (N,) of the frozen reference at the batch's output tokens, teacher-forced, in chunks.

        The reference's logits get the policy's temperature, so the KL compares like with like.
        """
        if self.reference_backend is None and self.lora is None:
            raise TextEnvsError("this policy has no reference model: construct it with kl_coef > 0")
        if self.reference_backend is not None:
            return sequence_log_probs(self.reference_backend, batch, actions, self.temperature, chunk_episodes)
        return sequence_log_probs(self.backend, batch, actions, self.temperature, chunk_episodes,
                                  context=self.model.disable_adapter)  # LoRA: the base weights are the reference

    def token_kl(self, batch: EpisodeBatch, actions: th.Tensor, log_probs: th.Tensor) -> th.Tensor:
        """Per-token KL estimate (N,) of the sampling policy to the reference (``kl_estimator``)."""
        ref = self.reference_log_probs(batch, actions)
        return kl_estimate(log_probs.float(), ref, self.kl_estimator)

    def update_reference(self) -> None:
        """Make the current weights the KL reference (and the mask model), e.g. after a supervised warm start.

        With LoRA the reference is the base model: the adapters are merged into it and restarted at zero, so the
        policy is unchanged and the base (the reference, ``reference_model``) becomes the current weights.
        """
        if self.lora is not None:
            merge_lora_adapters(self.model)
            if self.optimizer is not None:  # the adapters restart: their Adam moments belong to the old ones
                for p in self.model.parameters():
                    self.optimizer.state.pop(p, None)
        for frozen in (self.reference_model, self.mask_model):
            if frozen is not None and not isinstance(frozen, LoraReference):
                frozen.load_state_dict(self.model.state_dict())
        self.reference_source, self._ref_digest = None, None  # no longer the start model: saved from now on
        self.reset_cache()
        self._states.pop("mask", None)


