"""The test data of the next school year (``next_school_year``), what Informat serves on a given
day around the change (``as_served_on``), and the fake server answering each school year from
its own data."""

from __future__ import annotations

import copy
import datetime as dt
from collections import Counter

import pytest

from provisioner.sources.informat.operations import operation
from provisioner.sources.informat.reader import read_source
from tests.conftest import informat_config
from tests.fakes.informat_server import InformatServer
from tests.fakes.synthetic import SyntheticData, as_served_on, generate, next_school_year


@pytest.fixture(scope="module")
def years(synthetic: SyntheticData) -> tuple[SyntheticData, SyntheticData]:
    return synthetic, next_school_year(synthetic)


def classes_of(data: SyntheticData) -> dict[str, tuple[str, str]]:
    """p_persoon@instelnr → (Klascode, leerjaar) of the realised registrations open to the end."""
    return {
        f"{r['p_persoon']}@{r['_instelnr']}": (r["Klascode"], r["leerjaar"])
        for r in data.rows["Lln"]
        if r["voorlopig"] == "0" and r["Klascode"] and (r["_tot"] or "9999") >= "2026-06-30"
    }


def test_the_next_year_is_named_and_begins_on_1_september(years):
    this, following = years
    assert following.schooljaar == "2026-27"
    assert following.instelnrs == this.instelnrs
    assert {r["begindatum"] for r in following.rows["Lln"]} == {"2026-09-01"}
    assert {r["Begindatum"] for r in following.rows["Inschrijvingen"]} == {"2026-09-01T00:00:00"}
    assert {r["BegindatumKlas"] for r in following.rows["Subgroepen"]} == {"2026-09-01T00:00:00"}
    assert {r["_van"] for r in following.rows["LlnExtra"]} == {"2026-09-01"}
    assert all("einddatum" not in r for r in following.rows["Lln"])
    # a new registration each: none of the old year's ids is used again
    old = {r["PInschrijving"] for r in this.rows["Lln"]}
    assert not old & {r["PInschrijving"] for r in following.rows["Lln"]}


def test_pupils_move_up_a_grade_and_the_last_grade_graduates(years):
    this, following = years
    before, after = classes_of(this), classes_of(following)
    graduates = set(following.notable["graduates"].split(","))
    stoppers = set(following.notable["stoppers"].split(","))
    promotions = dict(p.split(">") for p in following.notable["promotions"].split(","))
    assert promotions["030569:1A"] == "2LAT" and promotions["030577:5WEWI"] == "6WEWI"
    stayed = 0
    for person, (klas, leerjaar) in before.items():
        pid, school = person.split("@")
        if leerjaar == "6":
            assert pid in graduates and person not in after
        elif pid in stoppers:
            assert person not in after
        elif pid not in graduates:  # (a pupil of two schools graduates from both)
            assert after[person] == (promotions[f"{school}:{klas}"], str(int(leerjaar) + 1))
            stayed += 1
    assert stayed > 80
    assert len(stoppers) == 4  # two per school
    assert not graduates & {r["p_persoon"] for r in following.rows["Lln"]}
    # nobody left behind in a person data set either
    assert not graduates & {r["pointer"] for r in following.rows["LlnExtra"]}


def test_first_graders_and_newcomers_are_new_persons(years):
    this, following = years
    old_persons = {r["p_persoon"] for r in this.rows["Lln"]}
    first = following.notable["first_graders"].split(",")
    newcomers = following.notable["newcomers"].split(",")
    assert len(newcomers) == 4 and len(first) >= 6
    lln = {r["p_persoon"]: r for r in following.rows["Lln"]}
    assert not (set(first) | set(newcomers)) & old_persons
    assert {lln[p]["leerjaar"] for p in first} == {"1"}
    assert all(lln[p]["leerjaar"] != "1" for p in newcomers)
    # every data set knows them, under their new key and name
    extra = {r["pointer"]: r for r in following.rows["LlnExtra"]}
    for pid in first + newcomers:
        assert extra[pid]["naam"] == lln[pid]["Naam"]
        assert sum(r["p_persoon"] == pid for r in following.rows["Subgroepen"]) == 1
    names = Counter((lln[p]["Naam"], lln[p]["Voornaam"]) for p in first)
    assert len(names) > 1


