"""The HTML report in a real browser: a 2,000-account first night and a 60-leaver night, at
desktop (1280 px) and phone (390 px) width. The summary is above the fold, every group is
collapsed, nothing scrolls sideways, and people and group members are shown by name.

Chromium comes from the Debian packages (``scripts/install-chromium``). Without it the test is
skipped, except under ``CI=true``, where a missing browser fails it: the check must run there.
The screenshots are left in ``REPORT_SCREENSHOTS`` (a directory) when that is set, to look at.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.plan.model import (
    Action,
    Change,
    Kind,
    Plan,
    PlanHeader,
    PolicyBlock,
    Precondition,
)
from provisioner.report.html import render_html
from provisioner.report.plan import render_plan
from provisioner.targets.base import Result
from tests.browser import Browser, Page, find_chromium

SCHOOLS = {"030569": "Sint-Jozefscollege", "030577": "Onze-Lieve-Vrouwinstituut"}
FIRST_NAMES = ["Lotte", "Noah", "Fien", "Mohamed", "Louise", "Arthur", "Chloë", "Jules", "Ella"]
LAST_NAMES = ["Peeters", "Janssens", "Maes", "D'Hondt", "Van den Broeck", "El Amrani", "Claes"]
COMMAND = "provisioner apply --config school.yaml"
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}

PROBE = """JSON.stringify({
  width: innerWidth,
  height: innerHeight,
  scrollWidth: document.documentElement.scrollWidth,
  scrollHeight: document.documentElement.scrollHeight,
  summaryTop: document.getElementById('summary').getBoundingClientRect().top,
  summaryHeading: document.querySelector('#summary h2').getBoundingClientRect().bottom,
  schoolTable: document.getElementById('per-school').getBoundingClientRect().top,
  groups: document.querySelectorAll('details.group').length,
  open: document.querySelectorAll('details[open]').length,
  text: document.body.innerText
})"""


OPEN_ALL = """document.querySelectorAll('details').forEach(function(d){d.open=true});
document.getElementById('changes').scrollIntoView()"""


def _name(number: int) -> tuple[str, str]:
    first = FIRST_NAMES[number % len(FIRST_NAMES)]
    last = LAST_NAMES[(number // len(FIRST_NAMES)) % len(LAST_NAMES)]
    return f"{first} {last}", f"{first}.{last}{number}".lower().replace(" ", "").replace("'", "")


def _header(**fields: Any) -> PlanHeader:
    return PlanHeader(
        created="2026-09-01T00:30:00+00:00",
        expires="2026-09-01T12:30:00+00:00",
        config_hash="0" * 64,
        mappings_hash="0" * 64,
        source_hash="0" * 64,
        target="ldaps://dc1.school.be DC=school,DC=be",
        source_as_of="2026-09-01",
        school_names=dict(SCHOOLS),
        **fields,
    )


def first_night(accounts: int = 2000) -> Plan:
    """Every account new: OUs, accounts and one class group per 25 pupils with its members."""
    changes: list[Change] = []
    people: dict[str, dict[str, str]] = {}
    schools: dict[str, str] = {}
    classes: dict[str, list[str]] = {}
    group_names: dict[str, str] = {}
    numbers = list(SCHOOLS)
    for number in range(accounts):
        anchor = str(1_100_000 + number)
        school = numbers[number % 2]
        klas = f"klas-{school}-{1 + (number // 2) % 6}{'ABCDEF'[(number // 12) % 6]}"
        group_names[klas] = f"Klas {klas.rsplit('-', 1)[1]} ({SCHOOLS[school]})"
        name, username = _name(number)
        people[anchor] = {"name": name, "username": username, "group": klas}
        schools[anchor] = school
        classes.setdefault(klas, []).append(anchor)
        changes.append(
            Change(
                Action.CREATE,
                Kind.ACCOUNT,
                anchor,
                f"CN={username},OU={school},OU=Leerlingen,DC=school,DC=be",
                after={
                    "displayName": name,
                    "sAMAccountName": username,
                    "userPrincipalName": f"{username}@leerling.school.be",
                    "department": klas,
                },
                why=("displayName from {{ Lln.Voornaam }} {{ Lln.Naam }}",),
                precondition=Precondition(absent=True),
            )
        )
    for klas, members in sorted(classes.items()):
        where = f"CN={klas},OU=Klassen,DC=school,DC=be"
        changes.append(Change(Action.CREATE_GROUP, Kind.GROUP, klas, where, after={"cn": klas}))
        changes.append(
            Change(Action.ADD_MEMBER, Kind.GROUP, klas, where, after={"members": members})
        )
    header = _header(
        people=people,
        account_schools=schools,
        group_names=group_names,
        persons={school: accounts // 2 for school in SCHOOLS},
    )
    return Plan(header, sorted(changes, key=lambda c: c.action.order))


def leaver_night(leavers: int = 60) -> Plan:
    """Sixty pupils gone: disabled and moved out, taken out of their classes; a policy block."""
    changes: list[Change] = []
    people: dict[str, dict[str, str]] = {}
    schools: dict[str, str] = {}
    dates: dict[str, dict[str, str | None]] = {}
    out_of: dict[str, list[str]] = {}
    numbers = list(SCHOOLS)
    for number in range(leavers):
        anchor = str(1_200_000 + number)
        school = numbers[number % 2]
        klas = f"klas-{school}-6{'AB'[number % 2]}"
        name, username = _name(number)
        people[anchor] = {"name": name, "username": username, "group": klas}
        schools[anchor] = school
        dates[anchor] = {"gone": "2026-07-01", "disable": "2026-09-01", "delete": "2026-11-30"}
        out_of.setdefault(klas, []).append(anchor)
        dn = f"CN={username},OU={school},OU=Leerlingen,DC=school,DC=be"
        changes.append(
            Change(
                Action.DISABLE,
                Kind.ACCOUNT,
                anchor,
                dn,
                before={"enabled": "true"},
                after={"enabled": "false"},
                why=("gone from the source since 2026-07-01; deletion due on 2026-11-30",),
            )
        )
    for klas, members in out_of.items():
        changes.append(
            Change(
                Action.REMOVE_MEMBER,
                Kind.GROUP,
                klas,
                f"CN={klas},OU=Klassen,DC=school,DC=be",
                before={"members": members},
            )
        )
    block = PolicyBlock(
        "leavers",
        f"{leavers} account disables exceed max_disable 5%; if this is right, approve them",
    )
    header = _header(
        people=people,
        account_schools=schools,
        leaver_dates=dates,
        group_names={k: f"Klas {k.rsplit('-', 1)[1]}" for k in out_of},
        policy_blocks=[block],
        policy_blocked=[block.message],
        held=[
            {
                "kind": "pupils",
                "key": "1234567",
                "school": "030569",
                "reason": "Lln.Naam: empty",
                "anchor": "1234567",
                "dataset": "Lln",
                "field": "Naam",
                "since": "2026-09-01",
                "nights": 1,
            }
        ],
    )
    return Plan(header, sorted(changes, key=lambda c: c.action.order))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = find_chromium() if os.name == "posix" else None
    if executable is None:
        message = "Chromium is not installed (scripts/install-chromium installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": under CI the report must be checked in a browser")
        pytest.skip(message)
    with Browser(executable) as running:
        yield running


SEARCH = """(function(){var box=document.getElementById('search');box.value=%s;
box.dispatchEvent(new Event('input'));
var shown=[].filter.call(document.querySelectorAll('.item'),function(i){return i.offsetParent!==null});
return JSON.stringify({visible:!box.hidden,found:document.getElementById('found').textContent,
open:document.querySelectorAll('details.group[open]').length,
shown:shown.map(function(i){return i.innerText})});})()"""


def _look(
    browser: Browser, html: str, where: Path, name: str, search: str = ""
) -> dict[str, dict[str, Any]]:
    page_file = where / f"{name}.html"
    page_file.write_text(html, encoding="utf-8")
    seen = {}
    shots = os.environ.get("REPORT_SCREENSHOTS")
    for label, (width, height) in WIDTHS.items():
        page: Page = browser.open(page_file, width, height)
        seen[label] = page.evaluate(PROBE)
        if search:
            seen[label + " search"] = page.evaluate(SEARCH % json.dumps(search))
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(Path(shots) / f"{name}-{label}.png")
            page.evaluate(OPEN_ALL)
            page.screenshot(Path(shots) / f"{name}-{label}-open.png")
    return {label: json.loads(found) for label, found in seen.items()}


def _fits(seen: dict[str, Any], width: int, height: int) -> None:
    assert seen["width"] == width
    assert seen["scrollWidth"] <= width, "the page scrolls sideways"
    assert seen["summaryTop"] < height and seen["schoolTable"] < height, "summary below the fold"
    assert seen["groups"] > 0 and seen["open"] == 0, "a group is open"


def test_a_first_night_of_2000_accounts_reads_on_desktop_and_phone(browser, tmp_path):
    plan = first_night()
    html = render_html(plan, command=COMMAND)
    seen = _look(browser, html, tmp_path, "first-night", search="1101999")
    for label, (width, height) in WIDTHS.items():
        _fits(seen[label], width, height)
        # The search box finds one person of 2,000 and opens their school and class only.
        found = seen[label + " search"]
        assert found["visible"] and found["found"] == "1 found" and found["open"] == 2
        assert len(found["shown"]) == 1 and "anchor 1101999" in found["shown"][0]
        text = seen[label]["text"]
        # The summary by school name with the counts; groups collapsed show only their heads.
        assert "Onze-Lieve-Vrouwinstituut" in text and "Sint-Jozefscollege" in text
        assert "030569" not in text.split("Changes")[0]
        assert "(1000 new)" in text
        assert "Lotte Peeters" not in text  # inside a collapsed group
        # Short: the heads of the schools and the groups, not 2,000 cards.
        assert seen[label]["scrollHeight"] < 3 * height
    # People by name and username with the anchor in small print, members by name.
    assert "<strong>Lotte Peeters</strong> <small>lotte.peeters0 · anchor 1100000</small>" in html
    assert "members (" in html and "Noah Peeters (noah.peeters1)" in html
    assert ">1100001<" not in html and ", 1100001" not in html
    assert "Klas 1A (Sint-Jozefscollege)" in html
    assert "1 Sep 2026 02:30 CEST" in html  # local time, not UTC


def test_a_night_of_60_leavers_shows_their_dates_and_the_approve_command(browser, tmp_path):
    plan = leaver_night()
    html = render_html(plan, command=COMMAND)
    seen = _look(browser, html, tmp_path, "leavers")
    for label, (width, height) in WIDTHS.items():
        _fits(seen[label], width, height)
        text = seen[label]["text"]
        assert f"approve with {COMMAND} --approve leavers" in text
        assert "Leavers" in text and "(30 leavers)" in text
        assert "Held (1)" in text
    assert "pupils 1234567 (school Sint-Jozefscollege), held tonight: Lln.Naam: empty" in html
    assert "left 2026-07-01; disabled 2026-09-01; deleted 2026-11-30" in html
    assert "Lotte Peeters (lotte.peeters0)" in html  # removed from the class, by name


def test_an_applied_night_says_what_was_applied_skipped_and_failed_and_why(browser, tmp_path):
    plan = leaver_night()
    results = [
        Result(change, "failed" if index == 3 else "applied", "the DC did not answer")
        for index, change in enumerate(plan.changes)
    ]
    html = render_html(plan, results, command=COMMAND)
    seen = _look(browser, html, tmp_path, "applied")
    for label, (width, height) in WIDTHS.items():
        _fits(seen[label], width, height)
        assert "Applied 61, skipped 0, failed 1" in seen[label]["text"]
    failed = plan.changes[3]
    name = plan.header.people[failed.key]["name"]
    assert (
        f"<strong>{name}</strong>"
        in html.split("<span class='res res-failed'>")[0].rsplit("<li", 1)[1]
    )
    assert "failed: the DC did not answer" in html


def test_the_text_plan_groups_by_school_and_class_with_names():
    text = render_plan(leaver_night(), command=COMMAND)
    lines = text.splitlines()
    school = lines.index("Onze-Lieve-Vrouwinstituut (30 leavers)")
    klas = lines.index("  Klas 6B (30)", school)
    noah = lines.index("    - Noah Peeters (noah.peeters1) [anchor 1200001] disable", klas)
    assert all(line.startswith("    ") for line in lines[klas + 1 : noah])  # in Klas 6B
    assert lines[noah + 1] == "        left 2026-07-01; disabled 2026-09-01; deleted 2026-11-30"
    assert "Per school:" in lines and "  Sint-Jozefscollege: 30 leavers, 1 held" in lines
    members = next(line for line in lines if line.startswith("      members: "))
    assert "Arthur D'Hondt (arthur.dhondt32)" in members and "12000" not in members
    assert "Sint-Jozefscollege (30 leavers, 1 held)" in lines


def test_local_time_follows_tz(monkeypatch):
    from provisioner.report.grouping import local_time

    monkeypatch.setenv("TZ", "America/New_York")
    assert local_time("2026-09-01T00:30:00+00:00") == "31 Aug 2026 20:30 EDT"
    monkeypatch.delenv("TZ")
    assert local_time("2026-12-01T12:00:00+00:00") == "1 Dec 2026 13:00 CET"
    assert local_time(dt.date(2026, 1, 1).isoformat()) == "2026-01-01"


# -- the names in the plan header, made by the planner -------------------------------------------


def test_the_planner_puts_names_classes_and_leaver_dates_in_the_header(tmp_path):
    import jsonschema

    from provisioner.plan.lifecycle import LifecycleConfig
    from provisioner.plan.planfile import load_plan, plan_to_json, save_plan
    from provisioner.plan.planner import Memory, Origin, Rules, make_plan
    from tests.test_plan import account, desired, observed_from

    day = dt.date(2026, 9, 1)
    stays = account("1", "jan.peeters", displayName="Jan Peeters")
    newcomer = account("2", "an.maes", displayName="An Maes")
    leaver = account("3", "els.claes", displayName="Els Claes")
    before = desired(stays, leaver, groups={"klas-1A": {"1", "3"}, "leerlingen": {"1", "3"}})
    tonight = desired(stays, newcomer, groups={"klas-1A": {"1", "2"}, "leerlingen": {"1", "2"}})
    plan = make_plan(
        tonight,
        observed_from(before),
        origin=Origin("a" * 64, "b" * 64, "c" * 64, day, "a test directory"),
        rules=Rules(lifecycle=LifecycleConfig(delete_after_days={"pupils": 90})),
        memory=Memory(leavers={"3": dt.date(2026, 8, 20)}, kinds={"3": "pupils"}),
        school_names={"030569": "Sint-Jozefscollege"},
    )
    header = plan.header
    assert header.school_names == {"030569": "Sint-Jozefscollege"}
    # The smallest group is the class; the school-wide group is not.
    assert header.people["2"] == {"name": "An Maes", "username": "an.maes", "group": "klas-1A"}
    assert header.people["3"]["name"] == "Els Claes"  # a leaver, named from the directory
    assert header.leaver_dates == {
        "3": {"gone": "2026-08-20", "disable": "2026-09-01", "delete": "2026-11-30"}
    }
    assert header.group_names["klas-1A"] == "klas-1A"  # the cn where there is no displayName
    document = plan_to_json(plan)
    schema = json.loads(
        (Path(__file__).parent.parent / "provisioner" / "schemas" / "plan.schema.json").read_text()
    )
    jsonschema.validate(document, schema)
    save_plan(plan, tmp_path / "plan.json", None)
    assert load_plan(tmp_path / "plan.json").header.people == header.people
    # An older plan file, without the names: read as before, shown by anchor.
    del document["header"]["people"], document["header"]["school_names"]
    (tmp_path / "old.json").write_text(json.dumps(document))
    old = load_plan(tmp_path / "old.json")
    assert old.header.people == {} and "[anchor 2]" in render_plan(old)
    assert "Els Claes (els.claes) [anchor 3] disable" in render_plan(plan)
