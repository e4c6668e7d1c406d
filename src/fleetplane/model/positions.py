"""Where a field of a YAML document is written, computed only when someone asks.

Files are parsed with ruamel's C-based safe loader, which is fast but keeps no
positions. ruamel's round-trip loader keeps the line and column of every key
and value but is several times slower, so it runs only for a document whose
position is actually needed (a problem in it, or an engine asking
``SourceMap.locate``): just that document's lines are re-read, and the result
is cached. ruamel counts from 0; positions count from 1 like editors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic.alias_generators import to_snake
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import ScalarNode, SequenceNode
from ruamel.yaml.reader import Reader
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.tag import Tag

from fleetplane.errors import SourcePosition
from fleetplane.model.references import Loc


@dataclass
class Found:
    """Where a ``loc`` ends up in a document (0-based, as ruamel counts)."""

    line: int
    column: int
    key_line: int | None = None
    key_column: int | None = None

    def position(self, filename: str) -> SourcePosition:
        return SourcePosition(filename, self.line + 1, self.column + 1)

    def key_position(self, filename: str) -> SourcePosition:
        if self.key_line is None or self.key_column is None:
            return self.position(filename)
        return SourcePosition(filename, self.key_line + 1, self.key_column + 1)

    def shifted(self, lines: int) -> Found:
        key_line = None if self.key_line is None else self.key_line + lines
        return Found(self.line + lines, self.column, key_line, self.key_column)


def node_position(node: Any, filename: str) -> SourcePosition:
    return SourcePosition(filename, node.lc.line + 1, node.lc.col + 1)


def walk(root: Any, loc: Loc) -> Found:
    """Follow ``loc`` through a round-trip document as far as it goes.

    Containers are placed at their key (the ``nodePools:`` line) or at their
    list item; scalars at their value. A part that is not in the document
    (a missing field) leaves the position at the enclosing object.
    """
    found = Found(root.lc.line, root.lc.col)
    node = root
    for part in loc:
        if part == "[key]":
            # pydantic's marker for an invalid mapping key: point at the key.
            if found.key_line is not None and found.key_column is not None:
                found.line, found.column = found.key_line, found.key_column
            continue
        if isinstance(node, CommentedMap):
            # A camelCase loc part may have been written snake_case; non-string
            # keys (``1: x``) show up in loc as themselves.
            key = part if part in node else to_snake(str(part))
            if key not in node:
                break
            owner = _defining_map(node, key)
            if owner is None:
                break
            child = node[key]
            key_line, key_column = owner.lc.key(key)
            found = Found(key_line, key_column, key_line, key_column)
            if child is not None and not isinstance(child, CommentedMap | CommentedSeq):
                found.line, found.column = owner.lc.value(key)
            node = child
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, column = node.lc.item(part)
            found = Found(line, column)
            node = node[part]
        else:
            break
    return found


def _defining_map(node: CommentedMap, key: Any) -> CommentedMap | None:
    """The mapping where ``key`` is written: ``node`` itself or one it merges with ``<<``."""
    if key in node.lc.data:
        return node
    for source in getattr(node, "merge", ()):
        # ruamel < 0.19 keeps (index, mapping) pairs, later versions the mappings.
        mapping = source[1] if isinstance(source, tuple) else source
        if isinstance(mapping, CommentedMap) and key in mapping:
            return _defining_map(mapping, key)
    return None


class DocumentPositions(Protocol):
    """Positions inside one document of one file."""

    @property
    def file(self) -> str: ...

    @property
    def start(self) -> SourcePosition: ...

    def walk(self, loc: Loc) -> Found: ...


class ShiftedPositions:
    """Positions of a document that was read from a slice of its file starting at ``lines``."""

    __slots__ = ("inner", "lines")

    def __init__(self, inner: DocumentPositions, lines: int) -> None:
        self.inner = inner
        self.lines = lines

    @property
    def file(self) -> str:
        return self.inner.file

    @property
    def start(self) -> SourcePosition:
        start = self.inner.start
        line = None if start.line is None else start.line + self.lines
        return SourcePosition(start.file, line, start.column)

    def walk(self, loc: Loc) -> Found:
        return self.inner.walk(loc).shifted(self.lines)


class RoundTripDocument:
    """A document that was read with the round-trip loader: positions are at hand."""

    def __init__(self, file: str, root: CommentedMap) -> None:
        self._file = file
        self.root = root

    @property
    def file(self) -> str:
        return self._file

    @property
    def start(self) -> SourcePosition:
        return node_position(self.root, self._file)

    def walk(self, loc: Loc) -> Found:
        return walk(self.root, loc)


class SourceText:
    """One file's text, and the round-trip trees of its documents once they were needed."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self._line_starts: list[int] | None = None
        self._trees: dict[int, tuple[CommentedMap, int] | None] = {}
        self._whole: list[Any] | None = None

    def tree(self, document: LazyDocument) -> tuple[CommentedMap, int] | None:
        """The round-trip tree of a document and how many lines precede its text."""
        if document.index not in self._trees:
            self._trees[document.index] = self._read_lines(document) or self._read_whole(document)
        return self._trees[document.index]

    def _read_lines(self, document: LazyDocument) -> tuple[CommentedMap, int] | None:
        """Re-read only the document's own lines: a big file is not re-read for one problem."""
        starts = self._starts()
        first = document.first_line
        end = starts[min(document.last_line + 1, len(starts) - 1)]
        try:
            root = next(iter(YAML(typ="rt").load_all(self.text[starts[first] : end])), None)
        except YAMLError:
            return None
        return (
            (root, first)
            if isinstance(root, CommentedMap) and document.describes(root, first)
            else None
        )

    def _read_whole(self, document: LazyDocument) -> tuple[CommentedMap, int] | None:
        """The safe way when a document's lines do not stand on their own."""
        if self._whole is None:
            try:
                self._whole = list(YAML(typ="rt").load_all(self.text))
            except YAMLError:
                self._whole = []
        root = self._whole[document.index] if document.index < len(self._whole) else None
        return (root, 0) if isinstance(root, CommentedMap) and document.describes(root, 0) else None

    def _starts(self) -> list[int]:
        if self._line_starts is None:
            # The fast path accepts only \n and \r\n line breaks, so lines are split at \n.
            self._line_starts = [0, *(m.end() for m in re.finditer("\n", self.text))]
            self._line_starts.append(len(self.text))
        return self._line_starts


