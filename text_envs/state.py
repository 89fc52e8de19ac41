"""State as an explicit protocol: each stateful piece says what it saves and restores.

A piece of a training run that changes as it runs (an env's episode in progress and data-sampling position, a
baseline's caches, a policy's KL coefficient...) implements :class:`Stateful`: ``get_state()`` returns its state as
data (numbers, strings, NumPy arrays and generators, and containers of them: what
``text_envs_app.state_codec`` stores without a pickle), and ``set_state(state)`` puts such a state back into an
object built the same way. Nothing else reaches into the object's attributes: a checkpoint
(``text_envs_app.checkpoint``) calls these two methods, as SB3 calls ``_get_constructor_parameters`` and a
``torch.nn.Module`` ``state_dict``.

Most pieces keep their state in a few attributes, named once in a ``STATE_ATTRIBUTES`` tuple of their class;
:func:`attribute_state` and :func:`set_attribute_state` copy those (deep copies both ways: a state never shares
arrays with a live object). Another library's class that holds state but has no such methods (Gymnasium's
``TimeLimit``, SB3's ``Monitor``) gets an :class:`AttributeAdapter` naming the attributes it keeps its state in:
those names are that library's internals, listed in one table per library (:func:`gymnasium_adapters` here,
``sb3_ext.state.sb3_adapters`` for SB3).

This module imports no training library (``text_envs`` has none at import time).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from text_envs.errors import TextEnvsError

__all__ = [
    "Stateful",
    "StateError",
    "is_stateful",
    "attribute_state",
    "set_attribute_state",
    "AttributeAdapter",
    "BoundAdapter",
    "gymnasium_adapters",
    "stateful_view",
]


@runtime_checkable
class Stateful(Protocol):
    """An object whose state can be saved as data and put back (see the module docstring)."""

    def get_state(self) -> dict[str, Any]:
        """The object's state as data (deep copies: later steps do not change it)."""

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Put back a state :meth:`get_state` returned, into an object built the same way.

        :raises StateError: when the state does not fit this object (keys missing, built for another size).
        """


class StateError(TextEnvsError):
    """A saved state that does not fit the object it is restored into."""


def is_stateful(obj: Any) -> bool:
    """Whether ``obj``'s class defines ``get_state`` and ``set_state``. Looked up on the class, not the object:
    SB3's ``VecEnvWrapper`` hands unknown attribute names to the env it wraps, so a wrapper without state would
    otherwise answer with its inner env's methods."""
    cls = type(obj)
    return callable(getattr(cls, "get_state", None)) and callable(getattr(cls, "set_state", None))


def attribute_state(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """``{name: deep copy of obj.name}`` for each of ``names``: the state of an object that keeps it there."""
    return {name: copy.deepcopy(getattr(obj, name)) for name in names}


def set_attribute_state(obj: Any, names: tuple[str, ...], state: Mapping[str, Any]) -> None:
    """Set each of ``names`` on ``obj`` to a deep copy of ``state[name]``; other keys of ``state`` are ignored
    (checkpoints of format ``text-envs-checkpoint/2`` written before this protocol hold every plain attribute).

    :raises StateError: naming the keys ``state`` lacks (nothing is set then).
    """
    if not isinstance(state, Mapping):
        raise StateError(f"expected the saved state of a {type(obj).__name__} as a dict, got {type(state).__name__}")
    missing = [name for name in names if name not in state]
    if missing:
        raise StateError(f"the saved state of a {type(obj).__name__} lacks {missing} (it has {sorted(state)[:8]}): "
                         "it was saved from another kind of object or by another version; resume with the "
                         "settings and text-envs version that saved it")
    for name in names:
        setattr(obj, name, copy.deepcopy(state[name]))


@dataclass(frozen=True)
class AttributeAdapter:
    """:class:`Stateful`'s two methods for instances of another library's class, over the attributes (its
    internals) that the class keeps its state in.

    :param names: the attributes, e.g. ``("_elapsed_steps",)`` for Gymnasium's ``TimeLimit``.
    """

    names: tuple[str, ...]

    def bind(self, obj: Any) -> BoundAdapter:
        """``obj`` seen as a :class:`Stateful`."""
        return BoundAdapter(self, obj)


@dataclass(frozen=True)
class BoundAdapter:
    """An :class:`AttributeAdapter` bound to one object: a :class:`Stateful`."""

    adapter: AttributeAdapter
    obj: Any

    def get_state(self) -> dict[str, Any]:
        return attribute_state(self.obj, self.adapter.names)

    def set_state(self, state: Mapping[str, Any]) -> None:
        set_attribute_state(self.obj, self.adapter.names, state)


def gymnasium_adapters() -> dict[type, AttributeAdapter]:
    """The state of Gymnasium's wrappers that ``gym.make`` stacks (their private attributes: none has
    ``get_state``). ``OrderEnforcing``: whether the env was reset (a restored env is mid-episode, never reset in
    this process); ``PassiveEnvChecker``: which checks ran; ``TimeLimit``: the steps of the episode so far."""
    from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit

    return {
        OrderEnforcing: AttributeAdapter(("_has_reset",)),
        PassiveEnvChecker: AttributeAdapter(("checked_reset", "checked_step", "checked_render", "close_called")),
        TimeLimit: AttributeAdapter(("_elapsed_steps",)),
    }


def stateful_view(obj: Any, adapters: Mapping[type, AttributeAdapter]) -> Stateful | None:
    """``obj`` itself when it is :class:`Stateful`, else bound to the adapter of the nearest class of its MRO in
    ``adapters``; None when it holds no state that is saved (no method, no adapter)."""
    if is_stateful(obj):
        return obj
    for cls in type(obj).__mro__:
        adapter = adapters.get(cls)
        if adapter is not None:
            return adapter.bind(obj)
    return None
