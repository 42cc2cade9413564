"""Values the evaluator passes around, evaluated at every step of a query at once.

An instant vector is a label set per series and two ``(series, steps)`` arrays: the values and a mask
of where the series has a sample. A range vector keeps each series' raw samples packed in one array
(``off`` marks where each series starts) with a window per step; functions over it slice the windows
with ``searchsorted`` instead of re-reading the store per step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sightglass.promql.result import QueryError

LabelSet = dict[str, str]
NAME = "__name__"


def label_key(labels: LabelSet) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def drop_name(labels: LabelSet) -> LabelSet:
    if NAME not in labels:
        return labels
    out = dict(labels)  # a C-level copy, then one deletion: the other labels keep their order
    del out[NAME]
    return out


@dataclass(slots=True)
class Scalar:
    """One value per step."""

    v: np.ndarray


@dataclass(slots=True)
class String:
    s: str


@dataclass(slots=True)
class Vector:
    """An instant vector over all steps: ``v``/``m`` have shape ``(len(labels), steps)``.

    ``sample_ts`` holds the sample timestamps (ms) when the vector comes straight from a selector,
    for ``timestamp()``.
    """

    labels: list[LabelSet]
    v: np.ndarray
    m: np.ndarray
    sample_ts: np.ndarray | None = None

    @classmethod
    def empty(cls, steps: int) -> Vector:
        return cls([], np.empty((0, steps)), np.zeros((0, steps), dtype=bool))

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, rows: np.ndarray | list[int]) -> Vector:
        rows = np.asarray(rows, dtype=np.int64)
        ts = self.sample_ts[rows] if self.sample_ts is not None else None
        return Vector([self.labels[i] for i in rows], self.v[rows], self.m[rows], ts)

    def compact(self) -> Vector:
        """Drop series that have no sample at any step."""
        keep = np.flatnonzero(self.m.any(axis=1))
        return self if len(keep) == len(self.labels) else self.select(keep)


def merge_same_labels(vec: Vector) -> Vector:
    """Merge rows with equal label sets; an overlap at some step is Prometheus' duplicate-labelset error."""
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i, lab in enumerate(vec.labels):
        groups.setdefault(label_key(lab), []).append(i)
    if len(groups) == len(vec.labels):
        return vec
    labels, vs, ms = [], [], []
    for rows in groups.values():
        if len(rows) == 1:
            labels.append(vec.labels[rows[0]])
            vs.append(vec.v[rows[0]])
            ms.append(vec.m[rows[0]])
            continue
        sub_m = vec.m[rows]
        if (sub_m.sum(axis=0) > 1).any():
            raise QueryError("vector cannot contain metrics with the same labelset", "execution")
        pick = np.argmax(sub_m, axis=0)
        labels.append(vec.labels[rows[0]])
        vs.append(vec.v[rows][pick, np.arange(vec.v.shape[1])])
        ms.append(sub_m.any(axis=0))
    steps = vec.v.shape[1]
    if not labels:
        return Vector.empty(steps)
    return Vector(
        labels, np.vstack(vs).reshape(len(labels), steps), np.vstack(ms).reshape(len(labels), steps)
    )


def concat_vectors(parts: Iterable[Vector], steps: int) -> Vector:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Vector.empty(steps)
    return Vector(
        [lab for p in parts for lab in p.labels],
        np.concatenate([p.v for p in parts]),
        np.concatenate([p.m for p in parts]),
    )


LOOP_MIN_STEPS = 16  # searches with at least this many bounds go series by series
LOOP_MAX_SERIES = 2_000  # ... and so do searches over at most this many series
KEY_MAX_PER_SERIES = 1_000  # ... unless they have fewer samples than this per series (see search)


