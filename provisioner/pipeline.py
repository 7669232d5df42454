"""The stages wired together: configuration → mappings → source → desired state → plan → target.

Composition only: each function here opens or reads what a stage needs and hands it the plain
data of the stage before. The rules live in the stages (:mod:`provisioner.mapping`,
:mod:`provisioner.plan`, :mod:`provisioner.apply`); which source and which target are used is
decided by the registries in :mod:`provisioner.sources` and :mod:`provisioner.targets`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner import log
from provisioner.background import InBackground
from provisioner.config import Config, load_config
from provisioner.errors import ConfigError
from provisioner.gcpause import paused_gc
from provisioner.mapping.engine import (
    CompiledMappings,
    Engine,
    compile_mappings,
    fields_to_fetch,
    map_persons,
)
from provisioner.mapping.spec import Mappings, load_mappings
from provisioner.model import DesiredState, NameClash, ObservedAccount, ObservedState
from provisioner.plan.model import Plan
from provisioner.plan.planfile import file_hash, load_sealed_plan, save_plan, verify_plan_file
from provisioner.plan.planner import (
    Memory,
    NamesInUse,
    Origin,
    Rules,
    drop_unsupported,
    fit_to_target,
    make_plan,
    names_in_use,
)
from provisioner.plan.seal import PlanKey, key_path, load_key
from provisioner.readcache import ReadCache
from provisioner.sources import open_sources
from provisioner.sources.base import Fields, KeptAnswers, Progress, Source, SourceRead
from provisioner.state import StateStore
from provisioner.targets import hold_persons, names_ignore_case, target_findings
from provisioner.targets import open_target as _open_target
from provisioner.targets.base import Target

EMPTY_TARGET = "(no target configured: a first run against an empty directory; nothing is written)"


@dataclass
class Prepared:
    config: Config
    mappings: Mappings
    compiled: CompiledMappings
    source: Source
    fields: dict[str, Collection[str] | None]
    """What the mappings read: per data set its fields (None: all)."""
    full_read: bool = False
    """Read the directory in full even when an incremental read could do (``--full-read``)."""
    keeps_read: bool = False
    """Keep the directory's read in the state store as the next read's base: the commands that
    write the store (apply, run) do; plan and the previews leave it as they found it."""


def prepare(config_path: Path, **source_seams: Any) -> Prepared:
    """Read the configuration and compile the mappings it names; no source is read yet."""
    return prepare_config(load_config(config_path), **source_seams)


def prepare_config(config: Config, **source_seams: Any) -> Prepared:
    """Compile the mappings a configuration already read names, against its source's data sets."""
    if config.mappings is None:
        raise ConfigError(f"{config.path}: no mappings configured (mappings: DIR or FILE)")
    source = open_configured_source(config, **source_seams)
    mappings = load_mappings(config.mappings)
    compiled = compile_mappings(mappings, source.datasets())
    return Prepared(config, mappings, compiled, source, fields_to_fetch(compiled))


def prepare_preview(config: Config, school_year: str, **source_seams: Any) -> Prepared:
    """What ``plan --schooljaar`` plans with: the configured source, reading *school_year* as it
    will stand on its first day (the source chooses the day; the read is dated by it), and the
    configured policy without the leaver freeze, so that the preview shows what the first
    night of that year will do, leavers included. Nothing here writes: a preview makes no plan
    key and is never saved for apply."""
    # Only the freeze goes: the limits stay, so the preview lists the approvals it will need.
    policy = dataclasses.replace(config.policy, freeze_leavers=[])
    prepared = prepare_config(dataclasses.replace(config, policy=policy), **source_seams)
    for_school_year = getattr(prepared.source, "for_school_year", None)
    if for_school_year is None:
        raise ConfigError(
            f"{prepared.source.describe()} cannot read another school year: plan --schooljaar "
            "needs a source that can (Informat)"
        )
    source: Source = for_school_year(school_year)
    return dataclasses.replace(prepared, source=source)


def open_configured_source(config: Config, **seams: Any) -> Source:
    return open_sources(config.source.parts, **seams)


