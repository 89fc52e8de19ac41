"""Moved to :mod:`lm_core.backends` (the model backends and decode caches, engine-neutral).

Every name still resolves from this old path, with a :class:`FutureWarning` naming its new home; the old path is
removed in text-envs 0.3.0 (:data:`text_envs.deprecation.REMOVED_IN`).
"""

from text_envs.deprecation import moved_module

__getattr__ = moved_module(__name__, "lm_core.backends")
