"""Documents written as YAML read back as the same data, including strings a resolver could take
for something else."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from fleetplane.cli.output import dump_yaml, write_document

ODD = {
    "exponent": "1e3",
    "yes_no": ["no", "yes", "on", "off", "y", "n"],
    "octal": "0o17",
    "date": "2026-11-29",
    "null_word": "null",
    "unicode": "café — ü",
    "colon": "x: y",
    "empty": "",
    "numbers": [1, 1.0, 1e-20, -0.0, 12345678901234567890],
    "nested": {"list": [{"a": True, "b": None}], "long": "word " * 60},
}


def test_yaml_round_trips_through_the_loaders_resolver() -> None:
    text = dump_yaml([ODD, {"second": 2}])
    documents = list(YAML(typ="rt").load_all(text))
    assert documents == [ODD, {"second": 2}]


def test_written_document_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "placement.yaml"
    write_document(ODD, out)
    assert YAML(typ="safe").load(out.read_text(encoding="utf-8")) == ODD
    write_document(ODD, tmp_path / "placement.json")
    assert YAML(typ="safe").load((tmp_path / "placement.json").read_text()) == ODD


def _stock_yaml(documents: list[Any]) -> str:
    """What ruamel's own safe representer and C emitter write."""
    stock = YAML(typ="safe", pure=False)
    stock.default_flow_style = False
    buffer = io.StringIO()
    stock.dump_all(documents, buffer)
    return buffer.getvalue()


def test_a_placement_is_written_as_ruamels_own_representer_writes_it() -> None:
    from fleetplane.model.synthetic import generate_fleet
    from fleetplane.placement import plan

    placement = plan(generate_fleet(12, 40, 3)).placement
    documents = [ODD, placement.model_dump(mode="json", by_alias=True, exclude_none=True)]
    assert dump_yaml(documents) == _stock_yaml(documents)


# Strings the resolver reads as something else unless quoted, and characters that force quoting.
TRICKY = ["1e3", "0x1F", "0o17", "null", "~", "yes", "true", "False", ".inf", "-.nan", "123",
          "1_000", "2026-11-29", "", " lead", "trail ", "a: b", "#c", "- x", "'q'", '"dq"',
          "line\nbreak", "tab\t", "caf\u00e9", "\u2028", "%x", "@at", "*star", "&amp", "!bang"]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(TRICKY)
    | st.text(max_size=12)
)
KEYS = st.sampled_from(TRICKY) | st.text(max_size=6) | st.integers(-5, 5) | st.booleans()
PLAIN = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(KEYS, inner, max_size=4)  # mixed key types cannot be sorted
    | st.tuples(inner, inner),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PLAIN, min_size=1, max_size=3))
def test_any_plain_data_is_written_as_ruamels_own_representer_writes_it(
    documents: list[Any],
) -> None:
    assert dump_yaml(documents) == _stock_yaml(documents)


def test_shared_and_unusual_objects_are_written_as_ruamel_writes_them() -> None:
    shared_list = [1, "two", 3.5]
    shared_map = {"k": shared_list}
    looped: dict[str, Any] = {"name": "loop"}
    looped["self"] = looped
    document = {
        "a": shared_list,
        "b": shared_list,  # an alias of a
        "c": [shared_map, shared_map],
        "loop": looped,
        "floats": [math.nan, math.inf, -math.inf, -0.0, 1e17, 5e-324, 1.5],
        "big": 2**80,
        "flags": [True, False, None],
    }
    assert dump_yaml([document, shared_list]) == _stock_yaml([document, shared_list])
