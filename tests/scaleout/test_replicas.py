"""Two ``sightglass up`` replicas share VictoriaMetrics and PostgreSQL; one is SIGKILLed mid-run.

A simulated factory with a thermal fault on one GPU streams into VictoriaMetrics. Analytics are cut
into partitions leased in PostgreSQL; the fleet-wide loop (KPIs, drift, cost) and the rule
evaluation each run on the holder of a leader lease. Once the fault's alert has fired and opened an
incident, the replica holding the alerting lease is killed with SIGKILL. Its leases expire and the
survivor takes them over at a higher epoch, from the committed watermarks and checkpoints. Afterwards:

- every anomaly partition's batches, and the fleet loop's, tile time exactly (no gap: nothing lost; no
  overlap: nothing done twice) up to the newest data, and the catalog's anomaly events are exactly
  those the committed batches reported (a killed batch left nothing behind);
- the alert fired once: one incident, opened by the killed replica, with the RCA attached, carried on
  and resolved by the survivor, its alert's firing time unchanged across the handover;
- the GPU KPI series go on every 10 s across the kill, with no gap and no sample twice.
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
import numpy as np
import psycopg
from scaleout_helpers import Peer, wait_for

from sightglass.model import Matcher, SampleBatch
from sightglass.simulate.fast import Capture, run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.postgres import PostgresCatalog
from sightglass.store.remote import RemoteMetricStore, RemoteOptions

MIN = 60_000
PARTS = 4
LAG = 30_000  # [analytics] interval
RULES = """groups:
  - name: replica-test
    interval: 1s
    rules:
      - alert: GpuTooHot
        expr: DCGM_FI_DEV_GPU_TEMP > 80
        for: 20s
        labels: {severity: critical}
        annotations: {summary: "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} is hot"}
