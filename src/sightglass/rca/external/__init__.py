"""RCA on public microservice benchmarks: RCAEval (RE1/RE2/RE3 layout) and Nezha, with BARO beside.

``evaluate_cases(paths, fmt)`` loads the cases, ranks their services with Sightglass's own
service-level method (:mod:`.scoring`, plus :mod:`.multimodal` on Nezha's Train Ticket logs and
traces) and with RCAEval's BARO (:func:`baro_rank`), and returns one dict per case. Needs the
``eval`` extra (pandas; RCAEval for BARO). ``python -m sightglass.rca.external PATH --format nezha``
prints AC@1, AC@3 and Avg@5 per system and method.
"""

from sightglass.rca.external.baro import BaroUnavailable, baro_available, baro_rank
from sightglass.rca.external.cases import Case, CaseError
from sightglass.rca.external.evaluate import FORMATS, accuracy, avg_at, evaluate_cases, rank_of, summarize

__all__ = [
    "FORMATS",
    "BaroUnavailable",
    "Case",
    "CaseError",
    "accuracy",
    "avg_at",
    "baro_available",
    "baro_rank",
    "evaluate_cases",
    "rank_of",
    "summarize",
]
