"""GPU cost, utilisation accounting, cost per token, chargeback (docs/cost.md)."""
