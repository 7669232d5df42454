"""``plan --schooljaar``: the next school year previewed against the directory as it is now, on
a real Samba AD DC. After a first apply of 2025-26, the preview of 2026-27 (made in July, from
what Informat serves then) writes nothing, shows the transition per school, and proposes exactly
what the real plan of 1 September then proposes."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import pytest

from provisioner.apply import apply_plan
from provisioner.cli import main
from provisioner.errors import ConfigError, SourceError
from provisioner.model import (
    DesiredAccount,
    DesiredGroup,
    DesiredState,
    ObservedAccount,
    ObservedGroup,
    ObservedState,
)
from provisioner.pipeline import open_target, plan_for, prepare, read_for_mappings
from provisioner.plan.model import Action, Change, Kind, Plan, PlanHeader, PolicyBlock
from provisioner.report.transition import (
    render_transition,
    transition_summary,
    transition_to_json,
)
from provisioner.sources.informat.operations import operation
from provisioner.sources.informat.reader import read_source
from provisioner.sources.informat.source import InformatSource
from provisioner.state import StateStore
from tests import test_ad, test_architecture, test_entra
from tests.conftest import informat_config, snapshot_config
from tests.fakes.informat_server import InformatServer
from tests.fakes.synthetic import as_served_on, next_school_year
from tests.scenarios import ad_target, pupil, staff
from tests.test_ad import users_below
from tests.test_architecture import write_people_config

# fixtures: a managed root OU of its own; a third source that cannot preview another year
ad_env = test_ad.ad_env
people_file_source = test_architecture.people_file_source

JUNE = dt.date(2026, 6, 15)
JULY = dt.date(2026, 7, 10)
SEPTEMBER = dt.date(2026, 9, 1)

# --- the source: asking for another school year ----------------------------------------------------


def test_informat_asks_for_the_year_with_a_referentiedatum_on_its_first_day():
    source = InformatSource(informat_config("http://127.0.0.1:1/wsInformat.asmx"), today=JULY)
    preview = source.for_school_year("2026-27")
    assert preview.config.schooljaar == "2026-27"
    assert preview.config.referentiedatum == "01-09-2026"
    assert source.config.schooljaar == "2025-26"  # the configured source is left as it was


def test_once_the_year_has_begun_the_preview_is_of_today():
    source = InformatSource(
        informat_config("http://127.0.0.1:1/wsInformat.asmx"), today=dt.date(2026, 10, 3)
    )
    assert source.for_school_year("2026-27").config.referentiedatum == "03-10-2026"


def test_a_configured_referentiedatum_inside_the_year_is_used():
    config = informat_config("http://127.0.0.1:1/wsInformat.asmx", referentiedatum="07-09-2026")
    source = InformatSource(config, today=JULY)
    assert source.for_school_year("2026-27").config.referentiedatum == "07-09-2026"
    # one outside it (the current year's) is not
    config = informat_config("http://127.0.0.1:1/wsInformat.asmx", referentiedatum="15-01-2026")
    source = InformatSource(config, today=JULY)
    assert source.for_school_year("2026-27").config.referentiedatum == "01-09-2026"


@pytest.mark.parametrize(
    ("year", "message"),
    [
        ("2026-28", "schooljaar must be 'auto' or like 2025-26"),
        ("auto", "name the school year to preview"),
        ("2024-25", "ended on 30-06-2025"),
    ],
)
def test_a_year_that_cannot_be_previewed_is_a_clear_error(year, message):
    source = InformatSource(informat_config("http://127.0.0.1:1/wsInformat.asmx"), today=JULY)
    with pytest.raises(ConfigError, match=message):
        source.for_school_year(year)


def test_the_preview_reads_the_new_year_from_a_server_that_serves_two(synthetic):
    following = next_school_year(synthetic)
    with InformatServer(as_served_on(JULY, synthetic, following)) as server:
        source = InformatSource(informat_config(server.url), today=JULY)
        read = source.for_school_year("2026-27").read({"Lln": ["Klascode"]})
    assert read.as_of == SEPTEMBER
    persons = {record["p_persoon"] for _school, record in read.rows.datasets["Lln"].rows}
    assert persons == {r["p_persoon"] for r in following.rows["Lln"]}
    assert "Informat 2026-27" in read.description
    assert read.unit_names == {}  # the name of the school was not among the fields read


def test_a_snapshot_of_another_year_is_refused_by_name(tmp_path, synthetic):
    with InformatServer(synthetic) as server:
        read_source(informat_config(server.url), [operation("Lln")], save=tmp_path / "snap")
    source = InformatSource(snapshot_config(tmp_path / "snap"), today=JULY)
    with pytest.raises(SourceError, match="holds schooljaar 2025-26, the configuration asks"):
        source.for_school_year("2026-27").read({"Lln": None})


def test_a_source_that_cannot_preview_says_so(people_file_source, tmp_path, capsys):
    config = write_people_config(tmp_path, "id,voornaam,naam\nx1,Ann,Peeters\n")
    assert main(["plan", "--config", str(config), "--schooljaar", "2026-27"]) == 1
    err = capsys.readouterr().err
    assert "cannot read another school year: plan --schooljaar needs a source that can" in err
    assert "Traceback" not in err


def test_plan_refuses_to_save_a_preview(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    config = write_config(tmp_path, "http://127.0.0.1:1/wsInformat.asmx", target="")
    code = main(["plan", "--config", str(config), "--schooljaar", "2026-27", "--out", "x.json"])
    err = capsys.readouterr().err
    assert code == 1
    assert "--out cannot save a preview of another school year" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.json").exists()


# --- the transition summary, from plain data -------------------------------------------------------


def _account(anchor: str, ou: tuple[str, ...]) -> ObservedAccount:
    return ObservedAccount(f"id-{anchor}", f"CN={anchor}", anchor, anchor, ou, {})


def test_the_summary_counts_per_school_what_the_plan_does():
    def move(anchor: str, old: str, new: str) -> Change:
        return Change(
            Action.MOVE,
            Kind.ACCOUNT,
            anchor,
            "x",
            before={"ou": ["Leerlingen", "030569", old]},
            after={"ou": ["Leerlingen", "030569", new]},
        )

    desired = DesiredState(
        accounts={
            "n1": DesiredAccount(
                "pupils", "n1", "n1", ("Leerlingen", "030569", "1A"), {}, "030569"
            ),
            "m1": DesiredAccount(
                "pupils", "m1", "m1", ("Leerlingen", "030569", "2A"), {}, "030569"
            ),
            "m2": DesiredAccount(
                "pupils", "m2", "m2", ("Leerlingen", "030569", "2A"), {}, "030569"
            ),
            "m3": DesiredAccount(
                "pupils", "m3", "m3", ("Leerlingen", "030569", "3A"), {}, "030569"
            ),
        },
        groups={
            "klas-1B": DesiredGroup("classes", "klas-1B", (), {}, {"n1"}),
            "sport": DesiredGroup("clubs", "sport", (), {}, {"n1", "g1"}),  # two schools
        },
    )
    observed = ObservedState(
        accounts=[
            _account("g1", ("Leerlingen", "030577", "6A")),
            _account("g2", ("Leerlingen", "030577", "6A")),
            _account("s1", ("Leerlingen", "030577", "3B")),
        ],
        groups=[ObservedGroup("gid", "CN=klas-6A", "klas-6A", (), {}, {"g1", "g2"})],
    )
    changes = [
        Change(Action.CREATE, Kind.ACCOUNT, "n1", "x"),
        move("m1", "1A", "2A"),
        move("m2", "1A", "2A"),
        move("m3", "2A", "3A"),
        *(Change(Action.DISABLE, Kind.ACCOUNT, k, "x") for k in ("g1", "g2", "s1")),
        # the disabled-accounts OU is no class move
        Change(Action.MOVE, Kind.ACCOUNT, "g1", "x", {"ou": ["a"]}, {"ou": ["Uit dienst"]}),
        Change(Action.CREATE_GROUP, Kind.GROUP, "klas-1B", "x"),
        Change(Action.CREATE_GROUP, Kind.GROUP, "sport", "x"),
        Change(Action.DELETE_GROUP, Kind.GROUP, "klas-6A", "x"),
    ]
    header = PlanHeader(
        "c",
        "e",
        "h",
        "h",
        "h",
        "t",
        "2026-09-01",
        policy_blocked=["3 account disables exceed max_disable 5%"],
        policy_blocks=[PolicyBlock("leavers", "3 account disables exceed max_disable 5%")],
        account_schools={"g1": "030577", "g2": "030577", "s1": "030577"},
    )
    summary = transition_summary(
        Plan(header, changes), desired, observed, {"030569": "Sint-Jozefscollege"}
    )
    first, second, every = summary.schools
    assert (every.school, every.groups_new) == ("", ["sport"])
    assert (first.school, first.name, second.school, second.name) == (
        "030569",
        "Sint-Jozefscollege",
        "030577",
        "",
    )
    assert first.moves == {("1A", "2A"): 2, ("2A", "3A"): 1}
    assert first.new == {"1A": 1} and first.groups_new == ["klas-1B"]
    assert second.leaving == {"6A": 2, "3B": 1} and second.groups_going == ["klas-6A"]
    text = render_transition(summary, "2026-27")
    assert "Sint-Jozefscollege (030569)" in text
    assert "    1A → 2A: 2\n    2A → 3A: 1" in text
    assert "accounts to disable: 3 (from 3B: 1, from 6A: 2)" in text
    assert "groups to archive or delete (their class is gone): klas-6A" in text
    assert "groups to create: klas-1B" in text
    assert "All schools\n  groups to create: sport" in text
    assert "Approvals that night will need (1)" in text and "max_disable 5%" in text
    data = transition_to_json(summary)
    assert data["schools"][0]["moves"][0] == {"from": "1A", "to": "2A", "accounts": 2}
    assert data["approvals"] == [
        "3 account disables exceed max_disable 5% → provisioner apply --approve leavers"
    ]


def test_without_ous_a_class_change_is_read_from_the_groups():
    """Entra ID has no OUs: the pupil who leaves one class group for another changes class."""
    changes = [
        Change(Action.ADD_MEMBER, Kind.GROUP, "klas-2A", "x", after={"members": ["p1", "p2"]}),
        Change(Action.REMOVE_MEMBER, Kind.GROUP, "klas-1A", "x", before={"members": ["p1"]}),
        Change(Action.REMOVE_MEMBER, Kind.GROUP, "klas-1B", "x", before={"members": ["p2"]}),
        # p3 only joins a group: no class change
        Change(Action.ADD_MEMBER, Kind.GROUP, "sport", "x", after={"members": ["p3"]}),
    ]
    header = PlanHeader("c", "e", "h", "h", "h", "t", "2026-09-01")
    header.account_schools = {"p1": "030569", "p2": "030569", "p3": "030569"}
    summary = transition_summary(Plan(header, changes), DesiredState(), ObservedState())
    assert summary.schools[0].moves == {("klas-1A", "klas-2A"): 1, ("klas-1B", "klas-2A"): 1}
    assert "Approvals that night will need: none" in render_transition(summary, "2026-27")


# --- end to end on the DC --------------------------------------------------------------------------


def write_config(
    directory: Path,
    url: str,
    *,
    target: str,
    schooljaar: str = "2025-26",
    referentiedatum: str = "today",
) -> Path:
    """A configuration with the summer freeze stretched into September: the real plan of
    1 September keeps leavers waiting, the preview must not."""
    path = directory / "provisioner.yaml"
    path.write_text(
        f"mappings: {Path(__file__).resolve().parent.parent / 'mappings'}\n"
        "state: state.db\n"
        "policy:\n  freeze_leavers: ['07-01', '09-15']\n"
        "source:\n  informat:\n"
        f"    url: {url}\n"
        "    login: webservices@school.be\n"
        "    password: ${TEST_INFORMAT_PASSWORD}\n"
        f"    schooljaar: {schooljaar}\n"
        "    instelnrs: ['030569', '030577']\n"
        f"    referentiedatum: {referentiedatum}\n" + target
    )
    return path


def groups_below(samba_dc, root: str) -> dict[str, tuple[str, frozenset[str]]]:
    from ldap3 import SUBTREE

    conn = samba_dc.connect()
    conn.search(
        f"{root},{samba_dc.base_dn}",
        "(objectClass=group)",
        search_scope=SUBTREE,
        attributes=["cn", "member"],
    )
    return {e["dn"]: frozenset(e["attributes"].get("member") or ()) for e in conn.response}


def files_of(directory: Path) -> dict[str, str]:
    """Every file below *directory* (lock files aside: plan takes the run lock) by its hash."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def summary_of(changes: list[dict]) -> set[tuple[str, str, str]]:
    """What a plan does that the preview must foresee: (action, key, where) per change."""
    kept = {"create", "move", "disable", "create_group", "delete_group", "archive_group"}
    return {
        (c["action"], c["key"], json.dumps(c["after"].get("ou")))
        for c in changes
        if c["action"] in kept
    }


