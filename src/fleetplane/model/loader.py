"""Read fleet YAML into validated resources, with every problem at file:line:column.

The loader never stops at the first problem: it reads every file and every
document, validates each against its kind's model, checks names across the
whole fleet, and only then raises one :class:`ValidationError` listing all of
them, sorted by file (in reading order) and position. People fix a fleet in
one pass instead of one error per run.

YAML is read with ruamel.yaml's round-trip loader, which keeps the line and
column of every key and value; pydantic's error locations (``loc`` tuples of
camelCase keys and list indices) are walked back through the document to the
offending node. ruamel counts from 0, messages count from 1 like editors.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pydantic
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode

from fleetplane.errors import Problem, SourcePosition, ValidationError, did_you_mean
from fleetplane.gc_pause import gc_paused
from fleetplane.model.base import API_VERSION
from fleetplane.model.fleet import Fleet
from fleetplane.model.kinds import KINDS, AnyResource
from fleetplane.model.positions import (
    Document,
    DocumentPositions,
    RoundTripDocument,
    ShiftedPositions,
    document_slices,
    fast_documents,
)
from fleetplane.model.references import Loc, check_references, render_path

YAML_SUFFIXES = (".yaml", ".yml")
DEFAULT_FLEET_NAME = "default"
# Documents tried together on the fast path when a file needs the slow one
# somewhere: few calls for the good stretches, one slice re-read for a bad one.
_SLICE_GROUP = 64


class SourceMap:
    """Where every field of every loaded resource is in its YAML source.

    Keeps, per resource, a handle on its document (not a precomputed table):
    a position costs nothing until someone asks for it, and the first question
    about a document re-reads just that document with the round-trip loader.
    """

    def __init__(self) -> None:
        self._sources: dict[tuple[str, str], DocumentPositions] = {}

    def add(self, kind: str, name: str, document: DocumentPositions) -> None:
        self._sources[(kind, name)] = document

    def locate(self, kind: str, name: str, loc: Loc) -> SourcePosition | None:
        """Position of a field, e.g. ``("spec", "nodePools", 0, "nodeImage")``.

        A field that is not in the document (a default) is placed at the
        nearest enclosing object that is.
        """
        document = self._sources.get((kind, name))
        if document is None:
            return None
        return document.walk(loc).position(document.file)


@dataclass
class LoadResult:
    """A fleet made of the documents that were valid, and every problem found."""

    fleet: Fleet
    problems: list[Problem] = field(default_factory=list)
    sources: SourceMap = field(default_factory=SourceMap)

    @property
    def valid(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> Fleet:
        if self.problems:
            raise ValidationError(self.problems)
        return self.fleet


def load_fleet(*paths: Path | str, references: bool = True) -> Fleet:
    """Load files and directories (recursively, ``*.yaml``/``*.yml``) into one fleet.

    Raises :class:`ValidationError` with every problem found.
    """
    return read_fleet(*paths, references=references).raise_for_problems()


def load_documents(text: str, filename: str = "<input>", *, references: bool = True) -> Fleet:
    """Load multi-document YAML text (e.g. an upload); ``filename`` names it in messages.

    With ``references=False`` names of other resources are not checked, for
    callers that resolve them elsewhere (the control plane's store).
    """
    return read_text(text, filename, references=references).raise_for_problems()


def read_fleet(*paths: Path | str, references: bool = True) -> LoadResult:
    """Like :func:`load_fleet` but returns the problems instead of raising."""
    reader = _Reader(_fleet_name(paths))
    with gc_paused():
        for file in reader.discover([Path(p) for p in paths]):
            reader.read_file(file)
        return reader.finish(references)


def read_text(text: str, filename: str = "<input>", *, references: bool = True) -> LoadResult:
    """Like :func:`load_documents` but returns the problems instead of raising."""
    reader = _Reader(DEFAULT_FLEET_NAME)
    with gc_paused():
        reader.read_text(text, filename)
        return reader.finish(references)


def _fleet_name(paths: Sequence[Path | str]) -> str:
    if not paths:
        return DEFAULT_FLEET_NAME
    first = Path(paths[0]).resolve()
    directory = first if first.is_dir() else first.parent
    return directory.name or DEFAULT_FLEET_NAME


class _Reader:
    """Accumulates resources and problems over any number of files."""

    def __init__(self, fleet_name: str) -> None:
        self.result = LoadResult(Fleet(name=fleet_name))
        self._file_order: dict[str, int] = {}
        # Names of documents that had a kind and a name but failed validation:
        # references to them are not reported again as dangling.
        self._invalid: dict[str, set[str]] = {}
        self._unreadable = False

    def discover(self, paths: list[Path]) -> list[Path]:
        files: list[Path] = []
        seen: set[Path] = set()
        for path in paths:
            for file in self._expand(path):
                resolved = file.resolve()
                if resolved not in seen:
                    seen.add(resolved)
                    files.append(file)
        return files

    def _expand(self, path: Path) -> list[Path]:
        if path.is_file():
            return [path]
        if not path.is_dir():
            self._problem(Problem("no such file or directory", SourcePosition(str(path))))
            return []
        found = sorted(
            (f for f in path.rglob("*") if f.suffix in YAML_SUFFIXES and f.is_file()),
            # Hidden directories (.git, .github workflows) are not fleet input.
            key=lambda f: f.relative_to(path).parts,
        )
        found = [f for f in found if not any(p.startswith(".") for p in f.relative_to(path).parts)]
        if not found:
            self._problem(
                Problem(
                    "no *.yaml or *.yml files in this directory",
                    SourcePosition(str(path)),
                    hint="give the directory that holds the fleet's manifests",
                )
            )
        return found

    def read_file(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            self._unreadable = True
            self._problem(Problem(f"cannot read file: {error}", SourcePosition(str(path))))
            return
        self.read_text(text, str(path))

    def read_text(self, text: str, filename: str) -> None:
        self._file_order.setdefault(filename, len(self._file_order))
        fast = fast_documents(text, filename)
        if fast is not None:
            self._accept(fast)
            return
        # Anything the fast path does not vouch for (broken YAML, duplicate
        # keys, tags, merges, directives) is read by the round-trip loader —
        # but only the documents that need it: one bad document at the end of
        # a 500k-line file must not cost a slow re-read of the whole file.
        slices = document_slices(text)
        if slices is None:
            self._accept(self._round_trip_documents(text, filename))
            return
        for first in range(0, len(slices), _SLICE_GROUP):
            group = slices[first : first + _SLICE_GROUP]
            documents = fast_documents("".join(piece for piece, _ in group), filename)
            if documents is not None:
                self._accept(documents, group[0][1])
                continue
            for index, (piece, lines) in enumerate(group, start=first):
                documents = fast_documents(piece, filename)
                if documents is not None:
                    self._accept(documents, lines)
                    continue
                # The next document's marker is kept so that a scalar left open
                # reads "unexpected document separator", as in the whole file.
                read = piece + "---\n" if index + 1 < len(slices) else piece
                self._accept(self._round_trip_documents(read, filename, lines), lines)

    def _accept(self, documents: Iterable[Document], lines: int = 0) -> None:
        """Validate and add documents read from a slice of a file ``lines`` lines in."""
        for document in documents:
            positions = document.positions
            if lines:
                positions = ShiftedPositions(positions, lines)
                document = Document(document.data, positions)
            resource = self._validate(document)
            if resource is not None:
                self._add(resource, positions)

    def _round_trip_documents(self, text: str, filename: str, lines: int = 0) -> Iterator[Document]:
        """Documents of ``text`` via ruamel's round-trip loader (positions relative to ``text``).

        Problems found while reading are reported at their place in the whole file.
        """
        yaml = YAML(typ="rt")
        nodes = yaml.compose_all(text)
        while True:
            try:
                node = next(nodes)
            except StopIteration:
                return
            except MarkedYAMLError as error:
                # The rest of the file cannot be read, so what it defines is unknown.
                self._unreadable = True
                self._problem(_syntax_problem(error, filename, lines))
                return
            try:
                document = yaml.constructor.construct_document(node)
            except MarkedYAMLError as error:
                self._invalid_node(node)
                if isinstance(error, DuplicateKeyError):
                    self._problem(_duplicate_key_problem(error, node, filename, lines))
                else:
                    self._problem(_syntax_problem(error, filename, lines))
                _reset_constructor(yaml.constructor)
                continue
            if document is None:
                continue
            if not isinstance(document, CommentedMap):
                line, column = node.start_mark.line, node.start_mark.column
                self._problem(
                    Problem(
                        f"a document must be a mapping, found a {_yaml_type(document)}",
                        SourcePosition(filename, lines + line + 1, column + 1),
                        hint="start it with apiVersion: fleetplane/v1, kind, metadata and spec",
                    )
                )
                continue
            yield Document(_plain(document), RoundTripDocument(filename, document))

    def _invalid_node(self, node: Any) -> None:
        """Remember kind/name of a document whose construction failed, from its raw node."""
        if not isinstance(getattr(node, "value", None), list):
            return
        top = {key.value: value for key, value in node.value if isinstance(key.value, str)}
        kind = getattr(top.get("kind"), "value", None)
        fields = getattr(top.get("metadata"), "value", None)
        if not isinstance(kind, str) or not isinstance(fields, list):
            return
        for key, value in fields:
            if key.value == "name" and isinstance(value.value, str):
                self._invalid.setdefault(kind, set()).add(value.value)

    def _validate(self, document: Document) -> AnyResource | None:
        data, positions = document.data, document.positions
        header = _check_header(data, positions)
        self._problems(header.problems)
        if header.kind is None:
            return None
        # A wrong apiVersion is reported once, by the header check.
        data["apiVersion"] = API_VERSION
        model = KINDS[header.kind]
        try:
            resource = model.model_validate(data)
        except pydantic.ValidationError as error:
            self._problems(_translate(error, model, positions))
            name = _metadata_name(data)
            if name is not None:
                self._invalid.setdefault(header.kind, set()).add(name)
            return None
        if header.problems:
            self._invalid.setdefault(header.kind, set()).add(resource.name)
            return None
        return resource

    def _add(self, resource: AnyResource, positions: DocumentPositions) -> None:
        kind, name = resource.kind, resource.name
        fleet = self.result.fleet
        if name in fleet.collection(kind):
            first = fleet.position_of(kind, name)
            self._problem(
                Problem(
                    f"{kind} {name!r} is defined twice; first at {first}",
                    positions.walk(("metadata", "name")).position(positions.file),
                    field_path="metadata.name",
                    hint="rename one of them or delete the duplicate",
                )
            )
            return
        fleet.add(resource, positions.start)
        self.result.sources.add(kind, name, positions)

    def finish(self, references: bool) -> LoadResult:
        # When a file could not be read to its end, what it defines is unknown:
        # cross-references would report names that may well exist there.
        if references and not self._unreadable:
            self._problems(
                check_references(
                    self.result.fleet,
                    locate=self.result.sources.locate,
                    invalid_names=self._invalid,
                )
            )
        self.result.problems.sort(key=self._problem_order)
        return self.result

    def _problem_order(self, problem: Problem) -> tuple[int, int, int]:
        position = problem.position
        if position is None:
            return (len(self._file_order) + 1, 0, 0)
        order = self._file_order.get(position.file, len(self._file_order))
        return (order, position.line or 0, position.column or 0)

    def _problem(self, problem: Problem) -> None:
        self.result.problems.append(problem)

    def _problems(self, problems: list[Problem]) -> None:
        self.result.problems.extend(problems)


def _reset_constructor(constructor: Any) -> None:
    """Drop the half-built state a failed document leaves, so the next one starts clean."""
    constructor.constructed_objects = {}
    constructor.recursive_objects = {}
    constructor.state_generators = []
    constructor.deep_construct = False


def _syntax_problem(error: MarkedYAMLError, filename: str, lines: int = 0) -> Problem:
    """The parser's complaint, at its place in the file (the text read began ``lines`` in)."""
    mark = error.problem_mark or error.context_mark
    position = SourcePosition(filename, lines + mark.line + 1, mark.column + 1) if mark else None
    message = f"invalid YAML: {(error.problem or 'cannot parse').strip()}"
    context, context_mark = error.context, error.context_mark
    if context:
        # "while scanning a quoted scalar": where it started is where the mistake usually is.
        started = ""
        if context_mark is not None and mark is not None and context_mark.line != mark.line:
            started = f" that started at line {lines + context_mark.line + 1}"
        message += f" ({context.strip()}{started})"
    return Problem(message, position, hint="check indentation, quotes and ':' after keys")


def _duplicate_key_problem(
    error: DuplicateKeyError, node: Any, filename: str, lines: int = 0
) -> Problem:
    mark = error.problem_mark
    position = SourcePosition(filename, lines + mark.line + 1, mark.column + 1)
    key, first_line = _first_of_duplicate(node, mark.line, mark.column)
    name = f" {key!r}" if key is not None else ""
    first = f" (first at line {lines + first_line})" if first_line is not None else ""
    return Problem(
        f"duplicate key{name}{first}",
        position,
        hint="a key may appear only once in a mapping; remove or rename one",
    )


def _first_of_duplicate(node: Any, line: int, column: int) -> tuple[str | None, int | None]:
    """The repeated key at (line, column) and the 1-based line of its first occurrence."""
    pending = [node]
    while pending:
        current = pending.pop()
        children = current.value if isinstance(current.value, list) else []
        if isinstance(current, MappingNode):
            keys = [key for key, _ in children]
            for key in keys:
                if (key.start_mark.line, key.start_mark.column) == (line, column):
                    first = next(k for k in keys if k.value == key.value)
                    return str(key.value), first.start_mark.line + 1
            pending.extend(value for _, value in children)
            pending.extend(keys)
        else:
            pending.extend(children)
    return None, None


def _yaml_type(document: Any) -> str:
    if isinstance(document, CommentedSeq):
        return "list"
    if isinstance(document, str):
        return f"string ({document!r})" if len(document) < 40 else "string"
    return type(document).__name__


@dataclass
class _Header:
    kind: str | None
    problems: list[Problem]


def _check_header(root: dict[str, Any], positions: DocumentPositions) -> _Header:
    """apiVersion and kind decide which model validates the rest, so they are checked first."""
    problems: list[Problem] = []
    start = positions.start
    if "apiVersion" not in root:
        problems.append(Problem("missing apiVersion", start, hint=f"add apiVersion: {API_VERSION}"))
    elif root["apiVersion"] != API_VERSION:
        problems.append(
            Problem(
                f"must be {API_VERSION!r}, got {root['apiVersion']!r}",
                positions.walk(("apiVersion",)).position(positions.file),
                field_path="apiVersion",
                hint=f"write apiVersion: {API_VERSION}",
            )
        )
    known = ", ".join(KINDS)
    if "kind" not in root:
        problems.append(Problem("missing kind", start, hint=f"add kind: one of {known}"))
        return _Header(None, problems)
    kind = root["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        suggestion = did_you_mean(str(kind), list(KINDS))
        hint = f"{suggestion} known kinds: {known}" if suggestion else f"known kinds: {known}"
        problems.append(
            Problem(
                f"unknown kind {kind!r}",
                positions.walk(("kind",)).position(positions.file),
                field_path="kind",
                hint=hint,
            )
        )
        return _Header(None, problems)
    return _Header(kind, problems)


def _metadata_name(root: dict[str, Any]) -> str | None:
    metadata = root.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
        return str(metadata["name"])
    return None


def _plain(node: Any) -> Any:
    """ruamel's round-trip types → plain dict/list/str/int/float/bool for pydantic."""
    if isinstance(node, Mapping):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, datetime):
        # ruamel's TimeStamp keeps formatting details; the value is a datetime.
        return datetime(
            node.year, node.month, node.day, node.hour, node.minute, node.second,
            node.microsecond, node.tzinfo, fold=node.fold,
        )  # fmt: skip
    return node


# ------------------------------------------------------- pydantic → Problem


def _translate(
    error: pydantic.ValidationError, model: type[AnyResource], positions: DocumentPositions
) -> list[Problem]:
    return [_problem_from(detail, model, positions) for detail in error.errors()]


def _problem_from(detail: Any, model: type[AnyResource], positions: DocumentPositions) -> Problem:
    loc: Loc = tuple(detail["loc"])
    kind: str = detail["type"]
    found = positions.walk(loc)
    filename = positions.file
    if kind == "invalid_key":
        return Problem(_message(detail), found.key_position(filename), field_path=render_path(loc))
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _field_names(_model_at(model, loc[:-1]))
        hint = did_you_mean(key, allowed) or (
            f"allowed fields: {', '.join(allowed)}" if allowed else None
        )
        return Problem(
            f"unknown field {key!r}",
            found.key_position(filename),
            field_path=render_path(loc),
            hint=hint,
        )
    if kind == "missing":
        return Problem(
            f"missing required field {loc[-1]!r}",
            found.position(filename),
            field_path=render_path(loc),
            hint=_field_hint(model, loc),
        )
    return Problem(
        _message(detail),
        found.position(filename),
        field_path=render_path(loc),
        hint=_literal_hint(detail) or _quote_hint(detail),
    )


_PREFIXES = ("Value error, ", "Assertion failed, ")


# pydantic speaks Python ("instance of NodePool"); people wrote YAML.
_CONTAINER_MESSAGES = {
    "model_type": "must be a mapping (key: value lines)",
    "model_attributes_type": "must be a mapping (key: value lines)",
    "dict_type": "must be a mapping (key: value lines)",
    "list_type": "must be a list ('- item' lines or [a, b])",
}


def _message(detail: Any) -> str:
    message: str = detail["msg"]
    for prefix in _PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :]
    if detail["type"] in _CONTAINER_MESSAGES:
        message = _CONTAINER_MESSAGES[detail["type"]]
    elif message.startswith("Input should be "):
        message = "must be " + message[len("Input should be ") :]
    elif message.startswith("Keys should be "):
        message = "keys must be " + message[len("Keys should be ") :]
    if "got " in message:
        return message
    value = detail.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        message += f", got {value!r}"
    elif isinstance(value, date):
        message += f", got the date {value.isoformat()}"
    elif isinstance(value, list):
        message += ", got a list"
    elif isinstance(value, dict):
        message += ", got a mapping"
    return message


