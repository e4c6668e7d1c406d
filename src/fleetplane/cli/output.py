"""What every command shares: output formats, the error boundary, consoles.

stdout carries only the result (a table, or with ``-o json|yaml`` only that
document); progress, warnings and errors go to stderr so pipes stay clean.
"""

from __future__ import annotations

import functools
import io
import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from fleetplane.errors import FleetplaneError

P = ParamSpec("P")
R = TypeVar("R")

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


class OutputFormat(StrEnum):
    table = "table"
    yaml = "yaml"
    json = "json"


OUTPUT_OPTION = typer.Option(
    OutputFormat.table, "-o", "--output", help="What to print on stdout: table, yaml or json."
)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn fleetplane's typed errors into a message on stderr and the documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except FleetplaneError as error:
            # The message quotes user input (rules, values): never read as markup.
            stderr.print(f"[bold red]error:[/] {escape(str(error))}", markup=True, highlight=False)
            raise typer.Exit(error.exit_code) from None

    return wrapper


@functools.cache
def _shared_tag_representer() -> type:
    """ruamel's SafeRepresenter giving every node of a kind one shared, decoded tag.

    It makes a new ``Tag`` for each node, and each decodes its URI suffix again
    when the emitter reads it: a third of the time of writing a big Placement.
    """
    from ruamel.yaml.representer import SafeRepresenter
    from ruamel.yaml.tag import Tag

    tags: dict[str, Tag] = {}

    def shared(tag: Any) -> Any:
        if not isinstance(tag, str):
            return tag
        found = tags.get(tag)
        if found is None:
            found = tags[tag] = Tag(suffix=tag)
            str(found)  # decodes once, kept on the object
        return found

    class SharedTagRepresenter(SafeRepresenter):
        def represent_scalar(
            self, tag: Any, value: Any, style: Any = None, anchor: Any = None
        ) -> Any:
            return super().represent_scalar(shared(tag), value, style, anchor)

        def represent_sequence(self, tag: Any, sequence: Any, flow_style: Any = None) -> Any:
            return super().represent_sequence(shared(tag), sequence, flow_style)

        def represent_mapping(self, tag: Any, mapping: Any, flow_style: Any = None) -> Any:
            return super().represent_mapping(shared(tag), mapping, flow_style)

    return SharedTagRepresenter


def dump_yaml(documents: list[dict[str, Any]] | dict[str, Any]) -> str:
    from ruamel.yaml import YAML

    # The C emitter (ruamel.yaml.clib, a dependency): the pure-Python one took 80 s for the
    # 23 MB Placement of a 2,000-site x 20,000-workload plan, this one about 20 s. Same
    # representer and YAML 1.2 resolver, so the same data; only long lines fold differently.
    yaml = YAML(typ="safe", pure=False)
    yaml.Representer = _shared_tag_representer()
    yaml.default_flow_style = False
    buffer = io.StringIO()
    if isinstance(documents, list):
        yaml.dump_all(documents, buffer)
    else:
        yaml.dump(documents, buffer)
    return buffer.getvalue()


def dump_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def emit_document(document: Any, fmt: OutputFormat) -> None:
    """Print a machine-readable document alone on stdout."""
    text = dump_json(document) if fmt is OutputFormat.json else dump_yaml(document)
    sys.stdout.write(text)
    sys.stdout.flush()


def show_secret_once(created: dict[str, Any], fmt: OutputFormat, heading: str) -> None:
    """A just-created credential: the document in -o yaml/json, else ``heading`` on stderr and
    the bare secret (``created["token"]``) on stdout, so ``$(fleetplane … create)`` captures it."""
    if fmt is not OutputFormat.table:
        emit_document(created, fmt)
        return
    stderr.print(heading, highlight=False, markup=False)
    print(created["token"])


def write_document(document: Any, path: Path) -> None:
    """Write YAML, or JSON when the file name ends in .json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = dump_json(document) if path.suffix == ".json" else dump_yaml(document)
    path.write_text(text, encoding="utf-8")
