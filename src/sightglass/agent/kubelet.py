"""Kubernetes attribution through the kubelet's pod-resources API (which pod holds which GPU).

The kubelet serves ``v1.PodResourcesLister/List`` over gRPC on a unix socket
(``/var/lib/kubelet/pod-resources/kubelet.sock``; mount it into the agent's pod). The answer lists,
per pod and container, the device ids each device plugin assigned: GPU UUIDs for
``nvidia.com/gpu`` (or MIG UUIDs, or indexes with the plugin's ``device-name`` id type,
NVIDIA/dcgm-exporter#85/#342). The messages are built here from the v1 API's field numbers
(``k8s.io/kubelet/pkg/apis/podresources/v1/api.proto``), so only the transport needs ``grpcio``
(optional: without it the agent says so, and Kubernetes attribution falls back to cgroups).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from sightglass.agent.collection import Collection
from sightglass.agent.nvml import GpuInfo
from sightglass.ingest.protowire import MESSAGE, REPEATED, STRING, add_message
from sightglass.model import Relation

LIST_METHOD = "/v1.PodResourcesLister/List"
_F = descriptor_pb2.FieldDescriptorProto
INT64 = _F.TYPE_INT64


class KubeletUnavailable(Exception):
    """The pod-resources socket cannot be asked (absent, no permission, no grpcio); one line why."""


def _classes() -> dict[str, type[Message]]:
    pool = descriptor_pool.DescriptorPool()
    f = descriptor_pb2.FileDescriptorProto(
        name="sightglass/podresources_v1.proto", package="v1", syntax="proto3"
    )
    add_message(f, "ListPodResourcesRequest", [])
    add_message(f, "NUMANode", [("ID", 1, INT64, None, None, None)])
    add_message(f, "TopologyInfo", [("nodes", 1, MESSAGE, REPEATED, ".v1.NUMANode", None)])
    add_message(
        f,
        "ContainerDevices",
        [
            ("resource_name", 1, STRING, None, None, None),
            ("device_ids", 2, STRING, REPEATED, None, None),
            ("topology", 3, MESSAGE, None, ".v1.TopologyInfo", None),
        ],
    )
    add_message(
        f,
        "ContainerResources",
        [
            ("name", 1, STRING, None, None, None),
            ("devices", 2, MESSAGE, REPEATED, ".v1.ContainerDevices", None),
            ("cpu_ids", 3, INT64, REPEATED, None, None),
        ],
    )
    add_message(
        f,
        "PodResources",
        [
            ("name", 1, STRING, None, None, None),
            ("namespace", 2, STRING, None, None, None),
            ("containers", 3, MESSAGE, REPEATED, ".v1.ContainerResources", None),
        ],
    )
    add_message(
        f, "ListPodResourcesResponse", [("pod_resources", 1, MESSAGE, REPEATED, ".v1.PodResources", None)]
    )
    pool.Add(f)
    names = (
        "ListPodResourcesRequest",
        "ListPodResourcesResponse",
        "PodResources",
        "ContainerResources",
        "ContainerDevices",
    )
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"v1.{n}")) for n in names}


MESSAGES = _classes()


@dataclass(frozen=True, slots=True)
class PodDevice:
    namespace: str
    pod: str
    container: str
    resource: str
    device_id: str


def parse_list_response(body: bytes) -> list[PodDevice]:
    """Decode a serialized ``ListPodResourcesResponse``; raises ValueError when it is not one."""
    msg: Any = MESSAGES["ListPodResourcesResponse"]()
    try:
        msg.ParseFromString(body)
    except DecodeError as e:
        raise ValueError(f"not a ListPodResourcesResponse: {e}") from None
    out = []
    for p in msg.pod_resources:
        for c in p.containers:
            for d in c.devices:
                for dev in d.device_ids:
                    out.append(PodDevice(p.namespace, p.name, c.name, d.resource_name, dev))
    return out


def encode_list_response(devices: list[PodDevice]) -> bytes:
    """The inverse of :func:`parse_list_response` (tests, and the recorded-response tool)."""
    msg: Any = MESSAGES["ListPodResourcesResponse"]()
    pods: dict[tuple[str, str], Any] = {}
    for d in devices:
        p = pods.get((d.namespace, d.pod))
        if p is None:
            p = pods[(d.namespace, d.pod)] = msg.pod_resources.add(name=d.pod, namespace=d.namespace)
        c = next((c for c in p.containers if c.name == d.container), None) or p.containers.add(
            name=d.container
        )
        cd = next((x for x in c.devices if x.resource_name == d.resource), None) or c.devices.add(
            resource_name=d.resource
        )
        cd.device_ids.append(d.device_id)
    return bytes(msg.SerializeToString())


class PodResourcesSource(Protocol):
    def list_devices(self) -> list[PodDevice]: ...


class GrpcPodResources:
    """The kubelet's socket, asked with ``grpcio`` (optional dependency)."""

    def __init__(self, socket_path: str, timeout_s: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        if not Path(socket_path).exists():
            raise KubeletUnavailable(
                f"no kubelet pod-resources socket at {socket_path} (mount /var/lib/kubelet/pod-resources)"
            )
        try:
            import grpc
        except ImportError:
            raise KubeletUnavailable(
                "grpcio is not installed (pip install grpcio) to ask the kubelet pod-resources socket"
            ) from None
        self._channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._list = self._channel.unary_unary(
            LIST_METHOD,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=lambda b: b,
        )

    def list_devices(self) -> list[PodDevice]:
        try:
            body = self._list(MESSAGES["ListPodResourcesRequest"](), timeout=self.timeout_s)
        except Exception as e:  # grpc.RpcError and transport failures
            raise KubeletUnavailable(f"kubelet pod-resources List failed: {e}") from None
        return parse_list_response(bytes(body))


class KubernetesCollector:
    """Pods holding GPUs, as a join series and ``pod-uses-gpu`` intervals; also labels GPU series."""

    name = "kubernetes"

    def __init__(
        self,
        source: PodResourcesSource,
        hostname: str,
        *,
        hostname_label: str = "Hostname",
        resource_prefixes: tuple[str, ...] = ("nvidia.com/",),
    ) -> None:
        self.source = source
        self.hostname = hostname
        self.hostname_label = hostname_label
        self.prefixes = resource_prefixes
        self.devices: list[PodDevice] = []
        self._open: dict[tuple[str, str, str], int] = {}

    def collect(self, out: Collection) -> None:
        self.devices = [d for d in self.source.list_devices() if d.resource.startswith(self.prefixes)]
        now: dict[tuple[str, str, str], int] = {}
        for d in self.devices:
            key = (d.namespace, d.pod, d.device_id)
            now[key] = self._open.get(key, out.ts_ms)
            if key not in self._open:
                out.relations.append(
                    Relation(
                        f"pod:{d.namespace}/{d.pod}",
                        "pod-uses-gpu",
                        _gpu_ref(d.device_id, self.hostname),
                        out.ts_ms,
                    )
                )
            out.add(
                "sightglass_k8s_pod_gpu",
                {
                    self.hostname_label: self.hostname,
                    "namespace": d.namespace,
                    "pod": d.pod,
                    "container": d.container,
                    "resource": d.resource,
                    "device_id": d.device_id,
                },
                1,
                help="1 while the kubelet has assigned this device to the pod's container (pod-resources API).",
            )
        for key, start in self._open.items():
            if key not in now:
                ns, pod, dev = key
                out.relations.append(
                    Relation(
                        f"pod:{ns}/{pod}", "pod-uses-gpu", _gpu_ref(dev, self.hostname), start, out.ts_ms
                    )
                )
        self._open = now

    def owner(self, info: GpuInfo) -> Mapping[str, str]:
        """dcgm-exporter's ``pod``/``namespace``/``container`` for a GPU held by exactly one container."""
        ids = {
            info.uuid,
            str(info.index),
            f"nvidia{info.minor_number if info.minor_number is not None else info.index}",
        }
        holders = {(d.namespace, d.pod, d.container) for d in self.devices if d.device_id in ids}
        if len(holders) != 1:
            return {}  # free, or shared (time-slicing): never copy one pod's name onto a shared GPU
        ns, pod, container = holders.pop()
        return {"namespace": ns, "pod": pod, "container": container}


def _gpu_ref(device_id: str, host: str) -> str:
    return f"gpu:{device_id}" if device_id.startswith(("GPU-", "MIG-")) else f"gpu:{host}/{device_id}"
