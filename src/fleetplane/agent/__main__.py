"""``python3 -m fleetplane.agent``: the lean agent entry point (:mod:`fleetplane.agent.command`)."""

from fleetplane.agent.command import main

main()
