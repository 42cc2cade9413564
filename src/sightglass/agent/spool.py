"""A bounded on-disk buffer: every payload is a file until the server has acknowledged it.

Each collection cycle becomes one file ``<seq>-<samples>.<kind>`` (``rw``: a snappy remote-write
body; ``cat``: a JSON catalog payload), written to a temporary name, fsynced and renamed, so a crash
leaves either the whole file or none. The sender reads files oldest first and deletes each only after
a 2xx. When the spool would pass ``max_bytes``, the oldest files are dropped and counted
(``dropped_samples``, kept in ``state.json`` across restarts), so a long outage costs the oldest data,
never the agent's memory or the node's disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

_NAME_RE = re.compile(r"^(\d{20})-(\d+)\.(rw|cat)$")
STATE_FILE = "state.json"


@dataclass(frozen=True, slots=True)
class SpoolItem:
    path: Path
    seq: int
    samples: int
    kind: str
    size: int


class Spool:
    """Append payloads, list them oldest first, drop the oldest past ``max_bytes``. Thread-safe."""

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("spool max_bytes must be positive")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: list[SpoolItem] = []
        self.dropped_samples = 0
        self.dropped_files = 0
        self.rejected_samples = 0
        self._last_seq = 0
        self._load()

    def _load(self) -> None:
        for p in self.dir.iterdir():
            if p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)  # a write that never completed
                continue
            m = _NAME_RE.match(p.name)
            if m:
                self._items.append(
                    SpoolItem(p, int(m.group(1)), int(m.group(2)), m.group(3), p.stat().st_size)
                )
        self._items.sort(key=lambda i: i.seq)
        self._last_seq = self._items[-1].seq if self._items else 0
        try:
            st = json.loads((self.dir / STATE_FILE).read_text())
            self.dropped_samples = int(st.get("dropped_samples", 0))
            self.dropped_files = int(st.get("dropped_files", 0))
            self.rejected_samples = int(st.get("rejected_samples", 0))
        except (OSError, ValueError, AttributeError):
            pass

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return sum(i.size for i in self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def pending_samples(self) -> int:
        with self._lock:
            return sum(i.samples for i in self._items if i.kind == "rw")

    def append(self, payload: bytes, kind: str, samples: int = 0) -> SpoolItem | None:
        """Store one payload durably; returns None when it alone is larger than the whole spool."""
        if kind not in ("rw", "cat"):
            raise ValueError(f"unknown spool kind {kind!r}")
        if len(payload) > self.max_bytes:
            with self._lock:
                self.dropped_samples += samples
                self.dropped_files += 1
                self._save_state()
            return None
        with self._lock:
            self._last_seq += 1
            seq = self._last_seq
            path = self.dir / f"{seq:020d}-{samples}.{kind}"
            tmp = path.with_name(path.name + ".tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except OSError:
                tmp.unlink(missing_ok=True)
                self._last_seq -= 1
                raise
            item = SpoolItem(path, seq, samples, kind, len(payload))
            self._items.append(item)
            total = sum(i.size for i in self._items)
            changed = False
            while total > self.max_bytes and len(self._items) > 1:
                old = self._items.pop(0)
                old.path.unlink(missing_ok=True)
                total -= old.size
                self.dropped_samples += old.samples
                self.dropped_files += 1
                changed = True
            if changed:
                self._save_state()
            return item

    def oldest(self, n: int = 1) -> list[SpoolItem]:
        with self._lock:
            return list(self._items[:n])

    def remove(self, item: SpoolItem, *, rejected: bool = False) -> None:
        with self._lock:
            with contextlib.suppress(ValueError):
                self._items.remove(item)
            item.path.unlink(missing_ok=True)
            if rejected:
                self.rejected_samples += item.samples
                self._save_state()

    def read(self, item: SpoolItem) -> bytes | None:
        try:
            return item.path.read_bytes()
        except FileNotFoundError:  # dropped by the size cap meanwhile
            return None

    def _save_state(self) -> None:
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "dropped_samples": self.dropped_samples,
                    "dropped_files": self.dropped_files,
                    "rejected_samples": self.rejected_samples,
                }
            )
        )
        os.replace(tmp, self.dir / STATE_FILE)
