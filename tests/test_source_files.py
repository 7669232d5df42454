"""Files of extra persons (CSV as Excel writes it, YAML), their configuration, and several
sources read as one: parsing with line numbers, bad rows holding only their person, a broken file
as a block, keys that cannot collide, and ``{{ source }}`` in the mappings."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import textwrap
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.config import load_config
from provisioner.errors import ConfigError, SourceError
from provisioner.mapping.engine import build_desired, compile_mappings
from provisioner.mapping.spec import load_mappings
from provisioner.model import SOURCE_FIELD
from provisioner.nightly import remove_expired
from provisioner.pipeline import desired_state, prepare, read_for_mappings
from provisioner.sources import open_sources
from provisioner.sources.base import DatasetInfo
from provisioner.sources.composite import CompositeSource
from provisioner.sources.files.parser import BrokenFile, parse_csv, parse_yaml
from provisioner.sources.files.settings import FileConfig
from provisioner.sources.files.source import FileSource
from provisioner.sources.informat.source import InformatSource
from provisioner.sources.problems import problem_warnings
from tests.conftest import REFERENCE_DAY, informat_config, snapshot_config
from tests.fakes.informat_server import InformatServer
from tests.fakes.synthetic import as_served_on, next_school_year
from tests.scenarios import config_head

ROOT = Path(__file__).resolve().parent.parent
STAFF_FIELDS = {"Leerkrachten": ["Naam", "Voornaam", "Actief"]}
BELGIAN = (
    "\ufeffp_persoon;Naam;Voornaam;Actief;instelnr\r\n"
    "ext1;Peeters;Jan;J;30569\r\n"
    '"ext2";"Van den Broeck; de";An;J;030569\r\n'
    ";;;;\r\n"
    "ext3;Maes;Piet;N;030577\r\n"
)


def staff_file(tmp_path: Path, text: str | bytes, name: str = "extra.csv", **config) -> FileSource:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return FileSource(
        FileConfig(path, config.pop("kind", "staff"), config.pop("prefix", "ext"), **config)
    )


# -- the parser ----------------------------------------------------------------------------------


def test_excel_in_belgium_bom_semicolons_quotes_and_blank_rows():
    table = parse_csv(BELGIAN.encode("utf-8"))
    assert table.columns == ["p_persoon", "Naam", "Voornaam", "Actief", "instelnr"]
    assert [(r.line, r.values["Naam"]) for r in table.rows] == [
        (2, "Peeters"),
        (3, "Van den Broeck; de"),
        (5, "Maes"),
    ]
    assert not any(r.problem for r in table.rows)


def test_commas_without_bom_and_a_value_over_two_lines_keeps_the_line_numbers():
    text = 'p_persoon,Naam,Voornaam\next1,"Peeters,\nsr",Jan\next2,Maes\n'
    table = parse_csv(text.encode())
    assert [r.line for r in table.rows] == [2, 4]
    assert table.rows[0].values["Naam"] == "Peeters,\nsr"
    assert table.rows[1].problem == "line 4 has 2 values where the header has 3 columns"


def test_trailing_separators_are_no_extra_values_but_a_value_too_many_is():
    table = parse_csv(b"p_persoon;Naam;;\next1;Peeters;;\next2;Maes;x\n")
    assert table.columns == ["p_persoon", "Naam"]
    assert table.rows[0].problem == ""
    assert table.rows[1].problem == "line 3 has 3 values where the header has 2 columns"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "is empty"),
        (b"\r\n  \n", "is empty"),
        (b"p_persoon;Naam;Voornaam\next1;Pee", "ends in the middle of the row on line 2"),
        (b'p_persoon;Naam\next1;"Peeters\n', "ends inside a quoted value"),
        ("p_persoon;Naam\next1;Müller\n".encode("cp1252"), "is not UTF-8 text (line 2)"),
        (b"p_persoon;;Naam\n", "has a column without a name in its header (line 1, column 2)"),
        (b"p_persoon;Naam;naam\n", "has the column 'naam' twice"),
    ],
)
def test_a_file_that_cannot_be_read_as_a_whole_is_broken(data, reason):
    with pytest.raises(BrokenFile) as caught:
        parse_csv(data)
    assert reason in caught.value.reason


def test_yaml_rows_with_line_numbers_values_as_written():
    table = parse_yaml(b"- p_persoon: ext1\n  instelnr: 030569\n  Naam: Peeters\n- just text\n")
    assert table.rows[0].values == {"p_persoon": "ext1", "instelnr": "030569", "Naam": "Peeters"}
    assert table.rows[0].line == 1
    assert table.rows[1].problem == "line 4 is not a row of column: value pairs"
    for broken in (b"", b"p_persoon: ext1\n", b"- p_persoon: [ext1\n"):
        with pytest.raises(BrokenFile):
            parse_yaml(broken)


# -- one file as a source ------------------------------------------------------------------------


def test_a_file_joins_its_kinds_data_set_keeping_only_the_fields_the_mappings_read(tmp_path):
    read = staff_file(
        tmp_path,
        BELGIAN.replace("Actief;", "Actief;Geheim;").replace("J;", "J;x;").replace("N;", "N;x;"),
    ).read(STAFF_FIELDS)
    assert not read.blocks and not read.problems
    rows = read.rows.datasets["Leerkrachten"].rows
    assert rows[0] == (
        "030569",
        {"p_persoon": "ext1", "Naam": "Peeters", "Voornaam": "Jan", "Actief": "J"},
    )
    assert [school for school, _r in rows] == ["030569", "030569", "030577"]
    assert all("Geheim" not in record for _s, record in rows)
    assert read.counts == {"Leerkrachten": {"extra": 3}}
    assert read.rows.origin == "extra" and not read.dated


def test_bad_rows_hold_only_their_person_and_name_their_line(tmp_path):
    text = (
        "Stamnummer,Naam,Voornaam,Actief,Instellingsnummer\n"
        "ext1,Peeters,Jan,J,030569\n"
        "ext2,Janssens,An,J,abc\n"  # a bad instellingsnummer
        "ext1,Peeters,Jan,J,030569\n"  # the same key again
        "ext4,Maes\n"  # too few values
        "17,Wouters,Els,J,030577\n"  # a key without the prefix: whose?
        "ext5,Claes,Tom,J,030577\n"
    )
    read = staff_file(tmp_path, text, key="Stamnummer").read(STAFF_FIELDS)
    assert not read.blocks
    problems = {(p.key, p.unit): p.reason for p in read.problems}
    assert problems == {
        ("ext2", "extra"): "line 3: 'abc' is not an instellingsnummer",
        ("ext1", "extra"): "line 4: the key ext1 is also on line 2",
        ("ext4", "extra"): "line 5 has 2 values where the header has 5 columns",
        (None, "030577"): "line 6: the key '17' does not start with this file's prefix 'ext'",
    }
    # Every row with a key is delivered, so that its person is held rather than a leaver.
    keys = [r["p_persoon"] for _s, r in read.rows.datasets["Leerkrachten"].rows]
    assert keys == ["ext1", "ext2", "ext1", "ext4", "ext5"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Naam;Voornaam;Actief;instelnr\nPeeters;Jan;J;030569\n", "has no column 'p_persoon'"),
        ("p_persoon;Naam;Voornaam;Actief\next1;Peeters;Jan;J\n", "has no instelnr column"),
        ("p_persoon;Naam;Voornaam;Actief;instelnr\n", "has no rows below its header"),
        ("p_persoon;Naam;Voornaam;Actief;instelnr\n;Peeters;Jan;J;\n", "line 2: no p_persoon"),
        ("", "is empty"),
    ],
)
def test_a_broken_file_is_a_block_of_its_unit_and_delivers_nobody(tmp_path, text, reason):
    read = staff_file(tmp_path, text).read(STAFF_FIELDS)
    (block,) = read.blocks
    assert (block.dataset, block.unit) == ("Leerkrachten", "extra")
    assert reason in block.reason and str(tmp_path / "extra.csv") in block.reason
    assert read.rows.datasets["Leerkrachten"].rows == [] and not read.problems


def test_a_column_the_mappings_read_that_the_file_lacks_holds_each_of_its_persons(tmp_path):
    text = "p_persoon;Naam;Voornaam;instelnr\next1;Peeters;Jan;030569\next2;Maes;An;030569\n"
    source = staff_file(tmp_path, text)
    read = source.read({"Leerkrachten": ["Naam", "Voornaam", "Actief", "Stamnummer"]})
    assert not read.blocks
    assert {(p.key, p.field) for p in read.problems} == {
        (key, field) for key in ("ext1", "ext2") for field in ("Actief", "Stamnummer")
    }
    assert read.problems[0].reason == "the file has no column 'Actief': add it"
    # Held, not left out by where (Actief == "J"): nobody in the file becomes a leaver. A
    # missing field no mapping reads (Stamnummer: explain searches by it) holds nobody.
    desired = desired_of(source, read, staff_mappings(tmp_path))
    assert sorted((h.key, h.field) for h in desired.held) == [
        ("ext1", "Actief"),
        ("ext2", "Actief"),
    ]
    assert not desired.accounts


def test_a_missing_or_unreadable_file_is_a_block(tmp_path):
    source = staff_file(tmp_path, BELGIAN)
    (tmp_path / "extra.csv").unlink()
    (block,) = source.read(STAFF_FIELDS).blocks
    assert "does not exist" in block.reason
    if os.geteuid() != 0:  # root reads whatever the mode
        staff_file(tmp_path, BELGIAN).config.path.chmod(0)
        (block,) = source.read(STAFF_FIELDS).blocks
        assert "cannot be read" in block.reason


def test_a_fixed_school_and_a_yaml_file(tmp_path):
    source = staff_file(
        tmp_path,
        "- {p_persoon: ext1, Naam: Peeters, Voornaam: Jan, Actief: J}\n",
        name="stagiairs.yaml",
        instelnr="30577",
    )
    read = source.read(STAFF_FIELDS)
    assert read.rows.datasets["Leerkrachten"].rows[0][0] == "030577"
    assert read.rows.origin == "stagiairs"


def test_files_ending_alike_are_saved_side_by_side_by_their_names(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    one = staff_file(tmp_path, BELGIAN, name="a/extra.csv")
    other = staff_file(tmp_path, BELGIAN.replace("ext", "ex2"), name="b/extra.csv", prefix="ex2")
    other.config.name = "extra-b"
    CompositeSource([("extra", one), ("extra-b", other)], subfolders=False).read(
        STAFF_FIELDS, save=tmp_path / "snap"
    )
    assert (tmp_path / "snap/extra.csv").read_bytes() == BELGIAN.encode()
    assert (tmp_path / "snap/extra-b.csv").read_bytes() == BELGIAN.replace("ext", "ex2").encode()


def test_fetch_save_keeps_the_bytes_read(tmp_path):
    read = staff_file(tmp_path, BELGIAN).read(STAFF_FIELDS, save=tmp_path / "snap")
    assert (tmp_path / "snap/extra.csv").read_bytes() == BELGIAN.encode("utf-8")
    assert read.digest == staff_file(tmp_path, BELGIAN).read(STAFF_FIELDS).digest
    assert (
        read.digest
        != staff_file(tmp_path, BELGIAN + "ext9;A;B;J;030569\r\n").read(STAFF_FIELDS).digest
    )


# -- the configuration ---------------------------------------------------------------------------

INFORMAT = """\
source:
  informat:
    snapshot: snap
    instelnrs: ["030569"]
