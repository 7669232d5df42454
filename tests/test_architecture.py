"""The house rules: one way through (sources → mapping → plan → targets), each stage behind its
protocol; a new source fits through the registry alone; a plan says only what the plan
vocabulary has."""

from __future__ import annotations

import ast
import csv
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner import sources
from provisioner.cli import main
from provisioner.model import Dataset, SourceRows
from provisioner.plan.model import Action, Kind, Precondition
from provisioner.sources.base import Block, DatasetInfo, Fields, Progress, SourceRead

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "provisioner"
SAMPLE_SNAPSHOT = ROOT / "examples" / "sample-snapshot"
HEADER = {
    "created": "2026-09-01T00:00:00+00:00",
    "expires": "2099-09-01T00:00:00+00:00",
    "config_hash": "0" * 64,
    "mappings_hash": "0" * 64,
    "source_hash": "0" * 64,
    "target": "ldaps://127.0.0.77 DC=school,DC=be",
    "source_as_of": "2026-09-01",
}

# Only the registries (sources/__init__.py, targets/__init__.py) and the configuration's settings
# lookup (config.py) name a concrete source or target outside its own package.
CONCRETE = (
    "provisioner.sources.informat",
    "provisioner.sources.informat_rest",
    "provisioner.targets.ad",
    "provisioner.targets.ad_settings",
    "provisioner.targets.entra",
    "provisioner.targets.entra_settings",
)
NEUTRAL = [
    PACKAGE / "pipeline.py",
    PACKAGE / "cli.py",
    PACKAGE / "apply.py",
    *sorted((PACKAGE / "mapping").glob("*.py")),
    *sorted((PACKAGE / "plan").glob("*.py")),
    *sorted((PACKAGE / "report").glob("*.py")),
    PACKAGE / "sources" / "base.py",
    PACKAGE / "targets" / "base.py",
]


def imported_modules(path: Path) -> set[str]:
    """Every module *path* imports, at the top or inside a function."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def names_a_concrete_part(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in CONCRETE)


@pytest.mark.parametrize("path", NEUTRAL, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_stages_import_no_concrete_source_or_target(path):
    assert [m for m in sorted(imported_modules(path)) if names_a_concrete_part(m)] == []


def test_the_import_rule_can_fail(tmp_path):
    """The check above sees imports inside functions too (the old pipeline imported targets
    lazily)."""
    assert names_a_concrete_part("provisioner.targets.entra.EntraId")
    assert not names_a_concrete_part("provisioner.targets.base")
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from provisioner.targets.ad import ActiveDirectory\n")
    assert "provisioner.targets.ad.ActiveDirectory" in imported_modules(probe)


# -- a third source, added through the protocol only ---------------------------------------------


@dataclass
class PeopleFileSettings:
    """``source: people_file: {file: …, school: …}``: extra persons from a CSV file."""

    file: Path
    school: str = "999999"


class PeopleFileSource:
    """Persons kept in a CSV file (external staff, interns): columns id, voornaam, naam."""

    def __init__(self, settings: PeopleFileSettings) -> None:
        self.settings = settings

    def datasets(self) -> Mapping[str, DatasetInfo]:
        return {"Personen": DatasetInfo("Personen", "id", ("naam",))}

    def default_datasets(self) -> Sequence[str]:
        return ["Personen"]

    def units(self) -> Sequence[str]:
        return [self.settings.school]

    def describe(self) -> str:
        return f"people file {self.settings.file}"

    def read(
        self,
        fields: Fields,
        *,
        progress: Callable[[Progress], None] = lambda _p: None,
        save: Path | None = None,
    ) -> SourceRead:
        school = self.settings.school
        progress(Progress("start", "Personen", school))
        with self.settings.file.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            seen = frozenset(reader.fieldnames or ())
            wanted = fields.get("Personen")
            rows = [
                (school, {k: v for k, v in row.items() if wanted is None or k in {*wanted, "id"}})
                for row in reader
            ]
        progress(Progress("done", "Personen", school, len(rows)))
        digest = hashlib.sha256(self.settings.file.read_bytes()).hexdigest()
        kept = None if wanted is None else frozenset(wanted)
        return SourceRead(
            rows=SourceRows([school], {"Personen": Dataset("id", rows, seen, kept)}),
            as_of=dt.date(2026, 9, 1),
            digest=digest,
            counts={"Personen": {school: len(rows)}},
            description=f"people file {self.settings.file}",
            blocks=[Block("Personen", school, "is empty")] if not rows else [],
        )


@pytest.fixture
def people_file_source(monkeypatch):
    monkeypatch.setitem(
        sources.SOURCES, "people_file", sources.SourceKind(PeopleFileSettings, PeopleFileSource)
    )


def write_people_config(tmp_path: Path, people: str) -> Path:
    (tmp_path / "people.csv").write_text(people, encoding="utf-8")
    (tmp_path / "mappings.yaml").write_text(
        """accounts:
  extern:
    persons:
      source: Personen
    username:
      template: "{{ (Personen.voornaam ~ '.' ~ Personen.naam) | username }}"
      max_length: 20
    ou: [Extern]
    attributes:
      displayName: "{{ Personen.voornaam }} {{ Personen.naam }}"
