"""Role-based authorisation as one table that a reviewer can read top to bottom.

:data:`POLICY` lists every permission there is; anything no rule allows is
denied (fail closed: a kind the policy does not name is denied to everyone).
Two properties hold by construction, not by exception:

* status is written only by its owner: an agent for its own Site, the
  in-process controllers for everything else — not even an admin forges an
  agent's heartbeat;
* the audit log is append-only: the server appends to it itself, no role
  may create, change or delete audit events through the API.

:func:`policy_markdown` renders the table for ``docs/security.md``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    AGENT = "agent"
    # The server's own controllers (placement, desired state, rollout,
    # reachability); never given to a token or certificate.
    CONTROLLER = "controller"


# Roles a person's API token may carry.
PERSON_ROLES = frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER})


class Verb(StrEnum):
    GET = "get"
    LIST = "list"
    WATCH = "watch"
    CREATE = "create"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"


READ = frozenset({Verb.GET, Verb.LIST, Verb.WATCH})
WRITE = frozenset({Verb.CREATE, Verb.UPDATE, Verb.PATCH, Verb.DELETE})
CHANGE = frozenset({Verb.UPDATE, Verb.PATCH})
ALL_VERBS = READ | WRITE

# Resource kinds people declare (desired state).
DESIRED_STATE_KINDS = frozenset(
    {
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
)
# Kinds the controllers derive from desired state.
DERIVED_KINDS = frozenset({"Placement", "SiteDesiredState"})
SECRET_KINDS = frozenset({"Secret"})
# Security administration: API tokens, bootstrap tokens, agent renewal
# credentials, agent certificates (issue, rotate, revoke).
SECURITY_KINDS = frozenset({"ApiToken", "BootstrapToken", "RenewalCredential", "Certificate"})
AUDIT_KINDS = frozenset({"AuditEvent"})
TELEMETRY_KINDS = frozenset({"Telemetry"})
KNOWN_KINDS = (
    DESIRED_STATE_KINDS
    | DERIVED_KINDS
    | SECRET_KINDS
    | SECURITY_KINDS
    | AUDIT_KINDS
    | TELEMETRY_KINDS
)

# Subresources: None is the object itself; site operations are subresources
# of Site so that they can be granted without granting all Site edits.
STATUS = "status"
SITE_OPERATIONS = frozenset({"cordon", "drain", "lost"})
SUBRESOURCES = frozenset({STATUS}) | SITE_OPERATIONS
# Kinds whose objects are named after the site they belong to.
SITE_NAMED_KINDS = frozenset({"Site", "SiteDesiredState"})


class Scope(StrEnum):
    ANY = "any"
    # The request's site is the agent's own site.
    OWN_SITE = "own site"
    # Own site, and the object is named by that site's desired state.
    REFERENCED = "referenced by own site"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a person (token), an agent (certificate) or a controller."""

    name: str
    role: Role
    site: str | None = None

    def __post_init__(self) -> None:
        if (self.role is Role.AGENT) != (self.site is not None):
            raise ValueError(
                f"principal {self.name!r}: a site is required for role 'agent' and "
                f"not allowed for role {self.role.value!r}"
            )


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    roles: frozenset[Role]
    verbs: frozenset[Verb]
    kinds: frozenset[str]
    subresources: frozenset[str | None]
    scope: Scope
    why: str


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    rule: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


def _rule(
    name: str,
    roles: Collection[Role],
    verbs: Collection[Verb],
    kinds: Collection[str],
    subresources: Collection[str | None],
    why: str,
    scope: Scope = Scope.ANY,
) -> Rule:
    return Rule(
        name,
        frozenset(roles),
        frozenset(verbs),
        frozenset(kinds),
        frozenset(subresources),
        scope,
        why,
    )


_PEOPLE = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
_OBJECT_AND_STATUS: tuple[str | None, ...] = (None, STATUS)