@pytest.fixture
def first_year_applied(samba_dc, synthetic, ad_env, tmp_path):
    """2025-26 applied in June to a fresh managed OU; then Informat serves both years as it
    does in July (the graduates' registrations ended on 30 June)."""
    _config_for, root = ad_env  # the TEST_* passwords, and the OU removed afterwards
    following = next_school_year(synthetic)
    with InformatServer(as_served_on(JUNE, synthetic, following)) as june:
        config = write_config(tmp_path, june.url, target=ad_target(samba_dc, root))
        # Through the pipeline: the source's day is a seam of prepare, not of apply's CLI.
        prepared = prepare(config, today=JUNE)
        target = open_target(prepared)
        try:
            plan = plan_for(prepared, read_for_mappings(prepared), target)
            assert plan.header.source_as_of == JUNE.isoformat()
            with StateStore(config.parent / "state.db") as store:
                outcome = apply_plan(plan, target, store, sheets=config.parent / "sheets")
        finally:
            target.close()
        assert not outcome.failed
    with InformatServer(as_served_on(JULY, synthetic, following)) as server:
        config = write_config(tmp_path, server.url, target=ad_target(samba_dc, root))
        yield config, root, server, following


def test_the_preview_writes_nothing_and_foresees_september(
    samba_dc, synthetic, first_year_applied, capsys
):
    config, root, server, following = first_year_applied
    capsys.readouterr()
    files, users, groups = files_of(config.parent), users_below(samba_dc, root), None
    groups = groups_below(samba_dc, root)

    july = {"today": JULY}
    args = ["plan", "--config", str(config), "--schooljaar", "2026-27"]
    assert main(args, source_seams=july) == 2
    text = capsys.readouterr().out
    assert main([*args, "--json"], source_seams=july) == 2
    preview = json.loads(capsys.readouterr().out)

    # Nothing written: not the state store, no plan key, not the directory.
    assert files_of(config.parent) == files
    assert users_below(samba_dc, root) == users
    assert groups_below(samba_dc, root) == groups

    n = following.notable
    graduates = n["graduates"].split(",")
    first_graders = n["first_graders"].split(",")
    actions: dict[str, set[str]] = {}
    for change in preview["changes"]:
        actions.setdefault(change["action"], set()).add(change["key"])
    # Leavers are disabled although 1 September lies in this configuration's freeze.
    assert {pupil(k) for k in graduates} <= actions["disable"]
    assert {pupil(k) for k in n["stoppers"].split(",")} <= actions["disable"]
    assert staff(n["staff_left"]) in actions["disable"]
    assert {pupil(k) for k in first_graders} | {staff(n["staff_joined"])} <= actions["create"]
    assert "klas-030569-OV4LOG" in actions["create_group"]
    assert "klas-030569-OV3LOG" in actions.get("delete_group", set()) | actions.get(
        "archive_group", set()
    )
    assert preview["header"]["source_as_of"] == "2026-09-01"
    assert "a preview of school year 2026-27" in preview["header"]["warnings"][0]

    # Only the new year's classes are made: those of the old one exist already.
    assert actions["create_group"] == {"klas-030569-OV4LOG"}

    # The summary first, per school by name, with the promotions grouped.
    transition = preview["transition"]
    school = next(s for s in transition["schools"] if s["school"] == "030569")
    assert school["name"] == "Sint-Jozefscollege"
    moved_from_1a = sum(
        1
        for r in following.rows["Lln"]
        if r["_instelnr"] == "030569"
        and r["Klascode"] == "2LAT"
        and r["p_persoon"] in {x["p_persoon"] for x in synthetic.rows["Lln"]}
    )
    assert {"from": "1A", "to": "2LAT", "accounts": moved_from_1a} in school["moves"]
    # every account in class 6WEWI graduates
    assert school["leaving_from"]["6WEWI"] == sum(
        "OU=6WEWI,OU=030569," in u["dn"] for u in users.values()
    )
    assert transition["approvals"]  # so many disables exceed max_disable
    assert text.startswith("School year 2026-27 previewed as of 2026-09-01")
    assert "Sint-Jozefscollege (030569)" in text
    assert f"    1A → 2LAT: {moved_from_1a}" in text
    assert "groups to create: klas-030569-OV4LOG\n" in text
    assert "from Personeel: 1" in text  # the staff member who left
    assert text.index("Approvals that night will need") < text.index("Plan against")

    # 1 September: the real plan of the new year (its freeze ended) does what the preview said.
    server.today = SEPTEMBER
    september = write_config(
        config.parent,
        server.url,
        target=ad_target(samba_dc, root),
        schooljaar="2026-27",
        referentiedatum="today",
    )
    september.write_text(september.read_text().replace("'09-15'", "'08-31'"))
    assert (
        main(["plan", "--config", str(september), "--json"], source_seams={"today": SEPTEMBER}) == 2
    )
    real = json.loads(capsys.readouterr().out)
    assert real["header"]["source_as_of"] == "2026-09-01"
    assert summary_of(real["changes"]) == summary_of(preview["changes"])
    assert real["header"]["policy_blocked"] == preview["header"]["policy_blocked"]


