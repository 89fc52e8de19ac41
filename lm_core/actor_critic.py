"""The language-model actor-critic every engine adapter shares: next-token outputs through the rollout's decode
cache, teacher-forced outputs of whole episodes, the value head, the frozen reference copy and its log-probs.

Shapes: ``B`` rows (envs), ``E`` episodes, ``N`` output tokens, ``V`` vocabulary (the action space's ``n``),
``H`` hidden size.

:class:`LMActorCritic` is a mixin for an ``nn.Module`` of an engine (SB3's :class:`sb3_ext.LLMPolicy`, RLlib's
:class:`rllib_ext.LMRLModule`): the engine's class keeps what its engine calls (SB3's ``forward`` and
``evaluate_actions``, RLlib's ``_forward_train``...) and the mixin computes the outputs those read. The models are
attributes of the engine's module itself (``model``, ``reference_model``, ``value_head``...), so state-dict keys
(and every saved file) are those of the engine's class. The engine's constructor validates its options, sets
``V``, ``temperature``, ``top_k``, ``top_p``, ``value_mode``, ``value_lr_scale`` and calls
:meth:`LMActorCritic.build_actor_critic`.

Two ways to the same outputs (they agree to float error, ``tests/test_plain_path.py``):

* :meth:`LMActorCritic.next_token_outputs`: one token per row, for rollouts; ``cached=True`` goes through one
  :class:`~lm_core.decode_state.DecodeState` per model (one decoder token per row that continues its episode),
  ``cached=False`` through one full forward per row (the uncached path, e.g. under gradient);
* :meth:`LMActorCritic.episode_outputs`: every output of an :class:`~lm_core.episodes.EpisodeBatch`, one
  teacher-forced forward per episode, for updates.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch as th
from torch import nn

from text_envs.errors import TextEnvsError, TokenizerMismatchError

from .backends import LMBackend, make_backend
from .decode_state import DecodeState
from .episodes import EpisodeBatch, sequence_log_probs, teacher_forced_outputs, trimmed_tokens
from .kl import kl_estimate, sequence_kl
from .sampling import distribution_logits
from .static_cache import StaticDecodeState

__all__ = ["LMActorCritic", "frozen_copy", "check_model_vocabulary", "check_sampling_options"]

#: one output of :meth:`LMActorCritic.next_token_outputs` / :meth:`LMActorCritic.episode_outputs`: logits (N, V),
#: value-head input (N, H), the frozen mask model's logits (N, V) or None
Outputs = tuple[th.Tensor, th.Tensor, "th.Tensor | None"]


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen deep copy of a language model (no gradient, eval mode), without the forward pre-hooks a backend put
    on the original's LM head (a copy made after :func:`~lm_core.backends.make_backend` would otherwise capture its
    hidden states into the original's backend).

    The frozen KL reference, a top-k/top-p mask model, RLlib's target network and a model to save are all made
    with it.
    """
    frozen = copy.deepcopy(model)
    head = frozen.get_output_embeddings()
    if head is not None:
        head._forward_pre_hooks.clear()
    frozen.requires_grad_(False)
    frozen.eval()
    return frozen


