"""``provisioner fields DATASET`` and the check of the mappings' fields against the documented
ones: a field neither documented nor in any row is an error with the nearest names; a documented
field in no row today a warning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.report.fields import mask
from provisioner.sources.informat.operations import DOCUMENTED_FIELDS, OPERATIONS
from tests.conftest import LOGIN, PASSWORD, SCHOOLJAAR
from tests.fakes.informat_server import InformatServer
from tests.test_architecture import people_file_source as people_file_source  # a fixture
from tests.test_architecture import write_people_config
from tests.test_cli_mapping import sample_with_mappings

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample.yaml"


def live_config(tmp_path: Path, url: str) -> Path:
    """A configuration reading the fake Informat web service, without mappings."""
    config = tmp_path / "live.yaml"
    config.write_text(
        "source:\n"
        "  informat:\n"
        f"    url: {url}\n"
        f"    login: {LOGIN}\n"
        "    password: ${FIELDS_TEST_PASSWORD}\n"
        f"    schooljaar: {SCHOOLJAAR}\n"
        '    instelnrs: ["030569", "030577"]\n'
    )
    return config


def test_fields_of_smartschool_users_from_the_web_service_show_the_username(
    tmp_path: Path,
    server: InformatServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FIELDS_TEST_PASSWORD", PASSWORD)
    config = live_config(tmp_path, server.url)
    assert main(["fields", "--config", str(config), "SmartschoolUsers"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith("Gebruikersnaam"))
    count, example = line.split()[1:3]
    assert int(count) > 100
    assert "." in example or example.isalnum()  # a username, shown as it is: no personal data
    # Birth dates and national numbers are masked, whatever row comes first.
    birth = next(line for line in out.splitlines() if line.strip().startswith("Geboortedatum"))
    assert re.search(r"(19|20)\*\*-\*\*-\*\*", birth)
    insz = next(line for line in out.splitlines() if line.strip().startswith("Insz"))
    assert re.search(r" \d\*{10}$", insz)
    assert "PPersoon" in out
    assert "unverified" not in out


def test_fields_lists_documented_fields_no_row_has_and_masks_personal_data(capsys):
    assert main(["fields", "--config", str(SAMPLE), "LlnExtra"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("LlnExtra: 289 rows (Informat 2025-26 from snapshot ")
    missing = out.split("Documented fields no row has today", 1)[1]
    assert "  dlpostnr   (documented, in no row)" in missing
    assert "  telefoonVader   (documented, in no row)" in missing
    assert "EmailSchool" not in missing
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert re.search(r"  \w\*\*\*@\w\*\*\*\.be$", rows["EmailSchool"])
    assert rows["straat"].split()[-1].count("*") >= 5
    assert re.search(r"20\*\*-\*\*-\*\*$", rows["geboortedatum"])
    assert rows["Verblijfstype"].split()[-1] == "Extern"  # not personal: shown
    # No e-mail address or national number of the snapshot shows anywhere.
    assert not re.search(r"\w{2,}@\w{2,}", out)
    assert not re.search(r"\d{11}", out)


def test_fields_shows_nested_entries_and_remarks_are_not_shown(capsys):
    assert main(["fields", "--config", str(SAMPLE), "Relaties"]) == 0
    out = capsys.readouterr().out
    assert "  Relaties.Naam " in out and "  Relaties.Type " in out
    assert "(free text, not shown)" in out
    assert "Contact enkel" not in out
    assert "  Relatie " not in out  # the entries' element is no field


def test_fields_notes_an_unverified_data_set(capsys):
    assert main(["fields", "--config", str(SAMPLE), "Rekeningnummers"]) == 0
    out = capsys.readouterr().out
    assert "note: the format of Rekeningnummers is unverified" in out
    assert "has no documented field list" in out
    iban = next(line for line in out.splitlines() if line.strip().startswith("Iban"))
    assert re.search(r"B\*{3} \*{4} \*{4} \*{4}$", iban)


def test_fields_as_json(capsys):
    assert main(["fields", "--config", str(SAMPLE), "SmartschoolUsers", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dataset"] == "SmartschoolUsers" and data["verified"] is True
    by_name = {f["name"]: f for f in data["fields"]}
    assert by_name["Gebruikersnaam"]["documented"] is True
    assert by_name["Gebruikersnaam"]["rows"] == 315
    assert by_name["Insz"]["example"].endswith("**********")
    assert data["documented_missing"] == []


def test_a_wrong_data_set_name_names_the_right_one(capsys):
    assert main(["fields", "--config", str(SAMPLE), "smartschoolusers"]) == 1
    err = capsys.readouterr().err
    assert "no data set 'smartschoolusers' (did you mean SmartschoolUsers?" in err
    assert "it offers: Adressen, AdressenEmail" in err


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("EmailEigen", "jan.peeters@school.be", "j***@s***.be"),
        ("Adres", "an@telenet.be", "a***@t***.be"),  # an e-mail address in an "Adres" field
        ("Opmerking2", "jan@x.be", "(free text, not shown)"),
        ("Geboortedatum", "2011-03-07", "20**-**-**"),
        ("Geboortedatum", "07.03.1980", "**.**.19**"),
        ("Rijksregnr", "11030712345", "1**********"),
        ("Gsm", "0470 12 34 56", "0*** ** ** **"),
        ("Straat", "Kerkstraat", "K*********"),
        ("Wachtwoord", "geheim", "********"),
        ("Onbekend", "85.07.30-033.28", "8*.**.**-***.**"),  # by its shape
        ("Onbekend", "+32 470 12 34 56", "+** *** ** ** **"),
        ("Klascode", "1A", "1A"),
        ("p_persoon", "1177785", "1177785"),
        ("Gebruikersnaam", "jan.peeters", "jan.peeters"),
    ],
)
def test_masking_by_name_and_by_shape(field: str, value: str, shown: str) -> None:
    assert mask(field, value) == shown


def test_every_documented_data_set_is_in_the_table_with_its_key() -> None:
    for name, documented in DOCUMENTED_FIELDS.items():
        assert OPERATIONS[name].key in documented, name
    for name in ("Lln", "LlnExtra", "Subgroepen", "Leerkrachten", "SmartschoolUsers"):
        assert name in DOCUMENTED_FIELDS


def use_field(config: Path, field: str) -> Path:
    """The pupils' mappings joined with SmartschoolUsers, their description from *field*."""
    pupils = config.parent / "mappings" / "pupils.yaml"
    text = pupils.read_text()
    assert "      employeeType: leerling\n" in text
    text = text.replace(
        "      employeeType: leerling\n",
        f'      employeeType: leerling\n      description: "{{{{ SmartschoolUsers.{field} }}}}"\n',
    ).replace("      source: Lln\n", "      source: Lln\n      join: [SmartschoolUsers]\n")
    pupils.write_text(text)
    return pupils


