"""Directory naming rules, checked at validate without connecting: each target's rules on names a
desired state gives (unit), ``validate`` listing person and attribute on the bundled sample, and
a plan against the Graph server blocked by a name Entra ID would not manage."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.model import Derived, DesiredAccount, DesiredGroup, DesiredState, Provenance
from provisioner.pipeline import desired_state, prepare, read_for_mappings
from provisioner.secret import Secret
from provisioner.targets import ad_settings as rules_of
from provisioner.targets import naming, naming_problems
from provisioner.targets.ad_settings import SAM_ACCOUNT_NAME_FORBIDDEN, AdConfig
from provisioner.targets.entra_settings import EntraConfig
from provisioner.text import hidden_characters, visible
from tests.test_cli_mapping import ROOT, sample_with_mappings

AD = AdConfig(
    url="ldaps://dc.invalid",
    bind_user="SCHOOL\\provisioner",
    password=Secret("not-used", "test"),
    base_dn="DC=school,DC=be",
    managed_root="OU=Provisioned",
)
ENTRA = EntraConfig(
    tenant_id="school.onmicrosoft.com",
    client_id="6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f",
    domains=["leerling.school.be", "school.be"],
    client_secret=Secret("not-used", "test"),
)


def _why(name: str, line: int) -> Provenance:
    return Provenance(f"accounts.pupils.{name}", f"mappings/pupils.yaml:{line}", "{{ … }}", ())


def account(
    username: str = "jan.peeters",
    ou: tuple[str, ...] = ("Leerlingen", "1A"),
    **attributes: str,
) -> DesiredAccount:
    return DesiredAccount(
        kind="pupils",
        anchor="1001",
        username=username,
        ou=ou,
        attributes={
            name: Derived(value, _why(f"attributes.{name}", 20))
            for name, value in attributes.items()
        },
        school="030569",
        username_why=_why("username", 10),
    )


def state(*accounts: DesiredAccount, groups: tuple[DesiredGroup, ...] = ()) -> DesiredState:
    desired = DesiredState()
    for a in accounts:
        desired.accounts[a.anchor] = a
        desired.ous.add(a.ou)
    for g in groups:
        desired.groups[g.key] = g
    return desired


def ad(*accounts: DesiredAccount, groups: tuple[DesiredGroup, ...] = ()) -> list[str]:
    from provisioner.config import TargetConfig

    return naming_problems(TargetConfig(ad=AD), state(*accounts, groups=groups))


def entra(*accounts: DesiredAccount, groups: tuple[DesiredGroup, ...] = ()) -> list[str]:
    from provisioner.config import TargetConfig

    return naming_problems(TargetConfig(entra=ENTRA), state(*accounts, groups=groups))


# -- Active Directory -----------------------------------------------------------------------------


def test_good_names_pass_both_directories():
    good = account(
        "fatima-zahra.marten2",
        displayName="Fatima-Zahra Martens",
        userPrincipalName="fatima-zahra.marten2@leerling.school.be",
        mail="fatima-zahra.marten2@leerling.school.be",
    )
    assert ad(good) == []
    assert entra(good) == []
    assert ad(account("o'brien", ou=("Leerlingen", "3 Latijn, Grieks #2"))) == []


def test_a_bad_username_names_person_attribute_value_and_template():
    bad = account("jan.peeters.van.den.broeck", displayName="Jan Peeters")
    assert ad(bad) == [
        "pupils 1001 (Jan Peeters): sAMAccountName 'jan.peeters.van.den.broeck' is 26 characters "
        "long; Active Directory allows at most 20 (made by mappings/pupils.yaml:10)"
    ]


@pytest.mark.parametrize("char", list(SAM_ACCOUNT_NAME_FORBIDDEN))
def test_every_character_ad_refuses_in_sam_account_name_is_named(char):
    (problem,) = ad(account(f"jan{char}p", cn="jan p"))
    assert problem == (
        f"pupils 1001 (jan{char}p): sAMAccountName 'jan{char}p' holds characters Active Directory "
        f"does not allow there: '{char}' (made by mappings/pupils.yaml:10)"
    )


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        (
            "jan\u202ep",
            "sAMAccountName 'jan<U+202E>p' holds invisible control or text-direction "
            "characters (<U+202E>)",
        ),
        (
            "jan\np",
            "sAMAccountName 'jan\\np' holds invisible control or text-direction characters (\\n)",
        ),
        ("jan\x07", "sAMAccountName 'jan\\x07' holds invisible"),
        ("jan.", "sAMAccountName 'jan.' ends in a dot"),
        (". .", "sAMAccountName '. .' is only dots and spaces"),
    ],
)
def test_invisible_and_dotted_sam_account_names(username, expected):
    problems = ad(account(username, cn="jan p", displayName="Jan"))
    assert len(problems) == 1 and problems[0].startswith(f"pupils 1001 (Jan): {expected}")


def test_a_mapped_sam_account_name_is_checked_instead_of_the_username():
    problems = ad(account("jan", sAMAccountName="jan:p"))
    assert problems == [
        "pupils 1001 (jan): sAMAccountName 'jan:p' holds characters Active Directory does not "
        "allow there: ':' (made by mappings/pupils.yaml:20)"
    ]


def test_cn_and_ou_names_too_long_empty_or_with_control_characters():
    long_cn = "x" * 65
    problems = ad(account("jan", ou=("Leerlingen", "1A\nBLOCKED: fake", ""), cn=long_cn))
    assert problems == [
        f"pupils 1001 (jan): cn '{long_cn}' is 65 characters long; Active Directory allows at "
        "most 64 (made by mappings/pupils.yaml:20)",
        "pupils 1001 (jan): OU name '1A\\nBLOCKED: fake' holds invisible control or "
        "text-direction characters (\\n)",
        "pupils 1001 (jan): OU name '' is empty",
    ]


def test_a_group_named_by_a_class_code_with_a_line_break():
    group = DesiredGroup(kind="classes", key="klas-030569-1A\r\n", ou=("Klassen",), attributes={})
    assert ad(groups=(group,)) == [
        "group klas-030569-1A\\r\\n: cn 'klas-030569-1A\\r\\n' holds invisible control or "
        "text-direction characters (\\r, \\n)"
    ]


@pytest.mark.parametrize(
    ("upn", "expected"),
    [
        ("jan peeters@school.be", "holds characters not allowed before the @: ' '"),
        ("jan@", "has no valid domain after the @ ('')"),
        ("jan@school..be", "has no valid domain after the @ ('school..be')"),
        (".jan@school.be", "has a dot at the start or end"),
        ("jan.peeters", "is not name@domain"),
        ("jan\n@school.be", "holds characters not allowed before the @: '\\n'"),
        ("jan@school.be\n", "has no valid domain after the @ ('school.be\\n')"),
        ("x" * 65 + "@school.be", "is 65 characters long; Active Directory (before the @)"),
    ],
)
def test_ad_user_principal_name(upn, expected):
    (problem,) = ad(account("jan", userPrincipalName=upn))
    assert problem.startswith(f"pupils 1001 (jan): userPrincipalName '{visible(upn)}' {expected}")


@pytest.mark.parametrize(
    ("mail", "expected"),
    [
        ("jan.peeters", "is not an e-mail address"),
        ("jan peeters@school.be", "holds characters Active Directory does not allow there: ' '"),
        ("jan@school", "has no valid domain after the @ ('school')"),
    ],
)
def test_ad_mail(mail, expected):
    (problem,) = ad(account("jan", mail=mail))
    assert problem.startswith(f"pupils 1001 (jan): mail '{mail}' {expected}")


# -- Entra ID -------------------------------------------------------------------------------------


def test_entra_checks_the_upn_it_makes_from_the_username_and_the_mail_nickname():
    problems = entra(account("jan (1A)", displayName="Jan"))
    assert problems == [
        "pupils 1001 (Jan): userPrincipalName 'jan (1A)@leerling.school.be' holds characters not "
        "allowed before the @: ' ' '(' ')' (only letters a-z, digits and ' . - _ ! # ^ ~) "
        "(made by mappings/pupils.yaml:10)",
        "pupils 1001 (Jan): mailNickname 'jan (1A)' holds characters Entra ID does not allow "
        "there: ' ' '(' ')' (made by mappings/pupils.yaml:10)",
    ]


@pytest.mark.parametrize(
    ("upn", "expected"),
    [
        ("jan@elders.be", "is not in a managed domain (leerling.school.be, school.be)"),
        ("jan.@school.be", "starts or ends with a dot before the @"),
        ("jan+1@school.be", "holds characters not allowed before the @: '+'"),
        ("x" * 65 + "@school.be", "is 65 characters long; Entra ID (before the @)"),
        ("jan\u202e@school.be", "holds characters not allowed before the @: '<U+202E>'"),
        ("jan@school.be\n", "is not in a managed domain"),
    ],
)
def test_entra_user_principal_name(upn, expected):
    problems = entra(account("jan", userPrincipalName=upn))
    assert len(problems) == 1
    assert problems[0].startswith("pupils 1001 (jan): userPrincipalName '")
    assert expected in problems[0]
    assert "\u202e" not in problems[0]


def test_entra_upn_characters_it_allows():
    assert entra(account("jan", userPrincipalName="o'brien_j-2!#^~.x@SCHOOL.BE")) == []


def test_entra_mail_nickname_and_display_name_lengths():
    long_name = "n" * 65
    problems = entra(
        account("jan", userPrincipalName="jan@school.be", mailNickname=long_name),
        groups=(
            DesiredGroup(
                kind="classes",
                key="klas-1A",
                ou=(),
                attributes={"displayName": Derived("d" * 257, _why("displayName", 30))},
            ),
        ),
    )
    assert problems == [
        f"pupils 1001 (jan): mailNickname '{long_name}' is 65 characters long; Entra ID allows "
        "at most 64 (made by mappings/pupils.yaml:20)",
        f"group klas-1A: displayName '{'d' * 99}…' is 257 characters long; Entra ID allows at "
        "most 256 (made by mappings/pupils.yaml:30)",
    ]


def test_entra_group_mail_nickname_is_the_prefix_and_the_encoded_key():
    """The connector names a group's mailNickname itself (prefix + key, refused characters as
    ~XX): a key that is fine as text can still make it longer than Entra ID takes."""
    fits = DesiredGroup(kind="classes", key="k" * 59, ou=(), attributes={})  # prov- + 59 = 64
    spaced = DesiredGroup(kind="classes", key="klas 1A " + "x" * 50, ou=(), attributes={})
    problems = entra(groups=(fits, spaced))
    assert len(problems) == 1
    assert problems[0].startswith(f"group {spaced.key}: mailNickname 'prov-klas~201A~20")
    assert "is 67 characters long; Entra ID allows at most 64" in problems[0]


def test_without_a_target_nothing_is_checked():
    assert naming_problems(None, state(account("jan[1]\u202e", ou=("",)))) == []


# -- through the command line ---------------------------------------------------------------------

AD_TARGET = """\
state: state.db
target:
  ad:
    url: ldaps://dc.invalid
    bind_user: SCHOOL\\\\provisioner
    password: ${TEST_AD_PASSWORD}
    base_dn: DC=school,DC=be
    managed_root: OU=Provisioned
