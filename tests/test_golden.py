"""``provisioner test``: the coordinator's own examples, rendered through the mappings.

The shipped examples pass on the shipped mappings (Active Directory and Entra ID); a changed
template or rule fails, naming the example and what differs; a malformed example file is an
error with its file and line, never a traceback. Nothing here reads Informat or a directory:
the configurations name a web service and a password variable that is never set."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from provisioner.cli import main

ROOT = Path(__file__).resolve().parent.parent

# A live Informat source whose password is never looked up: provisioner test reads no source.
CONFIG = """\
source:
  informat:
    url: https://webservice.informatsoftware.be/wsInformat.asmx
    login: webservices@school.be
    password: ${GOLDEN_TEST_PASSWORD_NEVER_SET}
    schooljaar: auto
    instelnrs: ["030569", "030577"]
mappings: mappings
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration with its own copy of the default mappings and their examples; the
    working directory is its folder, so paths print as a coordinator sees them."""
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    (tmp_path / "provisioner.yaml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOLDEN_TEST_PASSWORD_NEVER_SET", raising=False)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}: the test needs updating"
    path.write_text(text.replace(old, new))


def run_test(*args: str) -> int:
    return main(["test", "--config", "provisioner.yaml", *args])


@pytest.mark.parametrize(
    ("config", "count"),
    [
        ("examples/provisioner.yaml", 8),
        ("examples/sample.yaml", 8),
        ("examples/entra/provisioner.yaml", 3),
    ],
)
def test_the_default_mappings_pass_their_own_examples(config, count, capsys):
    assert main(["test", "--config", str(ROOT / config)]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS  ") == count
    assert "FAIL" not in out
    assert out.rstrip().endswith(f"{count} example(s): {count} passed, 0 failed")


def test_a_changed_template_fails_naming_the_example_and_the_attribute(project, capsys):
    edit(
        project / "mappings" / "pupils.yaml",
        'displayName: "{{ Lln.Voornaam }} {{ Lln.Naam }}"',
        'displayName: "{{ Lln.Naam }} {{ Lln.Voornaam }}"',
    )
    assert run_test() == 1
    out = capsys.readouterr().out
    failure = (
        "FAIL  a pupil gets an account in the OU of the class, and the class group  "
        "(mappings/tests/pupils.yaml:7)\n"
        "      account lln-1001\n"
        "        attributes.displayName\n"
        "          expected: Jan Peeters\n"
        "          got:      Peeters Jan\n"
    )
    assert failure in out
    # Examples that do not name displayName are not affected.
    assert "PASS  a long name keeps its whole mail" in out
    assert out.rstrip().endswith("8 example(s): 6 passed, 2 failed")


def test_a_changed_rule_shows_accounts_made_that_the_example_does_not_expect(project, capsys):
    edit(project / "mappings" / "pupils.yaml", 'Lln.voorlopig == "0"', 'Lln.voorlopig != "9"')
    assert run_test() == 1
    out = capsys.readouterr().out
    assert (
        "FAIL  a pre-registration (voorlopig 1) gets no account  (mappings/tests/pupils.yaml:67)\n"
        "      account lln-1005: made (username lotte.claes), but not in the example\n"
    ) in out


def test_a_template_that_fails_for_a_person_says_why_the_account_is_missing(project, capsys):
    edit(
        project / "mappings" / "staff.yaml",
        "username(fallback='pers' ~ key)",
        "username(Leerkrachten.Naam)",
    )
    assert run_test() == 1
    out = capsys.readouterr().out
    assert (
        "FAIL  a teacher gets an account with the teacher code as initials  "
        "(mappings/tests/staff.yaml:3)\n"
        "      account pers-2002: expected, but not made\n"
        "      the mappings reported:\n"
        "        staff 2002 held: mappings/staff.yaml:"
    ) in out
    assert "object cannot be interpreted as an integer" in out


def test_changed_members_and_groups_are_listed_by_name(project, capsys):
    edit(
        project / "mappings" / "groups.yaml",
        'key: "klas-{{ Subgroepen.Instelnr }}-{{ Subgroepen.Klascode }}"',
        'key: "klas-{{ Subgroepen.Klascode }}"',
    )
    assert run_test() == 1
    out = capsys.readouterr().out
    assert "      group klas-030569-1A: expected, but not made\n" in out
    assert (
        "      group klas-1A: made (name klas-030569-1A, 1 member(s)), but not in the example"
        in out
    )
    assert (
        "      account lln-1001\n"
        "        groups\n"
        "          expected: klas-030569-1A, leerlingen-030569\n"
        "          got:      klas-1A, leerlingen-030569\n"
        "          (missing klas-030569-1A; not expected klas-1A)\n"
    ) in out


def test_the_examples_can_be_named_and_values_are_read_as_text(project, capsys):
    examples = project / "mine.yaml"
    examples.write_text(
        "examples:\n"
        "  - name: a class code that YAML would read as a number\n"
        "    instelnr: 030569\n"  # unquoted: still the text 030569, as Informat delivers it
        "    rows:\n"
        "      Lln:\n"
        "        - {p_persoon: 7, Voornaam: Ann, Naam: Smet, Klascode: 010, voorlopig: 0}\n"
        "    accounts:\n"
        "      - anchor: lln-7\n"
        "        ou: [Leerlingen, '030569', '010']\n"
        "        attributes: {department: '010'}\n"
    )
    assert run_test("--examples", str(examples)) == 0
    assert "PASS  a class code that YAML would read as a number  (mine.yaml:2)" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "examples:\n  - name: x\n    rows: {}\n    acounts: []\n",
            "mine.yaml:4: examples[0].acounts: unknown key (known here: accounts, groups, "
            "instelnr, name, rows, today)",
        ),
        (
            "examples:\n  - name: x\n    rows: {}\n    accounts:\n      - anchor: lln-1\n"
            "        usernam: a\n",
            "mine.yaml:6: examples[0].accounts[0].usernam: unknown key",
        ),
        (
            "examples:\n  - name: x\n    instelnr: '030569'\n    rows:\n      Llm:\n"
            "        - {p_persoon: '1'}\n",
            "mine.yaml:6: example 'x': rows.Llm: the source has no data set 'Llm' (did you "
            "mean Lln?",
        ),
        (
            "examples:\n  - name: x\n    instelnr: '030569'\n    rows:\n      Lln:\n"
            "        - {Voornaam: Ann}\n",
            "mine.yaml:6: example 'x': rows.Lln: the row has no p_persoon (the person key of Lln)",
        ),
        (
            "examples:\n  - name: x\n    rows:\n      Lln:\n        - {p_persoon: '1'}\n",
            "mine.yaml:5: example 'x': rows.Lln: the row names no school: give instelnr:",
        ),
        (
            "examples:\n  - name: x\n    rows: {Lln: [{p_persoon: [1]}]}\n",
            "mine.yaml:3: examples[0].rows.Lln[0].p_persoon: a field holds one value",
        ),
        (
            "examples:\n  - name: x\n    rows: {}\n    accounts: [{anchor: a}, {anchor: a}]\n",
            "mine.yaml:2: examples[0].accounts: a listed twice",
        ),
        ("examples:\n  - name: x\n   rows: {}\n", "mine.yaml:3: not valid YAML"),
        ("", "mine.yaml: the example file is empty"),
    ],
)
def test_a_malformed_example_file_is_an_error_with_file_and_line(project, capsys, content, message):
    (project / "mine.yaml").write_text(content)
    assert run_test("--examples", "mine.yaml") == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing runs until the file is right
    assert captured.err.startswith("error: mine.yaml:") or captured.err.startswith(
        f"error: {project / 'mine.yaml'}"
    )
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_without_examples_the_error_says_where_they_go(project, capsys):
    shutil.rmtree(project / "mappings" / "tests")
    assert run_test() == 1
    err = capsys.readouterr().err
    assert "mappings/tests do not exist: write example files there, or name them with " in err
    assert "--examples" in err


def test_the_directory_rules_apply_without_contacting_the_directory(project, capsys):
    """With an Active Directory target configured, a value the directory cannot hold holds
    that person, as plan would: the example fails and says why. The domain controller named
    here does not exist, and its password variable is never set."""
    config = project / "provisioner.yaml"
    config.write_text(
        CONFIG
        + "state: state.db\n"
        + "target:\n  ad:\n"
        + "    url: ldaps://dc.school.invalid\n"
        + "    bind_user: svc-provisioner@school.be\n"
        + "    password: ${GOLDEN_TEST_PASSWORD_NEVER_SET}\n"
        + "    base_dn: DC=school,DC=be\n"
        + "    managed_root: OU=Provisioned\n"
    )
    (project / "long.yaml").write_text(
        "examples:\n"
        "  - name: a staff member with a long key\n"
        "    instelnr: '030569'\n"
        "    rows:\n"
        "      Leerkrachten:\n"
        "        - {p_persoon: '123456789012', Voornaam: Els, Naam: Maes, Actief: J}\n"
        "    accounts:\n"
        "      - anchor: pers-123456789012\n"
    )
    assert run_test("--examples", "long.yaml") == 1
    out = capsys.readouterr().out
    assert "      account pers-123456789012: expected, but not made\n" in out
    assert "staff 123456789012 held: " in out
    assert "Active Directory allows at most 16" in out
    assert not (project / "state.db").exists()  # nothing written
    assert run_test() == 0  # the shipped examples fit Active Directory's rules


def test_a_file_without_examples_fails_nothing_was_checked(project, capsys):
    (project / "none.yaml").write_text("examples: []\n")
    assert run_test("--examples", "none.yaml") == 1
    assert capsys.readouterr().out.strip() == "no examples in the example files"


def test_an_attribute_expected_not_set_fails_when_the_mappings_set_it(project, capsys):
    edit(project / "mappings" / "staff.yaml", "{{ LeerkrachtenVrijevelden.CODE }}", "X")
    assert run_test() == 1
    assert (
        "      account pers-2004\n"
        "        attributes.initials\n"
        "          expected: (not set)\n"
        "          got:      X\n"
    ) in capsys.readouterr().out
