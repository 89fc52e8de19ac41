"""The text envs' observation contract as a model reads it: one check of the spaces, one of an observation, and
the observation's four arrays as token tensors.

Every engine adapter reads the same flat ``Dict`` of 1-D integer ``Box`` arrays (docs/ARCHITECTURE.md,
"Observation and action spaces"): ``prompt_ids``/``prompt_mask`` ``(P,)`` and ``generated_ids``/
``generated_mask`` ``(T,)``, with a ``Discrete(V)`` action space (one token per step). SB3's ``LLMPolicy`` and
``EpisodeRolloutBuffer`` and RLlib's ``LMRLModule`` check their spaces with :func:`check_token_spaces`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from text_envs.errors import TextEnvsError

from .episodes import OBS_KEYS

__all__ = ["OBS_KEYS", "ObservationSpaceError", "check_token_spaces", "check_observation", "observation_parts"]


class ObservationSpaceError(TextEnvsError):
    """An observation or action space (or an observation) that a language-model policy cannot read."""


def check_token_spaces(
    observation_space: spaces.Space, action_space: spaces.Space | None = None, reader: str = "LLMPolicy"
) -> tuple[int, int, int | None]:
    """Check that the spaces are a text env's and return ``(P, T, V)`` (``V`` None without an action space).

    :param observation_space: a text env's ``Dict`` of four 1-D integer ``Box`` arrays
    :param action_space: ``Discrete(V)``, or None to check the observation space only (a rollout buffer)
    :param reader: the class that reads them, named in the error
    :raises ObservationSpaceError: saying what was expected and how to get it
    """
    fix = f"{reader} reads text_envs observations (docs/ARCHITECTURE.md): make the env with text_envs"
    if not isinstance(observation_space, spaces.Dict):
        raise ObservationSpaceError(f"expected a Dict observation space with keys {list(OBS_KEYS)}, got "
                                    f"{type(observation_space).__name__}. {fix}")
    missing = [k for k in OBS_KEYS if k not in observation_space.spaces]
    if missing:
        raise ObservationSpaceError(f"expected observation keys {list(OBS_KEYS)}, got {list(observation_space.spaces)} "
                                    f"(missing {missing}). {fix}")
    for key in OBS_KEYS:
        sp = observation_space[key]
        if not isinstance(sp, spaces.Box) or len(sp.shape) != 1 or not np.issubdtype(sp.dtype, np.integer):
            raise ObservationSpaceError(f"expected observation {key!r} to be a 1-D integer Box, got {sp}. {fix}")
    P, T = observation_space["prompt_ids"].shape[0], observation_space["generated_ids"].shape[0]
    if observation_space["prompt_mask"].shape != (P,) or observation_space["generated_mask"].shape != (T,):
        raise ObservationSpaceError(
            f"expected prompt_mask of shape ({P},) and generated_mask of shape ({T},), got "
            f"{observation_space['prompt_mask'].shape} and {observation_space['generated_mask'].shape}. {fix}"
        )
    if action_space is None:
        return P, T, None
    if not isinstance(action_space, spaces.Discrete):
        raise ObservationSpaceError(f"expected a Discrete(V) action space (one token per step), got {action_space}")
    return P, T, int(action_space.n)


def check_observation(observation: Any, P: int, T: int, V: int) -> None:
    """Raise :class:`ObservationSpaceError` naming what was expected unless ``observation`` is one text env
    observation or a batch of them: a dict of integer arrays ``prompt_ids``/``prompt_mask`` ``(P,)`` or
    ``(B, P)`` and ``generated_ids``/``generated_mask`` ``(T,)`` or ``(B, T)``, ids in ``[0, V)``, masks 0/1."""
    fix = "pass the env's observation as it is (a dict of int64 arrays, batched on a first axis)"
    if not isinstance(observation, dict):
        raise ObservationSpaceError(
            f"expected an observation dict with keys {list(OBS_KEYS)}, got {type(observation).__name__}: {fix}")
    missing = [k for k in OBS_KEYS if k not in observation]
    if missing:
        raise ObservationSpaceError(f"expected observation keys {list(OBS_KEYS)}, missing {missing}: {fix}")
    widths = {"prompt_ids": P, "prompt_mask": P, "generated_ids": T, "generated_mask": T}
    batch: int | None = None
    for key in OBS_KEYS:
        arr = observation[key]
        arr = arr.detach().cpu().numpy() if isinstance(arr, th.Tensor) else np.asarray(arr)
        n = widths[key]
        if arr.ndim not in (1, 2) or arr.shape[-1] != n:
            raise ObservationSpaceError(f"expected observation {key!r} of shape ({n},) or (B, {n}), got {arr.shape}: {fix}")
        rows = 1 if arr.ndim == 1 else arr.shape[0]
        if batch is not None and rows != batch:
            raise ObservationSpaceError(
                f"expected every observation key to hold the same batch of {batch}, got {rows} rows in {key!r}")
        batch = rows
        if arr.dtype.kind not in "iub" and not (arr.dtype.kind == "f" and np.isfinite(arr).all()
                                                 and (arr == np.round(arr)).all()):
            raise ObservationSpaceError(f"expected integer token ids in observation {key!r}, got dtype {arr.dtype}: {fix}")
        if arr.size and key.endswith("_mask") and not np.isin(arr, (0, 1)).all():
            raise ObservationSpaceError(f"expected observation {key!r} to hold only 0 and 1: {fix}")
        if arr.size and key.endswith("_ids") and not (arr.min() >= 0 and arr.max() < V):
            raise ObservationSpaceError(
                f"expected token ids in [0, {V}) in observation {key!r}, got values in [{arr.min()}, {arr.max()}] "
                "(the model's vocabulary is the env's tokenizer's)")


def observation_parts(
    obs: Any, device: th.device | None = None
) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    """``prompt_ids`` (B, P), ``prompt_mask`` (B, P), ``generated_ids`` (B, T) and the generated count (B,) of a
    batch of observations (tensors or arrays, any dtype: SB3 hands float32), as ``long`` tensors.

    :param device: move them there first (None: where they are)
    """
    p_ids, p_mask, g_ids, g_mask = (th.as_tensor(obs[k]) for k in OBS_KEYS)
    if device is not None:
        p_ids, p_mask, g_ids, g_mask = (x.to(device) for x in (p_ids, p_mask, g_ids, g_mask))
    return p_ids.long(), p_mask.long(), g_ids.long(), g_mask.long().sum(-1)
