"""Scale-out: metrics on a Prometheus-compatible TSDB, the catalog on PostgreSQL, stateless replicas."""
