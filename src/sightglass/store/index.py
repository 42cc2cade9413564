"""An in-memory inverted index from labels to series ids, for label-matcher selection.

Each label name (``__name__`` included) owns a column of value codes indexed by series id (0 means
"label absent", which Prometheus treats as the empty string). A matcher is evaluated once per
*distinct* value of its label, then as one vectorised ``isin`` over the column, so selecting among
500k series costs milliseconds and the index costs 4 bytes per series per label name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from sightglass.model import Matcher, SeriesKey


class _Column:
    __slots__ = ("codes", "value_code", "values")

    def __init__(self, capacity: int) -> None:
        self.values: list[str] = [""]  # code 0 = absent / empty
        self.value_code: dict[str, int] = {"": 0}
        self.codes = np.zeros(capacity, dtype=np.int32)

    def code_for(self, value: str) -> int:
        c = self.value_code.get(value)
        if c is None:
            c = self.value_code[value] = len(self.values)
            self.values.append(value)
        return c


class SeriesIndex:
    """Series id → key, key → id, and label postings. Not thread-safe for writers; readers copy.

    Ids are dense small integers assigned by the store. ``select`` returns ids as a sorted int64 array.
    """

    def __init__(self) -> None:
        self._capacity = 1024
        self._n = 0  # one past the highest id
        self._present = np.zeros(self._capacity, dtype=bool)
        self._cols: dict[str, _Column] = {}
        self.keys: dict[int, SeriesKey] = {}
        self.ids: dict[SeriesKey, int] = {}
        # bumped whenever a key's id may change (a removal, a key added again): id memos keyed on
        # the series of a batch (see DuckDBStore) are valid only for the generation they were made in
        self.generation = 0

    def __len__(self) -> int:
        return len(self.ids)

    def _grow(self, need: int) -> None:
        if need <= self._capacity:
            return
        cap = self._capacity
        while cap < need:
            cap *= 2
        self._present = np.concatenate([self._present, np.zeros(cap - self._capacity, dtype=bool)])
        for col in self._cols.values():
            col.codes = np.concatenate([col.codes, np.zeros(cap - self._capacity, dtype=np.int32)])
        self._capacity = cap

    def add(self, sid: int, key: SeriesKey) -> None:
        self._grow(sid + 1)
        self._n = max(self._n, sid + 1)
        self._present[sid] = True
        if key in self.ids or sid in self.keys:
            self.generation += 1
        self.keys[sid] = key
        self.ids[key] = sid
        name_col = self._col("__name__")
        name_col.codes[sid] = name_col.code_for(key.metric)
        for name, value in key.labels:
            col = self._col(name)
            col.codes[sid] = col.code_for(value)

    def remove(self, sids: Iterable[int]) -> None:
        self.generation += 1
        for sid in sids:
            key = self.keys.pop(sid, None)
            if key is None:
                continue
            self.ids.pop(key, None)
            self._present[sid] = False
            for col in self._cols.values():
                col.codes[sid] = 0

    def _col(self, name: str) -> _Column:
        col = self._cols.get(name)
        if col is None:
            col = self._cols[name] = _Column(self._capacity)
        return col

    def select(self, matchers: Sequence[Matcher]) -> np.ndarray:
        """Ids of the series matching every matcher (sorted ascending)."""
        mask = self._present[: self._n].copy()
        for m in matchers:
            col = self._cols.get(m.name)
            if col is None:
                # label never seen: every series has it as ""
                if not m.matches(""):
                    return np.empty(0, dtype=np.int64)
                continue
            good = [c for c, v in enumerate(col.values) if m.matches(v)]
            if len(good) == len(col.values):
                continue
            if not good:
                return np.empty(0, dtype=np.int64)
            codes = col.codes[: self._n]
            if len(good) == 1:
                mask &= codes == good[0]
            else:
                mask &= np.isin(codes, np.asarray(good, dtype=np.int32))
            if not mask.any():
                return np.empty(0, dtype=np.int64)
        return np.flatnonzero(mask).astype(np.int64)

    def label_codes(self, name: str, sids: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """The code of label ``name``'s value for each of ``sids`` (0: absent or empty) and the values
        by code, so that a caller tests each distinct value once instead of each series' key. The
        list is the index's own (append-only): callers do not change it."""
        col = self._cols.get(name)
        if col is None:
            return np.zeros(len(sids), dtype=np.int32), [""]
        codes = col.codes
        sids = np.asarray(sids, dtype=np.int64)
        if len(sids) and (sids.min() < 0 or sids.max() >= len(codes)):
            raise IndexError("series id out of range")
        return codes[sids], col.values

    def label_names(self, sids: np.ndarray | None = None) -> list[str]:
        names = []
        for name, col in self._cols.items():
            codes = col.codes[: self._n] if sids is None else col.codes[sids]
            if sids is None:
                codes = codes[self._present[: self._n]]
            if codes.size and codes.any():
                names.append(name)
        return sorted(names)

    def label_values(self, name: str, sids: np.ndarray | None = None) -> list[str]:
        col = self._cols.get(name)
        if col is None:
            return []
        codes = col.codes[: self._n][self._present[: self._n]] if sids is None else col.codes[sids]
        used = np.unique(codes)
        return sorted(col.values[int(c)] for c in used if c != 0)
