"""The mapping file format, as dataclasses read by the same builder as provisioner.yaml.

A mapping file holds ``accounts`` (one entry per kind: pupils, staff, …) and ``groups``. Several
files in one directory are read together; a name defined twice is an error. ``docs/mappings.md``
describes the format for coordinators; ``schema.json`` (generated from these classes) lets editors
complete and check it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from provisioner.errors import ConfigError
from provisioner.yamlnodes import load_yaml

EXPRESSIONS = ("where", "prefer")
"""The keys whose value is a Jinja expression (``Lln.voorlopig == "0"``), not a template."""


@dataclass(frozen=True)
class Template:
    """Template text with the place it was written, so every error can point at it."""

    text: str
    file: Path
    line: int
    where: str

    @classmethod
    def from_yaml(cls, value: object, file: Path, line: int, where: str) -> Template:
        if value is None or isinstance(value, bool | list | dict):
            raise ValueError("expected template text")
        return cls(str(value), file, line, where)

    @classmethod
    def unquoted(cls, written: str, where: str) -> str | None:
        """What to say about an unquoted ``{{ … }}`` in the place of an expression (``where``,
        ``prefer``): the braces go, not just in quotes; a template gets the builder's "quote it"."""
        field = where.rsplit(".", 1)[-1].split("[", 1)[0]
        if field not in EXPRESSIONS:
            return None
        bare = written.removeprefix("{{").removesuffix("}}").strip()
        return f"`{field}` is an expression: write {bare} without {{{{ }}}}"

    @property
    def location(self) -> str:
        return f"{_shown(self.file)}:{self.line}"


def _shown(path: Path) -> str:
    """A path as short as it can be said: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass
class PersonsSpec:
    """Who the accounts are for: rows of a driving data set joined with other data sets."""

    source: str
    """The driving data set, e.g. ``Lln`` or ``Leerkrachten``: one person per person key."""
    where: Template | None = None
    """A Jinja expression; rows for which it is false are left out (e.g. pre-registrations)."""
    join: list[str] = field(default_factory=list)
    """Data sets with one row per person, joined on their person key (``LlnExtra``)."""
    join_many: list[str] = field(default_factory=list)
    """Data sets with several rows per person, available as a list (``Subgroepen``)."""
    pivot: dict[str, list[str]] = field(default_factory=dict)
    """Name/value data sets as a dict: ``LeerkrachtenVrijevelden: [OmschrijvingVrijVeld,
    WaardeVrijVeld]`` makes ``LeerkrachtenVrijevelden.CODE``."""
    prefer: list[Template] = field(default_factory=list)
    """Expressions that rank a person's rows when there are several; the first true one wins,
    then the school order."""
    schools: list[str] | None = None
    """School order for duplicates (instellingsnummers); default: the source's configured order."""

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every data set a person of this kind is made of: the source first."""
        return (self.source, *self.join, *self.join_many, *self.pivot)


@dataclass
class UsernameSpec:
    """How an account's username is made, and made unique."""

    template: Template
    """The wanted name, e.g. ``{{ (Lln.Voornaam ~ '.' ~ Lln.Naam) | username }}``."""
    max_length: int = 20
    """sAMAccountName holds at most 20 characters."""
    suffix: str = "{n}"
    """Appended when a name is taken; ``{n}`` counts from ``first``: jan.peeters2, jan.peeters3."""
    first: int = 2
    """The first number a suffix uses."""
    name_length: int = 64
    """The longest ``{{ name }}`` of a unique attribute: the whole wanted name, not cut to the
    username's 20 characters (a mail address holds 64 before the @)."""
    rename: Literal["keep", "follow"] = "keep"
    """What an existing account gets when the template now makes another name (a new naming
    rule, a name corrected in the source): ``keep`` its name (the plan says how many), or
    ``follow`` the template (renamed, within ``policy.max_rename``)."""

    def __post_init__(self) -> None:
        if "{n}" not in self.suffix:
            raise ValueError("suffix must contain {n}")
        if not 3 <= self.max_length <= 256:
            raise ValueError("max_length must be between 3 and 256")
        if not 3 <= self.name_length <= 256:
            raise ValueError("name_length must be between 3 and 256")


@dataclass
class LicenceSpec:
    """One licence every account of the kind gets (where the target holds licences: Entra ID)."""

    sku: Template
    """The licence's SKU part number as the tenant lists it, e.g. ``STANDARDWOFFPACK_STUDENT``
    (Office 365 A1 for students) or ``M365EDU_A3_FACULTY``; plain text, not a template."""
    disabled_plans: list[str] = field(default_factory=list)
    """Service plans of the SKU left off, by name, e.g. ``[YAMMER_EDU]``."""