class LazyDocument:
    """A document read by the fast loader; its round-trip tree is built on first use."""

    __slots__ = ("first_column", "first_line", "identity", "index", "last_line", "source")

    def __init__(
        self,
        source: SourceText,
        index: int,
        span: tuple[int, int, int],
        identity: tuple[Any, Any],
    ) -> None:
        self.source = source
        self.index = index
        self.first_line, self.first_column, self.last_line = span
        # (kind, metadata.name): checks that a re-read tree is this very document.
        self.identity = identity

    @property
    def file(self) -> str:
        return self.source.file

    @property
    def start(self) -> SourcePosition:
        return SourcePosition(self.source.file, self.first_line + 1, self.first_column + 1)

    def walk(self, loc: Loc) -> Found:
        tree = self.source.tree(self)
        if tree is None:
            return Found(self.first_line, self.first_column)
        root, offset = tree
        return walk(root, loc).shifted(offset)

    def describes(self, root: CommentedMap, offset: int) -> bool:
        """Whether a re-read tree starts where this document does and has its kind and name."""
        if (root.lc.line + offset, root.lc.col) != (self.first_line, self.first_column):
            return False
        metadata = root.get("metadata")
        name = metadata.get("name") if isinstance(metadata, CommentedMap) else None
        return (root.get("kind"), name) == self.identity


@dataclass
class Document:
    """One YAML document as plain data (dict/list/str/...), and where its parts are written."""

    data: dict[str, Any]
    positions: DocumentPositions


# What the fast path leaves to the round-trip loader, because the two would read
# it differently (tags, ``<<`` merges, %YAML directives), anchors (which may be
# recursive), tabs, line breaks other than \n and \r\n (counted differently), and
# control characters (the round-trip reader rejects them). A false alarm (``!=``
# or ``&&`` in a CEL rule) costs speed only, never correctness.
# Each pattern is searched on its own, and only when its first character occurs:
# one alternation over every position of a big file is many times slower.
_ROUND_TRIP_ONLY = (
    # A tag or an anchor. Not CEL's "!=", "!(" and "&&", which rule text in policies and in
    # every Placement's explanations is full of: were they a tag, it would be an unknown one,
    # which the C path hands to the round-trip loader anyway (_Builder); libyaml refuses "&&"
    # as an anchor, which hands it over too.
    ("!", re.compile(r"(?:^|[\s\[{,])!(?![=(])", re.MULTILINE)),
    ("&", re.compile(r"(?:^|[\s\[{,])&(?!&)", re.MULTILINE)),
    ("<", re.compile("<<")),
    ("%", re.compile("^%", re.MULTILINE)),
    ("\r", re.compile("\r(?!\n)")),
    # libyaml accepts tabs where ruamel's scanner does not (``k: x<TAB>``).
    ("\t", re.compile("\t")),
    ("", re.compile("[\x85\u2028\u2029]")),
    ("", Reader.NON_PRINTABLE),
)


def _needs_round_trip(text: str) -> bool:
    return any((not first or first in text) and p.search(text) for first, p in _ROUND_TRIP_ONLY)


class _NotFast(Exception):
    """The document needs the round-trip loader (a duplicate or unhashable key, an odd tag)."""


def _tag(name: str) -> Tag:
    tag = Tag(suffix=name)
    str(tag)  # caches the decoded value, so shared tags never decode again
    return tag


