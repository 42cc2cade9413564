"""``--listen`` mode: serve the latest collection at ``/metrics`` in the Prometheus text format."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sightglass.model import MetricMetadata, SampleBatch, SeriesKey

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def render(batch: SampleBatch) -> bytes:
    """Exposition text of ``batch``: one ``# HELP``/``# TYPE`` per family, series in family order."""
    return render_rows(((k, float(v)) for k, _t, v in batch.rows() if v is not None), batch.metadata)


def render_rows(rows: Iterable[tuple[SeriesKey, float]], metadata: Mapping[str, MetricMetadata]) -> bytes:
    by_family: dict[str, list[str]] = {}
    for key, v in rows:
        # the agent stamps samples with the collection time; a scraper stamps its own
        by_family.setdefault(key.metric, []).append(f"{key.text()} {_fmt(v)}")
    out: list[str] = []
    for metric in sorted(by_family):
        md = metadata.get(metric)
        if md is not None:
            if md.help:
                out.append(f"# HELP {metric} {md.help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}")
            out.append(
                f"# TYPE {metric} {md.type.value if md.type.value in ('counter', 'gauge') else 'untyped'}"
            )
        out.extend(by_family[metric])
    return ("\n".join(out) + "\n").encode()


class MetricsServer:
    """A small threaded HTTP server: ``GET /metrics`` answers the latest rendered collection."""

    def __init__(self, host: str, port: int) -> None:
        self._body = b"# no collection yet\n"
        lock = threading.Lock()
        parent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    with lock:
                        body = parent._body
                    self._answer(200, body, CONTENT_TYPE)
                elif path in ("/-/health", "/-/healthy", "/"):
                    self._answer(200, b"ok\n", "text/plain")
                else:
                    self._answer(404, f"not found: {path} (try /metrics)\n".encode(), "text/plain")

            def _answer(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._lock = lock
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="sightglass-agent-http", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def publish(self, batch: SampleBatch) -> None:
        self.publish_body(render(batch))

    def publish_body(self, body: bytes) -> None:
        with self._lock:
            self._body = body

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
