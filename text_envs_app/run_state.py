"""The state of a training run for an exact resume, gathered through :class:`text_envs.state.Stateful`.

:func:`capture_state` asks each stateful piece of an SB3 run for its state and :func:`restore_state` hands it back;
nothing here reads or writes another object's private attributes. The pieces:

===============  ====================================================================================
key              what, and from whom
===============  ====================================================================================
``algo``         SB3's step counters, last observation, episode-info windows
``spaces``       the random generators of the algorithm's spaces (both through
                 :class:`sb3_ext.state.AlgorithmStepState`, the one adapter of SB3's internals)
``policy``       the policy's ``get_state()`` (``LLMPolicy``: the KL coefficient, mask-sync counters)
``buffer``       the rollout buffer's ``get_state()`` (``EpisodeRolloutBuffer``: KL of open episodes);
                 ``{}`` for SB3's own buffers (empty at a rollout boundary)
``algorithm``    the algorithm's ``get_state()`` when it has one (``sb3_ext.GRPO`` & co: open groups)
``envs``         ``{path: (class name, state)}`` of every piece of the env stack (:func:`env_pieces`):
                 ours are ``Stateful``; Gymnasium's and SB3's wrappers go through their adapters
                 (:func:`text_envs.state.gymnasium_adapters`, :func:`sb3_ext.state.sb3_adapters`);
                 a piece with neither holds no state (``{}``). None when the envs run in subprocesses.
``rng``          the process's Python, NumPy, torch (and CUDA) random states (:class:`ProcessRandomState`)
===============  ====================================================================================

plus ``format``, ``num_timesteps``, ``torch_threads`` and ``device``. This is the layout of format
``text-envs-checkpoint/2``: checkpoints written before the protocol (whose per-object states hold every plain
attribute) restore too, each piece taking the keys it names.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from text_envs.state import StateError, gymnasium_adapters, is_stateful, stateful_view

__all__ = ["FORMAT", "capture_state", "restore_state", "env_pieces", "env_states", "restore_env_states",
           "ProcessRandomState", "EnvStateMismatch"]

FORMAT = "text-envs-checkpoint/2"

#: public attributes that lead from a piece of the env stack to the pieces inside it: VecEnv wrappers and
#: TextVecEnv (``venv``), DummyVecEnv (``envs``), Gymnasium wrappers (``env``), the native vector env
#: (``single_env``), the per-prompt baselines (``baseline``: TextVecEnv's VectorBaseline; ``pool``:
#: SelfCriticalReward's BaselinePool)
LINKS = ("venv", "envs", "env", "single_env", "baseline", "pool")


class EnvStateMismatch(StateError):
    """A saved env state whose pieces are not those of the env it is restored into."""


def _linked(obj: Any, link: str) -> Any:
    """``obj``'s own attribute ``link``, or None. Read without ``__getattr__``: SB3's VecEnvWrapper answers any
    unknown name with the wrapped env's attribute, which would list one piece under two paths."""
    try:
        value = object.__getattribute__(obj, link)
    except AttributeError:
        return None
    return None if callable(value) else value


def env_pieces(root: Any) -> Iterator[tuple[str, Any]]:
    """``(path, piece)`` of every object of an env stack reachable from ``root`` through :data:`LINKS`, each once,
    in a fixed order (depth first, links in :data:`LINKS` order); ``""`` is ``root``."""
    seen: set[int] = set()

    def visit(path: str, obj: Any) -> Iterator[tuple[str, Any]]:
        if obj is None or id(obj) in seen or isinstance(obj, (str, bytes, int, float, dict, np.ndarray)):
            return
        seen.add(id(obj))
        yield path, obj
        for link in LINKS:
            value = _linked(obj, link)
            if isinstance(value, list):
                for i, item in enumerate(value):
                    yield from visit(f"{path}.{link}[{i}]", item)
            elif value is not None:
                yield from visit(f"{path}.{link}", value)

    yield from visit("", root)


def _adapters() -> dict[type, Any]:
    from sb3_ext.state import sb3_adapters

    return {**gymnasium_adapters(), **sb3_adapters()}