def check_sampling_options(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Refuse a temperature that is not positive, a ``top_k`` that is not an int >= 1 or a ``top_p`` outside (0, 1]."""
    if not temperature > 0:
        raise TextEnvsError(f"expected temperature > 0, got {temperature}")
    if top_k is not None and not (isinstance(top_k, int) and top_k >= 1):
        raise TextEnvsError(f"expected top_k to be None or an int >= 1, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise TextEnvsError(f"expected top_p in (0, 1], got {top_p}")


def check_model_vocabulary(lm: nn.Module, V: int, tokenizer: Any = None) -> None:
    """Refuse a model with fewer than ``V`` logits, and a tokenizer that is not the env's (its size) or whose
    special ids (EOS; pad and decoder start for seq2seq) differ from the model config's.

    :param lm: the language model
    :param V: the action space's ``n``
    :param tokenizer: the env's tokenizer, or None to check the model's width only
    :raises TokenizerMismatchError: saying which ids differ and how to fix it
    """
    head = lm.get_output_embeddings()
    width = int(head.weight.shape[0]) if head is not None else int(lm.config.vocab_size)
    if width < V:
        raise TokenizerMismatchError(
            f"the model has {width} logits but the action space has V={V} tokens: expected at least V logits. Use "
            "the model that goes with the env's tokenizer, or resize its embeddings (model.resize_token_embeddings(V))."
        )
    if tokenizer is None:
        return
    if len(tokenizer) != V:
        raise TokenizerMismatchError(
            f"the tokenizer has {len(tokenizer)} tokens but the action space has V={V}: pass the env's tokenizer "
            "(env.unwrapped.tokenizer)"
        )
    cfg = lm.config
    checks = [("eos_token_id", tokenizer.eos_token_id, getattr(cfg, "eos_token_id", None))]
    if getattr(cfg, "is_encoder_decoder", False):
        checks.append(("pad_token_id", tokenizer.pad_token_id, getattr(cfg, "pad_token_id", None)))
        start = getattr(cfg, "decoder_start_token_id", None)
        if start is not None and not 0 <= start < V:
            raise TokenizerMismatchError(f"the model's decoder_start_token_id={start} is outside the action space [0, {V})")
    for name, tok_id, model_id in checks:
        ok = tok_id is None or tok_id in model_id if isinstance(model_id, list) else (
            tok_id is None or model_id is None or tok_id == model_id)
        if not ok:
            raise TokenizerMismatchError(
                f"special id mismatch: tokenizer {name}={tok_id} but model config {name}={model_id}. Use the "
                f"tokenizer the model was trained with, or set model.config.{name} to the tokenizer's id if that is "
                "intended."
            )


class LMActorCritic:
    """A language model as an actor-critic over tokens: a mixin for an engine's ``nn.Module`` (module docstring).

    Attributes the engine sets before :meth:`build_actor_critic`: ``V`` (vocabulary), ``temperature``, ``top_k``,
    ``top_p`` (the frozen support; None: none), ``value_mode`` (``"detached"``: the value loss does not train the LM
    trunk), ``value_lr_scale`` (the value head's output multiplier). Optional: ``decode_compile`` (the decode
    cache: ``False`` dynamic, else :class:`~lm_core.static_cache.StaticDecodeState` with that ``compile`` option;
    not named ``compile``, which ``nn.Module`` and RLlib's modules define), ``double_backward`` (teacher-forced
    forwards with the differentiable-twice "math" attention kernel).
    """

    V: int
    temperature: float
    top_k: int | None
    top_p: float | None
    value_mode: str
    value_lr_scale: float
    decode_compile: bool | str = False
    double_backward: bool = False

    def build_actor_critic(
        self,
        lm: nn.Module,
        reference_model: nn.Module | None = None,
        mask_model: nn.Module | None = None,
        value_model: nn.Module | None = None,
        value_head: bool = True,
    ) -> None:
        """Attach the models and their backends, and a zero value head.

        :param lm: the trained language model (``model``)
        :param reference_model: its frozen reference (:func:`frozen_copy`; KL penalty, default mask model) or None
        :param mask_model: a frozen model of its own for the top-k/top-p support (NLPO's policy copy) or None: with
            ``top_k``/``top_p`` set, the reference (or, with neither, the trained model) gives the support
        :param value_model: a separate LM for the value head (``value_mode="separate"``) or None: the trained LM's
            final hidden state
        :param value_head: build the value head (an RLlib env runner has none)
        """
        # registration order = state-dict and parameter order, as the engines had it before this class existed
        self.reference_model = reference_model
        self.mask_model = mask_model
        self.value_model = value_model
        self.model = lm
        self.backend: LMBackend = make_backend(lm, self.V)
        self.value_backend = make_backend(value_model, self.V) if value_model is not None else None
        self.reference_backend = make_backend(reference_model, self.V) if reference_model is not None else None
        self.mask_backend = make_backend(mask_model, self.V) if mask_model is not None else None
        if self.masked and self.mask_backend is None:
            self.mask_backend = self.reference_backend if self.reference_backend is not None else self.backend
        if value_head:
            self.value_head = nn.Linear(self.backend.hidden_size, 1)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)
        self._states: dict[str, DecodeState] = {}  # the rollout's decode caches, one per model (never saved)

    @property
    def masked(self) -> bool:
        """Whether the distribution is restricted to a frozen model's top-k / top-p tokens."""
        return self.top_k is not None or self.top_p is not None

    # ------------------------------------------------------------------------------------------------------
    # decode caches
    # ------------------------------------------------------------------------------------------------------
    def decode_state(self, name: str, backend: LMBackend) -> DecodeState:
        """The rollout cache of one model (``"policy"``, ``"value"``, ``"mask"``), made at first use."""
        if name not in self._states:
            compiled = self.decode_compile
            self._states[name] = StaticDecodeState(backend, compiled) if compiled else DecodeState(backend)
        return self._states[name]

    def reset_cache(self) -> None:
        """Drop every cached rollout row (after the weights changed: the caches hold the old ones' keys/values)."""
        for state in self._states.values():
            state.reset()

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self._states = {}  # caches hold tensors on the old device/dtype
        return super()._apply(fn, *args, **kwargs)  # type: ignore[misc]

    # ------------------------------------------------------------------------------------------------------
    # outputs
    # ------------------------------------------------------------------------------------------------------
    def next_token_outputs(
        self, parts: tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor], cached: bool
    ) -> Outputs:
        """Logits (B, V), value-head input (B, H) and mask-model logits (or None) at the next token of each row.

        :param parts: ``prompt_ids, prompt_mask, generated_ids, generated count``
            (:func:`~lm_core.observations.observation_parts`)
        :param cached: through the decode caches (rollouts, no gradient); False: one full forward per row. A
            model whose rows cannot share a cache exactly (``backend.shared_cache_exact``: a seq2seq decoder with
            absolute positions, e.g. BART) always takes the full forward
        """

        def run(name: str, backend: LMBackend) -> tuple[th.Tensor, th.Tensor]:
            if cached and backend.shared_cache_exact:
                return self.decode_state(name, backend)(*parts)
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

    def episode_outputs(self, batch: EpisodeBatch) -> Outputs:
        """Teacher-forced outputs at the batch's output tokens: logits (N, V), hidden (N, H), mask logits (or None)."""
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

    def attention_context(self) -> Any:
        """The attention kernel for a forward: the "math" one under gradient when ``double_backward`` (its graph can
        be differentiated twice: TRPO's Hessian-vector products; the fused kernels cannot), else unchanged."""
        if self.double_backward and th.is_grad_enabled():
            from torch.nn.attention import SDPBackend, sdpa_kernel

            return sdpa_kernel(SDPBackend.MATH)
        return contextlib.nullcontext()

    def value(self, hidden: th.Tensor) -> th.Tensor:
        """Values (N, 1) from value-head inputs (N, H)."""
        if self.value_mode == "detached":
            hidden = hidden.detach()
        return self.value_head(hidden.to(self.value_head.weight.dtype)) * self.value_lr_scale  # (N, 1)

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

    # ------------------------------------------------------------------------------------------------------
    # the frozen reference
    # ------------------------------------------------------------------------------------------------------
    @th.no_grad()
    def reference_log_probs_at(self, batch: EpisodeBatch, actions: th.Tensor, chunk_episodes: int = 32) -> th.Tensor:
        """log ref(a_t) (N,) of the frozen reference at the batch's output tokens, teacher-forced, in chunks.

        The reference's logits get the policy's temperature, so the KL compares like with like. A LoRA model's
        reference is its base (the adapters disabled).
        """
        backend, context = self.reference_decoder()
        return sequence_log_probs(backend, batch, actions, self.temperature, chunk_episodes, context=context)

    @th.no_grad()
    def reference_logits(self, batch: EpisodeBatch, tokens: th.Tensor | None = None) -> th.Tensor:
        """The frozen reference's raw logits (N, V) at the batch's outputs, teacher-forced (one forward): the
        reference model's, or a LoRA model's base (the trained model with its adapters disabled).

        :param tokens: the batch's tokens cut to its last output (:func:`lm_core.episodes.trimmed_tokens`), or None
        """
        backend, context = self.reference_decoder()
        with context():
            return teacher_forced_outputs(backend, batch, tokens)[0]

    def reference_decoder(self) -> tuple[LMBackend, Any]:
        """The backend that runs as the frozen reference and the context to run it in: the reference model's
        backend (``contextlib.nullcontext``), or a LoRA model's own with its adapters disabled; the one place that
        decides which (the reference's log-probs, logits and the KL anchor's reference texts)."""
        if self.reference_backend is not None:
            return self.reference_backend, contextlib.nullcontext
        if getattr(self, "lora", None) is not None:
            return self.backend, self.model.disable_adapter
        raise TextEnvsError("this policy has no reference model: construct it with kl_coef > 0")

    @th.no_grad()
    def text_kl(self, reference_backend: LMBackend, prompt_ids: th.Tensor, prompt_mask: th.Tensor,
                tokens: th.Tensor) -> float:
        """KL(pi || ref) of texts, exact over the vocabulary (:func:`lm_core.kl.sequence_kl`), summed over them: the
        trained distribution (temperature, no top-k/top-p support) against the reference's at that temperature.

        :param reference_backend: the reference model's backend (e.g. the start model's)
        :param prompt_ids: (E, P) left-padded prompts
        :param prompt_mask: (E, P)
        :param tokens: (E, L) the texts' tokens (right-padded: pad positions count too; pass one text to avoid it)
        """
        logits, _ = self.backend.forward_sequences(prompt_ids, prompt_mask, tokens)  # (E, L, V)
        reference_logits, _ = reference_backend.forward_sequences(prompt_ids, prompt_mask, tokens)
        return float(sequence_kl(self.distribution_logits(logits), self.distribution_logits(reference_logits)))

    def token_kl_at(self, batch: EpisodeBatch, actions: th.Tensor, log_probs: th.Tensor,
                    estimator: str = "k1") -> th.Tensor:
        """Per-token KL estimate (N,) of the sampling policy (its ``log_probs`` of ``actions``) to the reference."""
        return kl_estimate(log_probs.float(), self.reference_log_probs_at(batch, actions), estimator)
