"""Old import paths kept for one release, each warning where its name lives now.

A module whose names moved serves them from a module-level ``__getattr__`` made by :func:`moved_names`, so
``from old.module import Name`` keeps working and raises a :class:`FutureWarning` that names the new home and the
version that removes the old path (:data:`REMOVED_IN`). ``FutureWarning``, not ``DeprecationWarning``: Python
shows it by default, so a user who never turned warnings on still learns of the move.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["REMOVED_IN", "warn_moved", "moved_names", "moved_module"]

#: The release that removes the old import paths kept by :func:`moved_names`.
REMOVED_IN = "0.3.0"


def warn_moved(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` (a dotted path) is now ``new`` and that the old path goes in :data:`REMOVED_IN`."""
    warnings.warn(f"{old} moved to {new}; the old path is removed in text-envs {REMOVED_IN}: import it from "
                  f"its new home.", FutureWarning, stacklevel=stacklevel)


def moved_names(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``module`` serving each moved name (old name -> ``"new.module:new_name"``)
    with a :class:`FutureWarning`; any other name raises the usual ``AttributeError``.

    :param module: the old module's ``__name__``.
    :param moved: old attribute name -> its new home, as ``"package.module:name"``.
    """

    def __getattr__(name: str) -> Any:
        target = moved.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new_module, _, new_name = target.partition(":")
        value = getattr(importlib.import_module(new_module), new_name)
        warn_moved(f"{module}.{name}", f"{new_module}.{new_name}")
        return value

    return __getattr__


def moved_module(module: str, new_module: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for a module that moved whole: every name of ``new_module`` is served from the old
    path with a :class:`FutureWarning` naming the new module.

    :param module: the old module's ``__name__``.
    :param new_module: the module that holds the names now.
    """

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target = importlib.import_module(new_module)
        if not hasattr(target, name):
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warn_moved(f"{module}.{name}", f"{new_module}.{name}")
        return getattr(target, name)

    return __getattr__
