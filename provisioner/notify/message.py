"""What a night's message says, for an ICT coordinator who is not a programmer: the subject, the
text (e-mail, Slack), a Teams Adaptive Card, and the night as JSON.

Every string that leaves here has passed :func:`provisioner.log.redact`: no registered secret and
nothing shaped like a national number, whatever an error message or a held reason carried. Held
persons are named by their key and school with the field and reason, never a value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

from provisioner.log import redact
from provisioner.notify.night import NightReport, SchoolNight

HELD_LISTED = 50
"""Held persons named one by one in a message; the rest are counted (the report lists them)."""
HELD_LISTED_CARD = 20
"""A Teams card holds about 28 KB: fewer there."""

_HEADLINES = {
    "applied": "Changes applied",
    "nothing": "Nothing to change",
    "blocked": "BLOCKED: nothing was changed",
    "waiting": "Applied, but some changes wait for your approval",
    "failed": "FAILED",
}
_CARD_COLOURS = {
    "applied": "Good",
    "nothing": "Good",
    "blocked": "Warning",
    "waiting": "Warning",
    "failed": "Attention",
}
_ACTION_ORDER = ("create", "update", "move", "rename", "enable", "disable", "delete")


def subject(night: NightReport, *, test: bool = False) -> str:
    """One line that says what happened, for a subject or a notification banner."""
    name = PurePath(night.config).name or night.config
    if test:
        return redact(f"Provisioner {name}: a test message")
    what = _HEADLINES[night.outcome]
    if night.outcome == "applied":
        applied = night.results.get("applied", 0)
        what = f"{applied} change{'' if applied == 1 else 's'} applied"
    extras = []
    if night.outcome == "failed" and night.results.get("failed"):
        extras.append(f"{night.results['failed']} change(s) failed")
    if night.held:
        extras.append(f"{len(night.held)} person{'' if len(night.held) == 1 else 's'} held")
    if night.warnings:
        extras.append(f"{len(night.warnings)} warning{'' if len(night.warnings) == 1 else 's'}")
    tail = f" ({', '.join(extras)})" if extras else ""
    return redact(f"Provisioner {name}, night of {_day(night.started)}: {what}{tail}")


def summary(night: NightReport, *, test: bool = False) -> str:
    """What happened and what to do, in two or three sentences."""
    if test:
        return (
            "This is a test of the notifications: if you read this, the message of a blocked or "
            "failed night reaches you here too. Nothing was read or changed."
        )
    if night.outcome == "blocked":
        return (
            "Nothing was changed tonight: the plan was stopped for a reason below. Check the "
            "reasons and the report in the run folder. If the changes are right, approve them "
            "with the command below; if not, fix the cause (usually in Informat) and the next "
            "night tries again by itself."
        )
    if night.outcome == "waiting":
        return (
            "Tonight's changes were applied, except the ones that wait for an approval (see "
            "below). Check them in the report; approve them with the command below, or leave "
            "them and they keep waiting."
        )
    if night.outcome == "failed":
        return (
            "The night did not finish as it should: see the error and the failed changes below. "
            "The log in the run folder has the details. Fix the cause; the next night tries again."
        )
    if night.outcome == "nothing":
        return "Everything already matched Informat: nothing was changed."
    return "Tonight's changes were applied."


def _day(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d")


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _changes(changes: dict[str, int]) -> str:
    # The usual order first (create … delete), then anything else alphabetically.
    rank = {action: i for i, action in enumerate(_ACTION_ORDER)}
    ordered = sorted(changes, key=lambda action: (rank.get(action, len(rank)), action))
    parts = [f"{changes[action]} {action}" for action in ordered if changes[action]]
    return ", ".join(parts) if parts else "no changes"


def school_lines(night: NightReport) -> list[str]:
    """One line per school: its name (and number), its changes, its held persons."""
    lines = []
    for school in night.schools:
        label = school.name if school.name == school.number else f"{school.name} ({school.number})"
        lines.append(f"{label}: {_changes(school.changes)}{_held_count(school)}")
    return lines


def _held_count(school: SchoolNight) -> str:
    return f"; {school.held} held" if school.held else ""


def _school_name(schools: Iterable[SchoolNight], number: Any) -> str:
    for school in schools:
        if school.number == str(number):
            return school.name
    return str(number) if number not in (None, "") else "no school"


def held_lines(night: NightReport, limit: int = HELD_LISTED) -> list[str]:
    """One line per held person: who (kind and key), where, which field, why and since when —
    never the value that was wrong."""
    lines = []
    for person in night.held[:limit]:
        kind = person.get("kind") or "person"
        where = _school_name(night.schools, person.get("school"))
        field = person.get("field")
        about = f"{person.get('dataset')}.{field}" if person.get("dataset") and field else field
        since = person.get("since")
        nights = person.get("nights")
        how_long = ""
        if since:
            how_long = f" (held since {since}"
            how_long += f", {nights} night{'' if nights == 1 else 's'})" if nights else ")"
        line = f"{kind} {person.get('key')} at {where}"
        if about:
            line += f", {about}"
        lines.append(f"{line}: {person.get('reason') or 'no reason given'}{how_long}")
    if len(night.held) > limit:
        lines.append(f"… and {len(night.held) - limit} more: see the report in the run folder")
    return lines


def count_line(night: NightReport) -> str:
    if not night.results:
        return "nothing was applied"
    return ", ".join(f"{number} {what}" for what, number in night.results.items())


def text(night: NightReport, *, test: bool = False) -> str:
    """The whole message as plain text (the e-mail body)."""
    out = [subject(night, test=test), "", summary(night, test=test)]

    def section(title: str, lines: list[str]) -> None:
        if lines:
            out.extend(["", f"{title}:", *(f"  - {line}" for line in lines)])

    if night.error:
        out.extend(["", "Error:", f"  {night.error}"])
    section(_blocks_title(night), night.blocks)
    if night.approve_command:
        out.extend(
            [
                "",
                "To apply this plan after checking it, run (with your reason between the quotes):",
                f"  {night.approve_command}",
            ]
        )
    section("Per school", school_lines(night))
    section(
        f"Held persons ({len(night.held)}; their accounts were left exactly as they are)",
        held_lines(night),
    )
    out.extend(["", f"Counts: {count_line(night)}"])
    section("Warnings (act before they stop a night)", night.warnings)
    out.extend(["", *_facts_text(night, test=test)])
    return redact("\n".join(out)) + "\n"


def _blocks_title(night: NightReport) -> str:
    if night.outcome == "blocked":
        return "Why the plan was stopped"
    return "Waiting for an approval"


def facts(night: NightReport, *, test: bool = False) -> list[tuple[str, str]]:
    """Where and when: what a coordinator needs to find the night back."""
    if test:
        return [("Configuration", night.config), ("Sent", _time(night.started))]
    rows = [
        ("Outcome", night.outcome),
        ("Configuration", night.config),
        ("Started", _time(night.started)),
        ("Finished", _time(night.finished)),
        ("Exit code", str(night.exit_code)),
    ]
    if night.target:
        rows.append(("Target", night.target))
    if night.run_folder:
        rows.append(("Run folder", night.run_folder))
        # Named as a path in the folder's own style (a Windows folder keeps its backslashes).
        separator = "\\" if "\\" in night.run_folder and "/" not in night.run_folder else "/"
        rows.append(("Report", night.run_folder.rstrip("/\\") + separator + "report.html"))
    return rows


def _facts_text(night: NightReport, *, test: bool = False) -> list[str]:
    return [f"{name}: {value}" for name, value in facts(night, test=test)]


# -- payloads --------------------------------------------------------------------------------------


def redacted(value: Any) -> Any:
    """Every string inside *value* redacted; the structure stays as it is."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    return value


