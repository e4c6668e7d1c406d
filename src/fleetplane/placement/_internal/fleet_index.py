"""The fleet as arrays: one entry per site and one *row* per (site, node pool).

Every filter and cost term works on whole rows at once (numpy), so the
per-workload work is a handful of vector operations instead of a Python
loop over thousands of sites. Sites and pools are sorted by name so that
the plan never depends on the order files were read in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleetplane.model.fleet import Fleet
from fleetplane.model.infrastructure import NodePool, Site
from fleetplane.model.units import HOURS_PER_MONTH

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

GIB = float(2**30)

# Owned hardware is priced per "capacity unit" so that a purchase price can be
# charged to workloads in proportion to what they occupy. One CPU core is one
# unit; the other weights are rough ratios of public cloud list prices (a GiB
# of memory costs about an eighth of a core-hour, a data-centre GPU about
# twenty). They only decide how a capex site's monthly cost is split between
# its resources, never whether a placement is feasible.
MEMORY_UNITS_PER_GIB = 0.125
ACCELERATOR_UNITS = {"gpu": 20.0, "tpu": 20.0, "fpga": 8.0, "npu": 4.0}


@dataclass(frozen=True)
class FleetIndex:
    """Sites and (site, pool) rows of a fleet, as parallel arrays."""

    sites: tuple[Site, ...]
    site_index: dict[str, int]
    zones: tuple[str, ...]
    site_zone: IntArray
    site_blocked: BoolArray
    site_power_budget: FloatArray
    site_energy_price: FloatArray
    site_capex_unit_hour: FloatArray
    site_is_capex: BoolArray
    site_cpu_hour: FloatArray
    site_memory_gib_hour: FloatArray
    pools: tuple[NodePool, ...]
    row_site: IntArray
    row_nodes: IntArray
    row_cpu: FloatArray
    row_memory: FloatArray
    row_node_watts: FloatArray
    images: tuple[str, ...]
    row_image: IntArray
    # Accelerator entries of each pool, padded to the widest pool: (rows × entries).
    row_acc_count: FloatArray
    row_acc_watts: FloatArray
    row_acc_price: FloatArray  # opex money per accelerator-hour (0 when not priced)
    row_acc_units: FloatArray  # capacity units per accelerator

    def take_entry(self, table: FloatArray, rows: IntArray, entry: IntArray) -> FloatArray:
        """``table[row, entry]`` per candidate, 0 where ``entry`` is -1 (CPU execution)."""
        safe = np.maximum(entry, 0)
        return np.asarray(np.where(entry >= 0, table[rows, safe], 0.0), dtype=np.float64)

    @property
    def n_sites(self) -> int:
        return len(self.sites)

    @property
    def n_rows(self) -> int:
        return len(self.pools)

    def site_of_row(self, row: int) -> Site:
        return self.sites[int(self.row_site[row])]

    def row_label(self, row: int) -> str:
        return f"{self.site_of_row(row).name}/{self.pools[row].name}"

    def rows_of_site(self, site: int) -> IntArray:
        return np.flatnonzero(self.row_site == site)


def capacity_units(cpu: float, memory: float, accelerators: dict[str, float]) -> float:
    """Capacity units of a bundle of resources (see the weights above)."""
    units = cpu + memory / GIB * MEMORY_UNITS_PER_GIB
    for kind, count in accelerators.items():
        units += ACCELERATOR_UNITS.get(kind, ACCELERATOR_UNITS["gpu"]) * count
    return units


def pool_units(pool: NodePool) -> float:
    """Capacity units of one node of a pool."""
    accelerators: dict[str, float] = {}
    for acc in pool.accelerators:
        accelerators[acc.kind] = accelerators.get(acc.kind, 0.0) + acc.count
    return capacity_units(pool.cpu, float(pool.memory), accelerators)


def _capex_unit_hour(site: Site) -> float:
    """Money per capacity-unit-hour of an owned site (0 for opex sites)."""
    capex = site.spec.cost.capex
    if capex is None:
        return 0.0
    monthly = capex.amount / capex.amortisation_months + capex.monthly_overhead
    units = sum(pool_units(pool) * pool.count for pool in site.spec.node_pools)
    return monthly / HOURS_PER_MONTH / units if units > 0 else 0.0


def build_index(fleet: Fleet) -> FleetIndex:
    sites = tuple(fleet.sites[name] for name in sorted(fleet.sites))
    zones = tuple(sorted({s.spec.residency_zone for s in sites} | _source_zones(fleet)))
    zone_code = {z: i for i, z in enumerate(zones)}
    pools: list[NodePool] = []
    row_site: list[int] = []
    for i, site in enumerate(sites):
        for pool in sorted(site.spec.node_pools, key=lambda p: p.name):
            pools.append(pool)
            row_site.append(i)
    images = tuple(sorted({p.node_image for p in pools}))
    image_code = {name: i for i, name in enumerate(images)}
    width = max([len(p.accelerators) for p in pools] + [1])
    acc = np.zeros((4, len(pools), width), dtype=np.float64)
    for row, pool in enumerate(pools):
        opex = sites[row_site[row]].spec.cost.opex
        for e, a in enumerate(pool.accelerators):
            acc[0, row, e] = a.count
            acc[1, row, e] = a.watts
            acc[2, row, e] = opex.accelerator_hour.get(a.model, 0.0) if opex else 0.0
            acc[3, row, e] = ACCELERATOR_UNITS.get(a.kind, ACCELERATOR_UNITS["gpu"])
    return FleetIndex(
        sites=sites,
        site_index={s.name: i for i, s in enumerate(sites)},
        zones=zones,
        site_zone=np.array([zone_code[s.spec.residency_zone] for s in sites], dtype=np.int64),
        site_blocked=np.array([s.spec.cordoned or s.spec.draining for s in sites], dtype=bool),
        site_power_budget=np.array(
            [np.inf if s.spec.power_budget is None else s.spec.power_budget for s in sites],
            dtype=np.float64,
        ),
        site_energy_price=np.array([s.spec.cost.energy_price for s in sites], dtype=np.float64),
        site_capex_unit_hour=np.array([_capex_unit_hour(s) for s in sites], dtype=np.float64),
        site_is_capex=np.array([s.spec.cost.capex is not None for s in sites], dtype=bool),
        site_cpu_hour=np.array(
            [s.spec.cost.opex.cpu_hour if s.spec.cost.opex else 0.0 for s in sites]
        ),
        site_memory_gib_hour=np.array(
            [s.spec.cost.opex.memory_gib_hour if s.spec.cost.opex else 0.0 for s in sites]
        ),
        pools=tuple(pools),
        row_site=np.array(row_site, dtype=np.int64),
        row_nodes=np.array([p.count for p in pools], dtype=np.int64),
        row_cpu=np.array([p.cpu for p in pools], dtype=np.float64),
        row_memory=np.array([p.memory for p in pools], dtype=np.float64),
        row_node_watts=np.array([p.watts for p in pools], dtype=np.float64),
        images=images,
        row_image=np.array([image_code[p.node_image] for p in pools], dtype=np.int64),
        row_acc_count=acc[0],
        row_acc_watts=acc[1],
        row_acc_price=acc[2],
        row_acc_units=acc[3],
    )


def _source_zones(fleet: Fleet) -> set[str]:
    return {ds.spec.residency_zone for ds in fleet.data_sources.values() if ds.spec.residency_zone}
