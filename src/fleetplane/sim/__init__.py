"""Discrete-event simulation of requests over a placement (docs/simulate.md).

from fleetplane.sim import simulate
result = simulate(fleet, placement, scenario)
result.workload("detector").latency.p99
"""

from fleetplane.sim.result import SimulationResult, WorkloadResult
from fleetplane.sim.simulate import SWEEPABLE, simulate, sweep

__all__ = ["SWEEPABLE", "SimulationResult", "WorkloadResult", "simulate", "sweep"]
