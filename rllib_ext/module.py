"""LMRLModule: a Hugging Face language model as an RLlib ``TorchRLModule`` (new API stack; one action = one token).

Shapes: ``B`` env rows of one env runner, ``N`` timesteps of a learner batch, ``E`` episodes (prefix chains) found in
it, ``P`` prompt length, ``T`` generated length, ``V`` vocabulary (``action_space.n``), ``H`` hidden size.

How RLlib drives it:

* **Env runners** call ``forward_exploration`` (``forward_inference`` for greedy evaluation) once per token for the
  ``B`` envs of the runner. The module keeps a private per-row KV cache (:class:`lm_core.decode_state.DecodeState`,
  the one SB3's ``LLMPolicy`` uses), so a step costs one decoder token. The cache is *not* RLlib module "state" (RLlib
  writes that into every episode step): it lives in the module object of each runner and is dropped whenever
  :meth:`set_state` loads new weights. The module samples the token itself (:func:`lm_core.sampling.sample_tokens`)
  and returns ``actions`` and ``action_logp`` only: an episode stores 8 bytes per step for them, beside the
  observation, the reward and RLlib's weights version, where RLlib's ``GetActions`` connector would also store
  ``V`` float32 distribution inputs per step (24 KB at the shipped tokenizer's V=6000, 128 KB at 32,000). The
  observation the module reads is the env's full one (``(2P + 2T) * 8`` bytes, 4.9 KB on TextSummarization-v0 with
  P=256, T=48); the episode keeps only its generated count and the prompt once per chunk
  (:mod:`rllib_ext.episodes`), and the learner rebuilds the full observations before this module sees them.
* **Learners** call ``forward_train`` on a flat batch of timesteps of many episodes (shuffled or cut at fragment
  boundaries). The observation holds the prompt and the tokens generated so far, so the timesteps are grouped back
  into episodes (:meth:`lm_core.episodes.EpisodeBatch.from_observations`: same prompt, generated ids that extend one
  another) and each episode gets ONE teacher-forced forward; the per-step outputs are gathered back in batch
  order. They equal the runner's cached per-step outputs to float error (``tests/test_rllib.py``).
* ``compute_values`` (``ValueFunctionAPI``) applies the value head to the ``embeddings`` the train forward returned,
  or runs its own teacher-forced pass without gradient (GAE's and V-trace's bootstrap values).
* APPO's target network (``TargetNetworkAPI``) is a frozen copy of the LM, read teacher-forced the same way.

The model work is :class:`lm_core.actor_critic.LMActorCritic`'s, shared with SB3's ``LLMPolicy``; so is the
distribution (:func:`lm_core.sampling.distribution_logits`): logits over ``temperature``,
optionally restricted to the top-k tokens of the frozen start model (the taken token always kept in the support
during updates). The frozen start model (``reference_model``) also gives the reference log-probs of the KL penalty
(:meth:`reference_log_probs`, called by :class:`rllib_ext.connectors.TokenKLPenalty` on the learner).

``model_config`` keys (see :func:`rllib_ext.algorithm_config`, which fills them): ``model`` (``None``: the shipped
tiny T5 when its tokenizer matches ``V``, else a tiny T5 sized to ``V``; or anything
:func:`lm_core.backends.load_model` accepts), ``model_seed`` (seeds a model built from a config, so that every
runner and learner process builds the same start weights), ``temperature``, ``top_k``, ``top_p``, ``kl_coef``
(> 0: the learner keeps the frozen reference), ``value_mode`` (``"detached"``: the value loss does not train the LM
trunk; ``"shared"``: it does), ``value_lr_scale`` (the value head's output multiplier, as ``LLMPolicy``'s).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch as th
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI, ValueFunctionAPI
from ray.rllib.core.rl_module.apis.target_network_api import TARGET_NETWORK_ACTION_DIST_INPUTS
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from lm_core.actor_critic import LMActorCritic, check_model_vocabulary, check_sampling_options, frozen_copy
from lm_core.backends import LMBackend, make_backend
from lm_core.episodes import EpisodeBatch, teacher_forced_outputs, trimmed_tokens
from lm_core.observations import check_token_spaces, observation_parts
from lm_core.sampling import distribution_logits, sample_tokens
from text_envs.errors import TextEnvsError, unknown_name

from .env import start_model

__all__ = ["LMRLModule", "DEFAULT_MODEL_CONFIG", "as_tensors"]

#: every ``model_config`` key the module reads, with its default
DEFAULT_MODEL_CONFIG: dict[str, Any] = {
    "model": None,
    "model_seed": 0,
    "temperature": 1.0,
    "top_k": None,
    "top_p": None,
    "kl_coef": 0.0,
    "value_mode": "detached",
    "value_lr_scale": 1.0,
}

#: state-dict prefixes of frozen weights that are never sent to env runners (every process builds them itself)
_FROZEN = ("reference_model.", "_target_model.")


def as_tensors(state: dict[str, Any], prefix: str = "") -> dict[str, th.Tensor]:
    """A state dict of NumPy arrays (RLlib's weights) as tensors, keeping the entries under ``prefix`` (cut off).

    The arrays are often read-only (Ray's object store); ``load_state_dict`` only copies from them, so torch's
    warning about non-writable arrays is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return {k[len(prefix):]: th.as_tensor(v) for k, v in state.items() if k.startswith(prefix)}


class LMRLModule(LMActorCritic, TorchRLModule, ValueFunctionAPI, TargetNetworkAPI, InferenceOnlyAPI):
    """Actor-critic RLModule over a Hugging Face LM for the text envs (see the module docstring)."""

    # ------------------------------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Build the LM (the same start weights in every process), the frozen reference and the value head."""
        # other keys are RLlib's defaults for its own models (e.g. vf_share_layers, which PPO adds): ignored
        cfg = {**DEFAULT_MODEL_CONFIG, **(self.model_config or {})}
        self.P, self.T, self.V = check_token_spaces(self.observation_space, self.action_space, "LMRLModule")
        self.temperature = float(cfg["temperature"])
        self.top_k, self.top_p = cfg["top_k"], cfg["top_p"]
        self.value_mode = cfg["value_mode"]
        self.kl_coef = float(cfg["kl_coef"])
        self.value_lr_scale = float(cfg["value_lr_scale"])
        check_sampling_options(self.temperature, self.top_k, self.top_p)
        if self.value_mode not in ("detached", "shared"):
            raise unknown_name("value_mode", self.value_mode, ("detached", "shared"))

        # a config or the random default model: seeded, so every runner and learner builds the same start weights
        # (the frozen reference is never sent over the network; each process has its own identical copy)
        lm, self.tokenizer = start_model(cfg["model"], self.V, int(cfg["model_seed"]))
        check_model_vocabulary(lm, self.V)
        # the frozen start model: the KL reference and the top-k/top-p support (RLlib's runners keep private decode
        # caches, lm_core's, which are not RLlib "state"); runners never compute values: GAE and V-trace do it on
        # the learner
        needs_reference = self.masked or (self.kl_coef > 0 and not self.inference_only)
        self.build_actor_critic(lm, reference_model=frozen_copy(lm) if needs_reference else None,
                                value_head=not self.inference_only)
        self._target_model: nn.Module | None = None
        self._target_backend: LMBackend | None = None
        self._mode: bool | None = None
        self.train(not self.inference_only)  # runners stay in eval mode: no mode switch per step

    def get_non_inference_attributes(self) -> list[str]:
        """What env runners do not build: the value head, APPO's target LM (the reference only without top-k)."""
        return ["value_head", "_target_model"] + ([] if self.masked else ["reference_model"])

    def train(self, mode: bool = True) -> LMRLModule:
        """RLlib puts the module in train mode for updates; the LMs keep dropout off (it would corrupt the
        importance ratio between the sampling and the updated policy).

        RLlib switches modes around every forward (``forward_exploration`` runs in eval mode and restores the
        previous one): a switch to the mode already set returns at once instead of walking every submodule (a
        quarter of an env runner's time on TextCopy-v0 otherwise)."""
        if getattr(self, "_mode", None) == bool(mode):
            return self
        super().train(mode)
        for lm in (self.model, getattr(self, "reference_model", None), getattr(self, "_target_model", None)):
            if lm is not None:
                lm.eval()
        self._mode = bool(mode)
        return self

    # ------------------------------------------------------------------------------------------------------
    # weights
    # ------------------------------------------------------------------------------------------------------
    def get_state(self, *args: Any, inference_only: bool = False, **kwargs: Any) -> dict[str, Any]:
        """The weights; for env runners (``inference_only``) without the frozen models, which every process builds
        identically at setup and which never change (a sync would ship a second copy of the LM for nothing)."""
        state = super().get_state(*args, inference_only=inference_only, **kwargs)
        if inference_only:
            state = {k: v for k, v in state.items() if not k.startswith(_FROZEN)}
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Load weights and drop the rollout caches, which were filled with the previous weights."""
        missing, _ = self.load_state_dict(as_tensors(state), strict=False)
        missing = [k for k in missing if not k.startswith(_FROZEN)]
        if self.inference_only and missing:
            raise ValueError(f"LMRLModule.set_state: the state lacks {missing[:5]}... (an architecture mismatch)")
        self.reset_cache()

    # ------------------------------------------------------------------------------------------------------
    # inputs
    # ------------------------------------------------------------------------------------------------------
    def _obs_parts(self, obs: dict[str, th.Tensor]) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """prompt_ids (N, P), prompt_mask (N, P), generated_ids (N, T), generated count (N,), all long, on the
        model's device."""
        return observation_parts(obs, self.backend.model.get_output_embeddings().weight.device)

    def _episodes(self, batch: dict[str, Any]) -> EpisodeBatch:
        """The batch's timesteps grouped into episodes (prefix chains), one output per timestep in batch order."""
        parts = self._obs_parts(batch[Columns.OBS])
        actions = batch.get(Columns.ACTIONS)
        if actions is not None:
            actions = th.as_tensor(actions).to(parts[0].device).long().reshape(-1)
        return EpisodeBatch.from_observations(*parts, actions=actions)

    # ------------------------------------------------------------------------------------------------------
    # env runners: one cached step per token
    # ------------------------------------------------------------------------------------------------------
    @th.no_grad()
    def rollout_outputs(self, obs: dict[str, th.Tensor]) -> tuple[th.Tensor, th.Tensor]:
        """The trained distribution's logits (B, V) and the value-head input (B, H) at each observation, from the
        runner's cached decode (one decoder token per row that continues its episode; a prefill for the others)."""
        logits, hidden, mask_logits = self.next_token_outputs(self._obs_parts(obs), cached=True)  # (B, V), (B, H)
        return self.distribution_logits(logits, mask_logits), hidden

    def _forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        logp_all = self.rollout_outputs(batch[Columns.OBS])[0].log_softmax(-1)  # (B, V)
        actions = sample_tokens(logp_all.exp())  # (B,)
        return {Columns.ACTIONS: actions, Columns.ACTION_LOGP: logp_all.gather(-1, actions[:, None]).squeeze(-1)}

    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        logp_all = self.rollout_outputs(batch[Columns.OBS])[0].log_softmax(-1)
        actions = logp_all.argmax(-1)  # greedy decoding
        return {Columns.ACTIONS: actions, Columns.ACTION_LOGP: logp_all.gather(-1, actions[:, None]).squeeze(-1)}

    # ------------------------------------------------------------------------------------------------------
    # learners: one teacher-forced forward per episode
    # ------------------------------------------------------------------------------------------------------
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        episodes = self._episodes(batch)
        logits, hidden, mask_logits = self.episode_outputs(episodes)  # (N, V), (N, H), (N, V) or None
        dist_inputs = self.distribution_logits(logits, mask_logits, episodes.taken_actions)
        return {Columns.ACTION_DIST_INPUTS: dist_inputs, Columns.EMBEDDINGS: hidden}

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError("LMRLModule implements _forward_exploration, _forward_inference and _forward_train")

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> th.Tensor:
        """Values (N,). With ``embeddings`` (the train forward's hidden states) the head only, in the loss's graph;
        without, a teacher-forced pass of its own, without gradient (GAE's and V-trace's bootstrap values)."""
        if embeddings is None:
            with th.no_grad():
                episodes = self._episodes(batch)
                _, embeddings = teacher_forced_outputs(self.backend, episodes)
        return self.value(embeddings).squeeze(-1)

    @th.no_grad()
    def reference_log_probs(self, batch: dict[str, Any]) -> th.Tensor:
        """log ref(a) (N,) of the frozen start model at the batch's taken actions, teacher-forced (the KL penalty's
        reference; its logits get the policy's temperature, so the KL compares like with like)."""
        if self.reference_backend is None:
            raise TextEnvsError("this module has no frozen reference model: build it with kl_coef > 0 or top_k")
        episodes = self._episodes(batch)
        return self.reference_log_probs_at(episodes, episodes.taken_actions)

    # ------------------------------------------------------------------------------------------------------
    # APPO's target network
    # ------------------------------------------------------------------------------------------------------
    def make_target_networks(self) -> None:
        """A frozen copy of the LM (APPO's old policy); the learner syncs it from the LM."""
        self._target_model = frozen_copy(self.model)
        self._target_backend = make_backend(self._target_model, self.V)
        self._mode = None  # the next train()/eval() sets the new submodules' modes too

    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.model, self._target_model)] if self._target_model is not None else []

    @th.no_grad()
    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The target LM's distribution logits (N, V) at the batch's timesteps, teacher-forced."""
        episodes = self._episodes(batch)
        tokens = trimmed_tokens(episodes)
        logits, _ = teacher_forced_outputs(self._target_backend, episodes, tokens)
        mask_logits = None
        if self.masked:
            mask_logits, _ = teacher_forced_outputs(self.reference_backend, episodes, tokens)
        return {TARGET_NETWORK_ACTION_DIST_INPUTS: distribution_logits(
            logits, self.temperature, mask_logits, self.top_k, self.top_p, episodes.taken_actions)}