def test_one_class_is_gone_and_one_is_new(years):
    this, following = years
    assert following.notable["classes_gone"] == "030569:OV3LOG"
    assert following.notable["classes_new"] == "030569:OV4LOG"
    codes = {(r["_instelnr"], r["Klascode"]) for r in following.rows["Subgroepen"]}
    assert ("030569", "OV4LOG") in codes and ("030569", "OV3LOG") not in codes
    ov4 = next(r for r in following.rows["Lln"] if r["Klascode"] == "OV4LOG")
    assert (ov4["leerjaar"], ov4["graad"], ov4["_hoofdstructuur"]) == ("4", "2", "312")
    old_ov3 = {r["p_persoon"] for r in this.rows["Lln"] if r["Klascode"] == "OV3LOG"}
    new_ov4 = {r["p_persoon"] for r in following.rows["Lln"] if r["Klascode"] == "OV4LOG"}
    assert new_ov4 == old_ov3


def test_one_staff_member_leaves_and_one_joins(years):
    this, following = years
    n = following.notable
    old = {r["p_persoon"] for r in this.rows["Leerkrachten"]}
    new = {r["p_persoon"] for r in following.rows["Leerkrachten"]}
    assert old - new == {n["staff_left"]} and new - old == {n["staff_joined"]}
    code = next(
        r["WaardeVrijVeld"]
        for r in following.rows["LeerkrachtenVrijevelden"]
        if r["pPersoon"] == n["staff_joined"] and r["OmschrijvingVrijVeld"] == "CODE"
    )
    codes = [
        r["WaardeVrijVeld"]
        for r in following.rows["LeerkrachtenVrijevelden"]
        if r["OmschrijvingVrijVeld"] == "CODE"
    ]
    assert codes.count(code) == 1  # the newcomer's teacher code is their own
    assert {r["Schooljaar"] for r in following.rows["Leerkrachten"]} == {"2026-27"}


def test_the_same_data_and_seed_give_the_same_year_and_another_seed_another(synthetic):
    before = copy.deepcopy(synthetic.rows)
    first, again = next_school_year(synthetic), next_school_year(synthetic)
    assert first.rows == again.rows and first.notable == again.notable
    assert synthetic.rows == before  # the year it was made from is left as it was
    other = next_school_year(synthetic, seed=2)
    assert other.notable["first_graders"] != first.notable["first_graders"]


def test_the_year_after_the_next_follows_too():
    data = generate(60, instelnrs=["030569"], schooljaar="2025-26", seed=3)
    second = next_school_year(next_school_year(data))
    assert second.schooljaar == "2027-28"
    assert {r["begindatum"] for r in second.rows["Lln"]} == {"2027-09-01"}


# --- as Informat serves it on a given day -----------------------------------------------------------


def test_in_june_the_old_year_is_served_as_it_is(years):
    this, following = years
    served = as_served_on(dt.date(2026, 6, 15), this, following)
    assert list(served) == ["2025-26", "2026-27"]
    assert served["2025-26"].rows == this.rows
    assert served["2026-27"].today == "2026-06-15"


def test_from_july_the_graduates_registrations_end_on_30_june(years):
    this, following = years
    served = as_served_on(dt.date(2026, 7, 10), this, following)
    assert list(served) == ["2025-26", "2026-27"]
    old = served["2025-26"]
    graduate = following.notable["graduates"].split(",")[0]
    mover = next(iter(set(classes_of(this)) & set(classes_of(following)))).split("@")[0]
    rows = [r for r in old.rows["Lln"] if r["p_persoon"] == graduate]
    assert {(r["einddatum"], r["_tot"]) for r in rows} == {("2026-06-30", "2026-06-30")}
    ended = [r for r in old.rows["Subgroepen"] if r["p_persoon"] == graduate]
    assert {r["EinddatumKlas"] for r in ended} <= {"2026-06-30T00:00:00", None} | {
        r["EinddatumKlas"] for r in this.rows["Subgroepen"] if r["p_persoon"] == graduate
    }
    assert all(r["_tot"] <= "2026-06-30" for r in ended)
    # a pupil who goes on to the next year is still registered in the old one
    assert all(r["_tot"] is None for r in old.rows["Lln"] if r["p_persoon"] == mover)
    assert this.rows["Lln"] != old.rows["Lln"]  # a copy: the year itself is left as it was


