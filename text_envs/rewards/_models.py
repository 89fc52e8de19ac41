"""Process-wide cache of the models behind model-based rewards (loaded once per process, per device)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_CACHE: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()


def resolve_device(device: Any = None) -> Any:
    """``None``/``"auto"`` -> CUDA when available else CPU; anything else goes through ``torch.device``."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cached(kind: str, key: str, device: Any, loader: Callable[[], Any]) -> Any:
    """Return the object cached under ``(kind, key, device)``, calling ``loader()`` the first time."""
    k = (kind, str(key), str(device))
    obj = _CACHE.get(k)
    if obj is None:
        with _LOCK:
            obj = _CACHE.get(k)
            if obj is None:
                obj = _CACHE[k] = loader()
    return obj


def cache_size() -> int:
    """Number of cached models (for tests and diagnostics)."""
    return len(_CACHE)


def clear_cache() -> None:
    """Drop every cached model (frees memory; the next reward built loads again)."""
    with _LOCK:
        _CACHE.clear()