@dataclass
class AccountSpec:
    """One kind of account (pupils, staff): for whom, with which name, where and with what."""

    persons: PersonsSpec
    """Who gets an account of this kind."""
    username: UsernameSpec
    """The username scheme; usernames are unique across all kinds."""
    anchor: Template | None = None
    """The stable source key written to the directory; default: the person key."""
    anchor_was: Template | None = None
    """The anchor these accounts had before (e.g. ``{{ key }}`` when the anchor became
    ``lln-{{ key }}``): an account still carrying it is carried over to the new anchor in place."""
    ou: list[Template] = field(default_factory=list)
    """OU path below the managed root, outermost first: ``[Leerlingen, "{{ Lln.Klascode }}"]``."""
    attributes: dict[str, Template] = field(default_factory=dict)
    """Directory attributes by name, each a template: ``mail: "{{ username }}@school.be"``."""
    unique: list[str] = field(default_factory=list)
    """Attributes that must be unique across all accounts; ``username`` always is. A unique
    attribute may use ``{{ name }}``: the whole wanted name with a suffix of its own when taken
    (``mail: "{{ name }}@school.be"`` keeps a long name whole while the username is cut)."""
    licences: list[LicenceSpec] = field(default_factory=list)
    """Licences (Entra ID only) by SKU part number, optionally with service plans left off:
    ``[{sku: STANDARDWOFFPACK_STUDENT, disabled_plans: [YAMMER_EDU]}]``. Licences of the SKUs
    the mappings name are the connector's: one an account of this kind should not have is taken
    away; SKUs no mapping names are left alone."""


@dataclass
class OwnersSpec:
    """Group owners found by name, e.g. class teachers from ``Subgroepen.Klastitularis``."""

    names: Template
    """Comma-separated names, e.g. ``{{ Subgroepen.Klastitularis }}``."""
    accounts: str
    """The account kind to look in, e.g. ``staff``."""
    match: Template
    """What each candidate's name looks like, e.g. ``{{ Leerkrachten.Naam }} {{
    Leerkrachten.Voornaam }}``."""


@dataclass
class GroupSpec:
    """A kind of group (class groups, all pupils of a school …) with members from persons."""

    members: list[str]
    """Account kinds whose persons can be members, e.g. ``[pupils]``."""
    key: Template
    """The group's stable key (its anchor); persons with the same key share one group."""
    rows: str | None = None
    """A data set with one row per membership (``Subgroepen``); without it, every person of the
    member kinds is considered once."""
    where: Template | None = None
    """An expression; rows (or persons) for which it is false make no membership."""
    ou: list[Template] = field(default_factory=list)
    """OU path of the group below the managed root."""
    attributes: dict[str, Template] = field(default_factory=dict)
    """Directory attributes of the group, rendered for its first member."""
    owners: OwnersSpec | None = None
    """Owners (class teachers) where the target supports them."""
    team: Template | None = None
    """``class``: each group of this kind gets a class team (Entra ID only: the groups are made
    as Microsoft 365 groups, owners the group's owners, members its members)."""


@dataclass
class MappingFile:
    vars: dict[str, str] = field(default_factory=dict)
    """Values for templates as ``{{ vars.name }}``, e.g. the mail domain: one place to change."""
    accounts: dict[str, AccountSpec] = field(default_factory=dict)
    """Account kinds by name, e.g. ``pupils`` and ``staff``."""
    groups: dict[str, GroupSpec] = field(default_factory=dict)
    """Group kinds by name, e.g. ``classes``."""


@dataclass
class Mappings:
    accounts: dict[str, AccountSpec]
    groups: dict[str, GroupSpec]
    files: list[Path]
    variables: dict[str, str] = field(default_factory=dict)


def load_mappings(path: Path) -> Mappings:
    """One mapping file, or every ``*.yaml``/``*.yml`` file of a directory, merged."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        if not files:
            raise ConfigError(f"{path}: no mapping files (*.yaml) in this directory")
    elif path.exists():
        files = [path]
    else:
        raise ConfigError(f"mappings {path} do not exist")
    accounts: dict[str, AccountSpec] = {}
    groups: dict[str, GroupSpec] = {}
    variables: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for file in files:
        loaded = load_yaml(file, MappingFile, "mapping")
        for section, target, entries in (
            ("vars", variables, loaded.vars),
            ("accounts", accounts, loaded.accounts),
            ("groups", groups, loaded.groups),
        ):
            for name, spec in entries.items():
                if f"{section}.{name}" in origin:
                    raise ConfigError(
                        f"{file}: {section}.{name} is also defined in {origin[f'{section}.{name}']}"
                    )
                origin[f"{section}.{name}"] = file
                target[name] = spec  # type: ignore[assignment]
    return Mappings(accounts, groups, files, variables)