def _text_block(content: str, **style: Any) -> dict[str, Any]:
    """Text of our own: a TextBlock reads it as Markdown."""
    return {"type": "TextBlock", "text": content, "wrap": True, **style}


def _plain(content: str, *, spacing: str = "Small", **run: Any) -> dict[str, Any]:
    """Text from elsewhere (a reason, a key, a path, a command), shown exactly as it is: a TextRun
    is never read as Markdown, so "max_disable … student_id" keeps its underscores and a command
    can be copied as it stands."""
    return {
        "type": "RichTextBlock",
        "spacing": spacing,
        "inlines": [{"type": "TextRun", "text": content, **run}],
    }


def _bullets(title: str, lines: list[str], **run: Any) -> list[dict[str, Any]]:
    if not lines:
        return []
    heading = _text_block(title, weight="Bolder", spacing="Medium")
    return [heading, *(_plain(f"• {line}", **run) for line in lines)]


def teams_card(night: NightReport, *, test: bool = False) -> dict[str, Any]:
    """An Adaptive Card 1.4, as a Teams Workflows webhook ("Post to a channel when a webhook
    request is received") takes it."""
    body: list[dict[str, Any]] = [
        _plain(
            subject(night, test=test),
            spacing="None",
            size="Large",
            weight="Bolder",
            color=_CARD_COLOURS[night.outcome],
        ),
        _text_block(summary(night, test=test)),
    ]
    if night.error:
        body += [
            _text_block("Error", weight="Bolder", spacing="Medium"),
            _plain(night.error, color="Attention"),
        ]
    body += _bullets(_blocks_title(night), night.blocks, color="Warning")
    if night.approve_command:
        body += [
            _text_block(
                "To apply this plan after checking it, run (with your reason between the quotes):",
                weight="Bolder",
                spacing="Medium",
            ),
            _plain(night.approve_command, fontType="Monospace"),
        ]
    if night.schools:
        body.append(_text_block("Per school", weight="Bolder", spacing="Medium"))
        body += [
            _plain(f"{school.name}: {_changes(school.changes)}{_held_count(school)}")
            for school in night.schools
        ]
    body += _bullets(
        f"Held persons ({len(night.held)}; their accounts were left exactly as they are)",
        held_lines(night, HELD_LISTED_CARD),
    )
    body.append(_plain(f"Counts: {count_line(night)}", spacing="Medium"))
    body += _bullets("Warnings (act before they stop a night)", night.warnings, color="Warning")
    body += [
        {
            "type": "RichTextBlock",
            "spacing": "Medium" if i == 0 else "None",
            "inlines": [
                {"type": "TextRun", "text": f"{name}: ", "weight": "Bolder", "isSubtle": True},
                {"type": "TextRun", "text": value, "isSubtle": True},
            ],
        }
        for i, (name, value) in enumerate(facts(night, test=test))
    ]
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }
    return redacted(
        {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": card,
                }
            ],
        }
    )


