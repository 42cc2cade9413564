"""Reduce the public traces in ``../shared/data/traces`` to the simulator's calibration table.

Writes ``src/sightglass/simulate/data/calibration.json``: quantiles, empirical CDFs and small
profile grids only (never the raw rows), so ``sightglass demo`` works without the traces.

    python scripts/calibrate.py [--shared DIR]

The shared folder defaults to ``$SIGHTGLASS_SHARED`` or ``<repo>/../shared``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "sightglass" / "simulate" / "data" / "calibration.json"
Q = np.linspace(0.0, 1.0, 101)


def _q(values: np.ndarray, digits: int = 4) -> list[float]:
    return [round(float(x), digits) for x in np.quantile(values, Q)]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def acme(traces: Path) -> dict[str, object]:
    rows = _read_csv(traces / "acme_shanghai_ai_lab" / "acme_utilization_quantiles.csv")
    qs = np.array([float(r["quantile_pct"]) for r in rows])
    out: dict[str, object] = {}
    cols = [c for c in rows[0] if c != "quantile_pct"]
    for c in cols:
        v = np.array([float(r[c]) if r[c] else np.nan for r in rows])
        ok = ~np.isnan(v)
        # the file holds 1,000 quantiles (quantile_pct in 0..100); resample to 101 points
        out[c] = [round(float(x), 3) for x in np.interp(Q * 100.0, qs[ok], v[ok])]
    summary = {}
    for r in _read_csv(traces / "acme_shanghai_ai_lab" / "cluster_summary.csv"):
        if r["complete_rate_gpu"]:
            summary[r["id"]] = {
                k: float(r[k])
                for k in ("complete_rate_gpu", "cancel_rate_gpu", "fail_rate_gpu", "med_run_time_gpu")
            }
    return {"quantiles": out, "job_outcomes": summary}


def splitwise(traces: Path) -> dict[str, object]:
    rows = _read_csv(traces / "splitwise_sim_perf_model" / "perf_model.csv")
    ttft: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    tbt: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    power: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in rows:
        if r["model"] != "llama2-70b":
            continue
        hw, tp = r["hardware"], int(r["tensor_parallel"])
        prompt, batch = int(r["prompt_size"]), int(r["batch_size"])
        if batch == 1:
            ttft[(hw, tp, prompt)].append(float(r["prompt_time"]))
        if prompt == 512:
            tbt[(hw, tp, batch)].append(float(r["token_time"]))
        power[(hw, tp)].append(float(r["average_power"]))
    out: dict[str, object] = {}
    for hw in sorted({k[0] for k in ttft}):
        for tp in sorted({k[1] for k in ttft if k[0] == hw}):
            prompts = sorted(p for h, t, p in ttft if h == hw and t == tp)
            batches = sorted(b for h, t, b in tbt if h == hw and t == tp)
            out[f"{hw}/tp{tp}"] = {
                "prompt_tokens": prompts,
                "ttft_ms": [round(float(np.median(ttft[(hw, tp, p)])), 2) for p in prompts],
                "batch": batches,
                "tbt_ms": [round(float(np.median(tbt[(hw, tp, b)])), 3) for b in batches],
                "avg_power_frac": round(float(np.median(power[(hw, tp)])), 4),
            }
    return out


def vidur(traces: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for hw in ("a100_dgx", "h100_dgx"):
        rows = _read_csv(traces / "vidur_profiling" / "network" / hw / "all_reduce.csv")
        by: dict[int, list[float]] = defaultdict(list)
        for r in rows:
            if int(r["num_workers"]) == 8 and int(r["devices_per_node"]) == 8:
                by[int(r["size"])].append(float(r["time_stats.all_reduce.median"]))
        sizes = sorted(by)
        # keep ~40 log-spaced points of the size→latency curve
        pick = sorted({sizes[int(i)] for i in np.linspace(0, len(sizes) - 1, 40)})
        out[hw] = {"bytes": pick, "ms": [round(float(np.median(by[s])), 4) for s in pick]}
    return out


def pai(traces: Path) -> dict[str, object]:
    base = traces / "alibaba_pai_gpu_2020_minibatch"
    cov: list[float] = []
    for r in _read_csv(base / "coefficient_variation.csv"):
        for k, v in r.items():
            if k and v:
                cov.append(float(v))
    ratios: dict[str, list[float]] = {}
    for j in (1, 2, 3, 4):
        rows = _read_csv(base / f"job_{j}_norm.csv")
        by_t: dict[int, list[float]] = defaultdict(list)
        for r in rows:
            by_t[int(r["time"])].append(float(r["batch_time_norm"]))
        rr = [v / np.median(vs) for vs in by_t.values() if len(vs) > 2 and np.median(vs) > 0 for v in vs]
        ratios[f"job_{j}"] = _q(np.array(rr))
    runtimes = np.array([float(r["runtime"]) for r in _read_csv(base / "philly_runtime.csv")])
    return {
        "cov_quantiles": _q(np.array(cov)),
        "worker_over_median_quantiles": ratios,
        "philly_runtime_s_quantiles": _q(runtimes[runtimes > 0], 1),
    }


def _per_second(ts: np.ndarray) -> list[int]:
    ts = ts - ts.min()
    return [int(x) for x in np.bincount(ts.astype(np.int64), minlength=int(ts.max()) + 1)]


def azure(traces: Path) -> dict[str, object]:
    from datetime import datetime

    out: dict[str, object] = {}
    for name in ("code", "conv"):
        rows = _read_csv(traces / "azure_llm_inference_2023" / f"AzureLLMInferenceTrace_{name}.csv")
        ts = np.array([datetime.fromisoformat(r["TIMESTAMP"][:26]).timestamp() for r in rows])
        inp = np.array([float(r["ContextTokens"]) for r in rows])
        outp = np.array([float(r["GeneratedTokens"]) for r in rows])
        out[f"azure_{name}"] = {
            "arrivals_per_s": _per_second(ts),
            "input_tokens_q": _q(inp, 1),
            "output_tokens_q": _q(outp, 1),
            "prefix_hit": 0.0,
        }
    rows2 = [json.loads(line) for line in (traces / "mooncake_fast25" / "conversation_trace.jsonl").open()]
    ts = np.array([r["timestamp"] / 1000.0 for r in rows2])
    seen: set[int] = set()
    hits = total = 0
    for r in rows2:
        for h in r["hash_ids"]:
            total += 1
            if h in seen:
                hits += 1
            seen.add(h)
    out["mooncake_conv"] = {
        "arrivals_per_s": _per_second(ts),
        "input_tokens_q": _q(np.array([r["input_length"] for r in rows2], dtype=float), 1),
        "output_tokens_q": _q(np.array([r["output_length"] for r in rows2], dtype=float), 1),
        "prefix_hit": round(hits / max(total, 1), 4),
    }
    return out


def disk(traces: Path) -> dict[str, object]:
    base = traces / "azure_vm_noise_2024_disk"
    out: dict[str, object] = {}
    for f in sorted(base.glob("*.csv")):
        v = np.array([float(r["value"]) for r in _read_csv(f)])
        out[f.stem] = _q(v / np.median(v))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    default = os.environ.get("SIGHTGLASS_SHARED") or str(REPO.parent / "shared")
    ap.add_argument("--shared", default=default)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    traces = Path(args.shared) / "data" / "traces"
    table = {
        "about": "Reduced by scripts/calibrate.py from ../shared/data/traces (quantiles at 0,0.01..1).",
        "acme": acme(traces),
        "splitwise": splitwise(traces),
        "vidur_all_reduce": vidur(traces),
        "pai": pai(traces),
        "inference_traces": azure(traces),
        "disk_iops_over_median": disk(traces),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(table, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {args.out} ({Path(args.out).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
