"""``lm_core.heap.reused_heap_memory``: inside it a large tensor comes from glibc's heap (no fresh mapping), after it
glibc maps large allocations again; ``TEXT_ENVS_REUSE_HEAP=0`` turns it off."""

from __future__ import annotations

import ctypes
import platform

import pytest
import torch as th

from lm_core.heap import REUSE_HEAP_ENV, reused_heap_memory

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc only")

_FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _FIELDS]


def _mapped_blocks() -> int:
    """glibc's count of allocations served by their own mapping (``mallinfo2().hblks``)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().hblks)


def _blocks_while_holding(nbytes: int) -> int:
    before = _mapped_blocks()
    tensor = th.empty(nbytes // 4, dtype=th.float32)
    tensor.fill_(1.0)
    grown = _mapped_blocks() - before
    del tensor
    return grown


def test_large_tensors_come_from_the_heap_inside_only():
    size = 64 << 20  # above glibc's largest own mmap threshold (32 MiB): always a mapping by default
    assert _blocks_while_holding(size) == 1
    with reused_heap_memory() as active:
        assert active
        assert _blocks_while_holding(size) == 0
        with reused_heap_memory():  # nested: the outer block's settings hold until it ends
            assert _blocks_while_holding(size) == 0
        assert _blocks_while_holding(size) == 0
    assert _blocks_while_holding(size) == 1


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(REUSE_HEAP_ENV, "0")
    with reused_heap_memory() as active:
        assert not active
        assert _blocks_while_holding(64 << 20) == 1


def test_rejects_a_threshold_glibc_cannot_take():
    with pytest.raises(ValueError, match=r"expected 0 < threshold < 2\*\*31"):
        with reused_heap_memory(1 << 31):
            pass
