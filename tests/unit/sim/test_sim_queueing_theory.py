"""The simulator against queueing theory: M/M/1, M/M/c (Erlang C), M/D/1 (Pollaczek–Khinchine).

Each case runs independent replications through the public ``simulate`` on a
one-site fleet (no network, so the queue is all there is). The closed form
must lie inside the simulator's 99% confidence interval over replications AND
within 3% of the estimate. At rho = 0.9 the waiting time is strongly
autocorrelated, so ~10^7 requests per case are needed for 3%: those cases are
the slow ones (~8 s of CPU each) and are marked ``slow``, not skipped.
"""

from __future__ import annotations

import math

import pytest
import simfleet as sf

from fleetplane.latency.queueing import md1_mean_wait, mmc_wait
from fleetplane.sim import SimulationResult, simulate
from fleetplane.sim.aggregate import confidence_interval

MEAN_SERVICE = 0.010  # seconds
TOLERANCE = 0.03


def run_queue(
    rho: float, servers: int, cv: float, requests: float, replications: int
) -> SimulationResult:
    """``replications`` runs of about ``requests / replications`` requests each."""
    rate = rho * servers / MEAN_SERVICE
    duration = requests / replications / rate
    fleet = sf.single_queue(rho, servers=servers, mean="10ms", cv=cv)
    scenario = sf.scenario(
        duration=f"{duration:.0f}s",
        warmup=f"{duration * 0.01:.0f}s",
        timeout="1d",
        replications=replications,
        seed=20240611,
    )
    return simulate(fleet, sf.single_placement(), scenario)


def assert_matches(estimate: float, interval: tuple[float, float], theory: float) -> None:
    low, high = interval
    assert low <= theory <= high, f"theory {theory:.6g} outside the 99% CI [{low:.6g}, {high:.6g}]"
    assert abs(estimate - theory) / theory < TOLERANCE, f"{estimate:.6g} vs theory {theory:.6g}"


# (rho, servers, requests in total): more requests where the wait is more autocorrelated.
# Sized so that 3% is about three standard errors of the p99 estimate (measured: the
# 99% CI half-width is ~4% of the p99 at 10^7 requests and rho = 0.9, ~3.7% at 5·10^6
# and 0.8, ~2.5% at 10^6 and 0.5).
MMC_CASES = [
    pytest.param(0.5, 1, 1.0e6, id="M/M/1 rho=0.5"),
    pytest.param(0.8, 1, 5.0e6, id="M/M/1 rho=0.8"),
    pytest.param(0.9, 1, 1.0e7, id="M/M/1 rho=0.9", marks=pytest.mark.slow),
    pytest.param(0.5, 4, 1.0e6, id="M/M/4 rho=0.5"),
    pytest.param(0.8, 4, 5.0e6, id="M/M/4 rho=0.8"),
    pytest.param(0.9, 4, 1.0e7, id="M/M/4 rho=0.9", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("rho", "servers", "requests"), MMC_CASES)
def test_mmc_wait_mean_and_p99_match_erlang_c(rho: float, servers: int, requests: float) -> None:
    result = run_queue(rho, servers, cv=1.0, requests=requests, replications=10)
    theory = mmc_wait(rho * servers / MEAN_SERVICE, 1 / MEAN_SERVICE, servers)
    assert theory.p_wait > 0.05  # the condition: the p99 is in the waiting part
    workload = result.workload("w")
    assert workload.ci99 is not None
    assert workload.wait.mean is not None and workload.wait.p99 is not None
    assert_matches(workload.wait.mean, workload.ci99["waitMean"], theory.mean)
    assert_matches(workload.wait.p99, workload.ci99["waitP99"], theory.quantile(0.99))
    sf.assert_little(result)


# Deterministic service makes the wait less variable: fewer requests give the same precision.
@pytest.mark.parametrize(("rho", "requests"), [(0.5, 5.0e5), (0.8, 2.0e6), (0.9, 4.0e6)])
def test_md1_mean_wait_matches_pollaczek_khinchine(rho: float, requests: float) -> None:
    result = run_queue(rho, 1, cv=0.0, requests=requests, replications=10)
    theory = md1_mean_wait(rho / MEAN_SERVICE, MEAN_SERVICE)
    workload = result.workload("w")
    assert workload.ci99 is not None and workload.wait.mean is not None
    assert_matches(workload.wait.mean, workload.ci99["waitMean"], theory)
    sf.assert_little(result)


def test_latency_is_wait_plus_service_without_network() -> None:
    result = run_queue(0.5, 1, cv=1.0, requests=2.0e5, replications=2)
    workload = result.workload("w")
    assert workload.breakdown["network"] == 0.0
    assert workload.latency.mean == pytest.approx(
        workload.breakdown["wait"] + workload.breakdown["service"], rel=1e-9
    )
    assert workload.breakdown["service"] == pytest.approx(MEAN_SERVICE, rel=0.02)


def test_confidence_interval_is_the_student_t_interval() -> None:
    from scipy import stats

    values = [1.0, 1.2, 0.9, 1.1, 1.05]
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    expected = stats.t.interval(0.99, len(values) - 1, loc=mean, scale=sd / math.sqrt(5))
    assert confidence_interval(values) == pytest.approx(expected)
    assert confidence_interval([2.0]) == (2.0, 2.0)
