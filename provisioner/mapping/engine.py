"""Mappings + source rows → desired accounts, groups and OUs.

The steps, in order: compile every template once (all errors at once); assemble persons per account
kind (filter, pick one row per person, join); give every account a unique username (people keep the
name they have; newcomers get the next free suffix, in stable key order); render attributes and OUs;
build groups and their members.

A problem with one person's data (a value the source could not read, a template that fails for
them, an empty username, an anchor shared with another person, no free unique name) holds that
person: a :class:`~provisioner.model.Hold` in ``DesiredState.held``, no desired account, and the
planner leaves their existing account exactly as it is. Only problems of the whole configuration
(an unknown school, two group kinds making one key) are errors; a report with errors must not be
used to remove anything.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import ConfigError
from provisioner.gcpause import paused_gc
from provisioner.licences import ATTRIBUTE, PART_NUMBER, licence_text
from provisioner.mapping.names import MAX_SUFFIX, SENTINEL, NameBook, Scheme, name_in
from provisioner.mapping.sandbox import MAX_VALUE_CHARS
from provisioner.mapping.spec import (
    AccountSpec,
    GroupSpec,
    Mappings,
    PersonsSpec,
    Template,
    UsernameSpec,
)
from provisioner.mapping.templates import (
    Compiled,
    FieldUse,
    Row,
    RunTotal,
    TemplateError,
    TemplateMistake,
    counting_run,
)
from provisioner.model import (
    CLASS_TEAM,
    SOURCE_FIELD,
    TEAM,
    Collision,
    Dataset,
    Derived,
    DesiredAccount,
    DesiredGroup,
    DesiredState,
    Duplicate,
    Hold,
    MappingReport,
    NameChange,
    Provenance,
    Record,
    SourceRows,
)
from provisioner.sources.base import ValueProblem

GLOBALS = ("instelnr", "key", "kind", "source", "today", "vars")
"""Names every template may use besides the data sets: the person's school (instelnr) and key,
the account kind, the source the person came from (``informat``, or a file's name), today's date
(ISO, for comparing with dates in the data) and the ``vars`` of the mapping files."""


_SAME_FOR_EVERYONE = frozenset({"name", "today", "vars"})
"""What a unique attribute's template may read and still give everyone the same fixed part."""


class MappingError(ConfigError):
    """The mappings cannot be used; the message lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the mappings:\n  " + "\n  ".join(problems))
        self.problems = problems

    def lines(self) -> list[str]:
        return [
            f"{len(self.problems)} problem(s) in the mappings:",
            *(f"  {p}" for p in self.problems),
        ]


@dataclass
class CompiledAccount:
    name: str
    spec: AccountSpec
    where: Compiled | None
    prefer: list[Compiled]
    anchor: Compiled | None
    username: Compiled
    ou: list[Compiled]
    attributes: dict[str, Compiled]
    why: dict[str, Provenance] = field(default_factory=dict)
    """Per attribute; one that uses ``username`` also depends on the username template's fields."""
    anchor_was: Compiled | None = None
    """The anchor these accounts had before, for carrying old accounts over (``anchor_was``)."""

    name_attributes: tuple[str, ...] = ()
    """The unique attributes that use ``{{ name }}``: each gets a suffix of its own."""
    username_bound: tuple[str, ...] = ()
    """The other unique attributes: they change with the username alone."""
    early: tuple[tuple[str | int, Compiled], ...] = ()
    """The attributes (by name) and OU names (by position) that use neither ``username`` nor
    ``name``: rendered before the names are given (:class:`_Early`)."""

    def __post_init__(self) -> None:
        self.early = tuple(
            (place, template)
            for place, template in (*self.attributes.items(), *enumerate(self.ou))
            if not NAME_VARIABLES & template.variables
        )
        unique = [a for a in self.spec.unique if a in self.attributes]
        self.name_attributes = tuple(a for a in unique if "name" in self.attributes[a].variables)
        self.username_bound = tuple(a for a in unique if a not in self.name_attributes)
        for attr, template in self.attributes.items():
            why = template.why
            if {"username", "name"} & template.variables and self.username is not None:
                fields = (*why.fields, *self.username.why.fields)
                why = Provenance(why.template, why.location, why.text, tuple(dict.fromkeys(fields)))
            self.why[attr] = why


def _licences_attribute(kind: str, spec: AccountSpec, problems: list[str]) -> dict[str, Compiled]:
    """The account kind's ``licences`` as the constant attribute :data:`licences.ATTRIBUTE`
    (its canonical text), so that the plan diffs it like any other; problems are added."""
    if not spec.licences:
        return {}
    where = f"accounts.{kind}.licences"
    first = spec.licences[0].sku
    if ATTRIBUTE in spec.attributes:
        problems.append(
            f"{first.location}: {where}: also set as attributes.{ATTRIBUTE}; name licences in "
            "one place, under licences"
        )
        return {}
    wanted: dict[str, list[str]] = {}
    for licence in spec.licences:
        sku, location = licence.sku.text.strip(), licence.sku.location
        bad = [n for n in (sku, *licence.disabled_plans) if not PART_NUMBER.fullmatch(n)]
        if bad:
            problems.append(
                f"{location}: {where}: {', '.join(map(repr, bad))} is not a SKU part number or "
                "service plan name (such as STANDARDWOFFPACK_STUDENT; no templates here)"
            )
        elif sku in wanted:
            problems.append(f"{location}: {where}: {sku} is named twice")
        else:
            wanted[sku] = licence.disabled_plans
    text = licence_text(wanted)
    source = Template(text, first.file, first.line, where)
    return {ATTRIBUTE: Compiled(source, expression=False, datasets={})}


@dataclass
class CompiledGroup:
    name: str
    spec: GroupSpec
    where: Compiled | None
    key: Compiled
    ou: list[Compiled]
    attributes: dict[str, Compiled]
    owner_names: Compiled | None
    owner_match: Compiled | None


@dataclass
class CompiledMappings:
    accounts: dict[str, CompiledAccount]
    groups: dict[str, CompiledGroup]
    variables: dict[str, str] = field(default_factory=dict)

    def templates(self) -> Iterable[Compiled]:
        for account in self.accounts.values():
            yield from filter(
                None, (account.where, account.anchor, account.anchor_was, account.username)
            )
            yield from (*account.prefer, *account.ou, *account.attributes.values())
        for group in self.groups.values():
            yield from filter(None, (group.where, group.key, group.owner_names, group.owner_match))
            yield from (*group.ou, *group.attributes.values())

    @property
    def pivots(self) -> dict[str, list[str]]:
        """Pivoted data sets (free fields by name) and their [name field, value field]."""
        return {d: pair for a in self.accounts.values() for d, pair in a.spec.persons.pivot.items()}

    def field_uses(self) -> dict[str, set[str] | None]:
        """Per data set, the fields the mappings read; None = the whole data set."""
        used: dict[str, set[str] | None] = {}
        for account in self.accounts.values():
            for dataset in account.spec.persons.datasets:
                used.setdefault(dataset, set())
            for dataset, (name_field, value_field) in account.spec.persons.pivot.items():
                fields = used.setdefault(dataset, set())
                if fields is not None:
                    fields.update((name_field, value_field))
        for group in self.groups.values():
            if group.spec.rows:
                used.setdefault(group.spec.rows, set())
        pivoted = self.pivots
        for template in self.templates():
            for use in template.uses:
                if use.dataset in pivoted and use.field is not None:
                    continue  # a pivot name (CODE), not a field: the pair fields are kept above
                current = used.setdefault(use.dataset, set())
                if use.field is None:
                    used[use.dataset] = None
                elif current is not None:
                    current.add(use.field)
        return used


def compile_mappings(mappings: Mappings, known_datasets: Collection[str]) -> CompiledMappings:
    """Compile every template; report every problem at once."""
    problems: list[str] = []
    known = set(known_datasets)

    def compile_one(
        template: Template | None,
        scope: Collection[str],
        *,
        expression: bool = False,
        extra: Collection[str] = (),
        hint: Mapping[str, str] | None = None,
    ) -> Compiled | None:
        if template is None:
            return None
        try:
            compiled = Compiled(template, expression=expression, datasets=known)
        except TemplateError as exc:
            problems.append(str(exc))
            return None
        allowed = set(scope) | set(GLOBALS) | set(extra)
        for name in sorted(compiled.variables - allowed):
            why = (hint or {}).get(name, "")
            if name in known:
                why = (
                    " (where and prefer see only the source data set)"
                    if expression and scope
                    else " (a data set this mapping does not join)"
                )
            problems.append(
                f"{template.location}: {template.where}: unknown name {name!r}{why}; "
                f"known here: {', '.join(sorted(allowed))}"
            )
        for var in sorted(compiled.vars_used - set(mappings.variables)):
            defined = ", ".join(sorted(mappings.variables)) or "none"
            problems.append(
                f"{template.location}: {template.where}: vars.{var} is not defined "
                f"(defined: {defined})"
            )
        return compiled

    accounts: dict[str, CompiledAccount] = {}
    for name, spec in mappings.accounts.items():
        persons = spec.persons
        datasets = persons.datasets
        for dataset in datasets:
            if dataset not in known:
                problems.append(f"accounts.{name}.persons: unknown data set {dataset!r}")
        for dataset, pair in persons.pivot.items():
            if len(pair) != 2:
                problems.append(
                    f"accounts.{name}.persons.pivot.{dataset}: give [name field, value field]"
                )
        after_username = ("username",)
        accounts[name] = CompiledAccount(
            name=name,
            spec=spec,
            # where and prefer choose among the source rows, before anything is joined
            where=compile_one(persons.where, (persons.source,), expression=True),
            prefer=[
                c
                for t in persons.prefer
                if (c := compile_one(t, (persons.source,), expression=True))
            ],
            anchor=compile_one(spec.anchor, datasets),
            anchor_was=compile_one(spec.anchor_was, datasets),
            username=compile_one(spec.username.template, datasets),  # type: ignore[arg-type]
            ou=[c for t in spec.ou if (c := compile_one(t, datasets, extra=after_username))],
            attributes={
                attr: c
                for attr, t in spec.attributes.items()
                if (
                    c := compile_one(
                        t,
                        datasets,
                        extra=(*after_username, "name") if attr in spec.unique else after_username,
                        hint={
                            "name": f" ({{{{ name }}}} is for unique attributes: add {attr} to "
                            f"accounts.{name}.unique)"
                        },
                    )
                )
            }
            | _licences_attribute(name, spec, problems),
        )
        for attr in spec.unique:
            if attr not in spec.attributes:
                problems.append(f"accounts.{name}.unique: {attr!r} is not one of its attributes")

    groups: dict[str, CompiledGroup] = {}
    for name, spec in mappings.groups.items():
        member_specs = [mappings.accounts.get(kind) for kind in spec.members]
        for kind, member in zip(spec.members, member_specs, strict=True):
            if member is None:
                problems.append(f"groups.{name}.members: no account kind {kind!r}")
        scope: set[str] = set()
        for member in filter(None, member_specs):
            persons = member.persons
            scope.update(persons.datasets)
        if spec.rows:
            if spec.rows not in known:
                problems.append(f"groups.{name}.rows: unknown data set {spec.rows!r}")
            scope.add(spec.rows)
        extra = ("username",)
        owner_names = owner_match = None
        if spec.owners is not None:
            owners = mappings.accounts.get(spec.owners.accounts)
            if owners is None:
                problems.append(
                    f"groups.{name}.owners.accounts: no account kind {spec.owners.accounts!r}"
                )
                owner_scope: tuple[str, ...] = ()
            else:
                owner_scope = owners.persons.datasets
            owner_names = compile_one(spec.owners.names, scope, extra=extra)
            owner_match = compile_one(spec.owners.match, owner_scope, extra=extra)
        attributes = {
            a: c for a, t in spec.attributes.items() if (c := compile_one(t, scope, extra=extra))
        }
        if problem := _team_problem(name, spec):
            problems.append(problem)
        elif spec.team is not None and (team := compile_one(spec.team, ())):
            attributes[TEAM] = team  # compared and planned like any group attribute
        groups[name] = CompiledGroup(
            name=name,
            spec=spec,
            where=compile_one(spec.where, scope, expression=True, extra=extra),
            key=compile_one(spec.key, scope, extra=extra),  # type: ignore[arg-type]
            ou=[c for t in spec.ou if (c := compile_one(t, scope, extra=extra))],
            attributes=attributes,
            owner_names=owner_names,
            owner_match=owner_match,
        )
    if problems:
        raise MappingError(problems)
    return CompiledMappings(accounts, groups, dict(mappings.variables))


def _team_problem(name: str, spec: GroupSpec) -> str | None:
    """What is wrong with a group kind's ``team``, or None."""
    if TEAM in spec.attributes:
        where = spec.attributes[TEAM]
        return (
            f"{where.location}: groups.{name}.attributes.team: write `team: class` beside "
            "attributes, not among them"
        )
    if spec.team is not None and spec.team.text != CLASS_TEAM:
        return (
            f"{spec.team.location}: groups.{name}.team: {spec.team.text!r} is no kind of team "
            f"the connector makes; known: {CLASS_TEAM}"
        )
    return None


def check_fields(
    compiled: CompiledMappings,
    source: SourceRows,
    documented: Mapping[str, Collection[str] | None] | None = None,
    unavailable: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[list[str], list[str]]:
    """Fields the templates read that the source never had. *documented* holds per data set the
    fields its source documents (None or absent: no such list). A field neither documented nor
    in any row is a typo (an error, with the nearest names); a documented field in no row today
    only a warning, as the source may leave empty values out. Without a documented list, a field
    in no row is an error only when it is close to one that is (a likely typo). *unavailable*
    holds per data set the fields its source cannot give at all (field → why): reading one is a
    warning that names it, since the same mappings also serve a source that has it."""
    documented = documented or {}
    unavailable = unavailable or {}
    pivots = {dataset: pair[0] for dataset, pair in compiled.pivots.items()}
    errors: list[str] = []
    warnings: list[str] = []
    for template in compiled.templates():
        for use in template.uses:
            dataset = source.datasets.get(use.dataset)
            if use.field is None or dataset is None:
                continue
            listed = documented.get(use.dataset)
            if not dataset.rows and listed is None:
                continue  # nothing to judge by
            where = f"{template.source.location}: {template.source.where}"
            if use.dataset in pivots:
                name_field = pivots[use.dataset]
                names_given = {r.get(name_field) for _s, r in dataset.rows}
                if dataset.rows and use.field not in names_given:
                    warnings.append(f"{where}: no {use.dataset} row has {name_field} {use.field!r}")
                continue
            if use.field in dataset.fields_seen:
                continue
            why = unavailable.get(use.dataset, {}).get(use.field)
            if why is not None:
                warnings.append(
                    f"{where}: {use.dataset}.{use.field} is always empty with this source: {why}"
                )
                continue
            if listed is not None and use.field in listed:
                warnings.append(
                    f"{where}: {use.dataset}.{use.field} has no value in any row today (a "
                    "documented field: the source leaves empty values out)"
                )
                continue
            known = sorted({*dataset.fields_seen, *(listed or ())})
            close = difflib.get_close_matches(use.field, known, n=3, cutoff=0.6)
            if listed is None and not difflib.get_close_matches(
                use.field, dataset.fields_seen, n=1, cutoff=0.75
            ):
                warnings.append(f"{where}: {use.dataset}.{use.field} has no value in any row")
                continue
            if close:
                nearest = f"did you mean {' or '.join(repr(c) for c in close)}? "
            elif len(known) <= 20:  # few enough to read them all
                nearest = f"it has {', '.join(sorted(known, key=str.casefold))}; "
            else:
                nearest = "no field has a similar name; "
            errors.append(
                f"{where}: {use.dataset} has no field {use.field!r}: no row has it"
                + (" and it is not documented" if listed is not None else "")
                + f" ({nearest}'provisioner fields --config FILE {use.dataset}' lists the "
                "fields it holds; names are case-sensitive)"
            )
    return errors, warnings


# ---------------------------------------------------------------------------------------------


def _natural(key: str) -> tuple[int, str]:
    """Sort keys numerically when they are numbers (p_persoon), else as text; always stable."""
    return (len(key), key) if key.isdigit() else (1 << 30, key)


@dataclass
class Person:
    kind: str
    key: str
    school: str
    context: dict[str, Any]
    records: dict[str, Any] = field(default_factory=dict)
    anchor: str | None = None
    """Set once the person has an account."""


class _Index:
    """Rows of the joined data sets by person key, built once per data set."""

    def __init__(self, source: SourceRows) -> None:
        self.source = source
        self._by_key: dict[str, dict[str, list[tuple[str, Record]]]] = {}

    def rows(self, dataset: str, key: str) -> list[tuple[str, Record]]:
        index = self._by_key.get(dataset)
        if index is None:
            data = self.source.datasets[dataset]
            index = {}
            for school, record in data.rows:
                person = record.get(data.key)
                if person is not None:
                    index.setdefault(str(person), []).append((school, record))
            self._by_key[dataset] = index
        return index.get(key, [])


def _same_school_first(rows: list[tuple[str, Record]], school: str) -> list[tuple[str, Record]]:
    return sorted(rows, key=lambda row: row[0] != school)


class Engine:
    def __init__(
        self,
        compiled: CompiledMappings,
        source: SourceRows,
        *,
        today: dt.date | None = None,
        problems: Sequence[ValueProblem] = (),
    ) -> None:
        self.compiled = compiled
        self.globals = {
            "today": (today or dt.date.today()).isoformat(),
            "vars": Row(compiled.variables),
        }
        self.source = source
        self.existing: dict[str, str] = {}
        """Anchor → the username its account holds (given to :meth:`desired`)."""
        self.previous: dict[str, str] = {}
        """New anchor → the anchor the person's account had before (``anchor_was``)."""
        self._claims: dict[str, list[tuple[str, str]]] = {}
        """Former anchor → (new anchor, wanted username) of each account that names it."""
        self.held_values: dict[str, Mapping[str, str]] = {}
        """Anchor → the values of its unique attributes the directory holds now."""
        self.book = NameBook((), {})
        self.people: list[tuple[CompiledAccount, Person, str, str]] = []
        """(account, person, anchor, base username) of everyone who gets a name, once
        :meth:`map_persons` ran."""
        self.early: dict[str, _Early] = {}
        """Per anchor, the attributes and OU names that use neither ``username`` nor ``name``,
        rendered by :meth:`map_persons`."""
        self._fixed: dict[Compiled, tuple[str, tuple[str, str] | None]] = {}
        """The fixed part of each unique attribute whose template reads nothing of the person
        (``{{ name }}@{{ vars.domain }}``): the same for everyone, rendered once a run."""
        self._run_total: RunTotal | None = None
        self._stage = "new"
        self.index = _Index(source)
        self.not_fetched = {name: d.not_fetched for name, d in source.datasets.items()}
        # Of a pivoted set (free fields by name) only the names the templates read are kept.
        self.pivot_names: dict[str, set[str] | None] = {}
        pivoted = compiled.pivots
        for template in compiled.templates():
            for use in template.uses:
                if use.dataset in pivoted:
                    names = self.pivot_names.setdefault(use.dataset, set())
                    if use.field is None:
                        self.pivot_names[use.dataset] = None
                    elif names is not None:
                        names.add(use.field)
        self.report = MappingReport()
        self.persons: dict[str, list[Person]] = {}
        self.held: dict[tuple[str, str], Hold] = {}
        """(account kind, person key) → why that person is held; the first reason found."""
        self.unknown_rows: dict[str, int] = {}
        # A value that could not be read holds every person whose account kind reads that data
        # set (its persons, joins, or the rows of a group it is a member of) and that field.
        used = compiled.field_uses()
        reads: dict[str, set[str]] = {}
        for account in compiled.accounts.values():
            reads[account.name] = set(account.spec.persons.datasets)
        for group in compiled.groups.values():
            if group.spec.rows:
                for kind in group.spec.members:
                    reads.setdefault(kind, set()).add(group.spec.rows)
        self.problems: dict[tuple[str, str], ValueProblem] = {}
        """(account kind, person key) → the first unreadable value of theirs."""
        self.failed_rows: dict[tuple[str, str], str] = {}
        """(account kind, person key) → why ``where`` or ``prefer`` failed on one of their rows."""
        for problem in problems:
            if problem.key is None:
                # Nobody knows whose row it was: that school's leavers wait for the night.
                self.unknown_rows[problem.unit] = self.unknown_rows.get(problem.unit, 0) + 1
                continue
            fields = used.get(problem.dataset, set())
            if problem.field and fields is not None and problem.field not in fields:
                continue  # a field no mapping reads cannot change anyone's account
            for kind, datasets in reads.items():
                if problem.dataset in datasets:
                    self.problems.setdefault((kind, str(problem.key)), problem)

    def hold(
        self,
        person: Person,
        reason: str,
        *,
        anchor: str | None = None,
        dataset: str | None = None,
        field: str | None = None,
    ) -> None:
        """Hold *person* for the night (the first reason found is the one shown)."""
        self.held.setdefault(
            (person.kind, person.key),
            Hold(person.kind, person.key, person.school, reason, anchor, dataset, field),
        )

    def failed(self, person: Person, exc: TemplateError, *, anchor: str | None = None) -> None:
        """A template failed for *person*: held, unless the template itself is at fault (then it
        fails for everyone alike, an error of the mappings)."""
        if isinstance(exc, TemplateMistake):
            self.report.errors.append(str(exc))
        else:
            self.hold(person, str(exc), anchor=anchor)

    def _try_anchor(self, account: CompiledAccount, person: Person) -> str | None:
        """The person's anchor if it can be made, to protect their existing account."""
        if account.anchor is None:
            return person.key
        try:
            return account.anchor.render(person.context, person.key) or None
        except TemplateError:
            return None

    # -- persons --------------------------------------------------------------------------------

    def assemble(self, account: CompiledAccount) -> list[Person]:
        spec: PersonsSpec = account.spec.persons
        data: Dataset = self.source.datasets[spec.source]
        unknown = [s for s in spec.schools or () if s not in self.source.schools]
        if unknown:
            self.report.errors.append(
                f"accounts.{account.name}.persons.schools: {', '.join(unknown)} is not one of the "
                f"source's schools ({', '.join(self.source.schools)})"
            )
        order = {s: i for i, s in enumerate(spec.schools or self.source.schools)}
        candidates: dict[str, list[tuple[tuple[Any, ...], str, Record]]] = {}
        for position, (school, record) in enumerate(data.rows):
            key = record.get(data.key)
            if key is None:
                continue
            key = str(key)
            context = {
                **self.globals,
                spec.source: Row(record, self.not_fetched[spec.source]),
                "instelnr": school,
                "key": key,
                "kind": account.name,
                "source": record.get(SOURCE_FIELD) or self.source.origin,
            }
            # A row with a value that could not be read is kept even where ``where`` would leave it
            # out: the missing value may be why, and a person left out is a leaver. It is held.
            damaged = (account.name, key) in self.problems
            try:
                if (
                    account.where is not None
                    and not account.where.render(context, key)
                    and not damaged
                ):
                    continue
                preference = tuple(not p.render(context, key) for p in account.prefer)
            except TemplateMistake as exc:
                self.report.errors.append(str(exc))
                continue
            except TemplateError as exc:
                # where or prefer failed on this row's values: the person is held, not left out
                self.failed_rows.setdefault((account.name, key), str(exc))
                damaged = True
            if damaged:
                preference = tuple(True for _p in account.prefer)  # the least preferred row
            rank = (*preference, order.get(school, len(order)), position)
            candidates.setdefault(key, []).append((rank, school, record))
        persons = []
        for key in sorted(candidates, key=_natural):
            rows = sorted(candidates[key], key=lambda c: c[0])
            _rank, school, record = rows[0]
            if len(rows) > 1:
                self.report.duplicates.append(self._duplicate(account, key, rows))
            persons.append(self._person(account, key, school, record))
        self.report.persons[account.name] = len(persons)
        return persons

    def _duplicate(
        self, account: CompiledAccount, key: str, rows: list[tuple[tuple[Any, ...], str, Record]]
    ) -> Duplicate:
        best, second = rows[0][0], rows[1][0]
        prefers = len(account.prefer)
        if best[:prefers] != second[:prefers]:
            which = next(i for i in range(prefers) if best[i] != second[i])
            reason = f"prefer: {account.prefer[which].source.text}"
        elif rows[0][1] != rows[1][1]:
            reason = "school order"
        else:
            reason = "first row"
        return Duplicate(account.name, key, len(rows), rows[0][1], reason)

    def _person(self, account: CompiledAccount, key: str, school: str, record: Record) -> Person:
        spec = account.spec.persons
        context: dict[str, Any] = {
            **self.globals,
            spec.source: Row(record, self.not_fetched[spec.source]),
            "instelnr": school,
            "key": key,
            "kind": account.name,
            "source": record.get(SOURCE_FIELD) or self.source.origin,
        }
        records: dict[str, Any] = {spec.source: record}
        for dataset in spec.join:
            rows = _same_school_first(self.index.rows(dataset, key), school)
            joined = rows[0][1] if rows else None
            context[dataset] = Row(joined, self.not_fetched[dataset])
            records[dataset] = joined
        for dataset in spec.join_many:
            rows = self.index.rows(dataset, key)
            missing = self.not_fetched[dataset]
            context[dataset] = [Row(r, missing) for _s, r in rows]
            records[dataset] = [r for _s, r in rows]
        for dataset, (name_field, value_field) in spec.pivot.items():
            wanted = self.pivot_names.get(dataset, set())
            values: dict[str, Any] = {}
            for _s, row in _same_school_first(self.index.rows(dataset, key), school):
                name = row.get(name_field)
                if name is None or name in values or (wanted is not None and name not in wanted):
                    continue
                values[name] = row.get(value_field)
            context[dataset] = Row(values)
            records[dataset] = values
        return Person(account.name, key, school, context, records)

    # -- accounts -------------------------------------------------------------------------------

    def map_persons(self) -> None:
        """Everything that needs no names in use: the persons, their anchors and wanted
        usernames, and the attributes and OUs that use neither ``username`` nor ``name``. The
        pipeline runs this while the directory is still being read."""
        assert self._stage == "new", "an engine maps its persons once"
        self._stage = "persons"
        # One run's values together stay under a cap too: 64 KiB each times every person could
        # still fill the machine. The count goes on in desired().
        # Paused collector: a few acyclic objects per person, freed by counting.
        with paused_gc(), counting_run() as total:
            self._run_total = total
            self._map_persons()

    def desired(
        self,
        *,
        existing: Mapping[str, str] | None = None,
        issued: Collection[str] = (),
        held_values: Mapping[str, Mapping[str, str]] | None = None,
        own: Mapping[str, Collection[str]] | None = None,
    ) -> DesiredState:
        """The desired state, given the names in use: ``existing`` maps anchors to the usernames
        they hold and ``held_values`` to the values of their unique attributes; ``issued`` holds
        every name ever given and ``own`` per anchor the names given to it."""
        assert self._stage == "persons", "an engine makes one desired state, after map_persons"
        self._stage = "desired"
        self.existing = dict(existing or {})
        self.held_values = dict(held_values or {})
        with paused_gc(), counting_run(self._run_total):
            owned = {anchor: set(names) for anchor, names in (own or {}).items()}
            for anchor, name in self.existing.items():
                owned.setdefault(anchor, set()).add(name)
            for anchor, values in self.held_values.items():
                owned.setdefault(anchor, set()).update(values.values())
            self.book = NameBook(issued, owned)
            state = self._desired()
        self.report.errors[:] = _once_each(self.report.errors)
        return state

    def _map_persons(self) -> None:
        accounts = self.compiled.accounts
        people: list[tuple[CompiledAccount, Person, str, str]] = []  # account, person, anchor, base
        for account in accounts.values():
            persons = self.assemble(account)
            self.persons[account.name] = persons
            for person in persons:
                entry = self._anchor_and_base(account, person)
                if entry is not None:
                    people.append(entry)
                    self._claim_previous(*entry)

        # Two persons with one anchor (a pupil and a staff member with the same key when both
        # kinds anchor on the bare key): both are held. Which of the two an existing account
        # with that anchor belongs to, nobody can tell from here; giving it to either could hand
        # a teacher's account to a pupil. Their accounts stay exactly as they are.
        # A person already held keeps their anchor too: nobody else may take it over.
        held_anchors: dict[str, list[str]] = {}
        for hold in self.held.values():
            if hold.anchor:
                held_anchors.setdefault(hold.anchor, []).append(f"{hold.kind} {hold.key} (held)")
        by_anchor: dict[str, list[tuple[CompiledAccount, Person, str, str]]] = {}
        for entry in people:
            by_anchor.setdefault(entry[2], []).append(entry)
        people = []
        for anchor, entries in by_anchor.items():
            if len(entries) == 1 and anchor not in held_anchors:
                people.append(entries[0])
                continue
            for _account, person, _anchor, _base in entries:
                others = ", ".join(
                    [
                        *(
                            f"{other.name} {p.key}"
                            for other, p, _a, _b in entries
                            if p is not person
                        ),
                        *held_anchors.get(anchor, []),
                    ]
                )
                self.hold(
                    person,
                    f"anchor {anchor} is also the anchor of {others}; anchors must be unique: "
                    "give each account kind anchors that cannot collide (see docs/mappings.md)",
                    anchor=anchor,
                )
        self.people = people
        for account, person, anchor, _base in people:
            self.early[anchor] = _Early.render(account, person)

    def _desired(self) -> DesiredState:
        state = DesiredState(report=self.report)
        self._settle_previous()
        people = self.people
        names = self._allocate(people)
        for account, person, anchor, _base in people:
            given = names.get(anchor)
            if given is None:
                continue  # held: no free name
            username = given.username
            context = {**person.context, "username": username}
            early = self.early.pop(anchor)  # used once: freed as the accounts are made
            try:
                attributes = {
                    attr: Derived(
                        early.value(attr)
                        if attr in early.values
                        else given.values[attr]
                        if attr in given.values
                        else t.render(context, person.key),
                        account.why[attr],
                    )
                    for attr, t in account.attributes.items()
                }
                ou = tuple(
                    early.value(i) if i in early.values else t.render(context, person.key)
                    for i, t in enumerate(account.ou)
                )
            except TemplateError as exc:
                self.failed(person, exc, anchor=anchor)
                continue
            if any(not part for part in ou):
                self.hold(
                    person,
                    f"accounts.{account.name}.ou: the OU template gives an empty OU name for "
                    "this person (a value it reads is empty in the source?)",
                    anchor=anchor,
                )
                continue
            state.accounts[anchor] = DesiredAccount(
                kind=account.name,
                anchor=anchor,
                username=username,
                ou=ou,
                attributes=attributes,
                school=person.school,
                username_why=account.username.why,
                person=person.records,
                anchor_was=self.previous.get(anchor),
                unique=tuple(a for a in account.spec.unique if a in attributes),
            )
            person.context["username"] = username
            person.anchor = anchor
        self._build_groups(state)
        for made in (*state.accounts.values(), *state.groups.values()):
            _add_ou(state.ous, made.ou)
        state.held = sorted(self.held.values(), key=lambda h: (h.school, h.kind, _natural(h.key)))
        state.unknown_rows = dict(self.unknown_rows)
        return state

    def _anchor_and_base(
        self, account: CompiledAccount, person: Person
    ) -> tuple[CompiledAccount, Person, str, str] | None:
        """(account, person, anchor, base username), or None when the person is held."""
        problem = self.problems.get((account.name, person.key))
        if problem is not None:
            self.hold(
                person,
                # A problem of the row as a whole names no field.
                f"{'.'.join(filter(None, (problem.dataset, problem.field)))}: {problem.reason}",
                anchor=self._try_anchor(account, person),
                dataset=problem.dataset,
                field=problem.field or None,
            )
            return None
        failed = self.failed_rows.get((account.name, person.key))
        if failed is not None:
            self.hold(person, failed, anchor=self._try_anchor(account, person))
            return None
        if oversized := _oversized_value(person.records):
            dataset, field, length = oversized
            self.hold(
                person,
                f"{dataset}.{field}: a value of {length:,} characters; no field of a person is "
                f"longer than {MAX_FIELD_CHARS:,}: a damaged record in the source",
                anchor=self._try_anchor(account, person),
                dataset=dataset,
                field=field,
            )
            return None
        try:
            anchor = (
                account.anchor.render(person.context, person.key) if account.anchor else person.key
            )
        except TemplateError as exc:
            self.failed(person, exc)
            return None
        if not anchor:
            where = account.anchor.source.location if account.anchor else "anchor"
            self.hold(
                person,
                f"{where}: accounts.{account.name}.anchor: the anchor template gives an empty "
                "anchor for this person (a value it reads is empty in the source?)",
            )
            return None
        try:
            base = account.username.render(person.context, person.key)
        except TemplateError as exc:
            self.failed(person, exc, anchor=anchor)
            return None
        if not base:
            self.hold(
                person,
                f"{account.username.source.location}: accounts.{account.name}.username: the "
                "username template gives an empty name for this person (a name without Latin "
                "letters, or empty in the source?): correct the source or give the template a "
                "fallback",
                anchor=anchor,
            )
            return None
        return account, person, anchor, base

    def _claim_previous(
        self, account: CompiledAccount, person: Person, anchor: str, base: str
    ) -> None:
        """Note the anchor *person*'s account had before, when the mappings name one."""
        if account.anchor_was is None:
            return
        try:
            was = account.anchor_was.render(person.context, person.key)
        except TemplateError as exc:
            self.report.errors.append(str(exc))
            return
        if was and was != anchor:
            self._claims.setdefault(was, []).append((anchor, base))

    def _settle_previous(self) -> None:
        """Which account each former anchor belongs to. Usually one account names it. When a
        pupil and a staff member share a key, both name it, and the account that carries it
        belongs to one of them: the one whose wanted username the account's name starts with
        (jan.peeters, jan.peeters2 …), else the first kind in the mappings (under the old
        mappings that kind kept the anchor; a later kind with the same key was left out)."""
        for was, claims in self._claims.items():
            held = (self.existing.get(was) or "").casefold().rstrip("0123456789")
            fitting = [a for a, base in claims if held and base.casefold().startswith(held)]
            self.previous[fitting[0] if len(fitting) == 1 else claims[0][0]] = was
        for anchor, was in self.previous.items():
            self.book.inherit(anchor, was)  # the names of the account it carries over are its own

    def _held_name(self, anchor: str) -> str | None:
        """The username the account of *anchor* holds: under this anchor, or under the one it
        had before (an account being carried over keeps its name)."""
        held = self.existing.get(anchor)
        if held is None and anchor in self.previous:
            held = self.existing.get(self.previous[anchor])
        return held

    def _held_values(self, anchor: str) -> Mapping[str, str]:
        values = self.held_values.get(anchor)
        if values is None and anchor in self.previous:
            values = self.held_values.get(self.previous[anchor])
        return values or {}

    def _allocate(self, people: list[tuple[CompiledAccount, Person, str, str]]) -> dict[str, Names]:
        """Unique names for everyone: the username, and the ``{{ name }}`` of each unique
        attribute that uses it (with a suffix of its own).

        Existing accounts keep their names when the scheme still makes them from the person's
        wanted name (jan.peeters2 stays jan.peeters2), and with ``rename: keep`` also when it no
        longer does (listed in the report); with ``rename: follow`` they get the name the
        template makes now. Newcomers get the first free name, in stable key order. Names
        compare without case; a name is free when nobody else holds it in this run and it was
        never given to anyone else. Every unique attribute must be free too.
        """
        names: dict[str, Names] = {}
        staying, moving = [], []
        fitting: set[str] = set()  # anchors whose held username the scheme still makes
        for entry in sorted(people, key=lambda p: _natural(p[2])):
            account, _person, anchor, base = entry
            held = self._held_name(anchor)
            if held is not None and _username_scheme(account.spec.username).fits(held, base):
                fitting.add(anchor)
                staying.append(entry)
            elif held is not None and account.spec.username.rename == "keep":
                staying.append(entry)
            else:
                moving.append(entry)
        for account, person, anchor, base in staying:
            held = self._held_name(anchor)
            assert held is not None
            try:
                values = self._username_values(account, person, anchor, held)
                if values is not None:
                    self._claim_username(anchor, held, values)
                    names[anchor] = Names(held, values=values)
                    if anchor not in fitting:
                        wanted = _username_scheme(account.spec.username).plain(base)
                        self._name_change(account, anchor, "username", held, wanted, follows=False)
                    continue
            except TemplateError as exc:
                self.failed(person, exc, anchor=anchor)
                continue
            self.report.warnings.append(
                f"accounts.{account.name}: {anchor} holds {held!r}, which another account also "
                "holds; a new name is given"
            )
            moving.append((account, person, anchor, base))
        # Per base name and scheme, the first suffix whose name may still be free. A name held or
        # given before stays unavailable, so skipping past it changes no outcome; it only saves
        # trying jan.peeters2 … jan.peeters40 again for the 41st Jan Peeters.
        cursors: dict[tuple[str, int, str], int] = {}
        for account, person, anchor, base in sorted(moving, key=lambda p: _natural(p[2])):
            spec = account.spec.username
            scheme = _username_scheme(spec)
            free_values: dict[str, dict[str, str]] = {}  # of the free name, once found

            def is_free(
                name: str,
                account: CompiledAccount = account,
                person: Person = person,
                anchor: str = anchor,
                found: dict[str, dict[str, str]] = free_values,
            ) -> bool:
                values = self._username_values(account, person, anchor, name)
                if values is not None:
                    found[name] = values
                return values is not None

            try:
                name = self._first_free(base, scheme, is_free, cursors)
            except TemplateError as exc:
                self.failed(person, exc, anchor=anchor)
                continue
            if name is None:
                self._no_free_name(account, person, anchor, base, spec.template.location)
                continue
            self._claim_username(anchor, name, free_values[name])
            names[anchor] = Names(name, values=free_values[name])
            held = self._held_name(anchor)
            if held is not None and held.casefold() != name.casefold():
                self._name_change(account, anchor, "username", held, name, follows=True)
            elif held is None and name != scheme.plain(base):
                self.report.collisions.append(Collision(account.name, anchor, base, name))
        everyone = [*staying, *moving]
        # Who may still search a unique value: a value held by anyone else is free for none of
        # them, and the searches skip past it (_ValueCursor).
        searching = Counter(anchor for _account, _person, anchor, _base in everyone)
        value_cursors: dict[tuple[str, ...], int] = {}
        for account, person, anchor, base in everyone:
            if anchor in names and account.name_attributes:
                try:
                    self._allocate_attribute_names(
                        account, person, anchor, base, names, cursors, value_cursors, searching
                    )
                except TemplateError as exc:
                    self.failed(person, exc, anchor=anchor)
                    names.pop(anchor)
            searching[anchor] -= 1
            if not searching[anchor]:
                del searching[anchor]
        self._summarise_kept_names()
        return names

    def _username_values(
        self, account: CompiledAccount, person: Person, anchor: str, name: str
    ) -> dict[str, str] | None:
        """The values of the unique attributes that change with the username, when the
        username *name* and they are free for *anchor*; else None (rendered up to the first
        that is taken)."""
        if not self.book.free(name, anchor):
            return None
        context = {**person.context, "username": name}
        values: dict[str, str] = {}
        for attr in account.username_bound:
            value = account.attributes[attr].render(context, person.key)
            if not self.book.free(value, anchor):
                return None
            values[attr] = value
        return values

    def _claim_username(self, anchor: str, name: str, values: Mapping[str, str]) -> None:
        """*name* and the *values* that go with it (:meth:`_username_values`) are *anchor*'s."""
        self.book.claim(name, anchor)
        for value in values.values():
            self.book.claim(value, anchor)

    def _allocate_attribute_names(
        self,
        account: CompiledAccount,
        person: Person,
        anchor: str,
        base: str,
        names: dict[str, Names],
        cursors: dict[tuple[str, int, str], int],
        value_cursors: dict[tuple[str, ...], int],
        searching: Collection[str],
    ) -> None:
        """The ``{{ name }}`` of each unique attribute that uses it: what the account holds,
        when the policy lets it keep that; else the first free one."""
        given = names[anchor]
        spec = account.spec.username
        scheme = _name_scheme(spec)
        context = {**person.context, "username": given.username}
        held_values = self._held_values(anchor)
        held_username = self._held_name(anchor)
        for attr in account.name_attributes:
            template = account.attributes[attr]
            same = self._fixed if template.variables <= _SAME_FOR_EVERYONE else None
            value = _NameValues(template, context, person.key, same)
            held_value = held_values.get(attr)
            held_name = name_in(held_value, value.fixed()) if held_value else None
            if held_name is None and held_username is not None:
                # Not told by the value (none yet, or the template's fixed part changed, e.g. the
                # mail domain): the name that goes with the username it holds (jan.peeters2 →
                # jan.peeters2, the whole name when the username was cut).
                username_scheme = _username_scheme(spec)
                if username_scheme.fits(held_username, base):
                    held_name = scheme.numbered(base, username_scheme.number(held_username, base))
                else:
                    held_name = held_username
            if held_name is not None:
                fits = scheme.fits(held_name, base)
                kept = value(held_name) if fits or spec.rename == "keep" else None
                if kept is not None and self.book.free(kept, anchor):
                    self.book.claim(kept, anchor)
                    given.values[attr] = kept
                    if not fits and held_value:
                        wanted = value(scheme.plain(base))
                        self._name_change(account, anchor, attr, held_value, wanted, follows=False)
                    continue

            def free(name: str, value: _NameValues = value) -> bool:
                return self.book.free(name, anchor) and self.book.free(value(name), anchor)

            values = None
            around = value.around()
            if around is not None:
                head, tail = around
                key = (base, str(scheme.length), attr, head, tail)
                values = _ValueCursor(value_cursors, key, scheme.first, value, self.book, searching)
            name = self._first_free(base, scheme, free, cursors, attr, values)
            if name is None:
                raise TemplateError(
                    f"{template.source.location}: accounts.{account.name}.attributes.{attr}: "
                    f"no free value after {MAX_SUFFIX} suffixes of {base!r} (is every value "
                    "taken, or does the template not use {{ name }} where the suffix should go?)"
                )
            chosen = value(name)
            self.book.claim(chosen, anchor)
            given.values[attr] = chosen
            if held_value and held_value.casefold() != chosen.casefold():
                self._name_change(account, anchor, attr, held_value, chosen, follows=True)

    def _first_free(
        self,
        base: str,
        scheme: Scheme,
        is_free: Callable[[str], bool],
        cursors: dict[tuple[str, int, str], int],
        attribute: str = "username",
        values: _ValueCursor | None = None,
    ) -> str | None:
        """The first name of *scheme* made from *base* that *is_free*, or None. It starts where
        *cursors* say the names that may still be free begin, or *values* the values."""
        cursor_key = (base, scheme.length, attribute)
        bare = cursors.get(cursor_key, scheme.first)
        start = bare if values is None else max(bare, values.start)
        for n, candidate in scheme.candidates(base, start):
            if is_free(candidate):
                return candidate
            if n == bare and self.book.unavailable(candidate):
                bare = n + 1
                cursors[cursor_key] = bare
            if values is not None and n == values.start:
                values.passed(n, candidate)
        return None

    def _no_free_name(
        self, account: CompiledAccount, person: Person, anchor: str, base: str, location: str
    ) -> None:
        """Hold *person*: no suffix made a free name. Said at the line of the unique attribute
        that stays taken whatever the username (it does not use it), else of the username."""
        where, what = f"{location}: accounts.{account.name}", "name"
        context = {
            **person.context,
            "username": _username_scheme(account.spec.username).plain(base),
        }
        for attr in account.username_bound:
            template = account.attributes[attr]
            try:
                value = template.render(context, person.key)
            except TemplateError:
                continue
            if not self.book.free(value, anchor):
                where = f"{template.source.location}: accounts.{account.name}.attributes.{attr}"
                what = f"value ({value!r} is taken and does not change with the username)"
                break
        self.hold(
            person,
            f"{where}: no free {what} after {MAX_SUFFIX} suffixes of {base!r}; make every "
            "unique attribute use {{ username }} or {{ name }}",
            anchor=anchor,
        )

    def _name_change(
        self,
        account: CompiledAccount,
        anchor: str,
        attribute: str,
        held: str,
        wanted: str,
        *,
        follows: bool,
    ) -> None:
        self.report.names.append(
            NameChange(account.name, anchor, attribute, held, wanted, follows=follows)
        )

    def _summarise_kept_names(self) -> None:
        """One warning per account kind whose accounts keep a name the template would now make
        otherwise (``rename: keep``): the naming rule changed, or a name in the source did."""
        kept: dict[str, list[NameChange]] = {}
        for change in self.report.names:
            if not change.follows:
                kept.setdefault(change.kind, []).append(change)
        for kind, changes in kept.items():
            account = self.compiled.accounts[kind]
            anchors = {c.anchor for c in changes}
            example = changes[0]
            self.report.warnings.insert(
                0,
                f"accounts.{kind}: {len(anchors)} existing account(s) keep a name the mappings "
                f"would now make otherwise (e.g. {example.held!r}, now {example.wanted!r}): "
                f"username.rename is keep ({account.spec.username.template.location}); set "
                "rename: follow to rename them (limited by policy.max_rename)",
            )

    # -- groups ---------------------------------------------------------------------------------

    def _build_groups(self, state: DesiredState) -> None:
        owners_cache: dict[tuple[str, str], dict[str, list[str]]] = {}
        for group in self.compiled.groups.values():
            spec = group.spec
            for person in (p for kind in spec.members for p in self.persons.get(kind, [])):
                anchor = person.anchor
                if anchor is None:
                    continue  # no account: held
                if spec.rows:
                    missing = self.not_fetched[spec.rows]
                    rows = [Row(r, missing) for _s, r in self.index.rows(spec.rows, person.key)]
                    contexts = [{**person.context, spec.rows: row} for row in rows]
                else:
                    contexts = [person.context]
                for context in contexts:
                    self._add_membership(state, group, person, anchor, context, owners_cache)
        # A person held while their groups were made loses the account made for them, and every
        # membership and ownership; a group left with no member is not made.
        held = {
            person.anchor: person
            for persons in self.persons.values()
            for person in persons
            if person.anchor is not None and (person.kind, person.key) in self.held
        }
        if not held:
            return
        for anchor, person in held.items():
            state.accounts.pop(anchor, None)
            person.anchor = None
        for key, group in list(state.groups.items()):
            group.members -= held.keys()
            group.owners -= held.keys()
            if not group.members:
                del state.groups[key]

    def _add_membership(
        self,
        state: DesiredState,
        group: CompiledGroup,
        person: Person,
        anchor: str,
        context: dict[str, Any],
        owners_cache: dict[tuple[str, str], dict[str, list[str]]],
    ) -> None:
        try:
            if group.where is not None and not group.where.render(context, person.key):
                return
            key = group.key.render(context, person.key)
            if not key:
                self.hold(
                    person,
                    f"{group.key.source.location}: groups.{group.name}.key: the group key "
                    "template gives an empty key for this person (a value it reads is empty?)",
                    anchor=anchor,
                )
                return
            desired = state.groups.get(key)
            if desired is None:
                ou = tuple(t.render(context, person.key) for t in group.ou)
                if any(not part for part in ou):
                    self.hold(
                        person,
                        f"groups.{group.name}.ou: an empty OU name for group {key}, made from "
                        "this person's values",
                        anchor=anchor,
                    )
                    return
                desired = DesiredGroup(
                    kind=group.name,
                    key=key,
                    ou=ou,
                    attributes={
                        a: Derived(t.render(context, person.key), t.why)
                        for a, t in group.attributes.items()
                    },
                )
                state.groups[key] = desired
                if group.owner_names is not None:
                    desired.owners = self._owners(group, context, person, owners_cache)
            elif desired.kind != group.name:
                self.report.errors.append(
                    f"groups.{group.name}: key {key!r} is also made by groups.{desired.kind}"
                )
                return
            desired.members.add(anchor)
        except TemplateError as exc:
            self.failed(person, exc, anchor=anchor)

    def _owners(
        self,
        group: CompiledGroup,
        context: dict[str, Any],
        person: Person,
        cache: dict[tuple[str, str], dict[str, list[str]]],
    ) -> set[str]:
        assert group.spec.owners is not None and group.owner_names and group.owner_match
        kind = group.spec.owners.accounts
        by_name = cache.get((group.name, kind))
        if by_name is None:
            by_name = {}
            for candidate in self.persons.get(kind, []):
                candidate_anchor = candidate.anchor
                if candidate_anchor is None:
                    continue
                name = _fold(group.owner_match.render(candidate.context, candidate.key))
                by_name.setdefault(name, []).append(candidate_anchor)
            cache[(group.name, kind)] = by_name
        owners: set[str] = set()
        for name in group.owner_names.render(context, person.key).split(","):
            if not name.strip():
                continue
            found = by_name.get(_fold(name), [])
            if len(found) == 1:
                owners.add(found[0])
            else:
                problem = "matches no account" if not found else f"matches {len(found)} accounts"
                self.report.warnings.append(
                    f"groups.{group.name}: owner {name.strip()!r} {problem} of kind {kind}; "
                    "left out"
                )
        return owners


class _NameValues:
    """One person's values of one unique attribute that uses ``{{ name }}``, for any name.

    Each is the template rendered with the name, except where the template puts the name into
    its text once, as it is (``{{ name }}@{{ vars.pupil_domain }}``: ``Compiled.inserts_name``),
    and the text around it is known (rendered once with :data:`SENTINEL` as the name): then the
    value of a name without blanks at its ends is that text with the name between, exactly what
    rendering makes (rendering strips the whole text, which takes nothing from such a name). The
    name search tries several names per person; it no longer renders each of them."""

    __slots__ = ("_around", "_fixed", "_same", "context", "key", "template")

    def __init__(
        self,
        template: Compiled,
        context: Mapping[str, Any],
        key: str,
        same: dict[Compiled, tuple[str, tuple[str, str] | None]] | None = None,
    ) -> None:
        """*same*: where the fixed parts of templates that are the same for everyone are kept
        (None: this template reads the person)."""
        self.template, self.context, self.key = template, context, key
        self._fixed: str | None = None
        self._around: tuple[str, str] | None = None
        self._same = same

    def render(self, name: str) -> str:
        return self.template.render({**self.context, "name": name}, self.key)

    def fixed(self) -> str:
        """The value with :data:`SENTINEL` for the name (rendered once)."""
        if self._fixed is None:
            known = self._same.get(self.template) if self._same is not None else None
            if known is not None:
                self._fixed, self._around = known
                return self._fixed
            self._fixed = self.render(SENTINEL)
            if self.template.inserts_name and self._fixed.count(SENTINEL) == 1:
                head, _, tail = self._fixed.partition(SENTINEL)
                self._around = (head, tail)
            if self._same is not None:
                self._same[self.template] = (self._fixed, self._around)
        return self._fixed

    def around(self) -> tuple[str, str] | None:
        """The text before and after the name in every value, when the template inserts it
        once as it is; else None."""
        self.fixed()
        return self._around

    def __call__(self, name: str) -> str:
        around = self._around
        if around is None or not name or name != name.strip():
            return self.render(name)
        head, tail = around
        if len(head) + len(name) + len(tail) > MAX_VALUE_CHARS:
            return self.render(name)  # too long: the rendering says so, as before
        return head + name + tail


class _ValueCursor:
    """Where the values of one unique attribute that may still be free begin, for the persons
    with one wanted name whose values put the name between the same text (``…@school.be``).

    The k-th Jan Peeters whose login was cut shorter (marie-louise.vandenb2) would otherwise try
    the k−1 mail values before his again: the cursor on names skips a name only when it is
    taken as a name. A value another account holds in this run, or given before and the own of
    none of the persons still to search, is free for none of them, so skipping it changes no
    one's outcome."""

    __slots__ = ("book", "cursors", "key", "searching", "start", "value")

    def __init__(
        self,
        cursors: dict[tuple[str, ...], int],
        key: tuple[str, ...],
        first: int,
        value: Callable[[str], str],
        book: NameBook,
        searching: Collection[str],
    ) -> None:
        self.cursors, self.key, self.value = cursors, key, value
        self.book, self.searching = book, searching
        self.start = cursors.get(key, first)

    def passed(self, n: int, candidate: str) -> None:
        """*candidate*, suffix *n* (the start), was not free: start after it when its value is
        free for no one still to search. (A name with blanks at its ends is left: the value's
        text around it is then not what it seems.)"""
        if candidate == candidate.strip() and self.book.given_to_none_of(
            self.value(candidate), self.searching
        ):
            self.start = n + 1
            self.cursors[self.key] = self.start


@dataclass(slots=True)
class _Early:
    """A person's attributes (by name) and OU names (by position) that use neither ``username``
    nor ``name``, rendered before the names are given: each a value, or the template's error,
    raised again where the attribute is made, so the person's outcome (which error holds them,
    and when) is what it would be had everything been rendered then."""

    values: dict[str | int, str | TemplateError]

    @classmethod
    def render(cls, account: CompiledAccount, person: Person) -> _Early:
        values: dict[str | int, str | TemplateError] = {}
        for place, template in account.early:
            try:
                values[place] = template.render(person.context, person.key)
            except TemplateError as exc:
                values[place] = exc
        return cls(values)

    def value(self, place: str | int) -> str:
        value = self.values[place]
        if isinstance(value, TemplateError):
            raise value
        return value


NAME_VARIABLES = frozenset({"username", "name"})


def _username_scheme(spec: UsernameSpec) -> Scheme:
    return _scheme(spec.max_length, spec.suffix, spec.first)


def _name_scheme(spec: UsernameSpec) -> Scheme:
    return _scheme(spec.name_length, spec.suffix, spec.first)


@functools.cache  # asked for several times per person; a frozen dataclass is slow to make
def _scheme(length: int, suffix: str, first: int) -> Scheme:
    return Scheme(length, suffix, first)


@dataclass
class Names:
    """The names given to one account: its username, and the values its unique attributes got
    (each chosen by the search: not rendered again)."""

    username: str
    values: dict[str, str] = field(default_factory=dict)


def _fold(name: str) -> str:
    return re.sub(r"\s+", " ", name).strip().casefold()


def _add_ou(ous: set[tuple[str, ...]], path: tuple[str, ...]) -> None:
    for depth in range(1, len(path) + 1):
        ous.add(path[:depth])


MAX_FIELD_CHARS = 4096
"""The longest value one field of a person may hold: names, addresses and codes are far shorter.
A longer one is a damaged record, held before any template sees it (a template joining it with
other text would otherwise run into the sandbox's 64 KiB limit, which stops the whole run)."""


def _oversized_value(records: Mapping[str, Any]) -> tuple[str, str, int] | None:
    """(data set, field, length) of the first value of *records* longer than MAX_FIELD_CHARS."""
    for dataset, found in records.items():
        rows = found if isinstance(found, list) else [found]
        for row in rows:
            for name, value in (row or {}).items():
                if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
                    return dataset, str(name), len(value)
    return None


_PERSON = re.compile(r" \(person [^()]*\)$")


def _once_each(errors: list[str]) -> list[str]:
    """Errors of the mappings, each once: a template that is wrong fails the same way for every
    person it is rendered for, and one message with a count says it better than hundreds. Errors
    that name no person are kept as they are."""
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for position, error in enumerate(errors):
        same = _PERSON.sub("", error) if _PERSON.search(error) else f"{position}\0{error}"
        counts[same] = counts.get(same, 0) + 1
        first.setdefault(same, error)
    return [first[same] + _more(count - 1) for same, count in counts.items()]


def _more(others: int) -> str:
    if not others:
        return ""
    return f" (and {others} more {'person' if others == 1 else 'persons'})"


def build_desired(
    compiled: CompiledMappings,
    source: SourceRows,
    *,
    existing: Mapping[str, str] | None = None,
    issued: Collection[str] = (),
    today: dt.date | None = None,
    problems: Sequence[ValueProblem] = (),
    held_values: Mapping[str, Mapping[str, str]] | None = None,
    own: Mapping[str, Collection[str]] | None = None,
    documented: Mapping[str, Collection[str] | None] | None = None,
    unavailable: Mapping[str, Mapping[str, str]] | None = None,
) -> DesiredState:
    """The desired state for *source*. ``existing`` maps anchors to the usernames they already
    hold and ``held_values`` to the values of their unique attributes (they keep them, as the
    ``rename`` policy says); ``issued`` holds every name ever given (never given to anyone else)
    and ``own`` per anchor the names given to it (it may get them back); ``problems`` are the
    values the source could not read (``SourceRead.problems``): each holds its person, or counts
    as a row of an unknown person of its school; ``documented`` per data set the fields its
    source documents and ``unavailable`` the fields it cannot give (:func:`check_fields`)."""
    engine = map_persons(
        compiled,
        source,
        today=today,
        problems=problems,
        documented=documented,
        unavailable=unavailable,
    )
    return engine.desired(existing=existing, issued=issued, held_values=held_values, own=own)


def map_persons(
    compiled: CompiledMappings,
    source: SourceRows,
    *,
    today: dt.date | None = None,
    problems: Sequence[ValueProblem] = (),
    documented: Mapping[str, Collection[str] | None] | None = None,
    unavailable: Mapping[str, Mapping[str, str]] | None = None,
) -> Engine:
    """The first part of :func:`build_desired`, which needs no names in use (the persons, their
    anchors, the attributes and OUs that use neither ``username`` nor ``name``): the pipeline
    runs it while the directory is still being read. ``Engine.desired`` finishes it, once."""
    errors, warnings = check_fields(compiled, source, documented, unavailable)
    engine = Engine(compiled, source, today=today, problems=problems)
    engine.report.errors.extend(errors)
    engine.report.warnings.extend(warnings)
    engine.map_persons()
    return engine


def fields_to_fetch(compiled: CompiledMappings) -> dict[str, Collection[str] | None]:
    """What the source must deliver: per data set the fields read (None: all of them)."""
    return {
        dataset: (None if fields is None else sorted(fields))
        for dataset, fields in compiled.field_uses().items()
    }


__all__ = [
    "CompiledMappings",
    "FieldUse",
    "MappingError",
    "build_desired",
    "compile_mappings",
    "fields_to_fetch",
]
