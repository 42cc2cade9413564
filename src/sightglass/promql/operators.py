"""Binary operators and aggregations over step-major vectors (Prometheus 2.42 semantics)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sightglass.promql.result import QueryError, format_value
from sightglass.promql.values import NAME, LabelSet, Scalar, Vector, drop_name, label_key, merge_same_labels

ARITHMETIC = ("+", "-", "*", "/", "%", "^", "atan2")
COMPARISON = ("==", "!=", ">", "<", ">=", "<=")
SET_OPS = ("and", "or", "unless")
_DROPS_NAME = ("+", "-", "*", "/", "%", "^")  # not atan2, nor comparisons (Prometheus 2.42)


def elementwise(op: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(value, keep)``; keep is None for arithmetic."""
    with np.errstate(all="ignore"):
        if op == "+":
            return a + b, None
        if op == "-":
            return a - b, None
        if op == "*":
            return a * b, None
        if op == "/":
            return np.true_divide(a, b), None
        if op == "%":
            return np.fmod(a, b), None
        if op == "^":
            return np.power(a, b), None
        if op == "atan2":
            return np.arctan2(a, b), None
        if op == "==":
            return a, a == b
        if op == "!=":
            return a, a != b
        if op == ">":
            return a, a > b
        if op == "<":
            return a, a < b
        if op == ">=":
            return a, a >= b
        if op == "<=":
            return a, a <= b
    raise QueryError(f"operator {op!r} is not supported", "execution")


def scalar_scalar(op: str, a: Scalar, b: Scalar, return_bool: bool) -> Scalar:
    val, keep = elementwise(op, a.v, b.v)
    if keep is not None:
        if not return_bool:
            raise QueryError("comparisons between scalars must use BOOL modifier")
        val = keep.astype(np.float64)
    return Scalar(np.asarray(val, dtype=np.float64))


def vector_scalar(op: str, vec: Vector, s: Scalar, swap: bool, return_bool: bool) -> Vector:
    if op in SET_OPS:
        raise QueryError(f"set operator {op!r} not allowed in binary scalar expression")
    sv = s.v[None, :]
    a, b = (sv, vec.v) if swap else (vec.v, sv)
    val, keep = elementwise(op, a, b)
    mask = vec.m
    if keep is not None:
        val = vec.v  # comparisons keep the vector's value, whichever side it is on
        if return_bool:
            val = keep.astype(np.float64)
        else:
            mask = mask & keep
    val = np.broadcast_to(val, vec.v.shape).astype(np.float64)
    if op in _DROPS_NAME or return_bool:
        labels = [drop_name(lab) for lab in vec.labels]
    else:
        labels = list(vec.labels)
    return merge_same_labels(Vector(labels, val, mask).compact())


def _signature(lab: LabelSet, on: bool, names: list[str]) -> tuple[tuple[str, str], ...]:
    if on:
        return tuple((n, lab[n]) for n in sorted(names) if n in lab)
    return tuple(sorted((k, v) for k, v in lab.items() if k != NAME and k not in names))


def _present_by_sig(vec: Vector, on: bool, names: list[str]) -> dict[tuple[tuple[str, str], ...], np.ndarray]:
    out: dict[tuple[tuple[str, str], ...], np.ndarray] = {}
    for i, lab in enumerate(vec.labels):
        sig = _signature(lab, on, names)
        prev = out.get(sig)
        out[sig] = vec.m[i].copy() if prev is None else (prev | vec.m[i])
    return out