_TAGS = {
    name: _tag(f"tag:yaml.org,2002:{name}")
    for name in ("str", "map", "seq", "null", "bool", "int", "float", "timestamp")
}


def _implicit_resolvers() -> dict[str, list[tuple[Tag, Any]]]:
    """ruamel's YAML 1.2 implicit resolvers by first character, with shared tags."""
    table: dict[Any, list[tuple[str, Any]]] = VersionedResolver(version=(1, 2)).versioned_resolver
    anywhere = table.get(None, [])
    tags = {str(tag): tag for tag in _TAGS.values()}
    return {
        first: [(tags.get(name) or _tag(name), regexp) for name, regexp in [*rules, *anywhere]]
        for first, rules in table.items()
        if first is not None
    }


class _Resolver(VersionedResolver):
    """ruamel's YAML 1.2 resolution minus its per-scalar version lookup, the C parser's hot spot.

    Files with a %YAML directive never come here, so the version is always 1.2.
    """

    _implicit = _implicit_resolvers()

    @property
    def processing_version(self) -> Any:
        return (1, 2)

    # Keys and many values repeat in every document: each distinct one is matched once.
    _CACHE_LIMIT = 100_000

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is not ScalarNode:
            return _TAGS["seq"] if kind is SequenceNode else _TAGS["map"]
        if not implicit[0]:
            return _TAGS["str"]
        cache: dict[str, Tag] = self.__dict__.setdefault("_resolved", {})
        tag = cache.get(value)
        if tag is None:
            tag = next(
                (tag for tag, regexp in self._implicit.get(value[:1], ()) if regexp.match(value)),
                _TAGS["str"],
            )
            if len(cache) < self._CACHE_LIMIT:
                cache[value] = tag
        return tag


class _Builder:
    """Plain data from the C parser's nodes, with SafeConstructor's scalar conversions."""

    def __init__(self, constructor: SafeConstructor) -> None:
        self._scalars: dict[Tag, Any] = {
            _TAGS[name]: getattr(constructor, f"construct_yaml_{name}")
            for name in ("null", "bool", "int", "float", "timestamp")
        }

    def build(self, node: Any) -> Any:
        tag = node.ctag
        if tag is _TAGS["str"]:
            return node.value
        if tag is _TAGS["map"]:
            mapping: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node)
                try:
                    repeated = key in mapping
                except TypeError:
                    raise _NotFast from None
                if repeated:
                    raise _NotFast
                mapping[key] = self.build(value_node)
            return mapping
        if tag is _TAGS["seq"]:
            return [self.build(item) for item in node.value]
        construct = self._scalars.get(tag)
        if construct is None:
            raise _NotFast
        return construct(node)


def fast_documents(text: str, filename: str) -> list[Document] | None:
    """Every document of ``text`` via the C parser, or None when only the round-trip loader will do.

    None also when anything is wrong (broken YAML, a duplicate key, a
    document that is not a mapping): the round-trip loader then reads the file
    again to report it with the exact same messages and positions as always.
    """
    if _needs_round_trip(text):
        return None
    source = SourceText(filename, text)
    yaml = YAML(typ="safe", pure=False)
    yaml.Resolver = _Resolver
    loader, _ = yaml.get_constructor_parser(text)
    builder = _Builder(loader)
    documents: list[Document] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            data = builder.build(node)
            if data is not None:
                if not isinstance(data, dict):
                    return None
                documents.append(Document(data, _lazy(source, index, node, data)))
            index += 1
    except (YAMLError, _NotFast, RecursionError):
        return None
    finally:
        loader.dispose()
    return documents


def _lazy(source: SourceText, index: int, node: Any, data: dict[str, Any]) -> LazyDocument:
    start, end = node.start_mark, node.end_mark
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    kind = data.get("kind")
    return LazyDocument(source, index, (start.line, start.column, end.line), (kind, name))


# A document marker at the start of a line ends any scalar (YAML forbids them
# inside one), so a file can be cut there without parsing it.
_DOCUMENT_START = re.compile(r"^---(?=[ \t\r\n]|$)", re.MULTILINE)
_NOT_SPLITTABLE = re.compile(r"^(?:%|\.\.\.(?:[ \t\r\n]|$))", re.MULTILINE)


def document_slices(text: str) -> list[tuple[str, int]] | None:
    """``text`` cut before each ``---`` line: (slice, lines before it), or None if unsafe.

    Directives (``%YAML``) apply to the documents after them and ``...``
    ends a document early; a file using either is not cut.
    """
    if _NOT_SPLITTABLE.search(text):
        return None
    cuts = [m.start() for m in _DOCUMENT_START.finditer(text) if m.start() > 0]
    if not cuts:
        return None
    slices: list[tuple[str, int]] = []
    begin, line = 0, 0
    for end in [*cuts, len(text)]:
        piece = text[begin:end]
        slices.append((piece, line))
        line += piece.count("\n")
        begin = end
    return slices
