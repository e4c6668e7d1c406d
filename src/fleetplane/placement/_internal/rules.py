"""Policy rules in CEL: compiled once, evaluated per candidate with a result cache.

A rule's result can only change when a field it reads changes. So each
expression records the fields it reads per variable, and results are cached
under the values of exactly those fields: a rule reading ``site.tier`` and
``workload.class`` is evaluated once per (tier, class) pair, not once per
(site, workload) pair. Rows (site, pool) are grouped by the site/pool part of
that signature once per plan; a workload only evaluates the groups it has not
seen under its own workload/profile signature. A ``when`` clause that reads
only the workload collapses to a single evaluation per workload signature.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fleetplane.errors import PolicyError, SourcePosition, did_you_mean
from fleetplane.model.policy import PlacementPolicy
from fleetplane.placement._internal import activation
from fleetplane.placement._internal.fleet_index import BoolArray, FleetIndex, FloatArray, IntArray
from fleetplane.placement._internal.workload_view import ProfileView, WorkloadView

Clause = Literal["when", "require", "prefer"]
Locate = Callable[[str, str, tuple[str | int, ...]], SourcePosition | None]

_STRING = re.compile(
    r"""[rRbB]*('''.*?'''|\"\"\".*?\"\"\"|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""", re.S
)
_REFERENCE = re.compile(r"(?<![.\w])(workload|site|pool|profile)\b(\s*\.\s*([A-Za-z_]\w*))?")
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_HAS_HINT = "guard fields that can be absent with has(), e.g. has(workload.accelerator) && ..."

# Caching by field values is only sound while the result depends on nothing
# else; CEL has no clock or randomness, so this holds for every expression.


# A field value not looked up yet (None and ABSENT are values).
_UNSEEN = object()


@dataclass(frozen=True)
class Expression:
    """One compiled CEL clause and the fields it reads."""

    rule: str
    clause: Clause
    source: str
    program: Any
    fields: dict[str, tuple[str, ...]]  # variable → fields read, sorted

    def reads(self, variable: str) -> bool:
        return variable in self.fields


@dataclass(frozen=True)
class CompiledRule:
    name: str
    index: int
    kind: Literal["require", "prefer"]
    weight: float
    when: Expression
    test: Expression
    description: str | None = None


@dataclass(frozen=True)
class CompiledPolicy:
    resource: PlacementPolicy
    rules: tuple[CompiledRule, ...]

    @property
    def name(self) -> str:
        return self.resource.name

    # Cached: asked once per workload, profile and stage.
    @functools.cached_property
    def requires(self) -> tuple[CompiledRule, ...]:
        return tuple(r for r in self.rules if r.kind == "require")

    @functools.cached_property
    def prefers(self) -> tuple[CompiledRule, ...]:
        return tuple(r for r in self.rules if r.kind == "prefer")


def _strip_strings(source: str) -> str:
    return _STRING.sub("''", source)


def fields_read(source: str) -> dict[str, tuple[str, ...]]:
    """Fields read per variable; a variable used other than as ``var.field`` reads every field."""
    text = _strip_strings(source)
    bound = set(_BOUND.findall(text))
    found: dict[str, set[str]] = {}
    for match in _REFERENCE.finditer(text):
        variable, field_name = match.group(1), match.group(3)
        if variable in bound:
            continue
        names = found.setdefault(variable, set())
        if field_name is None:
            names.update(activation.VARIABLES[variable])
        else:
            names.add(field_name)
    return {v: tuple(sorted(names)) for v, names in sorted(found.items())}


class _Where:
    def __init__(self, policy: PlacementPolicy, locate: Locate | None) -> None:
        self.policy = policy
        self.locate = locate

    def __call__(self, index: int, clause: str) -> str:
        path = f"spec.rules[{index}].{clause}"
        position = None
        if self.locate is not None:
            position = self.locate(
                "PlacementPolicy", self.policy.name, ("spec", "rules", index, clause)
            )
        return f"{position} {path}" if position else f"PlacementPolicy {self.policy.name} {path}"


