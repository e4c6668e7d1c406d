"""Everything the stages share for one plan: the indexed fleet, network, matchers and rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fleetplane.model.fleet import Fleet
from fleetplane.model.policy import Objective
from fleetplane.placement._internal.cost import AcceleratorDetail
from fleetplane.placement._internal.fleet_index import (
    BoolArray,
    FleetIndex,
    IntArray,
    build_index,
)
from fleetplane.placement._internal.hardware import HardwareMatcher
from fleetplane.placement._internal.images import (
    ImageMatcher,
    RuntimeRequirement,
    parse_requirement,
)
from fleetplane.placement._internal.network import Network
from fleetplane.placement._internal.rules import CompiledPolicy, RuleEvaluator
from fleetplane.placement._internal.workload_view import ProfileView, WorkloadView, view_workload


@dataclass(frozen=True)
class StaticRows:
    """Rows passing the static stages for one requirement signature, with accelerator details."""

    rows: IntArray
    entry: IntArray
    acc: AcceleratorDetail
    # Per-row arrays derived from ``rows`` by the stages that read them (cached
    # once per signature; a take() starts empty).
    memo: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def take(self, keep: IntArray | BoolArray) -> StaticRows:
        return StaticRows(self.rows[keep], self.entry[keep], self.acc.take(keep))


def failure_domains(index: FleetIndex, key: str) -> tuple[tuple[str, ...], IntArray]:
    """Domain names and each site's domain code.

    ``site`` makes every site its own domain. Any other key is a site label;
    ``region`` falls back to the site's region field, and a site without the
    label is a domain of its own (it shares a fate with no other site we know of).
    """
    names: list[str] = []
    for site in index.sites:
        if key == "site":
            names.append(site.name)
        elif key in site.metadata.labels:
            names.append(f"{key}={site.metadata.labels[key]}")
        elif key == "region":
            names.append(f"region={site.spec.region}")
        else:
            names.append(f"site={site.name}")
    unique = tuple(sorted(set(names)))
    code = {n: i for i, n in enumerate(unique)}
    return unique, np.array([code[n] for n in names], dtype=np.int64)


@dataclass
class PlanContext:
    fleet: Fleet
    index: FleetIndex
    network: Network
    policy: CompiledPolicy
    rules: RuleEvaluator
    hardware: HardwareMatcher
    images: ImageMatcher
    objective: Objective
    domain_names: tuple[str, ...]
    site_domain: IntArray
    row_zone: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    row_budget: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _views: dict[str, WorkloadView] = field(default_factory=dict)
    _requirements: dict[str, RuntimeRequirement] = field(default_factory=dict)
    _parsed: dict[tuple[object, ...], RuntimeRequirement] = field(default_factory=dict)
    _zone_rows: dict[tuple[int, ...], BoolArray] = field(default_factory=dict)
    _media_rows: dict[tuple[str, ...], tuple[BoolArray, np.ndarray]] = field(default_factory=dict)
    _static: dict[tuple[object, ...], StaticRows] = field(default_factory=dict)
    _model_rows: BoolArray | None = None

    @classmethod
    def build(cls, fleet: Fleet, policy: CompiledPolicy, *, cel_cache: bool = True) -> PlanContext:
        index = build_index(fleet)
        names, codes = failure_domains(index, policy.resource.spec.failure_domain)
        return cls(
            fleet=fleet,
            index=index,
            network=Network(fleet, index),
            policy=policy,
            rules=RuleEvaluator(index, policy, cache=cel_cache),
            hardware=HardwareMatcher(index),
            images=ImageMatcher(index, fleet),
            objective=policy.resource.spec.objective,
            domain_names=names,
            site_domain=codes,
            row_zone=index.site_zone[index.row_site],
            row_budget=index.site_power_budget[index.row_site],
        )

    def view(self, name: str) -> WorkloadView:
        found = self._views.get(name)
        if found is None:
            found = view_workload(self.fleet.workloads[name], self.fleet, self.index)
            self._views[name] = found
        return found

    def requirement(self, view: WorkloadView) -> RuntimeRequirement:
        found = self._requirements.get(view.name)
        if found is None:
            # Parsing version ranges (packaging) takes ~0.1 ms, and a large fleet
            # repeats a few requirement texts: parsed once per text. A text
            # that does not parse raises for each workload, naming it.
            runtime = view.workload.spec.runtime
            text = (
                tuple(runtime.arches),
                runtime.container_runtime,
                tuple(sorted(runtime.drivers.items())),
            )
            found = self._parsed.get(text)
            if found is None:
                found = self._parsed[text] = parse_requirement(view, self.fleet)
            self._requirements[view.name] = found
        return found

    def rows_in_zones(self, zones: tuple[int, ...]) -> BoolArray:
        """Rows whose site is in any of the zones (cached: few distinct zone sets exist)."""
        found = self._zone_rows.get(zones)
        if found is None:
            site_ok = np.isin(self.index.site_zone, np.array(zones, dtype=np.int64))
            found = site_ok[self.index.row_site]
            self._zone_rows[zones] = found
        return found

    def storage_rows(self, media: tuple[str, ...]) -> tuple[BoolArray, np.ndarray]:
        """Per row: has an acceptable medium, and the fastest acceptable read latency."""
        found = self._media_rows.get(media)
        if found is None:
            latency = np.full(self.index.n_rows, np.inf)
            for row, pool in enumerate(self.index.pools):
                for m in pool.storage:
                    if not media or m.media in media:
                        latency[row] = min(latency[row], m.read_latency)
            found = (np.isfinite(latency), latency)
            self._media_rows[media] = found
        return found

    def static_key(self, view: WorkloadView, profile: ProfileView) -> tuple[object, ...]:
        """Everything the site-independent-of-load stages read, as a hashable key.

        Not kept per (workload, profile): screening asks once per profile, and
        49,000 kept keys (~400,000 tuples) alone would set off a full
        collection of the cyclic garbage collector over the whole fleet (~1 s).
        """
        request = view.accelerator
        storage = view.workload.spec.storage
        return (
            tuple(view.workload.spec.residency),
            view.is_job,
            tuple(sorted({s.zone for s in view.sources})),
            profile.hardware,
            None
            if request is None
            else (request.kind, request.count, request.memory, tuple(request.models)),
            self.requirement(view).key,
            (storage.reads > 0, tuple(sorted(storage.media))),
        )

    def static_rows(
        self,
        view: WorkloadView,
        profile: ProfileView,
        compute: Callable[[], tuple[IntArray, IntArray]],
    ) -> StaticRows:
        """Rows (with accelerator details) passing the static stages, cached by ``static_key``.

        Generated and real fleets alike repeat a few workload shapes many
        times, so most workloads find their static rows already computed.
        """
        key = self.static_key(view, profile)
        found = self._static.get(key)
        if found is None:
            rows, entry = compute()
            found = StaticRows(rows, entry, AcceleratorDetail.of(self.index, rows, entry))
            self._static[key] = found
        return found

    def model_rows(self) -> BoolArray:
        """Rows a model registry mirror can reach (model distribution needs a path)."""
        if self._model_rows is None:
            self._model_rows = np.isfinite(self.network.hub_price())[self.index.row_site]
        return self._model_rows
