"""Sightglass: self-hosted observability for AI factories."""

from sightglass.config import Config, ConfigError
from sightglass.model import (
    ConfigSnapshot,
    Entity,
    Event,
    LineageEvent,
    LogRecord,
    Matcher,
    MetricMetadata,
    MetricType,
    Relation,
    SampleBatch,
    SeriesData,
    SeriesKey,
    Span,
)

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "ConfigSnapshot",
    "Entity",
    "Event",
    "LineageEvent",
    "LogRecord",
    "Matcher",
    "MetricMetadata",
    "MetricType",
    "Relation",
    "SampleBatch",
    "SeriesData",
    "SeriesKey",
    "Span",
    "__version__",
]
