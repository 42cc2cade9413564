"""Parse large text pushes in worker processes, so that ingest uses more than one core.

One Python process parses on one core (the GIL); VictoriaMetrics parses on all of them. A body of at
least ``min_bytes`` goes to one of ``workers`` spawned processes, each with its own
:class:`~sightglass.ingest.prometheus_text.TextParser` and series cache. The main process mirrors,
per worker, that parser's series by number, so a request of known series comes back as numbers and
numpy columns (about 20 bytes a sample); only series new to the main process travel as labels. The
write stays in the main process, after the parse: a push is still acknowledged only after its COMMIT.

``SIGHTGLASS_INGEST_WORKERS`` sets the number of worker processes (``auto``: one per core beyond the
first, at most 4). The default is ``0`` (every body parsed in the server process) until a quiet
multi-core run of ``bench/ingest.py`` shows the workers paying for their round trip: on a loaded
2-core box they cost ~40 % more CPU per sample and gained no throughput (docs/ingest.md).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sightglass.ingest.prometheus_text import ParseError, ParseResult, ParserLimits, TextParser
from sightglass.model import SampleBatch, SeriesKey

log = logging.getLogger(__name__)

ENV_WORKERS = "SIGHTGLASS_INGEST_WORKERS"
MIN_BYTES = 256 * 1024  # below this the round trip to a worker costs more than it saves
RETRY_AFTER_S = 60.0  # after a worker failed, parse in-process this long before trying workers again


def default_workers() -> int:
    """Worker processes to use: ``SIGHTGLASS_INGEST_WORKERS`` (a number or ``auto``), else 0."""
    env = os.environ.get(ENV_WORKERS, "").strip().lower()
    if env == "auto":
        return max(0, min(4, (os.cpu_count() or 1) - 1))
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            log.warning("%s=%r is not a number or 'auto'; parsing in the server process", ENV_WORKERS, env)
    return 0


# ---------------------------------------------------------------------- in the worker process
_PARSER: TextParser | None = None


def _init_worker(max_label_value_bytes: int, max_labels: int, max_series_cache: int) -> None:
    global _PARSER
    _PARSER = TextParser(ParserLimits(max_label_value_bytes, max_labels, max_series_cache))


def _parse_in_worker(body: bytes, now_ms: int, known: int) -> tuple[Any, ...]:
    """Parse ``body``; return the columns, series by number, and the series after the first ``known``."""
    parser = _PARSER
    if parser is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("worker not initialised")
    try:
        res = parser.parse(body, openmetrics=False, default_ts_ms=now_ms)
    except ParseError as e:
        return ("error", e.line, e.reason)
    b = res.batch
    new = [(k.metric, k.labels) for k in parser.keys[known:]]
    return (
        "ok", known, new, res.series_numbers, b.series_index, b.ts_ms, b.values, b.metadata,
        res.samples, res.new_series, res.families,
    )  # fmt: skip


# ---------------------------------------------------------------------- in the server
@dataclass
class _Slot:
    executor: ProcessPoolExecutor
    keys: list[SeriesKey] = field(default_factory=list)  # the worker parser's series, by number
    inflight: int = 0
    generation: int = 0


class TextParsePool:
    """Worker processes that parse text bodies (started on the first large body)."""

    def __init__(
        self, limits: ParserLimits, workers: int | None = None, min_bytes: int | None = None
    ) -> None:
        self.limits = limits
        self.workers = default_workers() if workers is None else workers
        self.min_bytes = MIN_BYTES if min_bytes is None else min_bytes
        self._slots: list[_Slot] = []
        self._context = multiprocessing.get_context("spawn")  # never fork a process holding DuckDB
        self._off_until = 0.0

    def wants(self, body: bytes) -> bool:
        return self.workers > 0 and len(body) >= self.min_bytes and time.monotonic() >= self._off_until

    def _executor(self) -> ProcessPoolExecutor:
        lim = self.limits
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=self._context,
            initializer=_init_worker,
            initargs=(lim.max_label_value_bytes, lim.max_labels, lim.max_series_cache),
        )

    def _slot(self) -> _Slot:
        if not self._slots:
            self._slots = [_Slot(self._executor()) for _ in range(self.workers)]
        return min(self._slots, key=lambda s: s.inflight)

    def _restart(self, slot: _Slot) -> None:
        slot.executor.shutdown(wait=False, cancel_futures=True)
        slot.executor = self._executor()
        slot.keys = []
        slot.generation += 1

    async def parse(self, body: bytes, now_ms: int) -> ParseResult | None:
        """Parse in a worker; ``None`` when no worker could (the caller then parses in-process).

        Raises :class:`ParseError` for a malformed body, exactly as the in-process parser does.
        """
        slot = self._slot()
        gen = slot.generation
        slot.inflight += 1
        try:
            out = await asyncio.wrap_future(
                slot.executor.submit(_parse_in_worker, body, now_ms, len(slot.keys))
            )
        except (BrokenProcessPool, OSError, RuntimeError) as e:
            log.warning(
                "text parse worker failed (%s); parsing in-process for %.0f s, then restarting it",
                str(e).strip()[:200],
                RETRY_AFTER_S,
            )
            if slot.generation == gen:
                self._restart(slot)
                self._off_until = time.monotonic() + RETRY_AFTER_S
            return None
        finally:
            slot.inflight -= 1
        if out[0] == "error":
            raise ParseError(out[1], out[2])
        _, base, new, numbers, inverse, ts, values, metadata, samples, new_series, families = out
        table = slot.keys
        if slot.generation != gen or base > len(table):  # from a worker since replaced
            return None
        if base + len(new) > len(table):
            table.extend(SeriesKey(m, labels) for m, labels in new[len(table) - base :])
        series = list(map(table.__getitem__, numbers.tolist()))
        batch = SampleBatch(
            series=series,
            series_index=np.asarray(inverse, dtype=np.int64),
            ts_ms=ts,
            values=values,
            metadata=metadata,
        )
        return ParseResult(
            batch=batch, samples=samples, new_series=new_series, families=families, series_numbers=numbers
        )

    def close(self) -> None:
        for slot in self._slots:
            slot.executor.shutdown(wait=False, cancel_futures=True)
        self._slots = []
