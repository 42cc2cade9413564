"""The pusher against a mock transport: 2xx deletes, retryable failures keep order, 4xx rejects."""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sightglass.agent.push import CATALOG_PATH, REMOTE_WRITE_PATH, HttpTransport, Pusher
from sightglass.agent.spool import Spool


def _spool(tmp_path: Path, n: int) -> Spool:
    s = Spool(tmp_path / "spool", 1 << 20)
    for i in range(n):
        s.append(f"body-{i}".encode(), "rw" if i % 2 == 0 else "cat", samples=i + 1)
    return s


def test_sends_oldest_first_to_the_right_paths(tmp_path: Path) -> None:
    got: list[tuple[str, bytes, str]] = []

    def handler(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        got.append((url.split("9464", 1)[1], body, headers.get("Content-Encoding", "")))
        return 204, ""

    s = _spool(tmp_path, 4)
    p = Pusher(s, "http://server:9464/", transport=handler)
    assert p.drain() == 4
    assert [g[0] for g in got] == [REMOTE_WRITE_PATH, CATALOG_PATH, REMOTE_WRITE_PATH, CATALOG_PATH]
    assert [g[1] for g in got] == [b"body-0", b"body-1", b"body-2", b"body-3"]
    assert got[0][2] == "snappy" and got[1][2] == "gzip"
    assert len(s) == 0 and p.stats.sent_samples == 10


def test_outage_keeps_everything_and_resumes_in_order(tmp_path: Path) -> None:
    up = {"ok": False}
    got: list[bytes] = []

    def handler(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        if not up["ok"]:
            raise OSError("ConnectionRefusedError: [Errno 111] Connection refused")
        got.append(body)
        return 204, ""

    s = _spool(tmp_path, 3)
    p = Pusher(s, "http://server", transport=handler)
    assert p.drain() == 0 and len(s) == 3
    assert "Connection refused" in p.stats.last_error and p.stats.failures == 1
    up["ok"] = True
    assert p.drain() == 3
    assert got == [b"body-0", b"body-1", b"body-2"]


def test_503_is_retried_but_400_is_dropped_and_counted(tmp_path: Path) -> None:
    answers = [(503, "store busy"), (400, "bad label name"), (204, "")]

    def handler(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        return answers.pop(0) if answers else (204, "")

    s = _spool(tmp_path, 2)
    p = Pusher(s, "http://server", transport=handler)
    assert p.drain() == 0  # 503: stays
    assert len(s) == 2 and "503" in p.stats.last_error
    assert p.drain() == 2  # 400 drops body-0 (never retried), then body-1 goes
    assert s.rejected_samples == 1 and p.stats.rejected_files == 1
    assert "bad label name" in p.stats.last_error


def test_http_transport_against_a_real_socket(tmp_path: Path) -> None:
    seen: list[tuple[str, bytes]] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            code = 204 if self.path == REMOTE_WRITE_PATH else 400
            self.send_response(code)
            body = b"" if code == 204 else b"bad catalog"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    t = HttpTransport(timeout_s=5)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        assert t(url + REMOTE_WRITE_PATH, b"abc", {}) == (204, "")
        assert t(url + REMOTE_WRITE_PATH, b"def", {}) == (204, "")  # same kept-alive connection
        assert t(url + CATALOG_PATH, b"{}", {}) == (400, "bad catalog")
        assert seen == [(REMOTE_WRITE_PATH, b"abc"), (REMOTE_WRITE_PATH, b"def"), (CATALOG_PATH, b"{}")]
    finally:
        srv.shutdown()
        srv.server_close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    try:
        t(f"http://127.0.0.1:{dead}/api/v1/write", b"x", {})
        raise AssertionError("expected OSError")
    except OSError as e:
        assert "Connection" in str(e) or "refused" in str(e).lower()
