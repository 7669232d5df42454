"""Benchmark: a no-op night against a Samba DC holding everyone (full, incremental), its floor.

    python -m bench.bench_nightly --pupils 10000 50000 [--touch N] [--profile FILE]

Needs root and the Samba packages (``bash scripts/install-samba``); see docs/benchmarks.md. For
each size, one after the other, in one run:

1. a synthetic scholengroep (two instellingsnummers, N pupils, N/10 staff) served by the
   project's Informat server on 127.0.0.1, and a fresh Samba AD DC (the tests' helper);
2. the DC filled with everyone by the first night: ``apply`` through the command line, its
   writes recorded (:class:`EntryRecorder`) and imported into the stopped DC through Samba's own
   module stack (``bench/samba_import.py``), its state store written as apply writes it (in one
   transaction). ``--fill apply`` writes over LDAP instead, one add at a time (~5 times slower).
   Either way accounts have no password (``userAccountControl`` NORMAL_ACCOUNT |
   PASSWD_NOTREQD, so they are enabled): the DC's password hashing would dominate the fill;
3. each measure in a fresh child process (so the Informat server in this process does not share
   its GIL, as in production where both are remote), one run each:

   - the no-op night with a full read: ``provisioner.cli.main(["apply", "--config", …,
     "--full-read"])`` (the nightly mode: plan and apply; nothing to do, so it must exit 0),
     which keeps its read in the state store for the next night;
   - with ``--touch N``, N pupils' displayName changed by hand; then the next night,
     ``apply`` again, which reads the directory incrementally (what changed since the kept
     read) and puts the touched pupils back, with the changes it found;
   - ``plan`` from the kept read (incremental, a dry run that keeps nothing): must exit 0;
   - the no-op night: ``apply`` again, nothing changed since the last night: must exit 0;
   - a night after Informat changed: one pupil per school with another ``stamnr`` (no mapping
     reads it, so nothing is to do), ``apply`` again: both Lln answers are parsed again, the
     others come back the same and are not (:mod:`provisioner.sources.informat.kept`);
   - the weekly full read: ``apply --full-read`` again, now with a kept read, from which the
     plan is foreseen while the DC is read in full (as every ``full_read_every`` days);
   - ``fetch``: ``main(["fetch", "--config", …])``: download + parse of the data sets and fields
     the mappings use;
   - bare read: an ldap3 paged search of the managed root (same filter, page size and attributes
     as the target's read) that builds nothing;
   - floor = fetch + bare read; peak memory = the plan child's VmHWM, and apart the largest of
     its helper processes (parse workers, AD reads).

With two sizes or more, the growth of each from the first. With ``--profile FILE`` the no-op plan
runs once more under cProfile (the main thread's and the target read's thread's stats saved to
FILE-<pupils> and FILE-<pupils>.thread, the top entries of both added up printed). ``--dump FILE``
writes the directory's and the state store's content after the fill, to compare two fills.
Goals (issue 17): the full night ≤ 1.5 × its floor, growth ≤ 1.2 × linear, 50,000 pupils in
≤ 15 s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import itertools
import json
import os
import pstats
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.bench_informat import peak_rss_kib, run_measured
from tests.conftest import REFERENCE_DAY
from tests.scenarios import config_head

ROOT = Path(__file__).resolve().parent.parent

PASSWD_NOTREQD = 0x20
ORGANIZATIONAL_UNIT = ["top", "organizationalUnit"]
FIRST_NIGHT = "bench: the first night"
SAMBA_PYTHON = "/usr/bin/python3"
"""Debian's python3, which has Samba's Python bindings (python3-samba); the venv has not."""


def write_config(directory: Path, informat_url: str, dc: Any, managed_root: str) -> Path:
    path = directory / "provisioner.yaml"
    path.write_text(
        config_head(informat_url, ROOT / "mappings") + "target:\n  ad:\n"
        f"    url: {dc.ldaps_url}\n"
        f"    bind_user: {dc.admin_user}\n"
        "    password: ${TEST_AD_PASSWORD}\n"
        f"    base_dn: {dc.base_dn}\n"
        f"    managed_root: {managed_root}\n"
        f"    ca_file: {dc.ca_file}\n"
    )
    return path


def create_without_password(self: Any, change: Any, *, password: str) -> Any:
    """``ActiveDirectory._create`` without ``unicodePwd``: the apply fill only."""
    from provisioner.targets import ad

    dn, attributes = account_entry(self, change)
    conn = self.connect()
    if not conn.add(dn, attributes.pop("objectClass"), attributes):
        return ad.Result(change, "failed", ad._explain(conn.result))
    self._anchors.put(ad.Kind.ACCOUNT, change.key, dn)
    return self._ok(change)


def account_entry(target: Any, change: Any) -> tuple[str, dict[str, Any]]:
    """The DN and attributes ``ActiveDirectory._create`` adds, without a password: enabled
    with NORMAL_ACCOUNT | PASSWD_NOTREQD (the DC's password hashing would dominate the fill)."""
    from provisioner.targets import ad

    after = change.after
    username = str(after["username"])
    dn = target.object_dn(str(after.get("cn") or username), tuple(after["ou"] or ()))
    attributes = {
        name: value
        for name, value in after.items()
        if name not in ("username", "ou", *ad._RDN_ATTRIBUTES) and value not in ("", None)
    }
    attributes.setdefault("sAMAccountName", username)
    attributes[target.config.anchor_attribute] = change.key
    attributes["userAccountControl"] = ad.NORMAL_ACCOUNT | PASSWD_NOTREQD
    attributes["objectClass"] = ["top", "person", "organizationalPerson", "user"]
    return dn, attributes


def ldb_value(value: Any) -> str | list[str]:
    """An attribute value as LDAP text, as ldap3 would send it."""
    if isinstance(value, list | tuple | set | frozenset):
        return [str(ldb_value(item)) for item in value]
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


class EntryRecorder:
    """Stands in for the AD target's four writing handlers during the first night's apply:
    each entry the handler would add over LDAP (the same DN and attributes) is kept here instead,
    and the target's anchor index learns it as after a real add, so the apply's preconditions,
    results and state store (issued names, anchors, kinds, schools) are those of a real first
    night. Members are folded into their group's entry (one add instead of add + modify)."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        """By DN, in the order made: parents before children, members before their groups."""

    def add(self, dn: str, attributes: dict[str, Any]) -> None:
        assert dn not in self.entries, f"{dn} made twice"
        self.entries[dn] = {"dn": dn} | {name: ldb_value(v) for name, v in attributes.items()}

    @contextlib.contextmanager
    def installed(self) -> Iterator[EntryRecorder]:
        from ldap3.utils.dn import parse_dn

        from provisioner.targets import ad
        from provisioner.targets.ad import ActiveDirectory

        recorder = self

        def create_ou(target: Any, change: Any) -> Any:
            if target.root_dn not in recorder.entries:
                name = parse_dn(target.config.managed_root, escape=False)[0][1]
                recorder.add(target.root_dn, {"objectClass": ORGANIZATIONAL_UNIT, "ou": name})
            path = tuple(change.after["ou"] or ())
            recorder.add(target.ou_dn(path), {"objectClass": ORGANIZATIONAL_UNIT, "ou": path[-1]})
            return target._ok(change)

        def create(target: Any, change: Any, *, password: str) -> Any:
            del password  # the fill sets none
            dn, attributes = account_entry(target, change)
            recorder.add(dn, attributes)
            target._anchors.put(ad.Kind.ACCOUNT, change.key, dn)
            return target._ok(change)

        def create_group(target: Any, change: Any) -> Any:
            after = change.after
            dn = target.object_dn(str(after.get("cn") or change.key), after["ou"] or ())
            attributes = {
                name: value
                for name, value in after.items()
                if name not in ("ou", *ad._RDN_ATTRIBUTES) and value not in ("", None)
            }
            attributes[target.config.group_anchor_attribute] = change.key
            attributes["groupType"] = ad.GLOBAL_SECURITY_GROUP
            attributes["objectClass"] = ["top", "group"]
            recorder.add(dn, attributes)
            target._anchors.put(ad.Kind.GROUP, change.key, dn)
            return target._ok(change)

        def add_members(target: Any, change: Any) -> Any:
            group = target._group_dn(change)
            anchors = list(change.after.get("members") or [])
            dns = [target._find_anchor(ad.Kind.ACCOUNT, anchor) for anchor in anchors]
            assert all(dn is not None and target.below_root(dn) for dn in dns), change.key
            recorder.entries[group].setdefault("member", []).extend(dns)
            return target._ok(change, f"{len(dns)} member(s)")

        handlers = {
            "_create_ou": create_ou,
            "_create": create,
            "_create_group": create_group,
            "_add_members": add_members,
        }
        originals = {name: getattr(ActiveDirectory, name) for name in handlers}
        for name, handler in handlers.items():
            setattr(ActiveDirectory, name, handler)
        try:
            yield self
        finally:
            for name, original in originals.items():
                setattr(ActiveDirectory, name, original)


def apply_night(config: Path, why: str) -> None:
    from provisioner.cli import main

    code = main(["apply", "--config", str(config), "--approve", why])
    assert code == 0, f"apply ({why}) exited {code}"


@contextlib.contextmanager
def state_store_in_one_transaction() -> Iterator[None]:
    """``apply_plan`` inside one state store transaction: the same rows, one commit. The store
    commits each step on its own (~50,000 transactions for 10,000 pupils: a result's issued
    names, its lifecycle), each commit waiting 3-6 ms for the disk here: the recorded first
    night took ~130 s that way, 40 s in one transaction. Its steps nest as savepoints."""
    from provisioner import cli

    inner = cli.apply_plan

    def in_one_transaction(plan: Any, target: Any, store: Any, **kwargs: Any) -> Any:
        with store.transaction():
            return inner(plan, target, store, **kwargs)

    cli.apply_plan = in_one_transaction  # type: ignore[assignment]
    try:
        yield
    finally:
        cli.apply_plan = inner


def fill_by_apply(config: Path) -> dict[str, float]:
    """The first night, applied over LDAP (accounts without passwords)."""
    from provisioner.targets.ad import ActiveDirectory

    started = time.perf_counter()
    original = ActiveDirectory._create
    ActiveDirectory._create = create_without_password  # type: ignore[method-assign]
    try:
        apply_night(config, FIRST_NIGHT)
    finally:
        ActiveDirectory._create = original  # type: ignore[method-assign]
    return {"apply over LDAP": time.perf_counter() - started}


def fill_by_import(config: Path, dc: Any, *, dbcheck: bool) -> dict[str, float]:
    """The first night, applied with the writes recorded (:class:`EntryRecorder`), then the
    entries imported into the stopped DC by ``bench/samba_import.py``; the DC is started again.
    With ``dbcheck``, ``samba-tool dbcheck`` checks the database before the start."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    recorder = EntryRecorder()
    with recorder.installed(), state_store_in_one_transaction():
        apply_night(config, FIRST_NIGHT)
    timings["apply, writes recorded (plan, preconditions, state store in one commit)"] = (
        time.perf_counter() - started
    )
    assert dc.directory is not None
    records = config.parent / "first-night.json"
    records.write_text(json.dumps(list(recorder.entries.values())))
    started = time.perf_counter()
    dc.pause()
    timings["DC stopped"] = time.perf_counter() - started
    sam_ldb = dc.directory / "private" / "sam.ldb"
    smb_conf = dc.directory / "etc" / "smb.conf"
    started = time.perf_counter()
    importer = ROOT / "bench" / "samba_import.py"
    # cwd /: Debian's python3 with Samba's bindings, not the project's modules.
    subprocess.run([SAMBA_PYTHON, importer, sam_ldb, smb_conf, records], check=True, cwd="/")
    timings[f"import of {len(recorder.entries)} entries (SamDB.add)"] = (
        time.perf_counter() - started
    )
    if dbcheck:
        started = time.perf_counter()
        checked = subprocess.run(
            ["samba-tool", "dbcheck", "-H", str(sam_ldb), "-s", str(smb_conf)],
            capture_output=True,
            text=True,
            check=False,
            env=os.environ | {"PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin"},
        )
        timings["samba-tool dbcheck"] = time.perf_counter() - started
        print(checked.stdout[-2000:], checked.stderr[-2000:], sep="\n")
        assert checked.returncode == 0, f"dbcheck found errors (exit {checked.returncode})"
    started = time.perf_counter()
    dc.restart()
    timings["DC started again"] = time.perf_counter() - started
    return timings


VOLATILE = frozenset(
    {
        "objectguid",
        "objectsid",
        "whencreated",
        "whenchanged",
        "usncreated",
        "usnchanged",
        "dscorepropagationdata",
        "ntsecuritydescriptor",
    }
)
"""What differs between any two DCs filled alike: identities, times and USNs (and the security
descriptor, whose owner is the writer: the administrator over LDAP, the system in an import)."""
TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d[^\"]*")
"""A time stamp in a state store row, up to the end of its JSON string."""


def dump(dc: Any, root_dn: str, state_db: Path, path: Path) -> None:
    """Every entry below the managed root with its attributes (without :data:`VOLATILE`), and
    every row of the state store (times as TIME), sorted, the root named ROOT: two fills compare
    with ``diff``."""
    from ldap3 import SUBTREE

    conn = dc.connect()
    entries = {}
    for entry in conn.extend.standard.paged_search(
        root_dn, "(objectClass=*)", search_scope=SUBTREE, attributes=["*"], generator=True
    ):
        if entry.get("type") != "searchResEntry":
            continue
        values = {
            name: sorted(map(str, value)) if isinstance(value, list) else str(value)
            for name, value in entry["raw_attributes"].items()
            if name.lower() not in VOLATILE
        }
        entries[entry["dn"]] = values
    conn.unbind()
    state = sqlite3.connect(state_db)
    tables = [row[0] for row in state.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    rows = {
        table: sorted(
            json.dumps([TIME.sub("TIME", str(value)) for value in row])
            for row in state.execute(f"SELECT * FROM {table}")
        )
        for table in tables
    }
    state.close()
    text = json.dumps(
        {"directory": dict(sorted(entries.items())), "state store": rows}, indent=1, sort_keys=True
    )
    path.write_text(text.replace(root_dn, "ROOT").replace(root_dn.split(",")[0][3:], "ROOT"))
    print(f"{len(entries)} entries below the managed root and the state store in {path}")


def touch(dc: Any, root_dn: str, count: int) -> int:
    """Change the mapped ``displayName`` of *count* managed pupils by hand, as someone in the
    directory would: the next plan must find (and undo) exactly these."""
    from ldap3 import MODIFY_REPLACE, SUBTREE

    conn = dc.connect()
    found = conn.extend.standard.paged_search(
        root_dn,
        "(&(objectClass=user)(employeeType=leerling))",
        search_scope=SUBTREE,
        attributes=["displayName"],
        paged_size=500,
        generator=True,
    )
    pupils = itertools.islice((e for e in found if e.get("type") == "searchResEntry"), count)
    chosen = [(entry["dn"], entry["attributes"]["displayName"]) for entry in pupils]
    for dn, name in chosen:
        changed = f"{name} (touched by hand)"
        assert conn.modify(dn, {"displayName": [(MODIFY_REPLACE, [changed])]}), conn.result
    touched = len(chosen)
    conn.unbind()
    return touched


def bare_read(config_path: Path) -> Callable[[], int]:
    """A paged search of the managed root with the attributes the target reads, building
    nothing: the returned function, to be timed. The configuration, the mappings and the
    modules are loaded before, here (the plan's own are too, and ``fetch`` measures them)."""
    from ldap3 import SUBTREE

    from provisioner.pipeline import mapped_attributes, prepare
    from provisioner.targets.ad import MANAGED_OBJECTS, ActiveDirectory

    prepared = prepare(config_path)
    ad_config = prepared.config.target.ad  # type: ignore[union-attr]
    accounts, groups = mapped_attributes(prepared)

    def read() -> int:
        target = ActiveDirectory(ad_config)
        wanted = target.read_attributes(accounts | groups)
        conn = target.connect()
        seen = 0
        for entry in conn.extend.standard.paged_search(
            target.root_dn,
            MANAGED_OBJECTS,
            search_scope=SUBTREE,
            attributes=wanted,
            paged_size=ad_config.page_size,
            generator=True,
        ):
            if entry.get("type") == "searchResEntry":
                seen += 1
        target.close()
        return seen

    return read


LABELS = (
    "prepare (config, mappings)",
    "reads at the same time, then compare (all below)",
    "  source: download + parse",
    "  target read + ObservedState (in a thread)",
    "  mapping of the persons (after the source, while the target is read)",
    "  the rest of the mapping and the plan, from what the kept read expects (while the target "
    "is read)",
    "  compare after the reads (unless foreseen: the names new to the domain only)",
    "    mapping's second part (names, attributes that use them, groups, checks)",
    "plan (diff, lifecycle, policy; when foreseen: made already)",
    "rendering",
)


def time_phases() -> dict[str, float]:
    """Wrap the plan's steps with wall-clock timers (no profiler overhead); returns the totals,
    filled in as the plan runs. The source and the target are read at the same time (the target
    in a thread), and the mapping of the persons starts once the source is read, so those
    times overlap; so do, after an incremental read's early word, the rest of the mapping and
    the plan (``foresee``); the target read includes building its ObservedState; compare and
    plan include the names in use, the mapping and the diff when nothing was foreseen or it did
    not stand."""
    from provisioner import cli, pipeline
    from provisioner.targets.ad import ActiveDirectory

    phases: dict[str, float] = {}

    def timed(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                phases[label] = phases.get(label, 0.0) + time.perf_counter() - started

        setattr(owner, name, wrapper)

    # Insertion order is the order printed: each step before the steps it contains finish.
    for label in LABELS:
        phases[label] = 0.0
    timed(cli, "prepare_config", LABELS[0])
    timed(cli, "read_and_compare", LABELS[1])
    timed(cli, "_read", LABELS[2])
    timed(ActiveDirectory, "read", LABELS[3])
    timed(pipeline, "persons_of", LABELS[4])
    timed(pipeline, "foresee", LABELS[5])
    timed(pipeline, "compare", LABELS[6])
    timed(pipeline, "desired_in_directory", LABELS[7])
    timed(cli, "plan_of", LABELS[8])
    timed(cli, "render_plan", LABELS[9])
    return phases


def count_changes() -> Counter[str]:
    """The plan's changes by action, filled in when the plan is made."""
    from provisioner import cli

    counted: Counter[str] = Counter()
    inner = cli.plan_of

    def counting(*args: Any, **kwargs: Any) -> Any:
        plan = inner(*args, **kwargs)
        counted.update(str(change.action) for change in plan.changes)
        return plan

    cli.plan_of = counting  # type: ignore[assignment]
    return counted


def profile_target_read(path: Path) -> None:
    """Profile the target's read into *path*: it runs in a thread of its own (the reads overlap),
    which the main thread's profiler does not see."""
    from provisioner import pipeline

    inner = pipeline.observe

    def profiled(*args: Any, **kwargs: Any) -> Any:
        profiler = cProfile.Profile()
        try:
            return profiler.runcall(inner, *args, **kwargs)
        finally:
            profiler.dump_stats(path)

    pipeline.observe = profiled  # type: ignore[assignment]


def child(mode: str, config: Path, profile: Path | None) -> None:
    """Run one measure in this fresh process; print its time, result and VmHWM as JSON."""
    from provisioner.cli import main

    commands = {
        "plan": ["plan"],
        "night": ["apply"],  # the nightly mode: plan and apply in one go
        "night-full": ["apply", "--full-read"],
    }
    phases = time_phases() if mode in commands and profile is None else {}
    changes = count_changes() if mode in commands else Counter()

    quiet = io.StringIO()
    run: Callable[[], object]
    if mode in commands:
        command = [*commands[mode], "--config", str(config)]
        run = lambda: main(command)  # noqa: E731
    elif mode == "fetch":
        run = lambda: main(["fetch", "--config", str(config)])  # noqa: E731
    else:
        run = bare_read(config)
    if profile:
        profile_target_read(profile.with_name(profile.name + ".thread"))
    # The plan's text is not what is measured here, only its making.
    result, elapsed = run_measured(run, stdout=quiet, profile=profile)
    peak = peak_rss_kib() / 1024
    # The largest helper process (a parse worker, an AD read), each ended and waited for by now.
    helpers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "result": result,
                "peak_mb": peak,
                "helper_peak_mb": helpers,
                "phases": phases,
                "changes": dict(changes),
            }
        )
    )


