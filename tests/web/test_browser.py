"""The dashboard in a real headless Chromium: every page renders from its JSON twin with no console
errors, on a simulated 4-node factory (the demo's size) whose data ends now.

Skipped (with the reason) when /usr/bin/chromium or the playwright package is missing.
``SIGHTGLASS_SCREENSHOTS=1`` also writes ``docs/img/<page>.png`` (the README shows overview.png).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from sightglass.config import Config
from sightglass.server import build_app
from sightglass.simulate.fast import run_ingest
from sightglass.store.duckdb import DuckDBStore
from sightglass.topology.infer import TopologyBuilder

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
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} missing (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed (pip install playwright)"
)

# page path -> (CSS selector that must hold content once rendered, texts the page must show)
PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "/": ("#nodes a", ("GPUs", "idle-held", "failed", "cost / hour", "open incidents", "predictability")),
    "/ui/topology": (".rack .tgpus a", ("rack", "node-01")),
    "/ui/heatmap?metric=power_watts": ("#heatmap a.cell", ("power", "GPUs on 4 nodes")),
    "/ui/inference": ("#models tbody tr", ("meta-llama", "TTFT p95", "KV cache")),
    "/ui/training": ("#jobs tbody tr", ("goodput", "data-loader wait", "stragglers")),
    "/ui/pipelines": ("#pipes tbody tr", ("freshness", "tokenize-web")),
    "/ui/network": ("#ports tbody tr", ("mlx5_0", "NFS", "leaf-01")),
    "/ui/cost": ("#parts section", ("Cost by team", "Cost per token", "Idle GPU money")),
    # a deep link to an explanation runs the RCA and shows its evidence chain
    '/ui/incidents?symptom=DCGM_FI_DEV_GPU_UTIL{Hostname="node-01"}': (
        "#rca .chain",
        ("Incidents", "Anomalies", "Explain a symptom", "#1", "SLOs", "inference-ttft"),
    ),
    "/ui/drift": ("#parts section", ("Configuration drift", "predictability")),
    "/ui/explore?q=avg(DCGM_FI_DEV_GPU_UTIL)": ("#chart path", ("1 series",)),
    "/ui/entity?id=node:node-01": ("#neigh tbody tr", ("gpu-in-node", "DCGM_FI_DEV_GPU_UTIL")),
}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("data")
    store = DuckDBStore(str(data))
    now_ms = int(time.time() * 1000)
    _, sim = run_ingest(store, nodes=4, duration_s=600, seed=7, start_ms=now_ms - 600_000, fault_every_s=120)
    b = TopologyBuilder()  # racks and leaf cabling come from the inventory, as `topology import` does
    b.add_inventory(sim.factory.describe())
    b.update(store)
    b.persist(store)
    store.close()
    # what the server's analytics and cost loops would have written by now (KPIs: idle-held,
    # predictability, drift; cost series), through their real commands
    for cmd in (["analytics", "run"], ["cost", "kpis", "--start", "now-15m"]):
        subprocess.run(
            [sys.executable, "-m", "sightglass.cli", *cmd, "--data", str(data)],
            check=True,
            capture_output=True,
        )
    store = DuckDBStore(str(data))
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
    base = f"http://127.0.0.1:{port}"
    # evaluate the alert rules over the simulated window, as the alerting loop would have: the
    # injected faults open incidents (with their RCA) for the incidents page
    for t in range(-300, 1, 60):
        httpx.post(
            f"{base}/api/v1/alerting/evaluate", params={"time": str((now_ms + t * 1000) / 1000)}, timeout=120
        )
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _page(browser: Any, errors: list[str], **kw: Any) -> Any:
    page = browser.new_page(viewport={"width": 1366, "height": 800}, **kw)
    page.on(
        "console",
        lambda m: errors.append(f"{m.text} @ {m.location.get('url')}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def _loaded(page: Any, selector: str) -> None:
    page.wait_for_function(
        "document.querySelector('#asof') && document.querySelector('#asof').textContent.length > 0"
    )
    err = page.inner_text("#error")
    assert err == "", err
    page.wait_for_selector(selector, timeout=30_000, state="attached")


def _shot(page: Any, name: str, out_dir: Path) -> None:
    path = out_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SIGHTGLASS_SCREENSHOTS") == "1":
        IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, IMG / f"{name}.png")


def test_every_page_renders_without_console_errors(base_url: str, browser: Any, tmp_path: Path) -> None:
    out_dir = Path(os.environ.get("SIGHTGLASS_SHOT_DIR", str(tmp_path)))
    errors: list[str] = []
    page = _page(browser, errors)
    for path, (selector, texts) in PAGES.items():
        page.goto(base_url + path)
        _loaded(page, selector)
        body = page.inner_text("main")
        for t in texts:
            assert t.lower() in body.lower(), (path, t, body[:2000])
        name = "overview" if path == "/" else path.split("/")[2].split("?")[0]
        _shot(page, name, out_dir)
    assert errors == [], errors


def test_overview_shows_missing_features_as_dashes_and_counts_gpus(base_url: str, browser: Any) -> None:
    errors: list[str] = []
    page = _page(browser, errors)
    page.goto(base_url + "/")
    _loaded(page, "#nodes a")
    cards = page.eval_on_selector_all(
        "#cards .card",
        "cs => Object.fromEntries(cs.map(c => [c.querySelector('.label').textContent, "
        "c.querySelector('.value').textContent]))",
    )
    assert int(cards["GPUs"]) == 32
    assert int(cards["busy"]) + int(cards["idle"]) + int(cards["failed"]) == 32
    # cost per hour and idle-held from the cost and analytics features' series; predictability is
    # "—" exactly when the analytics API has no fleet figure (missing, never 0)
    assert cards["cost / hour"].startswith("$"), cards
    assert cards["idle-held"].isdigit(), cards
    fleet = httpx.get(base_url + "/api/v1/predictability").json()["data"]["fleet"]
    assert (cards["predictability"] == "—") == (fleet is None), (cards, fleet)
    incidents = httpx.get(base_url + "/api/v1/incidents", params={"state": "open"}).json()["data"]
    assert cards["open incidents"] == str(len(incidents)), cards
    assert len(page.query_selector_all("#nodes a")) == 4
    assert errors == []


def test_deep_links_range_theme_keyboard_and_click_through(
    base_url: str, browser: Any, tmp_path: Path
) -> None:
    out_dir = Path(os.environ.get("SIGHTGLASS_SHOT_DIR", str(tmp_path)))
    errors: list[str] = []
    page = _page(browser, errors, color_scheme="dark")
    page.goto(base_url + "/ui/heatmap?metric=temp_celsius&range=6h")
    _loaded(page, "#heatmap a.cell")
    assert page.input_value("#metric") == "temp_celsius"
    assert page.input_value("#range") == "6h"
    # the range travels with the navigation links (deep links keep their window)
    assert "range=6h" in (page.get_attribute("header nav a[data-path='/ui/inference']", "href") or "")
    page.select_option("#range", "15m")
    assert "range=15m" in page.url
    # dark theme from the system setting; the theme key toggles to light and back
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.keyboard.press("t")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != bg
    page.keyboard.press("t")
    page.goto(base_url + "/")
    _loaded(page, "#nodes a")
    _shot(page, "overview-dark", out_dir)
    # keyboard: Tab reaches the navigation, the digit keys jump between pages
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "A"
    page.keyboard.press("4")
    page.wait_for_url("**/ui/inference**")
    _loaded(page, "#models tbody tr")
    # click through: topology map -> a GPU -> its node
    page.goto(base_url + "/ui/topology")
    _loaded(page, ".rack .tgpus a")
    page.click(".rack .tgpus a")
    page.wait_for_url("**/ui/entity?**")
    _loaded(page, "#neigh tbody tr")
    assert "gpu" in page.inner_text("#title").lower()
    page.click("#neigh a[href*='node']")
    page.wait_for_url("**id=node*")
    _loaded(page, "#deps tbody tr")
    # incidents: one opens with its cause, timeline and the RCA's evidence chain
    page.goto(base_url + "/ui/incidents")
    _loaded(page, "#parts section")
    page.click("#parts a[href*='incident=']")
    page.wait_for_selector("#incident .chain", timeout=30_000)
    assert "Cause:" in page.inner_text("#incident") and "Timeline" in page.inner_text("#incident")
    _shot(page, "incident", out_dir)
    # live: the overview re-polls its twin without a reload; pausing stops it and is kept in the URL
    page.goto(base_url + "/")
    _loaded(page, "#nodes a")
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/api/v1/ui/overview" in r.url else None)
    page.wait_for_timeout(5_600)
    assert len(polls) >= 1, "the overview did not refresh itself"
    page.click("#live")
    assert "live=0" in page.url and page.get_attribute("#live", "aria-pressed") == "false"
    page.wait_for_timeout(300)  # a poll already in flight may land
    seen = len(polls)
    page.wait_for_timeout(5_600)
    assert len(polls) == seen, "polling went on while paused"
    assert errors == [], errors


def test_every_page_on_sightglass_demo(browser: Any) -> None:
    """The real `sightglass demo` (live simulated factory, scraped): every page renders, no errors."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    base = f"http://127.0.0.1:{port}"
    demo = subprocess.Popen(
        [sys.executable, "-m", "sightglass.cli", "demo", "--nodes", "4", "--tick", "2s",
         "--duration", "120s", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while True:  # until the first rates exist (two scrapes of the vLLM counters)
            try:
                d = httpx.get(base + "/api/v1/ui/inference", timeout=10).json()["data"]
                if d["models"] and d["models"][0]["generation_tokens_per_second"] is not None:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            assert time.time() < deadline and demo.poll() is None, "the demo did not come up"
            time.sleep(1)
        errors: list[str] = []
        page = _page(browser, errors)
        selectors = {
            "/": "#nodes a", "/ui/topology": ".tgpus a", "/ui/heatmap": "#heatmap a.cell",
            "/ui/inference": "#models tbody tr", "/ui/training": "#jobs", "/ui/pipelines": "#pipes",
            "/ui/network": "#ports tbody tr", "/ui/cost": "#parts section", "/ui/incidents": "#parts section",
            "/ui/drift": "#parts section", "/ui/explore": "#chart path", "/ui/entity?id=node:node-01": "#neigh",
        }  # fmt: skip
        for path, selector in selectors.items():
            page.goto(base + path)
            _loaded(page, selector)
        assert errors == [], errors
    finally:
        demo.terminate()
        demo.wait(timeout=30)
