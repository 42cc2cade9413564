"""What each simulated exporter exposes: names, labels and units exactly as the real exporters.

dcgm-exporter (default counters + the profiling, clock-event, ECC and NVLink fields; labels gpu,
UUID, pci_bus_id, device, modelName, Hostname, DCGM_FI_DRIVER_VERSION, plus pod/namespace/container
when a pod holds the GPU and ``hpc_job`` for Slurm jobs), node_exporter (cpu, memory, pressure, disk,
filesystem, network, InfiniBand, NFS mountstats), vLLM ``/metrics``, kube-state-metrics basics, and
three exporters we mint names for (docs/conventions.md §9): the trainer, the pipeline scheduler and
the fabric manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sightglass.simulate.exposition import Frame
from sightglass.simulate.families import (
    DEC,
    DRAM,
    ECC_DBE,
    ECC_SBE,
    ENC,
    ENERGY,
    F_SW,
    F_SW_WAIT,
    FB_FREE,
    FB_RES,
    FB_USED,
    GPU_TEMP,
    GPU_UTIL,
    GR_ACTIVE,
    IB_DOWN,
    IB_ERR,
    IB_PHYS,
    IB_PRX,
    IB_PTX,
    IB_RATE,
    IB_RECOV,
    IB_RX,
    IB_STATE,
    IB_TX,
    IB_WAIT,
    K_ALLOC,
    K_LABELS,
    K_NODE,
    K_PHASE,
    K_POD,
    K_REQ,
    K_RESTART,
    MEM_CLOCK,
    MEM_COPY,
    MEM_TEMP,
    N_CPU,
    N_DISK_IO,
    N_DISK_R,
    N_DISK_W,
    N_FS_AVAIL,
    N_FS_SIZE,
    N_LOAD1,
    N_MEM_AVAIL,
    N_MEM_TOTAL,
    N_NET_RX,
    N_NET_TX,
    N_OOM,
    N_PSI_CPU,
    N_PSI_IO,
    N_PSI_MEM,
    NFS_READ,
    NFS_REQ,
    NFS_RESP,
    NVLINK_BW,
    NVLINK_CRC,
    P_FRESH,
    P_LAST,
    P_RUNNING,
    P_RUNS,
    PCIE_REPLAY,
    PCIE_RX,
    PCIE_TX,
    POWER,
    POWER_LIMIT,
    PWR_VIOL,
    REASONS,
    ROW_FAIL,
    ROWS_COR,
    ROWS_UNC,
    SM_ACTIVE,
    SM_CLOCK,
    SM_OCC,
    T_DL,
    T_LOSS,
    T_RANK,
    T_STEP,
    T_STEPS,
    TENSOR,
    THERM_VIOL,
    V_CFG,
    V_E2E,
    V_GEN,
    V_ITL,
    V_KV,
    V_OK,
    V_PH,
    V_PQ,
    V_PRE,
    V_PROMPT,
    V_QUEUE,
    V_RUN,
    V_TTFT,
    V_WAIT,
    XID,
)
from sightglass.simulate.faults import XID_MESSAGES
from sightglass.simulate.physics import GpuState
from sightglass.simulate.topology import CPUS_REPORTED, GPUS_PER_NODE, HCAS_PER_NODE, NODES_PER_RACK, Factory

if TYPE_CHECKING:
    from sightglass.simulate.engine import Mods, Simulator

NFS_EXPORT = "storage-01:/shared"
NFS_ADDR = "10.0.255.1"
CPU_MODES = ("idle", "iowait", "system", "user")


class HostState:
    """node_exporter counters per node."""

    def __init__(self, n: int, rng: np.random.Generator, f: Factory) -> None:
        self.cpu = rng.uniform(1e5, 1e6, size=(n, CPUS_REPORTED, len(CPU_MODES)))
        self.mem_total = np.array(
            [2 * 1024**4 if nd.profile.name == "H100" else 1024**4 for nd in f.nodes], float
        )
        self.mem_avail = self.mem_total * 0.8
        self.util = np.zeros(n)
        self.load1 = np.zeros(n)
        self.psi = np.zeros((n, 3))
        self.oom = np.zeros(n)
        self.disk = rng.uniform(1e11, 1e12, size=(n, 3))
        self.net = rng.uniform(1e11, 1e12, size=(n, 2))
        self.ib = np.floor(rng.uniform(1e12, 1e13, size=(n, HCAS_PER_NODE, 7)))
        self.ib_up = np.ones((n, HCAS_PER_NODE), bool)
        self.ib_tx = np.zeros(n)
        # switch-to-switch ports, [leaf, spine, 0]: the leaf's uplink, [leaf, spine, 1]: the spine's
        # downlink; their own generator, so adding them left every other series as it was
        self.port_rng = np.random.default_rng([f.seed, 0x5717C4])
        self.leaf_of = np.array([f.leaves.index(nd.leaf) for nd in f.nodes], dtype=np.int64)
        self.sw_tw = np.floor(self.port_rng.uniform(1e9, 1e10, size=(len(f.leaves), len(f.spines), 2)))
        self.nfs = np.floor(rng.uniform(1e10, 1e11, size=(n, 3)))
        self.fs_avail = rng.uniform(0.4, 0.8, n)
        self.oom_done: set[str] = set()

    def step(self, sim: Simulator, m: Mods) -> None:
        f = sim.factory
        n, dt, rng = f.n_nodes, sim.dt, sim.rng
        role = np.full(n, 0.012)
        train_nodes = [x for j in sim.jobs for x in j.nodes]
        role[train_nodes] = 0.19
        for s in sim.services:
            role[s.nodes] = 0.07
        util = np.clip(role * rng.lognormal(0, 0.15, n) + m.cpu_extra, 0, 0.99)
        self.util = util
        iow = 0.002 * m.storage_mult * np.where(role > 0.1, 4.0, 1.0)
        frac = np.stack([1.0 - util - iow - 0.01 * 0, iow, util * 0.15 + 0.004, util * 0.85], axis=1)
        frac[:, 0] = np.clip(1.0 - frac[:, 1:].sum(axis=1), 0.0, 1.0)
        self.cpu += frac[:, None, :] * dt * rng.uniform(0.97, 1.03, size=self.cpu.shape)
        used = np.where(role > 0.1, 0.32, np.where(role > 0.05, 0.16, 0.05))
        used = used + m.mem_pressure * (0.985 - used)
        self.mem_avail = np.floor(self.mem_total * (1.0 - used) * rng.uniform(0.995, 1.0, n))
        self.load1 = util * 224 * rng.uniform(0.9, 1.1, n)
        self.psi[:, 0] += dt * np.maximum(0.0, util - 0.6) * 1.5
        self.psi[:, 1] += dt * 0.0005 * m.storage_mult * (role > 0.1)
        self.psi[:, 2] += dt * 0.7 * m.mem_pressure**2
        for fl in sim.active_faults():
            if fl.fault == "host_oom" and fl.id not in self.oom_done and sim.now_ms - fl.start_ms >= 120_000:
                self.oom_done.add(fl.id)
                node = fl.target["node"]
                self.oom[node] += 1
                host = f.nodes[node].hostname
                sim.events.append(sim._event(sim.now_ms, "node.oom_kill", {"Hostname": host}, {}, "critical"))
                job = sim._job_on_node(node)
                if job is not None:
                    sim._finish_job(job, "FAILED", sim.now_ms, "OOM killed (host memory)")
                for svc in sim.services:
                    if node in svc.nodes:
                        pod = svc.pods[svc.nodes.index(node)]
                        sim.restarts[pod] = sim.restarts.get(pod, 0) + 1
        self.disk[:, 0] += dt * (5e6 + 3e7 * (role > 0.1))
        self.disk[:, 1] += dt * (2e6 + 1e7 * (role > 0.1))
        self.disk[:, 2] += dt * np.clip(0.05 + 0.2 * (role > 0.1), 0, 1)
        self.net[:, 0] += dt * (1e6 + 2e7 * (role > 0.05)) * rng.uniform(0.8, 1.2, n)
        self.net[:, 1] += dt * (1e6 + 2.5e7 * (role > 0.05)) * rng.uniform(0.8, 1.2, n)
        # InfiniBand: per HCA bytes, packets, errors, link-downs, recoveries, transmit wait
        was_up = self.ib_up.copy()
        self.ib_up = ~m.ib_down
        per_hca = (self.ib_tx[:, None] / HCAS_PER_NODE + dt * 2e5) * self.ib_up
        self.ib[:, :, 0] += np.floor(per_hca * rng.uniform(0.98, 1.02, per_hca.shape))
        self.ib[:, :, 1] += np.floor(per_hca * rng.uniform(0.98, 1.02, per_hca.shape))
        self.ib[:, :, 2] += np.floor(per_hca / 4096)
        self.ib[:, :, 3] += np.floor(per_hca / 4096)
        self.ib[:, :, 4] += rng.poisson(m.ib_err * 25 * dt)
        self.ib[:, :, 5] += was_up & ~self.ib_up
        self.ib[:, :, 6] += rng.poisson(m.ib_err * 0.3 * dt + 1e-5 * dt)
        wait = per_hca / 4096 * 0.02 * (m.ib_wait[:, None] ** 2 - 0.5)
        self.ib_wait = np.floor(np.maximum(wait, 0))
        self.ib_tw = getattr(self, "ib_tw", np.zeros((n, HCAS_PER_NODE))) + self.ib_wait
        # the leaf's nodes' traffic leaves the rack over every spine alike (ECMP). PortXmitWait counts
        # ticks with data to send and no credit from the receiver: a congested spine withholds credits
        # from the leaf uplinks that feed it; its own ports toward the leaves keep sending
        n_sp = self.sw_tw.shape[1]
        leaf_pkts = np.bincount(self.leaf_of, weights=per_hca.sum(axis=1), minlength=self.sw_tw.shape[0]) / 4096 / n_sp
        w = np.stack([m.spine_wait, np.ones_like(m.spine_wait)], axis=-1)  # [spine, side]
        pw = leaf_pkts[:, None, None] * 0.02 * (w[None, :, :] ** 2 - 0.5)
        self.sw_tw += np.floor(np.maximum(pw, 0) * self.port_rng.uniform(0.9, 1.1, self.sw_tw.shape))
        self.ib_tx = np.zeros(n)
        # NFS reads of the shared dataset by training data loaders
        reading = (role > 0.1).astype(float)
        rb = dt * (1e8 + 2e8 * reading) / np.sqrt(m.storage_mult)
        ops = np.floor(rb / (1 << 20))
        self.nfs[:, 0] += np.floor(rb)
        self.nfs[:, 1] += ops
        self.nfs[:, 2] += ops * 0.0018 * m.storage_mult * rng.uniform(0.9, 1.1, n)


class Emitter:
    """Turns the simulator's state into a :class:`Frame`, with label sets interned once."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        L, f = sim.labels, sim.factory
        self.dcgm_t = [L.target_id("dcgm-exporter", f"{nd.hostname}:9400") for nd in f.nodes]
        self.node_t = [L.target_id("node-exporter", f"{nd.hostname}:9100") for nd in f.nodes]
        self.trainer_t = [L.target_id("trainer", f"{nd.hostname}:9500") for nd in f.nodes]
        self.vllm_t = [L.target_id("vllm", f"{f.nodes[int(n)].hostname}:8000") for n in sim.inf.rep_node]
        self.ksm_t = L.target_id("kube-state-metrics", "kube-state-metrics:8080")
        self.pipe_t = L.target_id("pipeline-exporter", "pipelines:9600")
        self.fabric_t = L.target_id("fabric", "ufm:9700")
        self._valid = False
        self.gpu_ids = np.zeros(f.n_gpus, dtype=np.int64)
        self.xid_ids = np.zeros(f.n_gpus, dtype=np.int64)
        self._node_ids()

    def invalidate(self) -> None:
        self._valid = False

    def _node_ids(self) -> None:
        L, f = self.sim.labels, self.sim.factory
        nt = self.node_t
        self.cpu_ids = np.array(
            [
                L.intern((("cpu", str(c)), ("mode", mode)), nt[nd.index])
                for nd in f.nodes
                for c in range(CPUS_REPORTED)
                for mode in CPU_MODES
            ]
        )
        self.node_ids = np.array([L.intern((), nt[nd.index]) for nd in f.nodes])
        self.disk_ids = np.array([L.intern((("device", "nvme0n1"),), nt[nd.index]) for nd in f.nodes])
        self.net_ids = np.array([L.intern((("device", "eth0"),), nt[nd.index]) for nd in f.nodes])
        self.fs_ids = np.array(
            [
                [
                    L.intern((("device", dev), ("fstype", fs), ("mountpoint", mp)), nt[nd.index])
                    for dev, fs, mp in (("/dev/md0", "ext4", "/"), (NFS_EXPORT, "nfs4", "/mnt/shared"))
                ]
                for nd in f.nodes
            ]
        )
        self.ib_ids = np.array(
            [
                L.intern((("device", f"mlx5_{h}"), ("port", "1")), nt[nd.index])
                for nd in f.nodes
                for h in range(HCAS_PER_NODE)
            ]
        )
        self.nfs_ids = np.array(
            [
                L.intern((("export", NFS_EXPORT), ("mountaddr", NFS_ADDR), ("protocol", "tcp")), nt[nd.index])
                for nd in f.nodes
            ]
        )
        self.nfs_op_ids = np.array(
            [
                L.intern(
                    (
                        ("export", NFS_EXPORT),
                        ("mountaddr", NFS_ADDR),
                        ("operation", "READ"),
                        ("protocol", "tcp"),
                    ),
                    nt[nd.index],
                )
                for nd in f.nodes
            ]
        )
        self.sw = [(s, "leaf") for s in f.leaves] + [(s, "spine") for s in f.spines]
        self.sw_ids = np.array([L.intern((("switch", s), ("tier", t)), self.fabric_t) for s, t in self.sw])
        # switch-to-switch ports: leaf uplinks after the leaf's host ports, spine ports by leaf
        up0 = NODES_PER_RACK * HCAS_PER_NODE
        self.port_ids = np.array(
            [
                [
                    L.intern(
                        (("port", str(up0 + k + 1) if side == 0 else str(i + 1)),
                         ("remote_switch", sp if side == 0 else lf),
                         ("switch", lf if side == 0 else sp),
                         ("tier", "leaf" if side == 0 else "spine")),
                        self.fabric_t,
                    )
                    for side in (0, 1)
                ]
                for i, lf in enumerate(f.leaves)
                for k, sp in enumerate(f.spines)
            ],
            dtype=np.int64,
        ).ravel()

    def _gpu_labels(self) -> None:
        sim, L, f = self.sim, self.sim.labels, self.sim.factory
        attrib: dict[int, tuple[tuple[str, str], ...]] = {}
        for svc in sim.services:
            for k, node_i in enumerate(svc.nodes):
                for g in range(node_i * 8, node_i * 8 + 8):
                    attrib[g] = (("container", "vllm"), ("namespace", "inference"), ("pod", svc.pods[k]))
        for h in sim.holds:
            for g in h.gpus:
                attrib[g] = (("container", "notebook"), ("namespace", h.namespace), ("pod", h.pod))
        for j in sim.jobs:
            for g in j.gpus.tolist():
                attrib[g] = (("hpc_job", str(j.job_id)),)
        for g in range(f.n_gpus):
            nd = f.nodes[g // GPUS_PER_NODE]
            base = (
                ("gpu", str(g % 8)),
                ("UUID", f.gpu_uuid[g]),
                ("pci_bus_id", f.gpu_pci[g]),
                ("device", f"nvidia{g % 8}"),
                ("modelName", nd.profile.model_name),
                ("Hostname", nd.hostname),
                ("DCGM_FI_DRIVER_VERSION", sim.driver[nd.index]),
            )
            labels = base + attrib.get(g, ())
            self.gpu_ids[g] = L.intern(labels, self.dcgm_t[nd.index])
            code = int(sim.xid_last[g])
            if code:
                labels = (
                    *base,
                    ("err_code", str(code)),
                    ("err_msg", XID_MESSAGES.get(code, "")),
                    *attrib.get(g, ()),
                )
            self.xid_ids[g] = L.intern(labels, self.dcgm_t[nd.index])
        self._valid = True

    def frame(self, m: Mods, st: GpuState) -> Frame:
        sim, f = self.sim, self.sim.factory
        if not self._valid:
            self._gpu_labels()
        fr = Frame(sim.now_ms)
        ok = ~m.absent
        ids = self.gpu_ids[ok]
        fbt = f.gpu_profile_array("fb_total_mib")
        res = np.where(f.is_a100, 570.0, 564.0)
        fb_used = np.minimum(sim.fb_used, fbt - res)
        mem_clk = f.gpu_profile_array("mem_clock")
        zero = np.zeros(f.n_gpus)
        occupancy = sim.sm * 0.3
        for fam, arr in (
            (SM_CLOCK, st.sm_clock),
            (MEM_CLOCK, mem_clk),
            (MEM_TEMP, np.round(st.mem_temp)),
            (GPU_TEMP, np.round(st.temp)),
            (POWER, st.power),
            (POWER_LIMIT, m.limit),
            (ENERGY, st.energy_mj),
            (PCIE_REPLAY, sim.pcie_replay),
            (GPU_UTIL, np.round(sim.util * 100)),
            (MEM_COPY, np.round(sim.dram * 100 * 0.8)),
            (ENC, zero),
            (DEC, zero),
            (FB_FREE, fbt - res - fb_used),
            (FB_USED, fb_used),
            (FB_RES, res),
            (NVLINK_BW, sim.nvlink_bytes),
            (NVLINK_CRC, sim.nvlink_crc),
            (ROWS_UNC, sim.rows_uncorr),
            (ROWS_COR, sim.rows_corr),
            (ROW_FAIL, sim.remap_fail),
            (ECC_SBE, sim.ecc_sbe),
            (ECC_DBE, sim.ecc_dbe),
            (REASONS, st.reasons),
            (PWR_VIOL, st.power_violation_ns / 1000),
            (THERM_VIOL, st.thermal_violation_ns / 1000),
            (GR_ACTIVE, np.minimum(sim.util * 0.98, np.maximum(sim.sm * 1.05, sim.util * 0.5))),
            (SM_ACTIVE, sim.sm),
            (SM_OCC, occupancy),
            (TENSOR, sim.tensor),
            (DRAM, sim.dram),
            (PCIE_TX, sim.pcie_rate * 0.4),
            (PCIE_RX, sim.pcie_rate),
        ):
            fr.add(fam, ids, np.asarray(arr, dtype=np.float64)[ok])
        # XID gauge: 0 until an XID, then the last XID with err_code/err_msg labels
        # (the exporter keeps the last XID of a GPU that fell off the bus: the event came from the driver)
        fr.add(XID, self.xid_ids, sim.xid_last.astype(np.float64))
        self._node(fr, m)
        self._vllm(fr)
        self._ksm(fr)
        self._trainer(fr)
        self._pipelines(fr, m)
        fr.add(
            F_SW,
            self.sw_ids,
            np.array(
                [
                    0.0
                    if any(
                        x.fault == "leaf_switch_failure" and x.root.get("switch") == s
                        for x in sim.active_faults()
                    )
                    else 1.0
                    for s, _ in self.sw
                ]
            ),
        )
        fr.add(F_SW_WAIT, self.port_ids, sim.host.sw_tw.ravel())
        self._spans()
        return fr

    def _node(self, fr: Frame, m: Mods) -> None:
        h, f = self.sim.host, self.sim.factory
        fr.add(N_CPU, self.cpu_ids, h.cpu.ravel())
        fr.add(N_MEM_TOTAL, self.node_ids, h.mem_total)
        fr.add(N_MEM_AVAIL, self.node_ids, h.mem_avail)
        fr.add(N_LOAD1, self.node_ids, h.load1)
        fr.add(N_PSI_CPU, self.node_ids, h.psi[:, 0])
        fr.add(N_PSI_IO, self.node_ids, h.psi[:, 1])
        fr.add(N_PSI_MEM, self.node_ids, h.psi[:, 2])
        fr.add(N_OOM, self.node_ids, h.oom)
        fr.add(N_DISK_R, self.disk_ids, h.disk[:, 0])
        fr.add(N_DISK_W, self.disk_ids, h.disk[:, 1])
        fr.add(N_DISK_IO, self.disk_ids, h.disk[:, 2])
        size = np.array([[3.84e12, 1.0e15]] * f.n_nodes)
        fr.add(N_FS_SIZE, self.fs_ids.ravel(), size.ravel())
        avail = np.stack([size[:, 0] * h.fs_avail, size[:, 1] * 0.37 * np.ones(f.n_nodes)], axis=1)
        fr.add(N_FS_AVAIL, self.fs_ids.ravel(), np.floor(avail).ravel())
        fr.add(N_NET_RX, self.net_ids, np.floor(h.net[:, 0]))
        fr.add(N_NET_TX, self.net_ids, np.floor(h.net[:, 1]))
        for k, fam in enumerate((IB_RX, IB_TX, IB_PRX, IB_PTX, IB_ERR, IB_DOWN, IB_RECOV)):
            fr.add(fam, self.ib_ids, h.ib[:, :, k].ravel())
        fr.add(IB_WAIT, self.ib_ids, h.ib_tw.ravel())
        up = h.ib_up.ravel()
        fr.add(IB_STATE, self.ib_ids, np.where(up, 4.0, 1.0))
        fr.add(IB_PHYS, self.ib_ids, np.where(up, 5.0, 3.0))
        fr.add(IB_RATE, self.ib_ids, np.full(len(up), 5e10))
        fr.add(NFS_READ, self.nfs_ids, h.nfs[:, 0])
        fr.add(NFS_REQ, self.nfs_op_ids, h.nfs[:, 1])
        fr.add(NFS_RESP, self.nfs_op_ids, h.nfs[:, 2])

    def _vllm(self, fr: Frame) -> None:
        sim, L = self.sim, self.sim.labels
        inf = sim.inf
        if not inf.n:
            return
        base = []
        cfg, ok_stop, ok_len = [], [], []
        for i in range(inf.n):
            svc = sim.services[int(inf.rep_service[i])]
            t = self.vllm_t[i]
            lab = (("engine", "0"), ("model_name", svc.model_name))
            base.append(L.intern(lab, t))
            ok_stop.append(L.intern((*lab, ("finished_reason", "stop")), t))
            ok_len.append(L.intern((*lab, ("finished_reason", "length")), t))
            fbt = sim.factory.nodes[int(inf.rep_node[i])].profile.fb_total_mib
            cfg.append(
                L.intern(
                    (
                        ("block_size", str(svc.block_size)),
                        ("cache_dtype", "auto"),
                        ("enable_prefix_caching", "True"),
                        ("engine", "0"),
                        ("gpu_memory_utilization", str(svc.gpu_memory_utilization)),
                        ("num_gpu_blocks", str(svc.num_gpu_blocks(fbt))),
                        ("swap_space_bytes", "4294967296"),
                    ),
                    t,
                )
            )
        ids = np.array(base)
        fr.add(V_RUN, ids, np.round(inf.running))
        fr.add(V_WAIT, ids, np.round(inf.waiting))
        fr.add(V_KV, ids, inf.kv_usage)
        fr.add(V_PQ, ids, inf.c["pq"])
        fr.add(V_PH, ids, inf.c["ph"])
        fr.add(V_PROMPT, ids, inf.c["prompt"])
        fr.add(V_GEN, ids, inf.c["gen"])
        fr.add(V_PRE, ids, inf.c["preempt"])
        fr.add(V_OK, np.array(ok_stop + ok_len), np.concatenate([inf.c["ok_stop"], inf.c["ok_len"]]))
        fr.add(V_CFG, np.array(cfg), np.ones(inf.n))
        fr.add(V_TTFT, ids, inf.h_ttft)
        fr.add(V_ITL, ids, inf.h_itl)
        fr.add(V_E2E, ids, inf.h_e2e)
        fr.add(V_QUEUE, ids, inf.h_queue)

    def _ksm(self, fr: Frame) -> None:
        sim, L, t = self.sim, self.sim.labels, self.ksm_t
        f = sim.factory
        k8s_nodes = sorted({n for s in sim.services for n in s.nodes} | {h.node for h in sim.holds})
        nid, aid = [], []
        for n in k8s_nodes:
            nd = f.nodes[n]
            nid.append(
                L.intern(
                    (
                        ("container_runtime_version", "containerd://1.7.22"),
                        ("internal_ip", nd.ip),
                        ("kernel_version", "5.15.0-122-generic"),
                        ("kubelet_version", "v1.30.5"),
                        ("node", nd.hostname),
                        ("os_image", "Ubuntu 22.04.5 LTS"),
                    ),
                    t,
                )
            )
            aid.append(
                L.intern((("node", nd.hostname), ("resource", "nvidia_com_gpu"), ("unit", "integer")), t)
            )
        fr.add(K_NODE, np.array(nid, dtype=np.int64), np.ones(len(nid)))
        fr.add(K_ALLOC, np.array(aid, dtype=np.int64), np.full(len(aid), 8.0))
        pods: list[tuple[str, str, str, int, int, str, str]] = []
        for s in sim.services:
            for k, n in enumerate(s.nodes):
                pods.append((s.pods[k], "inference", "vllm", n, 8, s.team, s.name))
        for h in sim.holds:
            pods.append((h.pod, h.namespace, "notebook", h.node, len(h.gpus), h.team, "jupyter"))
        info, req, phase, rst, lab, rvals = [], [], [], [], [], []
        for pod, ns, cont, n, _gpus, team, app in pods:
            nd = f.nodes[n]
            uid = _pod_uid(sim.seed, pod)
            info.append(
                L.intern(
                    (
                        ("created_by_kind", "ReplicaSet" if ns == "inference" else "StatefulSet"),
                        ("created_by_name", pod.rsplit("-", 1)[0]),
                        ("host_ip", nd.ip),
                        ("host_network", "false"),
                        ("namespace", ns),
                        ("node", nd.hostname),
                        ("pod", pod),
                        ("pod_ip", f"10.244.{n % 250}.17"),
                        ("priority_class", ""),
                        ("uid", uid),
                    ),
                    t,
                )
            )
            req.append(
                L.intern(
                    (
                        ("container", cont),
                        ("namespace", ns),
                        ("node", nd.hostname),
                        ("pod", pod),
                        ("resource", "nvidia_com_gpu"),
                        ("uid", uid),
                        ("unit", "integer"),
                    ),
                    t,
                )
            )
            phase.append(L.intern((("namespace", ns), ("phase", "Running"), ("pod", pod), ("uid", uid)), t))
            rst.append(L.intern((("container", cont), ("namespace", ns), ("pod", pod), ("uid", uid)), t))
            lab.append(
                L.intern(
                    (
                        ("label_app_kubernetes_io_name", app),
                        ("label_team", team),
                        ("namespace", ns),
                        ("pod", pod),
                        ("uid", uid),
                    ),
                    t,
                )
            )
            rvals.append(float(sim.restarts.get(pod, 0)))
        fr.add(K_POD, np.array(info, dtype=np.int64), np.ones(len(info)))
        fr.add(K_REQ, np.array(req, dtype=np.int64), np.array([float(p[4]) for p in pods]))
        fr.add(K_PHASE, np.array(phase, dtype=np.int64), np.ones(len(phase)))
        fr.add(K_RESTART, np.array(rst, dtype=np.int64), np.array(rvals))
        fr.add(K_LABELS, np.array(lab, dtype=np.int64), np.ones(len(lab)))

    def _trainer(self, fr: Frame) -> None:
        sim, L, f = self.sim, self.sim.labels, self.sim.factory
        jid, jv, rid, rv = [], [], [], []
        for j in sim.jobs:
            t = self.trainer_t[j.nodes[0]]
            jid.append(L.intern((("job_name", j.name), ("slurm_job_id", str(j.job_id)), ("team", j.team)), t))
            jv.append((j.last_step_s, j.steps, j.last_dl_s, j.last_loss))
            for r, g in enumerate(j.gpus.tolist()):
                nd = f.nodes[g // 8]
                rid.append(
                    L.intern(
                        (
                            ("Hostname", nd.hostname),
                            ("gpu", str(g % 8)),
                            ("rank", str(r)),
                            ("slurm_job_id", str(j.job_id)),
                        ),
                        self.trainer_t[nd.index],
                    )
                )
                rv.append(float(j.last_compute[r]) if r < len(j.last_compute) else 0.0)
        if not jid:
            return
        ids = np.array(jid)
        vals = np.array(jv)
        for k, fam in enumerate((T_STEP, T_STEPS, T_DL, T_LOSS)):
            fr.add(fam, ids, vals[:, k])
        fr.add(T_RANK, np.array(rid), np.array(rv))

    def _pipelines(self, fr: Frame, m: Mods) -> None:
        sim, L, t = self.sim, self.sim.labels, self.pipe_t
        ids, ok_ids, fail_ids, run_ids = [], [], [], []
        for p in sim.pipelines:
            ids.append(L.intern((("dataset", p.dataset), ("pipeline", p.name), ("team", p.team)), t))
            ok_ids.append(L.intern((("pipeline", p.name), ("status", "success")), t))
            fail_ids.append(L.intern((("pipeline", p.name), ("status", "failed")), t))
            run_ids.append(L.intern((("pipeline", p.name),), t))
        now = sim.now_ms
        fr.add(P_FRESH, np.array(ids), np.array([(now - p.last_success_ms) / 1000 for p in sim.pipelines]))
        fr.add(P_LAST, np.array(ids), np.array([p.last_success_ms / 1000 for p in sim.pipelines]))
        fr.add(
            P_RUNS,
            np.array(ok_ids + fail_ids),
            np.array(
                [float(p.runs_ok) for p in sim.pipelines] + [float(p.runs_failed) for p in sim.pipelines]
            ),
        )
        fr.add(
            P_RUNNING,
            np.array(run_ids),
            np.array([float(p.running_since is not None) for p in sim.pipelines]),
        )

    def _spans(self) -> None:
        sim = self.sim
        inf = sim.inf
        if not inf.spans:
            return
        by_svc: dict[int, list[dict[str, Any]]] = {}
        for s in inf.spans:
            i = s["replica"]
            svc = sim.services[int(inf.rep_service[i])]
            end = sim.now_ms * 1_000_000
            start = end - int(s["e2e"] * 1e9)
            span = {
                "traceId": sim.rng.bytes(16).hex(),
                "spanId": sim.rng.bytes(8).hex(),
                "parentSpanId": "",
                "name": f"chat {svc.model_name}",
                "kind": 2,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(end),
                "attributes": [
                    _attr("gen_ai.operation.name", "chat"),
                    _attr("gen_ai.provider.name", "vllm"),
                    _attr("gen_ai.request.model", svc.model_name),
                    _attr("gen_ai.response.model", svc.model_name),
                    _attr("gen_ai.usage.input_tokens", int(s["input"])),
                    _attr("gen_ai.usage.output_tokens", int(s["output"])),
                    _attr("gen_ai.response.time_to_first_chunk", round(float(s["ttft"]), 6)),
                ],
                "status": {"code": 1},
            }
            by_svc.setdefault(i, []).append(span)
        rs = []
        for i, spans in by_svc.items():
            svc = sim.services[int(inf.rep_service[i])]
            node = sim.factory.nodes[int(inf.rep_node[i])]
            rs.append(
                {
                    "resource": {
                        "attributes": [
                            _attr("service.name", svc.name),
                            _attr("host.name", node.hostname),
                            _attr("k8s.namespace.name", "inference"),
                            _attr("k8s.pod.name", svc.pods[svc.nodes.index(int(inf.rep_node[i]))]),
                        ]
                    },
                    "scopeSpans": [{"scope": {"name": "sightglass.simulator"}, "spans": spans}],
                }
            )
        sim.spans.append({"resourceSpans": rs})


def _attr(key: str, v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"key": key, "value": {"boolValue": v}}
    if isinstance(v, int):
        return {"key": key, "value": {"intValue": str(v)}}
    if isinstance(v, float):
        return {"key": key, "value": {"doubleValue": v}}
    return {"key": key, "value": {"stringValue": str(v)}}


def _pod_uid(seed: int, pod: str) -> str:
    import hashlib
    import uuid

    return str(uuid.UUID(bytes=hashlib.sha256(f"{seed}/{pod}".encode()).digest()[:16], version=4))