"""


def config_file(tmp_path: Path, files: str, head: str = INFORMAT) -> Path:
    (tmp_path / "snap").mkdir(exist_ok=True)
    path = tmp_path / "provisioner.yaml"
    path.write_text(head + textwrap.indent(textwrap.dedent(files), "  "), encoding="utf-8")
    return path


def test_informat_and_files_in_one_source_section_paths_from_the_config_folder(tmp_path):
    config = load_config(
        config_file(
            tmp_path,
            """\
            files:
              - {path: extra-staff.csv, kind: staff, prefix: ext}
              - {path: sub/stagiairs.yaml, kind: pupils, prefix: stg, name: stage, key: Stamnr}
            """,
        )
    )
    (kind, informat), (files_kind, files) = config.source.parts
    assert (kind, files_kind) == ("informat", "files")
    assert config.source.kind == "informat" and config.source.settings is informat
    first, second = files.files
    assert first.path == tmp_path / "extra-staff.csv" and first.name == "extra-staff"
    assert (second.dataset, second.name, second.key) == ("Lln", "stage", "Stamnr")
    assert second.path == tmp_path / "sub/stagiairs.yaml"


def test_files_alone_are_a_source_too(tmp_path):
    config = load_config(
        config_file(
            tmp_path, "", head="source:\n  files:\n    - {path: a.csv, kind: staff, prefix: a}\n"
        )
    )
    assert config.source.kind == "files"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ("files: extra.csv\n", r":5: source\.files: expected a list of files"),
        (
            "files:\n  - {path: a.csv, kind: staf, prefix: a}\n",
            r":6: source\.files\[0\]\.kind: 'staf' is not one of staff, pupils",
        ),
        (
            "files:\n  - {path: a.csv, kind: staff}\n",
            r":6: source\.files\[0\]\.prefix: is required",
        ),
        (
            "files:\n  - {path: a.csv, kind: staff, prefix: 1x}\n",
            r":6: source\.files\[0\]\.prefix: expected 1 to 6 lowercase",
        ),
        (
            "files:\n  - {path: a.xlsx, kind: staff, prefix: a}\n",
            r":6: source\.files\[0\]: path: expected a \.csv",
        ),
        (
            "files:\n  - {path: a.csv, kind: staff, prefix: ext}\n  - {path: b.csv, kind: staff, prefix: ex}\n",
            r":7: source\.files\[1\]\.prefix: 'ex' and 'ext' \(of a\) could make the same key",
        ),
        (
            "files:\n  - {path: a.csv, kind: staff, prefix: a}\n  - {path: x/a.csv, kind: staff, prefix: b}\n",
            r":7: source\.files\[1\]: two files are named 'a'",
        ),
        (
            "files:\n  - {path: a.csv, kind: staff, prefix: a, instelnr: abc}\n",
            r":6: source\.files\[0\]\.instelnr: instelnr must be up to six digits",
        ),
        ("informat: {snapshot: snap, instelnrs: ['1']}\n", r":5: source\.informat: given twice"),
        (
            "flies: []\n",
            r":5: source\.flies: unknown source \(known: informat, informat_rest, files",
        ),
    ],
)
def test_a_bad_source_section_names_file_line_and_key(tmp_path, files, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(config_file(tmp_path, files))


def test_an_empty_source_section_says_what_to_configure(tmp_path):
    with pytest.raises(
        ConfigError, match=r":1: source: configure a source: informat, informat_rest, files"
    ):
        load_config(config_file(tmp_path, "", head="source: {}\n"))


# -- several sources -----------------------------------------------------------------------------


def two_files(tmp_path: Path, second: str, prefix: str = "stg") -> CompositeSource:
    a = staff_file(tmp_path, BELGIAN, name="extra.csv")
    b = staff_file(tmp_path, second, name="stage.csv", prefix=prefix)
    return CompositeSource([("extra", a), ("stage", b)])


def test_rows_merge_per_data_set_each_record_naming_its_source(tmp_path):
    composite = two_files(
        tmp_path, "p_persoon,Naam,Voornaam,Actief,instelnr\nstg1,Claes,Tom,J,030577\n"
    )
    read = composite.read(STAFF_FIELDS)
    rows = read.rows.datasets["Leerkrachten"].rows
    assert [(r["p_persoon"], r.get(SOURCE_FIELD)) for _s, r in rows] == [
        ("ext1", None),  # the first source's records name none: theirs is the origin
        ("ext2", None),
        ("ext3", None),
        ("stg1", "stage"),
    ]
    assert read.rows.origin == "extra"
    assert read.counts == {"Leerkrachten": {"extra": 3, "stage": 1}}
    assert composite.units() == ["extra", "stage"] and not read.problems


def test_the_same_key_from_two_sources_holds_that_person_naming_both(tmp_path):
    composite = two_files(
        tmp_path, "p_persoon,Naam,Voornaam,Actief,instelnr\next1,Claes,Tom,J,030577\n", prefix="ext"
    )
    read = composite.read(STAFF_FIELDS)
    (problem,) = read.problems
    assert problem.key == "ext1" and "two sources, extra and stage" in problem.reason
    desired = desired_of(composite, read, staff_mappings(tmp_path))
    assert [(h.key, h.anchor) for h in desired.held] == [("ext1", "pers-ext1")]
    assert desired.held[0].reason.startswith("Leerkrachten: the key ext1 comes from two sources")
    assert "person ext1, the row: the key ext1 comes from" in "\n".join(
        problem_warnings(read.problems)
    )
    assert "pers-ext1" not in desired.accounts and "pers-ext2" in desired.accounts


def test_a_broken_part_is_a_block_and_the_others_are_read(tmp_path):
    composite = two_files(tmp_path, "")
    read = composite.read(STAFF_FIELDS)
    assert [(b.unit, b.reason.endswith("is empty")) for b in read.blocks] == [("stage", True)]
    assert len(read.rows.datasets["Leerkrachten"].rows) == 3


def staff_mappings(tmp_path: Path, ou: str = "Personeel", employee_type: str = "x") -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            accounts:
              staff:
                persons:
                  source: Leerkrachten
                  where: Leerkrachten.Actief == "J" and source != "stage"
                username: {{template: "{{{{ Leerkrachten.Voornaam }}}}.{{{{ Leerkrachten.Naam }}}}"}}
                ou: [Personeel, "{ou}"]
                attributes:
                  employeeType: "{employee_type}"
                anchor: "pers-{{{{ key }}}}"
            """
        )
    )
    return path


