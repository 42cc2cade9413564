"""Back-fill: stream OpenMetrics / Prometheus text files with timestamps into the store.

The files are the ones ``promtool tsdb create-blocks-from openmetrics`` reads (OpenMetrics, timestamps
in seconds, ``# EOF``); Prometheus text with millisecond timestamps is accepted too (``--format``).
Files are read in chunks of whole lines, so a file of any size streams in bounded memory; ``.gz``
files are decompressed on the fly.
"""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sightglass.ingest.prometheus_text import ParseError, TextParser
from sightglass.store.duckdb import DuckDBStore

CHUNK_BYTES = 8 * 1024 * 1024


class ImportError_(Exception):
    """An import failed; the message names the file and line."""


@dataclass(slots=True)
class ImportStats:
    files: int = 0
    samples: int = 0
    new_series: int = 0
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def _open(path: Path) -> BinaryIO:
    f = path.open("rb")
    head = f.read(2)
    f.seek(0)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


def _chunks(stream: BinaryIO, on_bytes: Callable[[int], None]) -> Iterator[tuple[str, int]]:
    """Yield (text of whole lines, first line number)."""
    carry = b""
    line_no = 1
    while True:
        data = stream.read(CHUNK_BYTES)
        if not data:
            break
        on_bytes(len(data))
        data = carry + data
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
            continue
        block, carry = data[: cut + 1], data[cut + 1 :]
        yield block.decode("utf-8"), line_no
        line_no += block.count(b"\n")
    if carry:
        yield carry.decode("utf-8"), line_no


def detect_openmetrics(path: Path) -> bool:
    """OpenMetrics when the file ends with ``# EOF`` (seconds), else Prometheus text (ms)."""
    with _open(path) as f:
        if isinstance(f, gzip.GzipFile):
            tail = b""
            for block in iter(lambda: f.read(1 << 20), b""):
                tail = (tail + block)[-64:]
        else:
            f.seek(0, io.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64))
            tail = f.read()
    return tail.rstrip().endswith(b"# EOF")


def import_files(
    store: DuckDBStore,
    paths: list[Path],
    *,
    openmetrics: bool | None = None,
    on_bytes: Callable[[int], None] = lambda n: None,
    batch_samples: int = 500_000,
) -> ImportStats:
    """Import every file; samples without timestamps are an error (a back-fill needs them)."""
    stats = ImportStats()
    t0 = time.perf_counter()
    for path in paths:
        if not path.exists():
            raise ImportError_(f"{path}: no such file")
        om = detect_openmetrics(path) if openmetrics is None else openmetrics
        parser = TextParser()
        pending = None
        with _open(path) as stream:
            def counted(n: int) -> None:
                on_bytes(n)
                stats.bytes_read += n

            for text, first_line in _chunks(stream, counted):
                try:
                    res = parser.parse(text, openmetrics=om, default_ts_ms=None, first_line=first_line)
                except ParseError as e:
                    raise ImportError_(f"{path}:{e.line}: {e.reason}") from None
                except UnicodeDecodeError as e:
                    raise ImportError_(f"{path}: not UTF-8 text: {e}") from None
                stats.samples += res.samples
                stats.new_series += res.new_series
                if pending is None:
                    pending = res.batch
                else:
                    pending.extend(res.batch)
                if len(pending) >= batch_samples:
                    store.append(pending)
                    pending = None
        if pending is not None and (len(pending) or pending.metadata):
            store.append(pending)
        stats.files += 1
    store.compact()
    stats.seconds = time.perf_counter() - t0
    return stats
