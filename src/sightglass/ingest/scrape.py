"""The Prometheus scraper: targets from static and file-based discovery, scraped in parallel.

Behaviour follows Prometheus: ``job`` and ``instance`` target labels; with ``honor_labels: false`` an
exposed label that collides with a target label is kept as ``exported_<name>``; per scrape the
synthetic series ``up``, ``scrape_duration_seconds``, ``scrape_samples_scraped``,
``scrape_samples_post_metric_relabeling`` and ``scrape_series_added``; stale markers for series that
disappear and for every series of a target that goes down; ``sample_limit``; scrapes of one target
spread over its interval by a stable offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import glob
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sightglass.api.envelope import success
from sightglass.config import ScrapeConfig, parse_duration_ms
from sightglass.ingest.prometheus_text import ParseError, ParserLimits, TextParser, is_openmetrics
from sightglass.model import MetricMetadata, MetricType, SampleBatch, SeriesKey

log = logging.getLogger(__name__)

ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
_SYNTHETIC = (
    ("up", "1 if the last scrape of the target succeeded, else 0"),
    ("scrape_duration_seconds", "Duration of the scrape"),
    ("scrape_samples_scraped", "Samples the target exposed"),
    ("scrape_samples_post_metric_relabeling", "Samples kept after relabelling"),
    ("scrape_series_added", "Series new since the previous scrape"),
)


@dataclass(eq=False)
class Target:
    """One endpoint to scrape, with its labels (``job``, ``instance`` and discovered ones)."""

    job: ScrapeConfig
    address: str
    labels: dict[str, str]
    health: str = "unknown"
    last_error: str = ""
    last_scrape_ms: int = 0
    last_duration_s: float = 0.0
    parser: TextParser = field(default_factory=TextParser)
    previous: set[SeriesKey] = field(default_factory=set)

    @property
    def url(self) -> str:
        from urllib.parse import urlencode

        query = urlencode([(k, v) for k, vs in self.job.params.items() for v in vs])
        return f"{self.job.scheme}://{self.address}{self.job.metrics_path}" + (f"?{query}" if query else "")

    def key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        return (self.job.job_name, self.address, tuple(sorted(self.labels.items())))

    def to_api(self) -> dict[str, Any]:
        discovered = {
            "__address__": self.address,
            "__metrics_path__": self.job.metrics_path,
            "__scheme__": self.job.scheme,
            "job": self.job.job_name,
        }
        return {
            "discoveredLabels": discovered,
            "labels": dict(self.labels),
            "scrapePool": self.job.job_name,
            "scrapeUrl": self.url,
            "globalUrl": self.url,
            "lastError": self.last_error,
            "lastScrape": _rfc3339(self.last_scrape_ms) if self.last_scrape_ms else "0001-01-01T00:00:00Z",
            "lastScrapeDuration": self.last_duration_s,
            "health": self.health,
            "scrapeInterval": self.job.scrape_interval,
            "scrapeTimeout": self.job.scrape_timeout,
        }


def _rfc3339(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def read_file_sd(path: Path) -> list[dict[str, Any]]:
    """A Prometheus file_sd file: a list of ``{"targets": [...], "labels": {...}}`` (JSON or YAML)."""
    text = path.read_text()
    if path.suffix in (".yml", ".yaml"):
        try:
            import yaml
        except ModuleNotFoundError:
            raise ValueError(
                f"{path}: YAML target files need PyYAML (pip install pyyaml); use JSON"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: invalid YAML: {e}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON: {e}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of target groups")
    for g in data:
        if not isinstance(g, dict) or not isinstance(g.get("targets", []), list):
            raise ValueError(f"{path}: each target group needs a 'targets' list")
        if not all(isinstance(v, str) for v in (g.get("labels") or {}).values()):
            raise ValueError(f"{path}: label values must be strings")
    return data


def discover(job: ScrapeConfig) -> tuple[list[Target], list[str]]:
    """Targets of one job now: static ones plus every file_sd file's groups. Returns (targets, errors)."""
    out: list[Target] = []
    errors: list[str] = []
    groups: list[dict[str, Any]] = [{"targets": s.targets, "labels": s.labels} for s in job.static_configs]
    for fsd in job.file_sd_configs:
        for pattern in fsd.files:
            for name in sorted(glob.glob(pattern)):
                if not fnmatch.fnmatch(os.path.basename(name), "*.json") and not name.endswith(
                    (".yml", ".yaml")
                ):
                    continue
                try:
                    groups.extend(read_file_sd(Path(name)))
                except (OSError, ValueError) as e:
                    errors.append(str(e))
    for g in groups:
        for addr in g.get("targets", []):
            labels = {"job": job.job_name, "instance": addr}
            labels.update(g.get("labels") or {})
            out.append(Target(job=job, address=addr, labels=labels))
    return out, errors


