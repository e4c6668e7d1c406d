"""Invariants over random small scenarios (hypothesis): what must hold whatever the input."""

from __future__ import annotations

from typing import Any

import numpy as np
import simfleet as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetplane.sim.build import build_model
from fleetplane.sim.engine import DROPPED, EXPIRED, LATE, LOST, OK, prepare, run_replication

FAULTS = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["siteDown", "partition", "linkDegraded"]),
            "at": st.integers(0, 100).map(lambda s: f"{s}s"),
            "duration": st.integers(1, 60).map(lambda s: f"{s}s"),
        }
    ),
    max_size=3,
)


def fault(spec: dict[str, Any], target: str) -> dict[str, Any]:
    if spec["type"] == "siteDown":
        return {**spec, "site": target}
    if spec["type"] == "partition":
        return {**spec, "site": "a", "peer": target}
    return {**spec, "link": f"a-{target}", "latencyFactor": 2.0, "extraLoss": "1%"}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.floats(5.0, 400.0),
    servers=st.integers(1, 4),
    cv=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    timeout=st.sampled_from(["50ms", "300ms", "5s"]),
    routing=st.sampled_from(["shares", "nearest", "leastLoaded"]),
    queues=st.sampled_from(["shared", "perReplica"]),
    propagation=st.booleans(),
    failover=st.booleans(),
    share=st.sampled_from([1.0, 0.5]),
    faults=FAULTS,
    targets=st.lists(st.sampled_from(["b", "c"]), min_size=3, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_request_is_accounted_for_and_queues_behave(
    rate: float,
    servers: int,
    cv: float,
    timeout: str,
    routing: str,
    queues: str,
    propagation: bool,
    failover: bool,
    share: float,
    faults: list[dict[str, Any]],
    targets: list[str],
    seed: int,
) -> None:
    fleet = sf.failover_fleet(rate=rate, servers=servers)
    fleet.workloads["w"].spec.profiles[0].service_time.cv = cv  # type: ignore[union-attr]
    placement = sf.failover_placement(shares=(share, 1.0 - share))
    placement.spec.workloads[0].assignments[0].replicas = 2
    scenario = sf.scenario(
        duration="2m",
        timeout=timeout,
        detectionDelay="3s",
        routing=routing,
        replicaQueues=queues,
        deadlinePropagation=propagation,
        failover=failover,
        faults=[fault(f, t) for f, t in zip(faults, targets, strict=False)],
        seed=seed,
    )
    prep = prepare(build_model(fleet, placement, scenario))
    req = run_replication(prep, np.random.SeedSequence(seed))
    # One outcome each, from the known set.
    assert set(np.unique(req.outcome)) <= {OK, LATE, LOST, EXPIRED, DROPPED}
    # What the client saw never exceeds its timeout; dropped requests have no latency.
    limit = scenario.spec.timeout
    answered = req.outcome != DROPPED
    assert np.all(req.latency[answered] <= limit + 1e-12)
    assert np.all(np.isnan(req.latency[~answered]))
    assert np.all((req.queue >= 0) | (req.outcome == DROPPED) | (req.outcome == LOST))
    served = (req.outcome == OK) | (req.outcome == LATE)
    assert np.all(req.start[served] >= req.arrival[served])
    assert np.all(req.arrival >= req.dispatch)
    for q, queue in enumerate(prep.model.queues):
        mine = np.flatnonzero(served & (req.queue == q))
        order = mine[np.argsort(req.arrival[mine], kind="stable")]
        # FIFO: service starts in order of arrival...
        assert np.all(np.diff(req.start[order]) >= 0)
        # ...and never more requests in service than servers.
        starts, ends = req.start[mine], req.start[mine] + req.service[mine]
        events = np.concatenate([starts, ends])
        steps = np.concatenate([np.ones_like(starts), -np.ones_like(ends)])
        busy = np.cumsum(steps[np.lexsort((steps, events))])
        assert busy.max(initial=0) <= queue.servers
    # Same seed, same requests.
    again = run_replication(prep, np.random.SeedSequence(seed))
    np.testing.assert_array_equal(again.latency, req.latency)
    np.testing.assert_array_equal(again.outcome, req.outcome)
