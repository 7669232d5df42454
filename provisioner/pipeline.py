"""The stages wired together: configuration → mappings → source → desired state → plan → target.

The commands use these steps in the same order; each step hands the next plain data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.config import Config, load_config
from provisioner.errors import ConfigError
from provisioner.log import register_secret
from provisioner.mapping.engine import (
    CompiledMappings,
    build_desired,
    compile_mappings,
    fields_to_fetch,
)
from provisioner.mapping.spec import Mappings, load_mappings
from provisioner.model import Derived, DesiredGroup, DesiredState, ObservedState
from provisioner.passwords import Handout, PasswordConfig, generate
from provisioner.plan.diff import diff
from provisioner.plan.lifecycle import apply_lifecycle
from provisioner.plan.model import Change, Plan, PlanHeader
from provisioner.plan.planfile import file_hash, now
from provisioner.plan.policy import apply_policy, check_drop
from provisioner.sources.informat.operations import OPERATIONS, operation
from provisioner.sources.informat.reader import Progress, SourceData, read_source
from provisioner.state import StateStore

if TYPE_CHECKING:
    from provisioner.targets.base import Result, Target


@dataclass
class Prepared:
    config: Config
    mappings: Mappings
    compiled: CompiledMappings
    fields: dict[str, Collection[str] | None]
    """What the mappings read: per data set its fields (None: all)."""


def prepare(config_path: Path) -> Prepared:
    """Read the configuration and compile the mappings it names; no source is read yet."""
    return prepare_config(load_config(config_path))


def prepare_config(config: Config) -> Prepared:
    """Compile the mappings a configuration already read names."""
    if config.mappings is None:
        raise ConfigError(f"{config.path}: no mappings configured (mappings: DIR or FILE)")
    mappings = load_mappings(config.mappings)
    compiled = compile_mappings(mappings, OPERATIONS)
    return Prepared(config, mappings, compiled, fields_to_fetch(compiled))


def read_for_mappings(
    prepared: Prepared,
    *,
    extra_fields: Mapping[str, Collection[str]] | None = None,
    progress: Callable[[Progress], None] = lambda _p: None,
) -> SourceData:
    """Only the data sets and fields the mappings reference (plus *extra_fields*)."""
    fields: dict[str, Collection[str] | None] = dict(prepared.fields)
    for dataset, extra in (extra_fields or {}).items():
        if dataset in fields and fields[dataset] is not None:
            fields[dataset] = sorted({*fields[dataset], *extra})  # type: ignore[misc]
    datasets = [operation(name) for name in fields]
    return read_source(prepared.config.source.informat, datasets, fields=fields, progress=progress)


def desired_state(
    prepared: Prepared,
    data: SourceData,
    *,
    existing: Mapping[str, str] | None = None,
    issued: Collection[str] = (),
) -> DesiredState:
    return build_desired(
        prepared.compiled, data.as_source_rows(), today=data.as_of, existing=existing, issued=issued
    )


def open_target(prepared: Prepared) -> Target | None:
    """The configured target; its client library is imported only now (an extra may be
    missing, and a plan without a target does not need it)."""
    target = prepared.config.target
    if target is None:
        return None
    if target.ad is not None:
        try:
            from provisioner.targets.ad import ActiveDirectory
        except ImportError:
            raise ConfigError(
                "target.ad needs the ldap3 package: pip install 'provisioner[ad]'"
            ) from None
        return ActiveDirectory(target.ad)
    if target.entra is not None:
        try:
            from provisioner.targets.entra import EntraId
        except ImportError:
            raise ConfigError(
                "target.entra needs msgraph-sdk and azure-identity: "
                "pip install 'provisioner[entra]'"
            ) from None
        return EntraId(target.entra)
    return None


def mapped_attributes(prepared: Prepared) -> tuple[set[str], set[str]]:
    """Every directory attribute the mappings set, of accounts and of groups: what a target must
    read to compare."""
    accounts: set[str] = set()
    for account in prepared.compiled.accounts.values():
        accounts |= set(account.attributes)
    groups: set[str] = set()
    for group in prepared.compiled.groups.values():
        groups |= set(group.attributes)
    return accounts, groups


def names_in_use(
    observed: ObservedState, store: StateStore | None
) -> tuple[dict[str, str], set[str]]:
    """(anchor → username held, every name ever issued): people keep their names, and a name
    once given is never given to someone else. Accounts without an anchor are left out: they may
    be adopted under the name they have."""
    existing = {a.anchor: a.username for a in observed.accounts if a.anchor and a.username}
    issued = set(existing.values())
    if store is not None:
        issued |= store.issued_names()
        # A person whose account was deleted and who comes back gets their own name again.
        for anchor, name in store.issued_to().items():
            existing.setdefault(anchor, name)
    return existing, issued


def check_plan_file(plan: Plan, prepared: Prepared, target: str, *, approved: bool) -> None:
    """A saved plan is applied only to what it was made from, and only while it is fresh."""
    header = plan.header
    problems = []
    if header.config_hash != file_hash([prepared.config.path]):
        problems.append("the configuration changed since the plan was made")
    if header.mappings_hash != file_hash(prepared.mappings.files):
        problems.append("the mappings changed since the plan was made")
    if header.target != target:
        problems.append(f"the plan was made for {header.target}, not {target}")
    if now() > dt.datetime.fromisoformat(header.expires):
        problems.append(f"the plan expired at {header.expires}; make a new one")
    if header.blocked:
        problems.append("the plan is blocked: " + "; ".join(header.blocked))
    if header.policy_blocked and not approved:
        problems.append("the plan exceeds policy limits: " + "; ".join(header.policy_blocked))
    if problems:
        raise ConfigError("refusing the plan: " + "; ".join(problems))


def apply_changes(
    plan: Plan,
    target: Target,
    store: StateStore,
    *,
    strict: bool = False,
    passwords: PasswordConfig | None = None,
) -> tuple[list[Result], list[Handout]]:
    """Apply every change in order. A change whose precondition no longer holds is skipped and
    reported (with ``strict``, any such change refuses the whole plan before anything is done);
    a failed change does not stop the others: the next run tries it again. New accounts get an
    initial password, returned for the hand-out sheets and kept nowhere else."""
    if strict:
        drift = [(c, reason) for c in plan.changes if (reason := target.check(c))]
        if drift:
            lines = "; ".join(f"{c.action} {c.key}: {reason}" for c, reason in drift[:10])
            raise ConfigError(f"--strict: {len(drift)} change(s) no longer fit: {lines}")
    passwords = passwords or PasswordConfig()
    initial = {i: generate(passwords) for i, c in enumerate(plan.changes) if c.action == "create"}
    for password in initial.values():
        register_secret(password)
    results, handouts = [], []
    # Each result is recorded as it comes: names issued before a crash stay issued.
    for index, result in enumerate(target.apply_all(plan.changes, initial)):
        change = result.change
        assert change is plan.changes[index], "a target must answer every change, in order"
        results.append(result)
        if result.status != "applied":
            continue
        if change.action in ("create", "rename"):
            store.issue_names([(change.key, str(change.after["username"]))])
        if index in initial:
            username = str(change.after["username"])
            handouts.append(
                Handout(
                    username=username,
                    name=str(change.after.get("displayName") or username),
                    group=" / ".join(change.after.get("ou") or ())
                    or str(change.after.get("department") or "(root)"),
                    password=initial[index],
                )
            )
    return results, handouts


PLAN_VALID_FOR = dt.timedelta(hours=12)
"""A saved plan older than this is refused by apply: the directory will have moved on."""

EMPTY_TARGET = "(no target configured: a first run against an empty directory; nothing is written)"


def make_plan(
    prepared: Prepared,
    data: SourceData,
    desired: DesiredState,
    observed: ObservedState,
    target: str,
    *,
    match_on: Collection[str] = ("username",),
    leavers_since: Mapping[str, dt.date] | None = None,
    kinds: Mapping[str, str] | None = None,
    schools: Mapping[str, str] | None = None,
    last_persons: tuple[str, Mapping[str, int]] | None = None,
) -> Plan:
    """The plan with its header: hashes of what it was made from, expiry, and blocks."""
    created = now()
    blocked = []
    driving = {a.spec.persons.source for a in prepared.compiled.accounts.values()}
    for dataset, instelnr in data.empty():
        if dataset in driving:
            # Informat answers an instelnr the account has no rights on with an empty list: that
            # is never proof that everybody left.
            blocked.append(
                f"{dataset} for {instelnr} answered with no rows: nothing is applied, so that no "
                "account of that school is disabled (check the web-service account's rights)"
            )
    if desired.report.errors:
        blocked.append(
            f"the mappings reported {len(desired.report.errors)} error(s) (run validate): a plan "
            "made from incomplete data could remove what it should keep"
        )
    changes = diff(desired, observed, match_on=tuple(match_on))
    lifecycle = apply_lifecycle(
        changes,
        observed,
        set(desired.accounts),
        since=leavers_since or {},
        kinds=kinds or {},
        config=prepared.config.lifecycle,
        today=data.as_of,
    )
    schools = schools or {}
    managed_per_school: dict[str, int] = {}
    for account in observed.accounts:
        school = schools.get(account.anchor or "")
        if school:
            managed_per_school[school] = managed_per_school.get(school, 0) + 1
    verdict = apply_policy(
        lifecycle.changes,
        prepared.config.policy,
        managed_accounts=len(observed.accounts),  # every account in the managed scope
        day=data.as_of,
        schools=schools,
        managed_per_school=managed_per_school,
    )
    suspicious = _suspicious_groups(lifecycle.changes, desired, observed)
    persons: dict[str, int] = {}
    for account in desired.accounts.values():
        persons[account.school] = persons.get(account.school, 0) + 1
    drops = check_drop(persons, last_persons, prepared.config.policy.max_drop)
    school_counts: dict[str, dict[str, int]] = {}
    for change in verdict.changes:
        if change.kind != "account":
            continue
        wanted = desired.accounts.get(change.key)
        school = wanted.school if wanted else schools.get(change.key, "(unknown)")
        per_action = school_counts.setdefault(school, {})
        per_action[change.action] = per_action.get(change.action, 0) + 1
    header = PlanHeader(
        created=created.isoformat(),
        expires=(created + PLAN_VALID_FOR).isoformat(),
        config_hash=file_hash([prepared.config.path]),
        mappings_hash=file_hash(prepared.mappings.files),
        source_hash=data.source_hash(),
        target=target,
        source_as_of=data.as_of.isoformat(),
        blocked=blocked,
        policy_blocked=[*drops, *verdict.blocked],
        persons=persons,
        school_counts=school_counts,
        warnings=[*suspicious, *desired.report.warnings, *lifecycle.notes, *verdict.notes],
    )
    return Plan(header, verdict.changes)


def fit_to_target(
    desired: DesiredState, account_limits: Mapping[str, int], group_limits: Mapping[str, int]
) -> None:
    """Cut values to the target's length limits, with a warning, so that the plan says what the
    directory will hold (a value the directory refuses would fail on every run)."""
    for objects, limits in (
        (desired.accounts.values(), account_limits),
        (desired.groups.values(), group_limits),
    ):
        for obj in objects:
            for name, derived in obj.attributes.items():
                limit = limits.get(name)
                if limit is not None and len(derived.value) > limit:
                    obj.attributes[name] = Derived(derived.value[:limit], derived.why)
                    which = obj.key if isinstance(obj, DesiredGroup) else obj.anchor
                    desired.report.warnings.append(
                        f"{derived.why.template}: {name} of {which} cut to {limit} characters, "
                        "the directory's limit"
                    )


def drop_unsupported(desired: DesiredState, *, ous: bool, owners: bool) -> None:
    """Leave out what the directory cannot keep: OU paths (Entra ID has no OUs), group owners
    (Active Directory here keeps none), so that the plan never proposes them."""
    if not ous:
        desired.ous.clear()
        for obj in (*desired.accounts.values(), *desired.groups.values()):
            obj.ou = ()
    if not owners:
        for group in desired.groups.values():
            group.owners.clear()


def plan_for(prepared: Prepared, data: SourceData, target: Target | None) -> Plan:
    """Read the target, derive the desired state with the names already in use, and diff."""
    if target is None:
        # Without a target the plan is the preview of a first run against an empty directory
        # (whose owners support is unknown: none are shown).
        desired = desired_state(prepared, data)
        drop_unsupported(desired, ous=True, owners=False)
        return make_plan(prepared, data, desired, ObservedState(), EMPTY_TARGET)
    assert prepared.config.state is not None  # the configuration requires it with a target
    with StateStore(prepared.config.state) as store:
        account_attributes, group_attributes = mapped_attributes(prepared)
        problems = target.unsupported(account_attributes, group_attributes)
        if problems:
            raise ConfigError(
                f"the mappings set what {target.describe()} cannot hold: " + "; ".join(problems)
            )
        observed = target.read(account_attributes | group_attributes)
        existing, issued = names_in_use(observed, store)
        # The target's immutable ids, as seen now: a hand-moved object is still known by them.
        store.remember_anchors("account", ((a.anchor, a.id) for a in observed.accounts if a.anchor))
        store.remember_anchors("group", ((g.key, g.id) for g in observed.groups if g.key))
        desired = desired_state(prepared, data, existing=existing, issued=issued)
        fit_to_target(desired, target.limits, target.group_limits)
        drop_unsupported(desired, ous=target.has_ous, owners=target.has_owners)
        store.remember_kinds((a.anchor, a.kind, a.school) for a in desired.accounts.values())
        gone = [
            a.anchor for a in observed.accounts if a.anchor and a.anchor not in desired.accounts
        ]
        since = {**{anchor: data.as_of for anchor in gone}, **store.leavers()}
        plan = make_plan(
            prepared,
            data,
            desired,
            observed,
            target.describe(),
            match_on=target.config.match_on,
            leavers_since=since,
            kinds=store.kinds(),
            schools=store.schools(),
            last_persons=store.last_successful_persons(),
        )
        if not plan.header.blocked:
            # The leaver clocks run on trustworthy data only: never on an empty or broken read.
            store.track_leavers(gone, desired.accounts, data.as_of)
    return plan


def _suspicious_groups(
    changes: Collection[Change], desired: DesiredState, observed: ObservedState
) -> list[str]:
    """A class that loses all its members at once while they are all still in the source is
    more likely a source problem (a class renamed by mistake, a half-finished school-year
    switch) than real: it is pointed out."""
    members = {g.key: g.members for g in observed.groups if g.key}
    notes = []
    for change in changes:
        if change.action != "remove_member":
            continue
        removed = set(change.before.get("members") or [])
        if removed and removed == members.get(change.key) and removed <= desired.accounts.keys():
            notes.append(
                f"suspicious: group {change.key} loses all {len(removed)} members while they "
                "are all still in the source"
            )
    return notes