def apply_target_labels(key: SeriesKey, target_labels: dict[str, str], honor_labels: bool) -> SeriesKey:
    """Merge target labels into an exposed series exactly as Prometheus does."""
    labels = dict(key.labels)
    for name, value in target_labels.items():
        if name in labels:
            if honor_labels:
                continue
            exported = "exported_" + name
            # Prometheus keeps prefixing until the name is free
            while exported in labels:
                exported = "exported_" + exported
            labels[exported] = labels[name]
        labels[name] = value
    return SeriesKey.of(key.metric, labels)


class Scraper:
    """Scrapes every configured target into the store until cancelled."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.targets: dict[tuple[str, str, tuple[tuple[str, str], ...]], Target] = {}
        self.discovery_errors: list[str] = []
        self._tasks: dict[tuple[str, str, tuple[tuple[str, str], ...]], asyncio.Task[None]] = {}
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(limits=limits, follow_redirects=True) as client:
            self._client = client
            try:
                while True:
                    self.sync_targets()
                    refresh = min(
                        [
                            parse_duration_ms(f.refresh_interval) / 1000
                            for j in self.ctx.config.scrape_configs
                            for f in j.file_sd_configs
                        ]
                        or [30.0]
                    )
                    await asyncio.sleep(min(refresh, 5.0))
            finally:
                for t in self._tasks.values():
                    t.cancel()
                for t in self._tasks.values():
                    with contextlib.suppress(BaseException):
                        await t

    def sync_targets(self) -> None:
        wanted: dict[tuple[str, str, tuple[tuple[str, str], ...]], Target] = {}
        errors: list[str] = []
        for job in self.ctx.config.scrape_configs:
            targets, errs = discover(job)
            errors.extend(errs)
            for t in targets:
                wanted.setdefault(t.key(), t)
        for e in errors:
            if e not in self.discovery_errors:
                log.warning("target discovery: %s", e)
        self.discovery_errors = errors
        for k in list(self.targets):
            if k not in wanted:
                self._tasks.pop(k).cancel()
                gone = self.targets.pop(k)
                self._write_stale(gone, list(gone.previous), int(time.time() * 1000))
        for k, t in wanted.items():
            if k not in self.targets:
                self.targets[k] = t
                self._tasks[k] = asyncio.create_task(self._loop(t))

    async def _loop(self, target: Target) -> None:
        interval = parse_duration_ms(target.job.scrape_interval) / 1000
        # a stable offset per target spreads scrapes over the interval, as Prometheus does
        h = int(hashlib.sha256(repr(target.key()).encode()).hexdigest()[:8], 16)
        offset = (h % 10_000) / 10_000 * interval
        now = time.time()
        next_at = now - (now % interval) + offset
        if next_at < now:
            next_at += interval
        await asyncio.sleep(max(0.0, next_at - now))
        while True:
            started = time.time()
            try:
                await self.scrape_once(target)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one target's failure stop its loop
                log.exception("scrape of %s failed unexpectedly", target.url)
            next_at += interval
            if next_at < time.time():
                next_at = started + interval
            await asyncio.sleep(max(0.0, next_at - time.time()))

    async def scrape_once(self, target: Target) -> None:
        client = self._client
        if client is None:
            raise RuntimeError("scrape_once runs inside Scraper.run, which opens the HTTP client")
        ts_ms = int(time.time() * 1000)
        timeout = parse_duration_ms(target.job.scrape_timeout) / 1000
        t0 = time.perf_counter()
        batch: SampleBatch | None = None
        error = ""
        scraped = 0
        try:
            r = await client.get(
                target.url,
                headers={"Accept": ACCEPT, "X-Prometheus-Scrape-Timeout-Seconds": str(timeout)},
                timeout=timeout,
            )
            if r.status_code != 200:
                raise _ScrapeFailure(f"server returned HTTP status {r.status_code} {r.reason_phrase}")
            om = is_openmetrics(r.headers.get("content-type", ""))
            limits = self.ctx.config.limits
            target.parser.limits = ParserLimits(limits.max_label_value_bytes, limits.max_labels_per_series)
            res = await asyncio.to_thread(
                target.parser.parse,
                r.content,
                openmetrics=om,
                default_ts_ms=ts_ms,
                honor_timestamps=target.job.honor_timestamps,
            )
            batch = res.batch
            scraped = res.samples
            if target.job.sample_limit and scraped > target.job.sample_limit:
                raise _ScrapeFailure(f"sample limit exceeded: {scraped} > {target.job.sample_limit}")
        except (httpx.TimeoutException, TimeoutError):
            error = f'Get "{target.url}": context deadline exceeded (timeout {timeout:g}s)'
            batch = None
        except httpx.HTTPError as e:
            error = f'Get "{target.url}": {e}'
            batch = None
        except ParseError as e:
            error = f"parse error: {e}"
            batch = None
        except _ScrapeFailure as e:
            error = str(e)
            batch = None
        duration = time.perf_counter() - t0
        out = SampleBatch()
        current: set[SeriesKey] = set()
        if batch is not None:
            honor = target.job.honor_labels
            out.series = [apply_target_labels(k, target.labels, honor) for k in batch.series]
            out.series_index, out.ts_ms, out.values = batch.series_index, batch.ts_ms, batch.values
            out.metadata = batch.metadata
            current = set(out.series)
        added = len(current - target.previous)
        vanished = target.previous - current
        # stale markers for what disappeared (all of it when the target is down)
        if vanished:
            self._append_stale(out, list(vanished), ts_ms)
        up = 1.0 if batch is not None else 0.0
        synth = [up, duration, float(scraped), float(scraped if batch is not None else 0), float(added)]
        base = len(out.series)
        for name, help_ in _SYNTHETIC:
            out.series.append(SeriesKey.of(name, target.labels))
            out.metadata[name] = MetricMetadata(name, MetricType.GAUGE, help_)
        n_syn = len(_SYNTHETIC)
        out.series_index = np.concatenate([out.series_index, np.arange(base, base + n_syn)])
        out.ts_ms = np.concatenate([out.ts_ms, np.full(n_syn, ts_ms, dtype=np.int64)])
        out.values = np.concatenate([out.values, np.asarray(synth, dtype=np.float64)])
        if out.stale is not None:
            out.stale = np.concatenate([out.stale, np.zeros(n_syn, dtype=bool)])
        try:
            await asyncio.to_thread(
                self.ctx.store.append, out, max_new_series=self.ctx.config.limits.max_new_series_per_request
            )
            self.ctx.metrics.ingested_samples.labels("scrape").inc(len(out))
        except Exception as e:
            error = error or f"storing the scrape failed: {e}"
            up = 0.0
        target.previous = current
        target.health = "up" if up else "down"
        target.last_error = error
        target.last_scrape_ms = ts_ms
        target.last_duration_s = duration
        if error:
            log.debug("scrape %s: %s", target.url, error)

    def _append_stale(self, out: SampleBatch, keys: list[SeriesKey], ts_ms: int) -> None:
        n0 = len(out)
        base = len(out.series)
        out.series.extend(keys)
        out.series_index = np.concatenate([out.series_index, np.arange(base, base + len(keys))])
        out.ts_ms = np.concatenate([out.ts_ms, np.full(len(keys), ts_ms, dtype=np.int64)])
        out.values = np.concatenate([out.values, np.full(len(keys), np.nan)])
        stale = out.stale if out.stale is not None else np.zeros(n0, dtype=bool)
        out.stale = np.concatenate([stale, np.ones(len(keys), dtype=bool)])

    def _write_stale(self, target: Target, keys: list[SeriesKey], ts_ms: int) -> None:
        if not keys:
            return
        out = SampleBatch()
        self._append_stale(out, keys, ts_ms)
        with contextlib.suppress(Exception):
            self.ctx.store.append(out)


class _ScrapeFailure(Exception):
    pass


async def run_scrapers(ctx: Any) -> None:
    """Background task for the server: scrape every configured target until cancelled."""
    scraper = Scraper(ctx)
    ctx.extras["scraper"] = scraper
    await scraper.run()


def make_routes(ctx: Any) -> list[Route]:
    """``/api/v1/targets`` in the Prometheus API shape."""

    async def targets(request: Request) -> Response:
        scraper: Scraper | None = ctx.extras.get("scraper")
        active = [t.to_api() for t in scraper.targets.values()] if scraper else []
        state = request.query_params.get("state", "any")
        return success({"activeTargets": active if state in ("any", "active") else [], "droppedTargets": []})

    return [Route("/api/v1/targets", targets)]
