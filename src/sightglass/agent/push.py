"""Send spooled payloads to a Sightglass server: remote-write for samples, JSON for the catalog.

The sender drains the spool oldest first. A 2xx deletes the file. A 400/413/415 means the server
will never take this payload (it says why): the file is dropped and counted as rejected, so one bad
payload cannot block the queue. Anything else (connection refused, timeouts, 429, 5xx) leaves the
file in place and backs off exponentially up to ``max_backoff_s``; the next try starts again from the
oldest file, so order is kept and nothing is lost while the server is down.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sightglass.agent.spool import Spool, SpoolItem

log = logging.getLogger("sightglass.agent")

REMOTE_WRITE_PATH = "/api/v1/write"
CATALOG_PATH = "/api/v1/agent/catalog"
_RW_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "sightglass-agent",
}
_CAT_HEADERS = {
    "Content-Type": "application/json",
    "Content-Encoding": "gzip",
    "User-Agent": "sightglass-agent",
}
_PERMANENT = {400, 404, 405, 413, 415, 422}

Transport = Callable[[str, bytes, Mapping[str, str]], tuple[int, str]]
"""``(url, body, headers) -> (status, response text)``; raises OSError when there is no answer."""


class HttpTransport:
    """POST over one kept-alive ``http.client`` connection (stdlib: the agent stays small)."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._where: tuple[str, str, int] | None = None

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        u = urllib.parse.urlsplit(url)
        where = (u.scheme, u.hostname or "localhost", u.port or (443 if u.scheme == "https" else 80))
        if self._conn is None or self._where != where:
            self.close()
            cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
            self._conn, self._where = cls(where[1], where[2], timeout=self.timeout_s), where
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        try:
            self._conn.request("POST", path, body=body, headers={**headers, "Content-Length": str(len(body))})
            r = self._conn.getresponse()
            text = r.read().decode(errors="replace")
            return r.status, text
        except (OSError, http.client.HTTPException) as e:
            self.close()  # the next try opens a fresh connection
            raise OSError(f"{type(e).__name__}: {e or 'no answer'}") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass(slots=True)
class PushStats:
    sent_files: int = 0
    sent_samples: int = 0
    failures: int = 0
    rejected_files: int = 0
    last_error: str = ""
    last_error_ts: float = 0.0
    last_success_ts: float = 0.0
    by_status: dict[str, int] = field(default_factory=dict)


class Pusher:
    """Drains a :class:`Spool` to ``server`` in a background thread (or step by step in tests)."""

    def __init__(
        self,
        spool: Spool,
        server: str,
        *,
        timeout_s: float = 10.0,
        min_backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
        transport: Transport | None = None,
    ) -> None:
        self.spool = spool
        self.server = server.rstrip("/")
        self.transport: Transport = transport if transport is not None else HttpTransport(timeout_s)
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = PushStats()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ one step
    def send_one(self, item: SpoolItem) -> bool:
        """Try one file; True when it left the spool (sent or rejected), False to retry later."""
        body = self.spool.read(item)
        if body is None:
            return True
        if item.kind == "rw":
            url, headers = self.server + REMOTE_WRITE_PATH, _RW_HEADERS
        else:
            url, headers = self.server + CATALOG_PATH, _CAT_HEADERS
        try:
            status, text = self.transport(url, body, headers)
        except OSError as e:
            self._failed(f"{e} ({url})")
            return False
        key = str(status)
        self.stats.by_status[key] = self.stats.by_status.get(key, 0) + 1
        if 200 <= status < 300:
            self.spool.remove(item)
            self.stats.sent_files += 1
            self.stats.sent_samples += item.samples
            self.stats.last_success_ts = time.time()
            return True
        reason = text.strip()[:300]
        if status in _PERMANENT:
            log.warning(
                "server rejected %s (%d samples) with %d: %s",
                item.path.name,
                item.samples,
                status,
                reason,
            )
            self.spool.remove(item, rejected=True)
            self.stats.rejected_files += 1
            self.stats.last_error = f"HTTP {status} from {url}: {reason}"
            self.stats.last_error_ts = time.time()
            return True
        self._failed(f"HTTP {status} from {url}: {reason}")
        return False

    def drain(self, max_files: int | None = None) -> int:
        """Send files oldest first until the spool is empty or a send fails; returns files sent."""
        n = 0
        while max_files is None or n < max_files:
            items = self.spool.oldest(1)
            if not items or not self.send_one(items[0]):
                break
            n += 1
        return n

    def _failed(self, why: str) -> None:
        if self.stats.last_error != why:
            log.warning("push failed, will retry: %s", why)
        self.stats.failures += 1
        self.stats.last_error = why
        self.stats.last_error_ts = time.time()

    # ------------------------------------------------------------------ background thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sightglass-agent-push", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Stop the thread after one last attempt to send what is spooled (bounded by the timeout)."""
        deadline = time.monotonic() + flush_timeout_s
        while len(self.spool) and time.monotonic() < deadline and self._thread and self._thread.is_alive():
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=flush_timeout_s + 1)
        if isinstance(self.transport, HttpTransport):
            self.transport.close()

    def _run(self) -> None:
        backoff = self.min_backoff_s
        while not self._stop.is_set():
            try:
                self.drain()
            except Exception as e:  # never let the sender die: log, back off, try again
                log.exception("push loop error")
                self._failed(f"{type(e).__name__}: {e}")
            if len(self.spool) and not self._stop.is_set():
                self._stop.wait(backoff)  # the server is down or slow: wait, then retry the oldest
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff = self.min_backoff_s
            self._wake.wait(1.0)
            self._wake.clear()
