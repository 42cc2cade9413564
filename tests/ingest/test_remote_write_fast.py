"""The remote-write 1.0 fast path (label bytes -> series cache, numpy sample decoding) decodes exactly
as the full protobuf decoder does, and falls back to it for anything it does not handle."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sightglass.ingest.limits import BadRequest
from sightglass.ingest.remote_write import RemoteWriteDecoder, WriteRequest, encode_write_request
from sightglass.ingest.varint import encode_varint
from sightglass.model import STALE_NAN, SampleBatch, SeriesKey


def _full(body: bytes) -> SampleBatch:
    d = RemoteWriteDecoder()
    return d._decode_v1(WriteRequest.FromString(body)).batch


def _rows(batch: SampleBatch) -> list[tuple[SeriesKey, int, str]]:
    # values compared by their bits: NaN payloads (stale markers) and -0.0 must survive too
    out = []
    for i in range(len(batch)):
        key = batch.series[int(batch.series_index[i])]
        bits = struct.pack("<d", float(batch.values[i])).hex()
        stale = bool(batch.stale[i]) if batch.stale is not None else False
        out.append((key, int(batch.ts_ms[i]), "stale" if stale else bits))
    return sorted(out, key=lambda r: (r[0].metric, r[0].labels, r[1], r[2]))


def _dcgm(t: int, value: float) -> bytes:
    return encode_write_request(
        [
            ({"__name__": "DCGM_FI_DEV_GPU_UTIL", "gpu": str(g), "Hostname": "n1"}, [(t, value + g)])
            for g in range(8)
        ]
    )


def test_steady_requests_are_served_from_the_label_cache() -> None:
    d = RemoteWriteDecoder()
    first = d.decode(_dcgm(1_790_000_000_000, 1.0)).batch
    assert len(d._prefix) == 8  # every series' label bytes learned from the full parse
    for t, v in ((1_790_000_010_000, 2.5), (1_790_000_020_000, 0.0), (1_790_000_030_000, -0.0)):
        body = _dcgm(t, v)
        got = d.decode(body).batch
        assert _rows(got) == _rows(_full(body))
    assert sorted(first.series, key=str) == sorted(got.series, key=str)
    assert len(d._keys) == 8


def test_zero_values_and_stale_markers_on_the_fast_path() -> None:
    d = RemoteWriteDecoder()
    for v in (1.0, 0.0, STALE_NAN, math.nan, math.inf, 0.0):
        body = encode_write_request([({"__name__": "up", "job": "a"}, [(1_790_000_000_000, v)])])
        got = d.decode(body)
        assert _rows(got.batch) == _rows(_full(body))
    assert got.samples == 1


def test_cached_labels_with_a_malformed_sample_fall_back_to_the_precise_error() -> None:
    d = RemoteWriteDecoder()
    good = encode_write_request([({"__name__": "up", "job": "a"}, [(1_790_000_000_000, 1.0)])])
    d.decode(good)
    # same label bytes, then a 16-byte "Sample" whose first field has wire type 7 (invalid)
    ts = WriteRequest.FromString(good).timeseries[0]
    labels = b"".join(b"\x0a" + bytes([lb.ByteSize()]) + lb.SerializeToString() for lb in ts.labels)
    bad_sample = b"\x0f" + b"\x00" * 15
    tsb = labels + b"\x12\x10" + bad_sample
    body = b"\x0a" + bytes([len(tsb)]) + tsb
    with pytest.raises(BadRequest, match=r"invalid remote-write 1\.0 protobuf"):
        d.decode(body)


def test_other_sample_layouts_with_cached_labels() -> None:
    d = RemoteWriteDecoder()
    good = encode_write_request([({"__name__": "up", "job": "a"}, [(1_790_000_000_000, 1.0)])])
    d.decode(good)
    ts = WriteRequest.FromString(good).timeseries[0]
    labels = b"".join(b"\x0a" + bytes([lb.ByteSize()]) + lb.SerializeToString() for lb in ts.labels)
    # timestamp before value (legal protobuf): still 16 bytes, decoded by the protobuf parser
    sample = b"\x10" + encode_varint(1_790_000_000_123) + b"\x09" + struct.pack("<d", 42.0)
    assert len(sample) == 16
    tsb = labels + b"\x12\x10" + sample
    body = b"\x0a" + bytes([len(tsb)]) + tsb
    got = d.decode(body).batch
    assert got.rows() == [(SeriesKey("up", (("job", "a"),)), 1_790_000_000_123, 42.0)]


def test_a_label_value_that_looks_like_a_sample_field() -> None:
    # the tail of the label bytes itself is "0x12 0x10 + 16 bytes": the learned split must be the real one
    tricky = "\x12\x10" + "A" * 16
    rows = [({"__name__": "m", "z": tricky}, [(1_790_000_000_000, 3.0)])]
    d = RemoteWriteDecoder()
    for v in (3.0, 4.0):
        body = encode_write_request([(rows[0][0], [(1_790_000_000_000, v)])])
        assert _rows(d.decode(body).batch) == _rows(_full(body))


def test_histograms_and_exemplars_take_the_full_decoder() -> None:
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="m")
    ts.samples.add(value=1.0, timestamp=5)
    ex = ts.exemplars.add(value=2.0, timestamp=5)
    ex.labels.add(name="trace_id", value="abc")
    res = RemoteWriteDecoder().decode(req.SerializeToString())
    assert res.exemplars == 1 and res.samples == 1


def test_cache_is_bounded() -> None:
    d = RemoteWriteDecoder(cache_size=10)
    for t in range(3):
        body = encode_write_request(
            [
                ({"__name__": "m", "i": str(i)}, [(1_790_000_000_000 + t, 1.0)])
                for i in range(t * 20, t * 20 + 20)
            ]
        )
        assert len(d.decode(body).batch) == 20
        assert len(d._keys) <= 20


_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.just(0.0), st.just(-0.0), st.just(STALE_NAN)
)
_ts = st.one_of(
    st.integers(min_value=-(2**62), max_value=2**62), st.integers(1_600_000_000_000, 2_000_000_000_000)
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b_total"]),
            st.dictionaries(st.sampled_from(["x", "y", "gpu"]), st.text(min_size=0, max_size=20), max_size=3),
            st.lists(st.tuples(_ts, _value), min_size=0, max_size=3),
        ),
        max_size=12,
    ),
    st.integers(min_value=1, max_value=3),
)
def test_fast_path_equals_the_full_decoder(
    series: list[tuple[str, dict[str, str], list[tuple[int, float]]]], repeats: int
) -> None:
    d = RemoteWriteDecoder()
    body = encode_write_request([({"__name__": m, **labels}, samples) for m, labels, samples in series])
    want = _rows(_full(body))
    for _ in range(repeats + 1):  # the first decode learns, the others hit the cache
        got = d.decode(body)
        assert _rows(got.batch) == want
        assert got.samples == len(want)
    assert np.all(np.diff(np.sort(got.batch.series_index)) >= 0)


def test_a_steady_request_is_read_whole_by_numpy_with_zero_and_other_values_mixed() -> None:
    d = RemoteWriteDecoder()
    d.decode(_dcgm(1_790_000_000_000, 1.0))
    values = [0.0, 2.5, -0.0, 0.0, STALE_NAN, math.inf, 0.0, 7.0]
    body = encode_write_request(
        [
            ({"__name__": "DCGM_FI_DEV_GPU_UTIL", "gpu": str(g), "Hostname": "n1"}, [(1_790_000_010_000, v)])
            for g, v in enumerate(values)
        ]
    )
    raw = [bytes(t.SerializeToString()) for t in WriteRequest.FromString(body).timeseries]
    assert sorted({len(r) - len(raw[1]) for r in raw}) == [-9, 0]  # both Sample sizes are present
    assert d._steady(raw) is not None
    got = d.decode(body)
    assert _rows(got.batch) == _rows(_full(body)) and got.samples == 8


def test_the_same_series_twice_in_a_steady_request_keeps_wire_order() -> None:
    d = RemoteWriteDecoder()
    labels = {"__name__": "up", "job": "a"}
    d.decode(encode_write_request([(labels, [(1_790_000_000_000, 1.0)])]))
    body = encode_write_request([(labels, [(1_790_000_010_000, 1.0)]), (labels, [(1_790_000_010_000, 2.0)])])
    got = d.decode(body).batch
    assert got.values.tolist() == [1.0, 2.0] and got.series_index.tolist() == [0, 0]


def test_a_known_series_next_to_a_short_or_unknown_one_takes_the_loop() -> None:
    d = RemoteWriteDecoder()
    known = encode_write_request([({"__name__": "up", "job": "a"}, [(1_790_000_000_000, 1.0)])])
    d.decode(known)
    for other in (
        encode_write_request([({"__name__": "new", "job": "a"}, [(1_790_000_010_000, 1.0)])]),
        encode_write_request([({"__name__": "up", "job": "a"}, [(1, 1.0), (2, 2.0)])]),
    ):
        body = known + other
        assert (
            d._steady([bytes(t.SerializeToString()) for t in WriteRequest.FromString(body).timeseries])
            is None
        )
        assert _rows(d.decode(body).batch) == _rows(_full(body))
    with pytest.raises(BadRequest, match="has no __name__ label"):  # an empty TimeSeries
        d.decode(known + b"\x0a\x00")


def _fleet_rw(t: int, value: float) -> bytes:
    return encode_write_request(
        [
            ({"__name__": "DCGM_FI_DEV_GPU_UTIL", "gpu": str(g), "Hostname": f"n{n:02d}"}, [(t, value + g)])
            for n in range(40)
            for g in range(8)
        ]
    )


def test_a_body_equal_but_for_its_samples_is_read_from_the_learned_places() -> None:
    d = RemoteWriteDecoder()
    d.decode(_fleet_rw(1_790_000_000_000, 1.0))  # learns the series
    d.decode(_fleet_rw(1_790_000_010_000, 2.0))  # steady: learns the places
    assert d._templates
    for k, v in ((2, 3.5), (3, STALE_NAN), (4, -1e300)):
        body = _fleet_rw(1_790_000_000_000 + 10_000 * k, v)
        assert d._from_template(body) is not None
        got = d.decode(body)
        assert _rows(got.batch) == _rows(_full(body)) and got.samples == 320


def test_a_body_of_the_same_size_with_other_bytes_takes_the_other_paths() -> None:
    d = RemoteWriteDecoder()
    d.decode(_fleet_rw(1_790_000_000_000, 1.0))
    d.decode(_fleet_rw(1_790_000_010_000, 2.0))
    body = _fleet_rw(1_790_000_020_000, 3.0)
    other = body.replace(b"n07", b"n99", 1)  # a new series of the same size
    assert len(other) == len(body) and d._from_template(other) is None
    assert _rows(d.decode(other).batch) == _rows(_full(other))
    # a timestamp varint whose last byte now continues: the Sample no longer ends where it did
    cut = body.rfind(b"\x12\x10\x09") + 3 + 8 + 1 + 5
    bad = body[:cut] + bytes([body[cut] | 0x80]) + body[cut + 1 :]
    assert d._from_template(bad) is None
    with pytest.raises(BadRequest) as fast:
        d.decode(bad)
    with pytest.raises(BadRequest) as fresh:
        RemoteWriteDecoder().decode(bad)
    assert str(fast.value) == str(fresh.value)
