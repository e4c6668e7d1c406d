"""Bundled workloads the process runtime runs: a small HTTP inference service and a batch job."""