POLICY: tuple[Rule, ...] = (
    # --- people -----------------------------------------------------------------
    _rule(
        "read-fleet",
        _PEOPLE,
        READ,
        DESIRED_STATE_KINDS | DERIVED_KINDS | AUDIT_KINDS | TELEMETRY_KINDS,
        _OBJECT_AND_STATUS,
        "everyone with a token reads the fleet, its plan, audit log and telemetry",
    ),
    _rule(
        "change-desired-state",
        (Role.ADMIN, Role.OPERATOR),
        WRITE,
        DESIRED_STATE_KINDS,
        (None,),
        "operators apply, change and delete desired state",
    ),
    _rule(
        "site-operations",
        (Role.ADMIN, Role.OPERATOR),
        CHANGE,
        {"Site"},
        SITE_OPERATIONS,
        "operators cordon and drain sites and declare them lost",
    ),
    _rule(
        "override-derived",
        (Role.ADMIN,),
        WRITE,
        DERIVED_KINDS,
        (None,),
        "only admins edit what the controllers derive (it bypasses the placement engine)",
    ),
    _rule(
        "manage-secrets",
        (Role.ADMIN,),
        ALL_VERBS,
        SECRET_KINDS,
        (None,),
        "secrets are read and written by admins only",
    ),
    _rule(
        "manage-security",
        (Role.ADMIN,),
        ALL_VERBS,
        SECURITY_KINDS,
        (None,),
        "tokens, bootstrap tokens, renewal credentials and certificates are admin business",
    ),
    # --- controllers -----------------------------------------------------------------
    _rule(
        "controllers-read",
        (Role.CONTROLLER,),
        READ,
        DESIRED_STATE_KINDS | DERIVED_KINDS | TELEMETRY_KINDS,
        _OBJECT_AND_STATUS,
        "controllers read the fleet to plan it",
    ),
    _rule(
        "controllers-derive",
        (Role.CONTROLLER,),
        WRITE,
        DERIVED_KINDS,
        _OBJECT_AND_STATUS,
        "controllers write placements and site desired states",
    ),
    _rule(
        "controllers-status",
        (Role.CONTROLLER,),
        CHANGE,
        DESIRED_STATE_KINDS,
        (STATUS,),
        "controllers own status (rollout progress, site reachability)",
    ),
    # --- agents ----------------------------------------------------------------------
    _rule(
        "agent-desired-state",
        (Role.AGENT,),
        READ,
        {"SiteDesiredState"},
        (None,),
        "an agent reads its own site's desired state",
        Scope.OWN_SITE,
    ),
    _rule(
        "agent-referenced",
        (Role.AGENT,),
        {Verb.GET},
        {"Secret", "Artifact"},
        (None,),
        "an agent fetches the secrets and artifacts its site's desired state names",
        Scope.REFERENCED,
    ),
    _rule(
        "agent-site-status",
        (Role.AGENT,),
        CHANGE,
        {"Site"},
        (STATUS,),
        "an agent writes its own site's status (heartbeat, workloads, hardware)",
        Scope.OWN_SITE,
    ),
    _rule(
        "agent-telemetry",
        (Role.AGENT,),
        {Verb.CREATE},
        TELEMETRY_KINDS,
        (None,),
        "an agent uploads its own site's telemetry",
        Scope.OWN_SITE,
    ),
    _rule(
        "agent-rotate",
        (Role.AGENT,),
        {Verb.CREATE},
        {"Certificate"},
        (None,),
        "an agent rotates its own certificate",
        Scope.OWN_SITE,
    ),
)


def authorize(
    principal: Principal,
    verb: Verb | str,
    kind: str,
    *,
    site: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
    referenced: Collection[str] = frozenset(),
) -> Decision:
    """May ``principal`` do ``verb`` on ``kind`` (``name``, ``subresource``) at ``site``?

    ``site`` is the site the object belongs to (for Site and SiteDesiredState
    it defaults to ``name``). ``referenced`` holds the names of objects of
    ``kind`` that the principal's site desired state refers to; the server
    computes it when an agent asks for a Secret or an Artifact.
    """
    try:
        verb = Verb(verb)
    except ValueError:
        return Decision(False, f"unknown verb {verb!r} (one of {', '.join(Verb)})")
    if kind not in KNOWN_KINDS:
        return Decision(False, f"kind {kind!r} is not covered by the access policy")
    if subresource is not None and subresource not in SUBRESOURCES:
        return Decision(False, f"unknown subresource {subresource!r} of {kind}")
    if site is None and kind in SITE_NAMED_KINDS:
        site = name
    target = _describe(verb, kind, name, subresource)
    scope_refusal: str | None = None
    for rule in POLICY:
        if not _matches(rule, principal.role, verb, kind, subresource):
            continue
        refusal = _scope_refusal(rule.scope, principal, site, name, referenced, kind)
        if refusal is None:
            return Decision(
                True, f"{target}: allowed by rule {rule.name!r} ({rule.why})", rule.name
            )
        scope_refusal = scope_refusal or refusal
    if scope_refusal is not None:
        return Decision(False, f"{target}: {scope_refusal}")
    return Decision(False, f"{target}: role {principal.role.value!r} has no rule allowing it")


def _matches(rule: Rule, role: Role, verb: Verb, kind: str, subresource: str | None) -> bool:
    return (
        role in rule.roles
        and verb in rule.verbs
        and kind in rule.kinds
        and subresource in rule.subresources
    )


def _scope_refusal(
    scope: Scope,
    principal: Principal,
    site: str | None,
    name: str | None,
    referenced: Collection[str],
    kind: str,
) -> str | None:
    """Why ``scope`` excludes this request, or None when it includes it."""
    if scope is Scope.ANY:
        return None
    if site is None:
        return "an agent's request must name its site"
    if site != principal.site:
        return f"agent of site {principal.site!r} may not touch site {site!r}"
    if scope is Scope.REFERENCED and (name is None or name not in referenced):
        return f"{kind} {name!r} is not referenced by site {site!r}'s desired state"
    return None


def _describe(verb: Verb, kind: str, name: str | None, subresource: str | None) -> str:
    target = kind if name is None else f"{kind}/{name}"
    if subresource is not None:
        target += f"/{subresource}"
    return f"{verb.value} {target}"


def policy_markdown() -> str:
    """The policy as a Markdown table (rule, roles, verbs, kinds, subresources, scope, why)."""
    lines = [
        "| rule | roles | verbs | kinds | subresources | scope | why |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    verb_order = list(Verb)
    for rule in POLICY:
        roles = ", ".join(role.value for role in Role if role in rule.roles)
        verbs = ", ".join(verb.value for verb in verb_order if verb in rule.verbs)
        kinds = ", ".join(sorted(rule.kinds))
        subresources = ", ".join(
            sorted("(object)" if sub is None else sub for sub in rule.subresources)
        )
        lines.append(
            f"| {rule.name} | {roles} | {verbs} | {kinds} | {subresources} | "
            f"{rule.scope.value} | {rule.why} |"
        )
    return "\n".join(lines) + "\n"
