"""Twins of the workload and infrastructure pages: inference, training, data pipelines, network/storage.

Each is a table of current values from instant queries, plus a few chart lines over the window.
Definitions the pages show (docs/dashboard.md):

- inference, per ``model_name`` (vLLM series): TTFT and ITL p50/p95 over 5 minutes of the
  histograms, generated and prompt tokens/s and requests/s over 1 minute, queued and running
  requests, the fullest replica's KV-cache usage, preemptions/s, replicas;
- training, per Slurm job: the last step time, steps/s, data-loader wait (and its share of the step),
  **goodput** = useful compute seconds per wall-clock second = steps/s x the median rank's compute
  time (a stalled, waiting or straggling job scores low), **stragglers** = ranks whose compute time
  is over 1.15 x the job's median;
- data pipelines, per pipeline: freshness (age of the newest consumable data), lag since the last
  successful run, runs/h by status, running;
- network and storage: InfiniBand ports (rx/tx bytes/s, error, link-down and transmit-wait rates,
  state; per port from the store, :func:`sightglass.web.query.counter_rates`), switches, NFS mounts
  (read bytes/s, ops/s, mean response time).
"""

from __future__ import annotations

from statistics import median
from typing import Any

from sightglass.web.query import Queries, Window, counter_rates, host_of, latest

STRAGGLER_RATIO = 1.15
TOP_PORTS = 25


def _sum(col: dict[Any, float | None]) -> float | None:
    vals = [v for v in col.values() if v is not None]
    return sum(vals) if vals else None


def inference(ctx: Any, w: Window) -> dict[str, Any]:
    q = Queries(ctx, w)
    by = "model_name"

    def hq(p: float, metric: str) -> dict[str, float | None]:
        return q.by1(f"histogram_quantile({p}, sum by (model_name, le) (rate({metric}_bucket[5m])))", by)

    cols = {
        "ttft_p50_seconds": hq(0.5, "vllm:time_to_first_token_seconds"),
        "ttft_p95_seconds": hq(0.95, "vllm:time_to_first_token_seconds"),
        "itl_p50_seconds": hq(0.5, "vllm:inter_token_latency_seconds"),
        "itl_p95_seconds": hq(0.95, "vllm:inter_token_latency_seconds"),
        "e2e_p95_seconds": hq(0.95, "vllm:e2e_request_latency_seconds"),
        "generation_tokens_per_second": q.by1(
            "sum by (model_name) (rate(vllm:generation_tokens_total[1m]))", by
        ),
        "prompt_tokens_per_second": q.by1("sum by (model_name) (rate(vllm:prompt_tokens_total[1m]))", by),
        "requests_per_second": q.by1("sum by (model_name) (rate(vllm:request_success_total[1m]))", by),
        "requests_waiting": q.by1("sum by (model_name) (vllm:num_requests_waiting)", by),
        "requests_running": q.by1("sum by (model_name) (vllm:num_requests_running)", by),
        "kv_cache_usage_ratio": q.by1("max by (model_name) (vllm:kv_cache_usage_perc)", by),
        "preemptions_per_second": q.by1("sum by (model_name) (rate(vllm:num_preemptions_total[5m]))", by),
        "replicas": q.by1("count by (model_name) (vllm:num_requests_running)", by),
    }
    models = sorted(set().union(*[set(c) for c in cols.values()]))
    rows = [{"model": m, **{k: c.get(m) for k, c in cols.items()}} for m in models]
    charts = {
        "ttft_p95_seconds": q.range(
            "histogram_quantile(0.95, sum by (model_name, le) "
            "(rate(vllm:time_to_first_token_seconds_bucket[5m])))",
            by,
        ),
        "generation_tokens_per_second": q.range(
            "sum by (model_name) (rate(vllm:generation_tokens_total[1m]))", by
        ),
        "requests_waiting": q.range("sum by (model_name) (vllm:num_requests_waiting)", by),
        "kv_cache_usage_ratio": q.range("max by (model_name) (vllm:kv_cache_usage_perc)", by),
    }
    return {"window": w.to_dict(), "models": rows, "charts": charts, "queries": q.ran}


