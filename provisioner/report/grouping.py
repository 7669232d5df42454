"""What the HTML report and the text plan share: the changes of a plan grouped by school and
class, the people and groups by name, the per-school summary and times in local time."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provisioner.model import TEAM
from provisioner.plan.model import Action, Change, Kind, Plan, Value

if TYPE_CHECKING:
    from provisioner.targets.base import Result

DEFAULT_TIMEZONE = "Europe/Brussels"
NO_SCHOOL = "(school unknown)"
NO_CLASS = "(no class)"


def local_zone() -> dt.tzinfo:
    """The zone the reports show times in: ``TZ`` when it names a zone (``Europe/Brussels``),
    else Europe/Brussels; UTC only when the system has no zone data at all."""
    for name in (os.environ.get("TZ", "").lstrip(":"), DEFAULT_TIMEZONE):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return dt.UTC


def local_time(text: str, zone: dt.tzinfo | None = None) -> str:
    """An ISO time of a plan header as people read it: ``1 Dec 2026 22:33 CET``; text that is
    no time is shown as it is."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return text
    if moment.tzinfo is None:
        return text
    moment = moment.astimezone(zone or local_zone())
    return f"{moment.day} {moment:%b %Y %H:%M} {moment.tzname() or ''}".rstrip()


@dataclass
class Names:
    """Names for display from a plan header (anchors and keys where a plan file has none)."""

    plan: Plan

    def school(self, number: str) -> str:
        return self.plan.header.school_names.get(number) or number

    def person(self, anchor: str) -> str:
        """``Name (username)``, else the anchor."""
        person = self.plan.header.people.get(anchor)
        if not person:
            return anchor
        name, username = person.get("name", ""), person.get("username", "")
        if name and username:
            return f"{name} ({username})"
        return name or username or anchor

    def group(self, key: str) -> str:
        return self.plan.header.group_names.get(key) or key

    def members(self, value: Value) -> list[str]:
        """The people of a member or owner list by name, sorted as people read them."""
        if not isinstance(value, list):
            return []
        return sorted((self.person(anchor) for anchor in value), key=str.casefold)


@dataclass
class Section:
    """The account changes of one class (or of no class) of one school."""

    name: str
    changes: list[Change] = field(default_factory=list)


@dataclass
class School:
    number: str
    name: str
    sections: dict[str, Section] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    """Summary column → count (see :data:`COLUMNS`)."""

    @property
    def total(self) -> int:
        return sum(len(s.changes) for s in self.sections.values())


COLUMNS = ("new", "moves", "leavers", "other", "held")
"""The summary's columns per school: creates and adoptions, moves, leavers (disables,
deletes and their moves out), other account changes (renames, updates, enables, conflicts)
and held persons."""


def column(change: Change, plan: Plan) -> str:
    if change.key in plan.header.leaver_dates or change.action.is_leaver:
        return "leavers"
    if change.action in (Action.CREATE, Action.ADOPT):
        return "new"
    if change.action is Action.MOVE:
        return "moves"
    return "other"


def by_school(plan: Plan) -> list[School]:
    """The account changes by school (by name) and class (by name), each sorted by name."""
    names = Names(plan)
    header = plan.header
    schools: dict[str, School] = {}

    def school_of(number: str) -> School:
        if number not in schools:
            schools[number] = School(number, names.school(number) if number else NO_SCHOOL)
        return schools[number]

    for change in plan.changes:
        if change.kind is not Kind.ACCOUNT:
            continue
        school = school_of(header.account_schools.get(change.key, ""))
        group = header.people.get(change.key, {}).get("group")
        title = names.group(group) if group else NO_CLASS
        school.sections.setdefault(title, Section(title)).changes.append(change)
        what = column(change, plan)
        # A leaver counts once, whether disabled and moved out or deleted.
        if what != "leavers" or change.action is not Action.MOVE or not _also_leaving(change, plan):
            school.counts[what] = school.counts.get(what, 0) + 1
    for hold in header.held:
        school = school_of(str(hold.get("school") or ""))
        school.counts["held"] = school.counts.get("held", 0) + 1
    for school in schools.values():
        school.sections = dict(sorted(school.sections.items(), key=lambda i: _order(i[0])))
        for section in school.sections.values():
            section.changes.sort(key=lambda c: (names.person(c.key).casefold(), c.action.order))
    return sorted(schools.values(), key=lambda s: (s.number == "", s.name.casefold()))


def _also_leaving(move: Change, plan: Plan) -> bool:
    return any(
        c.key == move.key and c.kind is Kind.ACCOUNT and c.action.is_leaver for c in plan.changes
    )


def _order(title: str) -> tuple[bool, str]:
    return (title == NO_CLASS, title.casefold())


def other_changes(plan: Plan) -> dict[Action, list[Change]]:
    """The group and OU changes by action, groups sorted by name."""
    names = Names(plan)
    out: dict[Action, list[Change]] = {}
    for change in plan.changes:
        if change.kind is not Kind.ACCOUNT:
            out.setdefault(change.action, []).append(change)
    for changes in out.values():
        changes.sort(key=lambda c: names.group(c.key).casefold())
    return dict(sorted(out.items(), key=lambda item: item[0].order))


def team_line(plan: Plan) -> str:
    """``class teams: 12 to create, 1 to archive``: what the plan does to class teams (the
    ``team`` of its group changes), or "" when nothing."""
    counts = {"to create": 0, "to archive": 0, "to unarchive": 0}
    for change in plan.changes:
        team = change.after.get(TEAM)
        if change.kind is not Kind.GROUP or not team:
            continue
        if team == "archived":
            counts["to archive"] += 1
        elif change.before.get(TEAM) == "archived":
            counts["to unarchive"] += 1
        else:
            counts["to create"] += 1
    shown = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    return f"class teams: {shown}" if shown else ""


def leaver_line(change: Change, plan: Plan) -> str:
    """When a leaver left, is disabled and is deleted, or nothing for anyone else."""
    dates = plan.header.leaver_dates.get(change.key)
    if not dates:
        return ""
    delete = dates.get("delete")
    return f"left {dates.get('gone')}; disabled {dates.get('disable')}; " + (
        f"deleted {delete}" if delete else "never deleted (this kind of account is kept)"
    )


def result_of(results: Sequence[Result] | None) -> dict[tuple[str, str, str, str], Result]:
    """Each change's result, found by what the change is (results carry their change)."""
    return {identity(result.change): result for result in results or ()}


def identity(change: Change) -> tuple[str, str, str, str]:
    return (str(change.action), str(change.kind), change.key, change.target)