# --- end to end on the Graph server ----------------------------------------------------------------
graph_ca, clock, graph, entra_env = (
    test_entra.graph_ca,
    test_entra.clock,
    test_entra.graph,
    test_entra.entra_env,
)


def test_in_entra_the_class_changes_are_read_from_the_groups(
    graph, clock, synthetic, entra_env, capsys
):
    """Entra ID has no OUs: nobody is moved; the summary reads the class changes from the
    class groups, and the preview still foresees what 1 September plans."""
    seams = {"sleep": clock.wait, "clock": clock}
    following = next_school_year(synthetic)
    with InformatServer(as_served_on(JUNE, synthetic, following)) as june:
        config = entra_env(june.url)
        assert main(["apply", "--config", str(config)], seams=seams) == 0
    capsys.readouterr()
    directory = copy.deepcopy((graph.users, graph.groups))
    with InformatServer(as_served_on(JULY, synthetic, following)) as server:
        config = entra_env(server.url)
        files = files_of(config.parent)
        argv = ["plan", "--config", str(config), "--schooljaar", "2026-27", "--json"]
        assert main(argv, seams=seams, source_seams={"today": JULY}) == 2
        preview = json.loads(capsys.readouterr().out)
        assert files_of(config.parent) == files
        assert (graph.users, graph.groups) == directory

        school = next(s for s in preview["transition"]["schools"] if s["school"] == "030569")
        moves = {(m["from"], m["to"]): m["accounts"] for m in school["moves"]}
        continuing = {r["p_persoon"] for r in synthetic.rows["Lln"]}
        into_2lat = sum(
            r["_instelnr"] == "030569" and r["Klascode"] == "2LAT" and r["p_persoon"] in continuing
            for r in following.rows["Lln"]
        )
        assert moves[("klas-030569-1A", "klas-030569-2LAT")] == into_2lat
        assert not any(c["action"] == "move" for c in preview["changes"])

        server.today = SEPTEMBER
        september = config.read_text()
        september = september.replace("schooljaar: 2025-26", "schooljaar: 2026-27")
        september = re.sub(r"referentiedatum: .*", "referentiedatum: today", september)
        config.write_text(september)
        argv = ["plan", "--config", str(config), "--json"]
        assert main(argv, seams=seams, source_seams={"today": SEPTEMBER}) == 2
        real = json.loads(capsys.readouterr().out)
    assert summary_of(real["changes"]) == summary_of(preview["changes"])
    members = {
        (c["action"], c["key"], json.dumps(sorted(c["after"].get("members") or [])))
        for c in real["changes"]
        if c["action"] == "add_member"
    }
    assert members == {
        (c["action"], c["key"], json.dumps(sorted(c["after"].get("members") or [])))
        for c in preview["changes"]
        if c["action"] == "add_member"
    }
