"""The GPU collector on recorded real NVML values.

Two kinds of real records: ``nvidia-smi -q -x`` outputs of real GPUs (fixtures/*.xml, see
PROVENANCE.md), replayed through :class:`SmiXmlBackend`; and real dcgm-exporter output for a
Tesla T4 (``../shared/data/exposition/dcgm_exporter_datadog_fixture.prom``), replayed as NVML
readings so the series we emit can be compared, name, labels and value, with the series
dcgm-exporter emitted for the same readings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from agent_paths import EXPOSITION, FIXTURES

from sightglass.agent.collection import Collection
from sightglass.agent.config import AgentConfig
from sightglass.agent.gpu import READING_FIELDS, GpuCollector, open_gpu_collector
from sightglass.agent.nvml import GpuInfo, GpuProcess, GpuReading, MigInstance, NvLink, SystemInfo, XidEvent
from sightglass.agent.runner import Agent
from sightglass.agent.smi_xml import SmiXmlBackend


def _series(col: Collection, metric: str) -> dict[str, float]:
    out = {}
    for key, _ts, v in col.batch().rows():
        if key.metric == metric:
            assert v is not None
            out[key.text()] = v
    return out


def _one(col: Collection, metric: str) -> float:
    (v,) = _series(col, metric).values()
    return v


def _collect(
    backend: Any, ts: int = 1_000, host: str = "node-a", **kw: Any
) -> tuple[GpuCollector, Collection]:
    c = GpuCollector(backend, host, **kw)
    col = Collection(ts)
    c.collect(col)
    return c, col


# ------------------------------------------------------------------ dcgm-exporter parity
class _DcgmReplay:
    """NVML readings equal to what dcgm-exporter reported for one real GPU."""

    def __init__(self, rows: dict[str, float], labels: dict[str, str]) -> None:
        self.labels = labels
        r = GpuReading()
        for attr, metric, _t, _h in READING_FIELDS:
            if metric in rows:
                setattr(r, attr, rows[metric])
        self.r = r

    def system(self) -> SystemInfo:
        return SystemInfo(self.labels["DCGM_FI_DRIVER_VERSION"])

    def count(self) -> int:
        return 1

    def info(self, index: int) -> GpuInfo:
        return GpuInfo(0, self.labels["UUID"], self.labels["modelName"], minor_number=0)

    def reading(self, index: int) -> GpuReading:
        return self.r

    def nvlinks(self, index: int) -> list[NvLink]:
        return []

    def mig_instances(self, index: int) -> list[MigInstance]:
        return []

    def processes(self, index: int) -> list[GpuProcess]:
        return []

    def config(self, index: int) -> dict[str, Any]:
        return {}

    def xid_events(self) -> list[XidEvent]:
        return []

    def close(self) -> None:
        pass


def test_same_names_labels_and_values_as_dcgm_exporter() -> None:
    uuid = "GPU-20c56d28-0da5-6d26-a36a-e7af1ce2586e"
    rows: dict[str, float] = {}
    labels: dict[str, str] = {}
    # read the exposition lines as written (prometheus_client's parser renames counters to *_total)
    for line in (EXPOSITION / "dcgm_exporter_datadog_fixture.prom").read_text().splitlines():
        m = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if m and f'UUID="{uuid}"' in m.group(2):
            rows[m.group(1)] = float(m.group(3))
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
    ours = {m for _a, m, _t, _h in READING_FIELDS}
    covered = sorted(set(rows) & ours)
    # SM/MEM clock, temperature, power, energy, PCIe replays, GPU/mem-copy/enc/dec util, FB free/used
    assert len(covered) == 12, covered
    _, col = _collect(_DcgmReplay(rows, labels), host=labels["Hostname"], hostname_label="Hostname")
    want_labels = {
        k: v for k, v in labels.items() if k != "DCGM_FI_PROCESS_NAME"
    }  # the exporter's own process
    for metric in covered:
        (key,) = [k for k, _t, _v in col.batch().rows() if k.metric == metric]
        got = key.label_dict()
        assert {k: got[k] for k in want_labels} == want_labels, metric
        assert set(got) - set(want_labels) <= {"pci_bus_id"}, metric
        assert _one(col, metric) == rows[metric], metric
    md = col.batch().metadata
    assert md["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].type.value == "counter"
    assert md["DCGM_FI_DEV_GPU_TEMP"].type.value == "gauge"


# ------------------------------------------------------------------ nvidia-smi -q -x records
def test_a100_mig_ecc_power_temperatures() -> None:
    b = SmiXmlBackend.from_file(FIXTURES / "a100-sxm4-v12.xml")
    _, col = _collect(b)
    assert _one(col, "DCGM_FI_DEV_SM_CLOCK") == 1275
    assert _one(col, "DCGM_FI_DEV_MEM_CLOCK") == 1593
    assert _one(col, "DCGM_FI_DEV_POWER_USAGE") == 67.03
    assert _one(col, "DCGM_FI_DEV_POWER_MGMT_LIMIT") == 500
    assert _one(col, "DCGM_FI_DEV_GPU_TEMP") == 27
    assert _one(col, "DCGM_FI_DEV_MEMORY_TEMP") == 44  # HBM
    assert _one(col, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS") == 0
    assert _one(col, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL") == 0
    assert _one(col, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER") == 0
    assert _one(col, "DCGM_FI_PROF_PCIE_TX_BYTES") == 4000 * 1024
    assert "DCGM_FI_DEV_GPU_UTIL" not in {k.metric for k in col.batch().series}  # N/A under MIG: not 0
    mig = _series(col, "sightglass_gpu_mig_instance_info")
    assert len(mig) == 4
    fb = {k: v for k, v in _series(col, "DCGM_FI_DEV_FB_USED").items() if "GPU_I_ID" in k}
    assert sorted(fb.values()) == [12, 12, 12, 12]
    assert {k.split('GPU_I_ID="')[1].split('"')[0] for k in fb} == {"3", "4", "5", "6"}
    (cfg,) = col.configs
    assert cfg.entity == {
        "Hostname": "node-a",
        "gpu": "0",
        "UUID": "GPU-513536b6-7d19-9063-b049-1e69664bb298",
    }
    assert cfg.config["driver_version"] == "535.54.03" and cfg.config["cuda_driver_version"] == "12.2"
    assert cfg.config["vbios_version"] == "92.00.36.00.02"
    assert cfg.config["ecc_mode_current"] == "Enabled" and cfg.config["mig_mode_current"] == "Enabled"
    assert cfg.config["power_limit_w"] == 500 and cfg.config["applications_sm_clock_mhz"] == 1275


def test_a10g_idle_reason_bit_and_row_remapping() -> None:
    _, col = _collect(SmiXmlBackend.from_file(FIXTURES / "a10g.xml"))
    assert _one(col, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS") == 0x1  # clocks_throttle_reason_gpu_idle: Active
    assert _one(col, "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS") == 0
    assert _one(col, "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS") == 0
    assert _one(col, "DCGM_FI_DEV_ROW_REMAP_FAILURE") == 0
    assert _one(col, "DCGM_FI_DEV_ROW_REMAP_PENDING") == 0


def test_schema_v13_power_and_reasons() -> None:
    _, col = _collect(SmiXmlBackend.from_file(FIXTURES / "rtx-4000-sff-ada-v13.xml"))
    assert _one(col, "DCGM_FI_DEV_POWER_USAGE") == 8.44  # instant_power_draw
    assert _one(col, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS") == 0x1
    assert _one(col, "DCGM_FI_DEV_FAN_SPEED") == 30
    assert _one(col, "DCGM_FI_DEV_PSTATE") == 8
    assert "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" not in {k.metric for k in col.batch().series}  # N/A on this card


def test_per_process_memory_with_attribution_labels() -> None:
    def labels(pid: int) -> dict[str, str]:
        return {"pod": f"pod-of-{pid}", "user": "alice"}

    _, col = _collect(SmiXmlBackend.from_file(FIXTURES / "tesla-t4.xml"), process_labels=labels)
    mem = _series(col, "sightglass_gpu_process_memory_used_bytes")
    assert len(mem) == 2
    xorg = [k for k in mem if 'pid="675"' in k]
    assert xorg and 'pod="pod-of-675"' in xorg[0] and 'command="Xorg"' in xorg[0] and 'type="G"' in xorg[0]
    assert mem[xorg[0]] == 22 * 1024 * 1024


def test_a_gpu_that_falls_off_the_bus_is_seen() -> None:
    b = SmiXmlBackend.from_file(FIXTURES / "a100-sxm4-v12.xml", replicate=8)
    c = GpuCollector(b, "node-a", expected_gpus=8)
    col = Collection(1_000)
    c.collect(col)
    assert _one(col, "sightglass_gpu_present") == 8 and not col.events
    assert sorted(_series(col, "sightglass_gpu_up").values()) == [1] * 8
    b.lost.add(3)  # NVML_ERROR_GPU_IS_LOST from now on
    col = Collection(2_000)
    c.collect(col)
    assert _one(col, "sightglass_gpu_present") == 7 and _one(col, "sightglass_gpu_expected") == 8
    up = _series(col, "sightglass_gpu_up")
    assert [k for k, v in up.items() if v == 0] == [k for k in up if 'gpu="3"' in k]
    (ev,) = col.events
    assert ev.kind == "gpu.missing" and ev.severity == "critical" and ev.entity["gpu"] == "3"
    assert not any('gpu="3"' in k for k in _series(col, "DCGM_FI_DEV_SM_CLOCK"))
    col = Collection(3_000)
    c.collect(col)
    assert not col.events  # said once
    b.lost.clear()
    col = Collection(4_000)
    c.collect(col)
    assert [e.kind for e in col.events] == ["gpu.returned"]


def test_xids_are_events_and_a_true_counter() -> None:
    b = SmiXmlBackend.from_file(FIXTURES / "tesla-t4.xml")
    c = GpuCollector(b, "node-a")
    uuid = b.gpus[0].info.uuid
    b.xids = [XidEvent(uuid, 79, 1_500), XidEvent(uuid, 79, 1_600), XidEvent(uuid, 13, 1_700)]
    col = Collection(2_000)
    c.collect(col)
    kinds = [(e.kind, e.attributes["xid"], e.severity) for e in col.events]
    assert kinds == [("gpu.xid", 79, "critical"), ("gpu.xid", 79, "critical"), ("gpu.xid", 13, "warning")]
    assert col.events[0].attributes["err_msg"] == "GPU has fallen off the bus"
    counts = {
        k.split('xid="')[1].split('"')[0]: v
        for k, v in _series(col, "sightglass_gpu_xid_errors_total").items()
    }
    assert counts == {"79": 2, "13": 1}
    col = Collection(3_000)
    c.collect(col)  # no new XID: no event, the counter stays
    assert not col.events and sorted(_series(col, "sightglass_gpu_xid_errors_total").values()) == [1, 2]


def test_config_snapshot_only_when_changed_or_due() -> None:
    b = SmiXmlBackend.from_file(FIXTURES / "tesla-t4.xml")
    c = GpuCollector(b, "node-a", config_every_ms=600_000)  # resend every 10 min, look once a minute
    el = b.gpus[0].el.find("persistence_mode")
    assert el is not None
    for ts, want in (
        (0, 1),
        (10_000, 0),
        (20_000, "change"),
        (30_000, 0),
        (60_000, 1),
        (120_000, 0),
        (600_000, 0),
        (660_000, 1),
    ):
        if want == "change":
            el.text = "Enabled"
            want = 0
        col = Collection(ts)
        c.collect(col)
        assert len(col.configs) == want, ts
        if want:
            assert col.configs[0].config["persistence_mode"] == ("Enabled" if ts >= 60_000 else "Disabled")


def test_nvlink_state_errors_and_throughput() -> None:
    b = SmiXmlBackend.from_file(FIXTURES / "a100-sxm4-v12.xml")
    b.nvlink_state[0] = [
        NvLink(0, True, 1, 0, 2, 0, tx_kib=1000, rx_kib=500),
        NvLink(1, False, 0, 0, 0, 1, tx_kib=0, rx_kib=0),
    ]
    c, col = _collect(b, ts=1_000)
    assert sorted(_series(col, "sightglass_gpu_nvlink_up").values()) == [0, 1]
    assert _one(col, "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL") == 1
    assert _one(col, "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL") == 2
    assert _one(col, "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL") == 1
    assert "DCGM_FI_PROF_NVLINK_TX_BYTES" not in {k.metric for k in col.batch().series}  # needs two readings
    b.nvlink_state[0] = [NvLink(0, True, tx_kib=3000, rx_kib=1500), NvLink(1, False, tx_kib=0, rx_kib=0)]
    col = Collection(3_000)
    c.collect(col)
    assert _one(col, "DCGM_FI_PROF_NVLINK_TX_BYTES") == 2000 * 1024 / 2
    assert _one(col, "DCGM_FI_PROF_NVLINK_RX_BYTES") == 1000 * 1024 / 2


def test_without_nvidia_hardware_one_line_and_the_rest_goes_on() -> None:
    gpu, note = open_gpu_collector(AgentConfig())
    assert gpu is None
    assert note.startswith("gpu: no NVIDIA GPU collection on this host: ") and "\n" not in note
    assert "NVML" in note


class _Broken:
    name = "broken"

    def collect(self, out: Collection) -> None:
        raise OSError("sensor gone")


def test_a_failing_collector_does_not_stop_the_others() -> None:
    b = SmiXmlBackend.from_file(FIXTURES / "tesla-t4.xml")

    class _Null:
        def publish(self, col: Collection) -> None:
            pass

    agent = Agent(AgentConfig(hostname="n1"), [_Broken(), GpuCollector(b, "n1")], _Null())
    col = agent.collect_once()
    assert col.errors == {"broken": "OSError: sensor gone"}
    up = {
        k.split('collector="')[1].split('"')[0]: v
        for k, v in _series(col, "sightglass_agent_collector_up").items()
    }
    assert up == {"broken": 0, "gpu": 1}
    assert _series(col, "DCGM_FI_DEV_GPU_TEMP")


@pytest.mark.parametrize(
    "xml",
    [
        "<nvidia_smi_log></nvidia_smi_log>",
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><nvidia_smi_log><gpu><uuid>&e;</uuid></gpu></nvidia_smi_log>',
        "<nvidia_smi_log><gpu>",
    ],
)
def test_bad_xml_is_refused(xml: str) -> None:
    with pytest.raises(Exception) as e:
        SmiXmlBackend(xml)
    assert type(e.value).__name__ in ("ValueError", "ParseError")


def test_a_restarted_agent_still_misses_a_gpu(tmp_path: Path) -> None:
    inv = tmp_path / "gpu-inventory.json"
    b = SmiXmlBackend.from_file(FIXTURES / "a100-sxm4-v12.xml", replicate=4)
    GpuCollector(b, "node-a", inventory_path=inv).collect(Collection(1_000))
    b.lost.add(2)  # falls off the bus while the agent is down
    after = GpuCollector(b, "node-a", inventory_path=inv)
    col = Collection(2_000)
    after.collect(col)
    assert [(e.kind, e.entity["gpu"]) for e in col.events] == [("gpu.missing", "2")]
    assert _one(col, "sightglass_gpu_expected") == 4 and _one(col, "sightglass_gpu_present") == 3
    inv.write_text("{not json")
    GpuCollector(b, "node-a", inventory_path=inv).collect(Collection(3_000))  # a damaged file is not fatal


def test_nvidia_devices_on_the_pci_bus(tmp_path: Path) -> None:
    for name, vendor, cls in (
        ("0000:17:00.0", "0x10de", "0x030200"),
        ("0000:18:00.0", "0x10de", "0x068000"),
        ("0000:19:00.0", "0x15b3", "0x020700"),
        ("0000:1a:00.0", "0x10de", "0x030000"),
    ):
        d = tmp_path / "bus/pci/devices" / name
        d.mkdir(parents=True)
        (d / "vendor").write_text(vendor + "\n")
        (d / "class").write_text(cls + "\n")
    _, col = _collect(SmiXmlBackend.from_file(FIXTURES / "tesla-t4.xml"), sysfs=tmp_path)
    assert _one(col, "sightglass_gpu_pci_devices") == 2  # the NVSwitch (0x0680) and the NIC do not count