def read_for_mappings(
    prepared: Prepared,
    *,
    extra_fields: Mapping[str, Collection[str]] | None = None,
    progress: Callable[[Progress], None] = lambda _p: None,
) -> SourceRead:
    """Only the data sets and fields the mappings reference (plus *extra_fields*). A source
    that can reuse what it parsed on the last read (a
    :class:`~provisioner.sources.base.KeepingSource`) does so when the state store keeps it;
    the commands that write the store keep what it parses now."""
    fields: dict[str, Collection[str] | None] = dict(prepared.fields)
    for dataset, extra in (extra_fields or {}).items():
        if dataset in fields and fields[dataset] is not None:
            fields[dataset] = sorted({*fields[dataset], *extra})  # type: ignore[misc]
    state = prepared.config.state
    keeping = getattr(prepared.source, "read_keeping", None)
    if keeping is None or state is None or not state.exists():
        return prepared.source.read(fields, progress=progress)
    with StateStore(state) as store:
        kept = KeptAnswers(store.kept_answers())
    read: SourceRead = keeping(fields, kept, progress=progress)
    if prepared.keeps_read and kept.changed:  # only a whole read gets here
        with StateStore(state) as store:
            store.keep_answers(kept.new)
    return read


def search_fields(prepared: Prepared) -> Fields:
    """The identifiers people search by (explain, password reset), per data set read."""
    offered = prepared.source.datasets()
    return {name: offered[name].search_fields for name in prepared.fields if name in offered}


def persons_of(prepared: Prepared, read: SourceRead) -> Engine:
    """The part of the mapping that needs no names in use (:func:`map_persons`)."""
    # A source that does not name itself is named by its key in the configuration.
    read.rows.origin = read.rows.origin or prepared.config.source.kind
    offered = prepared.source.datasets()
    return map_persons(
        prepared.compiled,
        read.rows,
        today=read.as_of,
        problems=read.problems,
        documented={name: info.documented_fields for name, info in offered.items()},
        unavailable={name: info.unavailable for name, info in offered.items()},
    )


def desired_state(
    prepared: Prepared,
    read: SourceRead,
    *,
    names: NamesInUse | None = None,
    persons: Engine | None = None,
) -> DesiredState:
    """The desired state of *read*, given the names in use (none: a first run). *persons* is
    :func:`persons_of` *read* when it was made already (an engine makes one desired state)."""
    names = names or NamesInUse()
    engine = persons or persons_of(prepared, read)
    desired = engine.desired(
        existing=names.existing,
        issued=names.issued,
        held_values=names.held_values,
        own=names.own,
    )
    # A value the directory refuses would fail on every run: found now. A person's own value holds
    # that person only; a group's or an OU's name is an error that blocks the plan.
    found = target_findings(prepared.config.target, desired)
    desired.report.errors += found.errors
    hold_persons(desired, found.persons, read.rows)
    return desired


OUTSIDE_ROUNDS = 4
"""How often the names are given again when some turn out to be taken outside the managed
scope: each round skips every name found taken so far, so one round is the usual case."""


@dataclass
class Desired:
    state: DesiredState
    taken_outside: list[NameClash]


def desired_in_directory(
    prepared: Prepared,
    read: SourceRead,
    target: Target,
    observed: ObservedState,
    names: NamesInUse,
    persons: Engine | None = None,
) -> Desired:
    """The desired state whose new names (of new accounts and renames) are free in the whole
    domain or tenant, not only in the managed scope: a name taken outside is skipped for the next
    free one, never a create that fails on every night. A person whose names are still taken
    after :data:`OUTSIDE_ROUNDS` rounds is held. *persons* serves the first round."""
    taken: dict[str, str] = {}
    clashes: list[NameClash] = []
    for _round in range(OUTSIDE_ROUNDS):
        round_names = dataclasses.replace(names, issued=names.issued | taken.keys())
        desired = desired_state(prepared, read, names=round_names, persons=persons)
        persons = None  # another round maps the persons again
        wanted = new_names(desired, observed)
        found = target.taken_outside(sorted(set(wanted) - taken.keys()))
        if not found:
            break
        taken |= found
        clashes += [NameClash(name, wanted[name], where) for name, where in found.items()]
    else:
        _hold_taken(desired, wanted, found, read)
    if clashes:
        desired.report.warnings.append(
            f"{len(clashes)} name(s) the mappings would give are taken outside the managed scope "
            f"(e.g. {clashes[0].name!r} by {clashes[0].where}): the next free name was given "
            "instead; plan --adoption-report lists them"
        )
    return Desired(desired, clashes)