def training(ctx: Any, w: Window) -> dict[str, Any]:
    q = Queries(ctx, w)
    key = ("slurm_job_id",)
    names: dict[str, dict[str, str]] = {}
    for labels, _ in q.vector("last_over_time(training_steps_total[5m])"):
        names[labels.get("slurm_job_id", "")] = {
            "job_name": labels.get("job_name", ""),
            "team": labels.get("team", ""),
        }

    def col(promql: str) -> dict[str, float | None]:
        return {k[0]: v for k, v in q.by(promql, *key).items()}

    step = col("max by (slurm_job_id) (last_over_time(training_step_duration_seconds[5m]))")
    rate = col("sum by (slurm_job_id) (rate(training_steps_total[5m]))")
    dl = col("max by (slurm_job_id) (last_over_time(training_dataloader_wait_seconds[5m]))")
    loss = col("max by (slurm_job_id) (last_over_time(training_loss[5m]))")
    ranks: dict[str, list[dict[str, Any]]] = {}
    for labels, v in q.vector("last_over_time(training_rank_compute_seconds[5m])"):
        ranks.setdefault(labels.get("slurm_job_id", ""), []).append(
            {"rank": labels.get("rank", ""), "node": host_of(labels), "gpu": labels.get("gpu"), "seconds": v}
        )
    rows = []
    for job in sorted(set(names) | set(step) | set(ranks)):
        rs = sorted(ranks.get(job, []), key=lambda r: int(r["rank"]) if str(r["rank"]).isdigit() else 0)
        med = median(r["seconds"] for r in rs) if rs else None
        stragglers = (
            [
                {**r, "ratio_to_median": r["seconds"] / med}
                for r in rs
                if med and r["seconds"] > STRAGGLER_RATIO * med
            ]
            if med
            else []
        )
        st, sps, wait = step.get(job), rate.get(job), dl.get(job)
        rows.append(
            {
                "job_id": job,
                **names.get(job, {"job_name": "", "team": ""}),
                "step_seconds": st,
                "steps_per_second": sps,
                "dataloader_wait_seconds": wait,
                "dataloader_wait_ratio": wait / st if wait is not None and st else None,
                "goodput_ratio": min(1.0, sps * med) if sps is not None and med is not None else None,
                "loss": loss.get(job),
                "ranks": len(rs),
                "median_rank_compute_seconds": med,
                "stragglers": stragglers,
            }
        )
    charts = {
        "step_seconds": q.range("max by (slurm_job_id) (training_step_duration_seconds)", "slurm_job_id"),
        "dataloader_wait_seconds": q.range(
            "max by (slurm_job_id) (training_dataloader_wait_seconds)", "slurm_job_id"
        ),
    }
    return {"window": w.to_dict(), "jobs": rows, "charts": charts, "queries": q.ran}


def pipelines(ctx: Any, w: Window) -> dict[str, Any]:
    q = Queries(ctx, w)
    by = "pipeline"
    fresh = q.by("max by (pipeline, dataset, team) (last_over_time(data_pipeline_freshness_seconds[5m]))",
                 "pipeline", "dataset", "team")  # fmt: skip
    last = q.by1("max by (pipeline) (last_over_time(data_pipeline_last_success_timestamp_seconds[5m]))", by)
    running = q.by1("max by (pipeline) (last_over_time(data_pipeline_running[5m]))", by)
    runs: dict[str, dict[str, float | None]] = {}
    for (p, status), v in q.by(
        "sum by (pipeline, status) (increase(data_pipeline_runs_total[1h]))", "pipeline", "status"
    ).items():
        runs.setdefault(p, {})[status] = v
    pipes = sorted({k[0] for k in fresh} | set(last) | set(running) | set(runs))
    rows = []
    for p in pipes:
        ds = [(k[1], k[2], v) for k, v in fresh.items() if k[0] == p]
        ts = last.get(p)
        rows.append(
            {
                "pipeline": p,
                "team": next((t for _, t, _ in ds if t), ""),
                "datasets": [{"dataset": d, "freshness_seconds": v} for d, _, v in ds],
                "freshness_seconds": max((v for *_, v in ds if v is not None), default=None),
                "lag_seconds": w.at_ms / 1000 - ts if ts is not None else None,
                "runs_per_hour": runs.get(p, {}),
                "running": None if running.get(p) is None else bool(running[p]),
            }
        )
    charts = {
        "freshness_seconds": q.range("max by (pipeline) (data_pipeline_freshness_seconds)", by),
    }
    return {"window": w.to_dict(), "pipelines": rows, "charts": charts, "queries": q.ran}


