"""What the directories' naming rules share: which names a desired state gives, whose they are,
and the checks several rules use. The rules themselves live with each target's settings
(:mod:`provisioner.targets.ad_settings`, :mod:`provisioner.targets.entra_settings`), so that
``validate`` finds a name the directory would refuse without connecting to it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from provisioner.model import DesiredAccount, DesiredGroup, DesiredState
from provisioner.text import hidden_characters, visible

DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
"""A domain name: labels of letters, digits and inner hyphens."""


class Name(NamedTuple):
    """One name the directory would be given, whose it is, and where the mappings make it. (A
    tuple: a night checks five names per person, and a frozen dataclass is slow to make.)"""

    owner: DesiredAccount | DesiredGroup | str
    """The person or group (or the place) the name belongs to."""
    attribute: str
    value: str
    location: str | None = None
    """``file:line`` of the template that makes the value."""

    def problem(self, what: str) -> str:
        shown = visible(self.value)
        if len(shown) > _SHOWN_MAX:  # enough to recognise it; the length is in the message
            shown = shown[: _SHOWN_MAX - 1] + "…"
        made = f" (made by {self.location})" if self.location else ""
        return f"{label(self.owner)}: {self.attribute} '{shown}' {what}{made}"


_SHOWN_MAX = 100


Rule = Callable[[str], list[str]]
"""A naming rule: what is wrong with a value, in words that follow the value (empty: fine)."""


def problems(checks: Iterable[tuple[Name | None, Rule]]) -> list[str]:
    """What each rule finds wrong with its name (a name of None is not given: nothing to check)."""
    return findings(checks).messages


@dataclass
class Findings:
    """What a directory would refuse, split by whom it stops: a person's own value holds only
    that person; a group's or an OU's name is a matter of the mappings and stops the plan."""

    persons: list[tuple[DesiredAccount, str]] = field(default_factory=list)
    """Each person with a value the directory cannot hold, and the message saying which."""
    errors: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        return [message for _person, message in self.persons] + self.errors


def findings(checks: Iterable[tuple[Name | None, Rule]]) -> Findings:
    """What each rule finds wrong with its name, per person where the name is a person's."""
    found = Findings()
    for name, rule in checks:
        if name is None:
            continue
        for what in rule(name.value):
            message = name.problem(what)
            if isinstance(name.owner, DesiredAccount):
                found.persons.append((name.owner, message))
            else:
                found.errors.append(message)
    return found


def anchor_name(account: DesiredAccount, attribute: str) -> Name:
    """The account's anchor as the directory is given it (the target writes it itself)."""
    return Name(account, f"{attribute} (the anchor)", account.anchor)


def label(owner: DesiredAccount | DesiredGroup | str) -> str:
    """The person or group as a coordinator finds it: ``pupils 1234 (Jan Peeters)``, ``group
    klas-1A``. Made only for a name with a problem: most names have none."""
    if isinstance(owner, DesiredAccount):
        shown = owner.attributes.get("displayName")
        name = shown.value if shown is not None else owner.username
        return visible(f"{owner.kind} {owner.anchor} ({name})")
    if isinstance(owner, DesiredGroup):
        return visible(f"group {owner.key}")
    return visible(owner)


def account_name(account: DesiredAccount, attribute: str, default: str | None) -> Name | None:
    """The account's *attribute* as the mappings set it, else *default* (made from the
    username), else None: the directory is not given one."""
    derived = account.attributes.get(attribute)
    if derived is not None:
        return Name(account, attribute, derived.value, derived.why.location)
    if default is None:
        return None
    why = account.username_why
    return Name(account, attribute, default, why.location if why else None)


def group_name(group: DesiredGroup, attribute: str, default: str | None) -> Name | None:
    derived = group.attributes.get(attribute)
    if derived is not None:
        return Name(group, attribute, derived.value, derived.why.location)
    return None if default is None else Name(group, attribute, default)


def ou_names(desired: DesiredState) -> list[Name]:
    """Every OU name the desired state uses, once, with the first account or group in it."""
    seen: dict[str, Name] = {}
    placed: list[tuple[DesiredAccount | DesiredGroup | str, tuple[str, ...]]] = [
        *((a, a.ou) for a in desired.accounts.values()),
        *((g, g.ou) for g in desired.groups.values()),
        *(("OU path " + " / ".join(path), path) for path in sorted(desired.ous)),
    ]
    for owner, path in placed:
        for part in path:
            if part not in seen:
                seen[part] = Name(owner, "OU name", part)
    return list(seen.values())


def ou_findings(desired: DesiredState, rule: Rule) -> Findings:
    """What *rule* finds wrong with each OU name. An OU that only persons are placed in holds
    those persons (their data made the name: a class code with a line break); an OU that a group
    is placed in, or that the mappings name outright, is an error."""
    found = Findings()
    for name in ou_names(desired):
        wrong = rule(name.value)
        if not wrong:
            continue
        holders = [a for a in desired.accounts.values() if name.value in a.ou]
        if isinstance(name.owner, DesiredAccount) and not any(
            name.value in g.ou for g in desired.groups.values()
        ):
            found.persons += [
                (a, Name(a, name.attribute, name.value).problem(what))
                for a in holders
                for what in wrong
            ]
        else:
            found.errors += [name.problem(what) for what in wrong]
    return found


# -- checks the rules share -----------------------------------------------------------------------


def too_long(value: str, limit: int, directory: str) -> list[str]:
    if len(value) > limit:
        return [f"is {len(value)} characters long; {directory} allows at most {limit}"]
    return []


def empty(value: str) -> list[str]:
    return ["is empty"] if not value.strip() else []


def hidden(value: str) -> list[str]:
    if value.isprintable():  # the usual case: every hidden character is unprintable (a test)
        return []
    found = hidden_characters(value)
    if found:
        return [f"holds invisible control or text-direction characters ({', '.join(found)})"]
    return []


def forbidden(value: str, characters: str, directory: str) -> list[str]:
    if _any_of(characters).search(value) is None:  # the usual case, found in one pass
        return []
    found = [char for char in dict.fromkeys(value) if char in characters]
    if found:
        listed = " ".join(f"'{char}'" for char in found)
        return [f"holds characters {directory} does not allow there: {listed}"]
    return []


@functools.cache
def _any_of(characters: str) -> re.Pattern[str]:
    return re.compile(f"[{re.escape(characters)}]")


def only(local: str, allowed: re.Pattern[str], listed: str) -> list[str]:
    """The characters of a user principal name's *local* part that *allowed* (one character)
    does not match, with the ones that are (*listed*, for the message)."""
    if allowed.fullmatch(local):
        return []
    bad = [c for c in dict.fromkeys(local) if not allowed.fullmatch(c)]
    return [
        "holds characters not allowed before the @: "
        + " ".join(f"'{visible(c)}'" for c in bad)
        + f" (only {listed})"
    ]


MAIL_LOCAL_FORBIDDEN = ' @(),:;<>[]\\"'
"""What the local part of an e-mail address (before the @) may not hold."""


def mail_address(value: str, directory: str) -> list[str]:
    """An e-mail address (AD's ``mail``): one ``@``, a local part of at most 64 printable
    characters without spaces, a domain name."""
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return ["is not an e-mail address (name@domain)"]
    out = too_long(local, 64, f"{directory} (before the @)")
    out += forbidden(local, MAIL_LOCAL_FORBIDDEN, directory)
    if not DNS_NAME.fullmatch(domain) or "." not in domain:
        out.append(f"has no valid domain after the @ ('{visible(domain)}')")
    return out
