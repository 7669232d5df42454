"""Errors that say what to do: each names the file and line, says what is wrong in plain words and
what to write instead (issue 16)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.config import load_config
from provisioner.errors import ConfigError
from provisioner.mapping.engine import MappingError, _once_each, build_desired, compile_mappings
from provisioner.mapping.spec import load_mappings
from provisioner.sources.informat.operations import OPERATIONS
from tests.test_mapping import pupil, source

ROOT = Path(__file__).resolve().parent.parent


def mapping_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def compile_problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(MappingError) as caught:
        compile_mappings(load_mappings(mapping_file(tmp_path, text)), OPERATIONS)
    return caught.value.problems


def pupils(username: str, where: str = 'Lln.voorlopig == "0"') -> str:
    return f"""\
accounts:
  pupils:
    persons:
      source: Lln
      where: {where}
    username:
      template: {username}
"""


# -- filters -------------------------------------------------------------------------------------


def test_a_misspelt_filter_gets_a_suggestion_and_the_list_of_filters(tmp_path):
    (problem,) = compile_problems(tmp_path, pupils('"{{ Lln.Voornaam | usernam }}"'))
    assert problem.startswith(
        f"{tmp_path / 'm.yaml'}:7: accounts.pupils.username.template: "
        "no filter named 'usernam' — did you mean 'username'? Filters: "
        "ascii, date, initials, left, username (this project's); "
    )
    listed = problem.split("Filters: ", 1)[1]
    assert all(name in listed for name in ("lower", "upper", "replace", "default", "trim"))


def test_a_misspelt_filter_on_a_later_line_of_a_template_names_that_line(tmp_path):
    text = pupils("|-\n        {{ Lln.Voornaam }}\n        {{ Lln.Naam | lowr }}")
    (problem,) = compile_problems(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'm.yaml'}:9: ")  # the line of the filter
    assert "no filter named 'lowr' — did you mean 'lower'?" in problem


def test_a_misspelt_keyword_argument_is_found_before_any_person_is_rendered(tmp_path):
    (problem,) = compile_problems(
        tmp_path, pupils("\"{{ Lln.Naam | username(fallbak='lln' ~ key) }}\"")
    )
    assert problem == (
        f"{tmp_path / 'm.yaml'}:7: accounts.pupils.username.template: wrong argument for filter "
        "'username': got an unexpected keyword argument 'fallbak' — did you mean fallback=?; "
        "it is written value | username(max_length=None, fallback=None)"
    )


def test_too_many_arguments_show_the_filters_signature(tmp_path):
    (problem,) = compile_problems(tmp_path, pupils('"{{ Lln.Naam | left(3, 4) }}"'))
    assert problem.endswith(
        "wrong argument for filter 'left': too many positional arguments; "
        "it is written value | left(length)"
    )
    (missing,) = compile_problems(tmp_path, pupils('"{{ Lln.Naam | left }}"'))
    assert "wrong argument for filter 'left': missing a required argument: 'length'" in missing


def test_jinjas_own_filters_are_checked_without_their_context_argument(tmp_path):
    (problem,) = compile_problems(tmp_path, pupils("\"{{ Lln.Naam | replace('a') }}\""))
    assert "wrong argument for filter 'replace': missing a required argument: 'new'" in problem
    assert problem.endswith("it is written value | replace(old, new, count=None)")


def test_a_wrong_argument_seen_only_when_rendering_is_one_error_with_a_count(tmp_path):
    """Arguments given as **{…} are only known per person: the first failure is reported, the
    others counted, and nobody is held for a mistake of the template."""
    compiled = compile_mappings(
        load_mappings(
            mapping_file(tmp_path, pupils("\"{{ Lln.Naam | username(**{'fallbak': 'x'}) }}\""))
        ),
        OPERATIONS,
    )
    state = build_desired(compiled, source(pupil("1"), pupil("2"), pupil("3"), pupil("4")))
    (error,) = state.report.errors
    assert error == (
        "m.yaml:7: accounts.pupils.username.template: wrong argument for filter 'username': "
        "username() got an unexpected keyword argument 'fallbak'; it is written value | "
        "username(max_length=None, fallback=None) (person 1) (and 3 more persons)"
    ).replace("m.yaml", str(tmp_path / "m.yaml"))
    assert state.held == []


def test_only_errors_that_name_a_person_are_counted_together():
    errors = [
        "m.yaml:7: t: wrong argument (person 1)",
        "groups.classes: key 'k' is also made by groups.other",
        "m.yaml:7: t: wrong argument (person 2)",
        "groups.classes: key 'k' is also made by groups.other",
        "m.yaml:9: u: wrong argument (person 2)",
    ]
    assert _once_each(errors) == [
        "m.yaml:7: t: wrong argument (person 1) (and 1 more person)",
        "groups.classes: key 'k' is also made by groups.other",
        "groups.classes: key 'k' is also made by groups.other",
        "m.yaml:9: u: wrong argument (person 2)",
    ]


# -- where and unquoted templates ----------------------------------------------------------------


def test_braces_in_where_say_that_where_is_an_expression(tmp_path):
    text = pupils('"{{ Lln.Naam }}"', where="'{{ Lln.voorlopig == \"0\" }}'")
    (problem,) = compile_problems(tmp_path, text)
    assert problem == (
        f"{tmp_path / 'm.yaml'}:5: accounts.pupils.persons.where: `where` is an expression: "
        'write Lln.voorlopig == "0" without {{ }}'
    )


def test_an_unquoted_template_is_told_to_be_quoted(tmp_path):
    path = mapping_file(tmp_path, pupils("{{ Lln.Naam }}"))
    with pytest.raises(ConfigError) as caught:
        load_mappings(path)
    assert str(caught.value) == (
        f'{path}:7: accounts.pupils.username.template: quote the value: template: "{{{{ Lln.Naam }}}}"'
    )


def test_an_unquoted_where_is_told_to_lose_its_braces_not_to_be_quoted(tmp_path):
    path = mapping_file(tmp_path, pupils('"{{ key }}"', where='{{ Lln.voorlopig == "0" }}'))
    with pytest.raises(ConfigError) as caught:
        load_mappings(path)
    assert str(caught.value) == (
        f"{path}:5: accounts.pupils.persons.where: `where` is an expression: "
        'write Lln.voorlopig == "0" without {{ }}'
    )


def test_an_unquoted_template_as_a_list_item_is_told_to_be_quoted(tmp_path):
    path = mapping_file(tmp_path, pupils('"{{ key }}"') + "    ou: [{{ Lln.Klascode }}]\n")
    with pytest.raises(ConfigError) as caught:
        load_mappings(path)
    assert (
        str(caught.value)
        == f'{path}:8: accounts.pupils.ou[0]: quote the value: "{{{{ Lln.Klascode }}}}"'
    )


def test_an_unquoted_template_with_text_after_it_is_told_to_be_quoted(tmp_path):
    path = mapping_file(tmp_path, pupils("{{ Lln.Voornaam }}.{{ Lln.Naam }}"))
    with pytest.raises(ConfigError) as caught:
        load_mappings(path)
    assert str(caught.value).startswith(
        f"{path}:7: not valid YAML: quote the value: "
        'template: "{{ Lln.Voornaam }}.{{ Lln.Naam }}" (the parser says: '
    )


def test_an_unquoted_template_in_a_list_is_told_to_be_quoted(tmp_path):
    text = pupils('"{{ Lln.Naam }}"') + "    ou: [Leerlingen, {{ Lln.Klascode }}-x]\n"
    path = mapping_file(tmp_path, text)
    with pytest.raises(ConfigError, match=r"m\.yaml:8: not valid YAML: quote every value with"):
        load_mappings(path)


# -- YAML structure, in mapping files and the configuration --------------------------------------

YAML_MISTAKES = [
    pytest.param(
        "accounts:\n  pupils:\n    persons:\n      source: Lln\n     username: x\n",
        5,
        "this line is indented more (or less) than the lines around it: keys at the same level "
        "must start in the same column",
        "expected <block end>, but found '<block mapping start>'",
        id="indented-less",
    ),
    pytest.param(
        "accounts:\n  pupils:\n    persons: x\n      source: Lln\n",
        4,
        "this line is indented more (or less) than the lines around it",
        "mapping values are not allowed here",
        id="indented-more",
    ),
    pytest.param(
        "vars:\n  school: Klas 1A: Wiskunde\n",
        2,
        "a value with ': ' in it must be quoted: school: \"Klas 1A: Wiskunde\"",
        "mapping values are not allowed here",
        id="colon-in-value",
    ),
    pytest.param(
        "vars:\n\tschool: x\n",
        2,
        "tabs are not allowed for indentation, use spaces",
        "found character '\\t' that cannot start any token",
        id="tab",
    ),
    pytest.param(
        "vars:\n  school: x\n  domain\n  other: y\n",
        3,
        "this line has no ':' where a key and its value were expected",
        "could not find expected ':'",
        id="no-colon",
    ),
    pytest.param(
        "vars:\n  school: *x\n",
        2,
        "a value that starts with * must be quoted",
        "found undefined alias 'x'",
        id="undefined-alias",
    ),
]


@pytest.mark.parametrize(("text", "line", "advice", "original"), YAML_MISTAKES)
def test_yaml_mistakes_in_a_mapping_file_are_said_in_plain_words(
    tmp_path, text, line, advice, original
):
    path = mapping_file(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_mappings(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: not valid YAML: {advice}")
    assert message.endswith(")") and f"{original}" in message.rsplit("(the parser says: ", 1)[1]


def test_yaml_mistakes_in_the_configuration_are_said_in_plain_words(tmp_path):
    path = tmp_path / "provisioner.yaml"
    path.write_text(
        "source:\n  informat:\n    snapshot: s\n     instelnrs: [030569]\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}:4: not valid YAML: this line is indented more (or less) than the lines around "
        "it: keys at the same level must start in the same column, and the keys inside one "
        "start further right than it (the parser says: mapping values are not allowed here)"
    )


# -- secrets -------------------------------------------------------------------------------------

CONFIG = """\
source:
  informat:
    url: https://webservice.informatsoftware.be/wsInformat.asmx
    login: webservices@school.be
    password: {password}
    schooljaar: auto
    instelnrs: ["030569"]
