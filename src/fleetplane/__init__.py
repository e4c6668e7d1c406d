"""fleetplane: placement and rollout control plane for edge, cloud and HPC fleets."""

__version__ = "0.1.0"
