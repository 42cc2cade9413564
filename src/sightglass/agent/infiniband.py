"""InfiniBand (and RoCE) port counters from sysfs, named as node_exporter names them.

Reads ``<sysfs>/class/infiniband/<device>/ports/<port>/{counters,counters_ext}/*`` plus ``state``,
``phys_state`` and ``rate``. The ``*_data`` counters count 4-octet words (IBA spec 16.1.3.5), so
they are multiplied by 4 into bytes, as node_exporter does; a counter the HCA cannot read
(``N/A (no PMA)``) is not reported at all. Checked against node_exporter's own end-to-end fixture
(``tests/agent/test_infiniband.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from sightglass.agent.collection import Collection
from sightglass.model import MetricType

C = MetricType.COUNTER

# sysfs counter file -> (metric suffix, multiplier, help)
_COUNTERS: dict[str, tuple[str, int, str]] = {
    "excessive_buffer_overrun_errors": (
        "excessive_buffer_overrun_errors_total",
        1,
        "Consecutive flow-control update periods with an overrun error.",
    ),
    "link_downed": (
        "link_downed_total",
        1,
        "Number of times the link failed to recover from an error state and went down",
    ),
    "link_error_recovery": (
        "link_error_recovery_total",
        1,
        "Number of times the link successfully recovered from an error state",
    ),
    "local_link_integrity_errors": (
        "local_link_integrity_errors_total",
        1,
        "Times the count of local physical errors exceeded LocalPhyErrors.",
    ),
    "multicast_rcv_packets": (
        "multicast_packets_received_total",
        1,
        "Number of multicast packets received (including errors)",
    ),
    "multicast_xmit_packets": (
        "multicast_packets_transmitted_total",
        1,
        "Number of multicast packets transmitted (including errors)",
    ),
    "port_rcv_constraint_errors": (
        "port_constraint_errors_received_total",
        1,
        "Number of packets received on the switch physical port that are discarded",
    ),
    "port_xmit_constraint_errors": (
        "port_constraint_errors_transmitted_total",
        1,
        "Number of packets not transmitted from the switch physical port",
    ),
    "port_rcv_data": ("port_data_received_bytes_total", 4, "Number of data octets received on all links"),
    "port_xmit_data": (
        "port_data_transmitted_bytes_total",
        4,
        "Number of data octets transmitted on all links",
    ),
    "port_rcv_discards": (
        "port_discards_received_total",
        1,
        "Number of inbound packets discarded by the port because the port is down or congested",
    ),
    "port_xmit_discards": (
        "port_discards_transmitted_total",
        1,
        "Number of outbound packets discarded by the port because the port is down or congested",
    ),
    "port_rcv_errors": (
        "port_errors_received_total",
        1,
        "Number of packets containing an error that were received on this port",
    ),
    "port_rcv_packets": (
        "port_packets_received_total",
        1,
        "Number of packets received on all VLs by this port (including errors)",
    ),
    "port_xmit_packets": (
        "port_packets_transmitted_total",
        1,
        "Number of packets transmitted on all VLs from this port (including errors)",
    ),
    "port_xmit_wait": (
        "port_transmit_wait_total",
        1,
        "Ticks during which the port had data to transmit but sent none (congestion)",
    ),
    "unicast_rcv_packets": (
        "unicast_packets_received_total",
        1,
        "Number of unicast packets received (including errors)",
    ),
    "unicast_xmit_packets": (
        "unicast_packets_transmitted_total",
        1,
        "Number of unicast packets transmitted (including errors)",
    ),
    "port_rcv_remote_physical_errors": (
        "port_receive_remote_physical_errors_total",
        1,
        "Packets marked with the EBP delimiter received on the port.",
    ),
    "port_rcv_switch_relay_errors": (
        "port_receive_switch_relay_errors_total",
        1,
        "Packets that could not be forwarded by the switch.",
    ),
    "symbol_error": (
        "symbol_error_total",
        1,
        "Number of minor link errors detected on one or more physical lanes.",
    ),
    "VL15_dropped": ("vl15_dropped_total", 1, "Incoming VL15 packets dropped due to resource limitations."),
}
_COUNTERS_EXT: dict[str, tuple[str, int, str]] = {
    "port_multicast_rcv_packets": (
        "legacy_multicast_packets_received_total",
        1,
        "Number of multicast packets received",
    ),
    "port_multicast_xmit_packets": (
        "legacy_multicast_packets_transmitted_total",
        1,
        "Number of multicast packets transmitted",
    ),
    "port_rcv_data_64": (
        "legacy_data_received_bytes_total",
        4,
        "Number of data octets received on all links",
    ),
    "port_rcv_packets_64": (
        "legacy_packets_received_total",
        1,
        "Number of data packets received on all links",
    ),
    "port_unicast_rcv_packets": (
        "legacy_unicast_packets_received_total",
        1,
        "Number of unicast packets received",
    ),
    "port_unicast_xmit_packets": (
        "legacy_unicast_packets_transmitted_total",
        1,
        "Number of unicast packets transmitted",
    ),
    "port_xmit_data_64": (
        "legacy_data_transmitted_bytes_total",
        4,
        "Number of data octets transmitted on all links",
    ),
    "port_xmit_packets_64": (
        "legacy_packets_transmitted_total",
        1,
        "Number of data packets received on all links",
    ),
}
_RATE_RE = re.compile(r"^\s*([\d.]+)\s*Gb/sec")


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None  # "N/A (no PMA)"


def _leading_int(text: str | None) -> int | None:
    """``"4: ACTIVE"`` -> 4."""
    if not text:
        return None
    head = text.split(":", 1)[0].strip()
    return int(head) if head.isdigit() else None


def parse_rate_bytes_per_second(text: str | None) -> float | None:
    """``"40 Gb/sec (4X QDR)"`` -> 5e9 bytes/s."""
    m = _RATE_RE.match(text or "")
    return float(m.group(1)) * 1e9 / 8 if m else None


class InfinibandCollector:
    """Every port of every HCA under ``<sysfs>/class/infiniband``; absent class = nothing, no error."""

    name = "infiniband"

    def __init__(self, base_labels: Mapping[str, str], sysfs: str | Path = "/sys") -> None:
        self.base = dict(base_labels)
        self.root = Path(sysfs) / "class" / "infiniband"

    def present(self) -> bool:
        return self.root.is_dir()

    def collect(self, out: Collection) -> None:
        if not self.root.is_dir():
            return
        for dev in sorted(self.root.iterdir()):
            d = dev.name
            out.add(
                "node_infiniband_info",
                {
                    **self.base,
                    "device": d,
                    "board_id": _read(dev / "board_id") or "",
                    "firmware_version": _read(dev / "fw_ver") or "",
                    "hca_type": _read(dev / "hca_type") or "",
                },
                1,
                help="Non-numeric data from /sys/class/infiniband/<device>, value is always 1.",
            )
            ports = dev / "ports"
            if not ports.is_dir():
                continue
            for port in sorted(ports.iterdir(), key=lambda p: (len(p.name), p.name)):
                self._port(out, d, port)

    def _port(self, out: Collection, device: str, port: Path) -> None:
        lb = {**self.base, "device": device, "port": port.name}
        out.add(
            "node_infiniband_state_id",
            lb,
            _leading_int(_read(port / "state")),
            help="State of the InfiniBand port (0: no change, 1: down, 2: init, 3: armed, 4: active, 5: act defer)",
        )
        out.add(
            "node_infiniband_physical_state_id",
            lb,
            _leading_int(_read(port / "phys_state")),
            help="Physical state of the InfiniBand port (0: no change, 1: sleep, 2: polling, 3: disable, 4: shift, 5: link up, 6: link error recover, 7: phytest)",
        )
        out.add(
            "node_infiniband_rate_bytes_per_second",
            lb,
            parse_rate_bytes_per_second(_read(port / "rate")),
            help="Maximum signal transfer rate",
        )
        for sub, table in (("counters", _COUNTERS), ("counters_ext", _COUNTERS_EXT)):
            cdir = port / sub
            if not cdir.is_dir():
                continue
            for f in cdir.iterdir():
                spec = table.get(f.name)
                if spec is None:
                    continue
                v = _int(_read(f))
                if v is None:
                    continue
                suffix, mult, help_ = spec
                out.add(f"node_infiniband_{suffix}", lb, v * mult, type=C, help=help_)
