"""The JSON Schema for mapping files: shipped up to date, the default mappings pass it, and it
rejects what the loader rejects (and accepts what the loader accepts)."""

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from provisioner.errors import ConfigError
from provisioner.mapping.schema import SCHEMA_PATH, mapping_schema, schema_text
from provisioner.mapping.spec import MappingFile
from provisioner.yamlnodes import load_yaml

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = sorted((ROOT / "mappings").glob("*.yaml"))


class EditorLoader(yaml.SafeLoader):
    """YAML as an editor's language server reads it (YAML 1.2): 2025-01-15 stays text."""


EditorLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@pytest.fixture(scope="module")
def validator():
    schema = mapping_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(validator, text):
    document = yaml.load(textwrap.dedent(text), Loader=EditorLoader)  # EditorLoader is a SafeLoader
    return [error.message for error in validator.iter_errors(document)]


def loader_error(tmp_path, text):
    path = tmp_path / "mapping.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    try:
        load_yaml(path, MappingFile, "mapping")
    except ConfigError as exc:
        return str(exc)
    return None


def test_the_shipped_schema_is_the_generated_one():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "provisioner/mapping/schema.json is out of date with provisioner/mapping/spec.py; "
        "regenerate it with: python -m provisioner.mapping.schema"
    )
    assert json.loads(SCHEMA_PATH.read_text(encoding="utf-8")) == mapping_schema()


def test_the_schema_is_described_from_the_field_docstrings():
    schema = mapping_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"]
    persons = schema["$defs"]["PersonsSpec"]
    assert persons["required"] == ["source"]
    assert persons["additionalProperties"] is False
    assert persons["properties"]["source"]["description"].startswith("The driving data set")
    assert "`Lln`" in persons["properties"]["source"]["description"]  # ``Lln`` → `Lln`
    assert schema["$defs"]["AccountSpec"]["required"] == ["persons", "username"]
    assert "Jinja" in schema["$defs"]["Template"]["description"]
    assert schema["$defs"]["UsernameSpec"]["properties"]["max_length"]["default"] == 20


@pytest.mark.parametrize("path", MAPPINGS, ids=lambda p: p.name)
def test_every_default_mapping_validates(validator, path):
    assert schema_errors(validator, path.read_text(encoding="utf-8")) == []
    assert path.read_text(encoding="utf-8").startswith(
        "# yaml-language-server: $schema=../provisioner/mapping/schema.json\n"
    )


ACCOUNT = """\
accounts:
  pupils:
    persons:
      source: Lln
    username:
      template: "{{ Lln.Voornaam | username }}"
"""

# What both the loader and the schema accept: numbers and dates as text, one value for a list.
ACCEPTED = {
    "a minimal account": ACCOUNT,
    "numbers, dates and single values": """\
        vars:
          year: 2025
          start: 2025-09-01
        accounts:
          pupils:
            persons:
              source: Lln
              join: LlnExtra
              schools: [30569, "030577"]
              prefer: Lln.voorlopig == "0"
              where:
            username:
              template: "{{ Lln.Voornaam | username }}"
              max_length: 15
            ou: 2025
        groups:
          all:
            members: pupils
            key: 1.5
        """,
}

# What both reject: unknown keys, wrong types, missing required keys, no value where one is needed.
REJECTED = {
    "unknown key": ACCOUNT + "    mail: x\n",
    "misspelt key": ACCOUNT.replace("source:", "sorce:"),
    "unknown top-level key": "acounts: {}\n",
    "missing username": ACCOUNT.split("    username:")[0],
    "missing template": ACCOUNT.replace('      template: "{{ Lln.Voornaam | username }}"\n', "")
    + "      max_length: 20\n",
    "text where a number belongs": ACCOUNT + "      max_length: twenty\n",
    "a list where text belongs": ACCOUNT.replace("source: Lln", "source: [Lln, LlnExtra]"),
    "a mapping where a list belongs": ACCOUNT.replace(
        "source: Lln", "source: Lln\n      join: {LlnExtra: 1}"
    ),
    "true/false as a template": ACCOUNT.replace("source: Lln", "source: Lln\n      where: true"),
    "no template text": ACCOUNT + "    attributes:\n      mail:\n",
    "a group without members": "groups:\n  all:\n    key: alle\n",
    "owners without match": """\
        groups:
          all:
            members: [pupils]
            key: alle
            owners:
              names: x
              accounts: staff
        """,
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_the_schema_accepts_what_the_loader_accepts(validator, tmp_path, text):
    assert loader_error(tmp_path, text) is None
    assert schema_errors(validator, text) == []


@pytest.mark.parametrize("text", REJECTED.values(), ids=REJECTED.keys())
def test_the_schema_rejects_what_the_loader_rejects(validator, tmp_path, text):
    assert loader_error(tmp_path, text) is not None
    assert schema_errors(validator, text) != []


def test_the_missing_username_is_named(validator):
    errors = schema_errors(validator, ACCOUNT.split("    username:")[0])
    assert errors == ["'username' is a required property"]


def test_names_of_vars_accounts_and_groups_are_checked_for_editors(validator):
    """Editor guidance beyond the loader: a var must be readable as ``vars.name``."""
    assert schema_errors(validator, "vars:\n  pupil-domain: x\n") != []
    assert schema_errors(validator, "vars:\n  pupil_domain: x\n") == []
    assert schema_errors(validator, ACCOUNT.replace("pupils:", "'pupils klas':")) != []
