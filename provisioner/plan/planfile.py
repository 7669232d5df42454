"""Plan files: a plan saved as JSON, to be reviewed and then applied exactly.

The file holds names of pupils, so it is written readable by its owner only. It never holds a
secret: initial passwords are made at apply time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError
from provisioner.plan.model import Change, Observations, Plan, PlanFormatError, PlanHeader

FORMAT = 1


def file_hash(paths: Iterable[Path]) -> str:
    """One SHA-256 over the names and bytes of *paths*: any edit to any of them changes it."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "header": asdict(plan.header),
        "counts": plan.counts(),
        "changes": [c.to_json() for c in plan.changes],
        "observations": asdict(plan.observations),
    }


def save_plan(plan: Plan, path: Path) -> None:
    text = json.dumps(plan_to_json(plan), indent=1, ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def load_plan(path: Path) -> Plan:
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
    return Plan(header, changes, observations)


def verify_plan_file(
    plan: Plan, *, config_hash: str, mappings_hash: str, target: str, approved: bool
) -> None:
    """A saved plan is applied only to what it was made from, and only while it is fresh."""
    header = plan.header
    problems = []
    if header.config_hash != config_hash:
        problems.append("the configuration changed since the plan was made")
    if header.mappings_hash != mappings_hash:
        problems.append("the mappings changed since the plan was made")
    if header.target != target:
        problems.append(f"the plan was made for {header.target}, not {target}")
    if now() > dt.datetime.fromisoformat(header.expires):
        problems.append(f"the plan expired at {header.expires}; make a new one")
    if header.blocked:
        problems.append("the plan is blocked: " + "; ".join(header.blocked))
    if header.policy_blocked and not approved:
        problems.append("the plan exceeds policy limits: " + "; ".join(header.policy_blocked))
    if problems:
        raise ConfigError("refusing the plan: " + "; ".join(problems))
