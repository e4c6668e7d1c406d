"""The latency model shared by placement and simulation (DESIGN.md, "Latency model").

Pure numerics on numpy/scipy, times in seconds:

* ``distributions`` — service times (mean + CV) and lognormal link latencies;
* ``queueing`` — Erlang B/C, M/M/c exact and M/G/c (Allen–Cunneen) waiting times;
* ``network`` — paths of lognormal links composed by moment matching, round trips,
  retransmission delays, all-pairs lowest-median routing;
* ``endtoend`` — quantiles of network + storage + wait + service, one at a time
  (reference accuracy) or in large batches (for the placement engine).
"""

from fleetplane.latency.distributions import LogNormal, ServiceTime
from fleetplane.latency.endtoend import (
    EndToEnd,
    end_to_end_quantile,
    end_to_end_quantile_many,
    mixture_quantile,
    mixture_quantile_many,
)
from fleetplane.latency.network import (
    LossDelay,
    PathTable,
    fenton_wilkinson,
    loss_retransmit,
    path_one_way,
    round_trip,
    shortest_median_paths,
)
from fleetplane.latency.queueing import (
    WaitDist,
    erlang_c,
    erlang_c_many,
    mgc_wait,
    mgc_wait_many,
    min_servers,
    mmc_wait,
)

__all__ = [
    "EndToEnd",
    "LogNormal",
    "LossDelay",
    "PathTable",
    "ServiceTime",
    "WaitDist",
    "end_to_end_quantile",
    "end_to_end_quantile_many",
    "erlang_c",
    "erlang_c_many",
    "fenton_wilkinson",
    "loss_retransmit",
    "mgc_wait",
    "mgc_wait_many",
    "min_servers",
    "mixture_quantile",
    "mixture_quantile_many",
    "mmc_wait",
    "path_one_way",
    "round_trip",
    "shortest_median_paths",
]
