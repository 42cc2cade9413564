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


# ---------------------------------------------------------------------- repeated body, one timestamp
def _without_slow_paths(p: TextParser) -> list[str]:
    """Record when a parse leaves the repeated-body columns path (the token path or the line loop)."""
    left: list[str] = []
    real_tokens, real_new = p._same_as_before, p._new_series
    p._same_as_before = lambda *a: left.append("tokens") or real_tokens(*a)  # type: ignore[method-assign,func-returns-value]
    p._new_series = lambda *a: left.append("loop") or real_new(*a)  # type: ignore[method-assign,func-returns-value]
    return left


@pytest.mark.parametrize("ts", [1_790_000_000_000, None])
@pytest.mark.parametrize("newline", [True, False])
def test_a_repeated_body_with_one_timestamp_is_read_as_columns(ts: int | None, newline: bool) -> None:
    p = _learned(ts)
    left = _without_slow_paths(p)
    body = _body(100, None if ts is None else ts + 10_000, 7)
    body = body if newline else body.rstrip("\n")
    got = p.parse(body, default_ts_ms=6)
    assert not left
    want = TextParser().parse(body, default_ts_ms=6)
    assert _rows(got.batch) == _rows(want.batch)
    assert got.batch.series == want.batch.series
    assert got.batch.series_index.tolist() == want.batch.series_index.tolist()
    assert got.batch.ts_ms.tolist() == want.batch.ts_ms.tolist()
    assert got.batch.values.tobytes() == want.batch.values.tobytes()
    assert got.series_numbers is not None and want.series_numbers is not None
    assert got.series_numbers.tolist() == want.series_numbers.tolist()
    assert (got.samples, got.new_series, got.families, got.eof) == (100, 0, 0, False)
    again = p.parse(body, default_ts_ms=6)  # the cached columns are not shared with an earlier batch
    assert again.batch.series is not got.batch.series
    assert again.batch.series_index is not got.batch.series_index


