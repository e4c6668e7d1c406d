"""The agent's release cache keeps each workload's current and previous release, nothing older."""

from __future__ import annotations

from pathlib import Path

from fleetplane.agent.artifacts import ArtifactCache


def _digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def _installed(cache: ArtifactCache, n: int) -> None:
    cache.path(_digest(n)).mkdir()


def test_current_and_previous_are_kept_older_ones_and_dropped_workloads_go(tmp_path: Path
                                                                           ) -> None:
    cache = ArtifactCache(tmp_path / "artifacts")
    for n in (1, 2, 3, 9):
        _installed(cache, n)
    for n in (1, 2, 3):
        cache.record_use("web", _digest(n))
    cache.record_use("batch", _digest(9))
    cache.collect({_digest(3), _digest(9)}, {"web", "batch"})
    assert {p.name for p in cache.releases.iterdir()} == {_digest(3)[7:], _digest(2)[7:],
                                                          _digest(9)[7:]}
    # The history survives a restart of the agent; a workload no longer desired loses its releases.
    again = ArtifactCache(tmp_path / "artifacts")
    assert again.history["web"] == [_digest(3), _digest(2)]
    again.collect({_digest(3)}, {"web"})
    assert again.installed(_digest(9)) is None and again.installed(_digest(2)) is not None


def test_a_release_being_installed_for_the_desired_state_is_not_collected(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "artifacts")
    _installed(cache, 5)
    cache.collect({_digest(5)}, {"web"})
    assert cache.installed(_digest(5)) is not None


def test_half_done_downloads_are_removed_at_start(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "artifacts")
    (cache.staging / "abc-123.tar.gz").write_bytes(b"partial")
    assert list(ArtifactCache(tmp_path / "artifacts").staging.iterdir()) == []
