"""A curated table of NVIDIA XID errors: what each means and what to do (NVIDIA's XID catalogue).

Only the XIDs an operator of a GPU cluster meets in practice; an unknown XID is still reported,
with severity ``warning`` and no advice.
"""

from __future__ import annotations

from typing import NamedTuple


class XidInfo(NamedTuple):
    message: str
    severity: str
    action: str


XIDS: dict[int, XidInfo] = {
    13: XidInfo(
        "Graphics Engine Exception",
        "warning",
        "usually the application (illegal address); rerun, check the code",
    ),
    31: XidInfo(
        "GPU memory page fault", "warning", "usually the application; check for out-of-bounds accesses"
    ),
    32: XidInfo("Invalid or corrupted push buffer stream", "warning", "check PCIe health and the driver"),
    43: XidInfo("GPU stopped processing", "warning", "the application hit a fault; restart it"),
    45: XidInfo(
        "Preemptive cleanup, due to previous errors", "info", "follows another XID; look at the one before"
    ),
    48: XidInfo("Double Bit ECC Error", "critical", "drain the node; reset the GPU; RMA if it repeats"),
    61: XidInfo(
        "Internal micro-controller breakpoint/warning",
        "critical",
        "reset the GPU; report to NVIDIA if it repeats",
    ),
    62: XidInfo(
        "Internal micro-controller halt", "critical", "reset the GPU; report to NVIDIA if it repeats"
    ),
    63: XidInfo(
        "ECC page retirement or row remapping recording event",
        "warning",
        "schedule a GPU reset to apply the remap",
    ),
    64: XidInfo(
        "ECC page retirement or row remapper recording failure", "critical", "drain the node; RMA candidate"
    ),
    68: XidInfo("NVDEC0 Exception", "warning", "video decoder fault; restart the application"),
    74: XidInfo("NVLink Error", "critical", "check NVLink state and error counters; reset; reseat or RMA"),
    79: XidInfo(
        "GPU has fallen off the bus", "critical", "drain the node; check power, PCIe and thermals; reboot"
    ),
    92: XidInfo("High single-bit ECC error rate", "warning", "watch the ECC counters; plan a reset"),
    94: XidInfo(
        "Contained ECC error", "critical", "restart the affected applications; reset the GPU when idle"
    ),
    95: XidInfo("Uncontained ECC error", "critical", "drain the node and reset the GPU"),
    119: XidInfo("GSP RPC timeout", "critical", "reset the GPU; update the driver/firmware if it repeats"),
    120: XidInfo("GSP error", "critical", "reset the GPU; update the driver/firmware if it repeats"),
    140: XidInfo("Unrecovered ECC error", "critical", "drain the node and reset the GPU"),
}


def describe(xid: int) -> XidInfo:
    return XIDS.get(xid, XidInfo(f"XID {xid}", "warning", ""))
