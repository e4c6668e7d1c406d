"""Synthetic fleets of any size, with the structure of real ones, deterministic for a seed.

``generate_fleet(sites, workloads, seed)`` builds regions, each with a
regional cloud hub (opex), edge sites of several kinds linked to their hub
(stores with CPU boxes or Jetsons, GPU servers, NPU and FPGA boxes, MEC
sites), a few on-prem HPC clusters (capex), hubs meshed with each other,
several residency zones, a catalogue of node images, data sources at the
edge and at the hubs, and a mix of workload classes.

Workloads are generated first as *needs*, and capacity follows them: each
edge site grows its CPU pool to hold the latency-bound replicas it must host
and each hub gets enough general and GPU nodes for what its region asks, with
headroom. So nearly every workload is placeable; about 3 % are deliberately
hard (a latency budget close to the service time, a deadline close to the
run time) and carry the label ``difficulty: hard``. Every workload is
labelled ``scope: edge`` (latency-bound to the edge sites of its data) or
``scope: regional``; the generated PlacementPolicy keeps regional services and
batch jobs off the edge capacity that was sized for the edge-bound ones.

Documents are built in human units and validated by the resource models, so
a generated fleet is exactly what the loader would produce from its YAML.
``fleet_documents`` turns a fleet back into compact documents (defaults left
out) and ``render_yaml`` writes them quickly as multi-document YAML.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from fleetplane.errors import Problem, ValidationError
from fleetplane.gc_pause import gc_paused
from fleetplane.model.base import API_VERSION, Resource
from fleetplane.model.fleet import Fleet
from fleetplane.model.kinds import KINDS
from fleetplane.model.units import format_duration

Doc = dict[str, Any]

HARD_FRACTION: Final = 0.03
MAX_REGIONS: Final = 16

# ------------------------------------------------------------------ catalogues


@dataclass(frozen=True)
class _Region:
    name: str
    zone: str
    city: str
    lat: float
    lon: float
    energy_price: float  # local commercial $/kWh, for owned hardware
    price_factor: float  # cloud list prices relative to us-east
    egress: float  # internet egress $/GB out of the cloud


# Interleaved so that small fleets already span several residency zones.
REGIONS: Final = (
    _Region("us-east", "us", "Ashburn", 39.04, -77.49, 0.12, 1.00, 0.09),
    _Region("eu-west", "eu", "Dublin", 53.35, -6.26, 0.28, 1.10, 0.09),
    _Region("ap-northeast", "jp", "Tokyo", 35.68, 139.69, 0.22, 1.25, 0.114),
    _Region("eu-central", "eu", "Frankfurt", 50.11, 8.68, 0.27, 1.12, 0.09),
    _Region("us-west", "us", "Boardman", 45.84, -119.70, 0.11, 1.00, 0.09),
    _Region("ap-southeast", "sg", "Singapore", 1.35, 103.82, 0.20, 1.20, 0.12),
    _Region("uk-south", "uk", "London", 51.51, -0.13, 0.30, 1.12, 0.09),
    _Region("sa-east", "br", "Sao Paulo", -23.55, -46.63, 0.16, 1.50, 0.15),
    _Region("us-central", "us", "Council Bluffs", 41.26, -95.86, 0.10, 1.00, 0.09),
    _Region("ca-central", "ca", "Montreal", 45.50, -73.57, 0.08, 1.08, 0.09),
    _Region("ap-south", "in", "Mumbai", 19.08, 72.88, 0.11, 1.12, 0.109),
    _Region("au-southeast", "au", "Sydney", -33.87, 151.21, 0.25, 1.22, 0.114),
    _Region("eu-north", "eu", "Stockholm", 59.33, 18.07, 0.10, 1.05, 0.09),
    _Region("eu-south", "eu", "Milan", 45.46, 9.19, 0.26, 1.12, 0.09),
    _Region("me-central", "ae", "Dubai", 25.20, 55.27, 0.09, 1.20, 0.11),
    _Region("af-south", "za", "Cape Town", -33.92, 18.42, 0.14, 1.30, 0.154),
)

# us-east list prices per resource; a region multiplies them by price_factor.
CPU_HOUR: Final = 0.034
GIB_HOUR: Final = 0.0045
GPU_HOUR: Final = {"l4": 0.70, "t4": 0.53, "a100-80g": 3.00, "h100-80g": 7.50}
MEC_PREMIUM: Final = 1.4

NODE_IMAGES: Final[tuple[Doc, ...]] = (
    {
        "name": "edge-ubuntu-22.04",
        "os": "Ubuntu 22.04 LTS",
        "runtime": ("containerd", "1.7.12"),
        "drivers": {"openvino": "2024.2"},
        "arches": ["amd64"],
        "accelerators": [],
    },
    {
        "name": "edge-ubuntu-22.04-cuda-12.4",
        "os": "Ubuntu 22.04 LTS",
        "runtime": ("containerd", "1.7.12"),
        "drivers": {"nvidia": "550.54", "cuda": "12.4", "tensorrt": "10.0"},
        "arches": ["amd64"],
        "accelerators": ["l4"],
    },
    {
        "name": "jetpack-6.0",
        "os": "Ubuntu 22.04 (L4T R36.3)",
        "runtime": ("containerd", "1.7.12"),
        "drivers": {"jetpack": "6.0", "cuda": "12.2", "tensorrt": "8.6.2"},
        "arches": ["arm64"],
        "accelerators": ["orin-agx", "orin-nx"],
    },
    {
        "name": "jetpack-5.1",
        "os": "Ubuntu 20.04 (L4T R35.4)",
        "runtime": ("containerd", "1.6.21"),
        "drivers": {"jetpack": "5.1.2", "cuda": "11.4", "tensorrt": "8.5.2"},
        "arches": ["arm64"],
        "accelerators": ["orin-agx", "orin-nx"],
    },
    {
        "name": "edge-ubuntu-22.04-hailort",
        "os": "Ubuntu 22.04 LTS",
        "runtime": ("containerd", "1.7.12"),
        "drivers": {"hailort": "4.18.0"},
        "arches": ["amd64"],
        "accelerators": ["hailo-8"],
    },
    {
        "name": "edge-ubuntu-22.04-xrt",
        "os": "Ubuntu 22.04 LTS",
        "runtime": ("containerd", "1.7.12"),
        "drivers": {"xrt": "2.16.204", "vitis-ai": "3.5"},
        "arches": ["amd64"],
        "accelerators": ["alveo-u50"],
    },
    {
        "name": "cloud-al2023",
        "os": "Amazon Linux 2023",
        "runtime": ("containerd", "1.7.11"),
        "drivers": {"openmpi": "4.1.6"},
        "arches": ["amd64"],
        "accelerators": [],
    },
    {
        "name": "cloud-al2023-cuda-12.4",
        "os": "Amazon Linux 2023",
        "runtime": ("containerd", "1.7.11"),
        "drivers": {"nvidia": "550.90", "cuda": "12.4", "tensorrt": "10.0", "nccl": "2.21"},
        "arches": ["amd64"],
        "accelerators": ["l4", "a100-80g", "h100-80g"],
    },
    {
        "name": "cloud-al2-cuda-11.8",
        "os": "Amazon Linux 2",
        "runtime": ("containerd", "1.6.19"),
        "drivers": {"nvidia": "520.61", "cuda": "11.8", "nccl": "2.16"},
        "arches": ["amd64"],
        "accelerators": ["t4"],
    },
    {
        "name": "hpc-rocky-9-cuda-12.4",
        "os": "Rocky Linux 9.4",
        "runtime": ("apptainer", "1.3.2"),
        "drivers": {"nvidia": "550.90", "cuda": "12.4", "nccl": "2.21", "openmpi": "4.1.6"},
        "arches": ["amd64"],
        "accelerators": ["h100-80g", "a100-80g"],
    },
    {
        "name": "hpc-rocky-8-cuda-11.8",
        "os": "Rocky Linux 8.8",
        "runtime": ("apptainer", "1.1.9"),
        "drivers": {"nvidia": "520.61", "cuda": "11.8", "nccl": "2.16", "openmpi": "4.1.5"},
        "arches": ["amd64"],
        "accelerators": ["a100-80g"],
    },
)


@dataclass(frozen=True)
class _Accel:
    kind: str
    model: str
    count: int
    memory_gi: int
    watts: float


@dataclass(frozen=True)
class _PoolKind:
    name: str
    counts: tuple[int, int]
    cpu: int
    memory_gi: int
    arch: str
    image: str
    watts: float
    storage: tuple[str, str]  # media, read latency
    accel: _Accel | None = None


@dataclass(frozen=True)
class _EdgeKind:
    name: str
    weight: float
    pools: tuple[_PoolKind, ...]
    capex_per_node: tuple[float, float]  # None-like (0, 0) for opex (MEC) sites
    uplinks: tuple[str, ...]
    sources: tuple[str, ...]  # data-source kinds this site produces

    @property
    def opex(self) -> bool:
        return self.capex_per_node == (0.0, 0.0)


_CPU_BOX = _PoolKind("cpu", (1, 2), 8, 32, "amd64", "edge-ubuntu-22.04", 65, ("ssd", "200us"))
_CPU_SERVER = _PoolKind("cpu", (1, 1), 16, 64, "amd64", "edge-ubuntu-22.04", 120, ("nvme", "100us"))

EDGE_KINDS: Final = (
    _EdgeKind(
        "cpu-box", 0.45, (_CPU_BOX,), (3000, 4000), ("100Mbps", "300Mbps"), ("cams", "events")
    ),
    _EdgeKind(
        "jetson",
        0.20,
        (
            _PoolKind(
                "orin",
                (1, 1),
                12,
                64,
                "arm64",
                "jetpack-6.0",
                20,
                ("nvme", "120us"),
                _Accel("gpu", "orin-agx", 1, 32, 40),
            ),
            _CPU_BOX,
        ),
        (3500, 4500),
        ("300Mbps", "1Gbps"),
        ("cams", "door", "events"),
    ),
    _EdgeKind(
        "gpu-server",
        0.12,
        (
            _PoolKind(
                "gpu",
                (1, 2),
                16,
                64,
                "amd64",
                "edge-ubuntu-22.04-cuda-12.4",
                180,
                ("nvme", "100us"),
                _Accel("gpu", "l4", 1, 24, 72),
            ),
            _CPU_SERVER,
        ),
        (6000, 8500),
        ("1Gbps",),
        ("cams", "door", "events"),
    ),
    _EdgeKind(
        "npu-box",
        0.10,
        (
            _PoolKind(
                "npu",
                (2, 4),
                8,
                16,
                "amd64",
                "edge-ubuntu-22.04-hailort",
                35,
                ("ssd", "200us"),
                _Accel("npu", "hailo-8", 1, 0, 2.5),
            ),
            _CPU_SERVER,
        ),
        (2500, 4000),
        ("500Mbps", "1Gbps"),
        ("line", "plc"),
    ),
    _EdgeKind(
        "fpga-server",
        0.03,
        (
            _PoolKind(
                "fpga",
                (1, 2),
                24,
                128,
                "amd64",
                "edge-ubuntu-22.04-xrt",
                230,
                ("nvme", "100us"),
                _Accel("fpga", "alveo-u50", 1, 8, 75),
            ),
            _CPU_SERVER,
        ),
        (9000, 12000),
        ("1Gbps",),
        ("line", "plc"),
    ),
    _EdgeKind(
        "mec",
        0.10,
        (
            _PoolKind("cpu", (4, 8), 32, 128, "amd64", "edge-ubuntu-22.04", 350, ("nvme", "100us")),
            _PoolKind(
                "gpu",
                (1, 3),
                32,
                192,
                "amd64",
                "edge-ubuntu-22.04-cuda-12.4",
                400,
                ("nvme", "100us"),
                _Accel("gpu", "l4", 2, 24, 72),
            ),
        ),
        (0.0, 0.0),
        ("10Gbps", "25Gbps"),
        ("video", "v2x", "telemetry"),
    ),
)


@dataclass(frozen=True)
class _SourceKind:
    rate: tuple[float, float]  # peak requests/s
    size_kb: tuple[float, float]  # KB per request
    stream: bool  # a continuous stream: also give byteRate
    diurnal: str  # a DIURNAL shape; any other name means a flat rate


SOURCE_KINDS: Final = {
    "cams": _SourceKind((2, 12), (150, 300), False, "retail"),
    "door": _SourceKind((10, 40), (50, 50), True, "retail"),
    "events": _SourceKind((5, 40), (1, 3), False, "retail"),
    "line": _SourceKind((15, 40), (400, 600), False, "shifts"),
    "plc": _SourceKind((500, 3000), (0.2, 0.2), False, "shifts"),
    "video": _SourceKind((200, 500), (125, 125), True, "commute"),
    "v2x": _SourceKind((100, 500), (0.4, 0.4), False, "commute"),
    "telemetry": _SourceKind((1000, 2000), (0.5, 0.5), False, "around-the-clock"),
    "users": _SourceKind((100, 1000), (2, 16), False, "web"),
}

_RETAIL_HOURS = (0.05,) * 5 + (0.1, 0.3, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0, 0.95, 0.85, 0.85, 0.9)
_COMMUTE_HOURS = (0.2, 0.15, 0.1, 0.1, 0.15, 0.35, 0.7, 1.0, 0.95, 0.75, 0.65, 0.7)
_WEB_HOURS = (0.3, 0.25, 0.2, 0.2, 0.25, 0.35, 0.5, 0.7, 0.85, 0.9, 0.95, 1.0)
DIURNAL: Final = {
    "retail": [*_RETAIL_HOURS, 1.0, 1.0, 0.9, 0.7, 0.5, 0.2, 0.1],
    "shifts": [*(0.9,) * 5, 0.6, *(1.0,) * 5, 0.8, *(1.0,) * 10, 0.6, 0.9],
    "commute": [*_COMMUTE_HOURS, 0.75, 0.7, 0.7, 0.8, 0.95, 1.0, 0.9, 0.7, 0.55, 0.45, 0.35, 0.25],
    "web": [*_WEB_HOURS, 1.0, 0.95, 0.95, 0.95, 0.9, 0.9, 0.95, 1.0, 0.95, 0.8, 0.6, 0.4],
}

WORKLOAD_CLASSES: Final = (
    ("inference", 0.40),
    ("streaming", 0.15),
    ("control", 0.10),
    ("batch", 0.20),
    ("training", 0.15),
)
# Share of each request class that is latency-bound to the edge site of its data.
EDGE_SCOPE: Final = {"inference": 0.6, "streaming": 0.4, "control": 0.3}
EDGE_BUDGETS_MS: Final = {
    "inference": (20, 30, 40, 50),
    "streaming": (50, 100),
    "control": (10, 20, 30),
}
REGIONAL_BUDGETS_MS: Final = {
    "inference": (150, 200, 300, 500),
    "streaming": (200, 500, 1000),
    "control": (100, 150, 250),
}
# Accelerator speed-ups over the CPU profile, per workload class.
ACCEL_SPEEDUP: Final = {"l4": 5.0, "orin-agx": 2.0, "hailo-8": 3.0, "alveo-u50": 6.0}
TARGET_UTILISATION: Final = 0.6
LOW_AVAILABILITY: Final = ("99%", "99.5%")
HIGH_AVAILABILITY: Final = ("99.9%", "99.95%")
# Most work one source brings to one workload (busy servers at peak).
EDGE_ERLANGS: Final = 1.5
REGIONAL_ERLANGS: Final = 8.0
HEADROOM: Final = 1.5
# Clouds get more: jobs without residency and standby replicas land there too.
CLOUD_HEADROOM: Final = 2.0


# ------------------------------------------------------------------ formatting


def _ms(seconds: float) -> str:
    """A duration rounded to 4 significant digits, written the way documents serialise it.

    Writing it in ``format_duration``'s own form makes loading and dumping a
    fixed point, so a fleet read back from its YAML equals the generated one.
    """
    return format_duration(float(f"{seconds:.4g}"))


_duration = _ms


def _schedule(deadline: float) -> Doc:
    """Nightly when a run's deadline fits in a day, else weekly, else monthly.

    Derived from the deadline, not drawn, so adding schedules left every
    other generated value (and so the benchmark fleets) as it was.
    """
    written = float(f"{deadline:.4g}")  # the deadline as _duration writes it
    for every, seconds in (("24h", 86400.0), ("7d", 7 * 86400.0)):
        if written <= seconds:
            return {"every": every}
    return {"every": "30d"}


def _kb(kilobytes: float) -> str:
    return f"{round(kilobytes * 1000)}"


def _document(kind: str, name: str, spec: Doc, labels: dict[str, str] | None = None) -> Doc:
    metadata: Doc = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (lat1, lon1, lat2, lon2))
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(min(1.0, h)))


def _backbone_latency(a: _Site, b: _Site) -> tuple[float, float]:
    """One-way p50/p99 in seconds between two cloud regions: ~130 km/ms plus switching."""
    km = _haversine_km(a.lat, a.lon, b.lat, b.lon)
    p50 = round(2.0 + km / 130.0, 1)
    return p50 / 1e3, round(p50 * 1.15 + 2.0, 1) / 1e3


# ------------------------------------------------------------------ the builder


@dataclass
class _Site:
    name: str
    region: _Region
    tier: str
    kind: _EdgeKind | None
    lat: float
    lon: float
    pools: list[Doc]
    sources: list[Doc] = field(default_factory=list)
    # Capacity the generated workloads need here (cores, GiB, accelerators by model).
    need_cpu: float = 0.0
    need_memory_gi: float = 0.0
    need_gpus: dict[str, float] = field(default_factory=dict)


@dataclass
class _Source:
    name: str
    site: _Site
    rate: float
    kind: str
    one_way_p99: float  # seconds, to the site's hub (0 at a hub)


@dataclass(frozen=True)
class _Standby:
    site: _Site
    one_way_p99: float  # seconds, from the workload's own hub


class _Builder:
    def __init__(self, sites: int, workloads: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n_sites = sites
        self.n_workloads = workloads
        self.regions = self._regions()
        self.hubs: dict[str, _Site] = {}
        self.edges: dict[str, list[_Site]] = {r.name: [] for r in self.regions}
        self.hpcs: list[_Site] = []
        self.links: list[Doc] = []
        self.edge_sources: dict[str, list[_Source]] = {r.name: [] for r in self.regions}
        self.hub_sources: dict[str, list[_Source]] = {r.name: [] for r in self.regions}
        self.workloads: list[Doc] = []

    # -------------------------------------------------------------- topology

    def _regions(self) -> list[_Region]:
        if self.n_sites == 1:
            return [REGIONS[0]]
        wanted = max(2, math.ceil(self.n_sites / 25))
        return list(REGIONS[: min(MAX_REGIONS, self.n_sites, wanted)])

    def _gpu_models(self, region: _Region) -> list[str]:
        """Which GPU models a region's cloud offers: L4 everywhere, the big ones in some."""
        index = REGIONS.index(region)
        models = ["l4"]
        if index % 2 == 0:
            models.append("a100-80g")
        if index % 3 == 0:
            models.append("h100-80g")
        if len(models) == 1:
            models.append("a100-80g" if index % 4 == 1 else "h100-80g")
        return models

    def build_topology(self) -> None:
        for region in self.regions:
            self.hubs[region.name] = _Site(
                f"hub-{region.name}", region, "regional", None, region.lat, region.lon, []
            )
        remaining = self.n_sites - len(self.regions)
        n_hpc = 0 if self.n_sites < 10 else min(remaining // 4, 1 + self.n_sites // 250)
        for j in range(n_hpc):
            region = self.regions[j % len(self.regions)]
            number = j // len(self.regions) + 1
            self.hpcs.append(
                _Site(
                    f"hpc-{region.name}-{number}", region, "hpc", None, region.lat, region.lon, []
                )
            )
        weights = [k.weight for k in EDGE_KINDS]
        for i in range(remaining - n_hpc):
            region = self.regions[i % len(self.regions)]
            kind = self.rng.choices(EDGE_KINDS, weights)[0]
            self._add_edge(region, kind)
        self._link_everything()
        for region in self.regions:
            self._hub_sources(region)

    def _add_edge(self, region: _Region, kind: _EdgeKind) -> None:
        rng = self.rng
        spread = 3.0 if kind.name == "mec" else 8.0
        lat = max(-89.0, min(89.0, region.lat + rng.uniform(-spread, spread)))
        lon = (region.lon + rng.uniform(-spread, spread) * 1.25 + 180.0) % 360.0 - 180.0
        number = len(self.edges[region.name]) + 1
        site = _Site(
            f"edge-{region.name}-{number:04d}",
            region,
            "edge",
            kind,
            round(lat, 3),
            round(lon, 3),
            [],
        )
        for pool in kind.pools:
            image = pool.image
            if image == "jetpack-6.0" and rng.random() < 0.2:
                image = "jetpack-5.1"  # not re-flashed yet: keeps CUDA-12 workloads away
            site.pools.append(self._pool_doc(pool, rng.randint(*pool.counts), image))
        self.edges[region.name].append(site)
        hub = self.hubs[region.name]
        p50, p99 = self._edge_latency(site, hub, kind)
        egress = (
            {"aToB": "0.02/GB", "bToA": "0.02/GB"}
            if kind.opex
            else {"aToB": "0/GB", "bToA": f"{region.egress:g}/GB"}
        )
        self._link(site, hub, p50, p99, rng.choice(kind.uplinks), egress, "0.1%")
        for source_kind in kind.sources:
            self._add_source(site, source_kind, p99)

    def _edge_latency(self, site: _Site, hub: _Site, kind: _EdgeKind) -> tuple[float, float]:
        """One-way p50/p99 in seconds: access network + distance at ~100 km/ms, heavy tail."""
        km = _haversine_km(site.lat, site.lon, hub.lat, hub.lon)
        if kind.name == "mec":
            p50 = min(8.0, max(1.0, 1.0 + km / 150.0))
            p99 = 1.8 * p50 + 1.0
        else:
            p50 = min(30.0, max(3.0, 4.0 + km / 100.0))
            p99 = 2.2 * p50 + self.rng.uniform(5.0, 15.0)
        return round(p50, 1) / 1e3, round(p99, 1) / 1e3

    def _link_everything(self) -> None:
        hubs = list(self.hubs.values())
        for i, a in enumerate(hubs):
            for b in hubs[i + 1 :]:
                p50, p99 = _backbone_latency(a, b)
                egress = {"aToB": "0.02/GB", "bToA": "0.02/GB"}
                self._link(a, b, p50, p99, "100Gbps", egress, None)
        for hpc in self.hpcs:
            hub = self.hubs[hpc.region.name]
            p50 = round(self.rng.uniform(2.0, 9.0), 1)
            egress = {"aToB": "0/GB", "bToA": "0.02/GB"}
            self._link(hpc, hub, p50 / 1e3, (p50 + 4.0) / 1e3, "10Gbps", egress, None)

    def _link(
        self,
        a: _Site,
        b: _Site,
        p50: float,
        p99: float,
        bandwidth: str,
        egress: dict[str, str],
        loss: str | None,
    ) -> None:
        spec: Doc = {
            "a": a.name,
            "b": b.name,
            "latency": {"p50": _ms(p50), "p99": _ms(p99)},
            "bandwidth": bandwidth,
            "egressPrice": egress,
        }
        if loss is not None:
            spec["loss"] = loss
        self.links.append(_document("Link", f"{a.name}--{b.name}", spec))

    def _add_source(self, site: _Site, kind: str, one_way_p99: float) -> None:
        template = SOURCE_KINDS[kind]
        rate = round(self.rng.uniform(*template.rate), 1)
        size_kb = round(self.rng.uniform(*template.size_kb), 1)
        name = f"{site.name}-{kind}"
        spec: Doc = {
            "site": site.name,
            "requestRate": f"{rate:g}/s",
            "requestSize": _kb(size_kb),
        }
        if template.diurnal in DIURNAL:
            spec["diurnal"] = DIURNAL[template.diurnal]
        if template.stream:
            spec["byteRate"] = f"{rate * size_kb:.6g}kB/s"
        site.sources.append(_document("DataSource", name, spec, {"stream": kind}))
        source = _Source(name, site, rate, kind, one_way_p99)
        if site.tier == "edge":
            self.edge_sources[site.region.name].append(source)
        else:
            self.hub_sources[site.region.name].append(source)

    def _hub_sources(self, region: _Region) -> None:
        hub = self.hubs[region.name]
        for i in (1, 2):
            template = SOURCE_KINDS["users"]
            rate = round(self.rng.uniform(*template.rate))
            name = f"{hub.name}-users-{i}"
            spec: Doc = {
                "site": hub.name,
                "requestRate": f"{rate}/s",
                "requestSize": _kb(round(self.rng.uniform(*template.size_kb), 1)),
                "diurnal": DIURNAL["web"],
            }
            hub.sources.append(_document("DataSource", name, spec, {"stream": "users"}))
            self.hub_sources[region.name].append(_Source(name, hub, rate, "users", 0.0))

    def _pool_doc(self, pool: _PoolKind, count: int, image: str) -> Doc:
        doc: Doc = {
            "name": pool.name,
            "count": count,
            "cpu": pool.cpu,
            "memory": f"{pool.memory_gi}Gi",
            "nodeImage": image,
            "storage": [{"media": pool.storage[0], "readLatency": pool.storage[1]}],
            "watts": f"{pool.watts:g}W",
        }
        if pool.arch != "amd64":
            doc["arch"] = pool.arch
        if pool.accel is not None:
            acc = pool.accel
            entry: Doc = {
                "kind": acc.kind,
                "model": acc.model,
                "count": acc.count,
                "watts": f"{acc.watts:g}W",
            }
            if acc.memory_gi:
                entry["memory"] = f"{acc.memory_gi}Gi"
            doc["accelerators"] = [entry]
        return doc

    # -------------------------------------------------------------- workloads

    def build_workloads(self) -> None:
        classes = [c for c, _ in WORKLOAD_CLASSES]
        weights = [w for _, w in WORKLOAD_CLASSES]
        width = max(5, len(str(self.n_workloads)))
        for i in range(1, self.n_workloads + 1):
            cls = self.rng.choices(classes, weights)[0]
            hard = self.rng.random() < HARD_FRACTION
            name = f"{cls}-{i:0{width}d}"
            if cls in EDGE_SCOPE:
                self.workloads.append(self._request_workload(name, cls, hard))
            elif cls == "batch":
                self.workloads.append(self._batch_workload(name, hard))
            else:
                self.workloads.append(self._training_workload(name, hard))

    def _request_workload(self, name: str, cls: str, hard: bool) -> Doc:
        rng = self.rng
        edge_regions = [r for r in self.regions if self.edge_sources[r.name]]
        if edge_regions and rng.random() < EDGE_SCOPE[cls]:
            region = rng.choice(edge_regions)
            return self._edge_workload(name, cls, region, hard)
        return self._regional_workload(name, cls, rng.choice(self.regions), hard)

    def _edge_workload(self, name: str, cls: str, region: _Region, hard: bool) -> Doc:
        """Latency-bound to the sites of its data: served where the data is."""
        rng = self.rng
        pool = self.edge_sources[region.name]
        sources = rng.sample(pool, min(len(pool), rng.randint(1, 4)))
        budget = rng.choice(EDGE_BUDGETS_MS[cls]) / 1e3
        cpu_mean = budget * (rng.uniform(0.45, 0.6) if hard else rng.uniform(0.08, 0.2))
        cv = round(rng.uniform(0.2, 0.5), 2)
        cpu, memory_gi = rng.choice((0.5, 1.0, 2.0)), rng.choice((0.5, 1.0, 2.0, 4.0))
        shares = self._shares(sources, cpu_mean, EDGE_ERLANGS)
        for source, share in zip(sources, shares, strict=True):
            replicas = self._replicas(source.rate * share, cpu_mean, 1)
            source.site.need_cpu += replicas * cpu
            source.site.need_memory_gi += replicas * memory_gi
        accelerators = ["l4", "orin-agx"] + (["hailo-8", "alveo-u50"] if cls == "inference" else [])
        profiles = [self._service_profile("cpu", cpu_mean, cv, 1)]
        profiles += [
            self._service_profile(model, cpu_mean / ACCEL_SPEEDUP[model], cv, rng.choice((1, 2, 4)))
            for model in accelerators
        ]
        # No target of 99.9 % or more: that needs two failure domains, and data
        # bound to one edge site by its latency budget has only one.
        availability = rng.choice(LOW_AVAILABILITY) if rng.random() < 0.5 else None
        spec = self._request_spec(
            cls, budget, sources, shares, profiles, cpu, memory_gi, availability
        )
        spec["residency"] = [region.zone]
        spec["runtime"] = {"arches": ["amd64", "arm64"]}
        spec["replicas"] = {"min": 1, "max": 4 * len(sources) + 4}
        return self._workload_doc(name, spec, region, hard, "edge")

    def _regional_workload(self, name: str, cls: str, region: _Region, hard: bool) -> Doc:
        """Served from the region's cloud (or anywhere else that meets the budget)."""
        rng = self.rng
        candidates = self.edge_sources[region.name]
        sources = rng.sample(candidates, min(len(candidates), rng.randint(0, 8)))
        if not sources or rng.random() < 0.5:
            sources.append(rng.choice(self.hub_sources[region.name]))
        worst = max(s.one_way_p99 for s in sources)
        cpu_mean = rng.uniform(0.002, 0.03)
        cv = round(rng.uniform(0.3, 1.0), 2)
        availability, standby = self._regional_availability(region)
        if standby is not None:
            # Two failure domains that can each take all the load: the budget must
            # cover the detour to the other region too.
            worst += standby.one_way_p99
        if hard:
            budget = round(1.6 * worst + 1.5 * cpu_mean, 3)
        else:
            floor = 2.2 * worst + 6.0 * cpu_mean + 0.02
            budget = max(rng.choice(REGIONAL_BUDGETS_MS[cls]) / 1e3, math.ceil(floor * 100) / 100)
        cpu, memory_gi = rng.choice((1.0, 2.0, 4.0)), rng.choice((2.0, 4.0, 8.0))
        concurrency = rng.choice((1, 2, 4, 8))
        shares = self._shares(sources, cpu_mean, REGIONAL_ERLANGS)
        rate = sum(s.rate * share for s, share in zip(sources, shares, strict=True))
        replicas = self._replicas(rate, cpu_mean, concurrency)
        for site in (self.hubs[region.name], standby.site if standby else None):
            if site is not None:
                site.need_cpu += replicas * cpu
                site.need_memory_gi += replicas * memory_gi
        profiles = [self._service_profile("cpu", cpu_mean, cv, concurrency)]
        if rng.random() < 0.3:
            profiles.append(self._service_profile("l4", cpu_mean / 5.0, cv, 8))
        spec = self._request_spec(
            cls, budget, sources, shares, profiles, cpu, memory_gi, availability
        )
        if rng.random() < 0.7:
            spec["residency"] = [region.zone]
        if rng.random() < 0.3:
            spec["runtime"] = {"containerRuntime": "containerd", "arches": ["amd64"]}
        minimum = 2 if cls == "control" else 1
        spec["replicas"] = {"min": minimum, "max": max(minimum, 2 * replicas + 2)}
        return self._workload_doc(name, spec, region, hard, "regional")

    def _regional_availability(self, region: _Region) -> tuple[str | None, _Standby | None]:
        """An availability target, and the other region that makes a high one feasible.

        99.9 % and more needs a second failure domain that can serve every
        source; sources keep their data in their zone, so it must be another
        region of the same residency zone.
        """
        rng = self.rng
        if rng.random() < 0.5:
            return None, None
        hub = self.hubs[region.name]
        others = [h for h in self.hubs.values() if h is not hub and h.region.zone == region.zone]
        if not others or rng.random() < 0.5:
            return rng.choice(LOW_AVAILABILITY), None
        nearest = min(others, key=lambda h: _backbone_latency(hub, h)[0])
        standby = _Standby(nearest, _backbone_latency(hub, nearest)[1])
        return rng.choice(HIGH_AVAILABILITY), standby

    def _shares(self, sources: list[_Source], mean: float, erlangs: float) -> list[float]:
        """A share of each source, capped so it brings at most ``erlangs`` of work.

        Without the cap a 3,000 msg/s sensor feed and a 10 ms model would ask a
        store for 30 busy cores; with it, the workload reads a subset of the feed.
        """
        shares = []
        for source in sources:
            share = self.rng.choice((0.25, 0.5, 1.0))
            cap = erlangs / (source.rate * mean)
            if share > cap:
                share = max(0.01, math.floor(cap * 100) / 100)
            shares.append(share)
        return shares

    @staticmethod
    def _replicas(rate: float, mean: float, concurrency: int) -> int:
        return max(1, math.ceil(rate * mean / (concurrency * TARGET_UTILISATION)))

    @staticmethod
    def _service_profile(hardware: str, mean: float, cv: float, concurrency: int) -> Doc:
        profile: Doc = {"hardware": hardware, "serviceTime": {"mean": _ms(mean), "cv": cv}}
        if concurrency > 1:
            profile["concurrency"] = concurrency
        return profile

    def _request_spec(
        self,
        cls: str,
        budget: float,
        sources: list[_Source],
        shares: list[float],
        profiles: list[Doc],
        cpu: float,
        memory_gi: float,
        availability: str | None,
    ) -> Doc:
        rng = self.rng
        latency: Doc = {"p99": _ms(budget)}
        if rng.random() < 0.3:
            latency["p50"] = _ms(budget * 0.4)
        slo: Doc = {"latency": latency}
        if availability is not None:
            slo["availability"] = availability
        demand = [
            {"source": s.name} if share == 1.0 else {"source": s.name, "share": share}
            for s, share in zip(sources, shares, strict=True)
        ]
        spec: Doc = {
            "class": cls,
            "slo": slo,
            "demand": demand,
            "resources": {"cpu": cpu, "memory": f"{round(memory_gi * 1024)}Mi"},
            "profiles": profiles,
        }
        if rng.random() < 0.5:
            spec["model"] = {
                "artifact": f"oci://registry.example/models/{cls}-{rng.randrange(1000):03d}:1",
                "size": f"{rng.choice((12, 48, 95, 210, 480))}Mi",
                "updatesPerDay": rng.choice((0.1, 0.5, 1.0, 4.0)),
            }
        if rng.random() < 0.3:
            spec["storage"] = {"reads": rng.randint(1, 3), "media": ["nvme", "ssd", "network"]}
        return spec

    def _batch_workload(self, name: str, hard: bool) -> Doc:
        rng = self.rng
        region = rng.choice(self.regions)
        cpu = rng.choice((2, 4, 8, 16))
        memory_gi = cpu * rng.choice((2, 4))
        replicas = rng.randint(1, 8)
        runtime = rng.uniform(600.0, 6 * 3600.0)
        deadline = runtime * (rng.uniform(0.9, 1.05) if hard else rng.uniform(1.5, 4.0))
        hub = self.hubs[region.name]
        hub.need_cpu += cpu * replicas
        hub.need_memory_gi += memory_gi * replicas
        spec: Doc = {
            "class": "batch",
            "slo": {"deadline": _duration(deadline)},
            "schedule": _schedule(deadline),
            "resources": {"cpu": cpu, "memory": f"{memory_gi}Gi"},
            "profiles": [{"hardware": "cpu", "runtime": _duration(runtime)}],
            "runtime": {"arches": ["amd64"]},
            "replicas": {"min": replicas, "max": replicas},
        }
        if rng.random() < 0.5:
            spec["residency"] = [region.zone]
        return self._workload_doc(name, spec, region, hard, "regional")

    def _training_workload(self, name: str, hard: bool) -> Doc:
        rng = self.rng
        region = rng.choice(self.regions)
        target = rng.choice(self._gpu_models(region))
        count = 1 if target == "l4" else rng.choice((1, 2, 4, 8))
        replicas = rng.randint(1, 2)
        a100_runtime = rng.uniform(3600.0, 30 * 3600.0)
        runtimes = {"a100-80g": a100_runtime, "h100-80g": a100_runtime / 2.2}
        if target == "l4":
            runtimes["l4"] = a100_runtime * 3.0
        slack = rng.uniform(0.8, 1.0) if hard else rng.uniform(1.3, 3.0)
        deadline = runtimes[target] * slack
        accelerator: Doc = {"kind": "gpu", "count": count}
        if target == "l4":
            cpu, memory_gi = 8, 48
            accelerator["models"] = ["l4", "a100-80g", "h100-80g"]
        else:
            cpu, memory_gi = 12 * count, 120 * count
            accelerator["memory"] = "40Gi"
        hub = self.hubs[region.name]
        hub.need_gpus[target] = hub.need_gpus.get(target, 0.0) + count * replicas
        cuda = ">=12.1" if rng.random() < 0.8 else ">=11.8"
        spec: Doc = {
            "class": "training",
            "slo": {"deadline": _duration(deadline)},
            "schedule": _schedule(deadline),
            "resources": {"cpu": cpu, "memory": f"{memory_gi}Gi", "accelerator": accelerator},
            "profiles": [{"hardware": hw, "runtime": _duration(t)} for hw, t in runtimes.items()],
            "runtime": {"drivers": {"cuda": cuda}, "arches": ["amd64"]},
            "replicas": {"min": replicas, "max": replicas},
        }
        if rng.random() < 0.5:
            spec["residency"] = [region.zone]
        return self._workload_doc(name, spec, region, hard, "regional")

    @staticmethod
    def _workload_doc(name: str, spec: Doc, region: _Region, hard: bool, scope: str) -> Doc:
        labels = {"region": region.name, "scope": scope}
        if hard:
            labels["difficulty"] = "hard"
        return _document("Workload", name, spec, labels)

    # -------------------------------------------------------------- sizing and sites

    def size_and_render_sites(self) -> list[Doc]:
        docs = [self._hub_doc(hub) for hub in self.hubs.values()]
        docs += [self._hpc_doc(hpc) for hpc in self.hpcs]
        for region in self.regions:
            docs += [self._edge_doc(site) for site in self.edges[region.name]]
        return docs

    def _hub_doc(self, hub: _Site) -> Doc:
        region = hub.region
        general = max(
            4, math.ceil(max(hub.need_cpu / 16.0, hub.need_memory_gi / 64.0) * CLOUD_HEADROOM) + 2
        )
        pools = [
            {
                "name": "general",
                "count": general,
                "cpu": 16,
                "memory": "64Gi",
                "nodeImage": "cloud-al2023",
                "storage": [
                    {"media": "network", "readLatency": "600us"},
                    {"media": "object", "readLatency": "25ms"},
                ],
            }
        ]
        prices: dict[str, str] = {}
        for model in self._gpu_models(region):
            gpus = hub.need_gpus.get(model, 0.0)
            pools.append(self._gpu_pool(model, gpus))
            prices[model] = f"{GPU_HOUR[model] * region.price_factor:.3g}/h"
        if REGIONS.index(region) % 4 == 1:
            pools.append(self._gpu_pool("t4", 0.0))
            prices["t4"] = f"{GPU_HOUR['t4'] * region.price_factor:.3g}/h"
        spec: Doc = {
            "tier": "regional",
            "region": region.name,
            "residencyZone": region.zone,
            "location": {"lat": region.lat, "lon": region.lon, "city": region.city},
            "nodePools": pools,
            "cost": {
                "opex": {
                    "cpuHour": f"{CPU_HOUR * region.price_factor:.3g}/h",
                    "memoryGibHour": f"{GIB_HOUR * region.price_factor:.3g}/h",
                    "acceleratorHour": prices,
                }
            },
        }
        return self._site_doc(hub, spec, {"provider": "cloud"})

    @staticmethod
    def _gpu_pool(model: str, gpus_needed: float) -> Doc:
        per_node = 1 if model in ("l4", "t4") else 8
        count = max(1, math.ceil(gpus_needed / per_node * HEADROOM) + 1)
        # g6/g4dn-, p4de- and p5-class nodes.
        cpu, memory = {"l4": (16, "64Gi"), "t4": (16, "64Gi"), "a100-80g": (96, "1152Gi")}.get(
            model, (192, "2048Gi")
        )
        image = "cloud-al2-cuda-11.8" if model == "t4" else "cloud-al2023-cuda-12.4"
        gpu_memory = {"l4": "24Gi", "t4": "16Gi"}.get(model, "80Gi")
        watts = {"l4": "72W", "t4": "70W", "a100-80g": "400W", "h100-80g": "700W"}[model]
        name = "gpu-t4-legacy" if model == "t4" else f"gpu-{model.split('-')[0]}"
        return {
            "name": name,
            "count": count,
            "cpu": cpu,
            "memory": memory,
            "nodeImage": image,
            "accelerators": [
                {
                    "kind": "gpu",
                    "model": model,
                    "count": per_node,
                    "memory": gpu_memory,
                    "watts": watts,
                }
            ],
            "storage": [{"media": "nvme", "readLatency": "100us"}],
        }

    def _hpc_doc(self, hpc: _Site) -> Doc:
        rng = self.rng
        dgx, a100, cpu = rng.randint(4, 16), rng.randint(8, 24), rng.randint(32, 128)
        pools = [
            {
                "name": "dgx-h100",
                "count": dgx,
                "cpu": 112,
                "memory": "2048Gi",
                "nodeImage": "hpc-rocky-9-cuda-12.4",
                "accelerators": [
                    {
                        "kind": "gpu",
                        "model": "h100-80g",
                        "count": 8,
                        "memory": "80Gi",
                        "watts": "700W",
                    }
                ],
                "storage": [
                    {"media": "nvme", "readLatency": "80us"},
                    {"media": "network", "readLatency": "500us"},
                ],
                "watts": "4.5kW",
            },
            {
                "name": "a100",
                "count": a100,
                "cpu": 64,
                "memory": "1024Gi",
                "nodeImage": "hpc-rocky-8-cuda-11.8",
                "accelerators": [
                    {
                        "kind": "gpu",
                        "model": "a100-80g",
                        "count": 4,
                        "memory": "80Gi",
                        "watts": "400W",
                    }
                ],
                "storage": [{"media": "network", "readLatency": "500us"}],
                "watts": "1.5kW",
            },
            {
                "name": "cpu",
                "count": cpu,
                "cpu": 128,
                "memory": "512Gi",
                "nodeImage": "hpc-rocky-9-cuda-12.4",
                "storage": [{"media": "network", "readLatency": "500us"}],
                "watts": "650W",
            },
        ]
        draw = dgx * (4500 + 8 * 700) + a100 * (1500 + 4 * 400) + cpu * 650
        capex = dgx * 350_000 + a100 * 90_000 + cpu * 18_000
        spec: Doc = {
            "tier": "hpc",
            "region": hpc.region.name,
            "residencyZone": hpc.region.zone,
            "location": {"lat": hpc.lat, "lon": hpc.lon},
            "nodePools": pools,
            "powerBudget": f"{math.ceil(draw * 1.15 / 1000)}kW",
            "cost": {
                "capex": {
                    "amount": capex,
                    "amortisationMonths": 48,
                    "monthlyOverhead": round(capex * 0.006),
                },
                "energyPrice": f"{hpc.region.energy_price:g}/kWh",
            },
        }
        return self._site_doc(hpc, spec, {"scheduler": "slurm"})

    def _edge_doc(self, site: _Site) -> Doc:
        kind = site.kind
        assert kind is not None
        cpu_pool = next(p for p in site.pools if p["name"] == "cpu")
        # Grow the CPU pool until it holds every latency-bound replica with headroom:
        # a store that serves four workloads' cameras gets a second box.
        needed = max(
            site.need_cpu / cpu_pool["cpu"], site.need_memory_gi / int(cpu_pool["memory"][:-2])
        )
        cpu_pool["count"] = max(cpu_pool["count"], math.ceil(needed * HEADROOM))
        nodes = sum(p["count"] for p in site.pools)
        draw = sum(p["count"] * self._pool_watts(p) for p in site.pools)
        spec: Doc = {
            "tier": "edge",
            "region": site.region.name,
            "residencyZone": site.region.zone,
            "location": {"lat": site.lat, "lon": site.lon},
            "nodePools": site.pools,
            "powerBudget": f"{math.ceil(draw * self.rng.uniform(1.2, 1.6))}W",
        }
        if kind.opex:
            factor = site.region.price_factor * MEC_PREMIUM
            spec["cost"] = {
                "opex": {
                    "cpuHour": f"{CPU_HOUR * factor:.3g}/h",
                    "memoryGibHour": f"{GIB_HOUR * factor:.3g}/h",
                    "acceleratorHour": {"l4": f"{GPU_HOUR['l4'] * factor:.3g}/h"},
                }
            }
        else:
            per_node = self.rng.uniform(*kind.capex_per_node)
            spec["cost"] = {
                "capex": {
                    "amount": round(per_node * nodes, -2),
                    "amortisationMonths": 36,
                    "monthlyOverhead": 15 * nodes + 10,
                },
                "energyPrice": f"{site.region.energy_price:g}/kWh",
            }
        return self._site_doc(site, spec, {"kind": kind.name})

    @staticmethod
    def _pool_watts(pool: Doc) -> float:
        watts = float(pool["watts"][:-1])
        for acc in pool.get("accelerators", []):
            watts += acc["count"] * float(acc["watts"][:-1])
        return watts

    @staticmethod
    def _site_doc(site: _Site, spec: Doc, labels: dict[str, str]) -> Doc:
        return _document("Site", site.name, spec, labels)

    # -------------------------------------------------------------- the rest

    @staticmethod
    def node_image_docs() -> list[Doc]:
        docs = []
        for image in NODE_IMAGES:
            runtime_name, runtime_version = image["runtime"]
            spec: Doc = {
                "os": image["os"],
                "containerRuntime": {"name": runtime_name, "version": runtime_version},
                "drivers": image["drivers"],
                "arches": image["arches"],
            }
            if image["accelerators"]:
                spec["accelerators"] = image["accelerators"]
            docs.append(_document("NodeImage", image["name"], spec))
        return docs

    def source_docs(self) -> list[Doc]:
        docs: list[Doc] = []
        for hub in self.hubs.values():
            docs += hub.sources
        for region in self.regions:
            for site in self.edges[region.name]:
                docs += site.sources
        return docs

    @staticmethod
    def policy_doc() -> Doc:
        spec: Doc = {
            "objective": {"cost": 1.0, "energy": 1.0, "latency": 100},
            "rules": [
                {
                    "name": "small-batch-inference-at-the-edge",
                    "description": "Inference with a latency budget of 50 ms or less "
                    "runs at the edge.",
                    "when": 'workload.class == "inference" && has(workload.latencyBudget)'
                    ' && workload.latencyBudget <= duration("50ms")',
                    "prefer": 'site.tier == "edge"',
                    "weight": 150,
                },
                {
                    "name": "large-batch-training-on-gpu-pools",
                    "description": "Training runs on GPU pools in regional clouds or on-prem HPC.",
                    "when": 'workload.class == "training"',
                    "require": 'site.tier in ["regional", "hpc"]',
                },
                {
                    "name": "batch-off-the-edge",
                    "description": "Batch jobs read from the regional data lake; edge "
                    "capacity is kept for the latency-bound workloads.",
                    "when": 'workload.class == "batch"',
                    "require": 'site.tier != "edge"',
                },
                {
                    "name": "regional-services-off-the-edge",
                    "description": "Services generated for a region's cloud do not take "
                    "edge capacity sized for the latency-bound workloads.",
                    "when": 'has(workload.labels.scope) && workload.labels.scope == "regional"',
                    "require": 'site.tier != "edge"',
                },
            ],
            "failureDomain": "site",
        }
        return _document("PlacementPolicy", "synthetic", spec)


# ------------------------------------------------------------------ public API


def generate_documents(sites: int, workloads: int, seed: int = 0) -> list[Doc]:
    """The documents of a synthetic fleet, in human units, in kind order."""
    if sites < 1:
        raise ValidationError(Problem(f"sites must be at least 1, got {sites}", field_path="sites"))
    if workloads < 0:
        raise ValidationError(
            Problem(f"workloads must not be negative, got {workloads}", field_path="workloads")
        )
    builder = _Builder(sites, workloads, seed)
    builder.build_topology()
    builder.build_workloads()
    return [
        *builder.size_and_render_sites(),
        *builder.links,
        *builder.node_image_docs(),
        *builder.source_docs(),
        *builder.workloads,
        builder.policy_doc(),
    ]


def generate_fleet(sites: int, workloads: int, seed: int = 0) -> Fleet:
    """A validated synthetic fleet with ``sites`` sites and ``workloads`` workloads.

    Deterministic: the same arguments give the same fleet, document for document.
    """
    fleet = Fleet(name=f"synthetic-{sites}x{workloads}-seed{seed}")
    with gc_paused():
        for doc in generate_documents(sites, workloads, seed):
            fleet.add(KINDS[doc["kind"]].model_validate(doc))
    return fleet


def fleet_documents(fleet: Fleet) -> list[Doc]:
    """Every resource of a fleet as a compact document: defaults left out, kinds in order."""
    with gc_paused():
        return [_compact(resource) for resource in fleet.resources()]


def _compact(resource: Resource[Any, Any]) -> Doc:
    body = resource.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    body.pop("apiVersion", None)
    body.pop("kind", None)
    return {"apiVersion": resource.api_version, "kind": resource.kind, **body}


# ------------------------------------------------------------------ YAML

# Strings YAML 1.1 or 1.2 would read as something else (numbers, booleans, null),
# or that contain characters that need quoting: these are written as JSON strings,
# which are valid YAML double-quoted scalars.
_NOT_A_STRING = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_,:]*)?\.?[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF|nan|NaN|NAN)"
    r"|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|~|null|Null|NULL|y|Y|yes|Yes|YES|n|N|no|No|NO"
    r"|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$"
)
# JSON leaves these raw, but YAML forbids them in a stream or reads them as line breaks.
_NOT_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
_PLAIN = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./@+%-]*$")
_FLOW_MAX_WIDTH = 88


