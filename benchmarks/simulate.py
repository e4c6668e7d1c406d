"""How fast ``fleetplane simulate`` is, how much memory it needs, and a SimPy baseline.

    python benchmarks/simulate.py            # everything (~3 minutes on 2 cores)
    python benchmarks/simulate.py --quick    # one timing run per case, smaller SimPy baseline

Cases (simulated requests per second of wall time, warm-up included; the
clock covers ``simulate()`` — checks, model building, every replication and
the result — not loading YAML or planning):

* retail-edge example (52 sites, 10 request workloads), Poisson at peak for
  10 minutes (~1.25 M requests): routing ``shares`` is the headline; then
  ``nearest``, ``leastLoaded`` (couples the queues: a compiled
  join-the-shortest-queue pass) and failover (shares with a region down for 3
  minutes);
* a generated 1,000-site fleet (``generate_fleet(1000, 1000)``: 640 request
  workloads, ~2,200 streams), planned with the greedy solver, ≥ 1 M requests,
  the same four modes;
* the same M/M/4 queue (rho = 0.8) on fleetplane and on a straightforward
  SimPy model (one Resource with 4 slots, a process per customer): speed ratio,
  and whether both mean waits agree within their 99% confidence intervals
  (and contain the Erlang-C value);
* peak RSS of the 1 M-request run, measured in a child process that loads the
  fleet and a saved plan, with a child that only loads them as the baseline.

The machine is shared, so each timing is the median of three runs and CPU
seconds are shown next to wall seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RETAIL = ROOT / "examples" / "retail-edge"
GOAL_REQUESTS, GOAL_SECONDS = 1_000_000, 5.0


def scenario(name: str, duration: float, **spec: Any) -> Any:
    from fleetplane.model.scenario import Scenario

    body = {"duration": f"{duration:.3f}s", "timeout": "10s", "seed": 1, **spec}
    return Scenario.model_validate(
        {
            "apiVersion": "fleetplane/v1",
            "kind": "Scenario",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def demand_rate(fleet: Any, placement: Any) -> float:
    """Requests per second the placed request workloads receive at peak."""
    placed = {w.workload for w in placement.spec.workloads if w.assignments}
    return float(
        sum(
            fleet.data_sources[d.source].spec.request_rate * d.share
            for name, w in fleet.workloads.items()
            if name in placed and w.spec.class_ in ("inference", "streaming", "control")
            for d in w.spec.demand
        )
    )


def retail() -> tuple[Any, Any]:
    from fleetplane.model.loader import load_fleet
    from fleetplane.placement import plan

    fleet = load_fleet(RETAIL)
    return fleet, plan(fleet).placement


def synthetic() -> tuple[Any, Any]:
    from fleetplane.model.synthetic import generate_fleet
    from fleetplane.placement import plan

    fleet = generate_fleet(1000, 1000, seed=1)
    return fleet, plan(fleet).placement


def cases(fleet: Any, placement: Any, down_site: str, seconds: float) -> list[tuple[str, Any]]:
    third = f"{seconds / 3:.3f}s"
    outage = [{"type": "siteDown", "site": down_site, "at": third, "duration": third}]
    return [
        ("shares", scenario("shares", seconds)),
        ("nearest", scenario("nearest", seconds, routing="nearest")),
        ("leastLoaded", scenario("least-loaded", seconds, routing="leastLoaded")),
        ("failover", scenario("failover", seconds, faults=outage, detectionDelay="10s")),
    ]


def timed(run: Callable[[], Any], repeats: int) -> tuple[Any, float, float]:
    """Result, median wall seconds and median CPU seconds over ``repeats`` runs."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return result, statistics.median(walls), statistics.median(cpus)


def fleet_rows(
    label: str, fleet: Any, placement: Any, down_site: str, repeats: int
) -> list[dict[str, Any]]:
    from fleetplane.sim import simulate

    rate = demand_rate(fleet, placement)
    seconds = math.ceil(1.1 * GOAL_REQUESTS / rate)
    rows = []
    for mode, spec in cases(fleet, placement, down_site, seconds):

        def run(spec: Any = spec) -> Any:
            return simulate(fleet, placement, spec)

        result, wall, cpu = timed(run, repeats)
        requests = result.run.simulated_requests
        rows.append(
            {
                "case": f"{label} {mode}",
                "requests": requests,
                "wall": wall,
                "cpu": cpu,
                "rate": requests / wall,
                "timeouts": result.outcomes.timed_out,
                "dropped": result.outcomes.dropped,
                "little": max(r.relative_error for r in result.littles_law),
            }
        )
    return rows


# ------------------------------------------------------------------ SimPy baseline

