"""Baseline decodings and their scores: the parts the per-prompt baseline wrappers share.

A baseline wrapper asks a ``baseline_fn`` (see :data:`BaselineFn`) for the texts of a batch of prompts, keeps the
decodings by :func:`prompt_key` (:func:`store_decodings`) and scores them with the task reward
(:func:`score_baselines`). :class:`text_envs.wrappers.SelfCriticalReward` (one env) and
:class:`text_envs.wrappers.vector.VectorBaseline` (the native vector env) both build on these, so both give the
same texts and values.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError

__all__ = ["BaselineFn", "prompt_key", "store_decodings", "score_baselines"]

#: ``baseline_fn(prompts) -> texts as token ids``: for a batch of prompts (each the unpadded ``prompt_ids`` of an
#: observation), the baseline's generated ids; an EOS and anything after it are dropped, as the env drops them.
BaselineFn = Callable[[list[np.ndarray]], Sequence[Sequence[int]]]


def prompt_key(prompt: np.ndarray) -> bytes:
    """The cache key of a prompt's ids (a 16-byte digest of them)."""
    # a baseline_fn sees only the prompt ids, so its text is a function of them: envs over different copies of
    # one data set share decodings. A digest, not the ids: 100k keys of 1k-token prompts would take 800 MB.
    return hashlib.blake2b(np.ascontiguousarray(prompt, dtype=np.int64).tobytes(), digest_size=16).digest()


def store_decodings(cache: OrderedDict[bytes, np.ndarray], wanted: dict[bytes, np.ndarray],
                    outputs: list[Sequence[int]], cache_size: int) -> None:
    """Keep one ``baseline_fn`` call's ``outputs`` (for the prompts ``wanted``, key -> prompt) in ``cache``, the
    oldest dropped beyond ``cache_size``."""
    if len(outputs) != len(wanted):
        raise TextEnvsError(f"baseline_fn returned {len(outputs)} texts for {len(wanted)} prompts")
    for key, out in zip(wanted, outputs):
        cache[key] = np.asarray([int(i) for i in out], dtype=np.int64)
    while len(cache) > cache_size:
        cache.popitem(last=False)


def score_baselines(env: Any, decoded: dict[int, np.ndarray], examples: Sequence[Any],
                    scored: OrderedDict[int, tuple[str, float]], cache_size: int) -> None:
    """Score baseline decodings (example index -> ids; ``examples`` are those examples, in that order) with
    ``env``'s task reward, in one ``reward.compute`` call, into ``scored`` (index -> (text, value)), the oldest
    dropped beyond ``cache_size``. The texts are cut as the env cuts its own: at the EOS, at ``max_new_tokens``."""
    texts = []
    for out in decoded.values():
        ids = out.tolist()
        if env.eos_token_id in ids:
            ids = ids[: ids.index(env.eos_token_id)]
        texts.append(env.decode(ids[: env.max_new_tokens]))
    values = env.reward.compute(texts, [list(ex.references) for ex in examples], [ex.prompt for ex in examples])
    for k, (index, text) in enumerate(zip(decoded, texts)):
        value = float(values[env.reward.name][k])
        if not np.isfinite(value):
            raise TextEnvsError(f"The reward {env.reward.name!r} returned {value} for the baseline text {text!r}.")
        scored[index] = (text, value)
        scored.move_to_end(index)
    while len(scored) > cache_size:
        scored.popitem(last=False)
