"""Runtimes behind one interface (:class:`fleetplane.agent.runtimes.base.Runtime`)."""
