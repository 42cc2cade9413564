"""The Sightglass node agent: collectors for GPUs (NVML), the host, fabric and schedulers, with attribution.

The agent runs on every node. Each cycle it asks its collectors for readings, puts them in one
:class:`~sightglass.model.SampleBatch` (dcgm-exporter and node_exporter names, so dashboards and
the server's analytics read it as if those exporters were scraped), and either pushes it to a
Sightglass server through a bounded on-disk spool (``--server``) or serves it at ``/metrics``
(``--listen``). Events (XID errors, GPUs falling off the bus), configuration snapshots and job → GPU
intervals go to the server's catalog.
"""
