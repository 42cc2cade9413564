"""The simulator: a factory, its workloads, physics and faults, stepped tick by tick into a Frame.

``Simulator(nodes, seed, start_ms).step()`` advances ``dt`` seconds and returns that tick's samples
of every exporter (dcgm-exporter, node_exporter, vLLM, kube-state-metrics, the trainer and pipeline
exporters, the fabric); events, Slurm job records, OpenLineage run events and OTLP GenAI spans
accumulate on the simulator for the writers to drain. Given the same seed, start and scenario, the
output is identical.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sightglass.simulate import calibration as cal
from sightglass.simulate import emit
from sightglass.simulate.calibration import all_reduce_s
from sightglass.simulate.exposition import Frame, LabelTable
from sightglass.simulate.faults import CATALOGUE, XID_MESSAGES, Fault, ScriptedFault
from sightglass.simulate.physics import GpuPhysics
from sightglass.simulate.topology import DRIFT_DRIVER_VERSION, GPUS_PER_NODE, HCAS_PER_NODE, build_factory
from sightglass.simulate.workloads import InferenceModel, TrainJob, assign, new_job

DISK_HEALTHY = "fio_randread_8KB_local_sync_buffered_long_westus2_D8s_v5_IOPS"
DISK_THROTTLED = "fio_randread_64KB_remote_aio_direct_long_eastus_B8ms_IOPS"
WATCHDOG_S = 600.0  # PyTorch NCCL watchdog default (docs/calibration.md C.3)
FAST_HORIZON_S = 3600.0


@dataclass(slots=True)
class Mods:
    """Per-tick effects of the active faults (neutral by default)."""

    r_mult: np.ndarray
    limit: np.ndarray
    brake: np.ndarray
    clock_lock: np.ndarray
    absent: np.ndarray
    nvlink_err: np.ndarray
    compute_mult: np.ndarray
    sdc: np.ndarray
    cpu_extra: np.ndarray
    mem_pressure: np.ndarray
    ib_down: np.ndarray
    ib_err: np.ndarray
    ib_wait: np.ndarray
    spine_wait: np.ndarray  # per spine: congestion factor of its ports (1 = none)
    storage_mult: float
    svc_tbt: np.ndarray
    svc_prompt: np.ndarray
    svc_kv: np.ndarray
    svc_prefill: np.ndarray
    svc_out: np.ndarray
    svc_rate: np.ndarray
    stalled: set[str] = field(default_factory=set)
    hung_jobs: set[int] = field(default_factory=set)


class Simulator:
    def __init__(
        self,
        nodes: int,
        seed: int,
        start_ms: int,
        *,
        dt_s: float = 10.0,
        a100_fraction: float = 0.25,
        fault_every_s: float | None = None,
        scripted: list[ScriptedFault] | None = None,
    ) -> None:
        self.seed = seed
        self.dt = float(dt_s)
        self.start_ms = start_ms
        self.now_ms = start_ms
        self.tick = 0
        self.factory = build_factory(nodes, seed, a100_fraction=a100_fraction)
        self.rng = np.random.default_rng([seed, 2])
        self.fault_rng = np.random.default_rng([seed, 3])
        self.labels = LabelTable()
        f = self.factory
        self.services, self.jobs, self.holds, self.pipelines = assign(f, self.rng, start_ms)
        self.inf = InferenceModel(f, self.services, self.rng)
        self.phys = GpuPhysics(f)
        g, n = f.n_gpus, f.n_nodes
        self.xid_last = np.zeros(g, dtype=np.int64)
        self.pcie_replay = np.floor(self.rng.uniform(0, 5, g))
        self.nvlink_bytes = np.floor(self.rng.uniform(1e12, 5e13, g))
        self.nvlink_crc = np.zeros(g)
        self.rows_corr = np.floor(self.rng.choice([0, 0, 0, 0, 1, 2], g).astype(float))
        self.rows_uncorr = np.zeros(g)
        self.remap_fail = np.zeros(g)
        self.ecc_sbe = np.floor(self.rng.uniform(0, 3, g))
        self.ecc_dbe = np.zeros(g)
        self.util = np.zeros(g)
        self.sm = np.zeros(g)
        self.tensor = np.zeros(g)
        self.dram = np.zeros(g)
        self.fb_used = np.full(g, 1.0)
        self.pcie_rate = np.zeros(g)
        self.driver = [nd.driver for nd in f.nodes]
        self.power_limit = f.gpu_profile_array("tdp_w")
        self.node_free_at: dict[int, int] = {}
        self.next_job_id = max([j.job_id for j in self.jobs], default=40_000) + 1
        self.finished_jobs: list[TrainJob] = []
        self.host = emit.HostState(n, self.rng, f)
        self.events: list[dict[str, Any]] = []
        self.job_records: list[dict[str, Any]] = []
        self.lineage: list[dict[str, Any]] = []
        self.spans: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.restarts: dict[str, int] = {}
        self.emitter = emit.Emitter(self)
        for j in self.jobs:
            self.events.append(
                self._event(
                    j.start_ms,
                    "job.start",
                    {"slurm_job_id": str(j.job_id)},
                    {"job_name": j.name, "account": j.team, "nodes": self._hosts(j)},
                )
            )
        if scripted:
            for sf in scripted:
                self.add_fault(sf.fault, start_ms + sf.at_ms, sf.duration_ms, sf.target)
        if fault_every_s:
            self._plan_random(fault_every_s)

    # ------------------------------------------------------------------ faults
    def _plan_random(self, every_s: float) -> None:
        self._every_s = every_s
        self._next_random_ms = self.start_ms + int(
            every_s * 500.0 + self.fault_rng.exponential(every_s) * 1000.0
        )

    def rebase(self, now_ms: int) -> None:
        """Shift the simulator's clock (and every planned time) so that the next tick is ``now_ms``."""
        delta = now_ms - (self.start_ms + round(self.tick * self.dt * 1000))
        self.start_ms += delta
        self.now_ms += delta
        self._next_random_ms += delta
        for fl in self.faults:
            fl.start_ms += delta
            fl.end_ms += delta
        for j in self.jobs:
            j.start_ms += delta
            j.end_ms += delta
        for p in self.pipelines:
            p.next_start_ms += delta
            p.last_success_ms += delta
        for e in self.events:
            e["ts_ms"] += delta

    def _random_faults(self) -> None:
        """Draw the next random fault once its time comes, so it lands on the factory as it is then."""
        names = list(CATALOGUE)
        w = np.array([CATALOGUE[k].weight for k in names])
        while self._every_s and self.now_ms >= self._next_random_ms:
            name = names[int(self.fault_rng.choice(len(names), p=w / w.sum()))]
            self.add_fault(name, self._next_random_ms, None, {})
            self._next_random_ms += int(self.fault_rng.exponential(self._every_s) * 1000.0)

    def add_fault(self, name: str, start_ms: int, duration_ms: int | None, target: dict[str, str]) -> Fault:
        cls = CATALOGUE[name]
        if duration_ms is None:
            duration_ms = int(self.fault_rng.uniform(*cls.duration_s) * 1000)
        fault = Fault(f"F{len(self.faults) + 1:04d}", name, int(start_ms), int(start_ms + duration_ms))
        if start_ms <= self.now_ms:
            self._resolve(fault, target)
        else:  # resolved when it starts, against the factory as it is then
            fault.state["request"] = dict(target)
        self.faults.append(fault)
        return fault

    def _pick(self, options: list[Any]) -> Any:
        return options[int(self.fault_rng.integers(0, len(options)))]

    def _resolve(self, fault: Fault, target: dict[str, str]) -> None:
        """Choose the root entity (honouring a scripted target) and write its ground truth."""
        f = self.factory
        kind = fault.cls.root_kind
        host_idx = {nd.hostname: nd.index for nd in f.nodes}
        jobs = [j for j in self.jobs if j.state == "RUNNING"] or self.jobs
        multi = [j for j in jobs if len(j.nodes) > 1]
        if kind in ("gpu", "node", "nic"):
            if "Hostname" in target or "instance" in target:
                node = host_idx[target.get("Hostname") or target["instance"].split(":")[0]]
            elif fault.fault == "power_cap" and self.services:
                node = self._pick([nd for s in self.services for nd in s.nodes])
            elif kind == "nic" and multi:
                node = self._pick(self._pick(multi).nodes)
            elif jobs:
                node = self._pick(self._pick(jobs).nodes)
            else:
                node = int(self.fault_rng.integers(0, f.n_nodes))
            host = f.nodes[node].hostname
            fault.target["node"] = node
            if kind == "gpu":
                gi = int(target.get("gpu", self.fault_rng.integers(0, GPUS_PER_NODE)))
                fault.target["gpu"] = node * GPUS_PER_NODE + gi
                fault.root = {"Hostname": host, "gpu": str(gi)}
            elif kind == "nic":
                dev = target.get("device", f"mlx5_{int(self.fault_rng.integers(0, HCAS_PER_NODE))}")
                fault.target["hca"] = int(dev.split("_")[-1])
                fault.root = {"instance": f"{host}:9100", "device": dev}  # node_exporter's own labels
            else:
                fault.root = {"Hostname": host}
        elif kind == "switch":
            if fault.fault == "leaf_switch_failure":
                leaf = target.get("switch") or (
                    f.nodes[self._pick(self._pick(multi or jobs).nodes)].leaf
                    if (multi or jobs)
                    else f.leaves[0]
                )
                fault.target["leaf"] = leaf
                fault.root = {"switch": leaf}
            else:
                sp = target.get("switch") or self._pick(f.spines)
                fault.root = {"switch": sp}
        elif kind == "storage":
            fault.root = {"export": emit.NFS_EXPORT}
        elif kind == "pipeline":
            p = target.get("pipeline") or self._pick([p.name for p in self.pipelines])
            fault.target["pipeline"] = p
            fault.root = {"pipeline": p}
        elif kind == "service":
            if not self.services:
                fault.root = {}
            else:
                names = [s.model_name for s in self.services]
                longctx = [s.model_name for s in self.services if s.trace == "mooncake_conv"]
                if fault.fault == "kv_cache_pressure" and longctx:
                    names_pick = longctx
                else:
                    names_pick = names
                m = target.get("model_name") or self._pick(names_pick)
                fault.target["service"] = names.index(m)
                fault.root = {"model_name": m}
        elif kind == "job":
            j = next((x for x in jobs if str(x.job_id) == target.get("slurm_job_id")), None)
            j = j or (self._pick(jobs) if jobs else None)
            fault.target["job"] = j.job_id if j else -1
            fault.root = {"slurm_job_id": str(j.job_id)} if j else {}
        fault.symptom = self._symptom(fault)

    def _job_on_node(self, node: int) -> TrainJob | None:
        return next((j for j in self.jobs if j.state == "RUNNING" and node in j.nodes), None)

    def _symptom(self, fault: Fault) -> str:
        """The PromQL an on-call engineer would start from for this fault."""
        name = fault.fault
        if name == "pipeline_stall":
            return f'data_pipeline_freshness_seconds{{pipeline="{fault.root["pipeline"]}"}}'
        svc = None
        if "service" in fault.target:
            svc = self.services[fault.target["service"]]
        elif "node" in fault.target:
            svc = next((s for s in self.services if fault.target["node"] in s.nodes), None)
        if svc is not None and name in (
            "kv_cache_pressure",
            "bad_deploy",
            "power_cap",
            "power_brake",
            "gpu_thermal",
            "cpu_starvation",
            "host_oom",
            "driver_drift",
        ):
            return (
                "histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket"
                f'{{model_name="{svc.model_name}"}}[5m])))'
            )
        job = None
        if "job" in fault.target:
            job = next((j for j in self.jobs if j.job_id == fault.target["job"]), None)
        elif "node" in fault.target:
            job = self._job_on_node(fault.target["node"])
        elif "leaf" in fault.target:
            job = next(
                (
                    j
                    for j in self.jobs
                    if j.state == "RUNNING"
                    and len(j.nodes) > 1
                    and any(self.factory.nodes[n].leaf == fault.target["leaf"] for n in j.nodes)
                ),
                None,
            )
        else:
            multi = [j for j in self.jobs if j.state == "RUNNING" and len(j.nodes) > 1]
            job = multi[0] if multi else None
        if job is not None:
            sel = f'{{slurm_job_id="{job.job_id}"}}'
            if name == "silent_data_corruption":
                return f"training_loss{sel}"
            if name in ("xid79_fell_off_bus", "hbm_ecc", "nccl_hang", "leaf_switch_failure", "host_oom"):
                return f"rate(training_steps_total{sel}[5m])"
            return f"training_step_duration_seconds{sel}"
        if "gpu" in fault.target:
            r = fault.root
            return f'DCGM_FI_DEV_GPU_TEMP{{Hostname="{r["Hostname"]}",gpu="{r["gpu"]}"}}'
        if "node" in fault.target:
            host = self.factory.nodes[fault.target["node"]].hostname
            return f'DCGM_FI_DEV_POWER_USAGE{{Hostname="{host}"}}'
        return "sum(rate(node_infiniband_port_transmit_wait_total[5m]))"

    def active_faults(self) -> list[Fault]:
        return [x for x in self.faults if x.start_ms <= self.now_ms < x.end_ms]

    def _mods(self) -> Mods:
        f = self.factory
        g, n, s = f.n_gpus, f.n_nodes, len(self.services)
        m = Mods(
            r_mult=np.ones(g),
            limit=f.gpu_profile_array("tdp_w"),
            brake=np.zeros(g, bool),
            clock_lock=np.zeros(g),
            absent=np.zeros(g, bool),
            nvlink_err=np.zeros(g),
            compute_mult=np.ones(g),
            sdc=np.zeros(g, bool),
            cpu_extra=np.zeros(n),
            mem_pressure=np.zeros(n),
            ib_down=np.zeros((n, HCAS_PER_NODE), bool),
            ib_err=np.zeros((n, HCAS_PER_NODE)),
            ib_wait=np.ones(n),
            spine_wait=np.ones(len(f.spines)),
            storage_mult=self._storage_noise(),
            svc_tbt=np.ones(s),
            svc_prompt=np.ones(s),
            svc_kv=np.ones(s),
            svc_prefill=np.ones(s),
            svc_out=np.ones(s),
            svc_rate=np.ones(s),
        )
        for fl in self.faults:
            if fl.state.get("ended") or self.now_ms < fl.start_ms:
                continue
            if self.now_ms >= fl.end_ms:
                self._end_fault(fl)
                continue
            if not fl.state.get("started"):
                if "request" in fl.state:
                    self._resolve(fl, fl.state.pop("request"))
                self._start_fault(fl)
            self._apply(fl, m)
        return m

    def _storage_noise(self) -> float:
        """Healthy shared-storage latency noise: inverse IOPS noise of Azure D8s_v5 local-disk runs."""
        q = cal.table()["disk_iops_over_median"][DISK_HEALTHY]
        return float(np.clip(1.0 / cal.sample_quantiles(self.rng, q, 1)[0], 0.7, 1.6))

    def _apply(self, fl: Fault, m: Mods) -> None:
        t = fl.target
        node = t.get("node", -1)
        gsl = slice(node * GPUS_PER_NODE, (node + 1) * GPUS_PER_NODE) if node >= 0 else slice(0, 0)
        name = fl.fault
        if name == "gpu_thermal":
            m.r_mult[t["gpu"]] = 1.95
        elif name == "power_brake":
            m.brake[gsl] = True
        elif name == "power_cap":
            m.limit[gsl] = np.where(self.factory.is_a100[gsl], 250.0, 400.0)
        elif name == "xid79_fell_off_bus":
            m.absent[t["gpu"]] = True
        elif name == "nvlink_degraded":
            m.nvlink_err[t["gpu"]] = 1.0
        elif name == "ib_link_flap":
            down = self.fault_rng.random() < 0.3
            m.ib_down[node, t["hca"]] = down
            m.ib_err[node, t["hca"]] = 1.0
        elif name == "ib_congestion":
            m.ib_wait[:] = np.maximum(m.ib_wait, self.fault_rng.uniform(5.0, 9.0, len(m.ib_wait)))
            # the congested spine's own ports, and every leaf uplink that feeds it, run out of credits
            sp = fl.root.get("switch")
            if sp in self.factory.spines:
                k = self.factory.spines.index(sp)
                m.spine_wait[k] = max(float(m.spine_wait[k]), float(np.mean(m.ib_wait)))
        elif name == "leaf_switch_failure":
            for nd in self.factory.nodes:
                if nd.leaf == t["leaf"]:
                    m.ib_down[nd.index, :] = True
        elif name == "storage_slowdown":
            if "factor" not in fl.state:
                # a throttled remote disk (Azure B8ms runs below half their median IOPS: 0.25-0.5),
                # doubled by queueing at the one server every data loader shares
                tail = cal.table()["disk_iops_over_median"][DISK_THROTTLED][:16]
                u = self.fault_rng.random()
                fl.state["factor"] = 2.0 / float(np.interp(u, np.linspace(0, 1, len(tail)), tail))
            m.storage_mult = max(m.storage_mult, float(fl.state["factor"]))
        elif name == "pipeline_stall":
            m.stalled.add(t["pipeline"])
        elif name == "cpu_starvation":
            m.cpu_extra[node] = 0.6
        elif name == "host_oom":
            m.mem_pressure[node] = min(1.0, (self.now_ms - fl.start_ms) / 120_000.0)
        elif name == "kv_cache_pressure" and "service" in t:
            m.svc_prompt[t["service"]] = 3.0
            m.svc_out[t["service"]] = 2.0
            m.svc_rate[t["service"]] = 2.0
            m.svc_kv[t["service"]] = 0.35
        elif name == "bad_deploy" and "service" in t:
            m.svc_tbt[t["service"]] = 1.7
            m.svc_kv[t["service"]] = 0.55
            m.svc_prefill[t["service"]] = 1.3
        elif name == "driver_drift":
            m.clock_lock[gsl] = np.where(self.factory.is_a100[gsl], 1005.0, 1410.0)
        elif name == "straggler_rank":
            m.compute_mult[t["gpu"]] = 1.6
        elif name == "nccl_hang" and t.get("job", -1) >= 0:
            m.hung_jobs.add(t["job"])
        elif name == "silent_data_corruption":
            m.sdc[t["gpu"]] = True

    def _start_fault(self, fl: Fault) -> None:
        fl.state["started"] = True
        t, name = fl.target, fl.fault
        ts = max(fl.start_ms, self.now_ms)
        if name in ("xid79_fell_off_bus", "hbm_ecc", "nvlink_degraded"):
            codes = {"xid79_fell_off_bus": [79], "hbm_ecc": [63, 94, 48, 95], "nvlink_degraded": [74]}[name]
            gi = t["gpu"]
            for k, code in enumerate(codes):
                self._xid(gi, code, ts + k * 20_000)
            if name == "hbm_ecc":
                self.rows_corr[gi] += 3
                self.rows_uncorr[gi] += 1
                self.ecc_dbe[gi] += 1
                self.ecc_sbe[gi] += 40
            if name in ("xid79_fell_off_bus", "hbm_ecc"):
                job = self._job_on_node(gi // GPUS_PER_NODE)
                if job:
                    if name == "hbm_ecc":
                        self._finish_job(
                            job, "FAILED", ts + 60_000, "XID 95 uncontained ECC error", drain_until=fl.end_ms
                        )
                    else:
                        job.hang_since_ms = ts
                        job.reason = "NCCL watchdog timeout after XID 79"
                self.node_free_at[gi // GPUS_PER_NODE] = fl.end_ms
        elif name == "leaf_switch_failure":
            self.events.append(
                self._event(ts, "switch.down", {"switch": t["leaf"]}, {"tier": "leaf"}, "critical")
            )
            for j in self.jobs:
                if (
                    j.state == "RUNNING"
                    and any(self.factory.nodes[n].leaf == t["leaf"] for n in j.nodes)
                    and len(j.nodes) > 1
                ):
                    j.hang_since_ms = ts
                    j.reason = "NCCL watchdog timeout (InfiniBand down)"
        elif name == "nccl_hang":
            job = next((j for j in self.jobs if j.job_id == t.get("job")), None)
            if job and job.state == "RUNNING":
                job.hang_since_ms = ts
                job.reason = "NCCL watchdog timeout (collective hang)"
        elif name == "power_cap":
            host = self.factory.nodes[t["node"]].hostname
            nd_prof = self.factory.nodes[t["node"]].profile
            self.events.append(
                self._event(
                    ts,
                    "config.change",
                    {"Hostname": host},
                    {
                        "setting": "gpu.power_limit_watts",
                        "from": nd_prof.tdp_w,
                        "to": nd_prof.tdp_w * (250.0 / 400.0 if nd_prof.name == "A100" else 400.0 / 700.0),
                    },
                    "warning",
                )
            )
        elif name == "driver_drift":
            nd = t["node"]
            old = self.driver[nd]
            self.driver[nd] = DRIFT_DRIVER_VERSION
            self.emitter.invalidate()
            self.events.append(
                self._event(
                    ts,
                    "config.change",
                    {"Hostname": self.factory.nodes[nd].hostname},
                    {
                        "setting": "driver_version",
                        "from": old,
                        "to": DRIFT_DRIVER_VERSION,
                        "also": "application clocks locked",
                    },
                    "warning",
                )
            )
        elif name == "bad_deploy" and "service" in t:
            svc = self.services[t["service"]]
            old = svc.version
            svc.version = "v0.9.0rc1"
            svc.gpu_memory_utilization = 0.6
            self.events.append(
                self._event(
                    ts,
                    "k8s.deploy",
                    {"namespace": "inference", "deployment": svc.name, "model_name": svc.model_name},
                    {"from": old, "to": svc.version, "gpu_memory_utilization": 0.6},
                )
            )
        elif name == "ib_link_flap":
            host = self.factory.nodes[t["node"]].hostname
            self.events.append(
                self._event(
                    ts,
                    "ib.link_down",
                    {"Hostname": host, "device": f"mlx5_{t['hca']}"},
                    {"port": 1},
                    "warning",
                )
            )

    def _end_fault(self, fl: Fault) -> None:
        fl.state["ended"] = True
        t = fl.target
        if fl.fault in ("xid79_fell_off_bus", "hbm_ecc", "nvlink_degraded"):
            self.xid_last[t["gpu"]] = 0
            self.emitter.invalidate()
        elif fl.fault == "driver_drift":
            self.driver[t["node"]] = self.factory.nodes[t["node"]].driver
            self.emitter.invalidate()
        elif fl.fault == "bad_deploy" and "service" in t:
            svc = self.services[t["service"]]
            svc.version, svc.gpu_memory_utilization = "v0.8.5", 0.9
            self.events.append(
                self._event(
                    fl.end_ms,
                    "k8s.deploy",
                    {"namespace": "inference", "deployment": svc.name, "model_name": svc.model_name},
                    {"from": "v0.9.0rc1", "to": "v0.8.5", "rollback": True},
                )
            )

    def _xid(self, g: int, code: int, ts: int) -> None:
        self.xid_last[g] = code
        self.emitter.invalidate()
        nd = self.factory.node_of_gpu(g)
        self.events.append(
            self._event(
                ts,
                "gpu.xid",
                {"Hostname": nd.hostname, "gpu": str(g % 8), "UUID": self.factory.gpu_uuid[g]},
                {"xid": code, "message": XID_MESSAGES.get(code, "")},
                "critical" if code in (79, 48, 95, 64) else "warning",
            )
        )

    # ------------------------------------------------------------------ jobs
    def _hosts(self, j: TrainJob) -> list[str]:
        return [self.factory.nodes[n].hostname for n in j.nodes]

    def _finish_job(
        self, j: TrainJob, state: str, ts: int, reason: str = "", drain_until: int | None = None
    ) -> None:
        j.state = state
        j.reason = reason or j.reason
        rec = j.record(self.factory, ts)
        self.job_records.append(rec)
        self.events.append(
            self._event(
                ts,
                "job.end",
                {"slurm_job_id": str(j.job_id)},
                {"state": state, "reason": j.reason, "nodes": self._hosts(j)},
                "warning" if state == "FAILED" else "info",
            )
        )
        gap = int(self.rng.uniform(120, 600) * 1000)
        for n in j.nodes:
            self.node_free_at[n] = max(self.node_free_at.get(n, 0), ts + gap, drain_until or 0)
        self.jobs.remove(j)
        self.finished_jobs.append(j)
        self.emitter.invalidate()

    def _jobs_lifecycle(self) -> None:
        now = self.now_ms
        for j in list(self.jobs):
            if j.hang_since_ms is not None and now - j.hang_since_ms >= WATCHDOG_S * 1000:
                self._finish_job(j, "FAILED", j.hang_since_ms + int(WATCHDOG_S * 1000))
            elif j.hang_since_ms is None and now >= j.end_ms:
                self._finish_job(j, j.outcome, j.end_ms, "" if j.outcome != "FAILED" else "application error")
        busy = {n for j in self.jobs for n in j.nodes}
        ready = sorted(n for n, at in self.node_free_at.items() if at <= now and n not in busy)
        if ready:
            # a queued job takes the freed nodes (one job per contiguous group of one GPU generation)
            groups: dict[str, list[int]] = {}
            for n in ready:
                groups.setdefault(self.factory.nodes[n].profile.name, []).append(n)
            for nodes in groups.values():
                j = new_job(self.factory, self.rng, self.next_job_id, nodes, now)
                self.next_job_id += 1
                self.jobs.append(j)
                for n in nodes:
                    del self.node_free_at[n]
                self.events.append(
                    self._event(
                        now,
                        "job.start",
                        {"slurm_job_id": str(j.job_id)},
                        {"job_name": j.name, "account": j.team, "nodes": self._hosts(j)},
                    )
                )
            self.emitter.invalidate()

    def _event(
        self, ts: int, kind: str, entity: dict[str, str], attrs: dict[str, Any], severity: str = "info"
    ) -> dict[str, Any]:
        return {
            "ts_ms": int(ts),
            "kind": kind,
            "entity": entity,
            "attributes": attrs,
            "severity": severity,
            "source": "sightglass-simulator",
        }

    # ------------------------------------------------------------------ the tick
    def step(self) -> Frame:
        self.now_ms = self.start_ms + round(self.tick * self.dt * 1000)
        self._random_faults()
        mods = self._mods()
        self._jobs_lifecycle()
        self._workloads(mods)
        st = self.phys.step(
            self.rng,
            self.dt,
            util=self.util,
            sm=self.sm,
            dram=self.dram,
            limit=mods.limit,
            r_mult=mods.r_mult,
            brake=mods.brake,
            clock_lock=mods.clock_lock,
            power_floor=self._power_floor,
        )
        self.host.step(self, mods)
        self._counters(mods)
        frame = self.emitter.frame(mods, st)
        self.tick += 1
        return frame

    def _workloads(self, m: Mods) -> None:
        f = self.factory
        g = f.n_gpus
        util, sm, tensor, dram = np.zeros(g), np.zeros(g), np.zeros(g), np.zeros(g)
        fb = np.full(g, 1.0) + np.floor(self.rng.uniform(0, 3, g))
        floor = np.zeros(g)
        pcie = np.full(g, 2e5)
        # inference replicas (TP8 over a whole node)
        inf = self.inf
        if inf.n:
            rs = inf.rep_service
            up = np.array([not m.absent[n * 8 : (n + 1) * 8].any() for n in inf.rep_node], dtype=float)
            inf.step(
                self.rng,
                self.tick,
                self.dt,
                tbt_mult=m.svc_tbt[rs] / self._node_clock(inf.rep_node, 0.3),
                prompt_mult=m.svc_prompt[rs],
                kv_mult=m.svc_kv[rs],
                prefill_mult=m.svc_prefill[rs] / self._node_clock(inf.rep_node, 1.0),
                up=up,
                out_mult=m.svc_out[rs],
                rate_mult=m.svc_rate[rs],
            )
            b = inf.batch
            busy = (b > 0) | (inf.prefill_frac > 0)
            for i, n in enumerate(inf.rep_node.tolist()):
                sl = slice(n * 8, (n + 1) * 8)
                util[sl] = 1.0 if busy[i] else 0.0
                sm[sl] = (
                    np.clip(0.06 + 0.42 * b[i] / (b[i] + 24.0) + 0.5 * inf.prefill_frac[i], 0, 0.95)
                    if busy[i]
                    else 0
                )
                tensor[sl] = 0.75 * sm[sl]
                dram[sl] = np.clip(0.2 + 0.55 * b[i] / (b[i] + 16.0), 0, 0.9) if busy[i] else 0.0
                fb[sl] = (
                    f.nodes[n].profile.fb_total_mib
                    * 0.9
                    * (self.services[int(rs[i])].gpu_memory_utilization / 0.9)
                )
                pcie[sl] = 5e7 * busy[i]
        # training jobs
        for j in self.jobs:
            gp = j.gpus
            hw = f.nodes[j.nodes[0]].profile.name
            clock = np.maximum(self.phys.state.clock_f[gp], 0.2)
            jitter = self.rng.lognormal(0.0, 0.035, len(gp))
            compute = j.compute_s * jitter * m.compute_mult[gp] / clock
            intra = all_reduce_s(hw, j.grad_bytes) * (1 + 7.0 * m.nvlink_err[gp].max())
            nn = len(j.nodes)
            inter = 0.0
            if nn > 1:
                bw = 8 * 50e9 * 0.45  # 8 x 400 Gb/s rails at NCCL's typical ring efficiency
                ib_f = float(np.max(m.ib_wait[j.nodes]))
                down = m.ib_down[j.nodes].sum(axis=1).max()
                ib_f *= (
                    1.0 + float(m.ib_err[j.nodes].max()) * 3.0 + 3.0 * float(down > 0)
                )  # a lost rail reroutes
                inter = 2 * (nn - 1) / nn * j.grad_bytes / bw * ib_f
            comm = intra + inter
            # data loader: prefetching workers need ~0.6 x compute of CPU/IO per step; they fall behind
            # when the host CPUs are taken (noisy neighbour) or the shared storage slows down
            cpu_share = 1.0 - float(m.cpu_extra[j.nodes].max())
            loader = 0.6 * float(np.median(compute)) * np.sqrt(m.storage_mult) / max(cpu_share, 0.05)
            dl = max(0.0, loader - float(np.median(compute))) + 0.008 + 0.004 * self.rng.random()
            # gradient all-reduce overlaps the backward pass (~half the compute); the rest is exposed
            exposed = max(0.25 * comm, comm - 0.5 * float(np.median(compute)))
            step = float(compute.max()) + exposed + dl
            hung = j.hang_since_ms is not None or j.job_id in m.hung_jobs
            if hung:
                if j.hang_since_ms is None:
                    j.hang_since_ms = self.now_ms
                util[gp], sm[gp], tensor[gp], dram[gp] = 1.0, 0.02, 0.0, 0.03
                floor[gp] = np.where(f.is_a100[gp], 85.0, 120.0)
            else:
                j.steps += self.dt / step
                busy_frac = (step - dl) / step
                util[gp] = np.clip(busy_frac + self.rng.normal(0, 0.005, len(gp)), 0, 1)
                sm[gp] = j.intensity * compute / step
                tensor[gp] = 0.78 * sm[gp]
                dram[gp] = np.clip(0.12 + 0.5 * compute / step * (0.6 + 0.4 * j.intensity), 0, 0.95)
                self.nvlink_bytes[gp] += np.floor(
                    2 * j.grad_bytes * self.dt / step / 8 / (1 + 2.5 * m.nvlink_err[gp])
                )
                if inter > 0:
                    self.host.ib_tx[j.nodes] += 2 * (nn - 1) / nn * j.grad_bytes * self.dt / step
            fb[gp] = f.gpu_profile_array("fb_total_mib")[gp] * j.fb_frac
            pcie[gp] = 2e8 * (1 - hung)
            j.last_step_s = step if not hung else j.last_step_s
            j.last_compute = compute
            j.last_dl_s = dl
            base = 1.7 + 2.4 * (1.0 + j.steps / 3000.0) ** -0.35 + self.rng.normal(0, 0.01)
            if m.sdc[gp].any() and self.rng.random() < 0.5:
                base *= float(self.rng.uniform(1.6, 4.0))
            j.last_loss = base
        # idle-held notebooks: memory held, nothing running
        for h in self.holds:
            fb[h.gpus] = h.fb_mib
        m_abs = m.absent
        util[m_abs] = sm[m_abs] = tensor[m_abs] = dram[m_abs] = 0.0
        self.util, self.sm, self.tensor, self.dram, self.fb_used = util, sm, tensor, dram, fb
        self.pcie_rate = pcie
        self._power_floor = floor
        self._pipelines(m)

    def _node_clock(self, nodes: np.ndarray, weight: float) -> np.ndarray:
        """How much slower a replica runs from its GPUs' clocks (weight: compute-boundness)."""
        cf = self.phys.state.clock_f.reshape(-1, GPUS_PER_NODE)[nodes].min(axis=1)
        return np.asarray(1.0 - weight * (1.0 - np.maximum(cf, 0.2)))

    def _pipelines(self, m: Mods) -> None:
        now = self.now_ms
        for p in self.pipelines:
            if p.running_since is None and now >= p.next_start_ms:
                p.running_since = now
                p.run_id = _uuid(self.rng)
                self.lineage.append(_lineage("START", now, p))
            if p.running_since is not None:
                if p.name in m.stalled:
                    continue
                if now - p.running_since >= p.run_s * 1000:
                    if p.running_since + p.period_s * 1000 * 3 < now:
                        # a run stalled past three periods is killed and fails
                        p.runs_failed += 1
                        self.lineage.append(_lineage("FAIL", now, p))
                    else:
                        p.runs_ok += 1
                        p.last_success_ms = now
                        p.records += float(self.rng.integers(200_000, 2_000_000))
                        self.lineage.append(_lineage("COMPLETE", now, p))
                    p.running_since = None
                    p.next_start_ms = now + int(p.period_s * 1000 * (1 - p.run_s / p.period_s))

    def _counters(self, m: Mods) -> None:
        dt = self.dt
        self.pcie_replay += self.rng.poisson(0.001 * dt, len(self.pcie_replay))
        crc = m.nvlink_err > 0
        self.nvlink_crc[crc] += self.rng.poisson(40 * dt, int(crc.sum()))
        hbm = [x for x in self.active_faults() if x.fault == "hbm_ecc"]
        for x in hbm:
            self.ecc_sbe[x.target["gpu"]] += self.rng.poisson(2 * dt)

    _power_floor: np.ndarray = np.zeros(0)
    _every_s: float = 0.0
    _next_random_ms: int = 0


def _uuid(rng: np.random.Generator) -> str:
    import uuid

    return str(uuid.UUID(bytes=bytes(rng.integers(0, 256, 16, dtype=np.uint8).tolist()), version=4))


def _lineage(kind: str, ts: int, p: Any) -> dict[str, Any]:
    from sightglass.timeutil import format_ts

    return {
        "eventType": kind,
        "eventTime": format_ts(ts),
        "run": {"runId": p.run_id},
        "job": {"namespace": "pipelines", "name": p.name},
        "inputs": [{"namespace": "s3://raw", "name": p.name.split("-")[0]}],
        "outputs": [{"namespace": "s3://datasets", "name": p.name}],
        "producer": "https://github.com/sightglass/sightglass/simulator",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


# ---------------------------------------------------------------------- DCGM diagnostics
def _gpu_faults(sim: Simulator, node: int, gpu: int, at_ms: int) -> set[str]:
    """Fault classes on a GPU at ``at_ms``: a hardware defect behind SDC stays once it has shown; the
    others while their fault lasts. Node-wide faults have no GPU test to fail."""
    g = node * GPUS_PER_NODE + gpu
    out = set()
    for f in sim.faults:
        if f.target.get("gpu") != g or f.start_ms > at_ms:
            continue
        if f.fault == "silent_data_corruption" or at_ms < f.end_ms:
            out.add(f.fault)
    return out


def simulate_diagnostic(sim: Simulator, host: str, gpus: list[int], level: int, at_ms: int) -> tuple[str, int]:
    """What ``dcgmi diag -r LEVEL -j -i GPUS`` would print on ``host`` started at ``at_ms`` (DCGM 4.x
    JSON, from ``faults.diagnostic_outcome``), and how long it takes (``DIAG_LEVEL_SECONDS``)."""
    from sightglass.simulate.faults import DIAG_LEVEL_SECONDS, diagnostic_json, diagnostic_outcome

    node = next((i for i, n in enumerate(sim.factory.nodes) if n.hostname == host), None)
    if node is None:
        raise ValueError(f"no node {host!r} in the simulated factory")
    per_gpu = {}
    for gi in gpus:
        rng = np.random.default_rng([sim.seed, 7, node, gi, at_ms // 1000])
        per_gpu[gi] = diagnostic_outcome(_gpu_faults(sim, node, gi, at_ms), level, gi, rng)
    return diagnostic_json(per_gpu, level), DIAG_LEVEL_SECONDS[level] * 1000


def simulate_replay(sim: Simulator, host: str, gpus: list[int], seed: int, at_ms: int) -> tuple[str, int]:
    """What the replay hook would print on ``host`` for ``gpus`` started at ``at_ms``: the known answer
    for a healthy GPU, a different checksum for an SDC-prone one with ``REPLAY_DETECT_P``."""
    from sightglass.simulate.faults import REPLAY_DETECT_P, REPLAY_SECONDS, replay_json

    node = next((i for i, n in enumerate(sim.factory.nodes) if n.hostname == host), None)
    if node is None:
        raise ValueError(f"no node {host!r} in the simulated factory")
    rng = np.random.default_rng([sim.seed, 8, node, at_ms // 1000])
    bad = {gi: "silent_data_corruption" in _gpu_faults(sim, node, gi, at_ms) and rng.random() < REPLAY_DETECT_P
           for gi in gpus}  # fmt: skip
    return replay_json(bad, seed, rng), REPLAY_SECONDS * 1000


class SimulatedDiagAgent:
    """The agents of a simulated factory, answering diagnostic tasks on the alerting clock.

    Ticked by ``sightglass.alerting.diagnostics.DiagnosticsManager`` each round: it takes every
    node's queued tasks as a real agent would (``dispatch``), runs them one after the other per node
    (replay, then dcgmi, in the order listed), and once a run's simulated duration has passed, posts
    the simulated output through ``submit_result`` (the same path, parsers and checks as
    ``POST /api/v1/agent/tasks/{id}/result``)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.running: dict[str, tuple[dict[str, Any], str, int, int]] = {}
        self.busy_until: dict[str, int] = {}
        self.results = 0

    def tick(self, manager: Any, at_ms: int) -> None:
        for n in self.sim.factory.nodes:
            for task in manager.dispatch(n.hostname, at_ms):
                if task["id"] in self.running:
                    continue
                gpus = [int(g["index"]) for g in task["gpus"]]
                t0 = max(at_ms, self.busy_until.get(n.hostname, at_ms))
                if task.get("kind") == "replay":
                    out, dur = simulate_replay(self.sim, n.hostname, gpus, int(task.get("seed") or 0), t0)
                else:
                    out, dur = simulate_diagnostic(self.sim, n.hostname, gpus, int(task["level"]), t0)
                self.busy_until[n.hostname] = t0 + dur
                self.running[task["id"]] = ({**task, "node": n.hostname}, out, t0, t0 + dur)
        for tid, (task, out, t0, t1) in list(self.running.items()):
            if t1 > at_ms:
                continue
            failed = '"Fail"' in out
            doc = {"node": task["node"], "exit_code": 226 if failed else 0, "output": out, "started_ms": t0, "finished_ms": t1}
            with contextlib.suppress(ValueError):  # the task was expired or answered meanwhile
                manager.submit_result(tid, doc, at_ms)
            self.results += 1
            self.running.pop(tid)

    def next_finish_ms(self) -> int | None:
        return min((t1 for *_, t1 in self.running.values()), default=None)
