"""A bounded cache of decoded, ordered sample columns of the stored day tables.

A dashboard asks the same selectors over the same day every refresh. The sealed days never change
until a seal, an unseal or retention replaces them, and an unsealed day's stage changes only when
compaction moves whole hours into it; what a read of them costs is DuckDB's scan, the rebuilding of
the delta timestamps and the sort into (series, time) order, which is the same every time. So
``DuckDBStore.read_arrays`` keeps, per source table and selector (series ids and their rank) and
whole-hour span, the part as the merge wants it, and cuts it to the asked range.

Correctness rests on the generation: every change of a cached table happens inside
:meth:`ReadCache.changing`, which bumps the generation and empties the cache on the way in and out,
and keeps the cache out of use in between (so a read that overlaps a change reads DuckDB, as without
the cache). A part read under an older generation is never stored. The head is never cached.
Memory: at most ``max_bytes`` of arrays (least recently used first out); a part larger than half
of that is not kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator

import numpy as np

Columns = tuple[np.ndarray, ...]


def selector_digest(ids: np.ndarray, rank: np.ndarray | None) -> bytes:
    """A key for a read's series: the ids and, when given, the rank each id gets."""
    h = hashlib.blake2b(digest_size=16)
    ids64 = np.ascontiguousarray(ids, dtype=np.int64)
    h.update(ids64.tobytes())
    if rank is not None:
        h.update(b"r")
        inside = ids64[(ids64 >= 0) & (ids64 < len(rank))]
        h.update(np.ascontiguousarray(rank[inside], dtype=np.int64).tobytes())
        h.update(len(rank).to_bytes(8, "little"))
    return h.digest()


class ReadCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[Columns, int]] = OrderedDict()
        self._bytes = 0
        self._gen = 0
        self._busy = 0
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def generation(self) -> int | None:
        """The generation to read under, or None while a cached table is being changed."""
        with self._lock:
            return None if self._busy or self.max_bytes <= 0 else self._gen

    def get(self, gen: int, key: Hashable) -> Columns | None:
        with self._lock:
            if gen != self._gen or self._busy:
                return None
            hit = self._entries.get((gen, key))
            if hit is None:
                self.misses += 1
                return None
            self._entries.move_to_end((gen, key))
            self.hits += 1
            return hit[0]

    def put(self, gen: int, key: Hashable, part: Columns) -> None:
        size = sum(a.nbytes for a in part)
        with self._lock:
            if gen != self._gen or self._busy or size > self.max_bytes // 2:
                return
            old = self._entries.pop((gen, key), None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[(gen, key)] = (part, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._entries:
                _, (_, n) = self._entries.popitem(last=False)
                self._bytes -= n

    def _bump(self) -> None:
        self._gen += 1
        self._entries.clear()
        self._bytes = 0

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Around any change of a day table or stage: nothing is served or stored meanwhile."""
        with self._lock:
            self._bump()
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._bump()

    def clear(self) -> None:
        with self._lock:
            self._bump()
