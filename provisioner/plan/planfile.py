"""Plan files: a plan saved as JSON, to be reviewed and then applied exactly.

The file holds names of pupils, so it is written readable by its owner only. It never holds a
secret: initial passwords are made at apply time. It is sealed (:mod:`provisioner.plan.seal`):
apply refuses a file changed after it was saved, and derives expiry and the policy verdict again
instead of reading them from the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError
from provisioner.files import write_private_text
from provisioner.gcpause import paused_gc
from provisioner.plan.jsontext import Converted, write_indented
from provisioner.plan.model import (
    Change,
    Observations,
    Plan,
    PlanFormatError,
    PlanHeader,
    PolicyBlock,
)
from provisioner.plan.policy import APPROVE_ALL, PolicyConfig, approve_command, recheck_policy
from provisioner.plan.seal import PlanKey, check_seal, load_key, seal

FORMAT = 1
PLAN_VALID_FOR = dt.timedelta(hours=12)
"""A saved plan older than this is refused by apply: the directory will have moved on. Counted
from the plan's sealed creation time; the ``expires`` the file shows is for people to read."""


def file_hash(paths: Iterable[Path]) -> str:
    """One SHA-256 over the names and bytes of *paths*: any edit to any of them changes it."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@paused_gc()  # a dict or two per change, none of them in a cycle
def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The plan as a JSON-ready document, built field by field. It shares the plan's values
    (text, lists of text) instead of copying them, as ``dataclasses.asdict`` did (2.2 million
    objects for 60,000 changes): add members to it, but change nothing below its first level
    without copying that first."""
    return _document(plan, [c.to_json() for c in plan.changes])


def plan_to_write(plan: Plan) -> dict[str, Any]:
    """The document of :func:`plan_to_json` for writing it out (:func:`write_indented`): its
    changes are made JSON-ready a batch at a time as they are written (``Converted``), so that
    the JSON data of a 400,000-person plan's changes (over 500 MB) never exists at once."""
    return _document(plan, Converted(plan.changes, Change.to_json))


def _document(plan: Plan, changes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "header": plan.header.to_json(),
        "counts": plan.counts(),
        "changes": changes,
        "observations": plan.observations.to_json(),
    }


def save_plan(plan: Plan, path: Path, key: PlanKey | None) -> None:
    """Write the plan (0600, via a temporary file: never through a link, also over an older
    file), sealed with *key*. Without a key (a preview without a state store, which no apply can
    use) the file is unsealed, and apply refuses it. Sealed and written a batch of changes at a
    time: the file's whole text is never in memory."""
    document = plan_to_json(plan)
    if key is not None:
        document["seal"] = seal(document, key)
    write_private_text(path, lambda handle: write_indented(document, handle))


