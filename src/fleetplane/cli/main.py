"""Entry point: one Typer app, one sub-module per command (registered below)."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading

import typer

from fleetplane import __version__

app = typer.Typer(
    name="fleetplane",
    help="Decide where workloads run across edge, cloud and HPC sites; prove it; carry it out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fleetplane {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """fleetplane command line."""


def run() -> None:
    """The installed ``fleetplane`` command: the app, then an exit without the heap's teardown.

    After a plan of 2,000 sites × 20,000 workloads the process holds 1.5 GB
    of Python objects, and the interpreter's shutdown frees them one by one:
    2 s after the work is done, for memory the OS takes back at once. So once
    the command has finished, the exit handlers run (``atexit``), output is
    flushed, and the process ends with the command's status. An uncaught
    exception, or a thread still at work, takes Python's usual way out.
    """
    try:
        app()
        status = 0
    except SystemExit as done:
        status = _exit_status(done.code)
    if _threads_still_running():
        sys.exit(status)  # Python's own exit waits for them
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # A reader that is gone (or a stream closed): nothing left to deliver.
        with contextlib.suppress(BrokenPipeError, ValueError):
            stream.flush()
    os._exit(status)


def _threads_still_running() -> bool:
    """Whether threads other than this one that Python would wait for at exit are alive."""
    this = threading.current_thread()
    return any(t.is_alive() and not t.daemon and t is not this for t in threading.enumerate())


def _exit_status(code: object) -> int:
    """The status ``sys.exit(code)`` would give, printing a message code as Python does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _register() -> None:
    # Each command module adds itself to `app` on import. Imports are here,
    # not at the top, so `fleetplane --help` stays fast and a command's heavy
    # libraries load only when the module is imported.
    from fleetplane.cli import (  # noqa: F401
        agent,
        artifact,
        audit,
        db,
        generate,
        plan,
        resources,
        serve,
        simulate,
        site,
        token,
        validate,
    )


_register()