def new_names(desired: DesiredState, observed: ObservedState) -> dict[str, str]:
    """Casefolded name → anchor, of every username and unique value a desired account does not
    hold in the directory yet (a new account, or a rename). The names of accounts in the managed
    scope without an anchor are left out: the planner adopts such an account by them
    (``match_on``) or reports a conflict."""
    holders: dict[str, list[ObservedAccount]] = {}
    for account in (*observed.accounts, *observed.outside):
        holders.setdefault(account.anchor or "", []).append(account)
    folded: dict[str, set[str]] = {}  # anchor → what its accounts hold, casefolded, when needed

    def held_by(anchor: str) -> set[str]:
        if anchor not in folded:
            folded[anchor] = {
                value.casefold()
                for account in holders.get(anchor, ())
                for value in (account.username, *account.attributes.values())
                if value
            }
        return folded[anchor]

    wanted: dict[str, str] = {}
    for anchor, account in desired.accounts.items():
        mine = holders.get(anchor, ())
        for value in (account.username, *(account.attributes[a].value for a in account.unique)):
            if not value or any(
                value == held.username or value in held.attributes.values() for held in mine
            ):
                continue  # held as it is: the usual case, found without casefolding
            name = value.casefold()
            if name not in held_by(anchor) and name not in held_by(""):
                wanted[name] = anchor
    return wanted


def _hold_taken(
    desired: DesiredState, wanted: Mapping[str, str], found: Mapping[str, str], read: SourceRead
) -> None:
    persons = [
        (
            desired.accounts[wanted[name]],
            f"the name {name!r} is taken outside the managed scope by {where}, and so were the "
            "next ones tried",
        )
        for name, where in found.items()
        if wanted.get(name) in desired.accounts
    ]
    hold_persons(desired, persons, read.rows)


def remembered_names(config: Config) -> NamesInUse:
    """The names the state store remembers (validate and explain, which read no directory)."""
    if config.state is None or not config.state.exists():
        return NamesInUse()
    with StateStore(config.state) as store:
        return names_in_use(
            ObservedState(), store.issued_to(), store.issued_names(), own=store.issued_by_anchor()
        )


def open_target(prepared: Prepared, **seams: Any) -> Target | None:
    """The configured target, told which attributes the mappings set: it writes no others."""
    target = _open_target(prepared.config.target, **seams)
    if target is not None:
        target.manage_attributes(*mapped_attributes(prepared))
        target.manage_licences(named_licences(prepared))
        target.archive_ou = tuple(prepared.config.lifecycle.archive_ou)
    return target


def named_licences(prepared: Prepared) -> dict[str, frozenset[str]]:
    """Every licence the mappings name: SKU part number → the service plans they leave off."""
    named: dict[str, frozenset[str]] = {}
    for account in prepared.compiled.accounts.values():
        for licence in account.spec.licences:
            sku = licence.sku.text.strip()
            named[sku] = named.get(sku, frozenset()) | set(licence.disabled_plans)
    return named


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


def unique_attributes(prepared: Prepared) -> set[str]:
    """The attributes some account kind keeps unique (with the username: its names)."""
    return {a for account in prepared.compiled.accounts.values() for a in account.spec.unique}


def hashes(prepared: Prepared) -> tuple[str, str]:
    """(configuration hash, mappings hash): a saved plan is applied only when both still match."""
    return file_hash([prepared.config.path]), file_hash(prepared.mappings.files)


def plan_key(prepared: Prepared) -> PlanKey | None:
    """The key that seals saved plans, made on first use beside the state store; None without a
    state store (a preview, which no apply can use)."""
    state = prepared.config.state
    return None if state is None else load_key(key_path(state), create=True)


def save_sealed_plan(plan: Plan, prepared: Prepared, path: Path) -> None:
    save_plan(plan, path, plan_key(prepared))