def env_states(venv: Any) -> dict[str, tuple[str, dict[str, Any]]] | None:
    """``{path: (class name, state)}`` of the env stack's pieces (None when its envs run in other processes,
    whose state this process cannot read)."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    pieces = list(env_pieces(venv))
    if any(isinstance(piece, SubprocVecEnv) for _, piece in pieces):
        return None
    adapters = _adapters()
    out = {}
    for path, piece in pieces:
        view = stateful_view(piece, adapters)
        out[path] = (type(piece).__name__, view.get_state() if view is not None else {})
    return out


def restore_env_states(venv: Any, saved: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """Hand each piece of a freshly built env stack its saved state.

    :raises EnvStateMismatch: when the stack is not built like the saved one.
    """
    pieces = dict(env_pieces(venv))
    mine = {path: type(piece).__name__ for path, piece in pieces.items()}
    theirs = {path: name for path, (name, _) in saved.items()}
    if mine != theirs:
        raise EnvStateMismatch(
            "the checkpoint's envs are not built like these (a different --n-envs, --vec-env or baseline?): "
            f"expected {sorted(theirs.items())[:6]}..., got {sorted(mine.items())[:6]}...; resume with the run's "
            "own settings")
    adapters = _adapters()
    for path, (_, state) in saved.items():
        view = stateful_view(pieces[path], adapters)
        if view is not None:
            view.set_state(state)


class ProcessRandomState:
    """The process's random states (Python's ``random``, NumPy's global generator, torch's CPU and CUDA
    generators) as a :class:`text_envs.state.Stateful`.

    :param log: where :meth:`set_state` says that a CUDA state is for another set of GPUs.
    """

    def __init__(self, log: Callable[[str], Any] = print) -> None:
        self.log = log

    def get_state(self) -> dict[str, Any]:
        import torch as th

        state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": th.get_rng_state()}
        if th.cuda.is_available() and th.cuda.is_initialized():
            state["cuda"] = th.cuda.get_rng_state_all()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        import torch as th

        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        th.set_rng_state(state["torch"])
        if "cuda" in state:
            if th.cuda.is_available() and th.cuda.device_count() == len(state["cuda"]):
                th.cuda.set_rng_state_all(state["cuda"])
            else:
                self.log("note: the checkpoint's CUDA random state is for another set of GPUs; the resumed run is "
                         "not exact")


def _state_of(piece: Any) -> Any:
    """``piece.get_state()`` when it is :class:`Stateful`, else None."""
    return piece.get_state() if is_stateful(piece) else None


def capture_state(model: Any) -> dict[str, Any]:
    """Everything a resumed run needs beyond the parameters (see the module docstring), as deep copies."""
    import torch as th

    from sb3_ext.state import AlgorithmStepState

    return {
        "format": FORMAT,
        "num_timesteps": int(model.num_timesteps),
        **AlgorithmStepState(model).get_state(),  # "algo" and "spaces"
        "policy": _state_of(model.policy),
        "buffer": _state_of(getattr(model, "rollout_buffer", None)) or {},
        "algorithm": _state_of(model),
        "envs": env_states(model.env),
        "rng": ProcessRandomState().get_state(),
        "torch_threads": th.get_num_threads(),
        "device": str(model.device),
    }


def _set(piece: Any, state: Any) -> None:
    """Hand ``state`` to ``piece`` when it is :class:`Stateful`; a piece without state ignores a saved one (SB3's
    own buffers, whose state checkpoints written before the protocol held, though nothing of it outlives a
    rollout)."""
    if state is not None and is_stateful(piece):
        piece.set_state(state)


def restore_state(model: Any, state: dict[str, Any], log: Callable[[str], Any] = print) -> None:
    """Put a captured state back into a freshly loaded model and its (freshly built) env; the random states last.

    Call it right before ``model.learn(..., reset_num_timesteps=False)``: nothing between may draw random numbers.
    """
    import torch as th

    from sb3_ext.state import AlgorithmStepState

    in_subprocesses = state["envs"] is None  # their envs' states were not saved: SB3 resets them at learn()
    if not in_subprocesses:
        restore_env_states(model.env, state["envs"])  # first: an env stack built otherwise is refused before any change
    AlgorithmStepState(model).set_state(
        {**state, "algo": {**state["algo"], "_last_obs": None}} if in_subprocesses else state)
    _set(model.policy, state["policy"])
    _set(getattr(model, "rollout_buffer", None), state["buffer"] or None)
    _set(model, state.get("algorithm"))
    if in_subprocesses:
        log("note: the checkpoint has no env states (the envs ran in subprocesses): the resumed run starts new "
            "episodes, so it is not the exact continuation of the interrupted one")
    if state["torch_threads"] != th.get_num_threads():
        log(f"note: the run used {state['torch_threads']} torch threads and this process {th.get_num_threads()}: "
            "float sums may round differently, so the resumed run may drift from the uninterrupted one")
    ProcessRandomState(log).set_state(state["rng"])
