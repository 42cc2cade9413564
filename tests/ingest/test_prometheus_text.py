from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sightglass.ingest.prometheus_text import ParseError, ParserLimits, TextParser, parse_series, parse_text
from sightglass.model import MetricType, SeriesKey


def rows(text: str, **kw: object) -> list[tuple[SeriesKey, int, float | None]]:
    return parse_text(text, default_ts_ms=kw.pop("ts", 1000), **kw).rows()  # type: ignore[arg-type]


def test_basic_lines_metadata_and_types() -> None:
    text = (
        "# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).\n"
        "# TYPE DCGM_FI_DEV_GPU_TEMP gauge\n"
        'DCGM_FI_DEV_GPU_TEMP{gpu="0",Hostname="n1"} 61\n'
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="llama"} 3.5\n'
        "plain_metric 7 1700000000123\n"
        "empty_labels{} 1\n"
    )
    b = parse_text(text, default_ts_ms=5)
    got = {(k.metric, k.labels): (t, v) for k, t, v in b.rows()}
    assert got[("DCGM_FI_DEV_GPU_TEMP", (("Hostname", "n1"), ("gpu", "0")))] == (5, 61.0)
    assert got[("vllm:num_requests_running", (("model_name", "llama"),))] == (5, 3.5)
    assert got[("plain_metric", ())] == (1700000000123, 7.0)
    assert got[("empty_labels", ())] == (5, 1.0)
    assert b.metadata["DCGM_FI_DEV_GPU_TEMP"].type is MetricType.GAUGE
    assert b.metadata["DCGM_FI_DEV_GPU_TEMP"].help == "GPU temperature (in C)."


def test_escapes_special_values_whitespace_and_crlf() -> None:
    text = 'm{a="x\\"y\\\\z\\n",b="} {"} NaN\r\nm2 +Inf\n  m3  -Inf  \n\n'
    r = rows(text)
    k, _, v = r[0]
    assert k.label_dict() == {"a": 'x"y\\z\n', "b": "} {"} and v is not None and math.isnan(v)
    assert r[1][2] == math.inf and r[2][2] == -math.inf


def test_openmetrics_seconds_eof_exemplars_units() -> None:
    text = (
        "# TYPE req_seconds histogram\n# UNIT req_seconds seconds\n"
        'req_seconds_bucket{le="0.1"} 3 1700000000.5 # {trace_id="abc"} 0.05 1700000000.4\n'
        'req_seconds_bucket{le="+Inf"} 4 1700000000.5\n'
        "req_seconds_count 4 1700000000.5\nreq_seconds_sum 0.9 1700000000.5\n# EOF\n"
    )
    b = parse_text(text, openmetrics=True)
    assert {t for _, t, _ in b.rows()} == {1_700_000_000_500}
    assert (
        b.metadata["req_seconds"].unit == "seconds" and b.metadata["req_seconds"].type is MetricType.HISTOGRAM
    )
    with pytest.raises(ParseError, match="after '# EOF'"):
        parse_text(text + "x 1 1\n", openmetrics=True)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('m{a="b} 1\n', "unterminated"),
        ('m{1a="b"} 1\n', "invalid label name"),
        ("m{a=b} 1\n", "to start the value"),
        ('m{a="1",a="2"} 1\n', "duplicate label name"),
        ("9metric 1\n", "invalid metric name"),
        ("m\n", "expected a value"),
        ("m one\n", "invalid value"),
        ("m 1 soon\n", "invalid timestamp"),
        ("m 1 2 3\n", "unexpected text"),
        ("m 1\nm 2\n", "duplicate sample"),
        ("# TYPE m gauges\nm 1\n", "invalid metric type"),
    ],
)
def test_malformed_input_names_line_and_reason(text: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason) as e:
        parse_text(text, default_ts_ms=1)
    assert e.value.line >= 1


def test_line_numbers_point_at_the_bad_line() -> None:
    with pytest.raises(ParseError) as e:
        parse_text('ok 1\nok2 2\nbad{x="1} 3\n', default_ts_ms=1)
    assert e.value.line == 3


def test_limits_on_label_values_and_label_count() -> None:
    limits = ParserLimits(max_label_value_bytes=100, max_labels=3)
    with pytest.raises(ParseError, match="over the limit of 100"):
        parse_text('m{a="' + "x" * 101 + '"} 1\n', default_ts_ms=1, limits=limits)
    with pytest.raises(ParseError, match="4 labels"):
        parse_text('m{a="1",b="2",c="3",d="4"} 1\n', default_ts_ms=1, limits=limits)
    parse_text('m{a="' + "x" * 100 + '"} 1\n', default_ts_ms=1, limits=limits)


def test_out_of_order_and_repeated_series_with_timestamps_are_fine() -> None:
    r = rows("m 1 3000\nm 2 1000\nm 3 2000\n")
    assert [t for _, t, _ in r] == [3000, 1000, 2000]


def test_cache_reuses_series_across_scrapes_and_counts_new_ones() -> None:
    p = TextParser()
    r1 = p.parse('a{x="1"} 1\nb 2\n', default_ts_ms=1)
    r2 = p.parse('a{x="1"} 3\nb 4\nc 5\n', default_ts_ms=2)
    assert (r1.new_series, r2.new_series) == (2, 1)
    assert [v for _, _, v in r2.batch.rows()] == [3.0, 4.0, 5.0]


def test_a_label_value_containing_brace_space_is_not_confused_with_a_cached_series() -> None:
    p = TextParser()
    p.parse('m{a="x"} 1\n', default_ts_ms=1)
    (row,) = p.parse('m{a="x} 9"} 2\n', default_ts_ms=2).batch.rows()
    assert row[0].label_dict() == {"a": "x} 9"} and row[2] == 2.0


def test_no_timestamp_and_no_scrape_time_is_an_error() -> None:
    with pytest.raises(ParseError, match="no scrape time"):
        parse_text("m 1\n")


def test_invalid_utf8() -> None:
    with pytest.raises(ParseError, match="UTF-8"):
        TextParser().parse(b'm{a="\xff"} 1\n', default_ts_ms=1)


_names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", fullmatch=True)
_lnames = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(lambda s: s != "__name__")
_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(_names, st.dictionaries(_lnames, _values, max_size=4), st.floats()), min_size=1, max_size=20
    )
)
def test_roundtrip_text_property(series: list[tuple[str, dict[str, str], float]]) -> None:
    expected: dict[SeriesKey, float] = {}
    lines = []
    for name, labels, v in series:
        key = SeriesKey.of(name, labels)
        if key in expected:
            continue
        expected[key] = v
        lines.append(f"{key.text()} {v!r}".replace("inf", "Inf").replace("nan", "NaN"))
    got = {k: val for k, _, val in parse_text("\n".join(lines) + "\n", default_ts_ms=1).rows()}
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        g = got[k]
        assert g is not None and (g == v or (math.isnan(v) and math.isnan(g)))


def test_parse_series_direct() -> None:
    assert parse_series('{__name__="x",a="1"}', ParserLimits()) == SeriesKey("x", (("a", "1"),))
