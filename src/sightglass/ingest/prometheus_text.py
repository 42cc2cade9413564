"""A fast parser for the Prometheus text format (0.0.4) and OpenMetrics 1.0.

The hot path never parses labels twice: the raw series text of a line (``name{a="b",...}``) is the key
of a cache that maps it to its :class:`SeriesKey`, so a scrape of known series costs a ``find``, a dict
lookup and a ``split`` per line, and values are converted in bulk by numpy. Only a series seen for the
first time goes through the full, validating label scanner.

Errors are :class:`ParseError` with the line number and a reason, the way Prometheus reports them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter

import numpy as np

from sightglass.ingest.learning import LearnGate
from sightglass.model import (
    LABEL_NAME_RE,
    METRIC_NAME_RE,
    MetricMetadata,
    MetricType,
    SampleBatch,
    SeriesKey,
)

_TYPES = {t.value: t for t in MetricType}
_TYPE_ALIASES = {"untyped": MetricType.UNKNOWN}
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_gcount", "_gsum", "_info")


class ParseError(ValueError):
    """The exposition is malformed. ``line`` is 1-based."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(slots=True)
class ParserLimits:
    max_label_value_bytes: int = 16 * 1024
    max_labels: int = 64
    max_series_cache: int = 2_000_000


@dataclass(slots=True)
class ParseResult:
    batch: SampleBatch
    samples: int = 0
    new_series: int = 0
    families: int = 0
    eof: bool = False
    # the parser's number of each ``batch.series`` entry (its position in ``TextParser.keys``)
    series_numbers: np.ndarray | None = None


_Columns = tuple[np.ndarray | None, np.ndarray, list[SeriesKey]]
# a learned body: its lines' series texts + " ", slices past them, series numbers, [its _Columns]
_Template = tuple[list[str], list[slice], list[int], list[_Columns], int]  # ..., total length of the prefixes


@dataclass(slots=True)
class _State:
    metadata: dict[str, MetricMetadata] = field(default_factory=dict)


def _unescape(v: str) -> str:
    if "\\" not in v:
        return v
    out: list[str] = []
    i, n = 0, len(v)
    while i < n:
        c = v[i]
        if c == "\\" and i + 1 < n:
            nxt = v[i + 1]
            out.append("\n" if nxt == "n" else nxt)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


_LABEL_RE = re.compile(r'[ \t]*([^=\s,"{}]*)[ \t]*=[ \t]*"([^"\\\n]*(?:\\.[^"\\\n]*)*)"[ \t]*(?:,|$)', re.S)


_LABEL_PAT = r'[ \t]*([^=\s,"{}]*)[ \t]*=[ \t]*"([^"\\\n]*(?:\\.[^"\\\n]*)*)"[ \t]*'
_BODY_RE = re.compile(f"(?:{_LABEL_PAT},)*(?:{_LABEL_PAT})?[ \t]*", re.S)
_GOOD_NAMES: set[str] = set()


def _label_error(body: str) -> str:
    """Explain why a label set fails to parse."""
    pos = 0
    for m in _LABEL_RE.finditer(body):
        if m.start() != pos:
            break
        pos = m.end()
    rest = body[pos:].lstrip(" \t,")
    eq = rest.find("=")
    if eq < 0:
        return f"expected '=' after label name in {rest[:40]!r}"
    lname = rest[:eq].strip()
    if not LABEL_NAME_RE.match(lname):
        return f"invalid label name {lname!r}"
    after = rest[eq + 1 :].lstrip()
    if not after.startswith('"'):
        return f"expected '\"' to start the value of label {lname!r}"
    return f"unterminated or malformed quoted value for label {lname!r}"