def in_child(mode: str, config: Path, profile: Path | None = None) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.bench_nightly", "--child", mode, "--config", str(config)]
    if profile:
        args += ["--profile", str(profile)]
    done = subprocess.run(
        args, capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(), check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def night(args: argparse.Namespace, pupils: int) -> dict[str, Any]:
    """One size, end to end, with a DC of its own; prints its table and returns its measures."""
    from tests.fakes.informat_server import InformatServer
    from tests.fakes.samba import SambaDC
    from tests.fakes.synthetic import generate

    started = time.perf_counter()
    data = generate(pupils, instelnrs=("030569", "030577"), schooljaar="2025-26", seed=1)
    print(f"generated {pupils} pupils in {time.perf_counter() - started:.1f} s", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-nightly-") as tmp,
        InformatServer(data, today=REFERENCE_DAY) as server,
        SambaDC(args.host) as dc,
    ):
        os.environ["TEST_INFORMAT_PASSWORD"] = "geheim"
        os.environ["TEST_AD_PASSWORD"] = dc.admin_password
        # A root of its own: provisioner's run lock is machine-wide per managed root.
        managed_root = f"OU=Nightly{os.getpid()}"
        root_dn = f"{managed_root},{dc.base_dn}"
        config = write_config(Path(tmp), server.url, dc, managed_root)

        started = time.perf_counter()
        if args.fill == "apply":
            fill_steps = fill_by_apply(config)
        else:
            fill_steps = fill_by_import(config, dc, dbcheck=args.dbcheck)
        fill_seconds = time.perf_counter() - started
        print(f"DC filled ({args.fill}) in {fill_seconds:.0f} s:", flush=True)
        for step, seconds in fill_steps.items():
            print(f"- {step}: {seconds:.1f} s")

        if args.dump:
            named = args.dump.with_name(f"{args.dump.stem}-{pupils}{args.dump.suffix}")
            dump(dc, root_dn, config.parent / "state.db", named)

        first = in_child("night-full", config)
        assert first["result"] == 0, f"the second night is not a no-op: exit {first['result']}"
        touched = touch(dc, root_dn, args.touch) if args.touch else 0
        second = in_child("night", config)
        expected = (0, 2) if touched else (0,)  # 2: the touched updates wait for an approval
        assert second["result"] in expected, f"the incremental night: exit {second['result']}"
        dry = in_child("plan", config)
        assert dry["result"] in expected, f"the incremental plan: exit {dry['result']}"
        # The no-op night: nothing changed in Informat or by hand since the last night (which
        # read before it applied: its own writes are the changes this one reads again).
        noop = in_child("night", config)
        assert noop["result"] == 0, f"the no-op night: exit {noop['result']}"
        # A night whose source changed: both schools' Lln answers differ (a field no mapping
        # reads, so the plan is the same), and are parsed again; the other answers are not.
        for school in ("030569", "030577"):
            pupil = next(r for r in server.rows["Lln"] if r["_instelnr"] == school)
            where = {"p_persoon": pupil["p_persoon"], "_instelnr": school}
            server.rewrite("Lln", where, {"stamnr": f"{pupil.get('stamnr') or ''}9"})
        changed = in_child("night", config)
        assert changed["result"] == 0, f"the night after Informat changed: {changed['result']}"
        # The weekly full read: a full read with a kept read to foresee it from.
        weekly = in_child("night-full", config)
        assert weekly["result"] == 0, f"the weekly full night: exit {weekly['result']}"
        fetch = in_child("fetch", config)
        read = in_child("read", config)
        floor = fetch["seconds"] + read["seconds"]
        found = ", ".join(f"{n} {action}" for action, n in sorted(second["changes"].items()))
        print(f"\n{pupils} pupils, {read['result']} objects in {managed_root}\n")
        print("| measure | time |")
        print("|---|---|")
        print(f"| fill of the DC ({args.fill}) | {fill_seconds:.0f} s |")
        print(
            f"| **no-op night, full read** (`apply --full-read`, the first after the fill) | "
            f"{first['seconds']:.2f} s |"
        )
        print(
            "| **a weekly full read** (`apply --full-read` with a kept read, foreseen from it) | "
            f"{weekly['seconds']:.2f} s |"
        )
        print(
            f"| **next night, incremental read** (`apply`); {touched} pupils' displayName "
            f"changed by hand in between | {second['seconds']:.2f} s; found: "
            f"{found or 'nothing'} |"
        )
        print(f"| `plan` from the kept read (incremental dry run) | {dry['seconds']:.2f} s |")
        print(
            "| **the no-op night** (`apply`, incremental; nothing changed since the last "
            f"night) | {noop['seconds']:.2f} s |"
        )
        print(
            "| **a night after Informat changed** (`apply`, incremental; one pupil per school "
            f"changed: both Lln answers parsed again) | {changed['seconds']:.2f} s |"
        )
        print(f"| `fetch` (download + parse) | {fetch['seconds']:.2f} s |")
        print(f"| bare ldap3 paged read of the managed root | {read['seconds']:.2f} s |")
        print(f"| floor: fetch + bare read | {floor:.2f} s |")
        print(f"| ratio full night / floor | {first['seconds'] / floor:.2f} × (goal ≤ 1.5) |")
        print(f"| ratio weekly full night / floor | {weekly['seconds'] / floor:.2f} × |")
        print(f"| ratio incremental night / floor | {second['seconds'] / floor:.2f} × |")
        print(
            "| peak memory: full / incremental / plan / no-op / after Informat changed "
            f"(VmHWM) | {first['peak_mb']:.0f} / {second['peak_mb']:.0f} / "
            f"{dry['peak_mb']:.0f} / {noop['peak_mb']:.0f} / {changed['peak_mb']:.0f} MB |"
        )
        print(
            f"| peak memory of the largest helper process (parse worker, AD read) of each | "
            f"{first['helper_peak_mb']:.0f} / {second['helper_peak_mb']:.0f} / "
            f"{dry['helper_peak_mb']:.0f} / {noop['helper_peak_mb']:.0f} / "
            f"{changed['helper_peak_mb']:.0f} MB |"
        )
        print(
            f"| peak memory of fetch / bare read | {fetch['peak_mb']:.0f} / "
            f"{read['peak_mb']:.0f} MB |",
            flush=True,
        )
        nights = [("full", first), ("incremental", second), ("no-op", noop)]
        nights.append(("changed", changed))
        nights.append(("weekly full", weekly))
        for what, measured in nights:
            print(f"\nthe {what} night's steps (wall clock, same run):\n")
            for label, seconds in measured["phases"].items():
                print(f"- {label}: {seconds:.2f} s")
        if args.profile:
            profile = args.profile.with_name(f"{args.profile.stem}-{pupils}{args.profile.suffix}")
            if touched:  # profile a no-op: take the touched pupils' change back first
                apply_night(config, "bench: the touched pupils back")
            profiled = in_child("plan", config, profile)
            print(f"\nincremental plan under cProfile ({profile}): {profiled['seconds']:.2f} s")
            out = io.StringIO()
            # The main thread's profile and the target read's thread's, added up.
            stats = pstats.Stats(str(profile), stream=out)
            stats.add(str(profile.with_name(profile.name + ".thread")))
            stats.sort_stats("cumulative").print_stats(60)
            print(out.getvalue(), flush=True)
        return {
            "pupils": pupils,
            "objects": read["result"],
            "first": first["seconds"],
            "second": second["seconds"],
            "noop": noop["seconds"],
            "changed": changed["seconds"],
            "weekly": weekly["seconds"],
            "floor": floor,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pupils",
        type=int,
        nargs="+",
        default=[10_000],
        help="one size or more (each with a DC of its own, one after another): with two or "
        "more, the growth of the plan from the smallest to each larger one",
    )
    parser.add_argument(
        "--fill",
        choices=["import", "apply"],
        default="import",
        help="how the first night reaches the DC: import (default) records the apply's writes "
        "and imports them into the stopped DC; apply writes them over LDAP, one by one",
    )
    parser.add_argument(
        "--dbcheck", action="store_true", help="run samba-tool dbcheck after the import"
    )
    parser.add_argument(
        "--dump",
        type=Path,
        help="after the fill, write every entry below the managed root to FILE (-PUPILS added), "
        "to compare two fills",
    )
    parser.add_argument(
        "--touch",
        type=int,
        default=0,
        metavar="N",
        help="between the full and the incremental night, change N pupils' displayName by hand",
    )
    parser.add_argument(
        "--profile", type=Path, help="also profile the no-op plan into FILE (-PUPILS added)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the DC's address (another than 127.0.0.1, in a private network namespace, does "
        "not wait for a test run's DC: see docs/benchmarks.md)",
    )
    parser.add_argument(
        "--child", choices=["plan", "night", "night-full", "fetch", "read"], help=argparse.SUPPRESS
    )
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.config, args.profile)
        return

    sizes = [night(args, pupils) for pupils in args.pupils]
    if len(sizes) > 1:
        base = sizes[0]
        print(f"\ngrowth from {base['pupils']} pupils (time ratio / size ratio; goal ≤ 1.2):\n")
        print(
            "| pupils | full night | weekly full night | incremental night | no-op night "
            "| after Informat changed | floor |"
        )
        print("|---|---|---|---|---|---|---|")
        for size in sizes[1:]:
            scale = size["pupils"] / base["pupils"]
            print(
                f"| {size['pupils']} | {size['first'] / base['first'] / scale:.2f} × | "
                f"{size['weekly'] / base['weekly'] / scale:.2f} × | "
                f"{size['second'] / base['second'] / scale:.2f} × | "
                f"{size['noop'] / base['noop'] / scale:.2f} × | "
                f"{size['changed'] / base['changed'] / scale:.2f} × | "
                f"{size['floor'] / base['floor'] / scale:.2f} × |"
            )


if __name__ == "__main__":
    main()