def desired_of(source, read, mappings: Path = ROOT / "mappings"):
    compiled = compile_mappings(load_mappings(mappings), source.datasets())
    return build_desired(compiled, read.rows, today=dt.date(2026, 1, 15), problems=read.problems)


def test_the_mappings_see_the_source_in_templates_and_where(tmp_path, informat_server):
    mappings = staff_mappings(
        tmp_path, "{{ source }}", "{{ 'personeel' if source == 'informat' else 'extern' }}"
    )
    informat = InformatSource(
        informat_config(informat_server.url, referentiedatum=f"{REFERENCE_DAY:%d-%m-%Y}"),
        today=REFERENCE_DAY,
    )
    extra = staff_file(tmp_path, BELGIAN, name="extra.csv")
    stage = staff_file(
        tmp_path,
        "p_persoon,Naam,Voornaam,Actief,instelnr\nstg1,Claes,Tom,J,030577\n",
        name="stage.csv",
        prefix="stg",
    )
    files = CompositeSource([("extra", extra), ("stage", stage)], subfolders=False)
    composite = CompositeSource([("informat", informat), ("files", files)])
    fields = {"Leerkrachten": ["Naam", "Voornaam", "Actief"]}
    read = composite.read(fields, save=tmp_path / "saved")
    assert read.as_of == informat.read(fields).as_of  # the dated part dates the read
    desired = desired_of(composite, read, mappings)
    by_source = {}
    for account in desired.accounts.values():
        by_source.setdefault(account.ou[1], set()).add(account.attributes["employeeType"].value)
    assert by_source.pop("extra") == {"extern"}
    assert by_source == {"informat": {"personeel"}}  # stage is left out by where
    assert desired.accounts["pers-ext1"].username == "Jan.Peeters"
    # fetch --save: each part in a folder of its own, the files side by side
    assert (tmp_path / "saved/informat/manifest.json").exists()
    for folder in ("saved", "saved/informat", "saved/files"):
        assert stat.S_IMODE((tmp_path / folder).stat().st_mode) == 0o700, folder
    assert stat.S_IMODE((tmp_path / "saved/files/extra.csv").stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "saved/files").iterdir()) == [
        "extra.csv",
        "manifest.json",
        "stage.csv",
    ]
    manifest = json.loads((tmp_path / "saved/manifest.json").read_text())
    assert manifest["sources"] == {"informat": "informat/", "files": "files/"}


