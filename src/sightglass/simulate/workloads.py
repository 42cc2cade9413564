"""Workloads on the factory: vLLM-like inference services, data-parallel training jobs, data pipelines,
idle-held allocations. Each model is a fluid approximation stepped once per tick, vectorised with numpy.

- Inference: arrivals replay the per-second counts of the Azure LLM 2023 (chat, code) and Mooncake
  traces; prompt/output lengths are drawn from their quantiles; prefill time (≈ TTFT without queueing)
  and decode time per token (TBT at the running batch) come from the Splitwise Llama2-70B profile;
  continuous batching is capped by ``max_num_seqs`` and the KV cache (blocks x block size).
- Training: step = slowest rank's compute + exposed all-reduce (Vidur NCCL size→latency curve, plus
  the inter-node ring over InfiniBand) + data-loader wait; per-rank jitter shaped like Alibaba PAI.
- Pipelines: periodic runs producing a dataset; freshness = now - end of the last successful run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sightglass.simulate import calibration as cal
from sightglass.simulate.topology import GPUS_PER_NODE, Factory

SERVICE_KINDS = (
    # name, vLLM model_name, trace, replica request rate (req/s), owning team
    ("llama-70b-chat", "meta-llama/Llama-2-70b-chat-hf", "azure_conv", 2.2, "assistant"),
    ("llama-70b-longctx", "meta-llama/Llama-3.1-70B-Instruct", "mooncake_conv", 0.35, "research"),
    ("llama-70b-code", "codellama/CodeLlama-70b-Instruct-hf", "azure_code", 1.6, "search"),
)
# KV bytes per token of a 70B GQA model (80 layers x 8 KV heads x 128 dims x 2 (K,V) x 2 bytes)
KV_BYTES_PER_TOKEN = 327_680
WEIGHTS_BYTES = 140e9


@dataclass(slots=True)
class Service:
    name: str
    model_name: str
    trace: str
    rate: float
    team: str
    nodes: list[int]
    version: str = "v0.8.5"
    gpu_memory_utilization: float = 0.9
    block_size: int = 16
    max_num_seqs: int = 256
    pods: list[str] = field(default_factory=list)

    def num_gpu_blocks(self, fb_total_mib: float) -> int:
        free = 8 * fb_total_mib * 1024 * 1024 * self.gpu_memory_utilization - WEIGHTS_BYTES - 8 * 4e9
        return max(256, int(free / KV_BYTES_PER_TOKEN / self.block_size))


@dataclass(slots=True)
class TrainJob:
    job_id: int
    name: str
    team: str
    user: str
    nodes: list[int]
    start_ms: int
    end_ms: int  # planned end
    outcome: str  # COMPLETED | CANCELLED | FAILED (at the planned end)
    intensity: float  # SM-active while computing (Acme-calibrated)
    compute_s: float
    grad_bytes: float
    fb_frac: float
    dataset: str
    state: str = "RUNNING"
    steps: float = 0.0
    reason: str = ""
    hang_since_ms: int | None = None
    last_step_s: float = 0.0
    last_compute: np.ndarray = field(default_factory=lambda: np.zeros(0))
    last_dl_s: float = 0.0
    last_loss: float = 0.0

    @property
    def gpus(self) -> np.ndarray:
        return (np.asarray(self.nodes)[:, None] * GPUS_PER_NODE + np.arange(GPUS_PER_NODE)).ravel()

    def record(self, factory: Factory, end_ms: int | None) -> dict[str, Any]:
        """A Slurm-style accounting record (sacct fields, JSON)."""
        hosts = [factory.nodes[n].hostname for n in self.nodes]
        return {
            "job_id": self.job_id,
            "job_name": self.name,
            "user": self.user,
            "account": self.team,
            "partition": "gpu",
            "state": self.state,
            "reason": self.reason,
            "exit_code": "0:0" if self.state in ("COMPLETED", "RUNNING") else "1:0",
            "start": self.start_ms,
            "end": end_ms,
            "nodes": hosts,
            "num_nodes": len(hosts),
            "gpus": {h: list(range(GPUS_PER_NODE)) for h in hosts},
            "alloc_tres": f"cpu={112 * len(hosts)},gres/gpu={8 * len(hosts)},node={len(hosts)}",
            "dataset": self.dataset,
        }


@dataclass(slots=True)
class Pipeline:
    name: str
    dataset: str
    team: str
    period_s: float
    run_s: float
    next_start_ms: int
    last_success_ms: int
    run_id: str = ""
    running_since: int | None = None
    runs_ok: int = 0
    runs_failed: int = 0
    records: float = 0.0


@dataclass(slots=True)
class IdleHold:
    pod: str
    namespace: str
    team: str
    node: int
    gpus: list[int]
    fb_mib: float


class InferenceModel:
    """Continuous batching of every replica of every service, vectorised over replicas."""

    TTFT_BUCKETS = (
        0.001,
        0.005,
        0.01,
        0.02,
        0.04,
        0.06,
        0.08,
        0.1,
        0.25,
        0.5,
        0.75,
        1.0,
        2.5,
        5.0,
        7.5,
        10.0,
        20.0,
        40.0,
        80.0,
        160.0,
        640.0,
        2560.0,
    )
    ITL_BUCKETS = (
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.4,
        0.5,
        0.75,
        1.0,
        2.5,
        5.0,
        7.5,
        10.0,
        20.0,
        40.0,
        80.0,
    )
    E2E_BUCKETS = (
        0.3,
        0.5,
        0.8,
        1.0,
        1.5,
        2.0,
        2.5,
        5.0,
        10.0,
        15.0,
        20.0,
        30.0,
        40.0,
        50.0,
        60.0,
        120.0,
        240.0,
        480.0,
        960.0,
        1920.0,
        7680.0,
    )
    _JITTER = np.exp(
        0.12
        * np.array(
            [
                -1.53,
                -1.15,
                -0.89,
                -0.67,
                -0.49,
                -0.32,
                -0.16,
                0.0,
                0.16,
                0.32,
                0.49,
                0.67,
                0.89,
                1.15,
                1.53,
                2.2,
            ]
        )
    )

    def __init__(self, factory: Factory, services: list[Service], rng: np.random.Generator) -> None:
        self.services = services
        self.rep_service = np.array([i for i, s in enumerate(services) for _ in s.nodes], dtype=np.int64)
        self.rep_node = np.array([n for s in services for n in s.nodes], dtype=np.int64)
        r = len(self.rep_node)
        self.n = r
        self.profiles = [cal.latency_profile(factory.nodes[int(n)].profile.name) for n in self.rep_node]
        self.a100 = np.array([factory.nodes[int(n)].profile.name == "A100" for n in self.rep_node])
        fb = np.array([factory.nodes[int(n)].profile.fb_total_mib for n in self.rep_node])
        self.fb_total = fb
        self.traces = [cal.inference_trace(services[int(s)].trace) for s in self.rep_service]
        self.offset = rng.integers(0, 3000, size=r)
        self.running = np.zeros(r)
        self.waiting = np.zeros(r)
        self.ctx_mean = np.array(
            [np.median(t["input_tokens_q"]) + np.median(t["output_tokens_q"]) / 2 for t in self.traces]
        )
        self.out_mean = np.array([max(8.0, float(np.mean(t["output_tokens_q"]))) for t in self.traces])
        self.prompt_mean = np.array([float(np.mean(t["input_tokens_q"])) for t in self.traces])
        self.prefix_hit = np.array([t["prefix_hit"] for t in self.traces])
        z = np.zeros(r)
        self.c = {k: z.copy() for k in ("prompt", "gen", "pq", "ph", "preempt", "ok_stop", "ok_len", "fin")}
        self.h_ttft = np.zeros((r, len(self.TTFT_BUCKETS) + 2))
        self.h_itl = np.zeros((r, len(self.ITL_BUCKETS) + 2))
        self.h_e2e = np.zeros((r, len(self.E2E_BUCKETS) + 2))
        self.h_queue = np.zeros((r, len(self.TTFT_BUCKETS) + 2))
        self.kv_usage = z.copy()
        self.kv_tokens = z.copy()
        self.batch = z.copy()
        self.prefill_frac = z.copy()
        self.spans: list[dict[str, Any]] = []

    def kv_capacity_tokens(self, kv_mult: np.ndarray) -> np.ndarray:
        blocks = np.array(
            [
                self.services[int(s)].num_gpu_blocks(float(fb))
                for s, fb in zip(self.rep_service, self.fb_total, strict=True)
            ]
        )
        return blocks * 16 * kv_mult

    def step(
        self,
        rng: np.random.Generator,
        tick: int,
        dt: float,
        *,
        tbt_mult: np.ndarray,
        prompt_mult: np.ndarray,
        kv_mult: np.ndarray,
        prefill_mult: np.ndarray,
        up: np.ndarray,
        out_mult: np.ndarray | None = None,
        rate_mult: np.ndarray | None = None,
    ) -> None:
        r = self.n
        # arrivals: replay the trace's per-second counts in windows of dt, scaled to the replica's rate
        arrivals = np.zeros(r, dtype=np.int64)
        for i in range(r):
            tr = self.traces[i]["arrivals_per_s"]
            svc = self.services[int(self.rep_service[i])]
            mean = len(tr) and sum(tr) / len(tr)
            lo = int((self.offset[i] + tick * dt) % (len(tr) - dt))
            window = sum(tr[lo : lo + int(dt)])
            rate = svc.rate * (1.0 if rate_mult is None else float(rate_mult[i]))
            arrivals[i] = rng.poisson(window * rate / max(mean, 1e-9)) if up[i] else 0
        m = int(arrivals.sum())
        rep = np.repeat(np.arange(r), arrivals)
        prompts = np.empty(m)
        outs = np.empty(m)
        for i in np.flatnonzero(arrivals).tolist():
            sl = rep == i
            tr = self.traces[i]
            prompts[sl] = cal.sample_quantiles(rng, tr["input_tokens_q"], int(arrivals[i]))
            outs[sl] = cal.sample_quantiles(rng, tr["output_tokens_q"], int(arrivals[i]))
        prompts = np.maximum(np.rint(prompts * prompt_mult[rep]), 1.0)
        if out_mult is not None:
            outs = outs * out_mult[rep]
        outs = np.maximum(np.rint(outs), 1.0)
        if m:
            n_arr = np.maximum(arrivals, 1)
            mean_ctx = np.bincount(rep, prompts + outs / 2, minlength=r) / n_arr
            self.ctx_mean = np.where(arrivals > 0, 0.7 * self.ctx_mean + 0.3 * mean_ctx, self.ctx_mean)
            mean_p = np.bincount(rep, prompts, minlength=r) / n_arr
            self.prompt_mean = np.where(arrivals > 0, 0.7 * self.prompt_mean + 0.3 * mean_p, self.prompt_mean)
            mean_o = np.bincount(rep, outs, minlength=r) / n_arr
            self.out_mean = np.where(
                arrivals > 0, 0.8 * self.out_mean + 0.2 * np.maximum(mean_o, 1.0), self.out_mean
            )
        cap = self.kv_capacity_tokens(kv_mult)
        max_seqs = np.array([self.services[int(s)].max_num_seqs for s in self.rep_service], dtype=np.float64)
        queue_before = self.waiting.copy()
        self.waiting += arrivals
        # like vLLM, admit while the prompt's blocks fit; decoding then grows each sequence's context
        room_kv = np.maximum(0.0, np.ceil((cap * 0.99 - self.kv_tokens) / self.prompt_mean))  # 1 % watermark
        admit = np.minimum(self.waiting, np.minimum(max_seqs - self.running, room_kv))
        admit = np.maximum(admit, 0.0)
        self.running += admit
        self.waiting -= admit
        self.kv_tokens += admit * self.prompt_mean
        # prefill work this tick (seconds of the replica's time), then decode in what is left
        pre_s = np.zeros(r)
        ttft_pre = np.zeros(m)
        for i in np.flatnonzero(arrivals).tolist():
            sl = rep == i
            ttft_pre[sl] = self.profiles[i].ttft_s(prompts[sl] * (1 - self.prefix_hit[i])) * prefill_mult[i]
        if m:
            pre_s = np.bincount(rep, ttft_pre, minlength=r) * np.minimum(1.0, admit / np.maximum(arrivals, 1))
        b = self.running
        tbt = (
            np.array([float(p.tbt_s(max(bb, 1.0))) for p, bb in zip(self.profiles, b, strict=True)])
            * tbt_mult
        )
        decode_s = np.clip(dt - pre_s, 0.1 * dt, dt)
        tokens = np.where(b > 0, b * decode_s / tbt, 0.0) * up
        # KV cache: prompts in, one slot per generated token, freed on completion. When this tick's
        # decode growth does not fit, the scheduler preempts sequences back to the queue (recompute).
        over = self.kv_tokens + tokens - cap
        pre = np.minimum(np.where(over > 0, np.ceil(over / self.ctx_mean), 0.0), self.running)
        self.running -= pre
        self.waiting += pre
        done = np.minimum(self.running, tokens / self.out_mean)
        self.running -= done
        freed = done * (self.prompt_mean + self.out_mean) + pre * self.ctx_mean
        self.kv_tokens = np.clip(self.kv_tokens + tokens - freed, 0.0, cap)
        self.kv_tokens = np.minimum(self.kv_tokens, self.running * (self.prompt_mean + self.out_mean))
        self.c["preempt"] += pre
        self.kv_usage = np.clip(self.kv_tokens / cap, 0.0, 1.0)
        self.batch = self.running.copy()
        self.prefill_frac = np.clip(pre_s / dt, 0.0, 1.0)
        throughput = np.maximum(done / dt, 0.05)
        wait = queue_before / throughput + np.where(self.waiting > 0, self.waiting / throughput / 2, 0.0)
        wait = np.minimum(wait, 600.0)
        ttft = ttft_pre * (1.0 + b[rep] / 256.0) + wait[rep] * rng.uniform(0.5, 1.0, m) if m else ttft_pre
        e2e = ttft + outs * tbt[rep]
        self._observe(self.h_ttft, self.TTFT_BUCKETS, rep, ttft)
        self._observe(self.h_queue, self.TTFT_BUCKETS, rep, wait[rep] if m else ttft)
        self._observe(self.h_e2e, self.E2E_BUCKETS, rep, e2e)
        # inter-token latencies: `tokens` observations spread around the current TBT
        n_tok = np.floor(tokens).astype(np.int64)
        per = n_tok // len(self._JITTER)
        rem = n_tok % len(self._JITTER)
        for k, j in enumerate(self._JITTER):
            cnt = per + (k < rem)
            vals = tbt * j
            idx = np.searchsorted(np.asarray(self.ITL_BUCKETS), vals)
            for i in np.flatnonzero(cnt).tolist():
                self.h_itl[i, idx[i] : len(self.ITL_BUCKETS)] += cnt[i]
                self.h_itl[i, -2] += cnt[i]
                self.h_itl[i, -1] += cnt[i] * vals[i]
        pq = np.bincount(rep, prompts, minlength=r) if m else np.zeros(r)
        self.c["prompt"] += pq
        self.c["pq"] += pq
        self.c["ph"] += np.floor(pq * self.prefix_hit)
        self.c["gen"] += n_tok
        self.c["fin"] += done
        whole = np.floor(self.c["fin"]) - (self.c["ok_stop"] + self.c["ok_len"])
        length = np.floor(whole * 0.08)
        self.c["ok_len"] += length
        self.c["ok_stop"] += whole - length
        # a sample of requests becomes GenAI spans
        self.spans = []
        if m:
            for i in np.flatnonzero(arrivals)[:4].tolist():
                k = int(np.flatnonzero(rep == i)[0])
                self.spans.append(
                    {
                        "replica": int(i),
                        "ttft": float(ttft[k]),
                        "e2e": float(e2e[k]),
                        "input": int(prompts[k]),
                        "output": int(outs[k]),
                    }
                )

    @staticmethod
    def _observe(h: np.ndarray, buckets: tuple[float, ...], rep: np.ndarray, vals: np.ndarray) -> None:
        if not len(vals):
            return
        nb = len(buckets)
        idx = np.searchsorted(np.asarray(buckets), vals)  # first bucket with le >= v
        counts = np.zeros((h.shape[0], nb + 1))
        np.add.at(counts, (rep, idx), 1.0)
        h[:, :nb] += np.cumsum(counts[:, :nb], axis=1)
        h[:, nb] += counts.sum(axis=1)
        h[:, nb + 1] += np.bincount(rep, vals, minlength=h.shape[0])


def assign(
    factory: Factory, rng: np.random.Generator, start_ms: int
) -> tuple[list[Service], list[TrainJob], list[IdleHold], list[Pipeline]]:
    """Place services, training jobs, idle-held pods and pipelines on the factory (deterministic)."""
    n = factory.n_nodes
    h100 = [i for i, nd in enumerate(factory.nodes) if nd.profile.name == "H100"]
    n_inf = max(1, round(0.3 * n)) if n > 1 else 0
    n_idle = max(1, round(0.1 * n)) if n >= 4 else 0
    inf_nodes = sorted(rng.permutation(h100)[:n_inf].tolist()) if h100 else []
    rest = [i for i in range(n) if i not in set(inf_nodes)]
    idle_nodes = rest[-n_idle:] if n_idle else []
    train_nodes = [i for i in rest if i not in set(idle_nodes)]
    services: list[Service] = []
    for k, (name, model, trace, rate, team) in enumerate(SERVICE_KINDS):
        nodes = inf_nodes[k :: len(SERVICE_KINDS)]
        if nodes:
            svc = Service(name, model, trace, rate, team, nodes)
            svc.pods = [f"{name}-7d9f{k}c{j}b5-{_suffix(rng)}" for j in range(len(nodes))]
            services.append(svc)
    jobs: list[TrainJob] = []
    i = 0
    next_id = 40_000 + int(rng.integers(0, 9_000))
    while i < len(train_nodes):
        size = int(rng.choice([1, 2, 2, 4, 4, 8, 16]))
        group = train_nodes[i : i + size]
        # keep a job within one GPU generation
        gen = factory.nodes[group[0]].profile.name
        group = [g for g in group if factory.nodes[g].profile.name == gen]
        i += len(group)
        jobs.append(new_job(factory, rng, next_id, group, start_ms - int(rng.uniform(600, 86400) * 1000)))
        next_id += 1
    holds: list[IdleHold] = []
    for j, nd in enumerate(idle_nodes):
        team = factory.teams[j % len(factory.teams)]
        holds.append(
            IdleHold(
                f"jupyter-{team}-{_suffix(rng)}",
                "notebooks",
                team,
                nd,
                [nd * 8 + g for g in range(4)],
                float(rng.uniform(18_000, 42_000)),
            )
        )
    pipelines: list[Pipeline] = []
    for p in range(max(2, min(8, n // 4))):
        kind = ("tokenize-web", "dedup-code", "chat-logs-etl", "eval-sets", "embeddings-refresh")[p % 5]
        name = f"{kind}-{p + 1}" if p >= 5 else kind
        period = float(rng.choice([300.0, 600.0, 900.0]))
        run = period * float(rng.uniform(0.25, 0.6))
        last_ok = start_ms - int(rng.uniform(0.1, 0.9) * period * 1000)
        pipelines.append(
            Pipeline(
                name,
                f"s3://datasets/{name}",
                factory.teams[p % len(factory.teams)],
                period,
                run,
                last_ok + int(period * 1000),
                last_ok,
            )
        )
    return services, jobs, holds, pipelines


def new_job(
    factory: Factory, rng: np.random.Generator, job_id: int, nodes: list[int], start_ms: int
) -> TrainJob:
    """A data-parallel job: duration from the Philly runtimes, outcome from the Acme job mix."""
    pai = cal.table()["pai"]
    dur_s = float(
        np.clip(cal.sample_quantiles(rng, pai["philly_runtime_s_quantiles"], 1)[0], 1800, 14 * 86400)
    )
    mix = cal.table()["acme"]["job_outcomes"]["Kalos"]
    u = rng.random()
    outcome = (
        "COMPLETED"
        if u < mix["complete_rate_gpu"]
        else "CANCELLED"
        if u < mix["complete_rate_gpu"] + mix["cancel_rate_gpu"]
        else "FAILED"
    )
    sm_busy = cal.busy_quantiles(cal.acme("kalos_sm_active_pct"), 5.0)
    intensity = float(np.clip(cal.sample_quantiles(rng, sm_busy, 1)[0] / 100.0, 0.25, 0.92))
    fb_busy = cal.busy_quantiles(cal.acme("kalos_gpu_fb_used_pct_of_80GB"), 5.0)
    team = factory.teams[int(rng.integers(0, len(factory.teams)))]
    model = str(rng.choice(["llama-7b", "llama-13b", "mixtral-8x7b", "llama-70b"]))
    grad = {"llama-7b": 14e9, "llama-13b": 26e9, "mixtral-8x7b": 28e9, "llama-70b": 35e9}[model]
    return TrainJob(
        job_id=job_id,
        name=f"pretrain-{model}-{job_id % 1000:03d}",
        team=team,
        user=f"{team[:3]}{int(rng.integers(1, 30)):02d}",
        nodes=list(nodes),
        start_ms=start_ms,
        end_ms=start_ms + int(dur_s * 1000),
        outcome=outcome,
        intensity=intensity,
        compute_s=float(rng.uniform(0.8, 2.6)),
        grad_bytes=grad,
        fb_frac=float(np.clip(cal.sample_quantiles(rng, fb_busy, 1)[0] / 100.0, 0.2, 0.97)),
        dataset=f"s3://datasets/{('tokenize-web', 'dedup-code', 'chat-logs-etl')[job_id % 3]}",
        last_compute=np.zeros(len(nodes) * GPUS_PER_NODE),
    )


def _suffix(rng: np.random.Generator) -> str:
    return "".join(rng.choice(list("bcdfghjklmnpqrstvwxz2456789"), size=5).tolist())
