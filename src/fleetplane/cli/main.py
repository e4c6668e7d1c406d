"""Entry point: one Typer app, one sub-module per command (registered below)."""

from __future__ import annotations

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