def verify_saved_plan(path: Path, prepared: Prepared, target: Target, *, approved: bool) -> Plan:
    """The plan saved in *path*, if its seal holds and it fits: the same configuration, mappings
    and target, fresh, unblocked, and approved for every policy block derived again now. The plan
    comes back with its header's expiry and blocks as derived (see :func:`verify_plan_file`)."""
    config = prepared.config
    if config.state is None:  # a target needs a state store: the configuration checked that
        raise ConfigError(f"{config.path}: apply needs a state store (state: state.db)")
    plan = load_sealed_plan(path, key_path(config.state))
    last_persons = None
    if config.state.exists():
        with StateStore(config.state) as store:
            last_persons = store.last_successful_persons()
    config_hash, mappings_hash = hashes(prepared)
    return verify_plan_file(
        plan,
        config_hash=config_hash,
        mappings_hash=mappings_hash,
        target=target.describe(),
        approved=approved,
        policy=config.policy,
        last_persons=last_persons,
    )


def observe(
    prepared: Prepared,
    target: Target,
    expect: Callable[[ObservedState], object] = lambda _observed: None,
) -> ObservedState:
    """What *target* holds of everything the mappings set, after checking it can hold it; read
    incrementally when the state store keeps a read that may be its base (:mod:`readcache`).
    *expect* is told what an incremental read will most likely give, when the target knows it
    before the read ends (:meth:`~provisioner.targets.base.ReadBase.expect`)."""
    account_attributes, group_attributes = mapped_attributes(prepared)
    problems = target.unsupported(account_attributes, group_attributes)
    if problems:
        raise ConfigError(
            f"the mappings set what {target.describe()} cannot hold: " + "; ".join(problems)
        )
    base = ReadCache(
        prepared.config.state,
        target.describe(),
        mappings=hashes(prepared)[1],
        full_read_every=target.config.full_read_every,
        full_read=prepared.full_read,
        keeps=prepared.keeps_read,
        expect=expect,
    )
    return target.read(account_attributes | group_attributes, base)


class _Expected:
    """What the target's read expects to give, handed from its thread to the one that
    compares; or nothing, once the read has ended without saying."""

    def __init__(self) -> None:
        self._told = threading.Event()
        self._observed: ObservedState | None = None

    def tell(self, observed: ObservedState) -> None:
        if not self._told.is_set():
            self._observed = observed
            self._told.set()

    def end(self) -> None:
        self._told.set()

    def wait(self) -> ObservedState | None:
        self._told.wait()
        return self._observed


def read_source_and_target(
    prepared: Prepared,
    target: Target | None,
    read_source: Callable[[], SourceRead] | None = None,
    *,
    meanwhile: Callable[[SourceRead], object] = lambda _read: None,
    expected: _Expected | None = None,
) -> tuple[SourceRead, ObservedState | None]:
    """The source's read (*read_source*, by default :func:`read_for_mappings`) and the target's
    read of the managed scope (:func:`observe`; None without a target), made at the same time:
    in production they are two remote services, and each mostly waits for its own. *meanwhile*
    is called with the source's read while the target's read goes on.

    The target is read in a thread while this one reads the source; the target is not touched
    here until that thread has ended, so its connection is used by one thread at a time. Errors
    come out as when the three ran one after the other: the source's first (the target's read is
    then waited for and its outcome dropped: nothing is left running when the caller closes the
    target), then the target's, then that of *meanwhile*. *expected* is told what the target
    expects its read to give of the accounts, and ended when the read ends."""
    read_source = read_source or (lambda: read_for_mappings(prepared))
    expected = expected or _Expected()
    if target is None:
        expected.end()
        read = read_source()
        meanwhile(read)
        return read, None

    def observing_target() -> ObservedState:
        try:
            return observe(prepared, target, expect=expected.tell)
        finally:
            expected.end()

    observing = InBackground(observing_target, name="target read")
    try:
        read = read_source()
    except BaseException:
        observing.join()
        raise
    try:
        meanwhile(read)
    except BaseException:
        observing.result()  # the target's error, if it failed too, comes first
        raise
    return read, observing.result()


