"""The CEL variables a policy rule sees: ``workload``, ``site``, ``pool`` and ``profile``.

Each variable is a map built field by field, and only the fields a rule
actually reads are built (converting Python values into CEL values dominates
evaluation time). Units follow DESIGN.md: durations are CEL ``duration``s,
sizes are integer bytes, money, rates, power and fractions are doubles.
Optional fields are *absent* (not null) when unset, so rules test them with
``has(workload.accelerator)``. docs/policy.md documents every field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Final

from fleetplane.model.infrastructure import NodePool, Site
from fleetplane.model.workload import PERCENTILES
from fleetplane.placement._internal.workload_view import ProfileView, WorkloadView


class _Absent:
    """Marker for an optional field that is not set: the key is left out of the map."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()

Getter = Callable[[Any], Any]


def _duration(seconds: float | None) -> timedelta | _Absent:
    return ABSENT if seconds is None else timedelta(seconds=seconds)


def _present(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not ABSENT}


def _slo(view: WorkloadView) -> dict[str, Any]:
    slo = view.workload.spec.slo
    out: dict[str, Any] = {}
    if slo.latency is not None:
        for key in PERCENTILES:
            out[key] = _duration(getattr(slo.latency, key))
    out["throughput"] = ABSENT if slo.throughput is None else float(slo.throughput)
    out["availability"] = ABSENT if slo.availability is None else float(slo.availability)
    out["deadline"] = _duration(slo.deadline)
    return _present(out)


def _latency_budget(view: WorkloadView) -> timedelta | _Absent:
    if not view.targets:
        return ABSENT
    return timedelta(seconds=min(seconds for _, seconds in view.targets))


def _accelerator(view: WorkloadView) -> dict[str, Any] | _Absent:
    request = view.accelerator
    if request is None:
        return ABSENT
    return {
        "kind": request.kind,
        "count": request.count,
        "memory": int(request.memory),
        "models": list(request.models),
    }


def _model(view: WorkloadView) -> dict[str, Any] | _Absent:
    model = view.workload.spec.model
    if model is None:
        return ABSENT
    return {
        "artifact": model.artifact,
        "size": int(model.size),
        "updatesPerDay": model.updates_per_day,
    }


WORKLOAD_FIELDS: Final[dict[str, Getter]] = {
    "name": lambda w: w.name,
    "class": lambda w: w.cls,
    "labels": lambda w: dict(w.workload.metadata.labels),
    "slo": _slo,
    "latencyBudget": _latency_budget,
    "resources": lambda w: {"cpu": float(w.cpu), "memory": int(w.memory)},
    "accelerator": _accelerator,
    "model": _model,
    "demand": lambda w: {
        "rate": float(w.peak_rate),
        "bytesPerSecond": float(sum(s.bytes_per_second for s in w.sources)),
        "sources": [s.name for s in w.sources],
    },
    "residency": lambda w: list(w.workload.spec.residency),
    "replicas": lambda w: {"min": w.min_replicas, "max": w.max_replicas},
    "profiles": lambda w: [p.hardware for p in w.profiles],
    "storageReads": lambda w: int(w.workload.spec.storage.reads),
}


def _location(site: Site) -> dict[str, Any] | _Absent:
    loc = site.spec.location
    if loc is None:
        return ABSENT
    return _present({"lat": loc.lat, "lon": loc.lon, "city": loc.city or ABSENT})


SITE_FIELDS: Final[dict[str, Getter]] = {
    "name": lambda s: s.name,
    "tier": lambda s: s.spec.tier,
    "region": lambda s: s.spec.region,
    "residencyZone": lambda s: s.spec.residency_zone,
    "labels": lambda s: dict(s.metadata.labels),
    "powerBudget": lambda s: ABSENT if s.spec.power_budget is None else float(s.spec.power_budget),
    "energyPrice": lambda s: float(s.spec.cost.energy_price),
    "pricing": lambda s: "capex" if s.spec.cost.capex is not None else "opex",
    "location": _location,
}

POOL_FIELDS: Final[dict[str, Getter]] = {
    "name": lambda p: p.name,
    "nodes": lambda p: int(p.count),
    "cpu": lambda p: float(p.cpu),
    "memory": lambda p: int(p.memory),
    "arch": lambda p: p.arch,
    "nodeImage": lambda p: p.node_image,
    "accelerators": lambda p: [
        {
            "kind": a.kind,
            "model": a.model,
            "count": int(a.count),
            "memory": int(a.memory),
            "watts": float(a.watts),
        }
        for a in p.accelerators
    ],
    "storage": lambda p: [m.media for m in p.storage],
    "watts": lambda p: float(p.watts),
}

PROFILE_FIELDS: Final[dict[str, Getter]] = {
    "hardware": lambda p: p.hardware,
    "accelerated": lambda p: p.accelerator_model is not None,
    "concurrency": lambda p: int(p.spec.concurrency),
    "serviceTime": lambda p: (
        ABSENT
        if p.service is None
        else {"mean": timedelta(seconds=p.service.mean), "cv": float(p.service.cv)}
    ),
    "runtime": lambda p: _duration(p.spec.runtime),
}

VARIABLES: Final[dict[str, dict[str, Getter]]] = {
    "workload": WORKLOAD_FIELDS,
    "site": SITE_FIELDS,
    "pool": POOL_FIELDS,
    "profile": PROFILE_FIELDS,
}


def build(
    variable: str, entity: WorkloadView | Site | NodePool | ProfileView, fields: tuple[str, ...]
) -> dict[str, Any]:
    """The CEL map for one variable with only ``fields`` (absent optional fields left out)."""
    getters = VARIABLES[variable]
    out: dict[str, Any] = {}
    for name in fields:
        value = getters[name](entity)
        if value is not ABSENT:
            out[name] = value
    return out


def freeze(value: Any) -> Any:
    """A hashable twin of a CEL value, used as a cache key."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value
