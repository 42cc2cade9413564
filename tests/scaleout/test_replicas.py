"""Two ``sightglass up`` replicas share VictoriaMetrics and PostgreSQL; one is SIGKILLed mid-run.

Analytics are cut into partitions leased in PostgreSQL. While the test streams a simulated factory's
samples into VictoriaMetrics, both replicas commit analysis batches; then one is killed with SIGKILL.
Its leases expire, the survivor takes them over at a higher epoch and carries on from the committed
watermarks. Afterwards every partition's batches tile time exactly — no gap (nothing lost), no overlap
(nothing done twice) — up to the newest data, and the events in the catalog are exactly those the
committed batches reported (a killed batch left nothing behind).
"""

from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from scaleout_helpers import Capture, Peer, wait_for

from sightglass.model import SampleBatch
from sightglass.simulate.fast import run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.postgres import PostgresCatalog
from sightglass.store.remote import RemoteMetricStore, RemoteOptions

MIN = 60_000
PARTS = 4


def _slice(batches: list[SampleBatch], lo: int, hi: int) -> SampleBatch:
    """The samples with ``lo <= ts < hi`` of all ``batches``, as one batch."""
    out = SampleBatch()
    for b in batches:
        keep = (b.ts_ms >= lo) & (b.ts_ms < hi)
        if keep.any():
            out.extend(SampleBatch(series=b.series, series_index=b.series_index[keep], ts_ms=b.ts_ms[keep],
                                   values=b.values[keep], metadata=b.metadata))  # fmt: skip
    return out