def parse_series(text: str, limits: ParserLimits) -> SeriesKey:
    """Parse and validate ``name{label="value",...}`` (the part of a sample line before the value)."""
    brace = text.find("{")
    if brace < 0:
        name = text
        body = ""
    else:
        name = text[:brace]
        if not text.endswith("}"):
            raise ValueError("expected '}' at the end of the label set")
        body = text[brace + 1 : -1]
    labels: dict[str, str] = {}
    if body:
        if _BODY_RE.fullmatch(body) is None:
            raise ValueError(_label_error(body))
        pairs = _LABEL_RE.findall(body)
        for lname, raw in pairs:
            if lname not in _GOOD_NAMES:
                if not LABEL_NAME_RE.match(lname) and not (lname == "__name__" and not name):
                    raise ValueError(f"invalid label name {lname!r}")
                if len(_GOOD_NAMES) < 10_000:
                    _GOOD_NAMES.add(lname)
            labels[lname] = _unescape(raw) if "\\" in raw else raw
        if len(labels) != len(pairs):
            seen: set[str] = set()
            dup = next(ln for ln, _ in pairs if ln in seen or seen.add(ln))  # type: ignore[func-returns-value]
            raise ValueError(f"duplicate label name {dup!r}")
        max_bytes = limits.max_label_value_bytes
        if len(body) > max_bytes:
            for lname, value in labels.items():
                size = len(value.encode())
                if size > max_bytes:
                    raise ValueError(
                        f"value of label {lname!r} is {size} bytes, over the limit of {max_bytes}"
                    )
    if "__name__" in labels:
        if name:
            raise ValueError("metric name given twice (before the braces and as __name__)")
        name = labels.pop("__name__")
    if not name or not METRIC_NAME_RE.match(name):
        raise ValueError(f"invalid metric name {name!r}")
    if len(labels) > limits.max_labels:
        raise ValueError(f"series has {len(labels)} labels, over the limit of {limits.max_labels}")
    return SeriesKey(name, tuple(sorted(kv for kv in labels.items() if kv[1])))