def vector_vector(op: str, lhs: Vector, rhs: Vector, mod: Any, steps: int) -> Vector:
    on, names, card, include, return_bool = _modifier(mod, op)
    if op in SET_OPS:
        return _set_op(op, lhs, rhs, on, names, steps)
    if card == "ManyToMany":
        raise QueryError("many-to-many matching is only allowed for set operators")
    swap = card == "OneToMany"
    many, one = (rhs, lhs) if swap else (lhs, rhs)
    one_rows: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for j, lab in enumerate(one.labels):
        one_rows.setdefault(_signature(lab, on, names), []).append(j)
    # Prometheus short-circuits a step where either side is empty, before looking for duplicates
    both = many.m.any(axis=0) & one.m.any(axis=0)
    for sig, rows in one_rows.items():
        if len(rows) > 1 and ((one.m[rows].sum(axis=0) > 1) & both).any():
            side = "left" if swap else "right"
            raise QueryError(
                f"found duplicate series for the match group {{{', '.join(f'{k}={v!r}' for k, v in sig)}}} "
                f"on the {side} hand-side of the operation; many-to-many matching not allowed: "
                "matching labels must be unique on one side",
                "execution",
            )
    out_labels: list[LabelSet] = []
    out_v: list[np.ndarray] = []
    out_m: list[np.ndarray] = []
    out_sig: list[tuple[tuple[str, str], ...]] = []
    for i, lab in enumerate(many.labels):
        sig = _signature(lab, on, names)
        for j in one_rows.get(sig, ()):
            m = many.m[i] & one.m[j]
            if not m.any():
                continue
            vl, vr = (one.v[j], many.v[i]) if swap else (many.v[i], one.v[j])
            val, keep = elementwise(op, vl, vr)
            if keep is not None:
                if return_bool:
                    val = keep.astype(np.float64)
                else:
                    m = m & keep
            if not m.any():
                continue
            res = dict(lab)
            if op in _DROPS_NAME or return_bool:
                res.pop(NAME, None)
            if card == "OneToOne":
                if on:
                    res = {k: v for k, v in res.items() if k in names}
                else:
                    res = {k: v for k, v in res.items() if k not in names}
            for ln in include:
                v = one.labels[j].get(ln, "")
                if v:
                    res[ln] = v
                else:
                    res.pop(ln, None)
            out_labels.append(res)
            out_v.append(np.asarray(val, dtype=np.float64))
            out_m.append(m)
            out_sig.append(sig)
    if not out_labels:
        return Vector.empty(steps)
    vec = Vector(out_labels, np.vstack(out_v), np.vstack(out_m))
    by_sig: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for k, sig in enumerate(out_sig):
        by_sig.setdefault(sig, []).append(k)
    for rows in by_sig.values():
        if len(rows) < 2:
            continue
        if card == "OneToOne":
            if (vec.m[rows].sum(axis=0) > 1).any():
                raise QueryError(
                    "multiple matches for labels: many-to-one matching must be explicit "
                    "(group_left/group_right)",
                    "execution",
                )
        else:
            seen: dict[tuple[tuple[str, str], ...], np.ndarray] = {}
            for k in rows:
                key = label_key(vec.labels[k])
                if key in seen and (seen[key] & vec.m[k]).any():
                    raise QueryError(
                        "multiple matches for labels: grouping labels must ensure unique matches", "execution"
                    )
                seen[key] = seen.get(key, np.zeros(steps, dtype=bool)) | vec.m[k]
    return merge_same_labels(vec)


def _modifier(mod: Any, op: str) -> tuple[bool, list[str], str, list[str], bool]:
    if mod is None:
        card = "ManyToMany" if op in SET_OPS else "OneToOne"
        return False, [], card, [], False
    on, names = False, []
    if mod.matching is not None:
        on = str(mod.matching.type).endswith("Include")
        names = list(mod.matching.labels)
    card = str(mod.card).rsplit(".", 1)[-1]
    if op in SET_OPS:
        card = "ManyToMany"
    include = list(mod.group_labels or []) if card in ("ManyToOne", "OneToMany") else []
    return on, names, card, include, bool(mod.return_bool)


def _matched(
    vec: Vector, present: dict[tuple[tuple[str, str], ...], np.ndarray], on: bool, names: list[str]
) -> np.ndarray:
    """Per row of ``vec`` and step: whether the other side has a series with the same signature."""
    out = np.zeros(vec.m.shape, dtype=bool)
    for i, lab in enumerate(vec.labels):
        hit = present.get(_signature(lab, on, names))
        if hit is not None:
            out[i] = hit
    return out


