"""A KL anchor: the exact KL(pi || ref) on prompts beyond the training env's, as a loss term of each update.

The KL penalty of the policy-gradient methods is paid along the texts the policy writes for the training prompts:
it holds the policy near its start model there and nowhere else. On openings worded otherwise the trained model's
KL can be several times its KL in distribution (benchmarks/RESULTS.md, the main job's generalisation table). The
anchor adds, at every optimizer step, ``coef`` times the mean over a few texts of

    sum_t KL(pi(.|s_t) || ref(.|s_t))      exact over the vocabulary (lm_core.kl.vocabulary_kl)

on **anchor prompts** the caller chooses (e.g. review openings of another wording), with texts sampled afresh at
each update from the policy (``sampler="policy"``: the states the policy would visit there) or the reference
(``"reference"``). The states are held fixed (no gradient through the sampling), as per-token KL penalties are.
The term is 0 with a zero gradient while the policy equals the reference; its gradient pulls the policy's
distribution at those states back to the reference's.

Sampling is seeded by ``(seed, update index)`` inside a forked torch RNG, so an anchored run repeats exactly and the
rollouts' random stream is the one of a run without the anchor.

Shapes: ``M`` anchor prompts, ``B`` texts per update, ``P`` prompt length, ``T`` token budget, ``V`` vocabulary.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch as th

from lm_core.decode_state import DecodeState
from lm_core.episodes import teacher_forced_outputs, trimmed_tokens
from lm_core.kl import vocabulary_kl
from lm_core.sampling import sample_tokens
from text_envs.errors import TextEnvsError, unknown_name

from .base import episode_batch

__all__ = ["KLAnchor", "ANCHOR_SAMPLERS"]

ANCHOR_SAMPLERS = ("policy", "reference")


class KLAnchor:
    """The anchor's prompts, settings and loss (see the module docstring).

    :param prompt_ids: (M, P) left-padded prompt ids, encoded as the training env encodes its prompts
        (``env.unwrapped.encode_prompt``)
    :param prompt_mask: (M, P) 1 on real prompt tokens
    :param coef: the loss term's coefficient (> 0), in the unit of the KL coefficient ``beta``: nats per text
    :param texts: texts sampled per update (B, at most M: a seeded draw of prompts without repetition)
    :param sampler: ``"policy"`` or ``"reference"``: the model that writes the anchor texts
    :param max_new_tokens: the texts' token budget (the env's ``T``)
    :param eos_token_id: ends a text
    :param pad_token_id: pads the generated ids
    :param seed: seeds each update's draw with the update index
    """

    def __init__(self, prompt_ids: Any, prompt_mask: Any, coef: float, texts: int = 16, sampler: str = "policy",
                 max_new_tokens: int = 48, eos_token_id: int = 1, pad_token_id: int = 0, seed: int = 0) -> None:
        self.prompt_ids = np.asarray(prompt_ids, dtype=np.int64)
        self.prompt_mask = np.asarray(prompt_mask, dtype=np.int64)
        if self.prompt_ids.ndim != 2 or self.prompt_ids.shape != self.prompt_mask.shape or not len(self.prompt_ids):
            raise TextEnvsError(f"expected anchor prompt ids and mask of one shape (M, P) with M >= 1, got "
                                f"{self.prompt_ids.shape} and {self.prompt_mask.shape}: encode them with the env's "
                                "encode_prompt and stack them")
        if not coef > 0 or texts < 1:
            raise TextEnvsError(f"expected an anchor coefficient > 0 and texts >= 1 per update, got {coef} and {texts}")
        if sampler not in ANCHOR_SAMPLERS:
            raise unknown_name("anchor sampler", sampler, ANCHOR_SAMPLERS)
        self.coef, self.texts, self.sampler = float(coef), min(int(texts), len(self.prompt_ids)), sampler
        self.max_new_tokens, self.eos_token_id, self.pad_token_id = int(max_new_tokens), int(eos_token_id), int(
            pad_token_id)
        self.seed = int(seed)

    @th.no_grad()
    def sample(self, policy: Any, update: int) -> list[dict[str, Any]]:
        """B texts for update ``update``: seeded prompts, tokens drawn token by token (through a KV cache; each text
        ends at its EOS or at the budget), as :func:`~sb3_ext.algorithms.base.episode_batch`'s episodes."""
        rng = np.random.default_rng([self.seed, int(update)])
        rows = rng.choice(len(self.prompt_ids), size=self.texts, replace=False)
        # the reference decodes as the reference model, or as a LoRA model's base (its adapters disabled)
        backend, context = (policy.backend, contextlib.nullcontext) if self.sampler == "policy" else (
            policy.reference_decoder())
        decode = DecodeState(backend)  # its own KV cache: one shared one-token step per position
        device = policy.device
        p_ids = th.as_tensor(self.prompt_ids[rows], device=device)  # (B, P)
        p_mask = th.as_tensor(self.prompt_mask[rows], device=device)
        gen = th.full((self.texts, self.max_new_tokens), self.pad_token_id, dtype=th.long, device=device)  # (B, T)
        count = th.zeros(self.texts, dtype=th.long, device=device)  # (B,)
        done = np.zeros(self.texts, dtype=bool)
        lengths = np.full(self.texts, self.max_new_tokens)
        training = policy.training
        policy.set_training_mode(False)  # as in a rollout (dropout off)
        with th.random.fork_rng(devices=[]), context():
            th.manual_seed(int(rng.integers(2**62)))
            for t in range(self.max_new_tokens):
                logits, _ = decode(p_ids, p_mask, gen, count)  # (B, V)
                token = sample_tokens(th.softmax(policy.distribution_logits(logits).float(), -1))  # (B,)
                # every row advances, ended ones too (their tokens after the EOS are dropped below): a T5 cache
                # whose rows stood still while others advanced would rebuild them
                gen[:, t] = token
                count += 1
                ended = (token == self.eos_token_id).cpu().numpy() & ~done
                lengths[ended] = t + 1
                done |= ended
                if done.all():
                    break
        policy.set_training_mode(training)
        tokens = gen.cpu().numpy()
        return [{"prompt_ids": self.prompt_ids[r], "prompt_mask": self.prompt_mask[r], "tokens": tokens[i, :lengths[i]]}
                for i, r in enumerate(rows)]

    def loss(self, policy: Any, episodes: list[dict[str, Any]]) -> th.Tensor:
        """``coef`` times the mean over ``episodes`` of their exact KL(pi || ref) summed over their positions,
        differentiable in the policy (the reference's logits without gradient)."""
        if getattr(policy, "reference_backend", None) is None and getattr(policy, "lora", None) is None:
            raise TextEnvsError("the KL anchor needs the policy's frozen reference model: build the policy with a "
                                "reference (kl_coef > 0) or with lora (its base is the reference)")
        batch = episode_batch(episodes, policy.device)
        tokens = trimmed_tokens(batch)
        ref_logits = policy.reference_logits(batch, tokens)  # (N, V), no gradient; first: it toggles LoRA adapters
        logits, _ = teacher_forced_outputs(policy.backend, batch, tokens)  # (N, V)
        token_kl = vocabulary_kl(policy.distribution_logits(logits).float(),
                                 policy.distribution_logits(ref_logits).float())  # (N,)
        return self.coef * token_kl.sum() / len(episodes)
