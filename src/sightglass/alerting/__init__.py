"""Alerting: Prometheus rule files evaluated on the store, SLO burn-rate rules, incidents grouped by
cause (topology and RCA), and notifications (Alertmanager, webhooks, Slack). See docs/alerting.md."""
