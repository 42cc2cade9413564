"""Baselines, anomalies, change points and KPIs: the "understand" layer's numbers."""

from sightglass.analytics.anomaly import Anomaly, AnomalyConfig, AnomalyReport, FactoryAnomalyDetector
from sightglass.analytics.baseline import BaselineConfig, BaselineScores, RobustBaseline
from sightglass.analytics.changepoint import ChangePoint, ChangePointConfig, CusumDetector
from sightglass.analytics.kpi import KpiComputer, KpiConfig
from sightglass.analytics.peers import PeerConfig, peer_zscores
from sightglass.analytics.runner import AnomalyRunner
from sightglass.analytics.signals import SignalConfig, SignalFrame, load_signals

__all__ = [
    "Anomaly",
    "AnomalyConfig",
    "AnomalyReport",
    "AnomalyRunner",
    "BaselineConfig",
    "BaselineScores",
    "ChangePoint",
    "ChangePointConfig",
    "CusumDetector",
    "FactoryAnomalyDetector",
    "KpiComputer",
    "KpiConfig",
    "PeerConfig",
    "RobustBaseline",
    "SignalConfig",
    "SignalFrame",
    "load_signals",
    "peer_zscores",
]