def read_plan_file(path: Path) -> tuple[dict[str, Any], Plan]:
    """The file's JSON document and the plan it holds; a word outside the plan vocabulary is
    refused here. Nothing is checked against a seal: see :func:`load_sealed_plan`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read plan {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not a plan file: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a plan file of format {FORMAT}")
    try:
        header = PlanHeader(**data["header"])
        changes = [Change.from_json(c) for c in data["changes"]]
        observations = Observations(**data.get("observations", {}))
    except PlanFormatError as exc:
        raise ConfigError(f"{path}: not a plan this version can apply: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: damaged plan file ({exc})") from None
    return data, Plan(header, changes, observations)


def load_plan(path: Path) -> Plan:
    """A plan file read for looking at it; apply uses :func:`load_sealed_plan`."""
    return read_plan_file(path)[1]


def load_sealed_plan(path: Path, key_file: Path) -> Plan:
    """The plan in *path*, refused unless its seal was made with the key in *key_file* over
    exactly what the file holds now: header, changes, observations, everything apply uses."""
    document, plan = read_plan_file(path)
    check_seal(document, load_key(key_file, create=False), path)
    return plan


def _time(value: str, what: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigError(f"refusing the plan: its {what} time {value!r} is not a time with a zone")
    return moment


def verify_plan_file(
    plan: Plan,
    *,
    config_hash: str,
    mappings_hash: str,
    target: str,
    approved: bool,
    policy: PolicyConfig,
    last_persons: tuple[str, Mapping[str, int]] | None = None,
) -> Plan:
    """A saved (and already seal-checked) plan is applied only to what it was made from, only
    while it is fresh, and only with --approve when it exceeds a policy limit (*approved*: an
    approval was given; one that names categories leaves the others' changes out afterwards, see
    :func:`~provisioner.plan.policy.leave_out_unapproved`). Expiry and the policy verdict are
    derived again here, never taken from the header: the plan is returned with its header's
    expiry and blocks replaced by what was derived (a block the file names stays)."""
    header = plan.header
    problems = []
    if header.config_hash != config_hash:
        problems.append("the configuration changed since the plan was made")
    if header.mappings_hash != mappings_hash:
        problems.append("the mappings changed since the plan was made")
    if header.target != target:
        problems.append(f"the plan was made for {header.target}, not {target}")
    created = _time(header.created, "creation")
    expires = created + PLAN_VALID_FOR
    current = now()
    if created > current:
        problems.append(
            f"the plan says it was made at {created.isoformat()}, which is later than now "
            f"({current.isoformat()}); check the clock and make a new plan"
        )
    elif current > expires:
        problems.append(
            f"the plan expired at {expires.isoformat()} ({PLAN_VALID_FOR} after it was made); "
            "make a new one"
        )
    try:
        recheck = recheck_policy(
            plan.changes,
            policy,
            day=dt.date.fromisoformat(header.source_as_of),
            managed_accounts=int(header.managed_accounts),
            managed_per_school=header.managed_per_school,
            schools=header.account_schools,
            persons=header.persons,
            last_persons=last_persons,
            managed_groups=int(header.managed_groups),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"refusing the plan: its header is damaged ({exc})") from None
    blocked = _union(header.blocked, recheck.blocked)
    policy_blocks = _merge(header.every_policy_block(), recheck.policy_blocks)
    if problems:
        raise ConfigError("refusing the plan: " + "; ".join(problems))
    derived = replace(
        header,
        expires=expires.isoformat(),
        blocked=blocked,
        policy_blocked=[b.message for b in policy_blocks],
        policy_blocks=[b for b in policy_blocks if b.category],
    )
    plan = Plan(derived, plan.changes, plan.observations)
    if blocked or (policy_blocks and not approved):
        raise PlanBlocked(plan)
    return plan


class PlanBlocked(ConfigError):
    """A saved plan that is sound but blocked: by a problem no approval lifts, or by policy
    limits that were not approved. *plan* carries the blocks as derived again."""

    def __init__(self, plan: Plan) -> None:
        header = plan.header
        blocks = header.every_policy_block()
        if header.blocked:
            message = (
                f"the plan is blocked: {'; '.join(header.blocked)} (no approval lifts that: "
                "make a new plan once the problem is solved)"
            )
        else:
            commands = ", ".join(dict.fromkeys(approve_command([b.category]) for b in blocks))
            message = (
                f"the plan exceeds policy limits: {'; '.join(b.message for b in blocks)} "
                f"(approve a category with {commands}, or everything with {APPROVE_ALL})"
            )
        super().__init__(message)
        self.plan = plan


def _merge(first: list[PolicyBlock], second: list[PolicyBlock]) -> list[PolicyBlock]:
    """Both lists, each message once, in order; a block named without a category takes the
    category the same message has when derived again."""
    merged: dict[str, PolicyBlock] = {}
    for block in (*first, *second):
        if block.message not in merged or not merged[block.message].category:
            merged[block.message] = block
    return list(merged.values())


def _union(first: list[str], second: list[str]) -> list[str]:
    """Both lists, each reason once, in order."""
    return list(dict.fromkeys([*first, *second]))