"""


def test_an_empty_environment_variable_is_refused_when_the_secret_is_used(tmp_path, monkeypatch):
    path = tmp_path / "provisioner.yaml"
    path.write_text(CONFIG.format(password="${TEST_EMPTY_SECRET_16}"), encoding="utf-8")
    monkeypatch.setenv("TEST_EMPTY_SECRET_16", "")
    password = load_config(path).source.settings.password  # not looked up yet
    with pytest.raises(ConfigError) as caught:
        password.reveal()
    assert str(caught.value) == (
        f"{path}:5: source.informat.password: ${{TEST_EMPTY_SECRET_16}} is empty: give the "
        "environment variable TEST_EMPTY_SECRET_16 its value (check the service's environment "
        "file)"
    )


def test_an_empty_secret_file_is_refused_when_the_secret_is_used(tmp_path):
    path = tmp_path / "provisioner.yaml"
    path.write_text(CONFIG.format(password="file:informat-password"), encoding="utf-8")
    (tmp_path / "informat-password").write_text("\n", encoding="utf-8")  # a newline only
    password = load_config(path).source.settings.password
    with pytest.raises(ConfigError) as caught:
        password.reveal()
    assert str(caught.value) == (
        f"{path}:5: source.informat.password: secret file {tmp_path / 'informat-password'} is "
        "empty: write the secret into it"
    )


# -- how the command line shows them -------------------------------------------------------------


def test_validate_shows_each_problem_on_its_own_line(tmp_path, capsys):
    config = tmp_path / "provisioner.yaml"
    config.write_text(
        "source:\n  informat:\n"
        f"    snapshot: {ROOT / 'examples' / 'sample-snapshot'}\n"
        '    instelnrs: ["030569"]\n'
        "mappings: m.yaml\n",
        encoding="utf-8",
    )
    mapping_file(tmp_path, pupils('"{{ Lln.Naam | lowr | uper }}"', where='"{{ x }}"'))
    assert main(["validate", "--config", str(config)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "error: 2 problem(s) in the mappings:"
    assert re.match(
        r"  .*m\.yaml:5: accounts\.pupils\.persons\.where: `where` is an expr", lines[1]
    )
    assert re.match(r"  .*m\.yaml:7: .*no filter named 'lowr' — did you mean 'lower'\?", lines[2])
