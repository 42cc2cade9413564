"""The ``[cost]`` section of the configuration, validated here (docs/cost.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sightglass.config import ConfigError, parse_duration_ms
from sightglass.cost.prices import PriceSheet, PriceSheetError


class CostConfig(BaseModel):
    """``[cost]``: where prices come from and how the server keeps cost KPIs up to date."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    price_sheet: str | None = None  # TOML file; None: the built-in defaults
    interval: str = "5m"  # how often the server folds new data into the cost KPIs
    lag: str = "1m"  # stay this far behind the newest sample (late scrapes)
    retire_after: str = "1h"  # a GPU whose series stopped still costs money this long
    output_token_weight: float = Field(default=4.0, gt=0, le=1000)
    checkpoint_interval: str = "30m"  # assumed, for the work a failed run loses
    rollup_dir: str | None = None  # daily rollups; default <data>/cost/daily

    @field_validator("interval", "lag", "retire_after", "checkpoint_interval")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration_ms(v)
        return v

    def ms(self, name: str) -> int:
        return parse_duration_ms(str(getattr(self, name)))

    def load_prices(self, base: Path | None = None) -> PriceSheet:
        """The sheet ``price_sheet`` names (relative paths also tried next to the config file), else
        the defaults; a bad sheet is a :class:`ConfigError` naming the setting."""
        if not self.price_sheet:
            return PriceSheet.default()
        p = Path(self.price_sheet)
        if not p.is_absolute() and base is not None and not p.exists():
            p = base / p
        try:
            return PriceSheet.load(p)
        except PriceSheetError as e:
            raise ConfigError(f"[cost] price_sheet: {e}") from None


def cost_config(raw: dict[str, Any]) -> CostConfig:
    """Validate ``Config.cost``; errors name the setting (``cost.interval: ...``)."""
    try:
        return CostConfig.model_validate(raw or {})
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"])
            lines.append(f"  cost.{loc}: {err['msg']}")
        raise ConfigError("invalid [cost] configuration:\n" + "\n".join(lines)) from None