def _replica(name: str, vm: Peer, dsn: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    import _peers

    port = _peers.free_port()
    cfg = tmp / f"{name}.toml"
    cfg.write_text(
        f'log_level = "warning"\n[analytics]\ninterval = "1s"\nhistory = "10m"\n'
        f'[backends.metrics]\nkind = "victoriametrics"\nurl = "{vm.url}"\nremote_write_url = "{vm.write_url}"\n'
        f'refresh_every = "1s"\n[backends.catalog]\nkind = "postgres"\ndsn = "{dsn}"\n'
        f'[backends.replicas]\nenabled = true\nid = "{name}"\npartitions = {PARTS}\nlease_ttl = "3s"\n'
        f'heartbeat = "1s"\nbatch = "30s"\nbackfill = "2m"\n'
    )
    exe = shutil.which("sightglass") or str(Path(sys.executable).with_name("sightglass"))
    argv = [exe, "up", "--data", str(tmp / name), "--listen", f"127.0.0.1:{port}", "--config", str(cfg)]
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(argv, stdout=log, stderr=log), f"http://127.0.0.1:{port}"


def _batches(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as c:
        return list(
            c.execute(
                "SELECT part, from_ms, to_ms, owner, epoch, events FROM analytics_batches ORDER BY part, from_ms, id"
            )
        )


def test_replica_killed_mid_run_loses_and_repeats_nothing(own_vm: Peer, pg_dsn: str, tmp_path: Path) -> None:
    vm = own_vm
    import _peers

    now = int(time.time() * 1000)
    start = now - now % 10_000 - 20 * MIN
    cap = Capture()
    scripted = [ScriptedFault("gpu_thermal", 14 * MIN, 5 * MIN, {"Hostname": "node-02", "gpu": "3"})]
    run_ingest(
        cap, nodes=3, duration_s=20 * 60, seed=11, start_ms=start, scripted=scripted, fault_every_s=None
    )
    uuid = next(dict(k.labels)["UUID"] for b in cap.batches for k in b.series
                if k.metric == "DCGM_FI_DEV_GPU_TEMP" and dict(k.labels).get("Hostname") == "node-02"
                and dict(k.labels).get("gpu") == "3")  # fmt: skip
    root = f"gpu:{uuid}"
    writer = RemoteMetricStore(RemoteOptions(vm.url, vm.write_url))
    catalog = PostgresCatalog(pg_dsn)
    writer.append(_slice(cap.batches, start, start + 12 * MIN))
    catalog.append_events(cap.events)
    catalog.append_lineage(cap.lineage)
    _peers.vm_flush(vm.server)
    procs = {}
    try:
        for name in ("r1", "r2"):
            procs[name] = _replica(name, vm, pg_dsn, tmp_path)

        def alive() -> None:
            for name, (p, _) in procs.items():
                if name in live:
                    assert p.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]

        live = {"r1", "r2"}

        def both_own_leases() -> bool:
            alive()
            with psycopg.connect(pg_dsn) as c:
                owners = {r[0] for r in c.execute("SELECT owner FROM leases WHERE task = 'anomaly'")}
            return owners == {"r1", "r2"}

        wait_for(both_own_leases, 120, "both replicas to hold leases", every=0.5)
        # stream the rest, 30 s of data per 0.5 s; SIGKILL r1 once it has committed streamed batches
        t, end, killed = start + 12 * MIN, start + 20 * MIN, False
        while t < end:
            writer.append(_slice(cap.batches, t, t + 30_000))
            _peers.vm_flush(vm.server)
            t += 30_000
            alive()
            if not killed and t >= start + 15 * MIN:

                def both_streamed() -> bool:
                    alive()
                    got = [b for b in _batches(pg_dsn) if b[1] >= start + 12 * MIN and b[1] < b[2]]
                    return {b[3] for b in got} == {"r1", "r2"}

                wait_for(both_streamed, 90, "both replicas to commit streamed batches", every=0.3)
                procs["r1"][0].send_signal(signal.SIGKILL)
                procs["r1"][0].wait(10)
                live.discard("r1")
                killed = True
            time.sleep(0.5)
        newest = t - 10_000  # the last tick written
        final = newest - 1000 - (newest - 1000) % 10_000

        def caught_up() -> bool:
            with psycopg.connect(pg_dsn) as c:
                wms = [r[0] for r in c.execute("SELECT watermark_ms FROM leases WHERE task = 'anomaly'")]
            return len(wms) == PARTS and all(w == final for w in wms)

        try:
            wait_for(caught_up, 60, "the survivor to take over and catch up", every=0.5)
        except AssertionError as e:
            with psycopg.connect(pg_dsn) as c:
                leases = list(c.execute("SELECT part, owner, epoch, watermark_ms FROM leases"))
            st = httpx.get(procs["r2"][1] + "/-/stats", timeout=10).json()["data"].get("analytics")
            log = (tmp_path / "r2.log").read_text()[-2000:]
            r = RemoteMetricStore(RemoteOptions(vm.url, None))
            live_names = r.query("count by (__name__) (" + r.options.probe + ")", int(time.time() * 1000))
            log += f" live={live_names}"
            r.close()
            raise AssertionError(f"{e}: final={final} leases={leases} r2={st} log={log}") from None
        stats = httpx.get(procs["r2"][1] + "/-/stats", timeout=10).json()["data"]["analytics"]
        assert sorted(stats["owned"]) == list(range(PARTS)) and stats["last_error"] is None
    finally:
        for p, _ in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        writer.close()
    try:
        _check(pg_dsn, catalog, final, start + 12 * MIN, root)
    finally:
        catalog.close()


def _check(pg_dsn: str, catalog: PostgresCatalog, final: int, streamed_from: int, root: str) -> None:
    rows = _batches(pg_dsn)
    by_part: dict[int, list[tuple[Any, ...]]] = {}
    for r in rows:
        by_part.setdefault(r[0], []).append(r)
    assert sorted(by_part) == list(range(PARTS))
    took_over = 0
    for part, bs in by_part.items():
        fits = [b for b in bs if b[1] == b[2]]
        assert len(fits) == 1 and bs[0] is fits[0], (part, bs[:3])  # one fit, first
        for a, b in itertools.pairwise(bs):
            assert b[1] == a[2], f"partition {part}: gap or overlap between {a} and {b}"
            assert b[4] >= a[4]  # epochs only grow
        assert bs[-1][2] == final  # and nothing left behind
        # taken over from the killed replica: r1 committed streamed batches, then r2 at a higher epoch
        r1 = [b for b in bs if b[3] == "r1" and b[1] >= streamed_from]
        if r1:
            after = bs[bs.index(r1[-1]) + 1 :]
            assert after and all(b[3] == "r2" and b[4] > r1[-1][4] for b in after), (part, bs)
            took_over += 1
    assert took_over >= 1, "no partition of the killed replica was taken over"
    # the events are exactly those of committed batches: nothing from the killed one's last batch
    events = catalog.query_events(0, 2**62, kind="anomaly")
    assert len(events) == sum(b[5] for b in rows)
    # and the detector still found the fault, across the handover
    assert root in {e.entity.get("entity") for e in events if e.kind == "anomaly.entity"}
