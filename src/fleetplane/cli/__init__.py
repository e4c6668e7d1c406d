"""The `fleetplane` command line."""
