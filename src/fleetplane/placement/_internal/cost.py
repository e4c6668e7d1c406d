"""The cost model: money per month for one workload on one candidate (pool, profile).

Terms (all per month of 730 hours; a scheduled job's compute and energy only
for the hours it runs — ``schedule.every`` apart, each run its profile's
``runtime`` — since it holds its replicas only then):

* compute — opex: hourly prices × allocated cpu, GiB and accelerators;
  capex: the site's amortised purchase plus overhead, spread over its capacity
  units (fleet_index), times the units a replica occupies. Both, if a site has both.
* energy — the node share a replica occupies (its dominant share of cpu,
  memory or accelerators) × node watts, always on; plus accelerator watts and
  the profile's extra busy power × average utilisation; plus energy per request
  × requests; × the site's energy price.
* egress — bytes from each data source × the price of every link on the path,
  in the direction travelled (local traffic is free).
* model distribution — artifact size × updates per day × 730/24 days × the
  price from the cheapest registry mirror (network.HUB_TIERS) to the site;
  paid once per site, however many replicas run there.

Prefer-rule penalties and the latency weight are not money the fleet pays;
they are kept apart (``CostBreakdown.preference_penalty``) and only enter the
objective the solver minimises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleetplane.model.units import HOURS_PER_MONTH
from fleetplane.placement._internal.fleet_index import (
    GIB,
    MEMORY_UNITS_PER_GIB,
    BoolArray,
    FleetIndex,
    FloatArray,
    IntArray,
)
from fleetplane.placement._internal.workload_view import ProfileView, WorkloadView

DAYS_PER_MONTH = HOURS_PER_MONTH / 24.0
JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class ReplicaRates:
    """Per candidate: what one replica costs and draws (arrays over candidates)."""

    compute: FloatArray  # money/month per replica
    energy_idle: FloatArray  # money/month per replica, always on (node share)
    energy_busy: FloatArray  # money/month per fully busy replica (accelerators, profile power)
    energy_request: FloatArray  # money per request
    node_share: FloatArray  # dominant share of a node one replica takes
    peak_power: FloatArray  # watts per replica at full load (against the power budget)


@dataclass(frozen=True)
class AcceleratorDetail:
    """Per candidate row: the pool's accelerator entry a profile uses (all 0 for CPU)."""

    count: FloatArray  # accelerators of that entry per node
    watts: FloatArray
    price: FloatArray  # opex money per accelerator-hour
    units: FloatArray  # capacity units per accelerator (capex pricing)

    @classmethod
    def of(cls, index: FleetIndex, rows: IntArray, entry: IntArray) -> AcceleratorDetail:
        return cls(
            index.take_entry(index.row_acc_count, rows, entry),
            index.take_entry(index.row_acc_watts, rows, entry),
            index.take_entry(index.row_acc_price, rows, entry),
            index.take_entry(index.row_acc_units, rows, entry),
        )

    def take(self, keep: IntArray | BoolArray) -> AcceleratorDetail:
        return AcceleratorDetail(
            self.count[keep], self.watts[keep], self.price[keep], self.units[keep]
        )


def node_share(
    index: FleetIndex, rows: IntArray, view: WorkloadView, acc: AcceleratorDetail, accelerators: int
) -> FloatArray:
    """Dominant share of one node a replica takes: max of its cpu, memory, accelerator fractions."""
    share = np.maximum(view.cpu / index.row_cpu[rows], view.memory / index.row_memory[rows])
    if accelerators:
        with np.errstate(divide="ignore"):
            share = np.maximum(share, np.where(acc.count > 0, accelerators / acc.count, 1.0))
    return np.asarray(np.minimum(share, 1.0), dtype=np.float64)