def _compile_error(message: str) -> str:
    # The library reports "Failed to parse expression '...': ERROR: <input>:L:C: text"
    # followed by the source line and a caret; keep the part from "<input>" on.
    _, sep, rest = message.partition("ERROR: ")
    text = rest if sep else message
    return text.replace("<input>:", "at ", 1)


def compile_expression(
    rule: str, clause: Clause, source: str, where: Callable[[], str]
) -> Expression:
    import cel

    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as error:
        raise PolicyError(
            f"{where()}: rule {rule!r} does not compile: {_compile_error(str(error))}"
        ) from None
    fields = fields_read(source)
    bound = set(_BOUND.findall(_strip_strings(source)))
    unknown = sorted(set(program.variables()) - set(activation.VARIABLES) - bound)
    if unknown:
        known = ", ".join(activation.VARIABLES)
        raise PolicyError(
            f"{where()}: rule {rule!r} uses unknown variable {unknown[0]!r}; "
            f"rules can use {known} (see docs/policy.md)"
        )
    for variable, names in fields.items():
        schema = activation.VARIABLES[variable]
        for name in names:
            if name not in schema:
                hint = did_you_mean(name, list(schema))
                raise PolicyError(
                    f"{where()}: rule {rule!r}: {variable} has no field {name!r}"
                    + (f"; {hint}" if hint else f"; fields are {', '.join(schema)}")
                )
    return Expression(rule, clause, source, program, fields)


def compile_policy(policy: PlacementPolicy, locate: Locate | None = None) -> CompiledPolicy:
    """Compile every rule, failing on the first that does not compile with its position."""
    where = _Where(policy, locate)
    rules = []
    for i, rule in enumerate(policy.spec.rules):
        kind: Literal["require", "prefer"] = "require" if rule.require is not None else "prefer"
        test_source = rule.require if rule.require is not None else rule.prefer
        assert test_source is not None  # the model guarantees exactly one
        when = compile_expression(rule.name, "when", rule.when, functools.partial(where, i, "when"))
        test = compile_expression(rule.name, kind, test_source, functools.partial(where, i, kind))
        rules.append(
            CompiledRule(rule.name, i, kind, float(rule.weight), when, test, rule.description)
        )
    return CompiledPolicy(policy, tuple(rules))


@dataclass
class CacheStats:
    """CEL programs run, and (candidate) values served; the rest came from the cache."""

    evaluations: int = 0
    lookups: int = 0

    @property
    def hits(self) -> int:
        return self.lookups - self.evaluations


@dataclass
class _RowGroups:
    codes: IntArray  # row → group
    representative: list[int]  # group → one row


@dataclass
class _ExpressionCache:
    groups: _RowGroups
    results: dict[Any, np.ndarray] = field(default_factory=dict)  # workload key → int8 per group


