"""``sum``/``avg`` over a vector with a value at every step (operators._running_dense) give the very
bits of the general member-by-member loop, including signed zeros, NaN, infinities and overflow."""

from __future__ import annotations

import numpy as np
import pytest

from sightglass.promql import operators
from sightglass.promql.values import Vector


def _vector(rng: np.random.Generator, kind: str) -> Vector:
    # groups of 1..8 members, different sizes, or 8 GPUs on every host
    hosts = np.full(40, 8) if kind.startswith("equal") else rng.integers(1, 9, 40)
    labels = [{"Hostname": f"h{h:02d}", "gpu": str(g)} for h, n in enumerate(hosts) for g in range(n)]
    v = rng.normal(0, 1, (len(labels), 97)) * 10.0 ** rng.integers(-3, 12, (len(labels), 1))
    if kind.endswith("specials"):
        flat = v.ravel()
        at = rng.choice(flat.size, 60, replace=False)
        flat[at[:15]], flat[at[15:30]], flat[at[30:45]], flat[at[45:]] = np.nan, np.inf, -np.inf, -0.0
    if kind == "huge":
        v[:] = 1.7e308 * np.sign(v)  # the running mean overflows
    if kind == "zeros":
        v[:] = -0.0
    return Vector(labels, v, np.ones(v.shape, dtype=bool))


@pytest.mark.parametrize("kind", ["plain", "specials", "huge", "zeros", "equal", "equal-specials"])
@pytest.mark.parametrize("op", ["sum", "avg"])
def test_dense_sum_and_avg_are_the_general_loop(op: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    vec = _vector(np.random.default_rng(len(kind)), kind)
    calls: list[bool] = []
    dense = operators._running_dense

    def spy(*args: object) -> np.ndarray | None:
        out = dense(*args)  # type: ignore[arg-type]
        calls.append(out is not None)
        return out

    monkeypatch.setattr(operators, "_running_dense", spy)
    fast = operators.aggregate(op, vec, False, ["Hostname"], None, 97)
    assert calls and (calls[0] or op == "avg")
    monkeypatch.setattr(operators, "_running_dense", lambda *a: None)
    slow = operators.aggregate(op, vec, False, ["Hostname"], None, 97)
    assert [dict(x) for x in fast.labels] == [dict(x) for x in slow.labels]
    np.testing.assert_array_equal(fast.m, slow.m)
    assert fast.v.tobytes() == slow.v.tobytes()