def test_a_school_year_preview_reads_the_same_file(tmp_path, informat_server):
    extra = staff_file(tmp_path, BELGIAN)
    informat = InformatSource(informat_config(informat_server.url), today=dt.date(2026, 6, 20))
    composite = CompositeSource([("informat", informat), ("files", extra)])
    preview = composite.for_school_year("2026-27")
    assert [source for _n, source in preview.parts][1] is extra

    class NoYears:
        def datasets(self) -> dict:
            return {}

        def describe(self) -> str:
            return "a list"

    with pytest.raises(
        ConfigError, match="source list \\(a list\\) cannot read another school year"
    ):
        CompositeSource([("files", extra), ("list", NoYears())]).for_school_year("2026-27")  # type: ignore[list-item]


def test_open_sources_gives_one_source_or_several_as_one(tmp_path):
    config = load_config(config_file(tmp_path, "files: [{path: a.csv, kind: staff, prefix: a}]\n"))
    (files,) = open_sources(config.source.parts[1:]).parts  # type: ignore[attr-defined]
    assert files[0] == "a" and isinstance(files[1], FileSource)  # with a manifest when saved
    both = open_sources(config.source.parts)
    assert isinstance(both, CompositeSource) and [n for n, _s in both.parts] == [
        "informat",
        "files",
    ]