def _set_op(op: str, lhs: Vector, rhs: Vector, on: bool, names: list[str], steps: int) -> Vector:
    if op == "and":
        m = _matched(lhs, _present_by_sig(rhs, on, names), on, names)
        return Vector(lhs.labels, lhs.v, lhs.m & m).compact()
    if op == "unless":
        m = _matched(lhs, _present_by_sig(rhs, on, names), on, names)
        return Vector(lhs.labels, lhs.v, lhs.m & ~m).compact()
    m = _matched(rhs, _present_by_sig(lhs, on, names), on, names)
    right = Vector(rhs.labels, rhs.v, rhs.m & ~m).compact()
    if not len(right):
        return lhs
    if not len(lhs):
        return merge_same_labels(right)
    return merge_same_labels(
        Vector(lhs.labels + right.labels, np.concatenate([lhs.v, right.v]), np.concatenate([lhs.m, right.m]))
    )


# ------------------------------------------------------------------ aggregation


def _group_labels(lab: LabelSet, without: bool, grouping: list[str]) -> LabelSet:
    if without:
        return {k: v for k, v in lab.items() if k != NAME and k not in grouping}
    return {k: v for k, v in lab.items() if k in grouping}


def aggregate(op: str, vec: Vector, without: bool, grouping: list[str], param: Any, steps: int) -> Vector:
    if op in ("topk", "bottomk"):
        return _topk(op == "topk", vec, without, grouping, param.v)
    if op == "count_values":
        return _count_values(vec, without, grouping, param.s)
    if len(vec) == 0:
        return Vector.empty(steps)
    groups: dict[tuple[tuple[str, str], ...], int] = {}
    glabels: list[LabelSet] = []
    gid = np.empty(len(vec), dtype=np.int64)
    for i, lab in enumerate(vec.labels):
        g = _group_labels(lab, without, grouping)
        key = label_key(g)
        if key not in groups:
            groups[key] = len(glabels)
            glabels.append(g)
        gid[i] = groups[key]
    if len(gid) < 2 or bool((gid[1:] >= gid[:-1]).all()):
        v, m, sorted_gid = vec.v, vec.m, gid  # groups already contiguous (series in label order): no copy
    else:
        order = np.argsort(gid, kind="stable")
        v, m, sorted_gid = vec.v[order], vec.m[order], gid[order]
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_gid) != 0])
    cnt = np.add.reduceat(m.astype(np.int64), starts, axis=0)
    present = cnt > 0
    with np.errstate(all="ignore"):
        if op in ("sum", "avg", "stddev", "stdvar"):
            res = _running(op, v, m, starts)
        elif op == "count":
            res = cnt.astype(np.float64)
        elif op == "group":
            res = np.ones(cnt.shape)
        elif op == "min":
            res = np.fmin.reduceat(np.where(m, v, np.nan), starts, axis=0)
        elif op == "max":
            res = np.fmax.reduceat(np.where(m, v, np.nan), starts, axis=0)
        elif op == "quantile":
            res = _group_quantile(param.v, v, m, starts)
        else:
            raise QueryError(f"aggregation {op!r} is not supported by the embedded evaluator", "execution")
    return Vector(glabels, np.asarray(res, dtype=np.float64), present).compact()


