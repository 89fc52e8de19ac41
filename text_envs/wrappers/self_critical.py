"""The self-critical reward: each text paid its reward minus a baseline text's, for the same prompt.

:class:`SelfCriticalReward` pays each finished text its reward *minus* the reward of a baseline text for the
same prompt (self-critical sequence training, Rennie et al. 2017). With the frozen starting model's greedy
text as the baseline, a sample is paid for being better or worse than what the model would have written
anyway: the reward no longer says how easy the prompt was, which is most of its variance on summarization,
and a per-prompt baseline that does not depend on the sampled text leaves the policy gradient unbiased.

:class:`BaselinePool` lets the wrappers of several envs (one VecEnv's) share their baseline decodings: one
batched call serves the prompts every env is writing and the ones they have drawn next, where each env alone
would make its own smaller calls.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Iterator
from itertools import zip_longest
from typing import Any

import gymnasium as gym
import numpy as np

from text_envs.errors import TextEnvsError
from text_envs.state import attribute_state, set_attribute_state
from text_envs.wrappers.baselines import BaselineFn, prompt_key, score_baselines, store_decodings

__all__ = ["SelfCriticalReward", "BaselinePool"]


class BaselinePool:
    """Baseline decodings shared by the :class:`SelfCriticalReward` wrappers of several envs.

    When one wrapper needs a baseline it does not have, the pool makes one ``baseline_fn`` call for, in this
    order: that wrapper's current prompt, the prompts the other member envs are writing for now, then the
    prompts every member has drawn for its next episodes (round robin), up to ``batch_size`` not decoded yet.
    Pass one pool to the wrapper of every env of a VecEnv (``make_vec_env(..., wrapper_kwargs={"pool":
    BaselinePool()})``): in one process (``DummyVecEnv``) they share it; each ``SubprocVecEnv`` worker gets its
    own copy, which still works, batched per env.

    :param baseline_fn: see :data:`BaselineFn`; may be set later (``pool.baseline_fn = fn``, or through any
        member wrapper's ``baseline_fn``, which is what SB3's ``VecEnv.set_attr("baseline_fn", fn)`` does).
        Setting a function (again) drops every cached decoding, here and in the member wrappers' scores: the
        new function (or the same one over a model that changed) decides the baselines from then on.
    :param batch_size: the most prompts per ``baseline_fn`` call.
    :param cache_size: decodings kept (prompts drawn again reuse theirs).
    """

    def __init__(self, baseline_fn: BaselineFn | None = None, batch_size: int = 64, cache_size: int = 100_000) -> None:
        if batch_size < 1 or cache_size < batch_size:
            raise TextEnvsError(f"expected 1 <= batch_size <= cache_size, got {batch_size} and {cache_size}")
        self.batch_size, self.cache_size = int(batch_size), int(cache_size)
        self.calls = 0  # baseline_fn calls made, for profiles
        self.generation = 0  # bumped when baseline_fn is set: the wrappers drop their scores of older decodings
        self._members: list[weakref.ref[SelfCriticalReward]] = []
        self._decoded: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.baseline_fn = baseline_fn

    @property
    def baseline_fn(self) -> BaselineFn | None:
        """See :data:`BaselineFn`; setting it drops the cached decodings (and the wrappers' scores of them)."""
        return self._baseline_fn

    @baseline_fn.setter
    def baseline_fn(self, fn: BaselineFn | None) -> None:
        if fn is not None and not callable(fn):
            raise TextEnvsError(f"expected baseline_fn to be a function prompts -> ids (or None), got {type(fn).__name__}")
        self._baseline_fn = fn
        if fn is not None:  # None only unsets it: a later function starts from an empty cache anyway
            self._decoded.clear()
            self.generation += 1

    def __getstate__(self) -> dict[str, Any]:
        # a copy (a SubprocVecEnv worker's) serves the envs of its own process: members are weak references,
        # which neither pickle nor mean anything in another process
        return {**self.__dict__, "_members": []}

    #: what :meth:`get_state` saves: the decodings and their counters (not ``baseline_fn``, set by the trainer)
    STATE_ATTRIBUTES = ("calls", "generation", "_decoded")

    def get_state(self) -> dict[str, Any]:
        """The cached decodings and counters, as data (:class:`text_envs.state.Stateful`)."""
        return attribute_state(self, self.STATE_ATTRIBUTES)

    def set_state(self, state: dict[str, Any]) -> None:
        """Put back a state :meth:`get_state` returned (after ``baseline_fn`` is set: setting it empties the cache)."""
        set_attribute_state(self, self.STATE_ATTRIBUTES, state)

    def join(self, wrapper: SelfCriticalReward) -> None:
        """Add a wrapper to the envs this pool prepares prompts for (its constructor does this)."""
        self._members = [m for m in self._members if m() is not None] + [weakref.ref(wrapper)]

    def decoded(self, prompt: np.ndarray) -> np.ndarray | None:
        """The baseline's ids for ``prompt`` if decoded already (cut at the EOS by the wrapper, not here)."""
        key = prompt_key(prompt)
        out = self._decoded.get(key)
        if out is not None:
            self._decoded.move_to_end(key)
        return out

    def prepare(self, requester: SelfCriticalReward) -> None:
        """Decode, in one call, the requester's current prompt and as many of the members' pending ones as fit."""
        if self.baseline_fn is None:
            raise TextEnvsError(
                "SelfCriticalReward has no baseline_fn: pass one, or set it before the first step "
                "(env.baseline_fn = fn, or vec_env.set_attr('baseline_fn', fn))."
            )
        wanted: dict[bytes, np.ndarray] = {}
        for prompt in self._pending(requester):
            key = prompt_key(prompt)
            if key not in self._decoded:
                wanted.setdefault(key, prompt)
                if len(wanted) == self.batch_size:
                    break
        if not wanted:
            return
        outputs = list(self.baseline_fn(list(wanted.values())))
        self.calls += 1
        store_decodings(self._decoded, wanted, outputs, self.cache_size)

    def _pending(self, requester: SelfCriticalReward) -> Iterator[np.ndarray]:
        members = [requester] + [m for m in (ref() for ref in self._members) if m is not None and m is not requester]
        for member in members:
            member._drop_stale_scores()
        for member in members:  # the texts being written now are needed first (none before a first reset)
            if member.current_index() >= 0 and member.current_index() not in member._scored:
                yield member.prompt(member.current_index())
        upcoming = [member.env.unwrapped.upcoming_examples(self.batch_size) for member in members]
        for row in zip_longest(*upcoming):  # then each env's next draws, nearest first
            for member, index in zip(members, row):
                if index is not None and index not in member._scored:
                    yield member.prompt(index)


class SelfCriticalReward(gym.Wrapper):
    """Subtract the reward of a baseline text for the same prompt from each text's final reward.

    ``info`` of the final step gains ``baseline_text`` and ``baseline_reward``; ``info["reward"]`` (and a
    :class:`~gymnasium.wrappers.RecordEpisodeStatistics` or SB3 ``Monitor`` placed *inside* this wrapper) keep
    the task reward, so logs still show the reward itself. Baseline texts and rewards are cached per example.

    :param env: a text env (anything whose ``unwrapped`` is a :class:`~text_envs.core.TextGenerationEnv`).
    :param baseline_fn: a batch of prompts -> their baseline texts' ids (see :data:`BaselineFn`), e.g. the
        starting model's greedy decoding (``sb3_ext.greedy_baseline``). May be set later (``env.baseline_fn =
        ...``, or SB3's ``VecEnv.set_attr("baseline_fn", fn)``), since the model is usually built after the env.
    :param batch_size: prompts per ``baseline_fn`` call: the current one and the next ones the env has drawn
        (one batched decoding costs far less per prompt than one per episode); default: ``BaselinePool``'s.
        Only without ``pool``.
    :param cache_size: baselines kept (examples drawn again reuse theirs).
    :param pool: a :class:`BaselinePool` shared with the wrappers of other envs, whose decodings are then
        batched together (its ``batch_size`` applies); by default, a pool of this env alone.
    """

    def __init__(self, env: gym.Env, baseline_fn: BaselineFn | None = None, batch_size: int | None = None,
                 cache_size: int = 100_000, pool: BaselinePool | None = None) -> None:
        super().__init__(env)
        base = env.unwrapped
        if getattr(base, "reward", None) is None or not callable(getattr(base, "prompt_ids", None)):
            raise TextEnvsError(
                f"SelfCriticalReward needs a text env with a task reward, got {type(base).__name__}: wrap an env "
                "such as gym.make('TextSummarization-v0')."
            )
        if pool is not None and batch_size is not None:
            raise TextEnvsError("pass batch_size to the BaselinePool, not to a wrapper that shares it")
        if pool is None:
            pool = (BaselinePool(cache_size=cache_size) if batch_size is None
                    else BaselinePool(batch_size=batch_size, cache_size=cache_size))
        self.pool = pool
        if baseline_fn is not None:
            self.pool.baseline_fn = baseline_fn
        self.pool.join(self)
        self.cache_size = int(cache_size)
        self._scored: OrderedDict[int, tuple[str, float]] = OrderedDict()
        self._scored_generation = self.pool.generation  # the pool's baseline_fn these scores come from

    @property
    def baseline_fn(self) -> BaselineFn | None:
        """The pool's ``baseline_fn`` (setting it sets it for every env sharing the pool)."""
        return self.pool.baseline_fn

    @baseline_fn.setter
    def baseline_fn(self, fn: BaselineFn | None) -> None:
        self.pool.baseline_fn = fn

    #: what :meth:`get_state` saves: the baseline texts and rewards per example (the pool saves its own state)
    STATE_ATTRIBUTES = ("_scored", "_scored_generation")

    def get_state(self) -> dict[str, Any]:
        """The scored baselines, as data (:class:`text_envs.state.Stateful`; the env inside and the pool are
        separate pieces with their own state)."""
        return attribute_state(self, self.STATE_ATTRIBUTES)

    def set_state(self, state: dict[str, Any]) -> None:
        """Put back a state :meth:`get_state` returned."""
        set_attribute_state(self, self.STATE_ATTRIBUTES, state)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if (terminated or truncated) and "generated_text" in info:
            text, value = self._baseline()
            info = {**info, "baseline_text": text, "baseline_reward": value}
            reward = float(reward) - value
        return obs, reward, terminated, truncated, info

    def current_index(self) -> int:
        """The current episode's example index."""
        return int(self.env.unwrapped.example_index)

    def prompt(self, index: int) -> np.ndarray:
        """Example ``index``'s prompt ids, unpadded, from the env's own tokenization and cache (the resets that
        draw it later reuse it)."""
        return self.env.unwrapped.prompt_ids(index)

    def _baseline(self) -> tuple[str, float]:
        self._drop_stale_scores()
        index = self.current_index()
        if index not in self._scored:
            ids = self.pool.decoded(self.prompt(index))
            if ids is None:
                self.pool.prepare(self)
                ids = self.pool.decoded(self.prompt(index))
            base = self.env.unwrapped
            # score, in one reward call, this env's next draws that the pool decoded with it (so tokenized here)
            ready = {index: ids}
            for i in base.upcoming_examples(self.pool.batch_size):
                if i not in ready and i not in self._scored and base.is_prompt_cached(i):
                    decoded = self.pool.decoded(self.prompt(i))
                    if decoded is not None:
                        ready[i] = decoded
            self._score(ready)
        self._scored.move_to_end(index)
        return self._scored[index]

    def _drop_stale_scores(self) -> None:
        """Forget the scores of an earlier ``baseline_fn`` (the pool's was set again since)."""
        if self._scored_generation != self.pool.generation:
            self._scored.clear()
            self._scored_generation = self.pool.generation

    def _score(self, decoded: dict[int, np.ndarray]) -> None:
        """Baseline texts and rewards of examples (index -> the pool's ids; the current example first)."""
        base = self.env.unwrapped
        examples = [base.example] + [base.source[i] for i in list(decoded)[1:]]
        score_baselines(base, decoded, examples, self._scored, self.cache_size)