# -- through the command line ----------------------------------------------------------------------


def composite_config(tmp_path: Path, informat_url: str, extra: str = BELGIAN) -> Path:
    (tmp_path / "extra-staff.csv").write_text(extra, encoding="utf-8", newline="")
    config = tmp_path / "provisioner.yaml"
    config.write_text(
        config_head(informat_url, ROOT / "mappings")
        + "  files:\n    - {path: extra-staff.csv, kind: staff, prefix: ext}\n"
    )
    return config


def test_fetch_save_and_plan_from_what_was_saved(informat_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    config = composite_config(tmp_path, informat_server.url)
    assert main(["fetch", "--config", str(config), "--save", str(tmp_path / "snap")]) == 0
    out = capsys.readouterr().out
    header, _rule, *lines = out.split("\n\n", 1)[1].splitlines()
    assert header.split() == ["data", "set", "030569", "030577", "extra-staff", "total"]
    (staff_line,) = [line for line in lines if line.startswith("Leerkrachten ")]
    *_informat, from_file, total = staff_line.split()
    assert from_file == "3" and int(total) == sum(map(int, staff_line.split()[1:-1]))
    (pupils_line,) = [line for line in lines if line.startswith("Lln ")]
    assert len(pupils_line.split()) == 4  # no cell for the file: it is not read for Lln
    assert (tmp_path / "snap/informat/manifest.json").exists()
    assert (tmp_path / "snap/files/extra-staff.csv").read_bytes() == BELGIAN.encode()
    with pytest.raises(SourceError, match="is a snapshot of several sources: name its Informat"):
        InformatSource(snapshot_config(tmp_path / "snap")).read({"Lln": None})
    # provisioner run expires it like any snapshot, by its manifest
    config_ = load_config(config)
    snapshots = config_.snapshots_dir
    snapshots.mkdir()
    (tmp_path / "snap").rename(snapshots / "old")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=config_.snapshots.keep_days + 1)
    assert remove_expired(config_, later) == [snapshots / "old"]
    assert main(["fetch", "--config", str(config), "--save", str(tmp_path / "snap")]) == 0
    capsys.readouterr()

    assert main(["plan", "--config", str(config), "--json"]) == 2
    live = json.loads(capsys.readouterr().out)
    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / "provisioner.yaml").write_text(
        f"mappings: {ROOT / 'mappings'}\n"
        "policy:\n  freeze_leavers: []\n"
        "source:\n"
        f"  informat: {{snapshot: {tmp_path / 'snap/informat'}, instelnrs: ['030569', '030577']}}\n"
        f"  files: [{{path: {tmp_path / 'snap/files/extra-staff.csv'}, kind: staff, prefix: ext}}]\n"
    )
    assert main(["plan", "--config", str(offline / "provisioner.yaml"), "--json"]) == 2
    saved = json.loads(capsys.readouterr().out)
    assert saved["header"]["source_hash"] == live["header"]["source_hash"]
    created = {c["key"]: c["after"] for c in live["changes"] if c["action"] == "create"}
    assert created["pers-ext1"]["username"] == "jan.peeters"
    assert "pers-ext3" not in created  # Actief N
    assert [c["key"] for c in saved["changes"]] == [c["key"] for c in live["changes"]]


