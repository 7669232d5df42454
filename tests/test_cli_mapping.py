"""``provisioner validate`` and ``explain`` on the bundled sample, and on broken mappings."""

from __future__ import annotations

import shutil
from pathlib import Path

from provisioner.cli import main
from provisioner.state import StateStore

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample.yaml"


def test_validate_on_the_sample_summarises_and_succeeds(capsys):
    assert main(["validate", "--config", str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "Persons:  pupils 287, staff 28" in out
    assert (
        "Lln                          290 rows  Klascode, Naam, Voornaam, school, voorlopig" in out
    )
    assert "Duplicates resolved (2):" in out
    assert "Name collisions resolved (11):" in out
    assert out.rstrip().endswith("OK: the mappings are valid")


def sample_with_mappings(tmp_path: Path) -> Path:
    """A copy of the sample configuration with its own copy of the default mappings."""
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    config = tmp_path / "sample.yaml"
    config.write_text(
        SAMPLE.read_text()
        .replace("snapshot: sample-snapshot", f"snapshot: {ROOT / 'examples' / 'sample-snapshot'}")
        .replace("mappings: ../mappings", "mappings: mappings")
    )
    return config


def initial_and_surname(mappings: Path) -> None:
    """The pupils' usernames made of the first letter and the surname (zcelik)."""
    pupils = mappings / "pupils.yaml"
    pupils.write_text(
        pupils.read_text().replace(
            "{{ (Lln.Voornaam ~ '.' ~ Lln.Naam) | username(fallback='lln' ~ key) }}",
            "{{ (Lln.Voornaam | left(1) ~ Lln.Naam) | username }}",
        )
    )


def test_changing_the_username_scheme_shows_in_validate_and_explain(tmp_path, capsys):
    config = sample_with_mappings(tmp_path)
    initial_and_surname(tmp_path / "mappings")
    assert main(["validate", "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["explain", "--config", str(config), "Çelik"]) == 0
    out = capsys.readouterr().out
    assert "pupils " in out and ": zcelik (school " in out
    assert "Username: zcelik\n  {{ (Lln.Voornaam | left(1) ~ Lln.Naam) | username }}" in out
    assert "mappings/pupils.yaml:16) ← Lln.Naam, Lln.Voornaam" in out


def test_explain_finds_by_key_stamnummer_and_name(capsys):
    assert main(["explain", "--config", str(SAMPLE), "202400117"]) == 0
    out = capsys.readouterr().out
    key = out.split(":")[0].split()[1]
    assert out.startswith("pupils ")
    assert "stamnr" not in out  # searched by, but not a referenced field: not shown
    assert main(["explain", "--config", str(SAMPLE), key]) == 0
    by_key = capsys.readouterr().out
    assert by_key.splitlines()[0] == out.splitlines()[0]
    assert (
        "Attributes:" in by_key and "OU: Leerlingen / 0305" in by_key and "Groups: klas-" in by_key
    )


def test_explain_without_a_match_fails(capsys):
    assert main(["explain", "--config", str(SAMPLE), "Niemand Bestaatniet"]) == 1
    assert "no account matches 'Niemand Bestaatniet'" in capsys.readouterr().err


def test_validate_reports_every_broken_template_and_fails(tmp_path, capsys):
    config = sample_with_mappings(tmp_path)
    staff = tmp_path / "mappings" / "staff.yaml"
    staff.write_text(
        staff.read_text()
        .replace('sn: "{{ Leerkrachten.Naam }}"', 'sn: "{{ Leerkrachten.Naam }"')
        .replace(
            'givenName: "{{ Leerkrachten.Voornaam }}"', 'givenName: "{{ Leerkrachtn.Voornaam }}"'
        )
    )
    assert main(["validate", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 2 problem(s) in the mappings:")
    assert f"{staff}:19: accounts.staff.attributes.givenName: unknown name 'Leerkrachtn'" in err
    assert f"{staff}:20: accounts.staff.attributes.sn: unexpected '}}'" in err


def test_validate_reports_render_failures_per_person_as_holds(tmp_path, capsys):
    config = sample_with_mappings(tmp_path)
    pupils = tmp_path / "mappings" / "pupils.yaml"
    pupils.write_text(
        pupils.read_text().replace(
            'department: "{{ Lln.Klascode }}"', 'department: "{{ Lln.Klascode | date }}"'
        )
    )
    assert main(["validate", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    # the template fails on each pupil's own value: each is held (validate fails), no error
    assert (
        "Held (no change to their accounts, no new account, until their data is corrected) (287):"
        in out
    )
    assert "accounts.pupils.attributes.department: ValueError: date:" in out
    assert "Errors" not in out
    assert out.rstrip().endswith("287 person(s) held")


def test_fetch_with_mappings_reads_only_their_data_sets(capsys):
    import json

    assert main(["fetch", "--config", str(SAMPLE), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert set(counts) == {"Lln", "Leerkrachten", "LeerkrachtenVrijevelden", "Subgroepen"}


def test_validate_and_explain_say_which_existing_accounts_keep_their_name(tmp_path, capsys):
    """rename: keep (the default): after a new naming rule, validate counts the existing accounts
    (the state store remembers their names; no directory is contacted) that keep a name the
    template would now make otherwise, and explain shows both names."""
    config = sample_with_mappings(tmp_path)
    config.write_text(config.read_text() + "state: state.db\n")
    assert main(["explain", "--config", str(config), "Zoë Çelik"]) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.startswith("pupils ") and ": zoe.celik (school " in first_line
    anchor = first_line.split(":")[0].split()[1]
    with StateStore(tmp_path / "state.db") as store:
        store.issue_names([(anchor, "zoe.celik")])
    initial_and_surname(tmp_path / "mappings")
    assert main(["validate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert (
        "Existing accounts keeping a name the mappings would now make otherwise "
        "(username.rename: keep; set follow to rename them) (1):\n"
        f"  pupils {anchor}: username zoe.celik → zcelik\n" in out
    )
    assert (
        "accounts.pupils: 1 existing account(s) keep a name the mappings would now make "
        "otherwise (e.g. 'zoe.celik', now 'zcelik'): username.rename is keep" in out
    )
    assert main(["explain", "--config", str(config), anchor]) == 0
    out = capsys.readouterr().out
    assert ": zoe.celik (school " in out
    assert (
        "username: keeps 'zoe.celik'; the mappings would now make 'zcelik' "
        "(username.rename: keep; set follow to rename)" in out
    )


def test_validate_needs_no_directory_password_and_plan_says_where_it_is_missing(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("AD_PASSWORD_NOT_SET", raising=False)
    config = sample_with_mappings(tmp_path)
    config.write_text(
        config.read_text()
        + "state: state.db\n"
        + "target:\n  ad:\n"
        + "    url: ldaps://127.0.0.1:1\n"
        + "    bind_user: SCHOOL\\\\provisioner\n"
        + "    password: ${AD_PASSWORD_NOT_SET}\n"
        + "    base_dn: DC=school,DC=test\n"
        + "    managed_root: OU=Provisioned\n"
    )
    line = config.read_text().splitlines().index("    password: ${AD_PASSWORD_NOT_SET}") + 1
    assert main(["validate", "--config", str(config)]) == 0  # never contacts AD
    assert capsys.readouterr().out.rstrip().endswith("OK: the mappings are valid")
    assert main(["plan", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert (
        f"{config}:{line}: target.ad.password: environment variable AD_PASSWORD_NOT_SET is not set"
        in err
    )
