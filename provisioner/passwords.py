"""Initial passwords: made at apply time, set over TLS, handed out on sheets, kept nowhere else.

A password exists in memory between its creation and the sheet; it is never written to a plan
file, the state store or a log. Sheets are written readable by their owner only, one HTML page
per OU (for pupils: per class, for the class teacher) and one CSV, and list only the accounts
created in that run.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import os
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# Short, common, unambiguous Dutch words: easy to read aloud to a twelve-year-old and to type.
WORDS = [
    "appel",
    "bal",
    "boom",
    "boot",
    "brug",
    "bus",
    "dak",
    "deur",
    "dorp",
    "duif",
    "eend",
    "fiets",
    "gras",
    "hond",
    "huis",
    "jas",
    "kaas",
    "kat",
    "kers",
    "klok",
    "koe",
    "lamp",
    "maan",
    "mes",
    "muis",
    "noot",
    "oven",
    "pen",
    "peer",
    "poes",
    "raam",
    "regen",
    "roos",
    "schip",
    "slak",
    "sok",
    "ster",
    "stoel",
    "tafel",
    "tak",
    "tent",
    "tijger",
    "trein",
    "tuin",
    "uil",
    "vis",
    "vlag",
    "vogel",
    "vos",
    "wolk",
    "zand",
    "zee",
    "zon",
    "zwaan",
]
_RANDOM = string.ascii_letters + string.digits
_AMBIGUOUS = set("Il1O0o")


@dataclass
class PasswordConfig:
    style: Literal["words", "random"] = "words"
    """``words``: Boom-Vis-Wolk-42 (readable); ``random``: letters and digits."""
    length: int = 3
    """Words for ``words`` (at least 2), characters for ``random`` (at least 10)."""
    sheets: Path | None = None
    """Directory for the hand-out sheets; default: ``password-sheets`` next to the state store."""

    def __post_init__(self) -> None:
        minimum = 2 if self.style == "words" else 10
        if self.length < minimum:
            raise ValueError(f"length must be at least {minimum} for style {self.style}")


def generate(config: PasswordConfig) -> str:
    """A new password; every form has upper case, lower case and digits (AD's complexity rule)."""
    if config.style == "words":
        words = [secrets.choice(WORDS).capitalize() for _ in range(config.length)]
        return "-".join(words) + f"-{secrets.randbelow(90) + 10}"
    alphabet = [c for c in _RANDOM if c not in _AMBIGUOUS]
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(config.length))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
        ):
            return password


@dataclass(frozen=True)
class Handout:
    username: str
    name: str
    group: str
    """What the sheet is per: the OU path (the class for pupils, the school for staff)."""
    password: str = field(repr=False)


def handout_group(ou: object, department: object) -> str:
    """The sheet an account's hand-out goes on: its OU path where the directory has OUs, else its
    department (the class). ``apply`` and ``password reset`` both use this, so one account always
    lands on the same sheet."""
    if isinstance(ou, list | tuple) and ou:
        return " / ".join(map(str, ou))
    return str(department or "(root)")


def write_sheets(handouts: Iterable[Handout], directory: Path, when: dt.datetime) -> list[Path]:
    """One HTML sheet per group (a page each, to print and cut) and one CSV; mode 0600."""
    by_group: dict[str, list[Handout]] = {}
    for handout in handouts:
        by_group.setdefault(handout.group, []).append(handout)
    if not by_group:
        return []
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = when.strftime("%Y%m%d-%H%M%S")
    pages = []
    for group, people in sorted(by_group.items()):
        rows = "".join(
            f"<tr><td>{html.escape(p.name)}</td><td><code>{html.escape(p.username)}</code></td>"
            f"<td><code>{html.escape(p.password)}</code></td></tr>"
            for p in sorted(people, key=lambda p: p.name.casefold())
        )
        pages.append(
            f'<section class="page"><h1>{html.escape(group)}</h1>'
            f"<p>New accounts, {when:%d-%m-%Y}. Hand each person their own line.</p>"
            f"<table><tr><th>Name</th><th>Username</th><th>Password</th></tr>{rows}</table>"
            "</section>"
        )
    page = (
        '<!doctype html><html lang="nl"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Initial passwords</title><style>"
        "body{font-family:sans-serif}table{border-collapse:collapse;width:100%}"
        "td,th{border:1px solid #999;padding:.4em;text-align:left}code{font-size:1.2em}"
        ".page{page-break-after:always}</style></head><body>" + "".join(pages) + "</body></html>"
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["group", "name", "username", "password"])
    for group, people in sorted(by_group.items()):
        for p in sorted(people, key=lambda p: p.name.casefold()):
            writer.writerow([group, p.name, p.username, p.password])
    # Never overwrite a sheet: two runs in one second get -2, -3 … after the time stamp.
    base, n = f"passwords-{stamp}", 1
    while (directory / f"{base}.html").exists() or (directory / f"{base}.csv").exists():
        n += 1
        base = f"passwords-{stamp}-{n}"
    written = []
    for path, text in (
        (directory / f"{base}.html", page),
        (directory / f"{base}.csv", buffer.getvalue()),
    ):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        written.append(path)
    return written
