"""The placement engine's internals: one module per stage or concept.

Nothing here is a stable API; ``fleetplane.placement`` re-exports what callers use.
"""
