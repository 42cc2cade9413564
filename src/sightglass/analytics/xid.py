"""A curated XID table: what an NVIDIA XID means, how bad it is and what to do.

Sources: NVIDIA's XID catalog (docs.nvidia.com/deploy/xid-errors, "Analyzing Xid Errors with the Xid
Catalog": mnemonic, description and a *resolution bucket* per code for Ampere and newer) and the
A100/H100 memory-error-management guide; the codes the simulator injects and calibration.md §C.3
names (48, 63, 64, 74, 79, 92, 94, 95, 119, 120) are all here.

Severity is ours, derived from the immediate action NVIDIA recommends:

- ``critical``: the GPU (or node) must be reset, rebooted, drained or serviced before it is trusted
  again (``RESET_GPU``, ``RESTART_BM``, ``CONTACT_SUPPORT``/RMA);
- ``warning``: the application that hit it is affected (``RESTART_APP``) or a recoverable hardware
  condition that needs a reset at the next convenient time;
- ``info``: a consequence of an earlier error or benign (``IGNORE``).

Unknown codes are ``warning`` with action ``check_catalog``: never silently benign.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class XidInfo:
    xid: int
    name: str
    severity: str  # critical | warning | info
    action: str  # restart_app | reset_gpu | reboot_node | drain_and_service | ignore | check_catalog
    layer: str  # application | driver | memory | nvlink | bus | firmware | engine

    def to_dict(self) -> dict[str, object]:
        return {
            "xid": self.xid,
            "name": self.name,
            "severity": self.severity,
            "action": self.action,
            "layer": self.layer,
        }


def _x(xid: int, name: str, severity: str, action: str, layer: str) -> XidInfo:
    return XidInfo(xid, name, severity, action, layer)


XID_TABLE: dict[int, XidInfo] = {
    x.xid: x
    for x in (
        _x(8, "GPU stopped processing (channel idle timeout)", "warning", "restart_app", "driver"),
        _x(13, "Graphics engine exception", "warning", "restart_app", "application"),
        _x(31, "GPU memory page fault", "warning", "restart_app", "application"),
        _x(32, "Invalid or corrupted push buffer stream", "warning", "restart_app", "bus"),
        _x(38, "Driver firmware error", "warning", "restart_app", "firmware"),
        _x(43, "GPU stopped processing (application fault)", "warning", "restart_app", "application"),
        _x(45, "Preemptive cleanup, due to previous errors", "info", "ignore", "driver"),
        _x(46, "GPU stopped processing", "critical", "reset_gpu", "driver"),
        _x(48, "Double-bit ECC error", "critical", "reset_gpu", "memory"),
        _x(56, "Display engine error", "warning", "restart_app", "engine"),
        _x(57, "Error programming video memory interface", "critical", "drain_and_service", "memory"),
        _x(61, "Internal micro-controller breakpoint/warning", "warning", "reset_gpu", "firmware"),
        _x(62, "Internal micro-controller halt", "critical", "reset_gpu", "firmware"),
        _x(63, "ECC page retirement or row remapping recorded", "warning", "reset_gpu", "memory"),
        _x(64, "ECC page retirement or row remapping failure", "critical", "drain_and_service", "memory"),
        _x(68, "Video processor (NVDEC) exception", "warning", "restart_app", "engine"),
        _x(69, "Graphics engine class error", "warning", "restart_app", "engine"),
        _x(74, "NVLink error", "critical", "reset_gpu", "nvlink"),
        _x(79, "GPU has fallen off the bus", "critical", "reboot_node", "bus"),
        _x(92, "High single-bit ECC error rate", "warning", "reset_gpu", "memory"),
        _x(94, "Contained ECC error", "warning", "restart_app", "memory"),
        _x(95, "Uncontained ECC error", "critical", "reset_gpu", "memory"),
        _x(109, "Context switch timeout", "warning", "restart_app", "driver"),
        _x(119, "GSP RPC timeout", "critical", "reset_gpu", "firmware"),
        _x(120, "GSP error", "critical", "reset_gpu", "firmware"),
        _x(121, "C2C link corrected error", "warning", "reset_gpu", "nvlink"),
        _x(140, "Unrecovered ECC error", "critical", "reset_gpu", "memory"),
        _x(154, "GPU recovery action changed", "warning", "check_catalog", "driver"),
    )
}

CRITICAL_XIDS = frozenset(x.xid for x in XID_TABLE.values() if x.severity == "critical")


def xid_info(xid: int) -> XidInfo:
    """The table row for ``xid``; unknown codes are a ``warning`` to look up."""
    found = XID_TABLE.get(int(xid))
    return (
        found
        if found is not None
        else XidInfo(int(xid), "unknown XID", "warning", "check_catalog", "unknown")
    )
