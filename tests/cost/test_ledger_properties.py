"""Hypothesis: the ledger reconciles for random fleets, allocations, sharing, idle time and prices."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from sightglass.cost.ledger import Allocation, Gpu, Ledger, Workload, build_ledger
from sightglass.cost.prices import PriceSheet

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
MODELS = ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB")
Scenario = tuple[list[Gpu], list[Allocation], dict[str, list[tuple[int, int]]]]


@st.composite
def sheets(draw: st.DrawFn) -> PriceSheet:
    n = draw(st.integers(1, 3))
    offsets = sorted(draw(st.sets(st.integers(-48, 30), min_size=n, max_size=n)))
    versions = []
    for off in offsets:
        h100 = draw(st.decimals("0.01", "20", places=4))
        a100 = draw(st.decimals("0.01", "20", places=4))
        energy_priced = draw(st.booleans())
        versions.append(
            {
                "effective": _iso(T0 + off * HOUR),
                "energy_usd_per_kwh": str(draw(st.decimals("0", "0.5", places=3))),
                "pue": str(draw(st.decimals("1", "2", places=2))),
                "overhead_ratio": str(draw(st.decimals("0", "0.5", places=2))),
                "gpu": {
                    "H100": {"pricing": "cloud", "on_demand_usd_per_gpu_hour": str(h100)},
                    "A100": (
                        {"pricing": "on_prem", "capex_usd_per_gpu": str(a100 * 1000), "years": "4"}
                        if energy_priced
                        else {"pricing": "cloud", "on_demand_usd_per_gpu_hour": str(a100)}
                    ),
                },
            }
        )
    return PriceSheet.from_dict({"version": versions})


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat()


times = st.integers(-2 * HOUR, 26 * HOUR).map(lambda x: T0 + x)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Gpu], list[Allocation], dict[str, list[tuple[int, int]]]]:
    n = draw(st.integers(1, 4))
    fleet = []
    for i in range(n):
        lo = draw(st.one_of(st.none(), times))
        hi = draw(st.one_of(st.none(), times))
        fleet.append(Gpu(f"gpu:{i}", f"node:{i // 2}", draw(st.sampled_from(MODELS)), lo, hi))
    workloads = [Workload(f"pod:ns/w{k}", "pod", team=f"t{k % 3}") for k in range(5)]
    allocs = []
    for _ in range(draw(st.integers(0, 12))):
        a, b = sorted((draw(times), draw(times)))
        share = draw(
            st.one_of(
                st.none(),
                st.fractions(Fraction(1, 100), Fraction(1)),
                st.sampled_from([Fraction(k, 7) for k in (1, 2, 3, 4, 7)]),
            )
        )
        allocs.append(
            Allocation(draw(st.sampled_from(workloads)), f"gpu:{draw(st.integers(0, n - 1))}", a, b, share)
        )
    idle: dict[str, list[tuple[int, int]]] = {}
    for _ in range(draw(st.integers(0, 4))):
        a, b = sorted((draw(times), draw(times)))
        idle.setdefault(f"gpu:{draw(st.integers(0, n - 1))}", []).append((a, b))
    return fleet, allocs, idle


def _energy(gpu: str, a: int, b: int) -> Fraction:
    return Fraction(300 + 50 * int(gpu[-1])) * (b - a) / 1000  # a steady 300-450 W


def _independent_total(fleet: list[Gpu], sheet: PriceSheet, lo: int, hi: int) -> dict[str, Fraction]:
    """Price sheet x presence, computed without the ledger: per GPU, per version span."""
    out = {}
    for g in fleet:
        a = max(lo, g.start_ms if g.start_ms is not None else lo)
        b = min(hi, g.end_ms if g.end_ms is not None else hi)
        total = Fraction(0)
        eff = [v.effective_ms for v in sheet.versions] + [1 << 62]
        for i in range(len(sheet.versions)):
            s, e = max(a, eff[i]), min(b, eff[i + 1])
            if e <= s:
                continue
            r = sheet.rate(g.model_name, s)
            assert r is not None
            total += r.micro_per_hour * (e - s) / HOUR + r.energy_micro_per_joule * _energy(g.id, s, e)
        out[g.id] = total
    return out


@settings(max_examples=150, deadline=None)
@given(sheets(), scenarios(), times, times)
def test_reconciles_exactly(sheet: PriceSheet, sc: Scenario, t1: int, t2: int) -> None:
    fleet, allocs, idle = sc
    lo, hi = sorted((t1, t2))
    if hi == lo:
        hi += 1
    led = build_ledger(fleet, allocs, sheet, lo, hi, idle=idle, energy=_energy)
    led.check()
    cats = led.category_micro()
    assert sum(cats.values()) == led.fleet_micro == sum(ln.micro for ln in led.lines)
    assert all(ln.micro >= 0 for ln in led.lines)
    # the fleet cost is the price sheet applied to the GPUs' presence, rounded once per GPU
    indep = _independent_total(fleet, sheet, lo, hi)
    for gid, exact in indep.items():
        if exact or gid in led.gpu_totals:
            assert led.gpu_exact.get(gid, Fraction(0)) == exact
            assert abs(led.gpu_totals.get(gid, 0) - exact) <= Fraction(1, 2)
    # no double counting: per GPU, shares of time never exceed the time it was present
    for g in fleet:
        a = max(lo, g.start_ms if g.start_ms is not None else lo)
        b = min(hi, g.end_ms if g.end_ms is not None else hi)
        held = sum((ln.gpu_ms for ln in led.lines if ln.gpu == g.id), Fraction(0))
        assert held == max(0, b - a)
        assert sum((ln.gpu_ms for ln in led.lines if ln.gpu == g.id and ln.workload), Fraction(0)) <= max(
            0, b - a
        )


@settings(max_examples=80, deadline=None)
@given(sheets(), scenarios(), times, times, st.floats(0.0, 1.0))
def test_windows_add_up(sheet: PriceSheet, sc: Scenario, t1: int, t2: int, cut: float) -> None:
    """A window's exact cost per workload is the sum over any split of it."""
    fleet, allocs, idle = sc
    lo, hi = sorted((t1, t2))
    if hi - lo < 2:
        hi = lo + 2
    mid = lo + 1 + int((hi - lo - 2) * cut)
    whole = build_ledger(fleet, allocs, sheet, lo, hi, idle=idle, energy=_energy)
    left = build_ledger(fleet, allocs, sheet, lo, mid, idle=idle, energy=_energy)
    right = build_ledger(fleet, allocs, sheet, mid, hi, idle=idle, energy=_energy)

    def per(led: Ledger) -> dict[tuple[str, str], Fraction]:
        out: dict[tuple[str, str], Fraction] = {}
        for ln in led.lines:
            k = (ln.workload.id if ln.workload else "", ln.category)
            out[k] = out.get(k, Fraction(0)) + ln.exact_micro
        return {k: v for k, v in out.items() if v}

    a, b, c = per(whole), per(left), per(right)
    keys = set(a) | set(b) | set(c)
    for k in keys:
        assert a.get(k, Fraction(0)) == b.get(k, Fraction(0)) + c.get(k, Fraction(0)), k
    assert abs(whole.fleet_micro - left.fleet_micro - right.fleet_micro) <= 2 * len(fleet)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.integers(1, 10 * HOUR))
def test_time_slicing_splits_equally_and_is_marked_low_confidence(k: int, dur: int) -> None:
    sheet = PriceSheet.from_dict(
        {"version": [{"effective": "2025-01-01", "gpu": {"H100": {"on_demand_usd_per_gpu_hour": "3"}}}]}
    )
    fleet = [Gpu("gpu:0", "node:a", MODELS[0])]
    allocs = [Allocation(Workload(f"pod:ns/p{i}", "pod"), "gpu:0", T0, T0 + dur) for i in range(k)]
    led = build_ledger(fleet, allocs, sheet, T0, T0 + dur)
    led.check()
    micros = sorted(ln.micro for ln in led.lines)
    assert micros[-1] - micros[0] <= 1  # equal split, up to the largest-remainder micro-dollar
    assert all(ln.confidence == "low" for ln in led.lines)
    assert {ln.category for ln in led.lines} == {"used"}