MMC_FLEET = """\
apiVersion: fleetplane/v1
kind: NodeImage
metadata: {{name: img}}
spec: {{os: linux, containerRuntime: {{name: containerd, version: "1.7"}}, arches: [amd64]}}
---
apiVersion: fleetplane/v1
kind: Site
metadata: {{name: s}}
spec:
  tier: edge
  region: r
  residencyZone: z
  cost: {{opex: {{cpuHour: 0.04}}}}
  nodePools: [{{name: cpu, count: 1, cpu: 8, memory: 8Gi, nodeImage: img}}]
---
apiVersion: fleetplane/v1
kind: DataSource
metadata: {{name: src}}
spec: {{site: s, requestRate: {rate}/s}}
---
apiVersion: fleetplane/v1
kind: Workload
metadata: {{name: w}}
spec:
  class: inference
  slo: {{latency: {{p99: 1s}}}}
  demand: [{{source: src}}]
  resources: {{cpu: 1, memory: 1Gi}}
  profiles: [{{hardware: cpu, serviceTime: {{mean: 10ms, cv: 1}}, concurrency: {servers}}}]
---
apiVersion: fleetplane/v1
kind: Placement
metadata: {{name: p}}
spec:
  solver: {{name: hand, version: "1", seed: 0}}
  workloads:
    - workload: w
      workloadClass: inference
      assignments: [{{site: s, pool: cpu, profile: cpu, replicas: 1, sources: {{src: 1}}}}]
"""


def simpy_mmc(lam: float, mu: float, servers: int, n: int, seed: int) -> list[float]:
    """Waits of ``n`` customers in a plain SimPy M/M/c model."""
    import simpy

    env = simpy.Environment()
    desk = simpy.Resource(env, capacity=servers)
    rng = random.Random(seed)
    waits: list[float] = []

    def customer(env: Any) -> Any:
        arrived = env.now
        with desk.request() as turn:
            yield turn
            waits.append(env.now - arrived)
            yield env.timeout(rng.expovariate(mu))

    def source(env: Any) -> Any:
        for _ in range(n):
            env.process(customer(env))
            yield env.timeout(rng.expovariate(lam))

    env.process(source(env))
    env.run()
    return waits