def test_a_repeated_body_honours_the_timestamp_options() -> None:
    p = _learned(1)
    body = _body(100, 17)
    got = p.parse(body, default_ts_ms=6, honor_timestamps=False)
    assert set(got.batch.ts_ms.tolist()) == {6}
    q = _learned(None)
    with pytest.raises(ParseError, match="no scrape time"):
        q.parse(_body(100, None))


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.replace("} 8 17\n", "} 8 18\n"),  # another timestamp on one line
        lambda b: b.replace("} 8 17\n", "} 8\n"),  # one line without it
        lambda b: b.replace("} 8 17\n", "} 8 17 17\n"),
        lambda b: b.replace("} 8 17\n", "} 8 9 17\n"),
        lambda b: b.replace("} 8 17\n", "}  8 17\n"),
        lambda b: b.replace("} 8 17\n", "} 8\t17\n"),
        lambda b: b.replace("} 8 17\n", "} 8 17\r\n"),
        lambda b: b.replace("} 8 17\n", "} 8 17\n\n"),  # a blank line
        lambda b: b.replace("} 8 17\n", "} 8 17\n# a comment 17\n"),
        lambda b: b.replace("} 8 17\n", "} 8 17\nx 1 17\n"),  # a new series, ending like the rest
        lambda b: b.replace("} 8 17\n", "} 8 17\n" + b.split("\n")[0][:-3] + " 5 17\n"),  # a duplicate
        lambda b: b.replace("} 8 17\n", "} eight 17\n"),
        lambda b: b.replace("} 8 17\n", "} 1_000 17\n"),
        lambda b: b.replace("} 8 17\n", "} \x0b8 17\n"),
        lambda b: b.replace("} 8 17\n", "} 8\x0b 17\n"),
        lambda b: b.replace("} 8 17\n", "} 8\x0b# 17\n"),
        lambda b: b.replace("} 8 17\n", "} \u0668 17\n"),  # an Arabic-Indic digit
        lambda b: b.replace("} 8 17\n", "} NaN 17\n").replace("} 9 17\n", "} -Inf 17\n"),
        lambda b: b.replace("} 8 17\n", '} 8 17 # {a="b"} 1\n'),
        lambda b: b.replace(" 17\n", " +17\n"),  # every line: timestamps int() reads
        lambda b: b.replace(" 17\n", " 017\n"),
        lambda b: b.replace(" 17\n", " 17_0\n"),
        lambda b: b.replace(" 17\n", " 1.5\n"),
        lambda b: b.replace(" 17\n", f" {2**63}\n"),
        lambda b: b.replace(" 17\n", " 17\x0b\n"),
        lambda b: b.replace(" 17\n", " 17\x0b#\n"),
        lambda b: b.replace(" 17\n", " #\n"),
        lambda b: b.replace(" 17\n", "\n"),  # no timestamps at all
        lambda b: b.replace(" 17\n", " \n"),
        lambda b: b.replace(" 17\n", "  17\n"),
        lambda b: b.rstrip("\n"),
        lambda b: b.rstrip("\n") + " 17",
        lambda b: b.rstrip("\n")[:-1],
        lambda b: b + "17\n",
        lambda b: b + " 17\n",
        lambda b: b[: b.index("\n") + 1],  # fewer lines
        lambda b: b.replace('host="h x"} 8 17', 'host="h y"} 8 17'),
        lambda b: b.replace(" 17\n", " 17\n17\n", 1),
        # a line without its learned series text, or with another of the same length, or two swapped
        lambda b: b.replace('gpu_util{gpu="3",host="h x"} ', ""),
        lambda b: b.replace('gpu_util{gpu="3",host="h x"} ', "").replace(" 17\n", "\n"),
        lambda b: b.replace('gpu_util{gpu="3",host="h x"} ', "x").rstrip("\n"),
        lambda b: b.replace('gpu="3"', 'gpu="X"'),
        lambda b: b.replace('gpu="3"', "gpu=#4#").replace('gpu="4"', 'gpu="3"').replace("gpu=#4#", 'gpu="4"'),
    ],
)
def test_a_repeated_body_otherwise_reads_as_a_fresh_parser_reads_it(edit: object) -> None:
    p = _learned(1)
    p.parse(_body(100, 16))  # the columns are cached
    _reads_like_a_fresh_parser(p, edit(_body(100, 17)), 6)  # type: ignore[operator]
    # and the parser still reads a plain repeated body right afterwards
    _reads_like_a_fresh_parser(p, _body(100, 18, 3), 6)


def test_a_learned_body_with_a_series_twice_keeps_the_duplicate_check() -> None:
    line = 'gpu_util{gpu="0",host="h x"}'
    body = "".join(f"{line} {i} {i}\n" for i in range(100))  # one series, 100 timestamps
    p = TextParser()
    p.parse(body)
    same_ts = "".join(f"{line} {i} 5\n" for i in range(100))
    _reads_like_a_fresh_parser(p, same_ts, 6)


_value = st.one_of(
    st.sampled_from(["1", "0", "-2.5", "NaN", "+Inf", "-Inf", "1e3", "0.1", "1_0", "", "x", "1.2.3", "-0"]),
    st.floats(allow_nan=False).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.text(alphabet="0123456789.eE+-_ \t\x0b#", min_size=1, max_size=6),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_value, min_size=64, max_size=64),
    st.sampled_from(["17", "1790000000000", "-5", "+3", "007", "1_0", "x", "", "1.0", "17 18"]),
    st.booleans(),
)
def test_repeated_bodies_equal_a_fresh_parser(values: list[str], ts: str, newline: bool) -> None:
    def body(vals: list[str], t: str) -> str:
        text = "\n".join(
            f'm{{g="{i}",h="a b"}} {v} {t}' if t else f'm{{g="{i}",h="a b"}} {v}' for i, v in enumerate(vals)
        )
        return text + ("\n" if newline else "")

    p = TextParser()
    p.parse(body([str(i) for i in range(64)], "1"))
    p.parse(body([str(i) for i in range(64)], "2"))  # the columns are cached
    _reads_like_a_fresh_parser(p, body(values, ts), 9)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 9), _value, st.sampled_from(["", " 17", " 18", "\t17", " 17\x0b#", " #"])),
        min_size=1,
        max_size=20,
    ),
)
def test_the_line_loop_hot_paths_equal_a_fresh_parser_on_odd_tokens(
    lines: list[tuple[int, str, str]],
) -> None:
    """Known series, bodies too small to learn: the loop's hot paths split at spaces, a fresh parser at
    any whitespace; a body that fails on a hot path is read again without them."""
    p = TextParser()
    p.parse("".join(f'm{{g="{g}",h="a b"}} 1 5\nn{g} 1 5\n' for g in range(10)))
    body = "".join(f'{"m" if g % 2 else "n"}{{g="{g}",h="a b"}} {v}{t}\n' for g, v, t in lines)
    _reads_like_a_fresh_parser(p, body, 9)


