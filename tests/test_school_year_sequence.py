"""The school-year transition night after night, through the command line, on the real Samba DC
and on the Graph server: June → July (the freeze) → a preview of the next year → 1 September
(class moves and new pupils approved) → 8 September (the graduates approved) → October.

Informat is the fake server serving what it serves on each day (``as_served_on``): the old year,
with the graduates' registrations ended on 30 June from July on, and the new year beside it. The
configuration asks for ``schooljaar: auto`` and ``referentiedatum: today``, as a school would; the
day is the source's seam. Asserted each night: the plan, and what the directory holds after it.
"""

# The Graph server, the clock and the command line are test_entra's fixtures, imported by name.
# ruff: noqa: F401, F811

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cli import main
from tests.fakes.informat_server import InformatServer
from tests.fakes.synthetic import SyntheticData, as_served_on, next_school_year
from tests.scenarios import ad_target, pupil, staff
from tests.test_ad import users_below
from tests.test_entra import ROOT, clock, graph, graph_ca, group_anchors, users
from tests.test_school_year_preview import files_of, groups_below, summary_of

JUNE = dt.date(2026, 6, 15)
JULY = dt.date(2026, 7, 10)
SEPTEMBER = dt.date(2026, 9, 1)
A_WEEK_LATER = dt.date(2026, 9, 8)
OCTOBER = dt.date(2026, 10, 12)
GONE_CLASS = "klas-030569-OV3LOG"
NEW_CLASS = "klas-030569-OV4LOG"


def config_text(url: str, mappings: Path, target: str) -> str:
    """What a school configures: the school year and the day follow the calendar; the default
    policy (the freeze 07-01 – 08-31, the limits) and lifecycle."""
    return (
        f"mappings: {mappings}\n"
        "state: state.db\n"
        "source:\n  informat:\n"
        f"    url: {url}\n"
        "    login: webservices@school.be\n"
        "    password: ${TEST_INFORMAT_PASSWORD}\n"
        "    schooljaar: auto\n"
        "    referentiedatum: today\n"
        "    instelnrs: ['030569', '030577']\n" + target
    )


class Nights:
    """The command line on a given day: the source's today is that day."""

    def __init__(self, config: Path, capsys, seams: dict | None = None) -> None:
        self.config = config
        self.capsys = capsys
        self.seams = seams or {}

    def run(self, day: dt.date, *argv: str) -> tuple[int, str]:
        code = main([*argv], seams=self.seams, source_seams={"today": day})
        return code, self.capsys.readouterr().out

    def plan(self, day: dt.date, *extra: str) -> dict:
        code, out = self.run(day, "plan", "--config", str(self.config), "--json", *extra)
        data = json.loads(out)
        assert code == (0 if not data["changes"] and not data["header"]["policy_blocked"] else 2)
        return data

    def apply(self, day: dt.date, *extra: str) -> tuple[int, dict]:
        code, out = self.run(day, "apply", "--config", str(self.config), "--json", *extra)
        return code, json.loads(out) if out.strip().startswith("{") else {"text": out}