""",
        encoding="utf-8",
    )
    config = tmp_path / "provisioner.yaml"
    config.write_text(
        "source:\n  people_file:\n    file: people.csv\n    school: '000042'\n"
        "mappings: mappings.yaml\n",
        encoding="utf-8",
    )
    return config


PEOPLE = "id,voornaam,naam,telefoon\nx1,Ann,Peeters,0470\nx2,Bert,Claes,0471\n"


def test_a_third_source_plugs_in_through_the_registry(people_file_source, tmp_path, capsys):
    """Registered in the test alone: pipeline.py and cli.py know nothing of it."""
    config = write_people_config(tmp_path, PEOPLE)
    assert main(["plan", "--config", str(config), "--json"]) == 2
    plan = json.loads(capsys.readouterr().out)
    created = {c["key"]: c["after"] for c in plan["changes"] if c["action"] == "create"}
    assert {k: v["username"] for k, v in created.items()} == {
        "x1": "ann.peeters",
        "x2": "bert.claes",
    }
    assert created["x1"]["ou"] == ["Extern"]
    assert plan["header"]["persons"] == {"000042": 2}
    assert plan["header"]["source_as_of"] == "2026-09-01"

    assert main(["fetch", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "people file" in out and "Personen" in out and "000042" in out

    assert main(["explain", "--config", str(config), "Claes"]) == 0
    out = capsys.readouterr().out
    assert "bert.claes" in out
    assert "0471" not in out  # only the fields the mappings use are kept, not the phone


def test_a_third_sources_block_blocks_its_plan(people_file_source, tmp_path, capsys):
    config = write_people_config(tmp_path, "id,voornaam,naam\n")
    assert main(["plan", "--config", str(config)]) == 2
    out = capsys.readouterr().out
    assert "BLOCKED: Personen for 000042 is empty: nothing is applied" in out


def test_an_unknown_source_kind_is_named_with_the_known_ones(tmp_path, capsys):
    config = tmp_path / "provisioner.yaml"
    config.write_text("source:\n  informatt:\n    url: x\nmappings: m.yaml\n", encoding="utf-8")
    assert main(["validate", "--config", str(config)]) == 1
    assert (
        f"{config}:2: source.informatt: unknown source (known: informat, informat_rest, files"
        in capsys.readouterr().err
    )
    config.write_text("source: {}\n", encoding="utf-8")
    assert main(["validate", "--config", str(config)]) == 1
    assert "source: configure a source: informat, informat_rest, files" in capsys.readouterr().err


# -- the plan vocabulary ---------------------------------------------------------------------------


def test_the_plan_schema_names_exactly_the_enums():
    schema = json.loads((PACKAGE / "schemas" / "plan.schema.json").read_text())
    defs = schema["$defs"]
    assert defs["action"]["enum"] == [a.value for a in Action]
    assert defs["kind"]["enum"] == [k.value for k in Kind]
    precondition = defs["precondition"]
    full = Precondition(
        absent=True,
        created_in_this_plan=True,
        id="x",
        attributes={"a": "b"},
        username="u",
        ou=("A",),
        enabled=True,
        unanchored=True,
    )
    assert sorted(precondition["properties"]) == sorted(full.to_json())
    assert precondition["additionalProperties"] is False


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda c: c.update(action="create_user"), "unknown action 'create_user'"),
        (lambda c: c.update(kind="printer"), "unknown kind 'printer'"),
        (
            lambda c: c["precondition"].update(objectSid="S-1"),
            "unknown precondition field 'objectSid'",
        ),
        (lambda c: c["precondition"].update(anchor=123), "precondition anchor must be null"),
        (lambda c: c.update(extra=1), "unknown change field 'extra'"),
    ],
)
def test_a_plan_file_with_a_word_outside_the_vocabulary_is_refused(
    tmp_path, capsys, monkeypatch, edit, named
):
    """Nothing is applied: the file is refused before the target is contacted (the configured
    DC is an unassigned loopback address that nothing answers on)."""
    monkeypatch.setenv("TEST_AD_PASSWORD", "x")
    (tmp_path / "m.yaml").write_text(
        "accounts:\n  p:\n    persons: {source: Lln}\n    username: {template: '{{ key }}'}\n",
        encoding="utf-8",
    )
    config = tmp_path / "provisioner.yaml"
    config.write_text(
        f"source:\n  informat:\n    snapshot: {SAMPLE_SNAPSHOT}\n    instelnrs: ['030569']\n"
        "mappings: m.yaml\nstate: state.db\n"
        "target:\n  ad:\n    url: ldaps://127.0.0.77\n    bind_user: SCHOOL\\\\p\n"
        "    password: ${TEST_AD_PASSWORD}\n    base_dn: DC=school,DC=be\n"
        "    managed_root: OU=Provisioner\n",
        encoding="utf-8",
    )
    change = {
        "action": "create",
        "kind": "account",
        "key": "1",
        "target": "CN=1",
        "before": {},
        "after": {"username": "a"},
        "why": [],
        "precondition": {"absent": True},
    }
    edit(change)
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps({"format": 1, "header": HEADER, "counts": {}, "changes": [change]}),
        encoding="utf-8",
    )
    assert main(["apply", "--config", str(config), str(plan)]) == 1
    err = capsys.readouterr().err
    assert f"{plan}: not a plan this version can apply: {named}" in err
    assert not (tmp_path / "state.db").exists()  # no run was started
