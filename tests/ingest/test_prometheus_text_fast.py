"""The text parser's hot path for known series (cache hit on the raw series text) gives what a fresh
parser (full validation of every line) gives, errors included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sightglass.ingest.prometheus_text import ParseError, ParseResult, TextParser
from sightglass.model import SampleBatch


def _rows(batch: SampleBatch) -> list[tuple[str, int, float]]:
    return sorted((k.text(), t, v if v == v else -1.0) for k, t, v in batch.rows())  # type: ignore[misc]


def _reads_like_a_fresh_parser(
    p: TextParser, body: str, default_ts_ms: int, *, learn_first: bool = False
) -> tuple[ParseResult, ParseResult] | None:
    """``p`` gives the same rows as a fresh parser (returns both results), or fails with the same message."""
    try:
        want = TextParser().parse(body, default_ts_ms=default_ts_ms)
    except ParseError as e:
        with pytest.raises(ParseError) as info:
            p.parse(body, default_ts_ms=default_ts_ms)
        assert str(info.value) == str(e)
        return None
    if learn_first:
        p.parse(body, default_ts_ms=default_ts_ms)
    got = p.parse(body, default_ts_ms=default_ts_ms)
    assert _rows(got.batch) == _rows(want.batch)
    return got, want


def _body(n: int, ts: int | None, value: int = 1) -> str:
    suffix = f" {ts}" if ts is not None else ""
    return "".join(f'gpu_util{{gpu="{g}",host="h x"}} {value + g}{suffix}\n' for g in range(n))


@pytest.mark.parametrize("ts", [1_790_000_000_000, None])
def test_steady_bodies_skip_series_parsing(ts: int | None) -> None:
    p = TextParser()
    p.parse(_body(100, ts), default_ts_ms=5)
    calls: list[int] = []
    real = p._new_series
    p._new_series = lambda *a: calls.append(1) or real(*a)  # type: ignore[method-assign,func-returns-value]
    body = _body(100, None if ts is None else ts + 10_000, 7)
    got = p.parse(body, default_ts_ms=6)
    assert not calls
    assert _rows(got.batch) == _rows(TextParser().parse(body, default_ts_ms=6).batch)
    assert got.samples == 100 and got.new_series == 0


def test_a_new_series_or_a_comment_among_known_ones() -> None:
    p = TextParser()
    p.parse(_body(100, 1), default_ts_ms=5)
    for extra in ('gpu_util{gpu="new",host="h x"} 3 2\n', "# TYPE gpu_util gauge\n", "\n\n"):
        body = _body(100, 2) + extra
        got = p.parse(body)
        want = TextParser().parse(body)
        assert _rows(got.batch) == _rows(want.batch)
        assert got.batch.metadata == want.batch.metadata


def test_errors_are_the_same_on_the_hot_path() -> None:
    p = TextParser()
    p.parse(_body(100, 1))
    bad = _body(100, 2).replace("} 50 2", "} fifty 2")
    with pytest.raises(ParseError, match="invalid value 'fifty'"):
        p.parse(bad)
    dup = _body(100, 2) + 'gpu_util{gpu="0",host="h x"} 9 2\n'
    with pytest.raises(ParseError, match="duplicate sample"):
        p.parse(dup)
    with pytest.raises(ParseError, match="invalid timestamp"):
        p.parse(_body(100, 2).replace("} 3 2", "} 3 2.5"))


_line = st.tuples(
    st.sampled_from(['a{x="1"}', 'a{x="1 2"}', "b", 'c{y="} 5"}', 'a{x="2"}']),
    st.sampled_from(["1", "0", "-2.5", "NaN", "+Inf", "1e3"]),
    st.one_of(st.none(), st.integers(0, 10**13).map(str)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(_line, min_size=64, max_size=120), st.booleans())
def test_hot_path_equals_a_fresh_parser(lines: list[tuple[str, str, str | None]], same_ts: bool) -> None:
    rows = []
    for i, (series, value, ts) in enumerate(lines):
        if same_ts and ts is not None:
            ts = "1790000000000"
        rows.append(f"{series} {value}" + (f" {int(ts) + i}" if ts is not None and not same_ts else ""))
        if same_ts and ts is not None:
            rows[-1] += f" {ts}"
    body = "\n".join(rows) + "\n"
    _reads_like_a_fresh_parser(TextParser(), body, 7, learn_first=True)  # the series are known then


def _learned(ts: int | None) -> TextParser:
    p = TextParser()
    p.parse(_body(100, ts), default_ts_ms=5)
    assert p._templates  # the body's line order was remembered
    return p


@pytest.mark.parametrize("ts", [1_790_000_000_000, None])
def test_a_body_in_the_same_order_is_read_without_the_line_loop(ts: int | None) -> None:
    p = _learned(ts)
    body = _body(100, None if ts is None else ts + 10_000, 7)
    assert p._same_as_before(body.split("\n")) is not None
    got = p.parse(body, default_ts_ms=6)
    assert _rows(got.batch) == _rows(TextParser().parse(body, default_ts_ms=6).batch)
    assert got.samples == 100 and got.new_series == 0


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.replace("} 8 17", "}\t8 17"),  # other whitespace
        lambda b: b.replace("} 8 17", "} 8  17"),
        lambda b: b.replace("} 8 17", '} 8 17 # {a="b"} 1'),  # an exemplar-like tail
        lambda b: b.replace("} 8 17", "} 8"),  # one line without a timestamp
        lambda b: b.replace("} 8 17", "} 8 17\r"),
        lambda b: "\n".join(reversed(b.rstrip("\n").split("\n"))) + "\n",  # another order
        lambda b: "# TYPE gpu_util gauge\n" + b,
        lambda b: b + "\n\n",
        lambda b: b.replace('gpu="7",host="h x"} 8', 'gpu="7",host="h x",z="1"} 8'),  # a new series
        lambda b: b.replace("} 8 17", "} 8 -17"),
        lambda b: b.replace("} 8 17", "} 0x8 17"),
    ],
)
def test_anything_else_is_read_as_a_fresh_parser_reads_it(edit: object) -> None:
    both = _reads_like_a_fresh_parser(_learned(1), edit(_body(100, 17)), 6)  # type: ignore[operator]
    if both is not None:
        got, want = both
        assert got.batch.metadata == want.batch.metadata


def test_errors_are_the_same_on_the_template_path() -> None:
    p = _learned(1)
    for bad, match in (
        (_body(100, 2).replace("} 50 2", "} fifty 2"), "invalid value 'fifty'"),
        (_body(100, 2).replace("} 3 2", "} 3 2.5"), "invalid timestamp"),
        (_body(100, 2).replace("} 3 2", "} 3 x"), "invalid timestamp"),
    ):
        assert p._same_as_before(bad.split("\n")) is not None
        with pytest.raises(ParseError, match=match) as info:
            p.parse(bad)
        with pytest.raises(ParseError) as fresh:
            TextParser().parse(bad)
        assert str(info.value) == str(fresh.value)
