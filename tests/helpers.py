"""Helpers shared by the test files (pytest collects no test here: the name does not start with ``test_``).

Import them as ``from helpers import FakeCopyEnv, make_model`` (pytest puts tests/ on ``sys.path``; a subprocess
puts it there itself, as test_generators.py's does). Heavy libraries (torch, transformers, SB3) are imported
inside the functions that need them, so importing this module stays light.

* :class:`FakeCopyEnv`: a minimal env with exactly the contract of docs/ARCHITECTURE.md; :func:`make_tokenizer` its
  tiny word-level tokenizer; :func:`t5_config`, :func:`gpt2_config`, :func:`llama_config` tiny model configs and
  :func:`make_model` a seeded tiny model built from one.
* :func:`collect`: rollout collection of a built SB3 algorithm, no training; :func:`direct_token_outputs`: a direct
  Hugging Face forward to compare the policy's outputs with.
* :data:`FEW` / :data:`FEWER`: hypothesis settings that keep property-based tests short;
  :func:`assert_clear_error`: what a clear error is.
* :func:`flaky_reward`: a reward that fails on its k-th call; :func:`generator_rows_digest`: a digest of the
  embedded generators' rows.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from hypothesis import HealthCheck, settings

from text_envs.errors import TextEnvsError

if TYPE_CHECKING:
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

PAD, EOS, UNK = 0, 1, 2


def make_tokenizer(n_symbols: int = 9):
    """A word-level ``PreTrainedTokenizerFast``: <pad>=0, </s>=1, <unk>=2, then symbols s0.. (T5 ids)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for i in range(n_symbols):
        vocab[f"s{i}"] = 3 + i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


class FakeCopyEnv(gym.Env):
    """Copy a random symbol string, then EOS.  Per-token reward 1/(n+1) for each correct token.

    Observation: Dict of int64 Boxes ``prompt_ids`` (P,) left-padded and ending with EOS, ``prompt_mask``,
    ``generated_ids`` (T,) right-padded, ``generated_mask``.  EOS or T tokens -> terminated.
    """

    def __init__(self, n_symbols: int = 9, max_len: int = 4, P: int = 6, T: int = 5, min_len: int = 1):
        self.tokenizer = make_tokenizer(n_symbols)
        V = len(self.tokenizer)
        self.V, self.P, self.T, self.max_len, self.min_len = V, P, T, max_len, min_len
        self.n_symbols = n_symbols
        box = lambda n: spaces.Box(0, V - 1, shape=(n,), dtype=np.int64)  # noqa: E731
        self.observation_space = spaces.Dict(
            {
                "prompt_ids": box(P),
                "prompt_mask": spaces.Box(0, 1, shape=(P,), dtype=np.int64),
                "generated_ids": box(T),
                "generated_mask": spaces.Box(0, 1, shape=(T,), dtype=np.int64),
            }
        )
        self.action_space = spaces.Discrete(V)

    # the warm-start interface of text_envs envs
    @property
    def num_examples(self) -> int:
        return 64

    def example_text(self, index: int) -> tuple[str, list[str]]:
        rng = np.random.default_rng(index)
        n = int(rng.integers(self.min_len, self.max_len + 1))
        syms = rng.integers(0, self.n_symbols, n)
        text = " ".join(f"s{i}" for i in syms)
        return text, [text]

    def encode_prompt(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        ids = self.tokenizer(text)["input_ids"]
        ids = [i for i in ids if i != EOS][: self.P - 1] + [EOS]
        prompt = np.full(self.P, PAD, dtype=np.int64)
        mask = np.zeros(self.P, dtype=np.int64)
        prompt[self.P - len(ids) :] = ids
        mask[self.P - len(ids) :] = 1
        return prompt, mask

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "prompt_ids": self._prompt.copy(),
            "prompt_mask": self._pmask.copy(),
            "generated_ids": self._gen.copy(),
            "generated_mask": (np.arange(self.T) < self._t).astype(np.int64),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        n = int(self.np_random.integers(self.min_len, self.max_len + 1))
        self._target = [3 + int(s) for s in self.np_random.integers(0, self.n_symbols, n)] + [EOS]
        text = " ".join(f"s{i - 3}" for i in self._target[:-1])
        self._prompt, self._pmask = self.encode_prompt(text)
        self._gen = np.full(self.T, PAD, dtype=np.int64)
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any):
        a = int(action)
        target = self._target[self._t] if self._t < len(self._target) else -1
        reward = (1.0 / len(self._target)) if a == target else 0.0
        self._gen[self._t] = a
        self._t += 1
        terminated = a == EOS or self._t >= self.T
        info: dict[str, Any] = {}
        if terminated:
            info["finish_reason"] = "eos" if a == EOS else "budget_exhausted"
        return self._obs(), reward, terminated, False, info


def t5_config(V: int, **kw: Any):
    from transformers import T5Config

    base = dict(
        vocab_size=int(V), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.1,
        pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD,
    )
    base.update(kw)
    return T5Config(**base)


