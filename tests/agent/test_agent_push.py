"""The pusher against a mock transport: 2xx deletes, retryable failures keep order, 4xx rejects."""

from __future__ import annotations

from pathlib import Path

import httpx

from sightglass.agent.push import CATALOG_PATH, REMOTE_WRITE_PATH, Pusher
from sightglass.agent.spool import Spool


def _spool(tmp_path: Path, n: int) -> Spool:
    s = Spool(tmp_path / "spool", 1 << 20)
    for i in range(n):
        s.append(f"body-{i}".encode(), "rw" if i % 2 == 0 else "cat", samples=i + 1)
    return s


def test_sends_oldest_first_to_the_right_paths(tmp_path: Path) -> None:
    got: list[tuple[str, bytes, str]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        got.append((req.url.path, req.content, req.headers.get("content-encoding", "")))
        return httpx.Response(204)

    s = _spool(tmp_path, 4)
    p = Pusher(s, "http://server:9464/", transport=httpx.MockTransport(handler))
    assert p.drain() == 4
    assert [g[0] for g in got] == [REMOTE_WRITE_PATH, CATALOG_PATH, REMOTE_WRITE_PATH, CATALOG_PATH]
    assert [g[1] for g in got] == [b"body-0", b"body-1", b"body-2", b"body-3"]
    assert got[0][2] == "snappy" and got[1][2] == "gzip"
    assert len(s) == 0 and p.stats.sent_samples == 10


def test_outage_keeps_everything_and_resumes_in_order(tmp_path: Path) -> None:
    up = {"ok": False}
    got: list[bytes] = []

    def handler(req: httpx.Request) -> httpx.Response:
        if not up["ok"]:
            raise httpx.ConnectError("connection refused")
        got.append(req.content)
        return httpx.Response(204)

    s = _spool(tmp_path, 3)
    p = Pusher(s, "http://server", transport=httpx.MockTransport(handler))
    assert p.drain() == 0 and len(s) == 3
    assert "ConnectError" in p.stats.last_error and p.stats.failures == 1
    up["ok"] = True
    assert p.drain() == 3
    assert got == [b"body-0", b"body-1", b"body-2"]


def test_503_is_retried_but_400_is_dropped_and_counted(tmp_path: Path) -> None:
    answers = [
        httpx.Response(503, text="store busy"),
        httpx.Response(400, text="bad label name"),
        httpx.Response(204),
    ]

    def handler(req: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else httpx.Response(204)

    s = _spool(tmp_path, 2)
    p = Pusher(s, "http://server", transport=httpx.MockTransport(handler))
    assert p.drain() == 0  # 503: stays
    assert len(s) == 2 and "503" in p.stats.last_error
    assert p.drain() == 2  # 400 drops body-0 (never retried), then body-1 goes
    assert s.rejected_samples == 1 and p.stats.rejected_files == 1
    assert "bad label name" in p.stats.last_error
