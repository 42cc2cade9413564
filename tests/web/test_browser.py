"""The dashboard in a real headless Chromium: pages render from their JSON twins, no console errors.

Skipped (with the reason) when /usr/bin/chromium or the playwright package is missing.
``SIGHTGLASS_SCREENSHOTS=1`` also writes ``docs/img/overview.png``.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from sightglass.config import Config
from sightglass.server import build_app
from sightglass.simulate.fast import run_ingest
from sightglass.store.duckdb import DuckDBStore

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} missing (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed (pip install playwright)"
)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("data")
    store = DuckDBStore(str(data))
    now_ms = int(time.time() * 1000)
    run_ingest(store, nodes=2, duration_s=600, seed=7, start_ms=now_ms - 600_000, fault_every_s=120)
    app, _ctx = build_app(Config(data=str(data)), store)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        store.close()


def test_pages_render_without_console_errors(base_url: str, tmp_path: Path) -> None:
    tmp_path = Path(os.environ.get("SIGHTGLASS_SHOT_DIR", str(tmp_path)))
    errors: list[str] = []
    bad: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.on(
                "console",
                lambda m: errors.append(f"{m.text} @ {m.location.get('url')}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: bad.append(f"{r.status} {r.url}") if r.status >= 400 else None)

            page.goto(base_url + "/")
            page.wait_for_function(
                "document.querySelector('#cards') && document.querySelector('#cards').innerText.trim().length > 0"
            )
            page.wait_for_function(
                "document.querySelector('#heatmap') && document.querySelector('#heatmap').children.length > 0"
            )
            assert "GPU" in page.inner_text("#cards")
            page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
            if os.environ.get("SIGHTGLASS_SCREENSHOTS") == "1":
                out = Path(__file__).resolve().parents[2] / "docs" / "img" / "overview.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(tmp_path / "overview.png", out)

            page.goto(base_url + "/ui/explore?q=avg(DCGM_FI_DEV_GPU_UTIL)")
            page.wait_for_function(
                "document.querySelector('#chart') && document.querySelector('#chart').innerHTML.includes('path')"
            )
            assert page.input_value("#q") == "avg(DCGM_FI_DEV_GPU_UTIL)"
            page.screenshot(path=str(tmp_path / "explore.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [], (errors, bad)
