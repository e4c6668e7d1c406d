"""Cross-reference checks: every name a resource mentions must exist in the fleet.

Schema validation looks at one document at a time; these checks look at the
fleet as a whole (a Site's node image, a Link's ends, a Workload's data
sources, ...). Each problem points at the exact field that holds the
dangling name and suggests the closest existing one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from fleetplane.errors import Problem, SourcePosition, did_you_mean
from fleetplane.model.fleet import Fleet

Loc = tuple[str | int, ...]
# (kind, name, field location) → where that field is written, when known.
Locate = Callable[[str, str, Loc], SourcePosition | None]

_SHOWN_NAMES = 5


def render_path(loc: Loc) -> str:
    """``("spec", "nodePools", 0, "memory")`` → ``spec.nodePools[0].memory``."""
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def check_references(
    fleet: Fleet,
    *,
    locate: Locate | None = None,
    invalid_names: Mapping[str, Collection[str]] | None = None,
) -> list[Problem]:
    """Every dangling name, isolated data-source site and repeated demand source.

    ``locate`` gives field positions (the loader's source map); without it,
    problems point at the resource. ``invalid_names`` are resources that were
    declared but failed validation: they are already reported, so names
    pointing at them are not reported again.
    """
    checker = _Checker(fleet, locate, invalid_names or {})
    checker.sites()
    checker.links()
    checker.data_sources()
    checker.workloads()
    checker.scenarios()
    checker.placements()
    checker.connectivity()
    return checker.problems


class _Checker:
    def __init__(
        self,
        fleet: Fleet,
        locate: Locate | None,
        invalid: Mapping[str, Collection[str]],
    ) -> None:
        self.fleet = fleet
        self.locate = locate
        self.invalid = invalid
        self.problems: list[Problem] = []
        # One misspelt name may be referenced thousands of times in a big fleet:
        # its did-you-mean search over every known name runs once.
        self._hints: dict[tuple[str, str], str] = {}

    def sites(self) -> None:
        for site in self.fleet.sites.values():
            for i, pool in enumerate(site.spec.node_pools):
                loc: Loc = ("spec", "nodePools", i, "nodeImage")
                self.reference("Site", site.name, loc, "NodeImage", pool.node_image)

    def links(self) -> None:
        for link in self.fleet.links.values():
            self.reference("Link", link.name, ("spec", "a"), "Site", link.spec.a)
            self.reference("Link", link.name, ("spec", "b"), "Site", link.spec.b)

    def data_sources(self) -> None:
        for source in self.fleet.data_sources.values():
            self.reference("DataSource", source.name, ("spec", "site"), "Site", source.spec.site)

    def workloads(self) -> None:
        for workload in self.fleet.workloads.values():
            first_at: dict[str, int] = {}
            for i, demand in enumerate(workload.spec.demand):
                loc: Loc = ("spec", "demand", i, "source")
                self.reference("Workload", workload.name, loc, "DataSource", demand.source)
                if demand.source in first_at:
                    self.add(
                        "Workload",
                        workload.name,
                        loc,
                        f"DataSource {demand.source!r} appears twice in demand "
                        f"(also demand[{first_at[demand.source]}])",
                        "merge the entries into one with the combined share",
                    )
                else:
                    first_at[demand.source] = i

    def scenarios(self) -> None:
        for scenario in self.fleet.scenarios.values():
            name = scenario.name
            for i, traffic in enumerate(scenario.spec.traffic):
                loc: Loc = ("spec", "traffic", i, "source")
                self.reference("Scenario", name, loc, "DataSource", traffic.source)
            for i, fault in enumerate(scenario.spec.faults):
                targets = (("site", "Site", fault.site), ("peer", "Site", fault.peer))
                for key, kind, target in (*targets, ("link", "Link", fault.link)):
                    if target is not None:
                        self.reference("Scenario", name, ("spec", "faults", i, key), kind, target)

    def placements(self) -> None:
        for placement in self.fleet.placements.values():
            for i, planned in enumerate(placement.spec.workloads):
                for j, assignment in enumerate(planned.assignments):
                    base: Loc = ("spec", "workloads", i, "assignments", j)
                    site_ok = self.reference(
                        "Placement", placement.name, (*base, "site"), "Site", assignment.site
                    )
                    site = self.fleet.sites.get(assignment.site)
                    if not site_ok or site is None:
                        continue
                    pools = [pool.name for pool in site.spec.node_pools]
                    if assignment.pool not in pools:
                        self.add(
                            "Placement",
                            placement.name,
                            (*base, "pool"),
                            f"site {site.name!r} has no node pool {assignment.pool!r}",
                            _hint(assignment.pool, pools, f"node pools of {site.name!r}"),
                        )

    def connectivity(self) -> None:
        """A data source's requests can only be served elsewhere over a Link.

        With one site there is nowhere else to go, so isolation is fine; with
        several, a data-source site without any Link is almost always a Link
        that was forgotten.
        """
        sites = self.fleet.sites
        if len(sites) < 2 or self.invalid.get("Site") or self.invalid.get("Link"):
            return
        linked = {end for link in self.fleet.links.values() for end in (link.spec.a, link.spec.b)}
        if not linked <= sites.keys():
            # A Link end is misspelt (reported already): which site it meant is unknown.
            return
        sources_at: dict[str, list[str]] = {}
        for source in self.fleet.data_sources.values():
            if source.spec.site in sites and source.spec.site not in linked:
                sources_at.setdefault(source.spec.site, []).append(source.name)
        neighbour = _Neighbours(self.fleet, linked)
        for site_name, source_names in sources_at.items():
            names = ", ".join(repr(n) for n in source_names)
            noun = "DataSource" if len(source_names) == 1 else "DataSources"
            self.add(
                "Site",
                site_name,
                ("metadata", "name"),
                f"site {site_name!r} has no Link to any other site, so requests from "
                f"{noun} {names} cannot reach the other {len(sites) - 1} sites",
                f"add a Link with a: {site_name} and b: {neighbour.of(site_name)}",
            )

    def reference(self, kind: str, name: str, loc: Loc, target_kind: str, target: str) -> bool:
        """Report ``target`` when no ``target_kind`` of that name exists; True when it does."""
        existing: dict[str, Any] = self.fleet.collection(target_kind)
        if target in existing or target in self.invalid.get(target_kind, ()):
            return True
        hint = self._hints.get((target_kind, target))
        if hint is None:
            hint = _hint(target, list(existing), f"{target_kind}s")
            self._hints[(target_kind, target)] = hint
        self.add(
            kind, name, loc, f"{kind} {name!r} refers to unknown {target_kind} {target!r}", hint
        )
        return False

    def add(self, kind: str, name: str, loc: Loc, message: str, hint: str | None) -> None:
        position = self.locate(kind, name, loc) if self.locate else None
        if position is None:
            position = self.fleet.position_of(kind, name)
        self.problems.append(Problem(message, position, field_path=render_path(loc), hint=hint))


def _hint(name: str, known: list[str], what: str) -> str:
    suggestion = did_you_mean(name, known)
    if suggestion:
        return suggestion
    if not known:
        return f"no {what} are defined"
    shown = ", ".join(known[:_SHOWN_NAMES])
    more = f" and {len(known) - _SHOWN_NAMES} more" if len(known) > _SHOWN_NAMES else ""
    return f"defined {what}: {shown}{more}"


class _Neighbours:
    """A sensible other end for a missing Link: a linked, non-edge site of the same region first.

    Candidates are ranked once (linked before unlinked, non-edge before edge,
    then fleet order), so each isolated site finds its neighbour without a
    pass over every site: a fleet with thousands of isolated sites stays linear.
    """

    def __init__(self, fleet: Fleet, linked: set[str]) -> None:
        self._fleet = fleet
        self._ranked = sorted(
            fleet.sites.values(), key=lambda s: (s.name not in linked, s.spec.tier == "edge")
        )
        # The best two per region: one of them is not the site asking.
        self._by_region: dict[Any, list[Any]] = {}
        for site in self._ranked:
            best = self._by_region.setdefault(site.spec.region, [])
            if len(best) < 2:
                best.append(site)

    def of(self, site_name: str) -> str:
        region = self._fleet.sites[site_name].spec.region
        for site in self._by_region.get(region, []):
            if site.name != site_name:
                return str(site.name)
        # Alone in its region: every other site is in another one.
        return next(str(s.name) for s in self._ranked if s.name != site_name)
