"""Remote-write decoding: 1.0 and 2.0 round trips, native histograms, validation, precise errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sightglass.ingest.limits import BadRequest, UnsupportedMediaType
from sightglass.ingest.remote_write import (
    CONTENT_TYPE_V2,
    RemoteWriteDecoder,
    V2Request,
    WriteRequest,
    encode_batch,
    encode_v2_request,
    encode_write_request,
    negotiate_version,
)
from sightglass.model import (
    STALE_NAN,
    ExpHistogramPoint,
    MetricMetadata,
    MetricType,
    SampleBatch,
    SeriesKey,
)


def _rows(batch: SampleBatch) -> list[tuple[SeriesKey, int, float | None]]:
    return sorted(batch.rows(), key=lambda r: (r[0].metric, r[0].labels, r[1]))


def test_round_trip_v1() -> None:
    rows = [
        ("DCGM_FI_DEV_GPU_UTIL", {"Hostname": "n1", "gpu": "0"}, 1_700_000_000_000, 87.0),
        ("DCGM_FI_DEV_GPU_UTIL", {"Hostname": "n1", "gpu": "0"}, 1_700_000_010_000, 91.5),
        ("DCGM_FI_DEV_GPU_UTIL", {"Hostname": "n1", "gpu": "1"}, 1_700_000_000_000, 0.0),
        ("vllm:num_requests_running", {"model_name": "llama"}, 1_700_000_000_000, 3.0),
    ]
    batch = SampleBatch.from_rows(rows)
    batch.metadata["vllm:num_requests_running"] = MetricMetadata(
        "vllm:num_requests_running", MetricType.GAUGE, "h"
    )
    res = RemoteWriteDecoder().decode(encode_batch(batch))
    assert _rows(res.batch) == _rows(batch)
    assert res.samples == 4
    assert res.batch.metadata["vllm:num_requests_running"].type is MetricType.GAUGE


def test_special_values_and_stale_marker() -> None:
    body = encode_write_request(
        [
            (
                {"__name__": "x", "k": "v"},
                [(1, math.nan), (2, math.inf), (3, -math.inf), (4, STALE_NAN), (5, 1.0)],
            )
        ]
    )
    batch = RemoteWriteDecoder().decode(body).batch
    vals = [r[2] for r in batch.rows()]
    assert vals[0] is not None and math.isnan(vals[0])
    assert vals[1] == math.inf and vals[2] == -math.inf
    assert vals[3] is None  # the stale marker is not a NaN sample
    assert vals[4] == 1.0


def test_empty_label_values_are_dropped_and_labels_sorted() -> None:
    req = WriteRequest()
    ts = req.timeseries.add()
    for k, v in [("z", "1"), ("__name__", "m"), ("a", ""), ("b", "2")]:
        ts.labels.add(name=k, value=v)
    ts.samples.add(value=1.0, timestamp=5)
    (key, _, _), *_ = RemoteWriteDecoder().decode(req.SerializeToString()).batch.rows()
    assert key == SeriesKey("m", (("b", "2"), ("z", "1")))


def test_series_without_samples_is_skipped() -> None:
    res = RemoteWriteDecoder().decode(encode_write_request([({"__name__": "m"}, [])]))
    assert len(res.batch) == 0 and res.batch.series == []


def test_native_histogram_round_trip() -> None:
    key = SeriesKey("ttft_seconds", (("model", "llama"),))
    h = ExpHistogramPoint(key, 1000, 3, 12.0, 4.25, 2.0, 1e-9, -3, (1.0, 0.0, 5.0), 2, (4.0,))
    res = RemoteWriteDecoder().decode(encode_write_request([], histograms=[h]))
    assert res.histograms == 1 and res.batch.exp_histograms == [h]
    assert sorted((r[0].metric, r[2]) for r in res.batch.rows()) == [
        ("ttft_seconds_count", 12.0),
        ("ttft_seconds_sum", 4.25),
    ]


def test_native_histogram_delta_encoded_spans() -> None:
    """Integer histograms: deltas across spans with a gap; Prometheus index i → OTel index i-1."""
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="h")
    hm = ts.histograms.add(count_int=9, sum=3.5, schema=0, zero_count_int=1, timestamp=7)
    hm.positive_spans.add(offset=1, length=2)  # buckets 1, 2
    hm.positive_spans.add(offset=2, length=1)  # gap of 2, bucket 5
    hm.positive_deltas.extend([2, 1, -1])  # counts 2, 3, 2
    (p,) = RemoteWriteDecoder().decode(req.SerializeToString()).batch.exp_histograms
    assert (p.positive_offset, p.positive_counts) == (0, (2.0, 3.0, 0.0, 0.0, 2.0))
    assert (p.count, p.zero_count, p.ts_ms) == (9.0, 1.0, 7)


def test_native_histogram_span_mismatch_rejected() -> None:
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="h")
    hm = ts.histograms.add(count_int=1, schema=0, timestamp=7)
    hm.positive_spans.add(offset=0, length=3)
    hm.positive_deltas.extend([1])
    with pytest.raises(BadRequest, match="cover 3 buckets but 1 counts"):
        RemoteWriteDecoder().decode(req.SerializeToString())


def test_native_histogram_huge_gap_rejected() -> None:
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="h")
    hm = ts.histograms.add(count_int=2, schema=0, timestamp=7)
    hm.positive_spans.add(offset=0, length=1)
    hm.positive_spans.add(offset=10_000_000, length=1)
    hm.positive_deltas.extend([1, 0])
    with pytest.raises(BadRequest, match="more than"):
        RemoteWriteDecoder().decode(req.SerializeToString())


def test_v2_round_trip_with_metadata() -> None:
    md = {"gpu_power_watts": MetricMetadata("gpu_power_watts", MetricType.GAUGE, "Power draw", "watts")}
    body = encode_v2_request(
        [
            ({"__name__": "gpu_power_watts", "gpu": "0"}, [(10, 300.5), (20, 310.0)]),
            ({"__name__": "gpu_power_watts", "gpu": "1"}, [(10, 120.0)]),
        ],
        md,
    )
    res = RemoteWriteDecoder().decode(body, 2)
    assert [(r[0].label_dict()["gpu"], r[1], r[2]) for r in _rows(res.batch)] == [
        ("0", 10, 300.5),
        ("0", 20, 310.0),
        ("1", 10, 120.0),
    ]
    assert res.batch.metadata["gpu_power_watts"] == md["gpu_power_watts"]


def test_v2_bad_symbol_reference() -> None:
    req = V2Request()
    req.symbols.extend(["", "__name__", "m"])
    ts = req.timeseries.add()
    ts.labels_refs.extend([1, 9])
    ts.samples.add(value=1, timestamp=1)
    with pytest.raises(BadRequest, match="past the table"):
        RemoteWriteDecoder().decode(req.SerializeToString(), 2)
    ts.labels_refs[:] = [1]
    with pytest.raises(BadRequest, match="odd number"):
        RemoteWriteDecoder().decode(req.SerializeToString(), 2)


@pytest.mark.parametrize(
    ("content_type", "version"),
    [
        (None, 1),
        ("application/x-protobuf", 1),
        ("application/x-protobuf;proto=prometheus.WriteRequest", 1),
        (CONTENT_TYPE_V2, 2),
        ("application/x-protobuf; proto=io.prometheus.write.v2.Request", 2),
    ],
)
def test_negotiate_version(content_type: str | None, version: int) -> None:
    assert negotiate_version(content_type) == version


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/x-protobuf;proto=foo.Bar", "text/plain"]
)
def test_negotiate_version_unsupported(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        negotiate_version(content_type)


@pytest.mark.parametrize(
    ("labels", "match", "reason"),
    [
        ({"__name__": "bad-name"}, "invalid metric name", "invalid_metric_name"),
        ({"job": "x"}, "no __name__", "invalid_metric_name"),
        ({"__name__": "m", "bad.label": "x"}, "invalid label name", "invalid_labels"),
        ({"__name__": "m", "v": "x" * 20_000}, "limits.max_label_value_bytes", "label_value_too_long"),
        (
            {"__name__": "m", **{f"l{i}": "v" for i in range(70)}},
            "limits.max_labels_per_series",
            "too_many_labels",
        ),
    ],
)
def test_validation(labels: dict[str, str], match: str, reason: str) -> None:
    with pytest.raises(BadRequest, match=match) as info:
        RemoteWriteDecoder().decode(encode_write_request([(labels, [(1, 1.0)])]))
    assert info.value.reason == reason


def test_duplicate_label_names_rejected() -> None:
    req = WriteRequest()
    ts = req.timeseries.add()
    for k, v in [("__name__", "m"), ("a", "1"), ("a", "2")]:
        ts.labels.add(name=k, value=v)
    ts.samples.add(value=1, timestamp=1)
    with pytest.raises(BadRequest, match="duplicate label name 'a'"):
        RemoteWriteDecoder().decode(req.SerializeToString())


def test_truncated_body_names_the_field_and_byte() -> None:
    body = encode_write_request([({"__name__": "up", "job": "a"}, [(1000, 1.0), (2000, 2.0)])])
    with pytest.raises(
        BadRequest, match=r"WriteRequest\.timeseries: field at byte 0 declares \d+ bytes but only"
    ):
        RemoteWriteDecoder().decode(body[:-5])


@pytest.mark.parametrize("junk", [b"\xff\xff\xff", b"\x0a\x05\x0a\x03\xff\xfe\xfd", b"\x08"])
def test_garbage_is_a_bad_request(junk: bytes) -> None:
    with pytest.raises(BadRequest, match=r"invalid remote-write 1\.0 protobuf"):
        RemoteWriteDecoder().decode(junk)


def test_invalid_utf8_label_rejected() -> None:
    # Label{name="a", value=b"\xff"} inside TimeSeries inside WriteRequest, hand-assembled
    label = b"\x0a\x01a\x12\x01\xff"
    ts = b"\x0a" + bytes([len(label)]) + label
    body = b"\x0a" + bytes([len(ts)]) + ts
    with pytest.raises(BadRequest, match="not valid UTF-8"):
        RemoteWriteDecoder().decode(body)


def test_validation_cache_does_not_leak_between_limits() -> None:
    body = encode_write_request([({"__name__": "m", "v": "x" * 100}, [(1, 1.0)])])
    RemoteWriteDecoder().decode(body)
    with pytest.raises(BadRequest):
        RemoteWriteDecoder(max_label_value_bytes=10).decode(body)


_label_value = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12
)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b_total", "c:d"]),
            st.dictionaries(st.sampled_from(["x", "y", "gpu"]), _label_value, max_size=3),
            st.integers(min_value=-(2**53), max_value=2**53),
            st.floats(allow_nan=False),
        ),
        max_size=20,
    )
)
def test_round_trip_property(rows: list[tuple[str, dict[str, str], int, float]]) -> None:
    batch = SampleBatch.from_rows(rows)
    got = RemoteWriteDecoder().decode(encode_batch(batch)).batch
    assert _rows(got) == _rows(batch)
    assert np.array_equal(np.sort(got.ts_ms), np.sort(batch.ts_ms))


def test_error_walk_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from sightglass.ingest import protowire

    monkeypatch.setattr(protowire, "MAX_FIELDS_WALKED", 10)
    body = encode_write_request([({"__name__": "m", "i": str(i)}, [(1, 1.0)]) for i in range(50)])
    with pytest.raises(BadRequest, match="fault not within the first 10 fields"):
        RemoteWriteDecoder().decode(body[:-1])
