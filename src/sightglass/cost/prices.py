"""Price sheets: versioned TOML with effective dates, one rate per GPU model and pricing basis.

A sheet has one or more ``[[version]]`` tables; each applies from its ``effective`` instant until the
next one's (so a later-dated version back-fills nothing and an earlier-dated one back-fills history).
Within a version every GPU model is priced either

- ``pricing = "cloud"``: ``on_demand`` / ``reserved`` / ``spot`` $/GPU-hour, ``tier`` picks one;
  energy is in the rate (``energy_included = true``), kWh and CO2e are still metered; or
- ``pricing = "on_prem"``: straight-line amortisation ``capex_usd_per_gpu x (1 - residual_ratio) /
  (years x 8760 h)``, plus metered energy at ``energy_usd_per_kwh x pue``;

plus ``overhead_ratio`` (a multiplier on the GPU rate: support, network, storage share) and
``overhead_usd_per_gpu_hour``. Money is exact: rates are :class:`fractions.Fraction` of micro-dollars
(the ledger rounds once per GPU, never per sample).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

HOURS_PER_YEAR = 8760
MICRO = 1_000_000
MS_PER_HOUR = 3_600_000
J_PER_KWH = 3_600_000


class PriceSheetError(ValueError):
    """A price sheet is missing, not TOML, or has a bad setting (the message names it)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpuPrice(_Strict):
    """How one GPU model is priced in one version."""

    pricing: Literal["cloud", "on_prem"] = "cloud"
    tier: Literal["on_demand", "reserved", "spot"] = "on_demand"
    on_demand_usd_per_gpu_hour: Decimal | None = Field(default=None, ge=0)
    reserved_usd_per_gpu_hour: Decimal | None = Field(default=None, ge=0)
    spot_usd_per_gpu_hour: Decimal | None = Field(default=None, ge=0)
    energy_included: bool | None = None  # default: True for cloud, False on-prem
    capex_usd_per_gpu: Decimal | None = Field(default=None, ge=0)
    years: Decimal | None = Field(default=None, gt=0)
    residual_ratio: Decimal = Field(default=Decimal(0), ge=0, le=1)
    assumed_power_watts: Decimal | None = Field(default=None, ge=0)  # when no energy counter
    benchmark_usd_per_gpu_hour: Decimal | None = Field(default=None, ge=0)  # reference cloud price (ROI)
    match: list[str] = Field(default_factory=list)  # substrings of DCGM modelName (default: the key)

    @model_validator(mode="after")
    def _complete(self) -> GpuPrice:
        if self.pricing == "cloud":
            if getattr(self, f"{self.tier}_usd_per_gpu_hour") is None:
                raise ValueError(f'tier = "{self.tier}" needs {self.tier}_usd_per_gpu_hour')
        else:
            if self.capex_usd_per_gpu is None or self.years is None:
                raise ValueError('pricing = "on_prem" needs capex_usd_per_gpu and years')
        return self

    @property
    def energy_in_rate(self) -> bool:
        return self.energy_included if self.energy_included is not None else self.pricing == "cloud"

    def base_usd_per_hour(self) -> Fraction:
        """Exact: a Decimal division would round (capex / (years x 8760) rarely terminates)."""
        if self.pricing == "cloud":
            v = getattr(self, f"{self.tier}_usd_per_gpu_hour")
            assert v is not None
            return Fraction(v)
        assert self.capex_usd_per_gpu is not None and self.years is not None
        return (
            Fraction(self.capex_usd_per_gpu)
            * (1 - Fraction(self.residual_ratio))
            / (Fraction(self.years) * HOURS_PER_YEAR)
        )


class PriceVersion(_Strict):
    effective: str
    basis: str = ""
    energy_usd_per_kwh: Decimal = Field(default=Decimal("0.08"), ge=0)
    pue: Decimal = Field(default=Decimal("1.3"), ge=1, le=5)
    carbon_kg_per_kwh: Decimal = Field(default=Decimal("0.445"), ge=0, le=5)
    overhead_ratio: Decimal = Field(default=Decimal(0), ge=0, le=10)
    overhead_usd_per_gpu_hour: Decimal = Field(default=Decimal(0), ge=0)
    gpu: dict[str, GpuPrice] = Field(min_length=1)

    @field_validator("effective")
    @classmethod
    def _effective(cls, v: str) -> str:
        _parse_instant(v)
        return v

    @property
    def effective_ms(self) -> int:
        return _parse_instant(self.effective)


class PriceSheetModel(_Strict):
    schema_: int = Field(default=1, alias="schema")
    name: str = "price sheet"
    currency: Literal["USD"] = "USD"
    version: list[PriceVersion] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> PriceSheetModel:
        seen = [v.effective_ms for v in self.version]
        if len(set(seen)) != len(seen):
            raise ValueError("two versions have the same effective date")
        return self


