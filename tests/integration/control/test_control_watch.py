"""Watch: list-then-watch, resume from a version without missing events, 410, selectors."""

from __future__ import annotations

import json
from typing import Any

from api_harness import Api, make_api
from manifests import image_document

from fleetplane.control.settings import Settings, WatchSettings
from fleetplane.security.keyring import Keyring

V1 = "/apis/fleetplane/v1"


def watch(api: Api, **params: Any) -> list[dict[str, Any]]:
    """Events of a watch that ends after ``timeoutSeconds``."""
    query = {"watch": "true", "timeoutSeconds": "0.3", **params}
    events = []
    with api.client.stream("GET", f"{V1}/nodeimages", params=query, headers=api.headers()) as s:
        assert s.status_code == 200, s.read()
        for line in s.iter_lines():
            if line:
                events.append(json.loads(line))
    return events


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (e["type"], e["object"]["metadata"].get("name", ""))
        for e in events
        if e["type"] != "BOOKMARK"
    ]


def version_of(response: Any) -> str:
    return str(response.json()["metadata"]["resourceVersion"])


def test_watch_without_a_version_lists_first(api: Api) -> None:
    api.request("POST", f"{V1}/nodeimages", json=image_document("a"))
    api.request("POST", f"{V1}/nodeimages", json=image_document("b"))
    assert summary(watch(api)) == [("ADDED", "a"), ("ADDED", "b")]


def test_watch_resumes_right_after_the_given_version(api: Api) -> None:
    api.request("POST", f"{V1}/nodeimages", json=image_document("a"))
    seen = version_of(api.request("POST", f"{V1}/nodeimages", json=image_document("b")))
    api.request("PUT", f"{V1}/nodeimages/a", json=image_document("a", "v2"))
    api.request("DELETE", f"{V1}/nodeimages/b")
    api.request(
        "POST",
        f"{V1}/secrets",
        json={"kind": "Secret", "metadata": {"name": "s"}, "spec": {"data": {"k": "v"}}},
    )
    api.request("POST", f"{V1}/nodeimages", json=image_document("c"))
    events = watch(api, resourceVersion=seen)
    assert summary(events) == [("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(seen)


def test_label_selector_watch_sees_objects_enter_and_leave(api: Api) -> None:
    start = version_of(api.request("POST", f"{V1}/nodeimages", json=image_document("a")))
    moved = image_document("a")
    moved["metadata"]["labels"] = {"team": "edge"}
    api.request("PUT", f"{V1}/nodeimages/a", json=moved)
    api.request("PUT", f"{V1}/nodeimages/a", json=image_document("a", "v2"))
    api.request("POST", f"{V1}/nodeimages", json=image_document("b"))
    events = watch(api, resourceVersion=start, labelSelector="team=infra")
    assert summary(events) == [("DELETED", "a"), ("ADDED", "a"), ("ADDED", "b")]


def test_compacted_versions_answer_410(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, watch=WatchSettings(event_history=10))
    for api in make_api(settings):
        first = version_of(api.request("POST", f"{V1}/nodeimages", json=image_document("a")))
        for i in range(80):
            api.request(
                "PATCH", f"{V1}/nodeimages/a", json={"metadata": {"annotations": {"n": str(i)}}}
            )
        gone = api.client.get(
            f"{V1}/nodeimages",
            params={"watch": "true", "resourceVersion": first},
            headers=api.headers(),
        )
        assert gone.status_code == 410 and gone.json()["reason"] == "Expired"
        assert "list again" in gone.json()["message"]


def test_idle_watches_get_bookmarks_at_the_current_version(
    sqlite_url: str, secrets_keyring: Keyring
) -> None:
    settings = Settings(
        database_url=sqlite_url,
        secrets_keyring=secrets_keyring,
        watch=WatchSettings(bookmark_interval=0.05),
    )
    for api in make_api(settings):
        created = api.request(
            "POST",
            f"{V1}/secrets",
            json={"kind": "Secret", "metadata": {"name": "s"}, "spec": {"data": {"k": "v"}}},
        )
        assert created.status_code == 201
        events = watch(api, resourceVersion="0")
        bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
        assert bookmarks and summary(events) == []
        # Past the Secret's version although no NodeImage changed: resuming skips it.
        assert bookmarks[-1]["object"]["metadata"]["resourceVersion"] == "1"


def test_bad_watch_parameters_answer_400(api: Api) -> None:
    for params in (
        {"resourceVersion": "abc"},
        {"resourceVersion": "99999999999999999999"},
        {"labelSelector": "=x"},
        {"timeoutSeconds": "-1"},
    ):
        answer = api.client.get(
            f"{V1}/nodeimages", params={"watch": "true", **params}, headers=api.headers()
        )
        assert answer.status_code == 400, params
