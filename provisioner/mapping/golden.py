"""Golden tests for mappings: the coordinator's own examples of persons in and accounts out.

An example file holds made-up persons as source rows (per data set, each row with the school it
was read for) and the accounts and groups the mappings should make of them. ``provisioner test``
renders each example through the configured mappings, exactly as a night would (the engine, and
the checks of the configured target's naming rules), and compares only what the example names.
Nothing is read from the source and no directory is contacted: no secrets are needed, so a
mapping change can be checked on any machine before the night.

The comparison yields plain :class:`Outcome` data; :mod:`provisioner.report.golden` renders it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provisioner.errors import ConfigError
from provisioner.model import (
    SOURCE_FIELD,
    Dataset,
    Derived,
    DesiredAccount,
    DesiredGroup,
    DesiredState,
    Record,
    SourceRows,
)
from provisioner.sources.base import DatasetInfo, SourceRead
from provisioner.yamlnodes import Builder, load_yaml

EXAMPLES_FOLDER = "tests"
"""Where ``provisioner test`` looks without ``--examples``: this folder next to the mapping files
(``mappings/tests/*.yaml``). The mappings read only the files directly in their folder, so the
examples never count as mappings."""

NOT_SET = "(not set)"
"""An attribute the mappings did not set, as shown; ``""`` in an example expects that."""

UNIT_KEY = "instelnr"
"""The key of a row (or an example) that names the school the row was read for: not a field."""
SOURCE_KEY = "source"
"""The key of a row that names the source it came from (``{{ source }}``): not a field. Without
it, a row is the configuration's first source's."""

GROUP_NAME_ATTRIBUTES = ("displayName", "cn", "sAMAccountName")
"""What a group is called, for ``name:`` in an example: the first of these the mappings set
(Entra ID shows displayName, Active Directory the cn); without any, the group's key."""


# --- the example file --------------------------------------------------------------------------


@dataclass
class Row:
    """One source row: its fields as text (as a source delivers them) and its school."""

    values: dict[str, str]
    unit: str | None
    file: Path
    line: int
    source: str | None = None

    @classmethod
    def from_yaml_node(cls, builder: Builder, node: yaml.Node, where: str) -> Row:
        if not isinstance(node, yaml.MappingNode):
            raise builder.error(node, where, "a row is a mapping of field: value")
        values: dict[str, str] = {}
        unit: str | None = None
        source: str | None = None
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if not isinstance(value_node, yaml.ScalarNode):
                raise builder.error(
                    value_node, f"{where}.{key}", "a field holds one value, not a list or mapping"
                )
            named = {UNIT_KEY: unit, SOURCE_KEY: source}
            if key in values or named.get(key) is not None:
                raise builder.error(key_node, f"{where}.{key}", "given twice")
            # The text as written: a source delivers text, so 0 is "0" and 030569 keeps its 0.
            # An empty value is left out, as Informat leaves out an empty element.
            text = "" if value_node.tag == "tag:yaml.org,2002:null" else str(value_node.value)
            if key == UNIT_KEY:
                unit = text or None
            elif key == SOURCE_KEY:
                source = text or None
            elif text:
                values[key] = text
        return cls(values, unit, builder.path, node.start_mark.line + 1, source)


@dataclass
class ExpectedAccount:
    """An account the mappings should make; only what is named is compared."""

    anchor: str
    kind: str | None = None
    username: str | None = None
    ou: list[str] | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    groups: list[str] | None = None
    """Keys of every group the account is a member of (all of them, in any order)."""


@dataclass
class ExpectedGroup:
    """A group the mappings should make; only what is named is compared."""

    key: str
    kind: str | None = None
    name: str | None = None
    ou: list[str] | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    members: list[str] | None = None
    """Every member, by username or anchor, in any order."""
    owners: list[str] | None = None
    """Every owner, by username or anchor, in any order."""


@dataclass
class Example:
    name: str
    rows: dict[str, list[Row]]
    """Per data set its rows."""
    instelnr: str | None = None
    """The school of every row that names none."""
    today: dt.date | None = None
    """The day the example describes (``today`` in the mappings); default: the file's."""
    accounts: list[ExpectedAccount] | None = None
    """Every account the persons should get (none: not compared; ``[]``: no account at all)."""
    groups: list[ExpectedGroup] | None = None
    """Every group the persons should make (none: not compared; ``[]``: no group at all)."""
    file: Path = field(default=Path(), metadata={"internal": True})
    line: int = field(default=0, metadata={"internal": True})

    @classmethod
    def from_yaml_node(cls, builder: Builder, node: yaml.Node, where: str) -> Example:
        example: Example = builder.build_dataclass(node, cls, where)
        for section, keys in (
            ("accounts", [a.anchor for a in example.accounts or []]),
            ("groups", [g.key for g in example.groups or []]),
        ):
            twice = sorted({k for k in keys if keys.count(k) > 1})
            if twice:
                raise builder.error(
                    node, f"{where}.{section}", f"{', '.join(twice)} listed twice: list each once"
                )
        example.file, example.line = builder.path, node.start_mark.line + 1
        return example

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class ExampleFile:
    examples: list[Example]
    today: dt.date | None = None
    """The day every example of the file describes, unless it names its own; default: today.
    Give one when the mappings compare dates (an ended class), so the example stays true."""


def example_files(path: Path) -> list[Path]:
    """*path* itself, or every ``*.yaml``/``*.yml`` file in the folder *path*, sorted."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise ConfigError(f"{path}: no example files (*.yaml) in this folder")
        return files
    if not path.exists():
        raise ConfigError(
            f"examples {path} do not exist: write example files there, or name them with "
            "--examples (see 'Testing your mappings' in docs/mappings.md)"
        )
    return [path]


def default_examples(mappings: Path) -> Path:
    """The ``tests`` folder next to the mapping files (in the mappings folder, or beside the one
    mapping file)."""
    return (mappings if mappings.is_dir() else mappings.parent) / EXAMPLES_FOLDER


def load_examples(path: Path) -> list[Example]:
    """Every example of the file or folder *path*; a problem names the file and line."""
    examples: list[Example] = []
    for file in example_files(path):
        loaded = load_yaml(file, ExampleFile, "example")
        for example in loaded.examples:
            if example.today is None:
                example.today = loaded.today
        examples += loaded.examples
    return examples


# --- rendering and comparing -------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One thing that is not as the example expects: ``what`` (``account lln-1001``), the
    ``item`` (``username``, ``attributes.mail``; empty: the object itself is missing or not
    expected), and both sides as people read them."""

    what: str
    item: str
    expected: str
    got: str
    note: str = ""
    """What differs, where a list does: ``missing x; not expected y``."""


@dataclass
class Outcome:
    example: Example
    differences: list[Difference] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """What the mappings reported while rendering (errors, held persons): the likely cause."""

    @property
    def passed(self) -> bool:
        return not self.differences


@dataclass(frozen=True)
class Renderer:
    """What the examples are rendered with: the source's data sets (each with its person key)
    and units, the data sets the mappings read, and the stage that makes a desired state of a
    read (the pipeline's: the engine and the target's naming rules, as on a night)."""

    datasets: Mapping[str, DatasetInfo]
    units: Sequence[str]
    read: Collection[str]
    """The data sets the mappings read: only these are handed over."""
    render: Callable[[SourceRead], DesiredState]


def check_rows(example: Example, renderer: Renderer) -> None:
    """Every data set is one the source offers, every row has a school and its person key."""
    offered = renderer.datasets
    for dataset, rows in example.rows.items():
        if dataset not in offered:
            line = rows[0].line if rows else example.line
            close = difflib.get_close_matches(dataset, offered, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"{example.file}:{line}: example {example.name!r}: rows.{dataset}: the source has "
                f"no data set {dataset!r} ({hint}the mappings read: {', '.join(renderer.read)})"
            )
        key = offered[dataset].key
        for row in rows:
            where = f"{row.file}:{row.line}: example {example.name!r}: rows.{dataset}"
            if key not in row.values:
                raise ConfigError(
                    f"{where}: the row has no {key} (the person key of {dataset}): give it, the "
                    "same for every row of one person"
                )
            if (row.unit or example.instelnr) is None and len(renderer.units) != 1:
                raise ConfigError(
                    f"{where}: the row names no school: give {UNIT_KEY}: on the row or on the "
                    "example"
                )


def source_rows(example: Example, renderer: Renderer) -> SourceRows:
    """The example's rows as a source would deliver them; only the data sets the mappings read."""
    units = list(renderer.units)
    default_unit = example.instelnr or (units[0] if len(units) == 1 else "")
    datasets: dict[str, Dataset] = {}
    for name in renderer.read:
        rows = [(row.unit or default_unit, _record(row)) for row in example.rows.get(name, [])]
        seen = frozenset(f for _unit, record in rows for f in record) - {SOURCE_FIELD}
        datasets[name] = Dataset(key=renderer.datasets[name].key, rows=rows, fields_seen=seen)
    read_units = (unit for dataset in datasets.values() for unit, _record in dataset.rows)
    return SourceRows(schools=list(dict.fromkeys([*units, *read_units])), datasets=datasets)


def _record(row: Row) -> Record:
    record: Record = dict(row.values)
    if row.source is not None:
        record[SOURCE_FIELD] = row.source
    return record


def render_example(example: Example, renderer: Renderer) -> DesiredState:
    """The desired state the mappings make of the example's rows, as on a first night."""
    check_rows(example, renderer)
    rows = source_rows(example, renderer)
    read = SourceRead(
        rows=rows,
        as_of=example.today or dt.date.today(),
        digest=hashlib.sha256(repr(example.rows).encode()).hexdigest(),
        counts={name: {} for name in rows.datasets},
        description=f"example {example.name!r}",
    )
    return renderer.render(read)


def run_example(example: Example, renderer: Renderer) -> Outcome:
    state = render_example(example, renderer)
    outcome = Outcome(example, compare_state(example, state))
    outcome.problems = [
        *state.report.errors,
        *(f"{hold.kind} {hold.key} held: {hold.reason}" for hold in state.held),
    ]
    return outcome


def run_examples(examples: Sequence[Example], renderer: Renderer) -> list[Outcome]:
    """Every example rendered and compared; a malformed one stops all (it is a file to fix)."""
    for example in examples:  # every file problem first, before any output
        check_rows(example, renderer)
    return [run_example(example, renderer) for example in examples]


def compare_state(example: Example, state: DesiredState) -> list[Difference]:
    usernames = {anchor: account.username for anchor, account in state.accounts.items()}
    differences: list[Difference] = []
    if example.accounts is not None:
        differences += _compare_objects(
            "account",
            {e.anchor: e for e in example.accounts},
            state.accounts,
            lambda e, got: _compare_account(e, got, state),
            lambda got: f"username {got.username}",
        )
    if example.groups is not None:
        differences += _compare_objects(
            "group",
            {e.key: e for e in example.groups},
            state.groups,
            lambda e, got: _compare_group(e, got, usernames),
            lambda got: f"name {group_name(got)}, {len(got.members)} member(s)",
        )
    return differences


def _compare_objects(
    what: str,
    expected: Mapping[str, Any],
    got: Mapping[str, Any],
    compare_one: Callable[[Any, Any], list[Difference]],
    describe: Callable[[Any], str],
) -> list[Difference]:
    differences: list[Difference] = []
    for key, wanted in expected.items():
        if key not in got:
            differences.append(
                Difference(f"{what} {key}", "", "made", "not made", "expected, but not made")
            )
        else:
            differences += compare_one(wanted, got[key])
    for key in sorted(set(got) - set(expected)):
        made = f"made ({describe(got[key])})"
        differences.append(
            Difference(f"{what} {key}", "", "not made", made, f"{made}, but not in the example")
        )
    return differences


def _compare_account(
    want: ExpectedAccount, got: DesiredAccount, state: DesiredState
) -> list[Difference]:
    what = f"account {want.anchor}"
    found: list[Difference] = []

    def check(item: str, expected: str | None, value: str) -> None:
        if expected is not None and expected != value:
            found.append(Difference(what, item, expected, value))

    check("kind", want.kind, got.kind)
    check("username", want.username, got.username)
    if want.ou is not None:
        check("ou", _path(want.ou), _path(got.ou))
    found += _compare_attributes(what, want.attributes, got.attributes)
    if want.groups is not None:
        member_of = {key for key, group in state.groups.items() if got.anchor in group.members}
        missing = sorted(set(want.groups) - member_of)
        extra = sorted(member_of - set(want.groups))
        if missing or extra:
            found.append(
                Difference(
                    what,
                    "groups",
                    _listed(want.groups),
                    _listed(sorted(member_of)),
                    _changes(missing, extra),
                )
            )
    return found


def _compare_group(
    want: ExpectedGroup, got: DesiredGroup, usernames: Mapping[str, str]
) -> list[Difference]:
    what = f"group {want.key}"
    found: list[Difference] = []

    def check(item: str, expected: str | None, value: str) -> None:
        if expected is not None and expected != value:
            found.append(Difference(what, item, expected, value))

    check("kind", want.kind, got.kind)
    check("name", want.name, group_name(got))
    if want.ou is not None:
        check("ou", _path(want.ou), _path(got.ou))
    found += _compare_attributes(what, want.attributes, got.attributes)
    for item, listed, anchors in (
        ("members", want.members, got.members),
        ("owners", want.owners, got.owners),
    ):
        if listed is None:
            continue
        missing, extra = _set_difference(listed, anchors, usernames)
        if missing or extra:
            got_names = sorted(f"{usernames.get(a, a)} ({a})" for a in anchors)
            found.append(
                Difference(
                    what, item, _listed(listed), _listed(got_names), _changes(missing, extra)
                )
            )
    return found


def _compare_attributes(
    what: str, expected: Mapping[str, str], got: Mapping[str, Derived]
) -> list[Difference]:
    """Each attribute the example names; ``""`` expects it not set (the mappings set no
    empty value)."""
    found: list[Difference] = []
    for name, wanted in expected.items():
        value = got[name].value if name in got else ""
        if wanted != value:
            found.append(
                Difference(what, f"attributes.{name}", wanted or NOT_SET, value or NOT_SET)
            )
    return found


def _set_difference(
    listed: Sequence[str], anchors: set[str], usernames: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """Who the example lists but the group lacks, and who the group has but the example does
    not list; a person may be listed by username or by anchor."""
    names = {anchor: usernames.get(anchor, anchor) for anchor in anchors}
    matched = {a for a in anchors if a in listed or names[a] in listed}
    missing = [n for n in listed if n not in anchors and n not in names.values()]
    extra = [names[a] for a in sorted(anchors - matched, key=names.__getitem__)]
    return missing, extra


def group_name(group: DesiredGroup) -> str:
    for attribute in GROUP_NAME_ATTRIBUTES:
        if attribute in group.attributes:
            return group.attributes[attribute].value
    return group.key


def _path(ou: Sequence[str]) -> str:
    return " / ".join(ou) if ou else "(none)"


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "(none)"


def _changes(missing: Sequence[str], extra: Sequence[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if extra:
        parts.append(f"not expected {', '.join(extra)}")
    return "; ".join(parts)


__all__ = [
    "Difference",
    "Example",
    "Outcome",
    "Renderer",
    "default_examples",
    "load_examples",
    "run_examples",
]