def test_validate_errors_on_a_field_neither_documented_nor_in_any_row(tmp_path, capsys):
    config = sample_with_mappings(tmp_path)
    pupils = use_field(config, "Username")
    line = 1 + pupils.read_text().splitlines().index(
        '      description: "{{ SmartschoolUsers.Username }}"'
    )
    assert main(["validate", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    errors = out.split("Errors (", 1)[1]
    assert f"pupils.yaml:{line}: accounts.pupils.attributes.description: " in errors
    assert (
        "SmartschoolUsers has no field 'Username': no row has it and it is not documented (it "
        "has Geboortedatum, Gebruikersnaam, Insz, Naam, PPersoon, Status, Voornaam; "
        "'provisioner fields --config FILE SmartschoolUsers' lists the fields it holds"
    ) in errors
    assert out.rstrip().endswith("error(s)")


def test_validate_suggests_the_nearest_names(tmp_path, capsys):
    config = sample_with_mappings(tmp_path)
    use_field(config, "Gebruikersnam")
    assert main(["validate", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert (
        "SmartschoolUsers has no field 'Gebruikersnam': no row has it and it is not documented "
        "(did you mean 'Gebruikersnaam'"
    ) in out


def test_a_documented_field_no_row_has_is_a_warning(tmp_path, capsys):
    config = sample_with_mappings(tmp_path)
    pupils = config.parent / "mappings" / "pupils.yaml"
    pupils.write_text(
        pupils.read_text()
        .replace("      source: Lln\n", "      source: Lln\n      join: [LlnExtra]\n")
        .replace(
            "      employeeType: leerling\n",
            '      employeeType: leerling\n      postalCode: "{{ LlnExtra.dlpostnr }}"\n',
        )
    )
    assert main(["validate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    warnings = out.split("Warnings (", 1)[1]
    assert "LlnExtra.dlpostnr has no value in any row today (a documented field" in warnings
    assert "Errors (" not in out


def test_the_example_in_the_mapping_guide_is_what_fields_prints(capsys):
    guide = (ROOT / "docs" / "mappings.md").read_text()
    example = guide.split("$ provisioner fields --config provisioner.yaml SmartschoolUsers\n")[1]
    table = example.split("```", 1)[0].split("\n\n", 1)[1].rstrip("\n")
    assert main(["fields", "--config", str(SAMPLE), "SmartschoolUsers"]) == 0
    assert table in capsys.readouterr().out


def test_a_failing_web_service_is_one_error_line(
    tmp_path: Path,
    server: InformatServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FIELDS_TEST_PASSWORD", PASSWORD)
    config = live_config(tmp_path, server.url)
    server.inject("500", op="SmartschoolUsers", times=None)
    argv = ["fields", "--config", str(config), "SmartschoolUsers"]
    assert main(argv, source_seams={"sleep": lambda _seconds: None}) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and "SmartschoolUsers" in captured.err
    assert "Traceback" not in captured.err


def test_fields_works_for_any_source_and_masks_by_shape(people_file_source, tmp_path, capsys):
    """A source without documented fields (a CSV of external staff): every column is listed,
    a phone number masked by its shape, and the missing list said to be unknown."""
    config = write_people_config(
        tmp_path, "id,voornaam,naam,contact\nx1,Ann,Peeters,0470 12 34 56\nx2,Bert,Claes,\n"
    )
    assert main(["fields", "--config", str(config), "Personen"]) == 0
    out = capsys.readouterr().out
    assert "note: Personen has no documented field list" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert rows["contact"] == ["1", "0***", "**", "**", "**"]
    assert rows["voornaam"] == ["2", "Ann"]
    assert "(not documented)" not in out and "Documented fields" not in out
