"""Every route of the human API: its success and its failure codes (in-process ASGI)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from api_harness import Api, make_api
from manifests import IMAGE, documents, image_document, secret_document, site

from fleetplane.control.settings import Limits, Listen, Settings
from fleetplane.control.store import migrate
from fleetplane.control.store.database import create_store_engine
from fleetplane.control.store.tokens import save_token
from fleetplane.security.tokens import create_token

V1 = "/apis/fleetplane/v1"


def status_of(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert body["kind"] == "Status" and body["status"] == "Failure"
    return body  # type: ignore[no-any-return]


# ------------------------------------------------------------- health, metrics


def test_health_readiness_and_metrics_need_no_token(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").status_code == 200
    api.request("GET", f"{V1}/nodeimages")
    metrics = api.client.get("/metrics")
    assert metrics.status_code == 200
    assert (
        'fleetplane_http_requests_total{code="200",method="GET",route="/apis/fleetplane/v1/{plural}"}'
        in metrics.text
    )


def test_readiness_fails_on_an_old_schema(sqlite_url: str, tmp_path: Path) -> None:
    engine = create_store_engine(sqlite_url)
    migrate.upgrade(engine, "0001")
    engine.dispose()
    for api in make_api(Settings(database_url=sqlite_url, migrate_on_start=False)):
        ready = api.client.get("/readyz")
        assert ready.status_code == 503
        assert "fleetplane db upgrade" in status_of(ready)["message"]  # type: ignore[operator]


# ------------------------------------------------------------- authentication


def test_requests_without_or_with_bad_tokens_are_unauthorised(api: Api) -> None:
    missing = api.client.get(f"{V1}/sites")
    assert missing.status_code == 401 and "Bearer" in missing.headers["www-authenticate"]
    assert status_of(missing)["reason"] == "Unauthorized"
    for header in ("Basic abc", "Bearer nonsense", "Bearer fp_aaaaaaaaaaaaaaaa_" + "a" * 52):
        answer = api.client.get(f"{V1}/sites", headers={"Authorization": header})
        assert answer.status_code == 401, header


def test_revoked_and_expired_tokens_are_refused(api: Api) -> None:
    created = api.request("POST", "/api/v1/tokens", json={"name": "bob", "role": "viewer"})
    assert created.status_code == 201
    bob = {"Authorization": f"Bearer {created.json()['token']}"}
    assert api.client.get(f"{V1}/sites", headers=bob).status_code == 200
    revoked = api.request("DELETE", f"/api/v1/tokens/{created.json()['id']}")
    assert revoked.status_code == 200 and revoked.json()["revokedAt"]
    refused = api.client.get(f"{V1}/sites", headers=bob)
    assert refused.status_code == 401 and "revoked" in status_of(refused)["message"]  # type: ignore[operator]
    plaintext, record = create_token(
        "old", "viewer", timedelta(hours=1), now=datetime.now(UTC) - timedelta(hours=2)
    )
    save_token(api.client.app.state.plane.store, record, actor="test")  # type: ignore[attr-defined]
    expired = api.client.get(f"{V1}/sites", headers={"Authorization": f"Bearer {plaintext}"})
    assert expired.status_code == 401 and "expired" in status_of(expired)["message"]  # type: ignore[operator]


def test_tokens_are_refused_without_tls_off_loopback(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, listen=Listen.parse("0.0.0.0:8080"))
    for api in make_api(settings):
        answer = api.client.get(f"{V1}/sites", headers=api.headers())
        assert answer.status_code == 403
        assert status_of(answer)["reason"] == "TLSRequired"


# ------------------------------------------------------------------- tokens


def test_token_lifecycle(api: Api) -> None:
    created = api.request(
        "POST", "/api/v1/tokens", json={"name": "alice", "role": "operator", "ttl": "30d"}
    )
    assert created.status_code == 201
    body = created.json()
    assert body["token"].startswith(f"fp_{body['id']}_") and body["role"] == "operator"
    listed = api.request("GET", "/api/v1/tokens").json()["items"]
    assert {t["name"] for t in listed} == {"admin", "alice"}
    assert all("token" not in t and "secretHash" not in t for t in listed)
    assert api.request("DELETE", "/api/v1/tokens/nosuchtoken").status_code == 404
    bad_role = api.request("POST", "/api/v1/tokens", json={"name": "x", "role": "root"})
    assert bad_role.status_code == 422 and "role" in bad_role.text
    bad_ttl = api.request(
        "POST", "/api/v1/tokens", json={"name": "x", "role": "viewer", "ttl": "soon"}
    )
    assert bad_ttl.status_code == 422
    unknown_field = api.request(
        "POST", "/api/v1/tokens", json={"name": "x", "role": "viewer", "x": 1}
    )
    assert unknown_field.status_code == 400
    actions = [r["action"] for r in api.request("GET", "/api/v1/audit").json()["items"]]
    assert actions.count("token.create") == 2


# ------------------------------------------------------------ resource CRUD


def test_create_get_list_replace_patch_delete(api: Api) -> None:
    created = api.request("POST", f"{V1}/nodeimages", json=image_document())
    assert created.status_code == 201
    meta = created.json()["metadata"]
    assert meta["generation"] == 1 and meta["uid"] and meta["resourceVersion"]
    assert api.request("GET", f"{V1}/nodeimages/ubuntu").json()["spec"]["os"] == "ubuntu-22.04"
    listing = api.request("GET", f"{V1}/nodeimages").json()
    assert listing["kind"] == "NodeImageList" and [
        i["metadata"]["name"] for i in listing["items"]
    ] == ["ubuntu"]
    assert int(listing["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])

    replaced = api.request(
        "PUT", f"{V1}/nodeimages/ubuntu", json=image_document(os_name="ubuntu-24.04")
    )
    assert replaced.status_code == 200 and replaced.json()["metadata"]["generation"] == 2
    patched = api.request(
        "PATCH",
        f"{V1}/nodeimages/ubuntu",
        json={"metadata": {"labels": {"team": None, "tier": "edge"}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200
    assert patched.json()["metadata"]["labels"] == {"tier": "edge"}
    assert patched.json()["spec"]["os"] == "ubuntu-24.04"

    deleted = api.request("DELETE", f"{V1}/nodeimages/ubuntu")
    assert deleted.status_code == 200 and deleted.json()["metadata"]["name"] == "ubuntu"
    assert api.request("GET", f"{V1}/nodeimages/ubuntu").status_code == 404


def test_label_selectors_filter_lists(api: Api) -> None:
    api.request("POST", f"{V1}/apply", content=documents(IMAGE, site("a"), site("b", "us-east")))
    names = lambda selector: [  # noqa: E731
        i["metadata"]["name"]
        for i in api.request("GET", f"{V1}/sites", params={"labelSelector": selector}).json()[
            "items"
        ]
    ]
    assert names("region=eu-west") == ["a"]
    assert names("region!=eu-west,tier=edge") == ["b"]
    assert names("region in (eu-west,us-east)") == ["a", "b"]
    assert names("!tier") == []
    bad = api.request("GET", f"{V1}/sites", params={"labelSelector": "a=b=c"})
    assert (
        bad.status_code == 400
        and status_of(bad)["details"]["causes"][0]["field"] == "labelSelector"
    )  # type: ignore[index]


def test_unknown_kinds_answer_404_with_the_list_of_kinds(api: Api) -> None:
    answer = api.request("GET", f"{V1}/gizmos")
    assert answer.status_code == 404
    details = status_of(answer)["details"]
    assert "Site" in details["kinds"] and "sites" in details["plurals"]  # type: ignore[index]
    create = api.request("POST", f"{V1}/sites", json={**image_document(), "kind": "Gizmo"})
    assert create.status_code == 400


def test_write_failures_have_precise_codes_and_write_nothing(api: Api) -> None:
    assert api.request("POST", f"{V1}/nodeimages", json=image_document()).status_code == 201
    version = api.request("GET", f"{V1}/nodeimages").json()["metadata"]["resourceVersion"]

    exists = api.request("POST", f"{V1}/nodeimages", json=image_document())
    assert exists.status_code == 409 and status_of(exists)["reason"] == "AlreadyExists"
    bad_json = api.request(
        "POST", f"{V1}/nodeimages", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    invalid = image_document("other")
    invalid["spec"]["arches"] = ["amd65"]
    invalid["spec"]["colour"] = "blue"
    schema = api.request("POST", f"{V1}/nodeimages", json=invalid)
    assert schema.status_code == 422
    fields = {c["field"] for c in status_of(schema)["details"]["causes"]}  # type: ignore[index]
    assert fields == {"spec.arches[0]", "spec.colour"}
    renamed = api.request("PUT", f"{V1}/nodeimages/ubuntu", json=image_document("other"))
    assert renamed.status_code == 400
    missing = api.request("PUT", f"{V1}/nodeimages/ghost", json=image_document("ghost"))
    assert missing.status_code == 404
    not_object = api.request("PATCH", f"{V1}/nodeimages/ubuntu", json=[1, 2])
    assert not_object.status_code == 400
    broken = api.request("PATCH", f"{V1}/nodeimages/ubuntu", json={"spec": {"arches": None}})
    assert broken.status_code == 422
    dangling = api.request(
        "POST",
        f"{V1}/sites",
        content=_json_site("x", "no-such-image"),
        headers={"Content-Type": "application/json"},
    )
    assert dangling.status_code == 422 and "no-such-image" in dangling.text
    assert api.request("DELETE", f"{V1}/nodeimages/ghost").status_code == 404
    assert api.request("GET", f"{V1}/nodeimages").json()["metadata"]["resourceVersion"] == version


def test_optimistic_concurrency_on_put_patch_and_delete(api: Api) -> None:
    created = api.request("POST", f"{V1}/nodeimages", json=image_document()).json()
    first = created["metadata"]["resourceVersion"]
    api.request("PUT", f"{V1}/nodeimages/ubuntu", json=image_document(os_name="v2"))
    stale = image_document(os_name="v3")
    stale["metadata"]["resourceVersion"] = first
    put = api.request("PUT", f"{V1}/nodeimages/ubuntu", json=stale)
    assert put.status_code == 409 and status_of(put)["details"]["expectedResourceVersion"] == first  # type: ignore[index]
    patch = api.request(
        "PATCH",
        f"{V1}/nodeimages/ubuntu",
        json={"metadata": {"resourceVersion": first}, "spec": {"os": "v4"}},
    )
    assert patch.status_code == 409
    delete = api.request("DELETE", f"{V1}/nodeimages/ubuntu", params={"resourceVersion": first})
    assert delete.status_code == 409
    current = api.request("GET", f"{V1}/nodeimages/ubuntu").json()
    assert current["spec"]["os"] == "v2"
    fresh = image_document(os_name="v5")
    fresh["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    assert api.request("PUT", f"{V1}/nodeimages/ubuntu", json=fresh).status_code == 200
    bad_version = api.request("DELETE", f"{V1}/nodeimages/ubuntu", params={"resourceVersion": "x"})
    assert bad_version.status_code == 400


def _json_site(name: str, image: str) -> str:
    import json

    from ruamel.yaml import YAML

    return json.dumps(YAML(typ="safe", pure=True).load(site(name, image=image)))


# ------------------------------------------------------------------ status


def test_status_is_written_only_by_its_owner(api: Api) -> None:
    api.request("POST", f"{V1}/apply", content=documents(IMAGE, site("a")))
    body = {"metadata": {"name": "a"}, "status": {"reachability": "Reachable"}}
    refused = api.request("PUT", f"{V1}/sites/a/status", json=body)
    assert refused.status_code == 403
    assert api.request("GET", f"{V1}/sites/a/status").status_code == 200


# -------------------------------------------------------------------- apply


def test_apply_creates_then_reports_changes_and_dry_run_writes_nothing(api: Api) -> None:
    first = api.request("POST", f"{V1}/apply", content=documents(IMAGE, site("a")))
    assert first.status_code == 200
    assert [r["action"] for r in first.json()["results"]] == ["created", "created"]
    changed = documents(IMAGE, site("a", region="eu-central"))
    dry = api.request("POST", f"{V1}/apply", params={"dryRun": "true"}, content=changed)
    assert dry.status_code == 200 and dry.json()["dryRun"] is True
    results = {r["name"]: r for r in dry.json()["results"]}
    assert results["ubuntu"]["action"] == "unchanged"
    assert results["a"]["action"] == "changed"
    assert {c["path"] for c in results["a"]["changes"]} == {"metadata.labels.region", "spec.region"}
    assert api.request("GET", f"{V1}/sites/a").json()["spec"]["region"] == "eu-west"
    applied = api.request("POST", f"{V1}/apply", content=changed)
    assert applied.json()["results"][1]["action"] == "changed"
    assert api.request("GET", f"{V1}/sites/a").json()["spec"]["region"] == "eu-central"


def test_apply_with_one_bad_document_writes_nothing(api: Api) -> None:
    bad_site = site("b").replace("memory: 32Gi", "memory: lots")
    answer = api.request("POST", f"{V1}/apply", content=documents(IMAGE, site("a"), bad_site))
    assert answer.status_code == 422
    cause = status_of(answer)["details"]["causes"][0]  # type: ignore[index]
    assert cause["field"] == "spec.nodePools[0].memory"
    assert cause["position"].startswith("<request body>:") and cause["line"] > 20
    assert api.request("GET", f"{V1}/sites").json()["items"] == []
    assert api.request("GET", f"{V1}/nodeimages").json()["items"] == []


def test_apply_checks_references_against_the_store_and_the_batch(api: Api) -> None:
    dangling = api.request("POST", f"{V1}/apply", content=site("a", image="ubuntoo"))
    assert dangling.status_code == 422
    assert "did you mean" not in dangling.text or "ubuntoo" in dangling.text
    assert api.request("POST", f"{V1}/apply", content=IMAGE).status_code == 200
    # The image now comes from the store, not the batch.
    assert api.request("POST", f"{V1}/apply", content=site("a")).status_code == 200


def test_apply_answers_400_for_unreadable_yaml_and_404_for_unknown_kinds(api: Api) -> None:
    malformed = api.request("POST", f"{V1}/apply", content="kind: Site\nmetadata: [\n")
    assert malformed.status_code == 400
    assert status_of(malformed)["details"]["causes"][0]["line"] == 3  # type: ignore[index]
    not_mapping = api.request("POST", f"{V1}/apply", content="- a\n- b\n")
    assert not_mapping.status_code == 400
    unknown = api.request("POST", f"{V1}/apply", content="apiVersion: fleetplane/v1\nkind: Gizmo\n")
    assert unknown.status_code == 404 and "Site" in unknown.text
    empty = api.request("POST", f"{V1}/apply", content="")
    assert empty.status_code == 400
    binary = api.request("POST", f"{V1}/apply", content=b"\xff\xfe")
    assert binary.status_code == 400


# -------------------------------------------------------------------- secrets


def test_secrets_are_for_admins_only_and_returned_in_plain_text_to_them(api: Api) -> None:
    created = api.request("POST", f"{V1}/secrets", json=secret_document())
    assert created.status_code == 201
    assert api.request("GET", f"{V1}/secrets/db").json()["spec"]["data"] == {
        "password": "correct-horse-battery"
    }
    for role in ("operator", "viewer"):
        assert api.request("GET", f"{V1}/secrets/db", role=role).status_code == 403
        assert api.request("GET", f"{V1}/secrets", role=role).status_code == 403
    changed = secret_document(value="another-long-value")
    dry = api.request(
        "POST",
        f"{V1}/apply",
        params={"dryRun": "true"},
        content="apiVersion: fleetplane/v1\nkind: Secret\nmetadata: {name: db}\n"
        "spec: {data: {password: another-long-value}}\n",
    )
    assert dry.json()["results"][0]["action"] == "changed"
    assert "another-long-value" not in dry.text and "correct-horse" not in dry.text
    assert api.request("PUT", f"{V1}/secrets/db", json=changed).status_code == 200


# -------------------------------------------------------------------- audit


def test_audit_log_lists_changes_and_verifies(api: Api) -> None:
    api.request("POST", f"{V1}/apply", content=IMAGE)
    api.request("DELETE", f"{V1}/nodeimages/ubuntu")
    api.request("DELETE", f"{V1}/nodeimages/ubuntu", role="viewer")
    items = api.request("GET", "/api/v1/audit").json()["items"]
    actions = [(i["action"], i["kind"], i["name"]) for i in items]
    assert ("apply", "NodeImage", "ubuntu") in actions
    assert ("delete", "NodeImage", "ubuntu") in actions
    assert ("access.denied", "NodeImage", "ubuntu") in actions
    after = api.request("GET", "/api/v1/audit", params={"after": items[-2]["seq"]}).json()
    assert [i["seq"] for i in after["items"]] == [items[-1]["seq"]]
    verified = api.request("GET", "/api/v1/audit/verify").json()
    assert verified["ok"] is True and verified["checked"] == len(items)


# ------------------------------------------------------------------- limits


def test_oversized_bodies_answer_413_and_write_nothing(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, limits=Limits(max_body_bytes=2048))
    for api in make_api(settings):
        big = documents(IMAGE, "# " + "x" * 4096 + "\n")
        declared = api.request("POST", f"{V1}/apply", content=big)
        assert declared.status_code == 413 and status_of(declared)["code"] == 413

        def chunks() -> object:
            yield IMAGE.encode()
            yield b"# " + b"x" * 4096 + b"\n"

        streamed = api.request("POST", f"{V1}/apply", content=chunks())
        assert streamed.status_code == 413
        assert api.request("GET", f"{V1}/nodeimages").json()["items"] == []


def test_writes_beyond_the_rate_limit_answer_429_with_retry_after(sqlite_url: str) -> None:
    settings = Settings(
        database_url=sqlite_url, limits=Limits(writes_per_second=0.01, write_burst=3)
    )
    for api in make_api(settings):
        codes = [
            api.request("POST", f"{V1}/nodeimages", json=image_document(f"i{i}")).status_code
            for i in range(5)
        ]
        assert codes == [201, 201, 201, 429, 429]
        limited = api.request("POST", f"{V1}/nodeimages", json=image_document("late"))
        assert int(limited.headers["retry-after"]) >= 1
        # Reads are not limited.
        assert api.request("GET", f"{V1}/nodeimages").status_code == 200


def test_a_resource_version_that_is_no_number_is_invalid(api: Api) -> None:
    document = image_document()
    document["metadata"]["resourceVersion"] = "abc"
    created = api.request("POST", f"{V1}/nodeimages", json=document)
    assert created.status_code == 422
    assert status_of(created)["details"]["causes"][0]["field"] == "metadata.resourceVersion"  # type: ignore[index]
    applied = api.request(
        "POST",
        f"{V1}/apply",
        content=IMAGE.replace("name: ubuntu", "name: ubuntu\n  resourceVersion: x1"),
    )
    assert applied.status_code == 422


def test_nul_characters_are_refused_on_every_database(api: Api) -> None:
    document = image_document()
    document["metadata"]["labels"] = {"team": "a\x00b"}
    answer = api.request("POST", f"{V1}/nodeimages", json=document)
    assert answer.status_code == 422
    assert status_of(answer)["details"]["causes"][0]["field"] == "metadata.labels.team"  # type: ignore[index]
