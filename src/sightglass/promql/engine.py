"""PromQL evaluation on the embedded store.

This first version evaluates plain series selectors (instant and range vectors) with Prometheus'
lookback and staleness rules; the full language lands with the PromQL issue and keeps this interface:
``Engine(store).instant(query, time_ms)`` and ``Engine(store).range(query, start_ms, end_ms, step_ms)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import promql_parser

from sightglass.model import Matcher, SeriesData
from sightglass.promql.result import InstantSample, QueryError, QueryResult, RangeSeries

DEFAULT_LOOKBACK_MS = 300_000

_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def parse(query: str) -> Any:
    try:
        return promql_parser.parse(query)
    except Exception as e:  # the parser raises plain ValueError/RuntimeError with its message
        raise QueryError(f"invalid parameter \"query\": {e}") from None


def _op(m: Any) -> str:
    op = str(m.op)
    if op in _OPS:
        return _OPS[op]
    for k, v in _OPS.items():
        if op.endswith(k.split(".")[1]):
            return v
    raise QueryError(f"unsupported matcher operator {op}")


def selector_matchers(node: Any) -> list[Matcher]:
    """Matchers of a ``VectorSelector`` node, ``__name__`` included."""
    out: list[Matcher] = []
    if getattr(node, "name", None):
        out.append(Matcher("__name__", "=", node.name))
    for m in node.matchers.matchers:
        out.append(Matcher(m.name, _op(m), m.value))
    for group in getattr(node.matchers, "or_matchers", None) or []:
        if group:
            raise QueryError("'or' inside a selector is not supported")
    if not out or all(m.matches("") for m in out):
        raise QueryError("vector selector must contain at least one non-empty matcher")
    return out


def parse_selector(text: str) -> list[Matcher]:
    """Parse a series selector (``name{a="b"}``) as used by ``match[]``."""
    node = parse(text)
    if type(node).__name__ != "VectorSelector":
        raise QueryError(f"invalid parameter \"match[]\": {text!r} is not a series selector")
    return selector_matchers(node)


class Engine:
    """Evaluates queries against a store that has ``select(matchers, start_ms, end_ms)``."""

    def __init__(self, store: Any, *, lookback_ms: int = DEFAULT_LOOKBACK_MS, max_samples: int | None = None) -> None:
        self.store = store
        self.lookback_ms = lookback_ms
        self.max_samples = max_samples

    def _select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[SeriesData]:
        try:
            return list(self.store.select(matchers, start_ms, end_ms, limit_samples=self.max_samples))
        except Exception as e:
            if type(e).__name__ == "LimitExceeded":
                raise QueryError(str(e), "execution") from None
            raise

    def instant(self, query: str, time_ms: int) -> QueryResult:
        node = parse(query)
        kind = type(node).__name__
        if kind == "VectorSelector":
            ms = selector_matchers(node)
            out = []
            for s in self._select(ms, time_ms - self.lookback_ms + 1, time_ms):
                if len(s) and not s.stale[-1]:
                    out.append(InstantSample(s.key.all_labels(), time_ms, float(s.values[-1])))
            return QueryResult("vector", vector=out)
        if kind == "MatrixSelector":
            vs = node.vector_selector
            ms = selector_matchers(vs)
            rng = int(node.range.total_seconds() * 1000)
            res = []
            for s in self._select(ms, time_ms - rng + 1, time_ms):
                keep = ~s.stale
                if keep.any():
                    res.append(RangeSeries(s.key.all_labels(), s.ts_ms[keep], s.values[keep]))
            return QueryResult("matrix", matrix=res)
        if kind == "NumberLiteral":
            return QueryResult("scalar", scalar=(time_ms, float(node.val)))
        if kind == "StringLiteral":
            return QueryResult("string", string=(time_ms, str(node.val)))
        raise QueryError(f"{kind} is not supported yet by the embedded evaluator", "execution")

    def range(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> QueryResult:
        if end_ms < start_ms:
            raise QueryError("invalid parameter \"end\": end timestamp must not be before start time")
        node = parse(query)
        kind = type(node).__name__
        steps = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        if kind == "VectorSelector":
            ms = selector_matchers(node)
            out = []
            for s in self._select(ms, start_ms - self.lookback_ms + 1, end_ms):
                # for each step the newest sample in (t - lookback, t], dropped if stale
                idx = np.searchsorted(s.ts_ms, steps, side="right") - 1
                ok = idx >= 0
                ok[ok] &= s.ts_ms[idx[ok]] > steps[ok] - self.lookback_ms
                ok[ok] &= ~s.stale[idx[ok]]
                if ok.any():
                    out.append(RangeSeries(s.key.all_labels(), steps[ok], s.values[idx[ok]]))
            return QueryResult("matrix", matrix=out)
        if kind == "NumberLiteral":
            return QueryResult(
                "matrix", matrix=[RangeSeries({}, steps, np.full(len(steps), float(node.val)))]
            )
        if kind == "MatrixSelector":
            raise QueryError(
                "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
            )
        raise QueryError(f"{kind} is not supported yet by the embedded evaluator", "execution")
