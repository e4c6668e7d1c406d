"""The app factory: ``create_app(settings) -> FastAPI``.

Creating the app connects to the store (and migrates it, unless told not
to), so routes work from the first request. Starting it (the ASGI lifespan)
binds the change notifier to the event loop, starts the poller that sees
other replicas' writes, creates the first admin token on an empty store,
and starts the controllers; stopping it cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from fastapi import FastAPI

from fleetplane import __version__
from fleetplane.control.api import admin, apply, artifacts, health, resources
from fleetplane.control.api.middleware import BodyLimit, RequestMetrics
from fleetplane.control.api.status import install_handlers
from fleetplane.control.controllers import operations as site_operations
from fleetplane.control.plane import Controller, ControlPlane
from fleetplane.control.settings import Settings
from fleetplane.control.store.notifier import poll_versions
from fleetplane.security.redaction import install_redaction

log = logging.getLogger(__name__)

# Where the first admin token goes: the CLI prints it to stderr once.
Announce = Callable[[str], None]


def announce_on_stderr(token: str) -> None:
    print(
        "\nfleetplane: initialised an empty store. The admin API token (shown once, "
        f"store it now):\n\n    {token}\n",
        file=sys.stderr,
        flush=True,
    )


def create_app(
    settings: Settings,
    *,
    controllers: Sequence[Controller] = (),
    announce: Announce = announce_on_stderr,
    plane: ControlPlane | None = None,
) -> FastAPI:
    """The human API app; ``controllers`` run in it while it is started."""
    plane = plane or ControlPlane.open(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for name in (None, "uvicorn", "uvicorn.error", "uvicorn.access"):
            install_redaction(logging.getLogger(name))
        plane.notifier.bind(asyncio.get_running_loop())
        plane.notifier.publish(await asyncio.to_thread(plane.store.current_version))
        token = await asyncio.to_thread(plane.initialise_admin)
        if token is not None:
            _hand_out_admin_token(token, settings.admin_token_file, announce)
        tasks = [
            asyncio.create_task(
                poll_versions(
                    plane.notifier, plane.store.current_version, settings.watch.poll_interval
                ),
                name="store-version-poller",
            )
        ]
        tasks += [
            asyncio.create_task(_supervise(controller, plane), name=f"controller-{controller.name}")
            for controller in controllers
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            plane.close()

    app = FastAPI(
        title="fleetplane control plane",
        version=__version__,
        summary="Desired state of the fleet: resources, apply, watch, tokens, audit",
        lifespan=lifespan,
    )
    app.state.plane = plane
    install_handlers(app)
    app.include_router(health.router)
    # apply before resources: "/apply" would otherwise match "/{plural}".
    app.include_router(apply.router)
    app.include_router(resources.router)
    app.include_router(admin.router)
    app.include_router(artifacts.router)
    app.include_router(site_operations.router)
    # Outermost last: metrics see every answer, including 413s.
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=plane.metrics)
    return app


async def _supervise(controller: Controller, plane: ControlPlane) -> None:
    """Run a controller; if it crashes, log it and leave the API serving."""
    try:
        await controller.run(plane)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("controller %s stopped with an error", controller.name)


def _hand_out_admin_token(token: str, path: Path | None, announce: Announce) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 from the start: never readable by others, not even briefly.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        os.chmod(path, 0o600)
    announce(token)
