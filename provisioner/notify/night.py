"""What a night was, as the notifications tell it: made by ``provisioner run`` from its plan and
results (or its error), read by the message builders. It holds no attribute values of persons:
held persons are named by their key and school with the field and reason, never its value."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["applied", "nothing", "blocked", "waiting", "failed"]
"""applied: changes were made (all of them); nothing: nothing to do; blocked: the plan was not
applied (a block or a policy limit); waiting: applied, but some categories wait for an approval;
failed: an error stopped the night, or a change failed."""


@dataclass
class SchoolNight:
    """One school's part of the night."""

    number: str
    """The instellingsnummer."""
    name: str
    """The school's name where the source gives one, else its number."""
    changes: dict[str, int] = field(default_factory=dict)
    """Account changes per action (create, update, move, rename, disable, delete …)."""
    held: int = 0
    """Persons of this school held tonight."""


@dataclass
class NightReport:
    outcome: Outcome
    config: str
    """The configuration file as the command was given it."""
    started: dt.datetime
    finished: dt.datetime
    exit_code: int
    target: str = ""
    """What the plan was made against (``ldaps://dc1… DC=…``); empty when the night failed first."""
    schools: list[SchoolNight] = field(default_factory=list)
    results: dict[str, int] = field(default_factory=dict)
    """applied / skipped / failed counts of what was applied; empty when nothing was applied."""
    blocks: list[str] = field(default_factory=list)
    """Why the night was not applied, or what waits for an approval."""
    held: list[dict[str, Any]] = field(default_factory=list)
    """The held persons as the plan lists them: ``{kind, key, school, reason, dataset, field,
    since, nights}``."""
    approve_command: str | None = None
    """The exact command that applies this night's plan with an approval, when one would."""
    run_folder: str | None = None
    error: str | None = None
    """What stopped a failed night (already redacted)."""
    warnings: list[str] = field(default_factory=list)
    """Things to act on before they stop a night: a certificate or client secret that runs out."""
