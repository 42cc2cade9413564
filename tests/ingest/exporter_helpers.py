"""A real HTTP exporter for scrape tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Exporter:
    """A real HTTP exporter on 127.0.0.1 whose /metrics body, status and delay tests can change."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.delay_s = 0.0
        self.content_type = "text/plain; version=0.0.4; charset=utf-8"
        self.requests: list[dict[str, str]] = []
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                import time

                exporter.requests.append(dict(self.headers))
                if exporter.delay_s:
                    time.sleep(exporter.delay_s)
                self.send_response(exporter.status)
                self.send_header("Content-Type", exporter.content_type)
                self.send_header("Content-Length", str(len(exporter.body)))
                self.end_headers()
                self.wfile.write(exporter.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