SLACK_SECTION = 2900
"""Slack refuses a section text over 3,000 characters."""


def _slack_escape(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(night: NightReport, *, test: bool = False) -> dict[str, Any]:
    """Slack's incoming webhook: ``text`` (the notification) and the message as blocks."""
    parts: list[str] = []
    chunk = ""
    for line in text(night, test=test).splitlines()[1:]:  # the subject is the header
        line = _slack_escape(line)[:SLACK_SECTION]
        if len(chunk) + len(line) + 1 > SLACK_SECTION:
            parts.append(chunk)
            chunk = ""
        chunk += line + "\n"
    parts.append(chunk)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": subject(night, test=test)[:150]}}
    ]
    blocks += [
        {"type": "section", "text": {"type": "mrkdwn", "text": part}}
        for part in parts
        if part.strip()
    ]
    return redacted({"text": subject(night, test=test), "blocks": blocks})


def json_payload(night: NightReport, *, test: bool = False) -> dict[str, Any]:
    """The night as JSON, for any receiver that reads it (a monitoring system, a script)."""
    data = dataclasses.asdict(night)
    data["started"] = night.started.isoformat()
    data["finished"] = night.finished.isoformat()
    data["subject"] = subject(night, test=test)
    data["test"] = test
    return redacted(data)


def payload(night: NightReport, form: str, *, test: bool = False) -> dict[str, Any]:
    if form == "teams":
        return teams_card(night, test=test)
    if form == "slack":
        return slack_payload(night, test=test)
    return json_payload(night, test=test)
