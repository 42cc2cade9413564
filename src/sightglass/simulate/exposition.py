"""Metric families, label interning and the text formats the simulator writes.

A tick of the simulator is a :class:`Frame`: for each family, an array of series ids (into a
:class:`LabelTable`) and an array of values (``(n,)``, or ``(n, buckets + 2)`` for histograms:
cumulative bucket counts, then count, then sum). Absence is expressed by leaving a series out, never
by a zero — a GPU that fell off the bus stops reporting, as NVML does.

Two writers: Prometheus text 0.0.4 for the live exporters (no timestamps), and OpenMetrics with
timestamps for fast mode (``promtool tsdb create-blocks-from openmetrics`` input): families are not
interleaved and within a family each series is contiguous with ascending timestamps, as the
OpenMetrics grouping rules require. Counters whose exporter name lacks ``_total`` (dcgm-exporter's)
are typed ``unknown`` in OpenMetrics so their names stay exactly the exporter's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sightglass.model import MetricMetadata, MetricType, SampleBatch, SeriesKey

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: the exporter's exact name, type and help; how to format its values."""

    name: str  # the sample name (``vllm:prompt_tokens_total``, ``DCGM_FI_DEV_GPU_TEMP``)
    type: str  # gauge | counter | histogram (the exporter's TYPE)
    help: str
    decimals: int | None = 0  # None = full float precision, 0 = integer
    buckets: tuple[float, ...] = ()

    @property
    def width(self) -> int:
        return len(self.buckets) + 2 if self.type == "histogram" else 1

    def om_header(self) -> str:
        if self.type == "counter" and self.name.endswith("_total"):
            fam, typ = self.name[: -len("_total")], "counter"
        elif self.type == "counter":
            fam, typ = self.name, "unknown"
        else:
            fam, typ = self.name, self.type
        return f"# TYPE {fam} {typ}\n# HELP {fam} {_escape_help(self.help)}\n"

    def prom_header(self) -> str:
        return f"# HELP {self.name} {_escape_help(self.help)}\n# TYPE {self.name} {self.type}\n"

    def metadata(self) -> MetricMetadata:
        return MetricMetadata(self.name, MetricType(self.type), self.help)