def network(ctx: Any, w: Window) -> dict[str, Any]:
    q = Queries(ctx, w)
    lk = ("instance", "device", "port")
    ib = "node_infiniband_"
    # per port, thousands of series: read from the store (query.counter_rates, query.latest)
    minute, five = 60_000, 300_000
    cols = {
        "rx_bytes_per_second": counter_rates(q, f"{ib}port_data_received_bytes_total", minute, lk),
        "tx_bytes_per_second": counter_rates(q, f"{ib}port_data_transmitted_bytes_total", minute, lk),
        "errors_per_second": counter_rates(q, f"{ib}port_errors_received_total", five, lk),
        "link_downed_15m": counter_rates(q, f"{ib}link_downed_total", 15 * minute, lk, per_second=False),
        "transmit_wait_per_second": counter_rates(q, f"{ib}port_transmit_wait_total", minute, lk),
        "rate_bytes_per_second": latest(q, f"{ib}rate_bytes_per_second", five, lk),
        "state_id": latest(q, f"{ib}state_id", five, lk),
    }
    keys = sorted(set().union(*[set(c) for c in cols.values()]))
    ports = []
    for k in keys:
        row: dict[str, Any] = {"node": host_of({"instance": k[0]}), "device": k[1], "port": k[2]}
        row.update({c: v.get(k) for c, v in cols.items()})
        rate, rx, tx = row["rate_bytes_per_second"], row["rx_bytes_per_second"], row["tx_bytes_per_second"]
        row["utilisation_ratio"] = (
            (max(rx or 0.0, tx or 0.0) / rate) if rate and (rx is not None or tx is not None) else None
        )
        row["active"] = None if row["state_id"] is None else row["state_id"] == 4  # IB_PORT_ACTIVE
        ports.append(row)

    def trouble(r: dict[str, Any]) -> tuple[float, ...]:
        return (
            0.0 if r["active"] is not False else -1.0,
            -(r["link_downed_15m"] or 0.0),
            -(r["errors_per_second"] or 0.0),
            -(r["transmit_wait_per_second"] or 0.0),
        )

    ports.sort(key=trouble)
    switches = [
        {"switch": lab.get("switch", ""), "tier": lab.get("tier", ""), "up": v == 1}
        for lab, v in q.vector("last_over_time(ib_switch_up[5m])")
    ]
    switches.sort(key=lambda s: (s["up"], s["tier"], s["switch"]))
    nk = ("instance", "export")
    nfs_cols = {
        "read_bytes_per_second": q.by("sum by (instance, export) (rate(node_mountstats_nfs_total_read_bytes_total[1m]))", *nk),
        "ops_per_second": q.by("sum by (instance, export) (rate(node_mountstats_nfs_operations_requests_total[1m]))", *nk),
        "mean_response_seconds": q.by(
            "sum by (instance, export) (rate(node_mountstats_nfs_operations_response_time_seconds_total[5m]))"
            " / sum by (instance, export) (rate(node_mountstats_nfs_operations_requests_total[5m]))",
            *nk,
        ),
    }  # fmt: skip
    nfs: list[dict[str, Any]] = [
        {"node": host_of({"instance": k[0]}), "export": k[1], **{c: v.get(k) for c, v in nfs_cols.items()}}
        for k in sorted(set().union(*[set(c) for c in nfs_cols.values()]))
    ]
    nfs.sort(key=lambda r: -(r["mean_response_seconds"] or 0.0))
    totals = {
        "ports": len(ports),
        "ports_down": sum(r["active"] is False for r in ports),
        "rx_bytes_per_second": _sum(cols["rx_bytes_per_second"]),
        "tx_bytes_per_second": _sum(cols["tx_bytes_per_second"]),
        "errors_per_second": _sum(cols["errors_per_second"]),
        "switches": len(switches),
        "switches_down": sum(not s["up"] for s in switches),
        "nfs_mounts": len(nfs),
        "nfs_read_bytes_per_second": q.scalar("sum(rate(node_mountstats_nfs_total_read_bytes_total[1m]))"),
    }
    charts = {
        "ib_rx_bytes_per_second": q.range(f"sum(rate({ib}port_data_received_bytes_total[1m]))"),
        "nfs_mean_response_seconds": q.range(
            "sum(rate(node_mountstats_nfs_operations_response_time_seconds_total[5m]))"
            " / sum(rate(node_mountstats_nfs_operations_requests_total[5m]))"
        ),
    }
    return {
        "window": w.to_dict(),
        "totals": totals,
        "ports": ports[:TOP_PORTS],
        "switches": switches,
        "nfs": nfs[:TOP_PORTS],
        "charts": charts,
        "queries": q.ran,
    }
