"""Gymnasium wrappers for the text envs.

:class:`SelfCriticalReward` pays each finished text its reward *minus* the reward of a baseline text for the
same prompt (self-critical sequence training, Rennie et al. 2017). With the frozen starting model's greedy
text as the baseline, a sample is paid for being better or worse than what the model would have written
anyway: the reward no longer says how easy the prompt was, which is most of its variance on summarization,
and a per-prompt baseline that does not depend on the sampled text leaves the policy gradient unbiased.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from text_envs.errors import TextEnvsError

__all__ = ["SelfCriticalReward", "BaselineFn"]

#: ``baseline_fn(prompts) -> texts as token ids``: for a batch of prompts (each the unpadded ``prompt_ids`` of an
#: observation), the baseline's generated ids; an EOS and anything after it are dropped, as the env drops them.
BaselineFn = Callable[[list[np.ndarray]], Sequence[Sequence[int]]]


class SelfCriticalReward(gym.Wrapper):
    """Subtract the reward of a baseline text for the same prompt from each text's final reward.

    ``info`` of the final step gains ``baseline_text`` and ``baseline_reward``; ``info["reward"]`` (and a
    :class:`~gymnasium.wrappers.RecordEpisodeStatistics` or SB3 ``Monitor`` placed *inside* this wrapper) keep
    the task reward, so logs still show the reward itself. Baselines are cached per example.

    :param env: a text env (anything whose ``unwrapped`` is a :class:`~text_envs.core.TextGenerationEnv`).
    :param baseline_fn: a batch of prompts -> their baseline texts' ids (see :data:`BaselineFn`), e.g. the
        starting model's greedy decoding (``sb3_ext.greedy_baseline``). May be set later (``env.baseline_fn =
        ...``, or SB3's ``VecEnv.set_attr("baseline_fn", fn)``), since the model is usually built after the env.
    :param batch_size: prompts per ``baseline_fn`` call: the current one and the next ones the env has drawn
        (one batched decoding costs far less per prompt than one per episode).
    :param cache_size: baselines kept (examples drawn again reuse theirs).
    """

    def __init__(self, env: gym.Env, baseline_fn: BaselineFn | None = None, batch_size: int = 32,
                 cache_size: int = 100_000) -> None:
        super().__init__(env)
        base = env.unwrapped
        if getattr(base, "reward", None) is None or not hasattr(base, "_score"):
            raise TextEnvsError(
                f"SelfCriticalReward needs a text env with a task reward, got {type(base).__name__}: wrap an env "
                "such as gym.make('TextSummarization-v0')."
            )
        if batch_size < 1 or cache_size < batch_size:
            raise TextEnvsError(f"expected 1 <= batch_size <= cache_size, got {batch_size} and {cache_size}")
        self.baseline_fn = baseline_fn
        self.batch_size, self.cache_size = int(batch_size), int(cache_size)
        self._cache: OrderedDict[int, tuple[str, float]] = OrderedDict()

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if (terminated or truncated) and "generated_text" in info:
            text, value = self._baseline()
            info = {**info, "baseline_text": text, "baseline_reward": value}
            reward = float(reward) - value
        return obs, reward, terminated, truncated, info

    def _baseline(self) -> tuple[str, float]:
        base = self.env.unwrapped
        index = int(base._example_index)
        if index not in self._cache:
            self._fill([index, *(i for i in base.upcoming_examples(self.batch_size - 1) if i not in self._cache)])
        self._cache.move_to_end(index)
        return self._cache[index]

    def _fill(self, indices: list[int]) -> None:
        """Baseline texts and rewards of ``indices`` (the current example first), in one ``baseline_fn`` call."""
        if self.baseline_fn is None:
            raise TextEnvsError(
                "SelfCriticalReward has no baseline_fn: pass one, or set it before the first step "
                "(env.baseline_fn = fn, or vec_env.set_attr('baseline_fn', fn))."
            )
        base = self.env.unwrapped
        indices = list(dict.fromkeys(indices))
        examples = [base.example] + [base.source[i] for i in indices[1:]]
        prompts = []
        for i in indices:  # the env's own tokenization and cache: the resets that draw them reuse it
            ids, mask = base._prompt_arrays(i)
            prompts.append(ids[mask == 1])
        outputs = list(self.baseline_fn(prompts))
        if len(outputs) != len(prompts):
            raise TextEnvsError(f"baseline_fn returned {len(outputs)} texts for {len(prompts)} prompts")
        texts = []
        for out in outputs:
            ids = [int(i) for i in out]
            if base.eos_token_id in ids:
                ids = ids[: ids.index(base.eos_token_id)]
            texts.append(base.decode(ids[: base.max_new_tokens]))
        values = base.reward.compute(texts, [list(ex.references) for ex in examples], [ex.prompt for ex in examples])
        for k, (index, text) in enumerate(zip(indices, texts)):
            value = float(values[base.reward.name][k])
            if not np.isfinite(value):
                raise TextEnvsError(f"The reward {base.reward.name!r} returned {value} for the baseline text {text!r}.")
            self._cache[index] = (text, value)
            self._cache.move_to_end(index)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