def test_a_body_read_again_counts_its_new_series() -> None:
    p = TextParser()
    p.parse('m{g="0"} 1 5\n')
    body = 'm{g="1"} 3 7\nm{g="0"} 2\x0b# 7\n'  # to a fresh parser the second line is "2 #": no time
    got = p.parse(body, default_ts_ms=9)
    want = TextParser().parse(body, default_ts_ms=9)
    assert _rows(got.batch) == _rows(want.batch) == [('m{g="0"}', 9, 2.0), ('m{g="1"}', 7, 3.0)]
    assert got.new_series == 1


# ---------------------------------------------------------------------- known series, any order
@pytest.mark.parametrize("ts", [1_790_000_000_000, None])
def test_known_series_in_another_order_are_read_without_the_line_loop(ts: int | None) -> None:
    p = _learned(ts)
    left = _without_slow_paths(p)
    lines = _body(100, None if ts is None else ts + 10_000, 7).rstrip("\n").split("\n")
    body = "\n".join(lines[1::2] + lines[0::2]) + "\n"  # no learned body starts so
    got = p.parse(body, default_ts_ms=6)
    assert not left
    want = TextParser().parse(body, default_ts_ms=6)
    assert _rows(got.batch) == _rows(want.batch)
    assert (got.samples, got.new_series) == (100, 0)
    assert lines[1][: lines[1].index("} ") + 1] in p._templates  # learned for the next such body


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.replace("} 8 17\n", "} 8 18\n"),
        lambda b: b.replace("} 8 17\n", "} 8\n"),
        lambda b: b.replace("} 8 17\n", "} 8 17\n\n"),
        lambda b: b.replace("} 8 17\n", "} 8 17\nx 1 17\n"),
        lambda b: b.replace("} 8 17\n", "} 8 17\n" + b.split("\n")[0][:-4] + " 5 17\n"),  # a duplicate
        lambda b: b.replace("} 8 17\n", "} 8\x0b# 17\n"),
        lambda b: b.replace("} 8 17\n", "} 8 17\r\n"),
        lambda b: b.replace(" 17\n", " 17\r\n"),
        lambda b: b.replace(" 17\n", "\n"),
        lambda b: b.replace(" 17\n", "\r\n"),
        lambda b: b.replace(" 17\n", " 1.5\n"),
        lambda b: b.replace(" 17\n", f" {2**63}\n"),
        lambda b: b.rstrip("\n"),
        lambda b: b + " 17",
        lambda b: "\n" + b,
        lambda b: "# HELP gpu_util x 17\n" + b,
    ],
)
def test_known_series_in_another_order_otherwise_read_as_a_fresh_parser(edit: object) -> None:
    p = TextParser()
    p.parse(_body(50, 1))  # too few lines to be learned: every body goes by the known-series path
    lines = _body(50, 17).rstrip("\n").split("\n")
    body = "\n".join(lines[::-1]) + "\n"
    _reads_like_a_fresh_parser(p, edit(body), 6)  # type: ignore[operator]
