"""Episodes that carry the prompt once: what the env runners ship to the learner.

A text env's observation (docs/ARCHITECTURE.md) holds the prompt (``P`` ids and ``P`` mask entries) and the tokens
generated so far (``T`` + ``T``), all int64, at every step: ``(2P + 2T) * 8`` bytes per generated token (4.9 KB on
TextSummarization-v0, P=256, T=48), 99% of it the same prompt again and tokens the episode already holds as its
actions. RLlib's episodes store every observation, and the env runners ship them to the learner.

Two connector pieces remove the repetition without changing what the module sees:

* :class:`CompactTextObservations` (env runner, first piece of the env-to-module pipeline) hands the module the
  env's full observation, as RLlib's ``AddObservationsFromEpisodesToBatch`` would, and then replaces it *in the
  episode* by the generated count (one int32). The prompt and the generated ids are kept once per episode chunk in
  ``episode.custom_data[CHUNK_KEY]`` (ids in the smallest integer dtype that holds the vocabulary, the prompt mask
  as uint8, the newest generated ids). RLlib copies ``custom_data`` into the next chunk when it cuts an episode.
* :class:`ExpandTextObservations` (learner, first piece of the learner pipeline, before PPO's
  ``AddOneTsToEpisodesAndTruncate``) rebuilds every observation of the chunk, array for array equal to the env's:
  the prompt repeated, the first ``count`` newest generated ids and the pad id after them, the prefix mask.

The rebuild is exact because the env keeps the observation contract, which the runner piece checks at every step
(cheap array compares, no model work): the prompt does not change within an episode, each observation's generated
ids extend the previous one's, the mask is ``count`` ones then zeros, the ids after ``count`` are the pad id. An env
that breaks it fails the run with an error naming the broken rule (``algorithm_config(compact_episodes=False)``
stores the full observations instead).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer

from lm_core.episodes import OBS_KEYS
from text_envs.errors import TextEnvsError

__all__ = ["CompactTextObservations", "ExpandTextObservations", "CHUNK_KEY", "compact_observations_connector",
           "expand_episode"]

#: ``episode.custom_data`` key of a chunk's prompt and newest generated ids (see the module docstring)
CHUNK_KEY = "text_envs_observation"
_FIX = ("the RLlib adapter stores each episode's prompt once and rebuilds the observations from the generated "
        "tokens (docs/ARCHITECTURE.md's observation contract); for an env that breaks it, build the config with "
        "rllib_ext.algorithm_config(..., compact_episodes=False)")


def _id_dtype(high: int) -> np.dtype:
    """The smallest signed integer dtype that holds token ids up to ``high``."""
    for dtype in (np.int16, np.int32):
        if high <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _check_generated(obs: dict[str, np.ndarray], pad_token_id: int) -> int:
    """The generated count of a full observation, after checking its mask is a prefix and its padding the pad id."""
    mask, ids = obs["generated_mask"], obs["generated_ids"]
    count = int(mask.sum())
    if not (mask[:count].all() and (ids[count:] == pad_token_id).all()):
        raise TextEnvsError(f"expected generated_mask to be {count} ones then zeros and generated_ids to hold the pad "
                            f"id {pad_token_id} after them, got mask {mask.tolist()}, ids {ids.tolist()}: {_FIX}")
    return count


class CompactTextObservations(ConnectorV2):
    """Env-to-module piece (env runners): the module gets the full observation, the episode keeps its count only.

    :param pad_token_id: the env's pad id (right padding of ``generated_ids``)
    :param vocab_size: ``V``; prompt ids are kept in the smallest integer dtype that holds ``V - 1``
    """

    def __init__(self, input_observation_space: Any = None, input_action_space: Any = None, *, pad_token_id: int,
                 vocab_size: int, **kwargs: Any) -> None:
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.pad_token_id = int(pad_token_id)
        self.id_dtype = _id_dtype(int(vocab_size) - 1)

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: Any, explore: Any = None,
                 shared_data: Any = None, **kwargs: Any) -> Any:
        if Columns.OBS in batch:  # an earlier piece built the observations: leave them (and the episodes) alone
            return batch
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=True):
            obs = episode.get_observations(-1)
            if isinstance(obs, dict):
                count = self._keep(episode, obs)
                compact = np.int32(count)
                episode.set_observations(new_data=compact, at_indices=-1)
                if getattr(episode, "_last_added_observation", None) is obs:
                    # RLlib's episode also holds the newest observation here (read by multi-agent episodes only)
                    # and pickles it: the full one would travel once per chunk
                    episode._last_added_observation = compact
            else:  # already compact (a second pass over the same step): rebuild it for the module
                obs = _full_observation(episode.custom_data[CHUNK_KEY], int(obs))
            self.add_batch_item(batch, Columns.OBS, item_to_add=obs, single_agent_episode=episode)
        return batch

    def _keep(self, episode: Any, obs: dict[str, np.ndarray]) -> int:
        """Check ``obs`` against the chunk's kept data (the contract of the module docstring), keep its ids and
        return its generated count."""
        count = _check_generated(obs, self.pad_token_id)
        kept = episode.custom_data.get(CHUNK_KEY)
        if kept is None:
            episode.custom_data[CHUNK_KEY] = {
                "prompt_ids": obs["prompt_ids"].astype(self.id_dtype), "prompt_mask": obs["prompt_mask"].astype(
                    np.uint8), "generated_ids": obs["generated_ids"].astype(self.id_dtype), "count": count,
                "pad_token_id": self.pad_token_id, "dtypes": tuple(obs[k].dtype.str for k in OBS_KEYS)}
            return count
        previous = kept["count"]
        if not (np.array_equal(obs["prompt_ids"], kept["prompt_ids"])
                and np.array_equal(obs["prompt_mask"], kept["prompt_mask"])):
            raise TextEnvsError(f"expected the prompt to stay the same within an episode (episode {episode.id_}, "
                                f"step {episode.t}): {_FIX}")
        if count < previous or not np.array_equal(obs["generated_ids"][:previous],
                                                  kept["generated_ids"][:previous]):
            raise TextEnvsError(f"expected each observation's generated_ids to extend the previous one's (episode "
                                f"{episode.id_}, step {episode.t}, {previous} -> {count} tokens): {_FIX}")
        kept["generated_ids"], kept["count"] = obs["generated_ids"].astype(self.id_dtype), count
        return count


def _full_observation(kept: dict[str, Any], count: int) -> dict[str, np.ndarray]:
    """One full observation of a chunk at ``count`` generated tokens."""
    return {key: value[0] for key, value in _full_observations(kept, np.array([count])).items()}


def _full_observations(kept: dict[str, Any], counts: np.ndarray) -> dict[str, np.ndarray]:
    """The full observations (L, P) / (L, T) of a chunk at generated ``counts`` (L,)."""
    dtypes = {k: np.dtype(v) for k, v in zip(OBS_KEYS, kept["dtypes"])}
    n = len(counts)
    T = len(kept["generated_ids"])
    generated = np.arange(T)[None, :] < counts[:, None]  # (L, T)
    return {
        "prompt_ids": np.repeat(kept["prompt_ids"].astype(dtypes["prompt_ids"])[None], n, axis=0),
        "prompt_mask": np.repeat(kept["prompt_mask"].astype(dtypes["prompt_mask"])[None], n, axis=0),
        "generated_ids": np.where(generated, kept["generated_ids"][None], kept["pad_token_id"]).astype(
            dtypes["generated_ids"]),
        "generated_mask": generated.astype(dtypes["generated_mask"]),
    }


def expand_episode(episode: Any) -> None:
    """Rebuild the full observations of an episode chunk compacted by :class:`CompactTextObservations`, in place
    (lookback included); an episode without compact observations is left as it is."""
    kept = episode.custom_data.pop(CHUNK_KEY, None)
    if kept is None:
        return
    buffer = episode.observations
    data = buffer.data
    counts = np.asarray(data if buffer.finalized else [int(c) for c in data], dtype=np.int64).reshape(-1)
    full = _full_observations(kept, counts)
    if not buffer.finalized:  # a list of per-step observations, as RLlib keeps an episode before to_numpy()
        full = [{k: v[i] for k, v in full.items()} for i in range(len(counts))]
    episode.observations = InfiniteLookbackBuffer(data=full, lookback=buffer.lookback, space=buffer.space)


class ExpandTextObservations(ConnectorV2):
    """Learner piece: rebuild the full observations of the compacted episode chunks (see :func:`expand_episode`)
    before any other piece reads them."""

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: Any, explore: Any = None,
                 shared_data: Any = None, **kwargs: Any) -> Any:
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False):
            expand_episode(episode)
        return batch


def compact_observations_connector(env: Any = None, spaces: Any = None, device: Any = None, *, pad_token_id: int,
                                   vocab_size: int) -> CompactTextObservations:
    """``config.env_runners(env_to_module_connector=...)``'s factory (bind the ids with ``functools.partial``)."""
    return CompactTextObservations(pad_token_id=pad_token_id, vocab_size=vocab_size)
