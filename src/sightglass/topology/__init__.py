"""The topology of the factory: entities and time-bounded relations inferred from labels."""

from sightglass.topology.graph import DEPENDS, Edge, Step, Topology
from sightglass.topology.infer import TopologyBuilder, TopologyConfig, build_topology

__all__ = ["DEPENDS", "Edge", "Step", "Topology", "TopologyBuilder", "TopologyConfig", "build_topology"]
