"""Fast-mode output: exact formats, determinism, ingest into a real store, the RCA suite, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from sim_helpers import START_MS

from sightglass.model import Matcher, SampleBatchBuilder, SeriesKey
from sightglass.simulate.fast import run_cases, run_fast, run_ingest
from sightglass.simulate.faults import CATALOGUE, ScriptedFault
from sightglass.store.duckdb import DuckDBStore

LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+) (\d+(?:\.\d+)?)$")
SCRIPTED = [
    ScriptedFault("gpu_thermal", 120_000, 300_000, {}),
    ScriptedFault("bad_deploy", 150_000, 300_000, {}),
]
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def fast_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fast")
    run_fast(nodes=4, duration_s=480, seed=11, start_ms=START_MS, out=out, scripted=SCRIPTED)
    return out


def _families(text: str) -> list[tuple[str, str, list[str]]]:
    fams: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            fams.append((name, typ, []))
        elif not line.startswith("#"):
            fams[-1][2].append(line)
    return fams


def test_openmetrics_is_valid_and_grouped(fast_out: Path) -> None:
    text = (fast_out / "metrics.om").read_text()
    assert text.endswith("# EOF\n")
    fams = _families(text)
    names = [f[0] for f in fams]
    assert len(names) == len(set(names)), "families must not be interleaved"
    # the strict OpenMetrics parser accepts everything but multi-timestamp histograms (it cannot parse
    # those; see test_histograms_are_complete_metric_points)
    hist = {f[0] for f in fams if f[1] == "histogram"}
    hist_names = hist | {h + sfx for h in hist for sfx in ("_bucket", "_count", "_sum")}
    plain = "\n".join(line for line in text.splitlines() if not _in_histogram(line, hist_names)) + "\n"
    parsed = list(text_string_to_metric_families(plain))
    assert {m.type for m in parsed} >= {"gauge", "counter", "unknown"}
    # each series is contiguous with increasing timestamps
    for _name, typ, lines in fams:
        if typ == "histogram":
            continue
        seen: set[str] = set()
        last_key, last_ts = None, -1.0
        for line in lines:
            m = LINE.match(line)
            assert m, line
            key = m.group(1) + m.group(2)
            if key != last_key:
                assert key not in seen, f"series split: {key}"
                seen.add(key)
                last_key, last_ts = key, -1.0
            assert float(m.group(4)) > last_ts
            last_ts = float(m.group(4))


def _in_histogram(line: str, hist_names: set[str]) -> bool:
    if line.startswith("# TYPE ") or line.startswith("# HELP "):
        return line.split(" ")[2] in hist_names
    return line.split("{", 1)[0] in hist_names


def test_histograms_are_complete_metric_points(fast_out: Path) -> None:
    fams = _families((fast_out / "metrics.om").read_text())
    hists = [f for f in fams if f[1] == "histogram"]
    assert {f[0] for f in hists} >= {"vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds"}
    for name, _, lines in hists:
        point: list[str] = []
        for line in lines:
            point.append(line)
            if line.startswith(f"{name}_sum"):
                les = [LABEL.findall(p.split("}")[0] + "}") for p in point[:-2]]
                assert [dict(x)["le"] for x in les][-1] == "+Inf"
                counts = [int(p.split(" ")[-2]) for p in point[:-2]]
                assert counts == sorted(counts)
                assert int(point[-2].split(" ")[-2]) == counts[-1]  # _count == +Inf bucket
                assert len({p.split(" ")[-1] for p in point}) == 1  # one timestamp per point
                point = []
        assert point == []


def test_dcgm_labels_and_physics(fast_out: Path) -> None:
    text = (fast_out / "metrics.om").read_text()
    line = next(x for x in text.splitlines() if x.startswith("DCGM_FI_DEV_GPU_TEMP{"))
    labels = dict(LABEL.findall(line))
    for k in ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"):
        assert k in labels
    assert labels["modelName"] in ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB")
    pod_line = next(x for x in text.splitlines() if x.startswith("DCGM_FI_DEV_GPU_UTIL{") and 'pod="' in x)
    assert {"pod", "namespace", "container"} <= dict(LABEL.findall(pod_line)).keys()
    # energy is monotone per series; power never above the H100 cap
    energy: dict[str, list[float]] = {}
    for x in text.splitlines():
        m = LINE.match(x)
        if m and m.group(1) == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION":
            energy.setdefault(m.group(2), []).append(float(m.group(3)))
        if m and m.group(1) == "DCGM_FI_DEV_POWER_USAGE":
            assert 40 <= float(m.group(3)) <= 700
    assert energy and all(np.all(np.diff(v) > 0) for v in energy.values())
    assert "vllm:cache_config_info{" in text and "kube_pod_container_resource_requests{" in text
    assert 'resource="nvidia_com_gpu"' in text and "node_infiniband_port_data_received_bytes_total{" in text


def test_side_files(fast_out: Path) -> None:
    events = [json.loads(x) for x in (fast_out / "events.jsonl").read_text().splitlines()]
    assert {"job.start", "k8s.deploy"} <= {e["kind"] for e in events}
    jobs = [json.loads(x) for x in (fast_out / "jobs.jsonl").read_text().splitlines()]
    assert all(
        {"job_id", "user", "account", "nodes", "gpus", "start", "end", "state"} <= j.keys() for j in jobs
    )
    lineage = [json.loads(x) for x in (fast_out / "lineage.jsonl").read_text().splitlines()]
    assert {e["eventType"] for e in lineage} >= {"START", "COMPLETE"}
    assert all(e["run"]["runId"] and e["job"]["namespace"] == "pipelines" for e in lineage)
    spans = [json.loads(x) for x in (fast_out / "spans.jsonl").read_text().splitlines()]
    attrs = {
        a["key"]
        for s in spans
        for rs in s["resourceSpans"]
        for ss in rs["scopeSpans"]
        for sp in ss["spans"]
        for a in sp["attributes"]
    }
    assert {"gen_ai.operation.name", "gen_ai.request.model", "gen_ai.usage.input_tokens"} <= attrs
    truth = [json.loads(x) for x in (fast_out / "truth.jsonl").read_text().splitlines()]
    assert [t["fault"] for t in truth] == ["gpu_thermal", "bad_deploy"]
    assert json.loads((fast_out / "factory.json").read_text())["prices"]["gpu_hour_usd"]["H100"] > 0


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    for d in ("a", "b"):
        run_fast(nodes=4, duration_s=300, seed=5, start_ms=START_MS, out=tmp_path / d, fault_every_s=60)
    for f in ("metrics.om", "events.jsonl", "jobs.jsonl", "lineage.jsonl", "spans.jsonl", "truth.jsonl"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    run_fast(nodes=4, duration_s=300, seed=6, start_ms=START_MS, out=tmp_path / "c", fault_every_s=60)
    assert (tmp_path / "a" / "metrics.om").read_bytes() != (tmp_path / "c" / "metrics.om").read_bytes()


def _parse_om(path: Path) -> tuple[SampleBatchBuilder, int]:
    b = SampleBatchBuilder()
    n = 0
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, line
        b.add(
            SeriesKey.of(m.group(1), LABEL.findall(m.group(2))),
            int(float(m.group(4)) * 1000),
            float(m.group(3)),
        )
        n += 1
    return b, n


def test_fast_output_ingests_into_duckdb(fast_out: Path, tmp_path: Path) -> None:
    b, n = _parse_om(fast_out / "metrics.om")
    with DuckDBStore(tmp_path / "om") as store:
        res = store.append(b.build())
        assert res.samples_written == n
        got = store.select([Matcher("__name__", "=", "DCGM_FI_DEV_GPU_TEMP")], START_MS, START_MS + 480_000)
        assert len(got) >= 32 and all(len(s) > 10 for s in got)


def test_direct_ingest_matches_text(fast_out: Path, tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "direct") as store:
        stats, sim = run_ingest(store, nodes=4, duration_s=480, seed=11, start_ms=START_MS, scripted=SCRIPTED)
        _, n = _parse_om(fast_out / "metrics.om")
        assert stats.samples == n
        got = store.select(
            [Matcher("__name__", "=", "vllm:time_to_first_token_seconds_bucket"), Matcher("le", "=", "+Inf")],
            START_MS,
            START_MS + 480_000,
        )
        assert got
        assert store.count("events") == len(sim.events)
        from sightglass.promql.engine import Engine

        res = Engine(store).instant("sum(DCGM_FI_DEV_POWER_USAGE)", START_MS + 300_000)
        assert res is not None


def test_rca_suite(tmp_path: Path) -> None:
    index = run_cases(
        cases=3,
        nodes=4,
        duration_s=900,
        seed=2,
        start_ms=START_MS,
        out=tmp_path,
        only=["gpu_thermal", "pipeline_stall", "bad_deploy"],
    )
    assert len(index) == 3
    for k, fault in enumerate(["gpu_thermal", "pipeline_stall", "bad_deploy"]):
        d = tmp_path / f"case-{k:03d}"
        case = json.loads((d / "case.json").read_text())
        assert set(case) == {"symptom", "at", "truth"}
        assert case["truth"]["fault"] == fault and case["truth"]["kind"] == CATALOGUE[fault].root_kind
        assert case["truth"]["match"] and case["at"].endswith("Z")
        text = (d / "metrics.om").read_text()
        for k2, v in case["truth"]["match"].items():
            assert f'{k2}="{v}"' in text


def test_cli_simulate(tmp_path: Path) -> None:
    from sightglass.cli import cli

    scen = tmp_path / "s.json"
    scen.write_text(json.dumps({"faults": [{"fault": "storage_slowdown", "at": "2m", "duration": "5m"}]}))
    r = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--nodes",
            "4",
            "--duration",
            "5m",
            "--seed",
            "3",
            "--scenario",
            str(scen),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["samples"] > 0
    assert json.loads((tmp_path / "o" / "truth.jsonl").read_text())["fault"] == "storage_slowdown"
    r = CliRunner().invoke(
        cli, ["simulate", "--nodes", "4", "--duration", "2m", "--ingest", str(tmp_path / "db")]
    )
    assert r.exit_code == 0, r.output


def test_yaml_scenario(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    from sightglass.simulate.faults import load_scenario

    p = tmp_path / "s.yaml"
    p.write_text(
        "faults:\n  - {fault: gpu_thermal, at: 10m, duration: 15m, target: {Hostname: node-03, gpu: 5}}\n"
        "  - {fault: storage_slowdown, at: 20m}\n"
    )
    faults = load_scenario(p)
    assert faults[0].at_ms == 600_000 and faults[0].duration_ms == 900_000
    assert faults[0].target == {"Hostname": "node-03", "gpu": "5"} and faults[1].duration_ms is None
    bad = tmp_path / "b.json"
    bad.write_text('{"faults": [{"fault": "meteor_strike"}]}')
    with pytest.raises(ValueError, match="unknown fault"):
        load_scenario(bad)
