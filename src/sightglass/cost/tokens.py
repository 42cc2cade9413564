"""The self-hosted cost of a million tokens: GPU cost of a model's replicas / the engine's token counters.

Tokens are the increase of ``vllm:prompt_tokens_total`` (input) and ``vllm:generation_tokens_total``
(output) over the window (SGLang's ``sglang:*_tokens_total`` too), per ``model_name``; counter resets
are followed. The cost is the ledger's used + idle-held cost of every workload serving the model
(``model-served-by-pod``): what the replicas cost, busy or not.

Input and output tokens share one GPU: the split gives an output token ``output_token_weight`` times the
GPU time of an input token (default 4, an assumption the answer names: decode is memory-bound, prefill
batches a prompt in one pass). The blended ``total`` figure needs no assumption.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from sightglass.cost.ledger import Ledger
from sightglass.cost.report import _usd
from sightglass.model import Matcher

COUNTERS = {
    "vllm:prompt_tokens_total": "input",
    "vllm:generation_tokens_total": "output",
    "sglang:prompt_tokens_total": "input",
    "sglang:generation_tokens_total": "output",
}


def counter_increase(ts: np.ndarray, v: np.ndarray, start_ms: int) -> float:
    """Increase after ``start_ms``: from the last sample at or before it (else the first), resets followed."""
    if not len(v):
        return 0.0
    before = np.flatnonzero(ts <= start_ms)
    i0 = int(before[-1]) if len(before) else 0
    seg = v[i0:]
    if len(seg) < 2:
        return 0.0
    d = np.diff(seg)
    return float(np.where(d < 0, seg[1:], d).sum())


def token_counts(
    store: Any, start_ms: int, end_ms: int, lookback_ms: int = 300_000, *, by_host: bool = False
) -> dict[str, dict[str, float]]:
    """``model_name`` -> {"input": n, "output": n} over ``[start_ms, end_ms]`` (``by_host``: keyed
    ``model_name|host`` with the engine's ``instance`` host)."""
    out: dict[str, dict[str, float]] = {}
    names = "|".join(COUNTERS)
    for sd in store.select([Matcher("__name__", "=~", names)], start_ms - lookback_ms, end_ms):
        lab = sd.key.label_dict()
        model = lab.get("model_name") or lab.get("model")
        if not model:
            continue
        ok = ~sd.stale
        inc = counter_increase(sd.ts_ms[ok], sd.values[ok], start_ms)
        if by_host:
            model = f"{model}|{lab.get('instance', '').rsplit(':', 1)[0]}"
        per = out.setdefault(model, {"input": 0.0, "output": 0.0})
        per[COUNTERS[sd.key.metric]] += inc
    return out


@dataclass(slots=True)
class ModelCost:
    model: str  # the model, or "service/model" in per-service rows
    cost_micro: int
    energy_j: Fraction
    input_tokens: float
    output_tokens: float
    replicas: int
    services: list[str]
    weight: float

    def split(self) -> tuple[float, float]:
        """Micro-dollars for input and output tokens (by the GPU-time weight)."""
        wi, wo = self.input_tokens, self.output_tokens * self.weight
        if wi + wo <= 0:
            return 0.0, 0.0
        return self.cost_micro * wi / (wi + wo), self.cost_micro * wo / (wi + wo)

    def to_dict(self) -> dict[str, Any]:
        ci, co = self.split()
        total = self.input_tokens + self.output_tokens
        kwh = float(self.energy_j) / 3.6e6

        def per_m(micro: float, n: float) -> float | None:
            return round(micro / n, 6) if n > 0 else None  # micro-dollars per token == $ per 1M tokens

        return {
            "model": self.model,
            "cost_usd": _usd(self.cost_micro),
            "input_tokens": round(self.input_tokens),
            "output_tokens": round(self.output_tokens),
            "cost_per_1m_input_tokens_usd": per_m(ci, self.input_tokens),
            "cost_per_1m_output_tokens_usd": per_m(co, self.output_tokens),
            "cost_per_1m_tokens_usd": per_m(self.cost_micro, total),
            "energy_kwh": round(kwh, 6),
            "tokens_per_kwh": round(total / kwh, 1) if kwh > 0 else None,
            "output_tokens_per_kwh": round(self.output_tokens / kwh, 1) if kwh > 0 else None,
            "replicas": self.replicas,
            "services": self.services,
            "split": f"output token = {self.weight:g} x input token GPU time (assumed; total needs none)",
        }


def model_costs(ledger: Ledger, tokens: dict[str, dict[str, float]], weight: float = 4.0) -> list[ModelCost]:
    cost: dict[str, int] = {}
    energy: dict[str, Fraction] = {}
    replicas: dict[str, set[str]] = {}
    services: dict[str, set[str]] = {}
    for ln in ledger.lines:
        w = ln.workload
        if w is None or not w.model:
            continue
        cost[w.model] = cost.get(w.model, 0) + ln.micro
        energy[w.model] = energy.get(w.model, Fraction(0)) + ln.energy_j
        replicas.setdefault(w.model, set()).add(w.id)
        if w.service:
            services.setdefault(w.model, set()).add(w.service)
    out = []
    for m in sorted(set(cost) | set(tokens)):
        t = tokens.get(m, {})
        out.append(
            ModelCost(
                m,
                cost.get(m, 0),
                energy.get(m, Fraction(0)),
                t.get("input", 0.0),
                t.get("output", 0.0),
                len(replicas.get(m, ())),
                sorted(services.get(m, ())),
                weight,
            )
        )
    return out


def service_costs(
    ledger: Ledger, tokens_by_host: dict[str, dict[str, float]], weight: float = 4.0
) -> list[ModelCost]:
    """Per (service, model): the cost of the service's replicas and the tokens of the engines on their
    nodes (an engine's ``instance`` host → the service's pods there; shared hosts split equally)."""
    cost: dict[tuple[str, str], int] = {}
    energy: dict[tuple[str, str], Fraction] = {}
    replicas: dict[tuple[str, str], set[str]] = {}
    on_host: dict[tuple[str, str], set[str]] = {}  # (model, host) -> services
    for ln in ledger.lines:
        w = ln.workload
        if w is None or not w.model:
            continue
        k = (w.service or w.id, w.model)
        cost[k] = cost.get(k, 0) + ln.micro
        energy[k] = energy.get(k, Fraction(0)) + ln.energy_j
        replicas.setdefault(k, set()).add(w.id)
        on_host.setdefault((w.model, ln.node.removeprefix("node:")), set()).add(k[0])
    toks: dict[tuple[str, str], dict[str, float]] = {}
    for key, t in tokens_by_host.items():
        model, _, host = key.rpartition("|")
        svcs = sorted(on_host.get((model, host), ())) or [""]
        for svc in svcs:
            acc = toks.setdefault((svc, model), {"input": 0.0, "output": 0.0})
            for d in ("input", "output"):
                acc[d] += t.get(d, 0.0) / len(svcs)
    out = []
    for svc, model in sorted(set(cost) | set(toks)):
        t = toks.get((svc, model), {})
        out.append(
            ModelCost(
                f"{svc or '(no service)'}/{model}",
                cost.get((svc, model), 0),
                energy.get((svc, model), Fraction(0)),
                t.get("input", 0.0),
                t.get("output", 0.0),
                len(replicas.get((svc, model), ())),
                [svc] if svc else [],
                weight,
            )
        )
    return out
