"""What the runtime is handed: a workload only once its release and secrets are in place."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from fleetplane.agent.delivery import WorkloadDelivery
from fleetplane.agent.secrets import SecretFiles
from fleetplane.model.desired_state import SiteDesiredStateSpec
from fleetplane.model.infrastructure import WorkloadState

DIGEST_1 = "sha256:" + "1" * 64
DIGEST_2 = "sha256:" + "2" * 64


def _item(name: str, digest: str | None = None, secrets: list[str] | None = None
          ) -> dict[str, Any]:
    item: dict[str, Any] = {
        "workload": name, "workloadClass": "inference", "pool": "cpu", "profile": "cpu",
        "replicas": 1, "resources": {"cpu": 1, "memory": "1Gi"}, "env": {"A": "1"},
        "secrets": secrets or [],
    }
    if digest:
        item["artifacts"] = [{"name": name, "digest": digest, "size": 10}]
    return item


def _spec(*items: dict[str, Any]) -> SiteDesiredStateSpec:
    return SiteDesiredStateSpec.model_validate({"site": "s", "revision": 1,
                                                "workloads": list(items)})


def _delivery(tmp_path: Path) -> WorkloadDelivery:
    return WorkloadDelivery(tmp_path, "https://server", lambda: None)


def test_a_workload_without_artifacts_or_secrets_is_handed_over_unchanged(tmp_path: Path
                                                                         ) -> None:
    spec = _spec(_item("plain"))
    assert _delivery(tmp_path).prepare(spec, None) == spec


def test_an_installed_release_and_its_secrets_are_named_in_the_environment(tmp_path: Path
                                                                          ) -> None:
    delivery = _delivery(tmp_path)
    delivery.cache.path(DIGEST_1).mkdir()
    delivery.secrets.write("web", {"db": {"password": "pw"}})
    (handed,) = delivery.prepare(_spec(_item("web", DIGEST_1, ["db"])), None).workloads
    assert handed.env == {"A": "1",
                          "FLEETPLANE_ARTIFACT_DIR": str(delivery.cache.path(DIGEST_1)),
                          "FLEETPLANE_SECRETS_DIR": str(tmp_path / "secrets" / "web")}


def test_a_missing_release_holds_the_workload_back_or_keeps_the_previous_one(tmp_path: Path
                                                                            ) -> None:
    delivery = _delivery(tmp_path)
    assert delivery.prepare(_spec(_item("web", DIGEST_1)), None).workloads == []
    (state,) = delivery.annotate([WorkloadState(workload="web", replicas=1)])
    assert state.state == "Pending" and "ArtifactUnavailable" in (state.message or "")

    delivery.cache.path(DIGEST_1).mkdir()
    (first,) = delivery.prepare(_spec(_item("web", DIGEST_1)), None).workloads
    # Release 2 is not here yet: release 1 keeps running, also after an agent restart.
    (still,) = _delivery(tmp_path).prepare(_spec(_item("web", DIGEST_2)), None).workloads
    assert still == first


def test_secret_files_are_private_and_hold_exactly_the_current_keys(tmp_path: Path) -> None:
    files = SecretFiles(tmp_path / "secrets")
    files.write("web", {"db": {"user": "u", "password": "p"}, "old": {"k": "v"}})
    files.write("web", {"db": {"password": "p2"}})
    folder = tmp_path / "secrets" / "web" / "db"
    assert sorted(p.name for p in folder.iterdir()) == ["password"]
    assert (folder / "password").read_text() == "p2"
    assert stat.S_IMODE((folder / "password").stat().st_mode) == 0o600
    for directory in (tmp_path / "secrets", tmp_path / "secrets" / "web", folder):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert not (tmp_path / "secrets" / "web" / "old").exists()
    files.keep_only(set())
    assert not (tmp_path / "secrets" / "web").exists()
