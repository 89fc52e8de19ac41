"""Freed memory kept for reuse while training on CPU (glibc's malloc; elsewhere nothing changes).

glibc serves every allocation above its mmap threshold (adjusted as the program runs, at most 32 MiB) with a fresh
mapping from the kernel and unmaps it when it is freed, so the next one is faulted in and zeroed page by page again.
An update's vocabulary-wide tensors are each such an allocation (the main job: about 2,000 tokens x 6,000 tokens of
vocabulary x 4 bytes = 48 MB), made and freed several times per minibatch; on the 2-core machine of
``benchmarks/RESULTS.md`` (section 14f) an elementwise operation writing a fresh 48 MB tensor took 2-3x as long as the
same operation on memory already mapped, and the main job's training phase ran 1.3x faster with the heap kept.

:func:`reused_heap_memory` raises glibc's mmap and trim thresholds for the duration of a ``with`` block, so those
tensors come from the heap and its pages stay mapped between them; on leaving it sets the thresholds glibc reaches on
its own in a long run (32 MiB and 64 MiB) and returns the free heap pages to the kernel (``malloc_trim``). The cost
is memory: the heap keeps what the block freed until it ends (the main job: about 0.1 GB more at the training
phase's peak, below the evaluation's). ``text-envs train`` trains inside it; set ``TEXT_ENVS_REUSE_HEAP=0`` to leave
malloc as it is. SB3 users can wrap their own ``model.learn`` the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
from collections.abc import Iterator
from typing import Any

__all__ = ["reused_heap_memory", "REUSE_HEAP_ENV", "TRAINING_MMAP_THRESHOLD"]

REUSE_HEAP_ENV = "TEXT_ENVS_REUSE_HEAP"
"""Environment variable: ``0`` turns :func:`reused_heap_memory` into a no-op."""

TRAINING_MMAP_THRESHOLD = 1 << 30
"""Bytes: inside :func:`reused_heap_memory` allocations up to this size come from the heap (and freed heap memory up
to it is kept)."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_GLIBC_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where its own adjustment stops
_depth = 0


def _glibc() -> Any:
    """glibc's ``libc`` with ``mallopt`` and ``malloc_trim``, or None (another C library, or turned off)."""
    if os.environ.get(REUSE_HEAP_ENV, "1").strip() == "0" or platform.system() != "Linux":
        return None
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes, libc.malloc_trim.argtypes = [ctypes.c_int, ctypes.c_int], [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def reused_heap_memory(threshold: int = TRAINING_MMAP_THRESHOLD) -> Iterator[bool]:
    """Inside the block, allocations up to ``threshold`` bytes come from glibc's heap and freed memory stays mapped
    (see the module docstring). Yields whether it is in effect (False: not glibc, or ``TEXT_ENVS_REUSE_HEAP=0``).
    Nested blocks keep the outermost's settings until it ends.

    :param threshold: bytes, at most ``2**31 - 1`` (glibc's parameter is an ``int``)
    """
    global _depth
    libc = _glibc()
    if libc is None:
        yield False
        return
    if not 0 < threshold < 2**31:
        raise ValueError(f"expected 0 < threshold < 2**31 bytes, got {threshold}")
    if _depth == 0:
        libc.mallopt(_M_MMAP_THRESHOLD, threshold)
        libc.mallopt(_M_TRIM_THRESHOLD, threshold)
    _depth += 1
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, 2 * _GLIBC_MMAP_THRESHOLD_MAX)
            libc.malloc_trim(0)
