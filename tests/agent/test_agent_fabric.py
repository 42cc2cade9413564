"""InfiniBand and NFS collectors, checked against node_exporter's own end-to-end fixture.

node_exporter's ``collector/fixtures/sys.ttar`` (its InfiniBand part, extracted to
``fixtures/sysfs``) and ``collector/fixtures/proc/10/mountstats`` are what it reads to produce
``e2e-output.txt`` (``../shared/data/exposition/node_exporter_e2e_output_linux.prom``). Our
collectors read the same files; the series they produce must be node_exporter's, value for value.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from agent_paths import EXPOSITION, FIXTURES
from prometheus_client.parser import text_string_to_metric_families

from sightglass.agent.collection import Collection
from sightglass.agent.infiniband import InfinibandCollector, parse_rate_bytes_per_second
from sightglass.agent.storage import LustreCollector, NFSCollector, parse_lustre_stats, parse_mountstats

E2E = EXPOSITION / "node_exporter_e2e_output_linux.prom"


def _expected(prefix: str) -> dict[str, float]:
    out = {}
    for fam in text_string_to_metric_families(E2E.read_text()):
        for s in fam.samples:
            if s.name.startswith(prefix):
                lb = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{lb}}}"] = float(s.value)
    return out


def _produced(col: Collection, prefix: str) -> dict[str, float]:
    out = {}
    for key, _ts, v in col.batch().rows():
        if key.metric.startswith(prefix):
            assert v is not None
            out[key.text()] = v
    return out


def test_infiniband_matches_node_exporter_exactly() -> None:
    col = Collection(0)
    InfinibandCollector({}, FIXTURES / "sysfs").collect(col)
    got = _produced(col, "node_infiniband_")
    want = _expected("node_infiniband_")
    assert len(want) == 51
    assert got == want


def test_infiniband_absent_is_quiet(tmp_path: Path) -> None:
    c = InfinibandCollector({}, tmp_path)
    col = Collection(0)
    c.collect(col)
    assert not c.present() and len(col) == 0


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("40 Gb/sec (4X QDR)", 5e9),
        ("400 Gb/sec (4X NDR)", 5e10),
        ("10 Gb/sec (4X)", 1.25e9),
        ("garbage", None),
        ("", None),
    ],
)
def test_rate_parsing(text: str, want: float | None) -> None:
    assert parse_rate_bytes_per_second(text) == want


def test_infiniband_tolerates_garbage_counters(tmp_path: Path) -> None:
    port = tmp_path / "class/infiniband/mlx5_0/ports/1"
    (port / "counters").mkdir(parents=True)
    (port / "counters/port_rcv_data").write_text("not a number\n")
    (port / "counters/port_xmit_data").write_text("12\n")
    (port / "state").write_text("")
    col = Collection(0)
    InfinibandCollector({"instance": "n1"}, tmp_path).collect(col)
    got = _produced(col, "node_infiniband_port")
    assert got == {
        'node_infiniband_port_data_transmitted_bytes_total{device="mlx5_0",instance="n1",port="1"}': 48.0
    }


def test_nfs_matches_node_exporter() -> None:
    col = Collection(0)
    NFSCollector({}, FIXTURES / "proc/mountstats").collect(col)
    got = _produced(col, "node_mountstats_nfs_")
    want = _expected("node_mountstats_nfs_")
    # node_exporter converts the per-op times through time.Duration, which overflows on the
    # fixture's 18446743919241604546 ms queue time; we report the counter as the kernel gave it
    overflow = 'node_mountstats_nfs_operations_queue_time_seconds_total{export="192.168.1.1:/srv/test",mountaddr="192.168.1.1",operation="ACCESS",protocol="udp"}'
    assert got.pop(overflow) == pytest.approx(18446743919241604.546)
    want.pop(overflow)
    common = set(got) & set(want)
    assert {k: got[k] for k in common} == {k: want[k] for k in common}
    # everything node_exporter reports that we mean to report, we do
    # (UDP has no connections: node_exporter prints zeros for connect/idle_time, we print nothing)
    missing = {
        k
        for k in set(want) - set(got)
        if "mountpoint_info" not in k
        and not ('protocol="udp"' in k and ("connect_total" in k or "idle_time" in k))
    }
    assert not missing, sorted(missing)[:5]
    assert len(common) >= 90


def test_mountstats_parser_skips_unknown_shapes() -> None:
    text = (
        "device srv:/x mounted on /x with fstype nfs4 statvers=1.1\n"
        "\tage:\tnot-a-number\n\tbytes:\t1 2 3\n\tper-op statistics\n\t        READ: 1 2\n"
        "device /dev/sda1 mounted on / with fstype ext4\n"
    )
    (m,) = parse_mountstats(text)
    assert m.age is None and m.bytes == [1, 2, 3] and m.ops == {"READ": [1, 2]}


LUSTRE_STATS = """snapshot_time             1589918401.352442405 secs.nsecs
read_bytes                4 samples [bytes] 4096 1048576 3145728
write_bytes               2 samples [bytes] 8192 8192 16384
open                      12 samples [usecs]
close                     12 samples [usecs]
"""


def test_lustre_client_stats(tmp_path: Path) -> None:
    d = tmp_path / "fs/lustre/llite/scratch-ffff8803c9b5a000"
    d.mkdir(parents=True)
    (d / "stats").write_text(LUSTRE_STATS)
    col = Collection(0)
    LustreCollector({}, (tmp_path,)).collect(col)
    got = _produced(col, "sightglass_lustre_")
    assert (
        got['sightglass_lustre_client_read_bytes_total{fs="scratch",instance_id="scratch-ffff8803c9b5a000"}']
        == 3145728
    )
    assert (
        got[
            'sightglass_lustre_client_operations_total{fs="scratch",instance_id="scratch-ffff8803c9b5a000",operation="open"}'
        ]
        == 12
    )
    assert list(parse_lustre_stats("garbage line\nx y samples\n")) == []


def test_host_collector_for_real() -> None:
    from sightglass.agent.host import HostCollector

    h = HostCollector(
        {"instance": "n1", "job": "sightglass-agent"}, entity={"Hostname": "n1"}, config_every_ms=60_000
    )
    col = Collection(1_000)
    h.collect(col)
    cpu = _produced(col, "node_cpu_seconds_total")
    modes = {k.split('mode="')[1].split('"')[0] for k in cpu}
    assert {"user", "system", "idle", "iowait"} <= modes and all(v >= 0 for v in cpu.values())
    (total,) = _produced(col, "node_memory_MemTotal_bytes").values()
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert total == int(meminfo["MemTotal"].split()[0]) * 1024  # the kernel's own figure
    assert _produced(col, "node_network_receive_bytes_total")
    assert all('instance="n1"' in k and 'job="sightglass-agent"' in k for k in _produced(col, "node_"))
    (snap,) = col.configs
    assert snap.entity == {"Hostname": "n1"} and snap.config["kernel"] == os.uname().release
    col2 = Collection(2_000)
    h.collect(col2)
    assert not col2.configs  # unchanged and not due
