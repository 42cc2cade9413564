"""Keep freed heap memory for reuse instead of handing it back to the kernel after every query.

A range query over a day of a fleet builds a handful of numpy arrays of tens to hundreds of MB. By
default glibc serves each from a fresh ``mmap`` and unmaps it on free, so the next query faults every
page in again; on the 2-core development and CI machines (virtual machines) a page fault is expensive
enough that this cost more CPU than the work itself (``bench/query.py``: 70k faults and 6.6 CPU-s for
one 24-h query, against 36k and 2.4 CPU-s with the heap kept). numpy's request for huge pages made it
worse (see :func:`_no_numpy_hugepages`). Go's runtime, which VictoriaMetrics uses, keeps its heap the
same way. The price is a resident set that stays near its peak after a large
query. Only glibc has ``mallopt``; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Serve allocations up to ``limit_bytes`` from the heap and keep up to that much free (once per process)."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(_M_MMAP_THRESHOLD, limit_bytes)) and bool(mallopt(_M_TRIM_THRESHOLD, limit_bytes))
    _done = ok
    _no_numpy_hugepages()
    if not ok:
        log.debug("mallopt refused; freed memory goes back to the kernel as usual")
    return ok


def _no_numpy_hugepages() -> None:
    """Stop numpy from asking for transparent huge pages on large arrays (``NUMPY_MADVISE_HUGEPAGE=0``).

    With the kernel's THP defrag set to ``madvise`` (Debian's default), each fresh huge page may be
    compacted synchronously on first touch: concatenating 276 MB of arrays took 2.0 CPU-s that way on
    the development machines, against 0.17 s with ordinary pages, and once the heap is kept the pages
    are reused anyway.
    """
    try:
        from numpy._core.multiarray import _set_madvise_hugepage  # type: ignore[attr-defined]
    except ImportError:
        return
    _set_madvise_hugepage(False)
