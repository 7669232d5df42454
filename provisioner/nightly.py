"""``provisioner run``: the one nightly command. Under the run lock it reads the source, makes the
plan and applies it unless it is blocked, keeping the night in a run folder of its own; every
night, a failed one too, goes into the run history and becomes a :class:`NightReport` for the
notifications.

A run folder (``runs.dir``, one per night, 0700) holds ``plan.json`` (sealed: a blocked night is
approved by applying exactly this plan), ``report.html``, ``log.jsonl`` and ``results.json``, each
0600. Folders, snapshots and password sheets older than their ``keep_days`` are removed at the end
of every run: they hold pupils' data.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shlex
import shutil
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner import log
from provisioner.apply import (
    Outcome,
    apply_plan,
    record_blocked,
    record_failed,
    results_to_json,
)
from provisioner.config import Config
from provisioner.errors import ConfigError, ProvisionerError
from provisioner.files import private_dir, stamp, stamped_time, write_private
from provisioner.lock import run_lock
from provisioner.notify import NightReport, SchoolNight, expiry_warnings, notify, ping_heartbeat
from provisioner.pipeline import (
    open_target,
    plan_of,
    prepare_config,
    read_and_compare,
    save_sealed_plan,
)
from provisioner.plan.model import Plan
from provisioner.plan.policy import approve_command, leave_out_unapproved
from provisioner.report.html import render_html, write_report
from provisioner.sources.base import SourceRead
from provisioner.state import StateStore

COMMAND = "run"
"""How the run history names a nightly run."""

_FOLDER = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{6}Z)(-\d+)?$")
_SHEET = re.compile(r"^passwords-(\d{8}-\d{6})(-\d+)?\.(csv|html)$")


@dataclass
class Night:
    """What the run did, for the terminal and the notifications."""

    report: NightReport
    plan: Plan | None = None
    outcome: Outcome | None = None
    removed: list[Path] = field(default_factory=list)
    """Run folders, snapshots and password sheets removed because they expired."""
    undelivered: list[str] = field(default_factory=list)
    """Notifications and heartbeat pings that could not be delivered (already logged)."""
    recorded: bool = False
    """The history has this night already (apply keeps its own run, also one that failed)."""


def run_night(
    config: Config,
    *,
    config_arg: str,
    seams: Mapping[str, Any] | None = None,
    source_seams: Mapping[str, Any] | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    full_read: bool = False,
) -> Night:
    """One night, start to end (*full_read*: the directory read in full, ``--full-read``).
    Errors do not escape: a night that fails is reported as failed
    (exit code 1), with its error, in the history and in its run folder."""
    clock = clock or _now
    started = clock()
    if config.target is None or config.state is None:
        raise ConfigError(f"{config.path}: run needs a target (target: ad: … or entra: …)")
    folder = new_run_folder(config.runs_dir, started)
    report = NightReport(
        outcome="failed",
        config=config_arg,
        started=started,
        finished=started,
        exit_code=1,
        run_folder=str(folder),
    )
    night = Night(report)
    with log.also_to(folder / "log.jsonl"):
        log.event("provisioner run", command=COMMAND, run_folder=str(folder))
        report.warnings = expiry_warnings(config, started.date())
        for warning in report.warnings:
            log.event(warning, logging.WARNING)
        try:
            with run_lock(config, f"provisioner run --config {config_arg}"):
                _plan_and_apply(
                    config, night, folder, dict(seams or {}), dict(source_seams or {}), full_read
                )
        except ProvisionerError as exc:
            _failed(config, night, log.redact(str(exc)))
        except Exception as exc:  # a bug must still end in a failed, reported night
            log.event("internal error", logging.ERROR, traceback=log.redact(traceback.format_exc()))
            _failed(config, night, log.redact(f"internal error: {type(exc).__name__}: {exc}"))
        report.finished = clock()
        log.event(f"the night ended: {report.outcome}", outcome=report.outcome)
        if config.notify is not None:  # a message that cannot be delivered is only logged
            entra = config.target.entra
            night.undelivered = notify(config.notify, report, entra=entra)
            night.undelivered += ping_heartbeat(config.notify, report)
    write_private(folder / "results.json", json.dumps(night_to_json(night), indent=1) + "\n")
    night.removed = remove_expired(config, report.finished)
    return night


def _plan_and_apply(
    config: Config,
    night: Night,
    folder: Path,
    seams: dict[str, Any],
    source_seams: dict[str, Any],
    full_read: bool,
) -> None:
    report = night.report
    prepared = prepare_config(config, **source_seams)
    prepared.full_read, prepared.keeps_read = full_read, True
    target = open_target(prepared, **seams)
    assert target is not None and config.state is not None  # run_night checked the configuration
    try:
        read, comparison = read_and_compare(prepared, target)
        plan = night.plan = plan_of(prepared, read, target, comparison)
        log.event(
            "made the plan",
            counts=plan.counts(),
            blocked=plan.header.blocked,
            policy_blocked=plan.header.policy_blocked,
        )
        report.target = plan.header.target
        report.held = list(plan.header.held)
        report.schools = schools_of(plan, read)
        save_sealed_plan(plan, prepared, folder / "plan.json")
        apply = f"provisioner apply --config {shlex.quote(report.config)} {folder / 'plan.json'}"
        header = plan.header
        if header.blocked or header.policy_blocked:
            report.blocks = [*header.blocked, *header.policy_blocked]
            if not header.blocked:  # only policy limits: an approval lets this plan through
                categories = {b.category for b in header.every_policy_block()}
                option = approve_command(categories)
                if option.endswith("REASON"):
                    report.approve_command = f'{apply} --approve "REASON"'
                else:
                    report.approve_command = f'{apply} {option} --reason "REASON"'
            write_report(folder / "report.html", render_html(plan, command=apply))
            with StateStore(config.state) as store:
                record_blocked(plan, store, COMMAND)
            night.recorded = True
            report.outcome, report.exit_code = "blocked", 2
            return
        selection = leave_out_unapproved(plan, None)
        with StateStore(config.state) as store:
            night.recorded = True  # from here on apply_plan keeps the run, however it ends
            outcome = night.outcome = apply_plan(
                selection.plan,
                target,
                store,
                passwords=config.passwords,
                selection=selection,
                sheets=config.sheets_dir,
                when=report.started,
                command=COMMAND,
            )
        write_report(
            folder / "report.html",
            render_html(selection.plan, outcome.results, selection=selection, command=apply),
        )
        report.results = {
            status: int(outcome.summary.get(status, 0))
            for status in ("applied", "skipped", "failed")
        }
        if outcome.failed:
            report.outcome, report.exit_code = "failed", 1
            report.error = f"{outcome.failed} change(s) failed; the next night tries them again"
        elif selection.waiting:
            report.outcome, report.exit_code = "waiting", 2
            report.blocks = [w.describe(apply) for w in selection.waiting]
        else:
            report.outcome = "applied" if outcome.results else "nothing"
            report.exit_code = 0
    finally:
        target.close()


def _failed(config: Config, night: Night, error: str) -> None:
    """The night stopped on *error*: so say the report and, unless apply already wrote it there,
    the history."""
    report = night.report
    report.outcome, report.exit_code, report.error = "failed", 1, error
    log.event(error, logging.ERROR)
    if night.recorded or config.state is None:
        return
    try:
        with StateStore(config.state) as store:
            record_failed(store, COMMAND, error)
    except (ProvisionerError, OSError) as exc:  # the store itself may be what failed
        log.event(f"the failed night is not in the history: {exc}", logging.ERROR)


def schools_of(plan: Plan, read: SourceRead) -> list[SchoolNight]:
    """Each school of the plan with its account changes and held persons, by name."""
    header = plan.header
    numbers = sorted({*header.persons, *header.school_counts})
    held: dict[str, int] = {}
    for hold in header.held:
        school = str(hold.get("school") or "")
        held[school] = held.get(school, 0) + 1
    return [
        SchoolNight(
            number=number,
            name=read.unit_names.get(number) or number,
            changes=dict(header.school_counts.get(number, {})),
            held=held.get(number, 0),
        )
        for number in numbers
    ]


def night_to_json(night: Night) -> dict[str, Any]:
    """``results.json``: the night's report and each change's result (never a password)."""
    report = night.report
    data: dict[str, Any] = {
        "outcome": report.outcome,
        "exit_code": report.exit_code,
        "started": report.started.isoformat(),
        "finished": report.finished.isoformat(),
        "target": report.target,
        "error": report.error,
        "blocks": report.blocks,
        "approve_command": report.approve_command,
        "warnings": report.warnings,
        "undelivered": night.undelivered,
        "results": report.results,
        "schools": [vars(school) for school in report.schools],
    }
    if night.plan is not None:
        data["counts"] = night.plan.counts()
    if night.outcome is not None:
        data["changes"] = results_to_json(night.outcome.results)
    return data


def new_run_folder(base: Path, started: dt.datetime) -> Path:
    """A new private folder for this night, named by its UTC start (``2026-12-01T023000Z``);
    a second run in the same second gets ``-2``."""
    private_dir(base)
    name = stamp(started)
    for n in range(1, 1000):
        folder = base / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return folder
    raise ConfigError(f"cannot make a run folder in {base}: too many runs in one second")


def remove_expired(config: Config, now: dt.datetime) -> list[Path]:
    """Remove run folders, snapshots (in ``snapshots.dir``) and password sheets older than their
    ``keep_days``; only what provisioner itself named is ever touched."""
    removed: list[Path] = []
    removed += _expire(config.runs_dir, config.runs.keep_days, now, _run_folder_time)
    removed += _expire(config.snapshots_dir, config.snapshots.keep_days, now, _snapshot_time)
    removed += _expire(config.sheets_dir, config.passwords.keep_days, now, _sheet_time)
    for path in removed:
        log.event(f"removed {path}: older than its keep_days", path=str(path))
    return removed


def _expire(
    folder: Path,
    keep_days: int,
    now: dt.datetime,
    made_at: Callable[[Path], dt.datetime | None],
) -> list[Path]:
    if not folder.is_dir():
        return []
    oldest = now - dt.timedelta(days=keep_days)
    removed = []
    for path in sorted(folder.iterdir()):
        when = made_at(path)
        if when is None or when >= oldest or path.is_symlink():
            continue
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            log.event(f"could not remove {path}: {exc.strerror}", logging.WARNING)
            continue
        removed.append(path)
    return removed


def _run_folder_time(path: Path) -> dt.datetime | None:
    match = _FOLDER.match(path.name)
    if not match or not path.is_dir():
        return None
    return stamped_time(match[1])


def _sheet_time(path: Path) -> dt.datetime | None:
    match = _SHEET.match(path.name)
    if not match:
        return None
    # Sheets are named by the run's time as the apply saw it (UTC).
    return dt.datetime.strptime(match[1], "%Y%m%d-%H%M%S").replace(tzinfo=dt.UTC)


def _snapshot_time(path: Path) -> dt.datetime | None:
    """A snapshot folder (it has a manifest) by when it was saved: its manifest's last change."""
    manifest = path / "manifest.json"
    if not path.is_dir() or not manifest.is_file():
        return None
    return dt.datetime.fromtimestamp(manifest.stat().st_mtime, dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