def _escape_help(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n")


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _le(b: float) -> str:
    return repr(float(b))


class LabelTable:
    """Interned label sets. Each belongs to a scrape target ``(job, instance)``."""

    def __init__(self) -> None:
        self._ids: dict[tuple[Pairs, int], int] = {}
        self.pairs: list[Pairs] = []
        self.text: list[str] = []
        self.target: list[int] = []
        self.targets: list[tuple[str, str]] = []
        self._target_ids: dict[tuple[str, str], int] = {}

    def target_id(self, job: str, instance: str) -> int:
        key = (job, instance)
        t = self._target_ids.get(key)
        if t is None:
            t = self._target_ids[key] = len(self.targets)
            self.targets.append(key)
        return t

    def intern(self, labels: Iterable[tuple[str, str]], target: int) -> int:
        pairs = tuple((k, v) for k, v in labels if v != "")
        key = (pairs, target)
        i = self._ids.get(key)
        if i is None:
            i = self._ids[key] = len(self.pairs)
            self.pairs.append(pairs)
            self.text.append(",".join(f'{k}="{_escape(v)}"' for k, v in pairs))
            self.target.append(target)
        return i

    def intern_many(self, rows: Iterable[Iterable[tuple[str, str]]], target: Iterable[int]) -> np.ndarray:
        return np.array([self.intern(r, t) for r, t in zip(rows, target, strict=True)], dtype=np.int64)

    def full_text(self, i: int) -> str:
        """Labels plus the ``instance`` and ``job`` a scrape of the target would add."""
        job, inst = self.targets[self.target[i]]
        extra = f'instance="{inst}",job="{job}"'
        return f"{self.text[i]},{extra}" if self.text[i] else extra

    def full_pairs(self, i: int) -> Pairs:
        job, inst = self.targets[self.target[i]]
        return (*self.pairs[i], ("instance", inst), ("job", job))


@dataclass(slots=True)
class Frame:
    """All families' samples of one tick."""

    ts_ms: int
    parts: list[tuple[Family, np.ndarray, np.ndarray]] = field(default_factory=list)

    def add(self, fam: Family, ids: np.ndarray, values: np.ndarray) -> None:
        if len(ids):
            # copy: the simulator keeps mutating its counters in place
            self.parts.append((fam, np.array(ids, dtype=np.int64), np.array(values, dtype=np.float64)))

    def n_samples(self) -> int:
        return sum(len(ids) * fam.width for fam, ids, _ in self.parts)


def _fmt_values(fam: Family, vals: np.ndarray) -> list[str]:
    if fam.decimals == 0:
        return [str(v) for v in np.rint(vals).astype(np.int64).tolist()]
    if fam.decimals is not None:
        vals = np.round(vals, fam.decimals)
    return [repr(v) for v in vals.tolist()]


def render_prometheus(frame: Frame, labels: LabelTable, target: int | None = None) -> str:
    """Prometheus text 0.0.4 of one frame (one target's series, or all)."""
    out: list[str] = []
    seen: set[str] = set()
    for fam, ids, vals in frame.parts:
        sel = (
            np.arange(len(ids))
            if target is None
            else np.flatnonzero(np.asarray(labels.target)[ids] == target)
        )
        if not len(sel):
            continue
        if fam.name not in seen:
            out.append(fam.prom_header())
            seen.add(fam.name)
        if fam.type == "histogram":
            for j in sel.tolist():
                t = labels.text[int(ids[j])]
                sep = "," if t else ""
                row = vals[j]
                for b, c in zip(fam.buckets, row[: len(fam.buckets)].tolist(), strict=True):
                    out.append(f'{fam.name}_bucket{{{t}{sep}le="{_le(b)}"}} {int(c)}\n')
                out.append(f'{fam.name}_bucket{{{t}{sep}le="+Inf"}} {int(row[-2])}\n')
                brace = f"{{{t}}}" if t else ""
                out.append(f"{fam.name}_sum{brace} {round(float(row[-1]), 6)!r}\n")
                out.append(f"{fam.name}_count{brace} {int(row[-2])}\n")
            continue
        texts = labels.text
        strs = _fmt_values(fam, vals[sel])
        for j, v in zip(sel.tolist(), strs, strict=True):
            t = texts[int(ids[j])]
            out.append(f"{fam.name}{{{t}}} {v}\n" if t else f"{fam.name} {v}\n")
    return "".join(out)


class Recorder:
    """Collects frames of a fast-mode run, spilling each family to its own file in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.families: dict[str, Family] = {}
        self.order: list[str] = []
        self.ts_ms: list[int] = []
        self.n_samples = 0
        self.n_series = 0  # set by write_openmetrics

    def _path(self, fam: Family) -> Path:
        return self.workdir / f"{self.order.index(fam.name):04d}.bin"

    def add(self, frame: Frame) -> None:
        tick = len(self.ts_ms)
        self.ts_ms.append(frame.ts_ms)
        grouped: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for fam, ids, vals in frame.parts:
            if fam.name not in self.families:
                self.families[fam.name] = fam
                self.order.append(fam.name)
            grouped.setdefault(fam.name, []).append((ids, vals))
            self.n_samples += len(ids) * fam.width
        for name, chunks in grouped.items():
            fam = self.families[name]
            ids = np.concatenate([c[0] for c in chunks]).astype(np.int32)
            vals = np.concatenate([c[1].reshape(len(c[0]), fam.width) for c in chunks]).astype(np.float64)
            with self._path(fam).open("ab") as f:
                f.write(struct.pack("<ii", tick, len(ids)))
                f.write(ids.tobytes())
                f.write(vals.tobytes())

    def read(self, fam: Family) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All samples of a family sorted series-major: ``(ids, ticks, values[n, width])``."""
        data = self._path(fam).read_bytes()
        pos, ids_l, ticks_l, vals_l = 0, [], [], []
        w = fam.width
        while pos < len(data):
            tick, n = struct.unpack_from("<ii", data, pos)
            pos += 8
            ids_l.append(np.frombuffer(data, dtype=np.int32, count=n, offset=pos))
            pos += 4 * n
            vals_l.append(np.frombuffer(data, dtype=np.float64, count=n * w, offset=pos).reshape(n, w))
            pos += 8 * n * w
            ticks_l.append(np.full(n, tick, dtype=np.int32))
        ids = np.concatenate(ids_l)
        ticks = np.concatenate(ticks_l)
        vals = np.concatenate(vals_l)
        order = np.argsort(ids, kind="stable")
        return ids[order], ticks[order], vals[order]

    def iter_families(self) -> Iterator[Family]:
        for name in self.order:
            yield self.families[name]


def write_openmetrics(rec: Recorder, labels: LabelTable, out: BinaryIO) -> int:
    """Write everything recorded as OpenMetrics text with timestamps (seconds); returns samples."""
    ts_str = [_ts(t) for t in rec.ts_ms]
    total = 0
    for fam in rec.iter_families():
        ids, ticks, vals = rec.read(fam)
        if not len(ids):
            continue
        out.write(fam.om_header().encode())
        bounds = np.flatnonzero(np.diff(ids)) + 1
        starts = np.concatenate([[0], bounds]).tolist()
        ends = [*bounds.tolist(), len(ids)]
        rec.n_series += len(starts)
        tick_l = ticks.tolist()
        for s, e in zip(starts, ends, strict=True):
            sid = int(ids[s])
            lab = labels.full_text(sid)
            tss = [ts_str[t] for t in tick_l[s:e]]
            if fam.type == "histogram":
                out.write(_histogram_lines(fam, lab, vals[s:e], tss).encode())
            else:
                pre = f"{fam.name}{{{lab}}} "
                strs = _fmt_values(fam, vals[s:e, 0])
                out.write("".join([f"{pre}{v} {t}\n" for v, t in zip(strs, tss, strict=True)]).encode())
            total += (e - s) * fam.width
    out.write(b"# EOF\n")
    return total


def _histogram_lines(fam: Family, lab: str, rows: np.ndarray, tss: list[str]) -> str:
    pres = [f'{fam.name}_bucket{{{lab},le="{_le(b)}"}} ' for b in fam.buckets]
    pres.append(f'{fam.name}_bucket{{{lab},le="+Inf"}} ')
    cnt_pre = f"{fam.name}_count{{{lab}}} "
    sum_pre = f"{fam.name}_sum{{{lab}}} "
    counts = np.rint(rows[:, :-1]).astype(np.int64).tolist()
    sums = np.round(rows[:, -1], 6).tolist()
    parts: list[str] = []
    for c, sm, t in zip(counts, sums, tss, strict=True):
        for p, v in zip(pres, c, strict=True):
            parts.append(f"{p}{v} {t}\n")
        parts.append(f"{cnt_pre}{c[-1]} {t}\n")
        parts.append(f"{sum_pre}{sm!r} {t}\n")
    return "".join(parts)


def _ts(ms: int) -> str:
    return str(ms // 1000) if ms % 1000 == 0 else f"{ms / 1000:.3f}"


def recorder_batches(rec: Recorder, labels: LabelTable) -> Iterator[SampleBatch]:
    """The recorded samples as :class:`SampleBatch` es, one per family (for direct store ingest)."""
    ts = np.asarray(rec.ts_ms, dtype=np.int64)
    for fam in rec.iter_families():
        ids, ticks, vals = rec.read(fam)
        if not len(ids):
            continue
        uniq, inv = np.unique(ids, return_inverse=True)
        meta = {fam.name: fam.metadata()}
        if fam.type != "histogram":
            series = [SeriesKey.of(fam.name, labels.full_pairs(int(i))) for i in uniq]
            yield SampleBatch(
                series=series,
                series_index=inv.astype(np.int64),
                ts_ms=ts[ticks],
                values=vals[:, 0].copy(),
                metadata=meta,
            )
            continue
        nb = len(fam.buckets)
        series = []
        for i in uniq.tolist():
            base = labels.full_pairs(i)
            for b in fam.buckets:
                series.append(SeriesKey.of(f"{fam.name}_bucket", (*base, ("le", _le(b)))))
            series.append(SeriesKey.of(f"{fam.name}_bucket", (*base, ("le", "+Inf"))))
            series.append(SeriesKey.of(f"{fam.name}_count", base))
            series.append(SeriesKey.of(f"{fam.name}_sum", base))
        w = nb + 3
        idx = (inv[:, None] * w + np.arange(w)[None, :]).ravel()
        full = np.concatenate([vals[:, :-1], vals[:, -2:-1], vals[:, -1:]], axis=1)
        yield SampleBatch(
            series=series,
            series_index=idx.astype(np.int64),
            ts_ms=np.repeat(ts[ticks], w),
            values=full.ravel(),
            metadata=meta,
        )