@dataclass(slots=True)
class Packed:
    """Samples of many series in one array: series ``i`` is ``t[off[i]:off[i+1]]``."""

    labels: list[LabelSet]
    off: np.ndarray
    t: np.ndarray
    v: np.ndarray
    _key: np.ndarray | None = None  # sid * span + (t - t0), built once for all searches
    _t0: int = 0
    _span: int = 0
    _groups: tuple[np.ndarray, np.ndarray] | None = None  # time_groups(), once _grouped
    _grouped: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    def time_groups(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Series with the very same timestamps (the series of one scrape: a target's metrics all
        carry the scrape's time), whose windows lie at the same positions: ``(reps, of)``, one
        series of each such group and, per series, its group's index in ``reps``. None when no two
        series share their times."""
        if not self._grouped:
            self._groups, self._grouped = self._find_groups(), True
        return self._groups

    def _find_groups(self) -> tuple[np.ndarray, np.ndarray] | None:
        n = len(self.labels)
        if n < 2 or not len(self.t):
            return None
        off, t = self.off, self.t
        lens = np.diff(off)
        # candidates: series with the same length and first, middle and last time ...
        finger = np.stack(
            [lens, t.take(off[:-1], mode="clip"), t.take(off[:-1] + lens // 2, mode="clip"), t.take(off[1:] - 1, mode="clip")],
            axis=1,
        )
        finger[lens == 0, 1:] = 0
        _, first, inverse = np.unique(finger, axis=0, return_index=True, return_inverse=True)
        rep_of = first[inverse.ravel()]
        if len(first) == n:
            return None
        # ... then all their times compared with their candidate group's first series
        cand = np.flatnonzero(rep_of != np.arange(n))
        same = np.zeros(n, dtype=bool)
        if bool((lens == lens[0]).all()):  # equally long series: rows of a (series, samples) view
            rows = t.reshape(n, -1)
            for a in range(0, len(cand), 64):
                c = cand[a : a + 64]
                r = rep_of[c]
                # a run of candidates of one group (the common case) compares views, not copies
                mine = rows[c[0] : c[-1] + 1] if int(c[-1] - c[0]) == len(c) - 1 else rows[c]
                theirs = rows[r[0]] if bool((r == r[0]).all()) else rows[r]
                same[c] = (mine == theirs).all(axis=1)
        else:
            starts = off.tolist()
            for i, r in zip(cand.tolist(), rep_of[cand].tolist(), strict=True):
                same[i] = np.array_equal(t[starts[i] : starts[i + 1]], t[starts[r] : starts[r + 1]])
        if not same.any():
            return None
        rep_of = np.where(same, rep_of, np.arange(n))
        reps = np.flatnonzero(rep_of == np.arange(n))
        return reps, np.searchsorted(reps, rep_of)

    def sid(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.labels), dtype=np.int64), np.diff(self.off))

    def search(self, bounds: np.ndarray, side: str) -> np.ndarray:
        """For each series and each bound, the absolute index ``searchsorted`` gives: ``(series, steps)``."""
        n = len(self.labels)
        if n == 0:
            return np.zeros((0, len(bounds)), dtype=np.int64)
        short = len(self.t) <= KEY_MAX_PER_SERIES * n
        if self._key is None and (len(bounds) >= LOOP_MIN_STEPS or (n <= LOOP_MAX_SERIES and not short)):
            # one search per series: each series' times are small and cache-resident, and the
            # bounds are sorted, so this beats one search over a composite key for every step count
            # but the smallest. With a few bounds (an instant query) the composite key wins when
            # there are very many series, or when the series are short (building the key costs a
            # few ns a sample, a search call a few us: top-10 of 1,000 GPUs over 1 h, 361k samples,
            # searched in 0.5 ms instead of 7.7 ms)
            off = self.off.tolist()
            t = self.t
            groups = self.time_groups() if n > 1 else None
            if groups is not None:  # one search per group of series with the same times
                reps, of = groups
                sub = np.empty((len(reps), len(bounds)), dtype=np.int64)
                for j, i in enumerate(reps.tolist()):
                    sub[j] = np.searchsorted(t[off[i] : off[i + 1]], bounds, side=side)  # type: ignore[call-overload]
                out = sub[of]
                out += self.off[:-1, None]
                return out
            out = np.empty((n, len(bounds)), dtype=np.int64)
            for i in range(n):
                a = off[i]
                out[i] = np.searchsorted(t[a : off[i + 1]], bounds, side=side)  # type: ignore[call-overload]
                out[i] += a
            return out
        if self._key is None:
            t0 = int(self.t.min()) if len(self.t) else 0
            span = (int(self.t.max()) - t0 + 2) if len(self.t) else 2
            if span * (n + 1) >= 2**62:  # cannot build one composite key; go series by series
                out = np.empty((n, len(bounds)), dtype=np.int64)
                for i in range(n):
                    a, b = self.off[i], self.off[i + 1]
                    out[i] = a + np.searchsorted(self.t[a:b], bounds, side=side)  # type: ignore[call-overload]
                return out
            key = self.sid()
            key *= span
            key += self.t
            key -= t0
            self._key, self._t0, self._span = key, t0, span
        # a bound outside the data is clipped to just below / above every sample of its series
        rel = np.clip(bounds.astype(np.int64) - self._t0, -1, self._span - 1)
        q = np.arange(n, dtype=np.int64)[:, None] * self._span + rel[None, :]
        return np.searchsorted(self._key, q, side=side)  # type: ignore[call-overload]


@dataclass(slots=True)
class RangeVector:
    """A range vector over all steps: step ``s`` covers samples with ``end[s] - range_ms <= t <= end[s]``."""

    data: Packed
    range_ms: int
    end: np.ndarray  # (steps,) window ends (evaluation time - offset, or the @ time - offset)
    eval_t: np.ndarray  # (steps,) the evaluation time the window belongs to (predict_linear's origin)
    full_labels: bool = False  # functions keep every series and its full labels (no name drop, no merge)

    def windows(self) -> tuple[np.ndarray, np.ndarray]:
        """``lo``/``hi`` absolute sample indices per (series, step): the window is ``[lo, hi)``."""
        hi = self.data.search(self.end, "right")
        lo = self._lo_from_hi(hi)
        if lo is None:
            lo = self.data.search(self.end - self.range_ms, "left")
        return lo, hi

    def _lo_from_hi(self, hi: np.ndarray) -> np.ndarray | None:
        """Window starts from the ends already found, when the range is ``k`` whole steps of an even
        grid (``x[5m]`` at a 1m step): step ``s`` starts where step ``s - k`` ends, one sample earlier
        if a sample lies exactly on that edge (a window includes both ends; a series' timestamps are
        unique). Only the first ``k`` steps are searched. None when the grid is not like that."""
        end = self.end
        steps = len(end)
        if steps < LOOP_MIN_STEPS or not len(self.data.t):
            return None
        step = int(end[1] - end[0])
        if step <= 0 or self.range_ms % step or not (np.diff(end) == step).all():
            return None
        k = self.range_ms // step
        if k >= steps:
            return None
        lo = np.empty_like(hi)
        lo[:, :k] = self.data.search(end[:k] - self.range_ms, "left")
        prev = hi[:, :-k]
        groups = self.data.time_groups() if self.data._key is None else None
        if groups is not None:  # a group of series with the same times has the same edges
            reps, of = groups
            rp = hi[reps, :-k]
            first = self.data.off[reps, None]
            on_edge = ((rp > first) & (self.data.t.take(rp - 1, mode="clip") == end[None, :-k]))[of]
        else:
            first = self.data.off[:-1, None]
            on_edge = (prev > first) & (self.data.t.take(prev - 1, mode="clip") == end[None, :-k])
        np.subtract(prev, on_edge, out=lo[:, k:])
        return lo
