"""Artifacts engine: deterministic release archives (packing, manifests, safe unpacking)."""