"""


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
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    cfg = tmp / f"{name}.toml"
    cfg.write_text(
        # analytics stay 30 s of data behind the newest sample: the data here runs ~15x faster than the
        # wall clock, and VictoriaMetrics makes a write searchable shard by shard within about a second
        f'log_level = "warning"\n[analytics]\ninterval = "30s"\nhistory = "10m"\n'
        f'[alerting]\nevaluation_interval = "1s"\nclock = "data"\ndefault_rules = false\n'
        f'default_slos = false\nrule_files = ["{rules}"]\n[cost]\ninterval = "1m"\nlag = "10s"\n'
        f'[backends.metrics]\nkind = "victoriametrics"\nurl = "{vm.url}"\nremote_write_url = "{vm.write_url}"\n'
        f'refresh_every = "1s"\n[backends.catalog]\nkind = "postgres"\ndsn = "{dsn}"\n'
        f'[backends.replicas]\nenabled = true\nid = "{name}"\npartitions = {PARTS}\nlease_ttl = "4s"\n'
        f'heartbeat = "1s"\nbatch = "30s"\nbackfill = "2m"\n'
    )
    exe = shutil.which("sightglass") or str(Path(sys.executable).with_name("sightglass"))
    argv = [exe, "up", "--data", str(tmp / name), "--listen", f"127.0.0.1:{port}", "--config", str(cfg)]
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(argv, stdout=log, stderr=log), f"http://127.0.0.1:{port}"


def _q(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as c:
        return list(c.execute(sql))


def _incidents(dsn: str) -> list[dict[str, Any]]:
    return [r[0] for r in _q(dsn, "SELECT payload FROM incidents ORDER BY opened_ms")]


def _batches(dsn: str, task: str = "anomaly") -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as c:
        return list(
            c.execute(
                "SELECT part, from_ms, to_ms, owner, epoch, events FROM analytics_batches WHERE task = %s "
                "ORDER BY part, from_ms, id",
                [task],
            )
        )


def _owner(dsn: str, task: str) -> str | None:
    rows = _q(dsn, f"SELECT owner FROM leases WHERE task = '{task}' AND part = 0")
    return rows[0][0] if rows else None


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
    live = {"r1", "r2"}
    victim = survivor = ""
    fired: dict[str, Any] = {}
    try:
        for name in ("r1", "r2"):
            procs[name] = _replica(name, vm, pg_dsn, tmp_path)

        def alive() -> None:
            for name, (p, _) in procs.items():
                if name in live:
                    assert p.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]

        def both_own_leases() -> bool:
            alive()
            owners = {r[0] for r in _q(pg_dsn, "SELECT owner FROM leases WHERE task = 'anomaly'")}
            return owners == {"r1", "r2"}

        wait_for(both_own_leases, 120, "both replicas to hold leases", every=0.5)
        # stream the rest, 20 s of data per 0.5 s (the data clock the rules run on moves with it);
        # SIGKILL the alerting leader once both replicas committed streamed batches and its incident is open
        t, end, killed = start + 12 * MIN, start + 20 * MIN, False

        def ready() -> bool:
            alive()
            got = [b for b in _batches(pg_dsn) if b[1] >= start + 12 * MIN and b[1] < b[2]]
            incs = _incidents(pg_dsn)
            return {b[3] for b in got} == {"r1", "r2"} and len(incs) == 1 and incs[0]["state"] == "open"

        def evaluated(upto: int) -> bool:  # the rules ran on the data written so far (its clock)
            alive()
            rows = _q(pg_dsn, "SELECT watermark_ms FROM leases WHERE task = 'alerting'")
            return bool(rows) and rows[0][0] is not None and rows[0][0] >= upto

        while t < end:
            writer.append(_slice(cap.batches, t, t + 20_000))
            _peers.vm_flush(vm.server)
            t += 20_000
            try:
                wait_for(lambda upto=t - 10_000: evaluated(upto), 60, "the rules to run on the newest data", every=0.2)
            except AssertionError as e:
                raise AssertionError(f"{e}: {_dump(pg_dsn, procs, tmp_path)}") from None
            if not killed and t >= start + 15 * MIN + 40_000:
                try:
                    wait_for(ready, 90, "both replicas to commit streamed batches and the incident to open")
                except AssertionError as e:
                    raise AssertionError(f"{e}: {_dump(pg_dsn, procs, tmp_path)}") from None
                victim = _owner(pg_dsn, "alerting") or ""
                assert victim in live, victim
                (survivor,) = live - {victim}
                fired = _incidents(pg_dsn)[0]
                procs[victim][0].send_signal(signal.SIGKILL)
                procs[victim][0].wait(10)
                live.discard(victim)
                killed = True
            time.sleep(0.5)
        newest = t - 10_000  # the last tick written
        final = newest - LAG - (newest - LAG) % 10_000

        def caught_up() -> bool:
            wms = [r[0] for r in _q(pg_dsn, "SELECT watermark_ms FROM leases WHERE task IN ('anomaly', 'fleet')")]
            incs = _incidents(pg_dsn)
            return len(wms) == PARTS + 1 and all(w == final for w in wms) and incs[-1]["state"] == "resolved"

        try:
            wait_for(caught_up, 90, "the survivor to take over, catch up and resolve the incident", every=0.5)
        except AssertionError as e:
            leases = _q(pg_dsn, "SELECT task, part, owner, epoch, watermark_ms FROM leases")
            st = httpx.get(procs[survivor][1] + "/-/stats", timeout=10).json()["data"]
            log = (tmp_path / f"{survivor}.log").read_text()[-2000:]
            incs = [(i["id"], i["state"]) for i in _incidents(pg_dsn)]
            raise AssertionError(f"{e}: final={final} leases={leases} incidents={incs} stats={st} log={log}") from None
        stats = httpx.get(procs[survivor][1] + "/-/stats", timeout=10).json()["data"]
        assert sorted(stats["analytics"]["owned"]) == list(range(PARTS)) and stats["analytics"]["last_error"] is None
        assert stats["fleet"]["leader"] and stats["fleet"]["last_error"] is None, stats["fleet"]
        al = httpx.get(procs[survivor][1] + "/api/v1/alerting/status", timeout=10).json()["data"]
        assert al["lease"]["leader"] and al["checkpoints_restored"] >= 1, al
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
        _check(pg_dsn, catalog, final, start + 12 * MIN, root, victim, survivor)
        _check_incident(pg_dsn, fired, root, victim)
        _check_kpis(vm, uuid, start + 13 * MIN, final - 10_000)
    finally:
        catalog.close()


def _dump(dsn: str, procs: dict[str, Any], tmp: Path) -> str:
    """What the replicas and the catalog say, for a failure message."""
    out = [f"leases={_q(dsn, 'SELECT task, part, owner, epoch, watermark_ms FROM leases ORDER BY task, part')}",
           f"incidents={[(i['id'], i['state']) for i in _incidents(dsn)]}"]  # fmt: skip
    for name, (p, url) in procs.items():
        if p.poll() is None:
            try:
                st = httpx.get(url + "/-/stats", timeout=10).json()["data"]
                al = httpx.get(url + "/api/v1/alerting/status", timeout=10).json()["data"]
                out.append(f"{name}: fleet={st.get('fleet')} alerting={al}")
            except (httpx.HTTPError, ValueError, KeyError) as e:
                out.append(f"{name}: {e}")
        out.append(f"{name} log: {(tmp / f'{name}.log').read_text()[-1500:]}")
    return "\n".join(out)


def _tiles(bs: list[tuple[Any, ...]], final: int, what: str) -> None:
    fits = [b for b in bs if b[1] == b[2]]
    assert len(fits) == 1 and bs[0] is fits[0], (what, bs[:3])  # one fit, first
    for a, b in itertools.pairwise(bs):
        assert b[1] == a[2], f"{what}: gap or overlap between {a} and {b}"
        assert b[4] >= a[4]  # epochs only grow
    assert bs[-1][2] == final, (what, bs[-3:])  # and nothing left behind


def _check(pg_dsn: str, catalog: PostgresCatalog, final: int, streamed_from: int, root: str, victim: str,
           survivor: str) -> None:  # fmt: skip
    rows = _batches(pg_dsn)
    by_part: dict[int, list[tuple[Any, ...]]] = {}
    for r in rows:
        by_part.setdefault(r[0], []).append(r)
    assert sorted(by_part) == list(range(PARTS))
    took_over = 0
    for part, bs in by_part.items():
        _tiles(bs, final, f"partition {part}")
        # taken over from the killed replica: it committed streamed batches, then the survivor at a higher epoch
        dead = [b for b in bs if b[3] == victim and b[1] >= streamed_from]
        if dead:
            after = bs[bs.index(dead[-1]) + 1 :]
            assert after and all(b[3] == survivor and b[4] > dead[-1][4] for b in after), (part, bs)
            took_over += 1
    assert took_over >= 1, "no partition of the killed replica was taken over"
    # the events are exactly those of committed batches: nothing from the killed one's last batch
    events = catalog.query_events(0, 2**62, kind="anomaly")
    assert len(events) == sum(b[5] for b in rows)
    # and the detector still found the fault, across the handover
    assert root in {e.entity.get("entity") for e in events if e.kind == "anomaly.entity"}
    # the fleet loop (KPIs, drift, cost): one chain of batches, ending with the survivor
    fleet = _batches(pg_dsn, "fleet")
    _tiles(fleet, final, "fleet")
    assert fleet[-1][3] == survivor
    # the alert evaluation rounds: one chain too, the killed leader's then the survivor's
    rounds = _batches(pg_dsn, "alerting")
    owners = [k for k, _ in itertools.groupby(b[3] for b in rounds)]
    assert owners[-2:] == [victim, survivor], owners
    for a, b in itertools.pairwise(rounds):
        assert b[1] == a[2], f"alerting: rounds not chained {a} {b}"


def _check_incident(pg_dsn: str, fired: dict[str, Any], root: str, victim: str) -> None:
    incs = _incidents(pg_dsn)
    assert len(incs) == 1, [(i["id"], i["title"]) for i in incs]  # not one per replica, none lost
    inc = incs[0]
    assert inc["id"] == fired["id"] and inc["state"] == "resolved", (inc["state"], inc["resolved_by"])
    alerts = inc["alerts"]
    assert len(alerts) == 1 and alerts[0]["alertname"] == "GpuTooHot", alerts
    (before,) = fired["alerts"]
    # it fired once: the same firing time after the handover (no second pending period)
    assert alerts[0]["fingerprint"] == before["fingerprint"]
    assert alerts[0]["fired_at_ms"] == before["fired_at_ms"], (alerts[0], before)
    assert alerts[0]["state"] == "resolved"
    events = [e["event"] for e in inc["timeline"]]
    assert events.count("opened") <= 1 and "resolved" in events, events
    # the RCA the killed replica attached is still there, and names the hot GPU
    assert inc["rca"] is not None and not inc["rca_note"], inc["rca_note"]
    assert (inc["cause"] or {}).get("entity") == root, inc["cause"]


def _check_kpis(vm: Peer, uuid: str, lo: int, hi: int) -> None:
    """The GPU KPI series of the hot GPU: one sample every 10 s across the kill, none twice."""
    r = RemoteMetricStore(RemoteOptions(vm.url, None))
    try:
        got = r.select([Matcher("__name__", "=", "sightglass_gpu_sm_active_ratio"), Matcher("UUID", "=", uuid)],
                       lo, hi)  # fmt: skip
    finally:
        r.close()
    assert len(got) == 1, [s.key.text() for s in got]
    ts = got[0].ts_ms
    assert ts[0] == lo and ts[-1] == hi, (ts[0], ts[-1], lo, hi)
    bad = np.flatnonzero(np.diff(ts) != 10_000)
    assert not len(bad), [(int(ts[i] - lo), int(ts[i + 1] - ts[i])) for i in bad[:5]]