def _running(op: str, v: np.ndarray, m: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """sum, avg (incremental mean), stddev/stdvar (Welford) member by member, in input order.

    Prometheus 2.42 accumulates in the order of the input vector; doing the same gives bit-identical
    results (numpy's ``add.reduceat`` sums in another order).
    """
    sizes = np.diff(np.r_[starts, len(v)])
    groups, steps = len(starts), v.shape[1]
    if op in ("sum", "avg") and len(v) and bool(m.all()):
        fast = _running_dense(op, v, starts, sizes)
        if fast is not None:
            return fast
    count = np.zeros((groups, steps))
    mean = np.zeros((groups, steps))
    acc = np.zeros((groups, steps))
    for p in range(int(sizes.max(initial=0))):
        gs = np.flatnonzero(sizes > p)
        x, ok = v[starts[gs] + p], m[starts[gs] + p]
        n = count[gs] + ok
        count[gs] = n
        mu = mean[gs]
        first = ok & (n == 1)  # the first sample of a group starts it as is (value, mean; no delta)
        if op == "sum":
            new = mu + x
        elif op == "avg":
            skip = np.isinf(mu) & ((np.isinf(x) & ((mu > 0) == (x > 0))) | (~np.isinf(x) & ~np.isnan(x)))
            new = np.where(skip, mu, mu + (x / n - mu / n))
        else:
            delta = x - mu
            new = mu + delta / n
            acc[gs] = np.where(first, 0.0, np.where(ok, acc[gs] + delta * (x - new), acc[gs]))
        mean[gs] = np.where(first, x, np.where(ok, new, mu))
    if op in ("sum", "avg"):
        return mean
    var = acc / count
    return np.sqrt(var) if op == "stddev" else var


def _running_dense(op: str, v: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray | None:
    """:func:`_running`'s sum or avg when every member has a value at every step: the same
    operations in the same order (a group starts as its first member; then ``mean + x``, or
    ``mean + (x / n - mean / n)``) without the masks. None for an avg that is not finite somewhere
    (an infinity has special cases that only the general loop has)."""
    acc = v[starts]  # a copy (fancy index): each group starts as its first member, as is
    for p in range(1, int(sizes.max())):
        if bool((sizes > p).all()):
            x = v[starts + p]
            if op == "sum":
                acc += x
            else:
                acc += x / float(p + 1) - acc / float(p + 1)
            continue
        gs = np.flatnonzero(sizes > p)
        x, mu = v[starts[gs] + p], acc[gs]
        acc[gs] = mu + x if op == "sum" else mu + (x / float(p + 1) - mu / float(p + 1))
    if op == "avg" and not bool(np.isfinite(acc).all()):
        return None
    return acc


def _group_quantile(q: np.ndarray, v: np.ndarray, m: np.ndarray, starts: np.ndarray) -> np.ndarray:
    from sightglass.promql.functions import _quantile_sorted, sort_nan_first

    ends = np.r_[starts[1:], len(v)]
    out = np.empty((len(starts), v.shape[1]))
    for g, (a, b) in enumerate(zip(starts, ends, strict=True)):
        block = sort_nan_first(v[a:b].T, m[a:b].T)  # (steps, members)
        out[g] = _quantile_sorted(q, block, m[a:b].sum(axis=0))
    return out


def _topk(top: bool, vec: Vector, without: bool, grouping: list[str], k: np.ndarray) -> Vector:
    steps = vec.v.shape[1]
    if len(vec) == 0:
        return Vector.empty(steps)
    kk = np.where(np.isfinite(k), np.trunc(np.nan_to_num(k)), np.where(k > 0, 2**62, 0)).astype(np.int64)
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    if not without and not grouping:
        groups[()] = list(range(len(vec)))  # no grouping: one group of every series
    else:
        for i, lab in enumerate(vec.labels):
            groups.setdefault(label_key(_group_labels(lab, without, grouping)), []).append(i)
    keep = np.zeros(vec.m.shape, dtype=bool)
    for rows in groups.values():
        v, m = vec.v[rows], vec.m[rows]
        key = np.where(m, -v if top else v, np.inf)
        key = np.where(np.isnan(key) & m, np.inf, key)  # NaN loses to every number
        order = np.argsort(key, axis=0, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(len(rows))[:, None].repeat(steps, axis=1), axis=0)
        keep[rows] = m & (rank < kk[None, :])
    return Vector(vec.labels, vec.v, keep).compact()


def _count_values(vec: Vector, without: bool, grouping: list[str], label: str) -> Vector:
    steps = vec.v.shape[1]
    out: dict[tuple[tuple[str, str], ...], tuple[LabelSet, np.ndarray]] = {}
    for i, lab in enumerate(vec.labels):
        base = _group_labels(lab, without, grouping)
        for s in np.flatnonzero(vec.m[i]):
            g = dict(base)
            g[label] = format_value(float(vec.v[i, s]))
            key = label_key(g)
            if key not in out:
                out[key] = (g, np.zeros(steps))
            out[key][1][s] += 1
    if not out:
        return Vector.empty(steps)
    labels = [g for g, _ in out.values()]
    counts = np.vstack([c for _, c in out.values()])
    return Vector(labels, counts, counts > 0)