def gpt2_config(V: int, **kw: Any):
    from transformers import GPT2Config

    base = dict(vocab_size=int(V), n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=EOS,
                eos_token_id=EOS, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    base.update(kw)
    return GPT2Config(**base)


def llama_config(V: int, **kw: Any):
    from transformers import LlamaConfig

    base = dict(vocab_size=int(V), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, bos_token_id=EOS, eos_token_id=EOS,
                pad_token_id=PAD)
    base.update(kw)
    return LlamaConfig(**base)


def bart_config(V: int, **kw: Any):
    """A tiny BART: a seq2seq decoder with absolute (learned) positions, unlike T5's relative bias."""
    from transformers import BartConfig

    base = dict(vocab_size=int(V), d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                pad_token_id=PAD, eos_token_id=EOS, bos_token_id=EOS, decoder_start_token_id=PAD, forced_eos_token_id=None)
    base.update(kw)
    return BartConfig(**base)


CONFIGS = {"t5": t5_config, "gpt2": gpt2_config, "llama": llama_config, "bart": bart_config}


def make_model(kind: str, V: int, seed: int = 0):
    """A tiny ``kind`` ("t5", "gpt2", "llama" or "bart") model of vocabulary ``V``, its weights drawn with ``seed``."""
    import torch as th
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    th.manual_seed(seed)
    cfg = CONFIGS[kind](V)
    cls = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
    return cls.from_config(cfg)


def collect(model: OnPolicyAlgorithm, rollouts: int = 1):
    """Run rollout collections of a built PPO (no training); returns the buffer of the last one."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Nop(BaseCallback):
        def _on_step(self) -> bool:
            return True

    _, cb = model._setup_learn(10**6, Nop())
    cb.on_training_start(locals(), globals())
    for _ in range(rollouts):
        model.collect_rollouts(model.env, cb, model.rollout_buffer, model.n_steps)
    return model.rollout_buffer


def direct_token_outputs(lm, kind: str, prompt: np.ndarray, pmask: np.ndarray, tokens: np.ndarray, t: int, V: int):
    """Direct HF forward without padding: log-softmax row (V,) for token t and the LM head's input (H,)."""
    import torch as th

    real = th.as_tensor(prompt[pmask.astype(bool)])[None]
    prefix = th.as_tensor(tokens[:t])[None].long()
    if kind == "t5":
        dec = th.cat([th.zeros((1, 1), dtype=th.long), prefix], 1)
        out = lm(input_ids=real, decoder_input_ids=dec, output_hidden_states=True)
        h = out.decoder_hidden_states[-1][0, -1]
        if lm.config.tie_word_embeddings:
            h = h * lm.config.d_model**-0.5
    else:
        out = lm(input_ids=th.cat([real, prefix], 1), output_hidden_states=True)
        h = out.hidden_states[-1][0, -1]
    return out.logits[0, -1, :V].log_softmax(-1), h


# ---------------------------------------------------------------------------------------------- bad input
# database=None: no .hypothesis/ folder in the checkout; a failure prints its example (and @seed to replay it)
FEW = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def assert_clear_error(exc: BaseException) -> None:
    """A clear error: ours, and it says what was expected."""
    assert isinstance(exc, TextEnvsError), f"{type(exc).__name__}: {exc}"
    assert "expected" in str(exc).lower(), str(exc)


def flaky_reward(k: int, value: float | None = None):
    """A reward that raises (``value`` None) or returns ``value`` on its k-th call, ROUGE-like 0.5 otherwise."""
    calls = [0]

    def reward(predictions, references):
        calls[0] += 1
        if calls[0] == k:
            if value is None:
                raise ZeroDivisionError("division by zero")
            return [value] * len(predictions)
        return [0.5] * len(predictions)

    return reward


# ---------------------------------------------------------------------------------------------- data
def generator_rows_digest(n: int = 30) -> str:
    """SHA-256 of the first ``n`` rows of every embedded generator, split and difficulty (1-3)."""
    from text_envs.data import generators as g

    row_fns = (g.summarization_row, g.dialogue_row, g.translation_row)
    rows = [fn(split, i, level) for fn in row_fns for split in g.SPLIT_SIZES for level in (1, 2, 3)
            for i in range(n)]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def groups_by_hand(model: Any, rewards: np.ndarray) -> list[list[dict]]:
    """Groups of texts written by hand for a group algorithm's env prompts (lengths 1-3; ``rewards`` (groups, k)),
    with the policy's own log-probs as behaviour: inputs for ``train_groups`` whose advantages a test computes."""
    import torch as th

    obs = model.env.reset()
    k, rng = model.group_size, np.random.default_rng(0)
    groups = [[{"prompt_ids": obs["prompt_ids"][g * k], "prompt_mask": obs["prompt_mask"][g * k],
                "tokens": rng.integers(2, 7, size=1 + (g + i) % 3), "reward": float(r), "baseline": float("nan"),
                "example": -1} for i, r in enumerate(row)] for g, row in enumerate(rewards)]
    flat = [t for g in groups for t in g]
    with th.no_grad():
        log_prob, _, batch = model.episode_log_probs(flat)
    owner = batch.out_episode.numpy()
    for i, text in enumerate(flat):
        text["log_probs"] = log_prob.numpy()[owner == i].astype(np.float32)
    return groups
