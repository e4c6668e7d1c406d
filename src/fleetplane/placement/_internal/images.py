"""NodeImage compatibility: CPU arch, container runtime and driver version ranges.

Requirements are parsed once per workload with ``packaging`` (PEP 440
specifiers such as ``>=12.0,<13``), so a malformed range is reported as an
input error naming the workload field, and comparing versions is exact
(``12.10`` is newer than ``12.9``, which string comparison gets wrong).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from fleetplane.errors import Problem, ValidationError
from fleetplane.model.fleet import Fleet
from fleetplane.model.infrastructure import NodeImage
from fleetplane.placement._internal.fleet_index import BoolArray, FleetIndex
from fleetplane.placement._internal.workload_view import WorkloadView

_RUNTIME_SPLIT = ("==", "!=", ">=", "<=", "~=", ">", "<", "===")


@dataclass(frozen=True)
class RuntimeRequirement:
    """What a workload needs from a node image, parsed."""

    arches: tuple[str, ...]
    runtime_name: str | None
    runtime_versions: SpecifierSet | None
    drivers: tuple[tuple[str, SpecifierSet], ...]
    # Rendering specifiers is slow and a workload's requirement is looked up
    # for every profile and stage, so the hashable form is made once.
    key: tuple[object, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        key = (
            self.arches,
            self.runtime_name,
            str(self.runtime_versions) if self.runtime_versions is not None else None,
            tuple((name, str(spec)) for name, spec in self.drivers),
        )
        object.__setattr__(self, "key", key)


def _specifier(text: str, workload: str, field: str, fleet: Fleet) -> SpecifierSet:
    try:
        spec = SpecifierSet(text)
    except InvalidSpecifier:
        spec = None
    if spec is None or (text.strip() and not len(spec)):
        raise ValidationError(
            Problem(
                f"workload {workload!r}: {text!r} is not a version range",
                fleet.position_of("Workload", workload),
                field,
                hint="write a PEP 440 specifier such as '>=12.0' or '>=12.0,<13'",
            )
        )
    return spec


def parse_requirement(view: WorkloadView, fleet: Fleet) -> RuntimeRequirement:
    runtime = view.workload.spec.runtime
    name: str | None = None
    versions: SpecifierSet | None = None
    if runtime.container_runtime:
        text = runtime.container_runtime.strip()
        cut = min((text.find(op) for op in _RUNTIME_SPLIT if op in text), default=-1)
        if cut < 0:
            name = text
        else:
            name = text[:cut].strip()
            versions = _specifier(text[cut:], view.name, "spec.runtime.containerRuntime", fleet)
    drivers = tuple(
        (driver, _specifier(spec, view.name, f"spec.runtime.drivers.{driver}", fleet))
        for driver, spec in sorted(runtime.drivers.items())
    )
    return RuntimeRequirement(tuple(runtime.arches), name, versions, drivers)


def _version_in(version: str, spec: SpecifierSet) -> bool | None:
    try:
        return spec.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return None


def check_image(
    image: NodeImage | None,
    arch: str,
    requirement: RuntimeRequirement,
    accelerator_model: str | None,
) -> str | None:
    """Why a pool with this image and arch cannot run the workload, or None when it can."""
    if requirement.arches and arch not in requirement.arches:
        return f"pool is {arch}, workload runs on {', '.join(requirement.arches)}"
    if image is None:
        return "pool's node image is not defined in the fleet"
    spec = image.spec
    if arch not in spec.arches:
        return f"node image {image.name} is not built for {arch}"
    if requirement.runtime_name is not None:
        have = spec.container_runtime
        if have.name != requirement.runtime_name:
            needed = requirement.runtime_name
            return f"node image {image.name} runs {have.name}, workload needs {needed}"
        if requirement.runtime_versions is not None:
            ok = _version_in(have.version, requirement.runtime_versions)
            if not ok:
                return (
                    f"node image {image.name} has {have.name} {have.version}, "
                    f"workload needs {requirement.runtime_versions}"
                )
    for driver, wanted in requirement.drivers:
        found = spec.drivers.get(driver)
        if found is None:
            return f"node image {image.name} has no {driver} driver (needs {wanted})"
        version: str = found
        ok = _version_in(version, wanted)
        if ok is None:
            return f"node image {image.name}: {driver} version {version!r} is not a version"
        if not ok:
            return f"node image {image.name} has {driver} {version}, workload needs {wanted}"
    if accelerator_model is not None and accelerator_model not in spec.accelerators:
        return f"node image {image.name} does not support {accelerator_model}"
    return None


class ImageMatcher:
    """Image checks per distinct (image, arch) pair, spread over rows; cached per requirement."""

    def __init__(self, index: FleetIndex, fleet: Fleet) -> None:
        pairs: dict[tuple[str, str], int] = {}
        codes = []
        for pool in index.pools:
            key = (pool.node_image, pool.arch)
            if key not in pairs:
                pairs[key] = len(pairs)
            codes.append(pairs[key])
        self._pairs = list(pairs)
        self._row_code = np.array(codes, dtype=np.int64)
        self._images = fleet.node_images
        self._cache: dict[tuple[object, ...], BoolArray] = {}

    def check(
        self, image: str, arch: str, req: RuntimeRequirement, model: str | None
    ) -> str | None:
        return check_image(self._images.get(image), arch, req, model)

    def ok(self, requirement: RuntimeRequirement, accelerator_model: str | None) -> BoolArray:
        key = (*requirement.key, accelerator_model)
        cached = self._cache.get(key)
        if cached is None:
            per_pair = np.array(
                [
                    self.check(image, arch, requirement, accelerator_model) is None
                    for image, arch in self._pairs
                ],
                dtype=bool,
            )
            cached = per_pair[self._row_code]
            self._cache[key] = cached
        return cached
