"""Agent tests: a real agent port on loopback TLS; agents as real processes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import AgentPort


@pytest.fixture
def agent_port(tmp_path: Path) -> Iterator[AgentPort]:
    port = AgentPort(tmp_path)
    port.add_site("store-1")
    port.start()
    yield port
    if port._server is not None:
        port.stop()
    port.plane.close()


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits MLP built once, as an artifact build would."""
    from fleetplane.workloads.mlp import train

    path = tmp_path_factory.mktemp("model") / "digits.npz"
    model, accuracy = train()
    assert accuracy > 0.9
    model.save(path)
    return path
