"""Price sheets: versions and lookups, and malformed, hostile and half-valid sheets give clear errors."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sightglass.cost.prices import (
    DEFAULT_SHEET_TOML,
    ON_PREM_EXAMPLE_TOML,
    PriceSheet,
    PriceSheetError,
)

H100 = "NVIDIA H100 80GB HBM3"


def test_defaults_follow_calibration() -> None:
    sheet = PriceSheet.default()
    t = sheet.versions[0].effective_ms + 1
    r = sheet.rate(H100, t)
    assert r is not None and r.micro_per_hour == 2_490_000 and r.energy_micro_per_joule == 0
    a100 = sheet.rate("NVIDIA A100-SXM4-80GB", t)
    assert a100 is not None and a100.micro_per_hour == 1_500_000
    assert sheet.rate("NVIDIA L40S", t) is not None
    assert sheet.rate("Tesla K80", t) is None  # no default key: unpriced, reported as a warning
    assert sheet.rate(H100, sheet.versions[0].effective_ms - 1) is None  # before the first version


def test_on_prem_amortisation_and_energy() -> None:
    sheet = PriceSheet.from_toml(ON_PREM_EXAMPLE_TOML)
    r = sheet.rate(H100, sheet.versions[0].effective_ms)
    assert r is not None
    # $36,000 over 5 x 8760 h = $0.8219/GPU-h (docs/calibration.md §E: $0.82)
    assert r.micro_per_hour == Fraction(36_000 * 1_000_000, 5 * 8760)
    # metered energy: $0.08/kWh x PUE 1.3 per joule, in micro-dollars
    assert r.energy_micro_per_joule == Fraction("0.08") * 1_000_000 * Fraction("1.3") / 3_600_000


def test_versions_tiers_overheads_and_matching() -> None:
    sheet = PriceSheet.from_toml(
        """
[[version]]
effective = 2026-01-01
overhead_ratio = 0.25
overhead_usd_per_gpu_hour = 0.10
[version.gpu.H100]
tier = "reserved"
on_demand_usd_per_gpu_hour = 4
reserved_usd_per_gpu_hour = 2
[version.gpu."H100 NVL"]
on_demand_usd_per_gpu_hour = 9
[version.gpu.default]
on_demand_usd_per_gpu_hour = 1

[[version]]
effective = 2025-06-01T00:00:00Z
[version.gpu.H100]
tier = "spot"
spot_usd_per_gpu_hour = 1.2345
match = ["hopper"]
"""
    )
    assert [v.effective for v in sheet.versions] == ["2025-06-01T00:00:00+00:00", "2026-01-01"]  # sorted
    late = sheet.versions[1].effective_ms
    r = sheet.rate(H100, late)
    assert r is not None and r.micro_per_hour == (Decimal(2) * Decimal("1.25") + Decimal("0.10")) * 1_000_000
    nvl = sheet.rate("NVIDIA H100 NVL", late)
    assert nvl is not None and nvl.gpu_key == "H100 NVL"  # the longest match wins
    other = sheet.rate("Tesla T4", late)
    assert other is not None and other.gpu_key == "default"
    early = sheet.rate("Custom Hopper board", late - 1)
    assert early is not None and early.micro_per_hour == 1_234_500  # back-filled version, `match`
    assert sheet.boundaries(late - 10, late + 10) == [late]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("this is not toml", "not valid TOML"),
        ("name = 'x'", "version: Field required"),
        ("[[version]]\neffective = '2026-01-01'\n", "gpu"),
        (
            "[[version]]\neffective = 'soon'\n[version.gpu.H100]\non_demand_usd_per_gpu_hour = 1\n",
            "effective",
        ),
        (
            "[[version]]\neffective = '2026-01-01'\n[version.gpu.H100]\ntier = 'spot'\n",
            "spot_usd_per_gpu_hour",
        ),
        (
            "[[version]]\neffective = '2026-01-01'\n[version.gpu.H100]\npricing = 'on_prem'\n",
            "capex_usd_per_gpu",
        ),
        (
            "[[version]]\neffective = '2026-01-01'\n[version.gpu.H100]\non_demand_usd_per_gpu_hour = -2\n",
            "greater than or equal to 0",
        ),
        (
            "[[version]]\neffective = '2026-01-01'\npue = 0.5\n[version.gpu.H100]\non_demand_usd_per_gpu_hour = 2\n",
            "pue",
        ),
        (
            "[[version]]\neffective = '2026-01-01'\n[version.gpu.H100]\non_demand_usd_per_gpu_hour = 'cheap'\n",
            "on_demand_usd_per_gpu_hour",
        ),
        (
            "[[version]]\neffective = '2026-01-01'\n[version.gpu.H100]\non_demand_usd_per_gpu_hour = 2\nprise = 1\n",
            "prise",
        ),
        (
            "currency = 'EUR'\n[[version]]\neffective = '2026-01-01'\n[version.gpu.H100]\non_demand_usd_per_gpu_hour = 2\n",
            "currency",
        ),
        (
            "[[version]]\neffective = '2026-01-01'\n[version.gpu.H100]\non_demand_usd_per_gpu_hour = 2\n"
            "[[version]]\neffective = '2026-01-01T00:00:00Z'\n[version.gpu.H100]\non_demand_usd_per_gpu_hour = 3\n",
            "same effective date",
        ),
    ],
)
def test_bad_sheets_say_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(PriceSheetError, match="price sheet") as e:
        PriceSheet.from_toml(text, "bad.toml")
    assert needle in str(e.value)


def test_files_missing_oversized_or_binary(tmp_path: Path) -> None:
    with pytest.raises(PriceSheetError, match="does not exist"):
        PriceSheet.load(tmp_path / "nope.toml")
    big = tmp_path / "big.toml"
    big.write_text(DEFAULT_SHEET_TOML + "#" * 1_100_000)
    with pytest.raises(PriceSheetError, match="larger than 1 MB"):
        PriceSheet.load(big)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PriceSheetError, match="cannot be read"):
        PriceSheet.load(binary)
    with pytest.raises(PriceSheetError, match="cannot be read"):
        PriceSheet.load(tmp_path)


@settings(max_examples=120, deadline=None)
@given(st.text(max_size=400))
def test_hostile_text_only_ever_raises_price_sheet_error(text: str) -> None:
    with contextlib.suppress(PriceSheetError):
        PriceSheet.from_toml(text)


_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
_tree = st.recursive(
    _leaf,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)


@settings(max_examples=120, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "version": st.lists(
                st.dictionaries(st.sampled_from(["effective", "gpu", "pue", "x"]), _tree), max_size=3
            )
        }
    )
)
def test_half_valid_structures_only_ever_raise_price_sheet_error(doc: dict[str, object]) -> None:
    with contextlib.suppress(PriceSheetError):
        PriceSheet.from_dict(doc)
