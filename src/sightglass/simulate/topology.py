"""The factory: racks of 8-GPU nodes, InfiniBand leaf/spine fabric, shared storage, teams, prices.

Everything here is a pure function of ``(nodes, seed)``: GPU UUIDs, PCI bus ids and driver versions
come from a seeded generator, so the same seed builds the same factory byte for byte.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GPUS_PER_NODE = 8
NODES_PER_RACK = 4
HCAS_PER_NODE = 8
CPUS_REPORTED = 16  # node_exporter per-CPU series we emit (a real DGX has 224 logical CPUs)
DRIVER_VERSION = "550.144.03"
DRIFT_DRIVER_VERSION = "535.183.01"
# Bus ids of the 8 GPUs of an HGX H100 / DGX A100 board, as nvidia-smi shows them.
PCI_BUSES = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")


@dataclass(frozen=True, slots=True)
class GpuProfile:
    """Datasheet and nvidia-smi numbers (docs/calibration.md §D.1)."""

    name: str
    model_name: str
    tdp_w: float
    min_limit_w: float
    idle_w: float
    max_sm_clock: float
    idle_sm_clock: float
    mem_clock: float
    fb_total_mib: float
    max_operating_c: float
    slowdown_c: float
    shutdown_c: float
    r_thermal_c_per_w: float  # steady-state temperature rise over inlet per watt
    nvlink_gbps: float  # per-GPU NVLink bandwidth, GB/s
    price_usd_per_gpu_hour: float


H100 = GpuProfile(
    "H100",
    "NVIDIA H100 80GB HBM3",
    700.0,
    200.0,
    72.0,
    1980.0,
    345.0,
    2619.0,
    81559.0,
    87.0,
    89.0,
    92.0,
    0.062,
    900.0,
    2.49,
)
A100 = GpuProfile(
    "A100",
    "NVIDIA A100-SXM4-80GB",
    400.0,
    100.0,
    55.0,
    1410.0,
    210.0,
    1593.0,
    81920.0,
    85.0,
    89.0,
    92.0,
    0.110,
    600.0,
    1.50,
)

TEAMS = ("research", "search", "assistant", "ads", "platform")

PRICE_SHEET: dict[str, Any] = {
    "basis": "docs/calibration.md §E (2026 market ranges and derived defaults)",
    "gpu_hour_usd": {"H100": 2.49, "A100": 1.50},
    "energy_usd_per_kwh": 0.08,
    "pue": 1.3,
    "carbon_kg_per_kwh": 0.445,
    "capex_usd_per_gpu_hour": {"H100": 0.82, "A100": 0.45},
    "cloud_benchmark_usd_per_gpu_hour": {"aws_on_demand_h100": 6.88, "aws_capacity_block_h100": 4.92},
}


@dataclass(slots=True)
class Node:
    index: int
    hostname: str
    rack: str
    leaf: str
    profile: GpuProfile
    ip: str
    driver: str = DRIVER_VERSION


@dataclass(slots=True)
class Factory:
    """The static inventory. Per-GPU arrays are indexed ``node * 8 + gpu``."""

    seed: int
    nodes: list[Node]
    racks: list[str]
    leaves: list[str]
    spines: list[str]
    storage: str
    gpu_uuid: list[str]
    gpu_pci: list[str]
    is_a100: np.ndarray  # bool per GPU
    inlet_c: np.ndarray  # per GPU inlet temperature
    boot_energy_mj: np.ndarray  # energy counter at the start
    teams: tuple[str, ...] = TEAMS
    prices: dict[str, Any] = field(default_factory=lambda: dict(PRICE_SHEET))

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_gpus(self) -> int:
        return len(self.nodes) * GPUS_PER_NODE

    def gpu_profile_array(self, attr: str) -> np.ndarray:
        return np.where(self.is_a100, getattr(A100, attr), getattr(H100, attr)).astype(np.float64)

    def node_of_gpu(self, g: int) -> Node:
        return self.nodes[g // GPUS_PER_NODE]

    def nodes_in_rack(self, rack: str) -> list[Node]:
        return [n for n in self.nodes if n.rack == rack]

    def describe(self) -> dict[str, Any]:
        """A JSON-able inventory (written as ``factory.json``)."""
        return {
            "seed": self.seed,
            "racks": self.racks,
            "switches": {"leaf": self.leaves, "spine": self.spines},
            "storage": self.storage,
            "teams": list(self.teams),
            "prices": self.prices,
            "nodes": [
                {
                    "hostname": n.hostname,
                    "rack": n.rack,
                    "leaf": n.leaf,
                    "gpu": n.profile.name,
                    "ip": n.ip,
                    "driver": n.driver,
                    "gpus": [
                        {
                            "gpu": i,
                            "UUID": self.gpu_uuid[n.index * 8 + i],
                            "pci_bus_id": self.gpu_pci[n.index * 8 + i],
                        }
                        for i in range(GPUS_PER_NODE)
                    ],
                }
                for n in self.nodes
            ],
        }


def build_factory(n_nodes: int, seed: int, *, a100_fraction: float = 0.25) -> Factory:
    """Build a factory of ``n_nodes`` 8-GPU nodes (the last ``a100_fraction`` of them A100)."""
    if n_nodes < 1:
        raise ValueError("a factory needs at least one node")
    rng = np.random.default_rng([seed, 1])
    n_a100 = round(n_nodes * a100_fraction) if n_nodes >= 4 or a100_fraction >= 1 else 0
    width = max(2, len(str(n_nodes)))
    n_racks = math.ceil(n_nodes / NODES_PER_RACK)
    racks = [f"rack-{r + 1:0{max(2, len(str(n_racks)))}d}" for r in range(n_racks)]
    leaves = [f"leaf-{r + 1:0{max(2, len(str(n_racks)))}d}" for r in range(n_racks)]
    spines = [f"spine-{s + 1:02d}" for s in range(max(2, math.ceil(n_racks / 8)))]
    nodes: list[Node] = []
    for i in range(n_nodes):
        r = i // NODES_PER_RACK
        prof = A100 if i >= n_nodes - n_a100 else H100
        nodes.append(
            Node(
                i,
                f"node-{i + 1:0{width}d}",
                racks[r],
                leaves[r],
                prof,
                f"10.{r // 250}.{r % 250}.{i % 250 + 10}",
            )
        )
    n_gpus = n_nodes * GPUS_PER_NODE
    raw = rng.integers(0, 256, size=(n_gpus, 16), dtype=np.uint8)
    uuids = [f"GPU-{uuid.UUID(bytes=bytes(row.tolist()), version=4)}" for row in raw]
    pci = [f"00000000:{PCI_BUSES[g % 8]}:00.0" for g in range(n_gpus)]
    is_a100 = np.repeat(np.array([n.profile is A100 for n in nodes]), GPUS_PER_NODE)
    rack_inlet = rng.normal(24.0, 2.0, size=n_racks)
    inlet = np.repeat(rack_inlet, NODES_PER_RACK * GPUS_PER_NODE)[:n_gpus] + rng.normal(0, 0.6, n_gpus)
    # the board's position in the chassis airflow: the rear GPUs run a little warmer
    inlet += np.tile(np.array([0.0, 0.5, 1.0, 1.5, 0.0, 0.5, 1.0, 1.5]), n_nodes)
    uptime_s = rng.uniform(3, 90, size=n_nodes).repeat(GPUS_PER_NODE) * 86400
    boot_energy = np.floor(uptime_s * np.where(is_a100, 180.0, 320.0) * 1000.0)
    return Factory(
        seed=seed,
        nodes=nodes,
        racks=racks,
        leaves=leaves,
        spines=spines,
        storage="storage-01",
        gpu_uuid=uuids,
        gpu_pci=pci,
        is_a100=is_a100,
        inlet_c=inlet,
        boot_energy_mj=boot_energy,
    )
