"""The control plane service: store, HTTP API, watch, and the app that ties them together.

Entry points: :func:`fleetplane.control.app.create_app` builds the FastAPI app
from :class:`fleetplane.control.settings.Settings`; :class:`fleetplane.control.store.Store`
is the transactional resource store that controllers use directly.
"""