# The reads decode millions of small acyclic objects (the kept read, the kept answers, the
# observed state) in three threads at once: full collections walked them ~0.6 s a night.
@paused_gc()
def read_and_compare(
    prepared: Prepared,
    target: Target | None,
    read_source: Callable[[], SourceRead] | None = None,
) -> tuple[SourceRead, Comparison]:
    """The source's and the target's reads (:func:`read_source_and_target`), compared. The
    mapping's first part, which needs no names in use (:func:`persons_of`), runs while the
    target is still being read: it waits on the directory, not on this process. When the
    target tells early what its read will most likely give (an incremental read), the whole
    comparison and its plan are made from that, also while the target is read (:func:`foresee`);
    they stand if the read ends as expected, and are made again if not (an object gone, moved
    or come in since the kept read)."""
    persons: list[Engine] = []
    foreseen: list[Foreseen] = []
    expected = _Expected()
    # What the state store remembers does not change during the reads: it is read beside them,
    # while this thread waits for the source's answers (needed once the persons are mapped).
    recalling = (
        InBackground(lambda: remembered(prepared.config), name="state store read")
        if target is not None
        else None
    )

    def meanwhile(read: SourceRead) -> None:
        engine = persons_of(prepared, read)
        expects = expected.wait() if recalling is not None else None
        if target is None or recalling is None or expects is None:
            persons.append(engine)
        else:
            foreseen.append(foresee(prepared, read, target, recalling.result(), expects, engine))

    try:
        read, observed = read_source_and_target(
            prepared, target, read_source, meanwhile=meanwhile, expected=expected
        )
    finally:
        if recalling is not None:
            recalling.join()  # nothing is left running, whatever failed
    return read, compare(
        prepared,
        read,
        target,
        observed,
        persons=persons[0] if persons else None,
        foreseen=foreseen[0] if foreseen else None,
        recalled=recalling.result() if recalling is not None else None,
    )


@dataclass
class Remembered:
    """What the state store remembers that a comparison needs."""

    memory: Memory
    issued_to: dict[str, str]
    issued: set[str]
    own: dict[str, set[str]]


def remembered(config: Config) -> Remembered:
    """What the state store at ``config.state`` remembers; nothing before the first apply."""
    if config.state is None or not config.state.exists():
        return Remembered(Memory(), {}, set(), {})
    with StateStore(config.state) as store:
        return Remembered(
            Memory(
                leavers=store.leavers(),
                kinds=store.kinds(),
                schools=store.schools(),
                last_persons=store.last_successful_persons(),
                ids={kind: store.anchor_ids(kind) for kind in ("account", "group")},
                held=store.held_since(),
                disabled=store.disabled_since(),
                archived=store.archived_groups(),
                deleted_groups=store.deleted_groups(),
            ),
            store.issued_to(),
            store.issued_names(),
            store.issued_by_anchor(),
        )


def names_in_directory(
    prepared: Prepared, observed: ObservedState, recalled: Remembered
) -> NamesInUse:
    """The names in use: those the directory's accounts hold and those the store remembers."""
    return names_in_use(
        observed,
        recalled.issued_to,
        recalled.issued,
        own=recalled.own,
        unique=unique_attributes(prepared),
    )


FORESEEN = "the directory held what the kept read expected: the plan made during the read stands"
NOT_FORESEEN = (
    "the plan is made again: the directory holds other objects than the kept read expected "
    "(objects gone, moved or come in since), or names new to it are taken outside"
)


@dataclass
class Foreseen:
    """The comparison and its plan, made from what a target expected its read to give before
    the read ended (:func:`read_and_compare`)."""

    observed: ObservedState
    """What the target expected: the read stands for it when it returns this very object."""
    new_names: list[str]
    """Names the desired state gives that no account holds: checked outside the managed scope
    once the read has ended (the target's connection is the read's until then)."""
    comparison: Comparison

    def stands(self, observed: ObservedState, target: Target) -> bool:
        return observed is self.observed and not (
            self.new_names and target.taken_outside(self.new_names)
        )


