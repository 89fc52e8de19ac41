"""Deprecated: the old home of ``text-envs train --engine rllib``, kept so that old imports keep working until
version 0.3.0 (:data:`text_envs.deprecation.REMOVED_IN`).

The RLlib engine is :class:`text_envs_app.engines.rllib.RLlibEngine`, run by the one training skeleton
:func:`text_envs_app.train.train_unlocked` (``engine="rllib"``). Each name read from here still works and raises a
``FutureWarning`` naming its new home: ``train_rllib`` is ``train_unlocked``; ``require_rllib``, ``rllib_config``,
``RllibCheckpoints``, ``Curves``, ``STATE_FILE`` and ``INSTALL_HINT`` live in :mod:`text_envs_app.engines.rllib`.
"""

from __future__ import annotations

from text_envs.deprecation import REMOVED_IN, moved_names

__all__ = ["REMOVED_IN", "MOVED"]

MOVED: dict[str, str] = {
    "train_rllib": "text_envs_app.train:train_unlocked",
    **{name: f"text_envs_app.engines.rllib:{name}" for name in ("require_rllib", "rllib_config", "RllibCheckpoints",
                                                                  "Curves", "STATE_FILE", "INSTALL_HINT")},
}
"""Each old name of this module: its new home, as ``"module:name"``."""

__getattr__ = moved_names(__name__, MOVED)


def __dir__() -> list[str]:
    return sorted([*globals(), *MOVED])
