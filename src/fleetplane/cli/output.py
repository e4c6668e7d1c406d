"""What every command shares: output formats, the error boundary, consoles.

stdout carries only the result (a table, or with ``-o json|yaml`` only that
document); progress, warnings and errors go to stderr so pipes stay clean.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from fleetplane.errors import FleetplaneError
from fleetplane.gc_pause import gc_paused

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
def _plain_data_representer() -> type:
    """ruamel's SafeRepresenter for the big plain documents fleetplane writes, byte for byte.

    Writing the 23 MB Placement of a 2,000-site × 20,000-workload plan, most of
    the time went to three costs of ruamel's own that change nothing written:

    * it makes a new ``Tag`` for every node, and each decodes its URI suffix
      again, character by character, when it is compared: nodes of a kind
      share one tag, decoded once;
    * the C emitter asks the resolver about every scalar twice (would it read
      back as the same type written plain?) and gets a new ``Tag`` each time:
      answers are remembered per value;
    * dicts, lists, strings, ints and finite floats go through a dispatch on
      the type's MRO, alias bookkeeping meant for shared objects and the
      generic mapping code: they take a direct path doing the same.

    Anything else (bools, None, subclasses, shared objects, other styles)
    goes through ruamel's own code.
    """
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
    from ruamel.yaml.representer import SafeRepresenter
    from ruamel.yaml.tag import Tag

    tags: dict[str, Tag] = {}

    def shared(tag: str | Tag) -> Tag:
        suffix = tag if isinstance(tag, str) else tag.suffix if tag.handle is None else None
        if suffix is None:
            return tag  # type: ignore[return-value]  # a handle: never made when dumping
        found = tags.get(suffix)
        if found is None:
            found = tags[suffix] = Tag(suffix=suffix)
            str(found)  # decodes once, kept on the object
        return found

    str_tag, int_tag, float_tag, seq_tag, map_tag = (
        shared(f"tag:yaml.org,2002:{kind}") for kind in ("str", "int", "float", "seq", "map")
    )
    resolved_limit = 100_000  # distinct scalars remembered per document set

    class PlainDataRepresenter(SafeRepresenter):
        def represent_data(self, data: Any) -> Any:
            kind = type(data)
            if self.default_style is None:
                if kind is str:
                    return ScalarNode(str_tag, data, None, None, None)
                if kind is int:
                    return ScalarNode(int_tag, str(data), None, None, None)
                if kind is float and self._plain_floats() and math.isfinite(data):
                    return ScalarNode(float_tag, repr(data).lower(), None, None, None)
            if (
                (kind is dict or kind is list)
                and self.default_flow_style is not None
                and id(data) not in self.represented_objects  # else ruamel writes an alias
            ):
                return self._collection(data)
            return super().represent_data(data)

        def _plain_floats(self) -> bool:
            # represent_float adds '.0' to exponents without a dot for YAML 1.1 only.
            plain = self.__dict__.get("_plain")
            if plain is None:
                plain = getattr(self.serializer, "use_version", None) != (1, 1)
                self.__dict__["_plain"] = plain
            return bool(plain)

        def _collection(self, data: dict[Any, Any] | list[Any]) -> Any:
            # What represent_data, represent_dict/represent_list and represent_mapping/
            # represent_sequence do for these, in the same order (the node is registered
            # before its items, so an item that is the collection itself becomes an alias).
            self.object_keeper.append(data)
            represent = self.represent_data
            if isinstance(data, dict):
                pairs: list[tuple[Any, Any]] = []
                node: Any = MappingNode(map_tag, pairs, flow_style=self.default_flow_style)
                self.represented_objects[id(data)] = node
                items = list(data.items())
                if self.sort_base_mapping_type_on_output:
                    with contextlib.suppress(TypeError):
                        items = sorted(items)
                for key, value in items:
                    pairs.append((represent(key), represent(value)))
            else:
                values: list[Any] = []
                node = SequenceNode(seq_tag, values, flow_style=self.default_flow_style)
                self.represented_objects[id(data)] = node
                for item in data:
                    values.append(represent(item))
            self.alias_key = None
            return node

        def represent_scalar(
            self, tag: Any, value: Any, style: Any = None, anchor: Any = None
        ) -> Any:
            return super().represent_scalar(shared(tag), value, style, anchor)

        def represent_sequence(self, tag: Any, sequence: Any, flow_style: Any = None) -> Any:
            return super().represent_sequence(shared(tag), sequence, flow_style)

        def represent_mapping(self, tag: Any, mapping: Any, flow_style: Any = None) -> Any:
            return super().represent_mapping(shared(tag), mapping, flow_style)

        # The C dumper class puts this representer before ruamel's Resolver in its bases.
        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is not ScalarNode or self.yaml_path_resolvers:  # type: ignore[attr-defined]
                return super().resolve(kind, value, implicit)  # type: ignore[misc]
            known: dict[tuple[str, bool], Any] = self.__dict__.setdefault("_resolved", {})
            key = (value, bool(implicit[0]))
            tag = known.get(key)
            if tag is None:
                tag = shared(super().resolve(kind, value, implicit))  # type: ignore[misc]
                if len(known) < resolved_limit:
                    known[key] = tag
            return tag

    return PlainDataRepresenter


def dump_yaml(documents: list[dict[str, Any]] | dict[str, Any]) -> str:
    from ruamel.yaml import YAML

    # The C emitter (ruamel.yaml.clib, a dependency): the pure-Python one took 80 s for the
    # 23 MB Placement of a 2,000-site x 20,000-workload plan, this one with the representer
    # above about 7 s. YAML 1.2 resolution either way, so the same data; only long lines
    # fold differently.
    yaml = YAML(typ="safe", pure=False)
    yaml.Representer = _plain_data_representer()
    yaml.default_flow_style = False
    buffer = io.StringIO()
    with gc_paused():  # millions of nodes, no cycles
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