def actions_of(plan: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for change in plan["changes"]:
        found.setdefault(change["action"], set()).add(change["key"])
    return found


def leavers_of(following: SyntheticData) -> set[str]:
    n = following.notable
    return {pupil(k) for k in [*n["graduates"].split(","), *n["stoppers"].split(",")]}


@pytest.fixture
def years(synthetic) -> tuple[SyntheticData, SyntheticData]:
    return synthetic, next_school_year(synthetic)


@pytest.fixture
def ad_school(samba_dc, tmp_path, monkeypatch) -> Iterator[tuple[str, str]]:
    """The target section for a managed OU of this test's own (removed afterwards)."""
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_AD_PASSWORD", samba_dc.admin_password)
    root = f"OU=t{secrets.token_hex(4)}"
    yield ad_target(samba_dc, root), root
    samba_dc.connect().delete(
        f"{root},{samba_dc.base_dn}", controls=[("1.2.840.113556.1.4.805", True, None)]
    )


def test_the_school_year_transition_on_the_dc(samba_dc, years, ad_school, tmp_path, capsys):
    this_year, following = years
    target, root = ad_school
    config = tmp_path / "provisioner.yaml"
    nights = Nights(config, capsys)
    leavers = leavers_of(following)

    # June: the old year, applied; the plan after it is empty.
    with InformatServer(as_served_on(JUNE, this_year, following)) as server:
        config.write_text(config_text(server.url, ROOT / "mappings", target))
        code, applied = nights.apply(JUNE)
        assert code == 0, applied
        assert nights.plan(JUNE)["changes"] == []
        june_users = users_below(samba_dc, root)
        june_groups = groups_below(samba_dc, root)
    assert leavers <= june_users.keys()

    # July: the graduates are gone from Informat, but the freeze is whole: no account, no
    # membership, no group of theirs changes.
    with InformatServer(as_served_on(JULY, this_year, following)) as server:
        config.write_text(config_text(server.url, ROOT / "mappings", target))
        july = nights.plan(JULY)
        done = actions_of(july)
        for waiting in ("disable", "delete", "remove_member", "archive_group", "delete_group"):
            assert waiting not in done, (waiting, done[waiting])
        assert any("freeze_leavers" in w for w in july["header"]["warnings"])
        code, applied = nights.apply(JULY)
        assert code == 0, (july["header"]["policy_blocked"], july["header"]["blocked"], done.keys())
        assert users_below(samba_dc, root) == june_users
        assert groups_below(samba_dc, root) == june_groups

        # The preview of the next year: writes nothing, says what September will do.
        files = files_of(tmp_path)
        preview = nights.plan(JULY, "--schooljaar", "2026-27")
        assert files_of(tmp_path) == files
        assert users_below(samba_dc, root) == june_users
        expected = actions_of(preview)
        assert leavers <= expected["disable"]
        assert GONE_CLASS in expected["archive_group"] and NEW_CLASS in expected["create_group"]

    # 1 September: the new year. The plan is what the preview said; it needs approvals.
    with InformatServer(as_served_on(SEPTEMBER, this_year, following)) as server:
        config.write_text(config_text(server.url, ROOT / "mappings", target))
        september = nights.plan(SEPTEMBER)
        assert summary_of(september["changes"]) == summary_of(preview["changes"])
        categories = {b["category"] for b in september["header"]["policy_blocks"]}
        assert {"moves", "leavers"} <= categories
        code, _ = nights.apply(SEPTEMBER)
        assert code == 2 and users_below(samba_dc, root) == june_users  # blocked: nothing done

        # Class moves and new pupils first; the graduates wait, enabled where they were.
        code, step = nights.apply(SEPTEMBER, "--approve", "moves", "--reason", "new classes")
        assert code == 2  # changes wait for approval
        assert step["approval"]["categories"] == ["moves"]
        (waiting,) = step["waiting"]
        assert waiting["categories"] == ["leavers"] and waiting["counts"]["disable"] >= len(leavers)
        after = users_below(samba_dc, root)
        newcomers = {pupil(k) for k in following.notable["first_graders"].split(",")}
        assert newcomers <= after.keys()
        for anchor in leavers:
            assert after[anchor]["dn"] == june_users[anchor]["dn"]
            assert int(after[anchor]["userAccountControl"]) & 2 == 0  # still enabled
        moved = [k for k in expected["move"] if k in june_users and k not in leavers]
        assert moved and all(after[k]["dn"] != june_users[k]["dn"] for k in moved)

    # A week later: the graduates' disables, approved on their own.
    with InformatServer(as_served_on(A_WEEK_LATER, this_year, following)) as server:
        config.write_text(config_text(server.url, ROOT / "mappings", target))
        pending = nights.plan(A_WEEK_LATER)
        assert leavers <= actions_of(pending)["disable"]
        assert {b["category"] for b in pending["header"]["policy_blocks"]} == {"leavers"}
        code, _ = nights.apply(A_WEEK_LATER, "--approve", "leavers")
        assert code == 0
        after = users_below(samba_dc, root)
        assert all(int(after[a]["userAccountControl"]) & 2 for a in leavers)  # disabled
        disable = next(c for c in pending["changes"] if c["action"] == "disable")
        assert "deletion due on 2026-12-07" in " ".join(disable["why"])  # 90 days after the disable
        groups = groups_below(samba_dc, root)
        archived = [dn for dn in groups if dn.startswith(f"CN={GONE_CLASS},OU=Archief,")]
        assert archived and groups[archived[0]]  # kept, with its members
        assert nights.plan(A_WEEK_LATER)["changes"] == []

    # October: nothing is deleted yet (the grace counts from the disable), nothing to do.
    with InformatServer(as_served_on(OCTOBER, this_year, following)) as server:
        config.write_text(config_text(server.url, ROOT / "mappings", target))
        assert nights.plan(OCTOBER)["changes"] == []


def test_the_school_year_transition_in_entra(graph, clock, years, tmp_path, capsys, monkeypatch):
    from tests.test_entra import SECRET, entra_target

    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_ENTRA_SECRET", SECRET)
    this_year, following = years
    target = entra_target(graph)
    mappings = ROOT / "examples/entra/mappings"
    config = tmp_path / "provisioner.yaml"
    nights = Nights(config, capsys, seams={"sleep": clock.wait, "clock": clock})
    leavers = leavers_of(following)

    def enabled() -> dict[str, bool]:
        return {anchor: user["accountEnabled"] for anchor, user in users(graph).items()}

    def members() -> dict[str, set[str]]:
        return {
            g["mailNickname"]: group_anchors(graph, g["mailNickname"])
            for g in graph.groups.values()
        }

    with InformatServer(as_served_on(JUNE, this_year, following)) as server:
        config.write_text(config_text(server.url, mappings, target))
        assert nights.apply(JUNE)[0] == 0
        assert nights.plan(JUNE)["changes"] == []
        june_enabled, june_members = enabled(), members()
    assert leavers <= june_enabled.keys()

    # July: the freeze is whole.
    with InformatServer(as_served_on(JULY, this_year, following)) as server:
        config.write_text(config_text(server.url, mappings, target))
        done = actions_of(nights.plan(JULY))
        for waiting in ("disable", "delete", "remove_member", "archive_group", "delete_group"):
            assert waiting not in done, (waiting, done[waiting])
        assert nights.apply(JULY)[0] == 0
        assert enabled() == june_enabled and members() == june_members
        preview = nights.plan(JULY, "--schooljaar", "2026-27")
        assert enabled() == june_enabled

    # September: what the preview said; everything but the leavers first, then the leavers.
    with InformatServer(as_served_on(SEPTEMBER, this_year, following)) as server:
        config.write_text(config_text(server.url, mappings, target))
        september = nights.plan(SEPTEMBER)
        assert summary_of(september["changes"]) == summary_of(preview["changes"])
        categories = {b["category"] for b in september["header"]["policy_blocks"]}
        assert "leavers" in categories
        first = ",".join(sorted(categories - {"leavers"})) or None
        if first:
            assert nights.apply(SEPTEMBER, "--approve", first)[0] == 2
        else:  # nothing but the leavers is over a limit: the night itself applies the rest
            assert nights.apply(SEPTEMBER, "--approve", "moves")[0] == 2
        now = enabled()
        assert all(now[a] for a in leavers)  # the graduates wait, enabled
        newcomers = {pupil(k) for k in following.notable["first_graders"].split(",")}
        assert newcomers <= now.keys()

    with InformatServer(as_served_on(A_WEEK_LATER, this_year, following)) as server:
        config.write_text(config_text(server.url, mappings, target))
        assert nights.apply(A_WEEK_LATER, "--approve", "leavers")[0] == 0
        now = enabled()
        assert not any(now[a] for a in leavers)
        archived = next(
            g for g in graph.groups.values() if g["mailNickname"].casefold().endswith("ov3log")
        )
        assert archived["displayName"].startswith("(archief) ")
        assert group_anchors(graph, archived["mailNickname"])  # kept, with its members
        assert nights.plan(A_WEEK_LATER)["changes"] == []

    with InformatServer(as_served_on(OCTOBER, this_year, following)) as server:
        config.write_text(config_text(server.url, mappings, target))
        assert nights.plan(OCTOBER)["changes"] == []
