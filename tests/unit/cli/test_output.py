"""Documents written as YAML read back as the same data, including strings a resolver could take
for something else."""

from __future__ import annotations

from pathlib import Path

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


def test_shared_tags_write_what_ruamels_own_representer_writes() -> None:
    import io

    from fleetplane.model.synthetic import generate_fleet
    from fleetplane.placement import plan

    placement = plan(generate_fleet(12, 40, 3)).placement
    documents = [ODD, placement.model_dump(mode="json", by_alias=True, exclude_none=True)]
    stock = YAML(typ="safe", pure=False)
    stock.default_flow_style = False
    buffer = io.StringIO()
    stock.dump_all(documents, buffer)
    assert dump_yaml(documents) == buffer.getvalue()