def _parse_instant(v: str | dt.datetime | dt.date) -> int:
    if isinstance(v, dt.datetime):
        d = v if v.tzinfo else v.replace(tzinfo=dt.UTC)
        return round(d.timestamp() * 1000)
    if isinstance(v, dt.date):
        return round(dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC).timestamp() * 1000)
    try:
        d = dt.datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"effective must be an RFC 3339 date or time, got {v!r}") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return round(d.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Rate:
    """What one GPU-hour of one model costs under one version, in exact micro-dollars."""

    version: int  # index into the sheet's versions
    gpu_key: str  # the sheet's key ("H100"); "" when unpriced
    micro_per_hour: Fraction  # GPU rate incl. overheads
    energy_micro_per_joule: Fraction  # 0 when energy is in the rate
    assumed_power_watts: Fraction | None
    carbon_g_per_joule: Fraction  # facility energy (x PUE) x intensity
    pue: Fraction


class PriceSheet:
    """A validated sheet; :meth:`rate` answers "what does model M cost at instant t"."""

    def __init__(self, model: PriceSheetModel, source: str = "") -> None:
        self.model = model
        self.source = source
        self.versions = sorted(model.version, key=lambda v: v.effective_ms)
        self._cache: dict[tuple[int, str], Rate | None] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> PriceSheet:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise PriceSheetError(f"price sheet {source} is not valid TOML: {e}") from None
        return cls.from_dict(raw, source)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> PriceSheet:
        raw = _stringify_dates(raw)
        try:
            return cls(PriceSheetModel.model_validate(raw), source)
        except ValidationError as e:
            lines = []
            for err in e.errors():
                loc = ".".join(str(x) for x in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                lines.append(f"  {loc or '(top level)'}: {msg}")
            raise PriceSheetError(f"invalid price sheet {source}:\n" + "\n".join(lines)) from None

    @classmethod
    def load(cls, path: str | Path) -> PriceSheet:
        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise PriceSheetError(f"price sheet {p} does not exist") from None
        except (IsADirectoryError, UnicodeDecodeError) as e:
            raise PriceSheetError(f"price sheet {p} cannot be read: {e}") from None
        if len(text) > 1_000_000:
            raise PriceSheetError(f"price sheet {p} is larger than 1 MB")
        return cls.from_toml(text, str(p))

    @classmethod
    def default(cls) -> PriceSheet:
        return cls.from_toml(DEFAULT_SHEET_TOML, "built-in defaults (docs/calibration.md §E)")

    # ------------------------------------------------------------------ lookup
    def boundaries(self, start_ms: int, end_ms: int) -> list[int]:
        """Instants inside ``(start_ms, end_ms)`` where the active version changes."""
        return [v.effective_ms for v in self.versions if start_ms < v.effective_ms < end_ms]

    def version_at(self, ts_ms: int) -> int | None:
        idx = None
        for i, v in enumerate(self.versions):
            if v.effective_ms <= ts_ms:
                idx = i
        return idx

    def match_key(self, version: PriceVersion, model_name: str) -> str | None:
        """The sheet key for a DCGM ``modelName`` (longest matching key or ``match`` pattern)."""
        name = model_name.lower()
        best: tuple[int, str] | None = None
        for key, price in version.gpu.items():
            pats = [key, *price.match]
            for p in pats:
                hit = p.lower() == name or (key != "default" and p.lower() in name)
                if hit and (best is None or len(p) > best[0]):
                    best = (len(p), key)
        if best is None and "default" in version.gpu:
            return "default"
        return best[1] if best else None

    def rate(self, model_name: str, ts_ms: int) -> Rate | None:
        """The rate of ``model_name`` at ``ts_ms``; None when no version applies or no key matches."""
        vi = self.version_at(ts_ms)
        if vi is None:
            return None
        ck = (vi, model_name)
        if ck in self._cache:
            return self._cache[ck]
        v = self.versions[vi]
        key = self.match_key(v, model_name)
        r: Rate | None = None
        if key is not None:
            g = v.gpu[key]
            base = _gpu_rate(v, g)
            pue = Fraction(v.pue)
            energy = (
                Fraction(0) if g.energy_in_rate else Fraction(v.energy_usd_per_kwh) * MICRO * pue / J_PER_KWH
            )
            r = Rate(
                version=vi,
                gpu_key=key,
                micro_per_hour=base * MICRO,
                energy_micro_per_joule=energy,
                assumed_power_watts=Fraction(g.assumed_power_watts) if g.assumed_power_watts else None,
                carbon_g_per_joule=Fraction(v.carbon_kg_per_kwh) * 1000 * pue / J_PER_KWH,
                pue=pue,
            )
        self._cache[ck] = r
        return r

    def benchmark_micro_per_hour(self, gpu_key: str, ts_ms: int) -> Fraction | None:
        """The reference cloud price of a GPU-hour (``benchmark_usd_per_gpu_hour``) at ``ts_ms``."""
        vi = self.version_at(ts_ms)
        if vi is None or gpu_key not in self.versions[vi].gpu:
            return None
        b = self.versions[vi].gpu[gpu_key].benchmark_usd_per_gpu_hour
        return Fraction(b) * MICRO if b is not None else None

    def to_dict(self) -> dict[str, Any]:
        out = self.model.model_dump(mode="json", by_alias=True, exclude_defaults=False)
        out["source"] = self.source
        for v, vm in zip(out["version"], self.model.version, strict=True):
            v["gpu_usd_per_hour"] = {k: _six(_gpu_rate(vm, g)) for k, g in vm.gpu.items()}
        return out


def _gpu_rate(v: PriceVersion, g: GpuPrice) -> Fraction:
    """$/GPU-hour of one model in one version, overheads included (exact)."""
    return g.base_usd_per_hour() * (1 + Fraction(v.overhead_ratio)) + Fraction(v.overhead_usd_per_gpu_hour)


def _six(x: Fraction) -> str:
    micro = int((x * MICRO + Fraction(1, 2)) // 1)
    return f"{micro // MICRO}.{micro % MICRO:06d}"


def _stringify_dates(raw: dict[str, Any]) -> dict[str, Any]:
    """TOML has native dates; the model keeps ``effective`` as text."""
    out = dict(raw)
    versions = out.get("version")
    if isinstance(versions, list):
        fixed = []
        for v in versions:
            if isinstance(v, dict) and isinstance(v.get("effective"), dt.date | dt.datetime):
                v = {**v, "effective": v["effective"].isoformat()}
            fixed.append(v)
        out["version"] = fixed
    return out


# Defaults from docs/calibration.md §E (state the basis and the date in the product). The cloud rates
# match the simulator's price sheet (src/sightglass/simulate/topology.py PRICE_SHEET), so a simulated
# factory is costed like the factory.json it writes.
DEFAULT_SHEET_TOML = """\
schema = 1
name = "sightglass-defaults"
currency = "USD"

[[version]]
effective = "2025-06-01T00:00:00Z"
basis = "docs/calibration.md §E: neocloud on-demand H100 $2.49 (Lambda, 2026), A100 80 GB $1.50 (specialty range 1.10-1.50), reserved 1-yr H100 $1.79 (CoreWeave), L40S AWS g6e $1.861 / spot $1.10 / 1-yr RI $1.13, H200 specialty mid $4.00; ROI benchmarks: AWS p5 on-demand after the June 2025 cut $6.88/H100-h, p5e capacity block $5.41/H200-h, GCP a2 80 GB $5.07/A100-h; US industrial power $0.08/kWh, PUE 1.3 (new large sites), IEA world grid 0.445 kg CO2e/kWh"
energy_usd_per_kwh = 0.08
pue = 1.3
carbon_kg_per_kwh = 0.445
overhead_ratio = 0.0
overhead_usd_per_gpu_hour = 0.0

[version.gpu.H100]
pricing = "cloud"
tier = "on_demand"
on_demand_usd_per_gpu_hour = 2.49
reserved_usd_per_gpu_hour = 1.79
assumed_power_watts = 500
benchmark_usd_per_gpu_hour = 6.88

[version.gpu.H200]
pricing = "cloud"
on_demand_usd_per_gpu_hour = 4.00
reserved_usd_per_gpu_hour = 2.80
assumed_power_watts = 550
benchmark_usd_per_gpu_hour = 5.41

[version.gpu.A100]
pricing = "cloud"
on_demand_usd_per_gpu_hour = 1.50
reserved_usd_per_gpu_hour = 1.05
assumed_power_watts = 250
benchmark_usd_per_gpu_hour = 5.07

[version.gpu.L40S]
pricing = "cloud"
on_demand_usd_per_gpu_hour = 1.861
reserved_usd_per_gpu_hour = 1.13
spot_usd_per_gpu_hour = 1.10
assumed_power_watts = 250
"""

# An on-prem alternative (docs/cost.md): $240k DGX H100 + 20 % fabric/storage share = $36k per GPU,
# 5 years straight-line, no residual -> $0.82/GPU-h; energy metered at $0.08/kWh x PUE 1.3.
ON_PREM_EXAMPLE_TOML = """\
schema = 1
name = "on-prem-example"

[[version]]
effective = "2025-01-01"
basis = "docs/calibration.md §E derived defaults: $288k node / 8 GPUs over 5 yr"
energy_usd_per_kwh = 0.08
pue = 1.3
carbon_kg_per_kwh = 0.445

[version.gpu.H100]
pricing = "on_prem"
capex_usd_per_gpu = 36000
years = 5
residual_ratio = 0
assumed_power_watts = 500

[version.gpu.A100]
pricing = "on_prem"
capex_usd_per_gpu = 19700
years = 5
assumed_power_watts = 250
"""
