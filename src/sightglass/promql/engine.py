"""PromQL evaluation on the embedded store, with Prometheus 2.42 semantics.

``Engine(store).instant(query, time_ms)`` and ``Engine(store).range(query, start_ms, end_ms, step_ms)``
parse with ``promql-parser`` and evaluate the tree once for all steps: every selector reads its series
from the store once, for the whole span the query needs (``start - range - lookback .. end``), and
functions, operators and aggregations work on ``(series, steps)`` numpy arrays. A subquery evaluates its
inner expression once, on its own step grid. What the evaluator cannot do raises :class:`QueryError`;
it never answers with a guess. ``docs/promql.md`` lists the differences from Prometheus.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np
import promql_parser

from sightglass.model import Matcher
from sightglass.promql import functions as fn
from sightglass.promql import rollup
from sightglass.promql.operators import aggregate, scalar_scalar, vector_scalar, vector_vector
from sightglass.promql.reader import read_packed
from sightglass.promql.result import InstantSample, QueryError, QueryResult, RangeSeries
from sightglass.promql.values import Packed, RangeVector, Scalar, String, Vector, label_key, merge_same_labels

DEFAULT_LOOKBACK_MS = 300_000
DEFAULT_SUBQUERY_STEP_MS = 60_000  # Prometheus' default global evaluation_interval

_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Value = Scalar | String | Vector | RangeVector

_RANGE_FUNCS = {
    "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "resets", "changes",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
    "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time", "present_over_time",
}  # fmt: skip


def parse(query: str) -> Any:
    try:
        return promql_parser.parse(query)
    except Exception as e:  # the parser raises plain ValueError/RuntimeError with its message
        raise QueryError(f'invalid parameter "query": {e}') from None


def _op(m: Any) -> str:
    op = str(m.op)
    if op in _OPS:
        return _OPS[op]
    for k, v in _OPS.items():
        if op.startswith(k):
            return v
    raise QueryError(f"unsupported matcher operator {op}")


def selector_matchers(node: Any) -> list[Matcher]:
    """Matchers of a ``VectorSelector`` node, ``__name__`` included."""
    out: list[Matcher] = []
    if getattr(node, "name", None):
        out.append(Matcher("__name__", "=", node.name))
    for m in node.matchers.matchers:
        try:
            out.append(Matcher(m.name, _op(m), m.value))
        except ValueError as e:
            raise QueryError(str(e)) from None
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
        raise QueryError(f'invalid parameter "match[]": {text!r} is not a series selector')
    return selector_matchers(node)


def _ms(td: dt.timedelta | None) -> int:
    if td is None:
        return 0
    return td.days * 86_400_000 + td.seconds * 1000 + td.microseconds // 1000


def _kind(node: Any) -> str:
    return type(node).__name__


def _unparen(node: Any) -> Any:
    while _kind(node) == "ParenExpr":
        node = node.expr
    return node


class _Eval:
    """One query evaluation: the query's start/end (for ``@ start()``/``end()``), limits and deadline."""

    def __init__(self, engine: Engine, start_ms: int, end_ms: int, deadline: float | None) -> None:
        self.engine = engine
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.deadline = deadline
        self.samples = 0

    # ------------------------------------------------------------------ helpers
    def _check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise QueryError("query timed out in expression evaluation", "timeout")

    def _account(self, n: int) -> None:
        limit = self.engine.max_samples
        if limit is not None and n > limit:
            raise QueryError(
                "query processing would load too many samples into memory in query execution", "execution"
            )

    def _at(self, node: Any) -> int | None:
        at = getattr(node, "at", None)
        if at is None:
            return None
        kind = str(at.type)
        if kind.endswith("Start"):
            return self.start_ms
        if kind.endswith("End"):
            return self.end_ms
        return _ms(at.at - _EPOCH)

    def _ref(self, node: Any, ts: np.ndarray) -> np.ndarray:
        """Per step the time a selector or subquery looks at: (the @ time or the step) minus the offset."""
        at = self._at(node)
        base = np.full(len(ts), at, dtype=np.int64) if at is not None else ts
        return base - _ms(node.offset)

    def _read(self, node: Any, lo: int, hi: int, drop_stale: bool) -> tuple[Packed, np.ndarray]:
        """The selector's samples in ``[lo, hi]``, read once, packed; and the stale-marker flags."""
        labels, off, t, v, stale = read_packed(
            self.engine.store, selector_matchers(node), lo, hi, self.engine.max_samples
        )
        self.samples += len(t)
        self._account(self.samples)
        if drop_stale and stale.any():
            keep = ~stale
            counts = np.add.reduceat(keep.astype(np.int64), off[:-1]) if len(t) else np.zeros(0, np.int64)
            counts = np.where(np.diff(off) > 0, counts, 0)
            off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            t, v, stale = t[keep], v[keep], stale[keep]
        return Packed(labels, off, t, v), stale

    # ------------------------------------------------------------------ evaluation
    def eval(self, node: Any, ts: np.ndarray) -> Value:
        self._check()
        kind = _kind(node)
        if kind == "NumberLiteral":
            return Scalar(np.full(len(ts), float(node.val)))
        if kind == "StringLiteral":
            return String(str(node.val))
        if kind == "ParenExpr":
            return self.eval(node.expr, ts)
        if kind == "VectorSelector":
            return self.vector_selector(node, ts)
        if kind == "MatrixSelector":
            return self.matrix_selector(node, ts)
        if kind == "SubqueryExpr":
            return self.subquery(node, ts)
        if kind == "UnaryExpr":
            val = self.eval(node.expr, ts)
            if isinstance(val, Scalar):
                return Scalar(-val.v)
            if isinstance(val, Vector):
                return merge_same_labels(Vector([_dropname(lab) for lab in val.labels], -val.v, val.m))
            raise QueryError("unary minus is only allowed on scalars and instant vectors")
        if kind == "BinaryExpr":
            return self.binary(node, ts)
        if kind == "AggregateExpr":
            return self.aggregate(node, ts)
        if kind == "Call":
            return self.call(node, ts)
        raise QueryError(f"{kind} is not supported by the embedded evaluator", "execution")

    def vector_selector(self, node: Any, ts: np.ndarray) -> Vector:
        ref = self._ref(node, ts)
        lookback = self.engine.lookback_ms
        packed, stale = self._read(node, int(ref.min()) - lookback, int(ref.max()), drop_stale=False)
        n = len(packed)
        if n == 0:
            return Vector.empty(len(ts))
        idx = packed.search(ref, "right") - 1
        ok = idx >= packed.off[:-1, None]
        safe = np.clip(idx, 0, max(len(packed.t) - 1, 0))
        st = packed.t[safe]
        ok &= st >= ref[None, :] - lookback
        ok &= ~stale[safe]
        self._account(int(ok.sum()))
        return Vector(packed.labels, packed.v[safe], ok, st).compact()

    def matrix_selector(self, node: Any, ts: np.ndarray) -> RangeVector:
        vs = node.vector_selector
        rng = _ms(node.range)
        end = self._ref(vs, ts)
        packed, _ = self._read(vs, int(end.min()) - rng, int(end.max()), drop_stale=True)
        return RangeVector(packed, rng, end, self._eval_t(vs, ts))

    def raw_range_function(self, name: str, node: Any, ts: np.ndarray) -> Vector:
        """``name(node)`` from raw samples at steps ``ts``, rows with their full label sets (for
        :mod:`sightglass.promql.rollup`, which fills the other steps from rollups)."""
        rv = self.matrix_selector(node, ts)
        rv.full_labels = True
        out = fn.range_function(name, rv, [])
        return out

    def _eval_t(self, node: Any, ts: np.ndarray) -> np.ndarray:
        # under @ Prometheus evaluates the step-invariant part once, at the query start
        return np.full(len(ts), self.start_ms, dtype=np.int64) if self._at(node) is not None else ts

    def subquery(self, node: Any, ts: np.ndarray) -> RangeVector:
        rng = _ms(node.range)
        step = _ms(node.step) if node.step is not None else DEFAULT_SUBQUERY_STEP_MS
        if step <= 0:
            raise QueryError("subquery step must be positive")
        end = self._ref(node, ts)
        lo = int(end.min()) - rng
        first = (lo // step) * step
        if first < lo:
            first += step
        grid = np.arange(first, int(end.max()) + 1, step, dtype=np.int64)
        self._account(len(grid))
        inner = self.eval(node.expr, grid) if len(grid) else Vector.empty(0)
        if isinstance(inner, Scalar):
            inner = Vector([{}], inner.v[None, :], np.ones((1, len(grid)), dtype=bool))
        if not isinstance(inner, Vector):
            raise QueryError("subquery is only allowed on instant vector or scalar expressions")
        labels = inner.labels
        rows = [(grid[inner.m[i]], inner.v[i][inner.m[i]]) for i in range(len(labels))]
        lens = np.array([len(r[0]) for r in rows], dtype=np.int64)
        off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        t = np.concatenate([r[0] for r in rows]) if rows else np.empty(0, dtype=np.int64)
        v = np.concatenate([r[1] for r in rows]) if rows else np.empty(0)
        return RangeVector(Packed(list(labels), off, t, v), rng, end, self._eval_t(node, ts))

    def binary(self, node: Any, ts: np.ndarray) -> Value:
        op = str(node.op)
        lhs = self.eval(node.lhs, ts)
        rhs = self.eval(node.rhs, ts)
        mod = node.modifier
        return_bool = bool(mod is not None and mod.return_bool)
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            return scalar_scalar(op, lhs, rhs, return_bool)
        if isinstance(lhs, Vector) and isinstance(rhs, Scalar):
            return vector_scalar(op, lhs, rhs, False, return_bool)
        if isinstance(lhs, Scalar) and isinstance(rhs, Vector):
            return vector_scalar(op, rhs, lhs, True, return_bool)
        if isinstance(lhs, Vector) and isinstance(rhs, Vector):
            return vector_vector(op, _plain(lhs), _plain(rhs), mod, len(ts))
        raise QueryError(
            f"binary expression must contain only scalar and instant vector types (operator {op})"
        )

    def aggregate(self, node: Any, ts: np.ndarray) -> Vector:
        op = str(node.op)
        param = self.eval(node.param, ts) if node.param is not None else None
        vec = self.eval(node.expr, ts)
        if not isinstance(vec, Vector):
            raise QueryError(f"expected instant vector in aggregation {op}")
        without, grouping = False, []
        if node.modifier is not None:
            without = str(node.modifier.type).endswith("Without")
            grouping = list(node.modifier.labels)
        return aggregate(op, _plain(vec), without, grouping, param, len(ts))

    def call(self, node: Any, ts: np.ndarray) -> Value:
        name = node.func.name
        args = list(node.args)
        if name == "timestamp":
            arg = _unparen(args[0])
            vec = self._vector(arg, ts, name)
            if _kind(arg) == "VectorSelector" and vec.sample_ts is not None:
                val = vec.sample_ts / 1000.0
            else:
                val = np.broadcast_to(ts / 1000.0, vec.v.shape)
            return merge_same_labels(
                Vector([_dropname(lab) for lab in vec.labels], np.array(val, dtype=float), vec.m)
            )
        if name in _RANGE_FUNCS:
            if name == "quantile_over_time":
                scalars, rv_node = [self._scalar(args[0], ts, name).v], args[1]
            else:
                scalars, rv_node = [self._scalar(a, ts, name).v for a in args[1:]], args[0]
            inner = _unparen(rv_node)
            if not scalars and _kind(inner) == "MatrixSelector":
                from_rollup = rollup.evaluate(self, name, inner, ts)
                if from_rollup is not None:
                    return from_rollup
            rv = self.eval(rv_node, ts)
            if not isinstance(rv, RangeVector):
                raise QueryError(f"expected type range vector in call to function {name!r}")
            return fn.range_function(name, rv, scalars)
        if name == "time":
            return Scalar(ts / 1000.0)
        if name == "vector":
            s = self._scalar(args[0], ts, name)
            return Vector([{}], s.v[None, :].copy(), np.ones((1, len(ts)), dtype=bool))
        if name == "scalar":
            vec = self._vector(args[0], ts, name)
            cnt = vec.m.sum(axis=0)
            val = np.where(vec.m, vec.v, 0.0).sum(axis=0)
            return Scalar(np.where(cnt == 1, val, np.nan))
        if name in ("absent", "absent_over_time"):
            arg = self.eval(args[0], ts)
            if isinstance(arg, RangeVector):
                lo, hi = arg.windows()
                present = (hi > lo).any(axis=0) if len(arg.data) else np.zeros(len(ts), dtype=bool)
                sel = _unparen(args[0])
                sel = sel.vector_selector if _kind(sel) == "MatrixSelector" else None
            elif isinstance(arg, Vector):
                present = arg.m.any(axis=0)
                sel = _unparen(args[0])
                sel = sel if _kind(sel) == "VectorSelector" else None
            else:
                raise QueryError(f"expected vector argument in call to {name}")
            absent = ~np.asarray(present, dtype=bool)
            return Vector([_absent_labels(sel)], np.ones((1, len(ts))), absent[None, :]).compact()
        if name in ("sort", "sort_desc"):
            vec = self._vector(args[0], ts, name)
            key = vec.v[:, 0] if vec.v.shape[1] else np.zeros(len(vec))
            order = sorted(range(len(vec)), key=lambda i: _sort_key(float(key[i]), name == "sort_desc"))
            return vec.select(order) if len(vec) else vec
        if name == "label_replace":
            vec = self._vector(args[0], ts, name)
            dst, repl, src, regex = (self._string(a, name) for a in args[1:5])
            return fn.label_replace(vec, dst, repl, src, regex)
        if name == "label_join":
            vec = self._vector(args[0], ts, name)
            strs = [self._string(a, name) for a in args[1:]]
            return fn.label_join(vec, strs[0], strs[1], strs[2:])
        if name == "histogram_quantile":
            q = self._scalar(args[0], ts, name)
            return fn.histogram_quantile(q.v, self._vector(args[1], ts, name))
        if name in ("clamp", "clamp_min", "clamp_max"):
            vec = self._vector(args[0], ts, name)
            inf = np.full(len(ts), np.inf)
            if name == "clamp":
                lo_, hi_ = self._scalar(args[1], ts, name).v, self._scalar(args[2], ts, name).v
            elif name == "clamp_min":
                lo_, hi_ = self._scalar(args[1], ts, name).v, inf
            else:
                lo_, hi_ = -inf, self._scalar(args[1], ts, name).v
            return fn.clamp(vec, lo_, hi_)
        if name == "round":
            vec = self._vector(args[0], ts, name)
            to = self._scalar(args[1], ts, name).v if len(args) > 1 else np.ones(len(ts))
            return fn.round_to(vec, to)
        if name in fn.DATE_FUNCS:
            if args:
                vec = self._vector(args[0], ts, name)
            else:
                vec = Vector([{}], (ts / 1000.0)[None, :], np.ones((1, len(ts)), dtype=bool))
            return fn.date_function(name, vec)
        if name in fn._MATH:
            return fn.math_function(name, self._vector(args[0], ts, name))
        raise QueryError(f"function {name!r} is not supported by the embedded evaluator", "execution")

    def _vector(self, node: Any, ts: np.ndarray, fname: str) -> Vector:
        val = self.eval(node, ts)
        if not isinstance(val, Vector):
            raise QueryError(f"expected type instant vector in call to function {fname!r}")
        return val

    def _scalar(self, node: Any, ts: np.ndarray, fname: str) -> Scalar:
        val = self.eval(node, ts)
        if not isinstance(val, Scalar):
            raise QueryError(f"expected type scalar in call to function {fname!r}")
        return val

    def _string(self, node: Any, fname: str) -> str:
        node = _unparen(node)
        if _kind(node) != "StringLiteral":
            raise QueryError(f"expected type string in call to function {fname!r}")
        return str(node.val)


def _plain(vec: Vector) -> Vector:
    return Vector(vec.labels, vec.v, vec.m)


def _dropname(lab: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in lab.items() if k != "__name__"}


def _sort_key(v: float, desc: bool) -> tuple[int, float]:
    if np.isnan(v):
        return (0, 0.0)
    return (1, -v if desc else v)


def _absent_labels(sel: Any) -> dict[str, str]:
    if sel is None:
        return {}
    out: dict[str, str] = {}
    dup: set[str] = set()
    for m in sel.matchers.matchers:
        if m.name == "__name__" or _op(m) != "=":
            continue
        if m.name in out:
            dup.add(m.name)
        out[m.name] = m.value
    for d in dup:
        out.pop(d)
    return out


class Engine:
    """Evaluates queries against a store that has ``select(matchers, start_ms, end_ms)``."""

    def __init__(
        self,
        store: Any,
        *,
        lookback_ms: int = DEFAULT_LOOKBACK_MS,
        max_samples: int | None = None,
        timeout_s: float | None = None,
        use_rollups: bool = True,
    ) -> None:
        self.store = store
        self.use_rollups = use_rollups  # answer range functions from rollups where exact (promql/rollup.py)
        self.lookback_ms = lookback_ms
        self.max_samples = max_samples
        self.timeout_s = timeout_s

    def _deadline(self, timeout_s: float | None) -> float | None:
        t = timeout_s if timeout_s is not None else self.timeout_s
        return time.monotonic() + t if t is not None else None

    def instant(self, query: str, time_ms: int, *, timeout_s: float | None = None) -> QueryResult:
        node = parse(query)
        ev = _Eval(self, time_ms, time_ms, self._deadline(timeout_s))
        ts = np.array([time_ms], dtype=np.int64)
        val = ev.eval(node, ts)
        if isinstance(val, Scalar):
            return QueryResult("scalar", scalar=(time_ms, float(val.v[0])))
        if isinstance(val, String):
            return QueryResult("string", string=(time_ms, val.s))
        if isinstance(val, RangeVector):
            lo, hi = val.windows()
            out = []
            for i, lab in enumerate(val.data.labels):
                a, b = int(lo[i, 0]), int(hi[i, 0])
                if b > a:
                    out.append(RangeSeries(lab, val.data.t[a:b].copy(), val.data.v[a:b].copy()))
            out.sort(key=lambda s: label_key(s.labels))
            return QueryResult("matrix", matrix=out)
        samples = [
            InstantSample(val.labels[i], time_ms, float(val.v[i, 0])) for i in range(len(val)) if val.m[i, 0]
        ]
        top = _unparen(node)
        if not (_kind(top) == "Call" and top.func.name in ("sort", "sort_desc")):
            samples.sort(key=lambda s: label_key(s.labels))
        return QueryResult("vector", vector=samples)

    def range(
        self, query: str, start_ms: int, end_ms: int, step_ms: int, *, timeout_s: float | None = None
    ) -> QueryResult:
        if end_ms < start_ms:
            raise QueryError('invalid parameter "end": end timestamp must not be before start time')
        if step_ms <= 0:
            raise QueryError(
                'invalid parameter "step": zero or negative query resolution step widths are not accepted. '
                "Try a positive integer"
            )
        node = parse(query)
        ev = _Eval(self, start_ms, end_ms, self._deadline(timeout_s))
        steps = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        val = ev.eval(node, steps)
        if isinstance(val, Scalar):
            return QueryResult("matrix", matrix=[RangeSeries({}, steps, val.v.astype(np.float64))])
        if not isinstance(val, Vector):
            kind = "range vector" if isinstance(val, RangeVector) else "string"
            raise QueryError(
                f'invalid expression type "{kind}" for range query, must be Scalar or instant Vector'
            )
        out = [
            RangeSeries(val.labels[i], steps[val.m[i]], val.v[i][val.m[i]])
            for i in range(len(val))
            if val.m[i].any()
        ]
        out.sort(key=lambda s: label_key(s.labels))
        return QueryResult("matrix", matrix=out)


__all__ = ["DEFAULT_LOOKBACK_MS", "Engine", "QueryError", "parse", "parse_selector", "selector_matchers"]