"""


def broken_sample(tmp_path: Path) -> Path:
    """The sample with one pupil's (Fatima-Zahra Leroy's) sAMAccountName made too long and with brackets, and one
    class's OU name given a line break."""
    config = sample_with_mappings(tmp_path)
    pupils = tmp_path / "mappings" / "pupils.yaml"
    text = pupils.read_text()
    for old, new in (
        (
            'sAMAccountName: "{{ username }}"',
            "sAMAccountName: \"{{ username ~ ('[x]' if Lln.Naam == 'Leroy' and Lln.Voornaam == 'Fatima-Zahra' else '') }}\"",
        ),
        (
            'ou: [Leerlingen, "{{ instelnr }}", "{{ Lln.Klascode }}"]',
            'ou: [Leerlingen, "{{ instelnr }}", "{{ Lln.Klascode ~ (\'\\\\nBLOCKED: fake\' '
            "if Lln.Naam == 'Leroy' and Lln.Voornaam == 'Fatima-Zahra' else '') }}\"]",
        ),
    ):
        assert old in text
        text = text.replace(old, new)
    pupils.write_text(text)
    return config


def test_validate_lists_names_ad_refuses_with_person_and_attribute(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_AD_PASSWORD", "not-used")
    config = broken_sample(tmp_path)
    assert main(["validate", "--config", str(config)]) == 0  # no target: no directory's rules
    capsys.readouterr()
    config.write_text(config.read_text() + AD_TARGET)
    # Both names are one pupil's own (her logon name, the OU her class code makes): she is held
    # (the quarantine lists her and makes validate exit 1), everyone else proceeds; nothing is
    # connected to dc.invalid.
    prepared = prepare(config)
    desired = desired_state(prepared, read_for_mappings(prepared))
    pupils = tmp_path / "mappings" / "pupils.yaml"
    assert desired.report.errors == []
    [held] = desired.held
    assert (held.kind, held.key, held.school) == ("pupils", "6135764", "030569")
    assert (
        "pupils lln-6135764 (Fatima-Zahra Leroy): sAMAccountName 'fatima-zahra.leroy[x]' is 21 "
        f"characters long; Active Directory allows at most 20 (made by {pupils}:16)"
    ) in held.reason
    assert "holds characters Active Directory does not allow there: '[' ']'" in held.reason
    assert "OU name '" in held.reason and "\\nBLOCKED: fake' holds invisible control" in held.reason
    assert held.anchor not in desired.accounts and len(desired.accounts) == 314
    assert not any("BLOCKED" in part for path in desired.ous for part in path)


def test_a_plan_against_entra_is_blocked_by_a_upn_outside_the_managed_domains(
    tmp_path, monkeypatch, capsys
):
    from tests.fakes.graph_server import GraphServer
    from tests.fakes.tls import make_test_ca

    monkeypatch.setenv("TEST_ENTRA_SECRET", "app-secret")
    (tmp_path / "mappings").mkdir()
    for path in (ROOT / "examples/entra/mappings").glob("*.yaml"):
        (tmp_path / "mappings" / path.name).write_text(path.read_text())
    pupils = tmp_path / "mappings" / "pupils.yaml"
    old = 'userPrincipalName: "{{ name }}@{{ vars.pupil_domain }}"'
    new = (
        "userPrincipalName: \"{{ name }}@{{ 'elders.be' if Lln.Naam == 'Leroy' and Lln.Voornaam == 'Fatima-Zahra' "
        'else vars.pupil_domain }}"'
    )
    assert old in pupils.read_text()
    pupils.write_text(pupils.read_text().replace(old, new))
    ca = make_test_ca(tmp_path)
    with GraphServer(tls=ca) as graph:
        graph.register_app("school.onmicrosoft.com", ENTRA.client_id, secret="app-secret")
        config = tmp_path / "provisioner.yaml"
        config.write_text(
            "source:\n  informat:\n"
            f"    snapshot: {ROOT / 'examples' / 'sample-snapshot'}\n"
            '    instelnrs: ["030569", "030577"]\n'
            "mappings: mappings\nstate: state.db\ntarget:\n  entra:\n"
            "    tenant_id: school.onmicrosoft.com\n"
            f"    client_id: {ENTRA.client_id}\n"
            "    client_secret: ${TEST_ENTRA_SECRET}\n"
            "    domains: [leerling.school.be, school.be]\n"
            f"    graph_url: {graph.url}\n"
            f"    authority: {graph.authority}\n"
            f"    ca_file: {graph.ca_file}\n"
        )
        assert main(["plan", "--config", str(config), "--json"]) == 2
        plan = json.loads(capsys.readouterr().out)
        prepared = prepare(config)
        desired = desired_state(prepared, read_for_mappings(prepared))
    # One pupil's UPN is outside the managed domains: that pupil is held, the plan proceeds.
    assert plan["header"]["blocked"] == []
    assert not any("fatima-zahra.leroy" in json.dumps(c) for c in plan["changes"])
    assert sum(c["action"] == "create" for c in plan["changes"]) > 300
    [held] = desired.held
    assert (
        "pupils lln-6135764 (Fatima-Zahra Leroy): userPrincipalName "
        "'fatima-zahra.leroy@elders.be' is not in a managed domain (leerling.school.be, "
        f"school.be) (made by {pupils}:15)"
    ) in held.reason


def test_the_quick_checks_agree_with_the_whole_ones():
    # naming.hidden answers at once for a printable value: no character the directories call
    # hidden is printable, in all of Unicode.
    printable_hidden = [
        c for c in map(chr, range(0x110000)) if hidden_characters(c) and c.isprintable()
    ]
    assert printable_hidden == []
    assert naming.hidden("jan\u202epeeters") != []
    # naming.forbidden looks for the characters in one pass (a pattern made of them, with the
    # characters a pattern gives a meaning to); each is still found and named.
    for characters in (SAM_ACCOUNT_NAME_FORBIDDEN, naming.MAIL_LOCAL_FORBIDDEN):
        for char in characters:
            assert naming.forbidden(f"a{char}b", characters, "AD") == [
                f"holds characters AD does not allow there: '{char}'"
            ]
        assert naming.forbidden("jan.peeters-2_x", characters, "AD") == []


def test_a_plain_value_passes_the_rule_it_skips():
    # Active Directory's checks of an account skip a value its plain pattern matches: such a
    # value must pass the whole rule, for every rule, at every length around the limits.

    rules = {
        rules_of._PLAIN_LOGON: rules_of._sam_account_name(rules_of.SAM_ACCOUNT_NAME_MAX),
        rules_of._PLAIN_RELATIVE_NAME: rules_of._relative_name,
        rules_of._PLAIN_USER_PRINCIPAL_NAME: rules_of._user_principal_name,
        rules_of._PLAIN_MAIL: rules_of._mail,
        rules_of._plain_anchor(16): rules_of._anchor(16, visible_only=True),
        rules_of._plain_anchor(None): rules_of._anchor(None, visible_only=True),
    }
    pieces = [*"aZ09.-_@ ", "é", "\n", "\u202e", "..", ".@", "@.", "a" * 60, "b" * 62 + "."]
    chance = random.Random(17)
    values = ["jan.peeters@school.be", "jan.peeters2", "1234567", "a@b", "a" * 64 + "@x.be"]
    values += ["".join(chance.choices(pieces, k=chance.randint(0, 12))) for _ in range(60_000)]
    matched = dict.fromkeys(rules, 0)
    for value in values:
        for plain, rule in rules.items():
            if plain.fullmatch(value):
                matched[plain] += 1
                assert rule(value) == [], (plain.pattern, value)
    assert all(matched.values())  # each pattern let some values through
    # what the patterns leave to the rules is still found
    assert ad(account("jan.", mail="jan@x", userPrincipalName="jan..p@school.be")) == [
        "pupils 1001 (jan.): sAMAccountName 'jan.' ends in a dot, which Active Directory does not "
        "allow (made by mappings/pupils.yaml:10)",
        "pupils 1001 (jan.): userPrincipalName 'jan..p@school.be' has a dot at the start or end "
        "of the name, or two dots in a row (made by mappings/pupils.yaml:20)",
        "pupils 1001 (jan.): mail 'jan@x' has no valid domain after the @ ('x') (made by "
        "mappings/pupils.yaml:20)",
    ]