class TextParser:
    """Parses expositions into :class:`SampleBatch` es, caching series across calls.

    Keep one parser per target (scraper) or per stream (import) so the cache holds the series that
    will come again. ``openmetrics`` selects timestamp units (seconds vs milliseconds) and ``# EOF``.
    """

    def __init__(self, limits: ParserLimits | None = None) -> None:
        self.limits = limits or ParserLimits()
        self._cache: dict[str, int] = {}
        self._keys: list[SeriesKey] = []
        self._texts: dict[int, str] = {}  # series number -> its cached series text
        # bodies seen before, by their first line's series text: (series texts + " ", slices, numbers,
        # and [the batch columns of those numbers] once :meth:`_repeat_body` has used them)
        self._templates: dict[str, _Template] = {}
        self._template_lines = 0
        self._gate = LearnGate()

    @property
    def keys(self) -> list[SeriesKey]:
        """Every series this parser has seen, by number (append-only)."""
        return self._keys

    def parse(
        self,
        text: str | bytes,
        *,
        openmetrics: bool = False,
        default_ts_ms: int | None = None,
        honor_timestamps: bool = True,
        first_line: int = 1,
    ) -> ParseResult:
        """Parse a whole exposition (or a chunk of complete lines).

        Lines without a timestamp get ``default_ts_ms`` (the scrape time); one is required then.
        """
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ParseError(first_line, f"body is not valid UTF-8: {e}") from None
        known = len(self._keys)
        try:
            return self._parse(text, openmetrics, default_ts_ms, honor_timestamps, first_line, False)
        except ParseError:
            # The hot paths split a line of a known series at spaces only, where a line read whole
            # splits at any whitespace (``str.split``), so "8\v17" or "8\v#" can be a sample there
            # and an error can come at another line. A body that fails is read again without the hot
            # paths, which gives exactly a fresh parser's batch or error (a bad body pays twice).
            res = self._parse(text, openmetrics, default_ts_ms, honor_timestamps, first_line, True)
            res.new_series = len(self._keys) - known  # both passes' new series
            return res

    def _parse(
        self,
        text: str,
        openmetrics: bool,
        default_ts_ms: int | None,
        honor_timestamps: bool,
        first_line: int,
        strict: bool,
    ) -> ParseResult:
        cache = self._cache
        keys = self._keys
        idx: list[int] = []
        vals: list[str] = []
        tss: list[str] = []
        ts_pos: list[int] = []
        metadata: dict[str, MetricMetadata] = {}
        families: set[str] = set()
        new_series = 0
        eof = False
        ts_mode = False
        lineno = first_line - 1
        if not openmetrics and not strict:
            fast = self._repeat_body(text, default_ts_ms, honor_timestamps) if self._templates else None
            if fast is None:
                fast = self._known_body(text, default_ts_ms, honor_timestamps)
            if fast is not None:
                return fast
        lines = text.split("\n")
        same = None if openmetrics or strict else self._same_as_before(lines)
        if same is not None:
            idx, vals, tss = same
            ts_pos = list(range(len(tss)))
        for line in lines if same is None else ():
            lineno += 1
            if not line:
                continue
            if strict:
                pass
            elif ts_mode:
                # hottest path of a back-fill: "<known series> <value> <timestamp>"
                p3 = line.rsplit(" ", 2)
                if len(p3) == 3:
                    sid = cache.get(p3[0])
                    if sid is not None:
                        ts_pos.append(len(idx))
                        idx.append(sid)
                        vals.append(p3[1])
                        tss.append(p3[2])
                        continue
            else:
                # hottest path (a scrape: no timestamps): "<known series> <value>"
                head, _, last = line.rpartition(" ")
                sid = cache.get(head)
                if sid is not None:
                    idx.append(sid)
                    vals.append(last)
                    continue
            # hot path: a known series ("name{...} value [ts]" or "name value [ts]")
            j = line.find("} ")
            if strict:
                sid, rest = None, ""
            elif j > 0:  # (the rest is stripped as _new_series strips it: "S  8\v#" reads alike)
                sid = cache.get(line[: j + 1])
                rest = line[j + 2 :].strip()
            else:
                j = line.find(" ")
                sid = cache.get(line[:j]) if j > 0 else None
                rest = line[j + 1 :].strip()
            if sid is None:
                if line[-1] == "\r":
                    line = line[:-1]
                line = line.lstrip(" \t")
                if not line:
                    continue
                if line[0] == "#":
                    eof = self._comment(line, lineno, metadata, families, openmetrics)
                    if eof:
                        trailing = lines[lineno - first_line + 1 :]
                        bad = next((k for k, t in enumerate(trailing) if t.strip()), None)
                        if bad is not None:
                            raise ParseError(lineno + 1 + bad, "content after '# EOF'")
                        break
                    continue
                sid, rest, is_new = self._new_series(line, lineno)
                new_series += is_new
            sp = rest.find(" ")
            idx.append(sid)
            if sp < 0:
                vals.append(rest)
                continue
            parts = rest.split()
            if not parts:
                raise ParseError(lineno, "missing value")
            vals.append(parts[0])
            if len(parts) > 1 and parts[1] != "#":
                if len(parts) > 2 and parts[2] != "#":
                    raise ParseError(lineno, f"unexpected text after the timestamp: {' '.join(parts[2:])!r}")
                tss.append(parts[1])
                ts_pos.append(len(idx) - 1)
                ts_mode = True
        n = len(idx)
        if same is None and n >= _TEMPLATE_MIN_LINES and not openmetrics and not families and not metadata:
            self._learn_template(lines, idx)
        try:
            values = (
                np.array(list(map(float, vals)), dtype=np.float64) if n else np.empty(0, dtype=np.float64)
            )
        except ValueError:
            for i, v in enumerate(vals):
                try:
                    float(v)
                except ValueError:
                    raise ParseError(first_line, f"invalid value {v!r} (sample {i + 1})") from None
            raise
        ts = np.empty(n, dtype=np.int64)
        has_ts = np.zeros(n, dtype=bool)
        if tss:
            try:
                if openmetrics:
                    tsf = np.array(tss, dtype=np.str_).astype(np.float64)
                    if not np.all(np.isfinite(tsf)):
                        raise ValueError("non-finite timestamp")
                    tsv = np.round(tsf * 1000).astype(np.int64)
                else:
                    tsv = np.array(_ints(tss), dtype=np.int64)
            except (ValueError, OverflowError):  # not a number, or past int64 milliseconds
                bad_ts = next((t for t in tss if not _is_number(t, openmetrics)), tss[0])
                raise ParseError(first_line, f"invalid timestamp {bad_ts!r}") from None
            pos = np.asarray(ts_pos, dtype=np.int64)
            ts[pos] = tsv
            has_ts[pos] = True
        if not honor_timestamps:
            has_ts[:] = False
        if not has_ts.all():
            if default_ts_ms is None:
                raise ParseError(first_line, "samples without a timestamp and no scrape time to assign")
            ts[~has_ts] = default_ts_ms
        sids = np.asarray(idx, dtype=np.int64)
        if n > 1:
            order = np.lexsort((ts, sids))
            s_sorted, t_sorted = sids[order], ts[order]
            dup = (s_sorted[1:] == s_sorted[:-1]) & (t_sorted[1:] == t_sorted[:-1])
            if dup.any():  # name the first sample (in body order) that repeats an earlier one
                later = np.maximum(order[1:], order[:-1])
                k = int(np.flatnonzero(dup)[np.argmin(later[dup])])
                raise ParseError(
                    first_line,
                    f"duplicate sample for series {keys[int(s_sorted[k])].text()} at timestamp "
                    f"{int(t_sorted[k])}",
                )
        if n:
            uniq, inverse = np.unique(sids, return_inverse=True)
            series = list(map(keys.__getitem__, uniq.tolist()))
        else:
            uniq = inverse = np.empty(0, dtype=np.int64)
            series = []
        batch = SampleBatch(
            series=series,
            series_index=inverse.astype(np.int64),
            ts_ms=ts,
            values=values,
            metadata=metadata,
        )
        return ParseResult(
            batch=batch,
            samples=n,
            new_series=new_series,
            families=len(families),
            eof=eof,
            series_numbers=uniq,
        )

    def _same_as_before(self, lines: list[str]) -> tuple[list[int], list[str], list[str]] | None:
        """(series numbers, values, timestamps) of a body whose lines start as a learned body's did.

        A sender (a scrape target, an agent pushing its shard) sends the same series in the same
        order each interval. When every line starts with the series text the learned body had at
        that line, followed by a space (a C-level ``startswith`` per line: no new string, no hash),
        and every rest is exactly "<value> <timestamp>" (or exactly "<value>" on every line) made of
        the characters numbers use, the lines are what the loop's hot paths read the same way. Any
        other body (another order, comments, blank lines, other whitespace) returns ``None`` and the
        loop parses it.
        """
        if lines and not lines[-1]:
            lines = lines[:-1]
        if not lines or not self._templates:
            return None
        first = lines[0]
        tpl = self._templates.get(first.rsplit(" ", 2)[0]) or self._templates.get(first.rpartition(" ")[0])
        if tpl is None:
            return None
        prefixes, cuts, sids, _, _ = tpl
        if len(prefixes) != len(lines) or not all(map(str.startswith, lines, prefixes)):
            return None
        self._gate.hit()
        rests = list(map(str.__getitem__, lines, cuts))
        if _REST_CHARS.fullmatch("\n".join(rests)) is None:
            return None
        spaces = set(map(str.count, rests, repeat(" ")))
        if spaces == {1}:
            tokens = " ".join(rests).split(" ")
            if "" in tokens:
                return None
            return list(sids), tokens[0::2], tokens[1::2]
        if spaces == {0} and "" not in rests:
            return list(sids), rests, []
        return None

    def _repeat_body(
        self, text: str, default_ts_ms: int | None, honor_timestamps: bool
    ) -> ParseResult | None:
        """The whole result for a repeated body whose lines share one timestamp (or have none).

        The steady state of a scrape target or an agent pushing its shard: every line is
        ``<series text of the learned body's line> <value>[ <ts>]`` with the same ``<ts>`` on every
        line (taken from the first line), or no timestamp on any line. With a timestamp the body is
        split at " <ts>\\n" (C-level) instead of at newlines: n lines give n pieces only if every line
        ends with it. Each piece must start with its learned series text and a space (``removeprefix``
        of every piece, which must take off the prefixes' whole length), and what is left of it (the value) must hold no space and no newline, so every line is exactly
        those tokens, which the line loop reads the same way (``float`` of the same value tokens,
        ``int`` of the same timestamp). The series columns (sorted numbers, inverse, keys) are the
        learned body's, kept after their first use; its series are distinct, so no duplicate sample
        can occur. Anything else (a value ``float`` refuses, another timestamp on some line, other
        whitespace, a learned body with a series twice) returns ``None`` and the slower paths below
        read the body, with their errors.
        """
        nl = text.find("\n")
        first = text if nl < 0 else text[:nl]
        tpl = self._templates.get(first.rsplit(" ", 2)[0]) or self._templates.get(first.rpartition(" ")[0])
        if tpl is None:
            return None
        prefixes, _, sids, cols, prefix_len = tpl
        n = len(prefixes)
        rest0 = first[len(prefixes[0]) :]
        sp = rest0.find(" ")
        tsv: int | None = None
        if sp >= 0:
            ts_text = rest0[sp:]  # " <ts>"
            if len(ts_text) < 2 or " " in ts_text[1:]:
                return None
            try:
                tsv = int(ts_text[1:])
            except ValueError:
                return None
            if not -(2**63) <= tsv < 2**63:
                return None
            pieces = text.split(ts_text + "\n")
            if text.endswith("\n"):
                if len(pieces) != n + 1 or pieces.pop():
                    return None
                pieces_len = len(text) - n * (len(ts_text) + 1)  # the pieces' characters
            else:  # no newline after the last line: it must end with the timestamp too
                if len(pieces) != n or not pieces[-1].endswith(ts_text):
                    return None
                pieces[-1] = pieces[-1][: -len(ts_text)]
                pieces_len = len(text) - (n - 1) * (len(ts_text) + 1) - len(ts_text)
        else:
            pieces = text.split("\n")
            pieces_len = len(text) - (len(pieces) - 1)
            if pieces[-1] == "":
                pieces.pop()
            if len(pieces) != n:
                return None
        # removeprefix takes each piece's learned series text off, or leaves the piece whole, so it
        # removes len(prefix) characters or none: the values are prefix_len characters shorter than
        # the pieces only if every piece started with its prefix (a startswith pass, for free)
        values_text = list(map(str.removeprefix, pieces, prefixes))
        joined = "\n".join(values_text)
        if len(joined) - (n - 1) != pieces_len - prefix_len:
            return None
        if " " in joined or joined.count("\n") != n - 1:
            return None
        if not cols:
            cols.append(self._template_columns(sids))
        uniq, inverse, series = cols[0]
        if uniq is None:
            return None  # a series twice in the learned body: the loop checks duplicates
        try:
            values = np.array(list(map(float, values_text)), dtype=np.float64)
        except ValueError:
            return None
        self._gate.hit()
        if tsv is None or not honor_timestamps:
            if default_ts_ms is None:
                return None
            tsv = default_ts_ms
        batch = SampleBatch(
            series=list(series),
            series_index=inverse.copy(),
            ts_ms=np.full(n, tsv, dtype=np.int64),
            values=values,
            metadata={},
        )
        return ParseResult(batch=batch, samples=n, series_numbers=uniq.copy())

    def _known_body(self, text: str, default_ts_ms: int | None, honor_timestamps: bool) -> ParseResult | None:
        """The whole result for a body of known series, in any order, that share one timestamp (or none).

        What the line loop's hottest paths read, by C-level maps over the lines instead of a Python
        loop: with a timestamp (the first line's) the body is split at " <ts>\\n" and must have no
        other newline, so every line ends with it; each piece's last space splits it into a cached
        series text and the value (``rpartition``, as the loop's ``rsplit``); without, each line is
        split so. A series not cached (a new one, a comment, a blank line), a series twice, or a
        value ``float`` refuses returns ``None`` and the loop reads the body, with its errors. A
        body of 64 lines or more is learned for :meth:`_repeat_body` as the loop would learn it.
        """
        nl = text.find("\n")
        first = text if nl < 0 else text[:nl]
        cache = self._cache
        tsv: int | None = None
        p3 = first.rsplit(" ", 2)
        if len(p3) == 3 and p3[0] in cache:
            ts_text = " " + p3[2]
            try:
                tsv = int(p3[2])
            except ValueError:
                return None
            if len(ts_text) < 2 or not -(2**63) <= tsv < 2**63:
                return None
            pieces = text.split(ts_text + "\n")
            if text.endswith("\n"):
                if pieces.pop() or text.count("\n") != len(pieces):
                    return None
            else:
                if text.count("\n") != len(pieces) - 1 or not pieces[-1].endswith(ts_text):
                    return None
                pieces[-1] = pieces[-1][: -len(ts_text)]
        elif first.rpartition(" ")[0] in cache:
            pieces = text.split("\n")
            if pieces[-1] == "":
                pieces.pop()
        else:
            return None
        n = len(pieces)
        parts = list(map(str.rpartition, pieces, repeat(" ")))
        heads = list(map(_HEAD, parts))
        sids = list(map(cache.get, heads))
        if None in sids:
            return None
        idx = np.array(sids, dtype=np.int64)
        uniq, inverse = np.unique(idx, return_inverse=True)
        if len(uniq) != n:
            return None  # a series twice: the loop checks for duplicate samples
        try:
            values = np.array(list(map(float, map(_VALUE, parts))), dtype=np.float64)
        except ValueError:
            return None
        if tsv is None or not honor_timestamps:
            if default_ts_ms is None:
                return None
            tsv = default_ts_ms
        if n >= _TEMPLATE_MIN_LINES and self._gate.should():
            self._gate.learned_one()
            self._store_template([h + " " for h in heads], sids)  # type: ignore[arg-type]
        keys = self._keys
        batch = SampleBatch(
            series=list(map(keys.__getitem__, uniq.tolist())),
            series_index=inverse.astype(np.int64),
            ts_ms=np.full(n, tsv, dtype=np.int64),
            values=values,
            metadata={},
        )
        return ParseResult(batch=batch, samples=n, series_numbers=uniq)

    def _template_columns(self, sids: list[int]) -> _Columns:
        """(sorted series numbers, each line's place in them, their keys) of a learned body."""
        uniq, inverse = np.unique(np.asarray(sids, dtype=np.int64), return_inverse=True)
        if len(uniq) != len(sids):
            return None, inverse, []
        return uniq, inverse.astype(np.int64), list(map(self._keys.__getitem__, uniq.tolist()))

    def _learn_template(self, lines: list[str], idx: list[int]) -> None:
        """Remember a body the loop parsed whose every non-empty line was a sample of a cached text."""
        if not self._gate.should():
            return
        self._gate.learned_one()  # an attempt, whether it succeeds or not
        body = [ln for ln in lines if ln]
        if len(body) != len(idx):
            return
        texts = self._texts
        try:
            prefixes = [texts[i] + " " for i in idx]
        except KeyError:
            return
        if not all(map(str.startswith, body, prefixes)):
            return
        self._store_template(prefixes, idx)

    def _store_template(self, prefixes: list[str], idx: list[int]) -> None:
        if len(self._templates) >= _MAX_TEMPLATES or self._template_lines + len(idx) > _MAX_TEMPLATE_LINES:
            self._templates.clear()
            self._template_lines = 0
        old = self._templates.get(prefixes[0][:-1])
        if old is not None:
            self._template_lines -= len(old[0])
        self._templates[prefixes[0][:-1]] = (
            prefixes, [slice(len(x), None) for x in prefixes], list(idx), [], sum(map(len, prefixes))
        )
        self._template_lines += len(idx)

    def _new_series(self, line: str, lineno: int) -> tuple[int, str, int]:
        """Resolve a line whose series is not cached: returns (series index, rest of line, 1 if new)."""
        cache, keys, limits = self._cache, self._keys, self.limits
        if line.endswith("\r"):
            line = line[:-1]
        j = line.find("} ")
        if j < 0:
            j = line.find("}\t")
        key = None
        if j > 0 and line.find("{", 0, j) >= 0:
            series_text, rest = line[: j + 1], line[j + 2 :]
            try:  # the candidate is right unless a label value contains "} "; then it fails to parse
                key = parse_series(series_text, limits)
            except ValueError:
                key = None
        if key is None:
            series_text, rest = self._split_slow(line, lineno)
            if series_text not in cache:
                try:
                    key = parse_series(series_text, limits)
                except ValueError as e:
                    raise ParseError(lineno, str(e)) from None
        rest = rest.strip()
        if not rest:
            raise ParseError(lineno, f"expected a value after the series in {line[:80]!r}")
        sid = cache.get(series_text)
        if sid is not None:
            return sid, rest, 0
        sid = len(keys)
        assert key is not None  # parsed above: only a cached series text skips parse_series
        keys.append(key)
        if len(cache) < limits.max_series_cache:
            cache[series_text] = sid
            self._texts[sid] = series_text
        return sid, rest, 1

    def _split_slow(self, line: str, lineno: int) -> tuple[str, str]:
        """Quote-aware split of a sample line into (series text, rest)."""
        brace = line.find("{")
        sp = min((x for x in (line.find(" "), line.find("\t")) if x >= 0), default=-1)
        if brace < 0 or (0 <= sp < brace):
            if sp < 0:
                raise ParseError(lineno, f"expected a value after the series in {line[:80]!r}")
            return line[:sp], line[sp + 1 :]
        i, n, inq = brace + 1, len(line), False
        while i < n:
            c = line[i]
            if inq:
                if c == "\\":
                    i += 2
                    continue
                if c == '"':
                    inq = False
            elif c == '"':
                inq = True
            elif c == "}":
                return line[: i + 1], line[i + 1 :]
            i += 1
        raise ParseError(lineno, "unterminated label set (missing '}' or '\"')")

    def _comment(
        self,
        line: str,
        lineno: int,
        metadata: dict[str, MetricMetadata],
        families: set[str],
        openmetrics: bool,
    ) -> bool:
        parts = line.split(None, 3)
        if len(parts) >= 2 and parts[1] == "EOF" and len(parts) == 2:
            return True
        if len(parts) < 3 or parts[1] not in ("HELP", "TYPE", "UNIT"):
            return False  # a plain comment
        kind, name = parts[1], parts[2]
        if not METRIC_NAME_RE.match(name):
            raise ParseError(lineno, f"invalid metric name {name!r} in # {kind}")
        text = parts[3] if len(parts) > 3 else ""
        md = metadata.get(name) or MetricMetadata(name)
        families.add(name)
        if kind == "HELP":
            md = MetricMetadata(name, md.type, _unescape(text), md.unit)
        elif kind == "TYPE":
            t = _TYPES.get(text.strip()) or _TYPE_ALIASES.get(text.strip())
            if t is None:
                raise ParseError(lineno, f"invalid metric type {text.strip()!r} for {name}")
            md = MetricMetadata(name, t, md.help, md.unit)
        else:
            md = MetricMetadata(name, md.type, md.help, text.strip())
        metadata[name] = md
        return False


