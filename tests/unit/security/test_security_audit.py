"""The hash-chained audit log: building, verifying and detecting tampering."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetplane.security import (
    GENESIS_HASH,
    AuditEvent,
    AuditRecord,
    Checkpoint,
    Key,
    Keyring,
    append,
    canonical_json,
    digest,
    verify,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
KEY = Key("audit-1", b"k" * 32)
KEYRING = Keyring((KEY,))
WRONG_KEY = Key("audit-1", b"x" * 32)


def _event(index: int, **changes: Any) -> AuditEvent:
    event = AuditEvent(
        time=T0 + timedelta(seconds=index),
        actor="alice",
        action="apply",
        kind="Workload",
        name=f"w{index}",
        before_digest=None,
        after_digest=digest({"spec": {"replicas": index}}),
        details={"generation": index, "labels": {"team": "vision"}},
    )
    return dataclasses.replace(event, **changes)


def _chain(count: int, key: Key | None = KEY) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    for index in range(count):
        records.append(append(records[-1] if records else None, _event(index), key=key))
    return records


def test_chain_links_and_verifies() -> None:
    records = _chain(5)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert records[0].hash.startswith("hmac-sha256:audit-1:")
    result = verify(records, keyring=KEYRING)
    assert result.ok and result.checked == 5 and result.first_bad_seq is None
    assert result.head == Checkpoint(5, records[-1].hash)


def test_unkeyed_chain_verifies_without_key() -> None:
    records = _chain(3, key=None)
    assert records[0].hash.startswith("sha256:")
    assert verify(records)


def test_empty_log_verifies() -> None:
    result = verify([])
    assert result.ok and result.checked == 0 and result.head is None


def test_hash_is_over_canonical_json() -> None:
    record = _chain(1, key=None)[0]
    # Key order and datetime offsets do not change the hash.
    shuffled = dataclasses.replace(
        record,
        details={"labels": {"team": "vision"}, "generation": 0},
        time=record.time.astimezone(timezone(timedelta(hours=2))),
    )
    assert verify([shuffled]).ok
    assert canonical_json({"b": 1, "a": [T0]}) == b'{"a":["2026-03-01T12:00:00.000000Z"],"b":1}'


def test_canonical_json_rejects_non_json_values() -> None:
    with pytest.raises(TypeError, match=r"\$.x: set is not a JSON value"):
        canonical_json({"x": {1}})
    with pytest.raises(TypeError, match="cannot be represented"):
        canonical_json({"x": float("nan")})
    with pytest.raises(TypeError, match="keys must be strings"):
        canonical_json({1: "x"})


def test_details_are_normalised_at_append() -> None:
    record = append(None, _event(0, details={"when": T0, "pair": (1, 2)}), key=None)
    assert record.details == {"when": "2026-03-01T12:00:00.000000Z", "pair": [1, 2]}
    assert verify([record])


def test_dict_round_trip_through_json_text() -> None:
    records = _chain(3)
    stored = [json.loads(json.dumps(r.to_dict())) for r in records]
    assert stored[0]["time"] == "2026-03-01T12:00:00.000000Z"
    restored = [AuditRecord.from_dict(row) for row in stored]
    assert restored == records
    assert verify(restored, keyring=KEYRING)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor", "mallory"),
        ("action", "delete"),
        ("kind", "Secret"),
        ("name", "other"),
        ("before_digest", "sha256:" + "0" * 64),
        ("after_digest", None),
        ("details", {"generation": 99, "labels": {"team": "vision"}}),
        ("time", T0 - timedelta(days=1)),
        ("prev_hash", GENESIS_HASH),
        ("hash", "hmac-sha256:audit-1:" + "0" * 64),
    ],
)
def test_edit_of_any_field_names_the_row(field: str, value: Any) -> None:
    records = _chain(5)
    records[2] = dataclasses.replace(records[2], **{field: value})
    result = verify(records, keyring=KEYRING)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert result.checked == 2
    assert result.head == Checkpoint(2, records[1].hash)


def test_delete_reorder_insert_are_detected() -> None:
    records = _chain(5)
    deleted = records[:2] + records[3:]
    assert verify(deleted, keyring=KEYRING).first_bad_seq == 3
    swapped = [records[0], records[2], records[1], *records[3:]]
    result = verify(swapped, keyring=KEYRING)
    assert result.first_bad_seq == 2 and "missing or out of order" in (result.problem or "")
    # Swapping the seq numbers too (so the rows look in order) breaks the hashes.
    renumbered = [
        records[0],
        dataclasses.replace(records[2], seq=2),
        dataclasses.replace(records[1], seq=3),
        *records[3:],
    ]
    assert verify(renumbered, keyring=KEYRING).first_bad_seq == 2
    forged = append(records[1], _event(99), key=WRONG_KEY)
    inserted = [*records[:2], forged, *records[2:]]
    assert verify(inserted, keyring=KEYRING).first_bad_seq == 3


def test_unkeyed_chain_insert_is_caught_at_the_next_row() -> None:
    # Without a key a forger can make a row that links correctly; the row
    # after it then no longer links or is out of sequence.
    records = _chain(4, key=None)
    forged = append(records[1], _event(99), key=None)
    result = verify([*records[:2], forged, *records[2:]])
    assert result.first_bad_seq == 4


def test_truncation_needs_an_anchor() -> None:
    records = _chain(5)
    head = Checkpoint.of(records[-1])
    assert verify(records[:3], keyring=KEYRING).ok  # undetectable from the rows alone
    result = verify(records[:3], keyring=KEYRING, anchors=[head])
    assert not result.ok and result.first_bad_seq == 4
    assert "deleted from the end" in (result.problem or "")
    assert verify(records, keyring=KEYRING, anchors=[head, Checkpoint.of(records[1])]).ok


def test_recomputed_unkeyed_chain_is_caught_by_an_anchor() -> None:
    records = _chain(4, key=None)
    anchor = Checkpoint.of(records[2])
    rewritten: list[AuditRecord] = records[:1]
    for index in range(1, 4):
        rewritten.append(append(rewritten[-1], _event(index, actor="mallory"), key=None))
    assert verify(rewritten).ok
    result = verify(rewritten, anchors=[anchor])
    assert result.first_bad_seq == 3 and "checkpoint" in (result.problem or "")


def test_keyed_verification_refuses_downgrade_and_unknown_keys() -> None:
    unkeyed = _chain(2, key=None)
    result = verify(unkeyed, keyring=KEYRING)
    assert result.first_bad_seq == 1 and "not keyed" in (result.problem or "")
    keyed = _chain(2)
    assert "verify with the audit key" in (verify(keyed).problem or "")
    other = Keyring((Key("audit-2", b"k" * 32),))
    assert "does not hold" in (verify(keyed, keyring=other).problem or "")
    wrong = Keyring((WRONG_KEY,))
    assert verify(keyed, keyring=wrong).first_bad_seq == 1


def test_rotated_audit_key_still_verifies_old_rows() -> None:
    old = _chain(2)
    new_key = Key("audit-2", b"n" * 32)
    newer = append(old[-1], _event(2), key=new_key)
    assert verify([*old, newer], keyring=Keyring((new_key, KEY))).ok


def test_verify_a_range_from_a_checkpoint() -> None:
    records = _chain(6)
    assert verify(records[3:], keyring=KEYRING, start=Checkpoint.of(records[2])).ok
    result = verify(records[3:], keyring=KEYRING)
    assert result.first_bad_seq == 1


# --- any single mutation is detected (property) ------------------------------------

_EDITABLE = ["actor", "action", "kind", "name", "details", "time", "after_digest"]


def _mutated(field: str, record: AuditRecord) -> AuditRecord:
    values: dict[str, Any] = {
        "actor": record.actor + "x",
        "action": record.action + "x",
        "kind": record.kind + "x",
        "name": record.name + "x",
        "details": {**record.details, "extra": True},
        "time": record.time + timedelta(microseconds=1),
        "after_digest": None,
    }
    return dataclasses.replace(record, **{field: values[field]})


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_mutation_is_detected_at_the_right_seq(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=2, max_value=8), label="size")
    operation = data.draw(
        st.sampled_from(["edit", "delete", "swap", "insert", "duplicate"]), label="operation"
    )
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    records = _chain(size)
    head = Checkpoint.of(records[-1])
    tampered = list(records)
    if operation == "edit":
        field = data.draw(st.sampled_from(_EDITABLE), label="field")
        tampered[index] = _mutated(field, records[index])
        expected = index + 1
    elif operation == "delete":
        del tampered[index]
        expected = index + 1
    elif operation == "swap":
        other = data.draw(
            st.integers(min_value=0, max_value=size - 1).filter(lambda i: i != index),
            label="other",
        )
        tampered[index], tampered[other] = tampered[other], tampered[index]
        expected = min(index, other) + 1
    elif operation == "insert":
        prev = records[index - 1] if index else None
        tampered.insert(index, append(prev, _event(50), key=WRONG_KEY))
        expected = index + 1
    else:  # a copy of an existing row inserted right after it
        tampered.insert(index + 1, records[index])
        expected = index + 2
    result = verify(tampered, keyring=KEYRING, anchors=[head])
    assert not result.ok
    assert result.first_bad_seq == expected
    assert result.checked == expected - 1
