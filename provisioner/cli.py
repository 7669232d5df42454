"""Command line: ``provisioner fetch``, ``fields``, ``validate``, ``explain``, ``plan``, ``apply``…

Exit codes, for schedulers: 0 success or nothing to do, 1 error (one line on stderr, no
traceback) or a failed change, 2 changes pending or the plan blocked.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import getpass
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from provisioner import __version__, console, log
from provisioner.apply import (
    Outcome,
    apply_plan,
    record_blocked,
    record_failed,
    reset_password,
    results_to_json,
)
from provisioner.config import Config, load_config
from provisioner.errors import ConfigError, ProvisionerError
from provisioner.files import private_dir, stamp
from provisioner.lock import run_lock
from provisioner.model import ObservedAccount
from provisioner.nightly import run_night
from provisioner.notify import send_test
from provisioner.passwords import Handout, handout_group
from provisioner.pipeline import (
    Prepared,
    compare,
    desired_state,
    open_configured_source,
    open_target,
    plan_of,
    prepare,
    prepare_config,
    prepare_preview,
    read_and_compare,
    read_for_mappings,
    remembered_names,
    save_sealed_plan,
    search_fields,
    verify_saved_plan,
)
from provisioner.plan.jsontext import write_indented
from provisioner.plan.model import Plan
from provisioner.plan.planfile import PlanBlocked, now, plan_to_write
from provisioner.plan.policy import (
    Approval,
    Selection,
    in_order,
    leave_out_unapproved,
    parse_approval,
)
from provisioner.report.adoption import adoption_report, render_adoption_report
from provisioner.report.fields import add_fields_command
from provisioner.report.history import render_history
from provisioner.report.html import render_html, write_report
from provisioner.report.mapping import explain_account, find_accounts, validation_summary
from provisioner.report.plan import (
    render_approval,
    render_blocks,
    render_held,
    render_plan,
    render_results,
)
from provisioner.report.transition import (
    preview_note,
    render_transition,
    transition_summary,
    transition_to_json,
)
from provisioner.sources.base import Progress, SourceRead
from provisioner.sources.problems import problem_warnings
from provisioner.state import StateStore
from provisioner.statecmds import add_state_commands
from provisioner.targets.base import Target
from provisioner.testcmd import add_test_command
from provisioner.text import visible

DEFAULT_SNAPSHOT = Path("<snapshots.dir>")
"""``fetch --save`` without a folder: a new dated one in ``snapshots.dir``."""


FULL_READ_HELP = (
    "read every managed object in the directory, not only what changed since the last read "
    "(a full read is made anyway every full_read_every days)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provisioner",
        description="Provision AD / Entra ID accounts and class groups from Informat.",
    )
    parser.add_argument("--version", action="version", version=f"provisioner {__version__}")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines on stderr: text (warnings, or all with -v) or JSON lines (all)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also log progress in text")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fetch = commands.add_parser(
        "fetch",
        help="read data sets from Informat (or a snapshot) and show rows per instelnr",
        description="Read data sets from Informat or a saved snapshot and count their rows per "
        "instellingsnummer. Nothing is written anywhere unless --save is given.",
    )
    fetch.add_argument("--config", required=True, type=Path, metavar="FILE")
    fetch.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME",
        help="a data set to read (repeatable); a wrong name lists the closest the source offers",
    )
    fetch.add_argument(
        "--save",
        type=Path,
        nargs="?",
        const=DEFAULT_SNAPSHOT,
        metavar="DIR",
        help="write the raw answers as a snapshot, in DIR or, without it, in a new dated folder "
        "in snapshots.dir, where provisioner run removes it after snapshots.keep_days (14)",
    )
    fetch.add_argument("--json", action="store_true", help="print the counts as JSON")
    fetch.set_defaults(handler=run_fetch)

    validate = commands.add_parser(
        "validate",
        help="check the mappings: schema, templates, and a full render of every person",
        description="Compile the mappings, read the source (only what the mappings use), render "
        "every person and report persons, groups, duplicates and name collisions. Exit 1 on any "
        "error. Nothing is written anywhere.",
    )
    validate.add_argument("--config", required=True, type=Path, metavar="FILE")
    validate.set_defaults(handler=run_validate)

    add_fields_command(commands)

    explain = commands.add_parser(
        "explain",
        help="show how one person's account is derived, value by value",
        description="Find persons by p_persoon, stamnummer or part of the name and show their "
        "source record (referenced fields only), every derived attribute with the template "
        "that made it, the OU and the groups; with a target configured, also what the "
        "directory holds beside it, and why the two differ.",
    )
    explain.add_argument("--config", required=True, type=Path, metavar="FILE")
    explain.add_argument("query", metavar="QUERY")
    explain.set_defaults(handler=run_explain)

    plan = commands.add_parser(
        "plan",
        help="show every change that would be made, and why (a dry run)",
        description="Compute the changes that make the directory match the source: creates, "
        "updates, moves, renames, disables and memberships, each with its reason. Nothing is "
        "written to the directory. Exit 0 when there is nothing to do, 2 when changes are "
        "pending or the plan is blocked, 1 on error.",
    )
    plan.add_argument("--config", required=True, type=Path, metavar="FILE")
    plan.add_argument("--out", type=Path, metavar="FILE", help="save the plan to apply it later")
    plan.add_argument(
        "--schooljaar",
        metavar="YEAR",
        help="preview the school year YEAR (e.g. 2026-27) against the directory as it is now: "
        "the source is read as that year will stand on its first day, leavers are not frozen, "
        "and a summary per school comes first (graduates and leavers, class moves, new pupils, "
        "groups, the approvals it will need). Nothing is written; a preview cannot be saved",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument(
        "--details", action="store_true", help="also list every attribute of new objects"
    )
    plan.add_argument("--report", type=Path, metavar="FILE", help="also write an HTML report")
    plan.add_argument(
        "--adoption-report",
        action="store_true",
        help="also list what a first night finds: accounts in the managed scope that match "
        "nobody, names taken outside it, and accounts outside it carrying a person's anchor",
    )
    plan.add_argument("--full-read", action="store_true", help=FULL_READ_HELP)
    plan.set_defaults(handler=run_plan)

    apply = commands.add_parser(
        "apply",
        help="apply a saved plan exactly, or plan and apply in one go (the nightly mode)",
        description="With PLAN: check its seal (a file edited after plan --out is refused), that "
        "it was made from the same configuration and mappings for the same target and has not "
        "expired, and derive its policy blocks again from its changes; then apply exactly its "
        "changes, each after checking its precondition (a change that no longer fits is skipped "
        "and reported). Without PLAN: make the plan now and apply it. Exit 0 when everything was "
        "applied, 2 when the plan is blocked or changes wait for an approval (--approve), 1 on "
        "an error or a failed change.",
    )
    apply.add_argument("--config", required=True, type=Path, metavar="FILE")
    apply.add_argument("plan", nargs="?", type=Path, metavar="PLAN")
    apply.add_argument(
        "--strict", action="store_true", help="refuse the whole plan if any change no longer fits"
    )
    apply.add_argument("--report", type=Path, metavar="FILE", help="write an HTML report")
    apply.add_argument("--json", action="store_true", help="print the plan and results as JSON")
    apply.add_argument(
        "--full-read", action="store_true", help=FULL_READ_HELP + "; without PLAN only"
    )
    apply.add_argument(
        "--approve",
        metavar="WHAT",
        help="accept policy blocks (as derived again from a saved plan's changes, whatever its "
        "header says). Category words, alone or joined by commas (leavers, moves, renames, "
        "updates, groups, drop; e.g. --approve moves or --approve moves,renames), accept only "
        "those categories: the changes of every other blocked category are left out of this run "
        "and wait for their own approval. Anything else is a reason that accepts every block "
        '(--approve "end of the school year"). What was approved, why, and what waits are kept '
        "in the run history",
    )
    apply.add_argument(
        "--reason",
        metavar="TEXT",
        help="why the categories named with --approve are accepted, for the run history",
    )
    apply.set_defaults(handler=run_apply)

    run = commands.add_parser(
        "run",
        help="the nightly command: read, plan, apply unless blocked, keep the night, notify",
        description="One night: under the run lock, read the source, make the plan and apply it "
        "unless it is blocked. The night is kept in a run folder of its own (runs.dir: the plan, "
        "the HTML report, the log and the results) and in the run history, and the "
        "notifications configured under notify: are sent. A blocked night's plan can be approved "
        "from its run folder with apply --approve. Exit 0 when everything was applied or there "
        "was nothing to do, 2 when the night was blocked or changes wait for an approval, 1 on "
        "an error or a failed change.",
    )
    run.add_argument("--config", required=True, type=Path, metavar="FILE")
    run.add_argument("--full-read", action="store_true", help=FULL_READ_HELP)
    run.set_defaults(handler=run_nightly)

    notify = commands.add_parser(
        "notify",
        help="send a test message to the webhook and e-mail under notify:",
        description="Send a test message by every channel configured under notify: (whatever "
        "its on: says; the heartbeat is not pinged) and say what could not be delivered. Exit 0 "
        "when everything was delivered, 1 otherwise.",
    )
    notify.add_argument("--config", required=True, type=Path, metavar="FILE")
    notify.add_argument("--test", action="store_true", required=True, help="send a test message")
    notify.set_defaults(handler=run_notify_test)

    history = commands.add_parser(
        "history",
        help="the runs kept in the state store: when, outcome, counts, approvals",
        description="The runs and applies kept in the state store, newest first: when, the "
        "outcome (applied, nothing, waiting, blocked, failed), counts per status, the error, the "
        "approval with who gave it, its reason, its categories and what it overrode, and what "
        "waited. Reads only the state store.",
    )
    history.add_argument("--config", required=True, type=Path, metavar="FILE")
    history.add_argument("--last", type=int, default=20, metavar="N", help="how many (20)")
    history.add_argument("--json", action="store_true", help="print the runs as JSON")
    history.set_defaults(handler=run_history)
    add_state_commands(commands)
    add_test_command(commands)

    password = commands.add_parser(
        "password", help="password tasks for single accounts", description="Password tasks."
    )
    password_tasks = password.add_subparsers(dest="task", required=True, metavar="TASK")
    reset = password_tasks.add_parser(
        "reset",
        help="give one account a new initial password, on a hand-out sheet",
        description="Find one account by p_persoon, stamnummer or part of the name (as explain "
        "does), give it a new password and write a hand-out sheet for it.",
    )
    reset.add_argument("--config", required=True, type=Path, metavar="FILE")
    reset.add_argument("query", metavar="QUERY")
    reset.set_defaults(handler=run_password_reset)
    return parser


class ProgressLine:
    """A one-line progress display on a terminal; silent when output goes to a file or a log."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.enabled = stream.isatty()
        self.finished = 0
        self._lock = threading.Lock()

    def __call__(self, step: Progress) -> None:
        if not self.enabled:
            return
        with self._lock:
            if step.event == "done":
                self.finished += 1
            line = f"fetching {self.finished}/{self.total} · {step.dataset} {step.unit}"
            self.stream.write(f"\r\x1b[K{line}")
            self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def run_fetch(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.mappings is not None and not args.dataset:
        # Only what the mappings reference: their data sets, and of those only the fields used.
        prepared = prepare_config(config)
        source, fields = prepared.source, prepared.fields
    else:
        # Every field of the data sets asked for; the source refuses a name it does not offer.
        source = open_configured_source(config)
        fields = {name: None for name in args.dataset or source.default_datasets()}
    if args.save == DEFAULT_SNAPSHOT:
        args.save = private_dir(config.snapshots_dir) / stamp(now())
    progress = ProgressLine(len(fields) * len(source.units()), sys.stderr)
    try:
        read = source.read(fields, progress=progress, save=args.save)
    finally:
        progress.clear()
    log.event(
        "read the source",
        counts=read.counts,
        blocks=len(read.blocks),
        unreadable_values=len(read.problems),
    )
    if args.json:
        print(json.dumps(read.counts, indent=2))
    else:
        print(f"{read.description}\n")
        print(render_counts(read))
    for block in read.blocks:
        hint = f"; {block.hint}" if block.hint else ""
        print(
            visible(f"warning: {block.dataset} for {block.unit} {block.reason}{hint}"),
            file=sys.stderr,
        )
    for line in problem_warnings(read.problems):  # warnings only: fetch itself succeeded
        print(visible(line), file=sys.stderr)
    if args.save:
        print(
            f"saved the raw answers to {args.save}: they hold pupils' data, remove them when "
            "no longer needed",
            file=sys.stderr,
        )
    return 0


def run_validate(args: argparse.Namespace) -> int:
    prepared = prepare(args.config)
    data = _read(prepared)
    # The names the state store remembers: validate says how many existing accounts keep a
    # name the mappings would now make otherwise, without contacting the directory.
    state = desired_state(prepared, data, names=remembered_names(prepared.config))
    report = state.report
    log.event(
        "validated the mappings",
        persons=report.persons,
        errors=len(report.errors),
        held=len(state.held),
        collisions=len(report.collisions),
        duplicates=len(report.duplicates),
    )
    print(validation_summary(state, prepared.fields, data.counts, data.blocks))
    # a held person gets no account: validate fails until their data is corrected
    return 1 if state.report.errors or state.held or any(state.unknown_rows.values()) else 0


def run_explain(args: argparse.Namespace) -> int:
    prepared = prepare(args.config)
    data = _read(prepared, extra_fields=search_fields(prepared))
    target = open_target(prepared, **args.seams)
    held: dict[str, ObservedAccount] = {}
    if target is None:  # the names the state store remembers, as validate
        state = desired_state(prepared, data, names=remembered_names(prepared.config))
    else:  # the names as the plan gives them, and what the directory holds
        try:
            comparison = compare(prepared, data, target)
        finally:
            target.close()
        state = comparison.desired
        held = {a.anchor: a for a in comparison.observed.accounts if a.anchor}
    found = find_accounts(state, args.query)
    if not found:
        print(f"error: no account matches {args.query!r}", file=sys.stderr)
        return 1
    directory = target.describe() if target is not None else None
    for account in found[:5]:
        text = explain_account(
            account, state, prepared.fields, directory=directory, held=held.get(account.anchor)
        )
        print(text, end="\n\n")
    if len(found) > 5:
        print(f"… and {len(found) - 5} more matches; make the query more precise")
    for error in state.report.errors:
        print(visible(f"error: {error}"), file=sys.stderr)
    return 1 if state.report.errors else 0


def holds_run_lock(
    handler: Callable[[argparse.Namespace, Config], int],
) -> Callable[[argparse.Namespace], int]:
    """Commands that read and write the state store and the directory run one at a time
    (provisioner.lock); a plan with a target is one, so it never sees an apply half-way. The
    configuration read to find the locks is the one the command then works with."""

    @functools.wraps(handler)
    def locked(args: argparse.Namespace) -> int:
        command = " ".join(["provisioner", args.command, *([args.task] if "task" in args else [])])
        config = load_config(args.config)
        with run_lock(config, f"{command} --config {args.config}"):
            return handler(args, config)

    return locked


@holds_run_lock
def run_plan(args: argparse.Namespace, config: Config) -> int:
    if args.schooljaar is not None:
        if args.out:
            raise ConfigError(
                "--out cannot save a preview of another school year: it is not the plan apply "
                "would carry out. Run plan --out without --schooljaar once that year has begun"
            )
        prepared = prepare_preview(config, args.schooljaar, **args.source_seams)
    else:
        prepared = prepare_config(config, **args.source_seams)
    prepared.full_read = args.full_read
    target = open_target(prepared, **args.seams)
    try:
        read, comparison = read_and_compare(prepared, target, lambda: _read(prepared))
        plan = _logged(plan_of(prepared, read, target, comparison))
        adoption = None
        if args.adoption_report:
            if target is None:
                raise ConfigError("--adoption-report needs a target: it reads the directory")
            adoption = adoption_report(
                target.describe(),
                comparison.desired,
                comparison.observed,
                plan,
                comparison.taken_outside,
                target.anchored_outside(),
            )
    finally:
        if target is not None:
            target.close()
    transition = None
    if args.schooljaar is not None:
        plan.header.warnings.insert(0, preview_note(args.schooljaar, plan))
        transition = transition_summary(
            plan,
            comparison.desired,
            comparison.observed,
            read.unit_names,
            command=_apply_command(args),
        )
    if args.out:
        save_sealed_plan(plan, prepared, args.out)
    if args.report:
        write_report(args.report, render_html(plan, command=_apply_command(args)))
    if args.json:
        data = plan_to_write(plan)
        if transition is not None:
            data["transition"] = transition_to_json(transition)
        write_indented(data, sys.stdout)  # a change at a time, not the whole text at once
    else:
        if transition is not None:
            print(render_transition(transition, args.schooljaar) + "\n")
        print(render_plan(plan, details=args.details, command=_apply_command(args)))
        if args.out:
            print(f"\nsaved the plan to {args.out}")
    if adoption is not None:
        print("\n" + render_adoption_report(adoption, comparison.desired))
    return 0 if plan.empty and not (plan.header.blocked or plan.header.policy_blocked) else 2


def _apply_command(args: argparse.Namespace) -> str:
    """The command that applies this configuration, as approvals are told to type it."""
    return f"provisioner apply --config {args.config}"


def _make_plan(prepared: Prepared, target: Target | None) -> Plan:
    read, comparison = read_and_compare(prepared, target, lambda: _read(prepared))
    return _logged(plan_of(prepared, read, target, comparison))


def _logged(plan: Plan) -> Plan:
    header = plan.header
    log.event(
        "made the plan",
        target=header.target,
        counts=plan.counts(),
        blocked=header.blocked,
        policy_blocked=header.policy_blocked,
    )
    return plan


@holds_run_lock
def run_apply(args: argparse.Namespace, config: Config) -> int:
    parse_approval(args.approve, args.reason)  # a typo is refused before anything is read
    if config.target is None:
        raise ConfigError(f"{args.config}: apply needs a target (target: ad: … or entra: …)")
    with kept_if_failed(config):
        prepared = prepare_config(config, **args.source_seams)
        prepared.full_read, prepared.keeps_read = args.full_read, True
        target = open_target(prepared, **args.seams)
    assert target is not None
    try:
        return _apply(args, prepared, target)
    finally:
        target.close()


@contextlib.contextmanager
def kept_if_failed(config: Config) -> Iterator[None]:
    """An error here ends the apply before anything was applied: keep it in the run history
    (a failure while applying is kept by apply_plan itself) of a state store there is: a first
    apply that fails makes none."""
    try:
        yield
    except ProvisionerError as exc:
        state = config.state
        if state is not None and state.exists() and not isinstance(exc, PlanBlocked):
            with StateStore(state) as store:
                record_failed(store, "apply", log.redact(str(exc)))
        raise


def _apply(args: argparse.Namespace, prepared: Prepared, target: Target) -> int:
    approval = parse_approval(args.approve, args.reason)  # a typo is refused before any work
    if approval is not None:
        approval = dataclasses.replace(approval, by=current_user())
    command = _apply_command(args)
    if args.plan:
        command = f"{command} {args.plan}"  # what waits is approved from the same plan
        try:
            with kept_if_failed(prepared.config):
                plan = verify_saved_plan(args.plan, prepared, target, approved=approval is not None)
        except PlanBlocked as refused:
            print(render_blocks(refused.plan, command=command), file=sys.stderr)
            assert prepared.config.state is not None  # a target needs a state store
            with StateStore(prepared.config.state) as store:
                record_blocked(refused.plan, store)  # a refused approval step is history too
            return 2
    else:
        with kept_if_failed(prepared.config):
            plan = _make_plan(prepared, target)
        if plan.header.blocked or (plan.header.policy_blocked and approval is None):
            print(render_plan(plan, command=command))
            if args.report:
                write_report(args.report, render_html(plan, command=command))
            assert prepared.config.state is not None  # a target needs a state store
            with StateStore(prepared.config.state) as store:
                record_blocked(plan, store)  # a blocked night is in the history too
            return 2
    selection = leave_out_unapproved(plan, approval)
    if approval is not None and approval.categories is not None:
        blocked = {b.category for b in plan.header.policy_blocks}
        for category in in_order(approval.categories - blocked):
            print(
                f"note: --approve {category}: the plan has no {category} block, so there is "
                "nothing to approve there",
                file=sys.stderr,
            )
    assert prepared.config.state is not None
    with StateStore(prepared.config.state) as store:
        outcome = apply_plan(
            selection.plan,
            target,
            store,
            strict=args.strict,
            passwords=prepared.config.passwords,
            approval=approval,
            selection=selection,
            sheets=prepared.config.sheets_dir,
            when=now(),
        )
    results, counts = outcome.results, outcome.summary
    for result in results:
        if result.status != "applied":
            log.event(
                f"{result.status}: {result.change.action} {result.change.key}: {result.message}",
                logging.WARNING,
                action=result.change.action,
                key=result.change.key,
                status=result.status,
            )
    log.event("applied the plan", results=counts)
    if args.json:
        data = plan_to_write(selection.plan)  # the changes the results answer
        data["results"] = results_to_json(results)
        data.update(_approval_json(approval, selection, command))
        write_indented(data, sys.stdout)
    else:
        print(render_results(results))
        if steps := render_approval(approval, selection, command=command):
            print("\n" + steps)
        if held := render_held(plan):  # a nightly run says whom it left alone, and why
            print("\n" + held)
    if args.report:
        write_report(
            args.report,
            render_html(
                selection.plan, results, approval=approval, selection=selection, command=command
            ),
        )
    if outcome.sheets:
        print(sheets_line(outcome), file=sys.stderr if args.json else sys.stdout)
    # Changes waiting for an approval are changes pending: exit 2, as for a blocked plan.
    return 1 if outcome.failed else 2 if selection.waiting else 0


def sheets_line(outcome: Outcome) -> str:
    """Where the new accounts' initial passwords are, and what to do about those unknown."""
    where = ", ".join(map(str, outcome.sheets))
    unknown = sum(h.status == "unknown" for h in outcome.handouts)
    note = (
        f"; {unknown} of them already existed, their password is unknown: give them a new "
        "one with `provisioner password reset`"
        if unknown
        else ""
    )
    return f"Initial passwords of {len(outcome.handouts)} new account(s): {where}{note}"


def current_user() -> str:
    """Who runs this command, for the run history of an approval."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no user name in the environment or the database
        return "(unknown user)"


def _approval_json(approval: Approval | None, selection: Selection, command: str) -> dict[str, Any]:
    """What ``apply --json`` adds beside the results: the approval and what waits."""
    data: dict[str, Any] = {}
    if approval is not None:
        data["approval"] = {
            "reason": approval.reason,
            "by": approval.by,
            "categories": None if approval.categories is None else in_order(approval.categories),
            "overrides": [b.message for b in selection.approved],
        }
    data["waiting"] = [
        {
            "categories": list(w.categories),
            "counts": w.counts,
            "message": w.describe(command),
        }
        for w in selection.waiting
    ]
    return data


def run_nightly(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # a configuration that does not load notifies nobody
    night = run_night(
        config,
        config_arg=str(args.config),
        seams=args.seams,
        source_seams=args.source_seams,
        full_read=args.full_read,
    )
    report = night.report
    command = f"{_apply_command(args)} {Path(str(report.run_folder)) / 'plan.json'}"
    if night.outcome is not None:
        print(render_results(night.outcome.results))
    elif night.plan is not None:
        print(render_plan(night.plan, command=command))
    if night.plan is not None and (held := render_held(night.plan)):
        print("\n" + held)
    if report.approve_command:
        print(
            f"\nTo apply this night's plan with an approval (until it expires):\n  "
            f"{report.approve_command}"
        )
    for warning in report.warnings:
        print(visible(f"warning: {warning}"), file=sys.stderr)
    for problem in night.undelivered:
        print(visible(f"warning: not delivered: {problem}"), file=sys.stderr)
    if report.error:
        print(visible(f"error: {report.error}"), file=sys.stderr)
    if night.outcome is not None and night.outcome.sheets:
        print(sheets_line(night.outcome))
    print(f"\nThe night: {report.outcome}; kept in {report.run_folder}")
    return report.exit_code


def run_notify_test(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.notify is None:
        raise ConfigError(f"{args.config}: there is no notify: section to test")
    entra = config.target.entra if config.target is not None else None
    problems = send_test(config.notify, str(args.config), entra=entra)
    for problem in problems:
        print(visible(f"not delivered: {problem}"), file=sys.stderr)
    if not problems:
        print("The test message was delivered by every channel configured.")
    return 1 if problems else 0


def run_history(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    runs: list[dict[str, Any]] = []
    if config.state is not None and config.state.exists():
        with StateStore(config.state) as store:
            runs = store.runs(limit=max(args.last, 1))
    if args.json:
        print(json.dumps(runs, indent=1, ensure_ascii=False))
    else:
        print(render_history(runs))
    return 0


@holds_run_lock
def run_password_reset(args: argparse.Namespace, config: Config) -> int:
    prepared = prepare_config(config)
    target = open_target(prepared, **args.seams)
    if target is None:
        raise ConfigError(
            f"{args.config}: a password reset needs a target (target: ad: … or entra: …)"
        )
    try:
        data = _read(prepared, extra_fields=search_fields(prepared))
        found = find_accounts(desired_state(prepared, data), args.query)
        if len(found) != 1:
            names = ", ".join(f"{a.anchor} ({a.username})" for a in found[:10])
            # One person can have two accounts (a pupil who also works at the school): the
            # anchor names exactly one.
            problem = (
                f"matches {len(found)} accounts: {names}; give the anchor of one of them"
                if found
                else "matches no account; give an anchor, a p_persoon or a name"
            )
            raise ConfigError(f"{args.query!r} {problem}")
        (account,) = found
        display = account.attributes.get("displayName")
        department = account.attributes.get("department")
        line = Handout(
            account.username,
            display.value if display else account.username,
            handout_group(account.ou if target.has_ous else None, department and department.value),
            password="",
        )
        sheets = reset_password(
            target,
            account.anchor,
            line,
            passwords=prepared.config.passwords,
            sheets=prepared.config.sheets_dir,
            when=now(),
        )
    finally:
        target.close()
    print(visible(f"New password for {account.username}: on the sheet {sheets[0]}"))
    return 0


def _read(
    prepared: Prepared, extra_fields: Mapping[str, Collection[str]] | None = None
) -> SourceRead:
    progress = ProgressLine(len(prepared.fields) * len(prepared.source.units()), sys.stderr)
    try:
        return read_for_mappings(prepared, extra_fields=extra_fields, progress=progress)
    finally:
        progress.clear()


def render_counts(read: SourceRead) -> str:
    """Rows per data set (lines) and unit (columns); an empty answer is marked. With several
    sources a unit (a school, a file) has a cell only in the data sets it was read for."""
    counts = read.counts
    width = max(len("data set"), *(len(d) for d in counts))
    units = list(dict.fromkeys(unit for per_unit in counts.values() for unit in per_unit))
    widths = {unit: max(8, len(unit)) for unit in units}
    header = f"{'data set':<{width}}" + "".join(f"  {u:>{widths[u]}}" for u in units)
    lines = [header + f"  {'total':>8}", "-" * (len(header) + 10)]
    for dataset, per_unit in counts.items():
        cells = "".join(f"  {_count_cell(per_unit.get(unit)):>{widths[unit]}}" for unit in units)
        lines.append(f"{dataset:<{width}}{cells}  {sum(per_unit.values()):>8}")
    return "\n".join(lines)


def _count_cell(count: int | None) -> str:
    if count is None:
        return ""
    return str(count) if count else "0 empty"


def main(
    argv: Sequence[str] | None = None,
    *,
    seams: Mapping[str, Any] | None = None,
    source_seams: Mapping[str, Any] | None = None,
) -> int:
    """*seams* reach the target's constructor (a clock, a sleep), *source_seams* the source's
    (``plan``: its today): tests use them instead of patching modules."""
    console.utf8_output((sys.stdout, sys.stderr))
    args = build_parser().parse_args(argv)
    args.seams = dict(seams or {})
    args.source_seams = dict(source_seams or {})
    log.setup(args.log_format, verbose=args.verbose)
    log.event(f"provisioner {args.command}", command=args.command)
    try:
        return int(args.handler(args))
    except ProvisionerError as exc:
        if args.log_format == "json":
            log.event(str(exc), logging.ERROR, error=type(exc).__name__)
        else:
            # Line by line: an error that lists several problems shows each on its own line.
            first, *more = exc.lines()
            shown = [f"error: {first}", *more]
            print("\n".join(visible(log.redact(line)) for line in shown), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head or less, which stopped reading
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - keeps the interpreter's flush quiet
        return 0