def _literal_hint(detail: Any) -> str | None:
    if detail["type"] != "literal_error" or not isinstance(detail.get("input"), str):
        return None
    expected = re.findall(r"'([^']*)'", str(detail.get("ctx", {}).get("expected", "")))
    return did_you_mean(detail["input"], expected)


def _quote_hint(detail: Any) -> str | None:
    """``cuda: 12.2`` or ``version: 2024-01-01`` are not strings to YAML; quotes fix that."""
    value = detail.get("input")
    if detail["type"] != "string_type":
        return None
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, date):
        text = value.isoformat()
    elif isinstance(value, int | float):
        text = str(value)
    else:
        return None
    return f'quote it: "{text}" (YAML reads it unquoted as a {_scalar_kind(value)})'


def _scalar_kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, date):
        return "date"
    return "number"


def _field_hint(model: type[AnyResource], loc: Loc) -> str | None:
    parent = _model_at(model, loc[:-1])
    if parent is None:
        return None
    for name, info in parent.model_fields.items():
        if loc[-1] in (name, info.alias) and info.description:
            return f"{info.alias or name}: {info.description}"
    return None


def _field_names(model: type[pydantic.BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_at(model: type[pydantic.BaseModel], loc: Loc) -> type[pydantic.BaseModel] | None:
    """The pydantic model that validates the object at ``loc``, if it is one."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return None
    return _as_model(current)


def _step(annotation: Any, part: str | int) -> Any:
    annotation = _strip(annotation)
    model = _as_model(annotation)
    if model is not None:
        for name, info in model.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin in (list, Sequence, tuple, set, frozenset) and isinstance(part, int) and args:
        return args[0]
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    return None


def _strip(annotation: Any) -> Any:
    """Remove Annotated[...] and Optional[...] wrappers."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _as_model(annotation: Any) -> type[pydantic.BaseModel] | None:
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    return None
