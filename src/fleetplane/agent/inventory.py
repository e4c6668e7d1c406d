"""What hardware the agent finds on its host, reported in the Site's status."""

from __future__ import annotations

import glob
import os
import platform
from pathlib import Path
from typing import Any


def memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def accelerators() -> list[dict[str, Any]]:
    """Devices visible on the host; no driver calls (the agent must not need the vendor stack)."""
    found: list[dict[str, Any]] = []
    nvidia = sorted(p for p in glob.glob("/dev/nvidia[0-9]*") if p[len("/dev/nvidia"):].isdigit())
    if nvidia:
        found.append({"kind": "gpu", "vendor": "nvidia", "count": len(nvidia)})
    dri = sorted(glob.glob("/dev/dri/renderD*"))
    if dri:
        found.append({"kind": "gpu", "vendor": "dri", "count": len(dri)})
    accel = sorted(glob.glob("/dev/accel/accel*"))
    if accel:
        found.append({"kind": "npu", "vendor": "accel", "count": len(accel)})
    return found


def hardware_inventory() -> dict[str, Any]:
    return {
        "cpu": os.cpu_count() or 0,
        "memory": memory_bytes(),
        "arch": _arch(platform.machine()),
        "accelerators": accelerators(),
    }


def _arch(machine: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