def ci99(values: list[float]) -> tuple[float, float]:
    from scipy import stats

    mean = statistics.fmean(values)
    half = stats.t.ppf(0.995, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


@dataclass
class Run:
    mean_wait: float
    ci: tuple[float, float]
    requests: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.wall

    @property
    def cpu_rate(self) -> float:
        return self.requests / self.cpu


def baseline(per_replication: int, replications: int) -> tuple[float, Run, Run]:
    """Erlang-C mean wait, and the M/M/4 queue at rho 0.8 on fleetplane and on SimPy."""
    from fleetplane.latency.queueing import mmc_mean_wait
    from fleetplane.model.loader import load_documents
    from fleetplane.sim import simulate

    servers, rho, mean = 4, 0.8, 0.010
    lam, mu = rho * servers / mean, 1 / mean
    wall, cpu = time.perf_counter(), time.process_time()
    simpy_means = []
    for r in range(replications):
        waits = simpy_mmc(lam, mu, servers, per_replication, seed=r)
        simpy_means.append(statistics.fmean(waits[per_replication // 100 :]))
    simpy = Run(
        statistics.fmean(simpy_means),
        ci99(simpy_means),
        per_replication * replications,
        time.perf_counter() - wall,
        time.process_time() - cpu,
    )
    fleet = load_documents(MMC_FLEET.format(rate=lam, servers=servers), "mmc.yaml")
    duration = per_replication / lam
    spec = scenario(
        "mmc", duration, warmup=f"{duration / 100:.3f}s", timeout="1d", replications=replications
    )
    result, ours_wall, ours_cpu = timed(lambda: simulate(fleet, fleet.placements["p"], spec), 1)
    w = result.workload("w")
    assert w.wait.mean is not None and w.ci99 is not None
    requests = result.run.simulated_requests
    ours = Run(w.wait.mean, w.ci99["waitMean"], requests, ours_wall, ours_cpu)
    return mmc_mean_wait(lam, mu, servers), ours, simpy


# ------------------------------------------------------------------ memory (child processes)


def child(what: str, placement_file: str) -> None:
    """In a fresh process: load retail-edge and its plan, then simulate ~1.1 M requests (or not).

    Prints its own peak RSS, so planning (done by the parent) is not in it.
    """
    from fleetplane.model.loader import load_fleet
    from fleetplane.sim import simulate

    fleet = load_fleet(RETAIL, placement_file)
    (placement,) = fleet.placements.values()
    requests = 0
    if what == "simulate":
        seconds = math.ceil(1.1 * GOAL_REQUESTS / demand_rate(fleet, placement))
        requests = simulate(fleet, placement, scenario("rss", seconds)).run.simulated_requests
    print(json.dumps({"requests": requests, "peak_mib": _peak_rss_mib()}))


def _peak_rss_mib() -> float:
    """This process's peak RSS since exec (VmHWM).

    Not ``ru_maxrss``: a child started from a large parent inherits the
    parent's high-water mark at fork, and this parent is large by then.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss(what: str, placement_file: Path) -> tuple[float, int]:
    """Peak RSS in MiB of a child doing ``what``, and how many requests it simulated."""
    command = [sys.executable, __file__, "--child", what, "--placement", str(placement_file)]
    out = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    return float(out["peak_mib"]), int(out["requests"])


# ------------------------------------------------------------------ report


def print_rows(rows: list[dict[str, Any]]) -> None:
    header = ("case", "requests", "wall s", "cpu s", "requests/s", "timeouts", "dropped", "Little")
    print("{:<24} {:>10} {:>7} {:>7} {:>11} {:>9} {:>8} {:>7}".format(*header))
    for r in rows:
        print(
            f"{r['case']:<24} {r['requests']:>10,} {r['wall']:>7.2f} {r['cpu']:>7.2f} "
            f"{r['rate']:>11,.0f} {r['timeouts']:>9,} {r['dropped']:>8,} {100 * r['little']:>6.3f}%"
        )


def print_baseline(theory: float, ours: Run, simpy: Run, size: int, reps: int) -> float:
    print(f"M/M/4 at rho 0.8, {reps} replications of {size:,} requests each")
    print(f"  Erlang C mean wait {1000 * theory:.4f} ms")
    for label, run in (("fleetplane", ours), ("SimPy", simpy)):
        low, high = run.ci
        print(
            f"  {label:<10} mean wait {1000 * run.mean_wait:.4f} ms, "
            f"99% CI [{1000 * low:.4f}, {1000 * high:.4f}] ms, "
            f"{run.requests:,} requests in {run.wall:.2f}s = {run.rate:,.0f} requests/s "
            f"({run.cpu_rate:,.0f} per CPU second)"
        )
    half = math.hypot((ours.ci[1] - ours.ci[0]) / 2, (simpy.ci[1] - simpy.ci[0]) / 2)
    agree = abs(ours.mean_wait - simpy.mean_wait) <= half
    inside = all(run.ci[0] <= theory <= run.ci[1] for run in (ours, simpy))
    ratio = ours.rate / simpy.rate
    print(
        f"  speed ratio {ratio:,.0f}x ({ours.cpu_rate / simpy.cpu_rate:,.0f}x per CPU second); "
        f"the two means agree within their CIs: {agree}; "
        f"Erlang C inside both CIs: {inside}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per case, smaller baseline")
    parser.add_argument("--child", choices=["load", "simulate"], help=argparse.SUPPRESS)
    parser.add_argument("--placement", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.placement)
        return
    repeats = 1 if args.quick else 3
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    from fleetplane.cli.output import dump_yaml
    from fleetplane.sim import simulate

    fleet, placement = retail()
    cold = time.perf_counter()
    simulate(fleet, placement, scenario("warm-up", 5))
    print(f"first call (compiled kernels loaded from cache): {time.perf_counter() - cold:.2f}s")
    rows = fleet_rows("retail-edge", fleet, placement, "cloud-eu-west", repeats)
    big_fleet, big_placement = synthetic()
    hub = next(s for s in big_fleet.sites.values() if s.spec.tier == "regional").name
    rows += fleet_rows("1000 sites", big_fleet, big_placement, hub, repeats)
    print()
    print_rows(rows)

    size, reps = (20_000, 5) if args.quick else (100_000, 5)
    print()
    ratio = print_baseline(*baseline(size, reps), size, reps)

    with tempfile.TemporaryDirectory() as scratch:
        placement_file = Path(scratch) / "placement.yaml"
        placement_file.write_text(dump_yaml(placement.to_document()), encoding="utf-8")
        base_rss, _ = peak_rss("load", placement_file)
        sim_rss, sim_requests = peak_rss("simulate", placement_file)
    per_request = (sim_rss - base_rss) * 2**20 / sim_requests
    print()
    print(
        f"peak RSS: {sim_rss:,.0f} MiB simulating {sim_requests:,} requests on retail-edge "
        f"({base_rss:,.0f} MiB for loading the fleet alone: {per_request:,.0f} bytes per request)"
    )

    head = rows[0]
    big = next(r for r in rows if r["case"] == "1000 sites shares")
    met = head["requests"] >= GOAL_REQUESTS and head["wall"] <= GOAL_SECONDS
    print()
    print(
        f"headline: retail-edge {head['requests'] / 1e6:.2f}M requests in {head['wall']:.2f}s = "
        f"{head['rate'] / 1e6:.2f}M requests/s (shares; {'meets' if met else 'misses'} 1M in 5s), "
        f"1000 sites {big['rate'] / 1e6:.2f}M/s, {ratio:,.0f}x SimPy, peak RSS {sim_rss:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