class RuleEvaluator:
    """Evaluates compiled rules over rows, caching by the signature of the fields read."""

    def __init__(self, index: FleetIndex, policy: CompiledPolicy, *, cache: bool = True) -> None:
        self.index = index
        self.policy = policy
        self.cache_enabled = cache
        self.stats = CacheStats()
        self._caches: dict[int, _ExpressionCache] = {}
        self._wkeys: dict[tuple[int, str, int], Any] = {}
        # Frozen value of one workload or profile field, shared by every expression
        # that reads it (freezing labels is the costly part of a cache key).
        self._field_values: dict[tuple[str, str, int, str], Any] = {}
        self._skip: dict[tuple[int, str, int], bool] = {}
        # Whole-policy results per row, under the frozen workload and profile fields
        # every require (prefer) rule reads: workloads of one signature share them.
        # require: -2 not known yet, -1 every applicable rule holds, else the first
        # failing rule; penalty: NaN not known yet.
        self._require_rows: dict[Any, IntArray] = {}
        self._penalty_rows: dict[Any, FloatArray] = {}
        self._clause_fields: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        # fired(): (frozen fields every rule reads, row group over every rule's
        # expressions) → (lines, lookups it made); the key per (workload, profile).
        self._fired_rows: dict[Any, tuple[tuple[str, ...], int]] = {}
        self._fired_wkeys: dict[tuple[str, int], Any] = {}
        self._fired_codes: IntArray | None = None

    # -- signatures ---------------------------------------------------------------------

    def _row_groups(self, expr: Expression) -> _RowGroups:
        site_fields = expr.fields.get("site", ())
        pool_fields = expr.fields.get("pool", ())
        n = self.index.n_rows
        if not self.cache_enabled:
            return _RowGroups(np.arange(n, dtype=np.int64), list(range(n)))
        if not site_fields and not pool_fields:
            return _RowGroups(np.zeros(n, dtype=np.int64), [0] if n else [])
        site_keys = [
            activation.freeze(activation.build("site", s, site_fields)) for s in self.index.sites
        ]
        codes: dict[Any, int] = {}
        row_codes = np.empty(n, dtype=np.int64)
        representative: list[int] = []
        for row, pool in enumerate(self.index.pools):
            key = (
                site_keys[int(self.index.row_site[row])],
                activation.freeze(activation.build("pool", pool, pool_fields)),
            )
            code = codes.get(key)
            if code is None:
                code = codes[key] = len(representative)
                representative.append(row)
            row_codes[row] = code
        return _RowGroups(row_codes, representative)

    def _cache_for(self, expr: Expression) -> _ExpressionCache:
        key = id(expr)
        cache = self._caches.get(key)
        if cache is None:
            cache = self._caches[key] = _ExpressionCache(self._row_groups(expr))
        return cache

    def _workload_key(self, expr: Expression, view: WorkloadView, profile: ProfileView) -> Any:
        if not self.cache_enabled:
            return (view.name, profile.index)
        memo = (id(expr), view.name, profile.index)
        key = self._wkeys.get(memo)
        if key is None:
            key = (
                self._frozen("workload", view, view.name, -1, expr.fields.get("workload", ())),
                self._frozen(
                    "profile", profile, view.name, profile.index, expr.fields.get("profile", ())
                ),
            )
            self._wkeys[memo] = key
        return key

    def _frozen(
        self,
        variable: str,
        entity: WorkloadView | ProfileView,
        name: str,
        number: int,
        fields: tuple[str, ...],
    ) -> tuple[tuple[str, Any], ...]:
        """The frozen activation of ``fields`` (absent ones left out), field by field, cached.

        Equal to ``freeze(build(variable, entity, fields))``: build keeps the
        fields that are set, and freeze sorts a map's items by key.
        """
        out = []
        for field_name in sorted(fields):
            memo = (variable, name, number, field_name)
            value = self._field_values.get(memo, _UNSEEN)
            if value is _UNSEEN:
                built = activation.build(variable, entity, (field_name,))
                value = activation.freeze(built[field_name]) if built else activation.ABSENT
                self._field_values[memo] = value
            if value is not activation.ABSENT:
                out.append((field_name, value))
        return tuple(out)

    # -- evaluation -----------------------------------------------------------------------

    def evaluate(
        self, expr: Expression, view: WorkloadView, profile: ProfileView, rows: IntArray
    ) -> BoolArray:
        """The expression's value at each of ``rows`` for this workload and profile."""
        cache = self._cache_for(expr)
        wkey = self._workload_key(expr, view, profile)
        results = cache.results.get(wkey)
        if results is None:
            results = np.full(len(cache.groups.representative), -1, dtype=np.int8)
            cache.results[wkey] = results
        self.stats.lookups += int(rows.size)
        if results.size == 1 and self.cache_enabled:
            # Reads no site or pool field: one value for every row.
            if results[0] < 0 and rows.size:
                results[0] = self._execute(
                    expr, self._base(expr, view, profile), view, int(rows[0])
                )
            return np.full(rows.size, results[0] == 1)
        groups = cache.groups.codes[rows]
        values = results[groups]
        unknown = values < 0
        if unknown.any():
            base = self._base(expr, view, profile)
            for group in np.unique(groups[unknown]).tolist():
                row = cache.groups.representative[group]
                results[group] = self._execute(expr, base, view, row)
            values = results[groups]
        return np.asarray(values == 1)

    def _base(self, expr: Expression, view: WorkloadView, profile: ProfileView) -> dict[str, Any]:
        return {
            "workload": activation.build("workload", view, expr.fields.get("workload", ())),
            "profile": activation.build("profile", profile, expr.fields.get("profile", ())),
        }

    def _execute(self, expr: Expression, base: dict[str, Any], view: WorkloadView, row: int) -> int:
        self.stats.evaluations += 1
        context: dict[str, Any] = {}
        for variable in expr.fields:
            if variable in ("workload", "profile"):
                context[variable] = base[variable]
            elif variable == "site":
                site = self.index.site_of_row(row)
                context["site"] = activation.build("site", site, expr.fields["site"])
            else:
                context["pool"] = activation.build(
                    "pool", self.index.pools[row], expr.fields["pool"]
                )
        try:
            value = expr.program.execute(context)
        except KeyError as error:
            missing = str(error.args[0]) if error.args else "?"
            path = _path_ending_in(expr.source, missing)
            raise PolicyError(
                f"rule {expr.rule!r} ({expr.clause}: {expr.source}): field {path!r} is not set "
                f"for workload {view.name!r} at {self.index.row_label(row)}; {_HAS_HINT}"
            ) from None
        except Exception as error:  # the CEL library raises TypeError/RuntimeError/ZeroDivision…
            raise PolicyError(
                f"rule {expr.rule!r} ({expr.clause}: {expr.source}) failed for workload "
                f"{view.name!r} at {self.index.row_label(row)}: {error}"
            ) from None
        if not isinstance(value, bool):
            raise PolicyError(
                f"rule {expr.rule!r} ({expr.clause}: {expr.source}) must be true or false, "
                f"got {value!r} for workload {view.name!r} at {self.index.row_label(row)}"
            )
        return 1 if value else 0

    # -- rule semantics ---------------------------------------------------------------------

    def _applies(
        self, rule: CompiledRule, view: WorkloadView, profile: ProfileView, rows: IntArray
    ) -> BoolArray:
        return self.evaluate(rule.when, view, profile, rows)

    def _skips(
        self, rule: CompiledRule, view: WorkloadView, profile: ProfileView, row: int
    ) -> bool:
        """True when the rule's ``when`` reads only the workload and is false for it.

        The common case ("when: workload.class == 'training'"): one cached
        value decides for every row, so the rule costs nothing for the rest.
        """
        when = rule.when
        if when.reads("site") or when.reads("pool") or not self.cache_enabled:
            return False
        memo = (rule.index, view.name, profile.index)
        skip = self._skip.get(memo)
        if skip is None:
            rows = np.array([row], dtype=np.int64)
            skip = self._skip[memo] = not bool(self.evaluate(when, view, profile, rows)[0])
        return skip

    def _policy_key(
        self, kind: Literal["require", "prefer", "all"], view: WorkloadView, profile: ProfileView
    ) -> Any:
        """Frozen values of every workload and profile field the rules of ``kind`` read.

        Each expression's cache key is a function of these, so every rule of
        that kind has the same value at a row for two workloads with equal keys.
        """
        fields = self._clause_fields.get(kind)
        if fields is None:
            rules = (
                self.policy.rules
                if kind == "all"
                else self.policy.requires
                if kind == "require"
                else self.policy.prefers
            )
            exprs = [e for rule in rules for e in (rule.when, rule.test)]
            fields = self._clause_fields[kind] = (
                tuple(sorted({f for e in exprs for f in e.fields.get("workload", ())})),
                tuple(sorted({f for e in exprs for f in e.fields.get("profile", ())})),
            )
        workload = self._frozen("workload", view, view.name, -1, fields[0])
        if not fields[1]:
            return (workload, ())
        return (workload, self._frozen("profile", profile, view.name, profile.index, fields[1]))

    def require_key(self, view: WorkloadView, profile: ProfileView) -> Any:
        """The key of :meth:`require`'s per-row table for this workload and profile (cached path).

        Workloads and profiles with equal keys get the same require result at every row.
        """
        return self._policy_key("require", view, profile)

    def require_known(self, key: Any) -> IntArray | None:
        """:meth:`require`'s per-row table for ``key``: -1 holds, a rule index fails, -2 unknown.

        For a chunk-wide screen (feasibility.screen_many): where every row a
        caller asks for is known, one lookup answers a whole group of
        profiles; that caller then counts them in ``stats.lookups`` as
        :meth:`require` would. None: no table yet (nothing known). Read only.
        """
        if not self.cache_enabled:
            return None
        return self._require_rows.get(key)

    def require(
        self, view: WorkloadView, profile: ProfileView, rows: IntArray
    ) -> tuple[BoolArray, IntArray]:
        """Rows where every applicable require rule holds; per row the first failing rule (-1)."""
        if not self.cache_enabled or not len(rows):
            return self._require(view, profile, rows)
        key = self._policy_key("require", view, profile)
        table = self._require_rows.get(key)
        if table is None:
            table = self._require_rows[key] = np.full(self.index.n_rows, -2, dtype=np.int64)
        values = table[rows]
        unknown = values == -2
        if unknown.any():
            todo = rows[unknown]
            ok, failed = self._require(view, profile, todo)
            values[unknown] = np.where(ok, -1, failed)
            table[todo] = values[unknown]
        self.stats.lookups += int((~unknown).sum())
        ok = values == -1
        return ok, np.where(ok, -1, values)

    def _require(
        self, view: WorkloadView, profile: ProfileView, rows: IntArray
    ) -> tuple[BoolArray, IntArray]:
        ok = np.ones(len(rows), dtype=bool)
        failed = np.full(len(rows), -1, dtype=np.int64)
        for rule in self.policy.requires:
            live = np.flatnonzero(ok)
            if not len(live):
                break
            if self._skips(rule, view, profile, int(rows[0])):
                continue
            applies = self._applies(rule, view, profile, rows[live])
            check = live[applies]
            if not len(check):
                continue
            held = self.evaluate(rule.test, view, profile, rows[check])
            broken = check[~held]
            ok[broken] = False
            failed[broken] = rule.index
        return ok, failed

    def penalty(self, view: WorkloadView, profile: ProfileView, rows: IntArray) -> FloatArray:
        """Money per month added at each row by prefer rules that apply but do not hold."""
        if not self.cache_enabled or not len(rows):
            return self._penalty(view, profile, rows)
        key = self._policy_key("prefer", view, profile)
        table = self._penalty_rows.get(key)
        if table is None:
            table = self._penalty_rows[key] = np.full(self.index.n_rows, np.nan)
        values = table[rows]
        unknown = np.isnan(values)
        if unknown.any():
            todo = rows[unknown]
            values[unknown] = self._penalty(view, profile, todo)
            table[todo] = values[unknown]
        self.stats.lookups += int((~unknown).sum())
        return values

    def penalties(self, asks: Sequence[tuple[WorkloadView, ProfileView, IntArray]]) -> FloatArray:
        """:meth:`penalty` of each (workload, profile, rows), laid end to end.

        For feasibility's chunk pricing: per prefer key one gather from its
        table; an ask whose rows were all known before is answered from it,
        the others go through :meth:`penalty`, in order. Values and counters
        are those of calling :meth:`penalty` for each ask in order (a key's
        table is only written under that key, where it was unknown).
        """
        sizes = np.array([rows.size for _, _, rows in asks], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        out = np.empty(int(starts[-1]))
        if not self.cache_enabled:
            for i, (view, profile, rows) in enumerate(asks):
                out[starts[i] : starts[i + 1]] = self.penalty(view, profile, rows)
            return out
        by_key: dict[Any, list[int]] = {}
        for i, (view, profile, rows) in enumerate(asks):
            if rows.size:
                by_key.setdefault(self._policy_key("prefer", view, profile), []).append(i)
        slow: list[int] = []
        for key, same in by_key.items():
            table = self._penalty_rows.get(key)
            if table is None:
                slow += same
                continue
            at = np.array(same, dtype=np.int64)
            block = np.concatenate([[0], np.cumsum(sizes[at])])
            values = table[np.concatenate([asks[i][2] for i in same])]
            unknown = np.isnan(values)
            # Asks with a row unknown before any of them ran: through penalty().
            counted = np.concatenate([[0], np.cumsum(unknown)])
            waits = counted[block[1:]] > counted[block[:-1]]
            slow += at[waits].tolist()
            done = ~waits
            if done.any():
                fast = at[done]
                index = np.arange(int(sizes[fast].sum())) + np.repeat(
                    block[:-1][done] - np.concatenate([[0], np.cumsum(sizes[fast])[:-1]]),
                    sizes[fast],
                )
                self.stats.lookups += int(index.size)
                out[
                    np.arange(index.size)
                    + np.repeat(
                        starts[fast] - np.concatenate([[0], np.cumsum(sizes[fast])[:-1]]),
                        sizes[fast],
                    )
                ] = values[index]
        for i in sorted(slow):
            view, profile, rows = asks[i]
            out[starts[i] : starts[i + 1]] = self.penalty(view, profile, rows)
        return out

    def _penalty(self, view: WorkloadView, profile: ProfileView, rows: IntArray) -> FloatArray:
        total = np.zeros(len(rows), dtype=np.float64)
        for rule in self.policy.prefers:
            if not len(rows) or self._skips(rule, view, profile, int(rows[0])):
                continue
            applies = self._applies(rule, view, profile, rows)
            check = np.flatnonzero(applies)
            if not len(check):
                continue
            held = self.evaluate(rule.test, view, profile, rows[check])
            total[check[~held]] += rule.weight
        return total

    def fired(self, view: WorkloadView, profile: ProfileView, row: int) -> list[str]:
        """Human lines for the rules that applied at one row (for the explanation).

        Cached per (frozen workload and profile fields any rule reads, row group):
        every expression's cache key and row group are functions of those, so two
        calls with equal keys get the same lines. A cached answer counts the lookups
        the uncached one would have made (all of them cache hits), so the statistics
        are unchanged.
        """
        if not self.cache_enabled:
            return self._fired(view, profile, row)
        memo = (view.name, profile.index)
        wkey = self._fired_wkeys.get(memo)
        if wkey is None:
            wkey = self._fired_wkeys[memo] = self._policy_key("all", view, profile)
        key = (wkey, int(self._fired_row_codes()[row]))
        hit = self._fired_rows.get(key)
        if hit is None:
            before = self.stats.lookups
            lines = self._fired(view, profile, row)
            hit = self._fired_rows[key] = (tuple(lines), self.stats.lookups - before)
        else:
            self.stats.lookups += hit[1]
        return list(hit[0])

    def _fired_row_codes(self) -> IntArray:
        """Row → code, equal for rows in the same group of every rule expression."""
        if self._fired_codes is None:
            exprs = [e for rule in self.policy.rules for e in (rule.when, rule.test)]
            n = self.index.n_rows
            if exprs and n:
                table = np.stack([self._cache_for(e).groups.codes for e in exprs], axis=1)
                _, codes = np.unique(table, axis=0, return_inverse=True)
                self._fired_codes = np.asarray(codes, dtype=np.int64).reshape(n)
            else:
                self._fired_codes = np.zeros(n, dtype=np.int64)
        return self._fired_codes

    def _fired(self, view: WorkloadView, profile: ProfileView, row: int) -> list[str]:
        rows = np.array([row], dtype=np.int64)
        lines = []
        for rule in self.policy.rules:
            if not self._applies(rule, view, profile, rows)[0]:
                continue
            held = bool(self.evaluate(rule.test, view, profile, rows)[0])
            if rule.kind == "require":
                lines.append(f"{rule.name}: required, holds")
            elif held:
                lines.append(f"{rule.name}: preferred, holds")
            else:
                lines.append(f"{rule.name}: preferred, not met (+{rule.weight:g}/month)")
        return lines


def _path_ending_in(source: str, name: str) -> str:
    match = re.search(rf"[A-Za-z_][\w.]*\.{re.escape(name)}\b", _strip_strings(source))
    return match.group(0) if match else name
