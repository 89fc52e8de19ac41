"""LLMPolicy: a Hugging Face language model as an SB3 actor-critic (one action = one token).

Shapes: ``B`` envs, ``E`` episodes, ``N`` tokens, ``P`` prompt length, ``T`` generated length,
``V`` vocabulary (``action_space.n``), ``H`` hidden size.

The model work is :class:`lm_core.actor_critic.LMActorCritic`'s (shared with RLlib's ``LMRLModule``); this module
is its SB3 face. How SB3 drives it (PPO / A2C / sb3-contrib TRPO, stock classes):

* ``forward(obs)`` once per token during rollouts: the cached path (:class:`~lm_core.decode_state.DecodeState`)
  keeps encoder outputs and KV caches per env row, so a step costs one decoder token, like ``generate``.
* ``evaluate_actions`` / ``get_distribution`` / ``predict_values`` on an :class:`~lm_core.episodes.EpisodeBatch`
  (from :class:`~sb3_ext.buffers.EpisodeRolloutBuffer`) run one teacher-forced forward per episode. On plain
  observations (a shuffled minibatch of the stock ``DictRolloutBuffer``) they first group the observations into
  prefix chains (:meth:`~lm_core.episodes.EpisodeBatch.from_observations`: same prompt, generated ids that are
  prefixes of one another, i.e. the steps of one episode) and run one teacher-forced forward per chain: the same
  outputs as one forward per observation (``group_observations=False``, the path before) to float error.
* The algorithm: :meth:`LLMPolicy.bind_algorithm` (:mod:`sb3_ext.algorithm_binding`) records the model config in
  the algorithm's ``policy_kwargs``, chooses the rollout buffer and binds it. When SB3's shuffled minibatches would
  hold few steps of each episode (SB3's defaults, ``PPO(LLMPolicy, env)``: 64 of 2048 steps) and the user named no
  buffer, the algorithm's ``DictRolloutBuffer`` becomes an :class:`~sb3_ext.buffers.EpisodeRolloutBuffer`; a
  ``DictRolloutBuffer`` the user named stays, with a warning that says what it costs
  (docs/guides/performance.md). ``kl_coef > 0`` (or ``kl_target``) needs an ``EpisodeRolloutBuffer``, which
  applies the penalty: SB3's default ``DictRolloutBuffer`` is replaced by one (with a warning); any other buffer
  is refused with an error.

Parameters that are frozen (reference model, NLPO mask model, a LoRA base) stay in ``state_dict`` but are not
returned by ``parameters()``: the optimizer, gradient clipping and TRPO's per-parameter gradients only see
trainable tensors.  Value parameters have "value" in their names, as TRPO expects.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch.distributions import Categorical

from lm_core.actor_critic import LMActorCritic, check_model_vocabulary, check_sampling_options, frozen_copy
from lm_core.episodes import EpisodeBatch
from lm_core.kl import KL_ESTIMATORS, make_kl_controller
from lm_core.loading import default_model, load_model
from lm_core.lora import LoraReference, apply_lora, merge_lora_adapters
from lm_core.observations import ObservationSpaceError, check_observation, check_token_spaces, observation_parts
from lm_core.sampling import sample_tokens, taken_log_probs_and_entropy, taken_log_probs_entropy_and_kl
from lm_core.static_cache import check_compile_option
from lm_core.tokenizer import deserialize_tokenizer, load_tokenizer_spec, serialize_tokenizer, tokenizer_in_folder
from text_envs.errors import TextEnvsError, unknown_name

from . import algorithm_binding
from .algorithm_binding import SPARSE_MINIBATCH_COST, UNKNOWN_CHOICE, sparse_minibatch_cost
from .buffers import EpisodeRolloutBuffer

__all__ = ["LLMPolicy", "ObservationSpaceError", "VALUE_MODES", "MASK_SOURCES", "TAKEN_ACTIONS_KEY",
           "SPARSE_MINIBATCH_COST", "sparse_minibatch_cost"]

#: optional observation key: the actions taken at a minibatch's observations (``sb3_ext.TRPO`` adds it), so that
#: ``get_distribution`` keeps each taken token inside the top-k/top-p support as ``evaluate_actions`` does
TAKEN_ACTIONS_KEY = "taken_actions"

VALUE_MODES = ("shared", "detached", "separate")
MASK_SOURCES = ("reference", "policy_copy")
_DTYPES = {"float32": th.float32, "bfloat16": th.bfloat16, "float16": th.float16}
#: the constructor's arguments that ``save`` records (``model``/``tokenizer`` become ``model_config`` and the state)
_SAVED_OPTIONS = (
    "model_config", "temperature", "value_mode", "value_lr_scale", "top_k", "top_p", "mask_source",
    "mask_update_interval", "kl_coef", "kl_target", "kl_horizon", "kl_estimator", "use_cache", "compile",
    "group_observations", "save_reference", "reference_source", "dropout", "lora", "dtype", "trust_remote_code",
    "double_backward", "optimizer_class", "optimizer_kwargs",
)


class LLMPolicy(LMActorCritic, BasePolicy):
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
    :param compile: the cached rollout's KV cache and step (:mod:`lm_core.static_cache`): ``False`` (default) a
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
        when the algorithm building the policy is sb3-contrib's TRPO (:meth:`bind_algorithm`)
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
        self.P, self.T, self.V = check_token_spaces(observation_space, action_space, "LLMPolicy")
        if value_mode not in VALUE_MODES:
            raise unknown_name("value_mode", value_mode, VALUE_MODES)
        if mask_source not in MASK_SOURCES:
            raise unknown_name("mask_source", mask_source, MASK_SOURCES)
        if kl_estimator not in KL_ESTIMATORS:
            raise unknown_name("KL estimator", kl_estimator, KL_ESTIMATORS)
        check_sampling_options(temperature, top_k, top_p)
        if not value_lr_scale > 0:
            raise TextEnvsError(f"expected value_lr_scale > 0, got {value_lr_scale}")
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
        self.compile = self.decode_compile = check_compile_option(compile)
        self.group_observations = bool(group_observations)
        self.save_reference = bool(save_reference)
        self.dropout = bool(dropout)
        self.lora = lora
        self.dtype = dtype
        self.trust_remote_code = bool(trust_remote_code)
        self.kl_enabled = self.kl_coef > 0 or kl_target is not None
        self.double_backward = bool(double_backward) if double_backward is not None else None  # None: bind decides

        self._build_models(model, tokenizer, model_config, reference_source)
        self.action_dist = CategoricalDistribution(self.V)
        self.kl_controller = make_kl_controller(self.kl_coef, kl_target, self.kl_horizon) if self.kl_enabled else None
        self._fingerprint: tuple | None = None
        self._trainable: list[nn.Parameter] | None = None
        self._updates_since_mask_sync = 0
        self._mask_sync_due = False
        self.algorithm_ref: Any = None  # set by bind_algorithm
        self.train(False)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

        algorithm, named_buffer = algorithm_binding.constructing_algorithm()
        if algorithm is not None:
            self.bind_algorithm(algorithm, named_buffer)
        self.double_backward = bool(self.double_backward)

    # ------------------------------------------------------------------------------------------------------
    # construction helpers
    # ------------------------------------------------------------------------------------------------------
    def _build_models(self, model: Any, tokenizer: Any, model_config: dict[str, Any] | None,
                      reference_source: str | None) -> None:
        """Load the LM and the tokenizer, check them, make the frozen copies and build the actor-critic."""
        dtype = self.dtype
        if model_config is not None and model is None:
            lm = load_model(dict(model_config), dtype)
        elif model is None:
            lm, default_tok = default_model(self.V, dtype)
            tokenizer = tokenizer if tokenizer is not None else default_tok
        else:
            lm = load_model(model, dtype, trust_remote_code=self.trust_remote_code)
            if tokenizer is None and isinstance(model, (str, os.PathLike)) and os.path.isdir(model):
                tokenizer = tokenizer_in_folder(model)
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = load_tokenizer_spec(tokenizer)
        self.tokenizer = tokenizer
        check_model_vocabulary(lm, self.V, tokenizer)
        self.model_config = {k: v for k, v in lm.config.to_dict().items() if k not in ("_name_or_path",)}

        # frozen copies are made before any hook is registered on the model
        if self.lora is not None:
            lm = apply_lora(lm, self.lora)
        ref_needed = (self.kl_enabled or (self.masked and self.mask_source == "reference")) and self.lora is None
        if reference_source is None and not self.save_reference and ref_needed:
            if isinstance(model, (str, os.PathLike)):
                reference_source = os.path.abspath(model) if os.path.isdir(model) else os.fspath(model)
            elif model is None and model_config is None:  # the shipped model, when default_model loaded it
                reference_source = getattr(lm.config, "_name_or_path", None) or None
        self.reference_source = reference_source if ref_needed and not self.save_reference else None
        if self.reference_source is not None and model is None and model_config is not None:  # loading a save
            try:
                reference = frozen_copy(load_model(self.reference_source, dtype, trust_remote_code=self.trust_remote_code))
            except Exception as e:
                raise TextEnvsError(
                    f"this policy was saved without its frozen KL reference, which is rebuilt from "
                    f"{self.reference_source!r}, and that could not be loaded ({e}). Put the start model back there, "
                    "or load with custom_objects={'policy_kwargs': {..., 'reference_source': NEW_PATH}}."
                ) from e
        else:
            reference = frozen_copy(lm) if ref_needed else None
        self.build_actor_critic(
            lm, reference_model=reference,
            mask_model=frozen_copy(lm) if self.masked and self.mask_source == "policy_copy" else None,
            value_model=copy.deepcopy(lm) if self.value_mode == "separate" else None,
        )
        if self.lora is not None:  # the reference is the base model with the adapters disabled: no copy to make
            self.reference_model = LoraReference(self.model)

    def bind_algorithm(self, algorithm: Any, rollout_buffer_class: Any = UNKNOWN_CHOICE) -> None:
        """Wire this policy and the SB3 algorithm that trains it: the one place the policy learns its algorithm.

        Records the model config in the algorithm's ``policy_kwargs`` (``PPO.load`` rebuilds offline), turns
        ``double_backward`` on for TRPO, chooses the rollout buffer and binds an ``EpisodeRolloutBuffer`` (see
        :mod:`sb3_ext.algorithm_binding`). SB3's stock algorithms give a policy no handle on themselves, so the
        constructor calls this with the algorithm whose ``_setup_model`` builds it; call it yourself after building
        a policy by hand for an algorithm (idempotent).

        :param algorithm: the SB3 algorithm
        :param rollout_buffer_class: what the algorithm's constructor received (``None``: left out, so SB3's
            shuffled minibatches may be replaced by whole episodes); by default the buffer counts as chosen
        """
        algorithm_binding.bind_algorithm(self, algorithm, rollout_buffer_class)

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
            algorithm = algorithm_binding.bound_algorithm(self)
            buffer = getattr(algorithm, "rollout_buffer", None)
            if self.kl_enabled and buffer is not None and not isinstance(buffer, EpisodeRolloutBuffer):
                # a rollout buffer swapped in after construction would silently skip the penalty
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
        super().reset_cache()
        self._fingerprint = None

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(lr_schedule=self._dummy_schedule, model=None, tokenizer=None,
                    **{name: getattr(self, name) for name in _SAVED_OPTIONS})
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

    def get_state(self) -> dict[str, Any]:
        """What changes between updates besides the weights (:class:`text_envs.state.Stateful`): the KL
        coefficient and the mask-sync counters."""
        return {"kl_coef": self.kl_controller.value if self.kl_controller is not None else None,
                "updates_since_mask_sync": self._updates_since_mask_sync, "mask_sync_due": self._mask_sync_due}

    def set_state(self, state: dict[str, Any]) -> None:
        """Put back a state :meth:`get_state` returned."""
        if state["kl_coef"] is not None and self.kl_controller is not None:
            self.kl_controller.value = state["kl_coef"]
        self._updates_since_mask_sync = state["updates_since_mask_sync"]
        self._mask_sync_due = state["mask_sync_due"]

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
    # core computations (the model work is LMActorCritic's)
    # ------------------------------------------------------------------------------------------------------
    @staticmethod
    def _obs_parts(obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        return observation_parts(obs)

    def _trainable_fingerprint(self) -> tuple:
        # (storage, in-place version) of every trainable tensor: optimizer steps bump versions, TRPO's
        # ``param.data = ...`` and ``.to()`` change storages; the Parameter objects themselves never change
        if self._trainable is None:
            self._trainable = list(self.parameters())
        return tuple((p.data_ptr(), p._version) for p in self._trainable)

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
        return self.next_token_outputs(parts, cached)

    def _rollout_rows(self) -> int:
        """The rows (envs) of the policy's rollout cache, 0 before the first rollout."""
        state = self._states.get("policy")
        return state.B if state is not None else 0

    def _outputs(self, obs: Any, actions: th.Tensor | None = None):
        """Logits (N, V), value-head input (N, H), mask logits (or None) and the taken action of each output to keep
        in a top-k/top-p support (N,) (``-1`` where unknown; or None) of an EpisodeBatch or observations."""
        with self.attention_context():
            if isinstance(obs, EpisodeBatch):
                batch = obs
            elif not self.group_observations:
                taken = actions if actions is not None else obs.get(TAKEN_ACTIONS_KEY)  # type: ignore[union-attr]
                return (*self._next_outputs(obs), taken)
            else:
                if actions is None:
                    actions = obs.get(TAKEN_ACTIONS_KEY)  # type: ignore[union-attr]
                batch = EpisodeBatch.from_observations(*self._obs_parts(obs), actions=actions)
                if self.use_cache and not th.is_grad_enabled() and (
                        batch.num_episodes == len(batch) or self._rollout_rows() == len(batch)):
                    # one observation per episode or per env row (the rollout's last step, where rows of equal
                    # texts make one chain): the rollout cache is cheaper
                    return (*self._next_outputs(obs), batch.taken_actions)
            logits, hidden, mask_logits = self.episode_outputs(batch)
            taken = actions if actions is not None else batch.taken_actions
            return logits, hidden, mask_logits, taken

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
        return actions, self.value(hidden), dist.log_prob(actions)

    def evaluate_actions(self, obs: Any, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Values (N, 1), log-probs (N,) and entropies (N,) of taken actions (EpisodeBatch or observations)."""
        actions = actions.long().flatten()
        logits, hidden, mask_logits, _ = self._outputs(obs, actions)
        # Categorical's log_prob and entropy, keeping one (N, V) tensor for the backward pass instead of five
        log_prob, entropy = taken_log_probs_and_entropy(self.distribution_logits(logits, mask_logits, actions), actions)
        return self.value(hidden), log_prob, entropy

    def log_probs_entropy_and_kl(self, obs: Any, actions: th.Tensor,
                                 reference_log_p: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """:meth:`evaluate_actions` without the values, plus the exact KL (N,) to a reference whose log-probabilities
        ``reference_log_p`` (N, V) are given (:func:`lm_core.sampling.taken_log_probs_entropy_and_kl`: one pass)."""
        actions = actions.long().flatten()
        logits, _, mask_logits, _ = self._outputs(obs, actions)
        return taken_log_probs_entropy_and_kl(self.distribution_logits(logits, mask_logits, actions), actions,
                                              reference_log_p)

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
        return self.value(hidden)

    def check_observation(self, observation: Any) -> None:
        """Raise :class:`ObservationSpaceError` naming what was expected unless ``observation`` is one text env
        observation or a batch of them (:func:`lm_core.observations.check_observation`)."""
        check_observation(observation, self.P, self.T, self.V)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """SB3's ``predict``, after :meth:`check_observation` (a wrong observation gets a clear error, not an
        index error deep inside the model)."""
        self.check_observation(observation)
        return super().predict(observation, state, episode_start, deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        with self.attention_context():
            logits, _, mask_logits = self._next_outputs(observation)  # the cached path: predict is a rollout
        dist = self._distribution(logits, mask_logits)
        return dist.get_actions(deterministic=True) if deterministic else sample_tokens(dist.distribution.probs)

    # ------------------------------------------------------------------------------------------------------
    # KL penalty
    # ------------------------------------------------------------------------------------------------------
    def reference_log_probs(self, batch: EpisodeBatch, actions: th.Tensor, chunk_episodes: int = 32) -> th.Tensor:
        """log ref(a_t) (N,) of the frozen reference at the batch's output tokens, teacher-forced, in chunks.

        The reference's logits get the policy's temperature, so the KL compares like with like.
        """
        return self.reference_log_probs_at(batch, actions, chunk_episodes)

    def token_kl(self, batch: EpisodeBatch, actions: th.Tensor, log_probs: th.Tensor) -> th.Tensor:
        """Per-token KL estimate (N,) of the sampling policy to the reference (``kl_estimator``)."""
        return self.token_kl_at(batch, actions, log_probs, self.kl_estimator)

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