@functools.lru_cache(maxsize=1 << 16)
def _string(text: str) -> str:
    # Cached: keys and most values (units, names of kinds and hardware) repeat
    # thousands of times in a large fleet.
    if _PLAIN.match(text) and not _NOT_A_STRING.match(text):
        return text
    quoted = json.dumps(text, ensure_ascii=False)
    return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _scalar(value: Any) -> str:
    if type(value) is str:
        return _string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))  # cpu: 16, not 16.0
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            # YAML 1.1 readers need a dot in a float's mantissa.
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent if exponent[0] in '+-' else '+' + exponent}"
        return text
    return _string(str(value))


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _flow(value: Any) -> str | None:
    """A one-line form for small leaf maps and lists of scalars, or None."""
    if isinstance(value, list) and all(_is_scalar(v) for v in value):
        text = "[" + ", ".join(_scalar(v) for v in value) + "]"
    elif isinstance(value, dict) and all(_is_scalar(v) for v in value.values()):
        text = "{" + ", ".join(f"{_scalar(k)}: {_scalar(v)}" for k, v in value.items()) + "}"
    else:
        return None
    return text if len(text) <= _FLOW_MAX_WIDTH or isinstance(value, list) else None


def _emit(value: Any, indent: int, out: list[str]) -> None:
    """Block style: map keys at ``indent``; list items as ``- `` at ``indent``."""
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            _emit_entry(f"{pad}{_scalar(key)}:", item, indent, out)
        return
    for item in value:
        flow = _flow(item) if isinstance(item, dict) and item else None
        if flow is not None:
            out.append(f"{pad}- {flow}")
        elif isinstance(item, dict) and item:
            first = len(out)
            _emit(item, indent + 2, out)
            out[first] = f"{pad}- {out[first][indent + 2 :]}"
        else:
            _emit_entry(f"{pad}-", item, indent, out)


def _emit_entry(prefix: str, item: Any, indent: int, out: list[str]) -> None:
    if _is_scalar(item):
        out.append(f"{prefix} {_scalar(item)}")
        return
    flow = _flow(item) if item else ("{}" if isinstance(item, dict) else "[]")
    if flow is not None:
        out.append(f"{prefix} {flow}")
        return
    out.append(prefix)
    _emit(item, indent + 2, out)


def render_yaml(documents: Iterable[Doc]) -> str:
    """Multi-document YAML, fast enough for 20,000 workloads (ruamel's emitter is ~50x slower)."""
    out: list[str] = []
    for i, document in enumerate(documents):
        if i:
            out.append("---")
        _emit(document, 0, out)
    out.append("")
    return "\n".join(out)