def test_the_next_school_year_is_previewed_with_the_file(synthetic, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    july = dt.date(2026, 7, 10)
    following = next_school_year(synthetic)
    with InformatServer(as_served_on(july, synthetic, following)) as server:
        config = composite_config(tmp_path, server.url)
        argv = ["plan", "--config", str(config), "--schooljaar", "2026-27", "--json"]
        assert main(argv, source_seams={"today": july}) == 2
    preview = json.loads(capsys.readouterr().out)
    assert preview["header"]["source_as_of"] == "2026-09-01"  # dated by Informat, not the file
    created = {c["key"] for c in preview["changes"] if c["action"] == "create"}
    assert {"pers-ext1", "pers-ext2"} <= created


def test_mapping_examples_can_name_the_source_of_a_row(tmp_path, capsys):
    mappings = staff_mappings(tmp_path, "{{ source }}")
    (tmp_path / "snap").mkdir()
    config = tmp_path / "provisioner.yaml"
    config.write_text(
        f"mappings: {mappings}\n"
        "source:\n"
        "  informat: {snapshot: snap, instelnrs: ['030569']}\n"
        "  files: [{path: extra-staff.csv, kind: staff, prefix: ext}]\n"
    )
    examples = tmp_path / "examples.yaml"
    examples.write_text(
        textwrap.dedent(
            """\
            examples:
              - name: Informat's and the file's staff
                instelnr: "030569"
                rows:
                  Leerkrachten:
                    - {p_persoon: "2001", Voornaam: Els, Naam: Janssens, Actief: J}
                    - {p_persoon: ext1, Voornaam: Jan, Naam: Peeters, Actief: J, source: extra-staff}
                accounts:
                  - {anchor: pers-2001, ou: [Personeel, informat]}
                  - {anchor: pers-ext1, ou: [Personeel, extra-staff]}
            """
        )
    )
    assert main(["test", "--config", str(config), "--examples", str(examples)]) == 0, (
        capsys.readouterr()
    )
    twice = examples.read_text().replace("source: extra-staff", "source: a, source: b")
    examples.write_text(twice)
    assert main(["test", "--config", str(config), "--examples", str(examples)]) == 1
    assert "Leerkrachten[1].source: given twice" in capsys.readouterr().err


def test_a_file_whose_data_set_nobody_reads_is_not_opened_and_others_are_refused(tmp_path):
    source = staff_file(tmp_path, BELGIAN)
    source.config.path.unlink()
    read = source.read({})
    assert not read.blocks and not read.rows.datasets and not read.dated
    with pytest.raises(ConfigError, match="offers only the data set Leerkrachten, not Lln"):
        source.read({"Lln": None})


def test_a_data_set_of_two_sources_is_documented_and_searched_as_either_says(
    tmp_path, informat_server
):
    informat = InformatSource(informat_config(informat_server.url))
    extra = staff_file(tmp_path, BELGIAN)
    for parts in (
        [("files", extra), ("informat", informat)],
        [("informat", informat), ("files", extra)],
    ):
        info = CompositeSource(parts).datasets()["Leerkrachten"]
        assert info.search_fields == ("Stamnummer",)
        assert info.documented_fields == informat.datasets()["Leerkrachten"].documented_fields
    pupils = staff_file(tmp_path, BELGIAN, name="lln.csv", kind="pupils", prefix="l")
    assert CompositeSource([("a", extra), ("b", pupils)]).datasets().keys() == {
        "Leerkrachten",
        "Lln",
    }


def test_two_sources_keying_one_data_set_differently_are_refused(tmp_path):
    class OtherKey:
        def datasets(self) -> dict:
            return {"Leerkrachten": DatasetInfo("Leerkrachten", "personId")}

    with pytest.raises(ConfigError, match="source other keys Leerkrachten by personId"):
        CompositeSource([("files", staff_file(tmp_path, BELGIAN)), ("other", OtherKey())])  # type: ignore[list-item]


def test_a_key_too_long_for_the_directorys_anchor_holds_its_person(tmp_path, monkeypatch):
    """pers- and prefix and key must fit Graph's employeeId (16 characters)."""
    monkeypatch.setenv("TEST_ENTRA_SECRET", "s")
    (tmp_path / "extra-staff.csv").write_text(
        "p_persoon;Naam;Voornaam;Actief;instelnr\n"
        "ext12345678;Peeters;Jan;J;030569\n"  # pers-ext12345678: 16
        "ext123456789;Maes;An;J;030569\n"  # 17: too long
    )
    (tmp_path / "mappings").mkdir()
    for name in ("staff.yaml", "vars.yaml"):
        shutil.copy(ROOT / "examples/entra/mappings" / name, tmp_path / "mappings" / name)
    config = tmp_path / "provisioner.yaml"
    config.write_text(
        "mappings: mappings\n"
        "state: state.db\n"
        "source:\n  files: [{path: extra-staff.csv, kind: staff, prefix: ext}]\n"
        "target:\n  entra:\n    tenant_id: school.onmicrosoft.com\n"
        "    client_id: 6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f\n"
        "    client_secret: ${TEST_ENTRA_SECRET}\n    domains: [school.be]\n"
    )
    prepared = prepare(config)
    desired = desired_state(prepared, read_for_mappings(prepared))
    assert set(desired.accounts) == {"pers-ext12345678"}
    (hold,) = desired.held
    assert hold.key == "ext123456789" and "16" in hold.reason


def test_a_collision_names_the_file_it_came_from_inside_a_list_of_files(tmp_path):
    extra = staff_file(tmp_path, BELGIAN, name="extra.csv")
    header = "p_persoon,Naam,Voornaam,Actief,instelnr\n"
    x = staff_file(tmp_path, header + "ext7,A,B,J,030569\n", name="x.csv")
    y = staff_file(tmp_path, header + "ext2,C,D,J,030569\n", name="y.csv")
    files = CompositeSource([("x", x), ("y", y)], subfolders=False)
    read = CompositeSource([("extra", extra), ("files", files)]).read(STAFF_FIELDS)
    (problem,) = read.problems
    assert "the key ext2 comes from two sources, extra and y" in problem.reason
    sources = {
        r["p_persoon"]: r.get(SOURCE_FIELD) for _s, r in read.rows.datasets["Leerkrachten"].rows
    }
    assert (sources["ext1"], sources["ext7"]) == (None, "x")