@paused_gc()  # names, desired state, checks, fit and plan: millions of small acyclic objects
def foresee(
    prepared: Prepared,
    read: SourceRead,
    target: Target,
    recalled: Remembered,
    expected: ObservedState,
    persons: Engine,
) -> Foreseen:
    """The comparison of *read* against what *target* *expected* its read to give, with its
    plan; the target is not touched (its read goes on)."""
    names = names_in_directory(prepared, expected, recalled)
    desired = desired_state(prepared, read, names=names, persons=persons)
    wanted = sorted(new_names(desired, expected))
    comparison = _fitted(prepared, target, Desired(desired, []), expected, recalled)
    comparison.plan = plan_of(prepared, read, target, comparison)
    return Foreseen(expected, wanted, comparison)


def plan_for(prepared: Prepared, read: SourceRead, target: Target | None) -> Plan:
    """Read the target, derive the desired state with the names already in use, and diff.
    Nothing is written anywhere: what the plan would teach the state store travels in it."""
    return plan_of(prepared, read, target, compare(prepared, read, target))


@dataclass
class Comparison:
    """The desired state and what the directory holds, side by side, ready to diff."""

    desired: DesiredState
    observed: ObservedState
    memory: Memory
    taken_outside: list[NameClash]
    plan: Plan | None = None
    """Its plan, when made already (while the target was read: :func:`foresee`)."""


@paused_gc()  # as foresee: the collector would walk the whole desired state again and again
def compare(
    prepared: Prepared,
    read: SourceRead,
    target: Target | None,
    observed: ObservedState | None = None,
    persons: Engine | None = None,
    foreseen: Foreseen | None = None,
    recalled: Remembered | None = None,
) -> Comparison:
    """The desired state of *read* against what *target* holds (without a target: against an
    empty directory), with the names already in use and what the state store remembers.
    *observed* is the target's read when it was made already (:func:`read_source_and_target`);
    without it the target is read now. *persons* is :func:`persons_of` *read*, when made;
    *foreseen* the comparison made from what the target expected its read to give (used only
    when it stands); *recalled* what the state store remembers, when read already."""
    config = prepared.config
    if target is None:
        # The preview of a first run against an empty directory (whose owners support is
        # unknown: none are shown).
        desired = desired_state(prepared, read, persons=persons)
        drop_unsupported(desired, ous=True, owners=False)
        return Comparison(desired, ObservedState(), Memory(), [])
    assert config.state is not None  # the configuration requires it with a target
    if observed is None:
        observed = observe(prepared, target)
    if foreseen is not None:
        if foreseen.stands(observed, target):
            log.event(FORESEEN)
            return foreseen.comparison
        log.event(NOT_FORESEEN)
    recalled = recalled or remembered(config)
    names = names_in_directory(prepared, observed, recalled)
    desired = desired_in_directory(prepared, read, target, observed, names, persons)
    return _fitted(prepared, target, desired, observed, recalled)


def _fitted(
    prepared: Prepared,
    target: Target,
    desired: Desired,
    observed: ObservedState,
    recalled: Remembered,
) -> Comparison:
    """*desired* fitted to what *target* can hold, beside *observed*."""
    fit_to_target(
        desired.state,
        target.limits,
        target.group_limits,
        observed,
        names_ignore_case(prepared.config.target),
    )
    drop_unsupported(desired.state, ous=target.has_ous, owners=target.has_owners)
    return Comparison(desired.state, observed, recalled.memory, desired.taken_outside)


def plan_of(
    prepared: Prepared, read: SourceRead, target: Target | None, comparison: Comparison
) -> Plan:
    if comparison.plan is not None:
        return comparison.plan
    config = prepared.config
    config_hash, mappings_hash = hashes(prepared)
    rules = Rules(
        policy=config.policy,
        lifecycle=config.lifecycle,
        match_on=target.config.match_on if target is not None else ("username",),
        driving={a.spec.persons.source for a in prepared.compiled.accounts.values()},
        needs_owner=target is not None and target.has_owners and target.needs_owner,
        fallback_owner=target.fallback_owner if target is not None else None,
        has_ous=target.has_ous if target is not None else True,
    )
    described = target.describe() if target is not None else EMPTY_TARGET
    origin = Origin(config_hash, mappings_hash, read.digest, read.as_of, described)
    return make_plan(
        comparison.desired,
        comparison.observed,
        origin=origin,
        rules=rules,
        source_blocks=read.blocks,
        memory=comparison.memory,
        school_names=read.unit_names,
    )
