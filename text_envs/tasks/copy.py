"""TextCopy-v0: copy (or reverse) a short string of symbols. A tiny task for tests and debugging."""

from __future__ import annotations

from typing import Any

import numpy as np

from text_envs.core import TextGenerationEnv
from text_envs.data.sources import Example
from text_envs.errors import TextEnvsError

SYMBOLS = ("a", "b", "c", "d", "e", "f", "g", "h")


class _AllSequences:
    """Every string of ``length`` symbols, indexed in base ``n_symbols`` (nothing stored)."""

    def __init__(self, n_symbols: int, length: int, reverse: bool) -> None:
        self.n_symbols, self.length, self.reverse = n_symbols, length, reverse

    def __len__(self) -> int:
        return self.n_symbols**self.length

    def digits(self, index: int) -> list[int]:
        out = []
        for _ in range(self.length):
            index, d = divmod(index, self.n_symbols)
            out.append(d)
        return out

    def __getitem__(self, index: int) -> Example:
        if not 0 <= index < len(self):
            raise IndexError(f"example index {index} out of range: this task has {len(self)} examples")
        seq = [SYMBOLS[d] for d in self.digits(index)]
        target = seq[::-1] if self.reverse else seq
        return Example(" ".join(seq), (" ".join(target),))


class TextCopyEnv(TextGenerationEnv):
    """Copy the prompt's symbols (or write them reversed), then emit EOS.

    A tiny learnable task in the spirit of SB3's identity envs: any correct algorithm and policy solve it
    quickly, so it is the first thing to try when something does not learn.

    ## Data
    Every string of ``length`` symbols drawn from the first ``n_symbols`` of ``a..h`` (``n_symbols**length``
    examples, the same in every split: the task tests copying, not generalisation). The tokenizer is the
    task's own word-level one: ids 0, 1, 2 are ``<pad>``, ``</s>`` (EOS), ``<unk>``; then one id per symbol.

    ## Rewards
    Per token: ``1 / (length + 1)`` for each position ``t`` whose token equals the target's (the symbols,
    then EOS), so a perfect episode returns 1.0. No terminal metric.

    ## Episode End
    EOS or ``length + 1`` tokens (``terminated=True`` either way).

    ## Solved
    Mean episode return >= ``reward_threshold`` = 0.9 (the registered ``spec.reward_threshold``).

    ## Arguments
    :param length: symbols per string, 1..5 (default 3).
    :param n_symbols: vocabulary size, 2..8 (default 4).
    :param reverse: write the symbols in reverse order.
    :param split: accepted for symmetry with the text tasks (every split is the same).
    :param render_mode: ``"ansi"`` or ``"human"``.

    ## Version History
    * v0: initial version.
    """

    reward_threshold = 0.9
    #: :meth:`get_state` also saves the current target and the tokens written right so far
    STATE_ATTRIBUTES = TextGenerationEnv.STATE_ATTRIBUTES + ("_target", "_correct")

    def __init__(
        self,
        length: int = 3,
        n_symbols: int = 4,
        reverse: bool = False,
        split: str = "train",
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        from text_envs.tokenization import make_symbol_tokenizer

        if not 1 <= int(length) <= 5:
            raise TextEnvsError(f"length must be in 1..5, got {length!r}.")
        if not 2 <= int(n_symbols) <= len(SYMBOLS):
            raise TextEnvsError(f"n_symbols must be in 2..{len(SYMBOLS)}, got {n_symbols!r}.")
        if split not in ("train", "validation", "test"):
            raise TextEnvsError(f"split must be 'train', 'validation' or 'test', got {split!r}.")
        self.length, self.n_symbols, self.reverse = int(length), int(n_symbols), bool(reverse)
        tokenizer = make_symbol_tokenizer(SYMBOLS[: self.n_symbols])
        source = _AllSequences(self.n_symbols, self.length, self.reverse)
        kwargs.setdefault("max_prompt_tokens", self.length)
        kwargs.setdefault("max_new_tokens", self.length + 1)
        super().__init__(source, tokenizer, reward=None, render_mode=render_mode, **kwargs)
        # Every prompt and target as ids (at most 8**5 rows of 6 ids): resets are table look-ups.
        first_id = int(tokenizer.convert_tokens_to_ids(SYMBOLS[0]))
        digits = np.array([source.digits(i) for i in range(len(source))], dtype=np.int64).reshape(len(source), -1)
        ids = first_id + digits  # (N, length)
        targets = ids[:, ::-1] if self.reverse else ids
        eos = np.full((len(source), 1), self.eos_token_id, dtype=np.int64)
        self._targets = np.concatenate([targets, eos], axis=1)  # (N, length + 1)
        P = self.max_prompt_tokens
        self._prompt_table = np.full((len(source), P), self.pad_token_id, dtype=np.int64)
        self._prompt_table[:, P - min(P, self.length) :] = ids[:, -P:]
        self._prompt_mask_row = (self._prompt_table[0] != self.pad_token_id).astype(np.int64)
        self._target = self._targets[0]
        self._correct = 0

    @property
    def targets(self) -> np.ndarray:
        """``(num_examples, length + 1)`` int64: each example's target ids, then EOS (read-only view)."""
        view = self._targets.view()
        view.flags.writeable = False
        return view

    def prompt_rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(prompt_ids, prompt_mask)`` of examples ``indices`` as ``(k, P)`` arrays, from the precomputed table
        (what the native vector env's resets read; no tokenizer call)."""
        ids = self._prompt_table[indices]  # fancy indexing: a copy
        return ids, np.broadcast_to(self._prompt_mask_row, (len(indices), self.max_prompt_tokens))

    def _prompt_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        # Straight from a precomputed table: no tokenizer call and no Example on the hot path.
        self._target = self._targets[index]
        self._correct = 0
        return self._prompt_table[index], self._prompt_mask_row

    def token_reward(self, t: int, token: int) -> float:
        if t <= self.length and token == self._target[t]:
            self._correct += 1
            return 1.0 / (self.length + 1)
        return 0.0

    def extra_metrics(self, generated_ids: np.ndarray) -> dict[str, float]:
        return {
            "token_accuracy": self._correct / (self.length + 1),
            "exact_match": float(self._correct == self.length + 1),
        }
