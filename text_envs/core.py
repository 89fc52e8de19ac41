"""The token-generation environment that every task builds on.

One action is one token; an episode is one generated text. See ``docs/ARCHITECTURE.md`` for the
observation contract shared with :mod:`sb3_ext`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from text_envs.data.sources import Example, ExampleSource
from text_envs.errors import TextEnvsError, TokenizerMismatchError, accepted_keywords, check_keywords
from text_envs.state import attribute_state, set_attribute_state

__all__ = ["TextGenerationEnv", "score_texts"]

_PROMPT_CACHE_SIZE = 4096  # tokenized prompts kept per env (a few MB at most)


def _token_id(action: Any) -> int:
    """The token id of an action: an int, a NumPy integer, or a one-element array of integers (or of an integral
    float such as 3.0); anything else (3.5, nan, True, "3", two ids) is refused with a clear error."""
    if isinstance(action, (int, np.integer)) and not isinstance(action, (bool, np.bool_)):
        return int(action)  # the common case, kept fast
    bad = TextEnvsError(f"Expected an action that is one token id (an int), got {action!r}.")
    if isinstance(action, (bool, np.bool_, str, bytes)):
        raise bad
    try:
        arr = np.asarray(action)
    except Exception:  # noqa: BLE001 - any object numpy cannot read is not a token id
        raise bad from None
    if arr.size != 1 or arr.dtype.kind not in "iuf":
        raise bad
    value = arr.reshape(()).item()
    if arr.dtype.kind == "f" and not (np.isfinite(value) and float(value).is_integer()):
        raise bad
    return int(value)


def score_texts(reward: Any, texts: list[str], examples: Sequence[Any], indices: Sequence[int]) -> list[dict[str, float]]:
    """Score ``texts`` (one per example) with one ``reward.compute`` call; each text's ``{metric: value}``.

    A reward that raises, or returns NaN/inf, stops with an error naming the data's example(s) (``indices``), so a
    user's reward failing deep in a run says where. Shared by the single env and the native vector env.
    """
    try:
        values = reward.compute(texts, [list(ex.references) for ex in examples], [ex.prompt for ex in examples])
    except Exception as e:
        what = str(e) if isinstance(e, TextEnvsError) else f"it raised {type(e).__name__}: {e}"
        if len(texts) == 1:
            where = f"on example {indices[0]} of the data (prompt {examples[0].prompt[:80]!r}, generated {texts[0][:80]!r})"
        else:
            where = (f"scoring example(s) {list(indices)} of the data (generated {[t[:80] for t in texts]!r}; an "
                     "'example k' below counts within this list)")
        raise TextEnvsError(f"The reward {reward.name!r} failed {where}: {what}") from e
    scores: list[dict[str, float]] = [{} for _ in texts]
    for name, vals in values.items():
        for k, text in enumerate(texts):
            v = float(vals[k])
            if not np.isfinite(v):
                raise TextEnvsError(
                    f"The reward {name!r} returned {v} for example {indices[k]} (generated {text!r}): rewards must "
                    "be finite.")
            scores[k][name] = v
    return scores


def registered_id(cls: type) -> str | None:
    """The env id registered with env class ``cls`` as its entry point (None: not registered by text_envs)."""
    from text_envs import ENV_IDS

    entry = f"{cls.__module__}:{cls.__qualname__}"
    return next((i for i, e in ENV_IDS.items() if e == entry), None)


def env_description(cls: type) -> str:
    """How a caller names env class ``cls``: ``gym.make("<id>")`` when it is registered, else its class name."""
    env_id = registered_id(cls)
    return f"gym.make({env_id!r})" if env_id is not None else f"{cls.__qualname__}(...)"


def vector_only_keywords(cls: type) -> dict[str, str]:
    """The keywords the native vector env takes besides the task's (read from its signature), each mapped to
    where it belongs: ``gym.make_vec(<id>, num_envs=N, ...)``."""
    from text_envs.vector import TextGenerationVectorEnv

    env_id = registered_id(cls) or "<id>"
    call = f"gym.make_vec({env_id!r}, num_envs=N, ...), the native vector env"
    return {name: call for name in accepted_keywords(TextGenerationVectorEnv, skip=("env",))}


class TextGenerationEnv(gym.Env[dict[str, np.ndarray], int]):
    """Generate a text token by token for a prompt drawn from a data source; score it when it ends.

    ## Action Space
    ``Discrete(V)`` with ``V = len(tokenizer)``: the id of the next token.

    ## Observation Space
    A ``Dict`` of 1-D ``int64`` ``Box`` arrays (``P = max_prompt_tokens``, ``T = max_new_tokens``):

    | key | shape | content |
    |---|---|---|
    | ``prompt_ids`` | ``(P,)`` | the tokenized prompt, left-padded with the pad id |
    | ``prompt_mask`` | ``(P,)`` | 1 on prompt tokens, 0 on padding |
    | ``generated_ids`` | ``(T,)`` | the tokens generated so far, right-padded with the pad id |
    | ``generated_mask`` | ``(T,)`` | 1 on generated tokens, 0 after them |

    ## Rewards
    Terminal by default: the task reward (e.g. ROUGE-L F1 against the references) of the decoded text.
    With ``dense_reward=True`` each step is paid the potential-based shaping ``gamma * phi(s') - phi(s)``
    with ``phi`` the reward of the decoded prefix (``phi(terminal) = 0``), which changes no optimal policy
    and, for ``gamma = 1``, sums to the terminal reward. Dense shaping decodes the prefix at every step.

    ## Episode End
    ``terminated=True`` when the action is the EOS token (``info["finish_reason"] == "eos"``) or when
    ``T`` tokens were generated (``"budget_exhausted"``): the text is finished and scored either way.
    ``truncated`` is never set here; it is left to outside limits such as a ``TimeLimit`` wrapper (SB3
    bootstraps truncated steps with ``gamma * V(s')``, which would pay a budget-ending text twice).

    ## Info
    ``reset``: ``example_index``. Final step: ``prompt_text``, ``generated_text``, ``references``,
    ``finish_reason``, ``budget_exhausted``, ``generated_length``, ``metrics`` (name -> value) and each
    metric again as ``metric/<name>`` for ``Monitor(info_keywords=...)``.

    :param source: the examples of one split.
    :param tokenizer: a Hugging Face tokenizer (fast tokenizers are used through their Rust backend).
    :param reward: a reward spec for :func:`text_envs.make_reward` (name, ``{name: weight}``, object,
        callable), or None for tasks that pay per token only.
    :param max_prompt_tokens: ``P``, the prompt length (longer prompts are truncated, shorter left-padded).
    :param max_new_tokens: ``T``, the token budget of one generated text.
    :param truncation_side: which end of a too-long prompt to drop: ``"right"`` keeps the beginning
        (documents, sentences), ``"left"`` keeps the end (dialogue histories). Special tokens the
        tokenizer adds (e.g. T5's closing ``</s>``) are kept either way.
    :param dense_reward: pay potential-based shaping at every step (see Rewards).
    :param shaping_gamma: the ``gamma`` of the shaping; use the algorithm's discount.
    :param render_mode: ``"ansi"`` (``render()`` returns the text), ``"human"`` (prints it) or
        ``"rgb_array"`` (an image of the text, for video recorders; SB3's ``make_vec_env`` asks for it).
    """

    metadata = {"render_modes": ["ansi", "human", "rgb_array"], "render_fps": 4}
    #: what :meth:`get_state` saves: the episode in progress, the data-sampling position and the random generator
    #: (the tokenized-prompt cache and the current ``Example`` are rebuilt from the source on demand)
    STATE_ATTRIBUTES: tuple[str, ...] = (
        "_example_index", "_index_draws", "_t", "_done", "_potential", "_last_info",
        "_gen_ids", "_gen_mask", "_prompt_ids", "_prompt_mask", "_np_random", "_np_random_seed",
    )

    def __new__(cls, *args: Any, **kwargs: Any) -> TextGenerationEnv:
        # unknown keywords are refused here, before any __init__ runs, with the task's valid options (Python's own
        # TypeError would name TextGenerationEnv.__init__, a class the caller never wrote, and list nothing)
        if kwargs:
            check_keywords(kwargs, accepted_keywords(cls), env_description(cls), elsewhere=vector_only_keywords(cls))
        return super().__new__(cls)

    def __init__(
        self,
        source: ExampleSource,
        tokenizer: Any,
        *,
        reward: Any = "rouge-l",
        max_prompt_tokens: int = 256,
        max_new_tokens: int = 64,
        truncation_side: str = "right",
        dense_reward: bool = False,
        shaping_gamma: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise TextEnvsError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}.")
        for name, value in (("max_prompt_tokens", max_prompt_tokens), ("max_new_tokens", max_new_tokens)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise TextEnvsError(f"{name} must be a positive integer, got {value!r}.")
        if truncation_side not in ("left", "right"):
            raise TextEnvsError(f"truncation_side must be 'left' or 'right', got {truncation_side!r}.")
        self.source = source
        self.tokenizer = tokenizer
        self.max_prompt_tokens, self.max_new_tokens = int(max_prompt_tokens), int(max_new_tokens)
        self.truncation_side = truncation_side
        self.dense_reward, self.shaping_gamma = bool(dense_reward), float(shaping_gamma)
        self.render_mode = render_mode

        self.vocab_size = len(tokenizer)
        self.eos_token_id, self.pad_token_id = self._check_special_ids(tokenizer, self.vocab_size)
        self._backend = getattr(tokenizer, "backend_tokenizer", None)  # Rust tokenizer: fast encode/decode
        self._prefix_ids, self._suffix_ids = self._special_affixes(tokenizer)

        if reward is None:
            self.reward = None
        else:
            from text_envs.rewards import make_reward

            # the target language picks tokenizers (BLEU on Chinese uses sacrebleu's "zh")
            self.reward = make_reward(reward, language=getattr(self, "target_lang", None))

        P, T, V = self.max_prompt_tokens, self.max_new_tokens, self.vocab_size
        self.action_space = spaces.Discrete(V)
        self.observation_space = spaces.Dict(
            {
                "prompt_ids": spaces.Box(0, V - 1, (P,), np.int64),
                "prompt_mask": spaces.Box(0, 1, (P,), np.int64),
                "generated_ids": spaces.Box(0, V - 1, (T,), np.int64),
                "generated_mask": spaces.Box(0, 1, (T,), np.int64),
            }
        )
        self._prompt_cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._example: Example | None = None
        self._example_index = -1
        self._index_draws: list[int] = []
        self._t = 0  # tokens generated so far
        self._done = True
        self._potential = 0.0
        self._last_info: dict[str, Any] = {}
        self._gen_ids = np.full(T, self.pad_token_id, dtype=np.int64)
        self._gen_mask = np.zeros(T, dtype=np.int64)
        self._prompt_ids = np.full(P, self.pad_token_id, dtype=np.int64)
        self._prompt_mask = np.zeros(P, dtype=np.int64)

    # ------------------------------------------------------------------ set-up helpers
    @staticmethod
    def _check_special_ids(tokenizer: Any, vocab_size: int) -> tuple[int, int]:
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise TokenizerMismatchError(
                f"The tokenizer {type(tokenizer).__name__} has no EOS token: a text env needs one to end "
                "episodes. Set tokenizer.eos_token (e.g. tokenizer.add_special_tokens({'eos_token': '</s>'}))."
            )
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:  # causal tokenizers (GPT-2) have no pad: padding positions are masked anyway
            pad = eos
        for what, token_id in (("EOS", eos), ("pad", pad)):
            if not 0 <= token_id < vocab_size:
                raise TokenizerMismatchError(
                    f"The tokenizer's {what} id {token_id} does not fit its vocabulary of {vocab_size} tokens "
                    f"(the action space is Discrete({vocab_size})): expected 0 <= id < {vocab_size}."
                )
        return int(eos), int(pad)

    @staticmethod
    def _special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
        """The special ids a tokenizer puts before and after a text (T5: ``[] / [</s>]``)."""
        marker = -12345
        try:
            wrapped = list(tokenizer.build_inputs_with_special_tokens([marker]))
        except Exception:
            return [], []
        if marker not in wrapped:
            return [], []
        at = wrapped.index(marker)
        return wrapped[:at], wrapped[at + 1 :]

    # ------------------------------------------------------------------ text <-> ids
    def encode_prompt(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize a prompt into the ``(prompt_ids, prompt_mask)`` arrays of the observation.

        Content tokens are truncated by ``truncation_side`` so that, with the tokenizer's own special
        tokens around them, they fit ``max_prompt_tokens``; the result is left-padded.
        """
        if self._backend is not None:
            content = self._backend.encode(text, add_special_tokens=False).ids
        else:
            content = self.tokenizer.encode(text, add_special_tokens=False)
        room = max(self.max_prompt_tokens - len(self._prefix_ids) - len(self._suffix_ids), 0)
        if len(content) > room:
            content = content[:room] if self.truncation_side == "right" else content[len(content) - room :]
        ids = (self._prefix_ids + list(content) + self._suffix_ids)[-self.max_prompt_tokens :]
        P, n = self.max_prompt_tokens, len(ids)
        prompt_ids = np.full(P, self.pad_token_id, dtype=np.int64)
        prompt_mask = np.zeros(P, dtype=np.int64)
        if n:
            prompt_ids[P - n :] = ids
            prompt_mask[P - n :] = 1
        return prompt_ids, prompt_mask

    def decode(self, ids: Any) -> str:
        """Decode generated ids to text, dropping special tokens."""
        ids = ids.tolist() if isinstance(ids, np.ndarray) else [int(i) for i in ids]
        if self._backend is not None:
            return self._backend.decode(ids, skip_special_tokens=True)
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def decode_many(self, sequences: Sequence[list[int]]) -> list[str]:
        """:meth:`decode` of each sequence of ids (lists of ints), as the native vector env decodes the texts that
        end in one step."""
        if self._backend is not None and type(self).decode is TextGenerationEnv.decode:
            decode = self._backend.decode  # one by one: decode_batch's thread pool costs more than it saves here
            return [decode(ids, skip_special_tokens=True) for ids in sequences]
        return [self.decode(ids) for ids in sequences]

    # ------------------------------------------------------------------ data access
    @property
    def num_examples(self) -> int:
        """The number of examples in this env's split."""
        return len(self.source)

    def example_text(self, index: int) -> tuple[str, list[str]]:
        """``(prompt_text, references)`` of example ``index`` of the split."""
        example = self.source[index]
        return example.prompt, list(example.references)

    def upcoming_examples(self, n: int) -> list[int]:
        """The example indices that the next resets will draw, as far as they are already drawn (at most ``n``;
        fewer near the end of a block of draws, none after a ``reset(seed=...)`` until the next reset).
        Lets a wrapper prepare work for several episodes in one batch."""
        return self._index_draws[::-1][: max(0, int(n))]

    @property
    def example(self) -> Example | None:
        """The current episode's example (fetched from the source on first use: a cached prompt needs none)."""
        if self._example is None and self._example_index >= 0:
            self._example = self.source[self._example_index]
        return self._example

    @property
    def example_index(self) -> int:
        """The current episode's example index (-1 before the first reset)."""
        return self._example_index

    def prompt_ids(self, index: int) -> np.ndarray:
        """Example ``index``'s prompt ids, unpadded, tokenized once and cached (a wrapper that prepares later
        episodes fills the cache the resets read)."""
        ids, mask = self._prompt_arrays(index)
        return ids[mask == 1]

    def is_prompt_cached(self, index: int) -> bool:
        """Whether example ``index``'s prompt is tokenized already (in the cache the resets read)."""
        return index in self._prompt_cache

    def _prompt_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(prompt_ids, prompt_mask)`` of example ``index``, tokenized once and cached (wrappers preparing later
        episodes fill the same cache, so the reset that draws them tokenizes nothing)."""
        cached = self._prompt_cache.get(index)
        if cached is None:
            example = self.example if index == self._example_index else self.source[index]
            cached = self.encode_prompt(example.prompt)
            self._prompt_cache[index] = cached
            if len(self._prompt_cache) > _PROMPT_CACHE_SIZE:
                self._prompt_cache.popitem(last=False)
        return cached

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._index_draws = []
        index = None if options is None else options.get("example_index")
        if index is None:
            if not self._index_draws:  # drawn in blocks: one numpy call per 256 episodes, not per reset
                self._index_draws = self.np_random.integers(len(self.source), size=256).tolist()[::-1]
            index = self._index_draws.pop()
        elif not 0 <= int(index) < len(self.source):
            raise TextEnvsError(
                f"options['example_index'] must be in [0, {len(self.source)}) for this split, got {index}."
            )
        self._example_index = int(index)
        self._example = None
        self._prompt_ids, self._prompt_mask = self._prompt_arrays(self._example_index)
        self._gen_ids.fill(self.pad_token_id)
        self._gen_mask.fill(0)
        self._t = 0
        self._done = False
        self._potential = 0.0
        self._last_info = {"example_index": self._example_index}
        if self.render_mode == "human":
            self.render()
        return self._observation(), {"example_index": self._example_index}

    def step(self, action: Any):
        if self._done:
            raise TextEnvsError(
                "step() called before reset() or after the episode ended: call env.reset() first "
                "(vector envs and SB3 reset automatically)."
            )
        token = _token_id(action)
        if not 0 <= token < self.vocab_size:
            raise TextEnvsError(f"Action {token} is outside the vocabulary: expected 0 <= action < {self.vocab_size}.")

        t = self._t
        self._gen_ids[t] = token
        self._gen_mask[t] = 1
        self._t = t + 1
        finished_by_eos = token == self.eos_token_id
        terminated = finished_by_eos or self._t >= self.max_new_tokens
        reward = self.token_reward(t, token)
        info: dict[str, Any] = {}
        if terminated:
            self._done = True
            info = self._finish("eos" if finished_by_eos else "budget_exhausted")
            final = info["reward"]
            reward += final - self._potential if self.dense_reward else final
        elif self.dense_reward and self.reward is not None:
            potential = self._score(self.decode(self._gen_ids[: self._t]))[self.reward.name]
            reward += self.shaping_gamma * potential - self._potential
            self._potential = potential
        if self.render_mode == "human":
            self.render()
        return self._observation(), float(reward), terminated, False, info

    # ------------------------------------------------------------------ hooks for tasks
    def token_reward(self, t: int, token: int) -> float:
        """Reward paid for generating ``token`` at position ``t`` (0 here; per-token tasks override)."""
        return 0.0

    def _score(self, text: str) -> dict[str, float]:
        return score_texts(self.reward, [text], [self.example], [self._example_index])[0]

    def _finish(self, reason: str) -> dict[str, Any]:
        """Decode once, score, and build the final ``info``."""
        n = self._t - (1 if reason == "eos" else 0)
        text = self.decode(self._gen_ids[:n])
        metrics = self._score(text) if self.reward is not None else {}
        metrics.update(self.extra_metrics(self._gen_ids[: self._t]))
        example = self.example
        info: dict[str, Any] = {
            "prompt_text": example.prompt,
            "generated_text": text,
            "references": list(example.references),
            "finish_reason": reason,
            "budget_exhausted": reason == "budget_exhausted",
            "generated_length": self._t,
            "example_index": self._example_index,
            "reward": metrics[self.reward.name] if self.reward is not None else 0.0,
            "metrics": metrics,
        }
        for name, value in metrics.items():
            info[f"metric/{name}"] = value
        self._last_info = info
        return info

    def extra_metrics(self, generated_ids: np.ndarray) -> dict[str, float]:
        """Task-specific values added to the final ``info["metrics"]`` (none here)."""
        return {}

    def _observation(self) -> dict[str, np.ndarray]:
        return {
            # Fresh arrays every call: users (and Gymnasium's checker) keep what they are given.
            "prompt_ids": self._prompt_ids.copy(),
            "prompt_mask": self._prompt_mask.copy(),
            "generated_ids": self._gen_ids.copy(),
            "generated_mask": self._gen_mask.copy(),
        }

    # ------------------------------------------------------------------ rendering
    def render(self) -> str | None:
        if self.render_mode is None:
            gym.logger.warn('render() called without a render_mode: pass render_mode="ansi" or "human" to gym.make.')
            return None
        if self.example is None:
            text = "(no episode yet: call reset())"
        else:
            generated = self.decode(self._gen_ids[: self._t])
            status = "finished (" + self._last_info.get("finish_reason", "") + ")" if self._done else "in progress"
            lines = [
                f"Prompt    : {self._example.prompt}",
                f"Generated : {generated}   [{self._t}/{self.max_new_tokens} tokens, {status}]",
            ]
            lines += [f"Reference : {ref}" for ref in self._example.references]
            if self._done and self._last_info.get("metrics"):
                lines.append("Metrics   : " + ", ".join(f"{k}={v:.4f}" for k, v in self._last_info["metrics"].items()))
            text = "\n".join(lines)
        if self.render_mode == "human":
            print(text + "\n")
            return None
        if self.render_mode == "rgb_array":
            return _text_image(text)
        return text

    # ------------------------------------------------------------------ state (text_envs.state.Stateful)
    def get_state(self) -> dict[str, Any]:
        """The episode in progress, the data-sampling position and the random generator, as data (see
        :data:`STATE_ATTRIBUTES`); :meth:`set_state` puts it back into an env built with the same arguments."""
        return attribute_state(self, self.STATE_ATTRIBUTES)

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from a state :meth:`get_state` returned: the next ``step``/``reset`` are the saved env's."""
        # an env never reset (the native vector env's single env) has gymnasium's class defaults here, which
        # checkpoints written before this method did not store
        state = {"_np_random": None, "_np_random_seed": None, **state}
        set_attribute_state(self, self.STATE_ATTRIBUTES, state)
        self._example = None  # fetched again from the source on first use

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_prompt_cache"] = OrderedDict()  # rebuilt on demand; keeps pickles small
        return state


def _text_image(text: str, width: int = 640, line_height: int = 12) -> np.ndarray:
    """Draw ``text`` (wrapped) in black on white: an ``(H, W, 3)`` uint8 frame for video recorders."""
    import textwrap

    from PIL import Image, ImageDraw

    lines = [wrapped for line in text.splitlines() for wrapped in (textwrap.wrap(line, width // 6) or [""])]
    image = Image.new("RGB", (width, max(1, len(lines)) * line_height + 8), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((4, 4 + i * line_height), line, fill="black")
    return np.asarray(image)