def replica_rates(
    index: FleetIndex,
    view: WorkloadView,
    profile: ProfileView,
    rows: IntArray,
    acc: AcceleratorDetail,
) -> ReplicaRates:
    accelerators = view.accelerators_per_replica(profile)
    sites = index.row_site[rows]
    opex = (
        view.cpu * index.site_cpu_hour[sites]
        + view.memory / GIB * index.site_memory_gib_hour[sites]
        + accelerators * acc.price
    )
    units = view.cpu + view.memory / GIB * MEMORY_UNITS_PER_GIB + accelerators * acc.units
    hours = HOURS_PER_MONTH * view.duty(profile)
    compute = (opex + units * index.site_capex_unit_hour[sites]) * hours

    share = node_share(index, rows, view, acc, accelerators)
    price_kwh = index.site_energy_price[sites]
    per_watt_month = hours / 1000.0 * price_kwh
    idle_watts = share * index.row_node_watts[rows]
    busy_watts = accelerators * acc.watts + profile.spec.power
    energy_request = profile.spec.energy_per_request / JOULES_PER_KWH * price_kwh
    return ReplicaRates(
        compute=np.asarray(compute, dtype=np.float64),
        energy_idle=np.asarray(idle_watts * per_watt_month, dtype=np.float64),
        energy_busy=np.asarray(busy_watts * per_watt_month, dtype=np.float64),
        energy_request=np.asarray(energy_request, dtype=np.float64),
        node_share=share,
        peak_power=np.asarray(idle_watts + busy_watts, dtype=np.float64),
    )


def replica_rates_flat(
    index: FleetIndex,
    rows: IntArray,
    acc: AcceleratorDetail,
    cpu: FloatArray,
    memory: FloatArray,
    accelerators: IntArray,
    hours: FloatArray,
    power: FloatArray,
    energy_per_request: FloatArray,
) -> ReplicaRates:
    """:func:`replica_rates` for candidates of many workloads and profiles at once.

    The workload and profile quantities come per candidate; every formula is
    the one of replica_rates, element by element in the same order, so the
    values are identical.
    """
    sites = index.row_site[rows]
    opex = (
        cpu * index.site_cpu_hour[sites]
        + memory / GIB * index.site_memory_gib_hour[sites]
        + accelerators * acc.price
    )
    units = cpu + memory / GIB * MEMORY_UNITS_PER_GIB + accelerators * acc.units
    compute = (opex + units * index.site_capex_unit_hour[sites]) * hours

    share = np.maximum(cpu / index.row_cpu[rows], memory / index.row_memory[rows])
    with np.errstate(divide="ignore", invalid="ignore"):
        by_acc = np.maximum(share, np.where(acc.count > 0, accelerators / acc.count, 1.0))
    share = np.minimum(np.where(accelerators > 0, by_acc, share), 1.0)
    price_kwh = index.site_energy_price[sites]
    per_watt_month = hours / 1000.0 * price_kwh
    idle_watts = share * index.row_node_watts[rows]
    busy_watts = accelerators * acc.watts + power
    energy_request = energy_per_request / JOULES_PER_KWH * price_kwh
    return ReplicaRates(
        compute=np.asarray(compute, dtype=np.float64),
        energy_idle=np.asarray(idle_watts * per_watt_month, dtype=np.float64),
        energy_busy=np.asarray(busy_watts * per_watt_month, dtype=np.float64),
        energy_request=np.asarray(energy_request, dtype=np.float64),
        node_share=np.asarray(share, dtype=np.float64),
        peak_power=np.asarray(idle_watts + busy_watts, dtype=np.float64),
    )


def model_gb_per_month(view: WorkloadView) -> float | None:
    """GB per month of model updates shipped to a site; None without model updates."""
    model = view.workload.spec.model
    if model is None or model.updates_per_day == 0:
        return None
    return float(model.size / 1e9 * model.updates_per_day * DAYS_PER_MONTH)


def model_distribution(view: WorkloadView, hub_price: FloatArray, sites: IntArray) -> FloatArray:
    """Money per month to ship every model update to each site."""
    model = view.workload.spec.model
    if model is None or model.updates_per_day == 0:
        return np.zeros(len(sites))
    gb_per_month = model.size / 1e9 * model.updates_per_day * DAYS_PER_MONTH
    return np.asarray(gb_per_month * hub_price[sites], dtype=np.float64)
