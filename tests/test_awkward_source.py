"""Awkward values as a real Informat database holds them, served by the project's Informat server:
dates in unexpected but unambiguous forms are read, an impossible date or a missing key becomes a
problem of one person (or of nobody), and everyone else is read as usual.

The corpus is the session's synthetic data with given fields of given rows rewritten
(:meth:`InformatServer.rewrite`), on a server of its own so that no other test sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli import main
from provisioner.sources.base import ValueProblem
from provisioner.sources.informat.operations import operation
from provisioner.sources.informat.reader import read_source
from provisioner.sources.informat.source import InformatSource
from tests.conftest import INSTELNRS, PASSWORD, REFERENCE_DAY, informat_config, snapshot_config
from tests.fakes.informat_server import MISSING, InformatServer
from tests.fakes.synthetic import SyntheticData

ROOT = Path(__file__).resolve().parent.parent
SCHOOL = "030569"
OTHER_SCHOOL = "030577"

# LlnExtra.geboortedatum as served -> as read (None: no date)
BIRTH_DATES: list[tuple[str, str | None]] = [
    ("2011-01-10", "2011-01-10"),  # ISO date where xs:dateTime was assumed (issue 12)
    ("2011-01-10T00:00:00.0000000+01:00", "2011-01-10"),  # fraction and zone
    ("2011-01-10T00:00:00Z", "2011-01-10"),
    ("1.2.2011", "2011-02-01"),  # one-digit day and month
    ("01/02/2011", "2011-02-01"),  # day first: 1 February
    ("10-01-2011", "2011-01-10"),
    ("0001-01-01T00:00:00", None),  # .NET's DateTime.MinValue
    ("  2011-01-10 \n", "2011-01-10"),  # whitespace around
    ("   ", None),  # only whitespace: no value
    ("", None),  # an empty element
]
IMPOSSIBLE = "2011-02-31"


def pupils_in_every_set(synthetic: SyntheticData) -> list[str]:
    """p_persoon of pupils of SCHOOL on the reference day with exactly one row in Lln, LlnExtra
    and Subgroepen (so that one rewrite touches one person's rows only)."""
    day = REFERENCE_DAY.isoformat()

    def present(row: dict[str, Any]) -> bool:
        return (
            row["_instelnr"] == SCHOOL
            and (row.get("_van") or "") <= day
            and (row.get("_tot") is None or day <= row["_tot"])
        )

    def once(dataset: str, key: str) -> set[str]:
        keys = [r[key] for r in synthetic.rows[dataset] if present(r)]
        everywhere = [r[key] for r in synthetic.rows[dataset] if r[key] in set(keys)]
        return {k for k in keys if everywhere.count(k) == 1}

    chosen = once("Lln", "p_persoon") & once("LlnExtra", "pointer")
    chosen &= once("Subgroepen", "p_persoon")
    return sorted(chosen)


class Corpus:
    """Who got which awkward value."""

    def __init__(self, server: InformatServer, pupils: list[str]) -> None:
        assert len(pupils) >= len(BIRTH_DATES) + 5, "the synthetic data has too few pupils"
        self.server = server
        self.birth: dict[str, str | None] = {}
        for pupil, (served, _read) in zip(pupils, BIRTH_DATES, strict=False):
            self._set("LlnExtra", {"pointer": pupil}, {"geboortedatum": served})
            self.birth[pupil] = _read
        rest = pupils[len(BIRTH_DATES) :]
        # Subgroepen in ISO dates, one of them with a class end that cannot exist.
        self.iso_class, self.impossible_class, self.impossible_birth = rest[0], rest[1], rest[2]
        self._set(
            "Subgroepen",
            {"p_persoon": self.iso_class},
            {"BegindatumKlas": "2025-09-01", "EinddatumKlas": "2026-06-30"},
        )
        self._set("Subgroepen", {"p_persoon": self.impossible_class}, {"EinddatumKlas": IMPOSSIBLE})
        self._set("LlnExtra", {"pointer": self.impossible_birth}, {"geboortedatum": "31.31.2011"})
        # Lln: an impossible birth date (a field the default mappings do not read) and two rows
        # whose key is empty or missing.
        self.unused_impossible, self.empty_key, self.missing_key = rest[2], rest[3], rest[4]
        self._set("Lln", {"p_persoon": self.unused_impossible}, {"geboortedatum": IMPOSSIBLE})
        self._set("Lln", {"p_persoon": self.empty_key}, {"p_persoon": " "})
        self._set("Lln", {"p_persoon": self.missing_key}, {"p_persoon": MISSING})

    def _set(self, dataset: str, where: dict[str, str], values: dict[str, Any]) -> None:
        assert self.server.rewrite(dataset, {**where, "_instelnr": SCHOOL}, values) == 1


@pytest.fixture(scope="module")
def awkward(synthetic: SyntheticData) -> Iterator[tuple[InformatServer, Corpus]]:
    with InformatServer(synthetic, today=REFERENCE_DAY) as server:
        corpus = Corpus(server, pupils_in_every_set(synthetic))
        yield server, corpus


FIELDS = {
    "Lln": ["Naam", "Voornaam", "Klascode"],
    "LlnExtra": ["naam", "geboortedatum"],
    "Subgroepen": ["Klascode", "BegindatumKlas", "EinddatumKlas"],
}


def by_key(records: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in records if key in r}


def test_every_unambiguous_date_form_is_read_and_impossible_ones_hold_one_person(
    awkward, synthetic
):
    server, corpus = awkward
    data = read_source(informat_config(server.url), [operation(n) for n in FIELDS], fields=FIELDS)
    extra = by_key(data.answers["LlnExtra"][SCHOOL], "pointer")
    for pupil, expected in corpus.birth.items():
        assert extra[pupil].get("geboortedatum") == expected, pupil
        assert extra[pupil]["naam"]  # the rest of the row is there
    classes = by_key(data.answers["Subgroepen"][SCHOOL], "p_persoon")
    assert classes[corpus.iso_class]["BegindatumKlas"] == "2025-09-01"
    assert classes[corpus.iso_class]["EinddatumKlas"] == "2026-06-30"
    # The impossible date empties its own field only; the row and everyone else are read.
    assert "EinddatumKlas" not in classes[corpus.impossible_class]
    assert classes[corpus.impossible_class]["Klascode"]
    assert "geboortedatum" not in extra[corpus.impossible_birth]
    assert extra[corpus.impossible_birth]["naam"]

    assert data.problems() == [
        # In the order asked for (Lln first); Lln.geboortedatum is not among the fields, so its
        # impossible date is no problem at all.
        ValueProblem("Lln", SCHOOL, None, "p_persoon", _no_key_reason(data, "Lln", 1)),
        ValueProblem("Lln", SCHOOL, None, "p_persoon", _no_key_reason(data, "Lln", 2)),
        ValueProblem(
            "LlnExtra",
            SCHOOL,
            corpus.impossible_birth,
            "geboortedatum",
            "'31.31.2011' is not a date: there is no month 31",
        ),
        ValueProblem(
            "Subgroepen",
            SCHOOL,
            corpus.impossible_class,
            "EinddatumKlas",
            "'2011-02-31' is not a date: month 2 of 2011 has no day 31",
        ),
    ]
    # Every row is delivered, also the two without a key (without one): none is lost.
    served = [r for r in synthetic.rows["Lln"] if r["_instelnr"] == SCHOOL]
    day = REFERENCE_DAY.isoformat()
    on_day = [r for r in served if (r.get("_van") or "") <= day and (r.get("_tot") or day) >= day]
    assert len(data.answers["Lln"][SCHOOL]) == len(on_day)
    assert sum("p_persoon" not in r for r in data.answers["Lln"][SCHOOL]) == 2


def _no_key_reason(data: Any, dataset: str, nth: int) -> str:
    """The reason of the nth keyless row: it names the row's place in the answer."""
    rows = data.answers[dataset][SCHOOL]
    positions = [i + 1 for i, r in enumerate(rows) if "p_persoon" not in r]
    return (
        f"record {positions[nth - 1]} of the answer has no person key (p_persoon is empty, "
        "missing or not a single value), so it belongs to nobody"
    )


def test_an_impossible_date_in_a_field_nobody_reads_is_not_even_a_problem(awkward):
    server, corpus = awkward
    data = read_source(
        informat_config(server.url),
        [operation("LlnExtra")],
        fields={"LlnExtra": ["naam"]},
    )
    assert data.problems() == []
    extra = by_key(data.answers["LlnExtra"][SCHOOL], "pointer")
    assert extra[corpus.impossible_birth] == {
        "pointer": corpus.impossible_birth,
        "naam": extra[corpus.impossible_birth]["naam"],
    }


def test_the_source_hands_the_problems_to_the_pipeline(awkward):
    server, corpus = awkward
    source = InformatSource(informat_config(server.url), today=REFERENCE_DAY)
    read = source.read(FIELDS)
    assert [(p.dataset, p.unit, p.key, p.field) for p in read.problems] == [
        ("Lln", SCHOOL, None, "p_persoon"),
        ("Lln", SCHOOL, None, "p_persoon"),
        ("LlnExtra", SCHOOL, corpus.impossible_birth, "geboortedatum"),
        ("Subgroepen", SCHOOL, corpus.impossible_class, "EinddatumKlas"),
    ]
    assert read.blocks == []
    assert all(n > 0 for per_school in read.counts.values() for n in per_school.values())
    # The other school's rows are untouched by the corpus.
    assert not [p for p in read.problems if p.unit == OTHER_SCHOOL]


def test_a_snapshot_reads_back_the_same_problems(awkward, tmp_path):
    server, _corpus = awkward
    live = read_source(
        informat_config(server.url),
        [operation(n) for n in FIELDS],
        fields=FIELDS,
        save=tmp_path / "snap",
    )
    offline = read_source(
        snapshot_config(tmp_path / "snap"), [operation(n) for n in FIELDS], fields=FIELDS
    )
    assert offline.problems() == live.problems()
    assert len(live.problems()) == 4


def fetch_config(tmp_path: Path, url: str, *, mappings: bool) -> Path:
    path = tmp_path / "provisioner.yaml"
    path.write_text(
        "source:\n  informat:\n"
        f"    url: {url}\n    login: webservices@school.be\n    password: ${{TEST_PW}}\n"
        f"    schooljaar: 2025-26\n    instelnrs: {INSTELNRS}\n    referentiedatum: 15-01-2026\n"
        + (f"mappings: {ROOT / 'mappings'}\n" if mappings else ""),
        encoding="utf-8",
    )
    return path


def test_fetch_with_the_default_mappings_warns_and_succeeds(awkward, tmp_path, monkeypatch, capsys):
    server, corpus = awkward
    monkeypatch.setenv("TEST_PW", PASSWORD)
    assert main(["fetch", "--config", str(fetch_config(tmp_path, server.url, mappings=True))]) == 0
    out, err = capsys.readouterr()
    assert "Subgroepen" in out and "Lln" in out  # the counts table
    lines = err.splitlines()
    # The default mappings read Subgroepen.EinddatumKlas, not Lln.geboortedatum nor LlnExtra.
    assert lines[0] == "warning: 3 values could not be read; the rest was read as usual:"
    assert lines[-1].startswith("warning: 2 rows without a person key belong to nobody")
    assert "warning:   Subgroepen for 030569: 1" in lines
    assert "warning:   Lln for 030569: 2" in lines
    assert (
        f"warning: Subgroepen for 030569, person {corpus.impossible_class}, field EinddatumKlas: "
        "'2011-02-31' is not a date: month 2 of 2011 has no day 31"
    ) in lines
    assert sum("a row without key, field p_persoon" in line for line in lines) == 2
    assert "31.31.2011" not in err  # LlnExtra is not read by the default mappings


def test_fetch_of_whole_data_sets_reads_every_date_field(awkward, tmp_path, monkeypatch, capsys):
    server, corpus = awkward
    monkeypatch.setenv("TEST_PW", PASSWORD)
    config = fetch_config(tmp_path, server.url, mappings=False)
    assert main(["fetch", "--config", str(config), "--dataset", "Lln"]) == 0
    err = capsys.readouterr().err
    # Every field is kept, so Lln.geboortedatum is read too, and its impossible date is shown.
    assert "warning: 3 values could not be read" in err
    assert (
        f"warning: Lln for 030569, person {corpus.unused_impossible}, field geboortedatum: "
        "'2011-02-31' is not a date" in err
    )
    assert "Traceback" not in err


def _day_first(iso: str, form: int) -> str:
    """An ISO date in one of the day-first or ISO forms Informat may use, by *form*."""
    year, month, day = iso[:10].split("-")
    return [
        iso[:10],
        f"{day}/{month}/{year}",
        f"{int(day)}.{int(month)}.{year}",
        f"{iso[:10]}T00:00:00.0000000+02:00",
        f"{day}-{month}-{year}",
    ][form % 5]


def test_validate_gives_the_same_result_whatever_form_the_class_dates_take(
    synthetic, tmp_path, monkeypatch, capsys
):
    """Issue 12: ISO dates in Subgroepen stopped validate; any mix of forms now reads the same."""
    rewritten = []
    for i, row in enumerate(synthetic.rows["Subgroepen"]):
        changed = dict(row)
        for name in ("BegindatumKlas", "EinddatumKlas"):
            if row.get(name):
                changed[name] = _day_first(row[name], i)
        rewritten.append(changed)
    awkward_data = {
        "rows": {**synthetic.rows, "Subgroepen": rewritten},
        "schooljaar": synthetic.schooljaar,
        "instelnrs": synthetic.instelnrs,
    }
    assert any(r.get("EinddatumKlas") for r in rewritten)  # the filter has ends to read
    monkeypatch.setenv("TEST_PW", PASSWORD)
    summaries = []
    for data in (synthetic, awkward_data):
        with InformatServer(data, today=REFERENCE_DAY) as server:
            config = fetch_config(tmp_path, server.url, mappings=True)
            assert main(["validate", "--config", str(config)]) == 0
        out, err = capsys.readouterr()
        assert "OK: the mappings are valid" in out
        assert "not a date" not in out + err
        summaries.append(out[out.index("Persons:") :])
    assert summaries[0] == summaries[1]


def test_rewritten_rows_come_back_as_they_were(synthetic):
    with InformatServer(synthetic, today=REFERENCE_DAY) as server:
        config = informat_config(server.url, instelnrs=[SCHOOL])
        before = read_source(config, [operation("Subgroepen")]).answers["Subgroepen"][SCHOOL]
        key = before[0]["p_persoon"]
        rows = server.rewrite(
            "Subgroepen",
            {"p_persoon": key, "_instelnr": SCHOOL},
            {"Klascode": MISSING, "Klas": " ", "Status": ""},
        )
        during = read_source(config, [operation("Subgroepen")]).answers["Subgroepen"][SCHOOL]
        changed = [r for r in during if r["p_persoon"] == key]
        assert len(changed) == rows
        assert all(not {"Klascode", "Klas", "Status"} & r.keys() for r in changed)
        server.restore_rows()
        after = read_source(config, [operation("Subgroepen")]).answers["Subgroepen"][SCHOOL]
        assert after == before
    assert all(r.get("Klascode") is not MISSING for r in synthetic.rows["Subgroepen"])
