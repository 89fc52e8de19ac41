"""``lm_core.heap.reused_heap_memory``: inside it a large tensor comes from glibc's heap (no fresh mapping), after it
glibc maps large allocations again; ``TEXT_ENVS_REUSE_HEAP=0`` turns it off.

Each check runs in a fresh interpreter: in a pytest worker, free chunks that earlier tests left in the heap can serve
a 64 MiB request without a mapping, whatever the thresholds (seen in CI with another test order)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from lm_core.heap import REUSE_HEAP_ENV, reused_heap_memory

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc only")

_MEASURE = textwrap.dedent('''
    import ctypes
    import torch as th
    from lm_core.heap import reused_heap_memory

    _FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
               "keepcost")

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in _FIELDS]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2

    def blocks_while_holding(nbytes):
        """How many allocations glibc served with their own mapping (mallinfo2().hblks) while a tensor is held."""
        before = libc.mallinfo2().hblks
        tensor = th.empty(nbytes // 4, dtype=th.float32)
        tensor.fill_(1.0)
        grown = libc.mallinfo2().hblks - before
        del tensor
        return grown
''')


def _run_fresh(body: str, **env: str) -> None:
    """Run ``body`` after the measuring helpers in a fresh interpreter; fail with its output if it fails."""
    code = _MEASURE + textwrap.dedent(body)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    assert result.returncode == 0, result.stdout + result.stderr


def test_large_tensors_come_from_the_heap_inside_only():
    # 64 MiB: above glibc's largest own mmap threshold (32 MiB), so always a mapping by default
    _run_fresh('''
        size = 64 << 20
        assert blocks_while_holding(size) == 1
        with reused_heap_memory() as active:
            assert active
            assert blocks_while_holding(size) == 0
            with reused_heap_memory():  # nested: the outer block's settings hold until it ends
                assert blocks_while_holding(size) == 0
            assert blocks_while_holding(size) == 0
        assert blocks_while_holding(size) == 1
    ''')


def test_turned_off_by_the_environment():
    _run_fresh('''
        with reused_heap_memory() as active:
            assert not active
            assert blocks_while_holding(64 << 20) == 1
    ''', **{REUSE_HEAP_ENV: "0"})


def test_rejects_a_threshold_glibc_cannot_take():
    with pytest.raises(ValueError, match=r"expected 0 < threshold < 2\*\*31"):
        with reused_heap_memory(1 << 31):
            pass
