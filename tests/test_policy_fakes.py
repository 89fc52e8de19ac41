"""Shared helpers of the sb3_ext tests: a minimal env with exactly the contract of docs/ARCHITECTURE.md,
a tiny word-level tokenizer and tiny model configs.  (No tests here; the module is imported by the others.)"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

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
