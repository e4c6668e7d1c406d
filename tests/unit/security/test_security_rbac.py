"""The whole RBAC matrix against an independent reading of the access rules.

``_expected`` restates the rules from the design in plain code (it does not
use the policy table), and every combination of role, verb, kind,
subresource, site and reference is checked against :func:`authorize`.
"""

from __future__ import annotations

import itertools

import pytest

from fleetplane.security import Principal, Role, Verb, authorize, policy_markdown
from fleetplane.security.rbac import KNOWN_KINDS, POLICY

DESIRED = {
    "Site",
    "Link",
    "NodeImage",
    "DataSource",
    "Workload",
    "PlacementPolicy",
    "Scenario",
    "Artifact",
    "Rollout",
}
DERIVED = {"Placement", "SiteDesiredState"}
SECRETS = {"Secret"}
SECURITY = {"ApiToken", "BootstrapToken", "RenewalCredential", "Certificate"}
AUDIT = {"AuditEvent"}
TELEMETRY = {"Telemetry"}
ALL_KINDS = DESIRED | DERIVED | SECRETS | SECURITY | AUDIT | TELEMETRY

READ = {Verb.GET, Verb.LIST, Verb.WATCH}
CHANGE = {Verb.UPDATE, Verb.PATCH}
OPS = {"cordon", "drain", "lost"}
SUBRESOURCES: list[str | None] = [None, "status", "cordon", "drain", "lost"]

OWN, OTHER = "store-1", "store-2"


def _people(role: Role, verb: Verb, kind: str, sub: str | None) -> bool:
    if verb in READ:
        # Everyone reads everything but secrets and security administration,
        # which only admins read.
        if role is Role.ADMIN and kind in SECRETS | SECURITY:
            return sub is None
        return sub in (None, "status") and kind in DESIRED | DERIVED | AUDIT | TELEMETRY
    if role is Role.VIEWER:
        return False
    if sub in OPS:
        return kind == "Site" and verb in CHANGE
    if sub is not None:
        return False  # status belongs to agents and controllers
    if kind in DESIRED:
        return True
    # Admin only from here; the audit log is append-only and telemetry is
    # the agents' to write, for admins too.
    return role is Role.ADMIN and kind in DERIVED | SECRETS | SECURITY


def _controller(verb: Verb, kind: str, sub: str | None) -> bool:
    if sub not in (None, "status"):
        return False
    if verb in READ:
        return kind in DESIRED | DERIVED | TELEMETRY
    if kind in DERIVED:
        return True
    return kind in DESIRED and sub == "status" and verb in CHANGE


def _agent(verb: Verb, kind: str, sub: str | None, site: str | None, referenced: bool) -> bool:
    if site != OWN:
        return False
    if kind == "SiteDesiredState":
        return verb in READ and sub is None
    if kind in {"Secret", "Artifact"}:
        return verb is Verb.GET and sub is None and referenced
    if kind == "Site":
        return sub == "status" and verb in CHANGE
    if kind in {"Telemetry", "Certificate"}:
        return verb is Verb.CREATE and sub is None
    return False


def _expected(
    role: Role, verb: Verb, kind: str, sub: str | None, site: str | None, referenced: bool
) -> bool:
    if role is Role.AGENT:
        return _agent(verb, kind, sub, site, referenced)
    if role is Role.CONTROLLER:
        return _controller(verb, kind, sub)
    return _people(role, verb, kind, sub)


def _principal(role: Role) -> Principal:
    return Principal(name=f"{role.value}-1", role=role, site=OWN if role is Role.AGENT else None)


def test_policy_covers_exactly_the_known_kinds() -> None:
    assert set(KNOWN_KINDS) == ALL_KINDS


def test_whole_matrix() -> None:
    mismatches = []
    cases = 0
    for role, verb, kind, sub, site, referenced in itertools.product(
        Role, Verb, sorted(ALL_KINDS), SUBRESOURCES, [OWN, OTHER, None], [False, True]
    ):
        name = "db-password"
        decision = authorize(
            _principal(role),
            verb,
            kind,
            site=site,
            name=name,
            subresource=sub,
            referenced={name} if referenced else set(),
        )
        cases += 1
        if decision.allowed != _expected(role, verb, kind, sub, site, referenced):
            mismatches.append((role.value, verb.value, kind, sub, site, referenced, decision))
    assert cases == len(Role) * len(Verb) * len(ALL_KINDS) * len(SUBRESOURCES) * 3 * 2
    assert mismatches == []


@pytest.mark.parametrize("role", [Role.ADMIN, Role.OPERATOR, Role.VIEWER, Role.CONTROLLER])
def test_status_of_an_agent_site_is_written_only_by_its_agent(role: Role) -> None:
    decision = authorize(_principal(role), "patch", "Site", name=OWN, subresource="status")
    assert decision.allowed is (role is Role.CONTROLLER)  # reachability marks sites unreachable
    agent = _principal(Role.AGENT)
    assert authorize(agent, "patch", "Site", name=OWN, subresource="status")
    assert not authorize(agent, "patch", "Site", name=OTHER, subresource="status")


def test_site_named_kinds_take_the_site_from_the_name() -> None:
    agent = _principal(Role.AGENT)
    assert authorize(agent, "watch", "SiteDesiredState", name=OWN).allowed
    refused = authorize(agent, "get", "SiteDesiredState", name=OTHER)
    assert not refused.allowed
    assert "agent of site 'store-1' may not touch site 'store-2'" in refused.reason


def test_agent_list_without_site_is_refused_with_reason() -> None:
    decision = authorize(_principal(Role.AGENT), "list", "SiteDesiredState")
    assert not decision
    assert "must name its site" in decision.reason


def test_unreferenced_secret_reason() -> None:
    decision = authorize(
        _principal(Role.AGENT), "get", "Secret", site=OWN, name="other", referenced={"db"}
    )
    assert not decision
    assert "Secret 'other' is not referenced by site 'store-1'" in decision.reason


def test_allowed_decision_names_its_rule() -> None:
    decision = authorize(_principal(Role.OPERATOR), "update", "Site", name="s", subresource="drain")
    assert decision.allowed and decision.rule == "site-operations"
    assert "allowed by rule 'site-operations'" in decision.reason


def test_viewer_denial_reason() -> None:
    decision = authorize(_principal(Role.VIEWER), "get", "Secret", name="db")
    assert decision == authorize(_principal(Role.VIEWER), Verb.GET, "Secret", name="db")
    assert not decision.allowed and decision.rule is None
    assert decision.reason == "get Secret/db: role 'viewer' has no rule allowing it"


@pytest.mark.parametrize(
    ("verb", "kind", "sub", "message"),
    [
        ("escalate", "Site", None, "unknown verb 'escalate'"),
        ("get", "Pod", None, "kind 'Pod' is not covered by the access policy"),
        ("get", "Site", "logs", "unknown subresource 'logs'"),
    ],
)
def test_unknown_requests_fail_closed(verb: str, kind: str, sub: str | None, message: str) -> None:
    decision = authorize(_principal(Role.ADMIN), verb, kind, subresource=sub)
    assert not decision.allowed
    assert message in decision.reason


def test_principal_site_binding() -> None:
    with pytest.raises(ValueError, match="site is required"):
        Principal(name="a", role=Role.AGENT)
    with pytest.raises(ValueError, match="not allowed for role 'viewer'"):
        Principal(name="a", role=Role.VIEWER, site="s")


def test_policy_markdown_lists_every_rule() -> None:
    table = policy_markdown()
    assert table.count("\n") == len(POLICY) + 2
    for rule in POLICY:
        assert f"| {rule.name} |" in table