_HEAD = itemgetter(0)
_VALUE = itemgetter(2)
_TEMPLATE_MIN_LINES = 64  # smaller bodies are not worth remembering
_MAX_TEMPLATES = 1024
_MAX_TEMPLATE_LINES = 200_000  # learned lines kept in all (each holds its series text once more)
_REST_CHARS = re.compile(r"[0-9A-Za-z.+\-_ \n]*")  # what values and timestamps are made of, spaces, newlines


def _ints(texts: list[str]) -> list[int]:
    """``int`` of each text; a body's timestamps repeat, so each distinct one is converted once."""
    distinct = dict.fromkeys(texts)
    if len(distinct) * 4 > len(texts):
        return list(map(int, texts))
    conv = {t: int(t) for t in distinct}
    return list(map(conv.__getitem__, texts))


def _is_number(t: str, openmetrics: bool) -> bool:
    try:
        if openmetrics:
            float(t)
            return True
        return -(2**63) <= int(t) < 2**63
    except ValueError:
        return False


def family_of(metric: str, metadata: dict[str, MetricMetadata]) -> str:
    """The family a sample name belongs to (``x_bucket`` → ``x`` when ``x`` is a known family)."""
    if metric in metadata:
        return metric
    for suf in _SUFFIXES:
        if metric.endswith(suf) and metric[: -len(suf)] in metadata:
            return metric[: -len(suf)]
    return metric


def parse_text(
    text: str | bytes,
    *,
    openmetrics: bool = False,
    default_ts_ms: int | None = None,
    limits: ParserLimits | None = None,
) -> SampleBatch:
    """Parse one exposition with a throwaway parser (convenient; keep a TextParser for speed)."""
    return TextParser(limits).parse(text, openmetrics=openmetrics, default_ts_ms=default_ts_ms).batch


def is_openmetrics(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "application/openmetrics-text"