def test_from_september_the_new_year_comes_first(years):
    this, following = years
    served = as_served_on(dt.date(2026, 9, 1), this, following)
    assert list(served) == ["2026-27", "2025-26"]


def test_a_year_that_does_not_follow_is_refused(years, synthetic):
    this, following = years
    with pytest.raises(ValueError, match="is not the year after"):
        as_served_on(dt.date(2026, 7, 1), following, this)


# --- the fake server, serving two years -----------------------------------------------------------


def read_lln(url: str, schooljaar: str, day: dt.date) -> dict[str, list[str]]:
    config = informat_config(url, schooljaar=schooljaar, referentiedatum=day.strftime("%d-%m-%Y"))
    data = read_source(config, [operation("Lln")], today=day)
    return {nr: [r["p_persoon"] for r in rows] for nr, rows in data.answers["Lln"].items()}


def test_the_server_answers_each_year_from_its_own_data(years):
    this, following = years
    with InformatServer(as_served_on(dt.date(2026, 7, 10), this, following)) as server:
        new = read_lln(server.url, "2026-27", dt.date(2026, 9, 1))
        summer = read_lln(server.url, "2025-26", dt.date(2026, 7, 10))
        before_start = read_lln(server.url, "2026-27", dt.date(2026, 7, 10))
        other = read_lln(server.url, "2024-25", dt.date(2026, 9, 1))
    expected = Counter(r["_instelnr"] for r in following.rows["Lln"])
    assert {nr: len(p) for nr, p in new.items()} == dict(expected)
    graduates = set(following.notable["graduates"].split(","))
    assert not graduates & {p for persons in summer.values() for p in persons}
    assert sum(map(len, summer.values())) > 80  # the others are still there in July
    # the new year's registrations begin on 1 September: before it they find nobody
    assert before_start == {"030569": [], "030577": []}
    assert other == {"030569": [], "030577": []}  # a year not served: empty, as Informat does


def test_one_year_is_served_as_before(synthetic):
    with InformatServer(synthetic) as server:
        assert list(server.years) == ["2025-26"]
        assert server.rows is server.years["2025-26"]
        assert read_lln(server.url, "2026-27", dt.date(2026, 1, 15)) == {
            "030569": [],
            "030577": [],
        }


def test_a_default_year_not_among_those_served_is_refused(years):
    this, following = years
    with pytest.raises(ValueError, match="not among"):
        InformatServer({"2025-26": this, "2026-27": following}, schooljaar="2027-28")


def test_hand_written_rows_without_subgroepen_move_up_too():
    def lln(pid: str, klas: str, leerjaar: str) -> dict:
        return {
            "p_persoon": pid,
            "Naam": "Peeters",
            "Voornaam": f"Kind{pid}",
            "Klascode": klas,
            "Klasnaam": f"{klas} Klas",
            "leerjaar": leerjaar,
            "graad": str((int(leerjaar) + 1) // 2),
            "voorlopig": "0",
            "PInschrijving": f"9{pid}",
            "begindatum": "2025-09-01",
            "_instelnr": "030569",
            "_van": "2025-09-01",
            "_tot": None,
        }

    data = SyntheticData(
        rows={"Lln": [lln("11", "1A", "1"), lln("22", "2A", "2"), lln("66", "6A", "6")]},
        instelnrs=("030569",),
    )
    following = next_school_year(data, stoppers_per_school=0, newcomers_per_school=0)
    classes = {r["p_persoon"]: r["Klascode"] for r in following.rows["Lln"]}
    assert classes["11"] == "2A"  # the existing second grade
    assert classes["22"] == "3A"  # a new class: no third grade yet
    assert "66" not in classes
    assert following.notable["graduates"] == "66"
    assert following.notable["classes_new"] == "030569:3A"
    assert [c for p, c in classes.items() if p not in ("11", "22")] == ["1A"] * 3
    assert {r["Klascode"] for r in following.rows["Subgroepen"]} == {"1A", "2A", "3A"}
